//! Network policy (issue #17): what an operator writes (policy files), what
//! is checked before anything reaches the kernel, and what the kernel is
//! given: per CIDR prefix, the ordered list of rules that can apply to a
//! destination whose longest matching prefix is that one.
//!
//! This crate knows nothing of eBPF or aya: it produces [`CompiledPolicy`],
//! plain typed data, and the `enforce` side turns it into map bytes. That
//! keeps validation, signing, history and the audit log testable without
//! privilege, and keeps the kernel layout in one place (next to `bpf/`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

pub mod audit;
pub mod canonical;
pub mod cidr;
pub mod compile;
pub mod manager;
pub mod parse;
pub mod problem;
pub mod signature;
pub mod source;
pub mod validate;

pub use manager::{Manager, ManagerError, ManagerSettings};
pub use parse::{Policy, PortRange, Rule};
pub use problem::{Problem, ProblemKind, Problems};
pub use signature::{verify, KeyId};
pub use source::{read_sources, signature_path, SourceFile};
pub use validate::{Protected, ValidationContext};

/// What a matching rule does to a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through, emit nothing (ends evaluation: a higher-priority
    /// allow carves an exception out of a broader deny).
    Allow,
    /// Refuse with EPERM and emit an event naming the rule.
    Deny,
    /// Let it through and emit the same event a deny would.
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Audit => "audit",
        }
    }
}

/// Whether denies are enforced. A new policy is `DryRun` unless it says
/// otherwise: every deny it would make is reported as an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    DryRun,
    Enforce,
}

/// The transport a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
}

/// One rule as the kernel evaluates it inside a prefix's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelRule {
    /// FNV-1a 32 of the rule's id string ([`rule_key`]); unique within a
    /// policy (a collision is a validation error) and stable across
    /// policies, so an event read after the next apply still names its
    /// rule.
    pub rule_key: u32,
    pub action: Action,
    /// Higher first. Lists are already sorted in evaluation order; the
    /// kernel takes the first rule that matches.
    pub priority: u16,
    /// Destination port range, host order, inclusive (0..=65535: any).
    pub port_lo: u16,
    pub port_hi: u16,
    pub protocol: Protocol,
    /// Index into [`CompiledPolicy::exes`]; `None`: any process.
    pub exe: Option<u16>,
    /// Index into [`CompiledPolicy::cgroups`]; `None`: any cgroup.
    pub cgroup: Option<u16>,
}

/// Every rule whose CIDR covers `prefix`, in evaluation order. The kernel's
/// LPM trie returns the longest prefix that contains a destination, so a
/// prefix's list includes the rules of every shorter prefix covering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixEntry<A> {
    pub addr: A,
    pub prefix_len: u8,
    pub rules: Vec<KernelRule>,
}

/// What an operator's rule was, for events, /health and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub key: u32,
    pub description: String,
    pub action: Action,
}

/// At most this many rules in one prefix's list (the kernel's bounded loop).
pub const MAX_RULES_PER_PREFIX: usize = 8;
/// At most this many prefix entries per address family.
pub const MAX_PREFIXES: usize = 131_072;

/// A validated policy, ready for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub mode: Mode,
    /// Hex SHA-256 of the policy's canonical bytes.
    pub digest: String,
    pub rules: Vec<RuleInfo>,
    pub v4: Vec<PrefixEntry<Ipv4Addr>>,
    pub v6: Vec<PrefixEntry<Ipv6Addr>>,
    /// Executable paths named by process matchers; the applier resolves
    /// each to what the kernel compares (e.g. the inode).
    pub exes: Vec<String>,
    /// cgroup v2 paths named by process matchers; the applier resolves each
    /// to its cgroup id.
    pub cgroups: Vec<String>,
}

impl CompiledPolicy {
    /// The policy that enforces nothing (start-up, `clear --emergency`
    /// of a policy that had only denies).
    pub fn empty() -> CompiledPolicy {
        CompiledPolicy {
            mode: Mode::DryRun,
            digest: String::new(),
            rules: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            exes: Vec::new(),
            cgroups: Vec::new(),
        }
    }

