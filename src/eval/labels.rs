//! A corpus's `labels.json`: which spans of recorded events are which
//! scenario, and what each scenario should make the rules say.
//!
//! Read by hand from a `serde_json::Value` rather than derived: a labels
//! file is written by people, and every problem in it should be reported
//! at once, each naming its field (`scenarios[3].spans[0].end_ns`), the
//! line of the scenario it is in, and what to do — a derived parser stops
//! at the first and names only a column.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use pipeline::{Event, ProcessKey};
use serde_json::{Map, Value};

/// The labels format this reader understands.
pub const FORMAT: u64 = 1;

/// A whole labels file.
#[derive(Clone, Debug)]
pub struct Labels {
    /// What the recording says about itself (kernel, date, commit), kept
    /// verbatim as the corpus's identity in the report.
    pub recorded: Value,
    /// In file order; names are unique.
    pub scenarios: Vec<Scenario>,
}

/// One labelled scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub malicious: bool,
    pub synthetic: bool,
    /// Rules that must fire on the scenario's events (a miss otherwise).
    pub expect: BTreeSet<String>,
    /// Rules that may fire on them without counting as a false alert.
    pub allow: BTreeSet<String>,
    pub spans: Vec<Span>,
}

/// Events in `[start_ns, end_ns]` of `root` or of its descendants.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start_ns: u64,
    pub end_ns: u64,
    pub root: ProcessKey,
}

/// One thing wrong with a labels file.
#[derive(Clone, Debug)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    /// Where in the document, e.g. `scenarios[2].spans[0].end_ns`.
    pub field: String,
    pub message: String,
    pub hint: &'static str,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, ": `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Parses and checks `text`, the contents of `file`: every problem, or the
/// labels.
pub fn parse(file: &Path, text: &str) -> Result<Labels, Vec<Problem>> {
    let mut out = Collector { file, text, problems: Vec::new() };
    let root = match serde_json::from_str::<Value>(text) {
        Ok(root) => root,
        Err(error) => {
            out.problems.push(Problem {
                file: file.to_path_buf(),
                line: error.line(),
                field: String::new(),
                message: format!("not valid JSON: {error}"),
                hint: "labels.json is one JSON object: {\"format\": 1, \"recorded\": {...}, \"scenarios\": [...]}",
            });
            return Err(out.problems);
        }
    };
    let Some(object) = root.as_object() else {
        out.at(0, "", "the document must be a JSON object", "{\"format\": 1, \"scenarios\": [...]}");
        return Err(out.problems);
    };
    out.unknown_keys(object, "", 0, &["format", "recorded", "scenarios"]);
    match object.get("format").map(Value::as_u64) {
        Some(Some(FORMAT)) => {}
        Some(_) => out.at(
            0,
            "format",
            format!("unsupported format {}", show(&object["format"])),
            "this hostflow reads format 1",
        ),
        None => out.at(0, "format", "missing", "add \"format\": 1"),
    }
    let recorded = object.get("recorded").cloned().unwrap_or(Value::Null);
    if !(recorded.is_object() || recorded.is_null()) {
        out.at(
            0,
            "recorded",
            "must be an object",
            "{\"kernel\": ..., \"date\": ..., \"agent_commit\": ..., \"events\": N}",
        );
    }
    let mut scenarios = Vec::new();
    match object.get("scenarios").map(Value::as_array) {
        Some(Some(items)) if !items.is_empty() => {
            let mut names: HashMap<String, usize> = HashMap::new();
            for (index, item) in items.iter().enumerate() {
                if let Some(scenario) = out.scenario(index, item) {
                    if let Some(first) = names.insert(scenario.name.clone(), index) {
                        let line = out.line_of_name(&scenario.name, 2);
                        out.at(
                            line,
                            &format!("scenarios[{index}].name"),
                            format!("`{}` is also the name of scenarios[{first}]", scenario.name),
                            "scenario names are unique: the report is keyed by them",
                        );
                    }
                    scenarios.push(scenario);
                }
            }
        }
        Some(Some(_)) => out.at(0, "scenarios", "is empty", "a corpus labels at least one scenario"),
        Some(None) => out.at(0, "scenarios", "must be a list", "\"scenarios\": [{\"name\": ..., ...}]"),
        None => out.at(0, "scenarios", "missing", "add \"scenarios\": [...]"),
    }
    if out.problems.is_empty() {
        Ok(Labels { recorded, scenarios })
    } else {
        Err(out.problems)
    }
}

