//! hostflow's own rule files: YAML with `rules:` and `ioc_sets:` lists
//! (schema and examples in README, "Detection rules"). Walked by hand over
//! [`crate::yaml::Node`] so that every problem of a file is reported at
//! once, with its line and rule id; a rule with any problem is not loaded.

use std::path::Path;
use std::sync::Arc;

use pipeline::{Confidence, EventKind, Field, FieldType, Severity};

use crate::rule::{
    Body, Cidr, CmpOp, Count, Exceptions, Expr, Format, GroupKey, IocKind, IocSet, KindSet, Match, Origin, Pred,
    Relation, Rule, RuleMeta, Sequence, Step, Target, Test, TextOp,
};
use crate::yaml::{duration_ns, Node, Problems, Scalar};

mod anomaly;
mod chain;

pub use chain::MAX_STAGES;

/// Whether a document is a native rule file (it has `rules` or `ioc_sets`).
pub fn is_native(doc: Node<'_>) -> bool {
    doc.get("rules").is_some() || doc.get("ioc_sets").is_some()
}

/// What one native document yields.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rules: Vec<Rule>,
    pub ioc_sets: Vec<IocSet>,
}

/// Reads one native document of `file`. IOC files named by `file:` are
/// read relative to `file`'s directory.
pub fn load_document(file: &Arc<Path>, doc: Node<'_>, problems: &mut Problems<'_>) -> Loaded {
    let mut loaded = Loaded::default();
    let Some(entries) = doc.entries() else {
        problems.at(
            doc.line(),
            format!("a rule file must be a mapping with `rules:` and/or `ioc_sets:`, not {}", doc.describe()),
        );
        return loaded;
    };
    for (key, key_node, value) in entries {
        match key.as_str() {
            "rules" => match value.items() {
                Some(items) => {
                    for item in items {
                        if let Some(rule) = load_rule(file, item, problems) {
                            loaded.rules.push(rule);
                        }
                    }
                }
                None => problems.at(value.line(), "`rules` must be a list of rules"),
            },
            "ioc_sets" => match value.items() {
                Some(items) => {
                    for item in items {
                        if let Some(set) = load_ioc_set(file, item, problems) {
                            loaded.ioc_sets.push(set);
                        }
                    }
                }
                None => problems.at(value.line(), "`ioc_sets` must be a list"),
            },
            other => problems.hint(
                key_node.line(),
                format!("unknown key `{other}`"),
                "a rule file has `rules` and `ioc_sets`",
            ),
        }
    }
    loaded
}

const RULE_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "severity",
    "confidence",
    "attack",
    "tags",
    "enabled",
    "exceptions",
    "match",
    "sequence",
    "count",
    "anomaly",
    "chain",
];

/// The keys that hold a rule's body; a rule has exactly one.
const BODY_KEYS: [&str; 5] = ["match", "sequence", "count", "anomaly", "chain"];

