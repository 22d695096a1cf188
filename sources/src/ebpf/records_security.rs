//! The security programs' records (issue #13): `#[repr(C)]` mirrors of the
//! structs at the end of `bpf/records.h` (sizes and offsets asserted at
//! compile time), their checked decoding, and the encoding of the file
//! selection the kernel filters with (path prefixes and exact paths in an
//! LPM trie, basenames in a hash).
//!
//! Same rules as [`super::records`]: every read is bounds-checked, a
//! malformed entry is a [`DecodeError`], no unsafe code. The header's kind,
//! version and size were checked by [`super::records::decode`], which hands
//! the kinds it does not know to [`decode`] here.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use pipeline::event::{CredSyscall, Credentials, FileOp, ModuleSyscall, NamespaceSyscall};

use super::records::{DecodeError, Fields, ProcIdentity, RawHeader, RawProc, Record, PATH_LEN};

/// `HF_KIND_*` of the security records.
pub mod kind {
    pub const FILE_CHANGE: u16 = 6;
    pub const CRED_CHANGE: u16 = 7;
    pub const NAMESPACE: u16 = 8;
    pub const PTRACE: u16 = 9;
    pub const MODULE: u16 = 10;
    pub const BPF_LOAD: u16 = 11;
    pub const LISTEN: u16 = 12;
    pub const ACCEPT: u16 = 13;
    pub const UDP_SEND: u16 = 14;
}

/// Most prefixes and exact paths together (`HF_MAX_SELECT_PATHS`).
pub const MAX_SELECT_PATHS: usize = 256;
/// Most basenames (`HF_MAX_SELECT_BASENAMES`).
pub const MAX_SELECT_BASENAMES: usize = 256;
/// Longest file prefix: the kernel reads at most `PATH_LEN - 1` bytes of a path.
pub const MAX_PREFIX_LEN: usize = PATH_LEN - 1;
/// Longest exact path: its NUL is part of the key, and a path filling the
/// read buffer may have been cut, so it never matches exactly.
pub const MAX_EXACT_LEN: usize = PATH_LEN - 2;
/// Longest basename (`HF_BASENAME_LEN`).
pub const BASENAME_LEN: usize = 64;
/// Bytes of module parameters kept (`HF_MODULE_PARAMS_LEN`, NUL included).
pub const MODULE_PARAMS_LEN: usize = 128;

/// `hf_select_paths` values.
pub const SELECT_PREFIX: u32 = 1;
pub const SELECT_EXACT: u32 = 2;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `struct hf_file_change` without its tail.
#[repr(C)]
pub struct RawFileChangeFixed {
    pub header: RawHeader,
    pub proc: RawProc,
    pub op: u32,
    pub mode: u32,
    pub ret: i32,
    pub path_len: u16,
    pub target_len: u16,
}

/// `struct hf_creds`.
#[repr(C)]
pub struct RawCreds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
}

/// `struct hf_cred_change`.
#[repr(C)]
pub struct RawCredChange {
    pub header: RawHeader,
    pub proc: RawProc,
    pub syscall: u32,
    pub ret: i32,
    pub old: RawCreds,
    pub new: RawCreds,
}

/// `struct hf_namespace`.
#[repr(C)]
pub struct RawNamespace {
    pub header: RawHeader,
    pub proc: RawProc,
    pub syscall: u32,
    pub ret: i32,
    pub flags: u64,
}

/// `struct hf_ptrace`.
#[repr(C)]
pub struct RawPtrace {
    pub header: RawHeader,
    pub proc: RawProc,
    pub request: u64,
    pub target: RawProc,
    pub ret: i32,
    pub pad: u32,
}

/// `struct hf_module` without its tail.
#[repr(C)]
pub struct RawModuleFixed {
    pub header: RawHeader,
    pub proc: RawProc,
    pub syscall: u32,
    pub ret: i32,
    pub path_len: u16,
    pub params_len: u16,
    pub flags: u32,
}

/// `struct hf_bpf_load`.
#[repr(C)]
pub struct RawBpfLoad {
    pub header: RawHeader,
    pub proc: RawProc,
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub ret: i32,
    pub pad: u32,
    pub name: [u8; 16],
}

