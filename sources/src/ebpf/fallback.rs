//! The stand-in for the eBPF programs when they cannot run (built without
//! clang, no privilege, a kernel that refuses them): a `/proc` scan every
//! interval, diffed against the previous one.
//!
//! A process key `(pid, start time)` that appears is reported as a
//! `ProcessExec` (comm and ppid from `stat`, exe from the `exe` link, argv
//! from `cmdline`, uid/gid from the owner of `/proc/PID`), one that
//! disappears as a `ProcessExit` with `exit_code` [`EXIT_CODE_UNKNOWN`] and
//! the CPU time last seen. An exec keeps the key, so a known process whose
//! `comm` changed is reported as a new `ProcessExec` too (this catches the
//! usual fork-then-exec caught mid-way by a scan; a process renaming
//! itself with `prctl` looks the same). The first scan only learns what is
//! running. What this cannot see, and the eBPF programs do: processes that
//! start and end between two scans, an exec that keeps the name, forks,
//! connects and file opens, and exit codes. The source is marked degraded
//! while it runs on this.
//!
//! Exec argv is scrubbed of secrets as it is read ([`Detector::scrubbing`];
//! the default rules unless the source's `scrub` table says otherwise).
//!
//! Blocking file I/O: [`Detector::scan`] runs on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use pipeline::event::{Argv, ProcessExec, ProcessExit};
use pipeline::{Event, EventMeta, ProcessKey};

use crate::procfs::{parse_stat, scrub_options};
use crate::scrub::{ScrubConfig, Scrubber};

use super::records::ARGV_LEN;

/// `exit_code` of a fallback `ProcessExit`: the scan cannot know it.
pub const EXIT_CODE_UNKNOWN: i32 = -1;

/// What the detector remembers of a live process.
#[derive(Clone, Copy, Debug)]
struct Seen {
    start_time_ns: u64,
    cpu_ticks: u64,
    /// `comm`, NUL-padded (it is at most 15 bytes).
    comm: [u8; 16],
}

/// The scan state: every process seen last time.
#[derive(Debug)]
pub struct Detector {
    proc_root: PathBuf,
    known: HashMap<u32, Seen>,
    primed: bool,
    clk_tck: u64,
    event_id_prefix: u64,
    next_sequence: u64,
    /// Processes whose exec was seen with an empty command line, put off to
    /// the next scan once: a scan can land inside `execve`, after the new
    /// name is set and before the new argument pages are, and then reads
    /// an empty `cmdline`. A process that still shows none is reported as is.
    deferred: HashSet<(u32, u64)>,
    scrubber: Arc<Scrubber>,
    /// Values scrubbed since [`Detector::take_scrubbed`].
    scrubbed: u64,
}

impl Detector {
    /// A detector over `proc_root` whose events get ids in the space
    /// `event_id_prefix` (as `SourceContext::event_id` makes them).
    pub fn new(proc_root: PathBuf, event_id_prefix: u64) -> Detector {
        Detector {
            proc_root,
            known: HashMap::new(),
            primed: false,
            clk_tck: rustix::param::clock_ticks_per_second().max(1),
            event_id_prefix,
            next_sequence: 0,
            deferred: HashSet::new(),
            scrubber: scrub_options::compile(&ScrubConfig::default()),
            scrubbed: 0,
        }
    }

    /// Scrubs exec argv with these rules instead of the defaults.
    pub fn scrubbing(mut self, scrubber: Arc<Scrubber>) -> Detector {
        self.scrubber = scrubber;
        self
    }

    /// Values scrubbed since the last call.
    pub fn take_scrubbed(&mut self) -> u64 {
        std::mem::take(&mut self.scrubbed)
    }

