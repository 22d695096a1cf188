//! Loading the embedded eBPF object and attaching its programs, one at a
//! time, so that a program the kernel refuses is reported (program →
//! reason) and the others still run.
//!
//! Order: find the object (absent only on an architecture without programs) → make
//! sure tracefs is mounted (classic tracepoints read their ids there) →
//! create the maps with the configured ring-buffer size and the wake-up
//! threshold and prefix count set as read-only globals → fill the prefix
//! map → for each requested program, load (verifier) and attach each of
//! its functions. All of it is blocking syscalls: callers run it on the
//! blocking pool. The returned [`Loaded`] owns the `Ebpf` value; dropping
//! it detaches everything.

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{Program as AyaProgram, ProgramError};
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;

use super::host::{self, MountState};
use super::records::{self, RawCounter, RawEnvNames};
use super::ring_map::RingMap;
use super::Program;

/// How a missing tracepoint is reported (and recognised, for `Unsupported`).
const ABSENT_TRACEPOINT: &str = "does not exist on this kernel";
/// The ring buffer map in `bpf/hostflow.bpf.c`.
pub const RING_MAP: &str = "hf_events";
/// The per-CPU counter array.
pub const COUNTERS_MAP: &str = "hf_counters";
const WAKEUP_GLOBAL: &str = "hf_wakeup_bytes";
const ENV_NAMES_MAP: &str = "hf_env_names";
const ENV_COUNT_GLOBAL: &str = "hf_env_count";

/// The compiled programs (`bpf/hostflow.bpf.o` as committed, unless
/// `build.rs` found it stale and compiled `bpf/` itself), or why this
/// build has none (a target architecture without programs).
pub fn embedded_object() -> Result<&'static [u8], &'static str> {
    #[cfg(not(hostflow_ebpf_disabled))]
    {
        Ok(aya::include_bytes_aligned!(env!("HOSTFLOW_EBPF_OBJECT")))
    }
    #[cfg(hostflow_ebpf_disabled)]
    {
        Err(env!("HOSTFLOW_EBPF_DISABLED_REASON"))
    }
}

/// Which object `build.rs` embedded and why (`hostflow probe` shows it).
pub fn embedded_origin() -> &'static str {
    #[cfg(not(hostflow_ebpf_disabled))]
    {
        env!("HOSTFLOW_EBPF_OBJECT_ORIGIN")
    }
    #[cfg(hostflow_ebpf_disabled)]
    {
        "none"
    }
}

/// Where one BPF function attaches.
#[derive(Clone, Copy, Debug)]
enum Hook {
    /// A classic tracepoint (`category/name` under tracefs `events/`).
    TracePoint { category: &'static str, name: &'static str },
    /// A raw tracepoint (no tracefs needed).
    RawTracePoint { name: &'static str },
    /// A `cgroup/connect4` or `connect6` program on the cgroup v2 root
    /// (every process's connect passes through it).
    CgroupConnect,
}

/// One BPF function of a program.
#[derive(Clone, Copy, Debug)]
struct Function {
    /// The C function name (aya looks programs up by it).
    name: &'static str,
    hook: Hook,
    /// A required function that fails fails its program; an optional one
    /// (a syscall this architecture lacks) is only reported.
    required: bool,
}

const fn tracepoint(name: &'static str, category: &'static str, event: &'static str, required: bool) -> Function {
    Function { name, hook: Hook::TracePoint { category, name: event }, required }
}

const EXEC: &[Function] = &[tracepoint("hf_exec", "sched", "sched_process_exec", true)];
const EXIT: &[Function] = &[tracepoint("hf_exit", "sched", "sched_process_exit", true)];
const FORK: &[Function] =
    &[Function { name: "hf_fork", hook: Hook::RawTracePoint { name: "sched_process_fork" }, required: true }];
const CONNECT: &[Function] = &[
    tracepoint("hf_connect_enter", "syscalls", "sys_enter_connect", true),
    tracepoint("hf_connect_exit", "syscalls", "sys_exit_connect", true),
];
/// The cheap connect hook (bpf/connect_cgroup.bpf.h): no result code, a
/// fraction of the tracepoint pair's cost.
const CONNECT_CGROUP: &[Function] = &[
    Function { name: "hf_connect4", hook: Hook::CgroupConnect, required: true },
    Function { name: "hf_connect6", hook: Hook::CgroupConnect, required: true },
];
const FILE_OPEN: &[Function] = &[
    tracepoint("hf_openat", "syscalls", "sys_enter_openat", true),
    tracepoint("hf_openat2", "syscalls", "sys_enter_openat2", false),
    tracepoint("hf_open", "syscalls", "sys_enter_open", false),
];

fn functions(program: Program) -> &'static [Function] {
    match program {
        Program::Exec => EXEC,
        Program::Exit => EXIT,
        Program::Fork => FORK,
        Program::Connect => CONNECT,
        Program::FileOpen => FILE_OPEN,
        other => security::functions(other).unwrap_or(&[]),
    }
}

