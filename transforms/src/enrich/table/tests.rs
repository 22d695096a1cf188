//! Tests of `ProcessTable`: the bound under a million inserts (with no
//! growth once warm), deterministic LRU eviction, the exited grace period,
//! PID reuse, ancestry ends (root, depth limit, missing parent, cycle), the
//! size of an entry, and a randomized comparison with a naive model.

use std::mem::size_of;
use std::num::NonZeroU32;
use std::sync::Arc;

use super::*;

fn key(pid: u32, start_time_ns: u64) -> ProcessKey {
    ProcessKey { pid, start_time_ns }
}

fn table<V>(capacity: u32, grace_ns: u64) -> ProcessTable<V> {
    ProcessTable::new(NonZeroU32::new(capacity).expect("non-zero"), grace_ns)
}

/// Walks both lists and the index and checks they agree with each other.
fn check_invariants<V>(t: &ProcessTable<V>) {
    assert!(t.slots.len() <= t.capacity as usize, "bound");
    assert_eq!(t.index.len(), t.slots.len(), "index size");
    for (i, slot) in t.slots.iter().enumerate() {
        assert_eq!(t.index.get(&slot.key), Some(&(i as u32)), "index points at the slot");
    }
    let mut seen = 0;
    let mut at = t.oldest;
    let mut prev = NIL;
    while at != NIL {
        let slot = &t.slots[at as usize];
        assert_eq!(slot.prev, prev, "recency back link");
        prev = at;
        at = slot.next;
        seen += 1;
        assert!(seen <= t.slots.len(), "recency list loops");
    }
    assert_eq!(prev, t.newest);
    assert_eq!(seen, t.slots.len(), "every slot is on the recency list");
    let (mut seen, mut at, mut prev, mut last_time) = (0, t.exit_oldest, NIL, 0);
    while at != NIL {
        let slot = &t.slots[at as usize];
        assert_ne!(slot.exited_ns, LIVE, "only exited slots on the exit list");
        assert!(slot.exited_ns >= last_time, "exit list sorted by time");
        assert_eq!(slot.exit_prev, prev, "exit back link");
        last_time = slot.exited_ns;
        prev = at;
        at = slot.exit_next;
        seen += 1;
        assert!(seen <= t.slots.len(), "exit list loops");
    }
    assert_eq!(prev, t.exit_newest);
    assert_eq!(seen, t.exited);
    assert_eq!(seen, t.slots.iter().filter(|s| s.exited_ns != LIVE).count());
    for (&pid, &idx) in &t.live {
        let slot = &t.slots[idx as usize];
        assert_eq!((slot.key.pid, slot.exited_ns), (pid, LIVE), "the live map names a live holder of its pid");
    }
    // No live entry started after its pid's holder (a holder that left is
    // not replaced by an older live entry: that one missed its exit).
    for slot in t.slots.iter().filter(|s| s.exited_ns == LIVE) {
        if let Some(holder) = t.live_key(slot.key.pid) {
            assert!(holder.start_time_ns >= slot.key.start_time_ns, "the latest start holds the pid");
        }
    }
}

fn order<V>(t: &ProcessTable<V>) -> Vec<u32> {
    t.iter().map(|(k, _)| k.pid).collect()
}

#[test]
fn bound_holds_under_a_million_inserts() {
    const CAP: u32 = 10_000;
    let mut t = table::<u64>(CAP, 1_000);
    let mut warm = None;
    for i in 0..1_000_000u64 {
        let k = key(i as u32 % 4_000_000, i * 10);
        let parent = (i > 0).then(|| key((i - 1) as u32 % 4_000_000, (i - 1) * 10));
        t.insert(k, parent, i);
        assert!(t.len() <= CAP as usize);
        // Short-lived: most processes exit soon after they start.
        if !i.is_multiple_of(3) {
            t.mark_exited(&k, i * 10 + 5);
        }
        if i.is_multiple_of(1_000) {
            t.expire(i * 10);
        }
        // Warm: the index has settled at its churn size (see the header).
        if i == 50 * u64::from(CAP) {
            warm = Some(t.slots.capacity());
        }
    }
    check_invariants(&t);
    assert_eq!(t.len(), CAP as usize, "full at the end");
    assert_eq!(warm, Some(t.slots.capacity()), "the slab does not grow once warm");
    println!(
        "after 1 M inserts: {} entries, slab capacity {}, index capacity {} (items + growth left)",
        t.len(),
        t.slots.capacity(),
        t.index.capacity()
    );
    assert_eq!(t.slots.capacity(), CAP as usize, "no slack beyond the bound");
    let counts = t.evictions();
    assert_eq!(counts.total(), 1_000_000 - u64::from(CAP), "every insert past the bound evicted one entry");
    assert!(counts.capacity > 0 && counts.exited_grace > 0, "{counts:?}");
}

