//! What this host supports for eBPF and what hostflow would load: the facts
//! behind `hostflow probe` and the eBPF part of `/health`.
//!
//! Each fact is `ok` (with a detail), `missing` (the host lacks it) or
//! `failed` (checking it went wrong), with the reason; the report prints
//! one fact per line and serialises to JSON. Probing mounts tracefs and
//! securityfs when they are absent (and says so): it is what the source
//! itself would do, and without them the answers would be guesses.
//! Blocking: run it on a plain thread or the blocking pool.

use std::fmt;

use aya::maps::MapType;
use aya::programs::ProgramType;
use serde::Serialize;

use super::host::{self, MountState};
use super::loader::{self, LoadReport, LoadSettings, ProgramState};
use super::stamp;

/// One fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Fact {
    Ok(String),
    Missing(String),
    Failed(String),
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, detail) = match self {
            Fact::Ok(detail) => ("ok", detail),
            Fact::Missing(detail) => ("missing", detail),
            Fact::Failed(detail) => ("failed", detail),
        };
        if detail.is_empty() {
            f.write_str(word)
        } else if word == "failed" {
            write!(f, "failed: {detail}")
        } else {
            write!(f, "{word} ({detail})")
        }
    }
}

/// One program's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramFact {
    pub program: String,
    pub fact: Fact,
}

/// Everything `hostflow probe` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub kernel: Fact,
    /// Whether this binary carries the eBPF programs.
    pub ebpf_object: Fact,
    pub btf: Fact,
    pub ring_buffer: Fact,
    pub tracefs: Fact,
    pub tracepoints: Fact,
    pub raw_tracepoints: Fact,
    pub kprobes: Fact,
    pub bpf_lsm: Fact,
    pub cgroup_v2: Fact,
    /// The effective capabilities, and what tracing lacks of them.
    pub privileges: Fact,
    /// Whether other users' `/proc/PID/{stat,cmdline,exe}` can be read
    /// (what the `procfs` source needs), tried on PID 1.
    pub proc_access: Fact,
    /// Per program: attached, or why not (empty when nothing was loaded).
    pub programs: Vec<ProgramFact>,
    /// The load attempt in full (absent when the object is missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    /// Why loading failed as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts: [(&str, &Fact); 12] = [
            ("kernel", &self.kernel),
            ("ebpf object", &self.ebpf_object),
            ("btf", &self.btf),
            ("ring buffer", &self.ring_buffer),
            ("tracefs", &self.tracefs),
            ("tracepoints", &self.tracepoints),
            ("raw tracepoints", &self.raw_tracepoints),
            ("kprobes", &self.kprobes),
            ("bpf lsm", &self.bpf_lsm),
            ("cgroup v2", &self.cgroup_v2),
            ("privileges", &self.privileges),
            ("proc access", &self.proc_access),
        ];
        for (name, fact) in facts {
            writeln!(f, "{name:<18} {fact}")?;
        }
        if let Some(fact) = self.load.as_ref().and_then(|load| load.enforcement.as_ref()) {
            writeln!(f, "{:<18} {fact}", "enforcement")?;
        }
        if let Some(error) = &self.load_error {
            writeln!(f, "{:<18} failed: {error}", "load")?;
        }
        for ProgramFact { program, fact } in &self.programs {
            writeln!(f, "{:<18} {fact}", format!("program {program}"))?;
        }
        Ok(())
    }
}

/// Probes the host, then loads and attaches `settings.programs` to report
/// each one (and detaches them again when the report is done).
pub fn probe(settings: &LoadSettings) -> ProbeReport {
    let tracefs_state = host::ensure_tracefs();
    let (load, load_error) = match loader::load(settings) {
        Ok(mut loaded) => {
            loaded.detach_all();
            let mut report = loaded.report.clone();
            report.enforcement = Some(enforcement_fact(None));
            (Some(report), None)
        }
        Err(error) => (None, Some(error.to_string())),
    };
    report(&tracefs_state, load, load_error)
}

