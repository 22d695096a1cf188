//! Reading a policy from disk: one file, or a directory whose `*.toml`
//! files are merged in name order (like a `topology.d/`), each kept with
//! its path and line index so every problem can name where it is.

use std::path::{Path, PathBuf};

use crate::problem::{Problem, Problems};

/// One policy file's text, with what maps byte offsets to lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        SourceFile { path: path.into(), text, line_starts }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(index) => index + 1,
            Err(index) => index.max(1),
        }
    }
}

/// The files of the policy at `path`. A directory contributes its
/// `*.toml` files (not recursive, dotfiles skipped) in name order.
pub fn read_sources(path: &Path) -> Result<Vec<SourceFile>, Problems> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| Problems(vec![Problem::unreadable(path, format!("cannot read the policy: {error}"))]))?;
    if !metadata.is_dir() {
        return read_one(path).map(|file| vec![file]).map_err(|problem| Problems(vec![problem]));
    }
    let entries = std::fs::read_dir(path)
        .map_err(|error| Problems(vec![Problem::unreadable(path, format!("cannot list the directory: {error}"))]))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|file| {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            !name.starts_with('.') && name.ends_with(".toml") && file.is_file()
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Problems(vec![Problem::unreadable(path, "the directory holds no `*.toml` policy file")
            .hint("put the rules in files named like `10-base.toml`")]));
    }
    let mut files = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for file in paths {
        match read_one(&file) {
            Ok(source) => files.push(source),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(Problems(problems))
    }
}

fn read_one(path: &Path) -> Result<SourceFile, Problem> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile::new(path, text)),
            Err(_) => Err(Problem::unreadable(path, "the policy is not UTF-8 text")),
        },
        Err(error) => Err(Problem::unreadable(path, format!("cannot read the policy: {error}"))),
    }
}

/// Where the detached signature of the policy at `path` lives:
/// `<file>.sig` beside a file, `bundle.sig` inside a directory.
pub fn signature_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("bundle.sig")
    } else {
        let mut name = path.as_os_str().to_owned();
        name.push(".sig");
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_offsets_to_lines() {
        let file = SourceFile::new("x", "a\nbc\n\nd");
        assert_eq!(file.line_of(0), 1);
        assert_eq!(file.line_of(1), 1);
        assert_eq!(file.line_of(2), 2);
        assert_eq!(file.line_of(5), 3);
        assert_eq!(file.line_of(6), 4);
        assert_eq!(file.line_of(100), 4);
    }
}
