//! Tests of the ebpf source that need no kernel: configuration problems at
//! their location, record decoding (good and malformed bytes), the event
//! mapping and identity rule, host-fact parsing, and the `/proc` fallback
//! run the way the engine runs the source. The kernel tests are in
//! `tests_kernel.rs`; the fallback without privilege is at the end here.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::edge::{buffer, EdgeReceiver};
use pipeline::health::{ComponentState, Health};
use pipeline::metrics::{BufferGauges, EdgeMetrics};
use pipeline::{shutdown_channel, BufferConfig, Event, Fanout, Role, ShutdownTrigger, SourceFile, TopologyConfig};

use super::records::*;
use super::*;

// ---- harness shared with tests_kernel.rs ---------------------------------

pub(super) struct Harness {
    pub cx: SourceContext,
    pub receiver: EdgeReceiver,
    pub trigger: ShutdownTrigger,
    pub health: Health,
}

/// A context for a source named `p` feeding one buffer.
pub(super) fn harness(event_id_prefix: u64) -> Harness {
    let (handle, receiver) = buffer(&BufferConfig::default(), BufferGauges::new("out", 4096));
    let sender = handle.sender("p", "out", EdgeMetrics::new("p", "out", Role::Sink, "blackhole"));
    let (trigger, shutdown) = shutdown_channel();
    let health = Health::default();
    let cx = SourceContext {
        name: Arc::from("p"),
        out: Fanout::new(vec![sender], metrics::Counter::noop()),
        shutdown,
        health: health.register("p", Role::Source, "ebpf"),
        event_id_prefix,
    };
    Harness { cx, receiver, trigger, health }
}

/// Feeds every received event to `on_event` until it returns true (→
/// true), the source stops, or `timeout` passes (→ false).
pub(super) async fn wait_for_events(
    receiver: &mut EdgeReceiver,
    timeout: Duration,
    mut on_event: impl FnMut(&Event) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(batch)) => {
                for event in &batch {
                    if on_event(event) {
                        return true;
                    }
                }
            }
            Ok(None) | Err(_) => return false,
        }
    }
}

// ---- configuration --------------------------------------------------------

fn options(table: &str) -> ComponentOptions {
    let text = format!("[sources.p]\ntype = \"ebpf\"\n{table}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"p\"]\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "p").expect("ebpf declared").options
}

pub(super) fn build_ebpf(table: &str) -> Result<EbpfSource, Vec<ConfigError>> {
    let options = options(table);
    let config: EbpfConfig = options.deserialize().map_err(|e| vec![e])?;
    EbpfSource::new(config, &options)
}

/// Builds from `table` and expects exactly one error at `line:column`
/// whose message contains `message`.
pub(super) fn check_error(table: &str, line: usize, column: usize, message: &str) {
    let errors = build_ebpf(table).expect_err(table);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].position, Some((line, column)), "{}", errors[0]);
    assert!(errors[0].to_string().contains(message), "{}", errors[0]);
}

#[test]
fn defaults_load_every_program_with_a_1_mib_ring() {
    let source = build_ebpf("").expect("defaults are valid");
    assert_eq!(
        source.settings,
        LoadSettings {
            programs: Program::ALL.to_vec(),
            connect_hook: super::ConnectHook::Cgroup,
            cgroup_path: None,
            ring_buffer_bytes: 1 << 20,
            wakeup_threshold_bytes: 256 << 10,
            file_prefixes: vec!["/etc/".to_owned()],
            file_paths: Vec::new(),
            file_basenames: DEFAULT_FILE_BASENAMES.iter().map(|b| (*b).to_owned()).collect(),
            agent_tgid: None,
            exec_env: DEFAULT_EXEC_ENV.iter().map(|name| (*name).to_owned()).collect(),
        }
    );
    assert_eq!((source.drain_interval, source.fallback_interval), (Duration::from_millis(100), Duration::from_secs(1)));
    let source = build_ebpf(
        "programs = [\"exec\", \"connect\"]\nring_buffer_bytes = 65536\nwakeup_threshold_bytes = 0\n\
         drain_interval_ms = 50\nfile_prefixes = []\nfallback_interval_ms = 200",
    )
    .expect("valid");
    assert_eq!(source.settings.programs, [Program::Exec, Program::Connect]);
    assert_eq!((source.settings.ring_buffer_bytes, source.settings.wakeup_threshold_bytes), (65536, 0));
    let small = build_ebpf("ring_buffer_bytes = 65536").expect("valid");
    assert_eq!(small.settings.wakeup_threshold_bytes, 16384, "a quarter of a small ring by default");
    assert!(source.settings.file_prefixes.is_empty(), "no file_open, no prefixes needed");
}

