//! The records the eBPF programs write into the ring buffer: `#[repr(C)]`
//! mirrors of `bpf/records.h` (sizes and offsets asserted at compile time)
//! and safe decoding from the bytes of one ring-buffer entry into owned,
//! typed records.
//!
//! Decoding never trusts the bytes: every read is bounds-checked through
//! [`Fields`], the header's kind, version and size must agree with the
//! entry, and a malformed entry is a [`DecodeError`], never a panic. Field
//! positions come from `offset_of!` on the mirrors, so the mirror is the
//! one Rust statement of the layout. No unsafe code: nothing is transmuted.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::records_security::SecurityRecord;
use pipeline::event::{Argv, ExecAttributes, ExecFile, FdKind, HashState, StdioFd};

/// `HF_RECORD_VERSION`: bumped with every layout change.
pub const RECORD_VERSION: u16 = 2;

/// `HF_KIND_*`.
pub mod kind {
    pub const EXEC: u16 = 1;
    pub const EXIT: u16 = 2;
    pub const FORK: u16 = 3;
    pub const CONNECT: u16 = 4;
    pub const OPEN: u16 = 5;
}

/// `HF_PROG_COUNT`: entries of the per-CPU counter array.
pub const PROGRAM_COUNT: usize = 14;
pub const COMM_LEN: usize = 16;
pub const FILENAME_LEN: usize = 256;
/// Bytes of argv kept per exec (arguments NUL-separated): the bound on
/// both the length and the count of captured arguments.
pub const ARGV_LEN: usize = 4096;
pub const PATH_LEN: usize = 256;

const EXEC_ARGV_TRUNCATED: u32 = 1 << 0;
const EXEC_ARGV_UNREADABLE: u32 = 1 << 1;
const EXEC_FILENAME_TRUNCATED: u32 = 1 << 2;
const EXEC_FILE_CAPS: u32 = 1 << 3;
const EXEC_MEMFD: u32 = 1 << 4;
const EXEC_OVERLAY_UPPER: u32 = 1 << 5;
const EXEC_CWD_TRUNCATED: u32 = 1 << 6;
const EXEC_CWD_UNREADABLE: u32 = 1 << 7;
const EXEC_ENV_TRUNCATED: u32 = 1 << 8;
/// Bytes of the controlling tty's name kept.
pub const TTY_LEN: usize = 32;
/// Bytes of cwd components kept per exec (`HF_CWD_LEN`).
pub const CWD_LEN: usize = 256;
/// Bytes of allow-listed `NAME=value` entries kept per exec (`HF_ENV_LEN`).
pub const ENV_LEN: usize = 1024;
/// Longest allow-listed variable name (`HF_ENV_NAME_LEN`).
pub const ENV_NAME_LEN: usize = 32;
/// Most allow-listed variables (`HF_MAX_ENV_NAMES`).
pub const MAX_ENV_NAMES: usize = 16;
/// `HF_FD_*`: what the kernel saw behind a standard fd.
const FD_NONE: u8 = 0;
const FD_FILE: u8 = 1;
const FD_PIPE: u8 = 2;
const FD_TTY: u8 = 3;
const FD_SOCKET: u8 = 4;
const FD_OTHER: u8 = 5;
const AF_UNIX: u16 = 1;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `struct hf_header`.
#[repr(C)]
pub struct RawHeader {
    pub kind: u16,
    pub version: u16,
    pub size: u32,
    pub ts_ns: u64,
}

/// `struct hf_proc`.
#[repr(C)]
pub struct RawProc {
    pub tgid: u32,
    pub pid: u32,
    pub start_boottime: u64,
}

/// `struct hf_stdio`: one of fds 0, 1, 2 at exec.
#[repr(C)]
pub struct RawStdio {
    pub kind: u8,
    pub pad: u8,
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub addr: [u8; 16],
}

/// `struct hf_exec` without its variable tail (argv, cwd, env).
#[repr(C)]
pub struct RawExecFixed {
    pub header: RawHeader,
    pub proc: RawProc,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub cgroup_id: u64,
    pub argv_len: u32,
    pub argv_full_len: u32,
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; FILENAME_LEN],
    pub euid: u32,
    pub suid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub file_ino: u64,
    pub file_size: u64,
    pub file_mtime_ns: u64,
    pub file_dev: u32,
    pub file_mode: u32,
    pub file_nlink: u32,
    pub loginuid: u32,
    pub sessionid: u32,
    pub cwd_len: u16,
    pub env_len: u16,
    pub stdio: [RawStdio; 3],
    pub tty: [u8; TTY_LEN],
}

