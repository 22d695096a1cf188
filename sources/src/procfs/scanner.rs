//! The scanner: one walk of `/proc` per call, usable without the engine
//! (benches drive it directly).
//!
//! Cost is the point. Opening, reading and closing `/proc/PID/stat` for
//! every process on every scan costs ~13 µs per process on this kind of VM;
//! a `pread` on a descriptor kept open since the process was first seen
//! costs ~7 µs. So the scanner keeps one open `stat` descriptor per live
//! process, re-reads it at offset 0 into one reused buffer, parses it
//! without allocating, and does the expensive, allocating work (uid,
//! display name, command line) only at a process's first sighting or when
//! its `comm` changes (an exec). A descriptor is closed when its process
//! is no longer listed, or when its PID now belongs to another process
//! (the old descriptor then fails with `ESRCH`, or shows another start
//! time): the identity of a process is its PID *and* its start time.
//!
//! Descriptors count against `RLIMIT_NOFILE`: the scanner keeps at most
//! [`ScannerSettings::max_open_fds`] of them (by default three quarters of
//! the soft limit, see [`raise_open_file_limit`]) and reads any further
//! process the slow way, open+read+close, so a host with more processes
//! than descriptors is scanned completely, only at a higher cost.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::event::{EventMeta, ProcessSample, ScanInfo};
use pipeline::{Batch, Event, ProcessKey};

use super::stat::{clean_cmdline, exe_basename, parse_stat, StatFields};
use crate::scrub::{ScrubConfig, Scrubber};

/// What a [`Scanner`] reads and how much of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannerSettings {
    /// The proc filesystem to walk (normally `/proc`).
    pub proc_root: PathBuf,
    /// Longest command line kept per process, in bytes (0: none is read).
    pub cmdline_max_bytes: usize,
    /// Most `stat` descriptors kept open between scans; `None`: derived
    /// from the soft `RLIMIT_NOFILE` when the scanner is made.
    pub max_open_fds: Option<usize>,
    /// Secrets scrubbed from command lines as they are read (checked by
    /// the source's configuration; on by default).
    pub scrub: ScrubConfig,
}

impl Default for ScannerSettings {
    fn default() -> Self {
        ScannerSettings {
            proc_root: PathBuf::from("/proc"),
            cmdline_max_bytes: 4096,
            max_open_fds: None,
            scrub: ScrubConfig::default(),
        }
    }
}

/// Why the scanner cannot read the process list at all. A single process
/// that cannot be read is not an error: it is counted in [`ScanOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    /// `proc_root` could not be listed (missing, not a directory, no permission).
    #[error("cannot list processes in {}: {source}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one scan found.
#[derive(Debug)]
pub struct ScanOutcome {
    /// One `ProcessSample` per process read, in PID order, all with the
    /// same `scan_id`, `scan_size` and `ts_ns`.
    pub events: Batch,
    /// Increases by one per completed listing, from 1.
    pub scan_id: u64,
    /// CLOCK_BOOTTIME at the start of the scan, in nanoseconds (the clock
    /// process start times are counted on).
    pub ts_ns: u64,
    /// Processes listed but gone before they could be read (skipped).
    pub vanished: u64,
    /// Processes listed but not readable for another reason (permission
    /// denied under `hidepid`, a malformed `stat`).
    pub unreadable: u64,
    /// The first unreadable process of the scan and why, for `/health`.
    pub first_unreadable: Option<String>,
    /// `stat` descriptors opened during this scan (first sightings).
    pub opened: u64,
    /// `stat` descriptors closed during this scan (exits and PID reuse);
    /// both counts leave out the descriptors of processes read the slow way.
    pub closed: u64,
    /// Secret values scrubbed from the command lines read in this scan.
    pub scrubbed: u64,
}

impl ScanOutcome {
    /// Processes read (rows).
    pub fn scanned(&self) -> usize {
        self.events.len()
    }

    /// The rows, as samples.
    pub fn samples(&self) -> impl Iterator<Item = &ProcessSample> {
        self.events.iter().filter_map(|event| match event {
            Event::ProcessSample(sample) => Some(sample),
            _ => None,
        })
    }
}

