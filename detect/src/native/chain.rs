//! The `chain:` body of a native rule (L4): ordered stages over one
//! process lineage.
//!
//! ```yaml
//! chain:
//!   within: 10m
//!   stages:
//!     - name: service
//!       match: {kind: net_accept}
//!     - name: shell
//!       match: {kind: process_exec, exe: {suffix: [/sh, /bash]}}
//! ```

use std::sync::Arc;

use crate::rule::{Chain, Stage};
use crate::yaml::{Node, Problems};

use super::{check_keys, load_match, window};

/// Most stages a chain may have: stage flags are bits of one byte per
/// lineage node and rule.
pub const MAX_STAGES: usize = 8;

pub fn load(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Chain> {
    let before = problems.list.len();
    check_keys(node, &["within", "stages"], "chain", problems);
    let within_ns = window(node, "within", problems);
    let mut stages = Vec::new();
    match node.get("stages").and_then(Node::items) {
        Some(items) if items.len() > MAX_STAGES => {
            problems.at(node.line(), format!("a chain has at most {MAX_STAGES} stages"));
        }
        Some(items) if items.len() >= 2 => {
            for (i, item) in items.into_iter().enumerate() {
                check_keys(item, &["name", "match"], "stage", problems);
                let name: Arc<str> = match item.get("name").and_then(Node::text) {
                    Some(name) if !name.trim().is_empty() => name.trim().into(),
                    _ => format!("stage{i}").into(),
                };
                if stages.iter().any(|s: &Stage| s.name == name) {
                    problems.at(item.line(), format!("two stages are named `{name}`"));
                }
                match item.get("match") {
                    Some(m) => {
                        if let Some(matcher) = load_match(m, problems) {
                            stages.push(Stage { name, matcher });
                        }
                    }
                    None => problems.at(item.line(), "a stage needs a `match`"),
                }
            }
        }
        _ => problems.hint(
            node.line(),
            "a chain needs `stages`: a list of at least two",
            "stages: [{name: service, match: …}, {name: shell, match: …}]",
        ),
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Chain { stages, within_ns: within_ns? })
}
