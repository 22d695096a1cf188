//! Sigma field names → hostflow targets, per log source.
//!
//! The categories follow Sigma's taxonomy for Sysmon for Linux (events 1, 3
//! and 11); `service: auditd` follows the fields of auditd's records
//! (`EXECVE`, `PATH`, `SYSCALL`). Field names are case-sensitive, as Sigma
//! writes them. A field hostflow does not collect is an error with the
//! reason, never a predicate that silently never holds.

use std::sync::Arc;

use pipeline::{EventKind, Field};

use crate::rule::{Expr, KindSet, Pred, Target, Test, TextOp};

/// A rule's `logsource`, reduced to what decides its fields and kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    ProcessCreation,
    FileEvent,
    NetworkConnection,
    Auditd,
}

impl Source {
    /// The event kinds a rule of this source can match.
    pub(crate) fn kinds(self) -> KindSet {
        match self {
            Source::ProcessCreation => KindSet::of(&[EventKind::ProcessExec]),
            Source::FileEvent => KindSet::of(&[EventKind::FileOpen, EventKind::FileChange]),
            Source::NetworkConnection => KindSet::of(&[EventKind::NetConnect, EventKind::NetAccept]),
            Source::Auditd => KindSet(Record::Execve.kinds().0 | Record::Path.kinds().0 | Record::Syscall.kinds().0),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::ProcessCreation => "process_creation",
            Source::FileEvent => "file_event",
            Source::NetworkConnection => "network_connection",
            Source::Auditd => "auditd",
        }
    }
}

/// The auditd record types that have a hostflow counterpart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// An exec's arguments: `a0`…`aN`.
    Execve,
    /// A path a syscall touched: `name`.
    Path,
    /// The syscall itself: `exe`, `comm`, `syscall`.
    Syscall,
}

/// The kinds that stand for an audited syscall.
const SYSCALL_KINDS: [EventKind; 13] = [
    EventKind::ProcessExec,
    EventKind::ProcessFork,
    EventKind::FileOpen,
    EventKind::FileChange,
    EventKind::NetConnect,
    EventKind::NetListen,
    EventKind::NetAccept,
    EventKind::NetSend,
    EventKind::CredentialChange,
    EventKind::NamespaceChange,
    EventKind::PtraceAttach,
    EventKind::ModuleLoad,
    EventKind::BpfProgramLoad,
];

impl Record {
    /// `EXECVE`, `PATH`, `SYSCALL` (any case).
    pub(crate) fn from_name(name: &str) -> Option<Record> {
        match name.trim().to_ascii_uppercase().as_str() {
            "EXECVE" => Some(Record::Execve),
            "PATH" => Some(Record::Path),
            "SYSCALL" => Some(Record::Syscall),
            _ => None,
        }
    }

    /// The event kinds that carry this record's information.
    pub(crate) fn kinds(self) -> KindSet {
        match self {
            Record::Execve => KindSet::of(&[EventKind::ProcessExec]),
            Record::Path => KindSet::of(&[EventKind::FileOpen, EventKind::FileChange]),
            Record::Syscall => KindSet::of(&SYSCALL_KINDS),
        }
    }
}

/// What a Sigma field name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// A value of the event.
    Target(Target),
    /// A value of the event that only the given kinds carry in Sigma's sense
    /// (an auditd record's field): the test comes with a kind check, so
    /// `a1` is never read from the context of, say, a file open.
    Scoped(Target, KindSet),
    /// A Sysmon network field whose meaning follows the direction: for an
    /// outgoing connection (`Initiated: 'true'`) the destination is the
    /// remote end; for an accepted one, Sysmon's destination is the local
    /// end.
    Direction { connect: Field, accept: Field },
    /// `Initiated` (network_connection): the direction, i.e. the kind.
    Initiated,
    /// `type` (auditd): the record type, i.e. the kinds.
    RecordType,
    /// `syscall` (auditd): the syscall, i.e. a kind and maybe a field.
    Syscall,
}

/// Why a field cannot be used: a message and a hint.
pub(crate) type Unmapped = (String, String);

