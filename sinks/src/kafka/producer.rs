//! The rdkafka side of the `kafka` sink: the producer context whose
//! delivery callback records each message's outcome, the waiting loop that
//! drives the window of in-flight batches (`window.rs`) until a write may
//! return or a flush is done, and the sink's metrics and health.
//!
//! Delivery reports arrive on rdkafka's polling thread (`ThreadedProducer`);
//! they are pushed into a mutex-guarded list and wake the waiting task
//! through a `Notify`, so no async worker thread ever blocks on librdkafka.
//! They are applied to the window by `write`, `on_tick`, `flush` and
//! `durable_batches` (the engine polls it while batches are unacknowledged),
//! so the durable mark moves without waiting for the next batch. Every
//! state change happens in a synchronous step between awaits, so a
//! cancelled `write` leaves its batch in the window, where the next call
//! finishes enqueueing it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label};
use pipeline::health::{ComponentState, HealthHandle};
use pipeline::{ComponentError, Event, ShutdownSignal};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio::sync::Notify;

use super::window::{Backoff, Outgoing, Sender, Window};
use super::{Encoding, KeyBy, Settings};
use crate::protobuf::EnvelopeContext;

/// Longest wait between two looks at the delivery reports when nothing
/// wakes the writer (a safety net; deliveries and due retries wake it).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long to wait after a full queue before trying again, unless a
/// delivery frees room first.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

/// A Kafka sink. Created by [`super::build`]; connects in `open`.
pub struct KafkaSink {
    settings: Settings,
    envelope: EnvelopeContext,
    shared_key: Option<Vec<u8>>,
    shared: Arc<Shared>,
    producer: Option<ThreadedProducer<DeliveryContext>>,
    /// The unacknowledged batches. Behind a mutex only for
    /// `durable_batches(&self)`; every `&mut self` path uses `get_mut`.
    window: Mutex<Window>,
    json_buffer: Vec<u8>,
    /// Fires when the agent is stopping: a write or flush waiting for the
    /// broker gives up (and says so) `flush_timeout` after that.
    shutdown: Option<ShutdownSignal>,
    /// When this sink first saw the shutdown signal.
    stopping_since: Option<Instant>,
}

/// What a wait in [`KafkaSink::drive`] is for.
#[derive(Clone, Copy)]
enum Until {
    /// `write`: its batch is enqueued and fewer than `max_in_flight_batches`
    /// batches are unacknowledged.
    Written,
    /// `flush`: every batch acknowledged.
    Flushed,
}

/// What the polling thread and the writer share.
pub(super) struct Shared {
    pub(super) reports: Mutex<Vec<(usize, Option<KafkaError>)>>,
    notify: Notify,
    health: Mutex<HealthState>,
    component: String,
    /// `bootstrap.servers`, named in the degraded reason: librdkafka's own
    /// text ("1/1 brokers are down") does not say which.
    brokers: String,
}

#[derive(Default)]
struct HealthState {
    handle: Option<HealthHandle>,
    degraded: Option<String>,
}

impl Shared {
    pub(super) fn new(component: &str, brokers: &str) -> Shared {
        Shared {
            reports: Mutex::new(Vec::new()),
            notify: Notify::new(),
            health: Mutex::new(HealthState::default()),
            component: component.to_owned(),
            brokers: brokers.to_owned(),
        }
    }

    pub(super) fn attach_health(&self, handle: HealthHandle) {
        let mut state = lock(&self.health);
        if let Some(reason) = &state.degraded {
            handle.set(ComponentState::Degraded, Some(reason.clone()));
        }
        state.handle = Some(handle);
    }

    /// Marks the sink degraded (logged once per distinct reason).
    pub(super) fn degrade(&self, reason: String) {
        let mut state = lock(&self.health);
        if state.degraded.as_deref() == Some(reason.as_str()) {
            return;
        }
        pipeline::diag::emit(&self.component, "kafka_degraded", reason.clone());
        if let Some(handle) = &state.handle {
            handle.set(ComponentState::Degraded, Some(reason.clone()));
        }
        state.degraded = Some(reason);
    }

    /// Shows the degraded state again, if there is one: the engine marks a
    /// sink draining before `flush`, which must not hide an unreachable
    /// broker while the flush waits for it.
    fn show_degraded(&self) {
        let state = lock(&self.health);
        if let (Some(handle), Some(reason)) = (&state.handle, &state.degraded) {
            handle.set(ComponentState::Degraded, Some(reason.clone()));
        }
    }