/// `struct hf_listen`.
#[repr(C)]
pub struct RawListen {
    pub header: RawHeader,
    pub proc: RawProc,
    pub family: u16,
    pub port: u16,
    pub backlog: i32,
    pub ret: i32,
    pub pad: u32,
    pub addr: [u8; 16],
}

/// `struct hf_accept`.
#[repr(C)]
pub struct RawAccept {
    pub header: RawHeader,
    pub proc: RawProc,
    pub family: u16,
    pub local_port: u16,
    pub peer_port: u16,
    pub pad: u16,
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}

/// `struct hf_udp_send`.
#[repr(C)]
pub struct RawUdpSend {
    pub header: RawHeader,
    pub proc: RawProc,
    pub family: u16,
    pub port: u16,
    pub bytes: u32,
    pub addr: [u8; 16],
}

/// `struct hf_path_key`'s data (the LPM trie key after its prefix length).
pub type RawPathData = [u8; PATH_LEN];
/// `struct hf_basename_key`.
pub type RawBasename = [u8; BASENAME_LEN];

// The C side asserts the same numbers (bpf/records.h).
const _: () = {
    assert!(size_of::<RawFileChangeFixed>() == 48);
    assert!(size_of::<RawCreds>() == 40);
    assert!(size_of::<RawCredChange>() == 120);
    assert!(size_of::<RawNamespace>() == 48);
    assert!(size_of::<RawPtrace>() == 64);
    assert!(size_of::<RawModuleFixed>() == 48);
    assert!(size_of::<RawBpfLoad>() == 64);
    assert!(size_of::<RawListen>() == 64);
    assert!(size_of::<RawAccept>() == 72);
    assert!(size_of::<RawUdpSend>() == 56);
    assert!(offset_of!(RawCredChange, new) == 80);
    assert!(offset_of!(RawPtrace, target) == 40);
    assert!(offset_of!(RawListen, addr) == 48);
    assert!(offset_of!(RawAccept, peer_addr) == 56);
};

/// A selected file's mode, name or links changed (at syscall exit).
#[derive(Clone, Debug, PartialEq)]
pub struct FileChangeRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub op: FileOp,
    /// As passed: chmod's file, the name removed, rename's source, the new
    /// link's name.
    pub path: Arc<str>,
    /// rename's destination, what a link points at; empty otherwise.
    pub target: Arc<str>,
    pub mode: u32,
    pub result: i32,
}

/// A credential syscall returned: ids and capabilities before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct CredRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub syscall: CredSyscall,
    pub old: Credentials,
    pub new: Credentials,
    pub result: i32,
}

/// `setns` or a namespace-creating `unshare` returned.
#[derive(Clone, Debug, PartialEq)]
pub struct NamespaceRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub syscall: NamespaceSyscall,
    /// unshare: its `CLONE_NEW*` flags (others dropped); setns: `nstype`.
    pub flags: u64,
    pub result: i32,
}

/// `ptrace(PTRACE_ATTACH | PTRACE_SEIZE)` returned.
#[derive(Clone, Debug, PartialEq)]
pub struct PtraceRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub request: u64,
    /// The tracee; when the attach failed, `tgid` is the pid asked for and
    /// `start_boottime_ns` 0.
    pub target: ProcIdentity,
    pub result: i32,
}

/// `init_module` or `finit_module` returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub syscall: ModuleSyscall,
    /// finit_module's file, from its dentries; empty for init_module.
    pub path: Arc<str>,
    pub params: Arc<str>,
    pub flags: u32,
    pub result: i32,
}

/// `bpf(BPF_PROG_LOAD)` by a process other than the agent returned.
#[derive(Clone, Debug, PartialEq)]
pub struct BpfLoadRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub prog_type: u32,
    pub insn_count: u32,
    pub name: Arc<str>,
    pub result: i32,
}

/// `listen` on a TCP socket returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub addr: IpAddr,
    pub port: u16,
    pub backlog: i32,
    pub result: i32,
}

/// `accept`/`accept4` returned a TCP connection.
#[derive(Clone, Debug, PartialEq)]
pub struct AcceptRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub peer_addr: IpAddr,
    pub peer_port: u16,
}

/// The first send of a UDP socket to a destination, with an address.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpSendRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub addr: IpAddr,
    pub port: u16,
    pub bytes: u32,
}