/// Maps `name` for a rule of `source`. `record` is the auditd record type
/// the selection names with `type`, when it names exactly one.
pub(crate) fn map(source: Source, name: &str, record: Option<Record>) -> Result<Mapping, Unmapped> {
    use Field as F;
    let field = |f: Field| Ok(Mapping::Target(Target::Field(f)));
    match (source, name) {
        (Source::Auditd, _) => map_auditd(name, record),
        (_, "ProcessId") => field(F::Pid),
        (Source::ProcessCreation, "Image") => field(F::Exe),
        (Source::ProcessCreation, "CommandLine") => field(F::Cmdline),
        (Source::ProcessCreation, "ParentImage") => field(F::ParentExe),
        (Source::ProcessCreation, "ParentCommandLine") => field(F::ParentCmdline),
        (Source::ProcessCreation, "User") => field(F::CtxUser),
        (Source::ProcessCreation, "CurrentDirectory") => field(F::CtxCwd),
        (Source::ProcessCreation, "ParentProcessId") => field(F::Ppid),
        (Source::FileEvent, "TargetFilename") => field(F::Path),
        (Source::FileEvent | Source::NetworkConnection, "Image") => field(F::CtxExe),
        (Source::FileEvent | Source::NetworkConnection, "User") => field(F::CtxUser),
        (Source::NetworkConnection, "DestinationIp") => {
            Ok(Mapping::Direction { connect: F::DstAddr, accept: F::LocalAddr })
        }
        (Source::NetworkConnection, "DestinationPort") => {
            Ok(Mapping::Direction { connect: F::DstPort, accept: F::LocalPort })
        }
        (Source::NetworkConnection, "Protocol") => field(F::Protocol),
        (Source::NetworkConnection, "Initiated") => Ok(Mapping::Initiated),
        (Source::NetworkConnection, "DestinationHostname" | "SourceHostname") => Err((
            format!("`{name}`: no DNS names are collected"),
            "match the address with `DestinationIp|cidr`, or drop the rule".to_owned(),
        )),
        (Source::NetworkConnection, "SourceIp" | "SourcePort") => Err((
            format!("`{name}`: the local end of an outgoing connection is not collected"),
            "match `DestinationIp` / `DestinationPort` (an accepted connection's local end)".to_owned(),
        )),
        (
            _,
            "OriginalFileName" | "Hashes" | "Product" | "Company" | "Description" | "FileVersion" | "Imphash"
            | "IntegrityLevel" | "md5" | "sha1" | "sha256" | "ParentUser" | "ProcessGuid" | "ParentProcessGuid"
            | "LogonGuid" | "TerminalSessionId",
        ) => Err((
            format!("`{name}` is not collected on Linux"),
            format!("fields of {}: {}", source.name(), known(source)),
        )),
        (_, "LogonId") => Err((
            "`LogonId`: hostflow has no logon id".to_owned(),
            format!("fields of {}: {}", source.name(), known(source)),
        )),
        _ => Err((
            format!("field `{name}` is not part of {} for Linux", source.name()),
            format!("fields of {}: {}", source.name(), known(source)),
        )),
    }
}

fn known(source: Source) -> &'static str {
    match source {
        Source::ProcessCreation => {
            "Image, CommandLine, ParentImage, ParentCommandLine, User, CurrentDirectory, ProcessId, ParentProcessId"
        }
        Source::FileEvent => "TargetFilename, Image, User, ProcessId",
        Source::NetworkConnection => "DestinationIp, DestinationPort, Initiated, Protocol, Image, User, ProcessId",
        Source::Auditd => "type (EXECVE, PATH, SYSCALL), a0…aN, name, exe, comm, syscall, pid, uid, euid, auid",
    }
}

