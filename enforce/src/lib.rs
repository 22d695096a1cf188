//! Network enforcement (issue #17): the userspace half of the kernel's
//! policy decision.
//!
//! The `policy` crate turns policy files into a validated
//! [`policy::CompiledPolicy`]; this crate turns that into the bytes of the
//! kernel maps `bpf/policy.bpf.h` declares ([`layout`]), writes them
//! ([`maps`]: a fresh LPM trie per family, swapped into a one-slot
//! `ARRAY_OF_MAPS` — one pointer exchange, so a connect sees the old
//! policy or the new one, never half), and runs the **applier**
//! ([`applier`]): one plain thread that watches the policy path (a
//! fingerprint of names, sizes and mtimes, every second, and SIGHUP),
//! hands changes to `policy::Manager` (validation, signature, rate limit,
//! history, audit log), applies what it accepts, and serves the requests
//! of an [`EnforceHandle`]: rollback, emergency clear, status.
//!
//! Who owns what: the `ebpf` source loads the object (the connect program
//! observes and enforces in one hook), takes the policy maps out of it
//! ([`maps::PolicyMaps`]) and starts the applier with them; the applier
//! registers its handle here ([`register`]) so the agent's HTTP endpoints
//! (`/policy/rollback`, `/policy/clear`) and the CLI reach it without
//! knowing the source.
//!
//! ```text
//!   policy dir ──fingerprint/SIGHUP──▶ applier thread ──propose/commit──▶ policy::Manager
//!   EnforceHandle ──Request + reply──▶      │
//!                                           ▼ encode (layout) + install (maps)
//!                            hf_policy_v4 / hf_policy_v6 slot 0 ◀── cgroup/connect4+6
//! ```

pub mod applier;
pub mod config;
pub mod layout;
pub mod maps;
pub mod resolve;
pub mod store;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use applier::{spawn, ApplierSettings, Store};
pub use config::{EnforceConfig, EnforceSettings};
pub use maps::PolicyMaps;
/// The policy crate, so users of this one name its types through it.
pub use policy;
pub use store::open_manager;

/// How long a caller of [`EnforceHandle`] waits for the applier's answer
/// (an apply of 100 000 rules takes well under a second).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What enforcement is doing, as `/health` shows it (the ebpf source's
/// `details.enforce`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforceMode {
    /// No policy in the kernel (none yet, or enforcement failed to start:
    /// `error` says why).
    #[default]
    Off,
    /// A policy is loaded; its denies are only reported (`audit` events
    /// with the dry-run flag).
    DryRun,
    /// A policy is loaded and its denies refuse connects with EPERM.
    Enforce,
}

/// The kernel's per-CPU decision counters, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Connects that matched an allow rule.
    pub allowed: u64,
    /// Connects refused (enforcing denies).
    pub denied: u64,
    /// Connects let through and reported: audit rules and dry-run denies.
    pub audited: u64,
    /// Verdict records the ring buffer could not take (the decision itself
    /// still happened).
    pub reserve_failures: u64,
}

/// A snapshot of the applier's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub mode: EnforceMode,
    /// The enforced cgroup (relative to the cgroup2 mount; `/` = every process).
    pub cgroup: String,
    /// Hex SHA-256 of the running policy (empty: none).
    pub digest: String,
    /// Rules in the running policy.
    pub rules: usize,
    /// Generation of the running policy in the kernel (every install
    /// increments it; verdict records carry it).
    pub generation: u32,
    /// Why enforcement is not running, or why the last change was refused
    /// (the running policy stays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kernel's decision counters at the last read.
    pub decisions: Decisions,
}

/// One request to the applier thread, with where to send its answer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Roll back this many applies (1: the previous policy).
    Rollback { steps: usize, reply: mpsc::Sender<Result<String, String>> },
    /// Install a policy without any deny (`policy clear --emergency`).
    Clear { reply: mpsc::Sender<Result<String, String>> },
    /// Re-read the policy path now (SIGHUP, tests).
    Reload { reply: Option<mpsc::Sender<Result<String, String>>> },
}

/// The applier's control surface: cheap to clone, usable from any thread
/// (the calls block until the applier answers, at most [`REPLY_TIMEOUT`];
/// from async code call them on the blocking pool).
#[derive(Clone, Debug)]
pub struct EnforceHandle {
    requests: mpsc::Sender<Request>,
    status: Arc<Mutex<Status>>,
}

