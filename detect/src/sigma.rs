//! Sigma rules for Linux, loaded natively into the [`crate::rule`] model
//! (issue #15, "Sigma, natively").
//!
//! What loads:
//! - detection rules with `logsource` `product: linux` and `category`
//!   `process_creation`, `file_event` or `network_connection` (Sigma's
//!   taxonomy for Sysmon for Linux), or `service: auditd` (`EXECVE`, `PATH`,
//!   `SYSCALL` records); the field mapping is in `sigma/fields.rs`, values
//!   and modifiers in `sigma/values.rs`, the condition grammar in
//!   `sigma/condition.rs`;
//! - correlation rules (`event_count`, `value_count`, `temporal`,
//!   `temporal_ordered`) as an import syntax for L2, resolved across files
//!   by [`SigmaLoader::finish`].
//!
//! A rule that uses anything hostflow cannot honour (a field it does not
//! collect, a keyword search, an aggregation, a modifier without a meaning
//! on Linux) is rejected whole, with its file, line, id and the reason;
//! the other rules of the file still load.
//!
//! Severity and confidence: Sigma has only `level`. It gives the severity
//! (`informational` → info, `low`, `medium`, `high`, `critical`; medium when
//! absent), and, Sigma having no confidence, the confidence is derived from
//! it: critical → very high, high → high, medium → medium, low and
//! informational → low.

mod condition;
mod correlation;
mod fields;
mod values;

use std::path::Path;
use std::sync::Arc;

use pipeline::{Confidence, Severity};

use self::correlation::Pending;
use self::fields::{kind_pred, kinds_of, Record, Source};
use crate::problem::Problem;
use crate::rule::{Body, Exceptions, Expr, Format, KindSet, Match, Origin, Rule, RuleMeta};
use crate::yaml::{Node, Problems};

/// Loads the Sigma documents of a rule set, then resolves the correlations
/// among them.
#[derive(Debug, Default)]
pub struct SigmaLoader {
    /// Loaded rules and parsed correlations, in the order read.
    slots: Vec<Slot>,
    /// Ids and names of detection rules that were rejected (a correlation
    /// naming one says so rather than "unknown rule").
    rejected: Vec<String>,
    /// Ids and names of every correlation document.
    correlation_names: Vec<String>,
    /// Rules named by a correlation, and whether that correlation lets
    /// them fire alone (`generate: true`).
    references: Vec<(String, bool)>,
    problems: Vec<Problem>,
}

#[derive(Debug)]
enum Slot {
    Rule(Box<Loaded>),
    Correlation(Box<Pending>),
}

/// A detection rule that loaded.
#[derive(Debug)]
struct Loaded {
    rule: Rule,
    name: Option<String>,
    source: Source,
}

impl SigmaLoader {
    pub fn new() -> SigmaLoader {
        SigmaLoader::default()
    }

    /// Whether a parsed YAML document is Sigma (has `detection` or
    /// `correlation`).
    pub fn is_sigma(doc: Node<'_>) -> bool {
        doc.get("detection").is_some() || doc.get("correlation").is_some()
    }

    /// Adds one Sigma document of `file` (a file may hold several
    /// documents).
    pub fn add_document(&mut self, file: &Arc<Path>, doc: Node<'_>) {
        let mut problems = Problems::new(file);
        if !doc.is_mapping() {
            problems.at(doc.line(), format!("a Sigma rule must be a mapping, not {}", doc.describe()));
            self.problems.append(&mut problems.list);
            return;
        }
        let identity = identity(doc, &mut problems);
        let names: Vec<String> =
            identity.iter().flat_map(|(id, name)| [Some(id.clone()), name.clone()]).flatten().collect();
        if doc.get("correlation").is_some() {
            self.correlation_names.extend(names);
            if doc.get("detection").is_some() {
                problems.at(doc.line(), "a document is a detection rule or a correlation, not both");
            }
            let (pending, references) = correlation::parse(file, doc, identity, &mut problems);
            self.references.extend(references);
            if let Some(pending) = pending.filter(|_| problems.list.is_empty()) {
                self.slots.push(Slot::Correlation(Box::new(pending)));
            }
        } else {
            match load_rule(file, doc, identity, &mut problems) {
                Some(loaded) if problems.list.is_empty() => self.slots.push(Slot::Rule(Box::new(loaded))),
                _ => self.rejected.extend(names),
            }
        }
        self.problems.append(&mut problems.list);
    }

