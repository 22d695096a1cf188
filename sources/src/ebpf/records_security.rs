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

use pipeline::event::{CredSyscall, Credentials, FileOp, ModuleSyscall, NamespaceSyscall, PolicyAction, Protocol};

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
    /// Network policy (issue #17): a connect denied or audited.
    pub const NET_POLICY: u16 = 15;
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

/// `HF_POLICY_DRY_RUN`: a deny that was only reported.
pub const POLICY_DRY_RUN: u8 = 1;
/// `SOCK_DGRAM`.
const SOCK_DGRAM: i16 = 2;

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

/// `struct hf_net_policy`.
#[repr(C)]
pub struct RawNetPolicy {
    pub header: RawHeader,
    pub proc: RawProc,
    pub family: u16,
    /// Destination port, host order.
    pub port: u16,
    pub sock_type: i16,
    /// 1 allow, 2 deny, 3 audit.
    pub action: u8,
    /// `HF_POLICY_*`.
    pub flags: u8,
    pub rule_key: u32,
    pub generation: u32,
    pub cgroup_id: u64,
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
    assert!(size_of::<RawNetPolicy>() == 72);
    assert!(offset_of!(RawNetPolicy, action) == 38);
    assert!(offset_of!(RawNetPolicy, rule_key) == 40);
    assert!(offset_of!(RawNetPolicy, cgroup_id) == 48);
    assert!(offset_of!(RawNetPolicy, addr) == 56);
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

/// A network-policy rule decided about a connect (the cgroup connect hook):
/// denied, audited, or a deny only reported (dry run). The rule is named by
/// its key; the reader resolves the id and digest
/// ([`pipeline::event::RuleNames`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NetPolicyRecord {
    pub ts_ns: u64,
    pub proc: ProcIdentity,
    pub addr: IpAddr,
    pub port: u16,
    /// `SOCK_DGRAM` is UDP; anything else reads as TCP (as for connect).
    pub protocol: Protocol,
    pub action: PolicyAction,
    pub dry_run: bool,
    pub rule_key: u32,
    pub generation: u32,
    pub cgroup_id: u64,
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
    NetPolicy(NetPolicyRecord),
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
        kind::NET_POLICY => size_of::<RawNetPolicy>(),
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
        kind::NET_POLICY => SecurityRecord::NetPolicy(decode_net_policy(&b, ts_ns)?),
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

fn decode_net_policy(b: &Fields<'_>, ts_ns: u64) -> Result<NetPolicyRecord, DecodeError> {
    exact_size(b.0, size_of::<RawNetPolicy>())?;
    let [action] = b.array::<1>(offset_of!(RawNetPolicy, action))?;
    let action = match action {
        1 => PolicyAction::Allow,
        2 => PolicyAction::Deny,
        3 => PolicyAction::Audit,
        other => return Err(DecodeError::BadField { field: "action", value: u64::from(other) }),
    };
    let [flags] = b.array::<1>(offset_of!(RawNetPolicy, flags))?;
    if flags & !POLICY_DRY_RUN != 0 {
        return Err(DecodeError::BadField { field: "flags", value: u64::from(flags) });
    }
    let family = b.u16(offset_of!(RawNetPolicy, family))?;
    Ok(NetPolicyRecord {
        ts_ns,
        proc: b.proc(offset_of!(RawNetPolicy, proc))?,
        addr: b.addr(family, offset_of!(RawNetPolicy, addr))?,
        port: b.u16(offset_of!(RawNetPolicy, port))?,
        protocol: match b.i16(offset_of!(RawNetPolicy, sock_type))? {
            SOCK_DGRAM => Protocol::Udp,
            _ => Protocol::Tcp,
        },
        action,
        dry_run: flags & POLICY_DRY_RUN != 0,
        rule_key: b.u32(offset_of!(RawNetPolicy, rule_key))?,
        generation: b.u32(offset_of!(RawNetPolicy, generation))?,
        cgroup_id: b.u64(offset_of!(RawNetPolicy, cgroup_id))?,
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

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};
    use std::net::IpAddr;

    use pipeline::event::{NetPolicy, PolicyAction, Protocol, RuleNames};
    use pipeline::{Event, ProcessKey};

    use super::super::records::{decode, DecodeError, RawHeader, RECORD_VERSION};
    use super::{kind, RawNetPolicy, Record, SecurityRecord};

    /// A `struct hf_net_policy` as the kernel writes it.
    fn net_policy_bytes(family: u16, addr: &[u8], action: u8, flags: u8) -> Vec<u8> {
        let size = size_of::<RawNetPolicy>();
        let mut b = vec![0u8; size];
        let mut put = |offset: usize, bytes: &[u8]| b[offset..offset + bytes.len()].copy_from_slice(bytes);
        put(offset_of!(RawHeader, kind), &kind::NET_POLICY.to_le_bytes());
        put(offset_of!(RawHeader, version), &RECORD_VERSION.to_le_bytes());
        put(offset_of!(RawHeader, size), &(size as u32).to_le_bytes());
        put(offset_of!(RawHeader, ts_ns), &123_456_789u64.to_le_bytes());
        put(16, &4242u32.to_le_bytes());
        put(20, &4243u32.to_le_bytes());
        put(24, &9_123_456_789u64.to_le_bytes());
        put(offset_of!(RawNetPolicy, family), &family.to_le_bytes());
        put(offset_of!(RawNetPolicy, port), &8080u16.to_le_bytes());
        put(offset_of!(RawNetPolicy, sock_type), &1i16.to_le_bytes());
        put(offset_of!(RawNetPolicy, action), &[action]);
        put(offset_of!(RawNetPolicy, flags), &[flags]);
        put(offset_of!(RawNetPolicy, rule_key), &0x9e37_79b9u32.to_le_bytes());
        put(offset_of!(RawNetPolicy, generation), &7u32.to_le_bytes());
        put(offset_of!(RawNetPolicy, cgroup_id), &(1u64 << 40).to_le_bytes());
        put(offset_of!(RawNetPolicy, addr), addr);
        b
    }

    fn decoded(bytes: &[u8]) -> Result<super::NetPolicyRecord, DecodeError> {
        match decode(bytes)? {
            Record::Security(SecurityRecord::NetPolicy(record)) => Ok(record),
            other => panic!("not a net_policy record: {other:?}"),
        }
    }

    #[test]
    fn a_net_policy_record_decodes_field_by_field() {
        let record = decoded(&net_policy_bytes(2, &[127, 0, 0, 2], 2, 1)).expect("decodes");
        assert_eq!((record.ts_ns, record.proc.tgid, record.proc.pid), (123_456_789, 4242, 4243));
        assert_eq!(record.proc.start_boottime_ns, 9_123_456_789);
        assert_eq!((record.addr, record.port), (IpAddr::from([127, 0, 0, 2]), 8080));
        assert_eq!((record.protocol, record.action, record.dry_run), (Protocol::Tcp, PolicyAction::Deny, true));
        assert_eq!((record.rule_key, record.generation, record.cgroup_id), (0x9e37_79b9, 7, 1 << 40));

        let v6: IpAddr = "::1".parse().expect("v6");
        let IpAddr::V6(octets) = v6 else { unreachable!() };
        let mut bytes = net_policy_bytes(10, &octets.octets(), 3, 0);
        bytes[offset_of!(RawNetPolicy, sock_type)..][..2].copy_from_slice(&2i16.to_le_bytes());
        let record = decoded(&bytes).expect("decodes");
        assert_eq!((record.addr, record.protocol), (v6, Protocol::Udp));
        assert_eq!((record.action, record.dry_run), (PolicyAction::Audit, false));
        let allow = decoded(&net_policy_bytes(2, &[10, 0, 0, 1], 1, 0)).expect("decodes");
        assert_eq!(allow.action, PolicyAction::Allow);
    }

    #[test]
    fn odd_net_policy_records_are_errors_not_panics() {
        let bad = |bytes: Vec<u8>| decoded(&bytes).expect_err("an error");
        assert_eq!(bad(net_policy_bytes(2, &[1, 2, 3, 4], 0, 0)), DecodeError::BadField { field: "action", value: 0 });
        assert_eq!(bad(net_policy_bytes(2, &[1, 2, 3, 4], 4, 0)), DecodeError::BadField { field: "action", value: 4 });
        assert_eq!(bad(net_policy_bytes(2, &[1, 2, 3, 4], 2, 2)), DecodeError::BadField { field: "flags", value: 2 });
        assert_eq!(bad(net_policy_bytes(1, &[1, 2, 3, 4], 2, 0)), DecodeError::BadField { field: "family", value: 1 });
        // Shorter and longer than the struct, with a header that agrees.
        let full = net_policy_bytes(2, &[1, 2, 3, 4], 2, 0);
        for len in [16, 40, 71] {
            let mut short = full[..len].to_vec();
            short[offset_of!(RawHeader, size)..][..4].copy_from_slice(&(len as u32).to_le_bytes());
            assert_eq!(bad(short), DecodeError::TooShort { len, need: 72 }, "{len} bytes");
        }
        let mut long = full.clone();
        long.extend_from_slice(&[0; 8]);
        long[offset_of!(RawHeader, size)..][..4].copy_from_slice(&80u32.to_le_bytes());
        assert_eq!(bad(long), DecodeError::SizeMismatch { declared: 72, actual: 80 });
        // Every prefix, header unchanged: an error each time, never a panic.
        for len in 0..full.len() {
            assert!(decode(&full[..len]).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn the_event_names_its_rule_once_the_applier_published_it() {
        let record = decoded(&net_policy_bytes(2, &[127, 0, 0, 2], 2, 1)).expect("decodes");
        let event = super::super::events::to_event(Record::Security(SecurityRecord::NetPolicy(record)), 5, 10_000_000);
        let names = RuleNames::new();
        let mut unknown = vec![event.clone()];
        names.fill(&mut unknown);
        let Event::NetPolicy(e) = &unknown[0] else { panic!("{unknown:?}") };
        assert_eq!((&*e.rule_id, e.rule_key, &*e.policy_digest), ("", 0x9e37_79b9, ""), "unknown: the key only");

        names.publish(7, "digest-7", [(0x9e37_79b9, "deny-test")]);
        let mut batch = vec![event];
        names.fill(&mut batch);
        let Event::NetPolicy(e) = &batch[0] else { panic!("{batch:?}") };
        let expected = NetPolicy {
            meta: pipeline::EventMeta { ts_ns: 123_456_789, event_id: 5 },
            process: ProcessKey { pid: 4242, start_time_ns: 9_120_000_000 },
            rule_id: "deny-test".into(),
            rule_key: 0x9e37_79b9,
            action: PolicyAction::Deny,
            dry_run: true,
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([127, 0, 0, 2]),
            dst_port: 8080,
            cgroup_id: 1 << 40,
            generation: 7,
            policy_digest: "digest-7".into(),
            context: None,
        };
        assert_eq!(e, &expected);
    }
}
