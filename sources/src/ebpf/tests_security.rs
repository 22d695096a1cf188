//! Tests of the security programs (issue #13) against the running kernel:
//! real files under a temporary home, `chmod`, `ln -s`, `unshare`,
//! `setpriv`, a ptrace attach, a BPF load, a TCP listener and its client,
//! UDP sends. Each loads its own copy of the programs (tests_kernel.rs's
//! [`Session`]) and looks only at records about its own processes and
//! paths, so they run in parallel with the other tests. Without root they
//! print `SKIPPED` (and fail under `CI=true`), like tests_kernel.rs.
//!
//! The unit tests of decoding, selection and configuration need no kernel
//! and are at the end.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use pipeline::event::{CredSyscall, FileOp, ModuleSyscall, NamespaceSyscall};
use pipeline::Event;

use super::counters::read_counts;
use super::events::{process_key, tick_ns};
use super::loader::ProgramState;
use super::records::{OpenRecord, Record};
use super::records_security::*;
use super::tests_kernel::{kernel_or_skip, settings, Session, WAIT};
use super::*;

fn security(records: &[Record]) -> impl Iterator<Item = &SecurityRecord> {
    records.iter().filter_map(|r| match r {
        Record::Security(record) => Some(record),
        _ => None,
    })
}

fn opens<'a>(records: &'a [Record], path: &'a str) -> impl Iterator<Item = &'a OpenRecord> {
    records.iter().filter_map(move |r| match r {
        Record::Open(open) if &*open.path == path => Some(open),
        _ => None,
    })
}

fn changes<'a>(records: &'a [Record], path: &'a str) -> Vec<&'a FileChangeRecord> {
    security(records)
        .filter_map(|r| match r {
            SecurityRecord::FileChange(change) if &*change.path == path => Some(change),
            _ => None,
        })
        .collect()
}

/// Runs a command to completion, asserting success; returns (pid, stdout).
fn run(program: &str, args: &[&str]) -> (u32, String) {
    let child = Command::new(program).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.unwrap_or_else(|e| panic!("{program}: {e}"));
    let pid = child.id();
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    (pid, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn python(script: &str, args: &[&str]) -> (u32, String) {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    run("python3", &all)
}

/// A process's start in ns since boot, from `/proc/PID/stat` (field 22).
fn proc_start_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect(")") + 2..];
    let ticks: u64 = after.split_whitespace().nth(19).expect("starttime").parse().expect("number");
    ticks * tick_ns()
}

fn filtered(session: &Session, program: Program) -> u64 {
    read_counts(&session.counters).expect("counters")[program.id()].filtered
}

const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;

