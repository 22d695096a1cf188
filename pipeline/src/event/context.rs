//! [`ProcessContext`]: what enrichment knows about the process behind an
//! event (issue #14) — its image, arguments, user, session, container and
//! ancestry — as one shared, reference-counted value.
//!
//! Why one value attached to events instead of fields copied into each
//! kind: a busy process's events share one allocation (a clone is a
//! reference-count bump), and adding an attribute is one change per
//! format instead of one per kind. Every process-bearing kind has a
//! `context: Option<Arc<ProcessContext>>` field; `None` means the event has
//! not been through enrichment (straight from a source). [`Event::context`]
//! is the one match that reaches it, and every format writes the context
//! the same way after the kind's own columns (`has_context`, then the
//! [`ProcessContext::write_columns`] columns, declared in
//! `schemas/src/columns.rs` as `PROCESS_CONTEXT`).
//!
//! Nothing unknown is passed off as known: a process the table does not
//! hold gets a context whose [`Lineage`] is `process_unknown` and whose
//! [`ContextOrigin`] is `unknown` (its text fields are empty because they
//! are unknown, and the two markers say so); an ancestry cut short says
//! why in `lineage`; a hash not computed says why in `exe_hash`.
//!
//! [`Event::context`]: super::Event::context

use std::fmt::Write as _;
use std::sync::Arc;

use super::columns::{ColumnError, ColumnReader, ColumnWriter};
use super::{Argv, ProcessKey};

/// Declares a closed enum with its wire names, `as_str` and `from_name`.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order. An array, like
            /// `EventKind::ALL`: `for value in ALL` gives values, and
            /// `ALL.map(…)` works.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name used in every output format.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value with this wire name.
            pub fn from_name(name: &str) -> Option<$name> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// How far the ancestry reaches, and why it stops where it does. Only
    /// `Complete` means "every ancestor up to PID 1 (or the kernel's
    /// threads) is listed".
    Lineage {
        /// Every ancestor up to the root is listed.
        Complete = "complete",
        /// The walk stopped at the configured depth.
        DepthLimit = "depth_limit",
        /// An ancestor's parent is not in the process table (evicted, or
        /// never seen); the ancestors before it are listed.
        ParentUnknown = "parent_unknown",
        /// The table's parent links loop (a bug or a corrupt replay); the
        /// walk stopped at the repeat.
        Cycle = "cycle",
        /// The process itself is not in the table: nothing about it is
        /// known, and every field of this context is empty for that reason.
        ProcessUnknown = "process_unknown",
    }
}

wire_enum! {
    /// Whether `exe_sha256` holds the hash of the executable, and if not,
    /// why.
    HashState {
        /// `exe_sha256` is the file's SHA-256 (lower-case hex).
        Ok = "ok",
        /// Being computed: an [`ExeHash`](super::ExeHash) event follows
        /// with the result.
        Pending = "pending",
        /// Bigger than the configured limit; not hashed.
        TooLarge = "too_large",
        /// The file could not be read (gone, another mount namespace,
        /// permission) or was not the file the kernel executed.
        Unavailable = "unavailable",
        /// The hasher's queue was full; not hashed (counted).
        Dropped = "dropped",
        /// Hashing is off, or the source cannot hash (replay, generator).
        NotRequested = "not_requested",
    }
}

wire_enum! {
    /// What the context was built from.
    ContextOrigin {
        /// The process's exec, seen by the kernel source.
        Exec = "exec",
        /// The snapshot of processes already running when the agent
        /// started.
        Snapshot = "snapshot",
        /// Inherited from the parent at fork (the child has not exec'd
        /// since).
        Fork = "fork",
        /// Nothing: the process is not in the table.
        Unknown = "unknown",
    }
}

/// One ancestor, nearest first in [`ProcessContext::ancestry`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ancestor {
    pub process: ProcessKey,
    pub exe: Arc<str>,
    /// The first arguments (scrubbed), joined by spaces and cut at
    /// [`ANCESTOR_ARGS_BYTES`]: enough to tell `bash -c …` from a login
    /// shell without copying every ancestor's whole command line.
    pub args: Arc<str>,
}

/// How much of an ancestor's command line [`Ancestor::args`] keeps.
pub const ANCESTOR_ARGS_BYTES: usize = 128;

