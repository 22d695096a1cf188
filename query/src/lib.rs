//! `hostflow-query` (and `hostflow query`, which runs it): SQL over the
//! Arrow spool with DataFusion. It is its own binary so that the agent that
//! runs on every host carries no SQL engine (issue #12: DataFusion, sqlparser
//! and arrow's compute kernels were ~60 % of the agent's code pages).
//!
//! Every event kind of `schemas::KINDS` is a table, whether or not the spool
//! holds files of it (an empty table answers a query with no rows, which is
//! what an operator asking "any net_connect?" expects, not "no such table").
//! A table is the kind's *finished* files, listed in write order through
//! `schemas::spool`, with the kind's schema from `schemas::arrow` — never
//! inferred, so a stray file with another layout is refused, not merged.
//!
//! Unreadable files are named and skipped, never fatal: each file's footer,
//! schema and every declared length are checked before it joins a table
//! (`schemas::spool::verify_file`: footer and batch headers only, no
//! decompression), and if the query still fails while reading — a corrupt
//! buffer in the middle of a file — every file is read through once, the bad
//! ones are dropped, and the query runs again.
//!
//! Wall-clock time: every table also has a `time` column,
//! `Timestamp(Nanosecond, "UTC")`, which is the row's `ts_ns` (CLOCK_BOOTTIME)
//! plus its file's wall-clock anchor (`schemas::spool::WALL_CLOCK_ANCHOR_KEY`);
//! rows of files written before the spool recorded an anchor have a null
//! `time` (one warning says how many files). `--since` / `--until` take RFC
//! 3339 timestamps and filter every table to `since <= time < until`
//! (`provider.rs`, `time.rs`); plain SQL can compare `time` with a string
//! literal too (`WHERE time >= '2026-12-03T14:00:00Z'`).

mod provider;
mod time;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt as _;

pub use provider::{TimeRange, TIME_COLUMN};
pub use time::{format_rfc3339, parse_rfc3339};

use provider::SpoolFile;

/// How a query ended; the process exit code follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Failed while running (already printed). Exit 1.
    RunFailed,
    /// The SQL or a flag is wrong (already printed). Exit 65 (`EX_DATAERR`).
    BadInput,
    /// The spool is missing or empty. Exit 66 (`EX_NOINPUT`).
    Unreadable,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::RunFailed => 1,
            Outcome::BadInput => 65,
            Outcome::Unreadable => 66,
        }
    }
}

/// How `hostflow query` prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table (the whole answer is held to size the columns).
    Table,
    /// CSV with a header line, streamed.
    Csv,
    /// One JSON object per row, streamed.
    Ndjson,
}

/// What `hostflow query` was asked.
#[derive(Debug)]
pub struct QueryOptions {
    /// The spool directory (the `path` of an `arrow_spool` sink).
    pub spool: PathBuf,
    /// The SQL to run; `None` with `tables`.
    pub sql: Option<String>,
    /// List the tables instead of running SQL.
    pub tables: bool,
    pub format: Format,
    /// Only rows with `since <= time < until` (UTC ns), in every table.
    pub range: TimeRange,
}

/// One event kind's table: its schema and the files that make it.
struct Table {
    kind: &'static str,
    schema: SchemaRef,
    files: Vec<SpoolFile>,
    /// Files still being written (`.arrow.tmp`): not queryable yet.
    in_progress: usize,
}

/// `hostflow query`.
pub fn query(options: &QueryOptions) -> Outcome {
    if let TimeRange { since: Some(since), until: Some(until) } = options.range {
        if since >= until {
            eprintln!(
                "error: --since {} is not before --until {}: the range [since, until) is empty",
                format_rfc3339(since),
                format_rfc3339(until)
            );
            return Outcome::BadInput;
        }
    }
    let mut tables = match discover(&options.spool) {
        Ok(tables) => tables,
        Err(outcome) => return outcome,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return Outcome::RunFailed;
        }
    };
    if options.tables {
        return runtime.block_on(list_tables(&tables, options.range));
    }
    let Some(sql) = options.sql.as_deref() else {
        eprintln!("error: give a SQL query, or --tables to list the tables");
        return Outcome::BadInput;
    };
    for attempt in 0..2 {
        match runtime.block_on(run_sql(&tables, sql, options.format, options.range)) {
            Ok(()) => return Outcome::Success,
            Err(QueryError::Plan(error)) => {
                eprintln!("error: {}", one_line(&error));
                eprintln!("tables: {}", tables.iter().map(|t| t.kind).collect::<Vec<_>>().join(", "));
                eprintln!(
                    "hint: `hostflow query --spool {} --tables` lists them with row counts",
                    options.spool.display()
                );
                return Outcome::BadInput;
            }
            Err(QueryError::Output(error)) => {
                // stdout closed (e.g. `| head`): not our failure.
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    return Outcome::Success;
                }
                eprintln!("error: writing the answer: {error}");
                return Outcome::RunFailed;
            }
            Err(QueryError::Execution(error)) if attempt == 0 && drop_unreadable(&mut tables) > 0 => {
                tracing::debug!(%error, "query failed on an unreadable file; running it again without");
            }
            Err(QueryError::Execution(error)) => {
                eprintln!("error: {}", one_line(&error));
                if matches!(options.format, Format::Csv) && error.to_string().contains("not support") {
                    eprintln!("hint: CSV has no list type; use --format ndjson, or select other columns");
                }
                return Outcome::RunFailed;
            }
        }
    }
    Outcome::RunFailed
}

