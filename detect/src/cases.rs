//! Rule test cases: a YAML format that describes events in the words the
//! rules use, a builder of real [`pipeline::Event`]s carrying the process
//! context the enrich transform would attach, and a runner that drives
//! each case through a fresh [`Engine`].
//!
//! ```yaml
//! cases:
//!   - name: reverse shell via bash -i
//!     rule: hf-linux-reverse-shell-stdio   # or `any`: any rule of the set
//!     expect: fire                         # or `silent`
//!     events:                              # 1 s apart unless `at: 1.5s`
//!       - kind: process_exec
//!         exe: /usr/bin/bash
//!         argv: [bash, -i]
//!         stdin_type: tcp
//!         parent: { exe: /usr/sbin/nginx, args: "nginx: worker process" }
//!       - kind: net_connect                # the same process (pid) as above
//!         dst_addr: 10.0.0.5
//!         dst_port: 4444
//! ```
//!
//! Each case has its own process table: an event describes its process
//! (`pid`, `exe`, `argv` or `cmdline`, `uid`, `euid`, `user`, `cwd`,
//! `parent`, `ancestors`, …) and what it leaves unsaid comes from the last
//! event of the same pid, else from defaults: pid `base+10`, a user
//! `alice` (uid 1000) in an ssh session (`-bash` ← `sshd` ← PID 1). An
//! exec starts a new image (its `argv` defaults to the exe's basename). A
//! `parent` given only by pid takes its exe, arguments and ancestry from
//! the table, so children of a case's processes have real lineages.
//! `repeat: { count: 60, every: 100ms, vary: [dst_port] }` writes an event
//! many times, adding the copy's index to the `vary` fields.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::event::context::args_head;
use pipeline::event::{
    Ancestor, Argv, ContextOrigin, CredSyscall, CredentialChange, Credentials, ExecAttributes, ExecFile, FdKind,
    FileChange, FileOp, FileOpen, HashState, Lineage, ModuleLoad, ModuleSyscall, NamespaceChange, NamespaceSyscall,
    NetAccept, NetConnect, NetListen, NetSend, ProcessContext, ProcessExec, ProcessExit, ProcessFork, Protocol,
    PtraceAttach, StdioFd,
};
use pipeline::{Event, EventKind, EventMeta, ProcessKey};

use crate::engine::Engine;
use crate::l2::L2Config;
use crate::problem::Problem;
use crate::ruleset::{rule_files, RuleSet};
use crate::yaml::{parse, Node, Problems, Scalar};

const SECOND: u64 = 1_000_000_000;
/// Event time of the first case.
const FIRST_BASE_NS: u64 = 1_000 * SECOND;
/// Quiet time between two cases: longer than any L2 window of the pack.
pub const CASE_GAP_NS: u64 = 600 * SECOND;

/// What a case expects of its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Fire,
    Silent,
}

/// One case: events, and whether a rule fires on them.
#[derive(Clone, Debug)]
pub struct Case {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    /// The rule's id; `None` for `rule: any` (any rule of the set).
    pub rule: Option<String>,
    pub expect: Expect,
    specs: Vec<Spec>,
}

impl Case {
    /// The case's events, the first at `base_ns`, ids from `first_id`;
    /// `index` (the case's position) spreads default pids across cases.
    pub fn events(&self, index: usize, base_ns: u64, first_id: u64) -> Vec<Event> {
        let mut builder = Builder { base_ns, pid_base: 10_000 + 1_000 * (index as u32 % 4_000), table: HashMap::new() };
        self.specs.iter().enumerate().map(|(i, spec)| builder.event(spec, first_id + i as u64)).collect()
    }

    /// Time from the case's first event time to its last.
    pub fn span_ns(&self) -> u64 {
        self.specs.iter().map(|s| s.at_ns).max().unwrap_or(0)
    }

    pub fn event_count(&self) -> usize {
        self.specs.len()
    }
}

/// Reads every `*.yml` under `dir` (in path order). Problems come with
/// file and line; a case with a problem is left out.
pub fn load_cases(dir: &Path) -> (Vec<Case>, Vec<Problem>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let files = match rule_files(dir) {
        Ok(files) => files,
        Err(e) => {
            let message = format!("cannot read the cases: {e}");
            return (cases, vec![Problem::new(dir, 0, None, message, None)]);
        }
    };
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (more, found) = load_text(&file, &text);
                cases.extend(more);
                problems.extend(found);
            }
            Err(e) => problems.push(Problem::new(&file, 0, None, format!("cannot read: {e}"), None)),
        }
    }
    (cases, problems)
}

