//! What each CLI command does, as plain functions returning an [`Outcome`]
//! that `main` maps to an exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use pipeline::api::ApiServer;
use pipeline::health::Health;
use pipeline::metrics::RunReport;
use pipeline::{ConfigErrors, Role, SourceFile, Topology, TopologySource};

use crate::registry::COMPONENTS;

/// How a command ended; each has its own exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// The topology has problems (already printed). Exit 78 (`EX_CONFIG`).
    InvalidConfig,
    /// The topology file cannot be read. Exit 66 (`EX_NOINPUT`).
    Unreadable,
    /// The run failed after start (already printed). Exit 1.
    RunFailed,
    /// The input given on the command line is wrong, e.g. SQL that does not
    /// parse (already printed). Exit 65 (`EX_DATAERR`).
    BadInput,
    /// What was asked for is not available on this host (`probe`: eBPF
    /// cannot be used as configured). Exit 69 (`EX_UNAVAILABLE`).
    Unavailable,
    /// A companion binary (`hostflow-query`) is not installed. Exit 127, as
    /// a shell says for a command it cannot find.
    CompanionMissing,
    /// `hostflow eval` ran to its end and the quality gate is not met
    /// (which threshold, with the figures, already printed). Exit 3: not 1,
    /// so CI can tell a failed gate from an evaluation that could not run.
    GateFailed,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::RunFailed => 1,
            Outcome::GateFailed => 3,
            Outcome::BadInput => 65,
            Outcome::Unavailable => 69,
            Outcome::Unreadable => 66,
            Outcome::InvalidConfig => 78,
            Outcome::CompanionMissing => 127,
        }
    }
}

/// The SQL engine's binary, run by `hostflow query`.
pub const QUERY_BINARY: &str = "hostflow-query";

/// `hostflow query ARGS`: replaces this process with `hostflow-query ARGS`,
/// looked up next to this executable first (a build's `target/release/`,
/// or an install's bin directory), then on `PATH` — git's way of keeping
/// subcommands in their own binaries, so the agent stays lean.
pub fn query(args: &[std::ffi::OsString]) -> Outcome {
    use std::os::unix::process::CommandExt as _;
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(QUERY_BINARY)));
    let program = match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(QUERY_BINARY),
    };
    let error = std::process::Command::new(&program).args(args).exec();
    if error.kind() == std::io::ErrorKind::NotFound {
        eprintln!("error: `{QUERY_BINARY}` is not installed next to hostflow or on PATH");
        eprintln!(
            "hint: build it with `cargo build --release -p {QUERY_BINARY}` (or run `cargo run --release -p {QUERY_BINARY} -- ARGS`)"
        );
        return Outcome::CompanionMissing;
    }
    eprintln!("error: cannot run {}: {error}", program.display());
    Outcome::RunFailed
}

/// Reads a topology: a file, or a config directory whose `*.toml` files are
/// merged in name order (see [`pipeline::config::read`]); the embedded
/// default when `path` is `None`.
pub fn read_topology(path: Option<&Path>) -> Result<TopologySource, Outcome> {
    match path {
        None => Ok(SourceFile::new(crate::DEFAULT_TOPOLOGY_NAME, crate::DEFAULT_TOPOLOGY).into()),
        Some(path) => pipeline::config::read(path).map_err(|error| {
            eprintln!("{}: error: {error}", error.path().display());
            Outcome::Unreadable
        }),
    }
}

/// Parses, checks and builds a topology, printing every problem.
pub fn load(source: TopologySource) -> Result<Topology, Outcome> {
    let name = source.name().to_owned();
    let loaded = pipeline::load(source, COMPONENTS).map(|mut topology| {
        // Disk buffers store batches in the spool's Arrow encoding.
        topology.batch_codec = Some(std::sync::Arc::new(crate::buffer_codec::ArrowBatchCodec::new()));
        topology
    });
    loaded.map_err(|ConfigErrors(errors)| {
        for error in &errors {
            eprintln!("{error}");
        }
        let noun = if errors.len() == 1 { "problem" } else { "problems" };
        eprintln!("{name}: {} {noun} found; nothing was started", errors.len());
        Outcome::InvalidConfig
    })
}

/// `hostflow validate FILE|DIR`.
pub fn validate(path: &Path) -> Outcome {
    let source = match read_topology(Some(path)) {
        Ok(source) => source,
        Err(outcome) => return outcome,
    };
    match load(source) {
        Ok(topology) => {
            let count = |role| topology.nodes.iter().filter(|n| n.role == role).count();
            println!(
                "{}: ok ({} sources, {} transforms, {} sinks)",
                path.display(),
                count(Role::Source),
                count(Role::Transform),
                count(Role::Sink)
            );
            Outcome::Success
        }
        Err(outcome) => outcome,
    }
}