/// The security programs' functions, selection maps and agent tgid.
#[path = "loader_security.rs"]
mod security;

/// The functions that make up `program` under these settings: the connect
/// program is the cgroup pair or the tracepoint pair.
fn functions_for(program: Program, settings: &LoadSettings) -> &'static [Function] {
    match (program, settings.connect_hook) {
        (Program::Connect, ConnectHook::Cgroup) => CONNECT_CGROUP,
        _ => functions(program),
    }
}

/// Which hook observes connects (`connect_hook` in the source's options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectHook {
    /// `cgroup/connect4` + `connect6` on the cgroup v2 root: one program
    /// run per connect, no syscall tracepoint; the result is not known
    /// (it runs before the attempt).
    #[default]
    Cgroup,
    /// `sys_enter_connect` + `sys_exit_connect`: the result too, at about
    /// four times the cost per connect (BENCHMARKS.md, "eBPF storms").
    Tracepoint,
}

impl ConnectHook {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectHook::Cgroup => "cgroup",
            ConnectHook::Tracepoint => "tracepoint",
        }
    }
}

/// What to load.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSettings {
    pub programs: Vec<Program>,
    /// How connects are observed.
    pub connect_hook: ConnectHook,
    /// The cgroup v2 directory the cgroup hooks attach to; `None`: the
    /// cgroup2 mount's root (every process).
    pub cgroup_path: Option<String>,
    /// A power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Wake the reader once this many bytes are pending; 0 = every record.
    pub wakeup_threshold_bytes: u64,
    /// File selection of `file_open` and `file_change` (checked by
    /// [`super::selection::check`]): prefixes, exact paths, basenames.
    pub file_prefixes: Vec<String>,
    pub file_paths: Vec<String>,
    pub file_basenames: Vec<String>,
    /// The tgid whose BPF loads `bpf_load` leaves out; `None`: this
    /// process (tests set another to see their own loads).
    pub agent_tgid: Option<u32>,
    /// Environment variables exec records carry (`NAME=value`): at most
    /// [`records::MAX_ENV_NAMES`], each 1..=[`records::ENV_NAME_LEN`] bytes.
    pub exec_env: Vec<String>,
}

impl Default for LoadSettings {
    /// What a default `ebpf` source loads: every program, a 1 MiB ring,
    /// a 256 KiB wake-up threshold, files under `/etc/` and the default
    /// basenames ([`super::DEFAULT_FILE_BASENAMES`]), the default
    /// `exec_env` allow-list, the agent's own BPF loads left out.
    fn default() -> LoadSettings {
        LoadSettings {
            programs: Program::ALL.to_vec(),
            connect_hook: ConnectHook::default(),
            cgroup_path: None,
            ring_buffer_bytes: super::DEFAULT_RING_BUFFER_BYTES,
            wakeup_threshold_bytes: super::DEFAULT_WAKEUP_THRESHOLD_BYTES,
            file_prefixes: super::DEFAULT_FILE_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
            file_paths: Vec::new(),
            file_basenames: super::DEFAULT_FILE_BASENAMES.iter().map(|b| (*b).to_owned()).collect(),
            agent_tgid: None,
            exec_env: super::DEFAULT_EXEC_ENV.iter().map(|name| (*name).to_owned()).collect(),
        }
    }
}

