//! `ebpf`: process exec/exit/fork, outbound connects and file opens, and
//! the security events (file changes, credential, namespace, ptrace,
//! module and BPF loads, inbound TCP, first UDP sends: issue #13), from
//! programs attached to the running kernel.
//!
//! The programs (`bpf/hostflow.bpf.c`, compiled and committed as
//! `bpf/hostflow.bpf.o` with a [`stamp`]; `build.rs` embeds it)
//! write fixed-layout records into one ring buffer; this source loads them
//! with aya ([`loader`]), reads the ring with tokio's `AsyncFd` in batches
//! ([`ring`]), decodes ([`records`]) and maps each record to an event in
//! one place ([`events::to_event`]). The kernel counts what each program
//! submitted, lost and filtered per CPU; [`counters`] exports those as
//! `hostflow_ebpf_events_total{program}`,
//! `hostflow_ebpf_ringbuf_lost_events_total{program}` and
//! `hostflow_ebpf_filtered_events_total{program}` every second. The
//! security programs' parts live in `*_security.rs` files and
//! [`selection`] (which files `file_open` and `file_change` report).
//!
//! Needs: Linux 5.8+ with BTF (`/sys/kernel/btf/vmlinux`; `exec` needs
//! 5.17+ for `bpf_loop`, which scans the environment), root or
//! CAP_BPF + CAP_PERFMON, plus, when not root, CAP_DAC_READ_SEARCH to read
//! the tracepoint ids in root-only tracefs; CAP_SYS_ADMIN only to mount
//! tracefs when it is absent (the loader tries and reports; a service
//! mounts it beforehand). Classic tracepoints for exec, exit, connect and
//! open; a raw tracepoint for fork. A missing capability is named in the
//! load error, `hostflow probe` and `/health` (`bpf/README.md`).
//!
//! Process context (issue #14). Process keys are `(tgid, start time)`
//! with the kernel's nanosecond `start_boottime` rounded down to a whole
//! `/proc` clock tick ([`events::process_key`], the one place every record
//! gets its keys), so the kernel's keys, the snapshot's and the procfs
//! source's agree for the same process. With `snapshot = true` (default),
//! once the programs are attached and before the first drain, the reader
//! sends every process already running as a `ProcessSnapshot` event
//! ([`snapshot`]). Before a batch leaves, every exec gets its real uid's
//! user name and its cgroup's path (`crate::identity`), the SHA-256 of its
//! executable (`crate::exe_hash`: from a cache, or computed on a thread,
//! waited for at most `exe_hash_wait_ms`, else `pending` and followed by
//! an `ExeHash` event), and secrets are scrubbed from argv and the
//! captured environment, as they are from the snapshot's and the
//! fallback's argv (`scrub` table; [`attributes`]). Metrics:
//! `hostflow_exe_hash_total{result}`, `hostflow_scrubbed_values_total`,
//! `hostflow_ebpf_identity_errors_total{what}`; an unreadable passwd,
//! cgroup mount or `/proc` makes the source `degraded` with the reason.
//!
//! When eBPF cannot be used at all (a target without programs, no privilege,
//! every program refused), the source says why — log, `/health`
//! (`degraded` with the reason) and an `ebpf_fallback` diagnostic — and
//! runs a `/proc`-diffing exec/exit detector instead ([`fallback`]), so the
//! topology keeps running. When only some programs fail, the others run and
//! the source is `degraded` with the failures as the reason.

pub mod attributes;
pub mod counters;
pub mod events;
pub mod events_security;
pub mod fallback;
pub mod host;
pub mod loader;
pub mod probe;
mod reader;
pub mod records;
pub mod records_security;
pub mod ring;
pub mod ring_map;
pub mod selection;
pub mod snapshot;
pub mod stamp;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_context;
#[cfg(test)]
mod tests_enforce;
#[cfg(test)]
mod tests_exec;
#[cfg(test)]
mod tests_kernel;
#[cfg(test)]
mod tests_security;
#[cfg(test)]
mod tests_stamp;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::health::ComponentState;
use pipeline::{ComponentError, ComponentOptions, ConfigError, Source, SourceContext};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::procfs::ScrubOptions;
use crate::scrub::ScrubConfig;