#[test]
fn eviction_is_least_recently_used_first_and_deterministic() {
    let run = || {
        let mut t = table::<&str>(3, 0);
        let mut evicted = Vec::new();
        for (pid, name) in [(1, "a"), (2, "b"), (3, "c")] {
            assert_eq!(t.insert(key(pid, 1), None, name), InsertOutcome::Inserted);
        }
        assert_eq!(order(&t), [1, 2, 3]);
        // Reads do not reorder.
        assert_eq!(t.get(&key(1, 1)), Some(&"a"));
        *t.get_mut(&key(1, 1)).expect("present") = "a2";
        assert_eq!(order(&t), [1, 2, 3]);
        evicted.push(t.insert(key(4, 1), None, "d"));
        assert!(t.touch(&key(2, 1)));
        assert!(!t.touch(&key(9, 9)));
        evicted.push(t.insert(key(5, 1), None, "e"));
        // Replacing makes the entry the newest and hands back the old value.
        assert_eq!(t.insert(key(4, 1), None, "d2"), InsertOutcome::Replaced("d"));
        evicted.push(t.insert(key(6, 1), None, "f"));
        check_invariants(&t);
        (evicted, order(&t), t.evictions())
    };
    let (evicted, final_order, counts) = run();
    assert_eq!(
        evicted,
        [
            InsertOutcome::Evicted { key: key(1, 1), value: "a2" },
            InsertOutcome::Evicted { key: key(3, 1), value: "c" },
            InsertOutcome::Evicted { key: key(2, 1), value: "b" },
        ]
    );
    assert_eq!(final_order, [5, 4, 6]);
    assert_eq!(counts, EvictionCounts { capacity: 3, exited_grace: 0 });
    assert_eq!(run(), (evicted, final_order, counts), "same operations, same evictions");
}

#[test]
fn capacity_evicts_exited_and_live_entries_alike_by_recency() {
    let mut t = table::<()>(2, 1_000);
    t.insert(key(1, 1), None, ());
    t.insert(key(2, 1), None, ());
    t.mark_exited(&key(2, 1), 10);
    t.touch(&key(2, 1));
    // 1 is live but least recently used: it goes, the exited 2 stays.
    assert_eq!(t.insert(key(3, 1), None, ()), InsertOutcome::Evicted { key: key(1, 1), value: () });
    // Now the exited 2 is the oldest: evicting it unlinks it from the exit list.
    assert_eq!(t.insert(key(4, 1), None, ()), InsertOutcome::Evicted { key: key(2, 1), value: () });
    assert_eq!(t.exited_len(), 0);
    check_invariants(&t);
    assert_eq!(t.expire(u64::MAX), 0);
}

#[test]
fn exited_entries_resolve_for_the_grace_period_then_expire() {
    let mut t = table::<u32>(10, 100);
    for pid in 1..=3 {
        t.insert(key(pid, 7), None, pid);
    }
    assert!(t.mark_exited(&key(1, 7), 1_000));
    assert!(t.mark_exited(&key(3, 7), 1_050));
    assert!(t.mark_exited(&key(1, 7), 1_090), "a second exit is accepted");
    assert!(!t.mark_exited(&key(9, 7), 1_000), "unknown key");
    assert_eq!(t.entry(&key(1, 7)).and_then(|e| e.exited_at_ns), Some(1_000), "first exit time kept");
    assert_eq!(t.exited_len(), 2);

    assert_eq!(t.expire(1_099), 0);
    assert_eq!(t.get(&key(1, 7)), Some(&1), "late events still resolve");
    assert_eq!(t.expire(1_100), 1, "exactly the grace period later");
    assert_eq!(t.get(&key(1, 7)), None);
    assert_eq!(t.expire(1_149), 0);
    assert_eq!(t.expire(1_150), 1);
    assert_eq!(t.expire(u64::MAX), 0, "live processes never expire");
    assert_eq!(t.get(&key(2, 7)), Some(&2));
    assert_eq!(t.evictions(), EvictionCounts { capacity: 0, exited_grace: 2 });
    assert_eq!(t.take_evictions().exited_grace, 2);
    assert_eq!(t.evictions().total(), 0, "taken");
    check_invariants(&t);
}

