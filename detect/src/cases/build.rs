//! Builds a case's events from its [`Spec`]s: a per-case process table,
//! defaults for every field, and the process context enrichment would
//! attach.

use std::collections::HashMap;
use std::sync::Arc;

use pipeline::event::context::args_head;
use pipeline::event::{
    Ancestor, Argv, ContextOrigin, CredSyscall, CredentialChange, Credentials, ExecAttributes, ExecFile, FdKind,
    FileChange, FileOp, FileOpen, HashState, Lineage, ModuleLoad, ModuleSyscall, NamespaceChange, NamespaceSyscall,
    NetAccept, NetConnect, NetListen, NetSend, ProcessContext, ProcessExec, ProcessExit, ProcessFork, Protocol,
    PtraceAttach, StdioFd,
};
use pipeline::{Event, EventKind, EventMeta, ProcessKey};

use super::spec::{AncSpec, Spec, Val};
use super::SECOND;

/// What a case's process table holds per pid.
#[derive(Clone, Debug)]
struct Proc {
    start_ns: u64,
    exe: Arc<str>,
    argv: Argv,
    uid: u32,
    euid: u32,
    gid: u32,
    user: Arc<str>,
    cwd: Arc<str>,
    tty: Arc<str>,
    loginuid: u32,
    session_id: u32,
    container_id: Arc<str>,
    sha256: Arc<str>,
    ancestry: Vec<Ancestor>,
    context: Arc<str>,
}

/// Builds one case's events.
pub(super) struct Builder {
    base_ns: u64,
    pid_base: u32,
    table: HashMap<u32, Proc>,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn user_for(uid: u32) -> Arc<str> {
    Arc::from(match uid {
        0 => "root".to_owned(),
        1000 => "alice".to_owned(),
        33 => "www-data".to_owned(),
        other => format!("user{other}"),
    })
}

fn home_for(uid: u32) -> Arc<str> {
    Arc::from(match uid {
        0 => "/root".to_owned(),
        1000 => "/home/alice".to_owned(),
        33 => "/var/www".to_owned(),
        other => format!("/home/user{other}"),
    })
}

impl Builder {
    pub(super) fn new(base_ns: u64, pid_base: u32) -> Builder {
        Builder { base_ns, pid_base, table: HashMap::new() }
    }

    fn start_of(&self, pid: u32) -> u64 {
        self.table.get(&pid).map_or(self.base_ns - 10 * SECOND, |p| p.start_ns)
    }

    fn key(&self, pid: u32) -> ProcessKey {
        ProcessKey { pid, start_time_ns: if pid == 1 { 0 } else { self.start_of(pid) } }
    }

    fn init(&self) -> Ancestor {
        Ancestor { process: self.key(1), exe: "/usr/lib/systemd/systemd".into(), args: "/sbin/init splash".into() }
    }

    fn resolve(&self, spec: &AncSpec, default_pid: u32, default_exe: &str) -> Ancestor {
        let pid = spec.pid.unwrap_or(default_pid);
        let known = self.table.get(&pid);
        let exe: Arc<str> = match (&spec.exe, known) {
            (Some(e), _) => e.as_str().into(),
            (None, Some(p)) => p.exe.clone(),
            (None, None) => default_exe.into(),
        };
        let args: Arc<str> = match (&spec.args, known) {
            (Some(a), _) => a.as_str().into(),
            (None, Some(p)) => args_head(&p.argv),
            (None, None) => basename(&exe).into(),
        };
        Ancestor { process: self.key(pid), exe, args }
    }

    /// The default process: alice's command in an ssh session.
    fn fresh(&self) -> Proc {
        let b = self.pid_base;
        Proc {
            start_ns: self.base_ns - 10 * SECOND,
            exe: "/usr/bin/true".into(),
            argv: Argv::from_args(["true"]),
            uid: 1000,
            euid: 1000,
            gid: 1000,
            user: user_for(1000),
            cwd: home_for(1000),
            tty: "pts/0".into(),
            loginuid: 1000,
            session_id: u32::MAX,
            container_id: "".into(),
            sha256: "".into(),
            ancestry: vec![
                Ancestor { process: self.key(b + 1), exe: "/usr/bin/bash".into(), args: "-bash".into() },
                Ancestor { process: self.key(b), exe: "/usr/sbin/sshd".into(), args: "sshd: alice [priv]".into() },
                self.init(),
            ],
            context: "known".into(),
        }
    }

