//! The `kafka` sink's window of unacknowledged batches: each batch's
//! messages until every one has a successful delivery report, the retries
//! of failed deliveries, and the durable mark (how many batches, in write
//! order, are acknowledged in full).
//!
//! Each message's delivery opaque is `seq << 32 | index`: the low 32 bits
//! of its batch's sequence number (counted from the sink's start) and its
//! index in the batch. The window holds at most `max_in_flight_batches`
//! consecutive batches, so the low bits name one of them; a report that
//! names none (a batch purged at shutdown) is stale and ignored.
//!
//! Batches may complete out of order (a retried message lands after later
//! batches); the durable mark only passes a batch once it and every batch
//! before it are complete. A complete batch's payloads are dropped at once,
//! so memory is O(messages) of the batches still waiting.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use pipeline::ComponentError;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::producer::{failure_reason, lock, DeliveryContext, KafkaMetrics, Shared};

const INDEX_BITS: u32 = 32;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
// The opaque packs two 32-bit halves into a usize.
const _: () = assert!(usize::BITS == 64, "the kafka sink needs a 64-bit target");

/// The delivery opaque of message `index` of batch `seq`.
pub(super) fn opaque(seq: u64, index: usize) -> usize {
    ((seq as usize & INDEX_MASK) << INDEX_BITS) | index
}

/// One message of a batch in the window.
pub(super) struct Outgoing {
    pub(super) payload: Vec<u8>,
    /// Per-message key (`key = "field"`); otherwise the shared key is used.
    pub(super) key: Option<Vec<u8>>,
    pub(super) message_type: &'static str,
    attempts: u32,
    first_enqueued: Option<Instant>,
    delivered: bool,
}

impl Outgoing {
    pub(super) fn new(payload: Vec<u8>, key: Option<Vec<u8>>, message_type: &'static str) -> Outgoing {
        Outgoing { payload, key, message_type, attempts: 0, first_enqueued: None, delivered: false }
    }
}

/// A batch written and not yet acknowledged in full.
struct InFlight {
    seq: u64,
    /// Emptied once the batch is complete (its payloads are no longer needed).
    messages: Vec<Outgoing>,
    /// Messages `..next_new` were enqueued at least once.
    next_new: usize,
    /// Messages without a successful delivery report.
    n_pending: usize,
}

/// What enqueueing needs besides the window.
pub(super) struct Sender<'a> {
    pub(super) producer: &'a ThreadedProducer<DeliveryContext>,
    pub(super) topic: &'a str,
    pub(super) shared_key: Option<&'a [u8]>,
    pub(super) content_type: &'static str,
}

/// Back-off settings of failed deliveries.
pub(super) struct Backoff {
    pub(super) initial: Duration,
    pub(super) max: Duration,
}

/// The batches in flight and everything their delivery needs.
pub(super) struct Window {
    /// Unacknowledged batches, oldest first; the front is `n_durable`'s.
    batches: VecDeque<InFlight>,
    /// Batches acknowledged in full, counted from the sink's start.
    n_durable: u64,
    /// (due, seq, index) of messages waiting to be sent again.
    retries: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Messages enqueued and not yet reported on.
    n_in_flight: usize,
    reports: Vec<(usize, Option<KafkaError>)>,
    /// Set by an error no retry fixes (or a shutdown deadline); every later
    /// call fails with it.
    failure: Option<String>,
    metrics: KafkaMetrics,
    backoff: Backoff,
    topic: String,
    rng: u64,
    pub(super) n_failed_attempts: u64,
    pub(super) n_queue_full: u64,
}

impl Window {
    pub(super) fn new(metrics: KafkaMetrics, backoff: Backoff, topic: String) -> Window {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Window {
            batches: VecDeque::new(),
            n_durable: 0,
            retries: BinaryHeap::new(),
            n_in_flight: 0,
            reports: Vec::new(),
            failure: None,
            metrics,
            backoff,
            topic,
            rng: seed | 1,
            n_failed_attempts: 0,
            n_queue_full: 0,
        }
    }

    /// Batches acknowledged in full, in write order.
    pub(super) fn n_durable(&self) -> u64 {
        self.n_durable
    }

    /// Batches written and not yet acknowledged in full.
    pub(super) fn n_unacknowledged(&self) -> usize {
        self.batches.len()
    }

