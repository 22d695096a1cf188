//! `generator`: synthetic events at a set rate, for benchmarks, load tests
//! and examples.
//!
//! The same `seed` gives the same events, field for field, on every run and
//! machine: the random stream is a fixed SplitMix64 (not a library RNG
//! whose algorithm may change), and timestamps are synthetic
//! (`sequence × 1/rate`), not read from the clock. Only the split into
//! batches depends on timing. Each event takes exactly two draws (its kind,
//! then one value its fields are cut from), so adding a field or a kind
//! never changes the fields of a stream that was generated before.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::event::{
    AgentDiag, Argv, BpfProgramLoad, Confidence, CredSyscall, CredentialChange, Credentials, Detection, DetectionLayer,
    EventMeta, ExeHash, FileChange, FileOp, FileOpen, HashState, ModuleLoad, ModuleSyscall, NamespaceChange,
    NamespaceSyscall, NetAccept, NetConnect, NetListen, NetPolicy, NetSend, PolicyAction, ProcessAggregateSample,
    ProcessEphemeralSummary, ProcessExec, ProcessExit, ProcessFork, ProcessSample, ProcessSnapshot, Protocol,
    PtraceAttach, ScanInfo, Severity, SketchEvent,
};
use pipeline::sketch::LogSketch;
use pipeline::{
    Batch, ComponentError, ComponentOptions, ConfigError, Event, EventKind, ProcessKey, Source, SourceContext,
};
use serde::Deserialize;
use toml::Spanned;

/// `[sources.NAME] type = "generator"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Events per second. Absent: as fast as the downstream edges accept
    /// (backpressure sets the pace).
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    /// Total events to produce, then stop. Absent: run until shutdown.
    #[serde(default)]
    pub count: Option<u64>,
    /// Seed of the event stream.
    #[serde(default)]
    pub seed: u64,
    /// Relative weight per event kind, e.g. `{ process_exec = 3, net_connect = 1 }`.
    /// Absent: the five kernel-style kinds (exec, exit, fork, connect, open), equally.
    #[serde(default)]
    pub mix: Option<Spanned<BTreeMap<Spanned<String>, u32>>>,
    /// Largest batch sent at once (1 to 65536).
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<NonZeroUsize>,
}

/// Batches beyond this stop amortising anything and only cost memory.
pub const MAX_BATCH_SIZE: usize = 65_536;

fn default_batch_size() -> Spanned<NonZeroUsize> {
    Spanned::new(0..0, NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN))
}

const DEFAULT_MIX: [EventKind; 5] = [
    EventKind::ProcessExec,
    EventKind::ProcessExit,
    EventKind::ProcessFork,
    EventKind::NetConnect,
    EventKind::FileOpen,
];

/// Builds a generator from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Source>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: GeneratorConfig, options| {
        Ok(Box::new(Generator::new(config, options)?) as Box<dyn Source>)
    })
}

/// A configured generator.
pub struct Generator {
    rate: Option<f64>,
    count: Option<u64>,
    batch_size: usize,
    stream: EventStream,
}