/// The report for a load the caller already attempted (the source does this
/// at start, so `/health` shows the same facts as `hostflow probe` without
/// loading the programs twice). Blocking, like [`probe`].
pub fn report_for(load: Option<LoadReport>, load_error: Option<String>) -> ProbeReport {
    report(&host::ensure_tracefs(), load, load_error)
}

fn report(tracefs_state: &MountState, load: Option<LoadReport>, load_error: Option<String>) -> ProbeReport {
    let mounts = host::mounts();
    let programs = match &load {
        Some(report) => report
            .programs
            .iter()
            .map(|p| {
                let fact = match &p.state {
                    ProgramState::Attached => Fact::Ok("attached".into()),
                    ProgramState::Partial(reason) => Fact::Ok(format!("attached, partial: {reason}")),
                    ProgramState::Failed(reason) => Fact::Failed(reason.clone()),
                    ProgramState::Unsupported(reason) => Fact::Missing(reason.clone()),
                };
                ProgramFact { program: p.program.to_string(), fact }
            })
            .collect(),
        None => Vec::new(),
    };
    ProbeReport {
        kernel: kernel_fact(),
        ebpf_object: match loader::embedded_object() {
            Ok(bytes) => Fact::Ok(format!(
                "{} bytes embedded, sha256 {}: {}",
                bytes.len(),
                stamp::hex(&stamp::sha256(bytes)),
                loader::embedded_origin()
            )),
            Err(reason) => Fact::Missing(format!("built without eBPF: {reason}")),
        },
        btf: match std::fs::metadata("/sys/kernel/btf/vmlinux") {
            Ok(meta) => Fact::Ok(format!("/sys/kernel/btf/vmlinux, {} bytes", meta.len())),
            Err(error) => Fact::Missing(format!("/sys/kernel/btf/vmlinux: {error} (CO-RE needs kernel BTF)")),
        },
        ring_buffer: match aya::sys::is_map_supported(MapType::RingBuf) {
            Ok(true) => Fact::Ok("a ring buffer map can be created".into()),
            Ok(false) => Fact::Missing("the kernel refuses ring buffer maps (needs 5.8+)".into()),
            Err(error) => Fact::Failed(loader::chain(&error)),
        },
        tracefs: mount_fact(tracefs_state),
        tracepoints: tracepoints_fact(tracefs_state),
        raw_tracepoints: program_type_fact(ProgramType::RawTracePoint, "raw tracepoint"),
        kprobes: kprobes_fact(tracefs_state),
        bpf_lsm: lsm_fact(),
        cgroup_v2: match host::mount_point(&mounts, "cgroup2") {
            Some(path) => Fact::Ok(format!("mounted at {path}")),
            None => Fact::Missing("no cgroup2 mount".into()),
        },
        privileges: privileges_fact(),
        proc_access: proc_access_fact(),
        programs,
        load,
        load_error,
    }
}

/// Whether enforcement can run here: cgroup v2, cgroup `connect4`/`connect6`
/// programs, LPM tries and arrays of maps; and the cgroup a configuration
/// enforces (`cgroup`, relative to the cgroup2 mount), resolved.
pub fn enforcement_fact(cgroup: Option<&str>) -> Fact {
    let mount = match enforce::resolve::cgroup2_mount() {
        Ok(mount) => mount,
        Err(error) => return Fact::Missing(error.to_string()),
    };
    let supported = [
        (
            aya::sys::is_program_supported(ProgramType::CgroupSockAddr).map_err(|e| loader::chain(&e)),
            "cgroup connect programs",
        ),
        (aya::sys::is_map_supported(MapType::LpmTrie).map_err(|e| loader::chain(&e)), "LPM tries"),
        (aya::sys::is_map_supported(MapType::ArrayOfMaps).map_err(|e| loader::chain(&e)), "arrays of maps"),
    ];
    let mut missing = Vec::new();
    for (result, what) in supported {
        match result {
            Ok(true) => {}
            Ok(false) => missing.push(what),
            Err(error) => return Fact::Failed(format!("probing {what}: {error}")),
        }
    }
    if !missing.is_empty() {
        return Fact::Missing(format!("the kernel refuses {}", missing.join(", ")));
    }
    let hooks = format!("cgroup connect hooks, LPM tries and map-of-maps load; cgroup2 at {}", mount.display());
    match cgroup {
        None => Fact::Ok(format!("{hooks}; no cgroup enforced (`enforce` is not configured)")),
        Some(path) => match enforce::resolve::cgroup(&mount, path) {
            Ok(target) => Fact::Ok(format!(
                "{hooks}; enforcing cgroup {} (id {}, level {})",
                target.path, target.id, target.level
            )),
            Err(error) => Fact::Failed(format!("{hooks}; but {error}")),
        },
    }
}

