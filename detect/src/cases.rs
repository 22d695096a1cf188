//! Rule test cases: a YAML format that describes events in the words the
//! rules use, a builder of real [`pipeline::Event`]s carrying the process
//! context the enrich transform would attach, and a runner that drives
//! each case through a fresh [`Engine`].
//!
//! ```yaml
//! cases:
//!   - name: reverse shell via bash -i
//!     rule: hf-linux-reverse-shell-stdio   # or `any`: any rule of the set
//!     expect: fire                         # or `silent`
//!     events:                              # 1 s apart unless `at: 1.5s`
//!       - kind: process_exec
//!         exe: /usr/bin/bash
//!         argv: [bash, -i]
//!         stdin_type: tcp
//!         parent: { exe: /usr/sbin/nginx, args: "nginx: worker process" }
//!       - kind: net_connect                # the same process (pid) as above
//!         dst_addr: 10.0.0.5
//!         dst_port: 4444
//! ```
//!
//! Each case has its own process table: an event describes its process
//! (`pid`, `exe`, `argv` or `cmdline`, `uid`, `euid`, `user`, `cwd`,
//! `parent`, `ancestors`, …) and what it leaves unsaid comes from the last
//! event of the same pid, else from defaults: pid `base+10`, a user
//! `alice` (uid 1000) in an ssh session (`-bash` ← `sshd` ← PID 1). An
//! exec starts a new image (its `argv` defaults to the exe's basename). A
//! `parent` given only by pid takes its exe, arguments and ancestry from
//! the table, so children of a case's processes have real lineages.
//! `repeat: { count: 60, every: 100ms, vary: [dst_port] }` writes an event
//! many times, adding the copy's index to the `vary` fields.
//!
//! The kinds and their own keys (named like the rule fields they feed):
//! `process_exec` (`file_mode`, `file_nlink`, `file_memfd`, `stdin_type`,
//! `stdout_type`, `stderr_type`, `env`, `attributes: 0` for none,
//! `argv_truncated`), `process_exit` (`exit_code`, `cpu_ns`),
//! `process_fork` (`child_pid`), `net_connect` and `net_send` (`protocol`,
//! `dst_addr`, `dst_port`, `result` / `bytes`), `net_listen` and
//! `net_accept` (`local_addr`, `local_port`, `peer_addr`, `peer_port`,
//! `backlog`, `result`), `file_open` (`path`, `flags`: a number or names
//! such as `[O_WRONLY, O_CREAT]`), `file_change` (`file_op`, `path`,
//! `target`, `mode`, `result`), `credential_change` (`syscall`, `old` and
//! `new`: `{ uid, euid, suid, gid, egid, sgid }`, `result`),
//! `namespace_change` (`syscall`, `ns_flags`: a number or `CLONE_NEW*`
//! names, `result`), `ptrace_attach` (`request`, `target_pid`, `result`),
//! `module_load` (`syscall`, `path`, `params`, `result`). Every kind also
//! takes the process keys above, `start` (the process's start, seconds
//! from the case's start), `tty`, `loginuid`, `session_id`,
//! `container_id`, `sha256` and `context: unknown | none`. Numbers may be
//! written `0o4755` or `0x4206`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::Event;

use crate::engine::Engine;
use crate::l2::L2Config;
use crate::problem::Problem;
use crate::ruleset::{rule_files, RuleSet};
use crate::yaml::{parse, Node, Problems};

mod build;
mod spec;

use build::Builder;
use spec::{load_event, Spec};

const SECOND: u64 = 1_000_000_000;
/// Event time of the first case.
const FIRST_BASE_NS: u64 = 1_000 * SECOND;
/// Quiet time between two cases: longer than any L2 window of the pack.
pub const CASE_GAP_NS: u64 = 600 * SECOND;

/// What a case expects of its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Fire,
    Silent,
}

/// One case: events, and whether a rule fires on them.
#[derive(Clone, Debug)]
pub struct Case {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    /// The rule's id; `None` for `rule: any` (any rule of the set).
    pub rule: Option<String>,
    pub expect: Expect,
    specs: Vec<Spec>,
}