/// Runs `sql` over the spool at `spool` and returns the whole answer: the
/// query command without its printing, for benches and tests.
pub fn answer(spool: &Path, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let tables = discover(spool).map_err(|outcome| format!("spool {}: {outcome:?}", spool.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime
        .block_on(async { session(&tables, TimeRange::default())?.sql(sql).await?.collect().await })
        .map_err(|error| one_line(&error))
}

/// Lists every kind's finished files, dropping (with a warning) the ones
/// whose footer or schema is wrong.
fn discover(spool: &Path) -> Result<Vec<Table>, Outcome> {
    match std::fs::metadata(spool) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            eprintln!("error: {} is not a directory; --spool takes an arrow_spool sink's `path`", spool.display());
            return Err(Outcome::Unreadable);
        }
        Err(error) => {
            eprintln!("error: cannot open spool directory {}: {error}", spool.display());
            eprintln!("hint: `hostflow run` with the default topology writes to data/spool in the working directory");
            return Err(Outcome::Unreadable);
        }
    }
    // The scan addresses files by absolute path.
    let spool = &std::path::absolute(spool).unwrap_or_else(|_| spool.to_owned());
    let mut tables = Vec::new();
    let mut n_unanchored = 0;
    for &kind in schemas::KINDS {
        let Some(schema) = schemas::schema_for(kind) else { continue };
        let listed = match schemas::spool::finished_files(spool, kind) {
            Ok(listed) => listed,
            Err(error) => {
                eprintln!("error: cannot list {}: {error}", spool.join(kind).display());
                return Err(Outcome::Unreadable);
            }
        };
        let mut files = Vec::new();
        for (_, path) in listed {
            let summary = schemas::spool::verify_file(&path, &schema);
            let size = std::fs::metadata(&path).map(|meta| meta.len());
            match (summary, size) {
                (Ok(summary), Ok(size)) => {
                    n_unanchored += usize::from(summary.wall_clock_anchor_ns.is_none());
                    files.push(SpoolFile { path, size, anchor_ns: summary.wall_clock_anchor_ns });
                }
                (Err(reason), _) => {
                    tracing::warn!(file = %path.display(), %reason, "skipping an unreadable spool file");
                }
                (_, Err(error)) => {
                    tracing::warn!(file = %path.display(), %error, "skipping an unreadable spool file");
                }
            }
        }
        let in_progress = count_in_progress(&spool.join(kind), kind);
        tables.push(Table { kind, schema, files, in_progress });
    }
    if tables.iter().all(|table| table.files.is_empty()) {
        let writing = tables.iter().map(|t| t.in_progress).sum::<usize>();
        eprintln!("error: spool directory {} holds no finished Arrow files", spool.display());
        if writing > 0 {
            eprintln!(
                "hint: {writing} file(s) are still being written; they become queryable when the sink rotates them \
                 (max_file_age_secs) or stops"
            );
        } else {
            eprintln!("hint: is this the `path` of an arrow_spool sink? Files live under <path>/<kind>/");
        }
        return Err(Outcome::Unreadable);
    }
    if n_unanchored > 0 {
        tracing::warn!(
            "{n_unanchored} spool file(s) have no wall-clock anchor (written before the spool recorded one): their rows \
             have a null `time` and no --since/--until range includes them"
        );
    }
    Ok(tables)
}

/// Reads `path` through, decoding every batch.
fn check_body(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = FileReader::try_new(std::io::BufReader::new(file), None).map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Drops every file that does not read through; returns how many.
fn drop_unreadable(tables: &mut [Table]) -> usize {
    let mut dropped = 0;
    for table in tables {
        table.files.retain(|file| match check_body(&file.path) {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(file = %file.path.display(), %reason, "skipping an unreadable spool file");
                dropped += 1;
                false
            }
        });
    }
    dropped
}

fn count_in_progress(dir: &Path, kind: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".arrow.tmp") && schemas::spool::parse_seq(kind, &name).is_some()
        })
        .count()
}

enum QueryError {
    /// The SQL does not parse or plan: the user's to fix.
    Plan(DataFusionError),
    /// Failed while reading or computing.
    Execution(DataFusionError),
    /// Could not write to stdout.
    Output(std::io::Error),
}

