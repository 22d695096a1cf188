//! Giving memory back to the host (issue #12: RSS ≤ 12 MB idle). A
//! long-running process keeps what start-up made resident: start-up is the
//! agent's peak (the kernel BTF parsed to load the eBPF programs, the
//! snapshot of every running process, the rule set compiled), and without
//! help its pages stay resident for the process's life. Three knobs, all
//! cheap:
//! - at most two malloc arenas (glibc's default is eight per core, and each
//!   tokio worker and helper thread that allocates gets one and keeps its
//!   free pages);
//! - `malloc_trim(0)` a few seconds after start and then every 10 s,
//!   which hands free pages inside every arena back with `MADV_DONTNEED`.
//!   Why so often: every `/metrics` render (~90 KB of text for the default
//!   topology) frees its temporaries into the arenas, and a trim between
//!   15 s scrapes hands back what is whole pages (after 50 scrapes:
//!   anonymous 7.6 MiB, 7.0 after a trim); a trim of an idle agent's heap
//!   costs about 0.2 ms;
//! - once start-up has settled, the clean code and read-only data pages
//!   of the agent and of its shared libraries are unmapped
//!   ([`release_startup_code`]): the code that parsed BTF, loaded programs
//!   and compiled rules never runs again, yet its pages (and the pages the
//!   kernel mapped around each fault) were most of the resident set. What
//!   idle work runs maps back in with minor faults, at most 16 KiB per
//!   fault; the rest stays in the page cache, clean and unmapped, where
//!   the kernel reclaims it first.
//!
//! Lives in the binary, not the library half: it is the only `unsafe` the
//! agent's own code needs, and it is about the process, not the engine.

use std::time::Duration;

/// The most one page fault in the agent's code may map once start-up
/// code is released (see `kernel::split_into_windows`).
#[cfg(target_os = "linux")]
const FAULT_WINDOW: usize = 16 * 1024;

/// When the first trim runs (after start-up's peak) and how often after.
const FIRST_TRIM: Duration = Duration::from_secs(5);
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Start-up has settled when the binary's resident pages grew by less than
/// this over one trim interval. Loading the eBPF programs takes seconds on
/// a busy host and faults in megabytes; an idle agent adds a few pages.
const SETTLED_GROWTH_KIB: u64 = 256;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;

    /// `M_ARENA_MAX` from glibc's `malloc.h`.
    const M_ARENA_MAX: c_int = -8;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
        fn malloc_trim(pad: usize) -> c_int;
    }

    pub fn limit_arenas(arenas: c_int) {
        // SAFETY: mallopt takes two integers and touches only the
        // allocator's own settings; called before the runtime's threads.
        unsafe {
            mallopt(M_ARENA_MAX, arenas);
        }
    }

    pub fn trim() {
        // SAFETY: malloc_trim takes an integer, locks each arena itself and
        // only releases pages that hold no allocation.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn limit_arenas(_arenas: i32) {}
    pub fn trim() {}
}

#[cfg(target_os = "linux")]
mod kernel {
    use std::ffi::{c_int, c_void};

    /// `MADV_DONTNEED` and `MADV_NOHUGEPAGE` from the kernel's
    /// `mman-common.h`.
    const MADV_DONTNEED: c_int = 4;
    const MADV_NOHUGEPAGE: c_int = 15;

    extern "C" {
        fn madvise(addr: *mut c_void, length: usize, advice: c_int) -> c_int;
    }

