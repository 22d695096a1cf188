//! The `enrich` transform: attaches one shared [`ProcessContext`] to every
//! process-bearing event, from a bounded [`ProcessTable`] fed by the
//! events themselves (issue #14).
//!
//! ```toml
//! [transforms.enrich]
//! type = "enrich"
//! inputs = ["kernel"]
//! capacity = 65536        # processes in the table (live and recently exited)
//! exited_grace_secs = 30  # how long an exited process still resolves
//! ancestry_depth = 32     # ancestors kept per context, parent first
//! ```
//!
//! What feeds the table: `ProcessSnapshot` (processes already running when
//! the source started, oldest first, so a parent is in before its
//! children), `ProcessFork` (the child inherits the parent's context with
//! origin `fork`), `ProcessExec` (a new context with origin `exec`; the
//! entry keeps the parent link it had from its fork or snapshot, and an
//! exec whose fork was missed finds its parent by `ppid` among the live
//! entries), `ProcessExit` (marked exited; expires `exited_grace_secs`
//! later) and `ExeHash` (the hash fields of a context that was waiting for
//! them). Every other process-bearing kind only reads it.
//!
//! One `Arc` per process: every event of a process carries a clone of the
//! same `Arc<ProcessContext>` (a reference-count bump). A context is never
//! changed in place; an exec or a hash builds a new one, so an event that
//! already left keeps what was true when it left.
//!
//! Ancestry is inherited, not walked per event: a new context's ancestry is
//! `[parent] + parent's ancestry` (cut at `ancestry_depth`), and its
//! lineage is the parent's (`complete` when the chain reaches a process
//! whose parent pid is 0: pid 1 or kthreadd). So a process keeps its full
//! lineage after its ancestors exit and expire from the table (a daemon
//! whose parent exited long ago, `nohup` jobs of a closed shell), where a
//! walk of the table at exec time would stop at the first expired
//! ancestor. The ancestors of every context built are touched in the table
//! so an idle ancestor of a busy subtree (init, sshd) stays warm under
//! churn and its next fork still resolves. The lineage ends the table's
//! walk would report map one to one: root → `complete`, depth limit →
//! `depth_limit`, missing parent → `parent_unknown`, a key already in the
//! chain → `cycle` (a pid reused within one 10 ms start-time tick).
//!
//! Nothing unknown is passed off as known. An event of a process the table
//! does not hold gets one shared `ProcessContext::unknown()` (lineage
//! `process_unknown`, origin `unknown`) — unless it arrived with a context
//! already (a replayed spool), which is kept. An exec without kernel
//! attributes (the /proc fallback) has `u32::MAX` / `""` for euid, user,
//! cwd, tty, login uid, session and cgroup, hash `not_requested`, and an
//! empty container runtime: `host` means "in no container", and with no
//! cgroup path that is not known. Each event that leaves with lineage
//! `process_unknown`, `parent_unknown` or `cycle` is counted in
//! `hostflow_enrich_lineage_missing_total{component,reason}`.
//!
//! Time is the events' `ts_ns` (boot time, the clock of start times and
//! exits), never the agent's clock: under replay the wall clock has nothing
//! to do with the recorded events. Exited entries are expired before each
//! event against the latest `ts_ns` seen, so the output depends only on the
//! order of events, not on batch boundaries or tick timing. The tick has no
//! event time of its own; it expires against that same latest `ts_ns`
//! (which removes exactly what the next event would) and exports
//! `hostflow_enrich_table_entries` and `hostflow_enrich_evictions_total`.
//!
//! Costs: an event of a known process is one hash lookup (which also marks
//! the process recently used) and an `Arc` clone, or only the clone when
//! the previous such event was of the same process; expiry is one
//! comparison unless something expires. A fork (or an exec whose fork was
//! missed, or a snapshot) copies the parent's ancestry (up to
//! `ancestry_depth` pairs of `Arc<str>`) and touches each ancestor; the
//! exec that follows a fork moves the ancestry out of the fork's copy,
//! which nothing else holds, instead of copying it again.
//! The container of a cgroup path is parsed once and cached (bounded).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use pipeline::event::context::args_head;
use pipeline::event::{
    Ancestor, ContextOrigin, ExeHash, HashState, Lineage, ProcessContext, ProcessExec, ProcessFork, ProcessSnapshot,
};
use pipeline::{Batch, ComponentOptions, ConfigError, Event, Output, ProcessKey, Transform};
use serde::Deserialize;
use toml::Spanned;

