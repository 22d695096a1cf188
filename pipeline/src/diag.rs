//! Diagnostics the agent reports about itself: a fallback taken, a broker
//! out of reach, a file set aside.
//!
//! Any component calls [`emit`]; the record is logged, counted in
//! `hostflow_agent_diag_events_total{module,event_type}` and offered to every
//! [`DiagSubscription`]. The `agent_diag` source holds one and turns the
//! records into `AgentDiag` events, so diagnostics travel through a topology
//! (to the spool, to Kafka) like any other event. Subscribing happens at
//! build time, before any component runs, so nothing reported while a sink
//! opens is missed.
//!
//! The bus is a bounded broadcast: an emitter never waits for a subscriber.
//! A subscriber that falls more than [`CAPACITY`] records behind learns how
//! many it missed ([`DiagSubscription::recv`] returns them as `missed`) and
//! must count them — diagnostics are never dropped silently either.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::metrics::names;

/// Records a slow subscriber may fall behind before it misses some.
pub const CAPACITY: usize = 1024;

/// One diagnostic, as emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagRecord {
    /// When it was emitted: CLOCK_BOOTTIME in nanoseconds, the clock of
    /// every kernel-sourced timestamp.
    pub ts_ns: u64,
    /// The component (its name in the topology) or subsystem reporting.
    pub module: Arc<str>,
    /// What happened, a short stable token such as `broker_unreachable` or
    /// `ebpf_fallback`.
    pub event_type: Arc<str>,
    /// Why, in words an operator can act on.
    pub reason: Arc<str>,
}

fn bus() -> &'static broadcast::Sender<DiagRecord> {
    static BUS: OnceLock<broadcast::Sender<DiagRecord>> = OnceLock::new();
    BUS.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Reports a diagnostic: logged at `warn`, counted, and offered to every
/// subscriber. Never blocks.
pub fn emit(module: &str, event_type: &str, reason: impl Into<String>) {
    let reason: String = reason.into();
    tracing::warn!(component = module, event_type, "{reason}");
    metrics::counter!(
        names::AGENT_DIAG_EVENTS_TOTAL,
        "module" => module.to_owned(),
        "event_type" => event_type.to_owned()
    )
    .increment(1);
    let record = DiagRecord {
        ts_ns: boottime_ns(),
        module: Arc::from(module),
        event_type: Arc::from(event_type),
        reason: Arc::from(reason),
    };
    // An error only means nobody subscribed: the log and counter above stand.
    let _ = bus().send(record);
}

/// Starts receiving every record emitted from now on.
pub fn subscribe() -> DiagSubscription {
    DiagSubscription { receiver: bus().subscribe() }
}

/// A receiver of diagnostics; see the module docs.
pub struct DiagSubscription {
    receiver: broadcast::Receiver<DiagRecord>,
}

/// What [`DiagSubscription::recv`] yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The next record.
    Record(DiagRecord),
    /// This many records were overwritten before they could be received.
    Missed(u64),
}

impl DiagSubscription {
    /// Waits for the next record. Never ends: the bus lives as long as the
    /// process.
    pub async fn recv(&mut self) -> Received {
        match self.receiver.recv().await {
            Ok(record) => Received::Record(record),
            Err(broadcast::error::RecvError::Lagged(missed)) => Received::Missed(missed),
            // The sender is a static and never dropped; if that ever changes,
            // waiting forever is what a source with nothing to say does.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// The next record if one is waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.receiver.try_recv() {
            Ok(record) => Some(Received::Record(record)),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Some(Received::Missed(missed)),
            Err(_) => None,
        }
    }
}

/// CLOCK_BOOTTIME in nanoseconds: the clock of `/proc` start times and of
/// the eBPF programs' timestamps, so diagnostics sort among kernel events.
pub fn boottime_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let ns = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    u64::try_from(ns).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_receives_every_record_in_order() {
        let mut first = subscribe();
        let mut second = subscribe();
        emit("diag-test-a", "unit_test", "one");
        emit("diag-test-a", "unit_test", "two");
        for subscription in [&mut first, &mut second] {
            let mut reasons = Vec::new();
            // Other tests in this binary may emit too; keep only ours.
            while reasons.len() < 2 {
                match subscription.recv().await {
                    Received::Record(r) if &*r.module == "diag-test-a" => reasons.push(r.reason.to_string()),
                    Received::Record(_) => {}
                    Received::Missed(n) => panic!("missed {n}"),
                }
            }
            assert_eq!(reasons, ["one", "two"]);
        }
    }

    #[test]
    fn a_slow_subscriber_learns_exactly_how_many_it_missed() {
        let mut slow = subscribe();
        let extra = 10;
        for i in 0..CAPACITY + extra {
            emit("diag-test-b", "unit_test", format!("{i}"));
        }
        let mut missed = 0;
        let mut received = Vec::new();
        while let Some(item) = slow.try_recv() {
            match item {
                Received::Missed(n) => missed += n,
                Received::Record(r) if &*r.module == "diag-test-b" => received.push(r.reason.to_string()),
                Received::Record(_) => {}
            }
        }
        assert!(missed >= extra as u64, "missed {missed}");
        assert_eq!(received.last().map(String::as_str), Some(&*format!("{}", CAPACITY + extra - 1)));
        assert!(missed as usize + received.len() >= CAPACITY + extra);
    }
}