/// `struct hf_exit`.
#[repr(C)]
pub struct RawExit {
    pub header: RawHeader,
    pub proc: RawProc,
    pub exit_code: i32,
    pub pad: u32,
    pub cpu_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// `struct hf_fork`.
#[repr(C)]
pub struct RawFork {
    pub header: RawHeader,
    pub parent: RawProc,
    pub child: RawProc,
}

/// `struct hf_connect`.
#[repr(C)]
pub struct RawConnect {
    pub header: RawHeader,
    pub proc: RawProc,
    pub family: u16,
    pub port: u16,
    pub sock_type: i16,
    /// `HF_CONNECT_*`.
    pub flags: u16,
    pub ret: i32,
    pub pad2: u32,
    pub addr: [u8; 16],
}

/// `struct hf_open`.
#[repr(C)]
pub struct RawOpen {
    pub header: RawHeader,
    pub proc: RawProc,
    pub flags: u32,
    pub path_len: u32,
    pub dfd: i32,
    pub syscall: u32,
    pub path: [u8; PATH_LEN],
}

/// `struct hf_counter` (one per CPU and program): submitted, lost, filtered.
pub type RawCounter = [u64; 3];

/// `struct hf_env_name`: one allow-listed variable.
pub type RawEnvName = [u8; 48];

/// `struct hf_env_names`: the one value of the `hf_env_names` map.
pub type RawEnvNames = [u8; 48 * MAX_ENV_NAMES];

// The C side asserts the same numbers (bpf/records.h).
const _: () = {
    assert!(size_of::<RawHeader>() == 16);
    assert!(size_of::<RawProc>() == 16);
    assert!(size_of::<RawStdio>() == 24);
    assert!(size_of::<RawExecFixed>() == 520);
    assert!(offset_of!(RawExecFixed, euid) == 336);
    assert!(offset_of!(RawExecFixed, stdio) == 416);
    assert!(offset_of!(RawExecFixed, tty) == 488);
    assert!(size_of::<RawExit>() == 64);
    assert!(size_of::<RawFork>() == 48);
    assert!(size_of::<RawConnect>() == 64);
    assert!(size_of::<RawOpen>() == 304);
    assert!(size_of::<RawCounter>() == 24);
    assert!(offset_of!(RawExecFixed, filename) == 80);
    assert!(offset_of!(RawConnect, addr) == 48);
    assert!(offset_of!(RawOpen, path) == 48);
};

/// A process as the kernel saw it: thread group, acting thread, and the
/// group leader's start time in nanoseconds since boot, not yet rounded to
/// `/proc`'s clock tick (see [`super::events::process_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcIdentity {
    pub tgid: u32,
    pub pid: u32,
    pub start_boottime_ns: u64,
}

/// A process replaced its image.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: Arc<str>,
    /// The path given to `execve` (not resolved; a script's own path).
    pub filename: Arc<str>,
    pub argv: Argv,
    /// The argument area was longer than [`ARGV_LEN`]; `argv` is a prefix
    /// (its last argument possibly cut).
    pub argv_truncated: bool,
    /// The argument pages could not be read; `argv` is empty.
    pub argv_unreadable: bool,
    pub filename_truncated: bool,
    /// Length of the whole argument area in bytes.
    pub argv_full_len: u32,
    /// Credentials, file, stdio, terminal, session, cwd and allow-listed
    /// environment at the exec (shared: the event keeps the same value).
    pub attributes: Arc<ExecAttributes>,
}

/// The last thread of a process exited.
#[derive(Clone, Debug, PartialEq)]
pub struct ExitRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    /// `task->exit_code` as the kernel keeps it: `status << 8`, or the
    /// signal number (plus 0x80 for a core dump) for a killed process.
    pub exit_code_raw: i32,
    /// CPU time of the whole thread group: scheduler runtime in
    /// nanoseconds (exact; `utime + stime` are tick-sampled and 0 for most
    /// short-lived processes).
    pub cpu_ns: u64,
    pub comm: Arc<str>,
}

