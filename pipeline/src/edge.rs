//! Bounded edges: the only code that decides what a full buffer does, and
//! the only code that counts what it drops.
//!
//! Each transform and sink owns one input buffer, bounded in *events* (not
//! batches, so capacity means the same thing whatever the batch size). Every
//! upstream holds an [`EdgeSender`] into it (fan-in); a component with
//! several downstreams sends through a [`Fanout`] (fan-out). Room is tracked
//! with a semaphore of event permits; batches travel on an unbounded queue
//! that the permits keep bounded.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use metrics::Counter;
use tokio::sync::{mpsc, Semaphore};

use crate::event::Batch;
use crate::ledger::{ComponentEntry, EdgeEntry};
use crate::metrics::{BufferGauges, DropReason, EdgeMetrics, EdgeReport};

/// What a sender does when the downstream buffer has no room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room. Backpressure travels upstream to the source, which
    /// slows down (or, for a kernel ring buffer, counts its own losses).
    /// Nothing is lost; a slow sink slows the whole path.
    #[default]
    Block,
    /// Keep what fits and drop the newest events of the batch, counting
    /// them with reason `buffer_full`. Upstream never waits, so one slow
    /// sink cannot stall its siblings; the price is counted loss.
    DropNewest,
}

impl WhenFull {
    /// Parses the configuration name.
    pub fn from_name(name: &str) -> Option<WhenFull> {
        match name {
            "block" => Some(WhenFull::Block),
            "drop_newest" => Some(WhenFull::DropNewest),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
        }
    }
}

/// `buffer = { capacity = N, when_full = "..." }` on a transform or sink,
/// or `buffer = { type = "disk", max_bytes = N, when_full = "...", path = "..." }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    /// Events the buffer holds before `when_full` applies (a memory
    /// buffer; for a disk buffer, the events decoded ahead of the reader).
    pub capacity: NonZeroUsize,
    pub when_full: WhenFull,
    /// `Some` for a disk buffer: events are appended to segment files
    /// before the upstream is told they were accepted, and leave them only
    /// once the component acknowledged them.
    pub disk: Option<DiskConfig>,
}

/// The disk half of a `type = "disk"` buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Where the segment files go; `None`: `data/buffers/<component>`.
    pub path: Option<std::path::PathBuf>,
    /// Unacknowledged bytes on disk before `when_full` applies.
    pub max_bytes: u64,
}

/// Default `max_bytes` of a disk buffer: a broker outage of minutes at
/// tens of thousands of events per second, without filling a small disk.
pub const DEFAULT_DISK_MAX_BYTES: u64 = 256 << 20;

/// The smallest `max_bytes` accepted: a few segments' worth.
pub const MIN_DISK_MAX_BYTES: u64 = 1 << 20;

/// Default buffer capacity in events: a few batches of the default size,
/// enough to smooth bursts without hiding a stalled sink for long.
pub const DEFAULT_CAPACITY: usize = 4096;

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            when_full: WhenFull::Block,
            disk: None,
        }
    }
}

mod disk;

pub use disk::{default_dir as default_disk_dir, DiskItem, DiskThreads};

struct Shared {
    room: Semaphore,
    capacity: usize,
    gauges: BufferGauges,
}

impl Shared {
    fn update_depth(&self) {
        let depth = self.capacity.saturating_sub(self.room.available_permits());
        self.gauges.depth.set(depth as f64);
    }
}

/// Creates one component's memory input buffer. Clone the sender half per
/// upstream edge with [`BufferHandle::sender`].
pub fn buffer(config: &BufferConfig, gauges: BufferGauges) -> (BufferHandle, EdgeReceiver) {
    let capacity = config.capacity.get();
    let shared = Arc::new(Shared { room: Semaphore::new(capacity), capacity, gauges });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        BufferHandle { target: Target::Memory { tx, shared: Arc::clone(&shared) }, when_full: config.when_full },
        EdgeReceiver { inner: Inner::Memory { rx, shared }, ledger: None },
    )
}

/// Opens one component's disk input buffer (`config.disk` must be set)
/// and starts its writer and reader threads. Fails on a directory that
/// cannot be used (unwritable, holding unknown files); never deletes.
pub fn disk_buffer(
    component: &str,
    config: &BufferConfig,
    codec: Arc<dyn crate::batch_codec::BatchCodec>,
    gauges: BufferGauges,
) -> Result<
    (BufferHandle, EdgeReceiver, crate::disk_buffer::OpenReport, DiskThreads),
    crate::disk_buffer::DiskBufferError,
