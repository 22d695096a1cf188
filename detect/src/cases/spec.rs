//! The case format's event entries: keys, their types and the values
//! they accept, read into [`Spec`]s (one per event, several with `repeat`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use pipeline::event::{CredSyscall, FdKind, FileOp, ModuleSyscall, NamespaceSyscall};
use pipeline::EventKind;

use super::SECOND;
use crate::yaml::{Node, Problems, Scalar};

/// A parsed value of an event key.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val {
    Int(i64),
    Text(String),
    List(Vec<String>),
    Anc(AncSpec),
    Ancs(Vec<AncSpec>),
    Creds(Vec<(String, u32)>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct AncSpec {
    pub(super) pid: Option<u32>,
    pub(super) exe: Option<String>,
    pub(super) args: Option<String>,
}

/// One event as written: its kind, time and keys.
#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub(super) kind: EventKind,
    pub(super) at_ns: u64,
    pub(super) values: HashMap<&'static str, Val>,
}

impl Spec {
    pub(super) fn int(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(Val::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub(super) fn num<T: TryFrom<i64>>(&self, key: &str, default: T) -> T {
        self.int(key).and_then(|v| T::try_from(v).ok()).unwrap_or(default)
    }

    pub(super) fn text(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Val::Text(t)) => Some(t),
            _ => None,
        }
    }

    pub(super) fn arc(&self, key: &str, default: &str) -> Arc<str> {
        Arc::from(self.text(key).unwrap_or(default))
    }

    pub(super) fn addr(&self, key: &str, default: &str) -> IpAddr {
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
pub(super) fn load_event(node: Node<'_>, at: u64, problems: &mut Problems<'_>) -> Vec<Spec> {
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
