//! Where a topology's text comes from: one file, or a config directory whose
//! `*.toml` files are merged in name order (`topology.d/`, as other daemons
//! read theirs).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SourceFile;

/// The text of one topology: a single file, or the `*.toml` files of a
/// config directory in name order. Never empty.
#[derive(Clone, Debug)]
pub struct TopologySource {
    name: String,
    files: Vec<Arc<SourceFile>>,
}

impl TopologySource {
    /// A topology split over `files`, merged in the order given and named
    /// `name` in messages about the topology as a whole; `None` when there
    /// is no file.
    pub fn new(name: impl Into<String>, files: Vec<Arc<SourceFile>>) -> Option<TopologySource> {
        (!files.is_empty()).then(|| TopologySource { name: name.into(), files })
    }

    /// What messages about the topology as a whole name: the file, or the
    /// directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files, in merge order; at least one.
    pub fn files(&self) -> &[Arc<SourceFile>] {
        &self.files
    }

    /// This topology with `text` added to the end of its last file, on a
    /// line of its own, so every line and column before it stays true (how
    /// `hostflow replay` adds its source).
    pub fn with_appended(&self, text: &str) -> TopologySource {
        let mut files = self.files.clone();
        if let Some(last) = files.last_mut() {
            let mut combined = last.text.to_owned();
            if !combined.ends_with('\n') {
                combined.push('\n');
            }
            combined.push_str(text);
            *last = SourceFile::new(last.name.clone(), combined);
        }
        TopologySource { name: self.name.clone(), files }
    }
}

impl From<Arc<SourceFile>> for TopologySource {
    fn from(file: Arc<SourceFile>) -> Self {
        TopologySource { name: file.name.clone(), files: vec![file] }
    }
}

/// Why a topology cannot be read. [`ReadError::path`] is what the message is
/// about (the directory, or the one file in it that failed).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or directory cannot be read, or a file is not UTF-8.
    #[error("cannot read the topology: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A config directory holds no `*.toml` file, so there is no topology.
    #[error(
        "cannot read the topology: the directory has no `*.toml` file (a config directory is read as \
         DIR/*.toml in name order, not recursively, skipping dotfiles)"
    )]
    NoTomlFiles { path: PathBuf },
}

impl ReadError {
    /// The file or directory the problem is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. } | ReadError::NoTomlFiles { path } => path,
        }
    }
}

/// Reads the topology at `path`: the file itself, or, when `path` is a
/// directory, every regular `*.toml` file directly in it whose name does not
/// start with `.`, sorted by file name. Each file is named in messages by
/// `path` joined with its file name, so a problem points at the file to edit.
pub fn read(path: &Path) -> Result<TopologySource, ReadError> {
    if path.is_dir() {
        read_directory(path)
    } else {
        read_file(path).map(TopologySource::from)
    }
}

fn read_file(path: &Path) -> Result<Arc<SourceFile>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

fn read_directory(path: &Path) -> Result<TopologySource, ReadError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ReadError::Io { path, source }
    };
    let mut file_paths = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error(path))? {
        let entry = entry.map_err(io_error(path))?;
        let file_path = entry.path();
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        if hidden || file_path.extension().is_none_or(|extension| extension != "toml") {
            continue;
        }
        // Follows symbolic links (a `conf.d` is often links into an
        // `available/` directory); a dangling one is an error rather than
        // a part of the topology silently left out.
        let metadata = std::fs::metadata(&file_path).map_err(io_error(&file_path))?;
        if metadata.is_file() {
            file_paths.push(file_path);
        }
    }
    // All share one parent, so this is the order of their file names.
    file_paths.sort();
    let files = file_paths.iter().map(|file_path| read_file(file_path)).collect::<Result<Vec<_>, _>>()?;
    TopologySource::new(path.display().to_string(), files)
        .ok_or_else(|| ReadError::NoTomlFiles { path: path.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!("hostflow-config-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create a temp dir");
            TempDir(path)
        }

        fn write(&self, name: &str, text: &[u8]) {
            std::fs::write(self.0.join(name), text).expect("write a test file");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(source: &TopologySource) -> Vec<&str> {
        source.files().iter().map(|file| file.name.as_str()).collect()
    }

    #[test]
    fn a_directory_is_its_toml_files_in_name_order() {
        let dir = TempDir::new("order");
        dir.write("b.toml", b"# b\n");
        dir.write("10-a.toml", b"# 10-a\n");
        dir.write("a.toml", b"# a\n");
        dir.write(".hidden.toml", b"not read");
        dir.write("notes.txt", b"not read");
        dir.write("c.toml~", b"not read");
        dir.write("c.toml.bak", b"not read");
        std::fs::create_dir(dir.0.join("sub.toml")).expect("create a subdirectory");
        std::fs::write(dir.0.join("sub.toml/x.toml"), "not read").expect("write in the subdirectory");

        let source = read(&dir.0).expect("readable");
        let base = dir.0.display().to_string();
        assert_eq!(source.name(), base);
        assert_eq!(names(&source), [format!("{base}/10-a.toml"), format!("{base}/a.toml"), format!("{base}/b.toml")]);
        let texts: Vec<&str> = source.files().iter().map(|file| file.text).collect();
        assert_eq!(texts, ["# 10-a\n", "# a\n", "# b\n"]);
    }

    #[test]
    fn a_directory_without_toml_files_is_an_error() {
        let dir = TempDir::new("empty");
        dir.write("README", b"nothing here");
        dir.write(".x.toml", b"hidden");
        let error = read(&dir.0).expect_err("no topology");
        assert!(matches!(error, ReadError::NoTomlFiles { .. }), "{error:?}");
        assert_eq!(error.path(), dir.0);
        assert!(error.to_string().starts_with("cannot read the topology: the directory has no `*.toml` file"));
    }

    #[test]
    fn an_unreadable_file_in_a_directory_is_named() {
        let dir = TempDir::new("latin1");
        dir.write("a.toml", b"# fine\n");
        dir.write("b.toml", b"# caf\xe9\n");
        let error = read(&dir.0).expect_err("not UTF-8");
        assert_eq!(error.path(), dir.0.join("b.toml"));
        assert!(matches!(error, ReadError::Io { .. }), "{error:?}");
    }

    #[test]
    fn a_single_file_keeps_the_path_as_given() {
        let dir = TempDir::new("single");
        dir.write("t.toml", b"# t\n");
        let path = dir.0.join("t.toml");
        let source = read(&path).expect("readable");
        assert_eq!(source.name(), path.display().to_string());
        assert_eq!(names(&source), [path.display().to_string()]);
        let missing = read(&dir.0.join("missing.toml")).expect_err("missing");
        assert_eq!(missing.path(), dir.0.join("missing.toml"));
        assert!(TopologySource::new("none", Vec::new()).is_none());
    }

    #[test]
    fn appending_goes_to_the_last_file_on_a_new_line() {
        let files = vec![SourceFile::new("d/a.toml", "a = 1\n"), SourceFile::new("d/b.toml", "b = 2")];
        let source = TopologySource::new("d", files).expect("two files").with_appended("c = 3\n");
        let texts: Vec<&str> = source.files().iter().map(|file| file.text).collect();
        assert_eq!(texts, ["a = 1\n", "b = 2\nc = 3\n"]);
        assert_eq!((source.name(), source.files()[1].name.as_str()), ("d", "d/b.toml"));
    }
}