    /// The spec's process after its overrides (stored back in the table).
    fn process(&mut self, spec: &Spec) -> (u32, Proc, Proc) {
        let pid = spec.num("pid", self.pid_base + 10);
        let before = self.table.get(&pid).cloned().unwrap_or_else(|| self.fresh());
        let mut p = before.clone();
        if let Some(start) = spec.int("start") {
            p.start_ns = self.base_ns.saturating_add_signed(start * SECOND as i64);
        }
        let exec = spec.kind == EventKind::ProcessExec;
        if let Some(exe) = spec.text("exe") {
            p.exe = exe.into();
        }
        match (spec.values.get("argv"), spec.text("cmdline")) {
            (Some(Val::List(args)), _) => p.argv = Argv::from_args(args),
            (_, Some(line)) => p.argv = Argv::from_args(line.split_whitespace()),
            _ if exec || spec.text("exe").is_some() => p.argv = Argv::from_args([basename(&p.exe)]),
            _ => {}
        }
        if let Some(uid) = spec.int("uid").and_then(|u| u32::try_from(u).ok()) {
            (p.uid, p.euid, p.user, p.cwd) = (uid, uid, user_for(uid), home_for(uid));
        }
        p.euid = spec.num("euid", p.euid);
        p.gid = spec.num("gid", p.gid);
        for (key, slot) in [("user", &mut p.user), ("cwd", &mut p.cwd), ("tty", &mut p.tty)] {
            if let Some(t) = spec.text(key) {
                *slot = t.into();
            }
        }
        for (key, slot) in
            [("container_id", &mut p.container_id), ("sha256", &mut p.sha256), ("context", &mut p.context)]
        {
            if let Some(t) = spec.text(key) {
                *slot = t.into();
            }
        }
        p.loginuid = spec.num("loginuid", p.loginuid);
        p.session_id = spec.num("session_id", p.session_id);
        let parent_spec = match spec.values.get("parent") {
            Some(Val::Anc(a)) => Some(a),
            _ => None,
        };
        let ancestors = match spec.values.get("ancestors") {
            Some(Val::Ancs(list)) => Some(list),
            _ => None,
        };
        if parent_spec.is_some() || ancestors.is_some() {
            let parent = self.resolve(parent_spec.unwrap_or(&AncSpec::default()), self.pid_base + 1, "/usr/bin/bash");
            let mut ancestry = vec![parent];
            match ancestors {
                Some(list) => {
                    for (i, a) in list.iter().enumerate() {
                        ancestry.push(self.resolve(a, self.pid_base + 50 + i as u32, "/usr/bin/bash"));
                    }
                }
                None => {
                    if let Some(known) = self.table.get(&ancestry[0].process.pid) {
                        ancestry.extend(known.ancestry.iter().cloned());
                    }
                }
            }
            if ancestry.last().is_none_or(|a| a.process.pid != 1) {
                ancestry.push(self.init());
            }
            p.ancestry = ancestry;
        }
        // Ancestors become known processes, so a later `parent: { pid }`
        // names them without repeating their exe.
        for (i, a) in p.ancestry.iter().enumerate().filter(|(_, a)| a.process.pid != 1) {
            if !self.table.contains_key(&a.process.pid) && a.process.pid != pid {
                let mut known = self.fresh();
                (known.start_ns, known.exe) = (a.process.start_time_ns, a.exe.clone());
                known.argv = Argv::from_args(a.args.split_whitespace());
                known.ancestry = p.ancestry[i + 1..].to_vec();
                self.table.insert(a.process.pid, known);
            }
        }
        self.table.insert(pid, p.clone());
        (pid, before, p)
    }

