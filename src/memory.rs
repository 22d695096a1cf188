//! Giving memory back to the host (issue #12: RSS ≤ 12 MB idle). glibc's
//! allocator keeps what a long-running process freed: start-up is the
//! agent's peak (the kernel BTF parsed to load the eBPF programs, the
//! snapshot of every running process, the rule set compiled twice on a
//! reload), and without help those pages stay resident for the process's
//! life. Two knobs, both glibc-only and both cheap:
//! - at most two malloc arenas (glibc's default is eight per core, and each
//!   tokio worker and helper thread that allocates gets one and keeps its
//!   free pages);
//! - `malloc_trim(0)` a few seconds after start and then every 10 s,
//!   which hands free pages inside every arena back with `MADV_DONTNEED`.
//!   Why so often: every `/metrics` render (~90 KB of text for the default
//!   topology) frees its temporaries into the arenas, and a trim between
//!   15 s scrapes hands back what is whole pages (after 50 scrapes:
//!   anonymous 7.6 MiB, 7.0 after a trim); a trim of an idle agent's heap
//!   costs about 0.2 ms.
//!
//! Lives in the binary, not the library half: it is the only `unsafe` the
//! agent's own code needs, and it is about the process, not the engine.

use std::time::Duration;

/// When the first trim runs (after start-up's peak) and how often after.
const FIRST_TRIM: Duration = Duration::from_secs(5);
const TRIM_EVERY: Duration = Duration::from_secs(10);

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

/// Call first thing in a long-running command, before any thread starts.
/// `HOSTFLOW_MALLOC_TUNING=0` leaves the allocator alone (to measure what
/// the tuning buys).
pub fn tune_for_long_run() {
    if std::env::var_os("HOSTFLOW_MALLOC_TUNING").is_some_and(|v| v == "0") {
        return;
    }
    glibc::limit_arenas(2);
    let spawned = std::thread::Builder::new().name("hostflow-trim".to_owned()).spawn(|| {
        std::thread::sleep(FIRST_TRIM);
        loop {
            glibc::trim();
            std::thread::sleep(TRIM_EVERY);
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the memory trim thread; freed memory stays resident");
    }
}
