//! [`Detection`]: one firing of one detection rule (issue #15), the event
//! the `detect` transform emits.
//!
//! A declared kind like the security ones (see `security.rs`): one record
//! with its [`Columns`], so the spool, NDJSON, protobuf and replay carry it
//! without a line of their own. Why an event and not a side channel: a
//! detection travels the same edges, buffers and sinks as the events it
//! rests on (filtered, routed, spooled, replayed), and it names them by
//! `event_ids` so a reader can find them in the spool.

use std::sync::Arc;

use super::columns::{write_key, ColumnError, ColumnReader, ColumnWriter, Columns};
use super::context::wire_enum;
use super::{EventMeta, ProcessContext, ProcessKey};

/// One firing of one detection rule (issue #15). Emitted by the `detect`
/// transform.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `ts_ns` is that of the last event the detection rests on (so a
    /// replay gives the same detection at the same time); `event_id` is
    /// assigned by the detect transform.
    pub meta: EventMeta,
    /// The process the detection is about.
    pub process: ProcessKey,
    /// The rule's id (`hf-linux-reverse-shell`).
    pub rule_id: Arc<str>,
    /// The rule's title, for a human.
    pub title: Arc<str>,
    pub layer: DetectionLayer,
    pub severity: Severity,
    pub confidence: Confidence,
    /// ATT&CK technique ids, e.g. `T1059.004`.
    pub attack: Vec<Arc<str>>,
    /// Ids of the events the detection rests on, in order.
    pub event_ids: Vec<u64>,
    /// Kind name of the last (triggering) event, e.g. `process_exec`.
    pub event_kind: Arc<str>,
    /// One line for a human.
    pub summary: Arc<str>,
    /// Digest of the rule set that produced it (16 hex digits): which
    /// version of the rules to read when a detection is questioned.
    pub ruleset: Arc<str>,
    /// The process's context (see [`ProcessContext`]), as for every
    /// process-bearing kind.
    pub context: Option<Arc<ProcessContext>>,
}

wire_enum! {
    /// The detection layer a rule belongs to (the layers of issue #15).
    #[derive(PartialOrd, Ord)]
    DetectionLayer {
        /// Exact indicators of compromise (hashes, addresses, paths).
        L1 = "l1",
        /// Temporal sequences per process.
        L2 = "l2",
        /// Statistical anomaly against a learned baseline.
        L3 = "l3",
        /// Process lineage graph and kill-chain stages.
        L4 = "l4",
    }
}

wire_enum! {
    /// How bad it is if the detection is right; ordered, least first.
    #[derive(PartialOrd, Ord)]
    Severity {
        Info = "info",
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

wire_enum! {
    /// How sure the rule is; ordered, least sure first.
    #[derive(PartialOrd, Ord)]
    Confidence {
        Low = "low",
        Medium = "medium",
        High = "high",
        VeryHigh = "very_high",
        /// An exact indicator matched.
        Definite = "definite",
    }
}

impl Columns for Detection {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(&self.rule_id);
        w.str(&self.title);
        w.str(self.layer.as_str());
        w.str(self.severity.as_str());
        w.str(self.confidence.as_str());
        w.str_list(&mut self.attack.iter().map(|id| &**id));
        w.u64_list(&self.event_ids);
        w.str(&self.event_kind);
        w.str(&self.summary);
        w.str(&self.ruleset);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<Detection, ColumnError> {
        Ok(Detection {
            meta,
            process: r.key()?,
            rule_id: r.str()?,
            title: r.str()?,
            layer: r.parsed("detection layer", DetectionLayer::from_name)?,
            severity: r.parsed("severity", Severity::from_name)?,
            confidence: r.parsed("confidence", Confidence::from_name)?,
            attack: r.str_list()?,
            event_ids: r.u64_list()?,
            event_kind: r.str()?,
            summary: r.str()?,
            ruleset: r.str()?,
            context: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::columns::ValueRecorder;

    #[test]
    fn enum_names_round_trip_and_order_is_by_strength() {
        for layer in DetectionLayer::ALL {
            assert_eq!(DetectionLayer::from_name(layer.as_str()), Some(layer));
        }
        for severity in Severity::ALL {
            assert_eq!(Severity::from_name(severity.as_str()), Some(severity));
        }
        for confidence in Confidence::ALL {
            assert_eq!(Confidence::from_name(confidence.as_str()), Some(confidence));
        }
        assert_eq!(Confidence::ALL.map(Confidence::as_str)[3], "very_high");
        assert!(Severity::Info < Severity::Critical && Confidence::Low < Confidence::Definite);
        assert!(DetectionLayer::L1 < DetectionLayer::L4);
        assert_eq!((Confidence::VeryHigh.as_str(), Severity::from_name("High")), ("very_high", None));
    }

    #[test]
    fn columns_round_trip_and_a_bad_name_is_an_error() {
        let detection = Detection {
            meta: EventMeta { ts_ns: 9, event_id: 10 },
            process: ProcessKey { pid: 1234, start_time_ns: 5 },
            rule_id: "r".into(),
            title: "t".into(),
            layer: DetectionLayer::L2,
            severity: Severity::High,
            confidence: Confidence::VeryHigh,
            attack: vec!["T1059.004".into()],
            event_ids: vec![17, 18, u64::MAX],
            event_kind: "process_exec".into(),
            summary: "s".into(),
            ruleset: "0123456789abcdef".into(),
            context: None,
        };
        let mut values = ValueRecorder::default();
        detection.write_columns(&mut values);
        assert_eq!(Detection::read_columns(detection.meta, &mut values), Ok(detection.clone()));

        let mut values = ValueRecorder::default();
        Detection { severity: Severity::Low, ..detection.clone() }.write_columns(&mut values);
        values.values[5] = crate::event::columns::ColumnValue::Str("severe".into());
        let error = Detection::read_columns(detection.meta, &mut values).expect_err("not a severity");
        assert_eq!(error, ColumnError::Value { index: 5, what: "severity", value: "severe".to_owned() });
    }
}