fn kernel_fact() -> Fact {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => Fact::Ok(release.trim().to_owned()),
        Err(error) => Fact::Failed(format!("/proc/sys/kernel/osrelease: {error}")),
    }
}

fn mount_fact(state: &MountState) -> Fact {
    match state {
        MountState::Present { path } => Fact::Ok(format!("mounted at {path}")),
        MountState::MountedByUs { path } => Fact::Ok(format!("was not mounted; hostflow mounted it at {path}")),
        MountState::Unavailable { reason } => Fact::Missing(reason.clone()),
    }
}

/// The tracepoints the programs use, present or not.
const TRACEPOINTS: [&str; 7] = [
    "sched/sched_process_exec",
    "sched/sched_process_exit",
    "sched/sched_process_fork",
    "syscalls/sys_enter_connect",
    "syscalls/sys_exit_connect",
    "syscalls/sys_enter_openat",
    "syscalls/sys_enter_openat2",
];

fn tracepoints_fact(tracefs: &MountState) -> Fact {
    let Some(root) = tracefs.path() else { return Fact::Missing("tracefs is not available".into()) };
    let events = std::path::Path::new(root).join("events");
    let (mut missing, mut unreadable) = (Vec::new(), None);
    for tracepoint in TRACEPOINTS {
        match std::fs::metadata(events.join(tracepoint)) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => missing.push(tracepoint),
            Err(error) => unreadable = Some(error),
        }
    }
    if let Some(error) = unreadable {
        // tracefs is 0700 root: a non-root process cannot even look.
        let note = host::capabilities().map_or_else(|| "unknown".to_owned(), |caps| caps.names());
        return Fact::Failed(format!(
            "cannot read {}: {error}; tracefs is root-only, a non-root agent needs CAP_DAC_READ_SEARCH \
             (effective capabilities: {note})",
            events.display()
        ));
    }
    if missing.is_empty() {
        Fact::Ok(format!("all {} present", TRACEPOINTS.len()))
    } else {
        Fact::Missing(format!("absent: {}", missing.join(", ")))
    }
}

fn program_type_fact(program_type: ProgramType, what: &str) -> Fact {
    match aya::sys::is_program_supported(program_type) {
        Ok(true) => Fact::Ok(format!("{what} programs load")),
        Ok(false) => Fact::Missing(format!("the kernel refuses {what} programs")),
        Err(error) => Fact::Failed(loader::chain(&error)),
    }
}

fn kprobes_fact(tracefs: &MountState) -> Fact {
    let pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    let events = tracefs.path().is_some_and(|root| std::path::Path::new(root).join("kprobe_events").exists());
    match (pmu, events) {
        (true, _) | (_, true) => Fact::Ok("kprobe PMU or kprobe_events present".into()),
        (false, false) => Fact::Missing("no kprobe PMU and no kprobe_events (CONFIG_KPROBES off?)".into()),
    }
}

fn lsm_fact() -> Fact {
    let securityfs = host::ensure_securityfs();
    let Some(root) = securityfs.path() else {
        return Fact::Failed(format!("cannot read the LSM list: {}", mount_reason(&securityfs)));
    };
    let mounted = matches!(securityfs, MountState::MountedByUs { .. });
    let note = if mounted { format!("; hostflow mounted securityfs at {root}") } else { String::new() };
    let lsm = match std::fs::read_to_string(std::path::Path::new(root).join("lsm")) {
        Ok(lsm) => lsm,
        Err(error) => return Fact::Failed(format!("{root}/lsm: {error}")),
    };
    if !lsm.trim().split(',').any(|name| name == "bpf") {
        return Fact::Missing(format!("`bpf` is not in the active LSM list ({}){note}", lsm.trim()));
    }
    match aya::sys::is_program_supported(ProgramType::Lsm(aya::programs::LsmAttachType::Mac)) {
        Ok(true) => Fact::Ok(format!("active, and LSM programs load{note}")),
        Ok(false) => Fact::Missing(format!("`bpf` is in the LSM list but LSM programs do not load here{note}")),
        Err(error) => Fact::Failed(format!("`bpf` is active; probing LSM programs: {}{note}", loader::chain(&error))),
    }
}

