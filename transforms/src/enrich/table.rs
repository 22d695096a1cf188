//! `ProcessTable`: the bounded, O(1) LRU table of processes that enrichment
//! reads lineage from, keyed by `ProcessKey` (pid + start time, so a reused
//! pid is a different process and never inherits the old one's context).
//!
//! Layout: the entries live in one `Vec` (a slab kept dense by swap-remove)
//! and carry their own links, so recency is an intrusive doubly linked list
//! of `u32` indices; a `HashMap<ProcessKey, u32>` finds an entry by key. A
//! second intrusive list holds the exited entries ordered by exit time, so
//! `expire` touches only what it removes. A third map, `HashMap<u32, u32>`
//! from pid to slot, names the live (not exited) process holding each pid,
//! for an exec whose fork was missed: its parent is found by `ppid`
//! (`live_key`). A pid has one live holder at a time; when two entries
//! claim it (an exit was missed) the later start time wins. Nothing allocates per operation
//! once the table has grown to its bound: a full table evicts by reusing
//! the least recently used slot in place.
//!
//! Complexity: `insert`, `get`, `get_mut`, `touch`, `get_touched`,
//! `live_key`, `remove` and a capacity eviction are O(1) (one hash lookup, a few index writes); `mark_exited` is
//! O(1) when exits arrive in time order and O(k) for an exit k places out of
//! order; `expire` is O(expired); `ancestry_into` is O(d²) key comparisons
//! for depth d (cycle check against the keys already walked; d is small,
//! 32 by default, so this beats hashing).
//!
//! Memory: the slot is 56 bytes + `V` (key, parent, exit time, four `u32`
//! links; 64 with an 8-byte `V` such as an `Arc` of the shared process
//! context, measured by a test). The std `HashMap` index costs a 24-byte
//! `(ProcessKey, u32)` bucket plus a control byte per bucket, and under
//! churn it holds more buckets than entries: removals leave tombstones and
//! hashbrown only rehashes in place below half load, so a table at its
//! bound settles at 16/7 to 32/7 buckets per entry (power-of-two rounding),
//! 57 to 114 bytes. The live-pid map adds a 9-byte bucket (`(u32, u32)` and
//! its control byte) per live entry at the same load, 20 to 41 bytes.
//! `bytes_per_entry()` is the lower end, 141 bytes with an 8-byte `V`; the
//! million-insert test prints what the index reached. The index settles
//! once (no growth after, only in-place rehashes). A
//! tombstone-free open-addressing index of `u32` slot + `u32` hash tag per
//! bucket would cut the index to 16–32 bytes; left to the benches to justify.
//!
//! Eviction reasons: `Capacity` — inserting a new key into a full table
//! evicts the least recently used entry, live or exited (recency is the
//! only order: an idle ancestor stays warm because `ancestry_into` touches
//! every ancestor it walks); `ExitedGrace` — `expire(now_ns)`, called on
//! the transform's tick, removes entries that exited at least `grace_ns`
//! before `now_ns`. Both are counted; the caller turns the counts into
//! metrics (the table has no metric handles, so it stays plain data).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::mem::size_of;
use std::num::NonZeroU32;

use pipeline::ProcessKey;

/// "No entry" in the intrusive links.
const NIL: u32 = u32::MAX;
/// `Slot::exited_ns` of a live process. An exit at `u64::MAX` ns after boot
/// (585 years) cannot happen.
const LIVE: u64 = u64::MAX;
/// `Slot::parent` when the parent is unknown or absent. pid `u32::MAX` is
/// above any kernel's `pid_max` (at most 2^22), so no real key equals it;
/// a sentinel instead of `Option` saves 8 bytes per entry.
const NO_PARENT: ProcessKey = ProcessKey { pid: u32::MAX, start_time_ns: u64::MAX };

/// The ancestry depth issue #14 asks for by default: enough for any real
/// process tree (systemd → sshd → bash → … rarely passes 15), small enough
/// that the cycle check stays a short scan.
pub const DEFAULT_ANCESTRY_DEPTH: usize = 32;

