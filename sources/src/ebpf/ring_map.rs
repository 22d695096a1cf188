//! The BPF ring buffer, mapped into the agent once.
//!
//! Why not aya's `RingBuf`: it maps the data area twice, back to back (as
//! libbpf does), so that a record wrapping past the end reads as one slice.
//! The kernel inserts every page of a ring mapping when it is mapped, so the
//! second view cost as much resident memory as the ring itself: 1 MiB of
//! the default topology's idle RSS for the default 1 MiB ring. Here the
//! data area is mapped once, and the rare record that wraps is copied into
//! a reused buffer.
//!
//! The protocol is the kernel's (`kernel/bpf/ringbuf.c`): a consumer page
//! the reader writes (`consumer_pos`), then a producer page (`producer_pos`)
//! and the data area, read-only. Each record starts with an 8-byte header
//! at an 8-aligned position: a 32-bit length carrying a busy bit (still
//! being written) and a discard bit (skipped), then 4 bytes for the kernel.
//! Positions only grow; a position's offset in the data area is
//! `pos & (size - 1)`.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use aya::maps::MapData;

/// libc's, declared here rather than through rustix's `mm` feature: a
/// feature change renames every dependent crate's symbols, and the
/// code-order lists (`src/code-order/`) name symbols.
mod sys {
    use std::ffi::{c_int, c_long, c_void};
    pub const PROT_READ: c_int = 1;
    pub const PROT_WRITE: c_int = 2;
    pub const MAP_SHARED: c_int = 1;
    pub const MAP_FAILED: *mut c_void = !0 as *mut c_void;
    extern "C" {
        pub fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, offset: c_long)
            -> *mut c_void;
        pub fn munmap(addr: *mut c_void, len: usize) -> c_int;
    }
}

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_BYTES: usize = 8;

/// A ring buffer map with its pages mapped (consumer page read-write;
/// producer page and data area read-only, once).
pub struct RingMap {
    /// Keeps the map's fd open (and names it for epoll) while mapped.
    map: MapData,
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page: usize,
    size: usize,
    /// A wrapped record's bytes, made contiguous.
    scratch: Vec<u8>,
    /// Records read through `scratch` (tests check the path runs).
    wrapped: u64,
}