> {
    let disk_config = config.disk.clone().unwrap_or(DiskConfig { path: None, max_bytes: DEFAULT_DISK_MAX_BYTES });
    // Read ahead in batches: the memory capacity over a typical batch.
    let read_ahead = (config.capacity.get() / 1024).clamp(1, 8);
    let (target, source, report, threads) = disk::open(component, &disk_config, config.when_full, read_ahead, codec)?;
    gauges.depth.set(report.events_pending as f64);
    Ok((
        BufferHandle { target: Target::Disk(target), when_full: config.when_full },
        EdgeReceiver { inner: Inner::Disk { source, gauges }, ledger: None },
        report,
        threads,
    ))
}

/// Where an edge's events go: a memory buffer, or a disk buffer's writer.
#[derive(Clone)]
enum Target {
    Memory { tx: mpsc::UnboundedSender<(Batch, u32)>, shared: Arc<Shared> },
    Disk(disk::DiskTarget),
}

/// The write side of a buffer before it is handed to an upstream.
pub struct BufferHandle {
    target: Target,
    when_full: WhenFull,
}

impl BufferHandle {
    /// A sender for the edge `from` → this buffer's owner.
    pub fn sender(&self, from: &str, to: &str, metrics: EdgeMetrics) -> EdgeSender {
        EdgeSender {
            target: self.target.clone(),
            when_full: self.when_full,
            metrics,
            report: EdgeReport { from: from.to_owned(), to: to.to_owned(), ..EdgeReport::default() },
            ledger: None,
        }
    }
}

/// One upstream's handle on one downstream buffer.
pub struct EdgeSender {
    target: Target,
    when_full: WhenFull,
    metrics: EdgeMetrics,
    report: EdgeReport,
    ledger: Option<EdgeEntry>,
}

impl EdgeSender {
    /// Books this edge in the loss ledger (the engine does, at start).
    pub fn set_ledger(&mut self, entry: EdgeEntry) {
        self.ledger = Some(entry);
    }

    /// Sends a batch, applying the buffer's `when_full` policy. Returns the
    /// number of events that entered the buffer.
    pub async fn send(&mut self, batch: Batch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let blocked_before = self.report.blocked_seconds;
        let accepted = self.send_inner(batch).await;
        if let Some(ledger) = &self.ledger {
            ledger.blocked(self.report.blocked_seconds - blocked_before);
        }
        accepted
    }

    async fn send_inner(&mut self, batch: Batch) -> usize {
        match &self.target {
            Target::Memory { tx, shared } => {
                let (tx, shared) = (tx.clone(), Arc::clone(shared));
                self.send_to_memory(&tx, &shared, batch).await
            }
            Target::Disk(target) => {
                let target = target.clone();
                match target.append(&batch, self.ledger.clone()).await {
                    disk::Appended::Stored { waited } => {
                        if !waited.is_zero() {
                            let blocked = waited.as_secs_f64();
                            self.metrics.blocked_seconds.increment(blocked);
                            self.report.blocked_seconds += blocked;
                        }
                        self.count_sent(batch.len());
                        batch.len()
                    }
                    // The writer thread booked the drop in the ledger.
                    disk::Appended::Dropped(reason) => {
                        self.count_drop_metrics(reason, batch.len() as u64);
                        0
                    }
                }
            }
        }
    }