    fn context(&self, p: &Proc) -> Option<Arc<ProcessContext>> {
        match &*p.context {
            "none" => return None,
            "unknown" => return Some(Arc::new(ProcessContext::unknown())),
            _ => {}
        }
        let in_container = !p.container_id.is_empty();
        Some(Arc::new(ProcessContext {
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            uid: p.uid,
            user: p.user.clone(),
            euid: p.euid,
            cwd: p.cwd.clone(),
            tty: p.tty.clone(),
            loginuid: p.loginuid,
            session_id: p.session_id,
            cgroup_path: if in_container {
                format!("/system.slice/docker-{}.scope", p.container_id).into()
            } else {
                format!("/user.slice/user-{}.slice/session-1.scope", p.uid).into()
            },
            container_runtime: if in_container { "docker".into() } else { "host".into() },
            container_id: p.container_id.clone(),
            pod_uid: "".into(),
            exe_sha256: p.sha256.clone(),
            exe_hash: if p.sha256.is_empty() { HashState::NotRequested } else { HashState::Ok },
            ancestry: p.ancestry.clone(),
            lineage: Lineage::Complete,
            origin: ContextOrigin::Exec,
        }))
    }

    pub(super) fn event(&mut self, spec: &Spec, event_id: u64) -> Event {
        let meta = EventMeta { ts_ns: self.base_ns + spec.at_ns, event_id };
        let (pid, before, p) = self.process(spec);
        let context = self.context(&p);
        let process = self.key(pid);
        let protocol = if spec.text("protocol") == Some("udp") { Protocol::Udp } else { Protocol::Tcp };
        let result = spec.num("result", 0);
        match spec.kind {
            EventKind::ProcessExec => Event::ProcessExec(ProcessExec {
                meta,
                process,
                ppid: p.ancestry.first().map_or(1, |a| a.process.pid),
                uid: p.uid,
                gid: p.gid,
                cgroup_id: 4_096 + u64::from(p.uid),
                comm: basename(&p.exe).chars().take(15).collect::<String>().into(),
                exe: p.exe.clone(),
                argv: p.argv.clone(),
                argv_truncated: spec.num("argv_truncated", 0) != 0,
                attributes: (spec.num("attributes", 1) != 0).then(|| Arc::new(self.attributes(spec, &p))),
                context,
            }),
            EventKind::ProcessExit => Event::ProcessExit(ProcessExit {
                meta,
                process,
                exit_code: spec.num("exit_code", 0),
                cpu_ns: spec.num("cpu_ns", 1_000_000),
                context,
            }),
            EventKind::ProcessFork => {
                let child = spec.num("child_pid", pid + 1);
                Event::ProcessFork(ProcessFork { meta, parent: process, child: self.key(child), context })
            }
            EventKind::NetConnect => Event::NetConnect(NetConnect {
                meta,
                process,
                protocol,
                dst_addr: spec.addr("dst_addr", "203.0.113.10"),
                dst_port: spec.num("dst_port", 443),
                result: Some(result),
                context,
            }),
            EventKind::NetSend => Event::NetSend(NetSend {
                meta,
                process,
                protocol: if spec.text("protocol").is_none() { Protocol::Udp } else { protocol },
                dst_addr: spec.addr("dst_addr", "203.0.113.53"),
                dst_port: spec.num("dst_port", 53),
                bytes: spec.num("bytes", 40),
                context,
            }),
            EventKind::NetListen => Event::NetListen(NetListen {
                meta,
                process,
                protocol,
                addr: spec.addr("local_addr", "0.0.0.0"),
                port: spec.num("local_port", 8080),
                backlog: spec.num("backlog", 128),
                result,
                context,
            }),
            EventKind::NetAccept => Event::NetAccept(NetAccept {
                meta,
                process,
                protocol,
                local_addr: spec.addr("local_addr", "192.0.2.10"),
                local_port: spec.num("local_port", 22),
                peer_addr: spec.addr("peer_addr", "198.51.100.20"),
                peer_port: spec.num("peer_port", 50_000),
                context,
            }),
            EventKind::FileOpen => Event::FileOpen(FileOpen {
                meta,
                process,
                path: spec.arc("path", "/etc/hostname"),
                flags: spec.num("flags", 0),
                context,
            }),
            EventKind::FileChange => Event::FileChange(FileChange {
                meta,
                process,
                op: spec.text("file_op").and_then(FileOp::from_name).unwrap_or(FileOp::Chmod),
                path: spec.arc("path", "/tmp/file"),
                target: spec.arc("target", ""),
                mode: spec.num("mode", 0),
                result,
                context,
            }),
            EventKind::CredentialChange => {
                let old = self.creds(spec, "old", &before);
                let new = self.creds(spec, "new", &before);
                if let Some(entry) = self.table.get_mut(&pid) {
                    (entry.uid, entry.euid, entry.gid) = (new.uid, new.euid, new.gid);
                }
                Event::CredentialChange(CredentialChange {
                    meta,
                    process,
                    syscall: spec.text("syscall").and_then(CredSyscall::from_name).unwrap_or(CredSyscall::Setuid),
                    old,
                    new,
                    result,
                    context,
                })
            }
            EventKind::NamespaceChange => Event::NamespaceChange(NamespaceChange {
                meta,
                process,
                syscall: spec
                    .text("syscall")
                    .and_then(NamespaceSyscall::from_name)
                    .unwrap_or(NamespaceSyscall::Unshare),
                flags: spec.num("ns_flags", 0x1000_0000),
                result,
                context,
            }),
            EventKind::PtraceAttach => {
                let target = spec.num("target_pid", self.pid_base + 99);
                Event::PtraceAttach(PtraceAttach {
                    meta,
                    process,
                    request: spec.num("request", 16),
                    target: self.key(target),
                    result,
                    context,
                })
            }
            EventKind::ModuleLoad => Event::ModuleLoad(ModuleLoad {
                meta,
                process,
                syscall: spec.text("syscall").and_then(ModuleSyscall::from_name).unwrap_or(ModuleSyscall::FinitModule),
                path: spec.arc("path", ""),
                params: spec.arc("params", ""),
                result,
                context,
            }),
            // `load_event` only accepts the kinds above.
            _ => unreachable!("kind without a case builder"),
        }
    }