// SAFETY: the mappings belong to this value alone (nothing else holds their
// addresses), and every access to them goes through `&mut self` or atomics.
#[expect(unsafe_code, reason = "raw pointers into the kernel's shared pages")]
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps `map`, a `BPF_MAP_TYPE_RINGBUF` of `size` data bytes (a power of
    /// two and a multiple of the page size, as the kernel requires).
    #[expect(unsafe_code, reason = "mmap of the ring's pages")]
    pub fn new(map: MapData, size: u32) -> io::Result<RingMap> {
        let page = rustix::param::page_size();
        let size = usize::try_from(size).map_err(io::Error::other)?;
        if !size.is_power_of_two() || size % page != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring buffer size {size} is not a power-of-two number of pages"),
            ));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let offset = std::ffi::c_long::try_from(page).map_err(io::Error::other)?;
        // SAFETY: a fresh mapping (no address hint) of the ring's first
        // page, which the kernel lets the consumer map read-write; it is
        // unmapped only in `drop`.
        let consumer =
            unsafe { sys::mmap(std::ptr::null_mut(), page, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_SHARED, fd, 0) };
        if consumer == sys::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, the producer page and the data area once,
        // read-only, starting at the second page.
        let producer =
            unsafe { sys::mmap(std::ptr::null_mut(), page + size, sys::PROT_READ, sys::MAP_SHARED, fd, offset) };
        if producer == sys::MAP_FAILED {
            let error = io::Error::last_os_error();
            // SAFETY: the consumer page was mapped just above and is
            // referenced nowhere else.
            unsafe { sys::munmap(consumer, page) };
            return Err(error);
        }
        let (Some(consumer), Some(producer)) = (NonNull::new(consumer.cast()), NonNull::new(producer.cast())) else {
            return Err(io::Error::other("mmap returned a null address"));
        };
        Ok(RingMap { map, consumer, producer, page, size, scratch: Vec::new(), wrapped: 0 })
    }

    #[expect(unsafe_code, reason = "the kernel's position word")]
    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page is mapped for `self`'s life, and the
        // kernel's `unsigned long consumer_pos` sits at its start, aligned.
        unsafe { self.consumer.cast::<AtomicUsize>().as_ref() }
    }

    #[expect(unsafe_code, reason = "the kernel's position word")]
    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as `consumer_pos`, on the producer page.
        unsafe { self.producer.cast::<AtomicUsize>().as_ref() }
    }

    /// The record header at data offset `offset` (8-aligned, so inside the
    /// data area).
    #[expect(unsafe_code, reason = "the kernel's record header")]
    fn header(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset + 4 <= size` (8-aligned, size a multiple of 8),
        // the data area starts `page` bytes into the producer mapping, and
        // the kernel writes the length word atomically.
        unsafe { self.producer.add(self.page + offset).cast::<AtomicU32>().as_ref() }
    }

    /// `len` bytes of the data area from offset `start`: only bytes of a
    /// committed record, so no slice covers memory the kernel still writes.
    #[expect(unsafe_code, reason = "the ring's data area")]
    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        let len = len.min(self.size.saturating_sub(start));
        // SAFETY: `start + len <= size`, inside the read-only data area
        // mapped for `self`'s life; the caller passes a committed record's
        // range (between the consumer and producer positions), which the
        // kernel no longer writes.
        unsafe { std::slice::from_raw_parts(self.producer.as_ptr().add(self.page + start), len) }
    }

    /// Hands the next committed record to `on_record` and frees its space;
    /// discarded records are skipped on the way. `None` when no committed
    /// record waits (the ring is empty, or the next one is still being
    /// written).
    pub fn next<R>(&mut self, on_record: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mask = self.size - 1;
        loop {
            let consumer = self.consumer_pos().load(Ordering::Acquire);
            let producer = self.producer_pos().load(Ordering::Acquire);
            if consumer >= producer {
                return None;
            }
            let offset = consumer & mask;
            let header = self.header(offset).load(Ordering::Acquire);
            if header & BUSY_BIT != 0 {
                return None;
            }
            let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let next = consumer + (HEADER_BYTES + len).next_multiple_of(8);
            if header & DISCARD_BIT != 0 {
                self.consumer_pos().store(next, Ordering::Release);
                continue;
            }
            let start = (offset + HEADER_BYTES) & mask;
            let result = if start + len <= self.size {
                on_record(self.bytes(start, len))
            } else {
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                let first = self.bytes(start, len);
                scratch.extend_from_slice(first);
                scratch.extend_from_slice(self.bytes(0, len - first.len()));
                let result = on_record(&scratch);
                self.scratch = scratch;
                self.wrapped += 1;
                result
            };
            self.consumer_pos().store(next, Ordering::Release);
            return Some(result);
        }
    }
}

impl RingMap {
    /// Records that wrapped past the end of the data area so far.
    pub fn wrapped(&self) -> u64 {
        self.wrapped
    }
}

impl AsRawFd for RingMap {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}

impl Drop for RingMap {
    #[expect(unsafe_code, reason = "munmap of the ring's pages")]
    fn drop(&mut self) {
        // SAFETY: both mappings were made in `new` with these lengths and
        // no reference into them outlives `&mut self`.
        unsafe {
            sys::munmap(self.producer.as_ptr().cast(), self.page + self.size);
            sys::munmap(self.consumer.as_ptr().cast(), self.page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::Record;
    use super::super::tests_kernel::{kernel_or_skip, settings, Session, WAIT};
    use super::super::Program;

    #[test]
    fn records_that_wrap_past_the_end_of_a_one_page_ring_read_whole_and_in_order() {
        if !kernel_or_skip("ebpf::records_that_wrap_past_the_end_of_a_one_page_ring_read_whole_and_in_order") {
            return;
        }
        let watched = tempfile::tempdir().expect("tempdir");
        let prefix = format!("{}/", watched.path().display());
        let page = rustix::param::page_size() as u32;
        let mut session = Session::start(&settings(&[Program::FileOpen], page, &[&prefix]));
        let mut expected = Vec::new();
        for i in 0..300 {
            let path = watched.path().join("f".repeat(1 + i % 97));
            std::fs::File::create(&path).expect("create");
            expected.push(path.display().to_string());
            // Read each record before the next: a one-page ring never fills.
            assert!(session.wait_for(WAIT, |records| records.len() > i), "open {i} read");
        }
        let seen: Vec<String> = session
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Open(open) => Some(open.path.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(seen, expected, "every path whole, in order");
        // 300 records through 4 KiB: the ring wrapped dozens of times, and
        // each time a record that did not fit before the end was split.
        assert!(session.ring_wrapped() > 10, "records read through the wrap: {}", session.ring_wrapped());
    }
}
