//! `replay`: reads an Arrow spool (or an NDJSON corpus) back as a source,
//! so a recorded day can be run through other transforms and sinks.
//!
//! Events come back as they were recorded, recorded `event_id` and `ts_ns`
//! included (replay assigns nothing), field for field: the Arrow decoder
//! ([`decode_batch`], `arrow.rs`) inverts the spool sink's encoder exactly;
//! the NDJSON decoder ([`decode_line`], `ndjson.rs`) inverts the `file`
//! sink's lines, exactly except for non-finite floats (see there).
//!
//! Order: an Arrow spool is merged across kinds by (`ts_ns`, `event_id`);
//! an NDJSON corpus is read in file order (`reader.rs` says why, and what
//! happens with unsorted input). Either way the same input gives the same
//! events in the same batches on every run.
//!
//! All file I/O and decoding runs on a dedicated thread ([`SpoolReader`] /
//! [`NdjsonReader`] there), which hands `batch_size` batches to the async
//! task over a channel of [`CHANNEL_BATCHES`]; the task forwards them into
//! the fan-out (so backpressure reaches the reader through the channel)
//! and, with `speed` other than `"max"`, sleeps on tokio's timer so that
//! each event leaves `(ts_ns − first ts_ns) / speed` after the first. On
//! shutdown the task stops at the next batch or sleep, drops the channel,
//! and the reader thread ends after the batch it is decoding.
//!
//! A file that cannot be read is logged, counted
//! (`hostflow_replay_skipped_files_total`), puts the source in `degraded`
//! and is skipped; when everything is replayed the source returns and the
//! engine drains. A `path` that does not exist is a configuration error.

mod arrow;
mod ndjson;
mod reader;

#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_declared;
#[cfg(test)]
mod tests_ndjson;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use metrics::Counter;
use pipeline::health::{ComponentState, HealthHandle};
use pipeline::{
    Batch, ComponentError, ComponentOptions, ConfigError, EventKind, Fanout, ShutdownSignal, Source, SourceContext,
};
use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use toml::Spanned;

pub use arrow::{decode_batch, DecodeError};
pub use ndjson::{decode_line, NdjsonError};
pub use reader::{read_ndjson, read_spool, NdjsonReader, ReadStats, Selection, SpoolReader};

pub use pipeline::metrics::names::{
    REPLAY_READ_EVENTS_TOTAL as READ_EVENTS_TOTAL, REPLAY_SKIPPED_FILES_TOTAL as SKIPPED_FILES_TOTAL,
    REPLAY_SKIPPED_LINES_TOTAL as SKIPPED_LINES_TOTAL,
};

/// Batches in flight between the reader thread and the async task: enough
/// to overlap decoding with sending, few enough to bound memory.
pub const CHANNEL_BATCHES: usize = 2;

/// Batches beyond this stop amortising anything and only cost memory.
pub const MAX_BATCH_SIZE: usize = 65_536;

/// `[sources.NAME] type = "replay"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// The spool directory (an `arrow_spool` sink's `path`); with
    /// `format = "ndjson"`, an NDJSON file or a directory of `*.ndjson`
    /// files (read in name order).
    pub path: Spanned<PathBuf>,
    /// `"arrow"` (default) or `"ndjson"`.
    #[serde(default)]
    pub format: ReplayFormat,
    /// `"max"` (default: as fast as downstream accepts), `"realtime"` (the
    /// recorded pace) or a positive factor of it (2.0 = twice as fast).
    #[serde(default)]
    pub speed: Option<Spanned<SpeedValue>>,
    /// Replay events with `ts_ns >= from_ts_ns` only.
    #[serde(default)]
    pub from_ts_ns: Option<Spanned<u64>>,
    /// Replay events with `ts_ns < to_ts_ns` only.
    #[serde(default)]
    pub to_ts_ns: Option<Spanned<u64>>,
    /// Kinds to replay, e.g. `["process_sample", "sketch"]`. Absent: all.
    #[serde(default)]
    pub kinds: Option<Spanned<Vec<Spanned<String>>>>,
    /// Events per batch sent downstream (1 to 65536).
    #[serde(default = "default_batch_size")]
    pub batch_size: Spanned<NonZeroUsize>,
}