/// Why an entry left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// The table was full and a new key needed the least recently used slot.
    Capacity,
    /// The process exited more than the grace period ago.
    ExitedGrace,
}

impl EvictionReason {
    /// Every reason, for registering one metric series each up front.
    pub const ALL: [EvictionReason; 2] = [EvictionReason::Capacity, EvictionReason::ExitedGrace];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Capacity => "capacity",
            EvictionReason::ExitedGrace => "exited_grace",
        }
    }
}

/// Evictions per reason, cumulative since creation (or since the last
/// `take_evictions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictionCounts {
    pub capacity: u64,
    pub exited_grace: u64,
}

impl EvictionCounts {
    /// The count for one reason.
    pub fn get(&self, reason: EvictionReason) -> u64 {
        match reason {
            EvictionReason::Capacity => self.capacity,
            EvictionReason::ExitedGrace => self.exited_grace,
        }
    }

    /// All evictions.
    pub fn total(&self) -> u64 {
        self.capacity + self.exited_grace
    }
}

/// What `insert` did. The displaced value is handed back so the caller can
/// reuse its allocations or log the eviction.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertOutcome<V> {
    /// A new key took a free slot.
    Inserted,
    /// The key was present; its value and parent were replaced.
    Replaced(V),
    /// The table was full: the least recently used entry was evicted
    /// (counted as `EvictionReason::Capacity`).
    Evicted { key: ProcessKey, value: V },
}

/// Why an ancestry walk stopped. Only `Root` means the lineage is complete;
/// every other end is something enrichment must mark on the event (and
/// count) rather than pass off as a full lineage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AncestryEnd {
    /// Reached an entry with no recorded parent (init, kthreadd, or a
    /// process seeded without one): the lineage is complete.
    Root,
    /// The starting key itself is not in the table.
    KeyUnknown,
    /// The recorded parent is not in the table (never seen, or evicted).
    ParentUnknown(ProcessKey),
    /// `max_depth` ancestors were collected and the last one has a parent.
    DepthLimit,
    /// The next parent is already in the walk: the data has a loop. With
    /// keys that include the start time this needs a key collision, e.g. a
    /// pid reused within one start-time tick (sources round start times to
    /// 10 ms) by a descendant of its previous holder.
    Cycle(ProcessKey),
}

impl AncestryEnd {
    /// Metric label value (`hostflow_enrich_lineage_missing_total{reason}`
    /// for every end but `Root`).
    pub fn as_str(self) -> &'static str {
        match self {
            AncestryEnd::Root => "root",
            AncestryEnd::KeyUnknown => "key_unknown",
            AncestryEnd::ParentUnknown(_) => "parent_unknown",
            AncestryEnd::DepthLimit => "depth_limit",
            AncestryEnd::Cycle(_) => "cycle",
        }
    }
}

/// An ancestry walk: parent first, then grandparent, and so on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ancestry {
    pub ancestors: Vec<ProcessKey>,
    pub end: AncestryEnd,
}

/// A read-only view of one entry with its bookkeeping.
#[derive(Debug)]
pub struct EntryRef<'a, V> {
    pub value: &'a V,
    pub parent: Option<ProcessKey>,
    /// When `mark_exited` was first called for it; `None` while live.
    pub exited_at_ns: Option<u64>,
}

/// One entry. Field order is left to the compiler (it packs the `u32`s).
struct Slot<V> {
    key: ProcessKey,
    parent: ProcessKey,
    exited_ns: u64,
    /// Recency list: `prev` is older, `next` is newer.
    prev: u32,
    next: u32,
    /// Exit list (only while exited): `exit_prev` exited earlier.
    exit_prev: u32,
    exit_next: u32,
    value: V,
}

