//! What the reader adds to the kernel's exec records before a batch leaves
//! the source (issue #14), so that no topology can route around it:
//!
//! - secrets scrubbed from argv and the captured environment
//!   ([`crate::scrub`], counted in `hostflow_scrubbed_values_total`);
//! - `user` (the real uid's name) and `cgroup_path` (of `cgroup_id`) from
//!   [`Identity`]; a batch with an unknown uid or cgroup first re-reads
//!   passwd or re-walks the cgroup mount on the blocking pool (rate
//!   limited; awaited, so the batch waits for it);
//! - the executable's hash ([`ExeHasher`]): a cache hit is filled in
//!   directly; a miss is queued, and the batch waits at most
//!   `exe_hash_wait` for its own jobs, filling those that finish; the rest
//!   leave as `pending` and an `ExeHash` event follows each when its job
//!   completes ([`Additions::hash_events`], the reader's select loop); a
//!   hash still pending when the source stops gets no event.
//!
//! Problems (passwd or the cgroup mount unreadable, the snapshot's `/proc`)
//! are counted in `hostflow_ebpf_identity_errors_total{component,what}` and
//! shown in `/health` as `degraded` with their reason ([`Problems`]), and
//! the source keeps going.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;
use pipeline::event::{ExeHash, HashState, ProcessExec, ProcessSnapshot};
use pipeline::health::{ComponentState, HealthHandle};
use pipeline::{ComponentError, Event, EventMeta};

use crate::exe_hash::{Answer, Done, ExeHasher, FileKey, Job, Waiter};
use crate::identity::{Cgroups, Identity, EBPF_IDENTITY_ERRORS_TOTAL};
use crate::procfs::scrub_options;
use crate::scrub::Scrubber;

use super::snapshot::ExeFile;
use super::ContextSettings;

/// The `degraded` reasons of the source, by topic; `/health` shows them
/// joined, and `running` once there are none.
pub struct Problems {
    handle: HealthHandle,
    name: Arc<str>,
    topics: BTreeMap<&'static str, String>,
    shown: Option<String>,
}

impl Problems {
    /// `programs`: the reason the source is already degraded for (some
    /// programs not running), as set before the reader started.
    pub fn new(handle: HealthHandle, name: Arc<str>, programs: Option<String>) -> Problems {
        let mut topics = BTreeMap::new();
        if let Some(reason) = &programs {
            topics.insert("programs", reason.clone());
        }
        Problems { handle, name, topics, shown: programs }
    }

    /// Sets or clears one topic's reason; touches `/health` on a change.
    pub fn set(&mut self, topic: &'static str, reason: Option<&str>) {
        match reason {
            Some(reason) => self.topics.insert(topic, reason.to_owned()),
            None => self.topics.remove(topic),
        };
        let joined = (!self.topics.is_empty()).then(|| self.topics.values().cloned().collect::<Vec<_>>().join("; "));
        if joined == self.shown {
            return;
        }
        match &joined {
            Some(reason) => {
                tracing::warn!(source = %self.name, %reason, "ebpf source degraded");
                self.handle.set(ComponentState::Degraded, Some(reason.clone()));
            }
            None => {
                tracing::info!(source = %self.name, "ebpf source problems cleared");
                self.handle.set(ComponentState::Running, None);
            }
        }
        self.shown = joined;
    }
}

/// `hostflow_ebpf_identity_errors_total` handles.
struct IdentityErrors {
    passwd: Counter,
    cgroup: Counter,
    proc: Counter,
}

/// The reader's state for what it adds to events.
pub struct Additions {
    scrubber: Arc<Scrubber>,
    /// `None` only while a refresh runs on the blocking pool.
    identity: Option<Identity>,
    hasher: Option<ExeHasher>,
    hash_wait: Duration,
    scrubbed: Counter,
    errors: IdentityErrors,
    pub problems: Problems,
    empty: Arc<str>,
}

impl Additions {
    /// Loads passwd and the cgroup map (blocking pool) and starts the hash
    /// thread.
    pub async fn start(
        name: &Arc<str>,
        handle: HealthHandle,
        settings: &ContextSettings,
        programs_problem: Option<String>,
    ) -> Result<Additions, ComponentError> {
        let identity = tokio::task::spawn_blocking(Identity::load)
            .await
            .map_err(|e| ComponentError::Failed(format!("identity load task failed: {e}")))?;
        let hasher = if settings.exe_hash {
            match ExeHasher::start(name, settings.exe_hash_max_bytes) {
                Ok(hasher) => Some(hasher),
                Err(error) => {
                    tracing::warn!(source = %name, %error, "cannot start the exe hash thread; hashes are off");
                    None
                }
            }
        } else {
            None
        };
        metrics::describe_counter!(
            EBPF_IDENTITY_ERRORS_TOTAL,
            metrics::Unit::Count,
            "Failures to read user names (passwd), cgroup paths (cgroup) or the start-up snapshot (proc)."
        );
        let error = |what: &'static str| metrics::counter!(EBPF_IDENTITY_ERRORS_TOTAL, "component" => name.to_string(), "what" => what);
        let mut additions = Additions {
            scrubber: scrub_options::compile(&settings.scrub),
            identity: Some(identity),
            hasher,
            hash_wait: settings.exe_hash_wait,
            scrubbed: scrub_options::scrubbed_counter(name),
            errors: IdentityErrors { passwd: error("passwd"), cgroup: error("cgroup"), proc: error("proc") },
            problems: Problems::new(handle, name.clone(), programs_problem),
            empty: Arc::from(""),
        };
        additions.note_identity(true, true);
        Ok(additions)
    }

