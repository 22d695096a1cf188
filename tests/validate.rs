//! Drives the real `hostflow` binary over bad topologies and checks the exit code and every
//! `FILE:LINE:COL: error: ...` line of `validate`, `graph` and `run --config`, plus the happy path.
//!
//! Topologies are written indented in raw strings; [`dedent`] removes the common indentation,
//! so line 1 is the line after the opening quote and columns count from the dedented margin.

use std::process::{Command, Output};

use tempfile::TempDir;

/// The name every test topology is written under; commands run in its directory, so messages
/// start with exactly this.
const FILE: &str = "topology.toml";

/// `EX_CONFIG`: the topology has problems.
const INVALID: i32 = 78;
/// `EX_NOINPUT`: the topology file cannot be read.
const UNREADABLE: i32 = 66;

/// `text` without its first line (empty, after the opening quote) and without the indentation
/// its non-blank lines share.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines().map(|line| format!("{}\n", line.get(indent..).unwrap_or(""))).collect()
}

/// A temporary directory holding `topology.toml` with `toml`, dedented.
fn topology(toml: &str) -> TempDir {
    let dir = TempDir::new().expect("create a temporary directory");
    std::fs::write(dir.path().join(FILE), dedent(toml)).expect("write the topology file");
    dir
}

/// Runs `hostflow ARGS` in `dir`, without any `HOSTFLOW_*` variable of the caller's environment.
fn hostflow(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hostflow"));
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HOSTFLOW_") {
            command.env_remove(name);
        }
    }
    command.output().expect("start the hostflow binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stderr `hostflow` prints for an invalid topology: the problem lines (each optionally
/// followed by a `    help:` line), then the count line.
fn problem_report(expected: &[&str]) -> String {
    let problems = expected.iter().filter(|line| !line.starts_with("    help: ")).count();
    let noun = if problems == 1 { "problem" } else { "problems" };
    let mut report: String = expected.iter().map(|line| format!("{line}\n")).collect();
    report.push_str(&format!("{FILE}: {problems} {noun} found; nothing was started\n"));
    report
}

/// Asserts that `output` is the rejection of an invalid topology with exactly `expected`.
fn assert_rejected(output: &Output, expected: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(INVALID), "stderr:\n{stderr}");
    assert_eq!(stderr, problem_report(expected));
    assert_eq!(text(&output.stdout), "", "nothing goes to stdout on failure");
}

/// `hostflow validate` on `toml` exits 78 and prints exactly `expected`, then the count line.
fn check(toml: &str, expected: &[&str]) {
    let dir = topology(toml);
    assert_rejected(&hostflow(dir.path(), &["validate", FILE]), expected);
}

#[test]
fn dedent_keeps_lines_and_relative_indentation() {
    assert_eq!(dedent("\n    a = 1\n\n      b = 2\n    "), "a = 1\n\n  b = 2\n\n");
}

#[test]
fn toml_syntax_errors() {
    check(
        r#"
        [sources.g]
        type = "generator
        "#,
        &["topology.toml:2:18: error: TOML syntax: invalid basic string, expected `\"`"],
    );
    check(
        r#"
        [sources.g
        type = "generator"
        "#,
        &["topology.toml:1:11: error: TOML syntax: unclosed table, expected `]`"],
    );
}

#[test]
fn unknown_types_list_the_known_ones() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [transforms.f]
        type = "fliter"
        inputs = ["gen"]

        [sinks.out]
        type = "s3"
        inputs = ["f"]
        "#,
        &[
            "topology.toml:5:8: error: unknown transform type `fliter` for `f`; known transform types: filter, enrich, detect, topn, tail, sketch, lifecycle",
            "    help: did you mean `filter`?",
            "topology.toml:9:8: error: unknown sink type `s3` for `out`; known sink types: arrow_spool, kafka, blackhole, console, file",
        ],
    );
}

#[test]
fn type_under_the_wrong_section() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.x]
        type = "filter"
        inputs = ["gen"]
        "#,
        &[
            "topology.toml:5:8: error: `filter` is a transform type, but `x` is declared under [sinks]; \
             known sink types: arrow_spool, kafka, blackhole, console, file",
            "    help: move it to [transforms.x]",
        ],
    );
}

