//! The one object the enforcement applier calls to change policy: it
//! checks a proposed policy (signature, validation, compilation, rate
//! limit), remembers what was applied (history under `state_dir`, kept
//! across restarts), gives back earlier policies (rollback) or the current
//! one without its denies (emergency clear), and writes every outcome to
//! the audit log.
//!
//! It never touches the kernel: the applier switches maps between
//! `propose`/`rollback`/`emergency_clear` and `commit`, so only a policy
//! that really went live enters history. Rollback and clear are not rate
//! limited: an operator must always be able to back out.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::audit::{self, AuditError, AuditLog, Break, Entry};
use crate::{canonical, compile, parse_files, signature, CompiledPolicy, Rejection, SourceFile, ValidationContext};

const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Proposed policies remembered until committed (an applier that gives up
/// on one never commits it).
const MAX_PENDING: usize = 8;
/// Longest reason written to an audit line (a policy with thousands of
/// problems stays one readable line).
const MAX_REASON: usize = 4096;

/// How the manager is set up.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// History and audit log live here (0700).
    pub state_dir: PathBuf,
    /// The trust store (a directory of `*.pub`). When set, a policy's
    /// signature, if it has one, must verify.
    pub trust: Option<PathBuf>,
    /// Refuse unsigned policies (needs `trust`).
    pub require_signature: bool,
    /// Applied policies kept for rollback (default 10).
    pub history_len: usize,
    /// Proposals accepted per sliding minute (default 10).
    pub applies_per_minute: u32,
    pub context: ValidationContext,
}

impl ManagerSettings {
    /// The defaults around a state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> ManagerSettings {
        ManagerSettings {
            state_dir: state_dir.into(),
            trust: None,
            require_signature: false,
            history_len: 10,
            applies_per_minute: 10,
            context: ValidationContext::default(),
        }
    }
}

/// What went wrong on the manager's side (not a refused policy).
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("policy {digest} was not proposed, rolled back to or cleared by this manager")]
    UnknownPolicy { digest: String },
    #[error("`{0}` is not a change kind (expected a word such as apply, rollback, clear)")]
    BadKind(String),
}

/// One applied policy in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: u64,
    /// `apply`, `rollback`, `clear`, … as given to [`Manager::commit`].
    pub how: String,
    pub digest: String,
}

#[derive(Debug, Clone)]
struct Stored {
    entry: HistoryEntry,
    canonical: String,
}

#[derive(Debug, Clone)]
struct Pending {
    digest: String,
    canonical: String,
    source: Option<String>,
    key: Option<String>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Manager {
    settings: ManagerSettings,
    audit: AuditLog,
    history: Vec<Stored>,
    current: Option<CompiledPolicy>,
    pending: VecDeque<Pending>,
    applies: VecDeque<SystemTime>,
    rejected_total: u64,
    rate_limited_total: u64,
}

impl Manager {
    /// Opens `state_dir` (creating it), loading history and the audit log.
    /// The current policy is the last one in history, compiled again.
    pub fn open(settings: ManagerSettings) -> Result<Manager, ManagerError> {
        let history_dir = settings.state_dir.join("history");
        audit::create_private_dir(&history_dir)
            .map_err(|source| ManagerError::Io { path: history_dir.clone(), source })?;
        let audit = AuditLog::open(&settings.state_dir.join("audit.ndjson"))?;
        let history = load_history(&history_dir)?;
        let current = history.last().and_then(|stored| {
            let origin = history_file(&history_dir, &stored.entry);
            match crate::compile_str(&stored.canonical, &origin, &settings.context) {
                Ok(compiled) => Some(compiled),
                Err(problems) => {
                    tracing::error!(%problems, "the last applied policy no longer validates; starting without one");
                    None
                }
            }
        });
        Ok(Manager {
            settings,
            audit,
            history,
            current,
            pending: VecDeque::new(),
            applies: VecDeque::new(),
            rejected_total: 0,
            rate_limited_total: 0,
        })
    }

    /// Checks the policy at `path` for applying: signature (when a trust
    /// store is set or signatures are required), validation, compilation,
    /// then the rate limit. A rejection is counted and audit-logged; the
    /// running policy is not touched either way.
    pub fn propose(&mut self, path: &Path, now: SystemTime) -> Result<CompiledPolicy, Rejection> {
        let source = path.display().to_string();
        match self.check_proposal(path, now) {
            Ok((pending, compiled)) => {
                self.remember(pending);
                Ok(compiled)
            }
            Err((rejection, digest)) => {
                self.reject(&rejection, digest, Some(source), now);
                Err(rejection)
            }
        }
    }

