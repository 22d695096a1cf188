//! L3's reorder buffer: records held until the watermark (highest event
//! time seen − `reorder_ns`) passes them, then released in `(ts_ns,
//! event_id)` order, so any permutation of the input within the reorder
//! window gives the same windows, folds and firings. The same rules as
//! L2's buffer (`crate::l2`): a record behind the floor when it arrives is
//! late (rejected and counted); beyond [`MAX_HELD`] records the oldest is
//! released early (`forced`), so a flood cannot grow it without bound.
//! Kept apart from L2's because L2 holds an event only when it hit an L2
//! condition, while L3 holds every event its rules read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Records held at most.
pub const MAX_HELD: usize = 1 << 18;

/// `(ts, event_id, arrival, slab index)`: arrival breaks ties between
/// equal `(ts, event_id)`.
type Key = (u64, u64, u64, u32);

#[derive(Debug)]
pub struct Reorder<T> {
    reorder_ns: u64,
    /// Keys that arrived in order (the usual case: O(1))…
    in_order: VecDeque<Key>,
    /// …and those that did not.
    reordered: BinaryHeap<Reverse<Key>>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    max_ts: u64,
    /// Every record with `ts < floor` has been released; later arrivals
    /// below it are late.
    floor: u64,
    /// Records with `ts ≤ release` may be popped.
    release: u64,
    released_any: bool,
    arrivals: u64,
    pub late: u64,
    pub forced: u64,
}

impl<T> Reorder<T> {
    pub fn new(reorder_ns: u64) -> Reorder<T> {
        Reorder {
            reorder_ns,
            in_order: VecDeque::new(),
            reordered: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            max_ts: 0,
            floor: 0,
            release: 0,
            released_any: false,
            arrivals: 0,
            late: 0,
            forced: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.in_order.len() + self.reordered.len()
    }

    /// Holds `item`; `false` (and counted) when it is late.
    pub fn push(&mut self, ts: u64, event_id: u64, item: T) -> bool {
        if ts < self.floor {
            self.late += 1;
            return false;
        }
        self.arrivals += 1;
        let at = match self.free.pop() {
            Some(at) => {
                self.slab[at as usize] = Some(item);
                at
            }
            None => {
                self.slab.push(Some(item));
                (self.slab.len() - 1) as u32
            }
        };
        let key = (ts, event_id, self.arrivals, at);
        if self.in_order.back().is_none_or(|last| *last <= key) {
            self.in_order.push_back(key);
        } else {
            self.reordered.push(Reverse(key));
        }
        true
    }

    /// Moves the watermark with an event time seen (held or not).
    pub fn observe(&mut self, ts: u64) {
        self.max_ts = self.max_ts.max(ts);
        let watermark = self.max_ts.saturating_sub(self.reorder_ns);
        if watermark > self.floor {
            self.floor = watermark;
            self.set_release(watermark - 1);
        }
    }

    /// Releases everything with `ts ≤ upto` (`u64::MAX`: everything);
    /// records arriving later with such a time are late.
    pub fn flush(&mut self, upto: u64) {
        self.floor = self.floor.max(upto.saturating_add(1));
        self.set_release(upto);
    }

    fn set_release(&mut self, upto: u64) {
        if !self.released_any || upto > self.release {
            self.release = upto;
            self.released_any = true;
        }
    }

    /// The next record due: released by the watermark, or forced out
    /// because too many are held.
    pub fn pop(&mut self) -> Option<T> {
        let next = self.next()?;
        if self.len() > MAX_HELD {
            self.forced += 1;
            self.floor = self.floor.max(next.0);
        } else if !self.released_any || next.0 > self.release {
            return None;
        }
        if self.in_order.front() == Some(&next) {
            self.in_order.pop_front();
        } else {
            self.reordered.pop();
        }
        self.free.push(next.3);
        self.slab.get_mut(next.3 as usize)?.take()
    }

    fn next(&self) -> Option<Key> {
        match (self.in_order.front(), self.reordered.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (a, b) => a.or(b.map(|Reverse(b)| b)).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Reorder<u64>) -> Vec<u64> {
        std::iter::from_fn(|| r.pop()).collect()
    }

    #[test]
    fn releases_in_order_behind_the_watermark_and_rejects_late_ones() {
        let mut r = Reorder::new(10);
        for (ts, id) in [(5, 1), (3, 2), (12, 3), (4, 4)] {
            assert!(r.push(ts, id, id));
            r.observe(ts);
        }
        // Watermark 12 − 10 = 2: nothing below it yet.
        assert!(drain(&mut r).is_empty());
        r.push(20, 5, 5);
        r.observe(20);
        // Watermark 10: ts ≤ 9 released in (ts, id) order.
        assert_eq!(drain(&mut r), [2, 4, 1]);
        assert!(!r.push(7, 6, 6), "behind the floor");
        assert_eq!(r.late, 1);
        r.flush(u64::MAX);
        assert_eq!(drain(&mut r), [3, 5]);
        assert_eq!(r.len(), 0);
    }
}
