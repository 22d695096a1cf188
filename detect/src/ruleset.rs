//! Loading a rules directory into one compiled, immutable [`RuleSet`]:
//! every file read, every problem collected, every condition compiled
//! into one [`Evaluator`].
//!
//! Two kinds of trouble, treated differently. A *problem* — malformed
//! YAML, a native rule with an unknown field, a regex that does not
//! compile, a duplicate id — means the directory is not what its author
//! meant: the whole set is refused and a running agent keeps its old one.
//! A Sigma rule that needs something hostflow does not collect (a DNS
//! name, an audit key) is *rejected*: skipped whole, with its file, line
//! and reason, counted, and the rest of the set loads — a SOC's Sigma
//! directory is written for many products, and one rule for a field we do
//! not have must not hold the others hostage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::DetectionLayer;

use crate::compile::{Builder, Evaluator};
use crate::l2::L2Spec;
use crate::l4::L4Spec;
use crate::native;
use crate::problem::Problem;
use crate::rule::{Anomaly, Body, IocSet, Rule};
use crate::sigma::SigmaLoader;
use crate::yaml::{self, Node, Problems};

/// Who a compiled condition belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The body of L1 rule `rule`.
    Indicator { rule: usize },
    /// A step (or a count's condition) of L2 rule `rule`.
    Step { rule: usize },
    /// Stage `stage` of L4 chain rule `rule`.
    Stage { rule: usize, stage: u8 },
}

impl Owner {
    pub fn rule(self) -> usize {
        match self {
            Owner::Indicator { rule } | Owner::Step { rule } | Owner::Stage { rule, .. } => rule,
        }
    }
}

/// A loaded and compiled rule set.
#[derive(Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub ioc_sets: Vec<IocSet>,
    pub evaluator: Evaluator,
    /// Per condition id.
    pub owners: Vec<Owner>,
    /// The L2 rules, with their conditions' ids.
    pub l2: Vec<(usize, L2Spec)>,
    /// The L3 rules (they read events directly: no compiled condition).
    pub l3: Vec<(usize, Anomaly)>,
    /// The L4 rules, with their stages' condition ids.
    pub l4: Vec<(usize, L4Spec)>,
    /// Hex digest of every file's bytes (path order): what `/health` shows.
    pub digest: Arc<str>,
    pub files: Vec<FileReport>,
    /// Sigma rules skipped as unsupported (see the module doc).
    pub rejected: usize,
}

/// What one file contributed.
#[derive(Clone, Debug, PartialEq)]
pub struct FileReport {
    pub path: PathBuf,
    pub rules: usize,
    pub ioc_sets: usize,
    pub problems: Vec<Problem>,
    /// Sigma rules of this file skipped as unsupported, with the reason.
    pub rejected: Vec<Problem>,
}

/// The result of a load: a set when there was no problem at all.
#[derive(Debug)]
pub struct Loaded {
    pub set: Option<RuleSet>,
    pub files: Vec<FileReport>,
}

impl Loaded {
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.files.iter().flat_map(|f| f.problems.iter())
    }

    /// Sigma rules skipped as unsupported.
    pub fn rejected(&self) -> impl Iterator<Item = &Problem> {
        self.files.iter().flat_map(|f| f.rejected.iter())
    }
}

impl RuleSet {
    /// Enabled rules per layer.
    pub fn counts(&self) -> BTreeMap<DetectionLayer, usize> {
        let mut counts = BTreeMap::new();
        for rule in self.rules.iter().filter(|r| r.meta.enabled) {
            *counts.entry(rule.body.layer()).or_insert(0) += 1;
        }
        counts
    }
}

/// The rule files under `path` (a file, or a directory searched
/// recursively for `*.yml` / `*.yaml`), in path order.
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Loads and compiles everything under `path`.
pub fn load(path: &Path) -> Loaded {
    let files = match rule_files(path) {
        Ok(files) => files,
        Err(e) => {
            return Loaded {
                set: None,
                files: vec![FileReport {
                    path: path.to_path_buf(),
                    rules: 0,
                    ioc_sets: 0,
                    rejected: Vec::new(),
                    problems: vec![Problem::new(
                        path,
                        0,
                        None,
                        format!("cannot read the rules: {e}"),
                        Some("point `rules` at a directory of .yml files".into()),
                    )],
                }],
            };
        }
    };
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read(&file);
        texts.push((file, text));
    }
    load_texts(texts)
}

