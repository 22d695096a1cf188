//! The SHA-256 of executed files (issue #14), computed off the hot path.
//!
//! The reader asks [`ExeHasher::request`] once per exec (and per process of
//! the start-up snapshot). The answer comes from a bounded cache keyed by
//! the file's [`FileKey`] — (device, inode, size, mtime), so a file changed
//! in place is a new key — or the file is queued for a dedicated thread
//! (`hostflow-exe-hash`) behind a bounded queue of [`QUEUE_JOBS`] files;
//! execs of a file already queued wait on that one job. A file bigger than
//! `exe_hash_max_bytes` is not hashed (`too_large`); a full queue answers
//! `dropped`. Nothing blocks the caller: a request is a map lookup and a
//! `try_send`.
//!
//! The thread opens `/proc/PID/exe` first — the very file the process runs,
//! reachable across mount namespaces while the process lives — and the
//! exec's path (against its cwd when relative) when that fails (the process
//! already exited). Either way the opened file's `fstat` must be the file
//! the kernel executed: same inode, size and mtime, and the same device —
//! except when the kernel's device is anonymous (major 0: overlayfs, btrfs
//! subvolumes), whose `stat` reports the underlying device instead. A file
//! that cannot be opened, or is not that file, is `unavailable`.
//!
//! Devices are compared in the kernel's encoding (`major << 20 | minor`,
//! what exec records carry in `ExecFile::dev`); [`kernel_dev`] converts a
//! `stat` `st_dev` to it.
//!
//! Every request is counted once by its outcome in
//! `hostflow_exe_hash_total{component,result}`: `hit` (cache), `computed`
//! (from a job, its own or one it joined), `too_large`, `dropped`,
//! `unavailable`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use metrics::Counter;
use pipeline::event::HashState;
use pipeline::ProcessKey;
use sha2::{Digest as _, Sha256};

/// `hostflow_exe_hash_total{component,result}`.
pub const EXE_HASH_TOTAL: &str = "hostflow_exe_hash_total";
/// Files waiting for (or being hashed by) the thread, at most.
pub const QUEUE_JOBS: usize = 1024;
/// Execs waiting on queued files, at most (beyond: `dropped`).
pub const MAX_WAITERS: usize = 65_536;
/// Hashes kept; the oldest insertion goes first beyond this.
pub const CACHE_ENTRIES: usize = 16_384;
/// Default `exe_hash_max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Read size while hashing.
const READ_CHUNK: usize = 64 << 10;

/// Which file: what the kernel saw at the exec, or `stat` of
/// `/proc/PID/exe` for a running process. `dev` in the kernel's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: u64,
}

impl FileKey {
    /// The key of a file's metadata (`stat`, `fstat`).
    pub fn of(metadata: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: kernel_dev(metadata.dev()),
            inode: metadata.ino(),
            size: metadata.len(),
            mtime_ns: mtime_ns(metadata),
        }
    }

    /// Whether an opened file (`found`, from `fstat`) is the file this key
    /// names (see the module doc for the anonymous-device exception).
    pub fn matches(&self, found: &FileKey) -> bool {
        let same_dev = self.dev == found.dev || self.dev >> 20 == 0;
        same_dev && self.inode == found.inode && self.size == found.size && self.mtime_ns == found.mtime_ns
    }
}

/// A `stat` `st_dev` (glibc's `makedev` layout) in the kernel's internal
/// encoding, `major << 20 | minor`.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | minor
}

fn mtime_ns(metadata: &std::fs::Metadata) -> u64 {
    let secs = u64::try_from(metadata.mtime()).unwrap_or(0);
    let nanos = u64::try_from(metadata.mtime_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// One file to hash: where to find it and what it must be.
#[derive(Clone, Debug)]
pub struct Job {
    pub key: FileKey,
    /// `/proc/PID/exe` is tried first; 0 skips it.
    pub pid: u32,
    /// Tried next (absolute).
    pub path: Option<PathBuf>,
}

/// What became of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub key: FileKey,
    /// Lower-case hex, or `None`: unavailable.
    pub sha256: Option<Arc<str>>,
}

/// Opens the job's file (`/proc/PID/exe`, then the path), checks it is the
/// file of the key and hashes it; `None` when neither works. Blocking.
pub fn hash_job(job: &Job) -> Option<Arc<str>> {
    let proc_exe = (job.pid != 0).then(|| PathBuf::from(format!("/proc/{}/exe", job.pid)));
    for path in proc_exe.iter().chain(job.path.iter()) {
        let Ok(file) = File::open(path) else { continue };
        let Ok(metadata) = file.metadata() else { continue };
        if !metadata.is_file() || !job.key.matches(&FileKey::of(&metadata)) {
            continue;
        }
        if let Some(hash) = hash_file(file, job.key.size) {
            return Some(hash);
        }
    }
    None
}

/// SHA-256 of an open file that must hold exactly `size` bytes.
fn hash_file(mut file: File, size: u64) -> Option<Arc<str>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        total += n as u64;
        if total > size {
            return None;
        }
        hasher.update(&buf[..n]);
    }
    (total == size).then(|| Arc::from(hex(&hasher.finalize())))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// A bounded map with first-in, first-out eviction: an executable that is