    /// Unmaps `mapping`'s pages; the next access maps the file's page
    /// again, as after the kernel reclaimed it.
    ///
    /// # Safety
    /// `mapping` must be a read-only private mapping of a file that holds
    /// no private copy of any page (`Anonymous: 0 kB` in smaps), so that
    /// every byte read after the call is the byte read before it.
    pub unsafe fn unmap_clean_file_pages(mapping: &super::CleanFileMapping) -> std::io::Result<()> {
        // SAFETY: only page-table entries of the range go; the caller
        // guarantees they map clean file pages, which fault back unchanged.
        let result = unsafe { madvise(mapping.start as *mut c_void, mapping.end - mapping.start, MADV_DONTNEED) };
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Marks every other `window` of `mapping` `MADV_NOHUGEPAGE`, which
    /// splits it into `window`-sized VMAs (neighbours with different flags
    /// do not merge). Why: since Linux 6.18 a page fault maps the whole
    /// page-cache folio it hits when the folio lies inside one VMA, and a
    /// binary read from disk sits in folios of up to 2 MiB (readahead), so
    /// one call into a cold function mapped up to 2 MiB of code around it.
    /// A folio that crosses a VMA boundary is mapped only over the
    /// kernel's fault-around window (64 KiB) clipped to the VMA, so at most
    /// `window` per fault (measured in BENCHMARKS.md: 16 KiB windows held
    /// the binary's idle pages at 2.1-2.3 MiB, 64 KiB ones at 3.5-3.7).
    /// The flag itself only stops huge-page mappings of code, which
    /// nothing here wants. The cost is kernel memory: one VMA per window,
    /// about 1 200 for this binary.
    pub fn split_into_windows(mapping: &super::CleanFileMapping, window: usize) -> std::io::Result<()> {
        // Odd-numbered windows by address, so the pattern is the same
        // however often it is applied and wherever a mapping starts.
        let mut start = mapping.start - mapping.start % window;
        while start < mapping.end {
            let (from, to) = (start.max(mapping.start), (start + window).min(mapping.end));
            if (start / window) % 2 == 1 {
                // SAFETY: only the range's VMA flags change; no page's
                // content or protection does.
                if unsafe { madvise(from as *mut c_void, to - from, MADV_NOHUGEPAGE) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            start += window;
        }
        Ok(())
    }
}

/// A private, read-only mapping of a file (the agent's executable or a
/// shared library) that was never written: only page faults made its
/// pages resident.
#[derive(Debug, PartialEq, Eq)]
struct CleanFileMapping {
    start: usize,
    end: usize,
    resident_kib: u64,
}

/// What `/proc/self/smaps` says about the files mapped into the agent.
#[derive(Debug, Default, PartialEq, Eq)]
struct FilePages {
    /// Resident KiB over every mapping of the executable: start-up has
    /// settled when this stops growing.
    executable_kib: u64,
    /// The mappings that may be dropped, of the executable and of every
    /// shared library (libc, libm, the loader): permissions `r--p` or
    /// `r-xp` and `Anonymous: 0 kB` (RELRO is read-only too, but the
    /// loader wrote its relocations there: private copies, never dropped).
    /// Why the libraries too: their code is mapped the same way, and
    /// before this the loader's and start-up's faults kept 2.4 MiB of
    /// libc, libm and ld.so resident, more than the agent's own code.
    clean: Vec<CleanFileMapping>,
}

/// The executable's identity as smaps prints it: device `major:minor` in
/// hex, and inode.
#[derive(Debug, PartialEq, Eq)]
struct FileId {
    device: String,
    inode: u64,
}

/// Reads `smaps` (the text of `/proc/self/smaps`) for the mappings of
/// files: the executable `exe`'s, and the clean ones of any file.
fn file_pages(smaps: &str, exe: &FileId) -> FilePages {
    struct Current {
        mapping: CleanFileMapping,
        executable: bool,
        read_only: bool,
        anonymous_kib: Option<u64>,
    }
    let mut pages = FilePages::default();
    let mut current: Option<Current> = None;
    let finish = |current: Option<Current>, pages: &mut FilePages| {
        if let Some(Current { mapping, read_only: true, anonymous_kib: Some(0), .. }) = current {
            pages.clean.push(mapping);
        }
    };
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            [range, perms, _offset, device, inode, rest @ ..] if range.contains('-') => {
                finish(current.take(), &mut pages);
                let Some((start, end)) = parse_range(range) else { continue };
                // A file has a path; `[heap]`, `[vdso]`, anonymous memory
                // and `anon_inode:` mappings (the eBPF ring) do not.
                if rest.first().is_some_and(|path| path.starts_with('/')) {
                    let executable = *device == exe.device && inode.parse::<u64>().ok() == Some(exe.inode);
                    let read_only = matches!(*perms, "r--p" | "r-xp");
                    let mapping = CleanFileMapping { start, end, resident_kib: 0 };
                    current = Some(Current { mapping, executable, read_only, anonymous_kib: None });
                }
            }
            ["Rss:", kib, "kB"] => {
                if let Some(current) = current.as_mut() {
                    current.mapping.resident_kib = kib.parse().unwrap_or(0);
                    if current.executable {
                        pages.executable_kib += current.mapping.resident_kib;
                    }
                }
            }
            ["Anonymous:", kib, "kB"] => {
                if let Some(current) = current.as_mut() {
                    current.anonymous_kib = kib.parse().ok();
                }
            }
            _ => {}
        }
    }
    finish(current.take(), &mut pages);
    pages
}

fn parse_range(range: &str) -> Option<(usize, usize)> {
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

#[cfg(target_os = "linux")]
fn read_file_pages() -> std::io::Result<FilePages> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::metadata("/proc/self/exe")?;
    // glibc's `major()`/`minor()` split of a dev_t.
    let dev = metadata.dev();
    let (major, minor) = (((dev >> 32) & !0xfff) | ((dev >> 8) & 0xfff), ((dev >> 12) & !0xff) | (dev & 0xff));
    let exe = FileId { device: format!("{major:02x}:{minor:02x}"), inode: metadata.ino() };
    Ok(file_pages(&std::fs::read_to_string("/proc/self/smaps")?, &exe))
}

/// Unmaps the clean pages of the agent's and its libraries' code and
/// read-only data; returns the KiB that were resident in them.
#[cfg(target_os = "linux")]
fn release_startup_code(pages: &FilePages) -> std::io::Result<u64> {
    let mut released = 0;
    for mapping in &pages.clean {
        kernel::split_into_windows(mapping, FAULT_WINDOW)?;
        // SAFETY: `file_pages` lists only `r--p`/`r-xp` mappings of
        // files without a private page, and nothing in the agent makes its
        // own image or a library's writable.
        unsafe { kernel::unmap_clean_file_pages(mapping)? };
        released += mapping.resident_kib;
    }
    Ok(released)
}

/// Watches the binary's resident pages at each trim tick and, the first
/// time they stop growing (start-up has settled), releases the clean ones.
#[derive(Debug, Default)]
struct StartupCode {
    last_resident_kib: Option<u64>,
    released: bool,
}

impl StartupCode {
    #[cfg(target_os = "linux")]
    fn tick(&mut self) {
        if self.released {
            return;
        }
        let pages = match read_file_pages() {
            Ok(pages) => pages,
            Err(error) => {
                tracing::debug!(%error, "cannot read the agent's own mappings; start-up code stays mapped");
                self.released = true;
                return;
            }
        };
        let settled = self.last_resident_kib.is_some_and(|last| pages.executable_kib < last + SETTLED_GROWTH_KIB);
        self.last_resident_kib = Some(pages.executable_kib);
        if !settled {
            return;
        }
        self.released = true;
        match release_startup_code(&pages) {
            Ok(kib) => tracing::debug!(kib, "start-up code and read-only data unmapped"),
            Err(error) => tracing::debug!(%error, "cannot unmap start-up code"),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn tick(&mut self) {}
}

/// A profiling aid for `testbed/bench/code-order.sh`, never on in
/// production: unmaps the clean code pages every `every`, so that each
/// function's first run after an unmapping page-faults and `perf` can
/// record which functions an idle agent runs (a fault maps its whole
/// `FAULT_WINDOW`, so one pass sees one function per window; the script
/// iterates).
fn profile_code_faults(every: Duration) {
    #[cfg(target_os = "linux")]
    let spawned = std::thread::Builder::new().name("hostflow-unmap".to_owned()).spawn(move || {
        std::thread::sleep(FIRST_TRIM);
        let Ok(pages) = read_file_pages() else { return };
        while release_startup_code(&pages).is_ok() {
            std::thread::sleep(every);
        }
    });
    #[cfg(target_os = "linux")]
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the code-fault profiling thread");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = every;
}

/// Call first thing in a long-running command, before any thread starts.
/// `HOSTFLOW_MALLOC_TUNING=0` leaves the allocator alone and
/// `HOSTFLOW_RELEASE_STARTUP_CODE=0` keeps start-up's code mapped (to
/// measure what each buys).
pub fn tune_for_long_run() {
    let off = |knob: &str| std::env::var_os(knob).is_some_and(|v| v == "0");
    let malloc_tuning = !off("HOSTFLOW_MALLOC_TUNING");
    let mut startup_code = StartupCode { released: off("HOSTFLOW_RELEASE_STARTUP_CODE"), ..StartupCode::default() };
    if let Some(every) =
        std::env::var("HOSTFLOW_UNMAP_CODE_EVERY_MS").ok().and_then(|v| v.parse().ok()).filter(|&ms| ms > 0)
    {
        profile_code_faults(Duration::from_millis(every));
    }
    if !malloc_tuning && startup_code.released {
        return;
    }
    if malloc_tuning {
        glibc::limit_arenas(2);
    }
    let spawned = std::thread::Builder::new().name("hostflow-trim".to_owned()).spawn(move || {
        std::thread::sleep(FIRST_TRIM);
        loop {
            if malloc_tuning {
                glibc::trim();
            }
            startup_code.tick();
            std::thread::sleep(TRIM_EVERY);
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the memory trim thread; freed memory stays resident");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0400000 r--p 00000000 fe:00 42                         /usr/bin/hostflow
Size:               4096 kB
Rss:                 960 kB
Anonymous:             0 kB
55d0c0400000-55d0c1000000 r-xp 00400000 fe:00 42                         /usr/bin/hostflow
Rss:                7992 kB
Anonymous:             0 kB
55d0c1000000-55d0c10b0000 r--p 01000000 fe:00 42                         /usr/bin/hostflow
Rss:                 700 kB
Anonymous:           700 kB
55d0c10b0000-55d0c10b3000 rw-p 010b0000 fe:00 42                         /usr/bin/hostflow
Rss:                  12 kB
Anonymous:            12 kB
7f3b09b19000-7f3b09c6f000 r-xp 00028000 fe:00 77                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 924 kB
Anonymous:             0 kB
7f3b04000000-7f3b0587b000 rw-p 00000000 00:00 0 
Rss:                1464 kB
Anonymous:          1464 kB
7f3b0a000000-7f3b0a101000 r--s 00000000 00:0e 1077                       anon_inode:bpf-map
Rss:                1028 kB
Anonymous:             0 kB
7ffd1b5f0000-7ffd1b5f2000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_never_written_read_only_file_mappings_are_released() {
        let exe = |device: &str, inode| FileId { device: device.to_owned(), inode };
        let pages = file_pages(SMAPS, &exe("fe:00", 42));
        assert_eq!(pages.executable_kib, 960 + 7992 + 700 + 12);
        assert_eq!(
            pages.clean,
            [
                CleanFileMapping { start: 0x55d0_c000_0000, end: 0x55d0_c040_0000, resident_kib: 960 },
                CleanFileMapping { start: 0x55d0_c040_0000, end: 0x55d0_c100_0000, resident_kib: 7992 },
                CleanFileMapping { start: 0x7f3b_09b1_9000, end: 0x7f3b_09c6_f000, resident_kib: 924 },
            ],
            "the executable's code and read-only data and libc's code; not RELRO, .data, the ring or the heap"
        );
        let other = file_pages(SMAPS, &exe("fe:00", 7));
        assert_eq!((other.executable_kib, other.clean.len()), (0, 3), "another inode: only the clean mappings");
        assert_eq!(file_pages(SMAPS, &exe("fe:01", 42)).executable_kib, 0, "same inode, other device");
    }

    #[test]
    fn a_mapping_whose_anonymous_line_is_missing_is_kept() {
        let truncated = "55d0c0400000-55d0c1000000 r-xp 00400000 fe:00 42 /usr/bin/hostflow\nRss: 7992 kB\n";
        let pages = file_pages(truncated, &FileId { device: "fe:00".to_owned(), inode: 42 });
        assert_eq!((pages.executable_kib, pages.clean.len()), (7992, 0));
    }

    /// The real thing on this test binary: its clean pages leave the
    /// resident set, and its code still runs afterwards.
    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_unmaps_resident_code_that_still_runs_afterwards() {
        let clean_kib = |pages: &FilePages| pages.clean.iter().map(|m| m.resident_kib).sum::<u64>();
        let before = read_file_pages().expect("own smaps");
        assert!(clean_kib(&before) > 0, "a running test binary has resident code: {before:?}");
        let released = release_startup_code(&before).expect("madvise on own image");
        assert_eq!(released, clean_kib(&before));
        let after = read_file_pages().expect("own smaps, read by code mapped back in");
        assert!(
            clean_kib(&after) < clean_kib(&before),
            "resident clean pages went from {} KiB to {} KiB",
            clean_kib(&before),
            clean_kib(&after)
        );
        let exe = FileId { device: "fe:00".to_owned(), inode: 42 };
        assert_eq!(file_pages(SMAPS, &exe).clean.len(), 3, "parsing code runs after the release");
    }
}
