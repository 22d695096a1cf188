//! `filter`: keeps the events of chosen kinds that meet every condition,
//! and counts the rest as discarded with reason `filtered`.
//!
//! Field names and operators are resolved once at build time into a
//! [`Condition`] list; the hot path is a kind bit test plus a few typed
//! comparisons per event, with no string lookups.
//!
//! ```toml
//! [transforms.outbound]
//! type = "filter"
//! inputs = ["gen"]
//! kinds = ["net_connect"]
//! conditions = [
//!   { field = "dst_port", op = ">=", value = 1024 },
//!   { field = "protocol", op = "==", value = "tcp" },
//! ]
//! ```

use pipeline::metrics::DropReason;
use pipeline::{
    Batch, ComponentOptions, ConfigError, Event, EventKind, Field, FieldType, FieldValue, Output, Transform,
};
use serde::Deserialize;
use toml::Spanned;

/// `[transforms.NAME] type = "filter"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Event kinds to keep. Absent: every kind.
    #[serde(default)]
    pub kinds: Option<Vec<Spanned<String>>>,
    /// Conditions that must all hold. An event without the named field
    /// fails the condition.
    #[serde(default)]
    pub conditions: Vec<ConditionConfig>,
}

/// One `{ field, op, value }` condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    pub field: Spanned<String>,
    /// `==`, `!=`, `>`, `>=`, `<`, `<=` (numbers and text), or
    /// `contains`, `starts_with`, `ends_with` (text).
    pub op: Spanned<String>,
    pub value: Spanned<Literal>,
}

/// A literal in a condition.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged, expecting = "value must be a number or a string")]
pub enum Literal {
    Integer(i64),
    Float(f64),
    Text(String),
}

/// Builds a filter from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: FilterConfig, options| {
        Ok(Box::new(Filter::new(config, options)?) as Box<dyn Transform>)
    })
}

/// A compiled filter.
#[derive(Debug)]
pub struct Filter {
    /// Bit `kind.index()` set for every kind kept.
    kinds: u32,
    conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    StartsWith,
    EndsWith,
}

const OPS: [(&str, Op); 9] = [
    ("==", Op::Eq),
    ("!=", Op::Ne),
    (">", Op::Gt),
    (">=", Op::Ge),
    ("<", Op::Lt),
    ("<=", Op::Le),
    ("contains", Op::Contains),
    ("starts_with", Op::StartsWith),
    ("ends_with", Op::EndsWith),
];

/// A condition with its field and literal resolved to types.
#[derive(Debug)]
enum Condition {
    Int { field: Field, op: Op, value: i128 },
    Float { field: Field, op: Op, value: f64 },
    Text { field: Field, op: Op, value: Box<str> },
}

impl Filter {
    /// Resolves kinds, fields and operators; reports every bad one.
    pub fn new(config: FilterConfig, options: &ComponentOptions) -> Result<Filter, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let kinds = match &config.kinds {
            None => u32::MAX,
            Some(names) => {
                let mut bits = 0u32;
                for name in names {
                    match EventKind::from_name(name.get_ref()) {
                        Some(kind) => bits |= 1 << kind.index(),
                        None => {
                            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                            errors.push(with_suggestion(
                                options.error_at(
                                    name.span(),
                                    format!(
                                        "unknown event kind `{}`; known kinds: {}",
                                        name.get_ref(),
                                        known.join(", ")
                                    ),
                                ),
                                name.get_ref(),
                                &known,
                            ));
                        }
                    }
                }
                bits
            }
        };
        let mut conditions = Vec::new();
        for condition in &config.conditions {
            match compile(condition, options) {
                Ok(compiled) => conditions.push(compiled),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(Filter { kinds, conditions })
        } else {
            Err(errors)
        }
    }

    /// True when the event is kept.
    fn keeps(&self, event: &Event) -> bool {
        self.kinds & (1 << event.kind().index()) != 0 && self.conditions.iter().all(|condition| condition.holds(event))
    }
}

impl Transform for Filter {
    fn process(&mut self, mut batch: Batch, out: &mut Output) {
        let before = batch.len();
        batch.retain(|event| self.keeps(event));
        out.discard(DropReason::Filtered, before - batch.len());
        out.extend(batch);
    }
}