/// A bounded LRU table of processes. See the module header for the layout,
/// the costs and the eviction rules.
pub struct ProcessTable<V> {
    slots: Vec<Slot<V>>,
    index: HashMap<ProcessKey, u32, KeyHasherBuilder>,
    /// pid → slot of the live entry holding it (see the module header).
    live: HashMap<u32, u32, KeyHasherBuilder>,
    /// Least recently used (evicted first) and most recently used.
    oldest: u32,
    newest: u32,
    /// Earliest and latest exit.
    exit_oldest: u32,
    exit_newest: u32,
    exited: usize,
    capacity: u32,
    grace_ns: u64,
    evictions: EvictionCounts,
}

impl<V> ProcessTable<V> {
    /// A table of at most `capacity` entries that keeps exited processes for
    /// `exited_grace_ns` (measured against `expire`'s `now_ns`). The bound is
    /// a `NonZeroU32` so that a zero size is rejected where the config is
    /// parsed, with its location, and indices fit the `u32` links.
    pub fn new(capacity: NonZeroU32, exited_grace_ns: u64) -> Self {
        ProcessTable {
            slots: Vec::new(),
            index: HashMap::with_hasher(KeyHasherBuilder::new()),
            live: HashMap::with_hasher(KeyHasherBuilder::new()),
            oldest: NIL,
            newest: NIL,
            exit_oldest: NIL,
            exit_newest: NIL,
            exited: 0,
            capacity: capacity.get(),
            grace_ns: exited_grace_ns,
            evictions: EvictionCounts::default(),
        }
    }