#[test]
fn the_default_settings_are_the_default_config() {
    assert_eq!(build_ebpf("").expect("defaults").settings, LoadSettings::default());
}

#[test]
fn without_the_object_loading_says_why() {
    match loader::embedded_object() {
        Ok(object) => assert!(object.starts_with(b"\x7fELF"), "an ELF object is embedded"),
        Err(reason) => {
            let error = loader::load(&LoadSettings::default()).expect_err("nothing to load");
            assert_eq!(error.to_string(), format!("built without eBPF: {reason}"));
        }
    }
}

#[test]
fn bad_options_are_reported_at_their_value() {
    check_error("programs = [\"exec\", \"exce\"]", 3, 21, "unknown program `exce` (known: exec, exit");
    check_error("programs = [\"exec\", \"exec\"]", 3, 21, "program `exec` is listed twice");
    check_error("programs = []", 3, 12, "at least one program");
    check_error("ring_buffer_bytes = 5000", 3, 21, "must be a power of two from 4096 (one page)");
    check_error("ring_buffer_bytes = 5000", 3, 21, "got 5000 (try 8192)");
    check_error("ring_buffer_bytes = 2048", 3, 21, "(try 4096)");
    check_error("ring_buffer_bytes = 2147483648", 3, 21, "to 1073741824");
    check_error("ring_buffer_bytes = 65536\nwakeup_threshold_bytes = 40000", 4, 26, "at most half");
    check_error("drain_interval_ms = 0", 3, 21, "drain_interval_ms must be 1 to 60000, got 0");
    check_error("fallback_interval_ms = 1", 3, 24, "fallback_interval_ms must be 10 to 3600000");
    check_error("file_prefixes = []", 3, 17, "file_open needs at least one entry in file_prefixes");
    check_error("file_prefixes = [\"/a\", \"\"]", 3, 24, "a file prefix must be 1 to 255 bytes, got 0");
    check_error(&format!("file_prefixes = [\"{}\"]", "x".repeat(256)), 3, 18, "got 256");
    check_error("connect_hook = \"kprobe\"", 3, 16, "unknown connect_hook `kprobe` (known: cgroup, tracepoint)");
    check_error("cgroup_path = \"sys/fs/cgroup\"", 3, 15, "cgroup_path must be an absolute path");
    check_error("ring_bytes = 4096", 3, 1, "unknown field `ring_bytes`");
    check_error("ring_buffer_bytes = -1", 3, 21, "");
}

// ---- records --------------------------------------------------------------

/// Little-endian writer for hand-made records.
struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u16, size: usize) -> Writer {
        let mut writer = Writer(vec![0; size]);
        writer.put(offset_of!(RawHeader, kind), &kind.to_le_bytes());
        writer.put(offset_of!(RawHeader, version), &RECORD_VERSION.to_le_bytes());
        writer.put(offset_of!(RawHeader, size), &(size as u32).to_le_bytes());
        writer.put(offset_of!(RawHeader, ts_ns), &123_456_789u64.to_le_bytes());
        writer
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) -> &mut Writer {
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
        self
    }

    fn proc(&mut self, offset: usize, tgid: u32, pid: u32, start: u64) -> &mut Writer {
        self.put(offset, &tgid.to_le_bytes()).put(offset + 4, &pid.to_le_bytes()).put(offset + 8, &start.to_le_bytes())
    }
}

const START: u64 = 5_123_456_789;
const IDENTITY: ProcIdentity = ProcIdentity { tgid: 42, pid: 43, start_boottime_ns: START };