    /// The operator's id of a kernel rule key.
    pub fn rule_id(&self, key: u32) -> Option<&str> {
        self.rules.iter().find(|rule| rule.key == key).map(|rule| rule.id.as_str())
    }
}

/// FNV-1a 32 of a rule id: the key the kernel carries in events.
pub fn rule_key(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A policy that passed every check: what was written, its canonical
/// text (signed, hashed, kept in history) and what the kernel gets.
#[derive(Debug, Clone)]
pub struct Checked {
    pub policy: Policy,
    pub canonical: String,
    pub compiled: CompiledPolicy,
}

/// Validates and compiles one policy text; `origin` names it in problems.
pub fn compile_str(text: &str, origin: &Path, context: &ValidationContext) -> Result<CompiledPolicy, Problems> {
    check_files(&[SourceFile::new(origin, text)], context).map(|checked| checked.compiled)
}

/// Validates and compiles the policy file or directory at `path`.
pub fn compile_path(path: &Path, context: &ValidationContext) -> Result<CompiledPolicy, Problems> {
    check_path(path, context).map(|checked| checked.compiled)
}

/// [`compile_path`], keeping the parsed policy and its canonical text.
pub fn check_path(path: &Path, context: &ValidationContext) -> Result<Checked, Problems> {
    check_files(&read_sources(path)?, context)
}

/// Parses, validates and compiles `files` as one policy, reporting every
/// problem of every stage that could run.
pub fn check_files(files: &[SourceFile], context: &ValidationContext) -> Result<Checked, Problems> {
    let (policy, problems) = parse_files(files);
    finish(policy, problems, None, context)
}

/// Stages 2 and 3 after a parse: validation (also when the parse found
/// problems, so one run reports them all), then compilation.
/// `canonical`: the policy's canonical text when the caller already made it.
pub(crate) fn finish(
    policy: Policy,
    mut problems: Vec<Problem>,
    canonical: Option<String>,
    context: &ValidationContext,
) -> Result<Checked, Problems> {
    validate::check(&policy, context, &mut problems);
    if !problems.is_empty() {
        return Err(Problems::sorted(problems));
    }
    let canonical = canonical.unwrap_or_else(|| canonical::canonical(&policy));
    match compile::compile(&policy, &canonical, &mut problems) {
        Some(compiled) if problems.is_empty() => Ok(Checked { policy, canonical, compiled }),
        _ => Err(Problems::sorted(problems)),
    }
}

/// Stage 1 only: the policy as written and the problems of its syntax and
/// fields. Signing needs no more than this.
pub fn parse_files(files: &[SourceFile]) -> (Policy, Vec<Problem>) {
    let mut problems = Vec::new();
    let policy = parse::parse(files, &mut problems);
    (policy, problems)
}

/// Why a policy change was refused. The running policy stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unsigned: no signature at {}", expected.display())]
    Unsigned { expected: PathBuf },
    #[error("unknown key: `{key_id}` is not in the trust store")]
    UnknownKey { key_id: String },
    #[error("bad signature: the policy is not what key {key} signed (tampered, or signed before an edit)")]
    BadSignature { key: String },
    #[error("signature required, but no trust store is configured")]
    NoTrustStore,
    #[error("unreadable: {reason}")]
    Unreadable { reason: String },
    #[error("invalid policy:\n{0}")]
    Invalid(Problems),
    #[error("rate limit: {applies} applies in the last minute")]
    RateLimited { applies: usize },
    #[error("no policy {steps} step(s) back: history holds {available} earlier one(s)")]
    NoHistory { steps: usize, available: usize },
}

impl Rejection {
    /// A short, stable word for metrics labels and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Unsigned { .. } => "unsigned",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::BadSignature { .. } => "bad_signature",
            Rejection::NoTrustStore => "no_trust_store",
            Rejection::Unreadable { .. } => "unreadable",
            Rejection::Invalid(_) => "invalid",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::NoHistory { .. } => "no_history",
        }
    }
}
