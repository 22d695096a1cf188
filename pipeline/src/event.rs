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
    /// Kernel `comm` (at most 15 bytes).
    pub comm: Arc<str>,
    pub exe: Arc<str>,
    pub cmdline: Arc<str>,
}

/// A process ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessExit {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub exit_code: i32,
}

/// A process created a child.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessFork {
    pub meta: EventMeta,
    pub parent: ProcessKey,
    pub child: ProcessKey,
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
}

/// A process opened a file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOpen {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub path: Arc<str>,
    /// `open(2)` flags as the kernel saw them.
    pub flags: u32,
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
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 9] = [
        EventKind::ProcessExec,
        EventKind::ProcessExit,
        EventKind::ProcessFork,
        EventKind::NetConnect,
        EventKind::FileOpen,
        EventKind::ProcessSample,
        EventKind::ProcessAggregate,
        EventKind::Sketch,
        EventKind::AgentDiag,
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
            Event::ProcessAggregate(_) | Event::Sketch(_) | Event::AgentDiag(_) => None,
        }
    }

    /// Reads one named field, for rule-driven transforms (filter, detect).
    /// `None` when this kind of event has no such field.
    pub fn field(&self, field: Field) -> Option<FieldValue<'_>> {
        use FieldValue::{Float, Int, Str};
        let meta = self.meta();
        let value = match field {
            Field::EventId => Int(i128::from(meta.event_id)),
            Field::TsNs => Int(i128::from(meta.ts_ns)),
            Field::Pid => Int(i128::from(self.process()?.pid)),
            Field::StartTimeNs => Int(i128::from(self.process()?.start_time_ns)),
            Field::Ppid => match self {
                Event::ProcessExec(e) => Int(i128::from(e.ppid)),
                Event::ProcessSample(e) => Int(i128::from(e.ppid)),
                _ => return None,
            },
            Field::Uid => match self {
                Event::ProcessExec(e) => Int(i128::from(e.uid)),
                Event::ProcessSample(e) => Int(i128::from(e.uid)),
                _ => return None,
            },
            Field::Comm => match self {
                Event::ProcessExec(e) => Str(&e.comm),
                _ => return None,
            },
            Field::Name => match self {
                Event::ProcessExec(e) => Str(&e.comm),
                Event::ProcessSample(e) => Str(&e.name),
                Event::ProcessAggregate(e) => Str(&e.name),
                Event::Sketch(e) => Str(&e.key),
                _ => return None,
            },
            Field::Exe => match self {
                Event::ProcessExec(e) => Str(&e.exe),
                _ => return None,
            },
            Field::Cmdline => match self {
                Event::ProcessExec(e) => Str(&e.cmdline),
                Event::ProcessSample(e) => Str(&e.cmdline),
                _ => return None,
            },
            Field::ExitCode => match self {
                Event::ProcessExit(e) => Int(i128::from(e.exit_code)),
                _ => return None,
            },
            Field::ChildPid => match self {
                Event::ProcessFork(e) => Int(i128::from(e.child.pid)),
                _ => return None,
            },
            Field::Protocol => match self {
                Event::NetConnect(e) => Str(e.protocol.as_str()),
                _ => return None,
            },
            Field::DstPort => match self {
                Event::NetConnect(e) => Int(i128::from(e.dst_port)),
                _ => return None,
            },
            Field::Path => match self {
                Event::FileOpen(e) => Str(&e.path),
                _ => return None,
            },
            Field::Flags => match self {
                Event::FileOpen(e) => Int(i128::from(e.flags)),
                _ => return None,
            },
            Field::CpuPercent => match self {
                Event::ProcessSample(e) => Float(e.cpu_percent),
                Event::ProcessAggregate(e) => Float(e.cpu_percent_sum),
                _ => return None,
            },
            Field::RssBytes => match self {
                Event::ProcessSample(e) => Int(i128::from(e.rss_bytes)),
                Event::ProcessAggregate(e) => Int(i128::from(e.rss_bytes_sum)),
                _ => return None,
            },
            Field::TopNRank => match self {
                Event::ProcessSample(e) => Int(i128::from(e.top_n_rank)),
                _ => return None,
            },
            Field::Threads => match self {
                Event::ProcessSample(e) => Int(i128::from(e.threads)),
                _ => return None,
            },
            Field::Module => match self {
                Event::AgentDiag(e) => Str(&e.module),
                _ => return None,
            },
            Field::Reason => match self {
                Event::AgentDiag(e) => Str(&e.reason),
                _ => return None,
            },
        };
        Some(value)
    }
}