fn exec_bytes(argv: &[u8], flags: u32) -> Vec<u8> {
    let fixed = size_of::<RawExecFixed>();
    let mut w = Writer::new(kind::EXEC, fixed + argv.len());
    w.proc(offset_of!(RawExecFixed, proc), 42, 43, START)
        .put(offset_of!(RawExecFixed, ppid), &1u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, uid), &1000u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, gid), &100u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, flags), &flags.to_le_bytes())
        .put(offset_of!(RawExecFixed, cgroup_id), &77u64.to_le_bytes())
        .put(offset_of!(RawExecFixed, argv_len), &(argv.len() as u32).to_le_bytes())
        .put(offset_of!(RawExecFixed, argv_full_len), &9000u32.to_le_bytes())
        .put(offset_of!(RawExecFixed, comm), b"curl\0")
        .put(offset_of!(RawExecFixed, filename), b"/usr/bin/curl\0garbage")
        .put(fixed, argv);
    w.0
}

#[test]
fn every_kind_decodes_field_by_field() {
    let Record::Exec(exec) = decode(&exec_bytes(b"curl\0-sS\0a b\0", 1)).expect("exec") else { panic!() };
    assert_eq!(
        (exec.ts_ns, exec.proc, exec.ppid, exec.uid, exec.gid, exec.cgroup_id),
        (123_456_789, IDENTITY, 1, 1000, 100, 77)
    );
    assert_eq!((&*exec.comm, &*exec.filename), ("curl", "/usr/bin/curl"));
    assert_eq!(exec.argv.iter().collect::<Vec<_>>(), ["curl", "-sS", "a b"]);
    assert_eq!(
        (exec.argv_truncated, exec.argv_unreadable, exec.filename_truncated, exec.argv_full_len),
        (true, false, false, 9000)
    );

    let mut w = Writer::new(kind::EXIT, size_of::<RawExit>());
    w.proc(offset_of!(RawExit, proc), 42, 43, START)
        .put(offset_of!(RawExit, exit_code), &(3i32 << 8).to_le_bytes())
        .put(offset_of!(RawExit, cpu_ns), &2_000_000u64.to_le_bytes())
        .put(offset_of!(RawExit, comm), b"sh");
    let Record::Exit(exit) = decode(&w.0).expect("exit") else { panic!() };
    assert_eq!(
        (exit.proc, exit.exit_code_raw, exit.exit_status(), exit.cpu_ns, &*exit.comm),
        (IDENTITY, 768, 3, 2_000_000, "sh")
    );

    let mut w = Writer::new(kind::FORK, size_of::<RawFork>());
    w.proc(offset_of!(RawFork, parent), 1, 1, 10).proc(offset_of!(RawFork, child), 42, 43, START);
    let Record::Fork(fork) = decode(&w.0).expect("fork") else { panic!() };
    assert_eq!((fork.parent, fork.child), (ProcIdentity { tgid: 1, pid: 1, start_boottime_ns: 10 }, IDENTITY));

    for (family, addr, expected) in [
        (2u16, [127, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], IpAddr::from(Ipv4Addr::LOCALHOST)),
        (10u16, Ipv6Addr::LOCALHOST.octets(), IpAddr::from(Ipv6Addr::LOCALHOST)),
    ] {
        let mut w = Writer::new(kind::CONNECT, size_of::<RawConnect>());
        w.proc(offset_of!(RawConnect, proc), 42, 43, START)
            .put(offset_of!(RawConnect, family), &family.to_le_bytes())
            .put(offset_of!(RawConnect, port), &443u16.to_le_bytes())
            .put(offset_of!(RawConnect, sock_type), &2i16.to_le_bytes())
            .put(offset_of!(RawConnect, ret), &(-111i32).to_le_bytes())
            .put(offset_of!(RawConnect, addr), &addr);
        let Record::Connect(connect) = decode(&w.0).expect("connect") else { panic!() };
        assert_eq!((connect.addr, connect.port, connect.sock_type, connect.result), (expected, 443, 2, Some(-111)));
    }
    // The cgroup hook runs before the attempt: its record says the result
    // is unknown, whatever `ret` holds.
    let mut w = Writer::new(kind::CONNECT, size_of::<RawConnect>());
    w.proc(offset_of!(RawConnect, proc), 42, 43, START)
        .put(offset_of!(RawConnect, family), &2u16.to_le_bytes())
        .put(offset_of!(RawConnect, flags), &super::records::CONNECT_NO_RESULT.to_le_bytes())
        .put(offset_of!(RawConnect, ret), &(-111i32).to_le_bytes());
    let Record::Connect(connect) = decode(&w.0).expect("connect") else { panic!() };
    assert_eq!(connect.result, None);

    let mut w = Writer::new(kind::OPEN, size_of::<RawOpen>());
    w.proc(offset_of!(RawOpen, proc), 42, 43, START)
        .put(offset_of!(RawOpen, flags), &0o2_000_000u32.to_le_bytes())
        .put(offset_of!(RawOpen, path_len), &11u32.to_le_bytes())
        .put(offset_of!(RawOpen, dfd), &(-100i32).to_le_bytes())
        .put(offset_of!(RawOpen, syscall), &1u32.to_le_bytes())
        .put(offset_of!(RawOpen, path), b"/etc/passwd\0");
    let Record::Open(open) = decode(&w.0).expect("open") else { panic!() };
    assert_eq!(
        (&*open.path, open.flags, open.dfd, open.syscall),
        ("/etc/passwd", 0o2_000_000, -100, OpenSyscall::Openat2)
    );
}

