//! What enrichment is fed besides exec, fork and exit (issue #14): the
//! processes already running when the kernel source starts, and the hashes
//! of executables that were not ready when their exec left the source.
//! Declared kinds like the security ones (see `security.rs`).

use std::sync::Arc;

use super::columns::{write_key, ColumnError, ColumnReader, ColumnWriter, Columns};
use super::context::HashState;
use super::{Argv, EventMeta, ProcessContext, ProcessKey};

/// A process that was already running when the kernel source started:
/// read from `/proc` once, oldest first, so enrichment knows every live
/// process and its ancestry from the first second. Not an exec: rules that
/// match execs do not see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSnapshot {
    pub meta: EventMeta,
    pub process: ProcessKey,
    /// The parent's key (pid 0 for the kernel's own first tasks).
    pub parent: ProcessKey,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    /// Name of `uid` (`""` unknown).
    pub user: Arc<str>,
    pub comm: Arc<str>,
    /// `""` for kernel threads and when `/proc/PID/exe` is unreadable.
    pub exe: Arc<str>,
    /// Scrubbed at capture.
    pub argv: Argv,
    pub argv_truncated: bool,
    pub cwd: Arc<str>,
    pub tty: Arc<str>,
    pub loginuid: u32,
    pub session_id: u32,
    pub cgroup_path: Arc<str>,
    pub exe_sha256: Arc<str>,
    pub exe_hash: HashState,
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for ProcessSnapshot {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        write_key(w, &self.parent);
        w.u32(self.uid);
        w.u32(self.euid);
        w.u32(self.gid);
        w.str(&self.user);
        w.str(&self.comm);
        w.str(&self.exe);
        w.str_list(&mut self.argv.iter());
        w.bool(self.argv_truncated);
        w.str(&self.cwd);
        w.str(&self.tty);
        w.u32(self.loginuid);
        w.u32(self.session_id);
        w.str(&self.cgroup_path);
        w.str(&self.exe_sha256);
        w.str(self.exe_hash.as_str());
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<ProcessSnapshot, ColumnError> {
        Ok(ProcessSnapshot {
            meta,
            process: r.key()?,
            parent: r.key()?,
            uid: r.u32()?,
            euid: r.u32()?,
            gid: r.u32()?,
            user: r.str()?,
            comm: r.str()?,
            exe: r.str()?,
            argv: Argv::from_args(r.str_list()?.iter().map(|a| &**a)),
            argv_truncated: r.bool()?,
            cwd: r.str()?,
            tty: r.str()?,
            loginuid: r.u32()?,
            session_id: r.u32()?,
            cgroup_path: r.str()?,
            exe_sha256: r.str()?,
            exe_hash: r.parsed("hash state", HashState::from_name)?,
            context: None,
        })
    }
}

/// The hash of an executable that was not ready when its exec left the
/// source: it follows the exec, so a hash rule still matches, and
/// enrichment puts it into the process's context for later events.
#[derive(Clone, Debug, PartialEq)]
pub struct ExeHash {
    pub meta: EventMeta,
    pub process: ProcessKey,
    pub exe: Arc<str>,
    pub dev: u64,
    pub inode: u64,
    /// Lower-case hex when `state` is `ok`, else `""`.
    pub sha256: Arc<str>,
    pub state: HashState,
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for ExeHash {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(&self.exe);
        w.u64(self.dev);
        w.u64(self.inode);
        w.str(&self.sha256);
        w.str(self.state.as_str());
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<ExeHash, ColumnError> {
        Ok(ExeHash {
            meta,
            process: r.key()?,
            exe: r.str()?,
            dev: r.u64()?,
            inode: r.u64()?,
            sha256: r.str()?,
            state: r.parsed("hash state", HashState::from_name)?,
            context: None,
        })
    }
}
