//! Disk buffers through the whole engine: acknowledgements follow the
//! sink's durability mark, unacknowledged records come back after a
//! failed run, and the ledger balances.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::batch_codec::{BatchCodec, CodecError};
use crate::component::Sink;
use crate::component::{BuildFn, BuildResult, ComponentSpec};
use crate::config::{ComponentOptions, SourceFile, TopologyConfig};
use crate::event::{Batch, Event, EventMeta, ProcessExit, ProcessKey};
use crate::shutdown::shutdown_channel;

const N_EVENTS: u64 = 5_000;
const BATCH: u64 = 100;

fn exit_event(id: u64) -> Event {
    Event::ProcessExit(ProcessExit {
        context: None,
        meta: EventMeta { ts_ns: id, event_id: id },
        process: ProcessKey { pid: 1, start_time_ns: 0 },
        exit_code: 0,
        cpu_ns: 0,
    })
}

/// Event ids only: enough for the engine's own tests (the binary's codec
/// is the spool's Arrow encoding, tested with every kind).
struct IdCodec;

impl BatchCodec for IdCodec {
    fn encode(&self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), CodecError> {
        for event in batch {
            out.extend_from_slice(&event.meta().event_id.to_le_bytes());
        }
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Batch, CodecError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(CodecError(format!("{} bytes is not a whole number of ids", bytes.len())));
        }
        Ok(bytes.chunks_exact(8).map(|c| exit_event(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))).collect())
    }
}

/// Sends ids 0..N_EVENTS in batches of BATCH, then ends.
struct Counted;

#[async_trait]
impl Source for Counted {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        for first in (0..N_EVENTS).step_by(BATCH as usize) {
            cx.out.send((first..first + BATCH).map(exit_event).collect()).await;
        }
        Ok(())
    }
}

/// Sends nothing: a run that only delivers what a disk buffer holds.
struct Nothing;

#[async_trait]
impl Source for Nothing {
    async fn run(self: Box<Self>, _cx: SourceContext) -> Result<(), ComponentError> {
        Ok(())
    }
}

static RECEIVED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static MAX_LAG: AtomicU64 = AtomicU64::new(0);

/// Reports batches durable two behind what it was given, like a sink with
/// batches in flight; durable up to the end after `flush`.
#[derive(Default)]
struct Lagging {
    written: u64,
    flushed: bool,
}

#[async_trait]
impl Sink for Lagging {
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        let mut received = RECEIVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        received.extend(batch.iter().map(|e| e.meta().event_id));
        self.written += 1;
        Ok(())
    }

    fn durable_batches(&self) -> Option<u64> {
        let durable = if self.flushed { self.written } else { self.written.saturating_sub(2) };
        MAX_LAG.fetch_max(self.written - durable, Ordering::Relaxed);
        Some(durable)
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        self.flushed = true;
        Ok(())
    }
}

/// Takes every batch and never makes any durable: its flush fails.
struct NeverDurable;

#[async_trait]
impl Sink for NeverDurable {
    async fn write(&mut self, _batch: Batch) -> Result<(), ComponentError> {
        Ok(())
    }

    fn durable_batches(&self) -> Option<u64> {
        Some(0)
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        Err(ComponentError::Failed("the destination never acknowledged".to_owned()))
    }
}

fn counted(_: &ComponentOptions) -> BuildResult<dyn Source> {
    Ok(Box::new(Counted))
}
fn nothing(_: &ComponentOptions) -> BuildResult<dyn Source> {
    Ok(Box::new(Nothing))
}
fn lagging(_: &ComponentOptions) -> BuildResult<dyn Sink> {
    Ok(Box::new(Lagging::default()))
}
fn never_durable(_: &ComponentOptions) -> BuildResult<dyn Sink> {
    Ok(Box::new(NeverDurable))
}

const REGISTRY: &[ComponentSpec] = &[
    ComponentSpec { type_name: "counted", summary: "test", build: BuildFn::Source(counted) },
    ComponentSpec { type_name: "nothing", summary: "test", build: BuildFn::Source(nothing) },
    ComponentSpec { type_name: "lagging", summary: "test", build: BuildFn::Sink(lagging) },
    ComponentSpec { type_name: "never_durable", summary: "test", build: BuildFn::Sink(never_durable) },
];

fn topology(source: &str, sink: &str, dir: &std::path::Path) -> Topology {
    let text = format!(
        "[api]\nenabled = false\n[sources.src]\ntype = \"{source}\"\n[sinks.out]\ntype = \"{sink}\"\ninputs = [\"src\"]\n\
         buffer = {{ type = \"disk\", path = \"{}\", max_bytes = 16777216 }}\n",
        dir.display()
    );
    let config = TopologyConfig::parse(SourceFile::new("test.toml", text)).expect("parses");
    let mut topology = Topology::build(config, REGISTRY).expect("builds");
    topology.batch_codec = Some(Arc::new(IdCodec));
    topology
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hf-disk-edge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn pending_events(dir: &std::path::Path) -> u64 {
    let config =
        crate::disk_buffer::DiskBufferConfig { dir: dir.to_owned(), max_bytes: 16 << 20, segment_bytes: 1 << 20 };
    let (_, _, report) = crate::disk_buffer::open(&config).expect("reopens");
    report.events_pending
}

// One test, in order: the statics above are shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_edge_acknowledges_only_what_is_durable_and_replays_the_rest() {
    // 1. Everything arrives in order; acknowledgements lag with the sink;
    //    at the end nothing is left unacknowledged and the ledger balances.
    let dir = temp_dir("deliver");
    let (trigger, _) = shutdown_channel();
    let report = run(topology("counted", "lagging", &dir), trigger, Health::default()).await.expect("clean run");
    let received = std::mem::take(&mut *RECEIVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    assert_eq!(received, (0..N_EVENTS).collect::<Vec<u64>>(), "every event, in order, once");
    assert_eq!(report.components["out"].sent, N_EVENTS);
    assert!(MAX_LAG.load(Ordering::Relaxed) >= 2, "the sink lagged, so acknowledgements had to wait");
    let ledger = report.ledger.expect("a ledger");
    assert!(ledger.imbalances.is_empty(), "{:?}", ledger.imbalances);
    assert_eq!(pending_events(&dir), 0, "every record acknowledged");

    // 2. A sink that never makes anything durable: the run fails, and
    //    every event is still in the buffer.
    let dir = temp_dir("replay");
    let (trigger, _) = shutdown_channel();
    let failed = run(topology("counted", "never_durable", &dir), trigger, Health::default()).await;
    let Err(RunError::ComponentsFailed { report, .. }) = failed else { panic!("the flush failed, so the run must") };
    assert_eq!(report.components["out"].sent, 0, "nothing was durable");
    assert_eq!(report.components["out"].discarded_total(), 0, "nothing lost: it is all on disk");
    assert_eq!(pending_events(&dir), N_EVENTS);

    // 3. The next run delivers all of it again (at-least-once), counted as
    //    replayed in the ledger.
    let (trigger, _) = shutdown_channel();
    let report = run(topology("nothing", "lagging", &dir), trigger, Health::default()).await.expect("clean run");
    let received = std::mem::take(&mut *RECEIVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    assert_eq!(received, (0..N_EVENTS).collect::<Vec<u64>>());
    let ledger = report.ledger.expect("a ledger");
    assert!(ledger.imbalances.is_empty(), "{:?}", ledger.imbalances);
    let out = ledger.components.iter().find(|c| c.name == "out").expect("out");
    assert_eq!(out.buffer.as_ref().map(|b| b.replayed), Some(N_EVENTS));
    assert_eq!(pending_events(&dir), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