    /// Resolves correlations (which name other rules by `id` or `name`,
    /// possibly in other files) and returns every rule that loaded plus
    /// every problem (file, line, rule id, message, hint).
    ///
    /// A detection rule named by a correlation is returned disabled (it
    /// does not fire alone) unless a correlation naming it says
    /// `generate: true`; Sigma's default is `false`. That holds even when
    /// the correlation itself was rejected: the rule was written as a part.
    pub fn finish(mut self) -> (Vec<Rule>, Vec<Problem>) {
        let rules: Vec<&Loaded> =
            self.slots.iter().filter_map(|s| if let Slot::Rule(l) = s { Some(&**l) } else { None }).collect();
        let lookup = |reference: &str| -> Option<usize> {
            rules
                .iter()
                .position(|l| &*l.rule.meta.id == reference)
                .or_else(|| rules.iter().position(|l| l.name.as_deref() == Some(reference)))
        };
        let mut referenced = vec![None::<bool>; rules.len()];
        for (reference, generate) in &self.references {
            if let Some(i) = lookup(reference) {
                referenced[i] = Some(referenced[i].unwrap_or(false) || *generate);
            }
        }
        let context = correlation::Context {
            rules: rules.iter().map(|l| (&l.rule, l.source)).collect(),
            lookup: &lookup,
            rejected: &self.rejected,
            correlations: &self.correlation_names,
        };
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let mut index = 0;
        for slot in &self.slots {
            match slot {
                Slot::Rule(loaded) => {
                    let mut rule = loaded.rule.clone();
                    rule.meta.enabled = referenced.get(index).copied().flatten().unwrap_or(true);
                    index += 1;
                    out.push(rule);
                }
                Slot::Correlation(pending) => {
                    let mut found = Problems::new(&pending.file);
                    if let Some(rule) = correlation::resolve(pending, &context, &mut found) {
                        out.push(rule);
                    }
                    problems.append(&mut found.list);
                }
            }
        }
        self.problems.append(&mut problems);
        (out, self.problems)
    }
}

/// The rule's id (`id`, else `name`) and its `name`.
fn identity(doc: Node<'_>, problems: &mut Problems<'_>) -> Option<(String, Option<String>)> {
    let text = |key: &str| doc.get(key).and_then(|n| n.text()).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let name = text("name");
    match text("id").or_else(|| name.clone()) {
        Some(id) => {
            problems.rule_id = Some(id.clone());
            Some((id, name))
        }
        None => {
            problems.hint(doc.line(), "a Sigma rule without an `id` or a `name`", "give it `id:` (a UUID) or `name:`");
            None
        }
    }
}

/// Title, description, level and tags.
fn meta(doc: Node<'_>, id: &str, problems: &mut Problems<'_>) -> RuleMeta {
    let text = |key: &str, problems: &mut Problems<'_>| -> Option<String> {
        let node = doc.get(key)?;
        match node.text() {
            Some(t) if node.scalar().is_some() => Some(t),
            _ => {
                problems.at(node.line(), format!("`{key}` must be text, not {}", node.describe()));
                None
            }
        }
    };
    let title = text("title", problems);
    if title.is_none() && doc.get("title").is_none() {
        problems.at(doc.line(), "a Sigma rule needs a `title`");
    }
    let description = text("description", problems).unwrap_or_default();
    let (severity, confidence) = match doc.get("level") {
        None => (Severity::Medium, Confidence::Medium),
        Some(node) => match node.text().unwrap_or_default().trim() {
            "informational" => (Severity::Info, Confidence::Low),
            "low" => (Severity::Low, Confidence::Low),
            "medium" => (Severity::Medium, Confidence::Medium),
            "high" => (Severity::High, Confidence::High),
            "critical" => (Severity::Critical, Confidence::VeryHigh),
            other => {
                problems.hint(
                    node.line(),
                    format!("unknown level `{other}`"),
                    "informational, low, medium, high, critical",
                );
                (Severity::Medium, Confidence::Medium)
            }
        },
    };
    let mut attack = Vec::new();
    let mut tags = Vec::new();
    if let Some(node) = doc.get("tags") {
        for item in node.one_or_many() {
            match item.text().filter(|_| item.scalar().is_some()) {
                Some(tag) => match technique(&tag) {
                    Some(t) => attack.push(Arc::from(t)),
                    None => tags.push(Arc::from(tag)),
                },
                None => problems.at(item.line(), format!("a tag must be text, not {}", item.describe())),
            }
        }
    }
    RuleMeta {
        id: id.into(),
        title: title.unwrap_or_default().into(),
        description: description.into(),
        severity,
        confidence,
        attack,
        tags,
        enabled: true,
        exceptions: Exceptions::default(),
    }
}

