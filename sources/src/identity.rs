//! Names for the numbers the kernel reports (issue #14): user names for
//! uids, and cgroup v2 paths for cgroup ids.
//!
//! - [`Users`]: `/etc/passwd` parsed once (uid → first name listed); a uid
//!   it does not hold makes the caller re-read it, at most once every
//!   [`USERS_REREAD`]. A uid with no entry has the name `""` (unknown).
//! - [`Cgroups`]: a cgroup's id is its directory's inode number in the
//!   cgroup2 filesystem (what `bpf_get_current_cgroup_id` returns and exec
//!   records carry as `cgroup_id`), so the map id → path comes from one
//!   walk of the hierarchy under the cgroup2 mount (found in
//!   `/proc/self/mountinfo`; else `/sys/fs/cgroup` when it is a cgroup2
//!   root). Paths are relative to the mount, `/` for its root, as
//!   `/proc/PID/cgroup` writes them. An id not found makes the caller walk
//!   again, at most once every [`CGROUP_REWALK`]; still missing, its path is
//!   `""` (a cgroup removed since, or outside the mount).
//!
//! Both do blocking file I/O: callers on the async runtime run
//! [`Users::load`], [`Users::reread`] and [`Cgroups::walk`] in
//! `spawn_blocking`; the lookups ([`Users::get`], [`Cgroups::get`]) are map
//! reads. A problem (passwd or the cgroup mount unreadable, no cgroup2
//! mount) is kept in `problem()` for `/health` and counted by the caller in
//! `hostflow_ebpf_identity_errors_total{component,what}`.

use std::collections::HashMap;
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `hostflow_ebpf_identity_errors_total{component,what}`: `what` is
/// `passwd`, `cgroup` or `proc` (the start-up snapshot).
pub const EBPF_IDENTITY_ERRORS_TOTAL: &str = "hostflow_ebpf_identity_errors_total";
/// Shortest time between two reads of the passwd file caused by misses.
pub const USERS_REREAD: Duration = Duration::from_secs(5);
/// Shortest time between two walks of the cgroup hierarchy caused by misses.
pub const CGROUP_REWALK: Duration = Duration::from_millis(100);
/// Deepest cgroup directory walked (a loop guard; real trees are shallow).
const MAX_CGROUP_DEPTH: usize = 64;
/// Most cgroups mapped (the walk stops there and says so).
const MAX_CGROUPS: usize = 1 << 20;

/// uid → user name, from a passwd file.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    names: HashMap<u32, Arc<str>>,
    last_read: Option<Instant>,
    problem: Option<String>,
}

impl Users {
    /// Reads `path` (normally `/etc/passwd`). Blocking.
    pub fn load(path: impl Into<PathBuf>) -> Users {
        let mut users = Users { path: path.into(), names: HashMap::new(), last_read: None, problem: None };
        users.reread();
        users
    }

    /// The name of `uid`, if the file lists it.
    pub fn get(&self, uid: u32) -> Option<&Arc<str>> {
        self.names.get(&uid)
    }

    /// Whether a miss may re-read the file now.
    pub fn reread_due(&self, now: Instant) -> bool {
        self.last_read.is_none_or(|last| now.duration_since(last) >= USERS_REREAD)
    }

    /// Reads the file again (keeping the old names if it cannot be read).
    /// Blocking.
    pub fn reread(&mut self) {
        self.last_read = Some(Instant::now());
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                self.names = parse_passwd(&String::from_utf8_lossy(&bytes));
                self.problem = None;
            }
            Err(error) => {
                self.problem = Some(format!("user names unavailable: cannot read {}: {error}", self.path.display()));
            }
        }
    }

    /// Why names are missing, when the file could not be read.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `name:password:uid:…` lines; the first name of a uid wins (as
/// `getpwuid` returns it). Comments, blank and malformed lines are skipped.
pub fn parse_passwd(text: &str) -> HashMap<u32, Arc<str>> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if name.is_empty() || name.starts_with('#') || name.starts_with('+') || name.starts_with('-') {
            continue;
        }
        if let Ok(uid) = uid.trim().parse::<u32>() {
            names.entry(uid).or_insert_with(|| Arc::from(name));
        }
    }
    names
}

