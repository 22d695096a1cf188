//! The three component traits and the registry entry that builds them.
//!
//! One small trait per role, batch-shaped. The select loop over input,
//! ticks and shutdown is written once, in [`crate::runtime`]; components
//! never own engine control flow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ComponentOptions, ConfigError, Role};
use crate::edge::Fanout;
use crate::event::{Batch, Event};
use crate::health::HealthHandle;
use crate::metrics::DropReason;
use crate::shutdown::ShutdownSignal;

/// Why a component stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// An I/O call failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, already phrased for the operator.
    #[error("{0}")]
    Failed(String),
}

impl ComponentError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ComponentError {
        ComponentError::Io { context: context.into(), source }
    }
}

/// Produces events. Runs as one async task until it has nothing more to
/// produce or shutdown is signalled, whichever comes first.
#[async_trait]
pub trait Source: Send + 'static {
    /// Produces batches into `cx.out` until done or `cx.shutdown` fires.
    /// Returning ends the source; the engine then drains downstream.
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError>;
}

/// What a running source gets from the engine.
pub struct SourceContext {
    /// The component's name in the topology.
    pub name: Arc<str>,
    /// Where batches go (all downstreams, with their policies).
    pub out: Fanout,
    /// Fires once when the agent is asked to stop.
    pub shutdown: ShutdownSignal,
    /// Report degraded states (and their reason) to `/health`.
    pub health: HealthHandle,
    /// The high 16 bits of every event id this source assigns, so ids stay
    /// unique across sources without coordination.
    pub event_id_prefix: u64,
}

impl SourceContext {
    /// The id for the `sequence`-th event of this source.
    pub fn event_id(&self, sequence: u64) -> u64 {
        self.event_id_prefix | (sequence & ((1 << 48) - 1))
    }
}

/// Turns batches into batches. Synchronous and free of I/O by contract:
/// a transform is pure CPU work, so the engine can time it exactly and run
/// it without any await points in the hot path.
pub trait Transform: Send + 'static {
    /// Handles one batch, pushing whatever passes on into `out`.
    fn process(&mut self, batch: Batch, out: &mut Output);

    /// How often [`Transform::on_tick`] runs (windows, timeouts); `None`
    /// for transforms without time-driven work.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Time-driven work, e.g. flushing a window.
    fn on_tick(&mut self, _out: &mut Output) {}

    /// Called once at shutdown after the input has drained: emit whatever
    /// is still held.
    fn flush(&mut self, _out: &mut Output) {}

    /// Where new compiled objects for this transform come from (a rule set
    /// recompiled on reload): the engine takes the receiver once, at start,
    /// and hands each [`Update`] to [`Transform::apply`] between two
    /// batches. `None` (the default): the transform is never updated.
    fn take_updates(&mut self) -> Option<UpdateReceiver> {
        None
    }

    /// Swaps in an update. Called only between batches (never while
    /// `process` runs), so every batch sees one whole object: the old one
    /// or the new one. An update of a type the transform does not expect
    /// is a bug in its reloader; the transform logs it and keeps its object.
    fn apply(&mut self, _update: Update, _out: &mut Output) {}

    /// The transform's `/health` entry, handed over once before the first
    /// batch, for transforms with facts to show there (the detect
    /// transform: the active rule set's digest and counts).
    fn attach_health(&mut self, _health: HealthHandle) {}
}

/// A new compiled object for a running transform, built off the hot path
/// (a reloader's thread compiles; the transform's task only swaps). Boxed
/// `Any` so the engine carries every component's kind of object without
/// knowing it; [`Transform::apply`] downcasts.
pub type Update = Box<dyn std::any::Any + Send>;

/// How many updates may wait for their transform: a reloader faster than
/// the batches blocks instead of queueing compiled objects without bound.
const UPDATE_QUEUE: usize = 2;

/// The reloader's end of an update channel (see [`update_channel`]).
#[derive(Debug)]
pub struct UpdateSender(tokio::sync::mpsc::Sender<Update>);

/// The transform's end, taken by the engine through
/// [`Transform::take_updates`].
#[derive(Debug)]
pub struct UpdateReceiver(tokio::sync::mpsc::Receiver<Update>);