#[test]
fn malformed_entries_are_errors_not_panics() {
    assert_eq!(decode(&[]), Err(DecodeError::TooShort { len: 0, need: 2 }));
    assert_eq!(decode(&[1, 0, 1, 0]), Err(DecodeError::TooShort { len: 4, need: 8 }));
    let good = exec_bytes(b"a\0", 0);
    let mut wrong_version = good.clone();
    wrong_version[2] = 9;
    assert_eq!(decode(&wrong_version), Err(DecodeError::Version { found: 9 }));
    assert_eq!(
        decode(&good[..good.len() - 1]),
        Err(DecodeError::SizeMismatch { declared: good.len(), actual: good.len() - 1 })
    );
    let mut unknown = Writer::new(99, 64).0;
    assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
    unknown[0] = kind::EXIT as u8;
    unknown[4] = 16;
    assert_eq!(decode(&unknown[..16]), Err(DecodeError::TooShort { len: 16, need: 64 }));
    // argv_len beyond the bound, and disagreeing with the entry's size.
    let mut w = Writer(exec_bytes(b"", 0));
    w.put(offset_of!(RawExecFixed, argv_len), &5000u32.to_le_bytes());
    assert_eq!(decode(&w.0), Err(DecodeError::BadField { field: "argv_len", value: 5000 }));
    w.put(offset_of!(RawExecFixed, argv_len), &8u32.to_le_bytes());
    assert_eq!(decode(&w.0), Err(DecodeError::SizeMismatch { declared: 528, actual: 520 }));
    let mut w = Writer::new(kind::CONNECT, size_of::<RawConnect>());
    w.put(offset_of!(RawConnect, family), &1u16.to_le_bytes());
    assert_eq!(decode(&w.0), Err(DecodeError::BadField { field: "family", value: 1 }));
    let mut w = Writer::new(kind::OPEN, size_of::<RawOpen>());
    w.put(offset_of!(RawOpen, path_len), &256u32.to_le_bytes());
    assert_eq!(decode(&w.0), Err(DecodeError::BadField { field: "path_len", value: 256 }));
    w.put(offset_of!(RawOpen, path_len), &0u32.to_le_bytes()).put(offset_of!(RawOpen, syscall), &7u32.to_le_bytes());
    assert_eq!(decode(&w.0), Err(DecodeError::BadField { field: "syscall", value: 7 }));
    // Arbitrary bytes never panic.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..700 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = decode(&bytes);
    }
}

