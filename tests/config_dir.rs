//! `--config DIR` (issue #12): a topology split over the `*.toml` files of a
//! directory, merged in name order, through the real binary — the same graph
//! and the same output as one file; a component defined in two files names
//! both; every problem names its own file; empty directories and files that
//! are not `*.toml` are handled.

mod support;

use std::path::Path;
use std::process::Output;

use support::{hostflow, Workspace};

/// `EX_CONFIG`: the topology has problems.
const INVALID: i32 = 78;
/// `EX_NOINPUT`: the topology cannot be read.
const UNREADABLE: i32 = 66;

/// The directory every test writes its topology into; commands run in the
/// workspace, so messages start with exactly this.
const DIR: &str = "topology.d";

/// One topology as a single file.
const SINGLE: &str = r#"[api]
enabled = false

[sources.gen]
type = "generator"
count = 10
seed = 7

[transforms.f]
type = "filter"
inputs = ["gen"]
buffer = { capacity = 100, when_full = "drop_newest" }

[sinks.out]
type = "file"
inputs = ["f"]
path = "events.ndjson"
"#;

/// `SINGLE` split over two files, each reading from the other: the source
/// and sink in the first, the transform between them in the second.
const SPLIT: [(&str, &str); 2] = [
    (
        "10-edges.toml",
        r#"[api]
enabled = false

[sources.gen]
type = "generator"
count = 10
seed = 7

[sinks.out]
type = "file"
inputs = ["f"]
path = "events.ndjson"
"#,
    ),
    (
        "20-filter.toml",
        r#"[transforms.f]
type = "filter"
inputs = ["gen"]
buffer = { capacity = 100, when_full = "drop_newest" }
"#,
    ),
];

/// A workspace with `files` written into `DIR/`.
fn directory(files: &[(&str, &str)]) -> Workspace {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path(DIR)).expect("create the config directory");
    for (name, text) in files {
        ws.write(&format!("{DIR}/{name}"), text);
    }
    ws
}

/// Runs `hostflow ARGS` in the workspace.
fn run(ws: &Workspace, args: &[&str]) -> Output {
    hostflow().args(args).current_dir(ws.path("")).output().expect("start the hostflow binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr:\n{}", text(&output.stderr));
    text(&output.stdout)
}

/// Asserts `output` rejects the topology in `DIR` with exactly `expected`
/// (problem, note and help lines), then the count of problems.
fn assert_rejected(output: &Output, expected: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(INVALID), "stderr:\n{stderr}");
    let problems = expected.iter().filter(|line| line.contains(": error: ")).count();
    let noun = if problems == 1 { "problem" } else { "problems" };
    let mut report: String = expected.iter().map(|line| format!("{line}\n")).collect();
    report.push_str(&format!("{DIR}: {problems} {noun} found; nothing was started\n"));
    assert_eq!(stderr, report);
    assert_eq!(text(&output.stdout), "", "nothing goes to stdout on failure");
}

#[test]
fn a_split_directory_is_the_same_topology_as_one_file() {
    let single = directory(&[]);
    single.write("topology.toml", SINGLE);
    let split = directory(&SPLIT);

    assert_eq!(assert_ok(&run(&split, &["validate", DIR])), "topology.d: ok (1 sources, 1 transforms, 1 sinks)\n");
    let graph = assert_ok(&run(&split, &["graph", DIR]));
    assert_eq!(graph, assert_ok(&run(&single, &["graph", "topology.toml"])));
    assert!(graph.contains("\"gen\" -> \"f\" [label=\"100 drop_newest\"]"), "{graph}");

    // A trailing slash names the same directory.
    assert_eq!(assert_ok(&run(&split, &["graph", "topology.d/"])), graph);

    assert_ok(&run(&split, &["run", "--config", DIR]));
    assert_ok(&run(&single, &["run", "--config", "topology.toml"]));
    let ids = split.event_ids("events.ndjson");
    assert_eq!(ids.len(), 10);
    assert_eq!(ids, single.event_ids("events.ndjson"), "the same events, with the same ids");
}

#[test]
fn a_component_defined_in_two_files_names_both_with_every_other_problem() {
    let ws = directory(&[
        ("a.toml", "[sources.gen]\ntype = \"generator\"\n\n[sinks.spool]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n"),
        ("b.toml", "[sinks.spool]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n\n[sinks.s3]\ntype = \"s3\"\ninputs = [\"gen\"]\n"),
    ]);
    for args in [&["validate", DIR][..], &["graph", DIR], &["run", "--config", DIR]] {
        let output = run(&ws, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(INVALID), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "topology.d/b.toml:1:8: error: duplicate component name `spool`: [sinks.spool] here and \
                 [sinks.spool] in topology.d/a.toml",
                "topology.d/a.toml:4:8: note: [sinks.spool] first defined here",
                "    help: component names are shared by sources, transforms and sinks; rename one, or remove one \
                 of the two",
            ],
            "{args:?}"
        );
        // The list of known types belongs to the registry, not to this test.
        let unknown_type = "topology.d/b.toml:6:8: error: unknown sink type `s3` for `s3`; known sink types: ";
        assert!(lines[3].starts_with(unknown_type), "{args:?}: {stderr}");
        assert_eq!(lines[4..], ["topology.d: 2 problems found; nothing was started"], "{args:?}");
        assert_eq!(text(&output.stdout), "");
    }
}

