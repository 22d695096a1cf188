//! The one sink loop: input, ticks, acknowledgements and shutdown.
//!
//! A batch counts as *sent* only once the sink reports it durable
//! ([`Sink::durable_batches`]); until then it is *in process*. A disk
//! buffer's record is acknowledged at the same moment, so its segment may
//! go. A sink that keeps several batches in flight is polled every
//! [`ACK_POLL`] while it lags, so acknowledgements do not wait for the next
//! batch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use metrics::Counter;

use super::{finish, next_tick, ticker, TaskOutcome};
use crate::component::{ComponentError, Sink};
use crate::disk_buffer::RecordId;
use crate::edge::{DiskItem, EdgeReceiver, Received};
use crate::health::{ComponentState, HealthHandle};
use crate::metrics::{ComponentMetrics, DropReason};
use crate::shutdown::ShutdownSignal;

/// How often a lagging sink's acknowledgements are looked at.
const ACK_POLL: Duration = Duration::from_millis(10);

/// Batches written (or records skipped) and not yet durable, oldest first.
#[derive(Default)]
struct Unacked {
    pending: VecDeque<Pending>,
    /// Batches handed to `write` so far.
    written: u64,
}

struct Pending {
    /// Durable once the sink's mark reaches this many batches.
    through_batch: u64,
    record: Option<RecordId>,
    /// Events that count as sent when durable (0 for a skipped record).
    n_events: u64,
}

impl Unacked {
    fn push_written(&mut self, n_events: usize, record: Option<RecordId>) {
        self.written += 1;
        self.pending.push_back(Pending { through_batch: self.written, record, n_events: n_events as u64 });
    }

    /// A record that was not written (it did not decode): acknowledged
    /// once every batch before it is.
    fn push_skipped(&mut self, record: RecordId) {
        self.pending.push_back(Pending { through_batch: self.written, record: Some(record), n_events: 0 });
    }

    fn is_lagging(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Moves everything the sink reports durable out: counts it sent and
    /// acknowledges its disk records.
    fn release(&mut self, sink: &dyn Sink, input: &EdgeReceiver, metrics: &mut ComponentMetrics, sent: &Counter) {
        let mark = sink.durable_batches().unwrap_or(self.written).min(self.written);
        let mut last_record = None;
        let mut n_sent = 0u64;
        while self.pending.front().is_some_and(|p| p.through_batch <= mark) {
            let Some(done) = self.pending.pop_front() else { break };
            n_sent += done.n_events;
            last_record = done.record.or(last_record);
        }
        if n_sent > 0 {
            metrics.add_sent(sent, n_sent as usize);
        }
        if let Some(record) = last_record {
            input.ack(record);
        }
    }

    /// Events written but never made durable (the sink failed): lost from
    /// a memory buffer, still stored in a disk buffer.
    fn stranded_events(&self) -> u64 {
        self.pending.iter().filter(|p| p.record.is_none()).map(|p| p.n_events).sum()
    }
}

/// What woke the sink's task.
enum Next {
    Input(Option<Received>),
    Tick,
    AckPoll,
    Stop,
}

pub(super) async fn run_sink(
    name: String,
    mut sink: Box<dyn Sink>,
    mut input: EdgeReceiver,
    mut metrics: ComponentMetrics,
    sent: Counter,
    health: HealthHandle,
    mut stopping: ShutdownSignal,
) -> TaskOutcome {
    // A sink may already have reported itself degraded while opening.
    health.start();
    let mut result = Ok(());
    let mut ticker = sink.tick_interval().map(ticker);
    let mut ack_poll = tokio::time::interval(ACK_POLL);
    ack_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unacked = Unacked::default();
    // Only a disk buffer stops early on shutdown (its records are stored);
    // a memory buffer drains to the end.
    let mut watch_stop = input.is_disk();
    loop {
        let lagging = unacked.is_lagging();
        let next = tokio::select! {
            received = input.recv_tracked() => Next::Input(received),
            () = next_tick(&mut ticker) => Next::Tick,
            _ = ack_poll.tick(), if lagging => Next::AckPoll,
            () = stopping.wait(), if watch_stop => Next::Stop,
        };
        let step = match next {
            Next::Input(None) => break,
            Next::Input(Some(received)) => {
                let (batch, record) = match received {
                    Received::Memory(batch) => (batch, None),
                    Received::Disk(DiskItem::Batch(batch, record)) => (batch, Some(record)),
                    Received::Disk(DiskItem::Undecodable { record, n_events, error }) => {
                        tracing::warn!(component = %name, %error, n_events, "skipping a disk buffer record that does not decode");
                        metrics.add_received(n_events as usize);
                        metrics.add_discarded(DropReason::Undecodable, u64::from(n_events));
                        unacked.push_skipped(record);
                        unacked.release(sink.as_ref(), &input, &mut metrics, &sent);
                        continue;
                    }
                };
                let n_events = batch.len();
                metrics.add_received(n_events);
                let started = Instant::now();
                let written = sink.write(batch).await;
                if written.is_ok() {
                    metrics.record_latency(started.elapsed());
                    unacked.push_written(n_events, record);
                } else if record.is_none() {
                    metrics.add_discarded(DropReason::WriteFailed, n_events as u64);
                }
                written
            }
            Next::Tick => sink.on_tick().await,
            Next::AckPoll => Ok(()),
            Next::Stop => {
                tracing::info!(component = %name, "stopping: what is left in the disk buffer is delivered at the next start");
                input.stop_reading();
                watch_stop = false;
                Ok(())
            }
        };
        if let Err(error) = step {
            result = Err(fail(&mut input, &mut metrics, error).await);
            break;
        }
        unacked.release(sink.as_ref(), &input, &mut metrics, &sent);
    }
    if result.is_ok() {
        health.set(ComponentState::Draining, None);
        if let Err(error) = sink.flush().await {
            metrics.add_error(&error.to_string());
            result = Err(error);
        }
    }
    unacked.release(sink.as_ref(), &input, &mut metrics, &sent);
    let n_stranded = unacked.stranded_events();
    if n_stranded > 0 {
        // Written from a memory buffer, never made durable: lost, counted.
        metrics.add_discarded(DropReason::WriteFailed, n_stranded);
    }
    finish(&health, &result);
    TaskOutcome { name, report: metrics.into_report(), edges: Vec::new(), result }
}

/// Records a failed write or tick and counts what is still queued in a
/// memory buffer instead of losing it silently.
async fn fail(input: &mut EdgeReceiver, metrics: &mut ComponentMetrics, error: ComponentError) -> ComponentError {
    metrics.add_error(&error.to_string());
    let n_stranded = input.close_and_count().await;
    metrics.add_stranded(n_stranded);
    error
}