#[test]
fn exit_status_follows_the_shell() {
    let exit = |raw| ExitRecord { ts_ns: 0, proc: IDENTITY, exit_code_raw: raw, cpu_ns: 0, comm: Arc::from("") };
    assert_eq!(exit(0).exit_status(), 0);
    assert_eq!(exit(1 << 8).exit_status(), 1);
    assert_eq!(exit(255 << 8).exit_status(), 255);
    assert_eq!(exit(9).exit_status(), 137, "SIGKILL");
    assert_eq!(exit(0x80 | 11).exit_status(), 139, "SIGSEGV with a core dump");
}

#[test]
fn process_keys_round_down_to_whole_proc_ticks() {
    let key = |ns| events::process_key(&ProcIdentity { tgid: 7, pid: 8, start_boottime_ns: ns }, 10_000_000);
    assert_eq!(key(5_123_456_789), pipeline::ProcessKey { pid: 7, start_time_ns: 5_120_000_000 });
    assert_eq!(key(9_999_999).start_time_ns, 0);
    assert_eq!(key(10_000_000).start_time_ns, 10_000_000);
    assert_eq!(events::tick_ns(), 1_000_000_000 / rustix::param::clock_ticks_per_second());
}

#[test]
fn records_map_to_events_with_the_given_id() {
    let Ok(record) = decode(&exec_bytes(b"curl\0-sS\0", 0)) else { panic!() };
    let Event::ProcessExec(exec) = events::to_event(record, 99, 10_000_000) else { panic!() };
    assert_eq!((exec.meta.ts_ns, exec.meta.event_id), (123_456_789, 99));
    assert_eq!(exec.process, pipeline::ProcessKey { pid: 42, start_time_ns: 5_120_000_000 });
    assert_eq!((exec.ppid, exec.uid, exec.gid, exec.cgroup_id), (1, 1000, 100, 77));
    assert_eq!(
        (&*exec.comm, &*exec.exe, exec.argv.joined(), exec.argv_truncated),
        ("curl", "/usr/bin/curl", "curl -sS".into(), false)
    );
    let exit =
        Record::Exit(ExitRecord { ts_ns: 5, proc: IDENTITY, exit_code_raw: 2 << 8, cpu_ns: 30, comm: Arc::from("x") });
    let Event::ProcessExit(exit) = events::to_event(exit, 1, 10_000_000) else { panic!() };
    assert_eq!((exit.exit_code, exit.cpu_ns, exit.process.pid), (2, 30, 42));
    let connect = ConnectRecord {
        ts_ns: 5,
        proc: IDENTITY,
        addr: Ipv4Addr::LOCALHOST.into(),
        port: 80,
        sock_type: 0,
        result: Some(-115),
    };
    let Event::NetConnect(net) = events::to_event(Record::Connect(connect), 1, 1) else { panic!() };
    assert_eq!((net.protocol, net.result), (pipeline::event::Protocol::Tcp, Some(-115)), "unknown type reads as TCP");
}

// ---- host facts -----------------------------------------------------------

