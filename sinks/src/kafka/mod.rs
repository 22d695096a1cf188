//! `kafka`: events to one Kafka topic through librdkafka (rdkafka's
//! `ThreadedProducer`, an idempotent producer with `acks=all`).
//!
//! Messages: with `encoding = "protobuf"` (default) one message per wire
//! envelope of `crate::protobuf::encode_batch` (a scan's process rows share
//! one `ProcessEnvelope`; each sketch is a `SketchEnvelope`, …); with
//! `encoding = "json"` one message per event (the NDJSON object, no
//! newline). Every message carries the headers `content-type` and
//! `hostflow-type` (the envelope's protobuf message name, or the event kind
//! for JSON), so one topic can hold several message types.
//!
//! Acknowledgement: a batch is durable once the broker acknowledged every
//! one of its messages (`acks=all`, from librdkafka's delivery reports);
//! `durable_batches` counts the batches, in write order, that are durable
//! together with every batch before them. Up to `max_in_flight_batches`
//! (default 4) batches are unacknowledged at once: `write` enqueues the
//! batch's messages and returns once all are enqueued and fewer than
//! `max_in_flight_batches` batches are unacknowledged (a full window waits
//! for its oldest batch); with 1 it returns only once its batch is
//! acknowledged (lock-step). So throughput no longer stops at one batch per
//! linger + round trip. `flush` waits for every batch. Once the agent is
//! stopping, a `write` or `flush` still waiting on the broker gives up
//! `flush_timeout_secs` after the stop began. A full producer queue is
//! backpressure: `write` waits for deliveries to free room and retries the
//! same message, so the sink stops pulling from its edge. Broker outages are
//! absorbed by librdkafka (infinite `message.timeout.ms`, reconnect with
//! exponential back-off and jitter); a delivery that librdkafka gives up on
//! anyway (e.g. an authorization or unknown-topic error) is re-enqueued by
//! the sink with exponential back-off and jitter, counted in
//! `failed{reason}`, and reported as degraded health until a delivery
//! succeeds again; the engine's tick drives retries and reports while no
//! batch arrives. Only errors no retry can fix (a message larger than the
//! broker accepts, a fatal idempotence error) fail the sink, from the next
//! `write`, tick or `flush`. Retried messages may be reordered against later
//! ones, of the same batch or of later batches in flight.

mod producer;
mod window;

#[cfg(test)]
mod inflight_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::health::HealthHandle;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink, SinkContext};
use rdkafka::ClientConfig;
use serde::Deserialize;
use toml::Spanned;

pub use producer::KafkaSink;

/// How events become message payloads.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The `schemas` protobuf envelopes, one message per envelope.
    #[default]
    Protobuf,
    /// One JSON object per event (the NDJSON encoding), one message per event.
    Json,
}

/// `brokers` as one comma-separated string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Brokers {
    One(String),
    Many(Vec<String>),
}

/// A `librdkafka_options` value: TOML strings, integers, floats and booleans
/// are passed to librdkafka as their text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl OptionValue {
    fn to_text(&self) -> String {
        match self {
            OptionValue::Text(text) => text.clone(),
            OptionValue::Integer(n) => n.to_string(),
            OptionValue::Float(x) => x.to_string(),
            OptionValue::Bool(b) => b.to_string(),
        }
    }
}

