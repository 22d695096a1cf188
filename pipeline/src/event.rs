//! The typed event model every component speaks.
//!
//! Events are a closed enum of plain records, never `serde_json::Value`: a
//! transform matches on the kind it cares about and reads fields directly.
//! Strings are `Arc<str>` so that a source can hand the same executable path
//! to thousands of events (and a fan-out can clone a batch) without copying
//! bytes. This type is deliberately *not* `Serialize`: wire formats live in
//! `schemas/` and sinks convert explicitly, so a wire change never ripples
//! into transforms.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::sketch::LogSketch;

mod argv;
pub mod columns;
pub mod context;
mod detection;
mod field;
mod net_policy;
pub mod security;
mod snapshot;
pub use argv::Argv;
pub use context::{Ancestor, ContextOrigin, HashState, Lineage, ProcessContext};
pub use detection::{Confidence, Detection, DetectionLayer, Severity};
pub use field::{Field, FieldType, FieldValue};
pub use net_policy::{NetPolicy, PolicyAction, RuleNames, REMEMBERED_GENERATIONS};
pub use security::{
    BpfProgramLoad, CredSyscall, CredentialChange, Credentials, ExecAttributes, ExecFile, FdKind, FileChange, FileOp,
    ModuleLoad, ModuleSyscall, NamespaceChange, NamespaceSyscall, NetAccept, NetListen, NetSend, PtraceAttach, StdioFd,
};
pub use snapshot::{ExeHash, ProcessSnapshot};

/// What travels on an edge: a batch of events, never a single one.
///
/// Batching amortises every per-message cost (channel hop, wake-up, metric
/// update) over hundreds of events; that is where the engine's throughput
/// comes from.
pub type Batch = Vec<Event>;

/// Identity of a process that survives PID reuse: a PID is only unique
/// together with the time its process started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// Kernel process id (tgid).
    pub pid: u32,
    /// Process start time in nanoseconds since boot (monotonic clock).
    pub start_time_ns: u64,
}

/// Fields every event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// Monotonic timestamp in nanoseconds (since boot for kernel sources,
    /// synthetic for the generator).
    pub ts_ns: u64,
    /// Host-local id, unique within one run of the agent.
    pub event_id: u64,
}

/// A process replaced its image (`execve`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessExec {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Id of the process's cgroup (v2: the cgroup directory's inode
    /// number, as `bpf_get_current_cgroup_id` reports it); 0 when unknown.
    pub cgroup_id: u64,
    /// Kernel `comm` (at most 15 bytes).
    pub comm: Arc<str>,
    pub exe: Arc<str>,
    /// The arguments as the process received them, `argv[0]` first.
    pub argv: Argv,
    /// The source kept fewer arguments or bytes than the process received
    /// (sources bound what they capture); `argv` is then a prefix.
    pub argv_truncated: bool,
    /// What the kernel knew at the exec (credentials, file, stdio, tty,
    /// session, cwd, chosen environment); `None` from sources that cannot
    /// see it (the /proc fallback, the generator's plain mix).
    pub attributes: Option<Arc<ExecAttributes>>,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

/// A process ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessExit {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub exit_code: i32,
    /// User + system CPU time of the whole thread group, in nanoseconds;
    /// 0 when unknown.
    pub cpu_ns: u64,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

/// A process created a child.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessFork {
    pub meta: EventMeta,
    pub parent: ProcessKey,
    pub child: ProcessKey,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

/// Transport protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Lower-case name as used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A process opened an outbound connection.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConnect {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub protocol: Protocol,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    /// What `connect(2)` returned: 0, or a negative errno (-111
    /// `ECONNREFUSED`, -115 `EINPROGRESS` for a non-blocking socket, …);
    /// `None` when the source did not observe it.
    pub result: Option<i32>,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

/// A process opened a file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOpen {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub path: Arc<str>,
    /// `open(2)` flags as the kernel saw them.
    pub flags: u32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

/// Which scan of `/proc` a row belongs to. Transforms that work per scan
/// (`topn`, `tail`) group by `scan_id` and know a scan is complete once
/// they have seen `scan_size` rows of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScanInfo {
    /// Increases by one per scan of one source.
    pub scan_id: u64,
    /// Rows (processes) in this scan.
    pub scan_size: u32,
}