#[test]
fn file_opens_and_changes_are_chosen_by_prefix_exact_path_and_basename() {
    if !kernel_or_skip("ebpf::file_opens_and_changes_are_chosen_by_prefix_exact_path_and_basename") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8 temp path").to_owned();
    let home = format!("{root}/home/alice");
    std::fs::create_dir_all(format!("{home}/.ssh")).expect("home");
    std::fs::create_dir_all(format!("{root}/sel")).expect("sel");
    std::fs::create_dir_all(format!("{root}/other")).expect("other");
    let exact = format!("{root}/exact.conf");
    let mut config = settings(&[Program::FileOpen, Program::FileChange], 1 << 20, &[&format!("{root}/sel/")]);
    config.file_paths = vec![exact.clone()];
    config.file_basenames = DEFAULT_FILE_BASENAMES.iter().map(|b| (*b).to_owned()).collect();
    let mut session = Session::start(&config);
    let me = std::process::id();

    // Writes under a temporary home, chosen by basename.
    let keys = format!("{home}/.ssh/authorized_keys");
    let bashrc = format!("{home}/.bashrc");
    for path in [&keys, &bashrc] {
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path);
        drop(file.expect("create"));
    }
    // An exact path, and a name next to it that is not selected.
    std::fs::write(&exact, "x").expect("exact");
    std::fs::write(format!("{exact}.bak"), "x").expect("bak");
    // A read of an unselected path.
    let unselected = format!("{root}/other/readme");
    std::fs::write(&unselected, "x").expect("unselected");
    let filtered_before = filtered(&session, Program::FileOpen);
    let _ = std::fs::read(&unselected).expect("read");
    // chmod 4755, rename into the selection (either path selects), unlink,
    // and a symlink to /etc/shadow (its target's basename selects).
    let tool = format!("{root}/sel/tool");
    std::fs::write(&tool, "#!/bin/sh\n").expect("tool");
    let (chmod_pid, _) = run("chmod", &["4755", &tool]);
    let moved_from = format!("{root}/other/a");
    let moved_to = format!("{root}/sel/b");
    std::fs::write(&moved_from, "x").expect("a");
    std::fs::rename(&moved_from, &moved_to).expect("rename");
    std::fs::remove_file(&moved_to).expect("unlink");
    let link = format!("{root}/link");
    let (ln_pid, _) = run("ln", &["-s", "/etc/shadow", &link]);
    // A hard link from outside the selection to a selected file.
    let hard = format!("{root}/other/hard");
    let (hard_pid, _) = run("ln", &[&tool, &hard]);

    let done =
        session.wait_for(WAIT, |records| !changes(records, &link).is_empty() && opens(records, &keys).next().is_some());
    assert!(done, "no symlink record: {:?}", session.records);
    let records = &session.records;

    for path in [&keys, &bashrc] {
        let open = opens(records, path).next().unwrap_or_else(|| panic!("no open of {path}"));
        assert_eq!(open.proc.tgid, me);
        assert_eq!(open.flags & O_ACCMODE, O_WRONLY, "{path}: write-only");
        assert_ne!(open.flags & O_CREAT, 0, "{path}: O_CREAT");
    }
    assert_eq!(opens(records, &exact).count(), 1, "the exact path");
    assert_eq!(opens(records, &format!("{exact}.bak")).count(), 0, "not the exact path");
    assert_eq!(opens(records, &unselected).count(), 0, "an unselected path never leaves the kernel");
    assert!(filtered(&session, Program::FileOpen) > filtered_before, "the unselected open was counted");

    let [chmod] = changes(records, &tool)[..] else { panic!("one chmod of {tool}: {records:?}") };
    assert_eq!((chmod.op, chmod.mode, chmod.result, chmod.proc.tgid), (FileOp::Chmod, 0o4755, 0, chmod_pid));
    assert_eq!(&*chmod.target, "");
    let [rename] = changes(records, &moved_from)[..] else { panic!("one rename of {moved_from}") };
    assert_eq!((rename.op, &*rename.target, rename.result, rename.proc.tgid), (FileOp::Rename, &*moved_to, 0, me));
    let [unlink] = changes(records, &moved_to)[..] else { panic!("one unlink of {moved_to}") };
    assert_eq!((unlink.op, &*unlink.target, unlink.result, unlink.proc.tgid), (FileOp::Unlink, "", 0, me));
    let [symlink] = changes(records, &link)[..] else { panic!("one symlink {link}") };
    assert_eq!(
        (symlink.op, &*symlink.target, symlink.result, symlink.proc.tgid),
        (FileOp::Symlink, "/etc/shadow", 0, ln_pid)
    );
    let [hard_link] = changes(records, &hard)[..] else { panic!("one link {hard}") };
    assert_eq!(
        (hard_link.op, &*hard_link.target, hard_link.result, hard_link.proc.tgid),
        (FileOp::Link, &*tool, 0, hard_pid)
    );
    assert!(changes(records, &unselected).is_empty());
    eprintln!(
        "file selection: opens of {} files and 5 changes reported; {} opens filtered so far",
        3,
        filtered(&session, Program::FileOpen)
    );
}

#[test]
fn unshare_and_setpriv_report_the_namespace_flags_and_the_ids_before_and_after() {
    if !kernel_or_skip("ebpf::unshare_and_setpriv_report_the_namespace_flags_and_the_ids_before_and_after") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Namespace, Program::Credentials], 1 << 20, &[]));
    let (unshare_pid, _) = run("unshare", &["-n", "true"]);
    let (setpriv_pid, _) = run("setpriv", &["--reuid", "65534", "--regid", "65534", "--clear-groups", "true"]);
    let found = |records: &[Record]| {
        let ns = security(records).any(|r| matches!(r, SecurityRecord::Namespace(n) if n.proc.tgid == unshare_pid));
        let creds = security(records)
            .filter(|r| matches!(r, SecurityRecord::Credentials(c) if c.proc.tgid == setpriv_pid))
            .count();
        ns && creds >= 2
    };
    assert!(session.wait_for(WAIT, found), "{:?}", session.records);
    let records = &session.records;
    let ns: Vec<&NamespaceRecord> = security(records)
        .filter_map(|r| match r {
            SecurityRecord::Namespace(n) if n.proc.tgid == unshare_pid => Some(n),
            _ => None,
        })
        .collect();
    let [ns] = ns[..] else { panic!("one namespace change: {ns:?}") };
    assert_eq!((ns.syscall, ns.flags, ns.result), (NamespaceSyscall::Unshare, 0x4000_0000, 0), "CLONE_NEWNET");

    let creds: Vec<&CredRecord> = security(records)
        .filter_map(|r| match r {
            SecurityRecord::Credentials(c) if c.proc.tgid == setpriv_pid => Some(c),
            _ => None,
        })
        .collect();
    // setpriv (util-linux) calls setresuid(65534, 65534, 65534), then
    // setresgid likewise (its capsets around them are reported too).
    let uid = creds.iter().find(|c| c.syscall == CredSyscall::Setresuid).expect("setresuid");
    assert_eq!((uid.old.uid, uid.old.euid, uid.old.suid), (0, 0, 0));
    assert_eq!((uid.new.uid, uid.new.euid, uid.new.suid), (65534, 65534, 65534));
    assert_eq!(uid.result, 0);
    let gid = creds.iter().find(|c| c.syscall == CredSyscall::Setresgid).expect("setresgid");
    assert_eq!((gid.old.gid, gid.new.gid, gid.new.egid, gid.new.sgid, gid.result), (0, 65534, 65534, 65534, 0));
    assert_eq!(gid.old.uid, 65534, "after the uid change");
    eprintln!("setpriv: {} credential records: {:?}", creds.len(), creds.iter().map(|c| c.syscall).collect::<Vec<_>>());
}

