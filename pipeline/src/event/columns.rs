//! One declaration per kind, read by every format: the security kinds (and
//! an exec's kernel attributes) write and read their values through
//! [`Columns`], in one fixed order, and each wire format is a generic
//! [`ColumnWriter`] / [`ColumnReader`] over that order.
//!
//! Why: before this, adding a few fields and one kind touched 28 files in 5
//! crates (every format had its own hand-written mapping per kind). Now a
//! field is added in three places that sit next to each other or are
//! checked against each other: the struct and its `write_columns` /
//! `read_columns` (the kind's file here), one line of the column
//! declaration in `schemas/src/columns.rs` (names, types, protobuf tags),
//! and one field in `schemas/proto/security.proto`. Tests compare the
//! three (the sinks' round trips and the schemas descriptor test), so a
//! line forgotten in one fails a test instead of shipping.
//!
//! The order is positional: column *i* of the declaration is the *i*-th
//! call on the writer. Names live in the declaration, not here, so this
//! crate stays free of any wire format.

use std::net::IpAddr;
use std::sync::Arc;

use super::{EventMeta, ProcessKey};

/// The value types a column can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    U16,
    U32,
    U64,
    I32,
    I64,
    Bool,
    Str,
    StrList,
    U64List,
}

/// Receives one record's values in declaration order.
pub trait ColumnWriter {
    fn u16(&mut self, value: u16);
    fn u32(&mut self, value: u32);
    fn u64(&mut self, value: u64);
    fn i32(&mut self, value: i32);
    fn i64(&mut self, value: i64);
    fn bool(&mut self, value: bool);
    fn str(&mut self, value: &str);
    /// A list of text; an iterator so a record can hand out what it holds
    /// (its argv, its ancestors' exes) without collecting it per event.
    fn str_list(&mut self, values: &mut dyn Iterator<Item = &str>);
    /// A list of numbers (a detection's `event_ids`); a slice, since a
    /// record holds it as one.
    fn u64_list(&mut self, values: &[u64]);
}

/// Why a record could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The source ran out of columns, or a column holds another type.
    #[error("column {index}: expected {expected:?}")]
    Type { index: usize, expected: ColumnType },
    /// A text column holds a value the kind does not know.
    #[error("column {index}: {value:?} is not a valid {what}")]
    Value { index: usize, what: &'static str, value: String },
}

/// Hands out one record's values in declaration order.
pub trait ColumnReader {
    /// Position of the next column (for error messages).
    fn index(&self) -> usize;
    fn u16(&mut self) -> Result<u16, ColumnError>;
    fn u32(&mut self) -> Result<u32, ColumnError>;
    fn u64(&mut self) -> Result<u64, ColumnError>;
    fn i32(&mut self) -> Result<i32, ColumnError>;
    fn i64(&mut self) -> Result<i64, ColumnError>;
    fn bool(&mut self) -> Result<bool, ColumnError>;
    fn str(&mut self) -> Result<Arc<str>, ColumnError>;
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError>;
    fn u64_list(&mut self) -> Result<Vec<u64>, ColumnError>;
}

impl dyn ColumnReader + '_ {
    /// A text column parsed by `parse`, named `what` in the error.
    pub fn parsed<T>(&mut self, what: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ColumnError> {
        let index = self.index();
        let text = self.str()?;
        parse(&text).ok_or_else(|| ColumnError::Value { index, what, value: text.to_string() })
    }

    /// An address written by [`ColumnWriter::str`] of its text form.
    pub fn ip(&mut self) -> Result<IpAddr, ColumnError> {
        self.parsed("IP address", |text| text.parse().ok())
    }

    /// A process key written by [`write_key`].
    pub fn key(&mut self) -> Result<ProcessKey, ColumnError> {
        Ok(ProcessKey { pid: self.u32()?, start_time_ns: self.u64()? })
    }
}

/// Writes a process key as its two columns (`pid`, `start_time_ns`, or
/// the declaration's names for another role).
pub fn write_key(w: &mut dyn ColumnWriter, key: &ProcessKey) {
    w.u32(key.pid);
    w.u64(key.start_time_ns);
}

/// A record whose values every format reads and writes through one
/// declaration. `meta` (`event_id`, `ts_ns`) is the format's business: it
/// is not among the columns.
pub trait Columns: Sized {
    fn write_columns(&self, w: &mut dyn ColumnWriter);
    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<Self, ColumnError>;
}

/// Records the types a record writes, in order: what tests compare with
/// the declaration in `schemas`.
#[derive(Debug, Default)]
pub struct TypeRecorder(pub Vec<ColumnType>);

