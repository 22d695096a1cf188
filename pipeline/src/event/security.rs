//! The security kinds the kernel source captures for detection (issue #13),
//! and the attributes an exec carries from the kernel.
//!
//! Each kind is a plain struct with its [`Columns`] impl right below it:
//! the order of `write_columns` is the order of the kind's declaration in
//! `schemas/src/columns.rs`, and `read_columns` reads the same order back.
//! Adding a field: the struct, one line in each of the two methods, one
//! line in the declaration, one field in `security.proto` (see
//! ARCHITECTURE.md, "Adding a field or a kind").
//!
//! Small closed sets (a syscall, an fd's nature) are enums here and text on
//! the wire, so a reader never needs our numbering.

use std::net::IpAddr;
use std::sync::Arc;

use super::columns::{write_key, ColumnError, ColumnReader, ColumnWriter, Columns};
use super::context::HashState;
use super::{EventMeta, ProcessContext, ProcessKey, Protocol};

use super::context::wire_enum;

fn protocol(r: &mut dyn ColumnReader) -> Result<Protocol, ColumnError> {
    r.parsed("protocol", |text| match text {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    })
}

// ---- exec attributes ------------------------------------------------------

wire_enum! {
    /// What one of a new process's standard fds (0, 1, 2) is connected to.
    FdKind {
        None = "none",
        File = "file",
        Pipe = "pipe",
        Tty = "tty",
        Tcp = "tcp",
        Udp = "udp",
        Unix = "unix",
        OtherSocket = "socket",
        Other = "other",
    }
}

/// One standard fd of a new process.
#[derive(Clone, Debug, PartialEq)]
pub struct StdioFd {
    pub kind: FdKind,
    /// The remote end of an inet socket (`tcp`, `udp`); `None` otherwise
    /// or when not connected.
    pub peer: Option<(IpAddr, u16)>,
}

impl Default for StdioFd {
    fn default() -> StdioFd {
        StdioFd { kind: FdKind::None, peer: None }
    }
}

/// The executable file an exec ran, as the kernel saw it at that moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecFile {
    /// Device number (the kernel's `s_dev`, `major << 20 | minor`).
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: u64,
    /// `st_mode`: type and permission bits, setuid (0o4000) and setgid
    /// (0o2000) included.
    pub mode: u32,
    /// Hard links; 0 for a file deleted while (or before) it runs.
    pub nlink: u32,
    /// The file carries capabilities (`security.capability`) that this exec
    /// applied.
    pub file_caps: bool,
    /// An anonymous memory file (`memfd_create`): code that never was on disk.
    pub memfd: bool,
    /// On the upper (writable) layer of an overlay mount: in a container,
    /// a file that is not part of its image.
    pub overlay_upper: bool,
}

impl ExecFile {
    pub fn setuid(&self) -> bool {
        self.mode & 0o4000 != 0
    }

    pub fn setgid(&self) -> bool {
        self.mode & 0o2000 != 0
    }

    pub fn deleted(&self) -> bool {
        self.nlink == 0 && !self.memfd
    }
}

/// What the kernel knew about a process at the moment of its exec, beyond
/// [`super::ProcessExec`]'s identity: credentials, the file, stdio, the
/// terminal and session, the working directory and chosen environment
/// variables. Shared (`Arc`) because fan-out clones events.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecAttributes {
    pub euid: u32,
    pub suid: u32,
    pub egid: u32,
    pub sgid: u32,
    /// Effective and permitted capability sets after the exec.
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub file: ExecFile,
    /// fds 0, 1 and 2.
    pub stdio: [StdioFd; 3],
    /// Controlling terminal's name (`pts/0`, `tty1`); empty when none.
    pub tty: Arc<str>,
    /// Audit login uid; `u32::MAX` when unset (daemons, boot-time processes).
    pub loginuid: u32,
    /// Audit session id; `u32::MAX` when unset.
    pub session_id: u32,
    /// Working directory at exec; starts with `…` (the leaf end kept, the
    /// top cut) when longer than the kernel side's bound (then
    /// `cwd_truncated`); empty when it could not be read.
    pub cwd: Arc<str>,
    pub cwd_truncated: bool,
    /// `NAME=value` for each allow-listed variable present, in the order
    /// the process received them.
    pub env: Vec<Arc<str>>,
    /// A variable or value was cut at the source's bound.
    pub env_truncated: bool,
    /// The name of the real uid, as the source resolved it (`""` unknown).
    pub user: Arc<str>,
    /// The cgroup v2 path of `cgroup_id` (`""` when it could not be found).
    pub cgroup_path: Arc<str>,
    /// SHA-256 of the executed file when `exe_hash` is `ok`.
    pub exe_sha256: Arc<str>,
    pub exe_hash: HashState,
}