/// One decoded security record.
#[derive(Clone, Debug, PartialEq)]
pub enum SecurityRecord {
    FileChange(FileChangeRecord),
    Credentials(CredRecord),
    Namespace(NamespaceRecord),
    Ptrace(PtraceRecord),
    Module(ModuleRecord),
    BpfLoad(BpfLoadRecord),
    Listen(ListenRecord),
    Accept(AcceptRecord),
    UdpSend(UdpSendRecord),
}

/// Reads this file's records add to `records::Fields`.
impl Fields<'_> {
    fn addr(&self, family: u16, offset: usize) -> Result<IpAddr, DecodeError> {
        let addr: [u8; 16] = self.array(offset)?;
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))),
            AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(addr))),
            other => Err(DecodeError::BadField { field: "family", value: u64::from(other) }),
        }
    }

    fn creds(&self, offset: usize) -> Result<Credentials, DecodeError> {
        Ok(Credentials {
            uid: self.u32(offset + offset_of!(RawCreds, uid))?,
            euid: self.u32(offset + offset_of!(RawCreds, euid))?,
            suid: self.u32(offset + offset_of!(RawCreds, suid))?,
            gid: self.u32(offset + offset_of!(RawCreds, gid))?,
            egid: self.u32(offset + offset_of!(RawCreds, egid))?,
            sgid: self.u32(offset + offset_of!(RawCreds, sgid))?,
            cap_effective: self.u64(offset + offset_of!(RawCreds, cap_effective))?,
            cap_permitted: self.u64(offset + offset_of!(RawCreds, cap_permitted))?,
        })
    }
}

/// The fixed size of a security kind, or `None` for a kind not defined here.
pub fn fixed_size(kind: u16) -> Option<usize> {
    Some(match kind {
        kind::FILE_CHANGE => size_of::<RawFileChangeFixed>(),
        kind::CRED_CHANGE => size_of::<RawCredChange>(),
        kind::NAMESPACE => size_of::<RawNamespace>(),
        kind::PTRACE => size_of::<RawPtrace>(),
        kind::MODULE => size_of::<RawModuleFixed>(),
        kind::BPF_LOAD => size_of::<RawBpfLoad>(),
        kind::LISTEN => size_of::<RawListen>(),
        kind::ACCEPT => size_of::<RawAccept>(),
        kind::UDP_SEND => size_of::<RawUdpSend>(),
        _ => return None,
    })
}