/// Why nothing could be loaded at all (per-program problems are in the
/// [`LoadReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("built without eBPF: {0}")]
    NotBuilt(&'static str),
    /// `hint` names a missing capability (or is empty).
    #[error("cannot load the eBPF object: {reason}{hint}")]
    Object { reason: String, hint: String },
    #[error("cannot set up eBPF map `{map}`: {reason}")]
    Map { map: &'static str, reason: String },
}

/// One BPF function's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionReport {
    pub function: &'static str,
    /// `tracepoint:sched/sched_process_exec` or `raw_tracepoint:sched_process_fork`.
    pub target: String,
    pub required: bool,
    /// `None` when attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One program's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum ProgramState {
    /// Every function attached.
    Attached,
    /// Running, but an optional function did not attach (the reason says which).
    Partial(String),
    /// Not running (the reason says why).
    Failed(String),
    /// Not running because the kernel lacks what the program watches (no
    /// module tracepoints: a kernel built without module support cannot
    /// load modules). Not a problem: `/health` stays ok; probe says why.
    Unsupported(String),
}

/// One program's outcome with its functions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramReport {
    pub program: Program,
    pub state: ProgramState,
    pub functions: Vec<FunctionReport>,
}

/// What loading did, program by program; shown by `hostflow probe` and
/// `/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// tracefs: already there, mounted by us, or why not.
    pub tracefs: MountState,
    /// The ring buffer's size as created (the kernel's, after rounding).
    pub ring_buffer_bytes: u32,
    pub programs: Vec<ProgramReport>,
    /// Network enforcement: whether its hooks and maps work here and which
    /// cgroup is enforced (`probe::enforcement_fact`); filled by the probe
    /// and by a source with `enforce` set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<super::probe::Fact>,
}

impl LoadReport {
    /// Programs that are running (fully or partially).
    pub fn running(&self) -> impl Iterator<Item = Program> + '_ {
        self.programs
            .iter()
            .filter(|p| !matches!(p.state, ProgramState::Failed(_) | ProgramState::Unsupported(_)))
            .map(|p| p.program)
    }

    /// `program: reason` for every program that is not fully attached, or
    /// `None` when all are.
    pub fn problems(&self) -> Option<String> {
        let problems: Vec<String> = self
            .programs
            .iter()
            .filter_map(|p| match &p.state {
                ProgramState::Attached | ProgramState::Unsupported(_) => None,
                ProgramState::Partial(reason) => Some(format!("{}: partial: {reason}", p.program)),
                ProgramState::Failed(reason) => Some(format!("{}: {reason}", p.program)),
            })
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// The loaded object: owns the programs (and their links) and the maps not
/// yet taken by the reader.
pub struct Loaded {
    ebpf: Ebpf,
    pub report: LoadReport,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("report", &self.report).finish_non_exhaustive()
    }
}

impl Loaded {
    /// Moves the ring buffer out, for the reader task.
    pub fn take_ring(&mut self) -> Result<RingMap, LoadError> {
        let map = self.ebpf.take_map(RING_MAP).ok_or(LoadError::Map { map: RING_MAP, reason: "taken".into() })?;
        let aya::maps::Map::RingBuf(data) = map else {
            return Err(LoadError::Map { map: RING_MAP, reason: "not a ring buffer".into() });
        };
        RingMap::new(data, self.report.ring_buffer_bytes)
            .map_err(|e| LoadError::Map { map: RING_MAP, reason: chain(&e) })
    }

    /// Moves the counter array out.
    pub fn take_counters(&mut self) -> Result<PerCpuArray<MapData, RawCounter>, LoadError> {
        let map =
            self.ebpf.take_map(COUNTERS_MAP).ok_or(LoadError::Map { map: COUNTERS_MAP, reason: "taken".into() })?;
        PerCpuArray::try_from(map).map_err(|e| LoadError::Map { map: COUNTERS_MAP, reason: chain(&e) })
    }

