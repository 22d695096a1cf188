//! Drives the real `hostflow` binary over bad topologies and checks the exit code and every
//! `FILE:LINE:COL: error: ...` line of `validate`, `graph` and `run --config`, plus the happy path.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// The name every test topology is written under; commands run in its directory, so messages
/// start with exactly this.
const FILE: &str = "topology.toml";

/// `EX_CONFIG`: the topology has problems.
const INVALID: i32 = 78;
/// `EX_NOINPUT`: the topology file cannot be read.
const UNREADABLE: i32 = 66;

/// A temporary directory holding `topology.toml` with `text`.
fn topology(text: &str) -> TempDir {
    let dir = TempDir::new().expect("create a temporary directory");
    std::fs::write(dir.path().join(FILE), text).expect("write the topology file");
    dir
}

/// Runs `hostflow ARGS` in `dir`, without any `HOSTFLOW_*` variable of the caller's environment.
fn hostflow(dir: &Path, args: &[&str]) -> Output {
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

/// `hostflow validate` on `toml` exits 78 and prints exactly `expected` then the count line.
fn check(toml: &str, expected: &[&str]) {
    let dir = topology(toml);
    assert_rejected(&hostflow(dir.path(), &["validate", FILE]), expected);
}

const GENERATOR: &str = "[sources.gen]\ntype = \"generator\"\n";

#[test]
fn toml_syntax_errors() {
    check(
        "[sources.g]\ntype = \"generator\n",
        &["topology.toml:2:18: error: TOML syntax: invalid basic string, expected `\"`"],
    );
    check(
        "[sources.g\ntype = \"generator\"\n",
        &["topology.toml:1:11: error: TOML syntax: unclosed table, expected `]`"],
    );
}

#[test]
fn unknown_types_list_the_known_ones() {
    check(
        &format!(
            "{GENERATOR}\n[transforms.f]\ntype = \"fliter\"\ninputs = [\"gen\"]\n\n[sinks.out]\ntype = \"kafka\"\ninputs = [\"f\"]\n"
        ),
        &[
            "topology.toml:5:8: error: unknown transform type `fliter` for `f`; known transform types: filter",
            "    help: did you mean `filter`?",
            "topology.toml:9:8: error: unknown sink type `kafka` for `out`; known sink types: blackhole, console, file",
        ],
    );
}

#[test]
fn type_under_the_wrong_section() {
    check(
        &format!("{GENERATOR}\n[sinks.x]\ntype = \"filter\"\ninputs = [\"gen\"]\n"),
        &[
            "topology.toml:5:8: error: `filter` is a transform type, but `x` is declared under [sinks]; \
             known sink types: blackhole, console, file",
            "    help: move it to [transforms.x]",
        ],
    );
}

#[test]
fn input_naming_a_missing_component() {
    check(
        "[sources.generator]\ntype = \"generator\"\n\n[transforms.f]\ntype = \"filter\"\ninputs = [\"generator\"]\n\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"f\", \"generater\"]\n",
        &[
            "topology.toml:10:16: error: sink `out` reads from `generater`, but no component has that name",
            "    help: did you mean `generator`?",
        ],
    );
    // Nothing close enough: no guess.
    check(
        &format!("{GENERATOR}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\", \"kafka\"]\n"),
        &["topology.toml:6:18: error: sink `out` reads from `kafka`, but no component has that name"],
    );
}

#[test]
fn reading_from_a_sink() {
    check(
        &format!(
            "{GENERATOR}\n[sinks.a]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n\n[sinks.b]\ntype = \"blackhole\"\ninputs = [\"a\"]\n"
        ),
        &[
            "topology.toml:10:11: error: sink `b` reads from `a`, which is a sink",
            "    help: sinks produce no events; read from a source or transform",
        ],
    );
}

#[test]
fn cycles_print_their_path() {
    check(
        &format!(
            "{GENERATOR}\n[transforms.a]\ntype = \"filter\"\ninputs = [\"gen\", \"b\"]\n\n\
             [transforms.b]\ntype = \"filter\"\ninputs = [\"a\"]\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"b\"]\n"
        ),
        &[
            "topology.toml:6:1: error: cycle in the topology: b -> a -> b",
            "    help: events must flow from sources to sinks; remove one of these inputs",
        ],
    );
    check(
        &format!(
            "{GENERATOR}\n[transforms.t]\ntype = \"filter\"\ninputs = [\"t\", \"gen\"]\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"t\"]\n"
        ),
        &[
            "topology.toml:6:1: error: cycle in the topology: t -> t",
            "    help: events must flow from sources to sinks; remove one of these inputs",
        ],
    );
}

#[test]
fn transforms_and_sinks_need_inputs() {
    check(
        &format!(
            "{GENERATOR}\n[transforms.f]\ntype = \"filter\"\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = []\n\n\
             [sinks.hole]\ntype = \"blackhole\"\n\n[sinks.used]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n"
        ),
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
        "[sources.gen]\ntype = \"generator\"\ninputs = [\"other\"]\nbuffer = { capacity = 10 }\n\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n",
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
        "[sources.x]\ntype = \"generator\"\n\n[sources.gen]\ntype = \"generator\"\n\n\
         [transforms.x]\ntype = \"filter\"\ninputs = [\"gen\"]\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"x\"]\n",
        &[
            "topology.toml:7:13: error: duplicate component name `x`: [transforms.x] here and [sources.x] at line 1",
            "    help: component names are shared by sources, transforms and sinks; rename one",
        ],
    );
}

#[test]
fn bad_buffers() {
    let sink = |name: &str, buffer: &str| {
        format!("\n[sinks.{name}]\ntype = \"blackhole\"\ninputs = [\"gen\"]\nbuffer = {buffer}\n")
    };
    check(
        &[
            GENERATOR,
            &sink("a", "{ capacity = 0 }"),
            &sink("b", "{ when_full = \"drop_oldest\" }"),
            &sink("c", "{ capacity = 10, when_full = \"blok\" }"),
            &sink("d", "{ capacity = -1, size = 3 }"),
            &sink("e", "{ capacity = \"big\", when_full = 1 }"),
            &sink("f", "1000"),
        ]
        .concat(),
        &[
            "topology.toml:7:23: error: sink `a`: buffer: capacity must be a whole number of events of at least 1, got 0",
            "    help: a buffer of 0 events could never pass a batch; use e.g. capacity = 1000",
            "topology.toml:12:24: error: sink `b`: buffer: unknown when_full `drop_oldest`; expected \"block\" or \"drop_newest\"",
            "    help: did you mean \"drop_newest\"?",
            "topology.toml:17:39: error: sink `c`: buffer: unknown when_full `blok`; expected \"block\" or \"drop_newest\"",
            "    help: did you mean \"block\"?",
            "topology.toml:22:23: error: sink `d`: buffer: capacity must be a whole number of events of at least 1, got -1",
            "    help: a buffer of 0 events could never pass a batch; use e.g. capacity = 1000",
            "topology.toml:22:27: error: sink `d`: buffer: unknown key `size`; expected `capacity` or `when_full`",
            "topology.toml:27:23: error: sink `e`: buffer: capacity must be an integer number of events",
            "topology.toml:27:42: error: sink `e`: buffer: when_full must be a string",
            "topology.toml:32:10: error: sink `f`: buffer: must be a table, e.g. buffer = { capacity = 1000, when_full = \"block\" }",
        ],
    );
}

#[test]
fn unknown_component_keys_name_the_key_and_its_line() {
    check(
        "[sources.gen]\ntype = \"generator\"\nrat = 5\n\n[transforms.f]\ntype = \"filter\"\ninputs = [\"gen\"]\n\
         kind = [\"net_connect\"]\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"f\"]\npathh = \"out.ndjson\"\n",
        &[
            "topology.toml:3:1: error: source `gen`: unknown field `rat`, expected one of `rate`, `count`, `seed`, `mix`, `batch_size`",
            "topology.toml:8:1: error: transform `f`: unknown field `kind`, expected `kinds` or `conditions`",
            "topology.toml:13:1: error: sink `out`: unknown field `pathh`, expected `path` or `append`",
        ],
    );
}

#[test]
fn bad_names_types_and_top_level_keys() {
    check(
        "[sourcs.gen]\ntype = \"generator\"\n\n[sources.\"a b\"]\ntype = \"generator\"\n\n[sources.nt]\n\n\
         [sources.num]\ntype = 5\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"a b\", \"nt\", \"num\"]\n",
        &[
            "topology.toml:1:2: error: unknown top-level key `sourcs`; expected one of: api, sources, transforms, sinks",
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
        &format!(
            "{GENERATOR}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\", 3]\n\n\
             [sinks.one]\ntype = \"blackhole\"\ninputs = \"gen\"\n"
        ),
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
    check("[api]\nenabled = false\n", &expected);
}

/// One file with problems of six kinds, found by both stages of checking (the table parser and
/// the graph check): every one is reported, in file order, in one run.
const MANY_PROBLEMS: &str = r#"[sources.gen]
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
    "topology.toml:6:8: error: unknown transform type `fliter` for `f`; known transform types: filter",
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

const VALID: &str = r#"[api]
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
        "digraph hostflow {\n  rankdir=LR;\n  \
         \"gen\" [shape=invhouse label=\"gen\\n(generator)\"];\n  \
         \"f\" [shape=box label=\"f\\n(filter)\"];\n  \
         \"out\" [shape=house label=\"out\\n(file)\"];\n  \
         \"gen\" -> \"f\" [label=\"100 drop_newest\"];\n  \
         \"f\" -> \"out\" [label=\"4096 block\"];\n}\n"
    );

    // The same topology that `run_and_graph_on_an_invalid_topology_start_nothing` stops does
    // write its file once valid, so that test's "no file" means something.
    let ran = hostflow(dir.path(), &["run", "--config", FILE]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let events = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("the file sink wrote its file");
    assert_eq!(events.lines().count(), 10, "{events}");
}

#[test]
fn producers_need_consumers() {
    check(
        &format!(
            "{GENERATOR}\n[sources.idle]\ntype = \"generator\"\n\n[transforms.unused]\ntype = \"filter\"\ninputs = [\"gen\"]\n\n\
             [sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n"
        ),
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
    check(
        "[sources.a]\ntype = \"generator\"\nrate = 0\n\n[sources.b]\ntype = \"generator\"\nrate = -5.5\n\n\
         [sources.c]\ntype = \"generator\"\nmix = { process_exec = 1, net_conect = 2, kafka = 1 }\n\n\
         [sources.d]\ntype = \"generator\"\nmix = { process_exec = 0 }\n\n[sources.e]\ntype = \"generator\"\nrate = nan\n\n\
         [sources.f]\ntype = \"generator\"\nbatch_size = 0\n\n[sources.g]\ntype = \"generator\"\ncount = -1\n\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\"]\n",
        &[
            "topology.toml:3:8: error: source `a`: rate must be a positive number of events per second, got 0",
            "topology.toml:7:8: error: source `b`: rate must be a positive number of events per second, got -5.5",
            "topology.toml:11:27: error: source `c`: unknown event kind `net_conect` in mix; known kinds: \
             process_exec, process_exit, process_fork, net_connect, file_open, process_sample, agent_diag",
            "    help: did you mean `net_connect`?",
            "topology.toml:11:43: error: source `c`: unknown event kind `kafka` in mix; known kinds: \
             process_exec, process_exit, process_fork, net_connect, file_open, process_sample, agent_diag",
            "topology.toml:15:7: error: source `d`: mix gives no kind a weight above 0; nothing would be generated",
            "topology.toml:19:8: error: source `e`: rate must be a positive number of events per second, got NaN",
            "topology.toml:23:14: error: source `f`: invalid value: integer `0`, expected a nonzero usize",
            "topology.toml:27:9: error: source `g`: invalid value: integer `-1`, expected u64",
        ],
    );
}
