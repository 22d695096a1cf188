//! The disk half of a `type = "disk"` buffer: two threads around
//! [`crate::disk_buffer`].
//!
//! Why threads: appends and reads are blocking file I/O, which must not run
//! on the async runtime. Every upstream's [`super::EdgeSender`] encodes its
//! batch on its own task (CPU work, like a transform) and hands the bytes to
//! the one *writer* thread, awaiting its answer: the upstream is told the
//! events were accepted only once they are in a segment file. The *reader*
//! thread reads records in order, decodes them and passes them to the
//! component's task through a small channel; the component acknowledges
//! each record once its sink reported it durable (see
//! [`crate::component::Sink::durable_batches`]), and only then may the
//! record's segment go.
//!
//! When the buffer holds `max_bytes`, `when_full` decides: `block` waits
//! for acknowledgements to make room (backpressure reaches the source);
//! `drop_newest` drops the incoming batch, counted as `buffer_full`. A disk
//! that runs out of space (ENOSPC) is treated the same way, counted as
//! `disk_full` when dropping, and retried every [`NO_SPACE_RETRY`] when
//! blocking — never a crash. On shutdown, what is on disk stays there and
//! is delivered at the next start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use tokio::sync::{mpsc, oneshot};

use super::{DiskConfig, WhenFull};
use crate::batch_codec::BatchCodec;
use crate::disk_buffer::{
    self, Acker, AppendError, BufferReader, BufferWriter, DiskBufferConfig, OpenReport, RecordId,
};
use crate::event::Batch;
use crate::ledger::EdgeEntry;
use crate::metrics::{names, DropReason};

/// How often a blocked writer looks again at a full disk.
const NO_SPACE_RETRY: Duration = Duration::from_millis(200);

/// How often the writer thread syncs the live segment while appending, so
/// a power loss (not a process crash, which loses nothing) costs at most
/// this much.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long a reader waits for a record before looking at its stop flag.
const READ_POLL: Duration = Duration::from_millis(100);

/// What the writer thread says about one append.
pub(super) enum Appended {
    /// In a segment file; `waited` is how long it waited for room.
    Stored { waited: Duration },
    /// Not stored, for this reason (counted by the sender).
    Dropped(DropReason),
}

struct AppendRequest {
    payload: Vec<u8>,
    n_events: u32,
    reply: oneshot::Sender<Appended>,
    /// The sending edge's ledger row: the writer books the acceptance just
    /// before the append (the reader may take the record at once) and a
    /// drop when it drops.
    ledger: Option<EdgeEntry>,
}

/// One record as the component's task gets it.
pub enum DiskItem {
    /// A decoded batch and the record it came from.
    Batch(Batch, RecordId),
    /// A record whose checksum held but whose payload did not decode (a
    /// codec from another version): counted, and acknowledged in order
    /// like a batch, so it does not hold the buffer forever.
    Undecodable { record: RecordId, n_events: u32, error: String },
}

/// Counters and gauges of one disk buffer.
#[derive(Clone)]
struct DiskMetrics {
    torn_records: Counter,
    undecodable: Counter,
    bytes: Gauge,
    replayed: Counter,
    /// The ledger row torn records found while reading are booked on.
    ledger: Arc<std::sync::Mutex<Option<crate::ledger::ComponentEntry>>>,
}

impl DiskMetrics {
    fn new(component: &str) -> DiskMetrics {
        let labels = vec![metrics::Label::new("component", component.to_owned())];
        DiskMetrics {
            torn_records: metrics::counter!(names::BUFFER_TORN_RECORDS_TOTAL, labels.clone()),
            undecodable: metrics::counter!(names::BUFFER_UNDECODABLE_RECORDS_TOTAL, labels.clone()),
            bytes: metrics::gauge!(names::BUFFER_DISK_BYTES, labels.clone()),
            replayed: metrics::counter!(names::BUFFER_REPLAYED_EVENTS_TOTAL, labels),
            ledger: Arc::default(),
        }
    }
}

/// The shared state of one disk buffer's two sides.
pub(super) struct DiskShared {
    /// Events stored and not yet handed to the component (the depth).
    pub(super) pending_events: AtomicI64,
    /// Set when the reading component is gone: a blocked append turns into
    /// a counted `downstream_closed` drop instead of waiting forever.
    reader_gone: AtomicBool,
}

/// The upstream side: clone per edge.
#[derive(Clone)]
pub(super) struct DiskTarget {
    tx: mpsc::Sender<AppendRequest>,
    codec: Arc<dyn BatchCodec>,
}