fn with_suggestion(error: ConfigError, name: &str, known: &[&str]) -> ConfigError {
    match pipeline::config::closest(name, known.iter().copied()) {
        Some(near) => error.with_hint(format!("did you mean `{near}`?")),
        None => error,
    }
}

fn compile(condition: &ConditionConfig, options: &ComponentOptions) -> Result<Condition, ConfigError> {
    let field_name = condition.field.get_ref();
    let Some(field) = Field::from_name(field_name) else {
        let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
        return Err(with_suggestion(
            options.error_at(
                condition.field.span(),
                format!("unknown field `{field_name}`; known fields: {}", known.join(", ")),
            ),
            field_name,
            &known,
        ));
    };
    let op_name = condition.op.get_ref();
    let Some(op) = OPS.iter().find(|(name, _)| name == op_name).map(|(_, op)| *op) else {
        let known: Vec<&str> = OPS.iter().map(|(name, _)| *name).collect();
        return Err(options.error_at(
            condition.op.span(),
            format!("unknown operator `{op_name}`; known operators: {}", known.join(" ")),
        ));
    };
    let mismatch = |expected: &str| {
        options.error_at(
            condition.value.span(),
            format!("field `{field_name}` holds {expected}, so `{op_name}` needs a {expected} value here"),
        )
    };
    match (field.field_type(), condition.value.get_ref()) {
        (FieldType::Number, _) if matches!(op, Op::Contains | Op::StartsWith | Op::EndsWith) => Err(options
            .error_at(condition.op.span(), format!("`{op_name}` works on text, but field `{field_name}` is a number"))),
        (FieldType::Number, Literal::Integer(value)) => Ok(Condition::Int { field, op, value: i128::from(*value) }),
        (FieldType::Number, Literal::Float(value)) => Ok(Condition::Float { field, op, value: *value }),
        (FieldType::Number, Literal::Text(_)) => Err(mismatch("number")),
        (FieldType::Text, Literal::Text(value)) => Ok(Condition::Text { field, op, value: value.as_str().into() }),
        (FieldType::Text, _) => Err(mismatch("text")),
        (FieldType::Address, _) => Err(options.error_at(
            condition.field.span(),
            format!("field `{field_name}` is an IP address; match addresses with a `detect` rule's `cidr`"),
        )),
    }
}

impl Condition {
    fn holds(&self, event: &Event) -> bool {
        match self {
            Condition::Int { field, op, value } => match event.field(*field) {
                Some(FieldValue::Int(actual)) => compare(*op, actual.cmp(value)),
                Some(FieldValue::Float(actual)) => float_holds(*op, actual, *value as f64),
                _ => false,
            },
            Condition::Float { field, op, value } => match event.field(*field) {
                Some(FieldValue::Int(actual)) => float_holds(*op, actual as f64, *value),
                Some(FieldValue::Float(actual)) => float_holds(*op, actual, *value),
                _ => false,
            },
            Condition::Text { field, op, value } => match event.field(*field) {
                Some(FieldValue::Str(actual)) => match op {
                    Op::Contains => actual.contains(&**value),
                    Op::StartsWith => actual.starts_with(&**value),
                    Op::EndsWith => actual.ends_with(&**value),
                    _ => compare(*op, actual.cmp(value)),
                },
                Some(FieldValue::Args(argv)) => joined_holds(*op, argv.joined_view().as_bytes(), value.as_bytes()),
                _ => false,
            },
        }
    }
}

/// A text condition on arguments joined with spaces, read from `view` (the
/// joined text with NULs for those spaces), so no joined copy is built per
/// event: a NUL in `view` matches a space in `value`.
fn joined_holds(op: Op, view: &[u8], value: &[u8]) -> bool {
    let same = |window: &[u8]| window.iter().zip(value).all(|(&a, &b)| a == b || (a == 0 && b == b' '));
    match op {
        Op::Contains => value.is_empty() || view.windows(value.len()).any(same),
        Op::StartsWith => view.len() >= value.len() && same(&view[..value.len()]),
        Op::EndsWith => view.len() >= value.len() && same(&view[view.len() - value.len()..]),
        _ => {
            let joined = view.iter().map(|&byte| if byte == 0 { b' ' } else { byte });
            compare(op, joined.cmp(value.iter().copied()))
        }
    }
}