    async fn send_to_memory(
        &mut self,
        tx: &mpsc::UnboundedSender<(Batch, u32)>,
        shared: &Arc<Shared>,
        mut batch: Batch,
    ) -> usize {
        let wanted = batch.len().min(shared.capacity);
        let permits = match self.when_full {
            WhenFull::Block => {
                let acquired = match shared.room.try_acquire_many(permit_count(wanted)) {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        let started = Instant::now();
                        let permit = shared.room.acquire_many(permit_count(wanted)).await.ok();
                        let blocked = started.elapsed().as_secs_f64();
                        self.metrics.blocked_seconds.increment(blocked);
                        self.report.blocked_seconds += blocked;
                        permit
                    }
                };
                match acquired {
                    Some(permit) => {
                        permit.forget();
                        wanted
                    }
                    None => return self.drop_all(batch, DropReason::DownstreamClosed),
                }
            }
            WhenFull::DropNewest => loop {
                if shared.room.is_closed() {
                    return self.drop_all(batch, DropReason::DownstreamClosed);
                }
                let fits = shared.room.available_permits().min(batch.len());
                if fits == 0 {
                    break 0;
                }
                // Another upstream may take the room between the two calls:
                // then look again rather than over-drop.
                if let Ok(permit) = shared.room.try_acquire_many(permit_count(fits)) {
                    permit.forget();
                    break fits;
                }
            },
        };
        if permits < batch.len() && self.when_full == WhenFull::DropNewest {
            let n_dropped = (batch.len() - permits) as u64;
            batch.truncate(permits);
            self.count_drop(DropReason::BufferFull, n_dropped);
            if batch.is_empty() {
                return 0;
            }
        }
        let n_events = batch.len();
        // Booked before the reader can take the batch, so the buffer's
        // `queued` never runs behind its `received`.
        if let Some(ledger) = &self.ledger {
            ledger.accept(n_events as u64);
        }
        match tx.send((batch, permits as u32)) {
            Ok(()) => {
                shared.update_depth();
                self.count_sent(n_events);
                n_events
            }
            Err(mpsc::error::SendError((batch, _))) => {
                if let Some(ledger) = &self.ledger {
                    ledger.unaccept(n_events as u64);
                }
                self.drop_all(batch, DropReason::DownstreamClosed)
            }
        }
    }

    fn count_sent(&mut self, n_events: usize) {
        self.metrics.sent.increment(n_events as u64);
        self.report.sent += n_events as u64;
    }

    fn drop_all(&mut self, batch: Batch, reason: DropReason) -> usize {
        self.count_drop(reason, batch.len() as u64);
        0
    }

    fn count_drop(&mut self, reason: DropReason, n_events: u64) {
        if let Some(ledger) = &self.ledger {
            ledger.drop_in_transit(n_events, reason);
        }
        self.count_drop_metrics(reason, n_events);
    }

    /// The metrics and report side of a drop (a disk buffer's writer books
    /// its drops in the ledger itself).
    fn count_drop_metrics(&mut self, reason: DropReason, n_events: u64) {
        self.metrics.discarded[reason.index()].increment(n_events);
        self.metrics.target_discarded[reason.index()].increment(n_events);
        *self.report.discarded.entry(reason.as_str()).or_default() += n_events;
    }

    /// Totals of this edge so far.
    pub fn report(&self) -> EdgeReport {
        self.report.clone()
    }
}

fn permit_count(n_events: usize) -> u32 {
    u32::try_from(n_events).unwrap_or(u32::MAX)
}

/// The read side of a component's input buffer.
pub struct EdgeReceiver {
    inner: Inner,
    ledger: Option<ComponentEntry>,
}

enum Inner {
    Memory { rx: mpsc::UnboundedReceiver<(Batch, u32)>, shared: Arc<Shared> },
    Disk { source: disk::DiskSource, gauges: BufferGauges },
}

/// One batch from an input buffer, with what acknowledging it takes.
pub enum Received {
    /// From a memory buffer: nothing to acknowledge.
    Memory(Batch),
    /// From a disk buffer: acknowledge `record` (through
    /// [`EdgeReceiver::ack`]) once the batch is durable downstream.
    Disk(DiskItem),
}

impl EdgeReceiver {
    /// The next batch, or `None` once every upstream has finished and the
    /// buffer is empty: that is how a drain completes. A disk buffer's
    /// record is acknowledged at once (for components that finish with a
    /// batch when `process` returns: transforms).
    pub async fn recv(&mut self) -> Option<Batch> {
        loop {
            match self.recv_tracked().await? {
                Received::Memory(batch) => return Some(batch),
                Received::Disk(DiskItem::Batch(batch, record)) => {
                    self.ack(record);
                    return Some(batch);
                }
                Received::Disk(DiskItem::Undecodable { record, n_events, error }) => {
                    tracing::warn!(%error, n_events, "skipping a disk buffer record that does not decode");
                    if let Some(ledger) = &self.ledger {
                        ledger.received(u64::from(n_events));
                        ledger.discarded(DropReason::Undecodable, u64::from(n_events));
                    }
                    self.ack(record);
                }
            }
        }
    }

    /// The next batch with its disk record, for a sink that acknowledges
    /// only what its destination made durable.
    pub async fn recv_tracked(&mut self) -> Option<Received> {
        match &mut self.inner {
            Inner::Memory { rx, shared } => {
                let (batch, permits) = rx.recv().await?;
                shared.room.add_permits(permits as usize);
                shared.update_depth();
                Some(Received::Memory(batch))
            }
            Inner::Disk { source, gauges } => {
                let item = source.recv().await?;
                gauges.depth.set(source.shared.pending_events.load(std::sync::atomic::Ordering::Relaxed).max(0) as f64);
                Some(Received::Disk(item))
            }
        }
    }