    /// The next sequence number this detector would use.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Scans once; returns the events since the previous scan (none on the
    /// first). Fails only when `proc_root` cannot be listed.
    pub fn scan(&mut self, now_ns: u64) -> std::io::Result<Vec<Event>> {
        let mut current: HashMap<u32, Seen> = HashMap::with_capacity(self.known.len() + 16);
        let mut events = Vec::new();
        let mut deferred_now = HashSet::new();
        for entry in std::fs::read_dir(&self.proc_root)?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let dir = entry.path();
            let Ok(stat) = std::fs::read(dir.join("stat")) else { continue };
            let Some(fields) = parse_stat(&stat) else { continue };
            if fields.is_kernel_thread() {
                continue;
            }
            let start_time_ns = ticks_to_ns(fields.start_ticks, self.clk_tck);
            let mut comm = [0u8; 16];
            let comm_len = fields.comm.len().min(comm.len());
            comm[..comm_len].copy_from_slice(&fields.comm[..comm_len]);
            let seen = Seen { start_time_ns, cpu_ticks: fields.cpu_ticks, comm };
            let is_new = self.known.get(&pid).is_none_or(|old| old.start_time_ns != start_time_ns);
            let exec_in_place = !is_new && self.known.get(&pid).is_some_and(|old| old.comm != comm);
            if self.primed && (is_new || exec_in_place) {
                let comm: Arc<str> = Arc::from(String::from_utf8_lossy(fields.comm));
                let exe = std::fs::read_link(dir.join("exe"))
                    .map(|target| Arc::from(target.to_string_lossy()))
                    .unwrap_or_else(|_| Arc::from(""));
                let (mut argv, argv_truncated) = read_argv(&dir.join("cmdline"));
                if argv.is_empty() && !self.deferred.contains(&(pid, start_time_ns)) {
                    // Kept as it was before this scan, so the next one looks again.
                    deferred_now.insert((pid, start_time_ns));
                    if let Some(old) = self.known.get(&pid) {
                        current.insert(pid, *old);
                    }
                    continue;
                }
                self.scrubbed += scrub_options::scrub_argv(&self.scrubber, &mut argv) as u64;
                let (uid, gid) = std::fs::metadata(&dir).map(|m| (m.uid(), m.gid())).unwrap_or((u32::MAX, u32::MAX));
                let event_id = self.next_event_id();
                events.push(Event::ProcessExec(ProcessExec {
                    meta: EventMeta { ts_ns: now_ns, event_id },
                    process: ProcessKey { pid, start_time_ns },
                    ppid: fields.ppid,
                    uid,
                    gid,
                    cgroup_id: 0,
                    comm,
                    exe,
                    argv,
                    argv_truncated,
                    attributes: None,
                    context: None,
                }));
            }
            current.insert(pid, seen);
        }
        if self.primed {
            let mut gone: Vec<(u32, Seen)> = self
                .known
                .iter()
                .filter(|(pid, old)| current.get(pid).is_none_or(|new| new.start_time_ns != old.start_time_ns))
                .map(|(&pid, &old)| (pid, old))
                .collect();
            gone.sort_unstable_by_key(|&(pid, _)| pid);
            for (pid, old) in gone {
                let event_id = self.next_event_id();
                events.push(Event::ProcessExit(ProcessExit {
                    meta: EventMeta { ts_ns: now_ns, event_id },
                    process: ProcessKey { pid, start_time_ns: old.start_time_ns },
                    exit_code: EXIT_CODE_UNKNOWN,
                    cpu_ns: ticks_to_ns(old.cpu_ticks, self.clk_tck),
                    context: None,
                }));
            }
        }
        // Deferred this scan, or deferred before and still alive (so it is
        // never put off twice).
        self.deferred.retain(|(pid, start)| current.get(pid).is_some_and(|seen| seen.start_time_ns == *start));
        self.deferred.extend(deferred_now);
        self.known = current;
        self.primed = true;
        Ok(events)
    }

    fn next_event_id(&mut self) -> u64 {
        let id = self.event_id_prefix | (self.next_sequence & ((1 << 48) - 1));
        self.next_sequence += 1;
        id
    }
}

/// The procfs source's conversion, so keys agree.
fn ticks_to_ns(ticks: u64, clk_tck: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Reads at most [`ARGV_LEN`] bytes of a `cmdline` file, as the kernel
/// programs bound argv; `(argv, truncated)`.
fn read_argv(path: &std::path::Path) -> (Argv, bool) {
    use std::io::Read as _;
    let Ok(file) = std::fs::File::open(path) else { return (Argv::default(), false) };
    let mut bytes = Vec::with_capacity(256);
    if file.take(ARGV_LEN as u64 + 1).read_to_end(&mut bytes).is_err() {
        return (Argv::default(), false);
    }
    let truncated = bytes.len() > ARGV_LEN;
    bytes.truncate(ARGV_LEN);
    (Argv::from_nul_separated(&bytes), truncated)
}
