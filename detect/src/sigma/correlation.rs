//! Sigma correlation rules → L2 bodies.
//!
//! - `event_count` / `value_count` → [`Body::Count`]: `gte: N` is "more
//!   than N-1", `gt: N` "more than N"; `lt`, `lte` and `eq` (too few
//!   events) are rejected. `value_count` counts distinct values of its
//!   `field`. Several rules are counted together.
//! - `temporal` → [`Body::Sequence`] in any order, `temporal_ordered` in
//!   the written order; each named rule is one step ([`Relation::Any`]).
//!   Every rule must match (a `condition` asking for fewer is rejected).
//! - `group-by` names Sigma fields, mapped through the log source of every
//!   rule named (they must agree); `Lineage` (a hostflow extension) is
//!   [`GroupKey::Lineage`], `ProcessGuid`/`ProcessId` are
//!   [`GroupKey::Process`], and host names (`ComputerName`, `Computer`,
//!   `Hostname`) are dropped: one agent watches one host. With nothing left
//!   to group by, state is kept per lineage ([`GroupKey::Lineage`]).
//! - Correlations of correlations and field `aliases` are rejected.

use std::path::Path;
use std::sync::Arc;

use super::fields::{kind_pred, Source};
use super::values::{join, plain_target, report};
use crate::rule::{
    Body, Count, Expr, Format, GroupKey, KindSet, Match, Origin, Relation, Rule, RuleMeta, Sequence, Step, Target,
};
use crate::yaml::{duration_ns, Node, Problems, Scalar};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

/// A correlation read from its document, waiting for the rules it names.
#[derive(Debug)]
pub(crate) struct Pending {
    pub file: Arc<Path>,
    line: usize,
    meta: RuleMeta,
    kind: Kind,
    /// Named rules, with their lines.
    rules: Vec<(usize, String)>,
    group_by: Vec<(usize, String)>,
    within_ns: u64,
    /// Counts: the threshold.
    more_than: u64,
    /// value_count: the field whose distinct values are counted.
    distinct: Option<(usize, String)>,
}

/// What [`resolve`] looks names up in.
pub(crate) struct Context<'a> {
    /// Loaded detection rules and their sources.
    pub rules: Vec<(&'a Rule, Source)>,
    /// A rule's position in `rules` by id, else by name.
    pub lookup: &'a dyn Fn(&str) -> Option<usize>,
    /// Ids and names of detection rules that were rejected.
    pub rejected: &'a [String],
    /// Ids and names of correlations.
    pub correlations: &'a [String],
}

const KEYS: &[&str] = &["type", "rules", "group-by", "timespan", "condition", "generate", "aliases"];

/// Reads a correlation document. Returns it (when it has no problem of
/// its own) and the rules it names with its `generate`, which decide
/// whether those rules fire alone.
pub(crate) fn parse(
    file: &Arc<Path>,
    doc: Node<'_>,
    identity: Option<(String, Option<String>)>,
    problems: &mut Problems<'_>,
) -> (Option<Pending>, Vec<(String, bool)>) {
    let before = problems.list.len();
    let id = identity.map(|(id, _)| id).unwrap_or_default();
    let meta = super::meta(doc, &id, problems);
    let Some(section) = doc.get("correlation").filter(|s| s.is_mapping()) else {
        problems.at(doc.line(), "`correlation` must be a mapping (type, rules, group-by, timespan, condition)");
        return (None, Vec::new());
    };
    for (key, key_node, _) in section.entries().unwrap_or_default() {
        if !KEYS.contains(&key.as_str()) {
            problems.hint(
                key_node.line(),
                format!("unknown key `{key}` in `correlation`"),
                format!("keys: {}", KEYS.join(", ")),
            );
        }
    }
    let generate = match section.get("generate").or_else(|| doc.get("generate")) {
        None => false,
        Some(node) => match node.scalar() {
            Some(Scalar::Bool(b)) => b,
            _ => {
                problems.at(node.line(), "`generate` must be true or false");
                false
            }
        },
    };
    let rules = texts(section.get("rules"), "rules", problems);
    let references = rules.iter().map(|(_, r)| (r.clone(), generate)).collect();
    if rules.is_empty() {
        problems.hint(section.line(), "a correlation needs `rules`", "name the rules by `id` or `name`");
    }
    let group_by = texts(section.get("group-by"), "group-by", problems);
    if let Some(aliases) = section.get("aliases") {
        problems.hint(
            aliases.line(),
            "field `aliases` in correlations are not supported",
            "group by a field that every named rule has",
        );
    }
    let kind = match section.get("type") {
        None => {
            problems.at(section.line(), "a correlation needs a `type`");
            None
        }
        Some(node) => match node.text().unwrap_or_default().trim() {
            "event_count" => Some(Kind::EventCount),
            "value_count" => Some(Kind::ValueCount),
            "temporal" => Some(Kind::Temporal),
            "temporal_ordered" => Some(Kind::TemporalOrdered),
            other => {
                problems.hint(
                    node.line(),
                    format!("correlation type `{other}` is not supported"),
                    "event_count, value_count, temporal, temporal_ordered",
                );
                None
            }
        },
    };
    let within_ns = match section.get("timespan") {
        None => {
            problems.hint(section.line(), "a correlation needs a `timespan`", "e.g. `timespan: 5m`");
            None
        }
        Some(node) => match node.text().map(|t| duration_ns(&t)) {
            Some(Ok(0)) => {
                problems.at(node.line(), "`timespan` must be longer than 0");
                None
            }
            Some(Ok(ns)) if ns > 86_400_000_000_000 => {
                problems.hint(
                    node.line(),
                    "`timespan` is longer than a day",
                    "L2 state is held in memory; keep windows short",
                );
                None
            }
            Some(Ok(ns)) => Some(ns),
            Some(Err(e)) => {
                problems.at(node.line(), e);
                None
            }
            None => {
                problems.at(node.line(), "`timespan` must be a duration such as 5m");
                None
            }
        },
    };
    let (more_than, distinct) = match kind {
        Some(kind) => condition(section, kind, rules.len(), problems),
        None => (0, None),
    };
    if matches!(kind, Some(Kind::Temporal | Kind::TemporalOrdered)) && rules.len() < 2 {
        problems.hint(
            section.line(),
            "a temporal correlation needs at least two rules",
            "count one rule with event_count",
        );
    }
    let pending = match (kind, within_ns) {
        (Some(kind), Some(within_ns)) if problems.list.len() == before => Some(Pending {
            file: file.clone(),
            line: doc.line(),
            meta,
            kind,
            rules,
            group_by,
            within_ns,
            more_than,
            distinct,
        }),
        _ => None,
    };
    (pending, references)
}