    /// Books this buffer's reads in the loss ledger (the engine does, at
    /// start; a disk buffer's replayed and torn records too).
    pub fn set_ledger(&mut self, entry: ComponentEntry, replayed_events: u64, torn_records: u64) {
        entry.replayed(replayed_events, torn_records);
        if let Inner::Disk { source, .. } = &self.inner {
            source.set_ledger(entry.clone());
        }
        self.ledger = Some(entry);
    }

    /// Acknowledges a disk buffer's records up to `through`; a no-op for a
    /// memory buffer.
    pub fn ack(&self, through: crate::disk_buffer::RecordId) {
        if let Inner::Disk { source, .. } = &self.inner {
            source.ack(through);
        }
    }

    /// Shutdown: a disk buffer stops reading ahead (what is stored stays
    /// for the next start, so `recv` soon returns `None`); a memory buffer
    /// drains to the end as before.
    pub fn stop_reading(&self) {
        if let Inner::Disk { source, .. } = &self.inner {
            source.stop_reading();
        }
    }

    /// Whether this is a disk buffer.
    pub fn is_disk(&self) -> bool {
        matches!(self.inner, Inner::Disk { .. })
    }

    /// Stops accepting batches and counts the events still queued, for a
    /// reader that cannot go on: they are reported, not silently lost. A
    /// disk buffer keeps its records for the next start; nothing is lost,
    /// so nothing is counted.
    pub async fn close_and_count(&mut self) -> u64 {
        match &mut self.inner {
            Inner::Memory { rx, shared } => {
                shared.room.close();
                rx.close();
                let mut n_events = 0;
                while let Some((batch, _)) = rx.recv().await {
                    n_events += batch.len() as u64;
                }
                n_events
            }
            Inner::Disk { source, .. } => {
                source.stop_reading();
                0
            }
        }
    }
}

impl Drop for EdgeReceiver {
    /// A reader that goes away (its component failed) must not leave
    /// blocked senders waiting for room forever: closing the semaphore turns
    /// their wait into a counted `downstream_closed` drop.
    fn drop(&mut self) {
        if let Inner::Memory { shared, .. } = &self.inner {
            shared.room.close();
        }
    }
}

/// Everything a component sends goes through its fan-out: one edge per
/// downstream, each getting the whole batch.
pub struct Fanout {
    edges: Vec<EdgeSender>,
    sent: Counter,
    n_sent: u64,
    on_drop: Option<OnFanoutDrop>,
    /// The component's ledger row, and whether it is a source (whose sends
    /// are also what it produced).
    ledger: Option<(ComponentEntry, bool)>,
}

/// Receives a fan-out's totals (events sent, per-edge reports) when it drops.
pub type OnFanoutDrop = Box<dyn FnOnce(u64, Vec<EdgeReport>) + Send>;

impl Fanout {
    /// A fan-out over the given edges; `sent` is the component's
    /// `sent_events_total` handle.
    pub fn new(edges: Vec<EdgeSender>, sent: Counter) -> Fanout {
        Fanout { edges, sent, n_sent: 0, on_drop: None, ledger: None }
    }

    /// Books this fan-out in the loss ledger (the engine does, at start).
    pub fn set_ledger(&mut self, entry: ComponentEntry, is_source: bool) {
        self.ledger = Some((entry, is_source));
    }

    /// Registers a callback that gets the totals when this fan-out drops.
    pub fn set_on_drop(&mut self, on_drop: OnFanoutDrop) {
        self.on_drop = Some(on_drop);
    }

    /// Sends a batch to every downstream (the last one gets the original,
    /// the others a clone). Counts the component's sent events once per
    /// batch, whatever the number of downstreams.
    pub async fn send(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let n_events = batch.len() as u64;
        self.sent.increment(n_events);
        self.n_sent += n_events;
        if let Some((entry, is_source)) = &self.ledger {
            if *is_source {
                entry.produced(n_events);
            }
            entry.fan_out(n_events, self.edges.iter().filter_map(|edge| edge.ledger.as_ref()));
        }
        if let Some((last, others)) = self.edges.split_last_mut() {
            for edge in others {
                edge.send(batch.clone()).await;
            }
            last.send(batch).await;
        }
    }

    /// Events handed to this fan-out.
    pub fn n_sent(&self) -> u64 {
        self.n_sent
    }