#[test]
fn exits_out_of_order_expire_by_their_own_time() {
    let mut t = table::<()>(10, 100);
    for pid in 1..=4 {
        t.insert(key(pid, 0), None, ());
    }
    t.mark_exited(&key(1, 0), 2_000);
    t.mark_exited(&key(2, 0), 1_500);
    t.mark_exited(&key(3, 0), 2_500);
    t.mark_exited(&key(4, 0), 1_000);
    check_invariants(&t);
    assert_eq!(t.expire(1_600), 2);
    assert!(t.contains(&key(1, 0)) && t.contains(&key(3, 0)));
    assert!(!t.contains(&key(2, 0)) && !t.contains(&key(4, 0)));
    // An exit time before `now` by less than grace, and `now` behind an exit.
    assert_eq!(t.expire(0), 0);
    check_invariants(&t);
}

#[test]
fn replacing_keeps_the_exit_mark_and_remove_is_not_an_eviction() {
    let mut t = table::<u8>(4, 10);
    t.insert(key(1, 1), None, 1);
    t.mark_exited(&key(1, 1), 100);
    assert_eq!(t.insert(key(1, 1), Some(key(0, 0)), 2), InsertOutcome::Replaced(1));
    let entry = t.entry(&key(1, 1)).expect("present");
    assert_eq!((entry.value, entry.parent, entry.exited_at_ns), (&2, Some(key(0, 0)), Some(100)));
    let (parent, value) = t.get_mut_with_parent(&key(1, 1)).expect("present");
    assert_eq!((parent, *value), (Some(key(0, 0)), 2));
    assert!(t.get_mut_with_parent(&key(1, 2)).is_none());
    assert_eq!(t.remove(&key(1, 1)), Some(2));
    assert_eq!(t.remove(&key(1, 1)), None);
    assert_eq!(t.exited_len(), 0);
    assert_eq!(t.evictions().total(), 0);
    assert!(t.is_empty());
    check_invariants(&t);
}

#[test]
fn a_reused_pid_is_a_new_process_and_never_adopts_the_old_ones_children() {
    let mut t = table::<&str>(100, 50);
    let old = key(42, 1_000);
    let child = key(43, 2_000);
    t.insert(key(1, 0), None, "init");
    t.insert(old, Some(key(1, 0)), "old");
    t.insert(child, Some(old), "child");
    // Same pid, later start: both are present, side by side.
    let new = key(42, 9_000);
    t.insert(new, Some(key(1, 0)), "new");
    assert_eq!((t.get(&old), t.get(&new)), (Some(&"old"), Some(&"new")));
    assert_eq!(t.ancestry(&child, 32).ancestors, [old, key(1, 0)]);

    t.mark_exited(&old, 3_000);
    assert_eq!(t.expire(3_050), 1);
    let walk = t.ancestry(&child, 32);
    assert_eq!(walk, Ancestry { ancestors: vec![], end: AncestryEnd::ParentUnknown(old) });
    assert!(!walk.ancestors.contains(&new), "the child does not attach to the new holder of pid 42");
    assert_eq!(t.ancestry(&new, 32).ancestors, [key(1, 0)]);
}