/// What `path` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayFormat {
    /// An Arrow spool directory (`<kind>/<kind>-<seq>.arrow`).
    #[default]
    Arrow,
    /// NDJSON lines as the `file` and `console` sinks write them.
    Ndjson,
}

/// `speed` as written: a name or a number, checked by [`Replay::new`] so
/// every problem is reported at the value.
#[derive(Clone, Debug, PartialEq)]
pub enum SpeedValue {
    Name(String),
    Factor(f64),
}

/// The pace of a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as downstream accepts.
    Max,
    /// Recorded time divided by this factor (1.0 = real time).
    Factor(f64),
}

fn default_batch_size() -> Spanned<NonZeroUsize> {
    Spanned::new(0..0, NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN))
}

/// Builds a replay source from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Source>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: ReplayConfig, options| {
        Ok(Box::new(Replay::new(config, options)?) as Box<dyn Source>)
    })
}

/// A configured replay.
#[derive(Debug)]
pub struct Replay {
    path: PathBuf,
    format: ReplayFormat,
    speed: Speed,
    selection: Selection,
    batch_size: usize,
}

impl Replay {
    /// Checks the configuration (every problem at its value) and that
    /// `path` exists.
    pub fn new(config: ReplayConfig, options: &ComponentOptions) -> Result<Replay, Vec<ConfigError>> {
        let mut errors = Vec::new();
        check_path(&config.path, config.format, options, &mut errors);
        let speed = match &config.speed {
            None => Speed::Max,
            Some(speed) => parse_speed(speed, options, &mut errors),
        };
        let mut kinds = Vec::new();
        match &config.kinds {
            None => kinds.extend(EventKind::ALL),
            Some(list) if list.get_ref().is_empty() => {
                errors.push(options.error_at(list.span(), "kinds is empty; nothing would be replayed"));
            }
            Some(list) => {
                for name in list.get_ref() {
                    let known = schemas::KINDS.contains(&name.get_ref().as_str());
                    match EventKind::from_name(name.get_ref()).filter(|_| known) {
                        Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                        Some(_) => {}
                        None => {
                            let mut error = options.error_at(
                                name.span(),
                                format!(
                                    "unknown event kind `{}` in kinds; known kinds: {}",
                                    name.get_ref(),
                                    schemas::KINDS.join(", ")
                                ),
                            );
                            if let Some(near) =
                                pipeline::config::closest(name.get_ref(), schemas::KINDS.iter().copied())
                            {
                                error = error.with_hint(format!("did you mean `{near}`?"));
                            }
                            errors.push(error);
                        }
                    }
                }
            }
        }
        let from_ts_ns = config.from_ts_ns.as_ref().map(|from| *from.get_ref());
        let to_ts_ns = config.to_ts_ns.as_ref().map(|to| *to.get_ref());
        if let (Some(from), Some(to)) = (from_ts_ns, &config.to_ts_ns) {
            if from >= *to.get_ref() {
                errors.push(options.error_at(
                    to.span(),
                    format!(
                        "to_ts_ns ({}) must be greater than from_ts_ns ({from}): the range is from (inclusive) to \
                         (exclusive), so it would be empty",
                        to.get_ref()
                    ),
                ));
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
        Ok(Replay {
            path: config.path.into_inner(),
            format: config.format,
            speed,
            selection: Selection { kinds, from_ts_ns, to_ts_ns },
            batch_size: config.batch_size.get_ref().get(),
        })
    }
}

fn check_path(
    path: &Spanned<PathBuf>,
    format: ReplayFormat,
    options: &ComponentOptions,
    errors: &mut Vec<ConfigError>,
) {
    let shown = path.get_ref().display();
    if path.get_ref().as_os_str().is_empty() {
        errors.push(options.error_at(path.span(), "path must not be empty"));
        return;
    }
    let wanted = match format {
        ReplayFormat::Arrow => "point `path` at the directory an `arrow_spool` sink writes (its `path`)",
        ReplayFormat::Ndjson => "point `path` at an NDJSON file or a directory of `*.ndjson` files",
    };
    match std::fs::metadata(path.get_ref()) {
        Ok(meta) if format == ReplayFormat::Arrow && !meta.is_dir() => errors.push(
            options
                .error_at(path.span(), format!("path `{shown}` is not a directory, so it is not an Arrow spool"))
                .with_hint("for a file of NDJSON lines, set `format = \"ndjson\"`"),
        ),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            errors.push(options.error_at(path.span(), format!("path `{shown}` does not exist")).with_hint(wanted));
        }
        Err(error) => errors.push(options.error_at(path.span(), format!("cannot look at path `{shown}`: {error}"))),
    }
}

fn parse_speed(speed: &Spanned<SpeedValue>, options: &ComponentOptions, errors: &mut Vec<ConfigError>) -> Speed {
    const EXPECTED: &str = "speed must be \"max\", \"realtime\" or a positive number (a factor of the recorded pace)";
    match speed.get_ref() {
        SpeedValue::Name(name) if name == "max" => Speed::Max,
        SpeedValue::Name(name) if name == "realtime" => Speed::Factor(1.0),
        SpeedValue::Factor(factor) if factor.is_finite() && *factor > 0.0 => Speed::Factor(*factor),
        SpeedValue::Name(name) => {
            let mut error = options.error_at(speed.span(), format!("{EXPECTED}, got \"{name}\""));
            if let Some(near) = pipeline::config::closest(name, ["max", "realtime"]) {
                error = error.with_hint(format!("did you mean \"{near}\"?"));
            }
            errors.push(error);
            Speed::Max
        }
        SpeedValue::Factor(factor) => {
            errors.push(options.error_at(speed.span(), format!("{EXPECTED}, got {factor}")));
            Speed::Max
        }
    }
}

impl<'de> Deserialize<'de> for SpeedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SpeedValue, D::Error> {
        struct SpeedVisitor;
        impl Visitor<'_> for SpeedVisitor {
            type Value = SpeedValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"max\", \"realtime\" or a positive number")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<SpeedValue, E> {
                Ok(SpeedValue::Name(value.to_owned()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<SpeedValue, E> {
                Ok(SpeedValue::Factor(value))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<SpeedValue, E> {
                Ok(SpeedValue::Factor(value as f64))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<SpeedValue, E> {
                Ok(SpeedValue::Factor(value as f64))
            }
        }
        deserializer.deserialize_any(SpeedVisitor)
    }
}

#[async_trait]
impl Source for Replay {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        let Replay { path, format, speed, selection, batch_size } = *self;
        let (tx, mut rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
        let counters = ReplayCounters::new(&cx.name);
        let health = cx.health.clone();
        let thread = std::thread::Builder::new()
            .name(format!("replay-{}", cx.name))
            .spawn(move || read_all(&path, format, &selection, batch_size, &tx, &counters, &health))
            .map_err(|error| ComponentError::io("cannot start the replay reader thread", error))?;
        let mut shutdown = cx.shutdown.clone();
        let mut pacer = Pacer { speed, origin: None };
        loop {
            let batch = tokio::select! {
                biased;
                () = shutdown.wait() => break,
                batch = rx.recv() => batch,
            };
            // `None`: the reader is done (or failed; its result says).
            let Some(batch) = batch else { break };
            if !pacer.forward(batch, &mut cx.out, &mut shutdown).await {
                break;
            }
        }
        // Stops the reader at its next send, then waits for it (off the
        // async workers: it may be finishing a batch).
        drop(rx);
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(Ok(stats))) => {
                tracing::debug!(source = %cx.name, ?stats, "replay finished");
                Ok(())
            }
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) | Err(_) => Err(ComponentError::Failed("the replay reader thread panicked".to_owned())),
        }
    }
}