#[test]
fn input_naming_a_missing_component() {
    check(
        r#"
        [sources.generator]
        type = "generator"

        [transforms.f]
        type = "filter"
        inputs = ["generator"]

        [sinks.out]
        type = "blackhole"
        inputs = ["f", "generater"]
        "#,
        &[
            "topology.toml:10:16: error: sink `out` reads from `generater`, but no component has that name",
            "    help: did you mean `generator`?",
        ],
    );
    // Nothing close enough: no guess.
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.out]
        type = "blackhole"
        inputs = ["gen", "kafka"]
        "#,
        &["topology.toml:6:18: error: sink `out` reads from `kafka`, but no component has that name"],
    );
}

#[test]
fn reading_from_a_sink() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.a]
        type = "blackhole"
        inputs = ["gen"]

        [sinks.b]
        type = "blackhole"
        inputs = ["a"]
        "#,
        &[
            "topology.toml:10:11: error: sink `b` reads from `a`, which is a sink",
            "    help: sinks produce no events; read from a source or transform",
        ],
    );
}

#[test]
fn cycles_print_their_path() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [transforms.a]
        type = "filter"
        inputs = ["gen", "b"]

        [transforms.b]
        type = "filter"
        inputs = ["a"]

        [sinks.out]
        type = "blackhole"
        inputs = ["b"]
        "#,
        &[
            "topology.toml:6:1: error: cycle in the topology: b -> a -> b",
            "    help: events must flow from sources to sinks; remove one of these inputs",
        ],
    );
    check(
        r#"
        [sources.gen]
        type = "generator"

        [transforms.t]
        type = "filter"
        inputs = ["t", "gen"]

        [sinks.out]
        type = "blackhole"
        inputs = ["t"]
        "#,
        &[
            "topology.toml:6:1: error: cycle in the topology: t -> t",
            "    help: events must flow from sources to sinks; remove one of these inputs",
        ],
    );
}

#[test]
fn transforms_and_sinks_need_inputs() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [transforms.f]
        type = "filter"

        [sinks.out]
        type = "blackhole"
        inputs = []

        [sinks.hole]
        type = "blackhole"

        [sinks.used]
        type = "blackhole"
        inputs = ["gen"]
        "#,
        &[
            "topology.toml:4:13: error: transform `f` has no inputs",
            "    help: add `inputs = [\"...\"]` naming the components that feed `f`",
            "topology.toml:4:13: error: transform `f` has no consumers: its events would go nowhere",
            "    help: name `f` in the `inputs` of a transform or sink, or remove it",
            "topology.toml:9:1: error: sink `out` has no inputs",
            "    help: add `inputs = [\"...\"]` naming the components that feed `out`",
            "topology.toml:11:8: error: sink `hole` has no inputs",
            "    help: add `inputs = [\"...\"]` naming the components that feed `hole`",
        ],
    );
}

#[test]
fn sources_take_no_inputs_or_buffer() {
    check(
        r#"
        [sources.gen]
        type = "generator"
        inputs = ["other"]
        buffer = { capacity = 10 }

        [sinks.out]
        type = "blackhole"
        inputs = ["gen"]
        "#,
        &[
            "topology.toml:3:1: error: source `gen` has `inputs`, but sources take no inputs",
            "    help: remove `inputs`, or make this component a transform",
            "topology.toml:4:1: error: source `gen` has a `buffer`, but buffers sit on a component's input",
            "    help: put `buffer` on the transforms or sinks that read from this source",
        ],
    );
}

#[test]
fn names_are_unique_across_sections() {
    check(
        r#"
        [sources.x]
        type = "generator"

        [sources.gen]
        type = "generator"

        [transforms.x]
        type = "filter"
        inputs = ["gen"]

        [sinks.out]
        type = "blackhole"
        inputs = ["x"]
        "#,
        &[
            "topology.toml:7:13: error: duplicate component name `x`: [transforms.x] here and [sources.x] at line 1",
            "    help: component names are shared by sources, transforms and sinks; rename one",
        ],
    );
}