    /// Moves the policy maps out (the two families' trie slots and the
    /// decision counters), for the enforcement applier, which is their only
    /// writer from then on.
    pub fn take_policy_maps(&mut self) -> Result<enforce::PolicyMaps, LoadError> {
        let mut take = |name: &'static str| {
            self.ebpf.take_map(name).ok_or(LoadError::Map { map: name, reason: "taken or not in the object".into() })
        };
        let (v4, v6, counters) =
            (take(enforce::maps::V4_MAP)?, take(enforce::maps::V6_MAP)?, take(enforce::maps::COUNTERS_MAP)?);
        enforce::PolicyMaps::new(v4, v6, counters)
            .map_err(|error| LoadError::Map { map: enforce::maps::V4_MAP, reason: error.to_string() })
    }

    /// Detaches and unloads every program (the maps stay readable): after
    /// this returns no program runs any more, so the counters are final.
    pub fn detach_all(&mut self) {
        let names: Vec<String> = self.ebpf.programs().map(|(name, _)| name.to_owned()).collect();
        for name in names {
            if let Some(program) = self.ebpf.program_mut(&name) {
                let result = match program {
                    AyaProgram::TracePoint(p) => p.unload(),
                    AyaProgram::RawTracePoint(p) => p.unload(),
                    AyaProgram::CgroupSockAddr(p) => p.unload(),
                    _ => Ok(()),
                };
                // Unloading a program that never loaded is an error we expect.
                if let Err(error) = result {
                    tracing::trace!(program = %name, error = %chain(&error), "unload");
                }
            }
        }
    }
}

/// Where network enforcement applies (issue #17), resolved before load:
/// the connect program sees these as constants, so without a target the
/// verifier drops the whole policy decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnforceTarget {
    /// The enforced cgroup's id (its cgroup2 directory's inode).
    pub cgroup_id: u64,
    /// Its level below the cgroup2 root; 0 (the root) enforces every process.
    pub level: u16,
}

/// Loads the object and attaches the requested programs (no enforcement).
pub fn load(settings: &LoadSettings) -> Result<Loaded, LoadError> {
    load_with(settings, None)
}

/// [`load`], with the connect program enforcing policy for `enforce`'s
/// cgroup (the policy maps start empty: everything is allowed until the
/// applier installs a policy).
pub fn load_with(settings: &LoadSettings, enforce: Option<&EnforceTarget>) -> Result<Loaded, LoadError> {
    let object = embedded_object().map_err(LoadError::NotBuilt)?;
    let needs_tracefs = settings
        .programs
        .iter()
        .flat_map(|&p| functions_for(p, settings))
        .any(|f| matches!(f.hook, Hook::TracePoint { .. }));
    let cgroup = settings.cgroup_path.clone().or_else(|| host::mount_point(&host::mounts(), "cgroup2"));
    let tracefs = if needs_tracefs { host::ensure_tracefs() } else { host::tracefs_state() };
    if let MountState::MountedByUs { path } = &tracefs {
        tracing::info!(%path, "mounted tracefs (classic tracepoints read their ids there)");
    }

    // The agent's own BPF loads (these programs, aya's feature probes) are
    // not reported by `bpf_load`.
    let agent_tgid = settings.agent_tgid.unwrap_or_else(std::process::id);
    let env_count = settings.exec_env.len().min(records::MAX_ENV_NAMES) as u32;
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(RING_MAP, settings.ring_buffer_bytes)
        .override_global(WAKEUP_GLOBAL, &settings.wakeup_threshold_bytes, true)
        .override_global(security::AGENT_TGID_GLOBAL, &agent_tgid, true)
        .override_global(ENV_COUNT_GLOBAL, &env_count, true);
    let (enforce_on, cgroup_id, cgroup_level) = match enforce {
        Some(target) => (1u32, target.cgroup_id, u32::from(target.level)),
        None => (0u32, 0u64, 0u32),
    };
    loader
        .override_global(enforce::maps::ENFORCE_GLOBAL, &enforce_on, true)
        .override_global(enforce::maps::CGROUP_ID_GLOBAL, &cgroup_id, true)
        .override_global(enforce::maps::CGROUP_LEVEL_GLOBAL, &cgroup_level, true);
    let mut ebpf = loader.load(object).map_err(|error| {
        let reason = chain(&error);
        let hint = match host::missing_capabilities_note() {
            Some(note) => format!("; {note}; loading needs CAP_BPF and CAP_PERFMON (or root)"),
            None if is_permission_error(&reason) => {
                " (loading eBPF needs CAP_BPF and CAP_PERFMON, or root; effective capabilities could not be read)"
                    .into()
            }
            None => String::new(),
        };
        LoadError::Object { reason, hint }
    })?;
    security::fill_selection(&mut ebpf, settings)?;
    fill_env_names(&mut ebpf, &settings.exec_env)?;
    let ring_buffer_bytes = ebpf.map(RING_MAP).and_then(ring_size).unwrap_or(settings.ring_buffer_bytes);

    let mut programs = Vec::new();
    for &program in &settings.programs {
        programs.push(attach_program(&mut ebpf, program, &Targets { settings, tracefs: &tracefs, cgroup: &cgroup }));
    }
    Ok(Loaded { ebpf, report: LoadReport { tracefs, ring_buffer_bytes, programs, enforcement: None } })
}