/// `attack.t1059.004` → `T1059.004`.
fn technique(tag: &str) -> Option<String> {
    let id = tag.trim().strip_prefix("attack.")?.to_ascii_uppercase();
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let ok = match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    };
    ok.then_some(id)
}

fn load_rule(
    file: &Arc<Path>,
    doc: Node<'_>,
    identity: Option<(String, Option<String>)>,
    problems: &mut Problems<'_>,
) -> Option<Loaded> {
    let (id, name) = identity.unwrap_or_default();
    let meta = meta(doc, &id, problems);
    let source = logsource(doc, problems)?;
    let Some(detection) = doc.get("detection") else {
        problems.at(doc.line(), "a Sigma rule needs `detection`");
        return None;
    };
    let matcher = load_detection(detection, source, problems)?;
    let origin = Origin { file: file.clone(), line: doc.line(), format: Format::Sigma };
    Some(Loaded { rule: Rule { meta, body: Body::Indicator(matcher), origin }, name, source })
}

fn logsource(doc: Node<'_>, problems: &mut Problems<'_>) -> Option<Source> {
    let Some(node) = doc.get("logsource").filter(|n| n.is_mapping()) else {
        problems.hint(
            doc.line(),
            "a Sigma rule needs a `logsource` mapping",
            "logsource: {product: linux, category: …}",
        );
        return None;
    };
    let get = |key: &str| node.get(key).map(|n| (n.line(), n.text().unwrap_or_default().trim().to_owned()));
    match get("product") {
        Some((_, product)) if product.eq_ignore_ascii_case("linux") => {}
        Some((line, product)) => {
            problems.hint(
                line,
                format!("logsource product `{product}` is not collected"),
                "hostflow runs on Linux: `product: linux`",
            );
            return None;
        }
        None => {
            problems.hint(node.line(), "the logsource has no `product`", "hostflow loads `product: linux`");
            return None;
        }
    }
    let categories = "process_creation, file_event, network_connection, or `service: auditd`";
    match (get("category"), get("service")) {
        (Some((line, category)), None) => match category.as_str() {
            "process_creation" => Some(Source::ProcessCreation),
            "file_event" => Some(Source::FileEvent),
            "network_connection" => Some(Source::NetworkConnection),
            other => {
                problems.hint(line, format!("logsource category `{other}` is not supported"), categories);
                None
            }
        },
        (None, Some((_, service))) if service == "auditd" => Some(Source::Auditd),
        (None, Some((line, service))) => {
            problems.hint(line, format!("log service `{service}` is not collected"), categories);
            None
        }
        (Some((line, _)), Some(_)) => {
            problems.hint(line, "a logsource with both a category and a service is not supported", categories);
            None
        }
        (None, None) => {
            problems.hint(node.line(), "the logsource has no `category` or `service`", categories);
            None
        }
    }
}