fn map_auditd(name: &str, record: Option<Record>) -> Result<Mapping, Unmapped> {
    let hint = || format!("auditd fields: {}", known(Source::Auditd));
    if let Some(index) = name.strip_prefix('a').filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        if record == Some(Record::Syscall) {
            return Err((
                format!("`{name}` of a SYSCALL record is a raw syscall argument, which is not collected"),
                "a0…aN are matched as an exec's arguments (type: EXECVE)".to_owned(),
            ));
        }
        return match index.parse::<u16>() {
            Ok(i) => Ok(Mapping::Scoped(Target::Arg(i), Record::Execve.kinds())),
            Err(_) => Err((format!("`{name}`: argument index out of range"), hint())),
        };
    }
    match name {
        "type" => Ok(Mapping::RecordType),
        "name" => Ok(Mapping::Scoped(Target::Field(Field::Path), Record::Path.kinds())),
        "exe" => Ok(Mapping::Scoped(Target::Field(Field::CtxExe), Record::Syscall.kinds())),
        "comm" => Ok(Mapping::Scoped(Target::Field(Field::Comm), KindSet::of(&[EventKind::ProcessExec]))),
        "pid" => Ok(Mapping::Scoped(Target::Field(Field::Pid), Record::Syscall.kinds())),
        "uid" => Ok(Mapping::Scoped(Target::Field(Field::CtxUid), Record::Syscall.kinds())),
        "euid" => Ok(Mapping::Scoped(Target::Field(Field::CtxEuid), Record::Syscall.kinds())),
        "auid" => Ok(Mapping::Scoped(Target::Field(Field::CtxLoginuid), Record::Syscall.kinds())),
        "syscall" | "SYSCALL" => Ok(Mapping::Syscall),
        "key" => Err((
            "`key`: audit rule keys (`-k`) are not collected".to_owned(),
            "match what the audit rule watches (a path, an exe, a syscall) instead".to_owned(),
        )),
        _ => Err((format!("auditd field `{name}` has no hostflow counterpart"), hint())),
    }
}

/// The kinds (and the extra check) an auditd `syscall` value stands for;
/// `None` for a syscall hostflow does not observe.
pub(crate) fn syscall(name: &str) -> Option<(EventKind, Option<Pred>)> {
    let text = |field: Field, value: &str| {
        Some(Pred {
            target: Target::Field(field),
            test: Test::Text { op: TextOp::Equals, values: vec![Arc::from(value)], all: false, cased: true },
        })
    };
    let name = name.trim().to_ascii_lowercase();
    Some(match name.as_str() {
        "execve" | "execveat" => (EventKind::ProcessExec, None),
        "fork" | "vfork" | "clone" | "clone3" => (EventKind::ProcessFork, None),
        "setuid" | "setreuid" | "setresuid" | "setfsuid" | "setgid" | "setregid" | "setresgid" | "setfsgid"
        | "capset" => (EventKind::CredentialChange, text(Field::Syscall, &name)),
        "setns" | "unshare" => (EventKind::NamespaceChange, text(Field::Syscall, &name)),
        "init_module" | "finit_module" => (EventKind::ModuleLoad, text(Field::Syscall, &name)),
        "ptrace" => (EventKind::PtraceAttach, None),
        "bpf" => (EventKind::BpfProgramLoad, None),
        "connect" => (EventKind::NetConnect, None),
        "accept" | "accept4" => (EventKind::NetAccept, None),
        "listen" => (EventKind::NetListen, None),
        "open" | "openat" | "openat2" | "creat" => (EventKind::FileOpen, None),
        "chmod" | "fchmod" | "fchmodat" => (EventKind::FileChange, text(Field::FileOp, "chmod")),
        "unlink" | "unlinkat" => (EventKind::FileChange, text(Field::FileOp, "unlink")),
        "rename" | "renameat" | "renameat2" => (EventKind::FileChange, text(Field::FileOp, "rename")),
        "link" | "linkat" => (EventKind::FileChange, text(Field::FileOp, "link")),
        "symlink" | "symlinkat" => (EventKind::FileChange, text(Field::FileOp, "symlink")),
        _ => return None,
    })
}

/// A check that the event's kind is in `kinds` (on [`Field::Kind`]).
pub(crate) fn kind_pred(kinds: KindSet) -> Expr {
    let values = EventKind::ALL.iter().filter(|k| kinds.contains(**k)).map(|k| Arc::from(k.as_str())).collect();
    Expr::Pred(Pred {
        target: Target::Field(Field::Kind),
        test: Test::Text { op: TextOp::Equals, values, all: false, cased: true },
    })
}

/// The kinds a check built by [`kind_pred`] (or any plain equality on
/// [`Field::Kind`]) admits.
pub(crate) fn kinds_of(pred: &Pred) -> Option<KindSet> {
    match (&pred.target, &pred.test) {
        (Target::Field(Field::Kind), Test::Text { op: TextOp::Equals, values, all: false, .. }) => {
            let mut set = KindSet::default();
            for value in values {
                let kind = EventKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(value))?;
                set = KindSet(set.0 | KindSet::of(&[kind]).0);
            }
            Some(set)
        }
        _ => None,
    }
}
