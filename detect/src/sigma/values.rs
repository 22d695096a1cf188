//! One Sigma field entry (`Name|mod|mod: value(s)`) → an [`Expr`].
//!
//! - Plain values are equality; `*` and `?` are wildcards (`\*`, `\?`, `\\`
//!   escape). A value whose only wildcards are a leading and/or a trailing
//!   `*` is a prefix, suffix, contains or equals test; any other wildcard
//!   makes it an anchored regex with the literal parts escaped.
//! - Text matching is ASCII case-insensitive unless `cased` is given;
//!   `re` patterns are case-sensitive unless `re|i` (or `(?i)`), as Sigma
//!   says. `base64`/`base64offset` values are matched case-sensitively:
//!   Base64 is not case-insensitive text.
//! - A list of values is any of them (all of them with `all`).
//! - Numbers compare as numbers on numeric fields, addresses by network.

use std::net::IpAddr;
use std::sync::Arc;

use pipeline::{EventKind, FieldType};

use super::fields::{self, kind_pred, Mapping, Record, Source};
use crate::rule::{Cidr, CmpOp, Expr, KindSet, Pred, Target, Test, TextOp};
use crate::yaml::{Node, Problems, Scalar};

/// The modifiers of one field entry.
#[derive(Debug, Default)]
struct Mods {
    op: Option<TextOp>,
    all: bool,
    cased: bool,
    /// `re`, with its flags (`i`, `m`, `s`).
    re: Option<String>,
    cidr: bool,
    exists: bool,
    cmp: Option<CmpOp>,
    neq: bool,
    windash: bool,
    base64: bool,
    base64offset: bool,
}

