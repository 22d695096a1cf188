//! Test helpers for the procfs source: fake proc trees, children that die
//! with the test, and a lock for tests that count descriptors on the real
//! `/proc`.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};

/// Tests that scan the real `/proc` and look at which descriptors are open
/// take this lock, so another test's scanner never holds a descriptor on
/// their children.
static REAL_PROC: Mutex<()> = Mutex::new(());

/// Holds [`REAL_PROC`] (a failed test must not poison the others).
pub fn real_proc_lock() -> MutexGuard<'static, ()> {
    REAL_PROC.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Spawned processes, killed and reaped when dropped (also on panic).
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Spawns `program args…` and returns its pid.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> u32 {
        let child = Command::new(program).args(args).spawn().unwrap_or_else(|e| panic!("cannot spawn {program}: {e}"));
        let pid = child.id();
        self.0.push(child);
        pid
    }

    /// Kills and reaps one child now.
    pub fn kill(&mut self, pid: u32) {
        if let Some(index) = self.0.iter().position(|child| child.id() == pid) {
            let mut child = self.0.swap_remove(index);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory laid out like `/proc`, with the files the scanner reads.
pub struct FakeProc {
    pub dir: tempfile::TempDir,
}

/// The fields of a fake `stat` line.
#[derive(Clone, Debug)]
pub struct FakeStat<'a> {
    pub comm: &'a str,
    pub state: char,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub threads: u32,
    pub start_ticks: u64,
    pub rss_pages: u64,
}

impl Default for FakeStat<'_> {
    fn default() -> Self {
        FakeStat { comm: "fake", state: 'S', ppid: 1, utime: 0, stime: 0, threads: 1, start_ticks: 1000, rss_pages: 10 }
    }
}

impl FakeStat<'_> {
    /// The `stat` line of process `pid` (all 52 fields).
    pub fn line(&self, pid: u32) -> String {
        let FakeStat { comm, state, ppid, utime, stime, threads, start_ticks, rss_pages } = self;
        format!(
            "{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 {threads} 0 \
             {start_ticks} 8192000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }
}

impl FakeProc {
    /// An empty tree with a few non-process entries, as `/proc` has.
    pub fn new() -> FakeProc {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["sys", "self1", "1a"] {
            std::fs::create_dir(dir.path().join(name)).expect("non-process entry");
        }
        std::fs::write(dir.path().join("uptime"), "1.0 1.0\n").expect("non-process file");
        FakeProc { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Adds (or rewrites in place, keeping the inode, as a reused PID's
    /// entry would read through an open descriptor) a process.
    pub fn set(&self, pid: u32, stat: &FakeStat<'_>, cmdline: &[u8]) {
        let dir = self.root().join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("pid dir");
        std::fs::write(dir.join("stat"), stat.line(pid)).expect("stat");
        std::fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
    }
}