/// The enforcement crate this source drives (issue #17), for benches and
/// the agent's policy endpoints.
pub use enforce;
pub use loader::{ConnectHook, LoadReport, LoadSettings};
pub use probe::{probe, ProbeReport};

/// The programs this source can attach, by the name used in
/// `programs = [...]` and in the `program` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    Exec,
    Exit,
    Fork,
    Connect,
    FileOpen,
    // The security programs (issue #13; bpf/files.bpf.h, privilege.bpf.h,
    // network.bpf.h).
    FileChange,
    Credentials,
    Namespace,
    Ptrace,
    ModuleLoad,
    BpfLoad,
    Listen,
    Accept,
    UdpSend,
}

impl Program {
    /// Every program, in counter-index order.
    pub const ALL: [Program; 14] = [
        Program::Exec,
        Program::Exit,
        Program::Fork,
        Program::Connect,
        Program::FileOpen,
        Program::FileChange,
        Program::Credentials,
        Program::Namespace,
        Program::Ptrace,
        Program::ModuleLoad,
        Program::BpfLoad,
        Program::Listen,
        Program::Accept,
        Program::UdpSend,
    ];

    /// The configuration and metric-label name.
    pub fn as_str(self) -> &'static str {
        match self {
            Program::Exec => "exec",
            Program::Exit => "exit",
            Program::Fork => "fork",
            Program::Connect => "connect",
            Program::FileOpen => "file_open",
            Program::FileChange => "file_change",
            Program::Credentials => "credentials",
            Program::Namespace => "namespace",
            Program::Ptrace => "ptrace",
            Program::ModuleLoad => "module_load",
            Program::BpfLoad => "bpf_load",
            Program::Listen => "listen",
            Program::Accept => "accept",
            Program::UdpSend => "udp_send",
        }
    }

    /// Looks a program up by name.
    pub fn from_name(name: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|program| program.as_str() == name)
    }

    /// The index of its slot in the kernel's counter array (`HF_PROG_*`).
    pub fn id(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sources.NAME] type = "ebpf"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbpfConfig {
    /// Programs to attach: any of `exec`, `exit`, `fork`, `connect`,
    /// `file_open`, and the security programs `file_change`, `credentials`,
    /// `namespace`, `ptrace`, `module_load`, `bpf_load`, `listen`, `accept`,
    /// `udp_send`. Default: all of them.
    #[serde(default)]
    pub programs: Option<Spanned<Vec<Spanned<String>>>>,
    /// Size of the ring buffer shared by the programs, in bytes: a power of
    /// two of at least one page. Default 1 MiB (about 2 500 exec records;
    /// see [`DEFAULT_RING_BUFFER_BYTES`]).
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: Spanned<u64>,
    /// The programs wake the reader only once this many bytes are pending
    /// (0: on every record). At most half the ring. Default 256 KiB, or a
    /// quarter of a smaller ring.
    #[serde(default)]
    pub wakeup_threshold_bytes: Option<Spanned<u64>>,
    /// The reader also drains the ring this often, in milliseconds (1 to
    /// 60000), so records below the wake-up threshold are never held long.
    /// Default 100.
    #[serde(default = "default_drain_interval_ms")]
    pub drain_interval_ms: Spanned<u64>,
    /// `file_open` and `file_change` report only paths starting with one
    /// of these (each 1 to 255 bytes), equal to one of `file_paths` (1 to
    /// 254 bytes) or whose last component is one of `file_basenames` (1 to
    /// 64 bytes, no `/`); compared in the kernel against the path as passed
    /// to the syscall (a relative path is compared as written). At most 256
    /// prefixes and paths together and 256 basenames. When none of the
    /// three is set: prefix `/etc/` and the basenames of
    /// [`selection::DEFAULT_FILE_BASENAMES`]; once one is set, the others
    /// default to empty.
    #[serde(default)]
    pub file_prefixes: Option<Spanned<Vec<Spanned<String>>>>,
    /// Exact paths (see `file_prefixes`).
    #[serde(default)]
    pub file_paths: Option<Spanned<Vec<Spanned<String>>>>,
    /// Basenames selected in any directory (see `file_prefixes`).
    #[serde(default)]
    pub file_basenames: Option<Spanned<Vec<Spanned<String>>>>,
    /// Environment variables whose `NAME=value` every exec record carries
    /// when the process has them (at most 16 names, each a valid variable
    /// name of 1 to 32 bytes; the kernel scans the first 8 KiB of the
    /// environment and keeps up to 1 KiB of entries, 256 bytes each).
    /// Default: LD_PRELOAD, LD_LIBRARY_PATH, GLIBC_TUNABLES, HTTP_PROXY,
    /// HTTPS_PROXY. `[]` turns the scan off.
    #[serde(default)]
    pub exec_env: Option<Spanned<Vec<Spanned<String>>>>,
    /// How often the `/proc` fallback scans, in milliseconds (10 to
    /// 3600000), when eBPF is unavailable. Default 1000.
    #[serde(default = "default_fallback_interval_ms")]
    pub fallback_interval_ms: Spanned<u64>,
    /// How connects are observed: `cgroup` (default; `cgroup/connect4` and
    /// `connect6` on the cgroup v2 root, cheapest, no result code) or
    /// `tracepoint` (the `connect` syscall's enter/exit pair, with the
    /// result, about four times the in-kernel cost per connect).
    #[serde(default)]
    pub connect_hook: Option<Spanned<String>>,
    /// The cgroup v2 directory the cgroup hook attaches to (it sees the
    /// processes below it). Default: the cgroup2 mount's root, every process.
    #[serde(default)]
    pub cgroup_path: Option<Spanned<String>>,
    /// Send every process already running as a `ProcessSnapshot` event at
    /// start (after the programs are attached). Default true.
    #[serde(default = "default_true")]
    pub snapshot: bool,
    /// Compute the SHA-256 of every executed file (cached by device,
    /// inode, size and mtime; off the hot path). Default true.
    #[serde(default = "default_true")]
    pub exe_hash: bool,
    /// Files bigger than this are not hashed (`too_large`), 1 to 2^40.
    /// Default 64 MiB.
    #[serde(default = "default_exe_hash_max_bytes")]
    pub exe_hash_max_bytes: Spanned<u64>,
    /// How long a batch waits for its execs' hashes, in milliseconds (0
    /// to 1000); those not ready leave as `pending` and an `ExeHash` event
    /// follows. Default 5.
    #[serde(default = "default_exe_hash_wait_ms")]
    pub exe_hash_wait_ms: Spanned<u64>,
    /// Secret scrubbing of argv and environment (`[sources.NAME.scrub]`:
    /// `enabled`, `extra_flags`, `extra_key_patterns`). On by default.
    #[serde(default)]
    pub scrub: Option<ScrubOptions>,
    /// Network enforcement (issue #17): `enforce = { policy = "...",
    /// cgroup = "/", state_dir, trust, require_signature,
    /// applies_per_minute, history }` (`enforce::EnforceConfig`). The
    /// connect program decides in the same cgroup hook that observes, so
    /// it needs `connect` and `connect_hook = "cgroup"`. Absent: none.
    #[serde(default)]
    pub enforce: Option<Spanned<enforce::EnforceConfig>>,
}