#[test]
fn live_pids_name_their_newest_live_holder() {
    let mut t = table::<u8>(4, 10);
    assert_eq!(t.live_key(42), None);
    t.insert(key(42, 100), None, 1);
    assert_eq!(t.live_key(42), Some(key(42, 100)));
    // A later start takes the pid; an earlier one does not.
    t.insert(key(42, 200), None, 2);
    t.insert(key(42, 50), None, 3);
    assert_eq!(t.live_key(42), Some(key(42, 200)));
    check_invariants(&t);
    // An exited holder is not live; replacing it does not make it live again.
    t.mark_exited(&key(42, 200), 5);
    assert_eq!(t.live_key(42), None);
    t.insert(key(42, 200), None, 4);
    assert_eq!(t.live_key(42), None);
    // Removal relocates the last slot: its holder follows it.
    t.insert(key(7, 1), None, 5);
    assert_eq!(t.remove(&key(42, 100)), Some(1));
    assert_eq!(t.live_key(7), Some(key(7, 1)), "moved by swap-remove, still found");
    check_invariants(&t);
    // A capacity eviction of a holder forgets it.
    t.insert(key(8, 1), None, 6);
    assert!(t.touch(&key(42, 50)) && t.touch(&key(42, 200)));
    assert_eq!(t.insert(key(9, 1), None, 7), InsertOutcome::Evicted { key: key(7, 1), value: 5 });
    assert_eq!(t.live_key(7), None);
    assert_eq!(t.live_key(9), Some(key(9, 1)));
    check_invariants(&t);
    // get_touched reads and makes the entry the newest.
    let oldest = t.iter().next().map(|(k, _)| k).expect("non-empty");
    assert!(t.get_touched(&oldest).is_some());
    assert_eq!(t.iter().last().map(|(k, _)| k), Some(oldest));
    assert_eq!(t.get_touched(&key(99, 9)), None);
}

/// pid 1 is the root; pid n's parent is n - 1.
fn chain(len: u32) -> ProcessTable<u32> {
    let mut t = table(64, 0);
    for pid in 1..=len {
        let parent = (pid > 1).then(|| key(pid - 1, u64::from(pid - 1)));
        t.insert(key(pid, u64::from(pid)), parent, pid);
    }
    t
}

