//! One loaded rule set at work: per event, the compiled conditions that
//! hold ([`Evaluator`]); the L1 rules among them fire at once (all of
//! them: no first-match shadowing), the L2 steps go to the [`L2Engine`];
//! exceptions silence a firing last, so a rule's body and its allow-list
//! stay independent.

use std::fmt::Write as _;
use std::sync::Arc;

use pipeline::event::ProcessContext;
use pipeline::Event;

use crate::compile::Scratch;
use crate::firing::{Firing, MatchId};
use crate::l2::{L2Config, L2Engine, L2Stats};
use crate::l3::{L3Config, L3Engine};
use crate::l4::{L4Config, L4Engine, L4Stats};
use crate::rule::{Body, Rule};
use crate::ruleset::{Owner, RuleSet};

/// A rule set with its per-event scratch and L2 state.
#[derive(Debug)]
pub struct Engine {
    set: Arc<RuleSet>,
    scratch: Scratch,
    l2: L2Engine,
    l3: L3Engine,
    l4: L4Engine,
    hits: Vec<MatchId>,
    steps: Vec<MatchId>,
    stages: Vec<MatchId>,
    /// Firings silenced by an exception, per rule (for `rules test` and
    /// metrics).
    pub excepted: u64,
}

impl Engine {
    pub fn new(set: Arc<RuleSet>, config: L2Config) -> Engine {
        let scratch = set.evaluator.scratch();
        let l2_rules = set.l2.iter().filter(|(rule, _)| set.rules[*rule].meta.enabled).cloned().collect();
        let l2 = L2Engine::new(l2_rules, config);
        let l3 = L3Engine::new(l3_rules(&set), L3Config { reorder_ns: config.reorder_ns, ..L3Config::default() });
        let l4_rules = set
            .l4
            .iter()
            .filter(|(rule, _)| set.rules[*rule].meta.enabled)
            .map(|(rule, spec)| {
                let names = match &set.rules[*rule].body {
                    Body::Chain(chain) => chain.stages.iter().map(|s| s.name.clone()).collect(),
                    _ => Vec::new(),
                };
                (*rule, spec.clone(), names)
            })
            .collect();
        let l4 = L4Engine::new(l4_rules, L4Config { reorder_ns: config.reorder_ns, ..L4Config::default() });
        Engine { set, scratch, l2, l3, l4, hits: Vec::new(), steps: Vec::new(), stages: Vec::new(), excepted: 0 }
    }

    pub fn set(&self) -> &Arc<RuleSet> {
        &self.set
    }

    pub fn l2_stats(&self) -> L2Stats {
        self.l2.stats()
    }

    /// The engine with L3 bounded and learning as `config` says (its
    /// baselines start empty: restore them with [`L3Engine::restore`]).
    pub fn with_l3(mut self, config: L3Config) -> Engine {
        self.l3 = L3Engine::new(l3_rules(&self.set), config);
        self
    }

    pub fn l3(&self) -> &L3Engine {
        &self.l3
    }

    pub fn l3_mut(&mut self) -> &mut L3Engine {
        &mut self.l3
    }

    pub fn l4_stats(&self) -> L4Stats {
        self.l4.stats()
    }

    /// Evaluates one event; firings are appended to `out` (L1 first, in
    /// rule order, then whatever L2 completes).
    pub fn process(&mut self, event: &Event, out: &mut Vec<Firing>) {
        if matches!(event, Event::Detection(_)) {
            return;
        }
        self.hits.clear();
        self.steps.clear();
        self.stages.clear();
        self.set.evaluator.evaluate(event, &mut self.scratch, &mut self.hits);
        let first = out.len();
        for id in &self.hits {
            match self.set.owners[id.0 as usize] {
                Owner::Indicator { rule } => {
                    let meta = &self.set.rules[rule].meta;
                    if !meta.enabled {
                        continue;
                    }
                    let Some(process) = event.process() else { continue };
                    out.push(Firing {
                        rule,
                        process: *process,
                        context: event.context().cloned(),
                        event_ids: vec![event.meta().event_id],
                        ts_ns: event.meta().ts_ns,
                        event_kind: event.kind(),
                        summary: describe(event),
                    });
                }
                Owner::Step { rule } => {
                    if self.set.rules[rule].meta.enabled {
                        self.steps.push(*id);
                    }
                }
                Owner::Stage { rule, .. } => {
                    if self.set.rules[rule].meta.enabled {
                        self.stages.push(*id);
                    }
                }
            }
        }
        self.l2.push(event, &self.steps, out);
        self.l3.push(event, out);
        self.l4.push(event, &self.stages, out);
        self.retain_unexcepted(first, out);
    }