fn load_rule(file: &Arc<Path>, node: Node<'_>, problems: &mut Problems<'_>) -> Option<Rule> {
    let before = problems.list.len();
    problems.rule_id = None;
    let Some(entries) = node.entries() else {
        problems.at(node.line(), format!("a rule must be a mapping, not {}", node.describe()));
        return None;
    };
    let id = match node.get("id").and_then(Node::text) {
        Some(id) if !id.trim().is_empty() => id,
        _ => {
            problems.hint(node.line(), "a rule without an `id`", "give every rule a unique id, e.g. `id: hf-linux-…`");
            String::new()
        }
    };
    problems.rule_id = Some(id.clone());
    for (key, key_node, _) in &entries {
        if !RULE_KEYS.contains(&key.as_str()) {
            problems.hint(
                key_node.line(),
                format!("unknown key `{key}`"),
                format!("a rule's keys are: {}", RULE_KEYS.join(", ")),
            );
        }
    }
    let text = |key: &str, problems: &mut Problems<'_>, required: bool| -> Arc<str> {
        match node.get(key) {
            Some(v) => match v.text() {
                Some(t) => t.into(),
                None => {
                    problems.at(v.line(), format!("`{key}` must be text, not {}", v.describe()));
                    "".into()
                }
            },
            None => {
                if required {
                    problems.at(node.line(), format!("missing `{key}`"));
                }
                "".into()
            }
        }
    };
    let title = text("title", problems, true);
    let description = text("description", problems, false);
    let severity = match node.get("severity") {
        Some(v) => named(
            v,
            "severity",
            Severity::from_name,
            &Severity::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            problems,
        ),
        None => {
            problems.at(node.line(), "missing `severity` (info, low, medium, high, critical)");
            None
        }
    };
    let confidence = match node.get("confidence") {
        Some(v) => named(
            v,
            "confidence",
            Confidence::from_name,
            &Confidence::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            problems,
        ),
        None => {
            problems.at(node.line(), "missing `confidence` (definite, very_high, high, medium, low)");
            None
        }
    };
    let attack = strings(node.get("attack"), "attack", problems)
        .into_iter()
        .filter_map(|(line, t)| {
            let upper = t.to_ascii_uppercase();
            if valid_technique(&upper) {
                Some(Arc::from(upper))
            } else {
                problems.hint(line, format!("`{t}` is not an ATT&CK technique id"), "write T1059 or T1059.004");
                None
            }
        })
        .collect();
    let tags = strings(node.get("tags"), "tags", problems).into_iter().map(|(_, t)| Arc::from(t)).collect();
    let enabled = match node.get("enabled") {
        None => true,
        Some(v) => match v.scalar() {
            Some(Scalar::Bool(b)) => b,
            _ => {
                problems.at(v.line(), "`enabled` must be true or false");
                true
            }
        },
    };
    let exceptions = node.get("exceptions").map(|e| load_exceptions(e, problems)).unwrap_or_default();
    let bodies: Vec<(&str, Node<'_>)> = BODY_KEYS.into_iter().filter_map(|k| node.get(k).map(|n| (k, n))).collect();
    let body = match bodies.as_slice() {
        [("match", m)] => load_match(*m, problems).map(Body::Indicator),
        [("sequence", s)] => load_sequence(*s, problems).map(Body::Sequence),
        [("count", c)] => load_count(*c, problems).map(Body::Count),
        [("anomaly", a)] => anomaly::load(*a, problems).map(Body::Anomaly),
        [("chain", c)] => chain::load(*c, problems).map(Body::Chain),
        [] => {
            problems.hint(
                node.line(),
                "the rule has no body",
                "give it one of `match` (L1), `sequence` or `count` (L2), `anomaly` (L3), `chain` (L4)",
            );
            None
        }
        _ => {
            problems.at(node.line(), "a rule has exactly one of `match`, `sequence`, `count`, `anomaly`, `chain`");
            None
        }
    };
    if problems.list.len() > before {
        return None;
    }
    Some(Rule {
        meta: RuleMeta {
            id: id.into(),
            title,
            description,
            severity: severity?,
            confidence: confidence?,
            attack,
            tags,
            enabled,
            exceptions,
        },
        body: body?,
        origin: Origin { file: file.clone(), line: node.line(), format: Format::Native },
    })
}