impl ExitRecord {
    /// The status as a shell reports it: the `exit(3)` value, or 128 + the
    /// signal number for a process killed by a signal.
    pub fn exit_status(&self) -> i32 {
        let signal = self.exit_code_raw & 0x7f;
        if signal == 0 {
            (self.exit_code_raw >> 8) & 0xff
        } else {
            128 + signal
        }
    }
}

/// A process created a child process (threads are not reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkRecord {
    pub ts_ns: u64,
    pub parent: ProcIdentity,
    pub child: ProcIdentity,
}

/// A `connect(2)` to an IPv4 or IPv6 address returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub addr: IpAddr,
    pub port: u16,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), 0 when it could not be read.
    pub sock_type: i16,
    /// 0, or a negative errno (`-EINPROGRESS` for a non-blocking socket);
    /// `None` from the cgroup hook, which runs before the attempt.
    pub result: Option<i32>,
}

/// `HF_CONNECT_NO_RESULT`: the record was made before the connect was
/// attempted (the cgroup hook), so `ret` means nothing.
pub const CONNECT_NO_RESULT: u16 = 1 << 0;

/// Which system call opened the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    Openat,
    Openat2,
    Open,
}

/// A file under a configured prefix was opened (at syscall entry).
#[derive(Clone, Debug, PartialEq)]
pub struct OpenRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    /// As passed to the syscall.
    pub path: Arc<str>,
    pub flags: u32,
    pub dfd: i32,
    pub syscall: OpenSyscall,
}

/// One decoded ring-buffer entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Exec(ExecRecord),
    Exit(ExitRecord),
    Fork(ForkRecord),
    Connect(ConnectRecord),
    Open(OpenRecord),
    /// The security kinds (records_security.rs).
    Security(SecurityRecord),
}

/// Why an entry could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte layout")]
    TooShort { len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record version {found}, this build reads version {RECORD_VERSION}")]
    Version { found: u16 },
    #[error("record says it has {declared} bytes, the ring entry has {actual}")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("field {field} has an impossible value {value}")]
    BadField { field: &'static str, value: u64 },
}

/// Bounds-checked little-endian reads from one entry (shared with
/// `records_security.rs`, which adds addresses and credentials).
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl Fields<'_> {
    pub(super) fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N], DecodeError> {
        self.0
            .get(offset..offset + N)
            .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
            .ok_or(DecodeError::TooShort { len: self.0.len(), need: offset + N })
    }

    pub(super) fn u16(&self, offset: usize) -> Result<u16, DecodeError> {
        self.array(offset).map(u16::from_le_bytes)
    }

    pub(super) fn i16(&self, offset: usize) -> Result<i16, DecodeError> {
        self.array(offset).map(i16::from_le_bytes)
    }

    pub(super) fn u32(&self, offset: usize) -> Result<u32, DecodeError> {
        self.array(offset).map(u32::from_le_bytes)
    }

    pub(super) fn i32(&self, offset: usize) -> Result<i32, DecodeError> {
        self.array(offset).map(i32::from_le_bytes)
    }

    pub(super) fn u64(&self, offset: usize) -> Result<u64, DecodeError> {
        self.array(offset).map(u64::from_le_bytes)
    }

    pub(super) fn bytes(&self, offset: usize, len: usize) -> Result<&[u8], DecodeError> {
        self.0.get(offset..offset + len).ok_or(DecodeError::TooShort { len: self.0.len(), need: offset + len })
    }

    /// A NUL-terminated string in a fixed field; lossy UTF-8.
    pub(super) fn c_string(&self, offset: usize, len: usize) -> Result<Arc<str>, DecodeError> {
        let field = self.bytes(offset, len)?;
        let end = field.iter().position(|&byte| byte == 0).unwrap_or(field.len());
        Ok(Arc::from(String::from_utf8_lossy(&field[..end])))
    }

    pub(super) fn proc(&self, offset: usize) -> Result<ProcIdentity, DecodeError> {
        Ok(ProcIdentity {
            tgid: self.u32(offset + offset_of!(RawProc, tgid))?,
            pid: self.u32(offset + offset_of!(RawProc, pid))?,
            start_boottime_ns: self.u64(offset + offset_of!(RawProc, start_boottime))?,
        })
    }
}