/// `[sinks.NAME] type = "kafka"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`: a list or one comma-separated string.
    pub brokers: Spanned<Brokers>,
    /// The topic every message goes to.
    pub topic: Spanned<String>,
    /// The message key, which picks the partition: `"entity_guid"`
    /// (default), `"host"`, `"field"` (the `key_field` of each event; JSON
    /// encoding only) or `"none"` (librdkafka's partitioner spreads them).
    #[serde(default = "default_key")]
    pub key: Spanned<String>,
    /// With `key = "field"`: the top-level field of the event's JSON object
    /// (e.g. `"pid"`); events without it get no key.
    #[serde(default)]
    pub key_field: Option<Spanned<String>>,
    /// `"protobuf"` (default) or `"json"`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `"zstd"` (default), `"lz4"`, `"snappy"` or `"none"`.
    #[serde(default = "default_compression")]
    pub compression: Spanned<String>,
    /// How long librdkafka waits to fill a produce request (default 5 ms).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: Spanned<u64>,
    /// The entity guid stamped on envelopes and used as key (default: the
    /// contents of /etc/machine-id, else the host name).
    #[serde(default)]
    pub entity_guid: Option<String>,
    /// The host name stamped on envelopes (default: the kernel's host name).
    #[serde(default)]
    pub host: Option<String>,
    /// First delay before a failed delivery is sent again (default 100 ms);
    /// it doubles per attempt, with jitter, up to `retry_backoff_max_ms`.
    #[serde(default = "default_retry_backoff_initial_ms")]
    pub retry_backoff_initial_ms: Spanned<u64>,
    /// Longest delay between two attempts of one message (default 30 000 ms).
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: Spanned<u64>,
    /// How long after the agent began stopping the sink stops waiting for
    /// outstanding deliveries, in `write` or `flush` (default 30 s); what is
    /// left is then purged and counted as not delivered.
    #[serde(default = "default_flush_timeout_secs")]
    pub flush_timeout_secs: Spanned<f64>,
    /// Most batches unacknowledged at once (default 4; 1 = `write` returns
    /// only once its batch is acknowledged). Each holds its encoded messages
    /// in memory until the broker has them all.
    #[serde(default = "default_max_in_flight_batches")]
    pub max_in_flight_batches: Spanned<u64>,
    /// librdkafka properties passed through as is (e.g.
    /// `"queue.buffering.max.messages" = 100000`), minus [`DENIED_OPTIONS`].
    #[serde(default)]
    pub librdkafka_options: BTreeMap<Spanned<String>, Spanned<OptionValue>>,
}

fn default_key() -> Spanned<String> {
    Spanned::new(0..0, "entity_guid".to_owned())
}
fn default_compression() -> Spanned<String> {
    Spanned::new(0..0, "zstd".to_owned())
}
fn default_linger_ms() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}
fn default_retry_backoff_initial_ms() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_retry_backoff_max_ms() -> Spanned<u64> {
    Spanned::new(0..0, 30_000)
}
fn default_flush_timeout_secs() -> Spanned<f64> {
    Spanned::new(0..0, 30.0)
}
fn default_max_in_flight_batches() -> Spanned<u64> {
    Spanned::new(0..0, 4)
}

/// The largest `max_in_flight_batches`: the window's batches must stay far
/// apart from 2^32, the range of a delivery opaque's batch half.
pub const MAX_IN_FLIGHT_BATCHES: u64 = 1024;

/// Compression codecs this build of librdkafka has (no zlib, so no gzip).
pub const COMPRESSIONS: [&str; 4] = ["zstd", "lz4", "snappy", "none"];

/// librdkafka properties `librdkafka_options` may not set, each with why
/// (the reason is the error's hint).
pub const DENIED_OPTIONS: [(&str, &str); 16] = [
    ("enable.idempotence", "always true: broker-side retries must not duplicate or reorder messages"),
    ("acks", "always `all`: a message counts as delivered only once every in-sync replica has it"),
    ("request.required.acks", "always `all` (alias of `acks`)"),
    (
        "message.timeout.ms",
        "always 0 (infinite): a timed-out message would be sent again as a new message, a duplicate if the first attempt landed",
    ),
    ("delivery.timeout.ms", "always 0 (infinite; alias of `message.timeout.ms`)"),
    ("retries", "librdkafka must retry without limit; giving up during an outage would fail deliveries"),
    ("message.send.max.retries", "librdkafka must retry without limit (alias of `retries`)"),
    (
        "delivery.report.only.error",
        "the sink acknowledges a batch from the successful delivery reports; without them it would wait forever",
    ),
    ("transactional.id", "transactions are not used: messages of a never-committed transaction stay invisible"),
    ("compression.type", "set `compression` instead"),
    ("compression.codec", "set `compression` instead"),
    ("linger.ms", "set `linger_ms` instead"),
    ("queue.buffering.max.ms", "set `linger_ms` instead"),
    ("bootstrap.servers", "set `brokers` instead"),
    ("metadata.broker.list", "set `brokers` instead"),
    ("enable.gapless.guarantee", "left false: a gap is re-sent by the sink instead of stopping the producer"),
];

/// librdkafka's limit for an idempotent producer.
const MAX_IN_FLIGHT: u64 = 5;

/// How a message's key is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyBy {
    EntityGuid,
    Host,
    /// A top-level field of each event's JSON object.
    Field(String),
    None,
}

/// The checked settings a [`KafkaSink`] runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub topic: String,
    pub key: KeyBy,
    pub encoding: Encoding,
    pub entity_guid: String,
    pub host: String,
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
    pub flush_timeout: Duration,
    /// Most batches unacknowledged at once (at least 1).
    pub max_in_flight_batches: usize,
    /// The complete producer configuration (forced settings included).
    pub client_config: ClientConfig,
}

