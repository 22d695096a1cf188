//! Reading a target's value out of an event for the evaluator (text
//! views, numbers, addresses) and the small comparisons and sets the
//! compiled leaves use.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use pipeline::event::Argv;
use pipeline::{Event, FieldValue};

use crate::rule::{canonical, mask, Cidr, CmpOp, Target, TextOp};

/// Addresses and networks: one hash set per prefix length present.
#[derive(Debug, Default)]
pub(super) struct IpSet {
    v4: Vec<(u8, HashSet<IpAddr>)>,
    v6: Vec<(u8, HashSet<IpAddr>)>,
}

impl IpSet {
    pub(super) fn insert(&mut self, net: Cidr) {
        let list = if net.addr.is_ipv4() { &mut self.v4 } else { &mut self.v6 };
        match list.iter_mut().find(|(p, _)| *p == net.prefix) {
            Some((_, set)) => {
                set.insert(net.addr);
            }
            None => list.push((net.prefix, HashSet::from([net.addr]))),
        }
    }

    pub(super) fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        let list = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        list.iter().any(|(prefix, set)| set.contains(&mask(addr, *prefix)))
    }
}

/// 64 hex digits → 32 bytes.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

pub(super) fn compare(op: CmpOp, v: i128, want: i128) -> bool {
    match op {
        CmpOp::Eq => v == want,
        CmpOp::Ne => v != want,
        CmpOp::Gt => v > want,
        CmpOp::Ge => v >= want,
        CmpOp::Lt => v < want,
        CmpOp::Le => v <= want,
    }
}

pub(super) fn text_holds(op: TextOp, text: &str, value: &str, cased: bool) -> bool {
    let (t, v) = (text.as_bytes(), value.as_bytes());
    let eq = |a: &[u8], b: &[u8]| if cased { a == b } else { a.eq_ignore_ascii_case(b) };
    match op {
        TextOp::Equals => eq(t, v),
        TextOp::Prefix => t.len() >= v.len() && eq(&t[..v.len()], v),
        TextOp::Suffix => t.len() >= v.len() && eq(&t[t.len() - v.len()..], v),
        TextOp::Contains => v.is_empty() || (t.len() >= v.len() && t.windows(v.len()).any(|w| eq(w, v))),
    }
}

/// A non-text value of a target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i128),
    Addr(IpAddr),
    Other,
}

/// The target's value as a number or an address.
pub fn value(target: Target, event: &Event) -> Option<Value> {
    match target {
        Target::Field(field) => Some(match event.field(field)? {
            FieldValue::Int(v) => Value::Int(v),
            FieldValue::Float(f) => Value::Int(f as i128),
            FieldValue::Addr(a) => Value::Addr(a),
            _ => Value::Other,
        }),
        Target::Arg(i) => argv(event)?.iter().nth(usize::from(i)).map(|_| Value::Other),
    }
}

/// The command line a target `argv[i]` reads: an exec's own, else the
/// process context's.
fn argv(event: &Event) -> Option<&Argv> {
    match event {
        Event::ProcessExec(e) => Some(&e.argv),
        _ => event.context().map(|c| &c.argv),
    }
}

/// Calls `f` with each text view of the target's value (one, or one per
/// item of a list such as the environment); returns whether the event has
/// the value at all. `buffer` holds texts that must be built (arguments
/// joined with spaces, numbers, addresses).
pub fn with_texts(target: Target, event: &Event, buffer: &mut String, mut f: impl FnMut(&str)) -> bool {
    let field = match target {
        Target::Arg(i) => {
            return match argv(event).and_then(|a| a.iter().nth(usize::from(i))) {
                Some(arg) => {
                    f(arg);
                    true
                }
                None => false,
            };
        }
        Target::Field(field) => field,
    };
    match event.field(field) {
        None => false,
        Some(FieldValue::Str(text)) => {
            f(text);
            true
        }
        Some(FieldValue::Args(args)) => {
            buffer.clear();
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    buffer.push(' ');
                }
                buffer.push_str(arg);
            }
            f(buffer);
            true
        }
        Some(FieldValue::List(items)) => {
            for item in items {
                f(item);
            }
            true
        }
        Some(FieldValue::Int(v)) => {
            buffer.clear();
            let _ = write!(buffer, "{v}");
            f(buffer);
            true
        }
        Some(FieldValue::Float(v)) => {
            buffer.clear();
            let _ = write!(buffer, "{v}");
            f(buffer);
            true
        }
        Some(FieldValue::Addr(a)) => {
            buffer.clear();
            let _ = write!(buffer, "{}", canonical(a));
            f(buffer);
            true
        }
    }
}
