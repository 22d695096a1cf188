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
//! acknowledged row; `recovery.rs` reads the footerless prefix back), and,
//! with `fsync = "always"`, synced to disk. Nothing is held in memory across
//! `write` calls: the engine's `Sink` has no tick, so rows held back would be
//! acknowledged without being in a file. A batch is split into record
//! batches of at most `batch_rows`. With `fsync = "on_rotate"` (default) the
//! open files are also synced whenever the last sync is older than
//! `flush_interval_secs`, which bounds what a host crash (power loss) can
//! lose; `hostflow_spool_unflushed_events` counts the rows not yet synced.
//! Files rotate by size and age (checked on every write and at shutdown);
//! retention runs at start and after each rotation. All file I/O runs on
//! tokio's blocking pool with the state moved in and out.

mod encode;
mod recovery;
mod retention;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{Counter, Gauge, Label};
use pipeline::event::{Event, EventKind};
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;
use toml::Spanned;

pub use encode::encode;
pub use recovery::{readable_batches, Outcome};
pub use writer::{finished_name, ipc_options, parse_seq, tmp_name};

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
        Ok(Box::new(ArrowSpool::new(settings, &options.component)) as Box<dyn Sink>)
    })
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
    streams: Vec<KindStream>,
    metrics: SpoolMetrics,
    unsynced_rows: u64,
    last_sync: Instant,
}

impl Spool {
    /// Creates the directories, recovers leftover tmp files and applies
    /// retention. Blocking.
    fn open(settings: Settings, metrics: SpoolMetrics) -> Result<Spool, ComponentError> {
        let root = &settings.root;
        std::fs::create_dir_all(root)
            .map_err(|e| ComponentError::io(format!("cannot create spool directory {}", root.display()), e))?;
        let probe = root.join(".hostflow-write-probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| ComponentError::io(format!("spool directory {} is not writable", root.display()), e))?;
        let mut streams = Vec::new();
        for kind in EventKind::ALL {
            let name = kind.as_str();
            let dir = root.join(name);
            std::fs::create_dir_all(&dir)
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
                match recovery::recover(&dir, name, seq, &path, &schema) {
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
        let mut spool = Spool { settings, streams, metrics, unsynced_rows: 0, last_sync: Instant::now() };
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
        let max_age = self.settings.max_file_age;
        for index in 0..self.streams.len() {
            if self.streams[index].open.as_ref().is_some_and(|f| f.opened_at.elapsed() >= max_age) {
                self.rotate(index)?;
                rotated = true;
            }
        }
        if rotated {
            self.enforce_retention();
        }
        if self.settings.fsync == Fsync::OnRotate && self.last_sync.elapsed() >= self.settings.flush_interval {
            self.sync_open()?;
        }
        self.metrics.unflushed.set(self.unsynced_rows as f64);
        Ok(())
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
                let file = writer::OpenFile::create(&stream.dir, name, stream.next_seq, &record_batch.schema())
                    .map_err(|e| ComponentError::Failed(format!("cannot create spool file {e}")))?;
                stream.next_seq += 1;
                stream.counted_bytes = 0;
                stream.open.insert(file)
            }
        };
        file.write(&record_batch, fsync_each)
            .map_err(|e| ComponentError::Failed(format!("cannot write spool file {e}")))?;
        self.metrics.written_bytes.increment(file.bytes() - stream.counted_bytes);
        stream.counted_bytes = file.bytes();
        if !fsync_each {
            self.unsynced_rows += chunk.len() as u64;
        }
        if file.bytes() >= self.settings.max_file_bytes {
            self.rotate(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Syncs every open file.
    fn sync_open(&mut self) -> Result<(), ComponentError> {
        for stream in &mut self.streams {
            if let Some(file) = stream.open.as_mut() {
                file.sync().map_err(|e| ComponentError::Failed(format!("cannot fsync spool file {e}")))?;
            }
        }
        self.unsynced_rows = 0;
        self.last_sync = Instant::now();
        Ok(())
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
        if self.streams.iter().all(|s| s.open.is_none()) && fsync {
            self.unsynced_rows = 0;
        }
        Ok(())
    }

    /// Finishes every open file. Blocking.
    fn finish_all(&mut self) -> Result<(), ComponentError> {
        for index in 0..self.streams.len() {
            self.rotate(index)?;
        }
        self.unsynced_rows = 0;
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
    }
}

/// An arrow_spool sink; the spool is opened by [`Sink::open`].
pub struct ArrowSpool {
    settings: Settings,
    metrics: SpoolMetrics,
    spool: Option<Spool>,
}

impl ArrowSpool {
    /// A sink with checked settings; registers its metric handles.
    pub fn new(settings: Settings, component: &str) -> ArrowSpool {
        ArrowSpool { settings, metrics: SpoolMetrics::new(component), spool: None }
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
        self.spool = Some(spool);
        result
    }
}

#[async_trait]
impl Sink for ArrowSpool {
    async fn open(&mut self) -> Result<(), ComponentError> {
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        let spool = tokio::task::spawn_blocking(move || Spool::open(settings, metrics))
            .await
            .map_err(|e| ComponentError::Failed(format!("open task failed: {e}")))??;
        self.spool = Some(spool);
        Ok(())
    }

    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        self.with_spool(move |spool| spool.write(batch)).await
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        if self.spool.is_none() {
            return Ok(());
        }
        self.with_spool(Spool::finish_all).await
    }
}
