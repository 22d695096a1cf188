//! The source's two run loops: reading the ring buffer (eBPF running) and
//! scanning `/proc` (the fallback). Both send one batch per drain or scan,
//! stamp event ids from the source's context, and stop on shutdown after
//! a last drain.

use std::path::PathBuf;
use std::time::Duration;

use pipeline::{ComponentError, SourceContext};
use tokio::time::MissedTickBehavior;

use super::counters::Counters;
use super::events::{self, to_event};
use super::fallback::Detector;
use super::loader::Loaded;
use super::ring::RingReader;

/// Most records per batch: a storm still yields batches of a bounded size.
pub const MAX_BATCH: usize = 4096;
/// How often the kernel's counters are read into the metrics.
const COUNTER_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the ring until shutdown. `loaded` is kept alive to the end:
/// dropping it detaches the programs.
pub async fn run(mut loaded: Loaded, mut cx: SourceContext, drain_interval: Duration) -> Result<(), ComponentError> {
    let failed = |e: super::loader::LoadError| ComponentError::Failed(e.to_string());
    let mut ring = RingReader::new(loaded.take_ring().map_err(failed)?)
        .map_err(|e| ComponentError::io("registering the eBPF ring buffer with the reactor", e))?;
    let mut counters = Counters::new(loaded.take_counters().map_err(failed)?, &cx.name);
    let tick_ns = events::tick_ns();
    let mut drain_ticker = tokio::time::interval(drain_interval);
    drain_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut counter_ticker = tokio::time::interval(COUNTER_INTERVAL);
    counter_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shutdown = cx.shutdown.clone();
    let mut sending = Sending { sequence: 0, batch_capacity: 64, tick_ns };
    loop {
        // The timers come before the ring, so a ring that is always ready
        // (a storm) cannot starve the counter export. Every branch ends in
        // a drain.
        let stopping = tokio::select! {
            biased;
            _ = shutdown.wait() => true,
            _ = counter_ticker.tick() => {
                export(&mut counters, &cx.name);
                false
            }
            _ = drain_ticker.tick() => false,
            ready = ring.readable() => {
                ready.map_err(|e| ComponentError::io("waiting on the eBPF ring buffer", e))?;
                false
            }
        };
        sending.drain(&mut ring, &mut cx).await;
        if stopping {
            break;
        }
    }
    // Detach first, so that the last drain and the last counter read are
    // final: nothing submitted after them goes unread or uncounted.
    let loaded = tokio::task::spawn_blocking(move || {
        let mut loaded = loaded;
        loaded.detach_all();
        loaded
    })
    .await
    .map_err(|e| ComponentError::Failed(format!("eBPF detach task failed: {e}")))?;
    sending.drain(&mut ring, &mut cx).await;
    export(&mut counters, &cx.name);
    tracing::debug!(source = %cx.name, events = sending.sequence, decode_errors = ring.decode_errors(),
        "ebpf source finished");
    drop(loaded);
    Ok(())
}

/// Turns drained records into batches and sends them.
struct Sending {
    /// Events sent so far (the next event id's sequence number).
    sequence: u64,
    /// Capacity for the next batch: the last batch's size, rounded up.
    batch_capacity: usize,
    tick_ns: u64,
}

impl Sending {
    /// Sends everything waiting in the ring, in batches of at most
    /// [`MAX_BATCH`].
    async fn drain(&mut self, ring: &mut RingReader, cx: &mut SourceContext) {
        loop {
            let mut batch = Vec::with_capacity(self.batch_capacity);
            let (sequence, tick_ns) = (&mut self.sequence, self.tick_ns);
            let drained = ring.drain(MAX_BATCH, |record| {
                batch.push(to_event(record, cx.event_id(*sequence), tick_ns));
                *sequence += 1;
            });
            if !batch.is_empty() {
                self.batch_capacity = batch.len().next_power_of_two().min(MAX_BATCH);
                // Never abandoned half-way, even at shutdown: downstream
                // keeps draining until this source is gone.
                cx.out.send(batch).await;
            }
            if !drained.more {
                break;
            }
        }
    }
}

fn export(counters: &mut Counters, name: &str) {
    if let Err(error) = counters.export() {
        tracing::warn!(source = %name, %error, "cannot read the eBPF counters");
    }
}

/// Scans `/proc` every `interval` until shutdown.
pub async fn run_fallback(mut cx: SourceContext, proc_root: PathBuf, interval: Duration) -> Result<(), ComponentError> {
    let mut detector = Some(Detector::new(proc_root, cx.event_id_prefix));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shutdown = cx.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            _ = ticker.tick() => {}
        }
        let Some(mut state) = detector.take() else { break };
        let (state, result) = tokio::task::spawn_blocking(move || {
            let result = state.scan(pipeline::diag::boottime_ns());
            (state, result)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("/proc fallback scan task failed: {e}")))?;
        detector = Some(state);
        match result {
            Ok(batch) if !batch.is_empty() => cx.out.send(batch).await,
            Ok(_) => {}
            Err(error) => tracing::warn!(source = %cx.name, %error, "/proc fallback scan failed"),
        }
    }
    Ok(())
}
