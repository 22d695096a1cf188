//! Stage 1: policy TOML → [`Policy`], every field typed and every problem
//! located. Works on toml's spanned document (`DeTable`) rather than serde
//! structs so that each CIDR, port and key has its own line, and so that
//! one bad field does not hide the problems of the rest of the file.
//!
//! Semantic checks that need the whole policy (duplicates, conflicts,
//! protected destinations) are `validate.rs`; the map layout is
//! `compile.rs`.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::cidr::Cidr;
use crate::problem::{did_you_mean, Problem};
use crate::source::SourceFile;
use crate::{Action, Mode, Protocol};

const TOP_KEYS: &[&str] = &["policy", "rule"];
const POLICY_KEYS: &[&str] = &["mode", "description"];
const RULE_KEYS: &[&str] =
    &["id", "description", "action", "cidrs", "ports", "protocol", "priority", "exe", "cgroup", "force"];
const ACTIONS: &[&str] = &["allow", "deny", "audit"];
const PROTOCOLS: &[&str] = &["any", "tcp", "udp"];
const MODES: &[&str] = &["dry_run", "enforce"];
/// Longest rule id accepted: ids travel in events and logs.
pub const MAX_ID_LEN: usize = 128;

/// A parsed policy: what the operator wrote, typed, before any check that
/// needs more than one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub description: String,
    pub rules: Vec<Rule>,
    /// The files the policy came from; [`Origin::file`] indexes this.
    pub files: Vec<PathBuf>,
}

/// Where something was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: u32,
    pub line: u32,
}

/// One rule as written (CIDRs already normalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub action: Action,
    /// Each CIDR with the line it is written on.
    pub cidrs: Vec<(Cidr, u32)>,
    /// Sorted, overlapping and adjacent ranges merged; never empty (any
    /// port is `0-65535`).
    pub ports: Vec<PortRange>,
    pub protocol: Protocol,
    pub priority: u16,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    pub force: bool,
    /// The `[[rule]]` header.
    pub origin: Origin,
}

/// An inclusive destination port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    pub fn overlaps(self, other: PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

impl Policy {
    pub fn file(&self, origin: Origin) -> &Path {
        self.files.get(origin.file as usize).map_or(Path::new("<policy>"), PathBuf::as_path)
    }

    /// `file:line` of an origin, for messages that point elsewhere.
    pub fn at(&self, origin: Origin) -> String {
        format!("{}:{}", self.file(origin).display(), origin.line)
    }
}

/// Parses every file into one policy. Rules whose required fields are
/// missing or unusable are left out (their problems are reported); the
/// rest are kept so later stages can still find their problems.
pub fn parse(files: &[SourceFile], problems: &mut Vec<Problem>) -> Policy {
    let mut policy = Policy {
        mode: Mode::DryRun,
        description: String::new(),
        rules: Vec::new(),
        files: files.iter().map(|file| file.path.clone()).collect(),
    };
    let mut policy_set_at: Option<(usize, usize)> = None;
    for (file_index, file) in files.iter().enumerate() {
        let (document, errors) = DeTable::parse_recoverable(&file.text);
        if !errors.is_empty() {
            for error in errors {
                let line = error.span().map_or(0, |span| file.line_of(span.start));
                let message = format!("TOML syntax: {}", error.message().trim_end());
                problems.push(Problem::invalid(&file.path, line, None, message));
            }
            continue;
        }
        let mut file_parser = FileParser { file, file_index: file_index as u32, problems };
        let mut entries: Vec<_> = document.into_inner().into_iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let line = file.line_of(key.span().start);
            match key.get_ref().as_ref() {
                "policy" => {
                    if let Some((first_file, first_line)) = policy_set_at {
                        let first = files.get(first_file).map_or(Path::new("?"), |f| f.path.as_path());
                        file_parser.problems.push(
                            Problem::invalid(
                                &file.path,
                                line,
                                None,
                                format!("[policy] is already set at {}:{first_line}", first.display()),
                            )
                            .hint("set `mode` and `description` in one file of the directory"),
                        );
                        continue;
                    }
                    policy_set_at = Some((file_index, line));
                    file_parser.policy_table(value, &mut policy);
                }
                "rule" => file_parser.rules(value, &mut policy.rules),
                other => {
                    file_parser.unknown_key(line, None, other, TOP_KEYS, "a policy file holds [policy] and [[rule]]")
                }
            }
        }
    }
    policy
}

struct FileParser<'a> {
    file: &'a SourceFile,
    file_index: u32,
    problems: &'a mut Vec<Problem>,
}