/// cgroup id → path, from walks of the cgroup2 hierarchy.
#[derive(Debug)]
pub struct Cgroups {
    root: Option<PathBuf>,
    paths: HashMap<u64, Arc<str>>,
    last_walk: Option<Instant>,
    problem: Option<String>,
}

impl Cgroups {
    /// Finds the cgroup2 mount and walks it. Blocking.
    pub fn discover() -> Cgroups {
        let mounts = crate::ebpf::host::mounts();
        let root = crate::ebpf::host::mount_point(&mounts, "cgroup2").map(PathBuf::from).or_else(|| {
            let default = Path::new("/sys/fs/cgroup");
            default.join("cgroup.controllers").exists().then(|| default.to_owned())
        });
        match root {
            Some(root) => Cgroups::walked(root),
            None => Cgroups {
                root: None,
                paths: HashMap::new(),
                last_walk: None,
                problem: Some("cgroup paths unavailable: no cgroup2 filesystem is mounted".into()),
            },
        }
    }

    /// Walks the hierarchy under `root` (a cgroup2 mount). Blocking.
    pub fn walked(root: impl Into<PathBuf>) -> Cgroups {
        let mut cgroups = Cgroups { root: Some(root.into()), paths: HashMap::new(), last_walk: None, problem: None };
        cgroups.walk();
        cgroups
    }

    /// The path of cgroup `id`, if the last walk saw it.
    pub fn get(&self, id: u64) -> Option<&Arc<str>> {
        self.paths.get(&id)
    }

    /// Whether a miss may walk again now (never without a mount).
    pub fn walk_due(&self, now: Instant) -> bool {
        self.root.is_some() && self.last_walk.is_none_or(|last| now.duration_since(last) >= CGROUP_REWALK)
    }

    /// Walks the hierarchy again, replacing the map (cgroups removed since
    /// go). Directories that vanish mid-walk are skipped; a root that
    /// cannot be read keeps the old map and sets the problem. Blocking.
    pub fn walk(&mut self) {
        let Some(root) = self.root.clone() else { return };
        self.last_walk = Some(Instant::now());
        let root_inode = match std::fs::metadata(&root) {
            Ok(metadata) => metadata.ino(),
            Err(error) => {
                self.problem = Some(format!("cgroup paths unavailable: cannot read {}: {error}", root.display()));
                return;
            }
        };
        let mut paths = HashMap::with_capacity(self.paths.len().max(64));
        paths.insert(root_inode, Arc::from("/"));
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.clone(), String::new(), 0)];
        let mut problem = None;
        'walk: while let Some((dir, relative, depth)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if depth == 0 => {
                    problem = Some(format!("cgroup paths unavailable: cannot list {}: {error}", dir.display()));
                    break;
                }
                Err(_) => continue, // removed since it was listed
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let path = format!("{relative}/{}", name.to_string_lossy());
                if paths.len() >= MAX_CGROUPS {
                    problem =
                        Some(format!("more than {MAX_CGROUPS} cgroups under {}; the rest unnamed", root.display()));
                    break 'walk;
                }
                paths.insert(entry.ino(), Arc::from(path.as_str()));
                if depth + 1 < MAX_CGROUP_DEPTH {
                    stack.push((entry.path(), path, depth + 1));
                }
            }
        }
        if problem.as_ref().is_none_or(|_| paths.len() > 1) {
            self.paths = paths;
        }
        self.problem = problem;
    }

    /// The cgroup2 mount walked, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Why paths are missing (no mount, unreadable).
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// The v2 path in a `/proc/PID/cgroup` file (its `0::` line), `""` when it
/// has none (a cgroup v1-only host).
pub fn cgroup_v2_path(text: &str) -> &str {
    text.lines().find_map(|line| line.strip_prefix("0::")).unwrap_or("")
}