impl Default for ExecAttributes {
    fn default() -> ExecAttributes {
        ExecAttributes {
            euid: 0,
            suid: 0,
            egid: 0,
            sgid: 0,
            cap_effective: 0,
            cap_permitted: 0,
            file: ExecFile::default(),
            stdio: Default::default(),
            tty: "".into(),
            loginuid: u32::MAX,
            session_id: u32::MAX,
            cwd: "".into(),
            cwd_truncated: false,
            env: Vec::new(),
            env_truncated: false,
            user: "".into(),
            cgroup_path: "".into(),
            exe_sha256: "".into(),
            exe_hash: HashState::NotRequested,
        }
    }
}

impl ExecAttributes {
    /// Writes the attributes' columns (after `has_attributes`).
    pub fn write_columns(&self, w: &mut dyn ColumnWriter) {
        w.u32(self.euid);
        w.u32(self.suid);
        w.u32(self.egid);
        w.u32(self.sgid);
        w.u64(self.cap_effective);
        w.u64(self.cap_permitted);
        w.u64(self.file.dev);
        w.u64(self.file.inode);
        w.u64(self.file.size);
        w.u64(self.file.mtime_ns);
        w.u32(self.file.mode);
        w.u32(self.file.nlink);
        w.bool(self.file.file_caps);
        w.bool(self.file.memfd);
        w.bool(self.file.overlay_upper);
        for fd in &self.stdio {
            w.str(fd.kind.as_str());
            match fd.peer {
                Some((addr, port)) => {
                    w.str(&addr.to_string());
                    w.u16(port);
                }
                None => {
                    w.str("");
                    w.u16(0);
                }
            }
        }
        w.str(&self.tty);
        w.u32(self.loginuid);
        w.u32(self.session_id);
        w.str(&self.cwd);
        w.bool(self.cwd_truncated);
        w.str_list(&mut self.env.iter().map(|v| &**v));
        w.bool(self.env_truncated);
        w.str(&self.user);
        w.str(&self.cgroup_path);
        w.str(&self.exe_sha256);
        w.str(self.exe_hash.as_str());
    }

    /// Reads what [`ExecAttributes::write_columns`] wrote.
    pub fn read_columns(r: &mut dyn ColumnReader) -> Result<ExecAttributes, ColumnError> {
        let euid = r.u32()?;
        let suid = r.u32()?;
        let egid = r.u32()?;
        let sgid = r.u32()?;
        let cap_effective = r.u64()?;
        let cap_permitted = r.u64()?;
        let file = ExecFile {
            dev: r.u64()?,
            inode: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.u64()?,
            mode: r.u32()?,
            nlink: r.u32()?,
            file_caps: r.bool()?,
            memfd: r.bool()?,
            overlay_upper: r.bool()?,
        };
        let mut stdio: [StdioFd; 3] = Default::default();
        for fd in &mut stdio {
            fd.kind = r.parsed("fd kind", FdKind::from_name)?;
            let addr = r.parsed("peer address", |text| {
                if text.is_empty() {
                    Some(None)
                } else {
                    text.parse::<IpAddr>().ok().map(Some)
                }
            })?;
            let port = r.u16()?;
            fd.peer = addr.map(|addr| (addr, port));
        }
        Ok(ExecAttributes {
            euid,
            suid,
            egid,
            sgid,
            cap_effective,
            cap_permitted,
            file,
            stdio,
            tty: r.str()?,
            loginuid: r.u32()?,
            session_id: r.u32()?,
            cwd: r.str()?,
            cwd_truncated: r.bool()?,
            env: r.str_list()?,
            env_truncated: r.bool()?,
            user: r.str()?,
            cgroup_path: r.str()?,
            exe_sha256: r.str()?,
            exe_hash: r.parsed("hash state", HashState::from_name)?,
        })
    }
}

// ---- files -------------------------------------------------------------------

wire_enum! {
    /// A change to a file's name, links or mode.
    FileOp {
        Chmod = "chmod",
        Unlink = "unlink",
        Rename = "rename",
        Link = "link",
        Symlink = "symlink",
    }
}