/// Reads the cases of one file's text.
pub fn load_text(file: &Path, text: &str) -> (Vec<Case>, Vec<Problem>) {
    let mut problems = Problems::new(file);
    let mut cases = Vec::new();
    match parse(text) {
        Err((line, message)) => problems.at(line, format!("not valid YAML: {message}")),
        Ok(docs) => {
            for doc in docs.iter().map(Node::new).filter(|d| !d.is_null()) {
                for (key, key_node, value) in doc.entries().unwrap_or_default() {
                    if key != "cases" {
                        problems.hint(key_node.line(), format!("unknown key `{key}`"), "a case file has `cases:`");
                    }
                    let Some(items) = value.items() else {
                        problems.at(value.line(), "`cases` must be a list");
                        continue;
                    };
                    for item in items {
                        let before = problems.list.len();
                        let case = load_case(file, item, &mut problems);
                        if problems.list.len() == before {
                            cases.extend(case);
                        }
                    }
                }
                if !doc.is_mapping() {
                    problems.at(doc.line(), "a case file is a mapping with `cases:`");
                }
            }
        }
    }
    (cases, problems.list)
}

fn load_case(file: &Path, node: Node<'_>, problems: &mut Problems<'_>) -> Option<Case> {
    for (key, key_node, _) in node.entries().unwrap_or_default() {
        if !["name", "rule", "expect", "events"].contains(&key.as_str()) {
            problems.hint(key_node.line(), format!("unknown key `{key}`"), "a case has name, rule, expect, events");
        }
    }
    let text = |key: &str, problems: &mut Problems<'_>| match node.get(key).and_then(|v| v.str()) {
        Some(t) => Some(t.to_owned()),
        None => {
            problems.at(node.line(), format!("a case needs `{key}` (text)"));
            None
        }
    };
    let name = text("name", problems);
    let rule = text("rule", problems);
    let expect = match text("expect", problems).as_deref() {
        Some("fire") => Some(Expect::Fire),
        Some("silent") => Some(Expect::Silent),
        Some(other) => {
            problems.hint(node.line(), format!("unknown expectation `{other}`"), "expect: fire | silent");
            None
        }
        None => None,
    };
    let mut specs = Vec::new();
    match node.get("events").and_then(Node::items) {
        Some(items) if !items.is_empty() => {
            let mut at = 0;
            for (i, item) in items.into_iter().enumerate() {
                for spec in load_event(item, if i == 0 { 0 } else { at + SECOND }, problems) {
                    at = spec.at_ns;
                    specs.push(spec);
                }
            }
        }
        _ => problems.at(node.line(), "a case needs `events`: a list of at least one event"),
    }
    let rule = rule.map(|r| if r == "any" { None } else { Some(r) })?;
    Some(Case { file: file.to_path_buf(), line: node.line(), name: name?, rule, expect: expect?, specs })
}

/// A parsed value of an event key.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Int(i64),
    Text(String),
    List(Vec<String>),
    Anc(AncSpec),
    Ancs(Vec<AncSpec>),
    Creds(Vec<(String, u32)>),
}

#[derive(Clone, Debug, Default, PartialEq)]
struct AncSpec {
    pid: Option<u32>,
    exe: Option<String>,
    args: Option<String>,
}

/// One event as written: its kind, time and keys.
#[derive(Clone, Debug)]
struct Spec {
    kind: EventKind,
    at_ns: u64,
    values: HashMap<&'static str, Val>,
}

impl Spec {
    fn int(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(Val::Int(v)) => Some(*v),
            _ => None,
        }
    }

    fn num<T: TryFrom<i64>>(&self, key: &str, default: T) -> T {
        self.int(key).and_then(|v| T::try_from(v).ok()).unwrap_or(default)
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Val::Text(t)) => Some(t),
            _ => None,
        }
    }

    fn arc(&self, key: &str, default: &str) -> Arc<str> {
        Arc::from(self.text(key).unwrap_or(default))
    }

    fn addr(&self, key: &str, default: &str) -> IpAddr {
        let text = self.text(key).unwrap_or(default);
        text.parse().unwrap_or_else(|_| IpAddr::from([0, 0, 0, 0]))
    }
}