impl ColumnWriter for TypeRecorder {
    fn u16(&mut self, _: u16) {
        self.0.push(ColumnType::U16);
    }
    fn u32(&mut self, _: u32) {
        self.0.push(ColumnType::U32);
    }
    fn u64(&mut self, _: u64) {
        self.0.push(ColumnType::U64);
    }
    fn i32(&mut self, _: i32) {
        self.0.push(ColumnType::I32);
    }
    fn i64(&mut self, _: i64) {
        self.0.push(ColumnType::I64);
    }
    fn bool(&mut self, _: bool) {
        self.0.push(ColumnType::Bool);
    }
    fn str(&mut self, _: &str) {
        self.0.push(ColumnType::Str);
    }
    fn str_list(&mut self, _: &mut dyn Iterator<Item = &str>) {
        self.0.push(ColumnType::StrList);
    }
    fn u64_list(&mut self, _: &[u64]) {
        self.0.push(ColumnType::U64List);
    }
}

/// A typed value, as [`ValueRecorder`] keeps it.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValue {
    U16(u16),
    U32(u32),
    U64(u64),
    I32(i32),
    I64(i64),
    Bool(bool),
    Str(Arc<str>),
    StrList(Vec<Arc<str>>),
    U64List(Vec<u64>),
}

/// Keeps every value a record writes; as a [`ColumnReader`] it hands them
/// back, so `read(write(x)) == x` can be tested without any format.
#[derive(Debug, Default)]
pub struct ValueRecorder {
    pub values: Vec<ColumnValue>,
    next: usize,
}

impl ColumnWriter for ValueRecorder {
    fn u16(&mut self, value: u16) {
        self.values.push(ColumnValue::U16(value));
    }
    fn u32(&mut self, value: u32) {
        self.values.push(ColumnValue::U32(value));
    }
    fn u64(&mut self, value: u64) {
        self.values.push(ColumnValue::U64(value));
    }
    fn i32(&mut self, value: i32) {
        self.values.push(ColumnValue::I32(value));
    }
    fn i64(&mut self, value: i64) {
        self.values.push(ColumnValue::I64(value));
    }
    fn bool(&mut self, value: bool) {
        self.values.push(ColumnValue::Bool(value));
    }
    fn str(&mut self, value: &str) {
        self.values.push(ColumnValue::Str(value.into()));
    }
    fn str_list(&mut self, values: &mut dyn Iterator<Item = &str>) {
        self.values.push(ColumnValue::StrList(values.map(Arc::from).collect()));
    }
    fn u64_list(&mut self, values: &[u64]) {
        self.values.push(ColumnValue::U64List(values.to_vec()));
    }
}

macro_rules! take {
    ($self:ident, $variant:ident, $ty:expr) => {{
        let index = $self.next;
        match $self.values.get(index) {
            Some(ColumnValue::$variant(value)) => {
                $self.next += 1;
                Ok(value.clone())
            }
            _ => Err(ColumnError::Type { index, expected: $ty }),
        }
    }};
}

impl ColumnReader for ValueRecorder {
    fn index(&self) -> usize {
        self.next
    }
    fn u16(&mut self) -> Result<u16, ColumnError> {
        take!(self, U16, ColumnType::U16)
    }
    fn u32(&mut self) -> Result<u32, ColumnError> {
        take!(self, U32, ColumnType::U32)
    }
    fn u64(&mut self) -> Result<u64, ColumnError> {
        take!(self, U64, ColumnType::U64)
    }
    fn i32(&mut self) -> Result<i32, ColumnError> {
        take!(self, I32, ColumnType::I32)
    }
    fn i64(&mut self) -> Result<i64, ColumnError> {
        take!(self, I64, ColumnType::I64)
    }
    fn bool(&mut self) -> Result<bool, ColumnError> {
        take!(self, Bool, ColumnType::Bool)
    }
    fn str(&mut self) -> Result<Arc<str>, ColumnError> {
        take!(self, Str, ColumnType::Str)
    }
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError> {
        take!(self, StrList, ColumnType::StrList)
    }
    fn u64_list(&mut self) -> Result<Vec<u64>, ColumnError> {
        take!(self, U64List, ColumnType::U64List)
    }
}

/// Calls `$m!(Variant)` style dispatch over the security kinds: the one
/// list that maps an [`EventKind`](super::EventKind) to its record, so
/// that no format names a security kind.
macro_rules! security_kinds {
    ($m:ident) => {
        $m!(
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
            NetPolicy
        )
    };
}