/// `hostflow graph FILE|DIR`.
pub fn graph(path: &Path) -> Outcome {
    let source = match read_topology(Some(path)) {
        Ok(source) => source,
        Err(outcome) => return outcome,
    };
    match load(source) {
        Ok(topology) => {
            print!("{}", topology.to_dot());
            Outcome::Success
        }
        Err(outcome) => outcome,
    }
}

/// `hostflow components`.
pub fn components() -> Outcome {
    for role in [Role::Source, Role::Transform, Role::Sink] {
        println!("{}:", role.section());
        for spec in COMPONENTS.iter().filter(|spec| spec.role() == role) {
            println!("  {:<12} {}", spec.type_name, spec.summary);
        }
    }
    Outcome::Success
}

/// `hostflow probe`: what this host supports for eBPF and what the `ebpf`
/// source would load (it loads and attaches the default programs, then
/// detaches them). Exit 0 when every program attaches, 69 otherwise — the
/// agent still runs then, on the /proc fallback or with fewer programs.
pub fn probe(json: bool) -> Outcome {
    let report = sources::ebpf::probe(&sources::ebpf::LoadSettings::default());
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("error: cannot render the probe report as JSON: {error}");
                return Outcome::RunFailed;
            }
        }
    } else {
        print!("{report}");
    }
    let all_attached = !report.programs.is_empty()
        && report.programs.iter().all(|program| matches!(program.fact, sources::ebpf::probe::Fact::Ok(_)));
    if all_attached {
        Outcome::Success
    } else {
        Outcome::Unavailable
    }
}

/// Options of `hostflow run`.
#[derive(Debug, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    /// Where to write the final per-component totals as JSON.
    pub report: Option<PathBuf>,
}

/// `hostflow run`: everything is checked before anything starts; then the
/// API comes up, sinks open, sources start; SIGINT/SIGTERM drains.
pub fn run(options: &RunOptions) -> Outcome {
    match read_topology(options.config.as_deref()) {
        Ok(source) => run_topology_file(source, options.report.as_deref()),
        Err(outcome) => outcome,
    }
}

/// Options of `hostflow replay`.
#[derive(Debug)]
pub struct ReplayOptions {
    /// The spool directory to read.
    pub spool: PathBuf,
    /// The topology whose components read from `replay`.
    pub config: PathBuf,
    /// `max`, `realtime` or a factor such as `2.5`.
    pub speed: String,
    /// Where to write the final per-component totals as JSON.
    pub report: Option<PathBuf>,
}

/// The name of the source `hostflow replay` adds to the topology.
pub const REPLAY_SOURCE: &str = "replay";

/// `hostflow replay`: the topology in `config`, plus a `[sources.replay]`
/// reading `spool`, run until the spool is read through and every edge has
/// drained.
///
/// The source is appended to the file's text (to the last file's, for a
/// config directory; after its last line, so every line and column in a
/// message about the user's files stays true) rather than spliced into the
/// parsed tree: the topology then goes through exactly the checks
/// `hostflow run` makes.
pub fn replay(options: &ReplayOptions) -> Outcome {
    let source = match read_topology(Some(&options.config)) {
        Ok(source) => source,
        Err(outcome) => return outcome,
    };
    let defines_replay = |source_file: &&Arc<SourceFile>| {
        toml::from_str::<toml::Table>(source_file.text)
            .ok()
            .and_then(|table| table.get("sources")?.as_table()?.get(REPLAY_SOURCE).cloned())
            .is_some()
    };
    if let Some(source_file) = source.files().iter().find(defines_replay) {
        eprintln!(
            "{}: error: the topology already defines [sources.{REPLAY_SOURCE}]; `hostflow replay` adds that source \
             itself from --spool",
            source_file.name
        );
        eprintln!("hint: remove it, or run the file with `hostflow run --config` (its replay source then says `path`)");
        return Outcome::InvalidConfig;
    }
    let source = source.with_appended(&replay_source_text(&options.spool, &options.speed, None));
    run_topology_file(source, options.report.as_deref())
}