/// Text values (one or a list) with their lines.
fn texts(node: Option<Node<'_>>, what: &str, problems: &mut Problems<'_>) -> Vec<(usize, String)> {
    let Some(node) = node else { return Vec::new() };
    node.one_or_many()
        .into_iter()
        .filter_map(|item| match item.text() {
            Some(t) if item.scalar().is_some() && !item.is_null() => Some((item.line(), t.trim().to_owned())),
            _ => {
                problems.at(item.line(), format!("`{what}` holds names, not {}", item.describe()));
                None
            }
        })
        .collect()
}

/// The correlation's `condition`: a count's threshold and, for
/// value_count, the counted field.
fn condition(
    section: Node<'_>,
    kind: Kind,
    rules: usize,
    problems: &mut Problems<'_>,
) -> (u64, Option<(usize, String)>) {
    let counts = matches!(kind, Kind::EventCount | Kind::ValueCount);
    let Some(node) = section.get("condition") else {
        if counts {
            problems.hint(section.line(), "a count correlation needs a `condition`", "e.g. `condition: {gte: 10}`");
        }
        return (0, None);
    };
    let Some(entries) = node.entries() else {
        problems.hint(node.line(), "the correlation `condition` must be a mapping", "e.g. `condition: {gte: 10}`");
        return (0, None);
    };
    let mut threshold: Option<(usize, &str, i64)> = None;
    let mut field = None;
    for (key, key_node, value) in entries {
        match key.as_str() {
            "field" if kind == Kind::ValueCount => {
                match value.text().filter(|t| value.scalar().is_some() && !t.is_empty()) {
                    Some(t) => field = Some((value.line(), t.trim().to_owned())),
                    None => problems.at(value.line(), "`field` names the field whose distinct values are counted"),
                }
            }
            "field" => problems.at(key_node.line(), "`field` belongs to value_count correlations"),
            "gt" | "gte" => match (value.scalar(), threshold) {
                (_, Some(_)) => problems.at(key_node.line(), "the condition has more than one threshold"),
                (Some(Scalar::Int(n)), None) => {
                    threshold = Some((key_node.line(), if key == "gt" { "gt" } else { "gte" }, n))
                }
                _ => problems.at(value.line(), format!("`{key}` takes an integer")),
            },
            "lt" | "lte" | "eq" | "neq" => problems.hint(
                key_node.line(),
                format!("a correlation condition `{key}` (at most / exactly N) is not supported"),
                "hostflow correlations fire when a count exceeds a threshold: use `gt` or `gte`",
            ),
            other => problems.hint(
                key_node.line(),
                format!("unknown condition `{other}`"),
                "use `gt` or `gte` (and `field` for value_count)",
            ),
        }
    }
    if kind == Kind::ValueCount && field.is_none() {
        problems.hint(node.line(), "a value_count condition needs `field`", "e.g. `field: DestinationPort`");
    }
    let Some((line, op, n)) = threshold else {
        if counts {
            problems.hint(node.line(), "the condition has no threshold", "e.g. `gte: 10`");
        }
        return (0, field);
    };
    if !counts {
        let all = i64::try_from(rules).unwrap_or(i64::MAX);
        if (op == "gte" && n != all) || (op == "gt" && n != all - 1) {
            problems.hint(
                line,
                "a temporal correlation here needs every named rule to match",
                format!("drop the condition, or write `gte: {rules}`"),
            );
        }
        return (0, None);
    }
    let more_than = if op == "gte" { n.checked_sub(1) } else { Some(n) };
    match more_than.and_then(|m| u64::try_from(m).ok()) {
        Some(m) if m >= 1 => (m, field),
        _ => {
            problems.hint(
                line,
                format!("`{op}: {n}` fires on a single event"),
                "a correlation counts at least two events (`gte: 2`); for one, use the rule alone",
            );
            (0, field)
        }
    }
}