    /// Totals of every edge.
    pub fn reports(&self) -> Vec<EdgeReport> {
        self.edges.iter().map(EdgeSender::report).collect()
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(self.n_sent, self.reports());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Role;
    use crate::event::{Event, EventMeta, ProcessExit, ProcessKey};

    fn batch(first_id: u64, n: usize) -> Batch {
        (0..n as u64)
            .map(|i| {
                Event::ProcessExit(ProcessExit {
                    context: None,
                    meta: EventMeta { ts_ns: 0, event_id: first_id + i },
                    process: ProcessKey { pid: 1, start_time_ns: 0 },
                    exit_code: 0,
                    cpu_ns: 0,
                })
            })
            .collect()
    }

    fn edge(capacity: usize, when_full: WhenFull) -> (EdgeSender, EdgeReceiver) {
        let config = BufferConfig { capacity: NonZeroUsize::new(capacity).expect("non-zero"), when_full, disk: None };
        let (handle, receiver) = buffer(&config, BufferGauges::new("to", capacity));
        (handle.sender("from", "to", EdgeMetrics::new("from", "to", Role::Sink, "test")), receiver)
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        batch.iter().map(|e| e.meta().event_id).collect()
    }

    #[tokio::test]
    async fn drop_newest_keeps_what_fits_and_counts_the_rest() {
        let (mut tx, mut rx) = edge(10, WhenFull::DropNewest);
        assert_eq!(tx.send(batch(0, 4)).await, 4);
        assert_eq!(tx.send(batch(4, 25)).await, 6, "room for 6 more");
        assert_eq!(tx.send(batch(29, 3)).await, 0, "full");
        let report = tx.report();
        assert_eq!(report.sent, 10);
        assert_eq!(report.discarded.get("buffer_full"), Some(&22));
        assert_eq!(ids(&rx.recv().await.expect("first")), vec![0, 1, 2, 3]);
        assert_eq!(ids(&rx.recv().await.expect("second")), vec![4, 5, 6, 7, 8, 9], "the newest were dropped");
        assert_eq!(tx.send(batch(100, 2)).await, 2, "room again after reading");
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let (mut tx, mut rx) = edge(8, WhenFull::Block);
        let producer = tokio::spawn(async move {
            for i in 0..50 {
                assert_eq!(tx.send(batch(i * 5, 5)).await, 5);
            }
            tx.report()
        });
        let mut received = Vec::new();
        // Read slowly so the producer has to wait.
        while received.len() < 250 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            received.extend(ids(&rx.recv().await.expect("batch")));
        }
        let report = producer.await.expect("producer");
        assert_eq!(received, (0..250).collect::<Vec<u64>>());
        assert_eq!(report.sent, 250);
        assert!(report.discarded.is_empty());
        assert!(report.blocked_seconds > 0.0, "the producer waited");
        assert!(rx.recv().await.is_none(), "closed once the sender is gone");
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_buffer_still_passes() {
        let (mut tx, mut rx) = edge(4, WhenFull::Block);
        assert_eq!(tx.send(batch(0, 9)).await, 9);
        assert_eq!(rx.recv().await.expect("batch").len(), 9);
    }

    #[tokio::test]
    async fn a_vanished_reader_turns_waits_into_counted_drops() {
        let (mut tx, rx) = edge(4, WhenFull::Block);
        assert_eq!(tx.send(batch(0, 4)).await, 4);
        let blocked = tokio::spawn(async move {
            let accepted = tx.send(batch(4, 3)).await;
            (accepted, tx.report())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let (accepted, report) =
            tokio::time::timeout(Duration::from_secs(5), blocked).await.expect("no hang").expect("task");
        assert_eq!(accepted, 0);
        assert_eq!(report.discarded.get("downstream_closed"), Some(&3));
    }

    #[tokio::test]
    async fn fan_out_gives_every_downstream_the_whole_batch() {
        let (a_tx, mut a_rx) = edge(100, WhenFull::Block);
        let (b_tx, mut b_rx) = edge(100, WhenFull::Block);
        let mut fanout = Fanout::new(vec![a_tx, b_tx], metrics::Counter::noop());
        fanout.send(batch(0, 7)).await;
        assert_eq!(fanout.n_sent(), 7, "counted once, not per downstream");
        assert_eq!(ids(&a_rx.recv().await.expect("a")), (0..7).collect::<Vec<u64>>());
        assert_eq!(ids(&b_rx.recv().await.expect("b")), (0..7).collect::<Vec<u64>>());
    }
}