struct Collector<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

const SCENARIO_KEYS: &[&str] = &["name", "description", "malicious", "synthetic", "expect", "allow", "spans"];
const SPAN_KEYS: &[&str] = &["start_ns", "end_ns", "root_pid", "root_start"];

impl Collector<'_> {
    fn at(&mut self, line: usize, field: &str, message: impl Into<String>, hint: &'static str) {
        let message = message.into();
        self.problems.push(Problem { file: self.file.to_path_buf(), line, field: field.to_owned(), message, hint });
    }

    fn unknown_keys(&mut self, object: &Map<String, Value>, prefix: &str, line: usize, known: &[&str]) {
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            let field = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            let message = format!("unknown key; known keys here: {}", known.join(", "));
            self.at(line, &field, message, "check the spelling (keys are lower case with underscores)");
        }
    }

    /// The line where scenario `name` is written (its `"name": "…"`), so
    /// a problem points into the file even though JSON values carry no
    /// position. The `nth` occurrence (1-based) when names repeat.
    fn line_of_name(&self, name: &str, nth: usize) -> usize {
        let Ok(quoted) = serde_json::to_string(name) else { return 0 };
        let mut seen = 0;
        for (offset, _) in self.text.match_indices(&quoted) {
            let before = self.text[..offset].trim_end();
            if before.ends_with(':') && before[..before.len() - 1].trim_end().ends_with("\"name\"") {
                seen += 1;
                if seen == nth {
                    return 1 + self.text[..offset].matches('\n').count();
                }
            }
        }
        0
    }

    fn scenario(&mut self, index: usize, item: &Value) -> Option<Scenario> {
        let at = format!("scenarios[{index}]");
        let Some(object) = item.as_object() else {
            self.at(0, &at, "must be an object", "{\"name\": ..., \"malicious\": ..., \"spans\": [...]}");
            return None;
        };
        let before = self.problems.len();
        let name = match object.get("name").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => name.to_owned(),
            Some(_) => {
                self.at(0, &format!("{at}.name"), "is empty", "name the scenario (it keys the report)");
                String::new()
            }
            None => {
                self.at(0, &format!("{at}.name"), "missing or not text", "\"name\": \"download_then_exec\"");
                String::new()
            }
        };
        let line = if name.is_empty() { 0 } else { self.line_of_name(&name, 1) };
        self.unknown_keys(object, &at, line, SCENARIO_KEYS);
        if object.get("description").is_some_and(|d| !d.is_string()) {
            self.at(line, &format!("{at}.description"), "must be text", "");
        }
        let flag = |this: &mut Self, key: &str, required: bool| match object.get(key) {
            Some(Value::Bool(value)) => *value,
            None if !required => false,
            Some(other) => {
                this.at(line, &format!("{at}.{key}"), format!("must be true or false, not {}", show(other)), "");
                false
            }
            None => {
                this.at(
                    line,
                    &format!("{at}.{key}"),
                    "missing",
                    "say whether the scenario is an attack: true or false",
                );
                false
            }
        };
        let malicious = flag(self, "malicious", true);
        let synthetic = flag(self, "synthetic", false);
        let expect = self.rule_list(object, &at, "expect", line);
        let allow = self.rule_list(object, &at, "allow", line);
        if !malicious && !expect.is_empty() {
            self.at(
                line,
                &format!("{at}.expect"),
                "a benign scenario expects no rule",
                "mark it \"malicious\": true, or move the ids to \"allow\"",
            );
        }
        let mut spans = Vec::new();
        match object.get("spans").map(Value::as_array) {
            Some(Some(items)) if !items.is_empty() => {
                for (i, span) in items.iter().enumerate() {
                    spans.extend(self.span(&format!("{at}.spans[{i}]"), line, span));
                }
            }
            Some(Some(_)) => self.at(line, &format!("{at}.spans"), "is empty", "a scenario has at least one span"),
            _ => self.at(
                line,
                &format!("{at}.spans"),
                "missing or not a list",
                "\"spans\": [{\"start_ns\": ..., \"end_ns\": ..., \"root_pid\": ..., \"root_start\": ...}]",
            ),
        }
        (self.problems.len() == before).then_some(Scenario { name, malicious, synthetic, expect, allow, spans })
    }

    fn rule_list(&mut self, object: &Map<String, Value>, at: &str, key: &str, line: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        match object.get(key) {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(id) if !id.is_empty() => {
                            ids.insert(id.to_owned());
                        }
                        _ => self.at(line, &format!("{at}.{key}[{i}]"), "must be a rule id (text)", ""),
                    }
                }
            }
            Some(other) => {
                self.at(line, &format!("{at}.{key}"), format!("must be a list of rule ids, not {}", show(other)), "")
            }
        }
        ids
    }

    fn span(&mut self, at: &str, line: usize, value: &Value) -> Option<Span> {
        let Some(object) = value.as_object() else {
            self.at(
                line,
                at,
                "must be an object",
                "{\"start_ns\": ..., \"end_ns\": ..., \"root_pid\": ..., \"root_start\": ...}",
            );
            return None;
        };
        self.unknown_keys(object, at, line, SPAN_KEYS);
        let mut number = |key: &str| match object.get(key).map(|v| (v, v.as_u64())) {
            Some((_, Some(n))) => Some(n),
            Some((v, None)) => {
                self.at(line, &format!("{at}.{key}"), format!("must be a non-negative integer, not {}", show(v)), "");
                None
            }
            None => {
                self.at(line, &format!("{at}.{key}"), "missing", "a span has start_ns, end_ns, root_pid, root_start");
                None
            }
        };
        let (start_ns, end_ns, pid, start) =
            (number("start_ns"), number("end_ns"), number("root_pid"), number("root_start"));
        let pid = match pid.map(u32::try_from) {
            Some(Ok(pid)) => Some(pid),
            Some(Err(_)) => {
                self.at(line, &format!("{at}.root_pid"), "is larger than a pid can be", "");
                None
            }
            None => None,
        };
        let (start_ns, end_ns, pid, start) = (start_ns?, end_ns?, pid?, start?);
        if end_ns < start_ns {
            self.at(
                line,
                &format!("{at}.end_ns"),
                format!("{end_ns} is before start_ns {start_ns}"),
                "a span is start_ns <= ts_ns <= end_ns (boot-time nanoseconds)",
            );
            return None;
        }
        Some(Span { start_ns, end_ns, root: ProcessKey { pid, start_time_ns: start } })
    }
}