fn mount_reason(state: &MountState) -> String {
    match state {
        MountState::Unavailable { reason } => reason.clone(),
        other => format!("{other:?}"),
    }
}

fn privileges_fact() -> Fact {
    let euid = rustix::process::geteuid().as_raw();
    let Some(caps) = host::capabilities() else {
        return Fact::Failed("cannot read CapEff from /proc/self/status".into());
    };
    if let Some(note) = caps.missing_note() {
        return Fact::Missing(format!(
            "{note}; euid {euid}; tracing programs need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
        ));
    }
    let set = format!("euid {euid}, effective capabilities: {} (CapEff {:#x})", caps.names(), caps.effective);
    if caps.cap_sys_admin {
        Fact::Ok(format!(
            "{set}; root-equivalent: CAP_SYS_ADMIN is effective, more than hostflow needs (see bpf/README.md)"
        ))
    } else {
        Fact::Ok(set)
    }
}

/// Tries `stat`, `cmdline` and `exe` of every user-space process owned
/// by another user (kernel threads have no `exe`): `stat` and `cmdline`
/// are world-readable (some `stat` fields read as 0 without ptrace
/// access; `hidepid` hides the directories), `exe` needs ptrace access,
/// i.e. CAP_SYS_PTRACE for another user's process. A process an LSM
/// protects may refuse even root; so this is `missing` only when no
/// other user's `exe` is readable.
fn proc_access_fact() -> Fact {
    use std::os::unix::fs::MetadataExt as _;
    let euid = rustix::process::geteuid().as_raw();
    let entries = match std::fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(error) => return Fact::Failed(format!("/proc: {error}")),
    };
    let (mut tried, mut readable, mut denied) = (0usize, 0usize, Vec::new());
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let dir = entry.path();
        // Gone meanwhile, or ours: not what this fact is about.
        let Ok(meta) = std::fs::metadata(&dir) else { continue };
        if meta.uid() == euid {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let outcome = std::fs::read(dir.join("cmdline")).map_err(|e| ("cmdline", e)).and_then(|cmdline| {
            std::fs::read(dir.join("stat")).map_err(|e| ("stat", e))?;
            if cmdline.is_empty() {
                return Ok(None); // a kernel thread
            }
            std::fs::read_link(dir.join("exe")).map(Some).map_err(|e| ("exe", e))
        });
        match outcome {
            Ok(None) => {}
            Ok(Some(_)) => (tried, readable) = (tried + 1, readable + 1),
            Err((_, error)) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err((file, error)) => {
                tried += 1;
                denied.push(format!("{pid} ({}): {file}: {error}", comm.trim()));
            }
        }
    }
    let caps = host::capabilities().map_or_else(|| "unknown".to_owned(), |caps| caps.names());
    let denied_note = match denied.len() {
        0 => String::new(),
        n if n <= 3 => format!("; refused: {}", denied.join(", ")),
        n => format!("; refused: {} and {} more", denied[..3].join(", "), n - 3),
    };
    if tried == 0 {
        Fact::Ok(format!("euid {euid}: no user-space process of another user to try"))
    } else if readable == 0 {
        Fact::Missing(format!(
            "euid {euid} cannot read /proc/PID/exe of any of {tried} processes of other users{denied_note}; \
             that needs CAP_SYS_PTRACE (effective capabilities: {caps})"
        ))
    } else {
        Fact::Ok(format!(
            "euid {euid} reads /proc/PID/{{stat,cmdline,exe}} of {readable} of {tried} processes of other \
             users{denied_note}"
        ))
    }
}