    /// Messages of unacknowledged batches still waiting for their report.
    pub(super) fn n_pending_messages(&self) -> usize {
        self.batches.iter().map(|b| b.n_pending).sum()
    }

    /// True when every message written so far was enqueued at least once.
    pub(super) fn all_enqueued(&self) -> bool {
        self.batches.back().is_none_or(|b| b.next_new >= b.messages.len())
    }

    /// When the next retry is due.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.retries.peek().map(|Reverse((due, _, _))| *due)
    }

    /// The error that stopped the sink, if one did.
    pub(super) fn check(&self) -> Result<(), ComponentError> {
        match &self.failure {
            Some(failure) => Err(ComponentError::Failed(failure.clone())),
            None => Ok(()),
        }
    }

    /// Adds a written batch (not yet enqueued).
    pub(super) fn push(&mut self, messages: Vec<Outgoing>) -> Result<(), ComponentError> {
        if messages.len() > INDEX_MASK {
            return Err(ComponentError::Failed(format!("batch of {} messages is too large", messages.len())));
        }
        let seq = self.n_durable + self.batches.len() as u64;
        let n_pending = messages.len();
        self.batches.push_back(InFlight { seq, messages, next_new: 0, n_pending });
        self.advance();
        Ok(())
    }

    /// Gives up on everything in flight: the sink fails with `reason` from
    /// now on and the durable mark stays where it is.
    pub(super) fn abandon(&mut self, reason: String) -> ComponentError {
        self.batches.clear();
        self.retries.clear();
        self.n_in_flight = 0;
        self.metrics.in_flight.set(0.0);
        self.failure = Some(reason.clone());
        ComponentError::Failed(reason)
    }

    /// Takes the delivery reports that arrived, enqueues what is due and
    /// advances the durable mark. Returns whether the producer queue was full.
    pub(super) fn pump(&mut self, shared: &Shared, sender: Option<&Sender<'_>>) -> Result<bool, ComponentError> {
        self.check()?;
        self.take_reports(shared, sender.map(|s| s.producer))?;
        let queue_full = match sender {
            Some(sender) => self.enqueue(shared, sender)?,
            None => false,
        };
        self.metrics.in_flight.set(self.n_in_flight as f64);
        Ok(queue_full)
    }

    /// Applies the delivery reports that arrived: a success counts the
    /// message delivered, a failure schedules a retry (or fails the sink).
    pub(super) fn take_reports(
        &mut self,
        shared: &Shared,
        producer: Option<&ThreadedProducer<DeliveryContext>>,
    ) -> Result<(), ComponentError> {
        self.check()?;
        std::mem::swap(&mut self.reports, &mut *lock(&shared.reports));
        let mut reports = std::mem::take(&mut self.reports);
        let mut any_delivered = false;
        let mut result = Ok(());
        for (opaque, error) in reports.drain(..) {
            let seq_low = (opaque >> INDEX_BITS) as u32;
            let index = opaque & INDEX_MASK;
            let offset = seq_low.wrapping_sub(self.n_durable as u32) as usize;
            let Some(batch) = self.batches.get_mut(offset) else {
                continue; // stale: a purged batch
            };
            let Some(message) = batch.messages.get_mut(index) else {
                continue;
            };
            self.n_in_flight = self.n_in_flight.saturating_sub(1);
            match error {
                None => {
                    any_delivered = true;
                    if message.delivered {
                        continue;
                    }
                    message.delivered = true;
                    self.metrics.delivered.increment(1);
                    if let Some(enqueued) = message.first_enqueued {
                        self.metrics.latency.record(enqueued.elapsed().as_secs_f64());
                    }
                    batch.n_pending -= 1;
                    if batch.n_pending == 0 {
                        batch.messages = Vec::new();
                    }
                }
                Some(error) => {
                    let (seq, attempts, len) = (batch.seq, message.attempts + 1, message.payload.len());
                    message.attempts = attempts;
                    match self.failed_attempt(attempts, len, &error, shared, producer) {
                        Ok(due) => self.retries.push(Reverse((due, seq, index))),
                        Err(error) => {
                            result = Err(error);
                            break;
                        }
                    }
                }
            }
        }
        self.reports = reports;
        self.reports.clear();
        if any_delivered {
            shared.recover();
        }
        if let Err(error) = result {
            return Err(self.abandon(error.to_string()));
        }
        self.advance();
        self.metrics.in_flight.set(self.n_in_flight as f64);
        Ok(())
    }

    /// Moves the durable mark past every complete batch at the front.
    fn advance(&mut self) {
        while self.batches.front().is_some_and(|b| b.n_pending == 0) {
            self.batches.pop_front();
            self.n_durable += 1;
        }
    }

    /// Enqueues what is due: retries first, then new messages in write
    /// order. Never drops one; returns whether the queue was full.
    fn enqueue(&mut self, shared: &Shared, sender: &Sender<'_>) -> Result<bool, ComponentError> {
        let now = Instant::now();
        // The first batch with messages never enqueued.
        let mut fresh = self.batches.iter().position(|b| b.next_new < b.messages.len());
        loop {
            let due_retry = self.retries.peek().filter(|Reverse((due, _, _))| *due <= now).map(|Reverse(r)| *r);
            let (offset, index) = match (due_retry, fresh) {
                (Some((_, seq, index)), _) => ((seq - self.n_durable) as usize, index),
                (None, Some(offset)) => (offset, self.batches[offset].next_new),
                (None, None) => return Ok(false),
            };
            let batch = &mut self.batches[offset];
            let opaque = opaque(batch.seq, index);
            let message = &mut batch.messages[index];
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header { key: "content-type", value: Some(sender.content_type) })
                .insert(Header { key: "hostflow-type", value: Some(message.message_type) });
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(sender.topic, opaque)
                .payload(&message.payload)
                .headers(headers);
            if let Some(key) = message.key.as_deref().or(sender.shared_key) {
                record = record.key(key);
            }
            let sent = sender.producer.send(record).map_err(|(error, _)| error);
            if let Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) = sent {
                self.n_queue_full += 1;
                return Ok(true);
            }
            if due_retry.is_some() {
                self.retries.pop();
            } else {
                batch.next_new += 1;
                self.metrics.produced.increment(1);
                if batch.next_new == batch.messages.len() {
                    fresh = (offset + 1..self.batches.len()).find(|&o| !self.batches[o].messages.is_empty());
                }
            }
            let batch = &mut self.batches[offset];
            let message = &mut batch.messages[index];
            match sent {
                Ok(()) => {
                    message.first_enqueued.get_or_insert(now);
                    self.n_in_flight += 1;
                }
                Err(error) => {
                    message.attempts += 1;
                    let (seq, attempts, len) = (batch.seq, message.attempts, message.payload.len());
                    match self.failed_attempt(attempts, len, &error, shared, Some(sender.producer)) {
                        Ok(due) => self.retries.push(Reverse((due, seq, index))),
                        Err(error) => return Err(self.abandon(error.to_string())),
                    }
                }
            }
        }
    }

    /// Records failed attempt number `attempts` of a `len`-byte message and
    /// returns when to try again, or the error when no retry can succeed.
    fn failed_attempt(
        &mut self,
        attempts: u32,
        len: usize,
        error: &KafkaError,
        shared: &Shared,
        producer: Option<&ThreadedProducer<DeliveryContext>>,
    ) -> Result<Instant, ComponentError> {
        self.metrics.add_failed(failure_reason(error));
        self.n_failed_attempts += 1;
        if let Some((code, fatal)) = producer.and_then(|p| p.client().fatal_error()) {
            return Err(ComponentError::Failed(format!("kafka producer hit a fatal error: {code:?}: {fatal}")));
        }
        if super::producer::is_permanent(error) {
            return Err(ComponentError::Failed(format!(
                "kafka rejected a {len}-byte message to `{}` for good: {error}",
                self.topic
            )));
        }
        let delay = self.backoff(attempts);
        shared.degrade(format!("delivery to topic `{}` failed ({error}); retrying with back-off", self.topic));
        tracing::debug!(topic = %self.topic, %error, attempt = attempts, ?delay, "kafka delivery retry");
        Ok(Instant::now() + delay)
    }

    /// Exponential back-off with "equal jitter": half the capped delay
    /// plus a random share of the other half.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let initial = self.backoff.initial;
        let capped = initial.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.backoff.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let share = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        capped / 2 + capped.mul_f64(share / 2.0)
    }
}