const PTRACE_ATTACH_PY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
r = libc.ptrace(16, pid, None, None)
os.waitpid(pid, 0)
libc.ptrace(17, pid, None, None)
print(r)
"#;

#[test]
fn a_ptrace_attach_names_the_tracee_process() {
    if !kernel_or_skip("ebpf::a_ptrace_attach_names_the_tracee_process") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Ptrace], 1 << 20, &[]));
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let target = sleeper.id();
    let (tracer, out) = python(PTRACE_ATTACH_PY, &[&target.to_string()]);
    assert_eq!(out.trim(), "0", "PTRACE_ATTACH succeeded");
    let found = session.wait_for(WAIT, |records| {
        security(records).any(|r| matches!(r, SecurityRecord::Ptrace(p) if p.proc.tgid == tracer))
    });
    assert!(found, "{:?}", session.records);
    let start = proc_start_ns(target);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let attach: Vec<&PtraceRecord> = security(&session.records)
        .filter_map(|r| match r {
            SecurityRecord::Ptrace(p) if p.proc.tgid == tracer => Some(p),
            _ => None,
        })
        .collect();
    let [attach] = attach[..] else { panic!("one attach (the detach is not reported): {attach:?}") };
    assert_eq!((attach.request, attach.result, attach.target.tgid, attach.target.pid), (16, 0, target, target));
    let key = process_key(&attach.target, tick_ns());
    assert_eq!(key, pipeline::ProcessKey { pid: target, start_time_ns: start }, "the tracee's process key");
    let Event::PtraceAttach(event) =
        events::to_event(Record::Security(SecurityRecord::Ptrace(attach.clone())), 1, tick_ns())
    else {
        panic!("a ptrace event")
    };
    assert_eq!(event.target, key);
}

const BPF_LOAD_PY: &str = r#"
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
insns = ctypes.create_string_buffer(struct.pack('<BBhi', 0xb7, 0, 0, 0) + struct.pack('<BBhi', 0x95, 0, 0, 0), 16)
lic = ctypes.create_string_buffer(b"GPL")
attr = struct.pack('<IIQQIIQII16s', 1, 2, ctypes.addressof(insns), ctypes.addressof(lic), 0, 0, 0, 0, 0, b"hf_test_prog")
attr = ctypes.create_string_buffer(attr + bytes(128 - len(attr)), 128)
fd = libc.syscall(321, 5, attr, 128)
print(fd)
"#;

#[test]
fn bpf_loads_by_others_are_reported_and_the_agents_own_are_not() {
    if !kernel_or_skip("ebpf::bpf_loads_by_others_are_reported_and_the_agents_own_are_not") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::BpfLoad], 1 << 20, &[]));
    let (loader_pid, out) = python(BPF_LOAD_PY, &[]);
    let fd: i32 = out.trim().parse().expect("an fd");
    assert!(fd >= 0, "the socket filter loaded: {out}");
    // This process loads programs again: its own loads are left out.
    let filtered_before = filtered(&session, Program::BpfLoad);
    let second = Session::start(&settings(&[Program::Exit], 1 << 20, &[]));
    drop(second);
    let me = std::process::id();
    let found = session.wait_for(WAIT, |records| {
        security(records).any(|r| matches!(r, SecurityRecord::BpfLoad(b) if b.proc.tgid == loader_pid))
    });
    assert!(found, "{:?}", session.records);
    let loads: Vec<&BpfLoadRecord> = security(&session.records)
        .filter_map(|r| match r {
            SecurityRecord::BpfLoad(b) if b.proc.tgid == loader_pid || b.proc.tgid == me => Some(b),
            _ => None,
        })
        .collect();
    let [load] = loads[..] else { panic!("one load, none of ours: {loads:?}") };
    assert_eq!((load.proc.tgid, load.prog_type, load.insn_count, &*load.name), (loader_pid, 1, 2, "hf_test_prog"));
    assert_eq!(load.result, fd, "the syscall's return: the new program's fd");
    assert!(filtered(&session, Program::BpfLoad) > filtered_before, "our own loads were counted as filtered");
}

