//! Metric handles, built once per component and edge, plus the run report.
//!
//! Hot paths only add to handles created at build time; labels are never
//! formatted per event or per batch. Every handle update is mirrored in a
//! plain `u64` owned by the task, so a finished run can report exact totals
//! ([`RunReport`]) without a metrics recorder being installed.

pub mod names;

use std::collections::BTreeMap;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use serde::Serialize;

pub use names::DropReason;

use crate::config::Role;

/// The bucket bounds of every `_seconds` histogram (batch latency, scan
/// duration, Kafka delivery): 10 µs to 10 s in 1–2.5–5 steps.
///
/// Why fixed buckets and not a summary's quantiles: a fleet aggregates
/// buckets across hosts (`histogram_quantile(0.99, sum by (le) (…))`)
/// where quantiles cannot be averaged, and a bucket is 8 bytes where the
/// exporter's summary keeps three rolling sketches of up to 32 768 bins
/// (256 KiB each) per series — 1.7 MiB of an idle agent's heap, growing
/// with load (issue #12, BENCHMARKS.md).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The handles of one component. Owned by the component's task.
pub struct ComponentMetrics {
    received: Counter,
    discarded: [Counter; DropReason::COUNT],
    errors: Counter,
    latency: Histogram,
    report: ComponentReport,
    /// The component's loss-ledger row: each count below is also a move
    /// between its terms. A transform's discards are booked by
    /// [`ComponentMetrics::processed`] instead.
    ledger: Option<crate::ledger::ComponentEntry>,
}

impl ComponentMetrics {
    /// Registers the handles of one component.
    pub fn new(name: &str, role: Role, type_name: &str) -> ComponentMetrics {
        let labels = component_labels(name, role, type_name);
        let discarded = DropReason::ALL.map(|reason| {
            let mut labels = labels.clone();
            labels.push(metrics::Label::new("reason", reason.as_str()));
            metrics::counter!(names::COMPONENT_DISCARDED_EVENTS_TOTAL, labels)
        });
        ComponentMetrics {
            received: metrics::counter!(names::COMPONENT_RECEIVED_EVENTS_TOTAL, labels.clone()),
            discarded,
            errors: metrics::counter!(names::COMPONENT_ERRORS_TOTAL, labels.clone()),
            latency: metrics::histogram!(names::COMPONENT_LATENCY_SECONDS, labels),
            report: ComponentReport { role, type_name: type_name.to_owned(), ..ComponentReport::default() },
            ledger: None,
        }
    }

    /// Books this component's counts in the loss ledger too.
    pub fn set_ledger(&mut self, entry: crate::ledger::ComponentEntry) {
        self.ledger = Some(entry);
    }

    /// A transform's step took `n_in` events and left `n_out` (plus its
    /// discards) for its fan-out: the ledger's view of one step.
    pub fn processed(&self, n_in: u64, n_out: u64, discarded: &[u64; DropReason::COUNT]) {
        if let Some(ledger) = &self.ledger {
            ledger.processed(n_in, n_out, discarded);
        }
    }

    /// Events still queued in the component's input buffer, dropped
    /// because the component stopped.
    pub fn add_stranded(&mut self, n_events: u64) {
        if n_events > 0 {
            self.discarded[DropReason::DownstreamClosed.index()].increment(n_events);
            *self.report.discarded.entry(DropReason::DownstreamClosed.as_str()).or_default() += n_events;
            if let Some(ledger) = &self.ledger {
                ledger.buffer_discarded(n_events);
            }
        }
    }

    /// Counts a batch taken in.
    pub fn add_received(&mut self, n_events: usize) {
        self.received.increment(n_events as u64);
        self.report.received += n_events as u64;
        if let Some(ledger) = &self.ledger {
            ledger.received(n_events as u64);
        }
    }

    /// Counts events passed on or acknowledged.
    pub fn add_sent(&mut self, sent: &Counter, n_events: usize) {
        sent.increment(n_events as u64);
        self.report.sent += n_events as u64;
        if let Some(ledger) = &self.ledger {
            ledger.sent(n_events as u64);
        }
    }

    /// Counts events the component itself dropped.
    pub fn add_discarded(&mut self, reason: DropReason, n_events: u64) {
        if n_events > 0 {
            if let (Some(ledger), Role::Sink) = (&self.ledger, self.report.role) {
                ledger.discarded(reason, n_events);
            }
            self.discarded[reason.index()].increment(n_events);
            *self.report.discarded.entry(reason.as_str()).or_default() += n_events;
        }
    }

    /// Counts one error.
    pub fn add_error(&mut self, message: &str) {
        self.errors.increment(1);
        self.report.errors += 1;
        self.report.last_error = Some(message.to_owned());
    }

    /// Records the CPU time one batch took.
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed.as_secs_f64());
    }

    /// The totals so far.
    pub fn into_report(self) -> ComponentReport {
        self.report
    }
}

/// The `sent` handle of a component. Separate from [`ComponentMetrics`]
/// because a source's sends are counted where it sends, in its fan-out.
pub fn sent_counter(name: &str, role: Role, type_name: &str) -> Counter {
    metrics::counter!(names::COMPONENT_SENT_EVENTS_TOTAL, component_labels(name, role, type_name))
}

fn component_labels(name: &str, role: Role, type_name: &str) -> Vec<metrics::Label> {
    vec![
        metrics::Label::new("component", name.to_owned()),
        metrics::Label::new("component_kind", role.noun()),
        metrics::Label::new("component_type", type_name.to_owned()),
    ]
}