/// `detection`: named selections and the `condition` over them.
fn load_detection(node: Node<'_>, source: Source, problems: &mut Problems<'_>) -> Option<Match> {
    let before = problems.list.len();
    let Some(entries) = node.entries() else {
        problems.at(node.line(), format!("`detection` must be a mapping, not {}", node.describe()));
        return None;
    };
    let mut selections: Vec<(String, Expr)> = Vec::new();
    let mut conditions = None;
    for (key, key_node, value) in entries {
        match key.as_str() {
            "condition" => conditions = Some(value),
            "timeframe" => problems.hint(
                key_node.line(),
                "`timeframe` (a Sigma 1 aggregation window) is not supported",
                "write a correlation rule with `timespan`",
            ),
            _ => {
                let expr = selection(value, source, problems).unwrap_or_else(Expr::always);
                selections.push((key, expr));
            }
        }
    }
    let Some(conditions) = conditions else {
        problems.hint(node.line(), "`detection` has no `condition`", "e.g. `condition: selection and not filter`");
        return None;
    };
    let mut alternatives = Vec::new();
    for item in conditions.one_or_many() {
        let Some(text) = item.str() else {
            problems.at(item.line(), format!("a condition must be text, not {}", item.describe()));
            continue;
        };
        match condition::parse(text).map_err(|e| vec![e]).and_then(|c| condition::resolve(&c, &selections)) {
            Ok(expr) => alternatives.push(expr),
            Err(errors) => {
                for e in errors {
                    match e.hint {
                        Some(hint) => problems.hint(item.line(), e.message, hint),
                        None => problems.at(item.line(), e.message),
                    }
                }
            }
        }
    }
    if problems.list.len() > before {
        return None;
    }
    let (kinds, expr) = narrow(source.kinds(), values::join(alternatives, false));
    if kinds.is_empty() || is_false(&expr) {
        problems.at(conditions.line(), "the rule can never match (its conditions exclude every event kind)");
        return None;
    }
    Some(Match { kinds, expr })
}

/// One selection: a mapping (every field holds), or a list of mappings
/// (any one holds).
fn selection(value: Node<'_>, source: Source, problems: &mut Problems<'_>) -> Option<Expr> {
    if value.is_mapping() {
        return mapping_selection(value, source, problems);
    }
    if value.is_null() {
        problems.at(value.line(), "an empty selection");
        return None;
    }
    match value.items() {
        Some(items) if !items.is_empty() && items.iter().all(|i| i.is_mapping()) => {
            let parts: Vec<Option<Expr>> = items.into_iter().map(|i| mapping_selection(i, source, problems)).collect();
            parts.into_iter().collect::<Option<Vec<Expr>>>().map(|p| values::join(p, false))
        }
        _ => {
            keyword(value.line(), problems);
            None
        }
    }
}

fn keyword(line: usize, problems: &mut Problems<'_>) {
    problems.hint(
        line,
        "keyword search over raw log lines has no meaning here",
        "name the field: e.g. `CommandLine|contains: …` (or `a0`…`aN` for auditd)",
    );
}

fn mapping_selection(node: Node<'_>, source: Source, problems: &mut Problems<'_>) -> Option<Expr> {
    let entries = node.entries()?;
    if entries.is_empty() {
        problems.at(node.line(), "an empty selection");
        return None;
    }
    // The auditd record type the selection names, which decides what
    // `a0` and `name` mean in it.
    let record = match (source, node.get("type")) {
        (Source::Auditd, Some(t)) => {
            let records: Vec<Option<Record>> =
                t.one_or_many().into_iter().map(|i| Record::from_name(&i.text().unwrap_or_default())).collect();
            match records.first() {
                Some(Some(first)) if records.iter().all(|r| *r == Some(*first)) => Some(*first),
                _ => None,
            }
        }
        _ => None,
    };
    let before = problems.list.len();
    let mut parts = Vec::new();
    for (key, key_node, value) in entries {
        if values::is_keyword(&key) {
            keyword(key_node.line(), problems);
            continue;
        }
        if let Some(expr) = values::entry(&key, key_node.line(), value, source, record, problems) {
            parts.push(expr);
        }
    }
    (problems.list.len() == before).then(|| values::join(parts, true))
}

fn is_true(expr: &Expr) -> bool {
    matches!(expr, Expr::All(parts) if parts.is_empty())
}

fn is_false(expr: &Expr) -> bool {
    matches!(expr, Expr::Any(parts) if parts.is_empty())
}

/// Narrows `base` to the kinds the expression can hold on, from its checks
/// on the event kind (`Initiated`, auditd `type`, auditd fields), and
/// drops the checks the narrowed kinds make always true.
fn narrow(base: KindSet, expr: Expr) -> (KindSet, Expr) {
    let kinds = possible(&expr, base);
    (kinds, simplify(expr, kinds))
}