#[test]
fn mountinfo_and_capabilities_parse() {
    let text = "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
                40 22 0:35 / /sys/kernel/tracing rw,relatime shared:5 - tracefs tracefs rw\n\
                41 22 0:36 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n\
                garbage line\n";
    let mounts = host::parse_mountinfo(text);
    assert_eq!(mounts.len(), 3);
    assert_eq!(host::mount_point(&mounts, "tracefs").as_deref(), Some("/sys/kernel/tracing"));
    assert_eq!(host::mount_point(&mounts, "cgroup2").as_deref(), Some("/mnt/with space"));
    assert_eq!(host::mount_point(&mounts, "bpf"), None);
    let root =
        host::Capabilities::from_mask(host::parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n").expect("hex"));
    assert!(root.cap_bpf && root.cap_perfmon && root.cap_sys_admin && root.can_trace());
    let none = host::Capabilities::from_mask(host::parse_cap_eff("CapEff:\t0000000000000000").expect("hex"));
    assert!(!none.can_trace());
    let bpf_only = host::Capabilities::from_mask(1 << 39);
    assert!(bpf_only.cap_bpf && !bpf_only.can_trace(), "CAP_BPF alone cannot attach tracepoints");
    assert_eq!(host::parse_cap_eff("Name: x"), None);
}

#[test]
fn capabilities_are_named_and_a_missing_one_is_said() {
    let set = |bits: &[u32]| host::Capabilities::from_mask(bits.iter().fold(0, |mask, bit| mask | 1u64 << bit));
    // The service's set: CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF.
    let service = set(&[2, 12, 19, 38, 39]);
    assert_eq!(service.names(), "CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF");
    assert!(service.can_trace() && service.dac_read_search() && service.sys_ptrace());
    assert_eq!(service.missing_note(), None);
    let without_bpf = set(&[2, 12, 19, 38]);
    assert_eq!(
        without_bpf.missing_note().as_deref(),
        Some(
            "CAP_BPF missing (effective capabilities: CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON)"
        )
    );
    assert_eq!(
        set(&[]).missing_note().as_deref(),
        Some("CAP_BPF and CAP_PERFMON missing (effective capabilities: none)")
    );
    assert_eq!(set(&[21]).missing_note(), None, "CAP_SYS_ADMIN implies both");
    assert_eq!(host::Capabilities::from_mask(0x1ff_ffff_ffff).names(), "all");
    // Root on this kind of VM: everything but CAP_SYS_RESOURCE.
    assert_eq!(host::Capabilities::from_mask(0x1ff_feff_ffff).names(), "all but CAP_SYS_RESOURCE");
    assert_eq!(set(&[39, 45]).names(), "CAP_BPF, cap_45");
}

#[test]
fn the_probe_report_prints_one_fact_per_line() {
    use super::probe::{Fact, ProbeReport, ProgramFact};
    let report = ProbeReport {
        kernel: Fact::Ok("6.18.0".into()),
        ebpf_object: Fact::Ok("44096 bytes embedded".into()),
        btf: Fact::Ok(String::new()),
        ring_buffer: Fact::Ok(String::new()),
        tracefs: Fact::Ok("was not mounted; hostflow mounted it at /sys/kernel/tracing".into()),
        tracepoints: Fact::Ok(String::new()),
        raw_tracepoints: Fact::Ok(String::new()),
        kprobes: Fact::Missing("no kprobe PMU".into()),
        bpf_lsm: Fact::Failed("EPERM".into()),
        cgroup_v2: Fact::Ok("mounted at /sys/fs/cgroup".into()),
        privileges: Fact::Ok("euid 0".into()),
        proc_access: Fact::Missing("exe: Permission denied".into()),
        programs: vec![ProgramFact { program: "exec".into(), fact: Fact::Ok("attached".into()) }],
        load: None,
        load_error: None,
    };
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[0], "kernel             ok (6.18.0)");
    assert_eq!(lines[2], "btf                ok");
    assert_eq!(lines[7], "kprobes            missing (no kprobe PMU)");
    assert_eq!(lines[8], "bpf lsm            failed: EPERM");
    assert_eq!(lines[11], "proc access        missing (exe: Permission denied)");
    assert_eq!(lines[12], "program exec       ok (attached)");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["kprobes"], serde_json::json!({"status": "missing", "detail": "no kprobe PMU"}));
    assert_eq!(json["programs"][0]["program"], "exec");
}

// ---- fallback ---------------------------------------------------------------