fn ring_size(map: &aya::maps::Map) -> Option<u32> {
    match map {
        aya::maps::Map::RingBuf(data) => data.info().ok().map(|info| info.max_entries()),
        _ => None,
    }
}

/// What the hooks attach to.
struct Targets<'a> {
    settings: &'a LoadSettings,
    tracefs: &'a MountState,
    /// The cgroup v2 directory for cgroup hooks; `None`: no cgroup2 mount.
    cgroup: &'a Option<String>,
}

/// Fills `hf_env_names` (the exec records' environment allow-list, all
/// names in its one entry) in the order given; `hf_env_count` says how
/// many the kernel reads.
fn fill_env_names(ebpf: &mut Ebpf, names: &[String]) -> Result<(), LoadError> {
    let map_error = |reason: String| LoadError::Map { map: ENV_NAMES_MAP, reason };
    let value = records::encode_env_names(names).map_err(map_error)?;
    let map = ebpf.map_mut(ENV_NAMES_MAP).ok_or_else(|| map_error("not in the object".into()))?;
    let mut array: Array<&mut MapData, RawEnvNames> = Array::try_from(map).map_err(|e| map_error(chain(&e)))?;
    array.set(0, value, 0).map_err(|e| map_error(chain(&e)))
}

fn attach_program(ebpf: &mut Ebpf, program: Program, targets: &Targets<'_>) -> ProgramReport {
    let mut reports = Vec::new();
    let functions = functions_for(program, targets.settings);
    for function in functions {
        let error = attach_function(ebpf, function, targets).err();
        reports.push(FunctionReport {
            function: function.name,
            target: match function.hook {
                Hook::TracePoint { category, name } => format!("tracepoint:{category}/{name}"),
                Hook::RawTracePoint { name } => format!("raw_tracepoint:{name}"),
                Hook::CgroupConnect => {
                    let family = if function.name.ends_with('6') { "connect6" } else { "connect4" };
                    format!("cgroup/{family}:{}", targets.cgroup.as_deref().unwrap_or("(no cgroup2 mount)"))
                }
            },
            required: function.required,
            error,
        });
    }
    let failed_required: Vec<String> = reports
        .iter()
        .filter(|r| r.required)
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.function)))
        .collect();
    let failed_optional: Vec<String> = reports
        .iter()
        .filter(|r| !r.required)
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.function)))
        .collect();
    let state = if !failed_required.is_empty() {
        // Half a program (connect's enter without its exit) is worse than
        // none: take down what did attach.
        for function in functions {
            unload(ebpf, function.name);
        }
        let all_absent = reports.iter().all(|r| r.error.as_deref().is_some_and(|e| e.contains(ABSENT_TRACEPOINT)));
        if all_absent && security::unsupported_when_absent(program) {
            ProgramState::Unsupported(format!(
                "none of its tracepoints exists on this kernel ({}): the kernel cannot do what it watches",
                reports.iter().map(|r| r.target.as_str()).collect::<Vec<_>>().join(", ")
            ))
        } else {
            ProgramState::Failed(failed_required.join("; "))
        }
    } else if !failed_optional.is_empty() {
        ProgramState::Partial(failed_optional.join("; "))
    } else {
        ProgramState::Attached
    };
    ProgramReport { program, state, functions: reports }
}