#[test]
fn a_problem_in_the_second_file_names_that_file() {
    let ws = directory(&[
        SPLIT[0],
        ("20-filter.toml", "[transforms.f]\ntype = \"filter\"\ninputs = [\"gne\"]\ncolour = \"red\"\n"),
    ]);
    let output = run(&ws, &["validate", DIR]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(INVALID), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        "topology.d/10-edges.toml:4:10: error: source `gen` has no consumers: its events would go nowhere"
    );
    assert_eq!(
        lines[2],
        "topology.d/20-filter.toml:3:11: error: transform `f` reads from `gne`, but no component has that name"
    );
    assert_eq!(lines[3], "    help: did you mean `gen`?");
    assert!(
        lines[4].starts_with("topology.d/20-filter.toml:4:1: error: transform `f`: unknown field `colour`"),
        "{stderr}"
    );
    assert_eq!(lines.last().copied(), Some("topology.d: 3 problems found; nothing was started"));
}

#[test]
fn api_may_be_set_in_one_file_only() {
    let ws = directory(&[SPLIT[0], SPLIT[1], ("30-api.toml", "[api]\naddress = \"127.0.0.1:1\"\n")]);
    assert_rejected(
        &run(&ws, &["validate", DIR]),
        &[
            "topology.d/30-api.toml:1:2: error: [api] is already set in topology.d/10-edges.toml; only one file of a config directory may set it",
            "topology.d/10-edges.toml:1:2: note: [api] first set here",
            "    help: keep every [api] key in one file",
        ],
    );
}

#[test]
fn an_empty_directory_is_unreadable() {
    let ws = directory(&[("README", "nothing to run"), (".hidden.toml", "[sources.gen]\ntype = \"generator\"\n")]);
    std::fs::create_dir_all(ws.path("spool")).expect("create a spool directory");
    let commands = [
        &["validate", DIR][..],
        &["graph", DIR],
        &["run", "--config", DIR],
        &["replay", "--spool", "spool", "--config", DIR],
    ];
    for args in commands {
        let output = run(&ws, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(UNREADABLE), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            "topology.d: error: cannot read the topology: the directory has no `*.toml` file (a config directory \
             is read as DIR/*.toml in name order, not recursively, skipping dotfiles)\n",
            "{args:?}"
        );
        assert_eq!(text(&output.stdout), "");
    }
}

#[test]
fn only_toml_files_directly_in_the_directory_are_read() {
    let garbage = "this is not = = TOML [";
    let ws = directory(&[
        SPLIT[0],
        SPLIT[1],
        ("README.md", garbage),
        (".20-filter.toml.swp", garbage),
        (".hidden.toml", garbage),
        ("20-filter.toml~", garbage),
        ("30-extra.toml.disabled", garbage),
    ]);
    std::fs::create_dir(ws.path("topology.d/nested.toml")).expect("create a subdirectory");
    ws.write("topology.d/nested.toml/x.toml", garbage);
    assert_eq!(assert_ok(&run(&ws, &["validate", DIR])), "topology.d: ok (1 sources, 1 transforms, 1 sinks)\n");
}

#[test]
fn an_unreadable_file_in_the_directory_is_named() {
    let ws = directory(&[SPLIT[0]]);
    std::fs::write(ws.path("topology.d/20-latin1.toml"), b"# caf\xe9\n").expect("write a non-UTF-8 file");
    let output = run(&ws, &["validate", DIR]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(UNREADABLE), "{stderr}");
    assert!(stderr.starts_with("topology.d/20-latin1.toml: error: cannot read the topology: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

const RECORD: &str = r#"[sources.gen]
type = "generator"
seed = 21
count = 3000
rate = 200000
mix = { process_exec = 1, net_connect = 1, file_open = 1, process_sample = 1, sketch = 1 }

[sinks.spool]
type = "arrow_spool"
inputs = ["gen"]
path = "spool"

[sinks.truth]
type = "file"
inputs = ["gen"]
path = "recorded.ndjson"
"#;

#[test]
fn run_and_replay_take_a_directory() {
    let ws = directory(&[("00-api.toml", "[api]\nenabled = false\n"), ("10-record.toml", RECORD)]);
    assert_ok(&run(&ws, &["run", "--config", DIR]));
    let recorded = std::fs::read(ws.path("recorded.ndjson")).expect("recorded");
    assert_eq!(recorded.iter().filter(|b| **b == b'\n').count(), 3000);

    let replay_dir = Path::new("replay.d");
    std::fs::create_dir(ws.path("replay.d")).expect("create the replay directory");
    ws.write("replay.d/a.toml", "[api]\nenabled = false\n");
    ws.write("replay.d/b.toml", "[sinks.out]\ntype = \"file\"\ninputs = [\"replay\"]\npath = \"replayed.ndjson\"\n");
    let replay =
        |ws: &Workspace| run(ws, &["replay", "--spool", "spool", "--config", &replay_dir.display().to_string()]);
    assert_ok(&replay(&ws));
    assert!(std::fs::read(ws.path("replayed.ndjson")).expect("replayed") == recorded, "replay differs");

    // A replay source of its own, in any file, is refused naming that file.
    ws.write("replay.d/c.toml", "[sources.replay]\ntype = \"replay\"\npath = \"spool\"\n");
    let output = replay(&ws);
    assert_eq!(output.status.code(), Some(INVALID));
    assert!(
        text(&output.stderr).starts_with("replay.d/c.toml: error: the topology already defines [sources.replay]"),
        "{}",
        text(&output.stderr)
    );
}
