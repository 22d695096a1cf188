//! Host facts the eBPF source depends on and the two mounts it may make:
//! which pseudo file systems are mounted (from `/proc/self/mountinfo`),
//! mounting tracefs (classic tracepoints need it for their ids) and
//! securityfs (to read the active LSM list) when absent, and the process's
//! effective capabilities.
//!
//! All blocking (file reads, `mount(2)`): call from the blocking pool or a
//! plain thread.

use serde::Serialize;

/// Where tracefs is mounted by convention.
pub const TRACEFS_PATH: &str = "/sys/kernel/tracing";
/// Where securityfs is mounted by convention.
pub const SECURITYFS_PATH: &str = "/sys/kernel/security";

/// The state of a pseudo file system the source needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MountState {
    /// It was already mounted here.
    Present { path: String },
    /// We mounted it here.
    MountedByUs { path: String },
    /// Not mounted, and we did not or could not mount it.
    Unavailable { reason: String },
}

impl MountState {
    /// The mount point, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            MountState::Present { path } | MountState::MountedByUs { path } => Some(path),
            MountState::Unavailable { .. } => None,
        }
    }
}

/// `(mount point, file system type)` of every mount this process sees.
pub fn mounts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&text)
}

/// Parses `/proc/PID/mountinfo`: field 5 is the mount point, and the file
/// system type follows the ` - ` separator.
pub fn parse_mountinfo(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            let fs_type = after.split(' ').next()?;
            Some((unescape_octal(mount_point), fs_type.to_owned()))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\NNN`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).is_some_and(|digits| digits.iter().all(|b| (b'0'..=b'7').contains(b)));
        if bytes[i] == b'\\' && octal {
            let digit = |at: usize| u16::from(bytes[at] - b'0');
            let value = digit(i + 1) * 64 + digit(i + 2) * 8 + digit(i + 3);
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first mount point of `fs_type`.
pub fn mount_point(mounts: &[(String, String)], fs_type: &str) -> Option<String> {
    mounts.iter().find(|(_, kind)| kind == fs_type).map(|(path, _)| path.clone())
}

/// tracefs as it is now, without mounting anything.
pub fn tracefs_state() -> MountState {
    match mount_point(&mounts(), "tracefs") {
        Some(path) => MountState::Present { path },
        None => MountState::Unavailable { reason: format!("tracefs is not mounted (expected at {TRACEFS_PATH})") },
    }
}

/// tracefs, mounted at [`TRACEFS_PATH`] when it is not mounted anywhere.
/// aya looks for it at `/sys/kernel/tracing` or `/sys/kernel/debug/tracing`
/// only, so a mount elsewhere is reported but a standard one is added.
pub fn ensure_tracefs() -> MountState {
    let mounts = mounts();
    let standard = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if let Some((path, _)) = mounts.iter().find(|(path, kind)| kind == "tracefs" && standard.contains(&path.as_str())) {
        return MountState::Present { path: path.clone() };
    }
    ensure_mounted("tracefs", TRACEFS_PATH)
}

/// securityfs, mounted at [`SECURITYFS_PATH`] when absent.
pub fn ensure_securityfs() -> MountState {
    if let Some(path) = mount_point(&mounts(), "securityfs") {
        return MountState::Present { path };
    }
    ensure_mounted("securityfs", SECURITYFS_PATH)
}

fn ensure_mounted(fs_type: &str, path: &str) -> MountState {
    if !std::path::Path::new(path).is_dir() {
        return MountState::Unavailable { reason: format!("{path} does not exist (no {fs_type} in this kernel?)") };
    }
    match rustix::mount::mount(fs_type, path, fs_type, rustix::mount::MountFlags::empty(), None) {
        Ok(()) => MountState::MountedByUs { path: path.to_owned() },
        Err(error) => MountState::Unavailable {
            reason: format!("{fs_type} is not mounted and mounting it at {path} failed: {error}"),
        },
    }
}

/// The capabilities that matter for eBPF, from `CapEff` in
/// `/proc/self/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The raw effective set.
    pub effective: u64,
    pub cap_sys_admin: bool,
    pub cap_perfmon: bool,
    pub cap_bpf: bool,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

impl Capabilities {
    /// From the `CapEff:` hex value.
    pub fn from_mask(effective: u64) -> Capabilities {
        let has = |bit: u32| effective & (1u64 << bit) != 0;
        Capabilities {
            effective,
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_perfmon: has(CAP_PERFMON),
            cap_bpf: has(CAP_BPF),
        }
    }

    /// Enough to load tracing programs (CAP_BPF + CAP_PERFMON, or
    /// CAP_SYS_ADMIN on its own).
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }
}

/// This process's effective capabilities; `None` when `/proc/self/status`
/// cannot be read.
pub fn capabilities() -> Option<Capabilities> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status).map(Capabilities::from_mask)
}

/// The `CapEff:` line of a `status` file.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}