/// The reader thread's body: read, count, hand over, until the input ends
/// or the async task is gone.
fn read_all(
    path: &std::path::Path,
    format: ReplayFormat,
    selection: &Selection,
    batch_size: usize,
    tx: &mpsc::Sender<Batch>,
    counters: &ReplayCounters,
    health: &HealthHandle,
) -> Result<ReadStats, ComponentError> {
    let mut reader = match format {
        ReplayFormat::Arrow => Reader::Spool(read_spool(path, selection, batch_size)),
        ReplayFormat::Ndjson => Reader::Ndjson(
            read_ndjson(path, selection, batch_size)
                .map_err(|error| ComponentError::io(format!("cannot read {}", path.display()), error))?,
        ),
    };
    let mut reported = ReadStats::default();
    loop {
        let batch = reader.next();
        let stats = reader.stats();
        counters.add(&reported, &stats);
        if (stats.files_skipped, stats.lines_skipped) != (reported.files_skipped, reported.lines_skipped) {
            let reason = format!(
                "skipped {} unreadable files and {} bad lines under {} (see the log)",
                stats.files_skipped,
                stats.lines_skipped,
                path.display()
            );
            health.set(ComponentState::Degraded, Some(reason));
        }
        reported = stats;
        let Some(batch) = batch else { break };
        if tx.blocking_send(batch).is_err() {
            break; // The async task stopped (shutdown).
        }
    }
    Ok(reported)
}