/// Decodes an entry of a security kind whose header (version, size) has
/// been checked; [`DecodeError::UnknownKind`] for any other kind.
pub fn decode(kind: u16, entry: &[u8]) -> Result<Record, DecodeError> {
    let fixed = fixed_size(kind).ok_or(DecodeError::UnknownKind(kind))?;
    if entry.len() < fixed {
        return Err(DecodeError::TooShort { len: entry.len(), need: fixed });
    }
    let b = Fields(entry);
    let ts_ns = b.u64(offset_of!(RawHeader, ts_ns))?;
    Ok(Record::Security(match kind {
        kind::FILE_CHANGE => SecurityRecord::FileChange(decode_file_change(&b, ts_ns)?),
        kind::CRED_CHANGE => {
            let syscall = match b.u32(offset_of!(RawCredChange, syscall))? {
                n @ 0..=8 => CredSyscall::ALL[n as usize],
                other => return Err(DecodeError::BadField { field: "syscall", value: u64::from(other) }),
            };
            exact_size(entry, fixed)?;
            SecurityRecord::Credentials(CredRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawCredChange, proc))?,
                syscall,
                old: b.creds(offset_of!(RawCredChange, old))?,
                new: b.creds(offset_of!(RawCredChange, new))?,
                result: b.i32(offset_of!(RawCredChange, ret))?,
            })
        }
        kind::NAMESPACE => {
            let syscall = match b.u32(offset_of!(RawNamespace, syscall))? {
                0 => NamespaceSyscall::Setns,
                1 => NamespaceSyscall::Unshare,
                other => return Err(DecodeError::BadField { field: "syscall", value: u64::from(other) }),
            };
            exact_size(entry, fixed)?;
            SecurityRecord::Namespace(NamespaceRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawNamespace, proc))?,
                syscall,
                flags: b.u64(offset_of!(RawNamespace, flags))?,
                result: b.i32(offset_of!(RawNamespace, ret))?,
            })
        }
        kind::PTRACE => {
            exact_size(entry, fixed)?;
            SecurityRecord::Ptrace(PtraceRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawPtrace, proc))?,
                request: b.u64(offset_of!(RawPtrace, request))?,
                target: b.proc(offset_of!(RawPtrace, target))?,
                result: b.i32(offset_of!(RawPtrace, ret))?,
            })
        }
        kind::MODULE => SecurityRecord::Module(decode_module(&b, ts_ns)?),
        kind::BPF_LOAD => {
            exact_size(entry, fixed)?;
            SecurityRecord::BpfLoad(BpfLoadRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawBpfLoad, proc))?,
                prog_type: b.u32(offset_of!(RawBpfLoad, prog_type))?,
                insn_count: b.u32(offset_of!(RawBpfLoad, insn_cnt))?,
                name: b.c_string(offset_of!(RawBpfLoad, name), 16)?,
                result: b.i32(offset_of!(RawBpfLoad, ret))?,
            })
        }
        kind::LISTEN => {
            exact_size(entry, fixed)?;
            let family = b.u16(offset_of!(RawListen, family))?;
            SecurityRecord::Listen(ListenRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawListen, proc))?,
                addr: b.addr(family, offset_of!(RawListen, addr))?,
                port: b.u16(offset_of!(RawListen, port))?,
                backlog: b.i32(offset_of!(RawListen, backlog))?,
                result: b.i32(offset_of!(RawListen, ret))?,
            })
        }
        kind::ACCEPT => {
            exact_size(entry, fixed)?;
            let family = b.u16(offset_of!(RawAccept, family))?;
            SecurityRecord::Accept(AcceptRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawAccept, proc))?,
                local_addr: b.addr(family, offset_of!(RawAccept, local_addr))?,
                local_port: b.u16(offset_of!(RawAccept, local_port))?,
                peer_addr: b.addr(family, offset_of!(RawAccept, peer_addr))?,
                peer_port: b.u16(offset_of!(RawAccept, peer_port))?,
            })
        }
        _ => {
            exact_size(entry, fixed)?;
            let family = b.u16(offset_of!(RawUdpSend, family))?;
            SecurityRecord::UdpSend(UdpSendRecord {
                ts_ns,
                proc: b.proc(offset_of!(RawUdpSend, proc))?,
                addr: b.addr(family, offset_of!(RawUdpSend, addr))?,
                port: b.u16(offset_of!(RawUdpSend, port))?,
                bytes: b.u32(offset_of!(RawUdpSend, bytes))?,
            })
        }
    }))
}

/// Fixed-size kinds: the entry is exactly the struct.
fn exact_size(entry: &[u8], size: usize) -> Result<(), DecodeError> {
    if entry.len() != size {
        return Err(DecodeError::SizeMismatch { declared: size, actual: entry.len() });
    }
    Ok(())
}

/// A variable tail of `lens` parts right after `fixed` bytes: the entry
/// ends exactly after them.
fn tail_parts(b: &Fields<'_>, fixed: usize, lens: [usize; 2]) -> Result<[Arc<str>; 2], DecodeError> {
    let total = fixed + lens[0] + lens[1];
    if b.0.len() != total {
        return Err(DecodeError::SizeMismatch { declared: total, actual: b.0.len() });
    }
    let first = &b.0[fixed..fixed + lens[0]];
    let second = &b.0[fixed + lens[0]..total];
    Ok([Arc::from(String::from_utf8_lossy(first)), Arc::from(String::from_utf8_lossy(second))])
}