/// A bounded channel of updates for one transform. The transform keeps the
/// receiver until the engine takes it; whatever compiles new objects (a
/// watcher thread, a SIGHUP handler) keeps the sender. Dropping the sender
/// ends the updates; the transform keeps its last object.
pub fn update_channel() -> (UpdateSender, UpdateReceiver) {
    let (sender, receiver) = tokio::sync::mpsc::channel(UPDATE_QUEUE);
    (UpdateSender(sender), UpdateReceiver(receiver))
}

impl UpdateSender {
    /// Sends from a plain thread (a reloader compiling off the runtime),
    /// waiting while the queue is full. `Err` gives the update back when
    /// the transform is gone (the topology stopped).
    pub fn blocking_send(&self, update: Update) -> Result<(), Update> {
        self.0.blocking_send(update).map_err(|error| error.0)
    }

    /// Whether the transform is gone (the topology stopped): a reloader
    /// checks before compiling a set nobody will run.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Sends from an async task.
    pub async fn send(&self, update: Update) -> Result<(), Update> {
        self.0.send(update).await.map_err(|error| error.0)
    }
}

impl UpdateReceiver {
    /// The next update; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Update> {
        self.0.recv().await
    }
}

/// Where a transform puts its results. Reused across batches, so the
/// steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Output {
    events: Batch,
    discarded: [u64; DropReason::COUNT],
    event_id_prefix: u64,
    next_sequence: u64,
}

impl Output {
    /// An output whose new events get ids in the space `event_id_prefix`
    /// (the component's index in its top 16 bits), like a source's.
    pub fn with_event_id_prefix(event_id_prefix: u64) -> Output {
        Output { event_id_prefix, ..Output::default() }
    }

    /// An id for an event this transform creates (an aggregate, a sketch):
    /// unique within the run and the same on every replay of the same input.
    pub fn next_event_id(&mut self) -> u64 {
        let id = self.event_id_prefix | (self.next_sequence & ((1 << 48) - 1));
        self.next_sequence += 1;
        id
    }

    /// Passes one event on.
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Passes a whole batch on; free when nothing was pushed before.
    pub fn extend(&mut self, batch: Batch) {
        if self.events.is_empty() {
            self.events = batch;
        } else {
            self.events.extend(batch);
        }
    }

    /// Records that `n_events` were dropped on purpose, and why. The engine
    /// turns this into the component's `discarded_events_total{reason}`.
    pub fn discard(&mut self, reason: DropReason, n_events: usize) {
        self.discarded[reason.index()] += n_events as u64;
    }

    /// Takes the events pushed so far.
    pub fn take_events(&mut self) -> Batch {
        std::mem::take(&mut self.events)
    }

    /// Takes the drop counts recorded so far.
    pub fn take_discarded(&mut self) -> [u64; DropReason::COUNT] {
        std::mem::take(&mut self.discarded)
    }

    /// Events waiting to be taken.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What the engine hands a sink before it opens (see [`Sink::attach`]).
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// The sink's `/health` entry.
    pub health: HealthHandle,
    /// Fires when the agent starts stopping. Sinks still drain their input
    /// to the end; this only tells a sink stuck on an unreachable
    /// destination that its wait now has a deadline.
    pub shutdown: ShutdownSignal,
}