/// Loads from file contents already read (tests, fuzzing).
pub fn load_texts(texts: Vec<(PathBuf, std::io::Result<Vec<u8>>)>) -> Loaded {
    let mut digest = Fnv::default();
    let mut reports: Vec<FileReport> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut ioc_sets = Vec::new();
    let mut sigma = SigmaLoader::new();
    for (path, bytes) in texts {
        let file: Arc<Path> = Arc::from(path.as_path());
        let mut problems = Problems::new(&path);
        let mut report =
            FileReport { path: path.clone(), rules: 0, ioc_sets: 0, problems: Vec::new(), rejected: Vec::new() };
        let text = match bytes {
            Ok(bytes) => {
                digest.write(path.to_string_lossy().as_bytes());
                digest.write(&bytes);
                match String::from_utf8(bytes) {
                    Ok(text) => Some(text),
                    Err(_) => {
                        problems.at(0, "the file is not UTF-8");
                        None
                    }
                }
            }
            Err(e) => {
                problems.at(0, format!("cannot read: {e}"));
                None
            }
        };
        if let Some(text) = text {
            match yaml::parse(&text) {
                Err((line, message)) => {
                    problems.hint(line, format!("not valid YAML: {message}"), "fix the YAML syntax")
                }
                Ok(docs) => {
                    for raw in &docs {
                        let doc = Node::new(raw);
                        if native::is_native(doc) {
                            let loaded = native::load_document(&file, doc, &mut problems);
                            report.rules += loaded.rules.len();
                            report.ioc_sets += loaded.ioc_sets.len();
                            rules.extend(loaded.rules);
                            ioc_sets.extend(loaded.ioc_sets);
                        } else if SigmaLoader::is_sigma(doc) {
                            sigma.add_document(&file, doc);
                        } else if !doc.is_null() {
                            problems.hint(
                                doc.line(),
                                "neither a hostflow rule file nor a Sigma rule",
                                "a hostflow file has `rules:`; a Sigma rule has `logsource:` and `detection:`",
                            );
                        }
                    }
                }
            }
        }
        report.problems = problems.list;
        reports.push(report);
    }
    let (sigma_rules, sigma_problems) = sigma.finish();
    for rule in &sigma_rules {
        if let Some(report) = reports.iter_mut().find(|r| *r.path == *rule.origin.file) {
            report.rules += 1;
        }
    }
    rules.extend(sigma_rules);
    let rejected = sigma_problems.len();
    for problem in sigma_problems {
        match reports.iter_mut().find(|r| r.path == problem.file) {
            Some(report) => report.rejected.push(problem),
            None => reports.push(FileReport {
                path: problem.file.clone(),
                rules: 0,
                ioc_sets: 0,
                rejected: vec![problem],
                problems: Vec::new(),
            }),
        }
    }
    check_unique(&rules, &ioc_sets, &mut reports);
    for set in &ioc_sets {
        for value in &set.values {
            digest.write(value.as_bytes());
        }
    }
    let problems = reports.iter().map(|r| r.problems.len()).sum::<usize>();
    if problems > 0 {
        return Loaded { set: None, files: reports };
    }
    match compile(rules, ioc_sets, digest.hex(), reports.clone()) {
        Ok(mut set) => {
            set.rejected = rejected;
            Loaded { set: Some(set), files: reports }
        }
        Err(problems) => {
            for problem in problems {
                match reports.iter_mut().find(|r| r.path == problem.file) {
                    Some(report) => report.problems.push(problem),
                    None => reports.push(FileReport {
                        path: problem.file.clone(),
                        rules: 0,
                        ioc_sets: 0,
                        rejected: Vec::new(),
                        problems: vec![problem],
                    }),
                }
            }
            Loaded { set: None, files: reports }
        }
    }
}