    /// Processes what L2 holds in its reorder window up to `upto_ts`
    /// (`u64::MAX`: everything, at shutdown).
    pub fn flush(&mut self, upto_ts: u64, out: &mut Vec<Firing>) {
        let first = out.len();
        self.l2.flush(upto_ts, out);
        self.l3.flush(upto_ts, out);
        self.l4.flush(upto_ts, out);
        self.retain_unexcepted(first, out);
    }

    /// Drops the firings from `first` on that a rule's exceptions cover.
    fn retain_unexcepted(&mut self, first: usize, out: &mut Vec<Firing>) {
        let rules = &self.set.rules;
        let mut kept = first;
        for i in first..out.len() {
            if excepted(&rules[out[i].rule], out[i].context.as_deref()) {
                self.excepted += 1;
            } else {
                out.swap(kept, i);
                kept += 1;
            }
        }
        out.truncate(kept);
    }
}

/// The enabled L3 rules of a set.
fn l3_rules(set: &RuleSet) -> Vec<(usize, crate::rule::Anomaly)> {
    set.l3.iter().filter(|(rule, _)| set.rules[*rule].meta.enabled).cloned().collect()
}

/// Whether a rule's exceptions cover the process.
fn excepted(rule: &Rule, context: Option<&ProcessContext>) -> bool {
    let exceptions = &rule.meta.exceptions;
    if exceptions.exe.is_empty() && exceptions.lineage.is_empty() {
        return false;
    }
    let Some(context) = context else { return false };
    if exceptions.exe.iter().any(|p| path_matches(p, &context.exe)) {
        return true;
    }
    context.ancestry.iter().any(|a| exceptions.lineage.iter().any(|p| path_matches(p, &a.exe)))
}

/// Exact, or a prefix when the pattern ends in `*`.
fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// One line on what the event was.
pub fn describe(event: &Event) -> String {
    let mut s = String::new();
    let exe = |e: &Event| e.context().map(|c| c.exe.clone()).unwrap_or_else(|| "".into());
    let _ = match event {
        Event::ProcessExec(e) => write!(s, "exec {} {}", e.exe, clip(&e.argv.joined(), 160)),
        Event::NetConnect(e) => write!(s, "{} connect {}:{}", exe(event), e.dst_addr, e.dst_port),
        Event::NetSend(e) => write!(s, "{} send {}:{}", exe(event), e.dst_addr, e.dst_port),
        Event::NetListen(e) => write!(s, "{} listen {}:{}", exe(event), e.addr, e.port),
        Event::NetAccept(e) => write!(s, "{} accept {}:{}", exe(event), e.peer_addr, e.peer_port),
        Event::FileOpen(e) => write!(s, "{} open {}", exe(event), e.path),
        Event::FileChange(e) => write!(s, "{} {} {} {}", exe(event), e.op.as_str(), e.path, e.target),
        Event::ModuleLoad(e) => write!(s, "{} {} {}", exe(event), e.syscall.as_str(), e.path),
        Event::PtraceAttach(e) => write!(s, "{} ptrace pid {}", exe(event), e.target.pid),
        Event::CredentialChange(e) => {
            write!(s, "{} {} euid {}→{}", exe(event), e.syscall.as_str(), e.old.euid, e.new.euid)
        }
        Event::NamespaceChange(e) => write!(s, "{} {} flags {:#x}", exe(event), e.syscall.as_str(), e.flags),
        Event::NetPolicy(e) => {
            write!(s, "{} policy {} {} {}:{}", exe(event), e.action.as_str(), e.rule_id, e.dst_addr, e.dst_port)
        }
        other => write!(s, "{} {}", other.kind().as_str(), exe(other)),
    };
    s.trim().to_owned()
}

fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
