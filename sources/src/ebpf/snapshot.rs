//! The processes already running when the source starts (issue #14), read
//! from `/proc` once, so that the first event of a process that predates
//! the agent still has its ancestry.
//!
//! The reader takes the snapshot after the programs are attached and
//! before its first drain of the ring: a process that starts, execs or
//! exits meanwhile is in the snapshot, in the ring, or both (the ring's
//! events then follow its snapshot), never in neither. It runs on the
//! blocking pool ([`read`]); the reader sends the result as
//! `ProcessSnapshot` events, oldest first (by start time, parents before
//! children on ties), in batches of at most `MAX_BATCH`, with event ids
//! from the ring's sequence.
//!
//! Per process (`/proc/PID/…`): the key from `stat` (pid and start time
//! in ticks → ns, as the procfs source and the kernel events compute it),
//! the parent's key (`ppid` and the parent's own start time; pid 0's is
//! `0:0`), `comm` and `tty_nr` (named as the exec record names ttys) from
//! `stat`; real and effective uid and real gid from `status`; the `exe`
//! and `cwd` links; argv from `cmdline`, bounded like the kernel's
//! capture ([`ARGV_LEN`], then `argv_truncated`) and scrubbed; `loginuid`
//! and `sessionid` (`u32::MAX`: unset); the v2 line of `cgroup`; and the
//! executable's [`FileKey`] (`stat` through the `exe` link) for its hash.
//! Kernel threads have no exe, argv or file. A process that vanishes while
//! it is read is left out (a race, not an error). A denied `exe` or `cwd`
//! link (the kernel's ptrace access check: a process in another user
//! namespace, or one that made itself non-dumpable, seen without
//! CAP_SYS_PTRACE) leaves the field empty and is counted in `restricted`:
//! expected, not a fault. Any other file that cannot be read leaves its
//! field empty and is counted in `unreadable` (the source reports it as
//! degraded).

use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::event::{Argv, HashState, ProcessSnapshot};
use pipeline::{EventMeta, ProcessKey};

use crate::exe_hash::FileKey;
use crate::identity::{cgroup_v2_path, Users};
use crate::procfs::{parse_stat, scrub_options, tty_name};
use crate::scrub::Scrubber;

use super::records::ARGV_LEN;

/// What one read of `/proc` found.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Oldest first, parents before children; event ids not yet set
    /// (0) and hashes not yet asked for (`not_requested`).
    pub processes: Vec<ProcessSnapshot>,
    /// The executable of each process (same order).
    pub files: Vec<ExeFile>,
    /// Entries listed in `/proc`.
    pub listed: usize,
    /// Gone before they could be read (left out).
    pub vanished: usize,
    /// Processes with a file that could not be read for another reason,
    /// and the first such failure.
    pub unreadable: usize,
    pub first_unreadable: Option<String>,
    /// Processes whose `exe` or `cwd` link was denied, and the first.
    pub restricted: usize,
    pub first_restricted: Option<String>,
    /// Secret values scrubbed from argv.
    pub scrubbed: usize,
    pub elapsed: Duration,
}

/// A snapshot process's executable, for its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExeFile {
    /// A kernel thread: nothing to hash.
    None,
    /// There is one, but it could not be seen (denied, or gone).
    Unknown,
    File(FileKey),
}

/// One process as read, before ordering.
struct Read {
    event: ProcessSnapshot,
    ppid: u32,
    file: ExeFile,
}

