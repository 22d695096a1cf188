//! `arrow_spool`: events as Arrow IPC files, one stream of files per kind (issue #5).
//!
//! Layout (the `query` command and the `replay` source rely on it): under
//! `path`, one directory per kind of `schemas::KINDS`; the file being written
//! is `<kind>/<kind>-<seq>.arrow.tmp` (seq 10 digits, increasing per kind)
//! and is renamed to `<kind>-<seq>.arrow` once its footer is written. Every
//! file is an Arrow IPC *file* with zstd-compressed buffers and exactly the
//! kind's `schemas::schema_for` schema.
//!
//! Acknowledgement: `write` returns once every row of the batch is in its
//! kind's file and handed to the OS (so killing the agent loses no
//! written row; `recovery.rs` reads the footerless prefix back), and,
//! with `fsync = "always"`, synced to disk. Nothing is held in memory across
//! `write` calls, so no written row waits for a later call to reach a
//! file. A batch is split into record batches of at most `batch_rows`.
//! `durable_batches` counts the batches, in write order, whose every row is
//! synced (a host crash cannot lose them): with `"always"` every batch
//! written; with `"on_rotate"` the batches before the oldest one with rows
//! in a file not yet synced, so the mark follows the flush and rotation
//! syncs below; with `"never"` every batch written, since the operator
//! chose the page cache as the durability point. After `flush` (every file
//! finished) it is every batch written.
//!
//! Time bounds hold with or without input: the engine calls the sink's
//! `on_tick` every [`tick_period`] (at most 1 s, at most a quarter of the
//! shorter bound) from its one sink loop, and both `write` and the tick
//! rotate every file older than `max_file_age_secs` and, with
//! `fsync = "on_rotate"` (default), sync every open file whose oldest
//! unsynced row is older than `flush_interval_secs`. So no row stays
//! unsynced longer than `flush_interval_secs` plus one tick period (which
//! bounds what a host crash can lose), and an idle kind's file is finished
//! and queryable within `max_file_age_secs` plus one tick period.
//! `hostflow_spool_unflushed_events` counts the rows in open files not yet
//! synced. Files also rotate by size and at shutdown; retention runs at
//! start, after each rotation and at least every minute. All file I/O runs on
//! tokio's blocking pool with the state moved in and out; the tick goes there
//! only when something is due.
//!
//! Privacy: the spool is owner-only (0700 directories, 0600 files; 0750 and
//! 0640 with `group`), existing entries are narrowed at start with one
//! warning, and a spool directory other users can write, or a parent they can
//! write without the sticky bit, is refused (`access.rs`).
//!
//! Wall-clock time: each file's schema metadata records the anchor
//! (`schemas::spool::WALL_CLOCK_ANCHOR_KEY`: realtime − CLOCK_BOOTTIME,
//! sampled when the file is opened), so `ts_ns` + anchor is UTC; columns are
//! unchanged.

mod access;
pub(crate) mod encode;
mod ipc_file;
mod recovery;
mod retention;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use metrics::{Counter, Gauge, Label};
use pipeline::event::{Event, EventKind};
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;
use toml::Spanned;

pub use access::{Access, AccessError};
pub use encode::encode;
pub use ipc_file::ipc_options;
pub use recovery::{readable_batches, tmp_summary, Outcome, TmpSummary};
pub use writer::{finished_name, parse_seq, tmp_name};

/// When written data is synced to disk.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every write: nothing acknowledged is lost even on power loss; slowest.
    Always,
    /// When a file is finished, and every `flush_interval_secs` for open files.
    #[default]
    OnRotate,
    /// Never explicitly; the OS writes back when it likes.
    Never,
}