    pub fn scrubber(&self) -> &Arc<Scrubber> {
        &self.scrubber
    }

    /// Counts values scrubbed elsewhere (the snapshot, the fallback).
    pub fn count_scrubbed(&self, n: u64) {
        self.scrubbed.increment(n);
    }

    /// The snapshot's `/proc` problem (`None`: it read fine); counted.
    pub fn note_proc(&mut self, problem: Option<String>) {
        if problem.is_some() {
            self.errors.proc.increment(1);
        }
        self.problems.set("proc", problem.as_deref());
    }

    /// Records identity problems after a read (counted once per failed
    /// read) into `/health`.
    fn note_identity(&mut self, users_read: bool, cgroups_walked: bool) {
        let Some(identity) = &self.identity else { return };
        let (users, cgroups) =
            (identity.users.problem().map(str::to_owned), identity.cgroups.problem().map(str::to_owned));
        if users_read {
            if users.is_some() {
                self.errors.passwd.increment(1);
            }
            self.problems.set("passwd", users.as_deref());
        }
        if cgroups_walked {
            if cgroups.is_some() {
                self.errors.cgroup.increment(1);
            }
            self.problems.set("cgroup", cgroups.as_deref());
        }
    }

    /// Moves the identity maps out for the snapshot's read (blocking
    /// pool); [`Additions::return_identity`] puts them back.
    pub fn take_identity(&mut self) -> Option<Identity> {
        self.identity.take()
    }

    pub fn return_identity(&mut self, identity: Identity) {
        self.identity = Some(identity);
    }

    /// Scrubs, names and hashes the execs of a batch about to be sent;
    /// `ExeHash` events of earlier execs whose jobs finished meanwhile are
    /// appended to `later` (ids not yet set).
    pub async fn complete(&mut self, batch: &mut [Event], later: &mut Vec<Event>) -> Result<(), ComponentError> {
        let mut n_scrubbed = 0;
        let (mut miss_user, mut miss_cgroup) = (false, false);
        for event in batch.iter_mut() {
            let Event::ProcessExec(exec) = event else { continue };
            n_scrubbed += scrub_options::scrub_argv(&self.scrubber, &mut exec.argv);
            let Some(attributes) = exec.attributes.as_mut() else { continue };
            let attributes = Arc::make_mut(attributes);
            n_scrubbed += scrub_options::scrub_env(&self.scrubber, &mut attributes.env);
            if let Some(identity) = &self.identity {
                miss_user |= identity.users.get(exec.uid).is_none();
                miss_cgroup |= exec.cgroup_id != 0 && identity.cgroups.get(exec.cgroup_id).is_none();
            }
        }
        self.scrubbed.increment(n_scrubbed as u64);
        self.refresh(miss_user, miss_cgroup).await?;
        let mut waiting = 0usize;
        let mut queued = Vec::new();
        for (slot, event) in batch.iter_mut().enumerate() {
            let Event::ProcessExec(exec) = event else { continue };
            let Some(attributes) = exec.attributes.as_mut() else { continue };
            let attributes = Arc::make_mut(attributes);
            if let Some(identity) = &self.identity {
                attributes.user = identity.users.get(exec.uid).unwrap_or(&self.empty).clone();
                attributes.cgroup_path = identity.cgroups.get(exec.cgroup_id).unwrap_or(&self.empty).clone();
            }
            let Some(hasher) = &mut self.hasher else { continue };
            let file = &attributes.file;
            let key = FileKey { dev: file.dev, inode: file.inode, size: file.size, mtime_ns: file.mtime_ns };
            let job = Job { key, pid: exec.process.pid, path: exe_path(&exec.exe, &attributes.cwd) };
            let waiter = Waiter { process: exec.process, exe: exec.exe.clone(), slot: Some(slot) };
            (attributes.exe_hash, attributes.exe_sha256) = hasher.request(job, waiter);
            if attributes.exe_hash == HashState::Pending {
                waiting += 1;
                queued.push(key);
            }
        }
        let Some(hasher) = &mut self.hasher else { return Ok(()) };
        if waiting > 0 && !self.hash_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + self.hash_wait;
            while waiting > 0 {
                let Ok(Some(done)) = tokio::time::timeout_at(deadline, hasher.next_done()).await else { break };
                let key = done.key;
                let (answer, waiters) = hasher.complete(done);
                for waiter in waiters {
                    match waiter.slot {
                        Some(slot) => {
                            if let Some(Event::ProcessExec(exec)) = batch.get_mut(slot) {
                                fill_exec(exec, &answer);
                                waiting -= 1;
                            }
                        }
                        None => later.push(hash_event(waiter, key, &answer)),
                    }
                }
            }
        }
        hasher.detach_slots(&queued);
        Ok(())
    }

    /// Re-reads passwd and re-walks the cgroups on the blocking pool when
    /// a lookup missed and the rate limits allow.
    async fn refresh(&mut self, miss_user: bool, miss_cgroup: bool) -> Result<(), ComponentError> {
        let now = Instant::now();
        let Some(identity) = &self.identity else { return Ok(()) };
        let reread = miss_user && identity.users.reread_due(now);
        let rewalk = miss_cgroup && identity.cgroups.walk_due(now);
        if !reread && !rewalk {
            return Ok(());
        }
        let mut identity = self.identity.take().expect("checked above");
        identity = tokio::task::spawn_blocking(move || {
            if reread {
                identity.users.reread();
            }
            if rewalk {
                identity.cgroups.walk();
            }
            identity
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("identity refresh task failed: {e}")))?;
        self.identity = Some(identity);
        self.note_identity(reread, rewalk);
        Ok(())
    }

    /// Asks for the hash of each snapshot process's executable (never
    /// waited for: an `ExeHash` event follows each pending one).
    pub fn hash_snapshot(&mut self, process: &mut ProcessSnapshot, file: ExeFile) {
        let Some(hasher) = &mut self.hasher else { return };
        let key = match file {
            ExeFile::None => return,
            ExeFile::Unknown => {
                process.exe_hash = hasher.unavailable();
                return;
            }
            ExeFile::File(key) => key,
        };
        let path = process.exe.strip_suffix(" (deleted)").is_none().then(|| PathBuf::from(&*process.exe));
        let job = Job { key, pid: process.process.pid, path };
        let waiter = Waiter { process: process.process, exe: process.exe.clone(), slot: None };
        (process.exe_hash, process.exe_sha256) = hasher.request(job, waiter);
    }

    /// The next finished hash job, for the reader's `select!`; never
    /// resolves when hashing is off.
    pub async fn next_hash(&mut self) -> Option<Done> {
        match &mut self.hasher {
            Some(hasher) => hasher.next_done().await,
            None => std::future::pending().await,
        }
    }

    /// The `ExeHash` events of a finished job (ids not yet set).
    pub fn hash_events(&mut self, done: Done) -> Vec<Event> {
        let Some(hasher) = &mut self.hasher else { return Vec::new() };
        let key = done.key;
        let (answer, waiters) = hasher.complete(done);
        waiters.into_iter().map(|waiter| hash_event(waiter, key, &answer)).collect()
    }

    /// Read-only views, for tests.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.identity.as_ref().map(|identity| &identity.cgroups)
    }
}

