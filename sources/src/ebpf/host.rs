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

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Capability names by bit (`capability.h`, Linux 5.9+).
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

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

    /// Whether bit `bit` is effective.
    pub fn has(&self, bit: u32) -> bool {
        bit < 64 && self.effective & (1u64 << bit) != 0
    }

    /// CAP_DAC_READ_SEARCH: read and search any file (root-only tracefs,
    /// other users' `/proc/PID` directories).
    pub fn dac_read_search(&self) -> bool {
        self.has(CAP_DAC_READ_SEARCH)
    }

    /// CAP_SYS_PTRACE: `/proc/PID/exe` and the like of other users.
    pub fn sys_ptrace(&self) -> bool {
        self.has(CAP_SYS_PTRACE)
    }

    /// The effective capabilities by name, `CAP_x, CAP_y` (`cap_N` for a
    /// bit this table does not know); `none`; `all`, or `all but CAP_x`
    /// when more than half are effective (root, mostly).
    pub fn names(&self) -> String {
        let name = |bit: u32| CAP_NAMES.get(bit as usize).map_or_else(|| format!("cap_{bit}"), |n| (*n).to_owned());
        let known = CAP_NAMES.len() as u32;
        let absent: Vec<String> = (0..known).filter(|&bit| !self.has(bit)).map(name).collect();
        let unknown: Vec<String> = (known..64).filter(|&bit| self.has(bit)).map(name).collect();
        let mut text = if absent.is_empty() {
            "all".to_owned()
        } else if absent.len() < CAP_NAMES.len() / 2 {
            format!("all but {}", absent.join(", "))
        } else {
            let present: Vec<String> = (0..known).filter(|&bit| self.has(bit)).map(name).collect();
            if present.is_empty() && unknown.is_empty() {
                return "none".into();
            }
            present.join(", ")
        };
        if !unknown.is_empty() {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&unknown.join(", "));
        }
        text
    }

    /// What tracing programs lack: CAP_BPF and/or CAP_PERFMON (none with
    /// CAP_SYS_ADMIN, which implies both).
    pub fn missing_for_tracing(&self) -> Vec<&'static str> {
        if self.cap_sys_admin {
            return Vec::new();
        }
        [(self.cap_bpf, "CAP_BPF"), (self.cap_perfmon, "CAP_PERFMON")]
            .into_iter()
            .filter_map(|(has, name)| (!has).then_some(name))
            .collect()
    }

    /// `CAP_BPF missing (effective capabilities: ...)`, or `None` when
    /// nothing is missing for tracing.
    pub fn missing_note(&self) -> Option<String> {
        let missing = self.missing_for_tracing();
        (!missing.is_empty())
            .then(|| format!("{} missing (effective capabilities: {})", missing.join(" and "), self.names()))
    }
}

/// [`Capabilities::missing_note`] for this process, if it can be read.
pub fn missing_capabilities_note() -> Option<String> {
    capabilities().and_then(|caps| caps.missing_note())
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
