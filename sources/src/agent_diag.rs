//! `agent_diag`: the agent's own diagnostics as events.
//!
//! Components report a fallback taken or an outage with
//! `pipeline::diag::emit`; this source turns each report into an
//! `AgentDiag` event so it reaches the spool or Kafka like any other event
//! (an operator asks "when did this host lose its broker?" with a query, not
//! by grepping logs). It subscribes when built — before any component runs —
//! so reports made while sinks open are included.
//!
//! Reports are batched: whatever has arrived when the source wakes goes
//! out together. If the source falls more than `pipeline::diag::CAPACITY`
//! reports behind (its edge blocked for long), the bus tells it how many it
//! missed; they are counted as discarded with reason `buffer_full`.

use async_trait::async_trait;
use pipeline::diag::{DiagRecord, DiagSubscription, Received};
use pipeline::event::{AgentDiag, EventMeta};
use pipeline::metrics::{names, DropReason};
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Event, Source, SourceContext};
use serde::Deserialize;

/// `[sources.NAME] type = "agent_diag"`: no options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDiagConfig {}

/// Builds the source and subscribes it to the diagnostics bus.
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Source>, Vec<ConfigError>> {
    pipeline::build_with(options, |_: AgentDiagConfig, _| {
        Ok(Box::new(AgentDiagSource { subscription: pipeline::diag::subscribe() }) as Box<dyn Source>)
    })
}

/// A subscribed `agent_diag` source.
pub struct AgentDiagSource {
    subscription: DiagSubscription,
}

/// Largest batch sent at once; diagnostics come in trickles, this only
/// bounds a burst.
const MAX_BATCH: usize = 256;

#[async_trait]
impl Source for AgentDiagSource {
    async fn run(mut self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        let mut shutdown = cx.shutdown.clone();
        let mut sequence: u64 = 0;
        loop {
            let first = tokio::select! {
                received = self.subscription.recv() => received,
                _ = shutdown.wait() => break,
            };
            let mut batch = Batch::new();
            let mut pending = Some(first);
            while let Some(received) = pending.take() {
                match received {
                    Received::Record(record) => {
                        batch.push(to_event(record, cx.event_id(sequence)));
                        sequence += 1;
                    }
                    Received::Missed(n_missed) => count_missed(&cx, n_missed),
                }
                if batch.len() < MAX_BATCH {
                    pending = self.subscription.try_recv();
                }
            }
            if !batch.is_empty() {
                cx.out.send(batch).await;
            }
        }
        // Whatever was reported up to the shutdown goes out too.
        let mut batch = Batch::new();
        while let Some(received) = self.subscription.try_recv() {
            match received {
                Received::Record(record) => {
                    batch.push(to_event(record, cx.event_id(sequence)));
                    sequence += 1;
                }
                Received::Missed(n_missed) => count_missed(&cx, n_missed),
            }
        }
        if !batch.is_empty() {
            cx.out.send(batch).await;
        }
        Ok(())
    }
}

fn to_event(record: DiagRecord, event_id: u64) -> Event {
    Event::AgentDiag(AgentDiag {
        meta: EventMeta { ts_ns: record.ts_ns, event_id },
        module: record.module,
        event_type: record.event_type,
        reason: record.reason,
    })
}

/// Records the bus overwrote before this source read them: counted as this
/// source's `buffer_full` drops, with the labels every component's drops
/// carry, and booked in the loss ledger on the source's row.
fn count_missed(cx: &SourceContext, n_missed: u64) {
    tracing::warn!(source = %cx.name, n_missed, "diagnostics arrived faster than they could be sent");
    metrics::counter!(
        names::COMPONENT_DISCARDED_EVENTS_TOTAL,
        "component" => cx.name.to_string(),
        "component_kind" => "source",
        "component_type" => "agent_diag",
        "reason" => DropReason::BufferFull.as_str()
    )
    .increment(n_missed);
    if let Some(ledger) = cx.health.health().ledger_handle() {
        ledger.source_discarded(&cx.name, DropReason::BufferFull, n_missed);
    }
}
