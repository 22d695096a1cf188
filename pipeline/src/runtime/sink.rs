//! The one sink loop: input, ticks, acknowledgements and shutdown.
//!
//! A batch counts as *sent* only once the sink reports it durable
//! ([`Sink::durable_batches`]); until then it is *in process*. A disk
//! buffer's record is acknowledged at the same moment, so its segment may
//! go. A sink whose acknowledgements arrive in the background (Kafka's
//! delivery reports) is polled every [`ACK_POLL`] while it lags, so they do
//! not wait for the next batch; any other sink's mark is read after each
//! write and tick, the only places it moves.

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
    let poll_acks = sink.acknowledges_in_background();
    let mut unacked = Unacked::default();
    // Only a disk buffer stops early on shutdown (its records are stored);
    // a memory buffer drains to the end.
    let mut watch_stop = input.is_disk();
    loop {
        let lagging = poll_acks && unacked.is_lagging();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::super::run;
    use super::super::tests::OneBatch;
    use crate::component::{BuildFn, BuildResult, ComponentError, ComponentSpec, Sink, Source};
    use crate::config::{ComponentOptions, SourceFile, TopologyConfig};
    use crate::event::Batch;
    use crate::health::Health;
    use crate::shutdown::shutdown_channel;
    use crate::topology::Topology;

    /// Keeps its one batch in flight until another thread (`Background`)
    /// or its flush (`Foreground`) makes it durable; counts how often the
    /// engine reads its mark.
    struct InFlight {
        background: bool,
        reads: &'static AtomicU64,
        durable: Arc<AtomicU64>,
    }

    #[async_trait]
    impl Sink for InFlight {
        async fn write(&mut self, _batch: Batch) -> Result<(), ComponentError> {
            if self.background {
                let durable = Arc::clone(&self.durable);
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    durable.store(1, Ordering::SeqCst);
                });
            }
            Ok(())
        }

        fn durable_batches(&self) -> Option<u64> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Some(self.durable.load(Ordering::SeqCst))
        }

        fn acknowledges_in_background(&self) -> bool {
            self.background
        }

        async fn flush(&mut self) -> Result<(), ComponentError> {
            self.durable.store(1, Ordering::SeqCst);
            Ok(())
        }
    }

    static BACKGROUND_READS: AtomicU64 = AtomicU64::new(0);
    static FOREGROUND_READS: AtomicU64 = AtomicU64::new(0);

    fn one_batch(_: &ComponentOptions) -> BuildResult<dyn Source> {
        Ok(Box::new(OneBatch))
    }
    fn background(_: &ComponentOptions) -> BuildResult<dyn Sink> {
        Ok(Box::new(InFlight { background: true, reads: &BACKGROUND_READS, durable: Arc::default() }))
    }
    fn foreground(_: &ComponentOptions) -> BuildResult<dyn Sink> {
        Ok(Box::new(InFlight { background: false, reads: &FOREGROUND_READS, durable: Arc::default() }))
    }

    const REGISTRY: &[ComponentSpec] = &[
        ComponentSpec { type_name: "one_batch", summary: "test", build: BuildFn::Source(one_batch) },
        ComponentSpec { type_name: "background", summary: "test", build: BuildFn::Sink(background) },
        ComponentSpec { type_name: "foreground", summary: "test", build: BuildFn::Sink(foreground) },
    ];

    fn topology(sink: &str) -> Topology {
        let text = format!(
            "[api]\nenabled = false\n[sources.src]\ntype = \"one_batch\"\n[sinks.out]\ntype = \"{sink}\"\ninputs = [\"src\"]\n"
        );
        Topology::build(TopologyConfig::parse(SourceFile::new("test.toml", text)).expect("parses"), REGISTRY)
            .expect("builds")
    }

    /// Runs `sink` for 300 ms with its one batch in flight, then stops.
    async fn run_idle(sink: &str) -> u64 {
        let (trigger, _) = shutdown_channel();
        let stop = trigger.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            stop.trigger();
        });
        let report = run(topology(sink), trigger, Health::default()).await.expect("clean run");
        report.components["out"].sent
    }

    /// Issue #12: polling a sink's mark every 10 ms was most of an idle
    /// agent's wake-ups. Only a sink whose acknowledgements arrive on
    /// another thread is polled, and its acknowledgement then counts
    /// without new input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_sink_that_acknowledges_in_the_background_is_polled_while_idle() {
        assert_eq!(run_idle("background").await, 1, "acknowledged, then counted sent");
        let background = BACKGROUND_READS.load(Ordering::SeqCst);
        assert!(background >= 3, "polled while its batch was in flight: {background} reads");
        assert_eq!(run_idle("foreground").await, 1, "durable at the flush");
        let foreground = FOREGROUND_READS.load(Ordering::SeqCst);
        assert!(foreground <= 3, "read after the write and at the end, not polled: {foreground} reads");
    }
}
