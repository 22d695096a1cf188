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
        ("validate", "<FILE>"),
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