impl Generator {
    /// Checks the configuration and prepares the event stream.
    pub fn new(config: GeneratorConfig, options: &ComponentOptions) -> Result<Generator, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let rate = match &config.rate {
            Some(rate) if !(rate.get_ref().is_finite() && *rate.get_ref() > 0.0) => {
                errors.push(options.error_at(
                    rate.span(),
                    format!("rate must be a positive number of events per second, got {}", rate.get_ref()),
                ));
                None
            }
            Some(rate) => Some(*rate.get_ref()),
            None => None,
        };
        let mut weights = Vec::new();
        match &config.mix {
            None => weights.extend(DEFAULT_MIX.map(|kind| (kind, 1))),
            Some(mix) => {
                for (name, weight) in mix.get_ref() {
                    match EventKind::from_name(name.get_ref()) {
                        Some(kind) if *weight > 0 => weights.push((kind, *weight)),
                        Some(_) => {}
                        None => {
                            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                            let mut error = options.error_at(
                                name.span(),
                                format!(
                                    "unknown event kind `{}` in mix; known kinds: {}",
                                    name.get_ref(),
                                    known.join(", ")
                                ),
                            );
                            if let Some(near) = pipeline::config::closest(name.get_ref(), known.iter().copied()) {
                                error = error.with_hint(format!("did you mean `{near}`?"));
                            }
                            errors.push(error);
                        }
                    }
                }
                if weights.is_empty() && errors.is_empty() {
                    errors.push(
                        options.error_at(mix.span(), "mix gives no kind a weight above 0; nothing would be generated"),
                    );
                }
            }
        }
        if config.batch_size.get_ref().get() > MAX_BATCH_SIZE {
            errors.push(options.error_at(
                config.batch_size.span(),
                format!(
                    "batch_size {} is larger than the maximum of {MAX_BATCH_SIZE} events per batch",
                    config.batch_size.get_ref()
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Generator {
            rate,
            count: config.count,
            batch_size: config.batch_size.get_ref().get(),
            stream: EventStream::new(config.seed, weights, rate),
        })
    }

    fn next_batch(&mut self, n: usize, event_id_prefix: u64) -> Batch {
        (0..n).map(|_| self.stream.next_event(event_id_prefix)).collect()
    }
}

#[async_trait]
impl Source for Generator {
    async fn run(mut self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        let started = tokio::time::Instant::now();
        let mut produced: u64 = 0;
        let mut shutdown = cx.shutdown.clone();
        loop {
            if cx.shutdown.is_triggered() {
                break;
            }
            let remaining = self.count.map_or(u64::MAX, |count| count - produced.min(count));
            if remaining == 0 {
                break;
            }
            // How many events are due now (all of them without a rate).
            let due = match self.rate {
                None => u64::MAX,
                Some(rate) => {
                    let owed = (started.elapsed().as_secs_f64() * rate) as u64;
                    if owed <= produced {
                        // Sleep until the next event is due, at most 100 ms so
                        // shutdown stays prompt even at very low rates.
                        let next_at = (produced + 1) as f64 / rate;
                        let wait = Duration::from_secs_f64((next_at - started.elapsed().as_secs_f64()).clamp(0.0, 0.1));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.wait() => {}
                        }
                        continue;
                    }
                    owed - produced
                }
            };
            let n = due.min(remaining).min(self.batch_size as u64) as usize;
            let batch = self.next_batch(n, cx.event_id_prefix);
            produced += n as u64;
            // Never abandoned half-way, even at shutdown: downstream keeps
            // draining until this source is gone, so a blocked send completes.
            cx.out.send(batch).await;
            // Yield so a single-threaded runtime can run the consumers.
            tokio::task::yield_now().await;
        }
        tracing::debug!(source = %cx.name, produced, "generator finished");
        Ok(())
    }
}

/// The deterministic event stream behind a generator. Public so benches
/// can measure the cost of making events without the engine around them.
pub struct EventStream {
    rng: SplitMix64,
    /// Cumulative weights, for choosing a kind with one random draw.
    cumulative: Vec<(u64, EventKind)>,
    total_weight: u64,
    sequence: u64,
    ts_step_ns: u64,
    pools: Pools,
}

/// Strings are drawn from fixed pools and shared (`Arc<str>`), so a
/// generated event costs no string allocation.
struct Pools {
    comms: Vec<Arc<str>>,
    exes: Vec<Arc<str>>,
    cmdlines: Vec<Arc<str>>,
    argvs: Vec<Argv>,
    paths: Vec<Arc<str>>,
    sketch_metric: Arc<str>,
    diag_module: Arc<str>,
    diag_type: Arc<str>,
    diag_reason: Arc<str>,
    empty: Arc<str>,
    modules: Vec<Arc<str>>,
    module_params: Vec<Arc<str>>,
    bpf_names: Vec<Arc<str>>,
    rules: Vec<GeneratedRule>,
    ruleset: Arc<str>,
    /// Network-policy rules: id and key (FNV-1a 32 of the id); the empty
    /// id stands for a key the agent could not name.
    policy_rules: Vec<(Arc<str>, u32)>,
    policy_digest: Arc<str>,
}

/// What a generated detection takes from its rule ([`RULES`]).
struct GeneratedRule {
    id: Arc<str>,
    title: Arc<str>,
    layer: DetectionLayer,
    severity: Severity,
    confidence: Confidence,
    attack: Vec<Arc<str>>,
    event_kind: Arc<str>,
    summary: Arc<str>,
}

/// Rules a generated detection names: id, title, layer, severity,
/// confidence, ATT&CK ids and the kind of the triggering event.
type RuleRow =
    (&'static str, &'static str, DetectionLayer, Severity, Confidence, &'static [&'static str], &'static str);
const RULES: [RuleRow; 4] = [
    (
        "hf-linux-reverse-shell",
        "Shell with a socket on stdin",
        DetectionLayer::L2,
        Severity::High,
        Confidence::VeryHigh,
        &["T1059.004"],
        "process_exec",
    ),
    (
        "hf-linux-ioc-hash",
        "Known-bad executable",
        DetectionLayer::L1,
        Severity::Critical,
        Confidence::Definite,
        &["T1204.002"],
        "exe_hash",
    ),
    (
        "hf-linux-rare-parent",
        "Rare parent for this program",
        DetectionLayer::L3,
        Severity::Low,
        Confidence::Medium,
        &[],
        "process_exec",
    ),
    (
        "hf-linux-download-chmod-exec",
        "Downloaded, made executable, run",
        DetectionLayer::L4,
        Severity::Medium,
        Confidence::High,
        &["T1105", "T1222.002"],
        "file_change",
    ),
];

/// Network-policy rule ids a generated `net_policy` event names.
const POLICY_RULES: [&str; 4] = ["deny-metadata", "audit-dns-egress", "deny-smtp", ""];

/// FNV-1a 32, the kernel's rule key of an id (`policy::rule_key`).
fn fnv1a32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash: u32, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

const PROGRAMS: [&str; 8] = ["bash", "python3", "curl", "nginx", "sshd", "postgres", "cron", "node"];
const PATHS: [&str; 8] = [
    "/etc/passwd",
    "/etc/hosts",
    "/var/log/syslog",
    "/tmp/build.log",
    "/home/user/.bashrc",
    "/usr/lib/libc.so.6",
    "/proc/self/status",
    "/etc/ssl/certs/ca.pem",
];
const PID_SPACE: u64 = 4096;
const MODULES: [&str; 4] = [
    "/lib/modules/6.1.0/kernel/drivers/net/dummy.ko",
    "/lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko",
    "/tmp/.x/rootkit.ko",
    "/lib/modules/6.1.0/extra/vboxdrv.ko",
];
const MODULE_PARAMS: [&str; 3] = ["", "debug=1", "numdummies=2"];
const BPF_NAMES: [&str; 4] = ["sd_fw_ingress", "trace_exec", "xdp_drop", ""];
/// `CLONE_NEWNS`, `CLONE_NEWUTS`, `CLONE_NEWPID`, `CLONE_NEWNET`, `CLONE_NEWUSER`, 0 (setns: any).
const NAMESPACE_FLAGS: [u64; 6] = [0x0002_0000, 0x0400_0000, 0x2000_0000, 0x4000_0000, 0x1000_0000, 0];

impl EventStream {
    /// A stream from a seed, kind weights and the rate that spaces timestamps.
    pub fn new(seed: u64, weights: Vec<(EventKind, u32)>, rate: Option<f64>) -> EventStream {
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut total_weight = 0u64;
        for (kind, weight) in weights {
            total_weight += u64::from(weight);
            cumulative.push((total_weight, kind));
        }
        let ts_step_ns = rate.map_or(1_000, |rate| (1e9 / rate).max(1.0) as u64);
        let pools = Pools {
            comms: PROGRAMS.iter().map(|p| Arc::from(*p)).collect(),
            exes: PROGRAMS.iter().map(|p| Arc::from(format!("/usr/bin/{p}"))).collect(),
            cmdlines: PROGRAMS.iter().map(|p| Arc::from(format!("{p} --flag value"))).collect(),
            argvs: PROGRAMS.iter().map(|p| Argv::from_args([*p, "--flag", "value"])).collect(),
            paths: PATHS.iter().map(|p| Arc::from(*p)).collect(),
            sketch_metric: Arc::from("process.cpu_percent"),
            diag_module: Arc::from("generator"),
            diag_type: Arc::from("synthetic"),
            diag_reason: Arc::from("generated for testing"),
            empty: Arc::from(""),
            modules: MODULES.iter().map(|p| Arc::from(*p)).collect(),
            module_params: MODULE_PARAMS.iter().map(|p| Arc::from(*p)).collect(),
            bpf_names: BPF_NAMES.iter().map(|p| Arc::from(*p)).collect(),
            rules: RULES
                .iter()
                .map(|&(id, title, layer, severity, confidence, attack, event_kind)| GeneratedRule {
                    id: Arc::from(id),
                    title: Arc::from(title),
                    layer,
                    severity,
                    confidence,
                    attack: attack.iter().map(|t| Arc::from(*t)).collect(),
                    event_kind: Arc::from(event_kind),
                    summary: Arc::from(format!("{title} (generated)")),
                })
                .collect(),
            ruleset: Arc::from("5eed5eed5eed5eed"),
            policy_rules: POLICY_RULES
                .iter()
                .map(|&id| (Arc::from(id), if id.is_empty() { 0xdead_beef } else { fnv1a32(id) }))
                .collect(),
            policy_digest: Arc::from("5eed".repeat(16)),
        };
        EventStream { rng: SplitMix64(seed), cumulative, total_weight, sequence: 0, ts_step_ns, pools }
    }