const LISTEN_PY: &str = r#"
import socket, os
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.bind(("127.0.0.1", 0))
l.listen(7)
print(l.getsockname()[1], flush=True)
c, peer = l.accept()
print(peer[1], flush=True)
c.close()
"#;

#[test]
fn a_loopback_listener_and_its_client_give_listen_and_accept_with_ports() {
    if !kernel_or_skip("ebpf::a_loopback_listener_and_its_client_give_listen_and_accept_with_ports") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Listen, Program::Accept], 1 << 20, &[]));
    let mut server = Command::new("python3").args(["-c", LISTEN_PY]).stdout(Stdio::piped()).spawn().expect("python3");
    let server_pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let port: u16 = lines.next().expect("port").expect("line").parse().expect("port");
    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let client_port = client.local_addr().expect("local").port();
    let peer_port: u16 = lines.next().expect("peer").expect("line").parse().expect("peer port");
    assert_eq!(peer_port, client_port);
    let mut rest = String::new();
    let _ = client.try_clone().expect("clone").read_to_string(&mut rest);
    assert!(server.wait().expect("wait").success());
    let found = session.wait_for(WAIT, |records| {
        security(records).any(|r| matches!(r, SecurityRecord::Accept(a) if a.proc.tgid == server_pid))
    });
    assert!(found, "{:?}", session.records);
    let ours = |tgid: u32| {
        move |r: &&SecurityRecord| match r {
            SecurityRecord::Listen(l) => l.proc.tgid == tgid,
            SecurityRecord::Accept(a) => a.proc.tgid == tgid,
            _ => false,
        }
    };
    let records: Vec<&SecurityRecord> = security(&session.records).filter(ours(server_pid)).collect();
    let [SecurityRecord::Listen(listen), SecurityRecord::Accept(accept)] = records[..] else {
        panic!("listen then accept: {records:?}")
    };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!((listen.addr, listen.port, listen.backlog, listen.result), (loopback, port, 7, 0));
    assert_eq!((accept.local_addr, accept.local_port), (loopback, port));
    assert_eq!((accept.peer_addr, accept.peer_port), (loopback, client_port));
}

const UDP_PY: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(10):
    s.sendto(b"x" * 12, ("127.0.0.1", 53))
s.sendto(b"y" * 5, ("127.0.0.1", 54))
"#;

#[test]
fn ten_udp_sends_to_one_destination_are_one_event() {
    if !kernel_or_skip("ebpf::ten_udp_sends_to_one_destination_are_one_event") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::UdpSend], 1 << 20, &[]));
    let (pid, _) = python(UDP_PY, &[]);
    let found = session.wait_for(WAIT, |records| {
        security(records).any(|r| matches!(r, SecurityRecord::UdpSend(u) if u.proc.tgid == pid && u.port == 54))
    });
    assert!(found, "{:?}", session.records);
    let sends: Vec<&UdpSendRecord> = security(&session.records)
        .filter_map(|r| match r {
            SecurityRecord::UdpSend(u) if u.proc.tgid == pid => Some(u),
            _ => None,
        })
        .collect();
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let [first, other] = sends[..] else { panic!("one send per destination: {sends:?}") };
    assert_eq!((first.addr, first.port, first.bytes), (loopback, 53, 12));
    assert_eq!((other.addr, other.port, other.bytes), (loopback, 54, 5));
    assert!(filtered(&session, Program::UdpSend) >= 9, "the 9 repeats were counted");
}

const FINIT_PY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
fd = os.open(sys.argv[1], os.O_RDONLY)
r = libc.syscall(313, fd, b"hf_param=1", 0)
print(-ctypes.get_errno() if r < 0 else r)
"#;

