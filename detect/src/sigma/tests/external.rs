//! A manual check against a directory of third-party Sigma rules.

use std::path::Path;
use std::sync::Arc;

use super::super::SigmaLoader;
use crate::yaml::{self, Node};

/// Loads every `.yml` under `$HOSTFLOW_SIGMA_DIR` (e.g. a checkout of
/// SigmaHQ's `rules/linux`) and prints how many load and why the others
/// do not. Does nothing without the variable; third-party rules are never
/// part of the repository.
#[test]
fn external_sigma_directory() {
    let Some(dir) = std::env::var_os("HOSTFLOW_SIGMA_DIR") else { return };
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut loader = SigmaLoader::new();
    let mut documents = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable file");
        let file: Arc<Path> = Arc::from(path.as_path());
        for doc in yaml::parse(&text).unwrap_or_default() {
            documents += 1;
            loader.add_document(&file, Node::new(&doc));
        }
    }
    let (rules, problems) = loader.finish();
    let mut failed: Vec<&Path> = problems.iter().map(|p| p.file.as_path()).collect();
    failed.dedup();
    println!(
        "{} files, {documents} documents, {} rules loaded, {} files with problems",
        files.len(),
        rules.len(),
        failed.len()
    );
    let mut reasons: Vec<String> = problems
        .iter()
        .map(|p| {
            p.message
                .split('`')
                .enumerate()
                .map(|(i, s)| if i % 2 == 1 { "…" } else { s })
                .collect::<Vec<_>>()
                .join("`")
        })
        .collect();
    reasons.sort();
    let mut counted: Vec<(usize, String)> = Vec::new();
    for reason in reasons {
        match counted.last_mut() {
            Some((n, r)) if *r == reason => *n += 1,
            _ => counted.push((1, reason)),
        }
    }
    counted.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (n, reason) in counted {
        println!("{n:5}  {reason}");
    }
    if std::env::var_os("HOSTFLOW_SIGMA_VERBOSE").is_some() {
        for p in &problems {
            println!("{p}");
        }
    }
}