/// Walks a proc filesystem, remembering what it needs between scans.
pub struct Scanner {
    config: Config,
    tracked: HashMap<u32, Tracked>,
    scan_id: u64,
    sequence: u64,
    /// `stat` descriptors kept open now (at most `config.max_open_fds`).
    n_open_fds: usize,
    /// Reused between scans: the PIDs listed, and the last `stat` read.
    pids: Vec<u32>,
    stat_buf: Vec<u8>,
}

/// What does not change between scans.
struct Config {
    proc_root: PathBuf,
    cmdline_max_bytes: usize,
    units: Units,
    max_open_fds: usize,
    /// Shared by every empty name and command line.
    empty: Arc<str>,
    scrubber: Arc<Scrubber>,
    /// Values scrubbed since the last scan's outcome took the count.
    scrubbed: Cell<u64>,
}

/// A process seen by an earlier scan.
struct Tracked {
    /// `/proc/PID/stat`, open since the first sighting; `None` when the
    /// descriptor budget was spent (then opened and closed at every scan).
    stat: Option<File>,
    previous: TickSample,
    seen_scan: u64,
    uid: u32,
    comm: Box<[u8]>,
    name: Arc<str>,
    cmdline: Arc<str>,
    /// Scans left in which an empty command line is read again (see
    /// [`CMDLINE_RETRIES`]).
    cmdline_retries: u8,
}

/// One reading of a process's CPU counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TickSample {
    pub start_ticks: u64,
    pub cpu_ticks: u64,
    pub ts_ns: u64,
}

/// How a listed process turned out.
enum Reading {
    Row(ProcessSample),
    Vanished,
    Unreadable(String),
}

/// High 16 bits of an event id are the source's prefix.
const SEQUENCE_MASK: u64 = (1 << 48) - 1;
/// A process caught in the middle of `execve` already shows its new
/// `comm` but not yet its arguments (they are set up after the exec's
/// point of no return), so an empty command line of a process that is not a
/// kernel thread or a zombie is read again on the next few scans.
const CMDLINE_RETRIES: u8 = 3;
/// Big enough for any `stat` line seen in practice; grown if one is longer.
const STAT_BUF_BYTES: usize = 1024;

impl Scanner {
    /// Checks that `proc_root` can be listed and prepares an empty state.
    pub fn new(settings: ScannerSettings) -> Result<Scanner, ProcfsError> {
        let ScannerSettings { proc_root, cmdline_max_bytes, max_open_fds, scrub } = settings;
        std::fs::read_dir(&proc_root).map_err(|source| ProcfsError::List { path: proc_root.clone(), source })?;
        let units = Units {
            clk_tck: rustix::param::clock_ticks_per_second().max(1),
            page_size: rustix::param::page_size() as u64,
        };
        Ok(Scanner {
            config: Config {
                proc_root,
                cmdline_max_bytes,
                units,
                max_open_fds: max_open_fds.unwrap_or_else(default_max_open_fds),
                empty: Arc::from(""),
                scrubber: super::scrub_options::compile(&scrub),
                scrubbed: Cell::new(0),
            },
            tracked: HashMap::new(),
            n_open_fds: 0,
            scan_id: 0,
            sequence: 0,
            pids: Vec::new(),
            stat_buf: vec![0; STAT_BUF_BYTES],
        })
    }