/// How a key's value is read.
#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Text,
    List,
    Addr,
    Fd,
    OpenFlags,
    NsFlags,
    Ancestor,
    Ancestors,
    Creds,
}

const PROCESS_KEYS: &[(&str, Ty)] = &[
    ("pid", Ty::Int),
    ("start", Ty::Int),
    ("exe", Ty::Text),
    ("argv", Ty::List),
    ("cmdline", Ty::Text),
    ("uid", Ty::Int),
    ("euid", Ty::Int),
    ("gid", Ty::Int),
    ("user", Ty::Text),
    ("cwd", Ty::Text),
    ("tty", Ty::Text),
    ("loginuid", Ty::Int),
    ("session_id", Ty::Int),
    ("container_id", Ty::Text),
    ("sha256", Ty::Text),
    ("parent", Ty::Ancestor),
    ("ancestors", Ty::Ancestors),
    ("context", Ty::Text),
];

fn kind_keys(kind: EventKind) -> Option<&'static [(&'static str, Ty)]> {
    Some(match kind {
        EventKind::ProcessExec => &[
            ("file_mode", Ty::Int),
            ("file_nlink", Ty::Int),
            ("file_memfd", Ty::Int),
            ("stdin_type", Ty::Fd),
            ("stdout_type", Ty::Fd),
            ("stderr_type", Ty::Fd),
            ("env", Ty::List),
            ("attributes", Ty::Int),
            ("argv_truncated", Ty::Int),
        ],
        EventKind::ProcessExit => &[("exit_code", Ty::Int), ("cpu_ns", Ty::Int)],
        EventKind::ProcessFork => &[("child_pid", Ty::Int)],
        EventKind::NetConnect => {
            &[("protocol", Ty::Text), ("dst_addr", Ty::Addr), ("dst_port", Ty::Int), ("result", Ty::Int)]
        }
        EventKind::NetSend => {
            &[("protocol", Ty::Text), ("dst_addr", Ty::Addr), ("dst_port", Ty::Int), ("bytes", Ty::Int)]
        }
        EventKind::NetListen => &[
            ("protocol", Ty::Text),
            ("local_addr", Ty::Addr),
            ("local_port", Ty::Int),
            ("backlog", Ty::Int),
            ("result", Ty::Int),
        ],
        EventKind::NetAccept => &[
            ("protocol", Ty::Text),
            ("local_addr", Ty::Addr),
            ("local_port", Ty::Int),
            ("peer_addr", Ty::Addr),
            ("peer_port", Ty::Int),
        ],
        EventKind::FileOpen => &[("path", Ty::Text), ("flags", Ty::OpenFlags)],
        EventKind::FileChange => {
            &[("file_op", Ty::Text), ("path", Ty::Text), ("target", Ty::Text), ("mode", Ty::Int), ("result", Ty::Int)]
        }
        EventKind::CredentialChange => {
            &[("syscall", Ty::Text), ("old", Ty::Creds), ("new", Ty::Creds), ("result", Ty::Int)]
        }
        EventKind::NamespaceChange => &[("syscall", Ty::Text), ("ns_flags", Ty::NsFlags), ("result", Ty::Int)],
        EventKind::PtraceAttach => &[("request", Ty::Int), ("target_pid", Ty::Int), ("result", Ty::Int)],
        EventKind::ModuleLoad => {
            &[("syscall", Ty::Text), ("path", Ty::Text), ("params", Ty::Text), ("result", Ty::Int)]
        }
        _ => return None,
    })
}

/// Named values of the wire enums a key takes, checked at load.
fn check_name(kind: EventKind, key: &str, text: &str) -> Result<(), String> {
    let known: Vec<&str> = match (kind, key) {
        (_, "protocol") => vec!["tcp", "udp"],
        (_, "context") => vec!["known", "unknown", "none"],
        (EventKind::FileChange, "file_op") => FileOp::ALL.map(FileOp::as_str).to_vec(),
        (EventKind::CredentialChange, "syscall") => CredSyscall::ALL.map(CredSyscall::as_str).to_vec(),
        (EventKind::NamespaceChange, "syscall") => NamespaceSyscall::ALL.map(NamespaceSyscall::as_str).to_vec(),
        (EventKind::ModuleLoad, "syscall") => ModuleSyscall::ALL.map(ModuleSyscall::as_str).to_vec(),
        _ => return Ok(()),
    };
    if known.contains(&text) {
        Ok(())
    } else {
        Err(format!("`{key}` must be one of {}, not `{text}`", known.join(", ")))
    }
}