fn default_true() -> bool {
    true
}

fn default_exe_hash_max_bytes() -> Spanned<u64> {
    Spanned::new(0..0, crate::exe_hash::DEFAULT_MAX_BYTES)
}

fn default_exe_hash_wait_ms() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}

/// Largest accepted `exe_hash_max_bytes` (1 TiB).
pub const MAX_EXE_HASH_BYTES: u64 = 1 << 40;

/// What the reader adds to the kernel's events (issue #14): the snapshot,
/// exe hashes and secret scrubbing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSettings {
    pub snapshot: bool,
    pub exe_hash: bool,
    pub exe_hash_max_bytes: u64,
    pub exe_hash_wait: Duration,
    pub scrub: ScrubConfig,
}

impl Default for ContextSettings {
    /// The options' defaults: snapshot and hashes on, 64 MiB, 5 ms, the
    /// default scrub rules.
    fn default() -> ContextSettings {
        ContextSettings {
            snapshot: true,
            exe_hash: true,
            exe_hash_max_bytes: crate::exe_hash::DEFAULT_MAX_BYTES,
            exe_hash_wait: Duration::from_millis(5),
            scrub: ScrubConfig::default(),
        }
    }
}

fn default_ring_buffer_bytes() -> Spanned<u64> {
    Spanned::new(0..0, u64::from(DEFAULT_RING_BUFFER_BYTES))
}