/// Reads every process under `proc_root`. Fails only when the directory
/// cannot be listed. Blocking.
pub fn read(proc_root: &Path, users: &mut Users, scrubber: &Scrubber, ts_ns: u64) -> io::Result<Snapshot> {
    let started = Instant::now();
    let clk_tck = rustix::param::clock_ticks_per_second().max(1);
    let mut snapshot = Snapshot::default();
    let mut pids: Vec<u32> = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let entry = entry?;
        if let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) {
            pids.push(pid);
        }
    }
    snapshot.listed = pids.len();
    let mut read = Vec::with_capacity(pids.len());
    let mut reader = ProcessReader {
        dir: proc_root.to_owned(),
        buf: Vec::with_capacity(4096),
        failed: None,
        denied: None,
        gone: false,
    };
    for pid in pids {
        reader.start(proc_root, pid);
        match reader.process(pid, clk_tck, scrubber, ts_ns) {
            Some((process, scrubbed)) if !reader.gone => {
                snapshot.scrubbed += scrubbed;
                if let Some(failure) = reader.failed.take() {
                    snapshot.unreadable += 1;
                    snapshot.first_unreadable.get_or_insert(failure);
                }
                if let Some(denied) = reader.denied.take() {
                    snapshot.restricted += 1;
                    snapshot.first_restricted.get_or_insert(denied);
                }
                read.push(process);
            }
            _ => snapshot.vanished += 1,
        }
    }
    // Parents' keys: from this read, else the parent's own stat (a parent
    // that started after its listing was read, or died since: start 0).
    let starts: HashMap<u32, u64> = read.iter().map(|r| (r.event.process.pid, r.event.process.start_time_ns)).collect();
    let now = Instant::now();
    let mut missing_user = false;
    for process in &mut read {
        let ppid = process.ppid;
        let start_time_ns = match ppid {
            0 => 0,
            _ => {
                starts.get(&ppid).copied().or_else(|| start_of(&proc_root.join(ppid.to_string()), clk_tck)).unwrap_or(0)
            }
        };
        process.event.parent = ProcessKey { pid: ppid, start_time_ns };
        missing_user |= users.get(process.event.uid).is_none();
    }
    if missing_user && users.reread_due(now) {
        users.reread();
    }
    for process in &mut read {
        if let Some(name) = users.get(process.event.uid) {
            process.event.user = name.clone();
        }
    }
    for process in order(read) {
        snapshot.files.push(process.file);
        snapshot.processes.push(process.event);
    }
    snapshot.elapsed = started.elapsed();
    Ok(snapshot)
}

/// Oldest first (start time, then pid), each parent before its children
/// when both are listed (ties within a clock tick, pid wrap-around).
fn order(mut read: Vec<Read>) -> Vec<Read> {
    read.sort_unstable_by_key(|r| (r.event.process.start_time_ns, r.event.process.pid));
    let index: HashMap<ProcessKey, usize> = read.iter().enumerate().map(|(i, r)| (r.event.process, i)).collect();
    let mut placed = vec![false; read.len()];
    let mut sequence = Vec::with_capacity(read.len());
    for first in 0..read.len() {
        // Walk up to the oldest unplaced ancestor, then place down again.
        let mut chain = Vec::new();
        let mut at = Some(first);
        let mut seen = HashSet::new();
        while let Some(i) = at.filter(|&i| !placed[i] && seen.insert(i)) {
            chain.push(i);
            at = index.get(&read[i].event.parent).copied();
        }
        for &i in chain.iter().rev() {
            placed[i] = true;
            sequence.push(i);
        }
    }
    let mut slots: Vec<Option<Read>> = read.into_iter().map(Some).collect();
    sequence.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The numbers after `key` on its `status` line (`Uid:` real, effective,
/// saved, filesystem).
fn ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// A process's start time from its `stat`, in ns.
fn start_of(dir: &Path, clk_tck: u64) -> Option<u64> {
    let stat = std::fs::read(dir.join("stat")).ok()?;
    parse_stat(&stat).map(|fields| ticks_to_ns(fields.start_ticks, clk_tck))
}

/// As the procfs source converts ticks, so keys agree.
fn ticks_to_ns(ticks: u64, clk_tck: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck.max(1))).unwrap_or(u64::MAX)
}

