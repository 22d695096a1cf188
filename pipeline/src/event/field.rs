//! [`Field`]: the fields rule-driven transforms (filter, detect) name, and
//! [`Event::field`], the one place that reads them from any kind.

use super::{Argv, Event, NetConnect};

impl Event {
    /// Reads one named field, for rule-driven transforms (filter, detect).
    /// `None` when this kind of event has no such field.
    pub fn field(&self, field: Field) -> Option<FieldValue<'_>> {
        use FieldValue::{Args, Float, Int, Str};
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
            Field::Gid => match self {
                Event::ProcessExec(e) => Int(i128::from(e.gid)),
                _ => return None,
            },
            Field::CgroupId => match self {
                Event::ProcessExec(e) => Int(i128::from(e.cgroup_id)),
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
                Event::ProcessEphemeral(e) => Str(&e.name),
                Event::Sketch(e) => Str(&e.key),
                _ => return None,
            },
            Field::Exe => match self {
                Event::ProcessExec(e) => Str(&e.exe),
                _ => return None,
            },
            Field::Cmdline => match self {
                Event::ProcessExec(e) => Args(&e.argv),
                Event::ProcessSample(e) => Str(&e.cmdline),
                _ => return None,
            },
            Field::ArgvTruncated => match self {
                Event::ProcessExec(e) => Int(i128::from(e.argv_truncated)),
                _ => return None,
            },
            Field::ExitCode => match self {
                Event::ProcessExit(e) => Int(i128::from(e.exit_code)),
                _ => return None,
            },
            Field::CpuNs => match self {
                Event::ProcessExit(e) => Int(i128::from(e.cpu_ns)),
                Event::ProcessEphemeral(e) => Int(i128::from(e.cpu_ns)),
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
            Field::Result => match self {
                Event::NetConnect(NetConnect { result: Some(result), .. }) => Int(i128::from(*result)),
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
            Field::Count => match self {
                Event::ProcessAggregate(e) => Int(i128::from(e.count)),
                Event::ProcessEphemeral(e) => Int(i128::from(e.count)),
                Event::Sketch(e) => Int(i128::from(e.sketch.count())),
                _ => return None,
            },
            Field::WindowStartNs => match self {
                Event::ProcessEphemeral(e) => Int(i128::from(e.window_start_ns)),
                Event::Sketch(e) => Int(i128::from(e.window_start_ns)),
                _ => return None,
            },
            Field::WindowEndNs => match self {
                Event::ProcessEphemeral(e) => Int(i128::from(e.window_end_ns)),
                Event::Sketch(e) => Int(i128::from(e.window_end_ns)),
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
    /// A sample's command line; an exec's arguments joined with spaces.
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
    Gid,
    CgroupId,
    /// 1 when the exec's `argv` was cut short, else 0.
    ArgvTruncated,
    CpuNs,
    /// A connect's `connect(2)` result; absent when not observed.
    Result,
    Count,
    WindowStartNs,
    WindowEndNs,
}

/// Whether a field holds a number or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Number,
    Text,
}

impl Field {
    /// Every field, for error messages that list the known ones.
    pub const ALL: [Field; 30] = [
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
        Field::Gid,
        Field::CgroupId,
        Field::ArgvTruncated,
        Field::CpuNs,
        Field::Result,
        Field::Count,
        Field::WindowStartNs,
        Field::WindowEndNs,
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
            Field::Gid => "gid",
            Field::CgroupId => "cgroup_id",
            Field::ArgvTruncated => "argv_truncated",
            Field::CpuNs => "cpu_ns",
            Field::Result => "result",
            Field::Count => "count",
            Field::WindowStartNs => "window_start_ns",
            Field::WindowEndNs => "window_end_ns",
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
    /// Text held as separate arguments (an exec's `cmdline`): compare it as
    /// [`Argv::joined`], e.g. through [`Argv::joined_view`].
    Args(&'a Argv),
}