fn default_drain_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

fn default_fallback_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}

/// Default `ring_buffer_bytes`. Why 1 MiB and not more: the agent maps
/// the ring's data pages twice (for reads across the wrap), all resident,
/// so a ring costs twice its size in the agent's RSS (4 MiB was 8 MiB of
/// an idle agent's 33). Storms with every program attached lost nothing
/// with it (UDP connects at 586 k events/s, TCP at 55 k/s, exec storms;
/// BENCHMARKS.md, issue #12); a host that loses records under its own
/// bursts (`hostflow_ebpf_ringbuf_lost_events_total`) raises it.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 1 << 20;

/// Default `wakeup_threshold_bytes` (for rings of 1 MiB and more).
pub const DEFAULT_WAKEUP_THRESHOLD_BYTES: u64 = 256 << 10;
pub use selection::{DEFAULT_FILE_BASENAMES, DEFAULT_FILE_PREFIXES};
/// Default `exec_env`: variables that change what a program loads or where
/// its traffic goes.
pub const DEFAULT_EXEC_ENV: [&str; 5] =
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "GLIBC_TUNABLES", "HTTP_PROXY", "HTTPS_PROXY"];
/// Largest accepted ring buffer (the kernel's limit is lower on most hosts).
pub const MAX_RING_BUFFER_BYTES: u64 = 1 << 30;

/// Builds an ebpf source from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Source>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: EbpfConfig, options| {
        Ok(Box::new(EbpfSource::new(config, options)?) as Box<dyn Source>)
    })
}

/// A configured ebpf source. Building loads nothing; the programs are
/// loaded when the source runs.
#[derive(Debug)]
pub struct EbpfSource {
    settings: LoadSettings,
    drain_interval: Duration,
    fallback_interval: Duration,
    proc_root: PathBuf,
    forced_fallback: Option<String>,
    context: ContextSettings,
    enforce: Option<enforce::EnforceSettings>,
}