impl DiskTarget {
    /// Encodes and stores one batch; returns once the writer thread has
    /// the events in a segment file, or dropped them (with the reason).
    pub(super) async fn append(&self, batch: &Batch, ledger: Option<EdgeEntry>) -> Appended {
        let mut payload = Vec::new();
        if let Err(error) = self.codec.encode(batch, &mut payload) {
            tracing::error!(%error, "a batch could not be encoded for the disk buffer; dropping it");
            if let Some(ledger) = ledger {
                ledger.drop_in_transit(batch.len() as u64, DropReason::WriteFailed);
            }
            return Appended::Dropped(DropReason::WriteFailed);
        }
        let n_events = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let (reply, answer) = oneshot::channel();
        let dropped = |reason: DropReason, ledger: Option<EdgeEntry>| {
            if let Some(ledger) = ledger {
                ledger.drop_in_transit(u64::from(n_events), reason);
            }
            Appended::Dropped(reason)
        };
        if let Err(mpsc::error::SendError(request)) =
            self.tx.send(AppendRequest { payload, n_events, reply, ledger }).await
        {
            return dropped(DropReason::DownstreamClosed, request.ledger);
        }
        // The writer thread always answers (and books) unless it died.
        answer.await.unwrap_or(Appended::Dropped(DropReason::DownstreamClosed))
    }
}

/// The component's side.
pub struct DiskSource {
    rx: mpsc::Receiver<DiskItem>,
    acker: Acker,
    pub(super) shared: Arc<DiskShared>,
    stop: Arc<AtomicBool>,
    ledger: Arc<std::sync::Mutex<Option<crate::ledger::ComponentEntry>>>,
}

impl DiskSource {
    /// Where torn records found while reading are booked.
    pub(super) fn set_ledger(&self, entry: crate::ledger::ComponentEntry) {
        *self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(entry);
    }

    /// The next record, or `None` once every upstream is gone and
    /// everything stored has been read.
    pub(super) async fn recv(&mut self) -> Option<DiskItem> {
        let item = self.rx.recv().await?;
        let n_events = match &item {
            DiskItem::Batch(batch, _) => batch.len() as i64,
            DiskItem::Undecodable { n_events, .. } => i64::from(*n_events),
        };
        self.shared.pending_events.fetch_sub(n_events, Ordering::Relaxed);
        Some(item)
    }

    /// Acknowledges every record up to `through`: their space is freed.
    pub fn ack(&self, through: RecordId) {
        if let Err(error) = self.acker.ack(through) {
            tracing::warn!(error = %crate::error_chain(&error), "could not record a disk buffer acknowledgement; \
                           the records will be delivered again after a restart");
        }
    }

