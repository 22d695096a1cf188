//! Tests of the `generator` source: determinism, mixes, every kind.

use super::*;

fn stream(seed: u64, kinds: &[EventKind]) -> EventStream {
    EventStream::new(seed, kinds.iter().map(|k| (*k, 1)).collect(), Some(1000.0))
}

#[test]
fn same_seed_same_events() {
    let mut a = stream(7, &EventKind::ALL);
    let mut b = stream(7, &EventKind::ALL);
    let mut c = stream(8, &EventKind::ALL);
    let first: Vec<Event> = (0..500).map(|_| a.next_event(0)).collect();
    let second: Vec<Event> = (0..500).map(|_| b.next_event(0)).collect();
    let other: Vec<Event> = (0..500).map(|_| c.next_event(0)).collect();
    assert_eq!(first, second);
    assert_ne!(first, other);
}

#[test]
fn ids_and_timestamps_follow_the_sequence() {
    let mut s = stream(1, &[EventKind::NetConnect]);
    for sequence in 0..10u64 {
        let event = s.next_event(3 << 48);
        assert_eq!(event.meta().event_id, (3 << 48) | sequence);
        assert_eq!(event.meta().ts_ns, sequence * 1_000_000);
        assert_eq!(event.kind(), EventKind::NetConnect);
    }
}

/// FNV-1a over the events' `Debug` text: a fingerprint of a stream.
fn fingerprint(events: &[Event]) -> u64 {
    // `context` is enrichment's (always `None` from a source): left out,
    // so the pinned number still describes the generated values.
    format!("{events:?}")
        .replace("context: None, ", "")
        .replace(", context: None", "")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The default mix's stream for a seed is frozen: kinds added to the
/// generator (the security kinds) must not change it. (A field added
/// to a record changes its `Debug` text and so this number: re-pin it
/// then, once the stream's values are known to be the same.)
#[test]
fn the_default_mix_stream_is_unchanged() {
    let mut s = EventStream::new(7, DEFAULT_MIX.map(|kind| (kind, 1)).to_vec(), Some(1000.0));
    let events: Vec<Event> = (0..2_000).map(|_| s.next_event(0)).collect();
    assert_eq!(fingerprint(&events), 3_688_341_635_696_167_678, "seed 7, default mix");
}

#[test]
fn every_kind_can_be_generated() {
    let mut s = stream(2, &EventKind::ALL);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5_000 {
        let event = s.next_event(0);
        // The engine's context slot and the formats' context columns
        // are decided in two crates: they must name the same kinds.
        let kind = event.kind();
        assert_eq!(event.context_slot().is_some(), schemas::columns::carries_context(kind.as_str()), "{kind}");
        seen.insert(kind);
    }
    assert_eq!(seen.len(), EventKind::ALL.len(), "{seen:?}");
}

#[test]
fn mix_weights_shape_the_stream() {
    let mut s = EventStream::new(3, vec![(EventKind::ProcessExec, 3), (EventKind::FileOpen, 1)], None);
    let n = 40_000;
    let execs = (0..n).filter(|_| s.next_event(0).kind() == EventKind::ProcessExec).count();
    let share = execs as f64 / n as f64;
    assert!((0.73..0.77).contains(&share), "exec share {share}");
}