    /// Resident bytes per entry of a full table under churn, lower end: the
    /// slot plus 16/7 buckets of the key index and of the live-pid map (see
    /// the module header).
    pub fn bytes_per_entry() -> usize {
        let bucket = size_of::<(ProcessKey, u32)>() + 1;
        let live_bucket = size_of::<(u32, u32)>() + 1;
        size_of::<Slot<V>>() + bucket * 16 / 7 + live_bucket * 16 / 7
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The grace period exited entries are kept for.
    pub fn grace_ns(&self) -> u64 {
        self.grace_ns
    }

    /// Entries held, live and exited.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Entries marked exited and not yet expired.
    pub fn exited_len(&self) -> usize {
        self.exited
    }

    /// Evictions per reason since creation (or the last `take_evictions`).
    pub fn evictions(&self) -> EvictionCounts {
        self.evictions
    }

    /// Returns the counts and resets them, for callers that add deltas to
    /// metric counters on each tick.
    pub fn take_evictions(&mut self) -> EvictionCounts {
        std::mem::take(&mut self.evictions)
    }

    fn slot_of(&self, key: &ProcessKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub fn contains(&self, key: &ProcessKey) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts `key` as the most recently used entry, or replaces its value
    /// and parent (and makes it the most recent) if present. `parent` is
    /// `None` for a root: record init's and kthreadd's parent (pid 0) as
    /// `None`. Replacing keeps an exit mark: an exec cannot follow its own
    /// process's exit, so a mark means the events arrived out of order and
    /// the grace clock keeps running.
    pub fn insert(&mut self, key: ProcessKey, parent: Option<ProcessKey>, value: V) -> InsertOutcome<V> {
        let parent = parent.unwrap_or(NO_PARENT);
        if let Some(idx) = self.slot_of(&key) {
            let slot = &mut self.slots[idx as usize];
            slot.parent = parent;
            let old = std::mem::replace(&mut slot.value, value);
            self.move_to_newest(idx);
            return InsertOutcome::Replaced(old);
        }
        if self.slots.len() >= self.capacity as usize {
            // Reuse the least recently used slot in place: no allocation.
            let idx = self.oldest;
            self.unlink_lru(idx);
            if self.slots[idx as usize].exited_ns != LIVE {
                self.unlink_exit(idx);
                self.exited -= 1;
            } else {
                self.unlink_live(idx);
            }
            let slot = &mut self.slots[idx as usize];
            let old_key = std::mem::replace(&mut slot.key, key);
            let old_value = std::mem::replace(&mut slot.value, value);
            slot.parent = parent;
            slot.exited_ns = LIVE;
            self.index.remove(&old_key);
            self.index.insert(key, idx);
            self.link_newest(idx);
            self.link_live(idx);
            self.evictions.capacity += 1;
            return InsertOutcome::Evicted { key: old_key, value: old_value };
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by doubling but never past the bound, so a full table
            // holds no unused slack.
            let len = self.slots.len();
            let target = (len.max(8) * 2).min(self.capacity as usize);
            self.slots.reserve_exact(target - len);
        }
        let idx = self.slots.len() as u32;
        self.slots.push(Slot {
            key,
            parent,
            exited_ns: LIVE,
            prev: NIL,
            next: NIL,
            exit_prev: NIL,
            exit_next: NIL,
            value,
        });
        self.index.insert(key, idx);
        self.link_newest(idx);
        self.link_live(idx);
        InsertOutcome::Inserted
    }

    /// The value of `key`, without changing its recency (reads never
    /// reorder: the caller says what counts as use with `touch`).
    pub fn get(&self, key: &ProcessKey) -> Option<&V> {
        self.slot_of(key).map(|idx| &self.slots[idx as usize].value)
    }

    /// The value of `key` for update, without changing its recency.
    pub fn get_mut(&mut self, key: &ProcessKey) -> Option<&mut V> {
        let idx = self.slot_of(key)?;
        Some(&mut self.slots[idx as usize].value)
    }

    /// The value of `key`, marking it the most recently used: `touch` and
    /// `get` in one lookup, for the per-event path.
    pub fn get_touched(&mut self, key: &ProcessKey) -> Option<&V> {
        let idx = self.slot_of(key)?;
        self.move_to_newest(idx);
        Some(&self.slots[idx as usize].value)
    }

    /// The live (not exited) process holding `pid`, if the table has one.
    pub fn live_key(&self, pid: u32) -> Option<ProcessKey> {
        self.live.get(&pid).map(|&idx| self.slots[idx as usize].key)
    }

    /// The value of `key` with its parent and exit time.
    pub fn entry(&self, key: &ProcessKey) -> Option<EntryRef<'_, V>> {
        let slot = &self.slots[self.slot_of(key)? as usize];
        Some(EntryRef {
            value: &slot.value,
            parent: (slot.parent != NO_PARENT).then_some(slot.parent),
            exited_at_ns: (slot.exited_ns != LIVE).then_some(slot.exited_ns),
        })
    }

    /// The value of `key` for update with its parent, without changing its
    /// recency.
    pub fn get_mut_with_parent(&mut self, key: &ProcessKey) -> Option<(Option<ProcessKey>, &mut V)> {
        let idx = self.slot_of(key)?;
        let slot = &mut self.slots[idx as usize];
        Some(((slot.parent != NO_PARENT).then_some(slot.parent), &mut slot.value))
    }

    /// Marks `key` as the most recently used. False if absent.
    pub fn touch(&mut self, key: &ProcessKey) -> bool {
        match self.slot_of(key) {
            Some(idx) => {
                self.move_to_newest(idx);
                true
            }
            None => false,
        }
    }

    /// Records that `key` exited at `now_ns`; it stays resolvable until
    /// `expire` is called with a time `grace_ns` later. A second exit of the
    /// same key keeps the first time. False if absent.
    pub fn mark_exited(&mut self, key: &ProcessKey, now_ns: u64) -> bool {
        let Some(idx) = self.slot_of(key) else { return false };
        if self.slots[idx as usize].exited_ns != LIVE {
            return true;
        }
        self.unlink_live(idx);
        // A real exit time of u64::MAX would read as live; clamp it.
        let at = now_ns.min(LIVE - 1);
        self.slots[idx as usize].exited_ns = at;
        // Keep the exit list sorted: walk back from the latest exit past
        // the ones that are later than this (none when exits arrive in
        // order, which is the common case).
        let mut after = self.exit_newest;
        while after != NIL && self.slots[after as usize].exited_ns > at {
            after = self.slots[after as usize].exit_prev;
        }
        let before = if after == NIL { self.exit_oldest } else { self.slots[after as usize].exit_next };
        {
            let slot = &mut self.slots[idx as usize];
            slot.exit_prev = after;
            slot.exit_next = before;
        }
        if after == NIL {
            self.exit_oldest = idx;
        } else {
            self.slots[after as usize].exit_next = idx;
        }
        if before == NIL {
            self.exit_newest = idx;
        } else {
            self.slots[before as usize].exit_prev = idx;
        }
        self.exited += 1;
        true
    }

    /// Removes every entry that exited at least `grace_ns` before `now_ns`
    /// (counted as `EvictionReason::ExitedGrace`) and returns how many.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let mut removed = 0;
        while self.exit_oldest != NIL {
            let idx = self.exit_oldest;
            if now_ns.saturating_sub(self.slots[idx as usize].exited_ns) < self.grace_ns {
                break;
            }
            drop(self.remove_slot(idx));
            removed += 1;
        }
        self.evictions.exited_grace += removed as u64;
        removed
    }