const OPEN_FLAGS: &[(&str, i64)] = &[
    ("O_RDONLY", 0),
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_CLOEXEC", 0o2000000),
    ("O_TMPFILE", 0o20200000),
];

const NS_FLAGS: &[(&str, i64)] = &[
    ("CLONE_NEWTIME", 0x80),
    ("CLONE_NEWNS", 0x20000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
    ("CLONE_FILES", 0x400),
    ("CLONE_FS", 0x200),
];

/// Reads one event mapping (several with `repeat`); `at` is its default
/// time offset.
fn load_event(node: Node<'_>, at: u64, problems: &mut Problems<'_>) -> Vec<Spec> {
    let Some(kind_name) = node.get("kind").and_then(|k| k.str()) else {
        problems.hint(node.line(), "an event needs a `kind`", "e.g. kind: process_exec");
        return Vec::new();
    };
    let Some((kind, keys)) = EventKind::from_name(kind_name).and_then(|k| Some((k, kind_keys(k)?))) else {
        let known: Vec<&str> = EventKind::ALL.iter().filter(|k| kind_keys(**k).is_some()).map(|k| k.as_str()).collect();
        problems.hint(
            node.line(),
            format!("cases cannot build `{kind_name}` events"),
            format!("kinds: {}", known.join(", ")),
        );
        return Vec::new();
    };
    let mut spec = Spec { kind, at_ns: at, values: HashMap::new() };
    let mut repeat = (1, 0, Vec::new());
    for (key, key_node, value) in node.entries().unwrap_or_default() {
        match key.as_str() {
            "kind" => {}
            "at" => match duration(value) {
                Ok(ns) => spec.at_ns = ns,
                Err(e) => problems.at(value.line(), e),
            },
            "repeat" => match load_repeat(value, keys) {
                Ok(r) => repeat = r,
                Err(e) => problems.hint(value.line(), e, "repeat: { count: 60, every: 100ms, vary: [dst_port] }"),
            },
            _ => match PROCESS_KEYS.iter().chain(keys).find(|(k, _)| *k == key) {
                Some((name, ty)) => match read_value(*ty, value) {
                    Ok(val) => {
                        if let Val::Text(t) = &val {
                            if let Err(e) = check_name(kind, name, t) {
                                problems.at(value.line(), e);
                            }
                        }
                        spec.values.insert(name, val);
                    }
                    Err(e) => problems.at(value.line(), format!("`{key}`: {e}")),
                },
                None => {
                    let names: Vec<&str> = PROCESS_KEYS.iter().chain(keys).map(|(k, _)| *k).collect();
                    let hint = format!("{kind_name} takes at, repeat, {}", names.join(", "));
                    problems.hint(key_node.line(), format!("unknown key `{key}` for {kind_name}"), hint);
                }
            },
        }
    }
    let (count, every, vary) = repeat;
    (0..count)
        .map(|i| {
            let mut copy = spec.clone();
            copy.at_ns += every * i as u64;
            for key in &vary {
                if let Some(Val::Int(v)) = copy.values.get_mut(key) {
                    *v += i;
                }
            }
            copy
        })
        .collect()
}

fn load_repeat(node: Node<'_>, keys: &[(&'static str, Ty)]) -> Result<(i64, u64, Vec<&'static str>), String> {
    let count = match node.get("count").and_then(|c| c.scalar()) {
        Some(Scalar::Int(n)) if (1..=100_000).contains(&n) => n,
        _ => return Err("`repeat` needs `count`: 1 to 100000".into()),
    };
    let every = node.get("every").map_or(Ok(SECOND), duration)?;
    let mut vary = Vec::new();
    for item in node.get("vary").map(Node::one_or_many).unwrap_or_default() {
        let name = item.text().unwrap_or_default();
        match PROCESS_KEYS.iter().chain(keys).find(|(k, ty)| *k == name && *ty == Ty::Int) {
            Some((k, _)) => vary.push(*k),
            None => return Err(format!("`vary` names numeric keys of this kind; `{name}` is not one")),
        }
    }
    for (key, _, _) in node.entries().unwrap_or_default() {
        if !["count", "every", "vary"].contains(&key.as_str()) {
            return Err(format!("unknown key `{key}` in `repeat`"));
        }
    }
    Ok((count, every, vary))
}