/// `[sinks.NAME] type = "arrow_spool"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowSpoolConfig {
    /// The spool directory; created at start.
    pub path: PathBuf,
    /// Rotate a file once it holds this many bytes (default 64 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: Spanned<u64>,
    /// Rotate a file once it is this old (default 300 s).
    #[serde(default = "default_max_file_age_secs")]
    pub max_file_age_secs: Spanned<f64>,
    /// Delete the oldest finished files while the spool is larger (default 1 GiB).
    #[serde(default = "default_retention_max_bytes")]
    pub retention_max_bytes: Spanned<u64>,
    /// Delete finished files older than this (default 7 days).
    #[serde(default = "default_retention_max_age_secs")]
    pub retention_max_age_secs: Spanned<f64>,
    /// Longest time written rows stay unsynced with `fsync = "on_rotate"` (default 5 s).
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: Spanned<f64>,
    /// Most rows per record batch (default 8192).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: Spanned<u64>,
    /// `"always"`, `"on_rotate"` (default) or `"never"`.
    #[serde(default)]
    pub fsync: Fsync,
    /// A group (name in /etc/group, or a number) that may read the spool:
    /// directories 0750 and files 0640 owned by it. Default: owner only
    /// (0700 / 0600).
    #[serde(default)]
    pub group: Option<Spanned<String>>,
}

fn default_max_file_bytes() -> Spanned<u64> {
    Spanned::new(0..0, 64 << 20)
}
fn default_max_file_age_secs() -> Spanned<f64> {
    Spanned::new(0..0, 300.0)
}
fn default_retention_max_bytes() -> Spanned<u64> {
    Spanned::new(0..0, 1 << 30)
}
fn default_retention_max_age_secs() -> Spanned<f64> {
    Spanned::new(0..0, 7.0 * 86_400.0)
}
fn default_flush_interval_secs() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}
fn default_batch_rows() -> Spanned<u64> {
    Spanned::new(0..0, 8192)
}

/// The checked settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub root: PathBuf,
    pub max_file_bytes: u64,
    pub max_file_age: Duration,
    pub retention_max_bytes: u64,
    pub retention_max_age: Duration,
    pub flush_interval: Duration,
    pub batch_rows: usize,
    pub fsync: Fsync,
}

/// Builds an arrow_spool sink from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: ArrowSpoolConfig, options| {
        let settings = check(&config, options)?;
        let gid = match &config.group {
            Some(group) => Some(
                access::resolve_group(group.get_ref())
                    .map_err(|error| vec![options.error_at(group.span(), error.to_string())])?,
            ),
            None => None,
        };
        Ok(Box::new(ArrowSpool::new(settings, &options.component).with_access(Access { gid })) as Box<dyn Sink>)
    })
}

/// How often the engine ticks the spool: a quarter of the shorter of the
/// age and flush bounds (the flush bound only with `fsync = "on_rotate"`),
/// between 10 ms and 1 s. A bound is then exceeded by at most this much.
pub fn tick_period(settings: &Settings) -> Duration {
    let mut shortest = settings.max_file_age;
    if settings.fsync == Fsync::OnRotate {
        shortest = shortest.min(settings.flush_interval);
    }
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// How often retention runs with no rotation to trigger it.
const RETENTION_PERIOD: Duration = Duration::from_secs(60);

/// UTC nanoseconds since the Unix epoch at CLOCK_BOOTTIME 0 (the clock of
/// `ts_ns`): realtime − boottime, with boottime read on both sides of
/// realtime and averaged.
pub fn wall_clock_anchor_ns() -> i64 {
    let before = i128::from(pipeline::diag::boottime_ns());
    let realtime = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as i128,
        Err(error) => -(error.duration().as_nanos() as i128),
    };
    let after = i128::from(pipeline::diag::boottime_ns());
    let anchor = realtime - (before + after) / 2;
    i64::try_from(anchor).unwrap_or(if anchor < 0 { i64::MIN } else { i64::MAX })
}