    /// Clears a degraded state after a successful delivery.
    pub(super) fn recover(&self) {
        let mut state = lock(&self.health);
        if state.degraded.take().is_some() {
            pipeline::diag::emit(&self.component, "kafka_recovered", "deliveries succeed again");
            if let Some(handle) = &state.handle {
                handle.set(ComponentState::Running, None);
            }
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a push, a swap or a field store; a panic
    // cannot leave the data half-written, so poison is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The producer context: delivery reports, client errors and logs.
pub(super) struct DeliveryContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let component = &self.shared.component;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(%component, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(%component, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(%component, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(%component, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(code, Some(RDKafkaErrorCode::AllBrokersDown) | Some(RDKafkaErrorCode::Fatal)) {
            // librdkafka's text changes as it retries ("1/1 brokers are
            // down", "0/1 ..."); the health reason and diag event must not
            // flap with it, so the detail goes to the log only.
            tracing::warn!(component = %self.shared.component, %error, reason, "librdkafka: brokers unreachable");
            self.shared.degrade(format!("cannot reach the Kafka brokers {}", self.shared.brokers));
        } else {
            tracing::warn!(component = %self.shared.component, %error, reason, "librdkafka reported an error");
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let error = result.as_ref().err().map(|(error, _)| error.clone());
        lock(&self.shared.reports).push((opaque, error));
        self.shared.notify.notify_one();
    }
}

/// Metric handles, registered once.
pub(super) struct KafkaMetrics {
    pub(super) produced: Counter,
    pub(super) delivered: Counter,
    pub(super) in_flight: Gauge,
    pub(super) latency: Histogram,
    labels: Vec<Label>,
    failed: Vec<(&'static str, Counter)>,
}

impl KafkaMetrics {
    pub(super) fn new(component: &str, topic: &str) -> KafkaMetrics {
        use pipeline::metrics::names;
        let labels = vec![Label::new("component", component.to_owned()), Label::new("topic", topic.to_owned())];
        KafkaMetrics {
            produced: metrics::counter!(names::KAFKA_PRODUCED_MESSAGES_TOTAL, labels.clone()),
            delivered: metrics::counter!(names::KAFKA_DELIVERED_MESSAGES_TOTAL, labels.clone()),
            in_flight: metrics::gauge!(names::KAFKA_IN_FLIGHT_MESSAGES, labels.clone()),
            latency: metrics::histogram!(names::KAFKA_DELIVERY_LATENCY_SECONDS, labels.clone()),
            labels,
            failed: Vec::new(),
        }
    }

    /// Counts one failed attempt; the counter for a reason is made on first use.
    pub(super) fn add_failed(&mut self, reason: &'static str) {
        if let Some((_, counter)) = self.failed.iter().find(|(r, _)| *r == reason) {
            counter.increment(1);
            return;
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("reason", reason));
        let counter = metrics::counter!(pipeline::metrics::names::KAFKA_FAILED_DELIVERIES_TOTAL, labels);
        counter.increment(1);
        self.failed.push((reason, counter));
    }
}

/// The `reason` label of a failed attempt: a closed, low-cardinality set.
pub(super) fn failure_reason(error: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(Code::MessageTimedOut | Code::RequestTimedOut | Code::OperationTimedOut) => "timed_out",
        Some(Code::BrokerTransportFailure | Code::AllBrokersDown | Code::NetworkException) => "broker_unreachable",
        Some(Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed | Code::GroupAuthorizationFailed) => {
            "not_authorized"
        }
        Some(Code::UnknownTopic | Code::UnknownTopicOrPartition | Code::UnknownPartition) => "unknown_topic",
        Some(Code::LeaderNotAvailable | Code::NotLeaderForPartition | Code::NotEnoughReplicas) => "no_leader",
        Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize) => "message_too_large",
        Some(Code::PurgeQueue | Code::PurgeInflight) => "purged",
        Some(Code::Fatal) => "fatal",
        _ => "other",
    }
}

/// Errors no retry can fix: the sink fails instead of retrying forever.
pub(super) fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::MessageBatchTooLarge
                | Code::InvalidArgument
                | Code::Fatal
        )
    )
}

impl KafkaSink {
    pub(super) fn new(settings: Settings, component: &str) -> KafkaSink {
        let envelope = EnvelopeContext { entity_guid: settings.entity_guid.clone(), host: settings.host.clone() };
        let shared_key = match &settings.key {
            KeyBy::EntityGuid => Some(settings.entity_guid.clone().into_bytes()),
            KeyBy::Host => Some(settings.host.clone().into_bytes()),
            KeyBy::Field(_) | KeyBy::None => None,
        };
        let brokers = settings.client_config.get("bootstrap.servers").unwrap_or_default();
        let shared = Arc::new(Shared::new(component, brokers));
        let backoff = Backoff { initial: settings.retry_backoff_initial, max: settings.retry_backoff_max };
        let window = Window::new(KafkaMetrics::new(component, &settings.topic), backoff, settings.topic.clone());
        KafkaSink {
            settings,
            envelope,
            shared_key,
            shared,
            producer: None,
            window: Mutex::new(window),
            json_buffer: Vec::new(),
            shutdown: None,
            stopping_since: None,
        }
    }

    /// Attaches the agent's shutdown signal (see `stopping_since`).
    pub fn set_shutdown(&mut self, shutdown: ShutdownSignal) {
        self.shutdown = Some(shutdown);
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Failed delivery attempts and full-queue waits so far (tests check
    /// that the paths they aim at were taken).
    #[cfg(test)]
    pub(super) fn attempt_counts(&self) -> (u64, u64) {
        let window = lock(&self.window);
        (window.n_failed_attempts, window.n_queue_full)
    }

    /// Creates the producer (starts librdkafka's threads; does not wait for
    /// a broker, so an unreachable cluster does not stop the agent).
    pub(super) fn connect(&mut self) -> Result<(), ComponentError> {
        if self.producer.is_some() {
            return Ok(());
        }
        let context = DeliveryContext { shared: Arc::clone(&self.shared) };
        let producer = self
            .settings
            .client_config
            .create_with_context::<_, ThreadedProducer<DeliveryContext>>(context)
            .map_err(|error| ComponentError::Failed(format!("cannot create the Kafka producer: {error}")))?;
        self.producer = Some(producer);
        Ok(())
    }

    /// Encodes a batch into messages.
    pub(super) fn encode(&mut self, events: &[Event]) -> Vec<Outgoing> {
        match self.settings.encoding {
            Encoding::Protobuf => crate::protobuf::encode_batch(events, &self.envelope)
                .into_iter()
                .map(|message| {
                    let message_type = message.message_type();
                    Outgoing::new(message.encode_to_vec(), None, message_type)
                })
                .collect(),
            Encoding::Json => {
                let mut messages = Vec::with_capacity(events.len());
                for event in events {
                    self.json_buffer.clear();
                    crate::ndjson::encode(event, &mut self.json_buffer);
                    let key = match &self.settings.key {
                        KeyBy::Field(field) => field_key(&self.json_buffer, field),
                        _ => None,
                    };
                    messages.push(Outgoing::new(self.json_buffer.clone(), key, event.kind().as_str()));
                }
                messages
            }
        }
    }

    /// Adds a batch to the window and enqueues it; returns once every
    /// message is enqueued and fewer than `max_in_flight_batches` batches
    /// are unacknowledged (with 1: once this batch is acknowledged). Never
    /// drops a message: a full queue is waited out, a failed delivery is
    /// retried with back-off.
    pub(super) async fn write_messages(&mut self, messages: Vec<Outgoing>) -> Result<(), ComponentError> {
        let window = self.window.get_mut().unwrap_or_else(PoisonError::into_inner);
        window.check()?;
        if self.producer.is_none() && !messages.is_empty() {
            return Err(ComponentError::Failed("kafka sink written before it was opened".to_owned()));
        }
        window.push(messages)?;
        self.drive(Until::Written).await
    }

    /// Applies delivery reports and enqueues due retries (the engine's tick:
    /// retries come due while no batch arrives).
    pub(super) fn poll(&mut self) -> Result<(), ComponentError> {
        self.stopping_for();
        let sender = self.producer.as_ref().map(|producer| Sender {
            producer,
            topic: &self.settings.topic,
            shared_key: self.shared_key.as_deref(),
            content_type: content_type(self.settings.encoding),
        });
        let window = self.window.get_mut().unwrap_or_else(PoisonError::into_inner);
        window.pump(&self.shared, sender.as_ref()).map(|_| ())
    }

    /// Batches acknowledged in full, after applying the reports that arrived.
    pub(super) fn durable(&self) -> u64 {
        let mut window = lock(&self.window);
        // A permanent error is kept and returned by the next write, tick or flush.
        let _ = window.take_reports(&self.shared, self.producer.as_ref());
        window.n_durable()
    }

    /// Waits until every written batch is acknowledged. Like a write, it
    /// waits out an outage until the agent is stopping, and gives up
    /// `flush_timeout` after the stop began: what is left is purged and the
    /// flush fails.
    pub(super) async fn flush_outstanding(&mut self) -> Result<(), ComponentError> {
        self.shared.show_degraded();
        self.drive(Until::Flushed).await
    }

    /// How long the agent has been stopping, as far as this sink has seen
    /// (every write, tick and flush looks).
    fn stopping_for(&mut self) -> Option<Duration> {
        if !self.shutdown.as_ref().is_some_and(ShutdownSignal::is_triggered) {
            return None;
        }
        Some(self.stopping_since.get_or_insert_with(Instant::now).elapsed())
    }

    /// Drives the window (reports, enqueueing, retries) until `until` holds.
    async fn drive(&mut self, until: Until) -> Result<(), ComponentError> {
        let limit = self.settings.max_in_flight_batches;
        loop {
            // Out of time: the agent has been stopping for `flush_timeout`.
            let timeout = self.settings.flush_timeout;
            let out_of_time = self.stopping_for().is_some_and(|stopping| stopping >= timeout);
            let sender = self.producer.as_ref().map(|producer| Sender {
                producer,
                topic: &self.settings.topic,
                shared_key: self.shared_key.as_deref(),
                content_type: content_type(self.settings.encoding),
            });
            let window = self.window.get_mut().unwrap_or_else(PoisonError::into_inner);
            let queue_full = window.pump(&self.shared, sender.as_ref())?;
            let done = match until {
                Until::Written => window.all_enqueued() && window.n_unacknowledged() < limit,
                Until::Flushed => window.n_unacknowledged() == 0,
            };
            if done {
                return Ok(());
            }

            // Out of time and the broker still has not taken everything:
            // what librdkafka holds is purged so nothing counted as not
            // delivered can still arrive after the count; the engine counts
            // every batch not yet durable as not delivered.
            if out_of_time {
                let n_pending = window.n_pending_messages();
                let n_batches = window.n_unacknowledged();
                if let Some(producer) = &self.producer {
                    producer.purge(PurgeConfig::default().queue().inflight());
                }
                let reason = match until {
                    Until::Written => format!(
                        "stopping: the broker did not acknowledge {n_pending} messages of {n_batches} batches \
                         within flush_timeout_secs ({timeout:?}); they are counted as not delivered"
                    ),
                    Until::Flushed => {
                        tracing::warn!(
                            component = %self.shared.component,
                            n_pending,
                            n_batches,
                            "kafka flush timed out with messages still outstanding"
                        );
                        format!(
                            "kafka flush gave up {timeout:?} after the agent began stopping, with {n_pending} \
                             messages of {n_batches} batches outstanding"
                        )
                    }
                };
                return Err(window.abandon(reason));
            }

            // Wait for a delivery report, a due retry or room in the queue.
            let mut wait = if queue_full { QUEUE_FULL_WAIT } else { IDLE_WAIT };
            if let Some(next_due) = window.next_retry() {
                wait = wait.min(next_due.saturating_duration_since(Instant::now()));
            }
            if !wait.is_zero() {
                let _ = tokio::time::timeout(wait, self.shared.notify.notified()).await;
            }
        }
    }
}

fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    }
}

/// The key for `key = "field"`: a top-level scalar of the event's JSON
/// object (strings as their text, numbers and booleans as JSON text).
fn field_key(json: &[u8], field: &str) -> Option<Vec<u8>> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).ok()?;
    match object.get(field)? {
        serde_json::Value::String(text) => Some(text.clone().into_bytes()),
        value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(value.to_string().into_bytes()),
        _ => None,
    }
}