fn read_value(ty: Ty, node: Node<'_>) -> Result<Val, String> {
    let text = || node.str().map(str::to_owned).ok_or_else(|| format!("expected text, not {}", node.describe()));
    Ok(match ty {
        Ty::Int => Val::Int(integer(node)?),
        Ty::Text => Val::Text(text()?),
        Ty::Addr => {
            let t = node.text().unwrap_or_default();
            t.parse::<IpAddr>().map_err(|_| format!("`{t}` is not an IP address"))?;
            Val::Text(t)
        }
        Ty::Fd => {
            let t = text()?;
            FdKind::from_name(&t)
                .ok_or_else(|| format!("`{t}` is not an fd kind ({})", FdKind::ALL.map(FdKind::as_str).join(", ")))?;
            Val::Text(t)
        }
        Ty::List => match node.items() {
            Some(items) => Val::List(items.into_iter().map(|i| i.text().unwrap_or_default()).collect()),
            None => return Err("expected a list".into()),
        },
        Ty::OpenFlags => Val::Int(flag_bits(node, OPEN_FLAGS)?),
        Ty::NsFlags => Val::Int(flag_bits(node, NS_FLAGS)?),
        Ty::Ancestor => Val::Anc(ancestor(node)?),
        Ty::Ancestors => Val::Ancs(
            node.items()
                .ok_or("expected a list of {exe, args, pid}")?
                .into_iter()
                .map(ancestor)
                .collect::<Result<_, _>>()?,
        ),
        Ty::Creds => {
            let mut creds = Vec::new();
            for (key, _, value) in node.entries().ok_or("expected a mapping such as { uid: 1000, euid: 0 }")? {
                if !["uid", "euid", "suid", "gid", "egid", "sgid"].contains(&key.as_str()) {
                    return Err(format!("unknown id `{key}` (uid, euid, suid, gid, egid, sgid)"));
                }
                creds.push((key, u32::try_from(integer(value)?).map_err(|_| "ids are 0..2^32")?));
            }
            Val::Creds(creds)
        }
    })
}

fn ancestor(node: Node<'_>) -> Result<AncSpec, String> {
    let mut spec = AncSpec::default();
    for (key, _, value) in node.entries().ok_or("an ancestor is a mapping { exe, args, pid }")? {
        match key.as_str() {
            "pid" => spec.pid = Some(u32::try_from(integer(value)?).map_err(|_| "bad pid")?),
            "exe" => spec.exe = value.text(),
            "args" => spec.args = value.text(),
            other => return Err(format!("unknown key `{other}` of an ancestor (exe, args, pid)")),
        }
    }
    Ok(spec)
}

/// An integer: a YAML integer, or text `0o…`, `0x…`, `0b…`.
fn integer(node: Node<'_>) -> Result<i64, String> {
    match node.scalar() {
        Some(Scalar::Int(i)) => Ok(i),
        Some(Scalar::Str(s)) => {
            let (digits, radix) = match s.get(..2) {
                Some("0o") => (&s[2..], 8),
                Some("0x") => (&s[2..], 16),
                Some("0b") => (&s[2..], 2),
                _ => (s, 10),
            };
            i64::from_str_radix(digits, radix).map_err(|_| format!("`{s}` is not an integer"))
        }
        _ => Err(format!("expected an integer, not {}", node.describe())),
    }
}

/// An integer, or a list of flag names (and integers) or'ed together.
fn flag_bits(node: Node<'_>, names: &[(&str, i64)]) -> Result<i64, String> {
    let mut bits = 0;
    for item in node.one_or_many() {
        bits |= match item.str().and_then(|s| names.iter().find(|(n, _)| *n == s)) {
            Some((_, v)) => *v,
            None => integer(item).map_err(|_| {
                let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                format!("{:?} is neither an integer nor one of {}", item.text().unwrap_or_default(), known.join(", "))
            })?,
        };
    }
    Ok(bits)
}