/// Decodes one ring-buffer entry.
pub fn decode(entry: &[u8]) -> Result<Record, DecodeError> {
    let fields = Fields(entry);
    let kind = fields.u16(offset_of!(RawHeader, kind))?;
    let version = fields.u16(offset_of!(RawHeader, version))?;
    let declared = fields.u32(offset_of!(RawHeader, size))? as usize;
    if version != RECORD_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    if declared != entry.len() {
        return Err(DecodeError::SizeMismatch { declared, actual: entry.len() });
    }
    let fixed = match kind {
        kind::EXEC => size_of::<RawExecFixed>(),
        kind::EXIT => size_of::<RawExit>(),
        kind::FORK => size_of::<RawFork>(),
        kind::CONNECT => size_of::<RawConnect>(),
        kind::OPEN => size_of::<RawOpen>(),
        other => return super::records_security::decode(other, entry),
    };
    if entry.len() < fixed {
        return Err(DecodeError::TooShort { len: entry.len(), need: fixed });
    }
    let ts_ns = fields.u64(offset_of!(RawHeader, ts_ns))?;
    Ok(match kind {
        kind::EXEC => Record::Exec(decode_exec(&fields, ts_ns)?),
        kind::EXIT => Record::Exit(ExitRecord {
            ts_ns,
            proc: fields.proc(offset_of!(RawExit, proc))?,
            exit_code_raw: fields.i32(offset_of!(RawExit, exit_code))?,
            cpu_ns: fields.u64(offset_of!(RawExit, cpu_ns))?,
            comm: fields.c_string(offset_of!(RawExit, comm), COMM_LEN)?,
        }),
        kind::FORK => Record::Fork(ForkRecord {
            ts_ns,
            parent: fields.proc(offset_of!(RawFork, parent))?,
            child: fields.proc(offset_of!(RawFork, child))?,
        }),
        kind::CONNECT => Record::Connect(decode_connect(&fields, ts_ns)?),
        _ => Record::Open(decode_open(&fields, ts_ns)?),
    })
}

