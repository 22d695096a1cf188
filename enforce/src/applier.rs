//! The applier: one plain thread (reading files, hashing, verifying
//! signatures and writing maps are blocking work: never on the runtime)
//! that owns the policy maps and is the only writer of them.
//!
//! It wakes every `poll_interval` (or on a request: SIGHUP, a handle's
//! rollback / clear / reload) and:
//! - compares a fingerprint of the policy path (names, sizes, mtimes of the
//!   file and its signature, or of a directory's entries); on a change it
//!   asks the [`Store`] (`policy::Manager`: validation, signature, rate
//!   limit) to `propose`, installs what it accepts, then `commit`s it to
//!   history and the audit log. A refused or failed change leaves the
//!   running policy in place and says why (log, diag event, `/health`);
//! - reads the kernel's decision counters and adds what is new to
//!   `hostflow_enforce_decisions_total{action}` and
//!   `hostflow_enforce_reserve_failures_total`.
//!
//! Start: the policy path is proposed at once; when it is refused, the
//! last committed policy (the store's `current`) is installed instead, so
//! a restart with a broken file keeps the last good policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use metrics::{Counter, Gauge};
use policy::{CompiledPolicy, Mode};

use crate::maps::PolicyMaps;
use crate::{layout, resolve, Decisions, EnforceError, EnforceHandle, EnforceMode, Request, Status};

/// Decisions the kernel made, by action (`allowed`, `denied`, `audited`).
pub const DECISIONS_TOTAL: &str = "hostflow_enforce_decisions_total";
/// Verdict records the ring buffer could not take.
pub const RESERVE_FAILURES_TOTAL: &str = "hostflow_enforce_reserve_failures_total";
/// Policy changes by result (`applied`, `unchanged`, `rejected`, `failed`,
/// `rollback`, `clear`).
pub const APPLIES_TOTAL: &str = "hostflow_enforce_applies_total";
/// Rules of the running policy.
pub const RULES: &str = "hostflow_enforce_rules";

/// Where policies come from and where their history goes:
/// `policy::Manager` in the agent, a fake in tests.
pub trait Store: Send + 'static {
    /// Reads, verifies and validates the policy at `path` (rate limit
    /// included); the policy to install, or why not.
    fn propose(&mut self, path: &Path, now: SystemTime) -> Result<CompiledPolicy, String>;
    /// Records that `policy` now runs (`what`: `apply`, `rollback`, `clear`).
    fn commit(&mut self, policy: &CompiledPolicy, what: &str, now: SystemTime) -> Result<(), String>;
    /// The policy `steps` applies back.
    fn rollback(&mut self, steps: usize, now: SystemTime) -> Result<CompiledPolicy, String>;
    /// The running policy without its denies.
    fn emergency_clear(&mut self, now: SystemTime) -> Result<CompiledPolicy, String>;
    /// The last committed policy (survives restarts).
    fn current(&self) -> Option<CompiledPolicy>;
}

/// What the applier writes policies into: the kernel maps, a fake in tests.
pub trait Kernel: Send + 'static {
    fn install(&mut self, policy: &CompiledPolicy, generation: u32) -> Result<(), EnforceError>;
    fn decisions(&self) -> Result<Decisions, EnforceError>;
}

/// The real kernel side: the maps plus what resolution needs.
pub struct KernelMaps {
    pub maps: PolicyMaps,
    /// The cgroup2 mount, for cgroup matchers.
    pub cgroup_mount: Option<PathBuf>,
}

impl Kernel for KernelMaps {
    fn install(&mut self, policy: &CompiledPolicy, generation: u32) -> Result<(), EnforceError> {
        let resolved = resolve::policy(policy, self.cgroup_mount.as_deref())?;
        let encoded = layout::encode(policy, generation, &resolved)?;
        let stats = self.maps.install(&encoded)?;
        tracing::debug!(
            v4 = stats.v4_prefixes,
            v6 = stats.v6_prefixes,
            elapsed_ms = stats.elapsed.as_millis() as u64,
            "policy maps written"
        );
        Ok(())
    }

    fn decisions(&self) -> Result<Decisions, EnforceError> {
        self.maps.decisions()
    }
}

/// Told every new [`Status`] (the source writes it into `/health`).
pub type StatusCallback = Box<dyn Fn(&Status) + Send>;