#[test]
fn ancestry_walks_to_the_root_or_the_depth_limit() {
    let mut t = chain(10);
    let leaf = key(10, 10);
    let walk = t.ancestry(&leaf, DEFAULT_ANCESTRY_DEPTH);
    assert_eq!(walk.end, AncestryEnd::Root);
    assert_eq!(walk.ancestors.iter().map(|k| k.pid).collect::<Vec<_>>(), [9, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(t.ancestry(&leaf, 9).end, AncestryEnd::Root, "the limit reached exactly at the root");
    let limited = t.ancestry(&leaf, 3);
    assert_eq!((limited.ancestors.len(), limited.end), (3, AncestryEnd::DepthLimit));
    assert_eq!(t.ancestry(&leaf, 0), Ancestry { ancestors: vec![], end: AncestryEnd::DepthLimit });
    assert_eq!(t.ancestry(&key(1, 1), 0).end, AncestryEnd::Root);
    assert_eq!(t.ancestry(&key(10, 11), 32).end, AncestryEnd::KeyUnknown, "same pid, other start time");

    // The caller's buffer is reused and cleared.
    let mut out = vec![key(77, 77)];
    assert_eq!(t.ancestry_into(&key(3, 3), 32, &mut out), AncestryEnd::Root);
    assert_eq!(out, [key(2, 2), key(1, 1)]);
}

#[test]
fn ancestry_stops_at_a_missing_parent_and_says_which() {
    let mut t = chain(10);
    t.remove(&key(5, 5));
    let walk = t.ancestry(&key(10, 10), 32);
    assert_eq!(walk.ancestors.iter().map(|k| k.pid).collect::<Vec<_>>(), [9, 8, 7, 6]);
    assert_eq!(walk.end, AncestryEnd::ParentUnknown(key(5, 5)));
    assert_eq!(walk.end.as_str(), "parent_unknown");
}

#[test]
fn ancestry_detects_cycles() {
    let mut t = table::<()>(8, 0);
    // A pid reused within one start-time tick by a grandchild of its old holder.
    t.insert(key(100, 5), Some(key(102, 5)), ());
    t.insert(key(101, 5), Some(key(100, 5)), ());
    t.insert(key(102, 5), Some(key(101, 5)), ());
    let walk = t.ancestry(&key(102, 5), 32);
    assert_eq!(walk.ancestors, [key(101, 5), key(100, 5)]);
    assert_eq!(walk.end, AncestryEnd::Cycle(key(102, 5)));
    // A loop that does not pass through the starting key.
    t.insert(key(1, 1), Some(key(101, 5)), ());
    let walk = t.ancestry(&key(1, 1), 32);
    assert_eq!(walk.ancestors, [key(101, 5), key(100, 5), key(102, 5)]);
    assert_eq!(walk.end, AncestryEnd::Cycle(key(101, 5)));
    t.insert(key(7, 7), Some(key(7, 7)), ());
    assert_eq!(t.ancestry(&key(7, 7), 32).end, AncestryEnd::Cycle(key(7, 7)), "its own parent");
}

#[test]
fn ancestry_keeps_ancestors_warm() {
    let mut t = table::<()>(3, 0);
    t.insert(key(1, 1), None, ());
    t.insert(key(2, 2), Some(key(1, 1)), ());
    t.insert(key(3, 3), None, ());
    t.ancestry(&key(2, 2), 32);
    assert_eq!(order(&t), [2, 3, 1], "the walked ancestor became the newest; the start key was not touched");
    assert_eq!(t.insert(key(4, 4), None, ()), InsertOutcome::Evicted { key: key(2, 2), value: () });
    assert!(t.contains(&key(1, 1)), "an idle root with busy descendants survives churn");
}

#[test]
fn bytes_per_entry_is_measured() {
    // The enrich transform will store an `Arc` of the shared process context.
    type Value = Arc<()>;
    let slot = size_of::<Slot<Value>>();
    let per_entry = ProcessTable::<Value>::bytes_per_entry();
    println!(
        "process table: slot {slot} B, index bucket {} B, live-pid bucket {} B, about {per_entry} B per entry with an 8-byte value",
        size_of::<(ProcessKey, u32)>(),
        size_of::<(u32, u32)>()
    );
    assert_eq!(size_of::<ProcessKey>(), 16);
    assert_eq!(slot, 56 + size_of::<Value>(), "the module header's figure");
    assert_eq!(per_entry, 141, "the module header's figure");
}

#[test]
fn eviction_reasons_have_labels() {
    let labels: Vec<_> = EvictionReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels, ["capacity", "exited_grace"]);
    let counts = EvictionCounts { capacity: 3, exited_grace: 4 };
    assert_eq!((counts.get(EvictionReason::Capacity), counts.get(EvictionReason::ExitedGrace)), (3, 4));
}

/// Deterministic pseudo-random operations against a naive model (a `Vec` in
/// recency order, scanned linearly): same entries, same order, same counts.
#[test]
fn matches_a_naive_model_under_random_operations() {
    struct Model {
        entries: Vec<(ProcessKey, Option<u64>, u64)>, // key, exited at, value; oldest first
        capacity: usize,
        grace: u64,
        counts: EvictionCounts,
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut t = table::<u64>(16, 50);
    let mut m = Model { entries: Vec::new(), capacity: 16, grace: 50, counts: EvictionCounts::default() };
    let mut now = 0u64;
    for step in 0..200_000u64 {
        now += next(3);
        let k = key(next(40) as u32, next(2));
        let pos = m.entries.iter().position(|e| e.0 == k);
        match next(6) {
            0 | 1 => {
                t.insert(k, None, step);
                match pos {
                    Some(p) => {
                        let mut e = m.entries.remove(p);
                        e.2 = step;
                        m.entries.push(e);
                    }
                    None => {
                        if m.entries.len() == m.capacity {
                            m.entries.remove(0);
                            m.counts.capacity += 1;
                        }
                        m.entries.push((k, None, step));
                    }
                }
            }
            2 => {
                assert_eq!(t.touch(&k), pos.is_some());
                if let Some(p) = pos {
                    let e = m.entries.remove(p);
                    m.entries.push(e);
                }
            }
            3 => {
                let at = now.saturating_sub(next(20));
                assert_eq!(t.mark_exited(&k, at), pos.is_some());
                if let Some(p) = pos {
                    m.entries[p].1.get_or_insert(at);
                }
            }
            4 => {
                let before = m.entries.len();
                let grace = m.grace;
                m.entries.retain(|e| e.1.is_none_or(|at| now.saturating_sub(at) < grace));
                let expired = before - m.entries.len();
                m.counts.exited_grace += expired as u64;
                assert_eq!(t.expire(now), expired);
            }
            _ => {
                assert_eq!(t.remove(&k), pos.map(|p| m.entries.remove(p).2));
            }
        }
        let got: Vec<_> = t.iter().map(|(k, v)| (k, *v)).collect();
        let want: Vec<_> = m.entries.iter().map(|e| (e.0, e.2)).collect();
        assert_eq!(got, want, "step {step}");
        assert_eq!(t.evictions(), m.counts);
        if step.is_multiple_of(1_000) {
            check_invariants(&t);
        }
    }
    check_invariants(&t);
}