/// Writes the columns of a security event (one whose record implements
/// [`Columns`]); `false`, writing nothing, for any other kind. Formats call
/// this instead of matching on the declared kinds, so a new kind needs no
/// codec change.
pub fn write_security(event: &super::Event, w: &mut dyn ColumnWriter) -> bool {
    macro_rules! arms {
        ($($kind:ident),+) => {
            match event {
                $(super::Event::$kind(record) => {
                    record.write_columns(w);
                    true
                })+
                _ => false,
            }
        };
    }
    security_kinds!(arms)
}

/// Reads one security event of `kind` back; `None` when `kind` is not a
/// security kind.
pub fn read_security(
    kind: super::EventKind,
    meta: EventMeta,
    r: &mut dyn ColumnReader,
) -> Option<Result<super::Event, ColumnError>> {
    macro_rules! arms {
        ($($kind:ident),+) => {
            match kind {
                $(super::EventKind::$kind => Some(super::$kind::read_columns(meta, r).map(super::Event::$kind)),)+
                _ => None,
            }
        };
    }
    security_kinds!(arms)
}

/// Whether `kind`'s record is written through [`Columns`].
pub fn is_security(kind: super::EventKind) -> bool {
    macro_rules! arms {
        ($($kind:ident),+) => {
            matches!(kind, $(super::EventKind::$kind)|+)
        };
    }
    security_kinds!(arms)
}

/// Attributes with every field set to a value other than its default
/// (peers on stdin and stdout, none on stderr; text that needs escaping).
pub fn sample_exec_attributes() -> ExecAttributesSample {
    use super::security::{ExecFile, FdKind, StdioFd};
    Arc::new(super::ExecAttributes {
        euid: 0,
        suid: 1001,
        egid: 1002,
        sgid: 1003,
        cap_effective: 0x1ff_ffff_ffff,
        cap_permitted: 1 << 21,
        file: ExecFile {
            dev: (8 << 20) | 1,
            inode: 1_234_567_890_123,
            size: 142_144,
            mtime_ns: 1_796_300_000_123_456_789,
            mode: 0o104_755,
            nlink: 0,
            file_caps: true,
            memfd: true,
            overlay_upper: true,
        },
        stdio: [
            StdioFd { kind: FdKind::Tcp, peer: Some(("2001:db8::7".parse().unwrap_or(IpAddr::from([0u16; 8])), 4444)) },
            StdioFd { kind: FdKind::Udp, peer: Some((IpAddr::from([127, 0, 0, 1]), 53)) },
            StdioFd { kind: FdKind::Pipe, peer: None },
        ],
        tty: "pts/3".into(),
        loginuid: 1000,
        session_id: 7,
        cwd: "/home/us\"er/dir\twith tab/é…".into(),
        cwd_truncated: true,
        env: vec!["LD_PRELOAD=/tmp/x.so".into(), "HTTP_PROXY=http://[::1]:3128".into(), "".into()],
        env_truncated: true,
        user: "al\"ice".into(),
        cgroup_path: "/kubepods.slice/pod1/cri-containerd-x.scope".into(),
        exe_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        exe_hash: super::HashState::Ok,
    })
}

/// What [`sample_exec_attributes`] returns.
pub type ExecAttributesSample = Arc<super::ExecAttributes>;