    fn creds(&self, spec: &Spec, key: &str, p: &Proc) -> Credentials {
        let mut c = Credentials {
            uid: p.uid,
            euid: p.euid,
            suid: p.euid,
            gid: p.gid,
            egid: p.gid,
            sgid: p.gid,
            cap_effective: if p.euid == 0 { 0x1ff_ffff_ffff } else { 0 },
            cap_permitted: if p.euid == 0 { 0x1ff_ffff_ffff } else { 0 },
        };
        if let Some(Val::Creds(ids)) = spec.values.get(key) {
            for (name, v) in ids {
                match name.as_str() {
                    "uid" => c.uid = *v,
                    "euid" => c.euid = *v,
                    "suid" => c.suid = *v,
                    "gid" => c.gid = *v,
                    "egid" => c.egid = *v,
                    _ => c.sgid = *v,
                }
            }
        }
        c
    }

    fn attributes(&self, spec: &Spec, p: &Proc) -> ExecAttributes {
        let default_fd = if p.tty.is_empty() { FdKind::Pipe } else { FdKind::Tty };
        let fd =
            |key: &str| StdioFd { kind: spec.text(key).and_then(FdKind::from_name).unwrap_or(default_fd), peer: None };
        let memfd = spec.num("file_memfd", 0) != 0;
        ExecAttributes {
            euid: p.euid,
            suid: p.euid,
            egid: p.gid,
            sgid: p.gid,
            cap_effective: if p.euid == 0 { 0x1ff_ffff_ffff } else { 0 },
            cap_permitted: if p.euid == 0 { 0x1ff_ffff_ffff } else { 0 },
            file: ExecFile {
                dev: 0x0080_0001,
                inode: 100_000 + u64::from(p.exe.len() as u32),
                size: 150_000,
                mtime_ns: self.base_ns / 2,
                mode: spec.num("file_mode", 0o100755),
                nlink: spec.num("file_nlink", 1),
                file_caps: false,
                memfd,
                overlay_upper: false,
            },
            stdio: [fd("stdin_type"), fd("stdout_type"), fd("stderr_type")],
            tty: p.tty.clone(),
            loginuid: p.loginuid,
            session_id: p.session_id,
            cwd: p.cwd.clone(),
            cwd_truncated: false,
            env: match spec.values.get("env") {
                Some(Val::List(vars)) => vars.iter().map(|v| Arc::from(v.as_str())).collect(),
                _ => Vec::new(),
            },
            env_truncated: false,
            user: p.user.clone(),
            cgroup_path: "".into(),
            exe_sha256: p.sha256.clone(),
            exe_hash: if p.sha256.is_empty() { HashState::NotRequested } else { HashState::Ok },
        }
    }
}