    /// Removes `key` and returns its value. Not an eviction: not counted.
    pub fn remove(&mut self, key: &ProcessKey) -> Option<V> {
        let idx = self.slot_of(key)?;
        Some(self.remove_slot(idx))
    }

    /// Walks the parents of `key` into `out` (cleared first): parent first,
    /// at most `max_depth` of them, and says why the walk stopped. Every
    /// ancestor walked is touched: a process whose descendants are active is
    /// in use (its context is on each of their events); without that, an
    /// idle ancestor such as PID 1 or sshd would drift to the LRU end and be
    /// evicted under churn, cutting every lineage below it. `key` itself is
    /// not touched. `out` is the caller's buffer so a warm walk allocates
    /// nothing.
    pub fn ancestry_into(&mut self, key: &ProcessKey, max_depth: usize, out: &mut Vec<ProcessKey>) -> AncestryEnd {
        out.clear();
        let Some(mut idx) = self.slot_of(key) else { return AncestryEnd::KeyUnknown };
        loop {
            let parent = self.slots[idx as usize].parent;
            if parent == NO_PARENT {
                return AncestryEnd::Root;
            }
            if out.len() >= max_depth {
                return AncestryEnd::DepthLimit;
            }
            if parent == *key || out.contains(&parent) {
                return AncestryEnd::Cycle(parent);
            }
            let Some(parent_idx) = self.slot_of(&parent) else { return AncestryEnd::ParentUnknown(parent) };
            out.push(parent);
            self.move_to_newest(parent_idx);
            idx = parent_idx;
        }
    }

    /// `ancestry_into` with a fresh buffer, for callers off the hot path.
    pub fn ancestry(&mut self, key: &ProcessKey, max_depth: usize) -> Ancestry {
        let mut ancestors = Vec::new();
        let end = self.ancestry_into(key, max_depth, &mut ancestors);
        Ancestry { ancestors, end }
    }