impl FileParser<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.file.line_of(span.start)
    }

    fn push(&mut self, line: usize, rule: Option<&str>, message: impl Into<String>, hint: Option<String>) {
        let mut problem = Problem::invalid(&self.file.path, line, rule, message);
        problem.hint = hint;
        self.problems.push(problem);
    }

    fn unknown_key(&mut self, line: usize, rule: Option<&str>, key: &str, known: &[&str], fallback: &str) {
        let hint = match did_you_mean(key, known) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("{fallback}; known keys: {}", known.join(", ")),
        };
        self.push(line, rule, format!("unknown key `{key}`"), Some(hint));
    }

    fn policy_table(&mut self, value: Spanned<DeValue<'_>>, policy: &mut Policy) {
        let line = self.line(value.span());
        let DeValue::Table(table) = value.into_inner() else {
            self.push(line, None, "`policy` must be a table", Some("write it as a [policy] section".into()));
            return;
        };
        for (key, value) in sorted(table) {
            let key_line = self.line(key.span());
            match key.get_ref().as_ref() {
                "mode" => {
                    if let Some(word) = self.word(value, None, "mode", MODES) {
                        policy.mode = if word == "enforce" { Mode::Enforce } else { Mode::DryRun };
                    }
                }
                "description" => {
                    if let Some(text) = self.string(value, None, "description") {
                        policy.description = text;
                    }
                }
                other => self.unknown_key(key_line, None, other, POLICY_KEYS, "[policy] sets the mode"),
            }
        }
    }

    fn rules(&mut self, value: Spanned<DeValue<'_>>, rules: &mut Vec<Rule>) {
        let line = self.line(value.span());
        let DeValue::Array(items) = value.into_inner() else {
            self.push(
                line,
                None,
                "`rule` must be an array of tables",
                Some("write each rule under a [[rule]] header".into()),
            );
            return;
        };
        for item in items {
            let line = self.line(item.span());
            match item.into_inner() {
                DeValue::Table(table) => {
                    if let Some(rule) = self.rule(line, table) {
                        rules.push(rule);
                    }
                }
                _ => self.push(
                    line,
                    None,
                    "each rule must be a table",
                    Some("write each rule under a [[rule]] header".into()),
                ),
            }
        }
    }

    fn rule(&mut self, header_line: usize, table: DeTable<'_>) -> Option<Rule> {
        let entries = sorted(table);
        // The id first, so every other problem of the rule can name it.
        let mut id: Option<String> = None;
        for (key, value) in &entries {
            if key.get_ref().as_ref() == "id" {
                let line = self.line(value.span());
                match value.get_ref() {
                    DeValue::String(text) if valid_id(text) => id = Some(text.to_string()),
                    DeValue::String(text) => self.push(
                        line,
                        None,
                        format!("rule id `{}` is not valid", text.chars().take(MAX_ID_LEN).collect::<String>()),
                        Some(format!("use 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -")),
                    ),
                    _ => self.push(line, None, "`id` must be a string", None),
                }
            }
        }
        let rule_name = id.clone();
        let name = rule_name.as_deref();
        if id.is_none() && !entries.iter().any(|(key, _)| key.get_ref().as_ref() == "id") {
            self.push(header_line, None, "rule has no `id`", Some("add a line `id = \"...\"` naming the rule".into()));
        }
        let has_key = |name: &str| entries.iter().any(|(key, _)| key.get_ref().as_ref() == name);
        let (has_action, has_cidrs) = (has_key("action"), has_key("cidrs"));
        let mut action = None;
        let mut cidrs: Option<Vec<(Cidr, u32)>> = None;
        let mut rule = Rule {
            id: String::new(),
            description: String::new(),
            action: Action::Allow,
            cidrs: Vec::new(),
            ports: vec![PortRange::ANY],
            protocol: Protocol::Any,
            priority: 0,
            exe: None,
            cgroup: None,
            force: false,
            origin: Origin { file: self.file_index, line: header_line as u32 },
        };
        let mut usable = true;
        for (key, value) in entries {
            let key_line = self.line(key.span());
            match key.get_ref().as_ref() {
                "id" => {}
                "description" => rule.description = self.string(value, name, "description").unwrap_or_default(),
                "action" => {
                    action = self.word(value, name, "action", ACTIONS).map(|word| match word {
                        "deny" => Action::Deny,
                        "audit" => Action::Audit,
                        _ => Action::Allow,
                    });
                    usable &= action.is_some();
                }
                "cidrs" => cidrs = self.cidrs(value, name),
                "ports" => match self.ports(value, name) {
                    Some(ports) => rule.ports = ports,
                    None => usable = false,
                },
                "protocol" => match self.word(value, name, "protocol", PROTOCOLS) {
                    Some("tcp") => rule.protocol = Protocol::Tcp,
                    Some("udp") => rule.protocol = Protocol::Udp,
                    Some(_) => rule.protocol = Protocol::Any,
                    None => usable = false,
                },
                "priority" => {
                    let line = self.line(value.span());
                    match integer(value.get_ref()).map(u16::try_from) {
                        Some(Ok(priority)) => rule.priority = priority,
                        _ => {
                            usable = false;
                            self.push(
                                line,
                                name,
                                "`priority` must be an integer from 0 to 65535",
                                Some("higher wins; the default is 0".into()),
                            );
                        }
                    }
                }
                "exe" => match self.string(value, name, "exe") {
                    Some(path) if path.starts_with('/') && !path.contains('\0') => rule.exe = Some(path),
                    Some(path) => {
                        usable = false;
                        self.push(
                            key_line,
                            name,
                            format!("`exe` `{path}` is not an absolute path"),
                            Some("name the executable by its full path, e.g. \"/usr/bin/curl\"".into()),
                        );
                    }
                    None => usable = false,
                },
                "cgroup" => match self.string(value, name, "cgroup").map(|path| normalize_cgroup(&path)) {
                    Some(Some(path)) => rule.cgroup = Some(path),
                    Some(None) => {
                        usable = false;
                        self.push(
                            key_line,
                            name,
                            "`cgroup` must be a cgroup v2 path such as \"/system.slice/nginx.service\"",
                            Some("start with `/` (relative to the cgroup2 mount), no `.` or `..` parts".into()),
                        );
                    }
                    None => usable = false,
                },
                "force" => match value.get_ref() {
                    DeValue::Boolean(force) => rule.force = *force,
                    _ => {
                        usable = false;
                        let line = self.line(value.span());
                        self.push(line, name, "`force` must be true or false", None);
                    }
                },
                other => self.unknown_key(key_line, name, other, RULE_KEYS, "a rule takes"),
            }
        }
        if !has_action {
            self.push(
                header_line,
                name,
                "rule has no `action`",
                Some("add `action = \"deny\"`, \"allow\" or \"audit\"".into()),
            );
        }
        match &cidrs {
            None if !has_cidrs => {
                self.push(header_line, name, "rule has no `cidrs`", Some("add e.g. `cidrs = [\"10.0.0.0/8\"]`".into()))
            }
            Some(list) if list.is_empty() => self.push(
                header_line,
                name,
                "`cidrs` is empty",
                Some("list at least one CIDR; a rule that matches nothing is a mistake".into()),
            ),
            _ => {}
        }
        rule.id = id?;
        rule.action = action?;
        rule.cidrs = cidrs.filter(|list| !list.is_empty())?;
        usable.then_some(rule)
    }

    fn string(&mut self, value: Spanned<DeValue<'_>>, rule: Option<&str>, what: &str) -> Option<String> {
        let line = self.line(value.span());
        match value.into_inner() {
            DeValue::String(text) => Some(text.into_owned()),
            _ => {
                self.push(line, rule, format!("`{what}` must be a string"), None);
                None
            }
        }
    }

    /// A string that must be one of `known`.
    fn word(
        &mut self,
        value: Spanned<DeValue<'_>>,
        rule: Option<&str>,
        what: &str,
        known: &[&'static str],
    ) -> Option<&'static str> {
        let line = self.line(value.span());
        let text = self.string(value, rule, what)?;
        if let Some(word) = known.iter().find(|word| **word == text) {
            return Some(word);
        }
        let hint = match did_you_mean(&text, known) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => format!("one of: {}", known.join(", ")),
        };
        let shown: String = text.chars().take(64).collect();
        self.push(line, rule, format!("unknown {what} `{shown}`"), Some(hint));
        None
    }

    fn cidrs(&mut self, value: Spanned<DeValue<'_>>, rule: Option<&str>) -> Option<Vec<(Cidr, u32)>> {
        let line = self.line(value.span());
        let DeValue::Array(items) = value.into_inner() else {
            self.push(
                line,
                rule,
                "`cidrs` must be an array of strings",
                Some("e.g. cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]".into()),
            );
            return None;
        };
        let mut cidrs = Vec::with_capacity(items.len());
        let mut all_good = true;
        for item in items {
            let line = self.line(item.span());
            let DeValue::String(text) = item.get_ref() else {
                all_good = false;
                self.push(line, rule, "each CIDR must be a string", Some("e.g. \"192.0.2.0/24\"".into()));
                continue;
            };
            match Cidr::parse(text) {
                Ok(parsed) if parsed.host_bits_set => {
                    all_good = false;
                    self.push(
                        line,
                        rule,
                        format!("CIDR `{text}` has host bits set"),
                        Some(format!("write the network, {}", parsed.cidr)),
                    );
                }
                Ok(parsed) => cidrs.push((parsed.cidr, line as u32)),
                Err(error) => {
                    all_good = false;
                    let shown: String = text.chars().take(64).collect();
                    self.push(
                        line,
                        rule,
                        format!("CIDR `{shown}` does not parse: {error}"),
                        Some("write ADDRESS/LENGTH, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"".into()),
                    );
                }
            }
        }
        all_good.then_some(cidrs)
    }

    fn ports(&mut self, value: Spanned<DeValue<'_>>, rule: Option<&str>) -> Option<Vec<PortRange>> {
        let line = self.line(value.span());
        let DeValue::Array(items) = value.into_inner() else {
            self.push(
                line,
                rule,
                "`ports` must be an array",
                Some("e.g. ports = [443, \"8000-8100\"]; leave it out for any port".into()),
            );
            return None;
        };
        if items.is_empty() {
            self.push(line, rule, "`ports` is empty", Some("leave `ports` out to match any port".into()));
            return None;
        }
        let mut ranges = Vec::with_capacity(items.len());
        let mut all_good = true;
        for item in items {
            let line = self.line(item.span());
            let range = match item.get_ref() {
                DeValue::Integer(_) => match integer(item.get_ref()).map(u16::try_from) {
                    Some(Ok(port)) => Ok(PortRange { lo: port, hi: port }),
                    _ => Err(format!("port `{}` is not from 0 to 65535", shown_value(item.get_ref()))),
                },
                DeValue::String(text) => parse_port_range(text),
                _ => Err("each port must be a number or a \"LO-HI\" string".to_owned()),
            };
            match range {
                Ok(range) => ranges.push(range),
                Err(message) => {
                    all_good = false;
                    self.push(
                        line,
                        rule,
                        message,
                        Some("ports are 0-65535; a range is \"LO-HI\" with LO <= HI, both included".into()),
                    );
                }
            }
        }
        all_good.then(|| merge_ranges(ranges))
    }
}