    fn check_proposal(
        &mut self,
        path: &Path,
        now: SystemTime,
    ) -> Result<(Pending, CompiledPolicy), (Rejection, Option<String>)> {
        let files = crate::read_sources(path)
            .map_err(|problems| (Rejection::Unreadable { reason: problems.to_string() }, None))?;
        let (policy, problems) = parse_files(&files);
        if !problems.is_empty() {
            let problems = crate::finish(policy, problems, None, &self.settings.context).err().unwrap_or_default();
            return Err((Rejection::Invalid(problems), None));
        }
        let text = canonical::canonical(&policy);
        let digest = compile::digest(&text);
        let key = self.check_signature(path, &text).map_err(|rejection| (rejection, Some(digest.clone())))?;
        let checked = crate::finish(policy, Vec::new(), Some(text), &self.settings.context)
            .map_err(|problems| (Rejection::Invalid(problems), Some(digest.clone())))?;
        while self.applies.front().is_some_and(|at| now.duration_since(*at).is_ok_and(|age| age >= RATE_WINDOW)) {
            self.applies.pop_front();
        }
        if self.applies.len() >= self.settings.applies_per_minute as usize {
            self.rate_limited_total += 1;
            return Err((Rejection::RateLimited { applies: self.applies.len() }, Some(digest)));
        }
        self.applies.push_back(now);
        let pending = Pending { digest, canonical: checked.canonical, source: Some(path.display().to_string()), key };
        Ok((pending, checked.compiled))
    }

    /// The signer's name, when there is a signature to check.
    fn check_signature(&self, path: &Path, canonical: &str) -> Result<Option<String>, Rejection> {
        let sig_path = crate::signature_path(path);
        match (&self.settings.trust, self.settings.require_signature) {
            (None, true) => Err(Rejection::NoTrustStore),
            (None, false) => Ok(None),
            (Some(trust), required) => {
                if !required && !sig_path.exists() {
                    return Ok(None);
                }
                signature::verify_canonical(canonical, &sig_path, trust).map(|key| Some(key.to_string()))
            }
        }
    }

    /// Records that `policy` (from `propose`, `rollback` or
    /// `emergency_clear`) is now what the kernel enforces: a history entry
    /// and an audit line. `how` names the change (`apply`, `rollback`,
    /// `clear`, `auto_rollback`, …).
    pub fn commit(&mut self, policy: &CompiledPolicy, how: &str, now: SystemTime) -> Result<(), ManagerError> {
        if how.is_empty() || how.len() > 32 || !how.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(ManagerError::BadKind(how.chars().take(32).collect()));
        }
        let pending = self
            .pending
            .iter()
            .rposition(|pending| pending.digest == policy.digest)
            .and_then(|index| self.pending.remove(index))
            .ok_or_else(|| ManagerError::UnknownPolicy { digest: policy.digest.clone() })?;
        let seq = self.history.last().map_or(1, |stored| stored.entry.seq + 1);
        let entry = HistoryEntry { seq, how: how.to_owned(), digest: pending.digest.clone() };
        let history_dir = self.settings.state_dir.join("history");
        let path = history_file(&history_dir, &entry);
        audit::write_private(&path, pending.canonical.as_bytes())
            .map_err(|source| ManagerError::Io { path: path.clone(), source })?;
        let previous_digest = self.current.as_ref().map(|current| current.digest.clone());
        self.history.push(Stored { entry, canonical: pending.canonical });
        let keep = self.settings.history_len.max(1);
        while self.history.len() > keep {
            let oldest = self.history.remove(0);
            let old_path = history_file(&history_dir, &oldest.entry);
            if let Err(error) = std::fs::remove_file(&old_path) {
                tracing::warn!(path = %old_path.display(), %error, "could not remove an old history entry");
            }
        }
        self.current = Some(policy.clone());
        let line = Entry {
            event: how.to_owned(),
            digest: Some(pending.digest),
            previous_digest,
            reason: None,
            source: pending.source,
            key: pending.key,
        };
        self.audit.append(&line, now)?;
        Ok(())
    }

