//! Shows that a warm `ProcessTable` allocates nothing per operation: a
//! counting global allocator (a separate test binary, because the
//! `transforms` library forbids `unsafe`) counts this thread's allocations
//! while a full table churns through insert, exit, expire, touch and
//! ancestry walks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::num::NonZeroU32;

use pipeline::ProcessKey;
use transforms::enrich::table::ProcessTable;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local without a destructor, so
// updating it never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

fn key(i: u64) -> ProcessKey {
    ProcessKey { pid: (i % 4_000_000) as u32, start_time_ns: i * 10 }
}

/// One step of churn: a process execs (child of the previous one), most
/// exit soon after, exits expire every thousand steps, lineage is read.
fn step(t: &mut ProcessTable<u64>, i: u64, walk: &mut Vec<ProcessKey>) {
    let parent = (i > 0).then(|| key(i - 1));
    t.insert(key(i), parent, i);
    if !i.is_multiple_of(3) {
        t.mark_exited(&key(i), i * 10 + 5);
    }
    if i.is_multiple_of(1_000) {
        t.expire(i * 10);
    }
    t.touch(&key(i / 2));
    t.ancestry_into(&key(i), 32, walk);
}

#[test]
fn enrich_table_allocates_nothing_once_warm() {
    const CAP: u32 = 10_000;
    let mut t = ProcessTable::new(NonZeroU32::new(CAP).expect("non-zero"), 1_000);
    let mut walk = Vec::with_capacity(32);
    // Warm-up: the slab reaches the bound and the index settles at its
    // churn size (tombstones make it grow past the entry count once).
    for i in 0..500_000 {
        step(&mut t, i, &mut walk);
    }
    let before = allocations();
    for i in 500_000..1_500_000 {
        step(&mut t, i, &mut walk);
        assert!(t.len() <= CAP as usize);
    }
    assert_eq!(allocations() - before, 0, "allocations during 1 M warm operations");
    assert!(t.evictions().total() > 1_000_000);
}