fn sorted<'i>(table: DeTable<'i>) -> Vec<(Spanned<toml::de::DeString<'i>>, Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

fn integer(value: &DeValue<'_>) -> Option<i64> {
    match value {
        DeValue::Integer(integer) => {
            let text = integer.as_str().replace('_', "");
            i64::from_str_radix(&text, integer.radix()).ok()
        }
        _ => None,
    }
}

fn shown_value(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Integer(integer) => integer.to_string().chars().take(32).collect(),
        _ => "?".to_owned(),
    }
}

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let shown: String = text.chars().take(32).collect();
    let number = |part: &str| -> Result<u16, String> {
        let part = part.trim();
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port `{shown}` is not a number or a \"LO-HI\" range"));
        }
        part.parse::<u16>().map_err(|_| format!("port `{shown}` is not from 0 to 65535"))
    };
    match text.split_once('-') {
        None => number(text).map(|port| PortRange { lo: port, hi: port }),
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                return Err(format!("port range `{shown}` is backwards ({lo} > {hi})"));
            }
            Ok(PortRange { lo, hi })
        }
    }
}

/// Sorted, with overlapping and adjacent ranges merged: fewer kernel rules,
/// and one canonical form for the same set of ports.
pub(crate) fn merge_ranges(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(range.lo) <= u32::from(last.hi) + 1 => last.hi = last.hi.max(range.hi),
            _ => merged.push(range),
        }
    }
    merged
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `/a/b/` → `/a/b`; `None` for a path that is not absolute or has empty,
/// `.` or `..` parts (the root itself is `/`).
fn normalize_cgroup(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if parts.iter().any(|part| part.is_empty() || *part == "." || *part == "..") {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_merge() {
        assert_eq!(parse_port_range("80"), Ok(PortRange { lo: 80, hi: 80 }));
        assert_eq!(parse_port_range("8000-8100"), Ok(PortRange { lo: 8000, hi: 8100 }));
        assert!(parse_port_range("9-1").is_err_and(|e| e.contains("backwards")));
        assert!(parse_port_range("70000").is_err());
        assert!(parse_port_range("-5").is_err());
        let merged = merge_ranges(vec![
            PortRange { lo: 90, hi: 100 },
            PortRange { lo: 80, hi: 80 },
            PortRange { lo: 81, hi: 85 },
            PortRange { lo: 95, hi: 99 },
        ]);
        assert_eq!(merged, vec![PortRange { lo: 80, hi: 85 }, PortRange { lo: 90, hi: 100 }]);
    }

    #[test]
    fn cgroup_paths_normalize() {
        assert_eq!(normalize_cgroup("/system.slice/x.service/").as_deref(), Some("/system.slice/x.service"));
        assert_eq!(normalize_cgroup("/").as_deref(), Some("/"));
        assert_eq!(normalize_cgroup("system.slice"), None);
        assert_eq!(normalize_cgroup("/a/../b"), None);
        assert_eq!(normalize_cgroup("/a//b"), None);
    }
}