impl EnforceHandle {
    pub(crate) fn new(requests: mpsc::Sender<Request>, status: Arc<Mutex<Status>>) -> EnforceHandle {
        EnforceHandle { requests, status }
    }

    /// Rolls back `steps` applies (1 = the policy before the current one)
    /// and installs it. `Ok(digest)` of the policy now running; `Err` with
    /// the reason when there is no such entry or the install failed (the
    /// running policy stays).
    pub fn rollback(&self, steps: usize) -> Result<String, String> {
        self.ask(|reply| Request::Rollback { steps, reply })
    }

    /// Emergency clear: installs the running policy without any deny at
    /// once (no rate limit). `Ok(digest)` of what now runs.
    pub fn clear(&self) -> Result<String, String> {
        self.ask(|reply| Request::Clear { reply })
    }

    /// Re-reads the policy path now, as SIGHUP does. `Ok(digest)` of what
    /// runs afterwards (unchanged when nothing changed); `Err` with the
    /// rejection (the running policy stays).
    pub fn reload(&self) -> Result<String, String> {
        self.ask(|reply| Request::Reload { reply: Some(reply) })
    }

    /// The applier's state and the kernel's counters (as of the applier's
    /// last read, at most a second old).
    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Wakes the applier to re-read the policy path, without waiting.
    pub fn poke(&self) -> bool {
        self.requests.send(Request::Reload { reply: None }).is_ok()
    }

    fn ask(&self, request: impl FnOnce(mpsc::Sender<Result<String, String>>) -> Request) -> Result<String, String> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(request(reply))
            .map_err(|_| "enforcement is not running (the applier stopped)".to_owned())?;
        match answer.recv_timeout(REPLY_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("the applier did not answer within {} s", REPLY_TIMEOUT.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the applier stopped before answering".to_owned()),
        }
    }
}

/// Starts enforcement for an `ebpf` source whose object was loaded with
/// the cgroup of [`resolve::target`]: opens `policy::Manager` on the
/// settings' state directory, then spawns the applier over `maps`.
pub fn start(
    settings: &EnforceSettings,
    maps: PolicyMaps,
    component: &str,
    cgroup_mount: Option<std::path::PathBuf>,
    names: Option<pipeline::event::RuleNames>,
    on_status: Option<applier::StatusCallback>,
    health: Option<pipeline::health::Health>,
) -> Result<applier::Applier, EnforceError> {
    let manager = open_manager(settings)?;
    let applier_settings = ApplierSettings {
        component: component.to_owned(),
        policy: settings.policy.clone(),
        cgroup: settings.cgroup.clone(),
        poll_interval: Duration::from_millis(settings.poll_interval_ms),
        on_status,
        names,
        health,
        probation: applier::DEFAULT_PROBATION,
    };
    spawn(manager, applier::KernelMaps { maps, cgroup_mount }, applier_settings)
        .map_err(|error| EnforceError::State(format!("cannot start the applier thread: {error}")))
}

/// The agent's `/policy/rollback` and `/policy/clear` endpoints act on the
/// running applier through this; the `ebpf` source registers its handle in
/// the `Health` policy slot when enforcement starts. A stopped applier is
/// `Unavailable` (503); anything it refuses is `Refused` (409).
impl pipeline::api::PolicyControl for EnforceHandle {
    fn rollback(&self, steps: u32) -> Result<String, pipeline::api::PolicyControlError> {
        EnforceHandle::rollback(self, steps as usize).map_err(control_error)
    }

    fn clear(&self) -> Result<String, pipeline::api::PolicyControlError> {
        EnforceHandle::clear(self).map_err(control_error)
    }
}

fn control_error(reason: String) -> pipeline::api::PolicyControlError {
    if reason.contains("not running") || reason.contains("stopped") || reason.contains("did not answer") {
        pipeline::api::PolicyControlError::Unavailable(reason)
    } else {
        pipeline::api::PolicyControlError::Refused(reason)
    }
}

/// Why enforcement could not be set up or a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("eBPF map `{map}`: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("{prefixes} {family} prefixes do not fit the kernel map (at most {max})")]
    TooMany { family: &'static str, prefixes: usize, max: usize },
    #[error("cannot resolve {what} `{path}`: {reason}")]
    Resolve { what: &'static str, path: String, reason: String },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("policy state: {0}")]
    State(String),
}