fn decode_exec(fields: &Fields<'_>, ts_ns: u64) -> Result<ExecRecord, DecodeError> {
    let flags = fields.u32(offset_of!(RawExecFixed, flags))?;
    let argv_len = fields.u32(offset_of!(RawExecFixed, argv_len))? as usize;
    if argv_len > ARGV_LEN {
        return Err(DecodeError::BadField { field: "argv_len", value: argv_len as u64 });
    }
    let cwd_len = usize::from(fields.u16(offset_of!(RawExecFixed, cwd_len))?);
    if cwd_len > CWD_LEN {
        return Err(DecodeError::BadField { field: "cwd_len", value: cwd_len as u64 });
    }
    let env_len = usize::from(fields.u16(offset_of!(RawExecFixed, env_len))?);
    if env_len > ENV_LEN {
        return Err(DecodeError::BadField { field: "env_len", value: env_len as u64 });
    }
    let fixed = size_of::<RawExecFixed>();
    let expected = fixed + argv_len + cwd_len + env_len;
    if fields.0.len() != expected {
        return Err(DecodeError::SizeMismatch { declared: expected, actual: fields.0.len() });
    }
    let stdio_at = |fd: usize| -> Result<StdioFd, DecodeError> {
        decode_stdio(fields, offset_of!(RawExecFixed, stdio) + fd * size_of::<RawStdio>())
    };
    let mut tty = fields.c_string(offset_of!(RawExecFixed, tty), TTY_LEN)?;
    if let Some(index) = tty.strip_prefix("pts").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        tty = Arc::from(format!("pts/{index}"));
    }
    let cwd = if flags & EXEC_CWD_UNREADABLE != 0 {
        Arc::from("")
    } else {
        cwd_from_components(fields.bytes(fixed + argv_len, cwd_len)?, flags & EXEC_CWD_TRUNCATED != 0)
    };
    let env = fields
        .bytes(fixed + argv_len + cwd_len, env_len)?
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| Arc::from(String::from_utf8_lossy(entry)))
        .collect();
    let attributes = ExecAttributes {
        euid: fields.u32(offset_of!(RawExecFixed, euid))?,
        suid: fields.u32(offset_of!(RawExecFixed, suid))?,
        egid: fields.u32(offset_of!(RawExecFixed, egid))?,
        sgid: fields.u32(offset_of!(RawExecFixed, sgid))?,
        cap_effective: fields.u64(offset_of!(RawExecFixed, cap_effective))?,
        cap_permitted: fields.u64(offset_of!(RawExecFixed, cap_permitted))?,
        file: ExecFile {
            dev: u64::from(fields.u32(offset_of!(RawExecFixed, file_dev))?),
            inode: fields.u64(offset_of!(RawExecFixed, file_ino))?,
            size: fields.u64(offset_of!(RawExecFixed, file_size))?,
            mtime_ns: fields.u64(offset_of!(RawExecFixed, file_mtime_ns))?,
            mode: fields.u32(offset_of!(RawExecFixed, file_mode))?,
            nlink: fields.u32(offset_of!(RawExecFixed, file_nlink))?,
            file_caps: flags & EXEC_FILE_CAPS != 0,
            memfd: flags & EXEC_MEMFD != 0,
            overlay_upper: flags & EXEC_OVERLAY_UPPER != 0,
        },
        stdio: [stdio_at(0)?, stdio_at(1)?, stdio_at(2)?],
        tty,
        loginuid: fields.u32(offset_of!(RawExecFixed, loginuid))?,
        session_id: fields.u32(offset_of!(RawExecFixed, sessionid))?,
        cwd,
        cwd_truncated: flags & EXEC_CWD_TRUNCATED != 0,
        env,
        env_truncated: flags & EXEC_ENV_TRUNCATED != 0,
        // Filled by the reader (identity, exe hash), not the kernel.
        user: Arc::from(""),
        cgroup_path: Arc::from(""),
        exe_sha256: Arc::from(""),
        exe_hash: HashState::NotRequested,
    };
    Ok(ExecRecord {
        ts_ns,
        proc: fields.proc(offset_of!(RawExecFixed, proc))?,
        ppid: fields.u32(offset_of!(RawExecFixed, ppid))?,
        uid: fields.u32(offset_of!(RawExecFixed, uid))?,
        gid: fields.u32(offset_of!(RawExecFixed, gid))?,
        cgroup_id: fields.u64(offset_of!(RawExecFixed, cgroup_id))?,
        comm: fields.c_string(offset_of!(RawExecFixed, comm), COMM_LEN)?,
        filename: fields.c_string(offset_of!(RawExecFixed, filename), FILENAME_LEN)?,
        argv: Argv::from_nul_separated(fields.bytes(fixed, argv_len)?),
        argv_truncated: flags & EXEC_ARGV_TRUNCATED != 0,
        argv_unreadable: flags & EXEC_ARGV_UNREADABLE != 0,
        filename_truncated: flags & EXEC_FILENAME_TRUNCATED != 0,
        argv_full_len: fields.u32(offset_of!(RawExecFixed, argv_full_len))?,
        attributes: Arc::new(attributes),
    })
}

/// One `struct hf_stdio`: the kernel's fd kind, refined for sockets by
/// family and protocol. The peer is kept for a connected inet socket
/// (address or port non-zero); an IPv4-mapped IPv6 peer reads as IPv4.
fn decode_stdio(fields: &Fields<'_>, offset: usize) -> Result<StdioFd, DecodeError> {
    let kind = fields.array::<1>(offset + offset_of!(RawStdio, kind))?[0];
    let family = fields.u16(offset + offset_of!(RawStdio, family))?;
    let protocol = fields.u16(offset + offset_of!(RawStdio, protocol))?;
    let kind = match kind {
        FD_NONE => FdKind::None,
        FD_FILE => FdKind::File,
        FD_PIPE => FdKind::Pipe,
        FD_TTY => FdKind::Tty,
        FD_OTHER => FdKind::Other,
        FD_SOCKET => match (family, protocol) {
            (AF_UNIX, _) => FdKind::Unix,
            (AF_INET | AF_INET6, IPPROTO_TCP) => FdKind::Tcp,
            (AF_INET | AF_INET6, IPPROTO_UDP) => FdKind::Udp,
            _ => FdKind::OtherSocket,
        },
        other => return Err(DecodeError::BadField { field: "stdio.kind", value: u64::from(other) }),
    };
    let mut peer = None;
    if matches!(kind, FdKind::Tcp | FdKind::Udp) {
        let addr: [u8; 16] = fields.array(offset + offset_of!(RawStdio, addr))?;
        let port = fields.u16(offset + offset_of!(RawStdio, port))?;
        let addr = if family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
        } else {
            let v6 = Ipv6Addr::from(addr);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        };
        if port != 0 || !addr.is_unspecified() {
            peer = Some((addr, port));
        }
    }
    Ok(StdioFd { kind, peer })
}