/// Runs the source with fallback forced, spawns a process and expects its
/// exec and exit from the `/proc` detector, plus the degraded state and
/// the diagnostic.
async fn check_fallback(source: EbpfSource, expected_reason: &str) {
    let mut diagnostics = pipeline::diag::subscribe();
    let Harness { cx, mut receiver, trigger, health } = harness(3 << 48);
    let task = tokio::spawn(Box::new(source).run(cx));
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let component = health.report().components["p"].clone();
        if component.state == ComponentState::Degraded {
            break component.reason.unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(reason.starts_with("eBPF unavailable, running the /proc exec/exit fallback: "), "{reason}");
    assert!(reason.contains(expected_reason), "{reason}");
    // The first scan only learns what runs; let it happen first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = Command::new("/bin/sleep").arg("0.6").spawn().expect("sleep");
    let pid = child.id();
    // Reaped as soon as it ends, so its pid leaves /proc.
    let reaper = std::thread::spawn(move || child.wait());
    let mut seen_exec = None;
    let mut seen_exit = None;
    let complete = wait_for_events(&mut receiver, Duration::from_secs(20), |event| {
        match event {
            // A scan between fork and exec sees the test binary first; the
            // exec then shows as a change of name.
            Event::ProcessExec(exec) if exec.process.pid == pid && &*exec.comm == "sleep" => {
                seen_exec = Some(exec.clone());
            }
            Event::ProcessExit(exit) if exit.process.pid == pid => seen_exit = Some(exit.clone()),
            _ => {}
        }
        seen_exec.is_some() && seen_exit.is_some()
    })
    .await;
    assert!(reaper.join().expect("reaper").expect("wait").success());
    assert!(complete, "exec {seen_exec:?} exit {seen_exit:?}");
    let exec = seen_exec.expect("exec");
    assert_eq!((&*exec.comm, &*exec.exe), ("sleep", "/usr/bin/sleep"));
    assert_eq!(exec.argv.iter().collect::<Vec<_>>(), ["/bin/sleep", "0.6"]);
    assert_eq!(exec.ppid, std::process::id());
    let exit = seen_exit.expect("exit");
    assert_eq!((exit.exit_code, exit.process), (fallback::EXIT_CODE_UNKNOWN, exec.process));
    let mut diagnosed = false;
    while let Some(received) = diagnostics.try_recv() {
        if let pipeline::diag::Received::Record(record) = received {
            diagnosed |= &*record.module == "p" && &*record.event_type == "ebpf_fallback";
        }
    }
    assert!(diagnosed, "an ebpf_fallback diagnostic");
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
}

/// Writes `/proc/PID/{stat,cmdline}` under a fake root.
fn fake_process(root: &std::path::Path, pid: u32, comm: &str, start_ticks: u64, cpu_ticks: u64) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).expect("dir");
    let stat = format!(
        "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 0 0 0 0 {cpu_ticks} 0 0 0 20 0 1 0 {start_ticks} 1000 100 0\n"
    );
    std::fs::write(dir.join("stat"), stat).expect("stat");
    std::fs::write(dir.join("cmdline"), format!("{comm}\0--x\0")).expect("cmdline");
}