#[test]
fn bad_buffers() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.a]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { capacity = 0 }

        [sinks.b]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { when_full = "drop_oldest" }

        [sinks.c]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { capacity = 10, when_full = "blok" }

        [sinks.d]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { capacity = -1, size = 3 }

        [sinks.e]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { capacity = "big", when_full = 1 }

        [sinks.f]
        type = "blackhole"
        inputs = ["gen"]
        buffer = 1000
        "#,
        &[
            "topology.toml:7:23: error: sink `a`: buffer: \
             capacity must be a whole number of events of at least 1, got 0",
            "    help: a buffer of 0 events could never pass a batch; use e.g. capacity = 1000",
            "topology.toml:12:24: error: sink `b`: buffer: \
             unknown when_full `drop_oldest`; expected \"block\" or \"drop_newest\"",
            "    help: drop_oldest is not supported: drop_newest keeps what is buffered and drops incoming events when full",
            "topology.toml:17:39: error: sink `c`: buffer: \
             unknown when_full `blok`; expected \"block\" or \"drop_newest\"",
            "    help: did you mean \"block\"?",
            "topology.toml:22:23: error: sink `d`: buffer: \
             capacity must be a whole number of events of at least 1, got -1",
            "topology.toml:22:27: error: sink `d`: buffer: unknown key `size`; expected `type`, `capacity`, `when_full`, `max_bytes` or `path`",
            "topology.toml:27:23: error: sink `e`: buffer: capacity must be an integer number of events",
            "topology.toml:27:42: error: sink `e`: buffer: when_full must be a string",
            "topology.toml:32:10: error: sink `f`: buffer: \
             must be a table, e.g. buffer = { capacity = 1000, when_full = \"block\" }",
        ],
    );
}

#[test]
fn unknown_component_keys_name_the_key_and_its_line() {
    check(
        r#"
        [sources.gen]
        type = "generator"
        rat = 5

        [transforms.f]
        type = "filter"
        inputs = ["gen"]
        kind = ["net_connect"]

        [sinks.out]
        type = "file"
        inputs = ["f"]
        pathh = "out.ndjson"
        "#,
        &[
            "topology.toml:3:1: error: source `gen`: \
             unknown field `rat`, expected one of `rate`, `count`, `seed`, `mix`, `batch_size`",
            "    help: did you mean `rate`?",
            "topology.toml:8:1: error: transform `f`: unknown field `kind`, expected `kinds` or `conditions`",
            "    help: did you mean `kinds`?",
            "topology.toml:13:1: error: sink `out`: unknown field `pathh`, expected `path` or `append`",
            "    help: did you mean `path`?",
        ],
    );
}

#[test]
fn bad_names_types_and_top_level_keys() {
    check(
        r#"
        [sourcs.gen]
        type = "generator"

        [sources."a b"]
        type = "generator"

        [sources.nt]

        [sources.num]
        type = 5

        [sinks.out]
        type = "blackhole"
        inputs = ["a b", "nt", "num"]
        "#,
        &[
            "topology.toml:1:2: error: unknown top-level key `sourcs`; \
             expected one of: api, sources, transforms, sinks",
            "    help: did you mean `sources`?",
            "topology.toml:4:10: error: component name `a b` may only contain letters, digits, `_`, `-` and `.`",
            "topology.toml:7:10: error: source `nt` has no `type`",
            "    help: add a line `type = \"...\"` under [sources.nt]",
            "topology.toml:10:8: error: source `num`: `type` must be a string",
        ],
    );
}

#[test]
fn malformed_inputs() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.out]
        type = "blackhole"
        inputs = ["gen", 3]

        [sinks.one]
        type = "blackhole"
        inputs = "gen"
        "#,
        &[
            "topology.toml:6:18: error: sink `out`: each input must be a component name in quotes",
            "topology.toml:10:10: error: sink `one`: `inputs` must be an array of component names, e.g. [\"gen\"]",
        ],
    );
}

#[test]
fn a_topology_without_sources() {
    let expected = [
        "topology.toml: error: the topology declares no sources, so it would do nothing",
        "    help: add a source, e.g. [sources.gen] with type = \"generator\", and a sink that reads it",
    ];
    check("", &expected);
    check(
        r#"
        [api]
        enabled = false
        "#,
        &expected,
    );
}

/// One file with problems of six kinds, found by both stages of checking (the table parser and
/// the graph check): every one is reported, in file order, in one run.
const MANY_PROBLEMS: &str = r#"
    [sources.gen]
    type = "generator"
    rate = 0

    [transforms.f]
    type = "fliter"
    inputs = ["gen"]

    [transforms.a]
    type = "filter"
    inputs = ["f", "b"]

    [transforms.b]
    type = "filter"
    inputs = ["a"]

    [sinks.out]
    type = "file"
    inputs = ["b", "gne"]
    path = "events.ndjson"

    [sinks.hole]
    type = "blackhole"
    inputs = ["gen"]
    buffer = { capacity = 0 }
    colour = "red"
    "#;