    /// Reads every listed process once. Event ids are
    /// `event_id_prefix | sequence`, as [`pipeline::SourceContext::event_id`]
    /// makes them.
    pub fn scan(&mut self, event_id_prefix: u64) -> Result<ScanOutcome, ProcfsError> {
        let ts_ns = boottime_ns();
        let mut pids = std::mem::take(&mut self.pids);
        let listed = list_pids(&self.config.proc_root, &mut pids);
        if let Err(source) = listed {
            self.pids = pids;
            return Err(ProcfsError::List { path: self.config.proc_root.clone(), source });
        }
        self.scan_id += 1;
        let scan_id = self.scan_id;
        let mut outcome = ScanOutcome {
            events: Vec::with_capacity(pids.len()),
            scan_id,
            ts_ns,
            vanished: 0,
            unreadable: 0,
            first_unreadable: None,
            opened: 0,
            closed: 0,
            scrubbed: 0,
        };
        for &pid in &pids {
            match self.read_process(pid, scan_id, ts_ns, &mut outcome) {
                Reading::Row(mut sample) => {
                    sample.meta.event_id = event_id_prefix | (self.sequence & SEQUENCE_MASK);
                    self.sequence += 1;
                    outcome.events.push(Event::ProcessSample(sample));
                }
                Reading::Vanished => outcome.vanished += 1,
                Reading::Unreadable(reason) => {
                    outcome.unreadable += 1;
                    outcome.first_unreadable.get_or_insert(reason);
                }
            }
        }
        self.pids = pids;
        let mut n_closed = 0;
        self.tracked.retain(|_, tracked| {
            let keep = tracked.seen_scan == scan_id;
            n_closed += usize::from(!keep && tracked.stat.is_some());
            keep
        });
        self.n_open_fds -= n_closed;
        outcome.closed += n_closed as u64;
        outcome.scrubbed = self.config.scrubbed.take();
        let scan_size = u32::try_from(outcome.events.len()).unwrap_or(u32::MAX);
        for event in &mut outcome.events {
            if let Event::ProcessSample(sample) = event {
                sample.scan.scan_size = scan_size;
            }
        }
        Ok(outcome)
    }

    /// Processes seen by the last scan.
    pub fn tracked_processes(&self) -> usize {
        self.tracked.len()
    }

    /// `stat` descriptors kept open now.
    pub fn open_descriptors(&self) -> usize {
        self.n_open_fds
    }

    /// Whether `pid` was seen by the last scan.
    pub fn is_tracking(&self, pid: u32) -> bool {
        self.tracked.contains_key(&pid)
    }

    /// Clock ticks per second (USER_HZ), the unit of `cpu_ticks`.
    pub fn clock_ticks_per_second(&self) -> u64 {
        self.config.units.clk_tck
    }

    fn read_process(&mut self, pid: u32, scan_id: u64, ts_ns: u64, outcome: &mut ScanOutcome) -> Reading {
        // Steady state: the descriptor kept from an earlier scan.
        if let Some(tracked) = self.tracked.get_mut(&pid) {
            if let Some(row) = reread(tracked, &mut self.stat_buf, &self.config, pid, scan_id, ts_ns) {
                return Reading::Row(row);
            }
            // The process this descriptor belonged to is gone (ESRCH) or the
            // PID shows another start time: the listed PID is a new process.
            if self.tracked.remove(&pid).is_some_and(|gone| gone.stat.is_some()) {
                self.n_open_fds -= 1;
                outcome.closed += 1;
            }
        }

        // First sighting.
        let config = &self.config;
        let dir = config.proc_root.join(pid.to_string());
        let stat_path = dir.join("stat");
        let stat = match File::open(&stat_path) {
            Ok(file) => file,
            Err(error) => return classify(&stat_path, &error),
        };
        let line = match read_stat(&stat, &mut self.stat_buf) {
            Ok(line) => line,
            Err(error) => return classify(&stat_path, &error),
        };
        if line.is_empty() {
            return Reading::Vanished;
        }
        let Some(fields) = parse_stat(line) else {
            return Reading::Unreadable(format!("{}: not a stat line", stat_path.display()));
        };
        // The owner of every /proc/PID entry is the process's effective
        // uid (root when it is not dumpable), as for the directory itself.
        let uid = match stat.metadata() {
            Ok(metadata) => metadata.uid(),
            Err(error) => return classify(&stat_path, &error),
        };
        let (name, cmdline) = describe(&dir, fields.comm, config);
        let keep = self.n_open_fds < config.max_open_fds;
        if keep {
            self.n_open_fds += 1;
            outcome.opened += 1;
        }
        let tracked = Tracked {
            stat: keep.then_some(stat),
            previous: TickSample { start_ticks: fields.start_ticks, cpu_ticks: fields.cpu_ticks, ts_ns },
            seen_scan: scan_id,
            uid,
            comm: fields.comm.into(),
            cmdline_retries: cmdline_retries(&fields, &cmdline, config.cmdline_max_bytes),
            name,
            cmdline,
        };
        let row = sample(pid, &fields, &tracked, (0, 0.0), config.units);
        self.tracked.insert(pid, tracked);
        Reading::Row(row)
    }
}