    /// Entries from the least to the most recently used.
    pub fn iter(&self) -> impl Iterator<Item = (ProcessKey, &V)> + '_ {
        let mut at = self.oldest;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let slot = &self.slots[at as usize];
            at = slot.next;
            Some((slot.key, &slot.value))
        })
    }

    fn link_newest(&mut self, idx: u32) {
        let old_newest = self.newest;
        {
            let slot = &mut self.slots[idx as usize];
            slot.prev = old_newest;
            slot.next = NIL;
        }
        if old_newest == NIL {
            self.oldest = idx;
        } else {
            self.slots[old_newest as usize].next = idx;
        }
        self.newest = idx;
    }

    fn unlink_lru(&mut self, idx: u32) {
        let (prev, next) = {
            let slot = &self.slots[idx as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.oldest = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.newest = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn unlink_exit(&mut self, idx: u32) {
        let (prev, next) = {
            let slot = &self.slots[idx as usize];
            (slot.exit_prev, slot.exit_next)
        };
        if prev == NIL {
            self.exit_oldest = next;
        } else {
            self.slots[prev as usize].exit_next = next;
        }
        if next == NIL {
            self.exit_newest = prev;
        } else {
            self.slots[next as usize].exit_prev = prev;
        }
    }

    /// Makes slot `idx` (live) its pid's holder, unless a live entry with a
    /// later start time holds it.
    fn link_live(&mut self, idx: u32) {
        let key = self.slots[idx as usize].key;
        if let Some(&other) = self.live.get(&key.pid) {
            if self.slots[other as usize].key.start_time_ns > key.start_time_ns {
                return;
            }
        }
        self.live.insert(key.pid, idx);
    }

    /// Forgets slot `idx` as its pid's live holder (if it is).
    fn unlink_live(&mut self, idx: u32) {
        let pid = self.slots[idx as usize].key.pid;
        if self.live.get(&pid) == Some(&idx) {
            self.live.remove(&pid);
        }
    }

    fn move_to_newest(&mut self, idx: u32) {
        if self.newest != idx {
            self.unlink_lru(idx);
            self.link_newest(idx);
        }
    }

    /// Unlinks slot `idx` from both lists and the index, moves the last slot
    /// into its place (keeping the slab dense) and returns the value.
    fn remove_slot(&mut self, idx: u32) -> V {
        self.unlink_lru(idx);
        if self.slots[idx as usize].exited_ns != LIVE {
            self.unlink_exit(idx);
            self.exited -= 1;
        } else {
            self.unlink_live(idx);
        }
        let key = self.slots[idx as usize].key;
        self.index.remove(&key);
        let last = (self.slots.len() - 1) as u32;
        if idx != last {
            self.relocate(last, idx);
        }
        self.slots.swap_remove(idx as usize).value
    }

    /// Points every link and the index entry that refer to slot `from` at
    /// `to` (the slot `swap_remove` is about to move it to).
    fn relocate(&mut self, from: u32, to: u32) {
        let (key, prev, next, exited, exit_prev, exit_next) = {
            let slot = &self.slots[from as usize];
            (slot.key, slot.prev, slot.next, slot.exited_ns != LIVE, slot.exit_prev, slot.exit_next)
        };
        if prev == NIL {
            self.oldest = to;
        } else {
            self.slots[prev as usize].next = to;
        }
        if next == NIL {
            self.newest = to;
        } else {
            self.slots[next as usize].prev = to;
        }
        if exited {
            if exit_prev == NIL {
                self.exit_oldest = to;
            } else {
                self.slots[exit_prev as usize].exit_next = to;
            }
            if exit_next == NIL {
                self.exit_newest = to;
            } else {
                self.slots[exit_next as usize].exit_prev = to;
            }
        }
        if let Some(at) = self.index.get_mut(&key) {
            *at = to;
        } else {
            debug_assert!(false, "every slot's key is indexed");
        }
        if let Some(at) = self.live.get_mut(&key.pid) {
            if *at == from {
                *at = to;
            }
        }
    }
}

/// The indexes' hasher: a seeded folded multiply per word of the key (the
/// mixer of foldhash and ahash's fallback). std's SipHash was an eighth of
/// the per-event cost of enrichment (hashing 12 bytes, measured with
/// `benches/enrich.rs`); this is two multiplications. The seed is random
/// per table (from std's `RandomState`), so colliding keys cannot be
/// precomputed; pids and start times are not chosen by users anyway.
#[derive(Clone)]
struct KeyHasherBuilder {
    start: u64,
    multiplier: u64,
}

impl KeyHasherBuilder {
    fn new() -> KeyHasherBuilder {
        let random = RandomState::new();
        // Odd, so the multiplication loses no bits.
        KeyHasherBuilder { start: random.hash_one(0u64), multiplier: random.hash_one(1u64) | 1 }
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.start, multiplier: self.multiplier }
    }
}

struct KeyHasher {
    state: u64,
    multiplier: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // The high and low halves of the 128-bit product, folded: every
        // input bit reaches both the low bits (bucket) and the high bits
        // (hashbrown's tag).
        let product = u128::from(self.state ^ n) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests;
