//! Can the scanner see every process? The checks behind the procfs
//! source's `degraded` state in `/health`.
//!
//! A proc filesystem mounted with `hidepid` shows (or lets read) only the
//! caller's own processes, unless the caller is root. The source does not
//! fail then: it reports what it can see and says, in `/health`, that it is
//! not the whole host.

use std::path::Path;

use pipeline::event::ProcessSample;

/// The `hidepid` option of the proc mount at `proc_root`, when it hides
/// anything (`None` for `hidepid=0`/`off`, for no option, or when
/// `proc_root` is not a proc mount). `mountinfo` is the text of
/// `/proc/self/mountinfo`; the last mount on a path wins, as it shadows
/// the earlier ones.
pub fn hidepid_mode(mountinfo: &str, proc_root: &Path) -> Option<String> {
    let mut mode = None;
    for line in mountinfo.lines() {
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        let mut mount_fields = mount.split(' ');
        let Some(mount_point) = mount_fields.nth(4) else {
            continue;
        };
        if Path::new(&unescape(mount_point)) != proc_root {
            continue;
        }
        let mount_options = mount_fields.next().unwrap_or("");
        let mut filesystem_fields = filesystem.split(' ');
        let fstype = filesystem_fields.next().unwrap_or("");
        let super_options = filesystem_fields.nth(1).unwrap_or("");
        mode = None;
        if fstype != "proc" {
            continue;
        }
        for option in mount_options.split(',').chain(super_options.split(',')) {
            if let Some(value) = option.strip_prefix("hidepid=") {
                mode = (!matches!(value, "0" | "off")).then(|| value.to_owned());
            }
        }
    }
    mode
}

/// Why this process cannot see every process, or `None` if it can:
/// `hidepid` only hides from non-root callers.
pub fn hidepid_problem(mode: Option<&str>, proc_root: &Path, euid: u32) -> Option<String> {
    let mode = mode?;
    (euid != 0).then(|| {
        format!(
            "{} is mounted with hidepid={mode} and the agent runs as uid {euid}, not root: \
             only its own processes are visible",
            proc_root.display()
        )
    })
}

/// A heuristic for a hiding we could not see in the mount options (another
/// mount namespace, a container runtime's mask): a non-root agent that sees
/// no PID 1 and nothing but its own uid's processes.
pub fn only_own_processes_problem<'a>(
    samples: impl IntoIterator<Item = &'a ProcessSample>,
    proc_root: &Path,
    euid: u32,
) -> Option<String> {
    if euid == 0 {
        return None;
    }
    let mut n_seen = 0usize;
    for sample in samples {
        if sample.process.pid == 1 || sample.uid != euid {
            return None;
        }
        n_seen += 1;
    }
    (n_seen > 0).then(|| {
        format!(
            "only processes of uid {euid} are visible in {} (no PID 1): \
             the proc filesystem hides the others (hidepid?) and the agent is not root",
            proc_root.display()
        )
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pipeline::event::{EventMeta, ScanInfo};
    use pipeline::ProcessKey;

    use super::*;

    const PLAIN: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
        27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";

    fn check(mountinfo: &str, proc_root: &str, expected: Option<&str>) {
        assert_eq!(hidepid_mode(mountinfo, Path::new(proc_root)).as_deref(), expected, "{mountinfo}");
    }

    #[test]
    fn hidepid_is_read_from_the_mount_of_proc_root() {
        check(PLAIN, "/proc", None);
        check("22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=2\n", "/proc", Some("2"));
        check("22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=invisible,gid=4\n", "/proc/", Some("invisible"));
        check("22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=0\n", "/proc", None);
        check("22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=off\n", "/proc", None);
        // Optional fields (shared:N) before the separator.
        check("22 27 0:21 / /proc rw,nosuid shared:12 master:3 - proc proc rw,hidepid=1\n", "/proc", Some("1"));
        // Another path, or not a proc filesystem.
        check("22 27 0:21 / /proc rw - proc proc rw,hidepid=2\n", "/srv/proc", None);
        check("22 27 0:21 / /proc rw - tmpfs none rw,hidepid=2\n", "/proc", None);
        // A later mount on the same path shadows the earlier one.
        let shadowed = "22 27 0:21 / /proc rw - proc proc rw,hidepid=2\n30 22 0:40 / /proc rw - proc proc rw\n";
        check(shadowed, "/proc", None);
        // Escaped spaces in the mount point.
        check("40 27 0:41 / /my\\040proc rw - proc proc rw,hidepid=ptraceable\n", "/my proc", Some("ptraceable"));
    }

    #[test]
    fn hidepid_only_hides_from_non_root() {
        let root = Path::new("/proc");
        assert_eq!(hidepid_problem(Some("2"), root, 0), None);
        assert_eq!(hidepid_problem(None, root, 1000), None);
        let problem = hidepid_problem(Some("2"), root, 1000).expect("degraded");
        assert!(problem.contains("/proc is mounted with hidepid=2") && problem.contains("uid 1000"), "{problem}");
    }

    fn row(pid: u32, uid: u32) -> ProcessSample {
        ProcessSample {
            meta: EventMeta { ts_ns: 0, event_id: 0 },
            process: ProcessKey { pid, start_time_ns: 0 },
            scan: ScanInfo::default(),
            ppid: 1,
            uid,
            name: Arc::from("x"),
            cmdline: Arc::from(""),
            state: b'S',
            threads: 1,
            cpu_ticks: 0,
            cpu_percent: 0.0,
            rss_bytes: 0,
            top_n_rank: 0,
        }
    }

    #[test]
    fn seeing_only_ones_own_processes_without_pid_1_is_a_problem() {
        let root = Path::new("/proc");
        let own = [row(100, 1000), row(200, 1000)];
        assert!(only_own_processes_problem(&own, root, 1000).is_some_and(|p| p.contains("uid 1000")));
        assert_eq!(only_own_processes_problem(&own, root, 0), None, "root sees everything");
        assert_eq!(only_own_processes_problem(&[row(1, 0), row(100, 1000)], root, 1000), None);
        assert_eq!(only_own_processes_problem(&[row(100, 1000), row(200, 0)], root, 1000), None);
        assert_eq!(only_own_processes_problem(&[], root, 1000), None);
    }
}