    /// The policy `steps` back in history (1: the one before the current),
    /// compiled again. Not rate limited.
    pub fn rollback(&mut self, steps: usize, now: SystemTime) -> Result<CompiledPolicy, Rejection> {
        let available = self.history.len().saturating_sub(1);
        let result = if steps == 0 || steps > available {
            Err(Rejection::NoHistory { steps, available })
        } else {
            let stored = &self.history[self.history.len() - 1 - steps];
            let origin = history_file(&self.settings.state_dir.join("history"), &stored.entry);
            crate::check_files(&[SourceFile::new(origin, stored.canonical.clone())], &self.settings.context)
                .map_err(Rejection::Invalid)
        };
        match result {
            Ok(checked) => {
                let source = Some(format!("history, {steps} step(s) back"));
                let digest = checked.compiled.digest.clone();
                self.remember(Pending { digest, canonical: checked.canonical, source, key: None });
                Ok(checked.compiled)
            }
            Err(rejection) => {
                self.reject(&rejection, None, Some(format!("rollback {steps}")), now);
                Err(rejection)
            }
        }
    }

    /// The current policy with every deny rule removed (allows and audits
    /// kept); an empty dry-run policy when there is none. Never fails and
    /// is not rate limited.
    pub fn emergency_clear(&mut self, now: SystemTime) -> CompiledPolicy {
        let _ = now;
        let current = self.history.last().map(|stored| {
            let origin = history_file(&self.settings.state_dir.join("history"), &stored.entry);
            parse_files(&[SourceFile::new(origin, stored.canonical.clone())])
        });
        let mut cleared = match current {
            Some((policy, problems)) if problems.is_empty() => canonical::without_denies(&policy),
            _ => crate::Policy {
                mode: crate::Mode::DryRun,
                description: "emergency clear".to_owned(),
                rules: Vec::new(),
                files: Vec::new(),
            },
        };
        let mut text = canonical::canonical(&cleared);
        let mut problems = Vec::new();
        // Dropping rules cannot make a policy invalid or over capacity;
        // should it ever, the empty policy is the safe answer.
        let compiled = compile::compile(&cleared, &text, &mut problems).unwrap_or_else(|| {
            cleared.rules.clear();
            text = canonical::canonical(&cleared);
            compile::compile(&cleared, &text, &mut problems).unwrap_or_else(CompiledPolicy::empty)
        });
        let source = Some("emergency clear".to_owned());
        self.remember(Pending { digest: compiled.digest.clone(), canonical: text, source, key: None });
        compiled
    }

    pub fn current(&self) -> Option<&CompiledPolicy> {
        self.current.as_ref()
    }

    /// Applied policies, oldest first (the last is the current one).
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history.iter().map(|stored| stored.entry.clone()).collect()
    }

    /// Proposals and rollbacks refused, rate-limited ones included.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_total
    }

    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited_total
    }

    /// Where the audit log's chain was found broken when it was opened.
    pub fn audit_broken(&self) -> Option<&Break> {
        self.audit.broken()
    }

    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    fn remember(&mut self, pending: Pending) {
        self.pending.retain(|other| other.digest != pending.digest);
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(pending);
    }

    fn reject(&mut self, rejection: &Rejection, digest: Option<String>, source: Option<String>, now: SystemTime) {
        self.rejected_total += 1;
        let mut reason = rejection.to_string();
        if reason.len() > MAX_REASON {
            let cut = (0..=MAX_REASON).rev().find(|i| reason.is_char_boundary(*i)).unwrap_or(0);
            reason.truncate(cut);
            reason.push('…');
        }
        tracing::warn!(reason = %reason, "policy change rejected");
        let line = Entry { event: "rejected".to_owned(), digest, reason: Some(reason), source, ..Entry::default() };
        if let Err(error) = self.audit.append(&line, now) {
            tracing::error!(%error, "could not write a rejection to the policy audit log");
        }
    }
}

fn history_file(dir: &Path, entry: &HistoryEntry) -> PathBuf {
    dir.join(format!("{:010}-{}.policy", entry.seq, entry.how))
}

/// History entries as stored, oldest first. Files that are not entries
/// are ignored; an unreadable entry is skipped with a warning.
fn load_history(dir: &Path) -> Result<Vec<Stored>, ManagerError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ManagerError::Io { path: dir.to_path_buf(), source })?;
    let mut history = Vec::new();
    for dir_entry in entries.flatten() {
        let name = dir_entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".policy") else { continue };
        let Some((seq, how)) = stem.split_once('-') else { continue };
        let Ok(seq) = seq.parse::<u64>() else { continue };
        match std::fs::read_to_string(dir_entry.path()) {
            Ok(canonical) => {
                let digest = compile::digest(&canonical);
                history.push(Stored { entry: HistoryEntry { seq, how: how.to_owned(), digest }, canonical });
            }
            Err(error) => {
                tracing::warn!(path = %dir_entry.path().display(), %error, "history entry unreadable; skipped")
            }
        }
    }
    history.sort_by_key(|stored| stored.entry.seq);
    Ok(history)
}