/// Consumes events. `write` returns once the batch is accepted by the
/// destination in the sink's documented sense (the engine counts the batch
/// as sent then); `flush` makes everything accepted durable.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Hands the sink what the engine shares with it. Called once, before
    /// `open`. A sink that can run degraded (a broker it cannot reach) keeps
    /// the health handle and reports through it (the engine sets the other
    /// states); a sink that may wait on an outside system watches the
    /// shutdown signal to bound that wait once the agent is stopping.
    fn attach(&mut self, _cx: SinkContext) {}

    /// Opens files or connections. Runs for every sink before any source
    /// starts, so a sink that cannot start stops the agent before an event
    /// is produced.
    async fn open(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Writes one batch.
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError>;

    /// How often [`Sink::on_tick`] runs; `None` (the default) for sinks
    /// without time-driven work. The engine's one sink loop calls it
    /// between writes, so a sink bounds time (sync an idle file, rotate by
    /// age) without input and without a select loop of its own.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Time-driven work, e.g. syncing or rotating files that went quiet.
    /// Never runs concurrently with `write`; an error stops the sink like a
    /// failed write does.
    async fn on_tick(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// How many of the batches handed to `write` so far (counted from the
    /// sink's start, in write order) are durable at the destination: a
    /// Kafka delivery report, an fsync of the spool's file. `None` (the
    /// default): a batch is durable when its `write` returns.
    ///
    /// Why: a sink that keeps several batches in flight returns from
    /// `write` before they are durable; the engine releases a disk edge's
    /// records and counts them sent only up to this mark, so a crash
    /// replays exactly what was not acknowledged. The mark only grows and
    /// never exceeds the number of batches written; the engine reads it
    /// after every write and every tick, and, when
    /// [`Sink::acknowledges_in_background`], every few milliseconds while
    /// it lags.
    fn durable_batches(&self) -> Option<u64> {
        None
    }

    /// Whether [`Sink::durable_batches`] can grow between the engine's
    /// calls into the sink: acknowledgements that arrive on another thread,
    /// as a Kafka producer's delivery reports do. The engine then polls the
    /// mark every few milliseconds while batches wait for it. `false` (the
    /// default): the mark moves only inside `write`, `on_tick` and `flush`
    /// (the spool syncs there), and polling it would only wake an idle
    /// agent a hundred times a second (issue #12: that polling was most of
    /// an idle agent's wake-ups while the spool waited for its 5 s sync).
    fn acknowledges_in_background(&self) -> bool {
        false
    }

    /// Makes every accepted batch durable. Called at shutdown after the
    /// input drained. After it returns `Ok`, [`Sink::durable_batches`]
    /// (when `Some`) equals the number of batches written.
    async fn flush(&mut self) -> Result<(), ComponentError>;
}

/// A built component, ready to run.
pub enum Built {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>),
    Sink(Box<dyn Sink>),
}

/// What building a component returns: the component, or every problem.
pub type BuildResult<T> = Result<Box<T>, Vec<ConfigError>>;

/// How one component type is built from its options. Building validates
/// and precompiles everything and must have no side effects (no files
/// opened, no sockets bound): `hostflow validate` builds every component.
#[derive(Clone, Copy)]
pub enum BuildFn {
    Source(fn(&ComponentOptions) -> BuildResult<dyn Source>),
    Transform(fn(&ComponentOptions) -> BuildResult<dyn Transform>),
    Sink(fn(&ComponentOptions) -> BuildResult<dyn Sink>),
}

/// One entry of the component registry (the binary holds the only list).
#[derive(Clone, Copy)]
pub struct ComponentSpec {
    /// The `type` value in topology.toml; also the file name of the
    /// component's implementation.
    pub type_name: &'static str,
    /// One line for `--help` and error messages.
    pub summary: &'static str,
    pub build: BuildFn,
}

impl ComponentSpec {
    /// The role this type plays.
    pub fn role(&self) -> Role {
        match self.build {
            BuildFn::Source(_) => Role::Source,
            BuildFn::Transform(_) => Role::Transform,
            BuildFn::Sink(_) => Role::Sink,
        }
    }

    /// Builds one component of this type.
    pub fn build(&self, options: &ComponentOptions) -> Result<Built, Vec<ConfigError>> {
        Ok(match self.build {
            BuildFn::Source(build) => Built::Source(build(options)?),
            BuildFn::Transform(build) => Built::Transform(build(options)?),
            BuildFn::Sink(build) => Built::Sink(build(options)?),
        })
    }
}

/// Deserializes options into `C` and builds from it: the usual body of a
/// registry entry's build function.
pub fn build_with<C, T>(
    options: &ComponentOptions,
    build: impl FnOnce(C, &ComponentOptions) -> Result<T, Vec<ConfigError>>,
) -> Result<T, Vec<ConfigError>>
where
    C: serde::de::DeserializeOwned,
{
    let config = options.deserialize::<C>().map_err(|error| vec![error])?;
    build(config, options)
}