/// `1.5s`, `250ms`, `2m`, or a number of seconds.
fn duration(node: Node<'_>) -> Result<u64, String> {
    let text = node.text().unwrap_or_default();
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1e6,
        "" | "s" => 1e9,
        "m" => 60e9,
        _ => return Err(format!("`{t}` is not a duration (e.g. 1.5s, 250ms, 2m)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n >= 0.0 && n * scale < 1e15 => Ok((n * scale).round() as u64),
        _ => Err(format!("`{t}` is not a duration (e.g. 1.5s, 250ms, 2m)")),
    }
}

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
struct Builder {
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

    fn event(&mut self, spec: &Spec, event_id: u64) -> Event {
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

/// Where each case's events start: `(base_ns, first event id)`, cases
/// [`CASE_GAP_NS`] apart, ids from 1 and unique across cases.
fn layout(cases: &[Case]) -> Vec<(u64, u64)> {
    let (mut base, mut id) = (FIRST_BASE_NS, 1);
    cases
        .iter()
        .map(|case| {
            let here = (base, id);
            base += case.span_ns() + CASE_GAP_NS;
            id += case.event_count() as u64;
            here
        })
        .collect()
}

/// The events of every case under `dir`, in case order: what a replay
/// file of the whole corpus holds.
pub fn case_events(dir: &Path) -> Result<Vec<Event>, Vec<Problem>> {
    let (cases, problems) = load_cases(dir);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(events_of(&cases))
}

/// The events of `cases`, laid out as [`case_events`] does.
pub fn events_of(cases: &[Case]) -> Vec<Event> {
    let places = layout(cases);
    cases.iter().enumerate().flat_map(|(i, case)| case.events(i, places[i].0, places[i].1)).collect()
}

/// How one case went.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub rule: Option<String>,
    pub expect: Expect,
    /// Ids of the rules that fired, sorted, once each.
    pub fired: Vec<String>,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Every case's result, and the problems of the case files.
#[derive(Clone, Debug, Default)]
pub struct CaseReport {
    pub results: Vec<CaseResult>,
    pub problems: Vec<Problem>,
}

impl CaseReport {
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// No problem and no failure.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.failures().next().is_none()
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        for r in self.failures() {
            let rule = r.rule.as_deref().unwrap_or("any");
            let why = r.failure.as_deref().unwrap_or_default();
            writeln!(f, "{}:{}: case `{}` ({rule}): {why}; fired: {:?}", r.file.display(), r.line, r.name, r.fired)?;
        }
        let failed = self.failures().count();
        write!(
            f,
            "{} cases, {} passed, {failed} failed, {} problems",
            self.results.len(),
            self.results.len() - failed,
            self.problems.len()
        )
    }
}

/// Runs every case under `dir` through a fresh engine on `set`.
pub fn run_cases(set: Arc<RuleSet>, dir: &Path) -> CaseReport {
    let (cases, problems) = load_cases(dir);
    let places = layout(&cases);
    let config = L2Config { reorder_ns: 2 * SECOND, max_states_per_rule: 10_000, max_states_total: 100_000 };
    let mut results = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let mut engine = Engine::new(set.clone(), config);
        let mut firings = Vec::new();
        for event in case.events(i, places[i].0, places[i].1) {
            engine.process(&event, &mut firings);
        }
        engine.flush(u64::MAX, &mut firings);
        let mut fired: Vec<String> = firings.iter().map(|f| set.rules[f.rule].meta.id.to_string()).collect();
        fired.sort();
        fired.dedup();
        let failure = match &case.rule {
            Some(id) => match set.rules.iter().find(|r| &*r.meta.id == id) {
                None => Some(format!("no rule `{id}` in the set")),
                Some(rule) if !rule.meta.enabled && case.expect == Expect::Fire => Some("the rule is disabled".into()),
                Some(_) => {
                    let hit = fired.iter().any(|f| f == id);
                    match (case.expect, hit) {
                        (Expect::Fire, false) => Some("expected the rule to fire; it did not".into()),
                        (Expect::Silent, true) => Some("expected the rule to stay silent; it fired".into()),
                        _ => None,
                    }
                }
            },
            None => match (case.expect, fired.is_empty()) {
                (Expect::Fire, true) => Some("expected some rule to fire; none did".into()),
                (Expect::Silent, false) => Some("expected no rule to fire".into()),
                _ => None,
            },
        };
        results.push(CaseResult {
            file: case.file.clone(),
            line: case.line,
            name: case.name.clone(),
            rule: case.rule.clone(),
            expect: case.expect,
            fired,
            failure,
        });
    }
    CaseReport { results, problems }
}

#[cfg(test)]
#[path = "cases/tests.rs"]
mod tests;
