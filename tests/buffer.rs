//! Disk buffers through the real binary: a run delivers everything and
//! leaves nothing unacknowledged, with the ledger balanced in the report;
//! a directory the agent cannot use is refused before anything runs, with
//! the path and what to do, and nothing in it is touched; `validate
//! --buffer` reads a buffer without changing it.

mod support;

use std::time::Duration;

use support::{hostflow, Agent, Workspace};

fn topology(buffer_dir: &std::path::Path, count: u64) -> String {
    format!(
        r#"
[api]
enabled = false

[sources.gen]
type = "generator"
count = {count}
batch_size = 256
mix = {{ process_exec = 1, net_connect = 1 }}

[sinks.out]
type = "file"
inputs = ["gen"]
path = "out.ndjson"
buffer = {{ type = "disk", path = "{}", max_bytes = 16777216 }}
"#,
        buffer_dir.display()
    )
}

#[test]
fn a_disk_buffered_run_delivers_everything_and_leaves_nothing_behind() {
    let ws = Workspace::new();
    let buffer = ws.path("buffer");
    let config = ws.write("topology.toml", &topology(&buffer, 20_000));
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    let mut ids = ws.event_ids("out.ndjson");
    assert_eq!(ids.len(), 20_000, "every event once");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20_000, "no duplicates without a crash");
    let report = finished.report();
    assert_eq!(report["components"]["out"]["sent"], 20_000);
    assert_eq!(report["ledger"]["imbalances"], serde_json::json!([]), "{report}");
    let out = report["ledger"]["components"].as_array().expect("components").iter().find(|c| c["name"] == "out");
    let buffer_terms = &out.expect("the sink's row")["buffer"];
    assert_eq!(buffer_terms["disk"], true);
    assert_eq!(buffer_terms["accepted"], 20_000);
    assert_eq!(buffer_terms["queued"], 0);

    let checked = hostflow().arg("validate").arg("--buffer").arg(&buffer).output().expect("run validate");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 problem(s)"), "{stdout}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&buffer).expect("buffer dir").permissions());
    assert_eq!(mode & 0o777, 0o700, "the buffer directory is private");
}

#[test]
fn a_directory_holding_foreign_files_is_refused_and_left_alone() {
    let ws = Workspace::new();
    let buffer = ws.path("buffer");
    std::fs::create_dir(&buffer).expect("buffer dir");
    let foreign = buffer.join("notes.txt");
    std::fs::write(&foreign, "mine").expect("foreign file");
    let config = ws.write("topology.toml", &topology(&buffer, 10));
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    assert!(finished.stderr.contains("notes.txt"), "the message names the file:\n{}", finished.stderr);
    assert!(finished.stderr.contains("nothing was deleted"), "{}", finished.stderr);
    assert_eq!(std::fs::read_to_string(&foreign).expect("still there"), "mine");
    assert!(!ws.path("out.ndjson").exists() || ws.event_ids("out.ndjson").is_empty(), "nothing ran");

    let checked = hostflow().arg("validate").arg("--buffer").arg(&buffer).output().expect("run validate");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(65), "{stdout}");
    assert!(stdout.contains("UNKNOWN notes.txt"), "{stdout}");
}

#[test]
fn a_path_that_is_a_file_is_refused_with_what_to_do() {
    let ws = Workspace::new();
    let not_a_dir = ws.write("buffer", "a file");
    let config = ws.write("topology.toml", &topology(&not_a_dir, 10));
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    assert!(finished.stderr.contains("the disk buffer of `out` could not be opened"), "{}", finished.stderr);
    assert!(finished.stderr.contains("not a directory"), "{}", finished.stderr);
}

#[test]
fn a_disk_buffer_key_on_a_memory_buffer_is_a_config_error() {
    let ws = Workspace::new();
    let config = ws.write(
        "topology.toml",
        "[api]\nenabled = false\n[sources.gen]\ntype = \"generator\"\ncount = 1\n[sinks.out]\ntype = \"blackhole\"\n\
         inputs = [\"gen\"]\nbuffer = { max_bytes = 16777216 }\n",
    );
    let output = hostflow().arg("validate").arg(&config).output().expect("run validate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("topology.toml:9:"), "names the line: {stderr}");
    assert!(stderr.contains("`max_bytes` applies only to a disk buffer"), "{stderr}");
}