/// Builds the L2 rule once every rule is known.
pub(crate) fn resolve(pending: &Pending, cx: &Context<'_>, problems: &mut Problems<'_>) -> Option<Rule> {
    problems.rule_id = Some(pending.meta.id.to_string());
    let before = problems.list.len();
    let mut named: Vec<(&Rule, Source)> = Vec::new();
    for (line, reference) in &pending.rules {
        let known = |list: &[String]| list.iter().any(|n| n == reference);
        match (cx.lookup)(reference).and_then(|i| cx.rules.get(i)) {
            Some(&found) => named.push(found),
            None if known(cx.correlations) => problems.hint(
                *line,
                format!("`{reference}` is a correlation; correlations of correlations are not supported"),
                "name detection rules",
            ),
            None if known(cx.rejected) => {
                problems.at(*line, format!("rule `{reference}` did not load (see its problems)"))
            }
            None => problems.hint(
                *line,
                format!("no Sigma rule has the id or name `{reference}`"),
                "name a rule by `id` or `name`",
            ),
        }
    }
    if problems.list.len() > before {
        return None;
    }
    let mut group_by = Vec::new();
    for (line, name) in &pending.group_by {
        let key = match name.as_str() {
            "Lineage" => GroupKey::Lineage,
            "ProcessGuid" | "ProcessId" => GroupKey::Process,
            "ComputerName" | "Computer" | "Hostname" => continue,
            _ => match target(name, &named) {
                Ok(t) => GroupKey::Field(t),
                Err((message, hint)) => {
                    report(problems, *line, message, hint);
                    continue;
                }
            },
        };
        if !group_by.contains(&key) {
            group_by.push(key);
        }
    }
    if group_by.is_empty() {
        group_by.push(GroupKey::Lineage);
    }
    let distinct = pending.distinct.as_ref().and_then(|(line, name)| match target(name, &named) {
        Ok(t) => Some(t),
        Err((message, hint)) => {
            report(problems, *line, message, hint);
            None
        }
    });
    let mut matches = Vec::new();
    for (rule, _) in &named {
        match &rule.body {
            Body::Indicator(m) => matches.push(m.clone()),
            _ => problems.at(pending.line, format!("rule `{}` is not a single-event rule", rule.meta.id)),
        }
    }
    if problems.list.len() > before {
        return None;
    }
    let within_ns = pending.within_ns;
    let body = match pending.kind {
        Kind::EventCount | Kind::ValueCount => {
            Body::Count(Count { matcher: merge(matches), group_by, distinct, more_than: pending.more_than, within_ns })
        }
        Kind::Temporal | Kind::TemporalOrdered => Body::Sequence(Sequence {
            group_by,
            within_ns,
            ordered: pending.kind == Kind::TemporalOrdered,
            steps: matches.into_iter().map(|matcher| Step { matcher, relation: Relation::Any }).collect(),
        }),
    };
    Some(Rule {
        meta: pending.meta.clone(),
        body,
        origin: Origin { file: pending.file.clone(), line: pending.line, format: Format::Sigma },
    })
}

/// The target a Sigma field name stands for in every named rule.
fn target(name: &str, named: &[(&Rule, Source)]) -> Result<Target, (String, String)> {
    let mut found: Option<Target> = None;
    for (rule, source) in named {
        let kinds = match &rule.body {
            Body::Indicator(m) => m.kinds,
            _ => KindSet::ALL,
        };
        let t = plain_target(*source, kinds, name).map_err(|(m, h)| (format!("rule `{}`: {m}", rule.meta.id), h))?;
        match found {
            Some(f) if f != t => {
                return Err((
                    format!("`{name}` stands for different fields in the rules named"),
                    "group by a field with one meaning in every rule, or by `Lineage`".into(),
                ))
            }
            _ => found = Some(t),
        }
    }
    found.ok_or_else(|| (format!("`{name}`: no rule to map it through"), String::new()))
}

/// One matcher for events of any of several rules.
fn merge(mut matches: Vec<Match>) -> Match {
    if matches.len() == 1 {
        if let Some(only) = matches.pop() {
            return only;
        }
    }
    let kinds = matches.iter().fold(KindSet::default(), |acc, m| KindSet(acc.0 | m.kinds.0));
    let expr = if matches.iter().all(|m| m.kinds == kinds) {
        join(matches.into_iter().map(|m| m.expr).collect(), false)
    } else {
        join(matches.into_iter().map(|m| Expr::All(vec![kind_pred(m.kinds), m.expr])).collect(), false)
    };
    Match { kinds, expr }
}
