//! What the kernel compares, found on this host: a cgroup v2 path's id
//! (its directory's inode number, which is what
//! `bpf_get_current_cgroup_id` returns) and level (components below the
//! cgroup2 mount), and an executable's `(inode, s_dev)` in the kernel's
//! device encoding (major << 20 | minor), as `mm->exe_file` holds them.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::layout::Resolved;
use crate::EnforceError;

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones), from `/proc/self/mounts`.
pub fn cgroup2_mount() -> Result<PathBuf, EnforceError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| EnforceError::Cgroup(format!("cannot read /proc/self/mounts: {e}")))?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(path.replace("\\040", " ")))
        })
        .next()
        .ok_or_else(|| {
            EnforceError::Cgroup("no cgroup v2 mount on this host (a cgroup-v1-only host cannot enforce)".into())
        })
}

/// A cgroup named relative to the cgroup2 mount (`/` is the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupTarget {
    /// As configured, normalised to start with `/`.
    pub path: String,
    pub id: u64,
    /// 0 for the root.
    pub level: u16,
}

/// Resolves `relative` (e.g. `/system.slice/app.service`) under `mount`.
pub fn cgroup(mount: &Path, relative: &str) -> Result<CgroupTarget, EnforceError> {
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if components.contains(&"..") {
        return Err(EnforceError::Resolve {
            what: "cgroup",
            path: relative.into(),
            reason: "`..` is not allowed".into(),
        });
    }
    let full = components.iter().fold(mount.to_path_buf(), |path, c| path.join(c));
    let meta = std::fs::metadata(&full).map_err(|e| EnforceError::Resolve {
        what: "cgroup",
        path: relative.into(),
        reason: format!("{}: {e}", full.display()),
    })?;
    if !meta.is_dir() || !full.join("cgroup.procs").exists() {
        return Err(EnforceError::Resolve {
            what: "cgroup",
            path: relative.into(),
            reason: format!("{} is not a cgroup v2 directory", full.display()),
        });
    }
    let level = u16::try_from(components.len()).unwrap_or(u16::MAX);
    Ok(CgroupTarget { path: format!("/{}", components.join("/")), id: meta.ino(), level })
}

/// The enforced cgroup of `settings` and the cgroup2 mount it is under:
/// what the loader gives the connect program. A missing cgroup v2 mount or
/// directory is an error the source reports (it runs without enforcement).
pub fn target(settings: &crate::EnforceSettings) -> Result<(CgroupTarget, PathBuf), EnforceError> {
    let mount = cgroup2_mount()?;
    let target = cgroup(&mount, &settings.cgroup)?;
    Ok((target, mount))
}

/// The kernel's `dev_t` (major << 20 | minor) of a userspace `st_dev`
/// (glibc's encoding: major in bits 8-19 and 32-43, minor in 0-7 and 20-31).
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

/// An executable's `(inode, kernel dev)`, following symlinks (the kernel
/// sees the file that was executed).
pub fn exe(path: &str) -> Result<(u64, u32), EnforceError> {
    let meta = std::fs::metadata(path).map_err(|e| EnforceError::Resolve {
        what: "executable",
        path: path.into(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(EnforceError::Resolve {
            what: "executable",
            path: path.into(),
            reason: "not a regular file".into(),
        });
    }
    Ok((meta.ino(), kernel_dev(meta.dev())))
}

/// Resolves every executable and cgroup a policy's matchers name; the
/// first that cannot be found fails the apply (the running policy stays).
pub fn policy(policy: &policy::CompiledPolicy, mount: Option<&Path>) -> Result<Resolved, EnforceError> {
    let exes = policy.exes.iter().map(|path| exe(path)).collect::<Result<Vec<_>, _>>()?;
    let cgroups = policy
        .cgroups
        .iter()
        .map(|path| {
            let mount = mount.ok_or_else(|| EnforceError::Cgroup("no cgroup v2 mount for cgroup matchers".into()))?;
            cgroup(mount, path).map(|target| (target.id, target.level))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Resolved { exes, cgroups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_convert_to_the_kernel_encoding() {
        // 8:1 (sda1): st_dev 0x801 -> 8 << 20 | 1.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // 259:65536-ish large minors keep their high bits.
        let st_dev = (259u64 << 8) | 5 | (0x100u64 << 12);
        assert_eq!(kernel_dev(st_dev), (259 << 20) | 0x105);
    }

    #[test]
    fn an_executable_resolves_to_its_inode() {
        let (ino, _dev) = exe("/proc/self/exe").expect("the test binary");
        assert!(ino > 0);
        assert!(exe("/no/such/file").is_err());
    }

    #[test]
    fn cgroup_paths_are_checked() {
        let Ok(mount) = cgroup2_mount() else { return };
        let root = cgroup(&mount, "/").expect("the root cgroup");
        assert_eq!((root.path.as_str(), root.level), ("/", 0));
        assert!(cgroup(&mount, "/no-such-cgroup-hostflow").is_err());
        assert!(cgroup(&mount, "/../etc").is_err());
    }
}