impl Case {
    /// The case's events, the first at `base_ns`, ids from `first_id`;
    /// `index` (the case's position) spreads default pids across cases.
    pub fn events(&self, index: usize, base_ns: u64, first_id: u64) -> Vec<Event> {
        let mut builder = Builder::new(base_ns, 10_000 + 1_000 * (index as u32 % 4_000));
        self.specs.iter().enumerate().map(|(i, spec)| builder.event(spec, first_id + i as u64)).collect()
    }

    /// Time from the case's first event time to its last.
    pub fn span_ns(&self) -> u64 {
        self.specs.iter().map(|s| s.at_ns).max().unwrap_or(0)
    }

    pub fn event_count(&self) -> usize {
        self.specs.len()
    }
}

/// Reads every `*.yml` under `dir` (in path order). Problems come with
/// file and line; a case with a problem is left out.
pub fn load_cases(dir: &Path) -> (Vec<Case>, Vec<Problem>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let files = match rule_files(dir) {
        Ok(files) => files,
        Err(e) => {
            let message = format!("cannot read the cases: {e}");
            return (cases, vec![Problem::new(dir, 0, None, message, None)]);
        }
    };
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (more, found) = load_text(&file, &text);
                cases.extend(more);
                problems.extend(found);
            }
            Err(e) => problems.push(Problem::new(&file, 0, None, format!("cannot read: {e}"), None)),
        }
    }
    (cases, problems)
}

/// Reads the cases of one file's text.
pub fn load_text(file: &Path, text: &str) -> (Vec<Case>, Vec<Problem>) {
    let mut problems = Problems::new(file);
    let mut cases = Vec::new();
    match parse(text) {
        Err((line, message)) => problems.at(line, format!("not valid YAML: {message}")),
        Ok(docs) => {
            for doc in docs.iter().map(Node::new).filter(|d| !d.is_null()) {
                for (key, key_node, value) in doc.entries().unwrap_or_default() {
                    if key != "cases" {
                        problems.hint(key_node.line(), format!("unknown key `{key}`"), "a case file has `cases:`");
                    }
                    let Some(items) = value.items() else {
                        problems.at(value.line(), "`cases` must be a list");
                        continue;
                    };
                    for item in items {
                        let before = problems.list.len();
                        let case = load_case(file, item, &mut problems);
                        if problems.list.len() == before {
                            cases.extend(case);
                        }
                    }
                }
                if !doc.is_mapping() {
                    problems.at(doc.line(), "a case file is a mapping with `cases:`");
                }
            }
        }
    }
    (cases, problems.list)
}

fn load_case(file: &Path, node: Node<'_>, problems: &mut Problems<'_>) -> Option<Case> {
    for (key, key_node, _) in node.entries().unwrap_or_default() {
        if !["name", "rule", "expect", "events"].contains(&key.as_str()) {
            problems.hint(key_node.line(), format!("unknown key `{key}`"), "a case has name, rule, expect, events");
        }
    }
    let text = |key: &str, problems: &mut Problems<'_>| match node.get(key).and_then(|v| v.str()) {
        Some(t) => Some(t.to_owned()),
        None => {
            problems.at(node.line(), format!("a case needs `{key}` (text)"));
            None
        }
    };
    let name = text("name", problems);
    let rule = text("rule", problems);
    let expect = match text("expect", problems).as_deref() {
        Some("fire") => Some(Expect::Fire),
        Some("silent") => Some(Expect::Silent),
        Some(other) => {
            problems.hint(node.line(), format!("unknown expectation `{other}`"), "expect: fire | silent");
            None
        }
        None => None,
    };
    let mut specs = Vec::new();
    match node.get("events").and_then(Node::items) {
        Some(items) if !items.is_empty() => {
            let mut at = 0;
            for (i, item) in items.into_iter().enumerate() {
                for spec in load_event(item, if i == 0 { 0 } else { at + SECOND }, problems) {
                    at = spec.at_ns;
                    specs.push(spec);
                }
            }
        }
        _ => problems.at(node.line(), "a case needs `events`: a list of at least one event"),
    }
    let rule = rule.map(|r| if r == "any" { None } else { Some(r) })?;
    Some(Case { file: file.to_path_buf(), line: node.line(), name: name?, rule, expect: expect?, specs })
}

