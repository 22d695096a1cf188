//! `hostflow-query`: parse the command line, answer one query, map the
//! outcome to an exit code. `hostflow query ARGS` runs this binary with the
//! same arguments when it sits next to `hostflow` (git-style), so both
//! spellings behave the same.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hostflow_query::{Format, QueryOptions, TimeRange};

/// Run SQL over an Arrow spool: one table per event kind
/// (process_sample, sketch, process_exec, …).
///
/// Example: hostflow-query "SELECT name, count(*) AS samples, max(rss_bytes)
/// FROM process_sample GROUP BY name ORDER BY samples DESC LIMIT 10"
///
/// Every table has a `time` column (UTC: ts_ns plus the file's wall-clock
/// anchor); --since/--until keep the rows in [since, until) of every table.
///
/// Exit codes: 0 answered, 1 failed while running, 2 bad flag, 65 bad SQL
/// or an empty --since/--until range, 66 spool missing or empty.
#[derive(Debug, Parser)]
#[command(name = "hostflow query", version, about, long_about = None)]
struct Cli {
    /// The spool directory: an arrow_spool sink's `path`.
    #[arg(long, value_name = "DIR", default_value = "data/spool")]
    spool: PathBuf,
    /// List the tables with their files, rows, and ts_ns and UTC range.
    #[arg(long, conflicts_with = "sql")]
    tables: bool,
    /// Only rows at or after this time, RFC 3339 (e.g. 2026-12-03T14:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = hostflow_query::parse_rfc3339)]
    since: Option<i64>,
    /// Only rows before this time, RFC 3339 (e.g. 2026-12-03T14:05:00Z).
    #[arg(long, value_name = "TIME", value_parser = hostflow_query::parse_rfc3339)]
    until: Option<i64>,
    /// How to print the answer.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// The SQL query.
    #[arg(required_unless_present = "tables")]
    sql: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let Cli { spool, tables, format, since, until, sql } = cli;
    let range = TimeRange { since, until };
    let outcome = hostflow_query::query(&QueryOptions { spool, sql, tables, format, range });
    ExitCode::from(outcome.exit_code())
}