fn check(config: &ArrowSpoolConfig, options: &ComponentOptions) -> Result<Settings, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if config.path.as_os_str().is_empty() {
        errors.push(options.error("`path` must not be empty"));
    }
    let mut positive_u64 = |value: &Spanned<u64>, key: &str| {
        if *value.get_ref() == 0 {
            errors.push(options.error_at(value.span(), format!("`{key}` must be at least 1")));
        }
        *value.get_ref()
    };
    let max_file_bytes = positive_u64(&config.max_file_bytes, "max_file_bytes");
    let retention_max_bytes = positive_u64(&config.retention_max_bytes, "retention_max_bytes");
    let batch_rows = positive_u64(&config.batch_rows, "batch_rows");
    let mut seconds = |value: &Spanned<f64>, key: &str| {
        let secs = *value.get_ref();
        if !(secs.is_finite() && secs > 0.0 && secs < 1e12) {
            errors.push(
                options.error_at(value.span(), format!("`{key}` must be a positive number of seconds, got {secs}")),
            );
            return Duration::ZERO;
        }
        Duration::from_secs_f64(secs)
    };
    let settings = Settings {
        root: config.path.clone(),
        max_file_bytes,
        max_file_age: seconds(&config.max_file_age_secs, "max_file_age_secs"),
        retention_max_bytes,
        retention_max_age: seconds(&config.retention_max_age_secs, "retention_max_age_secs"),
        flush_interval: seconds(&config.flush_interval_secs, "flush_interval_secs"),
        batch_rows: usize::try_from(batch_rows).unwrap_or(usize::MAX),
        fsync: config.fsync,
    };
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

/// Metric handles, registered once at build.
#[derive(Clone)]
struct SpoolMetrics {
    written_bytes: Counter,
    files_written: Counter,
    unflushed: Gauge,
    retention_deleted: Counter,
    recovered: Counter,
    quarantined: Counter,
}

impl SpoolMetrics {
    fn new(component: &str) -> SpoolMetrics {
        let labels = vec![Label::new("component", component.to_owned())];
        SpoolMetrics {
            written_bytes: metrics::counter!(pipeline::metrics::names::SPOOL_WRITTEN_BYTES_TOTAL, labels.clone()),
            files_written: metrics::counter!(pipeline::metrics::names::SPOOL_FILES_WRITTEN_TOTAL, labels.clone()),
            unflushed: metrics::gauge!(pipeline::metrics::names::SPOOL_UNFLUSHED_EVENTS, labels.clone()),
            retention_deleted: metrics::counter!(
                pipeline::metrics::names::SPOOL_RETENTION_DELETED_FILES_TOTAL,
                labels.clone()
            ),
            recovered: metrics::counter!(pipeline::metrics::names::SPOOL_RECOVERED_FILES_TOTAL, labels.clone()),
            quarantined: metrics::counter!(pipeline::metrics::names::SPOOL_QUARANTINED_FILES_TOTAL, labels),
        }
    }
}

/// One kind's stream of files.
struct KindStream {
    kind: EventKind,
    dir: PathBuf,
    next_seq: u64,
    open: Option<writer::OpenFile>,
    /// Bytes of the open file already counted in the metric.
    counted_bytes: u64,
}

/// The spool's state; moved onto the blocking pool for every operation.
pub struct Spool {
    settings: Settings,
    access: Access,
    streams: Vec<KindStream>,
    /// One IPC encoding context (zstd, flatbuffers) for every open file.
    encoder: ipc_file::Encoder,
    metrics: SpoolMetrics,
    last_retention: Instant,
    /// Batches written since the sink started.
    n_written: u64,
}

