//! What is wrong with a policy, said so an operator can fix it without
//! reading code: the file and line, the rule id, what is wrong, and what to
//! do. Every check collects into one list so a single run shows them all.

use std::fmt;
use std::path::{Path, PathBuf};

/// Whether the policy could not be read at all (exit 66) or was read and
/// is wrong (exit 78).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Unreadable,
    Invalid,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub rule: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn invalid(file: &Path, line: usize, rule: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Invalid,
            file: file.to_path_buf(),
            line,
            rule: rule.map(str::to_owned),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn unreadable(file: &Path, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Unreadable,
            file: file.to_path_buf(),
            line: 0,
            rule: None,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        f.write_str(": ")?;
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Every problem found, in file and line order; displayed one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// True when the policy could not be read (rather than read and found
    /// wrong).
    pub fn is_unreadable(&self) -> bool {
        self.0.iter().any(|problem| problem.kind == ProblemKind::Unreadable)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }

    /// Sorted by file then line, so output reads top to bottom; the sort is
    /// stable, so problems of one line keep the order they were found in.
    pub(crate) fn sorted(mut problems: Vec<Problem>) -> Problems {
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Problems(problems)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in candidates {
        let distance = edit_distance(&word.to_ascii_lowercase(), candidate);
        if distance <= 2.max(candidate.len() / 3) && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_words_only() {
        assert_eq!(did_you_mean("deny_", &["allow", "deny", "audit"]), Some("deny"));
        assert_eq!(did_you_mean("cidr", &["cidrs", "ports"]), Some("cidrs"));
        assert_eq!(did_you_mean("xyzzy", &["allow", "deny", "audit"]), None);
    }

    #[test]
    fn displays_file_line_rule_message_hint() {
        let problem = Problem::invalid(Path::new("p.toml"), 7, Some("r1"), "bad").hint("fix it");
        assert_eq!(problem.to_string(), "p.toml:7: rule `r1`: bad (hint: fix it)");
        let whole = Problem::unreadable(Path::new("p.toml"), "gone");
        assert_eq!(whole.to_string(), "p.toml: gone");
    }
}