impl EbpfSource {
    /// Checks the configuration, reporting every problem at its value.
    pub fn new(config: EbpfConfig, options: &ComponentOptions) -> Result<EbpfSource, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let programs = match &config.programs {
            None => Program::ALL.to_vec(),
            Some(list) => {
                let mut programs = Vec::new();
                for name in list.get_ref() {
                    match Program::from_name(name.get_ref()) {
                        Some(program) if programs.contains(&program) => {
                            errors.push(options.error_at(name.span(), format!("program `{program}` is listed twice")))
                        }
                        Some(program) => programs.push(program),
                        None => errors.push(options.error_at(
                            name.span(),
                            format!(
                                "unknown program `{}` (known: {})",
                                name.get_ref(),
                                Program::ALL.map(Program::as_str).join(", ")
                            ),
                        )),
                    }
                }
                if list.get_ref().is_empty() {
                    errors.push(options.error_at(list.span(), "programs must list at least one program"));
                }
                programs
            }
        };
        let page = rustix::param::page_size() as u64;
        let ring = *config.ring_buffer_bytes.get_ref();
        if !ring.is_power_of_two() || ring < page || ring > MAX_RING_BUFFER_BYTES {
            let hint =
                ring.checked_next_power_of_two().unwrap_or(MAX_RING_BUFFER_BYTES).clamp(page, MAX_RING_BUFFER_BYTES);
            errors.push(options.error_at(
                config.ring_buffer_bytes.span(),
                format!(
                    "ring_buffer_bytes must be a power of two from {page} (one page) to {MAX_RING_BUFFER_BYTES}, \
                     got {ring} (try {hint})"
                ),
            ));
        }
        let wakeup = match &config.wakeup_threshold_bytes {
            None => DEFAULT_WAKEUP_THRESHOLD_BYTES.min(ring / 4),
            Some(wakeup) => {
                if *wakeup.get_ref() > ring / 2 {
                    errors.push(options.error_at(
                        wakeup.span(),
                        format!(
                            "wakeup_threshold_bytes {} must be at most half of ring_buffer_bytes ({}), \
                             or records are lost before the reader is woken",
                            wakeup.get_ref(),
                            ring / 2
                        ),
                    ));
                }
                *wakeup.get_ref()
            }
        };
        let drain_ms = *config.drain_interval_ms.get_ref();
        if !(1..=60_000).contains(&drain_ms) {
            errors.push(options.error_at(
                config.drain_interval_ms.span(),
                format!("drain_interval_ms must be 1 to 60000, got {drain_ms}"),
            ));
        }
        let fallback_ms = *config.fallback_interval_ms.get_ref();
        if !(10..=3_600_000).contains(&fallback_ms) {
            errors.push(options.error_at(
                config.fallback_interval_ms.span(),
                format!("fallback_interval_ms must be 10 to 3600000, got {fallback_ms}"),
            ));
        }
        let files = selection::check(
            config.file_prefixes.as_ref(),
            config.file_paths.as_ref(),
            config.file_basenames.as_ref(),
            &programs,
            options,
            &mut errors,
        );
        let exec_env = exec_env_names(config.exec_env.as_ref(), options, &mut errors);
        let connect_hook =
            match &config.connect_hook {
                None => ConnectHook::default(),
                Some(hook) => match hook.get_ref().as_str() {
                    "cgroup" => ConnectHook::Cgroup,
                    "tracepoint" => ConnectHook::Tracepoint,
                    other => {
                        errors.push(options.error_at(
                            hook.span(),
                            format!("unknown connect_hook `{other}` (known: cgroup, tracepoint)"),
                        ));
                        ConnectHook::default()
                    }
                },
            };
        if let Some(path) = &config.cgroup_path {
            if !path.get_ref().starts_with('/') {
                errors.push(options.error_at(
                    path.span(),
                    format!("cgroup_path must be an absolute path to a cgroup v2 directory, got `{}`", path.get_ref()),
                ));
            }
        }
        let max_bytes = *config.exe_hash_max_bytes.get_ref();
        if !(1..=MAX_EXE_HASH_BYTES).contains(&max_bytes) {
            errors.push(options.error_at(
                config.exe_hash_max_bytes.span(),
                format!("exe_hash_max_bytes must be 1 to {MAX_EXE_HASH_BYTES}, got {max_bytes} (exe_hash = false turns hashing off)"),
            ));
        }
        let wait_ms = *config.exe_hash_wait_ms.get_ref();
        if wait_ms > 1000 {
            errors.push(options.error_at(
                config.exe_hash_wait_ms.span(),
                format!("exe_hash_wait_ms must be 0 to 1000, got {wait_ms}"),
            ));
        }
        let scrub = ScrubOptions::check(config.scrub.as_ref(), options, &mut errors);
        let enforce = config.enforce.as_ref().map(|table| {
            let checked = enforce::config::check(table.get_ref(), options, &mut errors);
            if connect_hook != ConnectHook::Cgroup {
                errors.push(options.error_at(
                    table.span(),
                    "enforce needs connect_hook = \"cgroup\": policy is decided in the cgroup connect hook",
                ));
            }
            if !programs.contains(&Program::Connect) {
                errors.push(options.error_at(table.span(), "enforce needs the `connect` program in `programs`"));
            }
            checked
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EbpfSource {
            settings: LoadSettings {
                programs,
                connect_hook,
                cgroup_path: config.cgroup_path.as_ref().map(|p| p.get_ref().clone()),
                ring_buffer_bytes: u32::try_from(ring).unwrap_or(u32::MAX),
                wakeup_threshold_bytes: wakeup,
                file_prefixes: files.prefixes,
                file_paths: files.paths,
                file_basenames: files.basenames,
                agent_tgid: None,
                exec_env,
            },
            drain_interval: Duration::from_millis(drain_ms),
            fallback_interval: Duration::from_millis(fallback_ms),
            proc_root: PathBuf::from("/proc"),
            forced_fallback: None,
            context: ContextSettings {
                snapshot: config.snapshot,
                exe_hash: config.exe_hash,
                exe_hash_max_bytes: max_bytes,
                exe_hash_wait: Duration::from_millis(wait_ms),
                scrub,
            },
            enforce,
        })
    }

