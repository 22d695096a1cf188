//! [`Field`]: the fields rule-driven transforms (filter, detect) name, and
//! [`Event::field`], the one place that reads them from any kind.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Argv, Event, Lineage, NetConnect, ProcessContext};

impl Event {
    /// Reads one named field, for rule-driven transforms (filter, detect).
    /// `None` when this kind of event has no such field.
    pub fn field(&self, field: Field) -> Option<FieldValue<'_>> {
        use FieldValue::{Addr, Args, Float, Int, List, Str};
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
                Event::NetPolicy(e) => Int(i128::from(e.cgroup_id)),
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
                Event::NetListen(e) => Str(e.protocol.as_str()),
                Event::NetAccept(e) => Str(e.protocol.as_str()),
                Event::NetSend(e) => Str(e.protocol.as_str()),
                Event::NetPolicy(e) => Str(e.protocol.as_str()),
                _ => return None,
            },
            Field::DstPort => match self {
                Event::NetConnect(e) => Int(i128::from(e.dst_port)),
                Event::NetSend(e) => Int(i128::from(e.dst_port)),
                Event::NetPolicy(e) => Int(i128::from(e.dst_port)),
                _ => return None,
            },
            Field::Result => match self {
                Event::NetConnect(NetConnect { result: Some(result), .. }) => Int(i128::from(*result)),
                Event::FileChange(e) => Int(i128::from(e.result)),
                Event::CredentialChange(e) => Int(i128::from(e.result)),
                Event::NamespaceChange(e) => Int(i128::from(e.result)),
                Event::PtraceAttach(e) => Int(i128::from(e.result)),
                Event::ModuleLoad(e) => Int(i128::from(e.result)),
                Event::BpfProgramLoad(e) => Int(i128::from(e.result)),
                Event::NetListen(e) => Int(i128::from(e.result)),
                _ => return None,
            },
            Field::Path => match self {
                Event::FileOpen(e) => Str(&e.path),
                Event::FileChange(e) => Str(&e.path),
                Event::ModuleLoad(e) => Str(&e.path),
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
            // The security kinds and an exec's kernel attributes (issue #15:
            // what detection rules name).
            Field::Kind => Str(self.kind().as_str()),
            Field::DstAddr => match self {
                Event::NetConnect(e) => Addr(e.dst_addr),
                Event::NetSend(e) => Addr(e.dst_addr),
                Event::NetPolicy(e) => Addr(e.dst_addr),
                _ => return None,
            },
            Field::LocalAddr => match self {
                Event::NetListen(e) => Addr(e.addr),
                Event::NetAccept(e) => Addr(e.local_addr),
                _ => return None,
            },
            Field::LocalPort => match self {
                Event::NetListen(e) => Int(i128::from(e.port)),
                Event::NetAccept(e) => Int(i128::from(e.local_port)),
                _ => return None,
            },
            Field::PeerAddr => match self {
                Event::NetAccept(e) => Addr(e.peer_addr),
                _ => return None,
            },
            Field::PeerPort => match self {
                Event::NetAccept(e) => Int(i128::from(e.peer_port)),
                _ => return None,
            },
            Field::Bytes => match self {
                Event::NetSend(e) => Int(i128::from(e.bytes)),
                _ => return None,
            },
            Field::Target => match self {
                Event::FileChange(e) => Str(&e.target),
                _ => return None,
            },
            Field::FileOp => match self {
                Event::FileChange(e) => Str(e.op.as_str()),
                _ => return None,
            },
            Field::Mode => match self {
                Event::FileChange(e) => Int(i128::from(e.mode)),
                _ => return None,
            },
            Field::Syscall => match self {
                Event::CredentialChange(e) => Str(e.syscall.as_str()),
                Event::NamespaceChange(e) => Str(e.syscall.as_str()),
                Event::ModuleLoad(e) => Str(e.syscall.as_str()),
                _ => return None,
            },
            Field::NsFlags => match self {
                Event::NamespaceChange(e) => Int(i128::from(e.flags)),
                _ => return None,
            },
            Field::Euid => match self {
                Event::ProcessExec(e) => Int(i128::from(e.attributes.as_ref()?.euid)),
                Event::CredentialChange(e) => Int(i128::from(e.new.euid)),
                _ => return None,
            },
            Field::OldEuid => match self {
                Event::CredentialChange(e) => Int(i128::from(e.old.euid)),
                _ => return None,
            },
            Field::OldUid => match self {
                Event::CredentialChange(e) => Int(i128::from(e.old.uid)),
                _ => return None,
            },
            Field::FileMode => match self {
                Event::ProcessExec(e) => Int(i128::from(e.attributes.as_ref()?.file.mode)),
                _ => return None,
            },
            Field::FileMemfd => match self {
                Event::ProcessExec(e) => Int(i128::from(e.attributes.as_ref()?.file.memfd)),
                _ => return None,
            },
            Field::FileNlink => match self {
                Event::ProcessExec(e) => Int(i128::from(e.attributes.as_ref()?.file.nlink)),
                _ => return None,
            },
            Field::StdinType => match self {
                Event::ProcessExec(e) => Str(e.attributes.as_ref()?.stdio[0].kind.as_str()),
                _ => return None,
            },
            Field::StdoutType => match self {
                Event::ProcessExec(e) => Str(e.attributes.as_ref()?.stdio[1].kind.as_str()),
                _ => return None,
            },
            Field::StderrType => match self {
                Event::ProcessExec(e) => Str(e.attributes.as_ref()?.stdio[2].kind.as_str()),
                _ => return None,
            },
            Field::Env => match self {
                Event::ProcessExec(e) => List(&e.attributes.as_ref()?.env),
                _ => return None,
            },
            Field::TargetPid => match self {
                Event::PtraceAttach(e) => Int(i128::from(e.target.pid)),
                _ => return None,
            },
            Field::Request => match self {
                Event::PtraceAttach(e) => Int(i128::from(e.request)),
                _ => return None,
            },
            Field::ProgName => match self {
                Event::BpfProgramLoad(e) => Str(&e.prog_name),
                _ => return None,
            },
            // Network policy (issue #17).
            Field::RuleId => match self {
                Event::NetPolicy(e) => Str(&e.rule_id),
                _ => return None,
            },
            Field::RuleKey => match self {
                Event::NetPolicy(e) => Int(i128::from(e.rule_key)),
                _ => return None,
            },
            Field::Action => match self {
                Event::NetPolicy(e) => Str(e.action.as_str()),
                _ => return None,
            },
            Field::DryRun => match self {
                Event::NetPolicy(e) => Int(i128::from(e.dry_run)),
                _ => return None,
            },
            Field::PolicyDigest => match self {
                Event::NetPolicy(e) => Str(&e.policy_digest),
                _ => return None,
            },
            // The process context (issue #14). A process enrichment could not
            // place has no value for these (its empty text is unknown, not
            // a match for ""), except the two markers that say so.
            Field::CtxLineage => Str(self.context()?.lineage.as_str()),
            Field::CtxOrigin => Str(self.context()?.origin.as_str()),
            Field::CtxExe => {
                let c = self.known_context()?;
                Str(&c.exe)
            }
            Field::CtxCmdline => {
                let c = self.known_context()?;
                Args(&c.argv)
            }
            Field::CtxUser => {
                let c = self.known_context()?;
                Str(&c.user)
            }
            Field::CtxUid => {
                let c = self.known_context()?;
                Int(i128::from(c.uid))
            }
            Field::CtxEuid => {
                let c = self.known_context()?;
                Int(i128::from(c.euid))
            }
            Field::CtxCwd => {
                let c = self.known_context()?;
                Str(&c.cwd)
            }
            Field::CtxTty => {
                let c = self.known_context()?;
                Str(&c.tty)
            }
            Field::CtxLoginuid => {
                let c = self.known_context()?;
                Int(i128::from(c.loginuid))
            }
            Field::CtxSessionId => {
                let c = self.known_context()?;
                Int(i128::from(c.session_id))
            }
            Field::CtxCgroupPath => {
                let c = self.known_context()?;
                Str(&c.cgroup_path)
            }
            Field::CtxContainerRuntime => {
                let c = self.known_context()?;
                Str(&c.container_runtime)
            }
            Field::CtxContainerId => {
                let c = self.known_context()?;
                Str(&c.container_id)
            }
            Field::CtxPodUid => {
                let c = self.known_context()?;
                Str(&c.pod_uid)
            }
            Field::CtxExeSha256 => {
                let c = self.known_context()?;
                Str(&c.exe_sha256)
            }
            Field::CtxExeHash => {
                let c = self.known_context()?;
                Str(c.exe_hash.as_str())
            }
            Field::ParentExe => {
                let c = self.known_context()?;
                Str(&c.ancestry.first()?.exe)
            }
            Field::ParentCmdline => {
                let c = self.known_context()?;
                Str(&c.ancestry.first()?.args)
            }
        };
        Some(value)
    }

    /// The context, unless it is the marker of a process enrichment could
    /// not place.
    fn known_context(&self) -> Option<&ProcessContext> {
        self.context().map(|c| &**c).filter(|c| c.lineage != Lineage::ProcessUnknown)
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
    CtxExe,
    CtxCmdline,
    CtxUser,
    CtxUid,
    CtxEuid,
    CtxCwd,
    CtxTty,
    CtxLoginuid,
    CtxSessionId,
    CtxCgroupPath,
    CtxContainerRuntime,
    CtxContainerId,
    CtxPodUid,
    CtxExeSha256,
    CtxExeHash,
    ParentExe,
    ParentCmdline,
    CtxLineage,
    CtxOrigin,
    /// The event's kind name (`process_exec`, `net_connect`, …).
    Kind,
    /// A connect's or UDP send's destination address.
    DstAddr,
    /// A listener's bound address; an accepted connection's local address.
    LocalAddr,
    LocalPort,
    PeerAddr,
    PeerPort,
    Bytes,
    /// A rename's new path, a link's target.
    Target,
    FileOp,
    /// A chmod's new mode.
    Mode,
    Syscall,
    NsFlags,
    /// An exec's effective uid after the exec; a credential change's new one.
    Euid,
    OldEuid,
    OldUid,
    /// The executed file's mode (setuid bit: 0o4000).
    FileMode,
    /// 1 when the executed file is a memfd.
    FileMemfd,
    /// 0 when the executed file was deleted.
    FileNlink,
    StdinType,
    StdoutType,
    StderrType,
    /// The exec's chosen environment variables, `NAME=value` each.
    Env,
    TargetPid,
    Request,
    ProgName,
    /// A network-policy event's rule id (the operator's).
    RuleId,
    /// A network-policy event's rule key (FNV-1a 32 of the id).
    RuleKey,
    /// A network-policy event's action: `deny`, `audit` or `allow`.
    Action,
    /// 1 when a network-policy deny was only reported (dry run).
    DryRun,
    PolicyDigest,
}