/// Reads one `/proc/PID` at a time (into one reused buffer: `std::fs::read`
/// would `fstat` every file first), noting whether it vanished, the first
/// denied link and the first other failure.
struct ProcessReader {
    dir: std::path::PathBuf,
    buf: Vec<u8>,
    failed: Option<String>,
    denied: Option<String>,
    gone: bool,
}

impl ProcessReader {
    /// Points at `/proc/PID`, forgetting the last process's failures.
    fn start(&mut self, proc_root: &Path, pid: u32) {
        self.dir = proc_root.join(pid.to_string());
        (self.failed, self.denied, self.gone) = (None, None, false);
    }

    /// Reads a whole file into `buf`.
    fn read(&mut self, name: &str) -> io::Result<()> {
        use std::io::Read as _;
        self.buf.clear();
        std::fs::File::open(self.dir.join(name))?.read_to_end(&mut self.buf).map(drop)
    }

    /// Notes a failure: a vanished process (`ENOENT`, `ESRCH`), a denied
    /// link, or another problem. `link`: `exe` or `cwd`, where `ENOENT` is
    /// normal (a kernel thread's, a zombie's) and `EACCES` a ptrace check.
    fn note(&mut self, name: &str, error: &io::Error, link: bool) {
        let what = || format!("{}/{name}: {error}", self.dir.display());
        match error.kind() {
            ErrorKind::NotFound if link => {}
            ErrorKind::NotFound => self.gone = true,
            ErrorKind::PermissionDenied if link => {
                self.denied.get_or_insert_with(what);
            }
            _ if error.raw_os_error() == Some(3) => self.gone = true, // ESRCH
            _ => {
                self.failed.get_or_insert_with(what);
            }
        }
    }

    /// A file's text (lossy), `None` when it cannot be read (noted).
    fn text(&mut self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        match self.read(name) {
            Ok(()) => Some(String::from_utf8_lossy(&self.buf)),
            Err(error) => {
                self.note(name, &error, false);
                None
            }
        }
    }

    fn link(&mut self, name: &str) -> Arc<str> {
        match std::fs::read_link(self.dir.join(name)) {
            Ok(target) => Arc::from(target.to_string_lossy()),
            Err(error) => {
                self.note(name, &error, true);
                Arc::from("")
            }
        }
    }

    /// The process and the number of values scrubbed from its argv;
    /// `None` when its `stat` cannot be read or parsed (it vanished).
    fn process(&mut self, pid: u32, clk_tck: u64, scrubber: &Scrubber, ts_ns: u64) -> Option<(Read, usize)> {
        self.read("stat").ok()?;
        let fields = parse_stat(&self.buf)?;
        let (ppid, tty_nr, start_ticks) = (fields.ppid, fields.tty_nr, fields.start_ticks);
        let kernel_thread = fields.is_kernel_thread();
        let comm: Arc<str> = Arc::from(String::from_utf8_lossy(fields.comm));
        let start_time_ns = ticks_to_ns(start_ticks, clk_tck);
        let (uid, gid) = match self.text("status") {
            Some(status) => (ids(&status, "Uid:"), ids(&status, "Gid:")),
            None => (Vec::new(), Vec::new()),
        };
        let (mut exe, mut argv, mut argv_truncated, mut file, mut scrubbed) =
            (Arc::from(""), Argv::default(), false, ExeFile::None, 0);
        if !kernel_thread {
            exe = self.link("exe");
            file = ExeFile::Unknown;
            if !exe.is_empty() {
                match std::fs::metadata(self.dir.join("exe")) {
                    Ok(metadata) => file = ExeFile::File(FileKey::of(&metadata)),
                    Err(error) => self.note("exe", &error, true),
                }
            }
            (argv, argv_truncated) = self.argv();
            scrubbed = scrub_options::scrub_argv(scrubber, &mut argv);
        }
        let cwd = self.link("cwd");
        let number = |reader: &mut ProcessReader, name: &str| {
            reader.text(name).and_then(|text| text.trim().parse::<u32>().ok()).unwrap_or(u32::MAX)
        };
        let loginuid = number(self, "loginuid");
        let session_id = number(self, "sessionid");
        let cgroup_path = self.text("cgroup").map_or_else(|| Arc::from(""), |text| Arc::from(cgroup_v2_path(&text)));
        if self.gone || self.failed.is_some() {
            // Confirm: still there, and still the same process?
            self.gone = start_of(&self.dir, clk_tck) != Some(start_time_ns);
        }
        let event = ProcessSnapshot {
            meta: EventMeta { ts_ns, event_id: 0 },
            process: ProcessKey { pid, start_time_ns },
            parent: ProcessKey { pid: ppid, start_time_ns: 0 },
            uid: uid.first().copied().unwrap_or(u32::MAX),
            euid: uid.get(1).copied().unwrap_or(u32::MAX),
            gid: gid.first().copied().unwrap_or(u32::MAX),
            user: Arc::from(""),
            comm,
            exe,
            argv,
            argv_truncated,
            cwd,
            tty: Arc::from(tty_name(tty_nr)),
            loginuid,
            session_id,
            cgroup_path,
            exe_sha256: Arc::from(""),
            exe_hash: HashState::NotRequested,
            context: None,
        };
        Some((Read { event, ppid, file }, scrubbed))
    }