    /// A source with these settings (tests, benches, `hostflow probe`).
    pub fn with_settings(settings: LoadSettings, drain_interval: Duration, fallback_interval: Duration) -> EbpfSource {
        EbpfSource {
            settings,
            drain_interval,
            fallback_interval,
            proc_root: PathBuf::from("/proc"),
            forced_fallback: None,
            context: ContextSettings::default(),
            enforce: None,
        }
    }

    /// The same source enforcing network policy with these settings.
    pub fn with_enforce(mut self, enforce: Option<enforce::EnforceSettings>) -> EbpfSource {
        self.enforce = enforce;
        self
    }

    /// What enforcement is configured, if any.
    pub fn enforce(&self) -> Option<&enforce::EnforceSettings> {
        self.enforce.as_ref()
    }

    /// The same source with these snapshot, hash and scrub settings.
    pub fn with_context(mut self, context: ContextSettings) -> EbpfSource {
        self.context = context;
        self
    }

    /// What the source will load.
    pub fn settings(&self) -> &LoadSettings {
        &self.settings
    }

    /// What the reader adds to events.
    pub fn context(&self) -> &ContextSettings {
        &self.context
    }

    /// Skips loading and runs the `/proc` fallback with this reason, as if
    /// eBPF had failed: for tests of the fallback path on a host where
    /// eBPF works.
    pub fn force_fallback(mut self, reason: impl Into<String>) -> EbpfSource {
        self.forced_fallback = Some(reason.into());
        self
    }
}

