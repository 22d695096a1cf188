//! What an event does to a sequence's or a count's state, and the firings
//! it completes.

use std::collections::VecDeque;

use pipeline::event::Lineage;

use super::keys::{duration, target_name};
use super::{
    Body, CountState, EvictReason, Firing, Input, Kind, L2Engine, Partial, Relation, Rule, StepRec, MAX_FIRING_IDS,
    MAX_PARTIALS, NO_PROCESS,
};

impl L2Engine {
    pub(super) fn sequence(&mut self, slot: usize, input: Input, rec: &StepRec, out: &mut Vec<Firing>) {
        let now = rec.ts;
        let (ordered, n, within, index) = match &self.rules[slot] {
            Rule { kind: Kind::Sequence { ordered, relations }, within_ns, index, .. } => {
                (*ordered, relations.len(), *within_ns, *index)
            }
            _ => return,
        };
        let full = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        let steps = input.steps & full;
        if steps == 0 {
            return;
        }
        if n == 1 {
            out.push(sequence_firing(index, within, &[], rec));
            return;
        }
        let starts = if ordered { steps & 1 } else { steps };
        let exists = self.rules[slot].states.contains_key(&input.group);
        if !exists && starts == 0 {
            return;
        }
        self.ensure(slot, &input.group, now, || Body::Sequence(Vec::new()));
        let rule = &mut self.rules[slot];
        let Kind::Sequence { relations, .. } = &rule.kind else { return };
        let Some(state) = rule.states.get_mut(&input.group) else { return };
        let mut dropped = 0;
        let old_ts = state.last_ts;
        let Body::Sequence(partials) = &mut state.body else { return };
        let had = partials.len();
        partials.retain(|p| now - p.start_ts().min(now) <= within);
        let died = had - partials.len();
        let fits = |p: &Partial, s: usize| -> bool {
            steps & (1 << s) != 0
                && p.filled & (1 << s) == 0
                && (!ordered || p.filled == (1u64 << s) - 1)
                && (s == 0 || p.step(s - 1).is_none_or(|prev| related(relations[s], prev, rec)))
                && (s + 1 >= n || p.step(s + 1).is_none_or(|next| related(relations[s + 1], rec, next)))
        };
        // Complete the earliest partial this event completes.
        let completes = partials.iter().position(|p| {
            let missing = full & !p.filled;
            missing.count_ones() == 1 && fits(p, missing.trailing_zeros() as usize)
        });
        let mut changed = false;
        if let Some(at) = completes {
            let partial = partials.remove(at);
            out.push(sequence_firing(index, within, &partial.events, rec));
            changed = true;
        } else {
            for partial in partials.iter_mut() {
                if let Some(s) = (0..n).find(|&s| fits(partial, s)) {
                    partial.filled |= 1 << s;
                    partial.events.push((s as u8, rec.clone()));
                    changed = true;
                }
            }
            if starts != 0 {
                if partials.len() >= MAX_PARTIALS {
                    partials.remove(0);
                    dropped += 1;
                }
                let s = starts.trailing_zeros() as u8;
                partials.push(Partial { filled: 1 << s, events: vec![(s, rec.clone())] });
                changed = true;
            }
        }
        let empty = partials.is_empty();
        self.partials_dropped += dropped;
        let outcome =
            if empty { Some(if changed || died == 0 { None } else { Some(EvictReason::Expired) }) } else { None };
        let now = if changed && !empty {
            state.last_ts = now;
            now
        } else {
            old_ts
        };
        self.touch(slot, input.group, old_ts, now, outcome);
    }

    pub(super) fn count(&mut self, slot: usize, input: Input, rec: &StepRec, out: &mut Vec<Firing>) {
        let now = rec.ts;
        let (distinct, more_than, within, index) = match &self.rules[slot] {
            Rule { kind: Kind::Count { distinct, more_than }, within_ns, index, .. } => {
                (*distinct, *more_than, *within_ns, *index)
            }
            _ => return,
        };
        let keep = (more_than + 1) as usize;
        self.ensure(slot, &input.group, now, || Body::Count(CountState { entries: VecDeque::new(), fired_at: None }));
        let Some(state) = self.rules[slot].states.get_mut(&input.group) else { return };
        let old_ts = state.last_ts;
        let Body::Count(count) = &mut state.body else { return };
        let entries = &mut count.entries;
        while entries.front().is_some_and(|(ts, _, _)| now - (*ts).min(now) > within) {
            entries.pop_front();
        }
        if let Some(value) = &input.distinct {
            if let Some(at) = entries.iter().position(|(_, _, v)| v.as_ref() == Some(value)) {
                entries.remove(at);
            }
        }
        entries.push_back((now, rec.event_id, input.distinct));
        while entries.len() > keep {
            entries.pop_front();
        }
        let quiet = count.fired_at.is_some_and(|at| now - at.min(now) <= within);
        if entries.len() > more_than as usize && !quiet {
            count.fired_at = Some(now);
            let skip = entries.len().saturating_sub(MAX_FIRING_IDS);
            let event_ids = entries.iter().skip(skip).map(|(_, id, _)| *id).collect();
            let what = match distinct {
                Some(target) => format!("distinct {}", target_name(target)),
                None => "events".to_string(),
            };
            let summary = format!("{} {what} within {} (> {more_than})", entries.len(), duration(within));
            out.push(firing(index, event_ids, rec, summary));
        }
        state.last_ts = now;
        self.touch(slot, input.group, old_ts, now, None);
    }
}

/// Whether `next`'s process stands in `relation` to `prev`'s.
fn related(relation: Relation, prev: &StepRec, next: &StepRec) -> bool {
    let ancestry = next.context.as_ref().map_or(&[][..], |c| c.ancestry.as_slice());
    match relation {
        Relation::Any => true,
        Relation::SameProcess => prev.process.is_some() && prev.process == next.process,
        Relation::Child => prev.process.is_some_and(|p| ancestry.first().is_some_and(|a| a.process == p)),
        Relation::Descendant => prev.process.is_some_and(|p| ancestry.iter().any(|a| a.process == p)),
        Relation::SameLineage => prev.lineage.is_some() && prev.lineage == next.lineage,
    }
}

fn sequence_firing(rule: usize, within: u64, before: &[(u8, StepRec)], last: &StepRec) -> Firing {
    let all = || before.iter().map(|(_, r)| r).chain(std::iter::once(last));
    let mut summary = format!("{} steps within {}: ", before.len() + 1, duration(within));
    for (i, rec) in all().enumerate() {
        if i > 0 {
            summary.push_str(" → ");
        }
        summary.push_str(rec.kind.as_str());
        if let Some(c) = rec.context.as_ref().filter(|c| c.lineage != Lineage::ProcessUnknown && !c.exe.is_empty()) {
            summary.push(' ');
            summary.push_str(&c.exe);
        }
    }
    firing(rule, all().map(|r| r.event_id).collect(), last, summary)
}

fn firing(rule: usize, event_ids: Vec<u64>, last: &StepRec, summary: String) -> Firing {
    Firing {
        rule,
        process: last.process.unwrap_or(NO_PROCESS),
        context: last.context.clone(),
        event_ids,
        ts_ns: last.ts,
        event_kind: last.kind,
        summary,
    }
}