const MANY_PROBLEMS_REPORT: [&str; 10] = [
    "topology.toml:3:8: error: source `gen`: rate must be a positive number of events per second, got 0",
    "topology.toml:6:8: error: unknown transform type `fliter` for `f`; known transform types: filter, enrich, detect, topn, tail, sketch, lifecycle",
    "    help: did you mean `filter`?",
    "topology.toml:11:1: error: cycle in the topology: b -> a -> b",
    "    help: events must flow from sources to sinks; remove one of these inputs",
    "topology.toml:19:16: error: sink `out` reads from `gne`, but no component has that name",
    "    help: did you mean `gen`?",
    "topology.toml:25:23: error: sink `hole`: buffer: capacity must be a whole number of events of at least 1, got 0",
    "    help: a buffer of 0 events could never pass a batch; use e.g. capacity = 1000",
    "topology.toml:26:1: error: sink `hole`: unknown field `colour`, expected `rate`",
];

#[test]
fn every_problem_is_reported_in_one_go() {
    check(MANY_PROBLEMS, &MANY_PROBLEMS_REPORT);
}

#[test]
fn run_and_graph_on_an_invalid_topology_start_nothing() {
    let dir = topology(MANY_PROBLEMS);
    assert_rejected(&hostflow(dir.path(), &["graph", FILE]), &MANY_PROBLEMS_REPORT);
    assert_rejected(&hostflow(dir.path(), &["run", "--config", FILE]), &MANY_PROBLEMS_REPORT);
    assert!(!dir.path().join("events.ndjson").exists(), "the file sink must not have been opened");
}

#[test]
fn unreadable_topologies() {
    let dir = TempDir::new().expect("create a temporary directory");
    std::fs::create_dir(dir.path().join("a_directory.toml")).expect("create a directory");
    std::fs::write(dir.path().join("latin1.toml"), b"# caf\xe9\n").expect("write a non-UTF-8 file");
    for file in ["missing.toml", "a_directory.toml", "latin1.toml"] {
        for args in [&["validate", file][..], &["graph", file], &["run", "--config", file]] {
            let output = hostflow(dir.path(), args);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(UNREADABLE), "{args:?}: {stderr}");
            let prefix = format!("{file}: error: cannot read the topology: ");
            assert!(stderr.starts_with(&prefix) && stderr.lines().count() == 1, "{args:?}: {stderr}");
            assert_eq!(text(&output.stdout), "");
        }
    }
}

/// `MANY_PROBLEMS` with its problems fixed.
const VALID: &str = r#"
    [api]
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

#[test]
fn a_valid_topology_validates_graphs_and_runs() {
    let dir = topology(VALID);

    let validated = hostflow(dir.path(), &["validate", FILE]);
    assert_eq!(validated.status.code(), Some(0), "{}", text(&validated.stderr));
    assert_eq!(text(&validated.stdout), "topology.toml: ok (1 sources, 1 transforms, 1 sinks)\n");
    assert_eq!(text(&validated.stderr), "");

    let graphed = hostflow(dir.path(), &["graph", FILE]);
    assert_eq!(graphed.status.code(), Some(0), "{}", text(&graphed.stderr));
    assert_eq!(
        text(&graphed.stdout),
        r#"digraph hostflow {
  rankdir=LR;
  "gen" [shape=invhouse label="gen\n(generator)"];
  "f" [shape=box label="f\n(filter)"];
  "out" [shape=house label="out\n(file)"];
  "gen" -> "f" [label="100 drop_newest"];
  "f" -> "out" [label="4096 block"];
}
"#
    );

    // The file sink does write once the topology is valid, so the "no file" of
    // `run_and_graph_on_an_invalid_topology_start_nothing` means something.
    let ran = hostflow(dir.path(), &["run", "--config", FILE]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let events = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("the file sink wrote its file");
    assert_eq!(events.lines().count(), 10, "{events}");
}

#[test]
fn producers_need_consumers() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sources.idle]
        type = "generator"

        [transforms.unused]
        type = "filter"
        inputs = ["gen"]

        [sinks.out]
        type = "blackhole"
        inputs = ["gen"]
        "#,
        &[
            "topology.toml:4:10: error: source `idle` has no consumers: its events would go nowhere",
            "    help: name `idle` in the `inputs` of a transform or sink, or remove it",
            "topology.toml:7:13: error: transform `unused` has no consumers: its events would go nowhere",
            "    help: name `unused` in the `inputs` of a transform or sink, or remove it",
        ],
    );
}