#[async_trait]
impl Source for EbpfSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let EbpfSource { settings, drain_interval, fallback_interval, proc_root, forced_fallback, context, enforce } =
            *self;
        let scrubber = crate::procfs::scrub_options::compile(&context.scrub);
        // Load, then gather the host facts around that attempt for /health
        // (the same report `hostflow probe` prints), all off the async workers.
        let enforce_settings = enforce.clone();
        let (outcome, facts, target) = tokio::task::spawn_blocking(move || {
            // The enforced cgroup is resolved first: the programs are
            // loaded with it as a constant, or without enforcement.
            let target =
                enforce_settings.as_ref().map(|e| enforce::resolve::target(e).map_err(|error| error.to_string()));
            let kernel_target = match &target {
                Some(Ok((cgroup, _))) => Some(loader::EnforceTarget { cgroup_id: cgroup.id, level: cgroup.level }),
                _ => None,
            };
            let outcome = match forced_fallback {
                Some(reason) => Err(reason),
                None => loader::load_with(&settings, kernel_target.as_ref()).map_err(|error| error.to_string()),
            };
            let mut outcome = outcome;
            if let (Ok(loaded), Some(enforce)) = (&mut outcome, &enforce_settings) {
                loaded.report.enforcement = Some(probe::enforcement_fact(Some(&enforce.cgroup)));
            }
            let facts = match &outcome {
                Ok(loaded) => probe::report_for(Some(loaded.report.clone()), None),
                Err(reason) => probe::report_for(None, Some(reason.clone())),
            };
            (outcome, facts, target)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("eBPF load task failed: {e}")))?;
        let details = serde_json::to_value(&facts).unwrap_or_else(|error| {
            tracing::warn!(source = %cx.name, %error, "cannot render the eBPF facts for /health");
            serde_json::Value::Null
        });
        cx.health.set_details(details.clone());
        let mut loaded = match outcome {
            Ok(loaded) if loaded.report.running().next().is_some() => loaded,
            Ok(loaded) => {
                let problems = loaded.report.problems().unwrap_or_default();
                let reason = format!("no eBPF program could be attached ({problems})");
                return run_fallback(cx, reason, proc_root, fallback_interval, scrubber).await;
            }
            Err(reason) => return run_fallback(cx, reason, proc_root, fallback_interval, scrubber).await,
        };
        let names = pipeline::event::RuleNames::new();
        let (applier, enforce_problem) = match (enforce, target) {
            (Some(settings), Some(target)) => start_enforcement(&mut loaded, &settings, target, &cx, details, &names),
            _ => (None, None),
        };
        let mut programs_problem = enforce_problem;
        if let Some(problems) = loaded.report.problems() {
            let reason = format!("some eBPF programs are not running: {problems}");
            tracing::warn!(source = %cx.name, %reason, "ebpf source degraded");
            cx.health.set(ComponentState::Degraded, Some(reason.clone()));
            pipeline::diag::emit(&cx.name, "ebpf_partial", reason.clone());
            programs_problem = Some(match programs_problem {
                Some(enforce) => format!("{reason}; {enforce}"),
                None => reason,
            });
        }
        let running: Vec<&str> = loaded.report.running().map(Program::as_str).collect();
        tracing::info!(source = %cx.name, programs = ?running, ring_buffer_bytes = loaded.report.ring_buffer_bytes,
            "eBPF programs attached");
        // `applier` lives until the reader returns; dropping it stops the
        // applier before `loaded` (the programs) goes.
        let slot = cx.health.policy_control().clone();
        let result = reader::run(loaded, cx, drain_interval, context, proc_root, programs_problem, names).await;
        if applier.is_some() {
            slot.unregister();
        }
        result
    }
}