#[test]
fn the_fallback_detector_diffs_scans() {
    let root = tempfile::tempdir().expect("tempdir");
    fake_process(root.path(), 100, "old", 50, 7);
    let mut detector = fallback::Detector::new(root.path().to_owned(), 5 << 48);
    assert!(detector.scan(1_000).expect("scan").is_empty(), "the first scan only learns");
    fake_process(root.path(), 101, "new", 60, 0);
    fake_process(root.path(), 100, "renamed", 50, 9);
    let tick = events::tick_ns();
    let events = detector.scan(2_000).expect("scan");
    let summary: Vec<(u32, String, u64, u64)> = events
        .iter()
        .map(|event| match event {
            Event::ProcessExec(exec) => (exec.process.pid, exec.argv.joined(), exec.meta.ts_ns, exec.meta.event_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![(100, "renamed --x".into(), 2_000, 5 << 48), (101, "new --x".into(), 2_000, (5 << 48) + 1)],
        "a new process and an exec in place (same key, new name)"
    );
    // PID 100 restarted (new start time) and 101 gone.
    std::fs::remove_dir_all(root.path().join("101")).expect("rm");
    fake_process(root.path(), 100, "renamed", 80, 0);
    let events = detector.scan(3_000).expect("scan");
    let Event::ProcessExec(restarted) = &events[0] else { panic!("{events:?}") };
    assert_eq!(restarted.process, pipeline::ProcessKey { pid: 100, start_time_ns: 80 * tick });
    let exits: Vec<(pipeline::ProcessKey, i32, u64)> = events[1..]
        .iter()
        .map(|event| match event {
            Event::ProcessExit(exit) => (exit.process, exit.exit_code, exit.cpu_ns),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        exits,
        vec![
            (pipeline::ProcessKey { pid: 100, start_time_ns: 50 * tick }, -1, 9 * tick),
            (pipeline::ProcessKey { pid: 101, start_time_ns: 60 * tick }, -1, 0),
        ]
    );
    assert_eq!(detector.next_sequence(), 5);
}

#[test]
fn an_exec_caught_before_its_arguments_are_set_is_reported_one_scan_later() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut detector = fallback::Detector::new(root.path().to_owned(), 0);
    assert!(detector.scan(1_000).expect("scan").is_empty());
    // Mid-execve: the name is new, the argument pages are not there yet.
    fake_process(root.path(), 200, "sleep", 70, 0);
    std::fs::write(root.path().join("200/cmdline"), "").expect("cmdline");
    assert!(detector.scan(2_000).expect("scan").is_empty(), "put off once");
    std::fs::write(root.path().join("200/cmdline"), "sleep\x000.6\x00").expect("cmdline");
    let events = detector.scan(3_000).expect("scan");
    let [Event::ProcessExec(exec)] = &events[..] else { panic!("{events:?}") };
    assert_eq!((exec.process.pid, exec.argv.joined()), (200, "sleep 0.6".to_owned()));
    // A process that never shows arguments is reported without them, once.
    fake_process(root.path(), 201, "kworkerish", 71, 0);
    std::fs::write(root.path().join("201/cmdline"), "").expect("cmdline");
    assert!(detector.scan(4_000).expect("scan").is_empty());
    let events = detector.scan(5_000).expect("scan");
    let [Event::ProcessExec(exec)] = &events[..] else { panic!("{events:?}") };
    assert!(exec.argv.is_empty() && exec.process.pid == 201, "{exec:?}");
    assert!(detector.scan(6_000).expect("scan").is_empty(), "and not again");
}

fn fallback_source() -> EbpfSource {
    let settings = LoadSettings {
        programs: vec![Program::Exec, Program::Exit],
        connect_hook: super::ConnectHook::Cgroup,
        cgroup_path: None,
        ring_buffer_bytes: 1 << 20,
        wakeup_threshold_bytes: 0,
        file_prefixes: Vec::new(),
        file_paths: Vec::new(),
        file_basenames: Vec::new(),
        agent_tgid: None,
        exec_env: Vec::new(),
    };
    EbpfSource::with_settings(settings, Duration::from_millis(50), Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_fallback_degrades_and_still_reports_execs_and_exits() {
    check_fallback(fallback_source().force_fallback("forced by the test"), "forced by the test").await;
}

/// Set in the environment of the unprivileged child run below.
const CHILD_ENV: &str = "HOSTFLOW_EBPF_UNPRIVILEGED_CHILD";

#[test]
fn without_privilege_the_source_falls_back_to_proc() {
    let test = "ebpf::without_privilege_the_source_falls_back_to_proc";
    if std::env::var_os(CHILD_ENV).is_some() {
        // We are the unprivileged child: load for real and expect refusal.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        // The reason names what is missing.
        let expected = "cannot load the eBPF object";
        let missing = "CAP_BPF and CAP_PERFMON missing (effective capabilities: none)";
        runtime.block_on(check_fallback(fallback_source(), &format!("{expected}: ")));
        let report = probe::report_for(None, None);
        assert_eq!(
            report.privileges,
            probe::Fact::Missing(format!(
                "{missing}; euid 65534; tracing programs need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
            ))
        );
        let error = loader::load(&LoadSettings::default()).expect_err("refused").to_string();
        assert!(error.starts_with(expected) && error.contains(missing), "{error}");
        return;
    }
    if !super::tests_kernel::kernel_or_skip(test) {
        return;
    }
    // Re-run this very test as nobody, without any capability.
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "ebpf::tests::without_privilege_the_source_falls_back_to_proc",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: cannot run setpriv: {error}");
            pipeline::testing::skip(test, &format!("cannot run setpriv to drop privileges: {error}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "unprivileged child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran the test:\n{stdout}");
}