#[test]
fn module_loads_are_reported_or_the_kernel_cannot_load_modules() {
    if !kernel_or_skip("ebpf::module_loads_are_reported_or_the_kernel_cannot_load_modules") {
        return;
    }
    let tracefs = super::host::ensure_tracefs();
    let has_tracepoints =
        tracefs.path().is_some_and(|path| Path::new(path).join("events/syscalls/sys_enter_finit_module").exists());
    let config = settings(&[Program::ModuleLoad, Program::Exit], 1 << 20, &[]);
    if !has_tracepoints {
        // A kernel built without module support: the program is
        // unsupported (not failed), the others run, the source is healthy.
        let mut loaded = loader::load(&config).expect("loads");
        let report = loaded.report.clone();
        let module = &report.programs[0];
        assert!(
            matches!(&module.state, ProgramState::Unsupported(reason) if reason.contains("finit_module")),
            "{report:?}"
        );
        assert_eq!(report.running().collect::<Vec<_>>(), [Program::Exit]);
        assert_eq!(report.problems(), None, "unsupported is not a problem");
        // The programs themselves pass the verifier.
        for name in ["hf_finit_module_enter", "hf_finit_module_exit", "hf_init_module_enter", "hf_init_module_exit"] {
            loaded.verify_only(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        eprintln!("module_load: unsupported here ({:?}); its programs verify", module.state);
        return;
    }
    let mut session = Session::start(&config);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), b"not a module").expect("write");
    let path = file.path().to_str().expect("utf-8").to_owned();
    let (pid, out) = python(FINIT_PY, &[&path]);
    let result: i32 = out.trim().parse().expect("result");
    assert!(result < 0, "finit_module of a non-module fails: {result}");
    let found = session.wait_for(WAIT, |records| {
        security(records).any(|r| matches!(r, SecurityRecord::Module(m) if m.proc.tgid == pid))
    });
    assert!(found, "{:?}", session.records);
    let module = security(&session.records)
        .find_map(|r| match r {
            SecurityRecord::Module(m) if m.proc.tgid == pid => Some(m),
            _ => None,
        })
        .expect("module record");
    assert_eq!((module.syscall, &*module.path, &*module.params), (ModuleSyscall::FinitModule, &*path, "hf_param=1"));
    assert_eq!(module.result, result);
}

