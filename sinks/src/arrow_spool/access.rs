//! Who may read what the spool writes: owner-only by default, owner and one
//! group when `group` is configured (issue #12).
//!
//! The spool holds every command line, file access and connection the agent
//! saw, including those of short-lived processes that other users could
//! never see in /proc; so it is private. Directories the spool creates
//! (the spool directory, its kind and quarantine directories, and any
//! missing ancestor such as `data/`) get mode 0700, files 0600; with a group,
//! 0750 and 0640 and that group as their owner group. Modes are set
//! explicitly after creation, so the process umask cannot widen them.
//!
//! At start, [`tighten`] narrows every existing entry under the spool
//! directory that is more open than that (and gives it the configured group),
//! and [`check_not_others_writable`] refuses a spool directory that other
//! users can write (any `o+w`, sticky bit or not: nothing but the agent
//! writes there) or a parent ("data") directory that other users can write
//! without the sticky bit (they could rename the spool directory away and
//! put their own in its place; with the sticky bit, as on /tmp, they cannot
//! touch entries they do not own). Group-writable directories are allowed:
//! the group is the operator's choice.
//!
//! The group is resolved once, at build, from /etc/group: no NSS, so a group
//! that exists only in LDAP or similar must be given by number.
//!
//! Blocking I/O: only called from the blocking pool.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The permission bits that make a path writable by other users.
const OTHERS_WRITE: u32 = 0o002;
/// The sticky bit: in such a directory only an entry's owner may rename or
/// delete it.
const STICKY: u32 = 0o1000;

/// The modes and group of everything the spool creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The group that may read the spool, if any.
    pub gid: Option<u32>,
}

impl Access {
    /// Mode of the directories the spool creates.
    pub fn dir_mode(self) -> u32 {
        if self.gid.is_some() {
            0o750
        } else {
            0o700
        }
    }

    /// Mode of the files the spool creates.
    pub fn file_mode(self) -> u32 {
        if self.gid.is_some() {
            0o640
        } else {
            0o600
        }
    }

    /// Creates `path` and every missing ancestor with [`Access::dir_mode`];
    /// existing directories are left alone (see [`tighten`]).
    pub fn create_dir_all(self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut cursor = Some(path);
        while let Some(dir) = cursor.filter(|d| !d.as_os_str().is_empty()) {
            if std::fs::symlink_metadata(dir).is_ok() {
                break;
            }
            missing.push(dir);
            cursor = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            match DirBuilder::new().mode(self.dir_mode()).create(dir) {
                Ok(()) => self.apply(dir, self.dir_mode())?,
                // Raced with another creator: fine if it is a directory.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(error) => return Err(error),
            }
        }
        if path.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory"))
        }
    }

    /// Creates (or truncates) the file at `path` with [`Access::file_mode`].
    pub fn create_file(self, path: &Path) -> io::Result<File> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).mode(self.file_mode()).open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(self.file_mode()))?;
        if let Some(gid) = self.gid {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
        Ok(file)
    }

    /// Sets `mode` exactly and the group, on a path just created.
    fn apply(self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if let Some(gid) = self.gid {
            std::os::unix::fs::lchown(path, None, Some(gid))?;
        }
        Ok(())
    }
}

/// Why the spool refuses to start or could not fix its permissions; each
/// message names the path, what is wrong and the fix.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Other users can write where the spool lives.
    #[error(
        "refusing to start: {what} {path} is writable by other users (mode {mode:04o}), so any local user could \
         plant, replace or remove spool files; fix: `chmod o-w {path}`{hint}",
        path = .path.display(),
        hint = if *.parent { " (or give the sink a `path` inside a directory only the agent's user can write)" } else { "" }
    )]
    OthersCanWrite { what: &'static str, path: PathBuf, mode: u32, parent: bool },
    /// Looking at or changing a path failed.
    #[error("{action} {path}: {source}", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AccessError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> AccessError {
        AccessError::Io { action, path: path.to_owned(), source }
    }
}

/// The directory holding the spool directory `root` (`.` for a bare name).
pub fn parent_of(root: &Path) -> PathBuf {
    match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a spool directory other users can write, or a parent directory
/// they can write without the sticky bit. A path that does not exist yet is
/// fine (the spool creates it private).
pub fn check_not_others_writable(root: &Path) -> Result<(), AccessError> {
    let parent = parent_of(root);
    for (path, what, is_parent) in
        [(parent.as_path(), "the spool's parent directory", true), (root, "spool directory", false)]
    {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            // Missing (or under a file): creating it will say what is wrong.
            Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
            Err(error) => return Err(AccessError::io("cannot look at", path, error)),
        };
        let mode = meta.mode() & 0o7777;
        let refused = mode & OTHERS_WRITE != 0 && !(is_parent && mode & STICKY != 0);
        if refused {
            return Err(AccessError::OthersCanWrite { what, path: path.to_owned(), mode, parent: is_parent });
        }
    }
    Ok(())
}

/// Narrows every directory and file under `root` (itself included) that is
/// more open than `access` allows, and gives it the configured group.
/// Symbolic links are left alone (never followed). Returns the paths changed.
pub fn tighten(root: &Path, access: Access) -> Result<Vec<PathBuf>, AccessError> {
    let mut changed = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| AccessError::io("cannot look at", &path, e))?;
        let allowed = if meta.is_dir() {
            access.dir_mode()
        } else if meta.is_file() {
            access.file_mode()
        } else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        // Keep setgid (harmless, and an operator may want group inheritance);
        // drop setuid, sticky and every bit `allowed` does not have.
        let narrowed = mode & (allowed | 0o2000);
        let wrong_group = access.gid.is_some_and(|gid| meta.gid() != gid);
        if narrowed != mode || wrong_group {
            if let Some(gid) = access.gid.filter(|_| wrong_group) {
                std::os::unix::fs::lchown(&path, None, Some(gid))
                    .map_err(|e| AccessError::io("cannot change the group of", &path, e))?;
            }
            if narrowed != mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(narrowed))
                    .map_err(|e| AccessError::io("cannot narrow the permissions of", &path, e))?;
            }
            changed.push(path.clone());
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| AccessError::io("cannot list", &path, e))?;
            for entry in entries {
                stack.push(entry.map_err(|e| AccessError::io("cannot list", &path, e))?.path());
            }
        }
    }
    Ok(changed)
}

/// Why a configured group cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("cannot read /etc/group to resolve group `{name}`: {source}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "group `{name}` is not in /etc/group (groups known only to NSS, e.g. LDAP, are not looked up: give its \
         number instead); create it with `groupadd {name}` or remove `group`"
    )]
    Unknown { name: String },
}

/// The gid of group `name` (a name in /etc/group, or a number).
pub fn resolve_group(name: &str) -> Result<u32, GroupError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let text =
        std::fs::read_to_string("/etc/group").map_err(|source| GroupError::Read { name: name.to_owned(), source })?;
    gid_in(&text, name).ok_or_else(|| GroupError::Unknown { name: name.to_owned() })
}

/// The gid of `name` in the text of an /etc/group file
/// (`name:password:gid:members` per line).
pub fn gid_in(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.trim().parse().ok()
    })
}