/// What enrichment knows about a process: shared by every event of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessContext {
    /// Path of the executable.
    pub exe: Arc<str>,
    /// The arguments, scrubbed of secrets at capture.
    pub argv: Argv,
    /// Real user id and its name (`""` when the name is not known).
    pub uid: u32,
    pub user: Arc<str>,
    pub euid: u32,
    pub cwd: Arc<str>,
    /// Controlling terminal (`pts/3`), `""` without one.
    pub tty: Arc<str>,
    /// Audit login uid and session (`u32::MAX`: not set).
    pub loginuid: u32,
    pub session_id: u32,
    /// The cgroup v2 path (`/system.slice/docker-….scope`), `""` unknown.
    pub cgroup_path: Arc<str>,
    /// `docker`, `containerd`, `cri-o`, `podman`, `cri`, `unknown` or
    /// `host` (not in a container).
    pub container_runtime: Arc<str>,
    /// 64 hex digits, `""` on the host.
    pub container_id: Arc<str>,
    /// Kubernetes pod uid, `""` outside a pod.
    pub pod_uid: Arc<str>,
    /// SHA-256 of the executable when `exe_hash` is `ok`, else `""`.
    pub exe_sha256: Arc<str>,
    pub exe_hash: HashState,
    /// Parent first, then grandparent, … (bounded by the enrich
    /// transform's depth).
    pub ancestry: Vec<Ancestor>,
    pub lineage: Lineage,
    pub origin: ContextOrigin,
}

impl ProcessContext {
    /// The context of a process the table does not hold: every field empty
    /// and both markers saying so.
    pub fn unknown() -> ProcessContext {
        ProcessContext {
            exe: "".into(),
            argv: Argv::default(),
            uid: u32::MAX,
            user: "".into(),
            euid: u32::MAX,
            cwd: "".into(),
            tty: "".into(),
            loginuid: u32::MAX,
            session_id: u32::MAX,
            cgroup_path: "".into(),
            container_runtime: "".into(),
            container_id: "".into(),
            pod_uid: "".into(),
            exe_sha256: "".into(),
            exe_hash: HashState::NotRequested,
            ancestry: Vec::new(),
            lineage: Lineage::ProcessUnknown,
            origin: ContextOrigin::Unknown,
        }
    }

    /// Writes the context's columns (after `has_context`), in the order of
    /// `PROCESS_CONTEXT` in `schemas/src/columns.rs`. Ancestors are three
    /// parallel lists (key as `pid:start_time_ns`, exe, args), so every
    /// format's column types stay scalar or lists of text.
    pub fn write_columns(&self, w: &mut dyn ColumnWriter) {
        w.str(&self.exe);
        w.str_list(&mut self.argv.iter());
        w.u32(self.uid);
        w.str(&self.user);
        w.u32(self.euid);
        w.str(&self.cwd);
        w.str(&self.tty);
        w.u32(self.loginuid);
        w.u32(self.session_id);
        w.str(&self.cgroup_path);
        w.str(&self.container_runtime);
        w.str(&self.container_id);
        w.str(&self.pod_uid);
        w.str(&self.exe_sha256);
        w.str(self.exe_hash.as_str());
        w.str(self.lineage.as_str());
        w.str(self.origin.as_str());
        // The keys as text in one buffer (one allocation, not one per
        // ancestor); exes and args are handed out as they are held.
        let mut keys = String::with_capacity(self.ancestry.len() * 24);
        for ancestor in &self.ancestry {
            let _ = write!(keys, "{}:{}\0", ancestor.process.pid, ancestor.process.start_time_ns);
        }
        w.str_list(&mut keys.split_terminator('\0'));
        w.str_list(&mut self.ancestry.iter().map(|a| &*a.exe));
        w.str_list(&mut self.ancestry.iter().map(|a| &*a.args));
    }