/// One process as seen by one scan of `/proc`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSample {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub scan: ScanInfo,
    pub ppid: u32,
    pub uid: u32,
    /// Display name: the kernel `comm`, or the executable's basename when
    /// `comm` is empty.
    pub name: Arc<str>,
    /// Command line with NULs as spaces, cut at the source's bound.
    pub cmdline: Arc<str>,
    /// Scheduler state letter from `/proc/PID/stat` (`R`, `S`, `D`, `Z`, …).
    pub state: u8,
    pub threads: u32,
    /// CPU time used since the previous scan, in clock ticks (USER_HZ);
    /// 0 on a process's first sighting. Integer so that sums are exact.
    pub cpu_ticks: u64,
    /// The same as a share of one core over the scan interval, in percent.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// Position in its scan's Top-N (1 = highest score), set by `topn`;
    /// 0 = not ranked.
    pub top_n_rank: u32,
}

/// The processes of one scan that share a display name and are outside
/// the Top-N, folded into one row by `tail`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessAggregateSample {
    pub meta: EventMeta,
    pub scan: ScanInfo,
    pub name: Arc<str>,
    /// Processes folded into this row.
    pub count: u32,
    pub cpu_ticks_sum: u64,
    pub cpu_percent_sum: f64,
    pub rss_bytes_sum: u64,
    pub rss_bytes_max: u64,
}

/// The processes of one display name that exec'd and exited within the
/// `lifecycle` transform's window, folded into one row per flush interval:
/// short-lived processes a periodic scan of `/proc` never sees.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessEphemeralSummary {
    /// `ts_ns` is `window_end_ns`.
    pub meta: EventMeta,
    /// The earliest exec folded into this interval (shared by its rows).
    pub window_start_ns: u64,
    /// The latest exit folded into this interval (shared by its rows).
    pub window_end_ns: u64,
    /// Display name: `comm`, or the executable's basename when `comm` is
    /// empty; `(other)` for names beyond the transform's limit.
    pub name: Arc<str>,
    /// Processes folded into this row.
    pub count: u64,
    /// Sum of their `ProcessExit::cpu_ns`.
    pub cpu_ns: u64,
}

/// The distribution of one metric for one key over one window, as a
/// quantile sketch (made by the `sketch` transform).
#[derive(Clone, Debug, PartialEq)]
pub struct SketchEvent {
    /// `ts_ns` is the window's end.
    pub meta: EventMeta,
    /// Wire name of the metric, e.g. `process.cpu_percent`.
    pub metric_name: Arc<str>,
    /// What the values are grouped by: a display name, `*` for host-wide,
    /// or `~other` for names beyond the transform's key limit.
    pub key: Arc<str>,
    /// Timestamp of the first value folded in.
    pub window_start_ns: u64,
    /// Timestamp of the last value folded in.
    pub window_end_ns: u64,
    pub sketch: LogSketch,
}

/// Something the agent itself wants recorded: a fallback taken, a breaker
/// tripped, a file set aside.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentDiag {
    pub meta: EventMeta,
    /// The component or subsystem reporting.
    pub module: Arc<str>,
    pub event_type: Arc<str>,
    pub reason: Arc<str>,
}

/// Every kind of record that can travel through a topology.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    ProcessExec(ProcessExec),
    ProcessExit(ProcessExit),
    ProcessFork(ProcessFork),
    NetConnect(NetConnect),
    FileOpen(FileOpen),
    ProcessSample(ProcessSample),
    ProcessAggregate(ProcessAggregateSample),
    Sketch(SketchEvent),
    AgentDiag(AgentDiag),
    ProcessEphemeral(ProcessEphemeralSummary),
    FileChange(FileChange),
    CredentialChange(CredentialChange),
    NamespaceChange(NamespaceChange),
    PtraceAttach(PtraceAttach),
    ModuleLoad(ModuleLoad),
    BpfProgramLoad(BpfProgramLoad),
    NetListen(NetListen),
    NetAccept(NetAccept),
    NetSend(NetSend),
    ProcessSnapshot(ProcessSnapshot),
    ExeHash(ExeHash),
    Detection(Detection),
    NetPolicy(NetPolicy),
}