/// still being run is hashed again after eviction, at worst.
#[derive(Debug)]
pub struct Cache {
    map: HashMap<FileKey, Arc<str>>,
    order: VecDeque<FileKey>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub fn get(&self, key: &FileKey) -> Option<&Arc<str>> {
        self.map.get(key)
    }

    pub fn insert(&mut self, key: FileKey, sha256: Arc<str>) {
        if self.map.insert(key, sha256).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Who waits on a queued file: a process, and where its event is — a slot
/// in the batch being built (`Some`, filled in place if the hash comes in
/// time) or already sent (`None`: an `ExeHash` event follows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub process: ProcessKey,
    pub exe: Arc<str>,
    pub slot: Option<usize>,
}

/// A request's answer: the state and, for `Ok`, the hash.
pub type Answer = (HashState, Arc<str>);

/// The `hostflow_exe_hash_total` handles of one component.
#[derive(Clone)]
struct HashCounters {
    hit: Counter,
    computed: Counter,
    too_large: Counter,
    dropped: Counter,
    unavailable: Counter,
}

impl HashCounters {
    fn new(component: &str) -> HashCounters {
        metrics::describe_counter!(
            EXE_HASH_TOTAL,
            metrics::Unit::Count,
            "Executable hash requests by outcome (hit, computed, too_large, dropped, unavailable)."
        );
        let counter = |result: &'static str| metrics::counter!(EXE_HASH_TOTAL, "component" => component.to_owned(), "result" => result);
        HashCounters {
            hit: counter("hit"),
            computed: counter("computed"),
            too_large: counter("too_large"),
            dropped: counter("dropped"),
            unavailable: counter("unavailable"),
        }
    }
}

/// The reader's side: cache, queue, waiters and counters.
pub struct ExeHasher {
    cache: Cache,
    jobs: SyncSender<Job>,
    done: tokio::sync::mpsc::Receiver<Done>,
    pending: HashMap<FileKey, Vec<Waiter>>,
    n_waiters: usize,
    max_bytes: u64,
    counters: HashCounters,
}

impl ExeHasher {
    /// Starts the hashing thread. Fails only when the thread cannot be
    /// spawned.
    pub fn start(component: &str, max_bytes: u64) -> std::io::Result<ExeHasher> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE_JOBS);
        // In flight ≤ QUEUE_JOBS (see `request`), so the thread never waits
        // on this channel.
        let (results, done) = tokio::sync::mpsc::channel(QUEUE_JOBS + 1);
        std::thread::Builder::new().name("hostflow-exe-hash".into()).spawn(move || {
            while let Ok(job) = queue.recv() {
                let sha256 = hash_job(&job);
                if results.blocking_send(Done { key: job.key, sha256 }).is_err() {
                    break;
                }
            }
        })?;
        Ok(ExeHasher {
            cache: Cache::new(CACHE_ENTRIES),
            jobs,
            done,
            pending: HashMap::new(),
            n_waiters: 0,
            max_bytes,
            counters: HashCounters::new(component),
        })
    }

    /// The hash of `job`'s file now (hit, too large, dropped), or `Pending`
    /// with `waiter` registered: [`ExeHasher::complete`] hands it back.
    pub fn request(&mut self, job: Job, waiter: Waiter) -> Answer {
        if let Some(sha256) = self.cache.get(&job.key) {
            self.counters.hit.increment(1);
            return (HashState::Ok, sha256.clone());
        }
        if job.key.size > self.max_bytes {
            self.counters.too_large.increment(1);
            return (HashState::TooLarge, Arc::from(""));
        }
        if self.n_waiters >= MAX_WAITERS {
            self.counters.dropped.increment(1);
            return (HashState::Dropped, Arc::from(""));
        }
        if let Some(waiters) = self.pending.get_mut(&job.key) {
            waiters.push(waiter);
            self.n_waiters += 1;
            return (HashState::Pending, Arc::from(""));
        }
        if self.pending.len() >= QUEUE_JOBS {
            self.counters.dropped.increment(1);
            return (HashState::Dropped, Arc::from(""));
        }
        let key = job.key;
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.pending.insert(key, vec![waiter]);
                self.n_waiters += 1;
                (HashState::Pending, Arc::from(""))
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.increment(1);
                (HashState::Dropped, Arc::from(""))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.unavailable.increment(1);
                (HashState::Unavailable, Arc::from(""))
            }
        }
    }

    /// Counts a request that cannot even be made (the file is not
    /// visible); `Unavailable`.
    pub fn unavailable(&self) -> HashState {
        self.counters.unavailable.increment(1);
        HashState::Unavailable
    }

    /// The next finished job (cancel-safe, for `select!`). Never resolves
    /// while nothing is queued.
    pub async fn next_done(&mut self) -> Option<Done> {
        self.done.recv().await
    }

    /// Records a finished job: caches the hash and hands back the waiters
    /// with the answer (each counted as `computed` or `unavailable`).
    pub fn complete(&mut self, done: Done) -> (Answer, Vec<Waiter>) {
        let waiters = self.pending.remove(&done.key).unwrap_or_default();
        self.n_waiters -= waiters.len();
        let n = waiters.len() as u64;
        let answer = match done.sha256 {
            Some(sha256) => {
                self.cache.insert(done.key, sha256.clone());
                self.counters.computed.increment(n);
                (HashState::Ok, sha256)
            }
            None => {
                self.counters.unavailable.increment(n);
                (HashState::Unavailable, Arc::from(""))
            }
        };
        (answer, waiters)
    }

    /// Marks the waiters on these files as sent: their batch left with
    /// `Pending`.
    pub fn detach_slots(&mut self, keys: &[FileKey]) {
        for key in keys {
            for waiter in self.pending.get_mut(key).into_iter().flatten() {
                waiter.slot = None;
            }
        }
    }

    /// Files queued or being hashed.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Hashes cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::Instant;

    fn key_of(path: &std::path::Path) -> FileKey {
        FileKey::of(&std::fs::metadata(path).expect("stat"))
    }

    #[test]
    fn devices_convert_to_the_kernel_encoding() {
        // glibc makedev(8, 1) = 0x801; makedev(259, 65537).
        assert_eq!(kernel_dev(0x801), 8 << 20 | 1);
        let (major, minor) = (259u64, 65_537u64);
        let st_dev = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32);
        assert_eq!(kernel_dev(st_dev), major << 20 | minor);
    }

    #[test]
    fn a_file_hashes_like_sha256sum_and_a_changed_one_is_not_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").expect("write");
        let key = key_of(&path);
        let job = Job { key, pid: 0, path: Some(path.clone()) };
        assert_eq!(
            hash_job(&job).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "FIPS 180-2 test vector"
        );
        // Another inode, another size or mtime: not the file executed.
        assert_eq!(hash_job(&Job { key: FileKey { inode: key.inode + 1, ..key }, ..job.clone() }), None);
        assert_eq!(hash_job(&Job { key: FileKey { size: 4, ..key }, ..job.clone() }), None);
        assert_eq!(hash_job(&Job { key: FileKey { dev: key.dev + 1, ..key }, ..job.clone() }), None);
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"d").expect("append");
        assert_eq!(hash_job(&job), None, "grown since");
        assert_eq!(hash_job(&Job { path: Some(dir.path().join("gone")), ..job }), None);
    }

    #[test]
    fn an_anonymous_device_is_matched_on_inode_size_and_mtime() {
        let key = FileKey { dev: 42, inode: 7, size: 3, mtime_ns: 9 };
        assert!(key.matches(&FileKey { dev: 8 << 20 | 1, ..key }), "overlay: stat shows the lower device");
        assert!(!key.matches(&FileKey { inode: 8, ..key }));
        let real = FileKey { dev: 8 << 20 | 1, ..key };
        assert!(!real.matches(&FileKey { dev: 8 << 20 | 2, ..key }), "a real device must agree");
    }

    #[test]
    fn the_cache_evicts_the_oldest() {
        let mut cache = Cache::new(2);
        let key = |inode| FileKey { dev: 1, inode, size: 1, mtime_ns: 1 };
        for inode in 1..=3 {
            cache.insert(key(inode), Arc::from(format!("{inode}")));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key(1)).is_none());
        assert_eq!(cache.get(&key(3)).map(|h| &**h), Some("3"));
    }

    fn waiter(pid: u32, slot: Option<usize>) -> Waiter {
        Waiter { process: ProcessKey { pid, start_time_ns: 1 }, exe: Arc::from("/x"), slot }
    }

    #[tokio::test]
    async fn requests_hit_queue_join_and_refuse_large_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bin");
        std::fs::write(&path, vec![7u8; 100_000]).expect("write");
        let key = key_of(&path);
        let mut hasher = ExeHasher::start("t", 1 << 20).expect("thread");
        let job = Job { key, pid: 0, path: Some(path.clone()) };
        assert_eq!(hasher.request(job.clone(), waiter(1, Some(0))).0, HashState::Pending);
        assert_eq!(hasher.request(job.clone(), waiter(2, None)).0, HashState::Pending, "joins the queued job");
        assert_eq!(hasher.in_flight(), 1, "one job for both");
        let done = hasher.next_done().await.expect("done");
        let ((state, sha256), waiters) = hasher.complete(done);
        assert_eq!(state, HashState::Ok);
        assert_eq!(waiters, [waiter(1, Some(0)), waiter(2, None)]);
        let expected = hex(&Sha256::digest(std::fs::read(&path).expect("read")));
        assert_eq!(&*sha256, expected);
        assert_eq!(hasher.request(job.clone(), waiter(3, None)), (HashState::Ok, sha256), "cached");
        let large = Job { key: FileKey { size: 2 << 20, ..key }, ..job };
        assert_eq!(hasher.request(large, waiter(4, None)).0, HashState::TooLarge);
        assert_eq!(hasher.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_a_missing_file_is_unavailable() {
        let mut hasher = ExeHasher::start("t", 1 << 20).expect("thread");
        let missing = |inode| Job {
            key: FileKey { dev: 1, inode, size: 1, mtime_ns: 1 },
            pid: 0,
            path: Some(PathBuf::from("/nonexistent/hostflow")),
        };
        // In flight until `complete`: the queue is full after QUEUE_JOBS files.
        for inode in 0..QUEUE_JOBS as u64 {
            assert_eq!(hasher.request(missing(inode), waiter(1, None)).0, HashState::Pending);
        }
        assert_eq!(hasher.request(missing(u64::MAX), waiter(2, None)).0, HashState::Dropped);
        let done = hasher.next_done().await.expect("done");
        let ((state, sha256), waiters) = hasher.complete(done);
        assert_eq!((state, &*sha256, waiters.len()), (HashState::Unavailable, "", 1));
        assert_eq!(hasher.request(missing(u64::MAX), waiter(2, None)).0, HashState::Pending, "room again");
    }

    /// `cargo test --release -p sources exe_hash::tests::hash_costs -- --nocapture`
    /// prints what a cache hit and a miss cost on this host.
    #[test]
    fn hash_costs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let size = 32usize << 20;
        let mut file = File::create(&path).expect("create");
        let block: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
        for _ in 0..size >> 20 {
            file.write_all(&block).expect("write");
        }
        drop(file);
        let key = key_of(&path);
        let job = Job { key, pid: 0, path: Some(path) };
        let _ = hash_job(&job); // page cache warm
        let started = Instant::now();
        let sha256 = hash_job(&job).expect("hashes");
        let miss = started.elapsed();
        let mut cache = Cache::new(CACHE_ENTRIES);
        for inode in 0..CACHE_ENTRIES as u64 {
            cache.insert(FileKey { inode, ..key }, sha256.clone());
        }
        let rounds = 1_000_000u32;
        let started = Instant::now();
        let mut found = 0usize;
        for i in 0..rounds {
            let probe = FileKey { inode: u64::from(i) % CACHE_ENTRIES as u64, ..key };
            found += usize::from(std::hint::black_box(cache.get(&probe)).is_some());
        }
        let hit_ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
        assert_eq!(found, rounds as usize);
        let mib = size as f64 / f64::from(1 << 20);
        eprintln!(
            "exe hash: cache hit {hit_ns:.0} ns (16 k entries); miss {:.2} ms for {mib:.0} MiB = {:.0} µs/MiB ({:.0} MiB/s)",
            miss.as_secs_f64() * 1e3,
            miss.as_secs_f64() * 1e6 / mib,
            mib / miss.as_secs_f64()
        );
    }
}