    /// The next event; ids carry `event_id_prefix` in their high bits.
    pub fn next_event(&mut self, event_id_prefix: u64) -> Event {
        let sequence = self.sequence;
        self.sequence += 1;
        let meta =
            EventMeta { ts_ns: sequence * self.ts_step_ns, event_id: event_id_prefix | (sequence & ((1 << 48) - 1)) };
        let draw = self.rng.next() % self.total_weight.max(1);
        let kind =
            self.cumulative.iter().find(|(upto, _)| draw < *upto).map_or(EventKind::ProcessExec, |(_, kind)| *kind);
        let r = self.rng.next();
        let pid = 100 + (r % PID_SPACE) as u32;
        let process = ProcessKey { pid, start_time_ns: u64::from(pid) * 1_000_000 };
        let program = ((r >> 16) % PROGRAMS.len() as u64) as usize;
        let pools = &self.pools;
        match kind {
            EventKind::ProcessExec => {
                let uid = if (r >> 32).is_multiple_of(4) { 0 } else { 1000 };
                Event::ProcessExec(ProcessExec {
                    context: None,
                    meta,
                    process,
                    ppid: 1 + ((r >> 24) % 100) as u32,
                    uid,
                    gid: uid,
                    cgroup_id: 4_000 + (r >> 44) % 16,
                    comm: Arc::clone(&pools.comms[program]),
                    exe: Arc::clone(&pools.exes[program]),
                    argv: pools.argvs[program].clone(),
                    argv_truncated: false,
                    attributes: None,
                })
            }
            EventKind::ProcessExit => Event::ProcessExit(ProcessExit {
                context: None,
                meta,
                process,
                exit_code: ((r >> 24) % 3) as i32,
                cpu_ns: ((r >> 32) % 200_000) * 10_000,
            }),
            EventKind::ProcessFork => {
                let child_pid = 100 + ((r >> 24) % PID_SPACE) as u32;
                Event::ProcessFork(ProcessFork {
                    context: None,
                    meta,
                    parent: process,
                    child: ProcessKey { pid: child_pid, start_time_ns: meta.ts_ns },
                })
            }
            EventKind::NetConnect => Event::NetConnect(NetConnect {
                context: None,
                meta,
                process,
                protocol: if (r >> 40).is_multiple_of(5) { Protocol::Udp } else { Protocol::Tcp },
                dst_addr: IpAddr::from([10, ((r >> 24) & 0xff) as u8, ((r >> 32) & 0xff) as u8, 1]),
                dst_port: [22, 53, 80, 443, 5432, 8080, 9092, 31337][((r >> 48) % 8) as usize],
                // Mostly success; refused, in progress (non-blocking) or
                // not observed now and then.
                result: [Some(0), Some(0), Some(0), Some(0), Some(0), Some(-111), Some(-115), None]
                    [((r >> 56) % 8) as usize],
            }),
            EventKind::FileOpen => Event::FileOpen(FileOpen {
                context: None,
                meta,
                process,
                path: Arc::clone(&pools.paths[((r >> 24) % PATHS.len() as u64) as usize]),
                flags: ((r >> 32) % 4) as u32,
            }),
            EventKind::ProcessSample => {
                let cpu_ticks = (r >> 24) % 200;
                Event::ProcessSample(ProcessSample {
                    meta,
                    process,
                    scan: ScanInfo::default(),
                    ppid: 1,
                    uid: 1000,
                    name: Arc::clone(&pools.comms[program]),
                    cmdline: Arc::clone(&pools.cmdlines[program]),
                    state: b'S',
                    threads: 1 + ((r >> 56) % 32) as u32,
                    cpu_ticks,
                    cpu_percent: cpu_ticks as f64,
                    rss_bytes: ((r >> 32) % 1_000_000) * 4096,
                    top_n_rank: 0,
                })
            }
            EventKind::ProcessAggregate => Event::ProcessAggregate(ProcessAggregateSample {
                meta,
                scan: ScanInfo::default(),
                name: Arc::clone(&pools.comms[program]),
                count: 1 + ((r >> 24) % 50) as u32,
                cpu_ticks_sum: (r >> 32) % 1000,
                cpu_percent_sum: ((r >> 32) % 1000) as f64,
                rss_bytes_sum: ((r >> 40) % 1_000_000) * 4096,
                rss_bytes_max: ((r >> 40) % 1_000_000) * 4096,
            }),
            EventKind::Sketch => {
                // A small real sketch: three cpu% values of one program.
                let mut sketch = LogSketch::default();
                for shift in [24, 32, 40] {
                    sketch.add(((r >> shift) % 10_000) as f64 / 100.0);
                }
                Event::Sketch(SketchEvent {
                    meta,
                    metric_name: Arc::clone(&pools.sketch_metric),
                    key: Arc::clone(&pools.comms[program]),
                    window_start_ns: meta.ts_ns.saturating_sub(60_000_000_000),
                    window_end_ns: meta.ts_ns,
                    sketch,
                })
            }
            EventKind::ProcessEphemeral => {
                let count = 1 + (r >> 24) % 100;
                Event::ProcessEphemeral(ProcessEphemeralSummary {
                    meta,
                    window_start_ns: meta.ts_ns.saturating_sub(10_000_000_000),
                    window_end_ns: meta.ts_ns,
                    name: Arc::clone(&pools.comms[program]),
                    count,
                    cpu_ns: count * ((r >> 32) % 5_000_000),
                })
            }
            EventKind::AgentDiag => Event::AgentDiag(AgentDiag {
                meta,
                module: Arc::clone(&pools.diag_module),
                event_type: Arc::clone(&pools.diag_type),
                reason: Arc::clone(&pools.diag_reason),
            }),
            // The security kinds and detections: plausible values cut from
            // the same draw (never in the default mix, so older streams are
            // unchanged).
            EventKind::FileChange => {
                let op = FileOp::ALL[((r >> 24) % FileOp::ALL.len() as u64) as usize];
                let path = |shift: u32| Arc::clone(&pools.paths[((r >> shift) % PATHS.len() as u64) as usize]);
                Event::FileChange(FileChange {
                    context: None,
                    meta,
                    process,
                    op,
                    path: path(28),
                    target: match op {
                        FileOp::Rename | FileOp::Link | FileOp::Symlink => path(32),
                        FileOp::Chmod | FileOp::Unlink => Arc::clone(&pools.empty),
                    },
                    mode: match op {
                        FileOp::Chmod => [0o644, 0o600, 0o755, 0o4755][((r >> 36) % 4) as usize],
                        _ => 0,
                    },
                    result: [0, 0, 0, -1, -2, -13][((r >> 40) % 6) as usize],
                })
            }
            EventKind::CredentialChange => {
                let syscall = CredSyscall::ALL[((r >> 24) % CredSyscall::ALL.len() as u64) as usize];
                let user = |id: u32, caps: u64| Credentials {
                    uid: id,
                    euid: id,
                    suid: id,
                    gid: id,
                    egid: id,
                    sgid: id,
                    cap_effective: caps,
                    cap_permitted: caps,
                };
                // Mostly a privilege drop (root → a user), now and then an
                // escalation.
                let (old, new) = match (r >> 32) % 4 {
                    0 => (user(1000, 0), user(0, 0x1ff_ffff_ffff)),
                    _ => (user(0, 0x1ff_ffff_ffff), user(1000 + ((r >> 40) % 8) as u32, 0)),
                };
                Event::CredentialChange(CredentialChange {
                    context: None,
                    meta,
                    process,
                    syscall,
                    old,
                    new,
                    result: [0, 0, 0, -1][((r >> 48) % 4) as usize],
                })
            }
            EventKind::NamespaceChange => Event::NamespaceChange(NamespaceChange {
                context: None,
                meta,
                process,
                syscall: NamespaceSyscall::ALL[((r >> 24) % NamespaceSyscall::ALL.len() as u64) as usize],
                flags: NAMESPACE_FLAGS[((r >> 28) % NAMESPACE_FLAGS.len() as u64) as usize],
                result: [0, 0, -1][((r >> 36) % 3) as usize],
            }),
            EventKind::PtraceAttach => {
                let target = 100 + ((r >> 24) % PID_SPACE) as u32;
                Event::PtraceAttach(PtraceAttach {
                    context: None,
                    meta,
                    process,
                    // PTRACE_ATTACH, PTRACE_SEIZE.
                    request: [16, 0x4206][((r >> 40) % 2) as usize],
                    target: ProcessKey { pid: target, start_time_ns: u64::from(target) * 1_000_000 },
                    result: [0, 0, -1][((r >> 44) % 3) as usize],
                })
            }
            EventKind::ModuleLoad => {
                let syscall = ModuleSyscall::ALL[((r >> 24) % ModuleSyscall::ALL.len() as u64) as usize];
                Event::ModuleLoad(ModuleLoad {
                    context: None,
                    meta,
                    process,
                    syscall,
                    path: match syscall {
                        ModuleSyscall::FinitModule => Arc::clone(&pools.modules[((r >> 28) % 4) as usize]),
                        ModuleSyscall::InitModule => Arc::clone(&pools.empty),
                    },
                    params: Arc::clone(&pools.module_params[((r >> 32) % 3) as usize]),
                    result: [0, 0, -17, -1][((r >> 36) % 4) as usize],
                })
            }
            EventKind::BpfProgramLoad => Event::BpfProgramLoad(BpfProgramLoad {
                context: None,
                meta,
                process,
                prog_type: [1, 2, 5, 6, 8, 26][((r >> 24) % 6) as usize],
                prog_name: Arc::clone(&pools.bpf_names[((r >> 28) % 4) as usize]),
                insn_count: 8 + ((r >> 32) % 4000) as u32,
                result: [3, 4, 5, -1, -13][((r >> 44) % 5) as usize],
            }),
            EventKind::NetListen => Event::NetListen(NetListen {
                context: None,
                meta,
                process,
                protocol: Protocol::Tcp,
                addr: match (r >> 24) % 3 {
                    0 => IpAddr::from([0, 0, 0, 0]),
                    1 => IpAddr::from([127, 0, 0, 1]),
                    _ => IpAddr::from([0u16; 8]),
                },
                port: [22, 80, 443, 4444, 5432, 8080][((r >> 28) % 6) as usize],
                backlog: [128, 511, 4096][((r >> 32) % 3) as usize],
                result: [0, 0, 0, -98][((r >> 36) % 4) as usize],
            }),
            EventKind::NetAccept => Event::NetAccept(NetAccept {
                context: None,
                meta,
                process,
                protocol: Protocol::Tcp,
                local_addr: IpAddr::from([10, 0, 0, 5]),
                local_port: [22, 80, 443][((r >> 24) % 3) as usize],
                peer_addr: IpAddr::from([10, ((r >> 28) & 0xff) as u8, ((r >> 36) & 0xff) as u8, 7]),
                peer_port: 32_768 + ((r >> 44) % 28_000) as u16,
            }),
            EventKind::NetSend => Event::NetSend(NetSend {
                context: None,
                meta,
                process,
                protocol: Protocol::Udp,
                dst_addr: [
                    IpAddr::from([10, 0, 0, 53]),
                    IpAddr::from([8, 8, 8, 8]),
                    IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 53]),
                ][((r >> 24) % 3) as usize],
                dst_port: [53, 123, 514][((r >> 28) % 3) as usize],
                bytes: 28 + ((r >> 32) % 1400) as u32,
            }),
            EventKind::ProcessSnapshot => {
                let uid = if (r >> 32).is_multiple_of(4) { 0 } else { 1000 };
                Event::ProcessSnapshot(ProcessSnapshot {
                    context: None,
                    meta,
                    process,
                    parent: ProcessKey { pid: 1, start_time_ns: 0 },
                    uid,
                    euid: uid,
                    gid: uid,
                    user: Arc::clone(&pools.empty),
                    comm: Arc::clone(&pools.comms[program]),
                    exe: Arc::clone(&pools.exes[program]),
                    argv: pools.argvs[program].clone(),
                    argv_truncated: false,
                    cwd: Arc::clone(&pools.paths[0]),
                    tty: Arc::clone(&pools.empty),
                    loginuid: u32::MAX,
                    session_id: u32::MAX,
                    cgroup_path: Arc::clone(&pools.empty),
                    exe_sha256: Arc::clone(&pools.empty),
                    exe_hash: HashState::NotRequested,
                })
            }
            EventKind::ExeHash => Event::ExeHash(ExeHash {
                context: None,
                meta,
                process,
                exe: Arc::clone(&pools.exes[program]),
                dev: 2049,
                inode: 1_000 + program as u64,
                sha256: Arc::clone(&pools.empty),
                state: HashState::Unavailable,
            }),
            EventKind::Detection => {
                // Resting on one to three of the events just before it
                // (fewer at the start of the stream: none before the first).
                let rule = &pools.rules[((r >> 24) % RULES.len() as u64) as usize];
                let rests_on = (1 + (r >> 28) % 3).min(sequence);
                let id = |back: u64| event_id_prefix | (sequence.saturating_sub(back) & ((1 << 48) - 1));
                Event::Detection(Detection {
                    context: None,
                    meta,
                    process,
                    rule_id: Arc::clone(&rule.id),
                    title: Arc::clone(&rule.title),
                    layer: rule.layer,
                    severity: rule.severity,
                    confidence: rule.confidence,
                    attack: rule.attack.clone(),
                    event_ids: (1..=rests_on).rev().map(id).collect(),
                    event_kind: Arc::clone(&rule.event_kind),
                    summary: Arc::clone(&rule.summary),
                    ruleset: Arc::clone(&pools.ruleset),
                })
            }
            EventKind::NetPolicy => {
                let (rule_id, rule_key) = &pools.policy_rules[((r >> 24) % POLICY_RULES.len() as u64) as usize];
                let action = [PolicyAction::Deny, PolicyAction::Deny, PolicyAction::Audit][((r >> 28) % 3) as usize];
                Event::NetPolicy(NetPolicy {
                    context: None,
                    meta,
                    process,
                    rule_id: Arc::clone(rule_id),
                    rule_key: *rule_key,
                    action,
                    dry_run: action == PolicyAction::Deny && (r >> 32).is_multiple_of(4),
                    protocol: if (r >> 36).is_multiple_of(5) { Protocol::Udp } else { Protocol::Tcp },
                    dst_addr: [
                        IpAddr::from([169, 254, 169, 254]),
                        IpAddr::from([127, 0, 0, 2]),
                        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 25]),
                    ][((r >> 40) % 3) as usize],
                    dst_port: [25, 53, 80, 8080][((r >> 44) % 4) as usize],
                    cgroup_id: 4_000 + (r >> 48) % 16,
                    generation: 1,
                    policy_digest: Arc::clone(&pools.policy_digest),
                })
            }
        }
    }
}

/// SplitMix64: tiny, fast, and fixed forever, which is the point.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "generator_tests.rs"]
mod tests;