/// The kind of an [`Event`], without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ProcessExec,
    ProcessExit,
    ProcessFork,
    NetConnect,
    FileOpen,
    ProcessSample,
    ProcessAggregate,
    Sketch,
    AgentDiag,
    ProcessEphemeral,
    FileChange,
    CredentialChange,
    NamespaceChange,
    PtraceAttach,
    ModuleLoad,
    BpfProgramLoad,
    NetListen,
    NetAccept,
    NetSend,
    ProcessSnapshot,
    ExeHash,
    Detection,
    NetPolicy,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 23] = [
        EventKind::ProcessExec,
        EventKind::ProcessExit,
        EventKind::ProcessFork,
        EventKind::NetConnect,
        EventKind::FileOpen,
        EventKind::ProcessSample,
        EventKind::ProcessAggregate,
        EventKind::Sketch,
        EventKind::AgentDiag,
        EventKind::ProcessEphemeral,
        EventKind::FileChange,
        EventKind::CredentialChange,
        EventKind::NamespaceChange,
        EventKind::PtraceAttach,
        EventKind::ModuleLoad,
        EventKind::BpfProgramLoad,
        EventKind::NetListen,
        EventKind::NetAccept,
        EventKind::NetSend,
        EventKind::ProcessSnapshot,
        EventKind::ExeHash,
        EventKind::Detection,
        EventKind::NetPolicy,
    ];

    /// The snake_case name used in topology.toml and in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ProcessExec => "process_exec",
            EventKind::ProcessExit => "process_exit",
            EventKind::ProcessFork => "process_fork",
            EventKind::NetConnect => "net_connect",
            EventKind::FileOpen => "file_open",
            EventKind::ProcessSample => "process_sample",
            EventKind::ProcessAggregate => "process_aggregate",
            EventKind::Sketch => "sketch",
            EventKind::AgentDiag => "agent_diag",
            EventKind::ProcessEphemeral => "process_ephemeral",
            EventKind::FileChange => "file_change",
            EventKind::CredentialChange => "credential_change",
            EventKind::NamespaceChange => "namespace_change",
            EventKind::PtraceAttach => "ptrace_attach",
            EventKind::ModuleLoad => "module_load",
            EventKind::BpfProgramLoad => "bpf_program_load",
            EventKind::NetListen => "net_listen",
            EventKind::NetAccept => "net_accept",
            EventKind::NetSend => "net_send",
            EventKind::ProcessSnapshot => "process_snapshot",
            EventKind::ExeHash => "exe_hash",
            EventKind::Detection => "detection",
            EventKind::NetPolicy => "net_policy",
        }
    }

    /// Looks a kind up by its configuration name.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Position in [`EventKind::ALL`], for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ProcessExec(_) => EventKind::ProcessExec,
            Event::ProcessExit(_) => EventKind::ProcessExit,
            Event::ProcessFork(_) => EventKind::ProcessFork,
            Event::NetConnect(_) => EventKind::NetConnect,
            Event::FileOpen(_) => EventKind::FileOpen,
            Event::ProcessSample(_) => EventKind::ProcessSample,
            Event::ProcessAggregate(_) => EventKind::ProcessAggregate,
            Event::Sketch(_) => EventKind::Sketch,
            Event::AgentDiag(_) => EventKind::AgentDiag,
            Event::ProcessEphemeral(_) => EventKind::ProcessEphemeral,
            Event::FileChange(_) => EventKind::FileChange,
            Event::CredentialChange(_) => EventKind::CredentialChange,
            Event::NamespaceChange(_) => EventKind::NamespaceChange,
            Event::PtraceAttach(_) => EventKind::PtraceAttach,
            Event::ModuleLoad(_) => EventKind::ModuleLoad,
            Event::BpfProgramLoad(_) => EventKind::BpfProgramLoad,
            Event::NetListen(_) => EventKind::NetListen,
            Event::NetAccept(_) => EventKind::NetAccept,
            Event::NetSend(_) => EventKind::NetSend,
            Event::ProcessSnapshot(_) => EventKind::ProcessSnapshot,
            Event::ExeHash(_) => EventKind::ExeHash,
            Event::Detection(_) => EventKind::Detection,
            Event::NetPolicy(_) => EventKind::NetPolicy,
        }
    }

    /// Timestamp and id.
    pub fn meta(&self) -> &EventMeta {
        match self {
            Event::ProcessExec(e) => &e.meta,
            Event::ProcessExit(e) => &e.meta,
            Event::ProcessFork(e) => &e.meta,
            Event::NetConnect(e) => &e.meta,
            Event::FileOpen(e) => &e.meta,
            Event::ProcessSample(e) => &e.meta,
            Event::ProcessAggregate(e) => &e.meta,
            Event::Sketch(e) => &e.meta,
            Event::AgentDiag(e) => &e.meta,
            Event::ProcessEphemeral(e) => &e.meta,
            Event::FileChange(e) => &e.meta,
            Event::CredentialChange(e) => &e.meta,
            Event::NamespaceChange(e) => &e.meta,
            Event::PtraceAttach(e) => &e.meta,
            Event::ModuleLoad(e) => &e.meta,
            Event::BpfProgramLoad(e) => &e.meta,
            Event::NetListen(e) => &e.meta,
            Event::NetAccept(e) => &e.meta,
            Event::NetSend(e) => &e.meta,
            Event::ProcessSnapshot(e) => &e.meta,
            Event::ExeHash(e) => &e.meta,
            Event::Detection(e) => &e.meta,
            Event::NetPolicy(e) => &e.meta,
        }
    }

    /// The process the event is about (for a fork: the parent).
    pub fn process(&self) -> Option<&ProcessKey> {
        match self {
            Event::ProcessExec(e) => Some(&e.process),
            Event::ProcessExit(e) => Some(&e.process),
            Event::ProcessFork(e) => Some(&e.parent),
            Event::NetConnect(e) => Some(&e.process),
            Event::FileOpen(e) => Some(&e.process),
            Event::ProcessSample(e) => Some(&e.process),
            Event::FileChange(e) => Some(&e.process),
            Event::CredentialChange(e) => Some(&e.process),
            Event::NamespaceChange(e) => Some(&e.process),
            Event::PtraceAttach(e) => Some(&e.process),
            Event::ModuleLoad(e) => Some(&e.process),
            Event::BpfProgramLoad(e) => Some(&e.process),
            Event::NetListen(e) => Some(&e.process),
            Event::NetAccept(e) => Some(&e.process),
            Event::NetSend(e) => Some(&e.process),
            Event::ProcessSnapshot(e) => Some(&e.process),
            Event::ExeHash(e) => Some(&e.process),
            Event::Detection(e) => Some(&e.process),
            Event::NetPolicy(e) => Some(&e.process),

            Event::ProcessAggregate(_) | Event::Sketch(_) | Event::AgentDiag(_) | Event::ProcessEphemeral(_) => None,
        }
    }

    /// The process context enrichment attached (see [`ProcessContext`]):
    /// the one match every format and transform goes through. The outer
    /// `None`: this kind carries no process context at all.
    pub fn context_slot(&self) -> Option<&Option<Arc<ProcessContext>>> {
        match self {
            Event::ProcessExec(e) => Some(&e.context),
            Event::ProcessExit(e) => Some(&e.context),
            Event::ProcessFork(e) => Some(&e.context),
            Event::NetConnect(e) => Some(&e.context),
            Event::FileOpen(e) => Some(&e.context),
            Event::FileChange(e) => Some(&e.context),
            Event::CredentialChange(e) => Some(&e.context),
            Event::NamespaceChange(e) => Some(&e.context),
            Event::PtraceAttach(e) => Some(&e.context),
            Event::ModuleLoad(e) => Some(&e.context),
            Event::BpfProgramLoad(e) => Some(&e.context),
            Event::NetListen(e) => Some(&e.context),
            Event::NetAccept(e) => Some(&e.context),
            Event::NetSend(e) => Some(&e.context),
            Event::ProcessSnapshot(e) => Some(&e.context),
            Event::ExeHash(e) => Some(&e.context),
            Event::Detection(e) => Some(&e.context),
            Event::NetPolicy(e) => Some(&e.context),
            Event::ProcessSample(_)
            | Event::ProcessAggregate(_)
            | Event::Sketch(_)
            | Event::AgentDiag(_)
            | Event::ProcessEphemeral(_) => None,
        }
    }

    /// The attached process context, if any.
    pub fn context(&self) -> Option<&Arc<ProcessContext>> {
        self.context_slot()?.as_ref()
    }

    /// Where enrichment puts the context; `None` for kinds without one.
    pub fn context_mut(&mut self) -> Option<&mut Option<Arc<ProcessContext>>> {
        match self {
            Event::ProcessExec(e) => Some(&mut e.context),
            Event::ProcessExit(e) => Some(&mut e.context),
            Event::ProcessFork(e) => Some(&mut e.context),
            Event::NetConnect(e) => Some(&mut e.context),
            Event::FileOpen(e) => Some(&mut e.context),
            Event::FileChange(e) => Some(&mut e.context),
            Event::CredentialChange(e) => Some(&mut e.context),
            Event::NamespaceChange(e) => Some(&mut e.context),
            Event::PtraceAttach(e) => Some(&mut e.context),
            Event::ModuleLoad(e) => Some(&mut e.context),
            Event::BpfProgramLoad(e) => Some(&mut e.context),
            Event::NetListen(e) => Some(&mut e.context),
            Event::NetAccept(e) => Some(&mut e.context),
            Event::NetSend(e) => Some(&mut e.context),
            Event::ProcessSnapshot(e) => Some(&mut e.context),
            Event::ExeHash(e) => Some(&mut e.context),
            Event::Detection(e) => Some(&mut e.context),
            Event::NetPolicy(e) => Some(&mut e.context),
            Event::ProcessSample(_)
            | Event::ProcessAggregate(_)
            | Event::Sketch(_)
            | Event::AgentDiag(_)
            | Event::ProcessEphemeral(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_field_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(EventKind::ALL[kind.index()], kind);
        }
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.as_str()), Some(field));
        }
        assert_eq!(EventKind::from_name("process_exce"), None);
        assert_eq!(EventKind::from_name("sketch"), Some(EventKind::Sketch));
    }

    #[test]
    fn fields_are_read_from_the_right_kind() {
        let connect = Event::NetConnect(NetConnect {
            context: None,
            meta: EventMeta { ts_ns: 5, event_id: 9 },
            process: ProcessKey { pid: 42, start_time_ns: 7 },
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([10, 0, 0, 1]),
            dst_port: 443,
            result: Some(-111),
        });
        assert_eq!(connect.field(Field::DstPort), Some(FieldValue::Int(443)));
        assert_eq!(connect.field(Field::Pid), Some(FieldValue::Int(42)));
        assert_eq!(connect.field(Field::EventId), Some(FieldValue::Int(9)));
        assert_eq!(connect.field(Field::Protocol), Some(FieldValue::Str("tcp")));
        assert_eq!(connect.field(Field::Path), None);
        assert_eq!(connect.field(Field::Result), Some(FieldValue::Int(-111)));
        assert_eq!(connect.kind(), EventKind::NetConnect);
        let Event::NetConnect(mut unobserved) = connect else { unreachable!() };
        unobserved.result = None;
        assert_eq!(Event::NetConnect(unobserved).field(Field::Result), None, "no result, no field");

        let argv = Argv::from_args(["sh", "-c", "echo hi"]);
        let exec = Event::ProcessExec(ProcessExec {
            context: None,
            meta: EventMeta { ts_ns: 1, event_id: 2 },
            process: ProcessKey { pid: 3, start_time_ns: 4 },
            ppid: 1,
            uid: 1000,
            gid: 100,
            cgroup_id: 1 << 40,
            comm: Arc::from("sh"),
            exe: Arc::from("/bin/sh"),
            argv: argv.clone(),
            argv_truncated: true,
            attributes: None,
        });
        assert_eq!(exec.field(Field::Cmdline), Some(FieldValue::Args(&argv)));
        assert_eq!(exec.field(Field::Gid), Some(FieldValue::Int(100)));
        assert_eq!(exec.field(Field::CgroupId), Some(FieldValue::Int(1 << 40)));
        assert_eq!(exec.field(Field::ArgvTruncated), Some(FieldValue::Int(1)));
        let ephemeral = Event::ProcessEphemeral(ProcessEphemeralSummary {
            meta: EventMeta { ts_ns: 10, event_id: 11 },
            window_start_ns: 5,
            window_end_ns: 10,
            name: Arc::from("true"),
            count: 1000,
            cpu_ns: 12_345,
        });
        assert_eq!(ephemeral.kind(), EventKind::ProcessEphemeral);
        assert_eq!(ephemeral.process(), None);
        for (field, expected) in [
            (Field::Name, FieldValue::Str("true")),
            (Field::Count, FieldValue::Int(1000)),
            (Field::CpuNs, FieldValue::Int(12_345)),
            (Field::WindowStartNs, FieldValue::Int(5)),
            (Field::WindowEndNs, FieldValue::Int(10)),
            (Field::TsNs, FieldValue::Int(10)),
        ] {
            assert_eq!(ephemeral.field(field), Some(expected), "{field:?}");
        }
        assert_eq!(ephemeral.field(Field::Pid), None);
    }
}