/// A session with one table per kind: the kind's columns and `time`, rows
/// within `range`.
fn session(tables: &[Table], range: TimeRange) -> Result<SessionContext, DataFusionError> {
    let ctx = SessionContext::new();
    for table in tables {
        let view = provider::view(&ctx, &table.schema, &table.files, range)?;
        ctx.register_table(table.kind, view.into_view())?;
    }
    Ok(ctx)
}

async fn run_sql(tables: &[Table], sql: &str, format: Format, range: TimeRange) -> Result<(), QueryError> {
    let ctx = session(tables, range).map_err(QueryError::Execution)?;
    let frame = ctx.sql(sql).await.map_err(QueryError::Plan)?;
    let mut stream = frame.execute_stream().await.map_err(QueryError::Execution)?;
    let stdout = std::io::stdout();
    match format {
        Format::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                batches.push(batch.map_err(QueryError::Execution)?);
            }
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| QueryError::Execution(e.into()))?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let mut out = stdout.lock();
            writeln!(out, "{text}").map_err(QueryError::Output)?;
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" }).map_err(QueryError::Output)?;
        }
        Format::Csv => {
            let mut writer =
                datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(std::io::BufWriter::new(stdout));
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::Execution)?;
                writer.write(&batch).map_err(arrow_write_error)?;
            }
            writer.into_inner().flush().map_err(QueryError::Output)?;
        }
        Format::Ndjson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(std::io::BufWriter::new(stdout));
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::Execution)?;
                writer.write(&batch).map_err(arrow_write_error)?;
            }
            writer.finish().map_err(arrow_write_error)?;
            writer.into_inner().flush().map_err(QueryError::Output)?;
        }
    }
    Ok(())
}

/// An Arrow writer's error: an I/O failure of stdout, or a type the format
/// cannot write.
fn arrow_write_error(error: datafusion::arrow::error::ArrowError) -> QueryError {
    match error {
        datafusion::arrow::error::ArrowError::IoError(_, io) => QueryError::Output(io),
        other => QueryError::Execution(other.into()),
    }
}

/// `--tables`: each table with its files, rows and `ts_ns` and UTC range
/// (within `--since` / `--until`).
async fn list_tables(tables: &[Table], range: TimeRange) -> Outcome {
    let ctx = match session(tables, range) {
        Ok(ctx) => ctx,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            return Outcome::RunFailed;
        }
    };
    println!(
        "{:<18} {:>6} {:>12} {:>20} {:>20} {:>30} {:>30}",
        "table", "files", "rows", "first_ts_ns", "last_ts_ns", "first_time_utc", "last_time_utc"
    );
    for table in tables {
        let sql = format!("SELECT count(*), min(ts_ns), max(ts_ns), min(time), max(time) FROM {}", table.kind);
        let stats = match ctx.sql(&sql).await {
            Ok(frame) => frame.collect().await,
            Err(error) => Err(error),
        };
        let (rows, first, last, first_time, last_time) = match stats.as_deref().map(summary) {
            Ok(Some(summary)) => summary,
            Ok(None) => (0, None, None, None, None),
            Err(error) => {
                eprintln!("error: reading table {}: {}", table.kind, one_line(error));
                return Outcome::RunFailed;
            }
        };
        let show = |ts: Option<u64>| ts.map_or_else(|| "-".to_owned(), |ts| ts.to_string());
        let show_time = |ns: Option<i64>| ns.map_or_else(|| "-".to_owned(), format_rfc3339);
        let writing = match table.in_progress {
            0 => String::new(),
            n => format!("  (+{n} being written)"),
        };
        println!(
            "{:<18} {:>6} {:>12} {:>20} {:>20} {:>30} {:>30}{writing}",
            table.kind,
            table.files.len(),
            rows,
            show(first),
            show(last),
            show_time(first_time),
            show_time(last_time)
        );
    }
    Outcome::Success
}

/// The `--tables` figures of one table: rows, first and last `ts_ns`,
/// first and last `time`.
type Summary = (i64, Option<u64>, Option<u64>, Option<i64>, Option<i64>);

/// The figures out of the one-row answer of the `--tables` query.
fn summary(batches: &[RecordBatch]) -> Option<Summary> {
    use datafusion::arrow::array::{Array, Int64Array, TimestampNanosecondArray, UInt64Array};
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let rows = batch.column(0).as_any().downcast_ref::<Int64Array>()?.value(0);
    let ts = |column: usize| {
        let array = batch.column(column).as_any().downcast_ref::<UInt64Array>()?;
        (!array.is_null(0)).then(|| array.value(0))
    };
    let time = |column: usize| {
        let array = batch.column(column).as_any().downcast_ref::<TimestampNanosecondArray>()?;
        (!array.is_null(0)).then(|| array.value(0))
    };
    Some((rows, ts(1), ts(2), time(3), time(4)))
}

/// DataFusion's message without its trailing newlines or backtrace hint.
fn one_line(error: &DataFusionError) -> String {
    error.to_string().trim_end().to_owned()
}