/// A process changed a selected file: its mode, its name or its links.
/// Chosen in the kernel by the same selection as opens (prefix, exact
/// path, basename) on either path.
#[derive(Clone, Debug, PartialEq)]
pub struct FileChange {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub op: FileOp,
    /// The file acted on as passed to the syscall: chmod's file, the name
    /// removed, rename's source, the link created by link/symlink.
    pub path: Arc<str>,
    /// rename's destination; what link/symlink points the new name at;
    /// empty for chmod and unlink.
    pub target: Arc<str>,
    /// chmod's new mode; 0 otherwise.
    pub mode: u32,
    /// The syscall's return: 0 or a negative errno.
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for FileChange {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.op.as_str());
        w.str(&self.path);
        w.str(&self.target);
        w.u32(self.mode);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<FileChange, ColumnError> {
        Ok(FileChange {
            meta,
            process: r.key()?,
            op: r.parsed("file op", FileOp::from_name)?,
            path: r.str()?,
            target: r.str()?,
            mode: r.u32()?,
            result: r.i32()?,
            context: None,
        })
    }
}

// ---- privilege and isolation ----------------------------------------------

wire_enum! {
    /// The credential-changing syscalls.
    CredSyscall {
        Setuid = "setuid",
        Setreuid = "setreuid",
        Setresuid = "setresuid",
        Setfsuid = "setfsuid",
        Setgid = "setgid",
        Setregid = "setregid",
        Setresgid = "setresgid",
        Setfsgid = "setfsgid",
        Capset = "capset",
    }
}

/// A process's ids and capabilities at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
}

impl Credentials {
    fn write(&self, w: &mut dyn ColumnWriter) {
        w.u32(self.uid);
        w.u32(self.euid);
        w.u32(self.suid);
        w.u32(self.gid);
        w.u32(self.egid);
        w.u32(self.sgid);
        w.u64(self.cap_effective);
        w.u64(self.cap_permitted);
    }

    fn read(r: &mut dyn ColumnReader) -> Result<Credentials, ColumnError> {
        Ok(Credentials {
            uid: r.u32()?,
            euid: r.u32()?,
            suid: r.u32()?,
            gid: r.u32()?,
            egid: r.u32()?,
            sgid: r.u32()?,
            cap_effective: r.u64()?,
            cap_permitted: r.u64()?,
        })
    }
}

/// A process called a credential-changing syscall (`setuid` family,
/// `capset`): the ids before and after, and the result.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialChange {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub syscall: CredSyscall,
    pub old: Credentials,
    pub new: Credentials,
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for CredentialChange {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.syscall.as_str());
        self.old.write(w);
        self.new.write(w);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<CredentialChange, ColumnError> {
        Ok(CredentialChange {
            meta,
            process: r.key()?,
            syscall: r.parsed("credential syscall", CredSyscall::from_name)?,
            old: Credentials::read(r)?,
            new: Credentials::read(r)?,
            result: r.i32()?,
            context: None,
        })
    }
}

wire_enum! {
    /// The namespace-changing syscalls.
    NamespaceSyscall {
        Setns = "setns",
        Unshare = "unshare",
    }
}

/// A process entered (`setns`) or created (`unshare`) namespaces.
#[derive(Clone, Debug, PartialEq)]
pub struct NamespaceChange {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub syscall: NamespaceSyscall,
    /// `CLONE_NEW*` flags asked for (setns: its `nstype`, 0 = any).
    pub flags: u64,
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for NamespaceChange {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.syscall.as_str());
        w.u64(self.flags);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<NamespaceChange, ColumnError> {
        Ok(NamespaceChange {
            meta,
            process: r.key()?,
            syscall: r.parsed("namespace syscall", NamespaceSyscall::from_name)?,
            flags: r.u64()?,
            result: r.i32()?,
            context: None,
        })
    }
}