/// Starts the policy applier over the loaded object's policy maps; the
/// applier keeps `details.enforce` in `/health` current. On failure (no
/// cgroup, no cgroup v2, the connect program not running, the state
/// directory unusable) says why — log, `/health` (`degraded` and
/// `details.enforce.error`), an `enforce_unavailable` diag — and returns
/// the reason: the source keeps running without enforcement.
fn start_enforcement(
    loaded: &mut loader::Loaded,
    settings: &enforce::EnforceSettings,
    target: Result<(enforce::resolve::CgroupTarget, PathBuf), String>,
    cx: &SourceContext,
    details: serde_json::Value,
    names: &pipeline::event::RuleNames,
) -> (Option<enforce::applier::Applier>, Option<String>) {
    let publish = {
        let (health, details) = (cx.health.clone(), details);
        move |status: &enforce::Status| {
            let mut details = details.clone();
            if let (Some(object), Ok(value)) = (details.as_object_mut(), serde_json::to_value(status)) {
                object.insert("enforce".into(), value);
            }
            health.set_details(details);
        }
    };
    let connect_running = loaded.report.running().any(|program| program == Program::Connect);
    let started = target.and_then(|(cgroup, mount)| {
        if !connect_running {
            return Err("the connect program is not running".to_owned());
        }
        let maps = loaded.take_policy_maps().map_err(|error| error.to_string())?;
        tracing::info!(source = %cx.name, cgroup = %cgroup.path, cgroup_id = cgroup.id, "network enforcement starting");
        enforce::start(
            settings,
            maps,
            &cx.name,
            Some(mount),
            Some(names.clone()),
            Some(Box::new(publish.clone())),
            Some(cx.health.health().clone()),
        )
        .map_err(|error| error.to_string())
    });
    match started {
        Ok(applier) => {
            // The agent's /policy/* endpoints reach the applier through
            // this slot; `run` unregisters it when the source ends.
            cx.health.policy_control().register(std::sync::Arc::new(applier.handle().clone()));
            (Some(applier), None)
        }
        Err(error) => {
            let reason = format!("network enforcement is not running: {error}");
            tracing::warn!(source = %cx.name, %reason, "ebpf source degraded");
            cx.health.set(ComponentState::Degraded, Some(reason.clone()));
            pipeline::diag::emit(&cx.name, "enforce_unavailable", reason.clone());
            publish(&enforce::Status {
                cgroup: settings.cgroup.clone(),
                error: Some(reason.clone()),
                ..Default::default()
            });
            (None, Some(reason))
        }
    }
}

/// Checks `exec_env`: at most [`records::MAX_ENV_NAMES`] names, each a
/// valid variable name (`[A-Za-z_][A-Za-z0-9_]*`) of 1 to
/// [`records::ENV_NAME_LEN`] bytes, none twice. The kernel compares names
/// byte for byte, so a name it could never match is an error, not a no-op.
fn exec_env_names(
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    options: &ComponentOptions,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some(list) = list else {
        return DEFAULT_EXEC_ENV.iter().map(|name| (*name).to_owned()).collect();
    };
    if list.get_ref().len() > records::MAX_ENV_NAMES {
        errors.push(options.error_at(
            list.span(),
            format!("at most {} exec_env names, got {}", records::MAX_ENV_NAMES, list.get_ref().len()),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for name in list.get_ref() {
        let text = name.get_ref();
        let valid_chars = text
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if text.is_empty() || text.len() > records::ENV_NAME_LEN {
            errors.push(options.error_at(
                name.span(),
                format!("an exec_env name must be 1 to {} bytes, got {}", records::ENV_NAME_LEN, text.len()),
            ));
        } else if !valid_chars {
            errors.push(options.error_at(
                name.span(),
                format!("exec_env name {text:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        } else if names.contains(text) {
            errors.push(options.error_at(name.span(), format!("exec_env name `{text}` is listed twice")));
        } else {
            names.push(text.clone());
        }
    }
    names
}

/// Says why eBPF is not used (log, `/health`, diagnostic), then runs the
/// `/proc` detector until shutdown.
async fn run_fallback(
    cx: SourceContext,
    reason: String,
    proc_root: PathBuf,
    interval: Duration,
    scrubber: std::sync::Arc<crate::scrub::Scrubber>,
) -> Result<(), ComponentError> {
    let reason = format!("eBPF unavailable, running the /proc exec/exit fallback: {reason}");
    tracing::warn!(source = %cx.name, %reason, "ebpf source degraded");
    cx.health.set(ComponentState::Degraded, Some(reason.clone()));
    pipeline::diag::emit(&cx.name, "ebpf_fallback", reason);
    reader::run_fallback(cx, proc_root, interval, scrubber).await
}