/// How the applier runs.
pub struct ApplierSettings {
    /// The source's name: metric label, diag module, thread name.
    pub component: String,
    /// The policy file or directory.
    pub policy: PathBuf,
    /// The enforced cgroup, for `/health`.
    pub cgroup: String,
    pub poll_interval: Duration,
    /// Called with the new status whenever it changes (the source puts it
    /// in `/health` details).
    pub on_status: Option<StatusCallback>,
    /// Where rule ids are published per generation, before the kernel
    /// sees the policy, so the reader names the rule of every verdict.
    pub names: Option<pipeline::event::RuleNames>,
    /// The agent's health: after an apply, a sink that was healthy and
    /// turns degraded or failed within [`ApplierSettings::probation`]
    /// (e.g. the policy cut it off from its broker) rolls the policy back
    /// one step at once.
    pub health: Option<pipeline::health::Health>,
    pub probation: Duration,
}

/// How long after an apply a sink going unhealthy rolls it back.
pub const DEFAULT_PROBATION: Duration = Duration::from_secs(30);

/// The sinks that are degraded or failed now.
fn unhealthy_sinks(health: &pipeline::health::Health) -> Vec<String> {
    use pipeline::health::ComponentState;
    health
        .report()
        .components
        .into_iter()
        .filter(|(_, c)| c.kind == "sink" && matches!(c.state, ComponentState::Degraded | ComponentState::Failed))
        .map(|(name, _)| name)
        .collect()
}

/// A running applier. Dropping it (or [`Applier::stop`]) ends the thread.
pub struct Applier {
    handle: EnforceHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Applier {
    /// The handle rollback, clear and status go through.
    pub fn handle(&self) -> &EnforceHandle {
        &self.handle
    }

    /// Stops the thread and waits for it (the maps are released with it).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.poke();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("enforce: the applier thread panicked");
            }
        }
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Metric handles, registered once.
struct Handles {
    allowed: Counter,
    denied: Counter,
    audited: Counter,
    reserve_failures: Counter,
    rules: Gauge,
    component: String,
}

impl Handles {
    fn new(component: &str) -> Handles {
        metrics::describe_counter!(
            DECISIONS_TOTAL,
            metrics::Unit::Count,
            "Connects a network policy rule decided, by action (the kernel's per-CPU count)."
        );
        metrics::describe_counter!(
            RESERVE_FAILURES_TOTAL,
            metrics::Unit::Count,
            "Policy verdict records the ring buffer could not take."
        );
        metrics::describe_counter!(APPLIES_TOTAL, metrics::Unit::Count, "Network policy changes, by result.");
        metrics::describe_gauge!(RULES, metrics::Unit::Count, "Rules of the running network policy.");
        let decision = |action: &'static str| metrics::counter!(DECISIONS_TOTAL, "component" => component.to_owned(), "action" => action);
        Handles {
            allowed: decision("allowed"),
            denied: decision("denied"),
            audited: decision("audited"),
            reserve_failures: metrics::counter!(RESERVE_FAILURES_TOTAL, "component" => component.to_owned()),
            rules: metrics::gauge!(RULES, "component" => component.to_owned()),
            component: component.to_owned(),
        }
    }

    fn apply(&self, result: &'static str) {
        metrics::counter!(APPLIES_TOTAL, "component" => self.component.clone(), "result" => result).increment(1);
    }
}

/// Starts the applier thread: installs the policy at the path (or the last
/// committed one), registers the handle ([`crate::register`]) and forwards
/// SIGHUP to it when called inside a tokio runtime.
pub fn spawn<S: Store, K: Kernel>(store: S, kernel: K, settings: ApplierSettings) -> std::io::Result<Applier> {
    let (sender, requests) = mpsc::channel();
    let status = Arc::new(Mutex::new(Status { cgroup: settings.cgroup.clone(), ..Status::default() }));
    let handle = EnforceHandle::new(sender.clone(), Arc::clone(&status));
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = Worker {
        store,
        kernel,
        handles: Handles::new(&settings.component),
        exported: Decisions::default(),
        status,
        generation: 0,
        running: None,
        fingerprint: fingerprint(&settings.policy),
        settings,
        stop: Arc::clone(&stop),
        probation: None,
    };
    let name = format!("enforce-{}", worker.settings.component);
    let thread = std::thread::Builder::new().name(name).spawn(move || worker.run(&requests))?;
    hangup_pokes(sender);
    Ok(Applier { handle, stop, thread: Some(thread) })
}