/// Reads a process again through its kept descriptor (or, beyond the
/// descriptor budget, a fresh open). `None` when that no longer shows the
/// process seen before under `pid`.
fn reread(
    tracked: &mut Tracked,
    stat_buf: &mut Vec<u8>,
    config: &Config,
    pid: u32,
    scan_id: u64,
    ts_ns: u64,
) -> Option<ProcessSample> {
    let line = match &tracked.stat {
        Some(stat) => read_stat(stat, stat_buf).ok()?,
        None => read_stat(&File::open(config.proc_root.join(pid.to_string()).join("stat")).ok()?, stat_buf).ok()?,
    };
    let fields = parse_stat(line)?;
    if fields.start_ticks != tracked.previous.start_ticks {
        return None;
    }
    let current = TickSample { start_ticks: fields.start_ticks, cpu_ticks: fields.cpu_ticks, ts_ns };
    let cpu = cpu_since(Some(&tracked.previous), &current, config.units.clk_tck);
    tracked.previous = current;
    tracked.seen_scan = scan_id;
    if *fields.comm != *tracked.comm {
        // An exec (or a rename): name and command line change.
        let (name, cmdline) = describe(&config.proc_root.join(pid.to_string()), fields.comm, config);
        tracked.cmdline_retries = cmdline_retries(&fields, &cmdline, config.cmdline_max_bytes);
        tracked.comm = fields.comm.into();
        tracked.name = name;
        tracked.cmdline = cmdline;
    } else if tracked.cmdline_retries > 0 {
        tracked.cmdline_retries -= 1;
        let path = config.proc_root.join(pid.to_string()).join("cmdline");
        if let Some(cmdline) = read_cmdline(&path, config) {
            tracked.cmdline = Arc::from(cmdline);
            tracked.cmdline_retries = 0;
        }
    }
    Some(sample(pid, &fields, tracked, cpu, config.units))
}

/// A row from a parsed `stat` and what is remembered of the process.
fn sample(
    pid: u32,
    fields: &StatFields<'_>,
    tracked: &Tracked,
    (cpu_ticks, cpu_percent): (u64, f64),
    units: Units,
) -> ProcessSample {
    ProcessSample {
        meta: EventMeta { ts_ns: tracked.previous.ts_ns, event_id: 0 },
        process: ProcessKey { pid, start_time_ns: ticks_to_ns(fields.start_ticks, units.clk_tck) },
        scan: ScanInfo { scan_id: tracked.seen_scan, scan_size: 0 },
        ppid: fields.ppid,
        uid: tracked.uid,
        name: Arc::clone(&tracked.name),
        cmdline: Arc::clone(&tracked.cmdline),
        state: fields.state,
        threads: fields.threads,
        cpu_ticks,
        cpu_percent,
        rss_bytes: fields.rss_pages.saturating_mul(units.page_size),
        top_n_rank: 0,
    }
}

/// How many more scans should read an empty command line again.
fn cmdline_retries(fields: &StatFields<'_>, cmdline: &str, cmdline_max_bytes: usize) -> u8 {
    let expected = cmdline_max_bytes > 0 && !fields.is_kernel_thread() && fields.state != b'Z';
    if cmdline.is_empty() && expected {
        CMDLINE_RETRIES
    } else {
        0
    }
}

/// The system's units: clock ticks per second (USER_HZ) and page size.
#[derive(Clone, Copy, Debug)]
struct Units {
    clk_tck: u64,
    page_size: u64,
}

/// CPU used since the previous reading of the *same* process, in ticks and
/// as a percentage of one core over the time between the readings. Zero on
/// a first sighting, when the start time differs (the PID was reused), when
/// the counter went backwards, or when no time passed; never negative.
pub(crate) fn cpu_since(previous: Option<&TickSample>, current: &TickSample, clk_tck: u64) -> (u64, f64) {
    let Some(previous) = previous.filter(|previous| previous.start_ticks == current.start_ticks) else {
        return (0, 0.0);
    };
    let ticks = current.cpu_ticks.saturating_sub(previous.cpu_ticks);
    let elapsed_ns = current.ts_ns.saturating_sub(previous.ts_ns);
    if elapsed_ns == 0 || clk_tck == 0 {
        return (ticks, 0.0);
    }
    let cpu_seconds = ticks as f64 / clk_tck as f64;
    (ticks, cpu_seconds / (elapsed_ns as f64 / 1e9) * 100.0)
}

