//! `hostflow`: parse the command line, run one command, map its outcome to
//! an exit code. Everything else lives in the library half (`src/lib.rs`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostflow::commands::{self, ReplayOptions, RunOptions};
use hostflow::eval::EvalOptions;
use hostflow::whatif::WhatIfOptions;

mod memory;

/// A host agent built as a streaming engine: sources, transforms and sinks
/// joined by bounded, observable edges, declared in one topology.toml.
#[derive(Debug, Parser)]
#[command(name = "hostflow", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a topology until its sources finish or SIGINT/SIGTERM (which
    /// drains every edge before exiting 0).
    ///
    /// Exit codes: 0 clean stop, 1 a component failed, 66 topology
    /// unreadable, 78 topology invalid.
    Run {
        /// Topology file, or a directory whose `*.toml` files (not
        /// recursive, dotfiles skipped) are merged in name order, like a
        /// `topology.d/`; without it, the default topology compiled into
        /// the binary runs.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write each component's final totals (received, sent, discarded
        /// by reason) and each edge's as JSON to FILE at exit.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Check a topology and report every problem with its line and column;
    /// or, with `--spool DIR`, check every file of an Arrow spool as its
    /// readers and the sink's recovery would, changing nothing; or, with
    /// `--buffer DIR`, every segment of a disk buffer.
    ///
    /// Exit codes: 0 valid, 66 unreadable, 78 invalid topology, 65 a spool
    /// file or buffer segment unreadable, torn or quarantined.
    Validate {
        /// Topology file, or a directory of `*.toml` files merged in name
        /// order (a component defined in two files is an error).
        #[arg(required_unless_present_any = ["spool", "buffer"], conflicts_with_all = ["spool", "buffer"])]
        file: Option<PathBuf>,
        /// An arrow_spool sink's `path`: report every unreadable, torn or
        /// quarantined file by name.
        #[arg(long, value_name = "DIR", conflicts_with = "buffer")]
        spool: Option<PathBuf>,
        /// A disk buffer's directory: report every torn or unreadable
        /// segment and any file that does not belong, changing nothing.
        #[arg(long, value_name = "DIR")]
        buffer: Option<PathBuf>,
    },
    /// Print a topology as a Graphviz DOT graph (e.g. `| dot -Tsvg`).
    Graph {
        /// Topology file, or a directory of `*.toml` files merged in name
        /// order.
        file: PathBuf,
    },
    /// List every component type this binary knows.
    Components,
    /// Report what this host supports for eBPF (BTF, ring buffers,
    /// tracepoints, kprobes, BPF LSM, cgroup v2, privileges) and, per
    /// program, whether the ebpf source would load and attach it, or why
    /// not. Mounts tracefs when it is absent, as the source would.
    ///
    /// Exit codes: 0 every program attaches, 69 eBPF unavailable or partial.
    Probe {
        /// Print the report as JSON (the same document /health shows under
        /// the ebpf source's `details`).
        #[arg(long)]
        json: bool,
    },
    /// Feed an Arrow spool back through a topology: FILE's components read
    /// from a source named `replay` that this command adds, which replays
    /// the spool in (ts_ns, event_id) order and ends when it is read
    /// through. The same spool gives the same output on every run.
    ///
    /// With `--rules NEW --diff OLD` instead of a topology: a rule
    /// what-if. The spool goes through `detect` once per rule set, and the
    /// detections NEW adds or removes are printed per rule (counts and
    /// the first event ids), the same bytes on every run.
    ///
    /// Exit codes: as `run`; the what-if exits 0 whether or not the sets
    /// differ (66 spool missing, 78 a rule set would be refused).
    Replay {
        /// The spool directory: an arrow_spool sink's `path`.
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        /// Topology (file, or directory of `*.toml` files merged in name
        /// order) whose components take `inputs = ["replay"]`. Required
        /// unless `--rules`/`--diff` ask for a what-if.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// `max` (as fast as the topology takes), `realtime` (the recorded
        /// pace), or a factor of it such as `10`.
        #[arg(long, default_value = "max", conflicts_with = "rules")]
        speed: String,
        /// Write each component's final totals as JSON to FILE at exit.
        #[arg(long, value_name = "FILE", conflicts_with = "rules")]
        report: Option<PathBuf>,
        /// What-if: the candidate rule set (a directory, a file, or
        /// `builtin`), compared with `--diff`.
        #[arg(long, value_name = "NEW", requires = "diff", conflicts_with = "config")]
        rules: Option<PathBuf>,
        /// What-if: the rule set NEW is compared with (e.g. the one
        /// running now).
        #[arg(long, value_name = "OLD", requires = "rules")]
        diff: Option<PathBuf>,
        /// What-if: print the difference as JSON.
        #[arg(long, requires = "rules")]
        json: bool,
    },
    /// Replay a labelled corpus (DIR/spool, DIR/labels.json) through the
    /// detection rules and score them: per confidence class precision,
    /// recall and false alerts per 1000 benign events, per scenario and
    /// per rule hits, misses and false alerts; then hold the figures to
    /// the quality gate.
    ///
    /// Exit codes: 0 gate met, 3 gate not met (the failing thresholds are
    /// printed), 1 the detection pass failed, 65 bad labels.json, 66
    /// corpus unreadable, 78 bad gate file or rule set.
    Eval {
        /// The corpus directory: `spool/` (an arrow_spool sink's
        /// directory), `labels.json`, optionally `baseline.json` (an L3
        /// baseline, imported frozen).
        #[arg(long, value_name = "DIR")]
        corpus: PathBuf,
        /// A rule directory or file; `builtin` is the compiled-in pack.
        #[arg(long, value_name = "DIR", default_value = "builtin")]
        rules: PathBuf,
        /// The gate's thresholds (TOML); default: the compiled-in
        /// `testbed/quality-gate.toml`.
        #[arg(long, value_name = "FILE")]
        gate: Option<PathBuf>,
        /// Write the JSON report to FILE (`-`: stdout, the summary then
        /// goes to stderr).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Append one NDJSON line per run (date, rule set, corpus,
        /// per-class precision and recall, pass/fail) to FILE.
        #[arg(long, value_name = "FILE")]
        trend: Option<PathBuf>,
        /// Shuffle the events within windows of MS milliseconds of event
        /// time before the replay: within detect's reorder window (300 ms)
        /// the report must not change.
        #[arg(long, value_name = "MS")]
        shuffle_within: Option<u64>,
        /// The shuffle's seed.
        #[arg(long, value_name = "N", default_value_t = 1, requires = "shuffle_within")]
        seed: u64,
    },
    /// Detection rules: `hostflow rules check DIR` loads every rule file
    /// under DIR as the `detect` transform would and reports, per file,
    /// what loaded or every problem with its line and rule id.
    ///
    /// Exit codes: 0 everything loads, 65 the set loads but Sigma rules
    /// were rejected as unsupported (listed), 78 the set has problems and
    /// would be refused.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Network policy (issue #17): `check` a policy file or directory,
    /// `keygen`, `sign` and `verify` signed bundles, and ask the running
    /// agent to `rollback` or `clear --emergency`.
    Policy {
        #[command(subcommand)]
        command: hostflow::policy_cli::PolicyCommand,
    },
    /// The policy audit log: `verify FILE` checks its hash chain and names
    /// the first edited, removed or moved line.
    Audit {
        #[command(subcommand)]
        command: hostflow::policy_cli::AuditCommand,
    },
    /// Print the running agent's loss ledger (`GET /ledger`): for every
    /// component, buffer and edge, where its events are, from one
    /// consistent cut, with the biggest loss and the longest wait.
    ///
    /// Exit codes: 0 balanced, 1 an identity does not hold, 69 no agent API.
    Ledger {
        /// The agent's API address.
        #[arg(long, value_name = "ADDR", default_value = hostflow::policy_cli::DEFAULT_API)]
        api: String,
        /// Print the JSON document as the agent sent it.
        #[arg(long)]
        json: bool,
    },
    /// Run SQL over an Arrow spool (one table per event kind). This runs
    /// the `hostflow-query` binary next to this one with the same
    /// arguments: the agent itself carries no SQL engine.
    /// `hostflow query --help` shows its options.
    ///
    /// Exit codes: 0 answered, 1 failed while running, 65 bad SQL, 66 spool
    /// missing or empty, 127 `hostflow-query` not found.
    #[command(disable_help_flag = true)]
    Query {
        /// Arguments for `hostflow-query`, e.g. `--spool DIR "SQL"`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Load and compile DIR (native rule files and Sigma rules); report per
    /// file.
    Check {
        /// A directory searched recursively for `*.yml` / `*.yaml`, or one
        /// file.
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Run { config, report } => {
            memory::tune_for_long_run();
            commands::run(&RunOptions { config, report })
        }
        Command::Validate { file, spool, buffer } => match (file, spool, buffer) {
            (_, Some(spool), _) => hostflow::spool_check::validate_spool(&spool),
            (_, _, Some(buffer)) => hostflow::buffer_check::validate_buffer(&buffer),
            (Some(file), None, None) => commands::validate(&file),
            (None, None, None) => commands::Outcome::BadInput, // clap requires one
        },
        Command::Graph { file } => commands::graph(&file),
        Command::Components => commands::components(),
        Command::Probe { json } => commands::probe(json),
        Command::Replay { spool, config, speed, report, rules, diff, json } => match (config, rules, diff) {
            (_, Some(new), Some(old)) => hostflow::whatif::what_if(&WhatIfOptions { spool, new, old, json }),
            (Some(config), _, _) => commands::replay(&ReplayOptions { spool, config, speed, report }),
            _ => {
                use clap::CommandFactory as _;
                let message = "`replay` needs --config FILE (a topology whose components read from `replay`), \
                               or --rules NEW --diff OLD (a rule what-if)";
                Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
            }
        },
        Command::Eval { corpus, rules, gate, report, trend, shuffle_within, seed } => {
            hostflow::eval::eval(&EvalOptions {
                corpus,
                rules,
                gate,
                report,
                trend,
                shuffle_within_ms: shuffle_within,
                seed,
            })
        }
        Command::Query { args } => commands::query(&args),
        Command::Rules { command: RulesCommand::Check { dir, json } } => hostflow::rules::check(&dir, json),
        Command::Policy { command } => hostflow::policy_cli::policy(command),
        Command::Ledger { api, json } => hostflow::ledger_cli::ledger(&api, json),
        Command::Audit { command } => hostflow::policy_cli::audit(command),
    };
    ExitCode::from(outcome.exit_code())
}

/// Logs go to stderr; `HOSTFLOW_LOG` (e.g. `debug`, `pipeline=trace`)
/// overrides the default `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