fn possible(expr: &Expr, base: KindSet) -> KindSet {
    match expr {
        Expr::Pred(pred) => kinds_of(pred).map_or(base, |set| set.intersect(base)),
        Expr::All(parts) => parts.iter().fold(base, |acc, p| acc.intersect(possible(p, base))),
        Expr::Any(parts) => parts.iter().fold(KindSet::default(), |acc, p| KindSet(acc.0 | possible(p, base).0)),
        Expr::Not(_) => base,
    }
}

fn simplify(expr: Expr, kinds: KindSet) -> Expr {
    match expr {
        Expr::Pred(pred) => match kinds_of(&pred) {
            Some(set) => kind_check(set, kinds),
            None => Expr::Pred(pred),
        },
        Expr::Not(inner) => match simplify(*inner, kinds) {
            e if is_true(&e) => Expr::Any(Vec::new()),
            e if is_false(&e) => Expr::always(),
            e => Expr::Not(Box::new(e)),
        },
        Expr::All(parts) => {
            // Kind checks of one conjunction meet in one check, and the
            // other parts are simplified knowing it holds.
            let mut flat = Vec::new();
            flatten_all(parts, &mut flat);
            let mut admitted = kinds;
            let mut has_check = false;
            let mut rest = Vec::new();
            for e in flat {
                match check_of(&e) {
                    Some(set) => {
                        admitted = admitted.intersect(set);
                        has_check = true;
                    }
                    None => rest.push(e),
                }
            }
            if admitted.is_empty() {
                return Expr::Any(Vec::new());
            }
            let mut out: Vec<Expr> = Vec::new();
            for part in rest {
                let mut simplified = Vec::new();
                flatten_all(vec![simplify(part, admitted)], &mut simplified);
                for e in simplified {
                    if is_false(&e) {
                        return e;
                    }
                    match check_of(&e) {
                        Some(set) => {
                            admitted = admitted.intersect(set);
                            has_check = true;
                        }
                        None if !out.contains(&e) => out.push(e),
                        None => {}
                    }
                }
            }
            if has_check {
                match kind_check(admitted, kinds) {
                    e if is_false(&e) => return e,
                    e if is_true(&e) => {}
                    e => out.insert(0, e),
                }
            }
            values::join(out, true)
        }
        Expr::Any(parts) => {
            // Kind checks of one disjunction join in one check.
            let mut admitted = KindSet::default();
            let mut has_check = false;
            let mut out: Vec<Expr> = Vec::new();
            for part in parts {
                let part = simplify(part, kinds);
                let flat = match part {
                    Expr::Any(inner) => inner,
                    e => vec![e],
                };
                for e in flat {
                    if is_true(&e) {
                        return e;
                    }
                    match check_of(&e) {
                        Some(set) => {
                            admitted = KindSet(admitted.0 | set.0);
                            has_check = true;
                        }
                        None if !out.contains(&e) => out.push(e),
                        None => {}
                    }
                }
            }
            if has_check {
                match kind_check(admitted, kinds) {
                    e if is_true(&e) => return e,
                    e if is_false(&e) => {}
                    e => out.insert(0, e),
                }
            }
            values::join(out, false)
        }
    }
}

/// The parts of nested conjunctions, in order.
fn flatten_all(parts: Vec<Expr>, out: &mut Vec<Expr>) {
    for part in parts {
        match part {
            Expr::All(inner) => flatten_all(inner, out),
            e => out.push(e),
        }
    }
}

/// The kinds a kind check admits, when `expr` is one.
fn check_of(expr: &Expr) -> Option<KindSet> {
    match expr {
        Expr::Pred(pred) => kinds_of(pred),
        _ => None,
    }
}

/// A check that the kind is in `set`, for an event whose kind is in
/// `kinds`: always true, never true, or a check on what is left.
fn kind_check(set: KindSet, kinds: KindSet) -> Expr {
    let left = set.intersect(kinds);
    if left == kinds {
        Expr::always()
    } else if left.is_empty() {
        Expr::Any(Vec::new())
    } else {
        kind_pred(left)
    }
}

#[cfg(test)]
mod tests;