/// The `[sources.replay]` table `hostflow replay` appends to a topology
/// (`hostflow eval` and the rule what-if append the same one): `spool` read
/// at `speed`, as an Arrow spool unless `format` says otherwise
/// (`"ndjson"`).
pub fn replay_source_text(spool: &Path, speed: &str, format: Option<&str>) -> String {
    let speed = match speed.parse::<f64>() {
        Ok(_) => speed.to_owned(),
        Err(_) => toml::Value::String(speed.to_owned()).to_string(),
    };
    let path = toml::Value::String(spool.display().to_string()).to_string();
    let format = format.map(|f| format!("format = {}\n", toml::Value::String(f.to_owned()))).unwrap_or_default();
    format!("\n# added by `hostflow replay`\n[sources.{REPLAY_SOURCE}]\ntype = \"replay\"\npath = {path}\nspeed = {speed}\n{format}")
}

/// Runs a topology to its end inside this process and returns its totals:
/// for commands that use a topology as a tool (`eval`, the rule what-if)
/// and read what its sinks wrote. No API, no metrics recorder (nothing
/// scrapes it), no signal handling beyond the default; problems are
/// printed as `run` prints them.
pub fn run_to_end(source: TopologySource) -> Result<RunReport, Outcome> {
    let topology = load(source)?;
    let result = (|| -> anyhow::Result<RunReport> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("hostflow-worker")
            .build()
            .context("starting the async runtime")?;
        let (trigger, _signal) = pipeline::shutdown_channel();
        Ok(runtime.block_on(pipeline::runtime::run(topology, trigger, Health::default()))?)
    })();
    result.map_err(|error| {
        eprintln!("error: {error:#}");
        Outcome::RunFailed
    })
}

/// Builds and runs one topology to its end; shared by `run` and `replay`.
fn run_topology_file(source: TopologySource, report_path: Option<&Path>) -> Outcome {
    // The recorder comes first: components register their metric handles
    // when they are built, and a handle made before the recorder exists
    // would count into nothing.
    let prometheus = match install_recorder() {
        Ok(prometheus) => prometheus,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Outcome::RunFailed;
        }
    };
    let topology = match load(source) {
        Ok(topology) => topology,
        Err(outcome) => return outcome,
    };
    let result = (|| -> anyhow::Result<RunReport> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("hostflow-worker")
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run_topology(topology, prometheus))
    })();
    match result {
        Ok(report) => {
            log_report(&report);
            if let Some(path) = report_path {
                if let Err(error) = write_report(path, &report) {
                    eprintln!("error: {error:#}");
                    return Outcome::RunFailed;
                }
            }
            Outcome::Success
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            if let (Some(path), Some(pipeline::runtime::RunError::ComponentsFailed { report, .. })) =
                (report_path, error.downcast_ref::<pipeline::runtime::RunError>())
            {
                log_report(report);
                if let Err(error) = write_report(path, report) {
                    eprintln!("error: {error:#}");
                }
            }
            Outcome::RunFailed
        }
    }
}

fn install_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(pipeline::metrics::LATENCY_BUCKETS_SECONDS)
        .context("configuring the metrics recorder")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    pipeline::metrics::describe_all();
    Ok(prometheus)
}

async fn run_topology(
    topology: Topology,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<RunReport> {
    let health = Health::default();
    let api = match topology.api.enabled {
        true => {
            let server = ApiServer::start(topology.api.address, prometheus, health.clone()).await?;
            tracing::info!(address = %server.local_addr(), "serving /metrics and /health");
            Some(server)
        }
        false => None,
    };
    let (trigger, _signal) = pipeline::shutdown_channel();
    let signal_task = tokio::spawn(watch_signals(trigger.clone()));
    tracing::info!(components = topology.nodes.len(), topology = %topology.source.name(), "starting");
    let result = pipeline::runtime::run(topology, trigger, health).await;
    signal_task.abort();
    if let Some(api) = api {
        api.shutdown();
    }
    Ok(result?)
}

/// First SIGINT/SIGTERM: stop sources and drain. Second: exit at once
/// (code 130), for an operator who would rather lose the in-flight events
/// than wait for a stuck sink.
async fn watch_signals(trigger: pipeline::ShutdownTrigger) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::warn!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    for round in 0.. {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        if round == 0 {
            tracing::info!(signal = name, "stopping sources and draining every edge; send again to exit at once");
            trigger.trigger();
        } else {
            tracing::warn!(signal = name, "second signal: exiting without draining");
            std::process::exit(130);
        }
    }
}

fn log_report(report: &RunReport) {
    for (name, component) in &report.components {
        tracing::info!(
            component = %name,
            kind = component.role.noun(),
            received = component.received,
            sent = component.sent,
            discarded = component.discarded_total(),
            "totals"
        );
    }
}

fn write_report(path: &Path, report: &RunReport) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report).context("encoding the run report")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing the run report to {}", path.display()))
}