fn float_holds(op: Op, actual: f64, value: f64) -> bool {
    actual.partial_cmp(&value).is_some_and(|ordering| compare(op, ordering))
}

fn compare(op: Op, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Eq => ordering == Equal,
        Op::Ne => ordering != Equal,
        Op::Gt => ordering == Greater,
        Op::Ge => ordering != Less,
        Op::Lt => ordering == Less,
        Op::Le => ordering != Greater,
        Op::Contains | Op::StartsWith | Op::EndsWith => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use pipeline::event::{Argv, EventMeta, NetConnect, ProcessExec, Protocol};
    use pipeline::{ProcessKey, SourceFile, TopologyConfig};

    use super::*;

    fn options(table: &str) -> ComponentOptions {
        let text = format!(
            "[sources.g]\ntype = \"generator\"\n[transforms.f]\ntype = \"filter\"\ninputs = [\"g\"]\n{table}\n"
        );
        let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
        config.components.into_iter().find(|c| c.name == "f").expect("filter declared").options
    }

    fn build_filter(table: &str) -> Result<Filter, Vec<ConfigError>> {
        let options = options(table);
        let config: FilterConfig = options.deserialize().map_err(|e| vec![e])?;
        Filter::new(config, &options)
    }

    fn connect(id: u64, port: u16) -> Event {
        Event::NetConnect(NetConnect {
            context: None,
            meta: EventMeta { ts_ns: id, event_id: id },
            process: ProcessKey { pid: 10, start_time_ns: 1 },
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([127, 0, 0, 1]),
            dst_port: port,
            result: (port != 22).then_some(-111),
        })
    }

    fn exec(id: u64, comm: &str) -> Event {
        Event::ProcessExec(ProcessExec {
            context: None,
            meta: EventMeta { ts_ns: id, event_id: id },
            process: ProcessKey { pid: 20, start_time_ns: 2 },
            ppid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: Arc::from(comm),
            exe: Arc::from(format!("/usr/bin/{comm}")),
            argv: Argv::from_args([comm, "-x", "a b"]),
            argv_truncated: false,
            attributes: None,
        })
    }

    /// Runs `table`'s filter over the events and returns the ids kept.
    fn check(table: &str, events: Vec<Event>, expected_ids: &[u64]) {
        let mut filter = build_filter(table).expect("filter builds");
        let run = pipeline::testing::run_transform(&mut filter, vec![events]);
        let kept: Vec<u64> = run.events.iter().map(|e| e.meta().event_id).collect();
        assert_eq!(kept, expected_ids, "{table}");
        assert_eq!(run.discarded[DropReason::Filtered.index()], run.received - kept.len() as u64);
    }

    #[test]
    fn keeps_kinds_and_conditions() {
        let events = vec![connect(1, 22), connect(2, 8080), exec(3, "bash"), exec(4, "curl")];
        check("", events.clone(), &[1, 2, 3, 4]);
        check("kinds = [\"net_connect\"]", events.clone(), &[1, 2]);
        check("conditions = [{ field = \"dst_port\", op = \">=\", value = 1024 }]", events.clone(), &[2]);
        check("conditions = [{ field = \"comm\", op = \"==\", value = \"bash\" }]", events.clone(), &[3]);
        check("conditions = [{ field = \"exe\", op = \"ends_with\", value = \"url\" }]", events.clone(), &[4]);
        check("conditions = [{ field = \"event_id\", op = \"!=\", value = 2 }]", events.clone(), &[1, 3, 4]);
        check(
            "kinds = [\"process_exec\", \"net_connect\"]\nconditions = [{ field = \"pid\", op = \"<\", value = 15 }, { field = \"event_id\", op = \">\", value = 1.5 }]",
            events,
            &[2],
        );
    }

    /// An exec's `cmdline` is its arguments joined with spaces; a connect
    /// whose result was not observed has no `result`.
    #[test]
    fn cmdline_of_an_exec_and_optional_fields() {
        let events = vec![exec(1, "bash"), exec(2, "curl"), connect(3, 22), connect(4, 80)];
        let cmdline = |op: &str, value: &str| {
            format!("conditions = [{{ field = \"cmdline\", op = \"{op}\", value = \"{value}\" }}]")
        };
        check(&cmdline("==", "bash -x a b"), events.clone(), &[1]);
        check(&cmdline("!=", "bash -x a b"), events.clone(), &[2]);
        check(&cmdline(">", "bash -x a b"), events.clone(), &[2]);
        check(&cmdline("<", "bash -x a c"), events.clone(), &[1]);
        check(&cmdline("<=", "bash -x a"), events.clone(), &[]);
        check(&cmdline("contains", "-x a b"), events.clone(), &[1, 2]);
        check(&cmdline("contains", "l -x"), events.clone(), &[2]);
        check(&cmdline("contains", ""), events.clone(), &[1, 2]);
        check(&cmdline("contains", "a b c"), events.clone(), &[]);
        check(&cmdline("starts_with", "curl -"), events.clone(), &[2]);
        check(&cmdline("ends_with", "x a b"), events.clone(), &[1, 2]);
        check(&cmdline("ends_with", "bash -x a b and more"), events.clone(), &[]);
        check("conditions = [{ field = \"result\", op = \"==\", value = -111 }]", events.clone(), &[4]);
        check("conditions = [{ field = \"result\", op = \"!=\", value = -111 }]", events, &[]);
    }

    /// The process context's fields (issue #14): read from the context an
    /// enrich transform attached; absent without one, and absent for the
    /// marker of a process enrichment could not place (its empty text is
    /// unknown), except `ctx_lineage`, which says so.
    #[test]
    fn process_context_fields() {
        use pipeline::event::context::sample_context;
        use pipeline::event::ProcessContext;
        let with = |mut event: Event, context: Option<Arc<ProcessContext>>| {
            if let Some(slot) = event.context_mut() {
                *slot = context;
            }
            event
        };
        let events = vec![
            with(connect(1, 443), Some(sample_context())),
            with(connect(2, 443), Some(Arc::new(ProcessContext::unknown()))),
            connect(3, 443),
            with(exec(4, "bash"), Some(sample_context())),
        ];
        let condition = |field: &str, op: &str, value: &str| {
            format!("conditions = [{{ field = \"{field}\", op = \"{op}\", value = {value} }}]")
        };
        check(&condition("ctx_container_runtime", "==", "\"docker\""), events.clone(), &[1, 4]);
        check(&condition("parent_exe", "==", "\"/usr/bin/bash\""), events.clone(), &[1, 4]);
        check(&condition("parent_cmdline", "starts_with", "\"bash -c\""), events.clone(), &[1, 4]);
        check(&condition("ctx_cmdline", "contains", "\"--password=***\""), events.clone(), &[1, 4]);
        check(&condition("ctx_user", "!=", "\"root\""), events.clone(), &[1, 4]);
        check(&condition("ctx_euid", "==", "0"), events.clone(), &[1, 4]);
        check(&condition("ctx_exe", "==", "\"\""), events.clone(), &[]);
        check(&condition("ctx_lineage", "==", "\"process_unknown\""), events.clone(), &[2]);
        check(&condition("ctx_exe_hash", "==", "\"ok\""), events, &[1, 4]);
    }

    #[test]
    fn bad_conditions_are_located_and_explained() {
        let errors = build_filter(
            "kinds = [\"net_conect\"]\nconditions = [{ field = \"dst_prot\", op = \">\", value = 1 }, { field = \"pid\", op = \"contains\", value = \"1\" }, { field = \"comm\", op = \"==\", value = 3 }, { field = \"pid\", op = \"=~\", value = 3 }]",
        )
        .expect_err("four problems");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 5, "{messages:#?}");
        assert!(
            messages[0].starts_with("t.toml:6:10: error: transform `f`: unknown event kind `net_conect`"),
            "{}",
            messages[0]
        );
        assert!(messages[0].contains("did you mean `net_connect`?"));
        assert!(
            messages[1].contains("unknown field `dst_prot`") && messages[1].contains("did you mean `dst_port`?"),
            "{}",
            messages[1]
        );
        assert!(messages[2].contains("`contains` works on text, but field `pid` is a number"), "{}", messages[2]);
        assert!(messages[3].contains("field `comm` holds text"), "{}", messages[3]);
        assert!(messages[4].contains("unknown operator `=~`"), "{}", messages[4]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let errors = build_filter("kind = [\"net_connect\"]").expect_err("typo");
        let message = errors[0].to_string();
        assert!(message.starts_with("t.toml:6:1: error: transform `f`: unknown field `kind`"), "{message}");
    }
}