impl Spool {
    /// Refuses a directory others can write, creates the directories
    /// private, narrows what is more open, recovers leftover tmp files and
    /// applies retention. Blocking.
    fn open(settings: Settings, access: Access, metrics: SpoolMetrics) -> Result<Spool, ComponentError> {
        let root = &settings.root;
        access::check_not_others_writable(root).map_err(|e| ComponentError::Failed(e.to_string()))?;
        access
            .create_dir_all(root)
            .map_err(|e| ComponentError::io(format!("cannot create spool directory {}", root.display()), e))?;
        let narrowed = access::tighten(root, access).map_err(|e| ComponentError::Failed(e.to_string()))?;
        if !narrowed.is_empty() {
            tracing::warn!(
                spool = %root.display(),
                n_changed = narrowed.len(),
                first = %narrowed[0].display(),
                dir_mode = format_args!("{:04o}", access.dir_mode()),
                file_mode = format_args!("{:04o}", access.file_mode()),
                "spool: narrowed {} existing files and directories that were more open than the spool's modes (or \
                 not of its group)",
                narrowed.len()
            );
        }
        let probe = root.join(".hostflow-write-probe");
        access
            .create_file(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| ComponentError::io(format!("spool directory {} is not writable", root.display()), e))?;
        let mut streams = Vec::new();
        for kind in EventKind::ALL {
            let name = kind.as_str();
            let dir = root.join(name);
            access
                .create_dir_all(&dir)
                .map_err(|e| ComponentError::io(format!("cannot create spool directory {}", dir.display()), e))?;
            let schema = schemas::schema_for(name)
                .ok_or_else(|| ComponentError::Failed(format!("no Arrow schema for {name}")))?;
            let mut max_seq = None;
            let mut tmps = Vec::new();
            let entries =
                std::fs::read_dir(&dir).map_err(|e| ComponentError::io(format!("cannot list {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if let Some(seq) = parse_seq(name, &file_name) {
                    max_seq = max_seq.max(Some(seq));
                    if file_name.ends_with(".tmp") {
                        tmps.push((seq, entry.path()));
                    }
                }
            }
            tmps.sort();
            for (seq, path) in tmps {
                match recovery::recover(&dir, name, seq, &path, &schema, access) {
                    Ok(Outcome::Recovered { path, batches, rows, bytes }) => {
                        tracing::warn!(path = %path.display(), batches, rows, "spool recovered a file left by a crash");
                        metrics.recovered.increment(1);
                        metrics.written_bytes.increment(bytes);
                    }
                    Ok(Outcome::Quarantined { path, reason }) => {
                        tracing::warn!(path = %path.display(), %reason, "spool moved an unreadable file to quarantine");
                        metrics.quarantined.increment(1);
                    }
                    Err(error) => {
                        return Err(ComponentError::Failed(format!("cannot recover spool file: {error}")));
                    }
                }
            }
            streams.push(KindStream {
                kind,
                dir,
                next_seq: max_seq.map_or(0, |s| s + 1),
                open: None,
                counted_bytes: 0,
            });
        }
        let encoder = ipc_file::Encoder::zstd().map_err(|e| ComponentError::Failed(format!("spool encoding: {e}")))?;
        let mut spool =
            Spool { settings, access, streams, encoder, metrics, last_retention: Instant::now(), n_written: 0 };
        spool.enforce_retention();
        Ok(spool)
    }

    /// Writes every event of `batch` into its kind's file. Blocking.
    fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        let mut by_kind: Vec<Vec<Event>> = (0..EventKind::ALL.len()).map(|_| Vec::new()).collect();
        for event in batch {
            by_kind[event.kind().index()].push(event);
        }
        let fsync_each = self.settings.fsync == Fsync::Always;
        let mut rotated = false;
        for (index, events) in by_kind.iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            for chunk in events.chunks(self.settings.batch_rows) {
                rotated |= self.write_chunk(index, chunk, fsync_each)?;
            }
        }
        self.n_written += 1;
        self.enforce_time_bounds(rotated)
    }

    /// Batches, in write order, whose every row is synced (see the module
    /// doc; with `fsync = "never"` every batch written).
    fn durable_batches(&self) -> u64 {
        if self.settings.fsync == Fsync::Never {
            return self.n_written;
        }
        let oldest_unsynced = self.streams.iter().filter_map(|s| s.open.as_ref()?.unsynced_from_batch).min();
        oldest_unsynced.map_or(self.n_written, |oldest| oldest.min(self.n_written))
    }

    /// Whether [`Spool::tick`] has anything to do at `now`: a file past its
    /// age, unsynced rows past the flush bound, or retention due. Cheap: no I/O.
    fn tick_due(&self, now: Instant) -> bool {
        let sync_bound = (self.settings.fsync == Fsync::OnRotate).then_some(self.settings.flush_interval);
        self.streams.iter().filter_map(|s| s.open.as_ref()).any(|file| {
            now.duration_since(file.opened_at) >= self.settings.max_file_age
                || sync_bound.zip(file.unsynced_since).is_some_and(|(bound, since)| now.duration_since(since) >= bound)
        }) || now.duration_since(self.last_retention) >= RETENTION_PERIOD
    }

    /// The engine's tick: the time bounds with no input. Blocking.
    fn tick(&mut self) -> Result<(), ComponentError> {
        self.enforce_time_bounds(false)
    }

    /// Rotates every file older than `max_file_age`, syncs every file whose
    /// oldest unsynced row is older than `flush_interval` (`on_rotate`),
    /// and runs retention after a rotation (`rotated` says one happened
    /// already) or once it is a minute old.
    fn enforce_time_bounds(&mut self, mut rotated: bool) -> Result<(), ComponentError> {
        let now = Instant::now();
        let max_age = self.settings.max_file_age;
        for index in 0..self.streams.len() {
            if self.streams[index].open.as_ref().is_some_and(|f| now.duration_since(f.opened_at) >= max_age) {
                self.rotate(index)?;
                rotated = true;
            }
        }
        if rotated || now.duration_since(self.last_retention) >= RETENTION_PERIOD {
            self.enforce_retention();
        }
        if self.settings.fsync == Fsync::OnRotate {
            let bound = self.settings.flush_interval;
            for stream in &mut self.streams {
                let Some(file) = stream.open.as_mut() else { continue };
                if file.unsynced_since.is_some_and(|since| now.duration_since(since) >= bound) {
                    file.sync().map_err(|e| ComponentError::Failed(format!("cannot fsync spool file {e}")))?;
                }
            }
        }
        self.update_unflushed();
        Ok(())
    }

    /// Sets the gauge of rows in open files not yet synced.
    fn update_unflushed(&self) {
        let rows: u64 = self.streams.iter().filter_map(|s| s.open.as_ref()).map(|f| f.unsynced_rows).sum();
        self.metrics.unflushed.set(rows as f64);
    }

    /// Writes rows of one kind as one record batch; true if the file was
    /// then full and rotated.
    fn write_chunk(&mut self, index: usize, chunk: &[Event], fsync_each: bool) -> Result<bool, ComponentError> {
        let stream = &mut self.streams[index];
        let name = stream.kind.as_str();
        let record_batch = encode::encode(stream.kind, chunk)
            .map_err(|e| ComponentError::Failed(format!("cannot encode {name} rows: {e}")))?;
        let file = match stream.open.as_mut() {
            Some(file) => file,
            None => {
                let schema = schemas::spool::with_wall_clock_anchor(&record_batch.schema(), wall_clock_anchor_ns());
                let file =
                    writer::OpenFile::create(&stream.dir, name, stream.next_seq, &schema, self.access, &self.encoder)
                        .map_err(|e| ComponentError::Failed(format!("cannot create spool file {e}")))?;
                stream.next_seq += 1;
                stream.counted_bytes = 0;
                stream.open.insert(file)
            }
        };
        file.write(&record_batch, &mut self.encoder, fsync_each)
            .map_err(|e| ComponentError::Failed(format!("cannot write spool file {e}")))?;
        if file.unsynced_rows > 0 {
            file.unsynced_from_batch.get_or_insert(self.n_written);
        }
        self.metrics.written_bytes.increment(file.bytes() - stream.counted_bytes);
        stream.counted_bytes = file.bytes();
        if file.bytes() >= self.settings.max_file_bytes {
            self.rotate(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Finishes and renames the open file of stream `index`.
    fn rotate(&mut self, index: usize) -> Result<(), ComponentError> {
        let stream = &mut self.streams[index];
        let Some(file) = stream.open.take() else { return Ok(()) };
        let fsync = self.settings.fsync != Fsync::Never;
        let (path, bytes) =
            file.finish(fsync).map_err(|e| ComponentError::Failed(format!("cannot finish spool file {e}")))?;
        self.metrics.written_bytes.increment(bytes - stream.counted_bytes);
        stream.counted_bytes = 0;
        self.metrics.files_written.increment(1);
        tracing::debug!(path = %path.display(), bytes, "spool file finished");
        Ok(())
    }

    /// Finishes every open file. Blocking.
    fn finish_all(&mut self) -> Result<(), ComponentError> {
        for index in 0..self.streams.len() {
            self.rotate(index)?;
        }
        self.metrics.unflushed.set(0.0);
        self.enforce_retention();
        Ok(())
    }

    fn enforce_retention(&mut self) {
        let open_bytes = self.streams.iter().filter_map(|s| s.open.as_ref()).map(|f| f.bytes()).sum();
        let kinds: Vec<&str> = self.streams.iter().map(|s| s.kind.as_str()).collect();
        let deleted = retention::enforce(
            &self.settings.root,
            &kinds,
            open_bytes,
            self.settings.retention_max_bytes,
            self.settings.retention_max_age,
        );
        self.metrics.retention_deleted.increment(deleted.len() as u64);
        self.last_retention = Instant::now();
    }
}

/// An arrow_spool sink; the spool is opened by [`Sink::open`].
pub struct ArrowSpool {
    settings: Settings,
    access: Access,
    metrics: SpoolMetrics,
    spool: Option<Spool>,
    /// The spool's durable mark after its last operation.
    durable: u64,
}

impl ArrowSpool {
    /// A sink with checked settings; registers its metric handles. What it
    /// creates is owner-only unless [`ArrowSpool::with_access`] says otherwise.
    pub fn new(settings: Settings, component: &str) -> ArrowSpool {
        ArrowSpool {
            settings,
            access: Access::default(),
            metrics: SpoolMetrics::new(component),
            spool: None,
            durable: 0,
        }
    }

    /// The same sink, creating its files and directories with `access`.
    pub fn with_access(mut self, access: Access) -> ArrowSpool {
        self.access = access;
        self
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.settings.root
    }

    /// Runs `op` on the spool on the blocking pool.
    async fn with_spool<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Spool) -> Result<T, ComponentError> + Send + 'static,
    ) -> Result<T, ComponentError> {
        let mut spool = self
            .spool
            .take()
            .ok_or_else(|| ComponentError::Failed("arrow_spool used before it was opened".to_owned()))?;
        let (spool, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut spool);
            (spool, result)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("spool task failed: {e}")))?;
        self.durable = spool.durable_batches();
        self.spool = Some(spool);
        result
    }
}

#[async_trait]
impl Sink for ArrowSpool {
    async fn open(&mut self) -> Result<(), ComponentError> {
        let settings = self.settings.clone();
        let (access, metrics) = (self.access, self.metrics.clone());
        let spool = tokio::task::spawn_blocking(move || Spool::open(settings, access, metrics))
            .await
            .map_err(|e| ComponentError::Failed(format!("open task failed: {e}")))??;
        self.spool = Some(spool);
        Ok(())
    }

    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        self.with_spool(move |spool| spool.write(batch)).await
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(tick_period(&self.settings))
    }

    fn durable_batches(&self) -> Option<u64> {
        Some(self.durable)
    }

    async fn on_tick(&mut self) -> Result<(), ComponentError> {
        if !self.spool.as_ref().is_some_and(|spool| spool.tick_due(Instant::now())) {
            return Ok(());
        }
        self.with_spool(Spool::tick).await
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        if self.spool.is_none() {
            return Ok(());
        }
        self.with_spool(Spool::finish_all).await
    }
}