use super::container::{container_of, Runtime};
use super::table::{EvictionCounts, EvictionReason, ProcessTable, DEFAULT_ANCESTRY_DEPTH};

/// Events that left with a lineage that is not whole, by `reason`
/// (`process_unknown`, `parent_unknown`, `cycle`).
pub const LINEAGE_MISSING_TOTAL: &str = "hostflow_enrich_lineage_missing_total";
/// Entries (live and exited) in the process table.
pub const TABLE_ENTRIES: &str = "hostflow_enrich_table_entries";
/// Entries that left the table, by `reason` (`capacity`, `exited_grace`).
pub const EVICTIONS_TOTAL: &str = "hostflow_enrich_evictions_total";

/// Default bound on table entries.
pub const DEFAULT_CAPACITY: u32 = 65_536;
/// Largest `capacity` accepted (2^24 entries is several GiB of contexts).
pub const MAX_CAPACITY: i64 = 1 << 24;
/// Default grace period of an exited process, in seconds.
pub const DEFAULT_EXITED_GRACE_SECS: f64 = 30.0;
/// Longest grace period accepted, in seconds.
pub const MAX_EXITED_GRACE_SECS: f64 = 86_400.0;
/// Deepest `ancestry_depth` accepted.
pub const MAX_ANCESTRY_DEPTH: i64 = 256;
/// Cgroup paths whose container is cached; the cache starts over when full.
pub const CONTAINER_CACHE_ENTRIES: usize = 4_096;
/// How often gauges and eviction counters are exported while idle.
pub const TICK: Duration = Duration::from_secs(1);

/// `[transforms.NAME] type = "enrich"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Most processes held (live and exited). Default 65536.
    #[serde(default = "default_capacity")]
    pub capacity: Spanned<i64>,
    /// Seconds an exited process still resolves for late events. Default 30.
    #[serde(default = "default_exited_grace_secs")]
    pub exited_grace_secs: Spanned<f64>,
    /// Most ancestors per context, parent first. Default 32.
    #[serde(default = "default_ancestry_depth")]
    pub ancestry_depth: Spanned<i64>,
}

fn default_capacity() -> Spanned<i64> {
    Spanned::new(0..0, i64::from(DEFAULT_CAPACITY))
}

fn default_exited_grace_secs() -> Spanned<f64> {
    Spanned::new(0..0, DEFAULT_EXITED_GRACE_SECS)
}

fn default_ancestry_depth() -> Spanned<i64> {
    Spanned::new(0..0, DEFAULT_ANCESTRY_DEPTH as i64)
}

/// Validated settings, for building an [`Enrich`] without a topology
/// (tests, benches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrichSettings {
    pub capacity: NonZeroU32,
    pub exited_grace_ns: u64,
    /// At least 1.
    pub ancestry_depth: usize,
}

impl Default for EnrichSettings {
    fn default() -> EnrichSettings {
        EnrichSettings {
            capacity: NonZeroU32::new(DEFAULT_CAPACITY).unwrap_or(NonZeroU32::MIN),
            exited_grace_ns: (DEFAULT_EXITED_GRACE_SECS * 1e9) as u64,
            ancestry_depth: DEFAULT_ANCESTRY_DEPTH,
        }
    }
}

