//! `hostflow rules …`: the rule set, checked or exercised without running
//! a topology.

use std::path::Path;

use crate::commands::Outcome;

/// `hostflow rules check DIR`: loads and compiles every rule file under
/// DIR as the `detect` transform would, and reports per file what loaded,
/// every problem (file:line: rule `id`: what is wrong (hint: …)) and every
/// Sigma rule rejected as unsupported. Exit 0: all loaded; 65: the set
/// loads but Sigma rules were rejected; 78: the set would be refused.
pub fn check(path: &Path, json: bool) -> Outcome {
    let loaded = detect::load(path);
    if json {
        let files: Vec<serde_json::Value> = loaded
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "file": f.path.display().to_string(),
                    "rules": f.rules,
                    "ioc_sets": f.ioc_sets,
                    "problems": f.problems.iter().map(problem_json).collect::<Vec<_>>(),
                    "rejected": f.rejected.iter().map(problem_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let set = loaded.set.as_ref().map(|s| {
            serde_json::json!({
                "digest": &*s.digest,
                "rules": s.rules.len(),
                "rejected": s.rejected,
                "per_layer": s.counts().iter().map(|(l, n)| (l.as_str().to_owned(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            })
        });
        println!("{}", serde_json::json!({ "ok": set.is_some(), "set": set, "files": files }));
    } else {
        for file in &loaded.files {
            if file.problems.is_empty() {
                println!("{}: loaded ({} rules, {} IOC sets)", file.path.display(), file.rules, file.ioc_sets);
                if !file.rejected.is_empty() {
                    println!("  {} Sigma rule(s) rejected (skipped; the rest loads):", file.rejected.len());
                    for rejected in &file.rejected {
                        println!("  {rejected}");
                    }
                }
            } else {
                println!(
                    "{}: {} problem(s); {} rule(s) would load from it",
                    file.path.display(),
                    file.problems.len(),
                    file.rules
                );
                for problem in &file.problems {
                    println!("  {problem}");
                }
            }
        }
        match &loaded.set {
            Some(set) => {
                let layers: Vec<String> = set.counts().iter().map(|(l, n)| format!("{} {n}", l.as_str())).collect();
                println!(
                    "ok: {} rules in {} files ({}), rule set {}{}",
                    set.rules.len(),
                    loaded.files.len(),
                    layers.join(", "),
                    set.digest,
                    if set.rejected > 0 { format!("; {} Sigma rule(s) rejected", set.rejected) } else { String::new() }
                );
            }
            None => {
                let problems = loaded.problems().count();
                println!("refused: {problems} problem(s); a running agent keeps its previous rule set");
            }
        }
    }
    match &loaded.set {
        Some(set) if set.rejected == 0 => Outcome::Success,
        Some(_) => Outcome::BadInput,
        None => Outcome::InvalidConfig,
    }
}

fn problem_json(p: &detect::Problem) -> serde_json::Value {
    serde_json::json!({
        "line": p.line,
        "rule_id": p.rule_id,
        "message": p.message,
        "hint": p.hint,
        "text": p.to_string(),
    })
}