    /// At most [`ARGV_LEN`] bytes of `cmdline`, as the kernel bounds argv.
    fn argv(&mut self) -> (Argv, bool) {
        use std::io::Read as _;
        self.buf.clear();
        let path = self.dir.join("cmdline");
        let read =
            std::fs::File::open(&path).and_then(|file| file.take(ARGV_LEN as u64 + 1).read_to_end(&mut self.buf));
        if let Err(error) = read {
            self.note("cmdline", &error, false);
            return (Argv::default(), false);
        }
        let truncated = self.buf.len() > ARGV_LEN;
        (Argv::from_nul_separated(&self.buf[..self.buf.len().min(ARGV_LEN)]), truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pid: u32, ppid: u32, start: u64) -> Read {
        let mut event = ProcessSnapshot {
            meta: EventMeta { ts_ns: 0, event_id: 0 },
            process: ProcessKey { pid, start_time_ns: start },
            parent: ProcessKey { pid: ppid, start_time_ns: 0 },
            uid: 0,
            euid: 0,
            gid: 0,
            user: Arc::from(""),
            comm: Arc::from(""),
            exe: Arc::from(""),
            argv: Argv::default(),
            argv_truncated: false,
            cwd: Arc::from(""),
            tty: Arc::from(""),
            loginuid: 0,
            session_id: 0,
            cgroup_path: Arc::from(""),
            exe_sha256: Arc::from(""),
            exe_hash: HashState::NotRequested,
            context: None,
        };
        event.parent.start_time_ns = if ppid == 0 { 0 } else { start };
        Read { event, ppid, file: ExeFile::None }
    }

    #[test]
    fn parents_come_before_children_even_within_one_tick() {
        // 300 (parent) and 7 (its child after pid wrap-around) in one tick,
        // 5 an unrelated older process, 9 whose parent is not listed.
        let mut processes = vec![read(7, 300, 100), read(300, 1, 100), read(5, 1, 50), read(1, 0, 0), read(9, 42, 60)];
        processes[0].event.parent.start_time_ns = 100;
        processes[1].event.parent.start_time_ns = 0;
        processes[2].event.parent.start_time_ns = 0;
        let pids: Vec<u32> = order(processes).iter().map(|r| r.event.process.pid).collect();
        assert_eq!(pids, [1, 5, 9, 300, 7]);
    }

    #[test]
    fn a_parent_loop_does_not_hang() {
        let mut a = read(10, 11, 5);
        let mut b = read(11, 10, 5);
        a.event.parent.start_time_ns = 5;
        b.event.parent.start_time_ns = 5;
        assert_eq!(order(vec![a, b]).len(), 2);
    }
}