/// Rule ids and IOC set names are unique across the whole set.
fn check_unique(rules: &[Rule], sets: &[IocSet], reports: &mut [FileReport]) {
    let mut seen: BTreeMap<&str, &Rule> = BTreeMap::new();
    let mut add = Vec::new();
    for rule in rules {
        if let Some(first) = seen.insert(&rule.meta.id, rule) {
            add.push(Problem::new(
                &rule.origin.file,
                rule.origin.line,
                Some(rule.meta.id.to_string()),
                format!("duplicate rule id; first defined at {}:{}", first.origin.file.display(), first.origin.line),
                Some("rule ids must be unique across the rules directory".into()),
            ));
        }
    }
    let mut names: BTreeMap<&str, &IocSet> = BTreeMap::new();
    for set in sets {
        if let Some(first) = names.insert(&set.name, set) {
            add.push(Problem::new(
                &set.origin.file,
                set.origin.line,
                None,
                format!(
                    "duplicate IOC set `{}`; first defined at {}:{}",
                    set.name,
                    first.origin.file.display(),
                    first.origin.line
                ),
                None,
            ));
        }
    }
    for problem in add {
        if let Some(report) = reports.iter_mut().find(|r| r.path == problem.file) {
            report.problems.push(problem);
        }
    }
}

fn compile(
    rules: Vec<Rule>,
    ioc_sets: Vec<IocSet>,
    digest: String,
    files: Vec<FileReport>,
) -> Result<RuleSet, Vec<Problem>> {
    let mut builder = Builder::default();
    let mut owners = Vec::new();
    let mut l2 = Vec::new();
    let mut l3 = Vec::new();
    let mut l4 = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        match &rule.body {
            Body::Indicator(m) => {
                builder.add(m);
                owners.push(Owner::Indicator { rule: index });
            }
            Body::Sequence(seq) => {
                let steps = seq
                    .steps
                    .iter()
                    .map(|step| {
                        let id = builder.add(&step.matcher);
                        owners.push(Owner::Step { rule: index });
                        (id, step.relation)
                    })
                    .collect();
                l2.push((
                    index,
                    L2Spec::Sequence {
                        group_by: seq.group_by.clone(),
                        within_ns: seq.within_ns,
                        ordered: seq.ordered,
                        steps,
                    },
                ));
            }
            Body::Count(count) => {
                let id = builder.add(&count.matcher);
                owners.push(Owner::Step { rule: index });
                l2.push((
                    index,
                    L2Spec::Count {
                        matcher: id,
                        group_by: count.group_by.clone(),
                        distinct: count.distinct,
                        more_than: count.more_than,
                        within_ns: count.within_ns,
                    },
                ));
            }
            Body::Anomaly(anomaly) => l3.push((index, anomaly.clone())),
            Body::Chain(chain) => {
                let stages = (0u8..)
                    .zip(&chain.stages)
                    .map(|(stage, s)| {
                        let id = builder.add(&s.matcher);
                        owners.push(Owner::Stage { rule: index, stage });
                        id
                    })
                    .collect();
                l4.push((index, L4Spec { stages, within_ns: chain.within_ns }));
            }
        }
    }
    let evaluator = builder.build(&ioc_sets).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let owner = owners.get(e.condition.0 as usize);
                let rule = owner.map(|o| &rules[o.rule()]);
                match rule {
                    Some(rule) => Problem::new(
                        &rule.origin.file,
                        rule.origin.line,
                        Some(rule.meta.id.to_string()),
                        e.message,
                        None,
                    ),
                    None => Problem::new(Path::new("<rules>"), 0, None, e.message, None),
                }
            })
            .collect::<Vec<_>>()
    })?;
    Ok(RuleSet { rules, ioc_sets, evaluator, owners, l2, l3, l4, digest: digest.into(), files, rejected: 0 })
}

/// FNV-1a, 64 bits: a stable digest with no dependency (it names a rule
/// set in `/health` and in detections; it is not a security boundary).
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
#[path = "ruleset/tests.rs"]
mod tests;
