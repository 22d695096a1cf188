//! Rule what-if: `hostflow replay --spool DIR --rules NEW --diff OLD`
//! replays recorded events through two rule sets and prints what NEW adds
//! and removes relative to OLD, per rule (issue #16).
//!
//! A detection is compared by what it says — its rule id and the events
//! it rests on — not by its own id or time, which `detect` assigns and
//! which differ between two runs with different rule sets. Both sides are
//! counted as multisets (a rule may fire twice on the same events), and
//! everything printed is sorted, so the same spool and rule sets give the
//! same bytes on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::commands::Outcome;
use crate::eval::run::{detect_pass, DetectOptions, Input, Rules, Scratch};

/// Examples of each change shown per rule.
pub const FIRST: usize = 5;

/// Options of the what-if form of `hostflow replay`.
#[derive(Clone, Debug)]
pub struct WhatIfOptions {
    pub spool: PathBuf,
    /// The candidate rule set (a directory, a file, or `builtin`).
    pub new: PathBuf,
    /// The rule set it is compared with.
    pub old: PathBuf,
    pub json: bool,
}

/// One rule's change.
#[derive(Debug, Default)]
struct Change {
    added: u64,
    removed: u64,
    first_added: Vec<Vec<u64>>,
    first_removed: Vec<Vec<u64>>,
}

/// Runs both passes and prints the difference. Exit 0 whether or not the
/// sets differ (the output says how); 66 when the spool is missing, 78
/// when a rule set would be refused, 1 when a pass fails.
pub fn what_if(options: &WhatIfOptions) -> Outcome {
    match compare(options) {
        Ok(()) => Outcome::Success,
        Err(outcome) => outcome,
    }
}

fn compare(options: &WhatIfOptions) -> Result<(), Outcome> {
    if !options.spool.is_dir() {
        eprintln!("{}: error: no such spool directory", options.spool.display());
        eprintln!("hint: --spool is an arrow_spool sink's `path`");
        return Err(Outcome::Unreadable);
    }
    let (new_rules, old_rules) = (Rules::from_arg(&options.new), Rules::from_arg(&options.old));
    let (new_set, old_set) = (new_rules.load()?, old_rules.load()?);
    let scratch = Scratch::new("whatif")?;
    let input = Input::Spool(&options.spool);
    let new = detect_pass(input, &new_rules, &DetectOptions::default(), &scratch, "new")?;
    let old = detect_pass(input, &old_rules, &DetectOptions::default(), &scratch, "old")?;

    // (rule, event ids) → NEW count − OLD count.
    let mut balance: BTreeMap<(&str, &[u64]), i64> = BTreeMap::new();
    for d in &new.detections {
        *balance.entry((&*d.rule_id, d.event_ids.as_slice())).or_default() += 1;
    }
    for d in &old.detections {
        *balance.entry((&*d.rule_id, d.event_ids.as_slice())).or_default() -= 1;
    }
    let mut changes: BTreeMap<&str, Change> = BTreeMap::new();
    for ((rule, ids), delta) in balance.into_iter().filter(|(_, delta)| *delta != 0) {
        let change = changes.entry(rule).or_default();
        let (count, first) = if delta > 0 {
            (&mut change.added, &mut change.first_added)
        } else {
            (&mut change.removed, &mut change.first_removed)
        };
        *count += delta.unsigned_abs();
        if first.len() < FIRST {
            first.push(ids.to_vec());
        }
    }
    let added: u64 = changes.values().map(|c| c.added).sum();
    let removed: u64 = changes.values().map(|c| c.removed).sum();

    if options.json {
        let rules: Vec<serde_json::Value> = changes
            .iter()
            .map(|(rule, c)| {
                json!({
                    "rule_id": rule,
                    "added": c.added,
                    "removed": c.removed,
                    "first_added": c.first_added,
                    "first_removed": c.first_removed,
                })
            })
            .collect();
        let side = |path: &Path, set: &detect::RuleSet, detections: usize| json!({ "rules": path.display().to_string(), "ruleset": &*set.digest, "detections": detections });
        let document = json!({
            "events": new.replayed,
            "new": side(&options.new, &new_set, new.detections.len()),
            "old": side(&options.old, &old_set, old.detections.len()),
            "added": added,
            "removed": removed,
            "rules": rules,
        });
        println!("{document:#}");
        return Ok(());
    }
    println!(
        "what-if over {} events: NEW {} (rule set {}, {} rules): {} detections; OLD {} (rule set {}, {} rules): {} detections",
        new.replayed,
        options.new.display(),
        new_set.digest,
        new_set.rules.len(),
        new.detections.len(),
        options.old.display(),
        old_set.digest,
        old_set.rules.len(),
        old.detections.len(),
    );
    if changes.is_empty() {
        println!("no difference: both rule sets give the same detections");
        return Ok(());
    }
    for (rule, change) in &changes {
        if change.added > 0 {
            println!("+{:<6} {rule}  first: {}", change.added, show_ids(&change.first_added));
        }
        if change.removed > 0 {
            println!("-{:<6} {rule}  first: {}", change.removed, show_ids(&change.first_removed));
        }
    }
    println!("{} rule(s) differ: {added} detection(s) added, {removed} removed", changes.len());
    Ok(())
}

/// `[12] [40,41]`: each detection's event ids.
fn show_ids(detections: &[Vec<u64>]) -> String {
    let shown: Vec<String> = detections
        .iter()
        .map(|ids| format!("[{}]", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")))
        .collect();
    shown.join(" ")
}
