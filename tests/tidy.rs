//! Style and architecture rules, checked by tests rather than reviewers:
//! every Rust file explains itself in a `//!` header and stays small, and
//! crates depend on each other only in the directions ARCHITECTURE.md
//! allows.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MAX_LINES: usize = 800;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, found);
            }
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_a_doc_header_and_stays_small() {
    let mut files = Vec::new();
    rust_files(Path::new(ROOT), &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let relative = file.strip_prefix(ROOT).unwrap_or(&file).display().to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{relative}: does not start with a `//!` line saying what it is for"));
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{relative}: {lines} lines (limit {MAX_LINES}); split it"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn crates_depend_only_downwards() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(ROOT)
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let deps_of = |package: &str| -> Vec<String> {
        metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == package)
            .unwrap_or_else(|| panic!("package {package}"))["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let components = ["sources", "transforms", "detect", "sinks"];
    // The engine knows no component, no wire format and no heavy client.
    let forbidden_in_pipeline = ["sources", "transforms", "sinks", "schemas", "aya", "rdkafka", "arrow", "datafusion"];
    for dep in deps_of("pipeline") {
        assert!(!forbidden_in_pipeline.contains(&dep.as_str()), "pipeline must not depend on {dep}");
    }
    // Wire contracts stand alone.
    for dep in deps_of("schemas") {
        assert!(
            !["pipeline", "sources", "transforms", "sinks"].contains(&dep.as_str()),
            "schemas must not depend on {dep}"
        );
    }
    // Component crates never import each other: only the binary knows them all.
    for krate in components {
        for dep in deps_of(krate) {
            assert!(!components.contains(&dep.as_str()), "{krate} must not depend on {dep}");
        }
    }
    for krate in components {
        assert!(deps_of("hostflow").contains(&krate.to_owned()), "the binary registers {krate}");
    }
    // The agent that runs on every host carries no SQL engine (issue #12):
    // `hostflow query` runs the separate `hostflow-query` binary.
    for dep in ["datafusion", "hostflow-query"] {
        assert!(!deps_of("hostflow").contains(&dep.to_owned()), "the agent must not depend on {dep}");
        for krate in components {
            assert!(!deps_of(krate).contains(&dep.to_owned()), "{krate} must not depend on {dep}");
        }
    }
    // The query binary reads the spool through the wire contracts only.
    for dep in deps_of("hostflow-query") {
        assert!(
            !["hostflow", "sources", "transforms", "sinks", "aya", "rdkafka"].contains(&dep.as_str()),
            "hostflow-query must not depend on {dep}"
        );
    }
}

/// README's topology example, the embedded default and every
/// `examples/*.toml` must stay valid.
#[test]
fn documented_topologies_validate() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```toml example");
    let mut documented = vec![("README.md example".to_owned(), example.to_owned())];
    documented.push(("topology.toml".to_owned(), hostflow::DEFAULT_TOPOLOGY.to_owned()));
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).expect("examples/").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            documented.push((path.display().to_string(), std::fs::read_to_string(&path).expect("example")));
        }
    }
    assert!(documented.len() > 2, "examples/ holds topologies");
    for (name, text) in documented {
        let loaded = pipeline::load(pipeline::SourceFile::new(&name, text), hostflow::registry::COMPONENTS);
        if let Err(errors) = loaded {
            panic!("{name} does not validate:\n{errors}");
        }
    }
}
