//! `hostflow validate --spool DIR`: every file of an Arrow spool checked
//! the way its readers and the sink's start-up recovery would check it,
//! without changing anything (issue #18). A finished file must pass
//! `schemas::spool::verify_file_or_older` (the replay source's check: every
//! offset, length and declared size sound); an unfinished `.arrow.tmp`
//! file is read as recovery would read it and reported with the batches it
//! would keep and the torn bytes it would drop; files under `quarantine/`
//! are ones an earlier start could not recover, and stay problems until an
//! operator removes them.
//!
//! Exit 0 when everything is sound; 65 (`EX_DATAERR`) when anything is
//! unreadable, torn or quarantined; 66 when DIR cannot be read.

use std::path::{Path, PathBuf};

use crate::commands::Outcome;

/// One file's verdict.
#[derive(Debug, PartialEq)]
enum Verdict {
    Sound {
        batches: usize,
        rows: u64,
    },
    /// An unfinished file whose whole content recovery would keep.
    Unfinished {
        batches: usize,
        rows: u64,
    },
    Problem(String),
}

/// Checks the spool at `dir` and prints one line per file and a summary.
pub fn validate_spool(dir: &Path) -> Outcome {
    let kinds = match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut kinds: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            kinds.sort();
            kinds
        }
        Err(error) => {
            eprintln!("{}: error: cannot read the spool directory: {error}", dir.display());
            return Outcome::Unreadable;
        }
    };
    let mut checked = Vec::new();
    for path in kinds {
        check_entry(&path, &mut checked);
    }
    let (mut files, mut problems, mut rows) = (0usize, 0usize, 0u64);
    for (path, verdict) in &checked {
        let shown = path.strip_prefix(dir).unwrap_or(path).display();
        files += 1;
        match verdict {
            Verdict::Sound { batches, rows: n } => {
                rows += n;
                println!("ok      {shown}: {batches} batches, {n} rows");
            }
            Verdict::Unfinished { batches, rows: n } => {
                rows += n;
                println!("open    {shown}: unfinished; the next start recovers {batches} batches, {n} rows, all of it");
            }
            Verdict::Problem(reason) => {
                problems += 1;
                println!("BAD     {shown}: {reason}");
            }
        }
    }
    println!("{}: {files} files, {rows} readable rows, {problems} with problems", dir.display());
    match problems {
        0 => Outcome::Success,
        _ => Outcome::BadInput,
    }
}

/// Checks one entry of the spool directory: a kind directory, or a stray
/// file (a problem: the spool writes only kind directories).
fn check_entry(path: &Path, out: &mut Vec<(PathBuf, Verdict)>) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !path.is_dir() {
        out.push((path.to_owned(), Verdict::Problem("not a kind directory (the spool writes none such)".into())));
        return;
    }
    let Some(schema) = schemas::schema_for(&name) else {
        out.push((path.to_owned(), Verdict::Problem(format!("`{name}` is not an event kind this binary knows"))));
        return;
    };
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(error) => {
            out.push((path.to_owned(), Verdict::Problem(format!("cannot read the directory: {error}"))));
            return;
        }
    };
    entries.sort();
    for file in entries {
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if file_name == "quarantine" && file.is_dir() {
            let mut held: Vec<PathBuf> =
                std::fs::read_dir(&file).into_iter().flatten().flatten().map(|e| e.path()).collect();
            held.sort();
            for q in held {
                out.push((q, Verdict::Problem("quarantined by an earlier start: nothing in it was readable".into())));
            }
            continue;
        }
        let verdict = if file_name.ends_with(".arrow") && sinks::arrow_spool::parse_seq(&name, &file_name).is_some() {
            match schemas::spool::verify_file_or_older(&file, &schema) {
                Ok(summary) => Verdict::Sound { batches: summary.batches, rows: summary.rows },
                Err(reason) => Verdict::Problem(reason),
            }
        } else if file_name.ends_with(".arrow.tmp") {
            match std::fs::read(&file) {
                Ok(bytes) => tmp_verdict(sinks::arrow_spool::tmp_summary(&bytes, &schema)),
                Err(error) => Verdict::Problem(format!("unreadable: {error}")),
            }
        } else if file_name.starts_with('.') && file_name.ends_with(".recovering") {
            Verdict::Problem("a recovery was interrupted here; the next start rewrites it".into())
        } else {
            Verdict::Problem("not a spool file name".into())
        };
        out.push((file, verdict));
    }
}

fn tmp_verdict(summary: Result<sinks::arrow_spool::TmpSummary, String>) -> Verdict {
    match summary {
        Ok(s) if s.torn_bytes == 0 && s.undecodable == 0 => Verdict::Unfinished { batches: s.batches, rows: s.rows },
        Ok(s) => Verdict::Problem(format!(
            "torn: the next start recovers {} batches ({} rows) and drops {} bytes after them{}",
            s.batches,
            s.rows,
            s.torn_bytes,
            match s.undecodable {
                0 => String::new(),
                n => format!(" and {n} batches that do not decode"),
            }
        )),
        Err(reason) => {
            Verdict::Problem(format!("unfinished and unrecoverable ({reason}); the next start quarantines it"))
        }
    }
}