    /// Stops reading ahead (shutdown): what is still on disk stays for
    /// the next start.
    pub(super) fn stop_reading(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for DiskSource {
    fn drop(&mut self) {
        self.shared.reader_gone.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where a component's disk buffer lives when its `path` is not set.
pub fn default_dir(component: &str) -> PathBuf {
    PathBuf::from("data/buffers").join(component)
}

/// Opens a component's disk buffer and starts its two threads.
pub(super) fn open(
    component: &str,
    config: &DiskConfig,
    when_full: WhenFull,
    read_ahead: usize,
    codec: Arc<dyn BatchCodec>,
) -> Result<(DiskTarget, DiskSource, OpenReport, DiskThreads), disk_buffer::DiskBufferError> {
    let dir = config.path.clone().unwrap_or_else(|| default_dir(component));
    let segment_bytes = (config.max_bytes / 4).clamp(1 << 20, 64 << 20);
    let (writer, reader, report) =
        disk_buffer::open(&DiskBufferConfig { dir: dir.clone(), max_bytes: config.max_bytes, segment_bytes })?;
    let metrics = DiskMetrics::new(component);
    let metrics_ledger = Arc::clone(&metrics.ledger);
    metrics.torn_records.increment(report.torn_records);
    metrics.replayed.increment(report.events_pending);
    if report.records_pending > 0 || report.torn_records > 0 {
        tracing::info!(
            component,
            dir = %dir.display(),
            records = report.records_pending,
            events = report.events_pending,
            torn_records = report.torn_records,
            torn_bytes = report.torn_bytes,
            "disk buffer holds unacknowledged records from an earlier run; delivering them again"
        );
    }
    let shared = Arc::new(DiskShared {
        pending_events: AtomicI64::new(i64::try_from(report.events_pending).unwrap_or(i64::MAX)),
        reader_gone: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let acker = reader.acker();
    let (append_tx, append_rx) = mpsc::channel(4);
    let (item_tx, item_rx) = mpsc::channel(read_ahead.max(1));
    let writer_thread = spawn_thread(format!("hf-bufw-{component}"), {
        let (shared, metrics) = (Arc::clone(&shared), metrics.clone());
        move || write_loop(writer, append_rx, when_full, &shared, &metrics)
    })?;
    let reader_thread = spawn_thread(format!("hf-bufr-{component}"), {
        let (codec, stop) = (Arc::clone(&codec), Arc::clone(&stop));
        let torn_at_open = report.torn_records;
        move || read_loop(reader, item_tx, codec.as_ref(), &stop, &metrics, torn_at_open)
    })?;
    Ok((
        DiskTarget { tx: append_tx, codec },
        DiskSource { rx: item_rx, acker, shared, stop, ledger: Arc::clone(&metrics_ledger) },
        report,
        DiskThreads(vec![writer_thread, reader_thread]),
    ))
}

/// A disk buffer's two threads. The engine joins them once every task of
/// the run ended (the writer then has no sender left, the reader no
/// component), so the final sync and the directory's lock are done with
/// before `run` returns.
pub struct DiskThreads(Vec<std::thread::JoinHandle<()>>);

impl DiskThreads {
    /// Waits for both threads (blocking: call from a blocking context).
    pub fn join(self) {
        for thread in self.0 {
            if thread.join().is_err() {
                tracing::error!("a disk buffer thread panicked");
            }
        }
    }
}

fn spawn_thread(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, disk_buffer::DiskBufferError> {
    // Thread names are cut at 15 bytes by the kernel; the prefix says enough.
    std::thread::Builder::new().name(name).spawn(body).map_err(|source| disk_buffer::DiskBufferError::Thread { source })
}

fn write_loop(
    mut writer: BufferWriter,
    mut requests: mpsc::Receiver<AppendRequest>,
    when_full: WhenFull,
    shared: &DiskShared,
    metrics: &DiskMetrics,
) {
    let mut last_sync = Instant::now();
    let mut out_of_space_since: Option<Instant> = None;
    while let Some(request) = requests.blocking_recv() {
        let started = Instant::now();
        let n_events = u64::from(request.n_events);
        let outcome = loop {
            if let Some(ledger) = &request.ledger {
                ledger.accept(n_events);
            }
            let appended = writer.append(request.n_events, &request.payload);
            if appended.is_err() {
                if let Some(ledger) = &request.ledger {
                    ledger.unaccept(n_events);
                }
            }
            match appended {
                Ok(_) => {
                    if let Some(since) = out_of_space_since.take() {
                        tracing::info!(after = ?since.elapsed(), "disk buffer has space again");
                    }
                    shared.pending_events.fetch_add(i64::from(request.n_events), Ordering::Relaxed);
                    break Appended::Stored { waited: started.elapsed() };
                }
                Err(AppendError::Full { needed, .. }) => {
                    if when_full == WhenFull::DropNewest {
                        break Appended::Dropped(DropReason::BufferFull);
                    }
                    if shared.reader_gone.load(Ordering::Relaxed) {
                        break Appended::Dropped(DropReason::DownstreamClosed);
                    }
                    writer.wait_for_room(needed, READ_POLL);
                }
                Err(AppendError::NoSpace(error)) => {
                    if out_of_space_since.is_none() {
                        tracing::warn!(%error, policy = when_full.as_str(), "disk buffer's filesystem is full");
                        out_of_space_since = Some(Instant::now());
                    }
                    if when_full == WhenFull::DropNewest {
                        break Appended::Dropped(DropReason::DiskFull);
                    }
                    if shared.reader_gone.load(Ordering::Relaxed) {
                        break Appended::Dropped(DropReason::DownstreamClosed);
                    }
                    std::thread::sleep(NO_SPACE_RETRY);
                }
                Err(error) => {
                    tracing::error!(error = %crate::error_chain(&error), "disk buffer append failed; dropping the batch");
                    break Appended::Dropped(DropReason::WriteFailed);
                }
            }
        };
        if let (Appended::Dropped(reason), Some(ledger)) = (&outcome, &request.ledger) {
            ledger.drop_in_transit(n_events, *reason);
        }
        // The sender may have gone (its task ended): the outcome is then
        // counted by nobody, but the events are stored or were never
        // accepted, so nothing is miscounted.
        let _ = request.reply.send(outcome);
        metrics.bytes.set(writer.bytes_used() as f64);
        if last_sync.elapsed() >= SYNC_INTERVAL {
            sync(&mut writer);
            last_sync = Instant::now();
        }
    }
    sync(&mut writer);
}

fn sync(writer: &mut BufferWriter) {
    if let Err(error) = writer.sync() {
        tracing::warn!(error = %crate::error_chain(&error), "disk buffer sync failed");
    }
}

fn read_loop(
    mut reader: BufferReader,
    items: mpsc::Sender<DiskItem>,
    codec: &dyn BatchCodec,
    stop: &AtomicBool,
    metrics: &DiskMetrics,
    torn_at_open: u64,
) {
    let mut torn_counted = torn_at_open;
    while !stop.load(Ordering::Relaxed) {
        let record = match reader.next(READ_POLL) {
            Ok(disk_buffer::Next::Record(record)) => record,
            Ok(disk_buffer::Next::Timeout) => continue,
            Ok(disk_buffer::Next::Closed) => break,
            Err(error) => {
                tracing::error!(error = %crate::error_chain(&error), "disk buffer read failed; the records stay on disk");
                break;
            }
        };
        let (torn, _) = reader.torn();
        if torn > torn_counted {
            metrics.torn_records.increment(torn - torn_counted);
            if let Some(entry) = metrics.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
                entry.torn(torn - torn_counted);
            }
            torn_counted = torn;
        }
        let item = match codec.decode(&record.payload) {
            Ok(batch) => DiskItem::Batch(batch, record.id),
            Err(error) => {
                metrics.undecodable.increment(1);
                DiskItem::Undecodable { record: record.id, n_events: record.n_events, error: error.to_string() }
            }
        };
        if items.blocking_send(item).is_err() {
            break;
        }
    }
}