/// Builds a kafka sink from its options (the registry entry). Validates
/// everything, librdkafka options included, without connecting.
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    build_sink(options).map(|sink| Box::new(sink) as Box<dyn Sink>)
}

/// Like [`build`], returning the concrete sink (so a caller can attach a
/// health handle with [`KafkaSink::set_health`]).
pub fn build_sink(options: &ComponentOptions) -> Result<KafkaSink, Vec<ConfigError>> {
    pipeline::build_with(options, |config: KafkaConfig, options| {
        let settings = check(&config, options)?;
        Ok(KafkaSink::new(settings, &options.component))
    })
}

/// Validates a config into settings, collecting every problem.
pub fn check(config: &KafkaConfig, options: &ComponentOptions) -> Result<Settings, Vec<ConfigError>> {
    let mut errors = Vec::new();

    let brokers: Vec<String> = match config.brokers.get_ref() {
        Brokers::One(list) => list.split(',').map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect(),
        Brokers::Many(list) => list.iter().map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect(),
    };
    if brokers.is_empty() {
        errors.push(
            options
                .error_at(config.brokers.span(), "`brokers` must name at least one broker")
                .with_hint("e.g. brokers = [\"localhost:9092\"]"),
        );
    }

    let topic = config.topic.get_ref();
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        errors.push(options.error_at(config.topic.span(), "`topic` must be 1 to 249 characters (not `.` or `..`)"));
    } else if let Some(bad) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        errors.push(options.error_at(
            config.topic.span(),
            format!("`topic` may only contain ASCII letters, digits, `.`, `_` and `-`, found {bad:?}"),
        ));
    }

    let key = match config.key.get_ref().as_str() {
        "entity_guid" => KeyBy::EntityGuid,
        "host" => KeyBy::Host,
        "none" => KeyBy::None,
        "field" => match &config.key_field {
            Some(field) if !field.get_ref().is_empty() => {
                if config.encoding != Encoding::Json {
                    errors.push(
                        options
                            .error_at(config.key.span(), "`key = \"field\"` needs `encoding = \"json\"`")
                            .with_hint("a protobuf envelope can carry several events, so it has no one field value"),
                    );
                }
                KeyBy::Field(field.get_ref().clone())
            }
            _ => {
                errors.push(options.error_at(config.key.span(), "`key = \"field\"` needs a non-empty `key_field`"));
                KeyBy::None
            }
        },
        other => {
            errors.push(options.error_at(
                config.key.span(),
                format!("unknown key `{other}`; expected one of: entity_guid, host, field, none"),
            ));
            KeyBy::None
        }
    };
    if let (Some(field), false) = (&config.key_field, matches!(key, KeyBy::Field(_))) {
        errors.push(options.error_at(field.span(), "`key_field` is only used with `key = \"field\"`"));
    }

    let compression = config.compression.get_ref().as_str();
    if !COMPRESSIONS.contains(&compression) {
        let message = if compression == "gzip" {
            "compression `gzip` is not built into this agent (librdkafka without zlib); expected one of: zstd, lz4, snappy, none"
                .to_owned()
        } else {
            format!("unknown compression `{compression}`; expected one of: zstd, lz4, snappy, none")
        };
        errors.push(options.error_at(config.compression.span(), message));
    }

    let linger_ms = *config.linger_ms.get_ref();
    if linger_ms > 900_000 {
        errors.push(options.error_at(config.linger_ms.span(), "`linger_ms` must be at most 900000"));
    }
    let initial_ms = *config.retry_backoff_initial_ms.get_ref();
    let max_ms = *config.retry_backoff_max_ms.get_ref();
    if initial_ms == 0 {
        errors.push(
            options.error_at(config.retry_backoff_initial_ms.span(), "`retry_backoff_initial_ms` must be at least 1"),
        );
    }
    if max_ms < initial_ms {
        errors.push(options.error_at(
            config.retry_backoff_max_ms.span(),
            format!("`retry_backoff_max_ms` ({max_ms}) must be at least `retry_backoff_initial_ms` ({initial_ms})"),
        ));
    }
    let flush_secs = *config.flush_timeout_secs.get_ref();
    let flush_timeout = if flush_secs.is_finite() && flush_secs > 0.0 && flush_secs < 1e9 {
        Duration::from_secs_f64(flush_secs)
    } else {
        errors.push(options.error_at(
            config.flush_timeout_secs.span(),
            format!("`flush_timeout_secs` must be a positive number of seconds, got {flush_secs}"),
        ));
        Duration::ZERO
    };

    let max_in_flight_batches = *config.max_in_flight_batches.get_ref();
    if !(1..=MAX_IN_FLIGHT_BATCHES).contains(&max_in_flight_batches) {
        errors.push(
            options
                .error_at(
                    config.max_in_flight_batches.span(),
                    format!(
                        "`max_in_flight_batches` must be 1 to {MAX_IN_FLIGHT_BATCHES}, got {max_in_flight_batches}"
                    ),
                )
                .with_hint("1 acknowledges each batch before the next is written; 4 (default) keeps 4 in flight"),
        );
    }

    let mut client_config = ClientConfig::new();
    client_config
        .set("bootstrap.servers", brokers.join(","))
        .set("client.id", "hostflow")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("compression.type", compression)
        .set("linger.ms", linger_ms.to_string());
    for (name, value) in &config.librdkafka_options {
        let key = name.get_ref().as_str();
        let text = value.get_ref().to_text();
        if let Some((_, why)) = DENIED_OPTIONS.iter().find(|(denied, _)| *denied == key) {
            errors.push(
                options.error_at(name.span(), format!("librdkafka option `{key}` may not be set here")).with_hint(*why),
            );
            continue;
        }
        let is_in_flight = key == "max.in.flight.requests.per.connection" || key == "max.in.flight";
        if is_in_flight && text.trim().parse::<u64>().map_or(true, |n| n > MAX_IN_FLIGHT) {
            errors.push(
                options
                    .error_at(value.span(), format!("`{key}` must be at most {MAX_IN_FLIGHT}, got `{text}`"))
                    .with_hint("an idempotent producer keeps ordering only with at most 5 requests in flight"),
            );
            continue;
        }
        // librdkafka checks names and values as they are set; try each alone
        // so the error points at the option.
        let mut probe = ClientConfig::new();
        probe.set(key, &text);
        if let Err(error) = probe.create_native_config() {
            let reason = match error {
                rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description,
                other => other.to_string(),
            };
            errors.push(options.error_at(name.span(), format!("librdkafka rejects option `{key}`: {reason}")));
            continue;
        }
        client_config.set(key, text);
    }
    if errors.is_empty() {
        if let Err(error) = client_config.create_native_config() {
            errors.push(options.error(format!("librdkafka rejects the producer configuration: {error}")));
        }
    }

    let host = config.host.clone().unwrap_or_else(default_host);
    let entity_guid = config.entity_guid.clone().unwrap_or_else(|| default_entity_guid(&host));
    let settings = Settings {
        topic: topic.clone(),
        key,
        encoding: config.encoding,
        entity_guid,
        host,
        retry_backoff_initial: Duration::from_millis(initial_ms),
        retry_backoff_max: Duration::from_millis(max_ms),
        flush_timeout,
        max_in_flight_batches: usize::try_from(max_in_flight_batches).unwrap_or(1).max(1),
        client_config,
    };
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn default_entity_guid(host: &str) -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| host.to_owned())
}

/// How often the engine ticks the sink so retries come due without input:
/// half the first back-off delay, between 5 and 50 ms.
pub fn tick_period(settings: &Settings) -> Duration {
    (settings.retry_backoff_initial / 2).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

#[async_trait]
impl Sink for KafkaSink {
    fn attach(&mut self, cx: SinkContext) {
        self.set_health(cx.health);
        self.set_shutdown(cx.shutdown);
    }

    async fn open(&mut self) -> Result<(), ComponentError> {
        self.connect()
    }

    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        let messages = self.encode(&batch);
        drop(batch);
        self.write_messages(messages).await
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(tick_period(self.settings()))
    }

    async fn on_tick(&mut self) -> Result<(), ComponentError> {
        self.poll()
    }

    fn durable_batches(&self) -> Option<u64> {
        Some(self.durable())
    }

    /// Delivery reports arrive on librdkafka's thread.
    fn acknowledges_in_background(&self) -> bool {
        true
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        self.flush_outstanding().await
    }
}

impl KafkaSink {
    /// Attaches the handle the sink reports degraded states through (the
    /// engine calls it via `Sink::attach`; tests call it directly).
    pub fn set_health(&mut self, health: HealthHandle) {
        self.shared().attach_health(health);
    }
}