/// A process attached to another with `ptrace` (`PTRACE_ATTACH`,
/// `PTRACE_SEIZE`).
#[derive(Clone, Debug, PartialEq)]
pub struct PtraceAttach {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub request: u64,
    /// The traced process; start time 0 when it could not be resolved.
    pub target: ProcessKey,
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for PtraceAttach {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.u64(self.request);
        write_key(w, &self.target);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<PtraceAttach, ColumnError> {
        Ok(PtraceAttach {
            meta,
            process: r.key()?,
            request: r.u64()?,
            target: r.key()?,
            result: r.i32()?,
            context: None,
        })
    }
}

wire_enum! {
    /// The module-loading syscalls.
    ModuleSyscall {
        InitModule = "init_module",
        FinitModule = "finit_module",
    }
}

/// A process loaded a kernel module.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleLoad {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub syscall: ModuleSyscall,
    /// finit_module's file; empty for init_module (an image in memory).
    pub path: Arc<str>,
    /// The parameters string passed (bounded).
    pub params: Arc<str>,
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for ModuleLoad {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.syscall.as_str());
        w.str(&self.path);
        w.str(&self.params);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<ModuleLoad, ColumnError> {
        Ok(ModuleLoad {
            meta,
            process: r.key()?,
            syscall: r.parsed("module syscall", ModuleSyscall::from_name)?,
            path: r.str()?,
            params: r.str()?,
            result: r.i32()?,
            context: None,
        })
    }
}

/// A process (not the agent) loaded a BPF program (`bpf(BPF_PROG_LOAD)`).
#[derive(Clone, Debug, PartialEq)]
pub struct BpfProgramLoad {
    pub meta: EventMeta,
    pub process: ProcessKey,
    /// `enum bpf_prog_type` (1 socket filter, 2 kprobe, 5 tracepoint, …).
    pub prog_type: u32,
    /// The name given in the load attributes (at most 15 bytes).
    pub prog_name: Arc<str>,
    pub insn_count: u32,
    /// The new program's fd, or a negative errno.
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for BpfProgramLoad {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.u32(self.prog_type);
        w.str(&self.prog_name);
        w.u32(self.insn_count);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<BpfProgramLoad, ColumnError> {
        Ok(BpfProgramLoad {
            meta,
            process: r.key()?,
            prog_type: r.u32()?,
            prog_name: r.str()?,
            insn_count: r.u32()?,
            result: r.i32()?,
            context: None,
        })
    }
}

// ---- inbound and unconnected network ---------------------------------------

/// A process started listening (`listen(2)`).
#[derive(Clone, Debug, PartialEq)]
pub struct NetListen {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub protocol: Protocol,
    /// The bound local address (`0.0.0.0` / `::` for any).
    pub addr: IpAddr,
    pub port: u16,
    pub backlog: i32,
    pub result: i32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for NetListen {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.protocol.as_str());
        w.str(&self.addr.to_string());
        w.u16(self.port);
        w.i32(self.backlog);
        w.i32(self.result);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<NetListen, ColumnError> {
        Ok(NetListen {
            meta,
            process: r.key()?,
            protocol: protocol(r)?,
            addr: r.ip()?,
            port: r.u16()?,
            backlog: r.i32()?,
            result: r.i32()?,
            context: None,
        })
    }
}

/// A process accepted an inbound TCP connection.
#[derive(Clone, Debug, PartialEq)]
pub struct NetAccept {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub protocol: Protocol,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub peer_addr: IpAddr,
    pub peer_port: u16,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for NetAccept {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.protocol.as_str());
        w.str(&self.local_addr.to_string());
        w.u16(self.local_port);
        w.str(&self.peer_addr.to_string());
        w.u16(self.peer_port);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<NetAccept, ColumnError> {
        Ok(NetAccept {
            meta,
            process: r.key()?,
            protocol: protocol(r)?,
            local_addr: r.ip()?,
            local_port: r.u16()?,
            peer_addr: r.ip()?,
            peer_port: r.u16()?,
            context: None,
        })
    }
}

/// The first datagram of an unconnected UDP socket to a destination it had
/// not sent to recently (`sendto`/`sendmsg` with an address), rate-limited
/// per socket in the kernel: DNS and other connectionless traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSend {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub protocol: Protocol,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    /// Bytes of this first datagram.
    pub bytes: u32,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for NetSend {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(self.protocol.as_str());
        w.str(&self.dst_addr.to_string());
        w.u16(self.dst_port);
        w.u32(self.bytes);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<NetSend, ColumnError> {
        Ok(NetSend {
            meta,
            process: r.key()?,
            protocol: protocol(r)?,
            dst_addr: r.ip()?,
            dst_port: r.u16()?,
            bytes: r.u32()?,
            context: None,
        })
    }
}
