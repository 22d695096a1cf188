//! The rdkafka side of the `kafka` sink: the producer context whose
//! delivery callback records each message's outcome, the send loop that
//! turns a full queue into waiting and a failed delivery into a retry with
//! back-off, and the sink's metrics and health.
//!
//! Delivery reports arrive on rdkafka's polling thread (`ThreadedProducer`);
//! they are pushed into a mutex-guarded list and wake the writing task
//! through a `Notify`, so no async worker thread ever blocks on librdkafka.
//! Each message's delivery opaque is `generation << 32 | index`: the index
//! into the batch being written, and a generation that tells reports of an
//! abandoned (cancelled) write apart from the current one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label};
use pipeline::health::{ComponentState, HealthHandle};
use pipeline::{ComponentError, Event, ShutdownSignal};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio::sync::Notify;

use super::{Encoding, KeyBy, Settings};
use crate::protobuf::EnvelopeContext;

/// Longest wait between two looks at the delivery reports when nothing
/// wakes the writer (a safety net; deliveries and due retries wake it).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long to wait after a full queue before trying again, unless a
/// delivery frees room first.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);
const INDEX_BITS: u32 = 32;

/// A Kafka sink. Created by [`super::build`]; connects in `open`.
pub struct KafkaSink {
    settings: Settings,
    envelope: EnvelopeContext,
    shared_key: Option<Vec<u8>>,
    shared: Arc<Shared>,
    producer: Option<ThreadedProducer<DeliveryContext>>,
    metrics: KafkaMetrics,
    generation: usize,
    rng: u64,
    json_buffer: Vec<u8>,
    /// Fires when the agent is stopping: from then on a write waits at most
    /// `flush_timeout` for the broker before giving up (and saying so).
    shutdown: Option<ShutdownSignal>,
    /// When this sink first saw the shutdown signal.
    stopping_since: Option<Instant>,
    /// Failed delivery attempts and full-queue waits so far (tests check
    /// that the paths they aim at were taken).
    pub(super) n_failed_attempts: u64,
    pub(super) n_queue_full: u64,
}

/// One message of the batch being written.
pub(super) struct Outgoing {
    payload: Vec<u8>,
    /// Per-message key (`key = "field"`); otherwise the shared key is used.
    key: Option<Vec<u8>>,
    message_type: &'static str,
    attempts: u32,
    first_enqueued: Option<Instant>,
    delivered: bool,
}

/// What the polling thread and the writer share.
pub(super) struct Shared {
    reports: Mutex<Vec<(usize, Option<KafkaError>)>>,
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
    pub(super) fn attach_health(&self, handle: HealthHandle) {
        let mut state = lock(&self.health);
        if let Some(reason) = &state.degraded {
            handle.set(ComponentState::Degraded, Some(reason.clone()));
        }
        state.handle = Some(handle);
    }