/// Either reader, so the thread body is written once.
enum Reader {
    Spool(SpoolReader),
    Ndjson(NdjsonReader),
}

impl Reader {
    fn next(&mut self) -> Option<Batch> {
        match self {
            Reader::Spool(reader) => reader.next(),
            Reader::Ndjson(reader) => reader.next(),
        }
    }

    fn stats(&self) -> ReadStats {
        match self {
            Reader::Spool(reader) => reader.stats(),
            Reader::Ndjson(reader) => reader.stats(),
        }
    }
}

/// Forwards batches at the configured pace.
struct Pacer {
    speed: Speed,
    /// The first replayed event's `ts_ns` and when it was sent.
    origin: Option<(u64, Instant)>,
}

impl Pacer {
    /// Sends `batch`, sleeping until each event is due. `false` when
    /// shutdown came during a sleep (the rest of the batch is not sent).
    async fn forward(&mut self, mut batch: Batch, out: &mut Fanout, shutdown: &mut ShutdownSignal) -> bool {
        let Speed::Factor(factor) = self.speed else {
            out.send(batch).await;
            // Let a single-threaded runtime run the consumers.
            tokio::task::yield_now().await;
            return true;
        };
        while let Some(first) = batch.first() {
            let (first_ts, started) = *self.origin.get_or_insert_with(|| (first.meta().ts_ns, Instant::now()));
            let due = |ts_ns: u64| due_at(started, ts_ns.saturating_sub(first_ts), factor);
            let now = Instant::now();
            // Events whose time has come leave together, in order; one
            // recorded earlier than the one before it is due at once.
            let n_due = batch.iter().take_while(|event| due(event.meta().ts_ns) <= now).count();
            if n_due > 0 {
                let rest = batch.split_off(n_due);
                out.send(batch).await;
                batch = rest;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due(first.meta().ts_ns)) => {}
                () = shutdown.wait() => return false,
            }
        }
        true
    }
}

/// When an event `delta_ns` after the first is due at speed `factor`; a
/// time too far to represent is a century away.
fn due_at(started: Instant, delta_ns: u64, factor: f64) -> Instant {
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let wait = Duration::try_from_secs_f64(delta_ns as f64 / 1e9 / factor).unwrap_or(far).min(far);
    started.checked_add(wait).unwrap_or(started)
}

/// The source's own counters, registered once per run.
struct ReplayCounters {
    events: Counter,
    skipped_files: Counter,
    skipped_lines: Counter,
}

impl ReplayCounters {
    fn new(component: &str) -> ReplayCounters {
        use metrics::{describe_counter, Unit};
        describe_counter!(READ_EVENTS_TOTAL, Unit::Count, "Events replayed (after kinds and the time range).");
        describe_counter!(SKIPPED_FILES_TOTAL, Unit::Count, "Replay files that could not be read (skipped).");
        describe_counter!(SKIPPED_LINES_TOTAL, Unit::Count, "Replayed NDJSON lines that were not an event.");
        let labels = vec![metrics::Label::new("component", component.to_owned())];
        ReplayCounters {
            events: metrics::counter!(READ_EVENTS_TOTAL, labels.clone()),
            skipped_files: metrics::counter!(SKIPPED_FILES_TOTAL, labels.clone()),
            skipped_lines: metrics::counter!(SKIPPED_LINES_TOTAL, labels),
        }
    }

    fn add(&self, before: &ReadStats, now: &ReadStats) {
        self.events.increment(now.events.saturating_sub(before.events));
        self.skipped_files.increment(now.files_skipped.saturating_sub(before.files_skipped));
        self.skipped_lines.increment(now.lines_skipped.saturating_sub(before.lines_skipped));
    }
}