/// The cwd from the kernel's components, leaf first and NUL-terminated:
/// `/` + the components reversed; `…/` in front of a path whose top was cut.
fn cwd_from_components(bytes: &[u8], truncated: bool) -> Arc<str> {
    let components: Vec<&[u8]> = bytes.split(|&byte| byte == 0).filter(|c| !c.is_empty()).collect();
    let mut path = String::with_capacity(bytes.len() + 4);
    if truncated {
        path.push('…');
    }
    for component in components.iter().rev() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(component));
    }
    if path.is_empty() {
        path.push('/');
    }
    Arc::from(path)
}

fn decode_connect(fields: &Fields<'_>, ts_ns: u64) -> Result<ConnectRecord, DecodeError> {
    let family = fields.u16(offset_of!(RawConnect, family))?;
    let addr: [u8; 16] = fields.array(offset_of!(RawConnect, addr))?;
    let addr = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(addr)),
        other => return Err(DecodeError::BadField { field: "family", value: u64::from(other) }),
    };
    Ok(ConnectRecord {
        ts_ns,
        proc: fields.proc(offset_of!(RawConnect, proc))?,
        addr,
        port: fields.u16(offset_of!(RawConnect, port))?,
        sock_type: fields.i16(offset_of!(RawConnect, sock_type))?,
        result: if fields.u16(offset_of!(RawConnect, flags))? & CONNECT_NO_RESULT != 0 {
            None
        } else {
            Some(fields.i32(offset_of!(RawConnect, ret))?)
        },
    })
}

fn decode_open(fields: &Fields<'_>, ts_ns: u64) -> Result<OpenRecord, DecodeError> {
    let path_len = fields.u32(offset_of!(RawOpen, path_len))? as usize;
    if path_len >= PATH_LEN {
        return Err(DecodeError::BadField { field: "path_len", value: path_len as u64 });
    }
    let syscall = match fields.u32(offset_of!(RawOpen, syscall))? {
        0 => OpenSyscall::Openat,
        1 => OpenSyscall::Openat2,
        2 => OpenSyscall::Open,
        other => return Err(DecodeError::BadField { field: "syscall", value: u64::from(other) }),
    };
    let path = fields.bytes(offset_of!(RawOpen, path), path_len)?;
    Ok(OpenRecord {
        ts_ns,
        proc: fields.proc(offset_of!(RawOpen, proc))?,
        path: Arc::from(String::from_utf8_lossy(path)),
        flags: fields.u32(offset_of!(RawOpen, flags))?,
        dfd: fields.i32(offset_of!(RawOpen, dfd))?,
        syscall,
    })
}

/// The `hf_env_names` map value for these names (at most
/// [`MAX_ENV_NAMES`], in order), or which name cannot be encoded.
pub fn encode_env_names(names: &[String]) -> Result<RawEnvNames, String> {
    if names.len() > MAX_ENV_NAMES {
        return Err(format!("{} variable names, at most {MAX_ENV_NAMES} fit", names.len()));
    }
    let mut value = [0u8; 48 * MAX_ENV_NAMES];
    for (slot, name) in names.iter().enumerate() {
        let entry = encode_env_name(name)
            .ok_or_else(|| format!("variable name {name:?} is empty or longer than {ENV_NAME_LEN} bytes"))?;
        value[slot * 48..(slot + 1) * 48].copy_from_slice(&entry);
    }
    Ok(value)
}

/// One `struct hf_env_name`: the name with `=` appended, as the kernel
/// compares it; `None` when it is empty or longer than [`ENV_NAME_LEN`].
pub fn encode_env_name(name: &str) -> Option<RawEnvName> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > ENV_NAME_LEN {
        return None;
    }
    let mut value = [0u8; 48];
    value[..4].copy_from_slice(&(bytes.len() as u32 + 1).to_le_bytes());
    value[8..8 + bytes.len()].copy_from_slice(bytes);
    value[8 + bytes.len()] = b'=';
    Some(value)
}