    /// Marks the sink degraded (logged once per distinct reason).
    fn degrade(&self, reason: String) {
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

    /// Clears a degraded state after a successful delivery.
    fn recover(&self) {
        let mut state = lock(&self.health);
        if state.degraded.take().is_some() {
            pipeline::diag::emit(&self.component, "kafka_recovered", "deliveries succeed again");
            if let Some(handle) = &state.handle {
                handle.set(ComponentState::Running, None);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
struct KafkaMetrics {
    produced: Counter,
    delivered: Counter,
    in_flight: Gauge,
    latency: Histogram,
    labels: Vec<Label>,
    failed: Vec<(&'static str, Counter)>,
}

impl KafkaMetrics {
    fn new(component: &str, topic: &str) -> KafkaMetrics {
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
    fn add_failed(&mut self, reason: &'static str) {
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

/// Errors no retry can fix: `write` fails instead of retrying forever.
fn is_permanent(error: &KafkaError) -> bool {
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
        let shared = Arc::new(Shared {
            reports: Mutex::new(Vec::new()),
            notify: Notify::new(),
            health: Mutex::new(HealthState::default()),
            component: component.to_owned(),
            brokers: settings.client_config.get("bootstrap.servers").unwrap_or_default().to_owned(),
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        KafkaSink {
            metrics: KafkaMetrics::new(component, &settings.topic),
            settings,
            envelope,
            shared_key,
            shared,
            producer: None,
            generation: 0,
            rng: seed | 1,
            json_buffer: Vec::new(),
            shutdown: None,
            stopping_since: None,
            n_failed_attempts: 0,
            n_queue_full: 0,
        }
    }

    /// Attaches the agent's shutdown signal (see `stopping_since`).
    pub fn set_shutdown(&mut self, shutdown: ShutdownSignal) {
        self.shutdown = Some(shutdown);
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
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

    /// Enqueues every message and waits until the broker acknowledged all
    /// of them. Never drops one: a full queue is waited out, a failed
    /// delivery is retried with back-off.
    pub(super) async fn deliver(&mut self, mut messages: Vec<Outgoing>) -> Result<(), ComponentError> {
        if messages.is_empty() {
            return Ok(());
        }
        let Some(producer) = self.producer.clone() else {
            return Err(ComponentError::Failed("kafka sink written before it was opened".to_owned()));
        };
        if messages.len() >= 1 << INDEX_BITS {
            return Err(ComponentError::Failed(format!("batch of {} messages is too large", messages.len())));
        }
        self.generation = (self.generation + 1) & ((1 << (usize::BITS - INDEX_BITS)) - 1);
        let generation_bits = self.generation << INDEX_BITS;
        // Reports of an earlier, abandoned write are stale.
        lock(&self.shared.reports).clear();
        let content_type = match self.settings.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };

        let mut n_pending = messages.len();
        let mut n_in_flight = 0usize;
        let mut next_new = 0usize;
        // (due, index) of messages waiting to be sent again.
        let mut retries: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut reports = Vec::new();
        loop {
            // 1. Enqueue what is due: retries first, then new messages.
            let mut queue_full = false;
            let now = Instant::now();
            loop {
                let due_retry =
                    retries.peek().filter(|Reverse((due, _))| *due <= now).map(|Reverse((_, index))| *index);
                let index = match due_retry {
                    Some(index) => index,
                    None if next_new < messages.len() => next_new,
                    None => break,
                };
                let message = &messages[index];
                let key = message.key.as_deref().or(self.shared_key.as_deref());
                let headers = OwnedHeaders::new_with_capacity(2)
                    .insert(Header { key: "content-type", value: Some(content_type) })
                    .insert(Header { key: "hostflow-type", value: Some(message.message_type) });
                let mut record =
                    BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.settings.topic, generation_bits | index)
                        .payload(&message.payload)
                        .headers(headers);
                if let Some(key) = key {
                    record = record.key(key);
                }
                match producer.send(record) {
                    Ok(()) => {
                        if due_retry.is_some() {
                            retries.pop();
                        } else {
                            next_new += 1;
                            self.metrics.produced.increment(1);
                        }
                        let message = &mut messages[index];
                        message.first_enqueued.get_or_insert(now);
                        n_in_flight += 1;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        queue_full = true;
                        self.n_queue_full += 1;
                        break;
                    }
                    Err((error, _)) => {
                        if due_retry.is_some() {
                            retries.pop();
                        } else {
                            next_new += 1;
                            self.metrics.produced.increment(1);
                        }
                        let due = self.failed_attempt(&mut messages[index], &error)?;
                        retries.push(Reverse((due, index)));
                    }
                }
            }
            self.metrics.in_flight.set(n_in_flight as f64);

            // 2. Take the delivery reports that arrived.
            std::mem::swap(&mut reports, &mut *lock(&self.shared.reports));
            let mut any_delivered = false;
            for (opaque, error) in reports.drain(..) {
                if opaque >> INDEX_BITS != self.generation {
                    continue;
                }
                let index = opaque & ((1 << INDEX_BITS) - 1);
                let Some(message) = messages.get_mut(index) else {
                    continue;
                };
                n_in_flight = n_in_flight.saturating_sub(1);
                match error {
                    None => {
                        if !message.delivered {
                            message.delivered = true;
                            n_pending -= 1;
                            self.metrics.delivered.increment(1);
                            if let Some(enqueued) = message.first_enqueued {
                                self.metrics.latency.record(enqueued.elapsed().as_secs_f64());
                            }
                        }
                        any_delivered = true;
                    }
                    Some(error) => {
                        let due = self.failed_attempt(message, &error)?;
                        retries.push(Reverse((due, index)));
                    }
                }
            }
            if any_delivered {
                self.shared.recover();
            }
            self.metrics.in_flight.set(n_in_flight as f64);
            if n_pending == 0 {
                return Ok(());
            }

            // 3. Stopping and the broker still has not taken everything: wait
            //    at most `flush_timeout`, then fail the write. The engine counts
            //    the batch and what is still queued as not delivered; what
            //    librdkafka holds is purged so nothing counted as failed can
            //    still arrive after the count.
            if self.shutdown.as_ref().is_some_and(ShutdownSignal::is_triggered) {
                let since = *self.stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.settings.flush_timeout {
                    producer.purge(PurgeConfig::default().queue().inflight());
                    self.metrics.in_flight.set(0.0);
                    return Err(ComponentError::Failed(format!(
                        "stopping: the broker did not acknowledge {n_pending} of {} messages within \
                         flush_timeout_secs ({:?}); they are counted as not delivered",
                        messages.len(),
                        self.settings.flush_timeout
                    )));
                }
            }

            // 4. Wait for a delivery report, a due retry or room in the queue.
            let mut wait = if queue_full { QUEUE_FULL_WAIT } else { IDLE_WAIT };
            if let Some(Reverse((next_due, _))) = retries.peek() {
                wait = wait.min(next_due.saturating_duration_since(Instant::now()));
            }
            if !wait.is_zero() {
                let _ = tokio::time::timeout(wait, self.shared.notify.notified()).await;
            }
        }
    }

    /// Records a failed attempt of `message` and returns when to try again,
    /// or fails the write when no retry can succeed.
    fn failed_attempt(&mut self, message: &mut Outgoing, error: &KafkaError) -> Result<Instant, ComponentError> {
        let reason = failure_reason(error);
        self.metrics.add_failed(reason);
        self.n_failed_attempts += 1;
        if let Some(producer) = &self.producer {
            if let Some((code, fatal)) = producer.client().fatal_error() {
                return Err(ComponentError::Failed(format!("kafka producer hit a fatal error: {code:?}: {fatal}")));
            }
        }
        if is_permanent(error) {
            return Err(ComponentError::Failed(format!(
                "kafka rejected a {}-byte message to `{}` for good: {error}",
                message.payload.len(),
                self.settings.topic
            )));
        }
        message.attempts += 1;
        let delay = self.backoff(message.attempts);
        self.shared
            .degrade(format!("delivery to topic `{}` failed ({error}); retrying with back-off", self.settings.topic));
        tracing::debug!(topic = %self.settings.topic, %error, attempt = message.attempts, ?delay, "kafka delivery retry");
        Ok(Instant::now() + delay)
    }

    /// Exponential back-off with "equal jitter": half the capped delay
    /// plus a random share of the other half.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let initial = self.settings.retry_backoff_initial;
        let capped =
            initial.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.settings.retry_backoff_max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let share = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        capped / 2 + capped.mul_f64(share / 2.0)
    }

    /// Waits (off the async workers) for whatever librdkafka still holds.
    pub(super) async fn flush_outstanding(&mut self) -> Result<(), ComponentError> {
        let Some(producer) = self.producer.clone() else {
            return Ok(());
        };
        let timeout = self.settings.flush_timeout;
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let result = producer.flush(timeout);
            (result, producer.in_flight_count())
        })
        .await
        .map_err(|error| ComponentError::Failed(format!("kafka flush task failed: {error}")))?;
        match result {
            (Ok(()), _) => Ok(()),
            (Err(error), n_left) => {
                tracing::warn!(
                    component = %self.shared.component,
                    waited = ?started.elapsed(),
                    n_left,
                    %error,
                    "kafka flush timed out with messages still outstanding"
                );
                Err(ComponentError::Failed(format!(
                    "kafka flush gave up after {timeout:?} with {n_left} messages outstanding: {error}"
                )))
            }
        }
    }
}

impl Outgoing {
    fn new(payload: Vec<u8>, key: Option<Vec<u8>>, message_type: &'static str) -> Outgoing {
        Outgoing { payload, key, message_type, attempts: 0, first_enqueued: None, delivered: false }
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
