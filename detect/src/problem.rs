//! A problem found while loading rules: where (file, line, rule id), what
//! is wrong, and what to do. Typed until shown; `Display` is the one line
//! `hostflow rules check` and the reload log print.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one rule file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    /// The rule it is about, when the walk had reached one.
    pub rule_id: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(file: &Path, line: usize, rule_id: Option<String>, message: String, hint: Option<String>) -> Problem {
        Problem { file: file.to_path_buf(), line, rule_id, message, hint }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": ")?;
        if let Some(id) = &self.rule_id {
            write!(f, "rule `{id}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}
