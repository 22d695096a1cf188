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

/// `buffer = { capacity = N, when_full = "..." }` on a transform or sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    /// Events the buffer holds before `when_full` applies.
    pub capacity: NonZeroUsize,
    pub when_full: WhenFull,
}

/// Default buffer capacity in events: a few batches of the default size,
/// enough to smooth bursts without hiding a stalled sink for long.
pub const DEFAULT_CAPACITY: usize = 4096;

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            when_full: WhenFull::Block,
        }
    }
}

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

/// Creates one component's input buffer. Clone the sender half per
/// upstream edge with [`BufferHandle::sender`].
pub fn buffer(config: BufferConfig, gauges: BufferGauges) -> (BufferHandle, EdgeReceiver) {
    let capacity = config.capacity.get();
    let shared = Arc::new(Shared { room: Semaphore::new(capacity), capacity, gauges });
    let (tx, rx) = mpsc::unbounded_channel();
    (BufferHandle { tx, shared: Arc::clone(&shared), when_full: config.when_full }, EdgeReceiver { rx, shared })
}

/// The write side of a buffer before it is handed to an upstream.
pub struct BufferHandle {
    tx: mpsc::UnboundedSender<(Batch, u32)>,
    shared: Arc<Shared>,
    when_full: WhenFull,
}

impl BufferHandle {
    /// A sender for the edge `from` → this buffer's owner.
    pub fn sender(&self, from: &str, to: &str, metrics: EdgeMetrics) -> EdgeSender {
        EdgeSender {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            when_full: self.when_full,
            metrics,
            report: EdgeReport { from: from.to_owned(), to: to.to_owned(), ..EdgeReport::default() },
        }
    }
}

/// One upstream's handle on one downstream buffer.
pub struct EdgeSender {
    tx: mpsc::UnboundedSender<(Batch, u32)>,
    shared: Arc<Shared>,
    when_full: WhenFull,
    metrics: EdgeMetrics,
    report: EdgeReport,
}

impl EdgeSender {
    /// Sends a batch, applying the buffer's `when_full` policy. Returns the
    /// number of events that entered the buffer.
    pub async fn send(&mut self, mut batch: Batch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let wanted = batch.len().min(self.shared.capacity);
        let permits = match self.when_full {
            WhenFull::Block => {
                let shared = Arc::clone(&self.shared);
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
                if self.shared.room.is_closed() {
                    return self.drop_all(batch, DropReason::DownstreamClosed);
                }
                let fits = self.shared.room.available_permits().min(batch.len());
                if fits == 0 {
                    break 0;
                }
                // Another upstream may take the room between the two calls:
                // then look again rather than over-drop.
                if let Ok(permit) = self.shared.room.try_acquire_many(permit_count(fits)) {
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
        match self.tx.send((batch, permits as u32)) {
            Ok(()) => {
                self.shared.update_depth();
                self.metrics.sent.increment(n_events as u64);
                self.report.sent += n_events as u64;
                n_events
            }
            Err(mpsc::error::SendError((batch, _))) => self.drop_all(batch, DropReason::DownstreamClosed),
        }
    }

    fn drop_all(&mut self, batch: Batch, reason: DropReason) -> usize {
        self.count_drop(reason, batch.len() as u64);
        0
    }

    fn count_drop(&mut self, reason: DropReason, n_events: u64) {
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
    rx: mpsc::UnboundedReceiver<(Batch, u32)>,
    shared: Arc<Shared>,
}

impl EdgeReceiver {
    /// The next batch, or `None` once every upstream has finished and the
    /// buffer is empty: that is how a drain completes.
    pub async fn recv(&mut self) -> Option<Batch> {
        let (batch, permits) = self.rx.recv().await?;
        self.shared.room.add_permits(permits as usize);
        self.shared.update_depth();
        Some(batch)
    }
}

impl EdgeReceiver {
    /// Stops accepting batches and counts the events still queued, for a
    /// reader that cannot go on: they are reported, not silently lost.
    pub async fn close_and_count(&mut self) -> u64 {
        self.shared.room.close();
        self.rx.close();
        let mut n_events = 0;
        while let Some((batch, _)) = self.rx.recv().await {
            n_events += batch.len() as u64;
        }
        n_events
    }
}

impl Drop for EdgeReceiver {
    /// A reader that goes away (its component failed) must not leave
    /// blocked senders waiting for room forever: closing the semaphore turns
    /// their wait into a counted `downstream_closed` drop.
    fn drop(&mut self) {
        self.shared.room.close();
    }
}

/// Everything a component sends goes through its fan-out: one edge per
/// downstream, each getting the whole batch.
pub struct Fanout {
    edges: Vec<EdgeSender>,
    sent: Counter,
    n_sent: u64,
    on_drop: Option<OnFanoutDrop>,
}

/// Receives a fan-out's totals (events sent, per-edge reports) when it drops.
pub type OnFanoutDrop = Box<dyn FnOnce(u64, Vec<EdgeReport>) + Send>;

impl Fanout {
    /// A fan-out over the given edges; `sent` is the component's
    /// `sent_events_total` handle.
    pub fn new(edges: Vec<EdgeSender>, sent: Counter) -> Fanout {
        Fanout { edges, sent, n_sent: 0, on_drop: None }
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
        let config = BufferConfig { capacity: NonZeroUsize::new(capacity).expect("non-zero"), when_full };
        let (handle, receiver) = buffer(config, BufferGauges::new("to", capacity));
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