/// Where the exec's file is by path: `exe` as given to `execve`, against
/// the cwd when relative (unless the cwd was cut or unreadable).
fn exe_path(exe: &str, cwd: &str) -> Option<PathBuf> {
    if exe.starts_with('/') {
        Some(PathBuf::from(exe))
    } else if cwd.starts_with('/') && !exe.is_empty() {
        Some(PathBuf::from(cwd).join(exe))
    } else {
        None
    }
}

fn fill_exec(exec: &mut ProcessExec, (state, sha256): &Answer) {
    if let Some(attributes) = exec.attributes.as_mut() {
        let attributes = Arc::make_mut(attributes);
        attributes.exe_hash = *state;
        attributes.exe_sha256 = sha256.clone();
    }
}

fn hash_event(waiter: Waiter, key: FileKey, (state, sha256): &Answer) -> Event {
    Event::ExeHash(ExeHash {
        meta: EventMeta { ts_ns: pipeline::diag::boottime_ns(), event_id: 0 },
        process: waiter.process,
        exe: waiter.exe,
        dev: key.dev,
        inode: key.inode,
        sha256: sha256.clone(),
        state: *state,
        context: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_exes_resolve_against_a_whole_cwd() {
        assert_eq!(exe_path("/bin/true", "/tmp"), Some(PathBuf::from("/bin/true")));
        assert_eq!(exe_path("./a.out", "/home/x"), Some(PathBuf::from("/home/x/./a.out")));
        assert_eq!(exe_path("a.out", "…/deep/dir"), None, "cut cwd");
        assert_eq!(exe_path("a.out", ""), None, "unreadable cwd");
    }

    #[test]
    fn problems_join_by_topic_and_clear() {
        let health = pipeline::health::Health::default();
        let handle = health.register("p", pipeline::Role::Source, "ebpf");
        let state = || {
            let c = health.report().components["p"].clone();
            (c.state, c.reason)
        };
        let mut problems = Problems::new(handle, Arc::from("p"), None);
        problems.set("cgroup", Some("cgroup paths unavailable"));
        problems.set("passwd", Some("no passwd"));
        assert_eq!(state(), (ComponentState::Degraded, Some("cgroup paths unavailable; no passwd".into())));
        problems.set("cgroup", None);
        problems.set("passwd", None);
        assert_eq!(state().0, ComponentState::Running);
    }
}
