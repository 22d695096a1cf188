//! The command line itself: version, help for each command, the component
//! list, and a bad command line.

mod support;

fn output(args: &[&str]) -> (Option<i32>, String, String) {
    let out = support::hostflow().args(args).output().expect("run hostflow");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = output(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), format!("hostflow {}", env!("CARGO_PKG_VERSION")));

    for (command, expected) in [
        ("run", "--config <FILE>"),
        ("validate", "[FILE]"),
        ("validate", "--spool <DIR>"),
        ("graph", "Graphviz DOT"),
        ("components", "List every component type"),
    ] {
        let (code, stdout, _) = output(&[command, "--help"]);
        assert_eq!(code, Some(0), "{command} --help");
        assert!(stdout.contains(expected), "{command} --help lacks {expected:?}:\n{stdout}");
    }
    let (code, stdout, _) = output(&["--help"]);
    assert_eq!(code, Some(0));
    for command in ["run", "validate", "graph", "components"] {
        assert!(stdout.contains(command), "--help lists {command}");
    }
}

#[test]
fn components_lists_every_registered_type() {
    let (code, stdout, _) = output(&["components"]);
    assert_eq!(code, Some(0));
    for spec in hostflow::registry::COMPONENTS {
        assert!(stdout.contains(spec.type_name), "{} missing from:\n{stdout}", spec.type_name);
    }
}

#[test]
fn a_bad_command_line_exits_2() {
    let (code, _, stderr) = output(&["rnu"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unrecognized subcommand 'rnu'"), "{stderr}");
    let (code, _, stderr) = output(&["validate"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("<FILE>"), "{stderr}");
}

/// `hostflow query` runs the separate `hostflow-query` binary (issue #12:
/// the agent carries no SQL engine). Where it is neither beside the agent
/// nor on PATH, the agent says so and how to build it, exit 127.
#[test]
fn query_without_its_companion_binary_says_how_to_get_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let alone = dir.path().join("hostflow");
    std::fs::copy(env!("CARGO_BIN_EXE_hostflow"), &alone).expect("copy the agent");
    // Another test's fork can hold the copy's write descriptor for a moment
    // (until its exec closes it): exec then fails with ETXTBSY. Retry.
    let mut attempts = 0;
    let out = loop {
        match std::process::Command::new(&alone).args(["query", "--tables"]).env("PATH", dir.path()).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => break result.expect("run the copied agent"),
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stderr.contains("`hostflow-query` is not installed"), "{stderr}");
    assert!(stderr.contains("cargo build --release -p hostflow-query"), "{stderr}");
}
