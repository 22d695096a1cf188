//! Which files `file_open` and `file_change` report: the `file_prefixes`,
//! `file_paths` and `file_basenames` options, checked at their location,
//! and their defaults. The kernel side is `hf_path_selected` in
//! `bpf/files.bpf.h`; the encoding of its maps is in
//! [`super::records_security`].
//!
//! When none of the three options is given, the defaults apply together
//! (everything under `/etc/` and the credential, shell start-up and loader
//! files below anywhere); once one is given, the ones left out are empty,
//! so a configuration says exactly what it selects (and a configuration
//! from before basenames existed keeps its meaning).

use pipeline::{ComponentOptions, ConfigError};
use toml::Spanned;

use super::records_security::{BASENAME_LEN, MAX_EXACT_LEN, MAX_PREFIX_LEN, MAX_SELECT_BASENAMES, MAX_SELECT_PATHS};
use super::Program;

/// Default `file_prefixes`.
pub const DEFAULT_FILE_PREFIXES: [&str; 1] = ["/etc/"];
/// Default `file_basenames`: credentials and keys, and files that run code
/// at login or at every dynamic link, wherever they are (any user's home).
pub const DEFAULT_FILE_BASENAMES: [&str; 13] = [
    "authorized_keys",
    "id_rsa",
    "id_ecdsa",
    "id_ed25519",
    "shadow",
    "sudoers",
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    "crontab",
    "ld.so.preload",
    "authorized_keys2",
];

/// The checked selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSelection {
    pub prefixes: Vec<String>,
    pub paths: Vec<String>,
    pub basenames: Vec<String>,
}

impl FileSelection {
    /// The selection of a source that sets none of the three options.
    pub fn defaults() -> FileSelection {
        FileSelection {
            prefixes: DEFAULT_FILE_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
            paths: Vec::new(),
            basenames: DEFAULT_FILE_BASENAMES.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    /// Nothing selected.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.paths.is_empty() && self.basenames.is_empty()
    }
}

type List = Spanned<Vec<Spanned<String>>>;

/// Checks the three options, pushing one located error per problem.
pub fn check(
    prefixes: Option<&List>,
    paths: Option<&List>,
    basenames: Option<&List>,
    programs: &[Program],
    options: &ComponentOptions,
    errors: &mut Vec<ConfigError>,
) -> FileSelection {
    if prefixes.is_none() && paths.is_none() && basenames.is_none() {
        return FileSelection::defaults();
    }
    let mut selection = FileSelection::default();
    let prefix_check = |text: &str| length("a file prefix", MAX_PREFIX_LEN, text);
    entries(prefixes, "file prefix", &mut selection.prefixes, &prefix_check, options, errors);
    let path_check = |text: &str| length("a file path", MAX_EXACT_LEN, text);
    entries(paths, "file path", &mut selection.paths, &path_check, options, errors);
    let name_check = |text: &str| {
        length("a file basename", BASENAME_LEN, text)
            .or_else(|| text.contains('/').then(|| format!("a file basename has no '/', got {text:?}")))
    };
    entries(basenames, "file basename", &mut selection.basenames, &name_check, options, errors);

    // Prefixes and exact paths share one map.
    let path_entries = prefixes.map_or(0, |l| l.get_ref().len()) + paths.map_or(0, |l| l.get_ref().len());
    if path_entries > MAX_SELECT_PATHS {
        let span = paths.or(prefixes).map(|l| l.span()).unwrap_or(0..0);
        errors.push(options.error_at(
            span,
            format!("at most {MAX_SELECT_PATHS} file_prefixes and file_paths together, got {path_entries}"),
        ));
    }
    if let Some(list) = basenames {
        if list.get_ref().len() > MAX_SELECT_BASENAMES {
            errors.push(options.error_at(
                list.span(),
                format!("at most {MAX_SELECT_BASENAMES} file_basenames, got {}", list.get_ref().len()),
            ));
        }
    }
    let all_empty = [prefixes, paths, basenames].iter().all(|l| l.is_none_or(|l| l.get_ref().is_empty()));
    let needing = [Program::FileOpen, Program::FileChange].into_iter().find(|p| programs.contains(p));
    if let (true, Some(program)) = (all_empty, needing) {
        let span = prefixes.or(paths).or(basenames).map(|l| l.span()).unwrap_or(0..0);
        errors.push(options.error_at(
            span,
            format!(
                "{program} needs at least one entry in file_prefixes, file_paths or file_basenames \
                 (or leave file_open and file_change out of programs)"
            ),
        ));
    }
    selection
}

/// What is wrong with one entry's length or bytes, if anything.
fn length(what: &str, max: usize, text: &str) -> Option<String> {
    let len = text.len();
    if len == 0 || len > max {
        Some(format!("{what} must be 1 to {max} bytes, got {len}"))
    } else if text.contains('\0') {
        Some(format!("{what} {text:?} holds a NUL byte"))
    } else {
        None
    }
}

/// Checks every entry of one list into `out` (duplicates are errors too).
fn entries(
    list: Option<&List>,
    what: &str,
    out: &mut Vec<String>,
    check: &dyn Fn(&str) -> Option<String>,
    options: &ComponentOptions,
    errors: &mut Vec<ConfigError>,
) {
    for item in list.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
        let text = item.get_ref();
        if let Some(problem) = check(text) {
            errors.push(options.error_at(item.span(), problem));
        } else if out.contains(text) {
            errors.push(options.error_at(item.span(), format!("{what} {text:?} is listed twice")));
        } else {
            out.push(text.clone());
        }
    }
}