/// Forwards SIGHUP to the applier (when running inside a tokio runtime).
fn hangup_pokes(sender: mpsc::Sender<Request>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            if sender.send(Request::Reload { reply: None }).is_err() {
                return;
            }
        }
    });
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Names, sizes and mtimes of what the policy path holds: the file and
/// anything beside it starting with its name (its signature), or a
/// directory's entries.
fn fingerprint(path: &Path) -> Fingerprint {
    let stat = |p: PathBuf| {
        let meta = std::fs::metadata(&p).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta.and_then(|m| m.modified().ok());
        (p, len, mtime)
    };
    let (dir, prefix) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf), Some(name))
    };
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| match &prefix {
                None => true,
                Some(name) => p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(name.as_str())),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries.into_iter().map(stat).collect()
}

struct Worker<S, K> {
    store: S,
    kernel: K,
    handles: Handles,
    exported: Decisions,
    status: Arc<Mutex<Status>>,
    generation: u32,
    /// The policy in the kernel.
    running: Option<CompiledPolicy>,
    fingerprint: Fingerprint,
    settings: ApplierSettings,
    stop: Arc<AtomicBool>,
    /// After an apply: until when sinks are watched, and which were
    /// already unhealthy before it (they do not count).
    probation: Option<(Instant, Vec<String>)>,
}