impl Mods {
    fn parse(mods: &[&str]) -> Result<Mods, (String, String)> {
        let mut m = Mods::default();
        let mut flags = String::new();
        let mut kinds = 0;
        for &modifier in mods {
            match modifier {
                "contains" | "startswith" | "endswith" => {
                    if m.op.is_some() {
                        return Err(("more than one of contains, startswith, endswith".into(), "keep one".into()));
                    }
                    m.op = Some(match modifier {
                        "contains" => TextOp::Contains,
                        "startswith" => TextOp::Prefix,
                        _ => TextOp::Suffix,
                    });
                    kinds += 1;
                }
                "all" => m.all = true,
                "cased" => m.cased = true,
                "re" => {
                    m.re = Some(String::new());
                    kinds += 1;
                }
                "i" | "m" | "s" if !flags.contains(modifier) => flags.push_str(modifier),
                "i" | "m" | "s" => {}
                "cidr" => {
                    m.cidr = true;
                    kinds += 1;
                }
                "exists" => {
                    m.exists = true;
                    kinds += 1;
                }
                "gt" | "gte" | "lt" | "lte" => {
                    m.cmp = Some(match modifier {
                        "gt" => CmpOp::Gt,
                        "gte" => CmpOp::Ge,
                        "lt" => CmpOp::Lt,
                        _ => CmpOp::Le,
                    });
                    kinds += 1;
                }
                "neq" => {
                    m.neq = true;
                    kinds += 1;
                }
                "windash" => m.windash = true,
                "base64" => m.base64 = true,
                "base64offset" => m.base64offset = true,
                "wide" | "utf16" | "utf16le" | "utf16be" => {
                    return Err((
                        format!("modifier `{modifier}`: UTF-16 encodings are not meaningful on Linux"),
                        "Linux command lines and paths are UTF-8; drop the modifier".into(),
                    ))
                }
                "expand" => {
                    return Err((
                        "modifier `expand`: placeholders need a processing pipeline, which hostflow does not have"
                            .into(),
                        "write the values out".into(),
                    ))
                }
                "fieldref" => {
                    return Err((
                        "modifier `fieldref`: comparing two fields of an event is not supported".into(),
                        "compare with literal values".into(),
                    ))
                }
                "minute" | "hour" | "day" | "week" | "month" | "year" => {
                    return Err((format!("time modifier `{modifier}` is not supported"), "drop it".into()))
                }
                other => {
                    return Err((
                        format!("unknown modifier `{other}`"),
                        "modifiers: contains, startswith, endswith, all, re (i, m, s), cidr, cased, exists, gt, gte, \
                         lt, lte, neq, windash, base64, base64offset"
                            .into(),
                    ))
                }
            }
        }
        if !flags.is_empty() {
            match &mut m.re {
                Some(re) => *re = flags,
                None => return Err(("modifiers `i`, `m`, `s` are flags of `re`".into(), "write `re|i`".into())),
            }
        }
        let encodes = m.base64 || m.base64offset || m.windash;
        if kinds > 1 || (encodes && (m.re.is_some() || m.cidr || m.exists || m.cmp.is_some() || m.neq)) {
            return Err((format!("modifiers `{}` do not combine", mods.join("|")), "split the test in two".into()));
        }
        if m.base64 && m.base64offset {
            return Err(("`base64` and `base64offset` do not combine".into(), "keep `base64offset|contains`".into()));
        }
        if m.windash && (m.base64 || m.base64offset) {
            return Err(("`windash` does not combine with Base64 encodings".into(), "split the test in two".into()));
        }
        if m.base64offset {
            match m.op {
                None | Some(TextOp::Contains) => m.op = Some(TextOp::Contains),
                Some(_) => {
                    return Err((
                        "`base64offset` only combines with `contains`".into(),
                        "write `base64offset|contains`".into(),
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// One piece of a Sigma string.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    /// `*`
    Star,
    /// `?`
    One,
}

/// Splits a Sigma string at its wildcards (`\*`, `\?` and `\\` escape; any
/// other backslash is literal).
fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    lit.push(next);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn has_wildcards(pieces: &[Piece]) -> bool {
    pieces.iter().any(|p| !matches!(p, Piece::Lit(_)))
}

fn literal(pieces: &[Piece]) -> String {
    pieces.iter().map(|p| if let Piece::Lit(s) = p { s.as_str() } else { "" }).collect()
}

/// A single test a value turned into; several of one entry are grouped
/// into one predicate where the model allows.
#[derive(Clone, Debug, PartialEq)]
enum Leaf {
    /// A literal, and whether it is compared case-sensitively.
    Text(TextOp, String, bool),
    Regex(String),
    Num(i128),
    Cidr(Cidr),
    Cmp(CmpOp, i128),
    Exists(bool),
}

/// A text value's pieces (after `op`'s wildcards) as a leaf.
fn text_leaf(mut pieces: Vec<Piece>, op: Option<TextOp>, cased: bool) -> Leaf {
    if matches!(op, Some(TextOp::Contains | TextOp::Suffix)) {
        pieces.insert(0, Piece::Star);
    }
    if matches!(op, Some(TextOp::Contains | TextOp::Prefix)) {
        pieces.push(Piece::Star);
    }
    let lead = pieces.iter().take_while(|p| **p == Piece::Star).count();
    let rest = &pieces[lead..];
    let trail = rest.iter().rev().take_while(|p| **p == Piece::Star).count();
    let middle = &rest[..rest.len() - trail];
    if middle.is_empty() && lead + trail > 0 {
        return Leaf::Exists(true);
    }
    if !has_wildcards(middle) {
        let op = match (lead > 0, trail > 0) {
            (false, false) => TextOp::Equals,
            (false, true) => TextOp::Prefix,
            (true, false) => TextOp::Suffix,
            (true, true) => TextOp::Contains,
        };
        return Leaf::Text(op, literal(middle), cased);
    }
    let mut re = String::from(if cased { "(?s)" } else { "(?is)" });
    if lead == 0 {
        re.push('^');
    }
    for piece in middle {
        match piece {
            Piece::Lit(s) => re.push_str(&regex::escape(s)),
            Piece::Star => re.push_str(".*"),
            // One character, not one byte: the dialect is bytewise ASCII.
            Piece::One => re.push_str("(?u:.)"),
        }
    }
    if trail == 0 {
        re.push('$');
    }
    Leaf::Regex(re)
}

/// `windash`: every `-` or `/` that starts a word (`\B[-/]\b`) in every
/// dash variant Sigma lists.
fn windash(pieces: &[Piece]) -> Result<Vec<Vec<Piece>>, String> {
    const DASHES: [char; 5] = ['-', '/', '–', '—', '―'];
    const MAX: usize = 3;
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut variants: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut count = 0;
    for piece in pieces {
        let Piece::Lit(text) = piece else {
            variants.iter_mut().for_each(|v| v.push(piece.clone()));
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        let mut parts: Vec<Vec<String>> = vec![vec![String::new()]];
        for (j, &c) in chars.iter().enumerate() {
            let before = if j > 0 { Some(chars[j - 1]) } else { None };
            let after = chars.get(j + 1).copied();
            // A neighbouring wildcard counts as a non-word character.
            if (c == '-' || c == '/') && !word(before) && word(after) {
                count += 1;
                if count > MAX {
                    return Err(format!("`windash` expands at most {MAX} dashes in one value"));
                }
                parts.push(DASHES.iter().map(|d| d.to_string()).collect());
                parts.push(vec![String::new()]);
            } else if let Some(last) = parts.last_mut().and_then(|p| p.last_mut()) {
                last.push(c);
            }
        }
        let mut texts = vec![String::new()];
        for options in parts {
            texts = texts.iter().flat_map(|t| options.iter().map(move |o| format!("{t}{o}"))).collect();
        }
        variants = variants
            .into_iter()
            .flat_map(|v| {
                texts.iter().map(move |t| {
                    let mut v = v.clone();
                    v.push(Piece::Lit(t.clone()));
                    v
                })
            })
            .collect();
    }
    Ok(variants)
}

/// Standard Base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `base64offset`: the value encoded at the three offsets it can have
/// inside a longer Base64 text, with the characters that depend on its
/// neighbours cut off (as Sigma specifies).
pub(crate) fn base64_offsets(value: &str) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut bytes = vec![b' '; i];
            bytes.extend_from_slice(value.as_bytes());
            let encoded = base64(&bytes);
            let end = encoded.len().saturating_sub(END_CUT[(value.len() + i) % 3]);
            encoded.get(START[i]..end.max(START[i])).unwrap_or_default().to_owned()
        })
        .collect()
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Number => "a number",
        FieldType::Text => "text",
        FieldType::Address => "an IP address",
    }
}

fn target_type(target: Target) -> FieldType {
    match target {
        Target::Field(field) => field.field_type(),
        Target::Arg(_) => FieldType::Text,
    }
}

fn sigma_int(node: Node<'_>) -> Option<i128> {
    match node.scalar()? {
        Scalar::Int(i) => Some(i128::from(i)),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn sigma_bool(node: Node<'_>) -> Option<bool> {
    match node.scalar()? {
        Scalar::Bool(b) => Some(b),
        Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `10.`, `192.168.`: a prefix of whole IPv4 octets, as a network.
fn ipv4_prefix(text: &str) -> Option<Cidr> {
    let octets: Vec<&str> = text.strip_suffix('.')?.split('.').collect();
    if octets.is_empty() || octets.len() > 3 {
        return None;
    }
    let mut addr = [0u8; 4];
    for (slot, octet) in addr.iter_mut().zip(&octets) {
        if octet.is_empty() || octet.len() > 3 {
            return None;
        }
        *slot = octet.parse().ok()?;
    }
    Some(Cidr { addr: IpAddr::from(addr), prefix: 8 * octets.len() as u8 })
}

/// The leaves (alternatives) one value stands for.
fn value_leaves(item: Node<'_>, ty: FieldType, m: &Mods) -> Result<Vec<Leaf>, (String, String)> {
    if m.exists {
        return sigma_bool(item)
            .map(|b| vec![Leaf::Exists(b)])
            .ok_or_else(|| ("`exists` takes true or false".into(), "e.g. `Field|exists: true`".into()));
    }
    if item.is_null() {
        return Ok(vec![Leaf::Exists(false)]);
    }
    let Some(scalar) = item.scalar() else {
        return Err((format!("a value must be a scalar, not {}", item.describe()), "write text or a number".into()));
    };
    if let Some(op) = m.cmp {
        if ty != FieldType::Number {
            return Err((
                format!("`gt`/`gte`/`lt`/`lte` compare numbers; this field is {}", type_name(ty)),
                String::new(),
            ));
        }
        return sigma_int(item)
            .map(|v| vec![Leaf::Cmp(op, v)])
            .ok_or_else(|| ("a numeric comparison takes an integer".into(), String::new()));
    }
    let text = item.text().unwrap_or_default();
    if let Some(flags) = &m.re {
        if ty != FieldType::Text {
            return Err((format!("`re` applies to text; this field is {}", type_name(ty)), String::new()));
        }
        let pattern = if flags.is_empty() { text } else { format!("(?{flags}){text}") };
        if let Err(e) = crate::compile::check_regex(&pattern) {
            return Err((
                format!("the regex does not compile: {}", e.to_string().lines().last().unwrap_or("invalid")),
                "Sigma regexes are PCRE; hostflow supports the subset without look-around or back-references, with ASCII \\w \\s \\d \\b and (?i) as PCRE has them; (?u) makes them Unicode".into(),
            ));
        }
        return Ok(vec![Leaf::Regex(pattern)]);
    }
    if m.cidr {
        if ty != FieldType::Address {
            return Err((format!("`cidr` applies to addresses; this field is {}", type_name(ty)), String::new()));
        }
        return Cidr::parse(text.trim()).map(|c| vec![Leaf::Cidr(c)]).map_err(|e| (e, "e.g. `10.0.0.0/8`".into()));
    }
    match ty {
        FieldType::Number => {
            if text.trim() == "*" {
                return Ok(vec![Leaf::Exists(true)]);
            }
            if m.op.is_some() || m.windash || m.base64 || m.base64offset {
                return Err(("text modifiers do not apply to a numeric field".into(), "compare with a number".into()));
            }
            match (scalar, sigma_int(item)) {
                (Scalar::Int(_) | Scalar::Str(_), Some(v)) => Ok(vec![Leaf::Num(v)]),
                _ => Err((format!("`{text}` is not an integer, and this field is a number"), String::new())),
            }
        }
        FieldType::Address => {
            let p = pieces(&text);
            let (op, p) = match (m.op, p.as_slice()) {
                (None, [Piece::Star]) => return Ok(vec![Leaf::Exists(true)]),
                (None, [Piece::Lit(s), Piece::Star]) => (Some(TextOp::Prefix), s.clone()),
                (op, _) if !has_wildcards(&p) => (op, literal(&p)),
                _ => (Some(TextOp::Contains), text.clone()),
            };
            let cidr = match op {
                None if !p.contains('/') => Cidr::parse(p.trim()).ok(),
                Some(TextOp::Prefix) => ipv4_prefix(p.trim()),
                _ => None,
            };
            cidr.map(|c| vec![Leaf::Cidr(c)]).ok_or_else(|| {
                (format!("`{text}` is not an address this test can compare"), "match addresses with `|cidr`".into())
            })
        }
        FieldType::Text => {
            let encodes = m.base64 || m.base64offset;
            let p = pieces(&text);
            if encodes && has_wildcards(&p) {
                return Err(("a Base64-encoded value cannot hold wildcards".into(), "escape them (`\\*`)".into()));
            }
            if m.base64offset {
                let raw = literal(&p);
                return Ok(base64_offsets(&raw).into_iter().map(|v| Leaf::Text(TextOp::Contains, v, true)).collect());
            }
            if m.base64 {
                let encoded = base64(literal(&p).as_bytes());
                let p = if encoded.is_empty() { Vec::new() } else { vec![Piece::Lit(encoded)] };
                return Ok(vec![text_leaf(p, m.op, true)]);
            }
            let variants = if m.windash { windash(&p).map_err(|e| (e, String::new()))? } else { vec![p] };
            Ok(variants.into_iter().map(|v| text_leaf(v, m.op, m.cased)).collect())
        }
    }
}

/// Groups leaves into predicates: values of one kind of test share one
/// predicate (`all` says whether every one must hold).
fn group(target: Target, leaves: Vec<Leaf>, all: bool) -> Vec<Expr> {
    let mut texts: Vec<(TextOp, Vec<Arc<str>>, bool)> = Vec::new();
    let mut patterns = Vec::new();
    let mut nums = Vec::new();
    let mut cidrs = Vec::new();
    let mut others = Vec::new();
    for leaf in leaves {
        match leaf {
            Leaf::Text(op, value, cased) => match texts.iter_mut().find(|(o, _, c)| *o == op && *c == cased) {
                Some((_, values, _)) => values.push(value.into()),
                None => texts.push((op, vec![value.into()], cased)),
            },
            Leaf::Regex(p) => patterns.push(Arc::from(p)),
            Leaf::Num(n) if all => others.push(Test::NumIn(vec![n])),
            Leaf::Num(n) => nums.push(n),
            Leaf::Cidr(c) if all => others.push(Test::Cidr(vec![c])),
            Leaf::Cidr(c) => cidrs.push(c),
            Leaf::Cmp(op, value) => others.push(Test::Num { op, value }),
            Leaf::Exists(b) => others.push(Test::Exists(b)),
        }
    }
    let mut tests: Vec<Test> =
        texts.into_iter().map(|(op, values, cased)| Test::Text { op, values, all, cased }).collect();
    if !patterns.is_empty() {
        tests.push(Test::Regex { patterns, all });
    }
    if !nums.is_empty() {
        tests.push(Test::NumIn(nums));
    }
    if !cidrs.is_empty() {
        tests.push(Test::Cidr(cidrs));
    }
    tests.extend(others);
    tests.into_iter().map(|test| Expr::Pred(Pred { target, test })).collect()
}

/// `Any`/`All` of the parts, a single part as itself.
pub(crate) fn join(mut parts: Vec<Expr>, all: bool) -> Expr {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return only;
        }
    }
    if all {
        Expr::All(parts)
    } else {
        Expr::Any(parts)
    }
}

/// The values (scalar or list) of an entry.
fn items<'a>(value: Node<'a>, problems: &mut Problems<'_>) -> Option<Vec<Node<'a>>> {
    if value.is_mapping() {
        problems.hint(value.line(), "a field takes a value or a list of values, not a mapping", "write `Field: value`");
        return None;
    }
    let items = value.one_or_many();
    if items.is_empty() {
        problems.at(value.line(), "an empty list of values matches nothing");
        return None;
    }
    Some(items)
}

/// One entry `key: value` of a selection of a rule of `source`.
pub(crate) fn entry(
    key: &str,
    line: usize,
    value: Node<'_>,
    source: Source,
    record: Option<Record>,
    problems: &mut Problems<'_>,
) -> Option<Expr> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    let mapping = match fields::map(source, name, record) {
        Ok(mapping) => mapping,
        Err((message, hint)) => {
            report(problems, line, message, hint);
            return None;
        }
    };
    let m = match Mods::parse(&mods) {
        Ok(m) => m,
        Err((message, hint)) => {
            report(problems, line, message, hint);
            return None;
        }
    };
    // Where the value is read: one target, or one per kind (each under its
    // kind check).
    let targets: Vec<(Target, Option<KindSet>)> = match mapping {
        Mapping::Target(t) => vec![(t, None)],
        Mapping::Scoped(t, kinds) => vec![(t, Some(kinds))],
        Mapping::Direction { connect, accept } => vec![
            (Target::Field(connect), Some(KindSet::of(&[EventKind::NetConnect]))),
            (Target::Field(accept), Some(KindSet::of(&[EventKind::NetAccept]))),
        ],
        Mapping::Initiated | Mapping::RecordType | Mapping::Syscall => {
            return selector(name, line, mapping, value, &mods, problems);
        }
    };
    let ty = targets.first().map_or(FieldType::Text, |(t, _)| target_type(*t));
    if (m.op.is_some() || m.windash || m.base64 || m.base64offset) && ty == FieldType::Number {
        problems.at(line, format!("`{name}` is a number; text modifiers do not apply"));
        return None;
    }
    if ty == FieldType::Address
        && (m.windash || m.base64 || m.base64offset || matches!(m.op, Some(op) if op != TextOp::Prefix))
    {
        problems.hint(line, format!("`{name}` is an address; it is not compared as text"), "use `|cidr`");
        return None;
    }
    let items = items(value, problems)?;
    let before = problems.list.len();
    let mut alternatives = Vec::new();
    for item in items {
        match value_leaves(item, ty, &m) {
            Ok(leaves) => alternatives.push(leaves),
            Err((message, hint)) => report(problems, item.line(), message, hint),
        }
    }
    if problems.list.len() > before {
        return None;
    }
    let build = |target: Target| {
        let mut expr = if m.all {
            let (single, multi): (Vec<_>, Vec<_>) = alternatives.iter().cloned().partition(|a| a.len() == 1);
            let mut parts = group(target, single.into_iter().flatten().collect(), true);
            parts.extend(multi.into_iter().map(|leaves| join(group(target, leaves, false), false)));
            join(parts, true)
        } else {
            join(group(target, alternatives.iter().flatten().cloned().collect(), false), false)
        };
        if m.neq {
            let exists = Expr::Pred(Pred { target, test: Test::Exists(true) });
            expr = Expr::All(vec![exists, Expr::Not(Box::new(expr))]);
        }
        expr
    };
    let parts = targets
        .into_iter()
        .map(|(target, scope)| match scope {
            Some(kinds) => Expr::All(vec![kind_pred(kinds), build(target)]),
            None => build(target),
        })
        .collect();
    Some(join(parts, false))
}

/// `Initiated`, auditd `type` and `syscall`: values that choose kinds.
fn selector(
    name: &str,
    line: usize,
    mapping: Mapping,
    value: Node<'_>,
    mods: &[&str],
    problems: &mut Problems<'_>,
) -> Option<Expr> {
    if !mods.is_empty() {
        problems.hint(line, format!("`{name}` takes plain values, no modifiers"), "write `Field: value` or a list");
        return None;
    }
    let items = items(value, problems)?;
    let before = problems.list.len();
    let mut alternatives = Vec::new();
    for item in items {
        let text = item.text().unwrap_or_default();
        match mapping {
            Mapping::Initiated => match sigma_bool(item) {
                Some(true) => alternatives.push(kind_pred(KindSet::of(&[EventKind::NetConnect]))),
                Some(false) => alternatives.push(kind_pred(KindSet::of(&[EventKind::NetAccept]))),
                None => problems.at(item.line(), "`Initiated` is 'true' or 'false'"),
            },
            Mapping::RecordType => match Record::from_name(&text) {
                Some(record) => alternatives.push(kind_pred(record.kinds())),
                None => problems.hint(
                    item.line(),
                    format!("auditd record type `{text}` has no hostflow counterpart"),
                    "record types: EXECVE, PATH, SYSCALL",
                ),
            },
            _ => match fields::syscall(&text) {
                Some((kind, extra)) => {
                    let kind = kind_pred(KindSet::of(&[kind]));
                    alternatives.push(match extra {
                        Some(pred) => Expr::All(vec![kind, Expr::Pred(pred)]),
                        None => kind,
                    });
                }
                None => problems.hint(
                    item.line(),
                    format!("syscall `{text}` is not observed by hostflow"),
                    "observed: execve, fork/clone, setuid family, capset, setns, unshare, init_module, \
                     finit_module, ptrace, bpf, connect, accept, listen, open, chmod, unlink, rename, link, symlink",
                ),
            },
        }
    }
    (problems.list.len() == before).then(|| join(alternatives, false))
}

/// Records a problem, with its hint when there is one.
pub(crate) fn report(problems: &mut Problems<'_>, line: usize, message: String, hint: String) {
    if hint.is_empty() {
        problems.at(line, message);
    } else {
        problems.hint(line, message, hint);
    }
}

/// Whether `key` is a field-less (keyword) entry: `''`, `'|all'`.
pub(crate) fn is_keyword(key: &str) -> bool {
    key.split('|').next().is_none_or(str::is_empty)
}

/// Reads the target a group-by or `field` name stands for in a rule of
/// `source` matching `kinds`.
pub(crate) fn plain_target(source: Source, kinds: KindSet, name: &str) -> Result<Target, (String, String)> {
    match fields::map(source, name, None)? {
        Mapping::Target(t) | Mapping::Scoped(t, _) => Ok(t),
        Mapping::Direction { connect, accept } => {
            let (connects, accepts) = (KindSet::of(&[EventKind::NetConnect]), KindSet::of(&[EventKind::NetAccept]));
            if kinds.intersect(connects) == kinds {
                Ok(Target::Field(connect))
            } else if kinds.intersect(accepts) == kinds {
                Ok(Target::Field(accept))
            } else {
                Err((
                    format!("`{name}` is the remote end of a connect but the local end of an accept"),
                    "narrow the rule with `Initiated: 'true'` or `'false'`".into(),
                ))
            }
        }
        _ => Err((format!("`{name}` selects event kinds; it is not a value to group or count by"), String::new())),
    }
}