/// Users and cgroups together: what the ebpf reader fills exec events from.
#[derive(Debug)]
pub struct Identity {
    pub users: Users,
    pub cgroups: Cgroups,
}

impl Identity {
    /// Reads `/etc/passwd` and walks the cgroup2 mount. Blocking.
    pub fn load() -> Identity {
        Identity { users: Users::load("/etc/passwd"), cgroups: Cgroups::discover() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_the_first_name_of_each_uid() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\ntoor:x:0:0::/:/bin/sh\n\
             nobody:x:65534:65534::/:/usr/sbin/nologin\n+nis::::::\nalice:x:1000:1000::/home/alice:\n",
        );
        assert_eq!(names.len(), 3);
        assert_eq!(names.get(&0).map(|n| &**n), Some("root"));
        assert_eq!(names.get(&65534).map(|n| &**n), Some("nobody"));
        assert_eq!(names.get(&1000).map(|n| &**n), Some("alice"));
    }

    #[test]
    fn uid_0_is_root_on_this_host() {
        let users = Users::load("/etc/passwd");
        assert_eq!(users.problem(), None);
        assert_eq!(users.get(0).map(|n| &**n), Some("root"));
    }

    #[test]
    fn a_missing_passwd_is_a_problem_and_rereads_are_rate_limited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwd");
        let mut users = Users::load(&path);
        assert!(users.problem().is_some_and(|p| p.contains("cannot read")), "{:?}", users.problem());
        assert!(!users.reread_due(Instant::now()), "just read");
        assert!(users.reread_due(Instant::now() + USERS_REREAD));
        std::fs::write(&path, "bob:x:1001:1001::/:\n").expect("write");
        users.reread();
        assert_eq!((users.problem(), users.get(1001).map(|n| &**n)), (None, Some("bob")));
    }

    #[test]
    fn cgroup_files_give_their_v2_line() {
        assert_eq!(cgroup_v2_path("1:cpu:/a\n0::/system.slice/x.service\n"), "/system.slice/x.service");
        assert_eq!(cgroup_v2_path("0::/\n"), "/");
        assert_eq!(cgroup_v2_path("1:cpu:/a\n"), "");
    }

    #[test]
    fn a_walk_names_directories_by_inode_and_an_unreadable_root_is_a_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a.slice/b.scope")).expect("mkdir");
        std::fs::write(dir.path().join("a.slice/cgroup.procs"), "").expect("file");
        let inode = |p: &str| std::fs::metadata(dir.path().join(p)).expect("stat").ino();
        let mut cgroups = Cgroups::walked(dir.path());
        assert_eq!(cgroups.problem(), None);
        assert_eq!(cgroups.len(), 3, "root and two directories; files are not cgroups");
        assert_eq!(cgroups.get(inode("")).map(|p| &**p), Some("/"));
        assert_eq!(cgroups.get(inode("a.slice/b.scope")).map(|p| &**p), Some("/a.slice/b.scope"));
        assert!(!cgroups.walk_due(Instant::now()));
        std::fs::create_dir(dir.path().join("c")).expect("mkdir");
        cgroups.walk();
        assert_eq!(cgroups.get(inode("c")).map(|p| &**p), Some("/c"));
        let missing = Cgroups::walked(dir.path().join("missing"));
        assert!(missing.problem().is_some_and(|p| p.contains("cannot read")), "{:?}", missing.problem());
    }

    #[test]
    fn this_hosts_cgroup2_mount_is_found_and_walked() {
        let cgroups = Cgroups::discover();
        let Some(root) = cgroups.root() else {
            pipeline::testing::skip("identity::this_hosts_cgroup2_mount_is_found_and_walked", "no cgroup2 mount");
            return;
        };
        assert_eq!(cgroups.problem(), None, "{}", root.display());
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        let own = cgroup_v2_path(&own);
        let inode = std::fs::metadata(root.join(own.trim_start_matches('/'))).expect("own cgroup").ino();
        assert_eq!(cgroups.get(inode).map(|p| &**p), Some(own), "our own cgroup is named as /proc says");
    }
}