impl<S: Store, K: Kernel> Worker<S, K> {
    fn run(&mut self, requests: &mpsc::Receiver<Request>) {
        let now = SystemTime::now();
        if let Err(reason) = self.apply_path(now) {
            match self.store.current() {
                Some(last) => {
                    tracing::warn!(component = %self.settings.component, %reason,
                        "enforce: the policy path was refused at start; installing the last applied policy");
                    if let Err(error) = self.install(last, "restore") {
                        self.fail(format!("cannot restore the last applied policy: {error}"));
                    }
                }
                None => self.set_error(Some(reason)),
            }
        }
        let mut last_read = Instant::now();
        self.refresh();
        loop {
            let request = requests.recv_timeout(self.settings.poll_interval);
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let now = SystemTime::now();
            match request {
                Ok(Request::Reload { reply }) => {
                    self.fingerprint = fingerprint(&self.settings.policy);
                    let result = self.apply_path(now);
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Ok(Request::Rollback { steps, reply }) => {
                    let result = self.store.rollback(steps, now).and_then(|p| self.install_commit(p, "rollback", now));
                    let _ = reply.send(result);
                }
                Ok(Request::Clear { reply }) => {
                    let result = self.store.emergency_clear(now).and_then(|p| self.install_commit(p, "clear", now));
                    let _ = reply.send(result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now_print = fingerprint(&self.settings.policy);
                    if now_print != self.fingerprint {
                        self.fingerprint = now_print;
                        let _ = self.apply_path(now);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.watch_probation(now);
            if last_read.elapsed() >= self.settings.poll_interval.min(Duration::from_secs(1)) {
                last_read = Instant::now();
                self.refresh();
            }
        }
    }

    /// Rolls back one step when a sink turned unhealthy since the last
    /// apply, within its probation.
    fn watch_probation(&mut self, now: SystemTime) {
        let Some((until, before)) = &self.probation else { return };
        if Instant::now() > *until {
            self.probation = None;
            return;
        }
        let Some(health) = &self.settings.health else { return };
        let newly: Vec<String> = unhealthy_sinks(health).into_iter().filter(|s| !before.contains(s)).collect();
        if newly.is_empty() {
            return;
        }
        self.probation = None;
        let reason = format!("sink(s) {} turned unhealthy right after the apply", newly.join(", "));
        let result = self.store.rollback(1, now).and_then(|p| self.install_commit(p, "auto_rollback", now));
        match result {
            Ok(digest) => {
                let message = format!("{reason}: rolled back to {digest}");
                tracing::warn!(component = %self.settings.component, %message, "enforce: automatic rollback");
                pipeline::diag::emit(&self.settings.component, "policy_auto_rollback", message.clone());
                self.set_error(Some(message));
            }
            Err(error) => self.fail(format!("{reason}, and the automatic rollback failed: {error}")),
        }
    }

    /// Proposes the policy path; installs and commits what is accepted.
    fn apply_path(&mut self, now: SystemTime) -> Result<String, String> {
        let policy = match self.store.propose(&self.settings.policy, now) {
            Ok(policy) => policy,
            Err(reason) => {
                self.handles.apply("rejected");
                let reason =
                    format!("policy {} refused, the running policy stays: {reason}", self.settings.policy.display());
                pipeline::diag::emit(&self.settings.component, "policy_rejected", reason.clone());
                self.set_error(Some(reason.clone()));
                return Err(reason);
            }
        };
        if self.running.as_ref().is_some_and(|running| running.digest == policy.digest && running.mode == policy.mode) {
            self.handles.apply("unchanged");
            self.set_error(None);
            return Ok(policy.digest);
        }
        let before = self.settings.health.as_ref().map(unhealthy_sinks).unwrap_or_default();
        // The first policy has nothing to go back to.
        let had_previous = self.running.is_some();
        let applied = self.install_commit(policy, "apply", now)?;
        if self.settings.health.is_some() && had_previous {
            self.probation = Some((Instant::now() + self.settings.probation, before));
        }
        Ok(applied)
    }

    fn install_commit(
        &mut self,
        policy: CompiledPolicy,
        what: &'static str,
        now: SystemTime,
    ) -> Result<String, String> {
        let digest = policy.digest.clone();
        let snapshot = policy.clone();
        self.install(policy, what).map_err(|error| {
            let reason = format!("cannot install the policy ({what}), the running policy stays: {error}");
            self.fail(reason.clone());
            reason
        })?;
        if let Err(error) = self.store.commit(&snapshot, what, now) {
            // In the kernel, not in history: say so, keep running it.
            tracing::error!(component = %self.settings.component, %error, "enforce: applied but not recorded");
            pipeline::diag::emit(
                &self.settings.component,
                "policy_unrecorded",
                format!("applied ({what}) but not recorded: {error}"),
            );
        }
        Ok(digest)
    }

    fn install(&mut self, policy: CompiledPolicy, what: &'static str) -> Result<(), EnforceError> {
        let generation = self.generation.wrapping_add(1);
        let started = Instant::now();
        if let Some(names) = &self.settings.names {
            names.publish(generation, &policy.digest, policy.rules.iter().map(|rule| (rule.key, rule.id.as_str())));
        }
        self.kernel.install(&policy, generation)?;
        self.generation = generation;
        self.handles.apply(match what {
            "apply" | "restore" => "applied",
            "rollback" => "rollback",
            _ => "clear",
        });
        self.handles.rules.set(policy.rules.len() as f64);
        tracing::info!(component = %self.settings.component, what, digest = %policy.digest, rules = policy.rules.len(),
            mode = ?policy.mode, generation, elapsed_ms = started.elapsed().as_millis() as u64, "enforce: policy installed");
        self.update(|status| {
            status.mode = match policy.mode {
                Mode::DryRun => EnforceMode::DryRun,
                Mode::Enforce => EnforceMode::Enforce,
            };
            status.digest = policy.digest.clone();
            status.rules = policy.rules.len();
            status.generation = generation;
            status.error = None;
        });
        self.running = Some(policy);
        Ok(())
    }

    fn fail(&mut self, reason: String) {
        self.handles.apply("failed");
        pipeline::diag::emit(&self.settings.component, "policy_failed", reason.clone());
        self.set_error(Some(reason));
    }

    fn set_error(&mut self, error: Option<String>) {
        self.update(|status| status.error = error);
    }

    /// Reads the counters; exports what is new.
    fn refresh(&mut self) {
        let now = match self.kernel.decisions() {
            Ok(now) => now,
            Err(error) => {
                tracing::debug!(component = %self.settings.component, %error, "enforce: counters unreadable");
                return;
            }
        };
        let old = self.exported;
        self.handles.allowed.increment(now.allowed.saturating_sub(old.allowed));
        self.handles.denied.increment(now.denied.saturating_sub(old.denied));
        self.handles.audited.increment(now.audited.saturating_sub(old.audited));
        self.handles.reserve_failures.increment(now.reserve_failures.saturating_sub(old.reserve_failures));
        self.exported = now;
        if now != old {
            self.update(|status| status.decisions = now);
        }
    }

    fn update(&mut self, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut status = match self.status.lock() {
                Ok(status) => status,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = status.clone();
            change(&mut status);
            (*status != before).then(|| status.clone())
        };
        if let (Some(status), Some(callback)) = (snapshot, &self.settings.on_status) {
            callback(&status);
        }
    }
}

#[cfg(test)]
#[path = "applier_tests.rs"]
mod tests;