/// Handles of one edge `from` → `to`.
#[derive(Clone)]
pub struct EdgeMetrics {
    pub(crate) sent: Counter,
    pub(crate) discarded: [Counter; DropReason::COUNT],
    /// The downstream component's discarded counter: a drop on its input
    /// buffer is also a drop *by* that component, as operators look for it.
    pub(crate) target_discarded: [Counter; DropReason::COUNT],
    /// A gauge only because `metrics` counters are integers; it only ever
    /// grows, by fractional seconds.
    pub(crate) blocked_seconds: Gauge,
}

impl EdgeMetrics {
    /// Registers the handles of one edge.
    pub fn new(from: &str, to: &str, to_role: Role, to_type: &str) -> EdgeMetrics {
        let edge_labels = vec![metrics::Label::new("from", from.to_owned()), metrics::Label::new("to", to.to_owned())];
        let target_labels = component_labels(to, to_role, to_type);
        let with_reason = |labels: &Vec<metrics::Label>, name: &'static str| {
            DropReason::ALL.map(|reason| {
                let mut labels = labels.clone();
                labels.push(metrics::Label::new("reason", reason.as_str()));
                metrics::counter!(name, labels)
            })
        };
        EdgeMetrics {
            sent: metrics::counter!(names::EDGE_SENT_EVENTS_TOTAL, edge_labels.clone()),
            discarded: with_reason(&edge_labels, names::EDGE_DISCARDED_EVENTS_TOTAL),
            target_discarded: with_reason(&target_labels, names::COMPONENT_DISCARDED_EVENTS_TOTAL),
            blocked_seconds: metrics::gauge!(names::EDGE_BLOCKED_SECONDS_TOTAL, edge_labels),
        }
    }
}

/// Buffer depth and capacity gauges of one component's input.
#[derive(Clone)]
pub struct BufferGauges {
    pub(crate) depth: Gauge,
}

impl BufferGauges {
    /// Registers the gauges and sets the capacity once.
    pub fn new(component: &str, capacity: usize) -> BufferGauges {
        let labels = vec![metrics::Label::new("component", component.to_owned())];
        metrics::gauge!(names::EDGE_BUFFER_CAPACITY_EVENTS, labels.clone()).set(capacity as f64);
        BufferGauges { depth: metrics::gauge!(names::EDGE_BUFFER_EVENTS, labels) }
    }
}

/// What one component did during a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ComponentReport {
    #[serde(serialize_with = "serialize_role")]
    pub role: Role,
    pub type_name: String,
    pub received: u64,
    pub sent: u64,
    /// Drops by reason, including drops on the component's input buffer.
    pub discarded: BTreeMap<&'static str, u64>,
    pub errors: u64,
    pub last_error: Option<String>,
}

fn serialize_role<S: serde::Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.noun())
}

impl ComponentReport {
    /// All drops, whatever the reason.
    pub fn discarded_total(&self) -> u64 {
        self.discarded.values().sum()
    }
}

/// What one edge carried during a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EdgeReport {
    pub from: String,
    pub to: String,
    pub sent: u64,
    pub discarded: BTreeMap<&'static str, u64>,
    pub blocked_seconds: f64,
}

/// Exact totals of a finished run, per component and per edge.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunReport {
    pub components: BTreeMap<String, ComponentReport>,
    pub edges: Vec<EdgeReport>,
    /// The loss ledger at the end of the run.
    pub ledger: Option<crate::ledger::LedgerSnapshot>,
}

/// Registers HELP text for every metric; call once after installing a recorder.
pub fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        names::COMPONENT_RECEIVED_EVENTS_TOTAL,
        Unit::Count,
        "Events a component took from its input buffer."
    );
    describe_counter!(
        names::COMPONENT_SENT_EVENTS_TOTAL,
        Unit::Count,
        "Events a component passed on (sinks: acknowledged as written)."
    );
    describe_counter!(
        names::COMPONENT_DISCARDED_EVENTS_TOTAL,
        Unit::Count,
        "Events a component or its input buffer dropped, by reason."
    );
    describe_counter!(names::COMPONENT_ERRORS_TOTAL, Unit::Count, "Errors a component hit.");
    describe_histogram!(
        names::COMPONENT_LATENCY_SECONDS,
        Unit::Seconds,
        "Processing time of one batch in a component."
    );
    describe_gauge!(names::EDGE_BUFFER_EVENTS, Unit::Count, "Events waiting in a component's input buffer.");
    describe_gauge!(names::EDGE_BUFFER_CAPACITY_EVENTS, Unit::Count, "Capacity of a component's input buffer.");
    describe_counter!(names::EDGE_SENT_EVENTS_TOTAL, Unit::Count, "Events sent over one edge.");
    describe_counter!(names::EDGE_DISCARDED_EVENTS_TOTAL, Unit::Count, "Events dropped on one edge, by reason.");
    describe_gauge!(
        names::EDGE_BLOCKED_SECONDS_TOTAL,
        Unit::Seconds,
        "Time senders waited for room on one edge (monotonic)."
    );
    describe_gauge!(
        names::TOPN_CAPTURE_RATIO,
        "Share of the latest scan's CPU ticks carried by the Top-N rows (0 to 1)."
    );
    describe_counter!(names::SKETCH_FLUSHED_SKETCHES_TOTAL, Unit::Count, "Sketches emitted at window flushes.");
    describe_gauge!(names::PROCESS_CPU_SECONDS_TOTAL, Unit::Seconds, "CPU time used by the agent (monotonic).");
    describe_gauge!(names::PROCESS_RESIDENT_MEMORY_BYTES, Unit::Bytes, "Resident memory of the agent.");
    describe_gauge!(names::BUILD_INFO, "Always 1; labelled with the agent version.");
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