fn attach_function(ebpf: &mut Ebpf, function: &Function, targets: &Targets<'_>) -> Result<(), String> {
    let tracefs = targets.tracefs;
    let program = ebpf.program_mut(function.name).ok_or_else(|| format!("{} is not in the object", function.name))?;
    match (function.hook, program) {
        (Hook::TracePoint { category, name }, AyaProgram::TracePoint(tp)) => {
            if let MountState::Unavailable { reason } = tracefs {
                return Err(format!("tracefs is not available ({reason})"));
            }
            if let Some(path) = tracefs.path() {
                let events = std::path::Path::new(path).join("events").join(category).join(name);
                match std::fs::metadata(&events) {
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        return Err(format!("tracepoint {category}/{name} {ABSENT_TRACEPOINT}"))
                    }
                    Err(error) => {
                        // tracefs is root-only (0700): a non-root agent
                        // reads the tracepoint ids with CAP_DAC_READ_SEARCH.
                        return Err(format!(
                            "cannot read {}: {error} (tracefs is root-only: CAP_DAC_READ_SEARCH lets a non-root \
                             agent read it)",
                            events.display()
                        ));
                    }
                }
            }
            load_retrying(|| tp.load()).map_err(|e| program_error(&e))?;
            tp.attach(category, name).map(drop).map_err(|e| program_error(&e))
        }
        (Hook::RawTracePoint { name }, AyaProgram::RawTracePoint(tp)) => {
            load_retrying(|| tp.load()).map_err(|e| program_error(&e))?;
            tp.attach(name).map(drop).map_err(|e| program_error(&e))
        }
        (Hook::CgroupConnect, AyaProgram::CgroupSockAddr(program)) => {
            let Some(path) = targets.cgroup else {
                return Err("no cgroup v2 mount on this host (set connect_hook = \"tracepoint\")".into());
            };
            let cgroup =
                std::fs::File::open(path).map_err(|error| format!("cannot open the cgroup {path}: {error}"))?;
            load_retrying(|| program.load()).map_err(|e| program_error(&e))?;
            // aya attaches through a BPF link (kernel ≥ 5.7), which always
            // runs beside the cgroup's other programs (systemd's, a
            // container runtime's) and takes no attach flags: the kernel
            // refuses ALLOW_MULTI on a link with EINVAL.
            program.attach(&cgroup, aya::programs::CgroupAttachMode::Single).map(drop).map_err(|e| program_error(&e))
        }
        (_, other) => Err(format!("{} has an unexpected program type {:?}", function.name, other.prog_type())),
    }
}

/// Loads, retrying a few times when the kernel says EAGAIN: the verifier
/// gives up with EAGAIN when a signal is pending for the loading thread (a
/// busy agent or test process gets SIGCHLD at any time), and the longer a
/// program takes to verify (hf_exec: ~7 ms) the likelier that is. libbpf
/// retries the same way.
fn load_retrying(mut load: impl FnMut() -> Result<(), ProgramError>) -> Result<(), ProgramError> {
    const EAGAIN: i32 = 11;
    let mut attempts = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(EAGAIN) && attempts < 5 =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn unload(ebpf: &mut Ebpf, name: &str) {
    let result = match ebpf.program_mut(name) {
        Some(AyaProgram::TracePoint(p)) => p.unload(),
        Some(AyaProgram::RawTracePoint(p)) => p.unload(),
        Some(AyaProgram::CgroupSockAddr(p)) => p.unload(),
        _ => Ok(()),
    };
    if let Err(error) = result {
        tracing::trace!(program = name, error = %chain(&error), "unload");
    }
}

/// A program error in one line; a verifier log is cut to its last lines
/// (where the verifier says what it rejected). A refusal for want of
/// privilege names the missing capability.
fn program_error(error: &ProgramError) -> String {
    let text = if let ProgramError::LoadError { io_error, verifier_log } = error {
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log.lines().rev().filter(|l| !l.trim().is_empty()).take(4).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if tail.is_empty() {
            format!("the kernel refused the program: {io_error}")
        } else {
            format!("the kernel refused the program: {io_error}; verifier: {}", tail.join(" | "))
        }
    } else {
        chain(error)
    };
    match host::missing_capabilities_note() {
        Some(note) if is_permission_error(&text) => format!("{text}; {note}"),
        _ => text,
    }
}

/// EPERM or EACCES in an error's text.
fn is_permission_error(text: &str) -> bool {
    text.contains("Operation not permitted") || text.contains("Permission denied")
}

/// An error with its sources, `a: b: c` (shared with `enforce`).
pub use pipeline::error_chain as chain;