/// One event of every kind written through [`Columns`], with ids from
/// `first_id` on, every field other than its default and every enum past
/// its first value: the fixture of every format's round-trip test (a field
/// a format drops or mistypes shows up as a difference).
pub fn security_samples(first_id: u64) -> Vec<super::Event> {
    use super::security::*;
    use super::{Confidence, Detection, DetectionLayer, ExeHash, ProcessSnapshot, Severity};
    use super::{Event, Protocol};
    let meta = |n: u64| EventMeta { ts_ns: 5_000_000_000 + first_id + n, event_id: first_id + n };
    let process = ProcessKey { pid: 4242, start_time_ns: 9_100_000_000 };
    let v6 = |text: &str| text.parse().unwrap_or(IpAddr::from([0u16; 8]));
    let credentials = |base: u32| Credentials {
        uid: base,
        euid: base + 1,
        suid: base + 2,
        gid: base + 3,
        egid: base + 4,
        sgid: base + 5,
        cap_effective: u64::from(base) << 20 | 1,
        cap_permitted: u64::MAX,
    };
    vec![
        Event::FileChange(FileChange {
            context: None,
            meta: meta(0),
            process,
            op: FileOp::Symlink,
            path: "/home/a b/.ssh/authorized_keys".into(),
            target: "/etc/\"shadow\"\n".into(),
            mode: 0o4755,
            result: -13,
        }),
        Event::CredentialChange(CredentialChange {
            context: None,
            meta: meta(1),
            process,
            syscall: CredSyscall::Setresuid,
            old: credentials(1000),
            new: credentials(7),
            result: -1,
        }),
        Event::NamespaceChange(NamespaceChange {
            context: None,
            meta: meta(2),
            process,
            syscall: NamespaceSyscall::Unshare,
            flags: 0x4000_0000 | (1 << 40),
            result: -22,
        }),
        Event::PtraceAttach(PtraceAttach {
            context: None,
            meta: meta(3),
            process,
            request: 0x4206,
            target: ProcessKey { pid: 31_337, start_time_ns: u64::MAX - 1 },
            result: -1,
        }),
        Event::ModuleLoad(ModuleLoad {
            context: None,
            meta: meta(4),
            process,
            syscall: ModuleSyscall::FinitModule,
            path: "/tmp/.x/rootkit.ko".into(),
            params: "hide=1 name=\"x\"".into(),
            result: -17,
        }),
        Event::BpfProgramLoad(BpfProgramLoad {
            context: None,
            meta: meta(5),
            process,
            prog_type: 26,
            prog_name: "xdp_drop".into(),
            insn_count: 4096,
            result: -13,
        }),
        Event::NetListen(NetListen {
            context: None,
            meta: meta(6),
            process,
            protocol: Protocol::Udp,
            addr: v6("::ffff:10.0.0.1"),
            port: 65_535,
            backlog: -1,
            result: -98,
        }),
        Event::NetAccept(NetAccept {
            context: None,
            meta: meta(7),
            process,
            protocol: Protocol::Udp,
            local_addr: IpAddr::from([10, 0, 0, 5]),
            local_port: 22,
            peer_addr: v6("fe80::1"),
            peer_port: 61_000,
        }),
        Event::NetSend(NetSend {
            context: None,
            meta: meta(8),
            process,
            protocol: Protocol::Udp,
            dst_addr: IpAddr::from([8, 8, 4, 4]),
            dst_port: 53,
            bytes: u32::MAX,
        }),
        Event::ProcessExec(super::ProcessExec {
            context: None,
            meta: meta(9),
            process,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            cgroup_id: 1 << 33,
            comm: "bash".into(),
            exe: "/memfd:x (deleted)".into(),
            argv: super::Argv::from_args(["bash", "-i"]),
            argv_truncated: true,
            attributes: Some(sample_exec_attributes()),
        }),
        Event::ProcessSnapshot(ProcessSnapshot {
            meta: meta(10),
            context: None,
            process,
            parent: ProcessKey { pid: 1, start_time_ns: 20_000_000 },
            uid: 1000,
            euid: 0,
            gid: 100,
            user: "bob".into(),
            comm: "sshd".into(),
            exe: "/usr/sbin/sshd".into(),
            argv: super::Argv::from_args(["sshd: bob [priv]", ""]),
            argv_truncated: true,
            cwd: "/".into(),
            tty: "pts/0".into(),
            loginuid: 1000,
            session_id: 3,
            cgroup_path: "/user.slice".into(),
            exe_sha256: "".into(),
            exe_hash: super::HashState::Pending,
        }),
        Event::ExeHash(ExeHash {
            meta: meta(11),
            context: None,
            process,
            exe: "/tmp/x".into(),
            dev: 2049,
            inode: 77,
            sha256: "ab".repeat(32).into(),
            state: super::HashState::Ok,
        }),
        Event::Detection(Detection {
            meta: meta(12),
            context: None,
            process,
            rule_id: "hf-linux-reverse-shell".into(),
            title: "Shell with a \"socket\" on stdin".into(),
            layer: DetectionLayer::L2,
            severity: Severity::Critical,
            confidence: Confidence::VeryHigh,
            attack: vec!["T1059.004".into(), "T1071".into(), "".into()],
            event_ids: vec![first_id + 9, first_id + 8, 0, u64::MAX],
            event_kind: "process_exec".into(),
            summary: "bash -i with stdin from 2001:db8::7:4444\tand é".into(),
            ruleset: "0123456789abcdef".into(),
        }),
        Event::NetPolicy(super::NetPolicy {
            meta: meta(13),
            context: None,
            process,
            rule_id: "deny-\"metadata\" é".into(),
            rule_key: 0x9e37_79b9,
            action: super::PolicyAction::Audit,
            dry_run: true,
            protocol: Protocol::Udp,
            dst_addr: v6("2001:db8::53"),
            dst_port: 65_534,
            cgroup_id: u64::MAX - 7,
            generation: u32::MAX,
            policy_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, mut event)| {
        // Every other sample carries a context (the first one too), so each
        // format's round trip covers both `has_context` values.
        if i % 2 == 0 {
            if let Some(slot) = event.context_mut() {
                *slot = Some(super::context::sample_context());
            }
        }
        event
    })
    .collect()
}