#[test]
fn the_default_programs_all_load_and_the_probe_lists_each_one() {
    if !kernel_or_skip("ebpf::the_default_programs_all_load_and_the_probe_lists_each_one") {
        return;
    }
    let started = std::time::Instant::now();
    let report = probe(&LoadSettings::default());
    eprintln!(
        "{report}probe (load, attach and detach of the default programs): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let names: Vec<&str> = report.programs.iter().map(|p| p.program.as_str()).collect();
    assert_eq!(names, Program::ALL.map(Program::as_str));
    // The security programs (the others have their own tests).
    for program in report.programs.iter().filter(|p| Program::from_name(&p.program).is_some_and(|p| p.id() >= 5)) {
        let ok = matches!(program.fact, probe::Fact::Ok(_));
        let unsupported_module = program.program == "module_load" && matches!(program.fact, probe::Fact::Missing(_));
        assert!(ok || unsupported_module, "{}: {}", program.program, program.fact);
    }
    let text = report.to_string();
    for name in ["file_change", "credentials", "namespace", "ptrace", "bpf_load", "listen", "accept", "udp_send"] {
        assert!(text.contains(&format!("program {name}")), "{text}");
    }
}

// ---- no kernel needed: decoding, selection, configuration -------------

/// A record of `kind` with its header and process filled in.
fn raw(kind: u16, size: usize, tail: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    bytes.extend_from_slice(tail);
    let total = bytes.len() as u32;
    bytes[0..2].copy_from_slice(&kind.to_le_bytes());
    bytes[2..4].copy_from_slice(&super::records::RECORD_VERSION.to_le_bytes());
    bytes[4..8].copy_from_slice(&total.to_le_bytes());
    bytes[8..16].copy_from_slice(&77u64.to_le_bytes());
    bytes[16..20].copy_from_slice(&42u32.to_le_bytes());
    bytes[20..24].copy_from_slice(&43u32.to_le_bytes());
    bytes[24..32].copy_from_slice(&1_234_567_890u64.to_le_bytes());
    bytes
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn decoded(bytes: &[u8]) -> SecurityRecord {
    match super::records::decode(bytes) {
        Ok(Record::Security(record)) => record,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_change_decodes_its_two_paths_from_the_tail() {
    let mut bytes = raw(kind::FILE_CHANGE, 48, b"/a/link/etc/shadow");
    put(&mut bytes, 32, &4u32.to_le_bytes()); // symlink
    put(&mut bytes, 40, &(-17i32).to_le_bytes());
    put(&mut bytes, 44, &7u16.to_le_bytes());
    put(&mut bytes, 46, &11u16.to_le_bytes());
    let SecurityRecord::FileChange(change) = decoded(&bytes) else { panic!() };
    assert_eq!(
        (change.op, &*change.path, &*change.target, change.result),
        (FileOp::Symlink, "/a/link", "/etc/shadow", -17)
    );
    let Event::FileChange(event) = events::to_event(Record::Security(SecurityRecord::FileChange(change)), 3, 1) else {
        panic!()
    };
    assert_eq!((event.meta.event_id, event.process.pid, &*event.target), (3, 42, "/etc/shadow"));
    // The lengths must add up to the entry exactly, and be in range.
    let mut bad = bytes.clone();
    put(&mut bad, 46, &12u16.to_le_bytes());
    assert!(matches!(super::records::decode(&bad), Err(super::records::DecodeError::SizeMismatch { .. })));
    let mut bad = bytes.clone();
    put(&mut bad, 46, &300u16.to_le_bytes());
    assert!(matches!(
        super::records::decode(&bad),
        Err(super::records::DecodeError::BadField { field: "target_len", .. })
    ));
    let mut bad = bytes.clone();
    put(&mut bad, 32, &9u32.to_le_bytes());
    assert!(matches!(super::records::decode(&bad), Err(super::records::DecodeError::BadField { field: "op", .. })));
    assert!(matches!(super::records::decode(&bytes[..40]), Err(super::records::DecodeError::SizeMismatch { .. })));
}

#[test]
fn fixed_security_records_decode_every_field() {
    let mut creds = raw(kind::CRED_CHANGE, 120, &[]);
    put(&mut creds, 32, &2u32.to_le_bytes()); // setresuid
    put(&mut creds, 36, &0i32.to_le_bytes());
    put(&mut creds, 80, &65534u32.to_le_bytes()); // new.uid
    put(&mut creds, 104, &0x1234u64.to_le_bytes()); // new.cap_effective
    let SecurityRecord::Credentials(c) = decoded(&creds) else { panic!() };
    assert_eq!((c.syscall, c.old.uid, c.new.uid, c.new.cap_effective), (CredSyscall::Setresuid, 0, 65534, 0x1234));
    assert_eq!((c.proc.tgid, c.proc.pid, c.proc.start_boottime_ns, c.ts_ns), (42, 43, 1_234_567_890, 77));

    let mut ptrace = raw(kind::PTRACE, 64, &[]);
    put(&mut ptrace, 32, &16u64.to_le_bytes());
    put(&mut ptrace, 40, &99u32.to_le_bytes());
    put(&mut ptrace, 48, &5_000_000_001u64.to_le_bytes());
    put(&mut ptrace, 56, &(-1i32).to_le_bytes());
    let SecurityRecord::Ptrace(p) = decoded(&ptrace) else { panic!() };
    assert_eq!((p.request, p.target.tgid, p.target.start_boottime_ns, p.result), (16, 99, 5_000_000_001, -1));
    let Event::PtraceAttach(event) = events::to_event(Record::Security(SecurityRecord::Ptrace(p)), 1, 10_000_000)
    else {
        panic!()
    };
    assert_eq!(event.target, pipeline::ProcessKey { pid: 99, start_time_ns: 5_000_000_000 });

    let mut listen = raw(kind::LISTEN, 64, &[]);
    put(&mut listen, 32, &10u16.to_le_bytes());
    put(&mut listen, 34, &8080u16.to_le_bytes());
    put(&mut listen, 36, &7i32.to_le_bytes());
    put(&mut listen, 48, &std::net::Ipv6Addr::LOCALHOST.octets());
    let SecurityRecord::Listen(l) = decoded(&listen) else { panic!() };
    assert_eq!((l.addr, l.port, l.backlog), ("::1".parse::<IpAddr>().expect("ip"), 8080, 7));
    put(&mut listen, 32, &3u16.to_le_bytes());
    assert!(super::records::decode(&listen).is_err(), "unknown family");

    let mut accept = raw(kind::ACCEPT, 72, &[]);
    put(&mut accept, 32, &2u16.to_le_bytes());
    put(&mut accept, 34, &80u16.to_le_bytes());
    put(&mut accept, 36, &50000u16.to_le_bytes());
    put(&mut accept, 40, &[127, 0, 0, 1]);
    put(&mut accept, 56, &[10, 0, 0, 2]);
    let SecurityRecord::Accept(a) = decoded(&accept) else { panic!() };
    assert_eq!((a.local_port, a.peer_port, a.peer_addr), (80, 50000, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));

    let mut send = raw(kind::UDP_SEND, 56, &[]);
    put(&mut send, 32, &2u16.to_le_bytes());
    put(&mut send, 34, &53u16.to_le_bytes());
    put(&mut send, 36, &12u32.to_le_bytes());
    put(&mut send, 40, &[127, 0, 0, 1]);
    let SecurityRecord::UdpSend(u) = decoded(&send) else { panic!() };
    assert_eq!((u.port, u.bytes), (53, 12));

    let mut bpf = raw(kind::BPF_LOAD, 64, &[]);
    put(&mut bpf, 32, &1u32.to_le_bytes());
    put(&mut bpf, 36, &2u32.to_le_bytes());
    put(&mut bpf, 40, &5i32.to_le_bytes());
    put(&mut bpf, 48, b"prog\0");
    let SecurityRecord::BpfLoad(b) = decoded(&bpf) else { panic!() };
    assert_eq!((b.prog_type, b.insn_count, b.result, &*b.name), (1, 2, 5, "prog"));

    let mut ns = raw(kind::NAMESPACE, 48, &[]);
    put(&mut ns, 32, &1u32.to_le_bytes());
    put(&mut ns, 40, &0x4000_0000u64.to_le_bytes());
    let SecurityRecord::Namespace(n) = decoded(&ns) else { panic!() };
    assert_eq!((n.syscall, n.flags), (NamespaceSyscall::Unshare, 0x4000_0000));
    put(&mut ns, 32, &2u32.to_le_bytes());
    assert!(super::records::decode(&ns).is_err(), "unknown syscall");

    let mut module = raw(kind::MODULE, 48, b"/tmp/x.kofoo=1");
    put(&mut module, 32, &1u32.to_le_bytes());
    put(&mut module, 36, &(-8i32).to_le_bytes());
    put(&mut module, 40, &9u16.to_le_bytes());
    put(&mut module, 42, &5u16.to_le_bytes());
    let SecurityRecord::Module(m) = decoded(&module) else { panic!() };
    assert_eq!((m.syscall, &*m.path, &*m.params, m.result), (ModuleSyscall::FinitModule, "/tmp/x.ko", "foo=1", -8));

    // A fixed-size kind with extra bytes is refused.
    let long = raw(kind::UDP_SEND, 60, &[]);
    assert!(super::records::decode(&long).is_err());
    assert!(matches!(super::records::decode(&raw(99, 48, &[])), Err(super::records::DecodeError::UnknownKind(99))));
}

#[test]
fn the_selection_encodes_as_the_kernel_matches() {
    let (bits, data, value) = encode_path_entry("/etc/", false).expect("prefix");
    assert_eq!((bits, &data[..6], value), (40, &b"/etc/\0"[..], SELECT_PREFIX));
    let (bits, _, value) = encode_path_entry("/etc/shadow", true).expect("exact");
    assert_eq!((bits, value), (96, SELECT_EXACT), "an exact path covers its NUL");
    assert!(encode_path_entry("", false).is_none());
    assert!(encode_path_entry(&"a".repeat(MAX_PREFIX_LEN), false).is_some());
    assert!(encode_path_entry(&"a".repeat(MAX_PREFIX_LEN + 1), false).is_none());
    assert!(encode_path_entry(&"a".repeat(MAX_EXACT_LEN + 1), true).is_none());
    assert_eq!(&encode_basename("id_rsa").expect("name")[..7], b"id_rsa\0");
    assert!(encode_basename("a/b").is_none() && encode_basename("").is_none());
    assert!(encode_basename(&"n".repeat(BASENAME_LEN)).is_some());
    assert!(encode_basename(&"n".repeat(BASENAME_LEN + 1)).is_none());

    let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (prefixes, exact, names) = (list(&["/etc/"]), list(&["/srv/app.conf"]), list(&["authorized_keys", ".bashrc"]));
    let selected = |path: &str| selection_matches(path, &prefixes, &exact, &names);
    assert!(selected("/etc/passwd") && selected("/srv/app.conf"));
    assert!(!selected("/srv/app.conf.bak") && !selected("/etcetera"));
    assert!(selected("/home/bob/.ssh/authorized_keys") && selected("authorized_keys") && selected("./x/.bashrc"));
    assert!(!selected("/home/bob/.bashrc.swp") && !selected("/home/bob/.ssh/"));
}

#[test]
fn selection_and_program_options_are_checked_at_their_value() {
    let build = |table: &str| -> Result<EbpfSource, Vec<pipeline::ConfigError>> {
        let text =
            format!("[sources.p]\ntype = \"ebpf\"\n{table}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"p\"]\n");
        let config = pipeline::TopologyConfig::parse(pipeline::SourceFile::new("t.toml", text)).expect("toml");
        let options = config.components.into_iter().find(|c| c.name == "p").expect("p").options;
        let parsed: EbpfConfig = options.deserialize().map_err(|e| vec![e])?;
        EbpfSource::new(parsed, &options)
    };
    let check = |table: &str, line: usize, column: usize, message: &str| {
        let errors = build(table).expect_err(table);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].position, Some((line, column)), "{}", errors[0]);
        assert!(errors[0].to_string().contains(message), "{}", errors[0]);
    };
    // Defaults: /etc/ and the basenames, every program.
    let source = build("").expect("defaults");
    assert_eq!(source.settings().programs, Program::ALL);
    assert_eq!(source.settings().file_prefixes, ["/etc/"]);
    assert!(source.settings().file_basenames.iter().any(|b| b == "authorized_keys"));
    // One option given: the others are empty.
    let source = build("file_basenames = [\"id_rsa\"]").expect("valid");
    assert_eq!(
        (
            source.settings().file_prefixes.len(),
            source.settings().file_paths.len(),
            &source.settings().file_basenames[..]
        ),
        (0, 0, &["id_rsa".to_owned()][..])
    );
    let source = build("programs = [\"udp_send\", \"file_change\"]\nfile_paths = [\"/etc/shadow\"]").expect("valid");
    assert_eq!(source.settings().programs, [Program::UdpSend, Program::FileChange]);

    check("programs = [\"ptrac\"]", 3, 13, "unknown program `ptrac` (known: exec, exit, fork, connect, file_open, file_change, credentials, namespace, ptrace, module_load, bpf_load, listen, accept, udp_send)");
    check("file_basenames = [\"a/b\"]", 3, 19, "a file basename has no '/'");
    check(
        &format!("file_basenames = [\"{}\"]", "n".repeat(65)),
        3,
        19,
        "a file basename must be 1 to 64 bytes, got 65",
    );
    check(&format!("file_paths = [\"{}\"]", "p".repeat(255)), 3, 15, "a file path must be 1 to 254 bytes, got 255");
    check("file_paths = [\"/a\", \"/a\"]", 3, 21, "file path \"/a\" is listed twice");
    check(
        "file_paths = []\nfile_basenames = []",
        3,
        14,
        "file_open needs at least one entry in file_prefixes, file_paths or file_basenames",
    );
    check("programs = [\"file_change\"]\nfile_prefixes = []", 4, 17, "file_change needs at least one entry");
    let many = (0..257).map(|i| format!("\"/p{i}/\"")).collect::<Vec<_>>().join(",");
    check(&format!("file_prefixes = [{many}]"), 3, 17, "at most 256 file_prefixes and file_paths together, got 257");
    let many = (0..257).map(|i| format!("\"n{i}\"")).collect::<Vec<_>>().join(",");
    check(&format!("file_basenames = [{many}]"), 3, 18, "at most 256 file_basenames, got 257");
}

/// The in-kernel cost of the file selection for opens it leaves out:
/// `cargo test --release -p sources ebpf::tests_security::open_filter_cost
/// -- --ignored --nocapture`. Alternates detached and attached runs of
/// open+close of `/usr/bin/true` (outside the default selection).
#[test]
#[ignore = "a measurement, not a check"]
fn open_filter_cost() {
    if !kernel_or_skip("ebpf::open_filter_cost") {
        return;
    }
    const OPENS: u32 = 500_000;
    let storm = || {
        let started = std::time::Instant::now();
        for _ in 0..OPENS {
            drop(std::fs::File::open("/usr/bin/true").expect("open"));
        }
        started.elapsed().as_secs_f64()
    };
    let config = LoadSettings { programs: vec![Program::FileOpen], ..LoadSettings::default() };
    let (mut detached, mut attached) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        detached.push(storm());
        let session = Session::start(&config);
        attached.push(storm());
        let counts = read_counts(&session.counters).expect("counters")[Program::FileOpen.id()];
        eprintln!("filtered {}; {}", counts.filtered, bpf_run_stats());
        drop(session);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, a) = (median(&mut detached), median(&mut attached));
    eprintln!(
        "{OPENS} opens outside the selection: detached {d:.3} s, attached {a:.3} s: {:.3}x, {:.0} ns per open",
        a / d,
        (a - d) / f64::from(OPENS) * 1e9
    );
}

/// `run_time_ns / run_cnt` of every BPF program this process holds, from
/// fdinfo (needs `kernel.bpf_stats_enabled = 1`).
fn bpf_run_stats() -> String {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").into_iter().flatten().flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().trim_start_matches(':').trim().to_owned()))
        };
        if let (Some(time), Some(count)) = (field("run_time_ns"), field("run_cnt")) {
            let (time, count): (u64, u64) = (time.parse().unwrap_or(0), count.parse().unwrap_or(0));
            if count > 0 {
                out.push(format!("{} runs × {} ns", count, time / count));
            }
        }
    }
    out.join(", ")
}