/// `T` + 4 digits, optionally `.` + 3 digits.
pub fn valid_technique(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

fn named<T: Copy>(
    node: Node<'_>,
    what: &str,
    parse: fn(&str) -> Option<T>,
    known: &[&str],
    problems: &mut Problems<'_>,
) -> Option<T> {
    let value = node.text().and_then(|t| parse(t.trim()));
    if value.is_none() {
        problems.at(
            node.line(),
            format!("`{what}` must be one of {}, not {:?}", known.join(", "), node.text().unwrap_or_default()),
        );
    }
    value
}

/// A list of text values (or a single one), with their lines.
fn strings(node: Option<Node<'_>>, what: &str, problems: &mut Problems<'_>) -> Vec<(usize, String)> {
    let Some(node) = node else { return Vec::new() };
    node.one_or_many()
        .into_iter()
        .filter_map(|item| match item.text() {
            Some(t) if item.scalar().is_some() => Some((item.line(), t)),
            _ => {
                problems.at(item.line(), format!("`{what}` holds text values, not {}", item.describe()));
                None
            }
        })
        .collect()
}

fn load_exceptions(node: Node<'_>, problems: &mut Problems<'_>) -> Exceptions {
    let mut exceptions = Exceptions::default();
    let Some(entries) = node.entries() else {
        problems.at(node.line(), "`exceptions` must be a mapping with `exe` and/or `lineage`");
        return exceptions;
    };
    for (key, key_node, value) in entries {
        let list = strings(Some(value), &key, problems).into_iter().map(|(_, t)| Arc::from(t)).collect();
        match key.as_str() {
            "exe" => exceptions.exe = list,
            "lineage" => exceptions.lineage = list,
            other => problems.hint(key_node.line(), format!("unknown exception `{other}`"), "use `exe` or `lineage`"),
        }
    }
    exceptions
}

/// A `match:` mapping: optional `kind`, and conditions that must all hold.
pub fn load_match(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Match> {
    let before = problems.list.len();
    let mut kinds = KindSet::ALL;
    if let Some(kind) = node.get("kind") {
        let mut set = KindSet::default();
        for (line, name) in strings(Some(kind), "kind", problems) {
            match EventKind::from_name(&name) {
                Some(k) => set = KindSet(set.0 | KindSet::of(&[k]).0),
                None => {
                    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    problems.hint(
                        line,
                        format!("unknown event kind `{name}`"),
                        format!("known kinds: {}", known.join(", ")),
                    );
                }
            }
        }
        kinds = set;
    }
    let expr = load_expr(node, true, problems);
    if problems.list.len() > before {
        return None;
    }
    Some(Match { kinds, expr: expr? })
}

/// A condition mapping: every key must hold (`all`, `any`, `not`, or a
/// field). `top`: `kind` is allowed here.
fn load_expr(node: Node<'_>, top: bool, problems: &mut Problems<'_>) -> Option<Expr> {
    let Some(entries) = node.entries() else {
        problems.at(
            node.line(),
            format!("a condition must be a mapping of fields (or all/any/not), not {}", node.describe()),
        );
        return None;
    };
    let mut all = Vec::new();
    for (key, key_node, value) in entries {
        match key.as_str() {
            "kind" if top => {}
            "kind" => problems.at(key_node.line(), "`kind` belongs at the top of a `match`"),
            "all" | "any" => {
                let Some(items) = value.items() else {
                    problems.at(value.line(), format!("`{key}` takes a list of conditions"));
                    continue;
                };
                let parts: Vec<Expr> = items.into_iter().filter_map(|i| load_expr(i, false, problems)).collect();
                all.push(if key == "all" { Expr::All(parts) } else { Expr::Any(parts) });
            }
            "not" => {
                if let Some(inner) = load_expr(value, false, problems) {
                    all.push(Expr::Not(Box::new(inner)));
                }
            }
            field => {
                if let Some(pred) = load_field(field, key_node.line(), value, problems) {
                    all.push(pred);
                }
            }
        }
    }
    Some(if all.len() == 1 { all.pop()? } else { Expr::All(all) })
}

/// `argv[3]` or a [`Field`] name.
pub fn parse_target(name: &str) -> Option<Target> {
    if let Some(index) = name.strip_prefix("argv[").and_then(|rest| rest.strip_suffix(']')) {
        return index.parse().ok().map(Target::Arg);
    }
    Field::from_name(name).map(Target::Field)
}

/// The type of a target's value.
pub fn target_type(target: Target) -> FieldType {
    match target {
        Target::Field(field) => field.field_type(),
        Target::Arg(_) => FieldType::Text,
    }
}

const OPS: &[&str] = &[
    "equals", "prefix", "suffix", "contains", "regex", "cidr", "gt", "gte", "lt", "lte", "ne", "in", "in_set",
    "exists", "bits_any", "cased", "all",
];

fn load_field(name: &str, line: usize, value: Node<'_>, problems: &mut Problems<'_>) -> Option<Expr> {
    let Some(target) = parse_target(name) else {
        let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
        problems.hint(line, format!("unknown field `{name}`"), format!("known fields: {}, argv[N]", known.join(", ")));
        return None;
    };
    let ty = target_type(target);
    if !value.is_mapping() {
        // `field: value` or `field: [a, b]`: equality with any of them.
        return equals(ty, value, false, problems).map(|test| Expr::Pred(Pred { target, test }));
    }
    let entries = value.entries()?;
    let cased = flag(value, "cased", problems);
    let all = flag(value, "all", problems);
    let mut tests = Vec::new();
    for (op, op_node, arg) in entries {
        let test = match (op.as_str(), ty) {
            ("cased" | "all", _) => continue,
            ("equals", _) => equals(ty, arg, cased, problems),
            ("prefix" | "suffix" | "contains", FieldType::Text) => {
                let op = match op.as_str() {
                    "prefix" => TextOp::Prefix,
                    "suffix" => TextOp::Suffix,
                    _ => TextOp::Contains,
                };
                let values =
                    strings(Some(arg), "a text test", problems).into_iter().map(|(_, t)| Arc::from(t)).collect();
                Some(Test::Text { op, values, all, cased })
            }
            ("regex", FieldType::Text) => {
                let patterns: Vec<Arc<str>> = strings(Some(arg), "regex", problems)
                    .into_iter()
                    .filter_map(|(line, p)| match crate::compile::check_regex(&p) {
                        Ok(_) => Some(Arc::from(p)),
                        Err(e) => {
                            problems.hint(
                                line,
                                format!("regex does not compile: {e}"),
                                "Rust regex syntax, ASCII classes; (?i) for case-insensitive, (?u) for Unicode",
                            );
                            None
                        }
                    })
                    .collect();
                Some(Test::Regex { patterns, all })
            }
            ("cidr", FieldType::Address) => cidrs(arg, problems).map(Test::Cidr),
            ("gt" | "gte" | "lt" | "lte" | "ne", FieldType::Number) => {
                let cmp = match op.as_str() {
                    "gt" => CmpOp::Gt,
                    "gte" => CmpOp::Ge,
                    "lt" => CmpOp::Lt,
                    "lte" => CmpOp::Le,
                    _ => CmpOp::Ne,
                };
                integer(arg, problems).map(|value| Test::Num { op: cmp, value })
            }
            ("in", _) => equals(ty, arg, cased, problems),
            ("in_set", _) => arg.text().map(|t| Test::InSet(t.into())),
            ("exists", _) => match arg.scalar() {
                Some(Scalar::Bool(b)) => Some(Test::Exists(b)),
                _ => {
                    problems.at(arg.line(), "`exists` takes true or false");
                    None
                }
            },
            ("bits_any", FieldType::Number) => {
                integer(arg, problems).and_then(|v| u64::try_from(v).ok()).map(Test::BitsAny)
            }
            (known, _) if OPS.contains(&known) => {
                problems.hint(
                    op_node.line(),
                    format!("`{known}` does not apply to `{name}` ({})", type_name(ty)),
                    ops_for(ty),
                );
                None
            }
            (other, _) => {
                problems.hint(op_node.line(), format!("unknown test `{other}`"), format!("tests: {}", OPS.join(", ")));
                None
            }
        };
        if let Some(test) = test {
            tests.push(Expr::Pred(Pred { target, test }));
        }
    }
    Some(if tests.len() == 1 { tests.pop()? } else { Expr::All(tests) })
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Number => "a number",
        FieldType::Text => "text",
        FieldType::Address => "an IP address",
    }
}

fn ops_for(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Number => "numbers take equals, in, ne, gt, gte, lt, lte, bits_any, in_set, exists",
        FieldType::Text => "text takes equals, in, prefix, suffix, contains, regex, in_set, exists (+ cased, all)",
        FieldType::Address => "addresses take equals, in, cidr, in_set, exists",
    }
}