    /// Reads what [`ProcessContext::write_columns`] wrote.
    pub fn read_columns(r: &mut dyn ColumnReader) -> Result<ProcessContext, ColumnError> {
        let exe = r.str()?;
        let argv = Argv::from_args(r.str_list()?.iter().map(|a| &**a));
        let uid = r.u32()?;
        let user = r.str()?;
        let euid = r.u32()?;
        let cwd = r.str()?;
        let tty = r.str()?;
        let loginuid = r.u32()?;
        let session_id = r.u32()?;
        let cgroup_path = r.str()?;
        let container_runtime = r.str()?;
        let container_id = r.str()?;
        let pod_uid = r.str()?;
        let exe_sha256 = r.str()?;
        let exe_hash = r.parsed("hash state", HashState::from_name)?;
        let lineage = r.parsed("lineage", Lineage::from_name)?;
        let origin = r.parsed("context origin", ContextOrigin::from_name)?;
        let index = r.index();
        let keys = r.str_list()?;
        let exes = r.str_list()?;
        let args = r.str_list()?;
        if keys.len() != exes.len() || keys.len() != args.len() {
            return Err(ColumnError::Value {
                index,
                what: "ancestry (keys, exes and args of different lengths)",
                value: format!("{} / {} / {}", keys.len(), exes.len(), args.len()),
            });
        }
        let mut ancestry = Vec::with_capacity(keys.len());
        for ((key, exe), args) in keys.iter().zip(exes).zip(args) {
            let process = parse_key(key).ok_or_else(|| ColumnError::Value {
                index,
                what: "ancestor key",
                value: key.to_string(),
            })?;
            ancestry.push(Ancestor { process, exe, args });
        }
        Ok(ProcessContext {
            exe,
            argv,
            uid,
            user,
            euid,
            cwd,
            tty,
            loginuid,
            session_id,
            cgroup_path,
            container_runtime,
            container_id,
            pod_uid,
            exe_sha256,
            exe_hash,
            ancestry,
            lineage,
            origin,
        })
    }
}

/// `pid:start_time_ns` back to a key.
fn parse_key(text: &str) -> Option<ProcessKey> {
    let (pid, start) = text.split_once(':')?;
    Some(ProcessKey { pid: pid.parse().ok()?, start_time_ns: start.parse().ok()? })
}

/// The head of a command line for [`Ancestor::args`]: arguments joined by
/// spaces, cut (on a character boundary) at [`ANCESTOR_ARGS_BYTES`].
pub fn args_head(argv: &Argv) -> Arc<str> {
    let mut head = String::new();
    for arg in argv.iter() {
        if !head.is_empty() {
            head.push(' ');
        }
        head.push_str(arg);
        if head.len() >= ANCESTOR_ARGS_BYTES {
            break;
        }
    }
    if head.len() > ANCESTOR_ARGS_BYTES {
        let mut cut = ANCESTOR_ARGS_BYTES;
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head.truncate(cut);
    }
    Arc::from(head)
}

/// A context with every field set to a value other than its default, for
/// round-trip tests of every format.
pub fn sample_context() -> Arc<ProcessContext> {
    Arc::new(ProcessContext {
        exe: "/usr/bin/py\"thon3".into(),
        argv: Argv::from_args(["python3", "-c", "print(1)", "--password=***", ""]),
        uid: 1000,
        user: "alice".into(),
        euid: 0,
        cwd: "/home/alice/é dir".into(),
        tty: "pts/1".into(),
        loginuid: 1000,
        session_id: 4,
        cgroup_path: "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"
            .into(),
        container_runtime: "docker".into(),
        container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        pod_uid: "".into(),
        exe_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        exe_hash: HashState::Ok,
        ancestry: vec![
            Ancestor {
                process: ProcessKey { pid: 300, start_time_ns: 5_000_000_000 },
                exe: "/usr/bin/bash".into(),
                args: "bash -c python3 -c 'print(1)'".into(),
            },
            Ancestor { process: ProcessKey { pid: 1, start_time_ns: 0 }, exe: "/sbin/init".into(), args: "".into() },
        ],
        lineage: Lineage::Complete,
        origin: ContextOrigin::Exec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::columns::ValueRecorder;

    #[test]
    fn columns_round_trip() {
        for context in [sample_context(), Arc::new(ProcessContext::unknown())] {
            let mut recorder = ValueRecorder::default();
            context.write_columns(&mut recorder);
            let back = ProcessContext::read_columns(&mut recorder).expect("reads back");
            assert_eq!(&back, &*context);
        }
    }

    #[test]
    fn ancestry_lists_of_different_lengths_are_an_error() {
        let mut recorder = ValueRecorder::default();
        sample_context().write_columns(&mut recorder);
        let last = recorder.values.len() - 1;
        recorder.values[last] = crate::event::columns::ColumnValue::StrList(Vec::new());
        let error = ProcessContext::read_columns(&mut recorder).expect_err("mismatched lists");
        assert!(error.to_string().contains("different lengths"), "{error}");
    }

    #[test]
    fn args_head_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let head = args_head(&Argv::from_args(["x", long.as_str()]));
        assert!(head.len() <= ANCESTOR_ARGS_BYTES);
        assert!(head.starts_with("x é"));
        assert_eq!(&*args_head(&Argv::from_args(["bash", "-c", "id"])), "bash -c id");
    }
}
