//! The source's two run loops: reading the ring buffer (eBPF running) and
//! scanning `/proc` (the fallback). Both send one batch per drain or scan,
//! stamp event ids from the source's context, and stop on shutdown after
//! a last drain.
//!
//! With eBPF running, the reader first sends the snapshot of the processes
//! already running ([`super::snapshot`]), then drains; every batch of
//! records goes through [`Additions::complete`] (scrubbing, user names,
//! cgroup paths, exe hashes) before it is sent, and a finished hash job
//! wakes the loop to send its `ExeHash` events. Network-policy events get
//! their rule id and policy digest from the [`RuleNames`] the applier
//! publishes to, in the same pass.

use std::path::PathBuf;
use std::time::Duration;

use pipeline::event::RuleNames;
use pipeline::{ComponentError, Event, SourceContext};
use tokio::time::MissedTickBehavior;

use super::attributes::Additions;
use super::counters::Counters;
use super::events::{self, to_event};
use super::fallback::Detector;
use super::loader::Loaded;
use super::ring::RingReader;
use super::snapshot;
use super::{ContextSettings, Program};

/// Most records per batch: a storm still yields batches of a bounded size.
pub const MAX_BATCH: usize = 4096;
/// How often the kernel's counters are read into the metrics.
const COUNTER_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the ring until shutdown. `loaded` is kept alive to the end:
/// dropping it detaches the programs. `programs_problem`: why the source
/// is already degraded (programs that are not running). Network-policy
/// events get their rule ids and policy digests from `names` (a clone of
/// what the policy applier publishes to; empty without enforcement).
pub async fn run(
    mut loaded: Loaded,
    mut cx: SourceContext,
    drain_interval: Duration,
    settings: ContextSettings,
    proc_root: PathBuf,
    programs_problem: Option<String>,
    names: RuleNames,
) -> Result<(), ComponentError> {
    let failed = |e: super::loader::LoadError| ComponentError::Failed(e.to_string());
    let mut ring = RingReader::new(loaded.take_ring().map_err(failed)?)
        .map_err(|e| ComponentError::io("registering the eBPF ring buffer with the reactor", e))?;
    let mut counters = Counters::new(loaded.take_counters().map_err(failed)?, &cx.name);
    let tick_ns = events::tick_ns();
    let additions = Additions::start(&cx.name, cx.health.clone(), &settings, programs_problem).await?;
    let mut sending = Sending { sequence: 0, batch_capacity: 64, tick_ns, additions, names };
    if settings.snapshot {
        sending.snapshot(&mut cx, proc_root).await?;
    }
    let mut drain_ticker = tokio::time::interval(drain_interval);
    drain_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut counter_ticker = tokio::time::interval(COUNTER_INTERVAL);
    counter_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shutdown = cx.shutdown.clone();
    loop {
        // The timers come before the ring, so a ring that is always ready
        // (a storm) cannot starve the counter export. Every branch but a
        // finished hash ends in a drain.
        let stopping = tokio::select! {
            biased;
            _ = shutdown.wait() => true,
            _ = counter_ticker.tick() => {
                export(&mut counters, &ring, &cx);
                false
            }
            _ = drain_ticker.tick() => false,
            ready = ring.readable() => {
                ready.map_err(|e| ComponentError::io("waiting on the eBPF ring buffer", e))?;
                false
            }
            Some(done) = sending.additions.next_hash() => {
                let later = sending.additions.hash_events(done);
                sending.send(later, &mut cx).await;
                continue;
            }
        };
        sending.drain(&mut ring, &mut cx).await?;
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
    sending.drain(&mut ring, &mut cx).await?;
    export(&mut counters, &ring, &cx);
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
    additions: Additions,
    /// Rule ids and policy digests of network-policy events.
    names: RuleNames,
}

impl Sending {
    /// Sends everything waiting in the ring, in batches of at most
    /// [`MAX_BATCH`] records (plus the `ExeHash` events of earlier execs
    /// that finished while the batch waited for its own).
    async fn drain(&mut self, ring: &mut RingReader, cx: &mut SourceContext) -> Result<(), ComponentError> {
        loop {
            let mut batch = Vec::with_capacity(self.batch_capacity);
            let (sequence, tick_ns) = (&mut self.sequence, self.tick_ns);
            let drained = ring.drain(MAX_BATCH, |record| {
                batch.push(to_event(record, cx.event_id(*sequence), tick_ns));
                *sequence += 1;
            });
            if !batch.is_empty() {
                self.batch_capacity = batch.len().next_power_of_two().min(MAX_BATCH);
                self.names.fill(&mut batch);
                let mut later = Vec::new();
                self.additions.complete(&mut batch, &mut later).await?;
                self.stamp(&mut later, cx);
                batch.append(&mut later);
                // Never abandoned half-way, even at shutdown: downstream
                // keeps draining until this source is gone.
                cx.out.send(batch).await;
            }
            if !drained.more {
                return Ok(());
            }
        }
    }

    /// Gives events the next ids.
    fn stamp(&mut self, events: &mut [Event], cx: &SourceContext) {
        for event in events {
            let id = cx.event_id(self.sequence);
            self.sequence += 1;
            match event {
                Event::ExeHash(e) => e.meta.event_id = id,
                Event::ProcessSnapshot(e) => e.meta.event_id = id,
                _ => {}
            }
        }
    }

    /// Stamps and sends events made outside a drain.
    async fn send(&mut self, mut events: Vec<Event>, cx: &mut SourceContext) {
        if events.is_empty() {
            return;
        }
        self.stamp(&mut events, cx);
        cx.out.send(events).await;
    }

    /// Reads `/proc` once (blocking pool) and sends every process as a
    /// `ProcessSnapshot`, oldest first, in batches of at most
    /// [`MAX_BATCH`]. An unreadable `/proc` degrades the source; it goes
    /// on without a snapshot.
    async fn snapshot(&mut self, cx: &mut SourceContext, proc_root: PathBuf) -> Result<(), ComponentError> {
        let Some(mut identity) = self.additions.take_identity() else { return Ok(()) };
        let scrubber = self.additions.scrubber().clone();
        let root = proc_root.clone();
        let (identity, result) = tokio::task::spawn_blocking(move || {
            let result = snapshot::read(&root, &mut identity.users, &scrubber, pipeline::diag::boottime_ns());
            (identity, result)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("process snapshot task failed: {e}")))?;
        self.additions.return_identity(identity);
        let snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let reason = format!("no process snapshot: cannot list {}: {error}", proc_root.display());
                self.additions.note_proc(Some(reason));
                return Ok(());
            }
        };
        self.additions.count_scrubbed(snapshot.scrubbed as u64);
        let problem = snapshot.first_unreadable.as_ref().map(|first| {
            format!("process snapshot: {} processes partly unreadable (first: {first})", snapshot.unreadable)
        });
        self.additions.note_proc(problem);
        tracing::info!(source = %cx.name, processes = snapshot.processes.len(), vanished = snapshot.vanished,
            unreadable = snapshot.unreadable, restricted = snapshot.restricted,
            first_restricted = snapshot.first_restricted.as_deref().unwrap_or(""),
            elapsed_ms = snapshot.elapsed.as_secs_f64() * 1e3, "sending the snapshot of running processes");
        let mut batch = Vec::with_capacity(snapshot.processes.len().min(MAX_BATCH));
        for (mut process, file) in snapshot.processes.into_iter().zip(snapshot.files) {
            self.additions.hash_snapshot(&mut process, file);
            batch.push(Event::ProcessSnapshot(process));
            if batch.len() == MAX_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                self.send(full, cx).await;
            }
        }
        self.send(batch, cx).await;
        Ok(())
    }
}

