//! Group keys and distinct values as owned values, the lineage key, and the
//! text of summaries.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use pipeline::event::Lineage;
use pipeline::{Event, FieldValue, ProcessKey};

use crate::rule::{canonical, GroupKey, Target};

/// A value of a group key or a distinct target, owned (the event is not
/// kept).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Value {
    Proc(ProcessKey),
    Int(i128),
    /// The bits of an `f64`.
    Float(u64),
    Str(Box<str>),
    Addr(IpAddr),
}

/// A group key: one value (no allocation) or several.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Group {
    One(Value),
    Many(Box<[Value]>),
}

// Hashes written by hand: fewer hasher calls than derived ones (the
// variant is left out: a rule's values of one position share a type).
impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Proc(key) => {
                state.write_u64(key.start_time_ns);
                state.write_u32(key.pid);
            }
            Value::Int(i) => state.write_i128(*i),
            Value::Float(bits) => state.write_u64(*bits),
            Value::Str(text) => state.write(text.as_bytes()),
            Value::Addr(addr) => addr.hash(state),
        }
    }
}

impl Hash for Group {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Group::One(value) => value.hash(state),
            Group::Many(values) => values.iter().for_each(|v| v.hash(state)),
        }
    }
}

impl Group {
    pub(super) fn first(&self) -> Option<&Value> {
        match self {
            Group::One(v) => Some(v),
            Group::Many(vs) => vs.first(),
        }
    }
}

pub(super) fn group_of(
    event: &Event,
    process: Option<ProcessKey>,
    lineage: Option<ProcessKey>,
    keys: &[GroupKey],
) -> Option<Group> {
    let one = |key: GroupKey| -> Option<Value> {
        match key {
            GroupKey::Process => process.map(Value::Proc),
            GroupKey::Lineage => lineage.map(Value::Proc),
            GroupKey::Field(target) => value_of(event, target),
        }
    };
    match keys {
        [key] => one(*key).map(Group::One),
        keys => keys.iter().map(|k| one(*k)).collect::<Option<Box<[Value]>>>().map(Group::Many),
    }
}

/// A target's value as an owned value (text is copied).
pub(super) fn value_of(event: &Event, target: Target) -> Option<Value> {
    match target {
        Target::Field(field) => Some(match event.field(field)? {
            FieldValue::Int(i) => Value::Int(i),
            FieldValue::Float(f) => Value::Float(f.to_bits()),
            FieldValue::Str(s) => Value::Str(s.into()),
            FieldValue::Args(argv) => Value::Str(argv.joined().into()),
            FieldValue::Addr(addr) => Value::Addr(canonical(addr)),
            FieldValue::List(items) => Value::Str(items.join("\n").into()),
        }),
        Target::Arg(i) => {
            let argv = match event {
                Event::ProcessExec(e) => &e.argv,
                _ => &event.context()?.argv,
            };
            argv.iter().nth(usize::from(i)).map(|arg| Value::Str(arg.into()))
        }
    }
}

pub(super) fn target_name(target: Target) -> String {
    match target {
        Target::Field(field) => field.as_str().to_string(),
        Target::Arg(i) => format!("argv[{i}]"),
    }
}

/// `30s`, `5m`, `250ms`: the largest unit that divides the span.
pub(super) fn duration(ns: u64) -> String {
    for (unit, name) in [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms")] {
        if ns >= unit && ns.is_multiple_of(unit) {
            return format!("{}{name}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// The lineage key of an event ([`GroupKey::Lineage`]): for a process in
/// an audit login session (`session_id`, set at login by pam_loginuid and
/// inherited by everything the login starts; a per-boot counter, not a
/// pid) the session itself, keyed as pid 0 with the session id as its
/// start time — no real process has pid 0, so it cannot collide; for a
/// process outside any session (services) the ancestor just below PID 1
/// (when the ancestry reaches PID 1); else the process itself. Two ssh
/// logins are two lineages even though both descend from one sshd.
/// `None` for an event without a process.
pub fn lineage_key(event: &Event) -> Option<ProcessKey> {
    let process = *event.process()?;
    let Some(context) = event.context().filter(|c| c.lineage != Lineage::ProcessUnknown) else {
        return Some(process);
    };
    let session = context.session_id;
    if session != u32::MAX {
        return Some(ProcessKey { pid: 0, start_time_ns: u64::from(session) });
    }
    let ancestry = &context.ancestry;
    match ancestry.last() {
        Some(root) if root.process.pid == 1 => {
            Some(ancestry.len().checked_sub(2).and_then(|i| ancestry.get(i)).map_or(process, |a| a.process))
        }
        _ => Some(process),
    }
}