/// Clock ticks since boot to nanoseconds since boot.
pub(crate) fn ticks_to_ns(ticks: u64, clk_tck: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (best effort, as Go
/// programs do at start), so the scanner can keep a descriptor for every
/// process on a busy host. Returns the soft limit now in force (`None`:
/// unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    }
    getrlimit(Resource::Nofile).current
}

/// Three quarters of the soft `RLIMIT_NOFILE`, the rest left to the agent's
/// other files and sockets (at least 64 of them).
fn default_max_open_fds() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    soft.map_or(usize::MAX, |soft| {
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        soft.saturating_sub((soft / 4).max(64))
    })
}

/// CLOCK_BOOTTIME in nanoseconds: monotonic, and the clock `stat`'s start
/// times count on (it keeps running during suspend).
pub fn boottime_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let ns = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    u64::try_from(ns).unwrap_or(0)
}

/// The numeric entries of `proc_root`, in PID order.
fn list_pids(proc_root: &Path, pids: &mut Vec<u32>) -> io::Result<()> {
    pids.clear();
    for entry in std::fs::read_dir(proc_root)? {
        let entry = entry?;
        if let Some(pid) = parse_pid(entry.file_name().as_bytes()) {
            pids.push(pid);
        }
    }
    // `/proc` lists in PID order already; other trees (tests) may not.
    pids.sort_unstable();
    Ok(())
}

fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0u32, |value, &b| value.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

/// Reads a whole `stat` line with `pread` at offset 0, growing the buffer
/// if a line ever fills it.
fn read_stat<'b>(file: &File, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
    loop {
        let n = file.read_at(buf, 0)?;
        if n < buf.len() {
            return Ok(&buf[..n]);
        }
        let len = buf.len();
        buf.resize(len * 2, 0);
    }
}

/// Gone (not an error) or unreadable (counted, reported in `/health`).
fn classify(path: &Path, error: &io::Error) -> Reading {
    const ESRCH: i32 = 3;
    if error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(ESRCH) {
        Reading::Vanished
    } else {
        Reading::Unreadable(format!("{}: {error}", path.display()))
    }
}

/// Display name and command line of the process whose directory is `dir`.
fn describe(dir: &Path, comm: &[u8], config: &Config) -> (Arc<str>, Arc<str>) {
    let Config { cmdline_max_bytes, empty, .. } = config;
    let cmdline_max_bytes = *cmdline_max_bytes;
    let name: Arc<str> = if comm.is_empty() {
        match std::fs::read_link(dir.join("exe")) {
            Ok(target) => Arc::from(exe_basename(&target.to_string_lossy())),
            Err(_) => Arc::clone(empty),
        }
    } else {
        Arc::from(String::from_utf8_lossy(comm))
    };
    let cmdline = if cmdline_max_bytes == 0 {
        Arc::clone(empty)
    } else {
        read_cmdline(&dir.join("cmdline"), config).map_or_else(|| Arc::clone(empty), Arc::from)
    };
    (name, cmdline)
}

/// At most `cmdline_max_bytes` (plus a few, so that a character cut by the
/// read is not mistaken for invalid UTF-8) of a command line, scrubbed
/// argument by argument (counted in `config.scrubbed`), then cleaned.
fn read_cmdline(path: &Path, config: &Config) -> Option<String> {
    let max_bytes = config.cmdline_max_bytes;
    let mut raw = Vec::new();
    File::open(path).ok()?.take(max_bytes as u64 + 4).read_to_end(&mut raw).ok()?;
    let (raw, scrubbed) = super::scrub_options::scrub_cmdline_bytes(&config.scrubber, raw);
    config.scrubbed.set(config.scrubbed.get() + scrubbed as u64);
    let line = clean_cmdline(&raw, max_bytes);
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
#[path = "scanner_tests.rs"]
mod tests;