/// Reads the kernel's counters into the metrics and the loss ledger. The
/// ring's read counts are taken first: a program counts a record before it
/// becomes visible, so what was read never exceeds what was submitted.
fn export(counters: &mut Counters, ring: &RingReader, cx: &SourceContext) {
    let read = ring.read_counts();
    match counters.export() {
        Ok(counts) => {
            if let Some(ledger) = cx.health.health().ledger_handle() {
                let rows = Program::ALL
                    .iter()
                    .zip(counts.iter().zip(read))
                    .map(|(program, (count, read))| (program.as_str(), count.submitted, count.lost, read));
                ledger.set_kernel(&cx.name, rows);
            }
        }
        Err(error) => tracing::warn!(source = %cx.name, %error, "cannot read the eBPF counters"),
    }
}

/// Scans `/proc` every `interval` until shutdown; exec argv is scrubbed
/// with `scrubber` (counted).
pub async fn run_fallback(
    mut cx: SourceContext,
    proc_root: PathBuf,
    interval: Duration,
    scrubber: std::sync::Arc<crate::scrub::Scrubber>,
) -> Result<(), ComponentError> {
    let scrubbed = crate::procfs::scrub_options::scrubbed_counter(&cx.name);
    let mut detector = Some(Detector::new(proc_root, cx.event_id_prefix).scrubbing(scrubber));
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
        let (mut state, result) = tokio::task::spawn_blocking(move || {
            let result = state.scan(pipeline::diag::boottime_ns());
            (state, result)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("/proc fallback scan task failed: {e}")))?;
        scrubbed.increment(state.take_scrubbed());
        detector = Some(state);
        match result {
            Ok(batch) if !batch.is_empty() => cx.out.send(batch).await,
            Ok(_) => {}
            Err(error) => tracing::warn!(source = %cx.name, %error, "/proc fallback scan failed"),
        }
    }
    Ok(())
}