/// Where each case's events start: `(base_ns, first event id)`, cases
/// [`CASE_GAP_NS`] apart, ids from 1 and unique across cases.
fn layout(cases: &[Case]) -> Vec<(u64, u64)> {
    let (mut base, mut id) = (FIRST_BASE_NS, 1);
    cases
        .iter()
        .map(|case| {
            let here = (base, id);
            base += case.span_ns() + CASE_GAP_NS;
            id += case.event_count() as u64;
            here
        })
        .collect()
}

/// The events of every case under `dir`, in case order: what a replay
/// file of the whole corpus holds.
pub fn case_events(dir: &Path) -> Result<Vec<Event>, Vec<Problem>> {
    let (cases, problems) = load_cases(dir);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(events_of(&cases))
}

/// The events of `cases`, laid out as [`case_events`] does.
pub fn events_of(cases: &[Case]) -> Vec<Event> {
    let places = layout(cases);
    cases.iter().enumerate().flat_map(|(i, case)| case.events(i, places[i].0, places[i].1)).collect()
}

/// The ids [`events_of`] gives each case's events: one range per case, in
/// case order (a detection resting on ids of one range is that case's).
pub fn case_event_ids(cases: &[Case]) -> Vec<Range<u64>> {
    layout(cases).into_iter().zip(cases).map(|((_, first), case)| first..first + case.event_count() as u64).collect()
}

/// How one case went.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub rule: Option<String>,
    pub expect: Expect,
    /// Ids of the rules that fired, sorted, once each.
    pub fired: Vec<String>,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Every case's result, and the problems of the case files.
#[derive(Clone, Debug, Default)]
pub struct CaseReport {
    pub results: Vec<CaseResult>,
    pub problems: Vec<Problem>,
}

impl CaseReport {
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// No problem and no failure.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.failures().next().is_none()
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        for r in self.failures() {
            let rule = r.rule.as_deref().unwrap_or("any");
            let why = r.failure.as_deref().unwrap_or_default();
            writeln!(f, "{}:{}: case `{}` ({rule}): {why}; fired: {:?}", r.file.display(), r.line, r.name, r.fired)?;
        }
        let failed = self.failures().count();
        write!(
            f,
            "{} cases, {} passed, {failed} failed, {} problems",
            self.results.len(),
            self.results.len() - failed,
            self.problems.len()
        )
    }
}

/// Runs every case under `dir` through a fresh engine on `set`.
pub fn run_cases(set: Arc<RuleSet>, dir: &Path) -> CaseReport {
    let (cases, problems) = load_cases(dir);
    let places = layout(&cases);
    let config = L2Config { reorder_ns: 2 * SECOND, max_states_per_rule: 10_000, max_states_total: 100_000 };
    let mut results = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let mut engine = Engine::new(set.clone(), config);
        let mut firings = Vec::new();
        for event in case.events(i, places[i].0, places[i].1) {
            engine.process(&event, &mut firings);
        }
        engine.flush(u64::MAX, &mut firings);
        let mut fired: Vec<String> = firings.iter().map(|f| set.rules[f.rule].meta.id.to_string()).collect();
        fired.sort();
        fired.dedup();
        let failure = match &case.rule {
            Some(id) => match set.rules.iter().find(|r| &*r.meta.id == id) {
                None => Some(format!("no rule `{id}` in the set")),
                Some(rule) if !rule.meta.enabled && case.expect == Expect::Fire => Some("the rule is disabled".into()),
                Some(_) => {
                    let hit = fired.iter().any(|f| f == id);
                    match (case.expect, hit) {
                        (Expect::Fire, false) => Some("expected the rule to fire; it did not".into()),
                        (Expect::Silent, true) => Some("expected the rule to stay silent; it fired".into()),
                        _ => None,
                    }
                }
            },
            None => match (case.expect, fired.is_empty()) {
                (Expect::Fire, true) => Some("expected some rule to fire; none did".into()),
                (Expect::Silent, false) => Some("expected no rule to fire".into()),
                _ => None,
            },
        };
        results.push(CaseResult {
            file: case.file.clone(),
            line: case.line,
            name: case.name.clone(),
            rule: case.rule.clone(),
            expect: case.expect,
            fired,
            failure,
        });
    }
    CaseReport { results, problems }
}

#[cfg(test)]
#[path = "cases/tests.rs"]
mod tests;