fn flag(node: Node<'_>, key: &str, problems: &mut Problems<'_>) -> bool {
    match node.get(key) {
        None => false,
        Some(v) => match v.scalar() {
            Some(Scalar::Bool(b)) => b,
            _ => {
                problems.at(v.line(), format!("`{key}` must be true or false"));
                false
            }
        },
    }
}

fn integer(node: Node<'_>, problems: &mut Problems<'_>) -> Option<i128> {
    match node.scalar() {
        Some(Scalar::Int(i)) => Some(i128::from(i)),
        _ => {
            problems.at(node.line(), format!("expected an integer, not {}", node.describe()));
            None
        }
    }
}

fn cidrs(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Vec<Cidr>> {
    let before = problems.list.len();
    let nets: Vec<Cidr> = strings(Some(node), "cidr", problems)
        .into_iter()
        .filter_map(|(line, t)| Cidr::parse(&t).map_err(|e| problems.at(line, e)).ok())
        .collect();
    (problems.list.len() == before).then_some(nets)
}

/// Equality with any of the values, typed by the field.
fn equals(ty: FieldType, node: Node<'_>, cased: bool, problems: &mut Problems<'_>) -> Option<Test> {
    match ty {
        FieldType::Number => {
            let values: Option<Vec<i128>> = node.one_or_many().into_iter().map(|v| integer(v, problems)).collect();
            values.map(Test::NumIn)
        }
        FieldType::Text => {
            let values = strings(Some(node), "equals", problems).into_iter().map(|(_, t)| Arc::from(t)).collect();
            Some(Test::Text { op: TextOp::Equals, values, all: false, cased })
        }
        FieldType::Address => cidrs(node, problems).map(Test::Cidr),
    }
}

fn window(node: Node<'_>, key: &str, problems: &mut Problems<'_>) -> Option<u64> {
    let Some(value) = node.get(key) else {
        problems.hint(node.line(), format!("missing `{key}`"), "e.g. `within: 30s`");
        return None;
    };
    match value.text().map(|t| duration_ns(&t)) {
        Some(Ok(0)) => {
            problems.at(value.line(), format!("`{key}` must be longer than 0"));
            None
        }
        Some(Ok(ns)) if ns > 86_400_000_000_000 => {
            problems.hint(
                value.line(),
                format!("`{key}` is longer than a day"),
                "L2 state is held in memory; keep windows short",
            );
            None
        }
        Some(Ok(ns)) => Some(ns),
        Some(Err(e)) => {
            problems.at(value.line(), e);
            None
        }
        None => {
            problems.at(value.line(), format!("`{key}` must be a duration such as 30s"));
            None
        }
    }
}

fn group_by(node: Node<'_>, default: GroupKey, problems: &mut Problems<'_>) -> Vec<GroupKey> {
    let Some(value) = node.get("group_by") else { return vec![default] };
    strings(Some(value), "group_by", problems)
        .into_iter()
        .filter_map(|(line, name)| match name.as_str() {
            "process" => Some(GroupKey::Process),
            "lineage" => Some(GroupKey::Lineage),
            field => match parse_target(field) {
                Some(target) => Some(GroupKey::Field(target)),
                None => {
                    problems.hint(line, format!("unknown group `{field}`"), "use process, lineage or a field name");
                    None
                }
            },
        })
        .collect()
}

fn check_keys(node: Node<'_>, allowed: &[&str], what: &str, problems: &mut Problems<'_>) {
    for (key, key_node, _) in node.entries().unwrap_or_default() {
        if !allowed.contains(&key.as_str()) {
            problems.hint(
                key_node.line(),
                format!("unknown key `{key}` in `{what}`"),
                format!("`{what}` takes {}", allowed.join(", ")),
            );
        }
    }
}

fn load_sequence(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Sequence> {
    let before = problems.list.len();
    check_keys(node, &["within", "group_by", "ordered", "steps"], "sequence", problems);
    let within_ns = window(node, "within", problems);
    let group_by = group_by(node, GroupKey::Process, problems);
    let ordered = match node.get("ordered").map(|v| (v.line(), v.scalar())) {
        None => true,
        Some((_, Some(Scalar::Bool(b)))) => b,
        Some((line, _)) => {
            problems.at(line, "`ordered` must be true or false");
            true
        }
    };
    let mut steps = Vec::new();
    match node.get("steps").and_then(Node::items) {
        Some(items) if items.len() > crate::l2::MAX_STEPS => {
            problems.at(node.line(), format!("a sequence has at most {} steps", crate::l2::MAX_STEPS));
        }
        Some(items) if items.len() >= 2 => {
            for (i, item) in items.into_iter().enumerate() {
                check_keys(item, &["match", "relation"], "step", problems);
                let relation = match item.get("relation").and_then(Node::text).as_deref() {
                    None | Some("any") => Relation::Any,
                    Some("same_process") => Relation::SameProcess,
                    Some("child") => Relation::Child,
                    Some("descendant") => Relation::Descendant,
                    Some("same_lineage") => Relation::SameLineage,
                    Some(other) => {
                        problems.hint(
                            item.line(),
                            format!("unknown relation `{other}`"),
                            "any, same_process, child, descendant, same_lineage",
                        );
                        Relation::Any
                    }
                };
                if i == 0 && relation != Relation::Any {
                    problems.at(item.line(), "the first step has no previous step to relate to");
                }
                match item.get("match") {
                    Some(m) => {
                        if let Some(matcher) = load_match(m, problems) {
                            steps.push(Step { matcher, relation });
                        }
                    }
                    None => problems.at(item.line(), "a step needs a `match`"),
                }
            }
        }
        _ => problems.hint(
            node.line(),
            "a sequence needs `steps`: a list of at least two",
            "steps: [{match: …}, {match: …}]",
        ),
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Sequence { group_by, within_ns: within_ns?, ordered, steps })
}

fn load_count(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Count> {
    let before = problems.list.len();
    check_keys(node, &["match", "group_by", "distinct", "more_than", "within"], "count", problems);
    let within_ns = window(node, "within", problems);
    let group_by = group_by(node, GroupKey::Process, problems);
    let distinct = node.get("distinct").and_then(|d| match d.text().as_deref().and_then(parse_target) {
        Some(t) => Some(t),
        None => {
            problems.at(d.line(), format!("`distinct` names a field; {:?} is not one", d.text().unwrap_or_default()));
            None
        }
    });
    let more_than = match node.get("more_than") {
        Some(v) => match v.scalar() {
            Some(Scalar::Int(n)) if (1..=crate::l2::MAX_MORE_THAN as i64).contains(&n) => Some(n as u64),
            _ => {
                problems.at(v.line(), format!("`more_than` must be an integer from 1 to {}", crate::l2::MAX_MORE_THAN));
                None
            }
        },
        None => {
            problems.at(node.line(), "a count needs `more_than`");
            None
        }
    };
    let matcher = match node.get("match") {
        Some(m) => load_match(m, problems),
        None => {
            problems.at(node.line(), "a count needs a `match`");
            None
        }
    };
    if problems.list.len() > before {
        return None;
    }
    Some(Count { matcher: matcher?, group_by, distinct, more_than: more_than?, within_ns: within_ns? })
}

fn load_ioc_set(file: &Arc<Path>, node: Node<'_>, problems: &mut Problems<'_>) -> Option<IocSet> {
    let before = problems.list.len();
    problems.rule_id = None;
    check_keys(node, &["name", "kind", "file", "values"], "ioc set", problems);
    let name = node.get("name").and_then(Node::text);
    if name.is_none() {
        problems.at(node.line(), "an IOC set needs a `name`");
    }
    let kind = match node.get("kind") {
        Some(k) => named(k, "kind", IocKind::from_name, &IocKind::ALL.map(IocKind::as_str), problems),
        None => {
            problems.at(node.line(), "an IOC set needs a `kind` (sha256, ip, path, substring)");
            None
        }
    };
    let mut values: Vec<Arc<str>> =
        strings(node.get("values"), "values", problems).into_iter().map(|(_, t)| t.into()).collect();
    if let Some(path_node) = node.get("file") {
        let relative = path_node.text().unwrap_or_default();
        let path = file.parent().unwrap_or(Path::new(".")).join(&relative);
        match std::fs::read_to_string(&path) {
            Ok(text) => values
                .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(Arc::from)),
            Err(e) => problems.at(path_node.line(), format!("cannot read IOC file {}: {e}", path.display())),
        }
    }
    if let Some(kind) = kind {
        for value in &values {
            let bad = match kind {
                IocKind::Sha256 => !(value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())),
                IocKind::Ip => Cidr::parse(value).is_err(),
                IocKind::Path | IocKind::Substring => value.is_empty(),
            };
            if bad {
                problems.at(node.line(), format!("`{value}` is not a valid {} indicator", kind.as_str()));
                break;
            }
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(IocSet {
        name: name?.into(),
        kind: kind?,
        values,
        origin: Origin { file: file.clone(), line: node.line(), format: Format::Native },
    })
}

#[cfg(test)]
#[path = "native/tests.rs"]
mod tests;