fn decode_file_change(b: &Fields<'_>, ts_ns: u64) -> Result<FileChangeRecord, DecodeError> {
    let op = match b.u32(offset_of!(RawFileChangeFixed, op))? {
        n @ 0..=4 => FileOp::ALL[n as usize],
        other => return Err(DecodeError::BadField { field: "op", value: u64::from(other) }),
    };
    let path_len = usize::from(b.u16(offset_of!(RawFileChangeFixed, path_len))?);
    let target_len = usize::from(b.u16(offset_of!(RawFileChangeFixed, target_len))?);
    for (field, len) in [("path_len", path_len), ("target_len", target_len)] {
        if len >= PATH_LEN {
            return Err(DecodeError::BadField { field, value: len as u64 });
        }
    }
    let [path, target] = tail_parts(b, size_of::<RawFileChangeFixed>(), [path_len, target_len])?;
    Ok(FileChangeRecord {
        ts_ns,
        proc: b.proc(offset_of!(RawFileChangeFixed, proc))?,
        op,
        path,
        target,
        mode: b.u32(offset_of!(RawFileChangeFixed, mode))?,
        result: b.i32(offset_of!(RawFileChangeFixed, ret))?,
    })
}

fn decode_module(b: &Fields<'_>, ts_ns: u64) -> Result<ModuleRecord, DecodeError> {
    let syscall = match b.u32(offset_of!(RawModuleFixed, syscall))? {
        0 => ModuleSyscall::InitModule,
        1 => ModuleSyscall::FinitModule,
        other => return Err(DecodeError::BadField { field: "syscall", value: u64::from(other) }),
    };
    let path_len = usize::from(b.u16(offset_of!(RawModuleFixed, path_len))?);
    let params_len = usize::from(b.u16(offset_of!(RawModuleFixed, params_len))?);
    if path_len >= PATH_LEN {
        return Err(DecodeError::BadField { field: "path_len", value: path_len as u64 });
    }
    if params_len >= MODULE_PARAMS_LEN {
        return Err(DecodeError::BadField { field: "params_len", value: params_len as u64 });
    }
    let [path, params] = tail_parts(b, size_of::<RawModuleFixed>(), [path_len, params_len])?;
    Ok(ModuleRecord {
        ts_ns,
        proc: b.proc(offset_of!(RawModuleFixed, proc))?,
        syscall,
        path,
        params,
        flags: b.u32(offset_of!(RawModuleFixed, flags))?,
        result: b.i32(offset_of!(RawModuleFixed, ret))?,
    })
}

// ---- file selection -----------------------------------------------------

/// One `hf_select_paths` entry: the prefix length in bits, the zero-padded
/// bytes and the value. A prefix covers its bytes; an exact path also its
/// NUL, so only a path that ends there matches. `None` when the entry is
/// empty, too long or holds a NUL.
pub fn encode_path_entry(path: &str, exact: bool) -> Option<(u32, RawPathData, u32)> {
    let bytes = path.as_bytes();
    let max = if exact { MAX_EXACT_LEN } else { MAX_PREFIX_LEN };
    if bytes.is_empty() || bytes.len() > max || bytes.contains(&0) {
        return None;
    }
    let mut data = [0u8; PATH_LEN];
    data[..bytes.len()].copy_from_slice(bytes);
    let covered = if exact { bytes.len() + 1 } else { bytes.len() };
    Some(((covered * 8) as u32, data, if exact { SELECT_EXACT } else { SELECT_PREFIX }))
}

/// One `hf_select_basenames` key: the name zero-padded. `None` when it is
/// empty, longer than [`BASENAME_LEN`], or holds a `/` or a NUL.
pub fn encode_basename(name: &str) -> Option<RawBasename> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > BASENAME_LEN || bytes.contains(&b'/') || bytes.contains(&0) {
        return None;
    }
    let mut key = [0u8; BASENAME_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Some(key)
}

/// What the kernel's selection decides for `path` (a model of
/// `hf_path_selected` in `bpf/files.bpf.h`, for tests and documentation):
/// selected when a prefix starts it, an exact path equals it, or its
/// basename is listed.
pub fn selection_matches(path: &str, prefixes: &[String], exact: &[String], basenames: &[String]) -> bool {
    let bytes = path.as_bytes();
    let readable = &bytes[..bytes.len().min(PATH_LEN - 1)];
    let cut = bytes.len() > PATH_LEN - 2;
    if prefixes.iter().any(|p| readable.starts_with(p.as_bytes())) {
        return true;
    }
    if !cut && exact.iter().any(|e| e.as_bytes() == bytes) {
        return true;
    }
    let name = match readable.iter().rposition(|&b| b == b'/') {
        Some(slash) => &readable[slash + 1..],
        None => readable,
    };
    basenames.iter().any(|b| b.as_bytes() == name)
}