/// A value as it would be written, cut short.
fn show(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 40 {
        let mut cut = 40;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Finds the scenarios an event belongs to: spans indexed by root process,
/// so an event costs one lookup per key of its lineage, not a sweep of
/// every span.
pub struct Membership {
    by_root: HashMap<ProcessKey, Vec<(u64, u64, usize)>>,
}

impl Membership {
    pub fn new(labels: &Labels) -> Membership {
        let mut by_root: HashMap<ProcessKey, Vec<(u64, u64, usize)>> = HashMap::new();
        for (index, scenario) in labels.scenarios.iter().enumerate() {
            for span in &scenario.spans {
                by_root.entry(span.root).or_default().push((span.start_ns, span.end_ns, index));
            }
        }
        Membership { by_root }
    }

    /// The indexes of the scenarios `event` belongs to, sorted, each once:
    /// its time is in a span whose root is its process or one of the
    /// ancestors its context names.
    pub fn of(&self, event: &Event) -> Vec<usize> {
        let Some(key) = event.process() else { return Vec::new() };
        let ts = event.meta().ts_ns;
        let ancestry = event.context().map(|c| c.ancestry.as_slice()).unwrap_or_default();
        let mut found = Vec::new();
        for candidate in std::iter::once(key).chain(ancestry.iter().map(|a| &a.process)) {
            for (start, end, index) in self.by_root.get(candidate).map(Vec::as_slice).unwrap_or_default() {
                if *start <= ts && ts <= *end {
                    found.push(*index);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}