impl EnrichSettings {
    /// Checks every key; reports each bad one at its location.
    pub fn from_config(config: &EnrichConfig, options: &ComponentOptions) -> Result<EnrichSettings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let capacity = *config.capacity.get_ref();
        if capacity == 0 {
            errors.push(
                options
                    .error_at(config.capacity.span(), "capacity = 0 leaves the process table no room for any process")
                    .with_hint(format!(
                        "set it above the number of processes the host runs at once plus those that exit within \
                         exited_grace_secs (the default, {DEFAULT_CAPACITY}, fits most hosts), or remove the key"
                    )),
            );
        } else if !(1..=MAX_CAPACITY).contains(&capacity) {
            errors.push(options.error_at(
                config.capacity.span(),
                format!("capacity must be between 1 and {MAX_CAPACITY} processes, got {capacity}"),
            ));
        }
        let grace = *config.exited_grace_secs.get_ref();
        if !(0.0..=MAX_EXITED_GRACE_SECS).contains(&grace) {
            errors.push(options.error_at(
                config.exited_grace_secs.span(),
                format!("exited_grace_secs must be a number of seconds from 0 to {MAX_EXITED_GRACE_SECS}, got {grace}"),
            ));
        }
        let depth = *config.ancestry_depth.get_ref();
        if !(1..=MAX_ANCESTRY_DEPTH).contains(&depth) {
            errors.push(
                options
                    .error_at(
                        config.ancestry_depth.span(),
                        format!("ancestry_depth must be between 1 and {MAX_ANCESTRY_DEPTH} ancestors, got {depth}"),
                    )
                    .with_hint(format!("the default, {DEFAULT_ANCESTRY_DEPTH}, reaches PID 1 on any real host")),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EnrichSettings {
            capacity: NonZeroU32::new(capacity as u32).unwrap_or(NonZeroU32::MIN),
            // Rounded, so that 0.013 s is 13 ms exactly.
            exited_grace_ns: (grace * 1e9).round() as u64,
            ancestry_depth: depth as usize,
        })
    }
}

/// Builds an enrich transform from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: EnrichConfig, options| {
        let settings = EnrichSettings::from_config(&config, options)?;
        Ok(Box::new(Enrich::new(settings, &options.component)) as Box<dyn Transform>)
    })
}

/// Why an event's lineage is not whole: the `reason` label of
/// [`LINEAGE_MISSING_TOTAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingReason {
    ProcessUnknown,
    ParentUnknown,
    Cycle,
}

impl MissingReason {
    /// Every reason, for registering one series each up front.
    pub const ALL: [MissingReason; 3] =
        [MissingReason::ProcessUnknown, MissingReason::ParentUnknown, MissingReason::Cycle];

    /// The reason a lineage counts as missing, `None` when it does not
    /// (`complete`, and `depth_limit`: a chosen bound, not a gap).
    pub fn of(lineage: Lineage) -> Option<MissingReason> {
        match lineage {
            Lineage::ProcessUnknown => Some(MissingReason::ProcessUnknown),
            Lineage::ParentUnknown => Some(MissingReason::ParentUnknown),
            Lineage::Cycle => Some(MissingReason::Cycle),
            Lineage::Complete | Lineage::DepthLimit => None,
        }
    }

