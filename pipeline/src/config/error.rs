//! Configuration problems that point at the file, line and column to fix.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// The text of a topology file, kept so byte spans can be turned into
/// line and column numbers when a problem is reported.
#[derive(Debug)]
pub struct SourceFile {
    /// The name shown in messages (the path given on the command line, or
    /// `<embedded topology.toml>`).
    pub name: String,
    /// The whole file. It lives as long as the process: every component's
    /// options keep spans (and borrowed strings) into it, and a topology of a
    /// few kilobytes is read once per start or reload.
    pub text: &'static str,
}

impl SourceFile {
    /// Wraps a file's name and contents.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        let text: &'static str = Box::leak(text.into().into_boxed_str());
        Arc::new(SourceFile { name: name.into(), text })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

/// Where a problem is in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

/// One problem with a topology. Validation collects every problem before
/// reporting, so an operator fixes a file in one pass rather than one error
/// per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file and, when TOML gives one, the line and column.
    pub file: String,
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// A second place the problem involves (e.g. where a name was first
    /// defined), printed as its own `FILE:LINE:COL: note:` line. Boxed:
    /// rare, and a `Result<_, ConfigError>` stays small.
    pub note: Option<Box<Note>>,
    /// What to do about it, when there is something specific to say.
    pub hint: Option<String>,
}

/// A place in a (possibly other) file that explains a [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    /// A problem at a byte span of `source`.
    pub fn at(source: &SourceFile, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        ConfigError {
            file: source.name.clone(),
            position: span.map(|span| source.line_column(span.start)),
            message: message.into(),
            note: None,
            hint: None,
        }
    }

    /// A problem with a topology as a whole (no line to point at), named by
    /// `name`: its file, or its config directory.
    pub fn unlocated(name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { file: name.into(), position: None, message: message.into(), note: None, hint: None }
    }

    /// Adds a note pointing at a byte span of `source`.
    pub fn with_note(mut self, source: &SourceFile, span: Range<usize>, message: impl Into<String>) -> Self {
        self.note = Some(Box::new(Note {
            file: source.name.clone(),
            position: Some(source.line_column(span.start)),
            message: message.into(),
        }));
        self
    }

    /// Adds a suggestion of what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The location as a struct, when there is a line.
    pub fn location(&self) -> Option<Location> {
        self.position.map(|(line, column)| Location { file: self.file.clone(), line, column })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: error: {}", self.file, self.message)?,
            None => write!(f, "{}: error: {}", self.file, self.message)?,
        }
        if let Some(note) = &self.note {
            match note.position {
                Some((line, column)) => write!(f, "\n{}:{line}:{column}: note: {}", note.file, note.message)?,
                None => write!(f, "\n{}: note: {}", note.file, note.message)?,
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one topology; never empty.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The closest candidate to a misspelt name, when one is close enough to be
/// a plausible typo (edit distance at most a third of the name, minimum 2).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
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
    fn line_and_column_are_one_based() {
        let source = SourceFile::new("t.toml", "a = 1\nbé = 2\n");
        assert_eq!(source.line_column(0), (1, 1));
        assert_eq!(source.line_column(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(source.line_column(9), (2, 3));
    }

    #[test]
    fn closest_names_only_plausible_typos() {
        assert_eq!(closest("genrator", ["generator", "filter"]), Some("generator"));
        assert_eq!(closest("fliter", ["generator", "filter"]), Some("filter"));
        assert_eq!(closest("kafka", ["generator", "filter"]), None);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn display_has_file_line_column_and_hint() {
        let source = SourceFile::new("t.toml", "x\ny = 1\n");
        let error = ConfigError::at(&source, Some(2..3), "bad").with_hint("fix it");
        assert_eq!(error.to_string(), "t.toml:2:1: error: bad\n    help: fix it");
    }

    #[test]
    fn a_note_points_into_another_file_before_the_hint() {
        let first = SourceFile::new("d/a.toml", "[sinks.x]\n");
        let second = SourceFile::new("d/b.toml", "\n\n[sinks.x]\n");
        let error = ConfigError::at(&second, Some(9..10), "twice")
            .with_note(&first, 7..8, "first defined here")
            .with_hint("rename one");
        assert_eq!(
            error.to_string(),
            "d/b.toml:3:8: error: twice\nd/a.toml:1:8: note: first defined here\n    help: rename one"
        );
        assert_eq!(ConfigError::unlocated("d", "empty").to_string(), "d: error: empty");
    }
}