#[test]
fn bad_generator_values() {
    const KNOWN_KINDS: &str = "known kinds: process_exec, process_exit, process_fork, net_connect, file_open, \
         process_sample, process_aggregate, sketch, agent_diag, process_ephemeral, file_change, credential_change, \
         namespace_change, ptrace_attach, module_load, bpf_program_load, net_listen, net_accept, net_send, \
         process_snapshot, exe_hash, detection, net_policy";
    check(
        r#"
        [sources.a]
        type = "generator"
        rate = 0

        [sources.b]
        type = "generator"
        rate = -5.5

        [sources.c]
        type = "generator"
        mix = { process_exec = 1, net_conect = 2, kafka = 1 }

        [sources.d]
        type = "generator"
        mix = { process_exec = 0 }

        [sources.e]
        type = "generator"
        rate = nan

        [sources.f]
        type = "generator"
        batch_size = 0

        [sources.g]
        type = "generator"
        count = -1

        [sinks.out]
        type = "blackhole"
        inputs = ["a", "b", "c", "d", "e", "f", "g"]
        "#,
        &[
            "topology.toml:3:8: error: source `a`: rate must be a positive number of events per second, got 0",
            "topology.toml:7:8: error: source `b`: rate must be a positive number of events per second, got -5.5",
            &format!("topology.toml:11:27: error: source `c`: unknown event kind `net_conect` in mix; {KNOWN_KINDS}"),
            "    help: did you mean `net_connect`?",
            &format!("topology.toml:11:43: error: source `c`: unknown event kind `kafka` in mix; {KNOWN_KINDS}"),
            "topology.toml:15:7: error: source `d`: mix gives no kind a weight above 0; nothing would be generated",
            "topology.toml:19:8: error: source `e`: rate must be a positive number of events per second, got NaN",
            "topology.toml:23:14: error: source `f`: invalid value: integer `0`, expected a nonzero usize",
            "topology.toml:27:9: error: source `g`: invalid value: integer `-1`, expected u64",
        ],
    );
}

// Regressions for product bugs found while writing these tests (each config used to pass
// `validate` and then panic at `run`, or produce a false or missing problem).

/// `hostflow validate` on `toml` is a rejection whose first problem is at `position`
/// (`LINE:COL`) and begins with `message_start`.
fn check_rejected_at(toml: &str, position: &str, message_start: &str) {
    let dir = topology(toml);
    let output = hostflow(dir.path(), &["validate", FILE]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(INVALID), "stdout: {}stderr: {stderr}", text(&output.stdout));
    let start = format!("{FILE}:{position}: error: {message_start}");
    assert!(stderr.starts_with(&start), "expected a line starting with {start:?}, got:\n{stderr}");
}

#[test]
fn an_empty_type_is_an_unknown_type() {
    check_rejected_at(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.out]
        type = ""
        inputs = ["gen"]
        "#,
        "5:8",
        "unknown sink type ``",
    );
}

#[test]
fn a_buffer_larger_than_the_engine_can_count_is_rejected() {
    check_rejected_at(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.out]
        type = "blackhole"
        inputs = ["gen"]
        buffer = { capacity = 9223372036854775807 }
        "#,
        "7:23",
        "sink `out`: buffer: capacity",
    );
}

#[test]
fn a_huge_generator_batch_size_is_rejected() {
    check_rejected_at(
        r#"
        [sources.gen]
        type = "generator"
        batch_size = 1152921504606846976

        [sinks.out]
        type = "blackhole"
        inputs = ["gen"]
        "#,
        "3:14",
        "source `gen`:",
    );
}

#[test]
fn no_phantom_cycles_through_sinks_or_duplicate_names() {
    check(
        r#"
        [sources.gen]
        type = "generator"

        [sinks.out]
        type = "blackhole"
        inputs = ["gen", "out"]
        "#,
        &[
            "topology.toml:6:18: error: sink `out` reads from `out`, which is a sink",
            "    help: sinks produce no events; read from a source or transform",
        ],
    );
    check(
        r#"
        [sources.x]
        type = "generator"

        [sinks.x]
        type = "blackhole"
        inputs = ["x"]
        "#,
        &[
            "topology.toml:4:8: error: duplicate component name `x`: [sinks.x] here and [sources.x] at line 1",
            "    help: component names are shared by sources, transforms and sinks; rename one",
        ],
    );
}

#[test]
fn a_malformed_component_is_reported_once() {
    check(
        r#"
        [[sources.gen]]
        type = "generator"

        [sinks.out]
        type = "blackhole"
        inputs = ["gen"]
        "#,
        &["topology.toml:1:1: error: source `gen` must be a table, e.g. [sources.gen] with a `type` key"],
    );
}