    /// Metric label value (the lineage's wire name).
    pub fn as_str(self) -> &'static str {
        match self {
            MissingReason::ProcessUnknown => Lineage::ProcessUnknown.as_str(),
            MissingReason::ParentUnknown => Lineage::ParentUnknown.as_str(),
            MissingReason::Cycle => Lineage::Cycle.as_str(),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One table entry: the process's current context, and the head of its
/// command line for its children's ancestry (made at its first child, so
/// processes without children never pay for it).
struct Entry {
    context: Arc<ProcessContext>,
    args_head: Option<Arc<str>>,
}

impl Entry {
    fn new(context: Arc<ProcessContext>) -> Entry {
        Entry { context, args_head: None }
    }
}

/// The container fields of a context, shared by every context in the same
/// cgroup.
#[derive(Clone)]
struct ContainerFields {
    runtime: Arc<str>,
    id: Arc<str>,
    pod_uid: Arc<str>,
}

/// The metric handles, registered once at build.
struct Metrics {
    missing: [Counter; 3],
    evictions: [Counter; 2],
    entries: Gauge,
}

impl Metrics {
    fn register(component: &str) -> Metrics {
        use metrics::{describe_counter, describe_gauge, Unit};
        describe_counter!(LINEAGE_MISSING_TOTAL, Unit::Count, "Events that left enrichment without a whole lineage.");
        describe_gauge!(TABLE_ENTRIES, Unit::Count, "Processes (live and recently exited) in the enrich table.");
        describe_counter!(EVICTIONS_TOTAL, Unit::Count, "Processes that left the enrich table, by reason.");
        let component = component.to_owned();
        Metrics {
            missing: MissingReason::ALL.map(|reason| {
                metrics::counter!(LINEAGE_MISSING_TOTAL, "component" => component.clone(), "reason" => reason.as_str())
            }),
            evictions: EvictionReason::ALL.map(|reason| {
                metrics::counter!(EVICTIONS_TOTAL, "component" => component.clone(), "reason" => reason.as_str())
            }),
            entries: metrics::gauge!(TABLE_ENTRIES, "component" => component),
        }
    }
}

/// A configured enrich transform: the process table and what it exports.
pub struct Enrich {
    table: ProcessTable<Entry>,
    depth: usize,
    /// Latest `ts_ns` seen: the clock exits are expired against.
    now_ns: u64,
    /// The one context of every process the table does not hold.
    unknown: Arc<ProcessContext>,
    /// The last process a plain event (not snapshot, fork, exec, exit or
    /// hash) found, and its context: a run of events of one process (a
    /// burst of opens) skips the table. Its entry is still the most
    /// recently used, so skipping the touch changes nothing; anything that
    /// changes the table clears it.
    last: Option<(ProcessKey, Arc<ProcessContext>)>,
    empty: Arc<str>,
    /// `Runtime::as_str` of each runtime, shared by every context.
    runtimes: [Arc<str>; 7],
    containers: HashMap<Arc<str>, ContainerFields>,
    /// The container fields of an unknown cgroup path.
    no_container: ContainerFields,
    /// Events counted per `MissingReason` since creation, and the part
    /// not yet added to the counters.
    missing: [u64; 3],
    missing_unexported: [u64; 3],
    evictions_exported: EvictionCounts,
    metrics: Metrics,
}

impl Enrich {
    /// An empty table with these settings; metrics labelled `component`.
    pub fn new(settings: EnrichSettings, component: &str) -> Enrich {
        let empty: Arc<str> = Arc::from("");
        Enrich {
            table: ProcessTable::new(settings.capacity, settings.exited_grace_ns),
            depth: settings.ancestry_depth.max(1),
            now_ns: 0,
            unknown: Arc::new(ProcessContext::unknown()),
            last: None,
            runtimes: Runtime::ALL.map(|runtime| Arc::from(runtime.as_str())),
            containers: HashMap::new(),
            no_container: ContainerFields { runtime: empty.clone(), id: empty.clone(), pod_uid: empty.clone() },
            empty,
            missing: [0; 3],
            missing_unexported: [0; 3],
            evictions_exported: EvictionCounts::default(),
            metrics: Metrics::register(component),
        }
    }

    /// Processes in the table, live and exited.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table's bound.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Evictions per reason since creation.
    pub fn evictions(&self) -> EvictionCounts {
        self.table.evictions()
    }

    /// Events that left with a lineage missing for `reason`, since creation.
    pub fn lineage_missing(&self, reason: MissingReason) -> u64 {
        self.missing[reason.index()]
    }

    /// The current context of `key`, without marking it used.
    pub fn context_of(&self, key: &ProcessKey) -> Option<&Arc<ProcessContext>> {
        self.table.get(key).map(|entry| &entry.context)
    }

    /// The table's own measure of resident bytes per entry (slot and
    /// indexes; the context it points to is counted separately).
    pub fn table_bytes_per_entry() -> usize {
        ProcessTable::<Entry>::bytes_per_entry()
    }

    /// Enriches one event in place.
    fn enrich(&mut self, event: &mut Event) {
        self.now_ns = self.now_ns.max(event.meta().ts_ns);
        if self.table.expire(self.now_ns) > 0 {
            self.last = None;
        }
        if event.context_slot().is_none() {
            return;
        }
        let feeds_table = matches!(
            event,
            Event::ProcessSnapshot(_)
                | Event::ProcessFork(_)
                | Event::ProcessExec(_)
                | Event::ProcessExit(_)
                | Event::ExeHash(_)
        );
        if feeds_table {
            self.last = None;
        }
        let now = self.now_ns;
        let context = match &mut *event {
            Event::ProcessSnapshot(snapshot) => Some(self.snapshot(snapshot, now)),
            Event::ProcessFork(fork) => self.fork(fork, now),
            Event::ProcessExec(exec) => Some(self.exec(exec, now)),
            Event::ProcessExit(exit) => {
                let context = self.lookup(&exit.process);
                self.table.mark_exited(&exit.process, exit.meta.ts_ns);
                context
            }
            Event::ExeHash(hash) => self.exe_hash(hash),
            other => match other.process().copied() {
                Some(key) => self.lookup_cached(key),
                None => return,
            },
        };
        let Some(slot) = event.context_mut() else { return };
        let context = match (context, slot.take()) {
            (Some(ours), _) => ours,
            // Not in the table, but enriched upstream (a replayed spool).
            (None, Some(existing)) => existing,
            (None, None) => Arc::clone(&self.unknown),
        };
        if let Some(reason) = MissingReason::of(context.lineage) {
            self.missing_unexported[reason.index()] += 1;
        }
        *slot = Some(context);
    }

    /// The context of `key`, marking it recently used.
    fn lookup(&mut self, key: &ProcessKey) -> Option<Arc<ProcessContext>> {
        self.table.get_touched(key).map(|entry| Arc::clone(&entry.context))
    }

    /// `lookup` for plain events, through `last`. A miss leaves `last` as
    /// it is: it changed no recency.
    fn lookup_cached(&mut self, key: ProcessKey) -> Option<Arc<ProcessContext>> {
        if let Some((last, context)) = &self.last {
            if *last == key {
                return Some(Arc::clone(context));
            }
        }
        let context = self.lookup(&key)?;
        self.last = Some((key, Arc::clone(&context)));
        Some(context)
    }

    /// A new live `key` means the pid's previous live holder ended (one
    /// live process per pid) even if its exit was missed: mark it, so it
    /// expires and is never found as a parent by pid.
    fn retire_previous_holder(&mut self, key: ProcessKey, now_ns: u64) {
        if let Some(previous) = self.table.live_key(key.pid) {
            if previous.start_time_ns < key.start_time_ns {
                self.table.mark_exited(&previous, now_ns);
            }
        }
    }

    /// The ancestry and lineage of a new context of `child` whose parent is
    /// `parent` (`None`: a root, whose parent pid is 0). Touches every
    /// ancestor (see the module header).
    fn inherit(&mut self, child: ProcessKey, parent: Option<ProcessKey>) -> (Vec<Ancestor>, Lineage) {
        let Some(parent) = parent else { return (Vec::new(), Lineage::Complete) };
        if parent == child {
            return (Vec::new(), Lineage::Cycle);
        }
        let depth = self.depth;
        let Some(entry) = self.table.get_mut(&parent) else { return (Vec::new(), Lineage::ParentUnknown) };
        let args = Arc::clone(entry.args_head.get_or_insert_with(|| args_head(&entry.context.argv)));
        let above = &entry.context;
        let mut ancestry = Vec::with_capacity((1 + above.ancestry.len()).min(depth));
        ancestry.push(Ancestor { process: parent, exe: Arc::clone(&above.exe), args });
        let mut lineage = above.lineage;
        for ancestor in &above.ancestry {
            if ancestry.len() == depth {
                lineage = Lineage::DepthLimit;
                break;
            }
            if ancestor.process == child {
                lineage = Lineage::Cycle;
                break;
            }
            ancestry.push(ancestor.clone());
        }
        self.touch_ancestors(&ancestry);
        (ancestry, lineage)
    }

    fn touch_ancestors(&mut self, ancestry: &[Ancestor]) {
        for ancestor in ancestry {
            self.table.touch(&ancestor.process);
        }
    }

    /// The container fields of `cgroup_path` (cached).
    fn container(&mut self, cgroup_path: &Arc<str>) -> ContainerFields {
        if cgroup_path.is_empty() {
            return self.no_container.clone();
        }
        if let Some(fields) = self.containers.get(&**cgroup_path) {
            return fields.clone();
        }
        let parsed = container_of(cgroup_path);
        let fields = ContainerFields {
            runtime: Arc::clone(&self.runtimes[parsed.runtime.index()]),
            id: parsed.id.map_or_else(|| Arc::clone(&self.empty), Arc::from),
            pod_uid: parsed.pod_uid.map_or_else(|| Arc::clone(&self.empty), |uid| Arc::from(uid.as_str())),
        };
        if self.containers.len() >= CONTAINER_CACHE_ENTRIES {
            self.containers.clear();
        }
        self.containers.insert(Arc::clone(cgroup_path), fields.clone());
        fields
    }

    fn snapshot(&mut self, snapshot: &ProcessSnapshot, now_ns: u64) -> Arc<ProcessContext> {
        let key = snapshot.process;
        if let Some(entry) = self.table.get_touched(&key) {
            // An exec already seen is newer than a snapshot of the process.
            if entry.context.origin == ContextOrigin::Exec {
                return Arc::clone(&entry.context);
            }
        }
        self.retire_previous_holder(key, now_ns);
        let parent = (snapshot.parent.pid != 0).then_some(snapshot.parent);
        let (ancestry, lineage) = self.inherit(key, parent);
        let container = self.container(&snapshot.cgroup_path);
        let context = Arc::new(ProcessContext {
            exe: Arc::clone(&snapshot.exe),
            argv: snapshot.argv.clone(),
            uid: snapshot.uid,
            user: Arc::clone(&snapshot.user),
            euid: snapshot.euid,
            cwd: Arc::clone(&snapshot.cwd),
            tty: Arc::clone(&snapshot.tty),
            loginuid: snapshot.loginuid,
            session_id: snapshot.session_id,
            cgroup_path: Arc::clone(&snapshot.cgroup_path),
            container_runtime: container.runtime,
            container_id: container.id,
            pod_uid: container.pod_uid,
            exe_sha256: Arc::clone(&snapshot.exe_sha256),
            exe_hash: snapshot.exe_hash,
            ancestry,
            lineage,
            origin: ContextOrigin::Snapshot,
        });
        self.table.insert(key, parent, Entry::new(Arc::clone(&context)));
        context
    }

    /// The fork is the parent's event: it gets the parent's context, and
    /// the child a copy of it (unless the child is already known).
    fn fork(&mut self, fork: &ProcessFork, now_ns: u64) -> Option<Arc<ProcessContext>> {
        let parent = self.lookup(&fork.parent)?;
        if self.table.contains(&fork.child) {
            return Some(parent);
        }
        self.retire_previous_holder(fork.child, now_ns);
        let (ancestry, lineage) = self.inherit(fork.child, Some(fork.parent));
        // Same argv as the parent: same head for the child's children.
        let args_head = ancestry.first().map(|ancestor| Arc::clone(&ancestor.args));
        // Everything but the lineage is the parent's: the struct update
        // keeps this in step with any attribute added to the context (the
        // parent's own ancestry is cloned and dropped, one small copy).
        let child = Arc::new(ProcessContext {
            ancestry,
            lineage,
            origin: ContextOrigin::Fork,
            ..ProcessContext::clone(&parent)
        });
        self.table.insert(fork.child, Some(fork.parent), Entry { context: child, args_head });
        Some(parent)
    }

    fn exec(&mut self, exec: &ProcessExec, now_ns: u64) -> Arc<ProcessContext> {
        let key = exec.process;
        let (parent, ancestry, lineage) = match self.table.get_mut_with_parent(&key) {
            // Known from its fork or the snapshot: same parent, same lineage
            // (its ancestors were touched when that context was made).
            Some((parent, entry)) => {
                let lineage = entry.context.lineage;
                let ancestry = match Arc::get_mut(&mut entry.context) {
                    // Only the table holds the context this exec replaces
                    // (a fork's copy: the fork event carries the parent's),
                    // so nothing can see it change: move the ancestry out
                    // instead of cloning it.
                    Some(unshared) => std::mem::take(&mut unshared.ancestry),
                    None => entry.context.ancestry.clone(),
                };
                (parent, ancestry, lineage)
            }
            // The fork was missed: the parent is the live holder of `ppid`.
            None => {
                self.retire_previous_holder(key, now_ns);
                if exec.ppid == 0 {
                    (None, Vec::new(), Lineage::Complete)
                } else if let Some(parent) = self.table.live_key(exec.ppid).filter(|parent| *parent != key) {
                    let (ancestry, lineage) = self.inherit(key, Some(parent));
                    (Some(parent), ancestry, lineage)
                } else {
                    // A key no process has (start time u64::MAX), so the
                    // table's own walk also ends at a missing parent.
                    let unknown = ProcessKey { pid: exec.ppid, start_time_ns: u64::MAX };
                    (Some(unknown), Vec::new(), Lineage::ParentUnknown)
                }
            }
        };
        let attributes = exec.attributes.as_deref();
        let text = |field: fn(&pipeline::event::ExecAttributes) -> &Arc<str>| match attributes {
            Some(attributes) => Arc::clone(field(attributes)),
            None => Arc::clone(&self.empty),
        };
        let (user, cwd, tty, cgroup_path, exe_sha256) =
            (text(|a| &a.user), text(|a| &a.cwd), text(|a| &a.tty), text(|a| &a.cgroup_path), text(|a| &a.exe_sha256));
        let container = self.container(&cgroup_path);
        let context = Arc::new(ProcessContext {
            exe: Arc::clone(&exec.exe),
            argv: exec.argv.clone(),
            uid: exec.uid,
            user,
            euid: attributes.map_or(u32::MAX, |a| a.euid),
            cwd,
            tty,
            loginuid: attributes.map_or(u32::MAX, |a| a.loginuid),
            session_id: attributes.map_or(u32::MAX, |a| a.session_id),
            cgroup_path,
            container_runtime: container.runtime,
            container_id: container.id,
            pod_uid: container.pod_uid,
            exe_sha256,
            exe_hash: attributes.map_or(HashState::NotRequested, |a| a.exe_hash),
            ancestry,
            lineage,
            origin: ContextOrigin::Exec,
        });
        self.table.insert(key, parent, Entry::new(Arc::clone(&context)));
        context
    }

    /// A hash that followed its exec: a new context with the hash fields,
    /// if the process still runs that file and has no hash yet.
    fn exe_hash(&mut self, hash: &ExeHash) -> Option<Arc<ProcessContext>> {
        let empty = Arc::clone(&self.empty);
        self.table.touch(&hash.process);
        let entry = self.table.get_mut(&hash.process)?;
        if entry.context.exe == hash.exe && entry.context.exe_hash != HashState::Ok {
            let mut updated = ProcessContext::clone(&entry.context);
            updated.exe_sha256 = if hash.state == HashState::Ok { Arc::clone(&hash.sha256) } else { empty };
            updated.exe_hash = hash.state;
            entry.context = Arc::new(updated);
        }
        Some(Arc::clone(&entry.context))
    }

    /// Adds what was counted since the last export to the metrics.
    fn export(&mut self) {
        for reason in MissingReason::ALL {
            let n = std::mem::take(&mut self.missing_unexported[reason.index()]);
            if n > 0 {
                self.missing[reason.index()] += n;
                self.metrics.missing[reason.index()].increment(n);
            }
        }
        let now = self.table.evictions();
        for (i, reason) in EvictionReason::ALL.into_iter().enumerate() {
            let delta = now.get(reason) - self.evictions_exported.get(reason);
            if delta > 0 {
                self.metrics.evictions[i].increment(delta);
            }
        }
        self.evictions_exported = now;
        self.metrics.entries.set(self.table.len() as f64);
    }
}

impl Transform for Enrich {
    fn process(&mut self, mut batch: Batch, out: &mut Output) {
        for event in &mut batch {
            self.enrich(event);
        }
        self.export();
        out.extend(batch);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn on_tick(&mut self, _out: &mut Output) {
        if self.table.expire(self.now_ns) > 0 {
            self.last = None;
        }
        self.export();
    }

    fn flush(&mut self, _out: &mut Output) {
        self.export();
    }
}

#[cfg(test)]
mod tests;