/// A field that rules can name. Resolved from its name once, at build time,
/// so the hot path never compares strings to find a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    EventId,
    TsNs,
    Pid,
    StartTimeNs,
    Ppid,
    Uid,
    Comm,
    Name,
    Exe,
    Cmdline,
    ExitCode,
    ChildPid,
    Protocol,
    DstPort,
    Path,
    Flags,
    CpuPercent,
    RssBytes,
    TopNRank,
    Threads,
    Module,
    Reason,
}

/// Whether a field holds a number or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Number,
    Text,
}

impl Field {
    /// Every field, for error messages that list the known ones.
    pub const ALL: [Field; 22] = [
        Field::EventId,
        Field::TsNs,
        Field::Pid,
        Field::StartTimeNs,
        Field::Ppid,
        Field::Uid,
        Field::Comm,
        Field::Name,
        Field::Exe,
        Field::Cmdline,
        Field::ExitCode,
        Field::ChildPid,
        Field::Protocol,
        Field::DstPort,
        Field::Path,
        Field::Flags,
        Field::CpuPercent,
        Field::RssBytes,
        Field::TopNRank,
        Field::Threads,
        Field::Module,
        Field::Reason,
    ];

    /// The name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::TsNs => "ts_ns",
            Field::Pid => "pid",
            Field::StartTimeNs => "start_time_ns",
            Field::Ppid => "ppid",
            Field::Uid => "uid",
            Field::Comm => "comm",
            Field::Name => "name",
            Field::Exe => "exe",
            Field::Cmdline => "cmdline",
            Field::ExitCode => "exit_code",
            Field::ChildPid => "child_pid",
            Field::Protocol => "protocol",
            Field::DstPort => "dst_port",
            Field::Path => "path",
            Field::Flags => "flags",
            Field::CpuPercent => "cpu_percent",
            Field::RssBytes => "rss_bytes",
            Field::TopNRank => "top_n_rank",
            Field::Threads => "threads",
            Field::Module => "module",
            Field::Reason => "reason",
        }
    }

    /// Looks a field up by name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.as_str() == name)
    }

    /// Number or text.
    pub fn field_type(self) -> FieldType {
        match self {
            Field::Comm
            | Field::Name
            | Field::Exe
            | Field::Cmdline
            | Field::Protocol
            | Field::Path
            | Field::Module
            | Field::Reason => FieldType::Text,
            _ => FieldType::Number,
        }
    }
}

/// A borrowed field value. Integers widen to `i128` so that every unsigned
/// and signed field compares exactly against a configured literal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Int(i128),
    Float(f64),
    Str(&'a str),
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
            meta: EventMeta { ts_ns: 5, event_id: 9 },
            process: ProcessKey { pid: 42, start_time_ns: 7 },
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([10, 0, 0, 1]),
            dst_port: 443,
        });
        assert_eq!(connect.field(Field::DstPort), Some(FieldValue::Int(443)));
        assert_eq!(connect.field(Field::Pid), Some(FieldValue::Int(42)));
        assert_eq!(connect.field(Field::EventId), Some(FieldValue::Int(9)));
        assert_eq!(connect.field(Field::Protocol), Some(FieldValue::Str("tcp")));
        assert_eq!(connect.field(Field::Path), None);
        assert_eq!(connect.kind(), EventKind::NetConnect);
    }
}