/// Whether a field holds a number or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Number,
    Text,
    /// An IP address: compared by CIDR (detect), not as text.
    Address,
}

impl Field {
    /// Every field, for error messages that list the known ones.
    pub const ALL: [Field; 79] = [
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
        Field::CtxExe,
        Field::CtxCmdline,
        Field::CtxUser,
        Field::CtxUid,
        Field::CtxEuid,
        Field::CtxCwd,
        Field::CtxTty,
        Field::CtxLoginuid,
        Field::CtxSessionId,
        Field::CtxCgroupPath,
        Field::CtxContainerRuntime,
        Field::CtxContainerId,
        Field::CtxPodUid,
        Field::CtxExeSha256,
        Field::CtxExeHash,
        Field::ParentExe,
        Field::ParentCmdline,
        Field::CtxLineage,
        Field::CtxOrigin,
        Field::Kind,
        Field::DstAddr,
        Field::LocalAddr,
        Field::LocalPort,
        Field::PeerAddr,
        Field::PeerPort,
        Field::Bytes,
        Field::Target,
        Field::FileOp,
        Field::Mode,
        Field::Syscall,
        Field::NsFlags,
        Field::Euid,
        Field::OldEuid,
        Field::OldUid,
        Field::FileMode,
        Field::FileMemfd,
        Field::FileNlink,
        Field::StdinType,
        Field::StdoutType,
        Field::StderrType,
        Field::Env,
        Field::TargetPid,
        Field::Request,
        Field::ProgName,
        Field::RuleId,
        Field::RuleKey,
        Field::Action,
        Field::DryRun,
        Field::PolicyDigest,
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
            Field::CtxExe => "ctx_exe",
            Field::CtxCmdline => "ctx_cmdline",
            Field::CtxUser => "ctx_user",
            Field::CtxUid => "ctx_uid",
            Field::CtxEuid => "ctx_euid",
            Field::CtxCwd => "ctx_cwd",
            Field::CtxTty => "ctx_tty",
            Field::CtxLoginuid => "ctx_loginuid",
            Field::CtxSessionId => "ctx_session_id",
            Field::CtxCgroupPath => "ctx_cgroup_path",
            Field::CtxContainerRuntime => "ctx_container_runtime",
            Field::CtxContainerId => "ctx_container_id",
            Field::CtxPodUid => "ctx_pod_uid",
            Field::CtxExeSha256 => "ctx_exe_sha256",
            Field::CtxExeHash => "ctx_exe_hash",
            Field::ParentExe => "parent_exe",
            Field::ParentCmdline => "parent_cmdline",
            Field::CtxLineage => "ctx_lineage",
            Field::CtxOrigin => "ctx_origin",
            Field::Kind => "kind",
            Field::DstAddr => "dst_addr",
            Field::LocalAddr => "local_addr",
            Field::LocalPort => "local_port",
            Field::PeerAddr => "peer_addr",
            Field::PeerPort => "peer_port",
            Field::Bytes => "bytes",
            Field::Target => "target",
            Field::FileOp => "file_op",
            Field::Mode => "mode",
            Field::Syscall => "syscall",
            Field::NsFlags => "ns_flags",
            Field::Euid => "euid",
            Field::OldEuid => "old_euid",
            Field::OldUid => "old_uid",
            Field::FileMode => "file_mode",
            Field::FileMemfd => "file_memfd",
            Field::FileNlink => "file_nlink",
            Field::StdinType => "stdin_type",
            Field::StdoutType => "stdout_type",
            Field::StderrType => "stderr_type",
            Field::Env => "env",
            Field::TargetPid => "target_pid",
            Field::Request => "request",
            Field::ProgName => "prog_name",
            Field::RuleId => "rule_id",
            Field::RuleKey => "rule_key",
            Field::Action => "action",
            Field::DryRun => "dry_run",
            Field::PolicyDigest => "policy_digest",
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
            | Field::Reason
            | Field::CtxExe
            | Field::CtxCmdline
            | Field::CtxUser
            | Field::CtxCwd
            | Field::CtxTty
            | Field::CtxCgroupPath
            | Field::CtxContainerRuntime
            | Field::CtxContainerId
            | Field::CtxPodUid
            | Field::CtxExeSha256
            | Field::CtxExeHash
            | Field::ParentExe
            | Field::ParentCmdline
            | Field::CtxLineage
            | Field::CtxOrigin
            | Field::Kind
            | Field::Target
            | Field::FileOp
            | Field::Syscall
            | Field::StdinType
            | Field::StdoutType
            | Field::StderrType
            | Field::Env
            | Field::ProgName
            | Field::RuleId
            | Field::Action
            | Field::PolicyDigest => FieldType::Text,
            Field::DstAddr | Field::LocalAddr | Field::PeerAddr => FieldType::Address,
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
    /// An IP address.
    Addr(IpAddr),
    /// Separate text values (an exec's environment): a test holds when it
    /// holds for any one of them.
    List(&'a [Arc<str>]),
}
