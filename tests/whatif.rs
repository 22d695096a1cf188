//! Rule what-if through the real binary (issue #16): `hostflow replay
//! --spool DIR --rules NEW --diff OLD` on a spool made by `hostflow run`
//! from the eval fixture's events. OLD is the default pack's directory,
//! NEW the same pack with one rule taken out and one added: the diff names
//! exactly those two, with the right counts and event ids, the same bytes
//! on every run; identical sets give an empty diff; without a topology or
//! both rule sets the command says what it needs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use detect::cases::{events_of, load_cases};
use pipeline::Event;
use serde_json::{json, Value};
use support::{hostflow, Agent, Workspace};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The fixture's events, and a spool of them written by the real binary.
fn spool(ws: &Workspace) -> (Vec<Event>, PathBuf) {
    let (cases, problems) = load_cases(&repo("tests/data/eval"));
    assert!(problems.is_empty(), "{problems:#?}");
    let events = events_of(&cases);
    let ndjson = ws.path("events.ndjson");
    let mut bytes = Vec::new();
    sinks::ndjson::encode_batch(&events, &mut bytes);
    std::fs::write(&ndjson, bytes).expect("write the events");
    let spool = ws.path("spool");
    let config = ws.write(
        "record.toml",
        &format!(
            "[api]\nenabled = false\n\n[sources.replay]\ntype = \"replay\"\nformat = \"ndjson\"\npath = {}\n\n\
             [sinks.spool]\ntype = \"arrow_spool\"\ninputs = [\"replay\"]\npath = {}\n",
            toml_string(&ndjson),
            toml_string(&spool)
        ),
    );
    let finished = Agent::start(ws, &config).wait(Duration::from_secs(120));
    assert_eq!(finished.code, Some(0), "spooling failed:\n{}", finished.stderr);
    (events, spool)
}

/// The pack's directory copied with `hf-linux-shadow-read` taken out and
/// a rule of our own added in a file of its own.
fn changed_pack(ws: &Workspace) -> PathBuf {
    let dir = ws.path("new-rules");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut removed = false;
    for entry in std::fs::read_dir(repo("rules/linux")).expect("rules/linux") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read a rule file");
        let mut kept = Vec::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.starts_with("  - id: ") {
                skipping = line == "  - id: hf-linux-shadow-read";
                removed |= skipping;
            }
            if !skipping {
                kept.push(line);
            }
        }
        std::fs::write(dir.join(path.file_name().expect("name")), kept.join("\n") + "\n").expect("write");
    }
    assert!(removed, "hf-linux-shadow-read is in the pack");
    std::fs::write(
        dir.join("whatif.yml"),
        "rules:\n  - id: hf-test-curl-exec\n    title: curl ran\n    severity: low\n    confidence: low\n    \
         match:\n      kind: process_exec\n      exe: { suffix: [/curl] }\n",
    )
    .expect("write the new rule");
    dir
}

fn replay(args: &[&Path], json: bool) -> Output {
    let mut command = hostflow();
    command.arg("replay").arg("--spool").arg(args[0]).arg("--rules").arg(args[1]).arg("--diff").arg(args[2]);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("run hostflow replay");
    println!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn the_diff_names_the_removed_and_the_added_rule_with_their_counts_the_same_bytes_twice() {
    let ws = Workspace::new();
    let (events, spool) = spool(&ws);
    let new = changed_pack(&ws);
    let old = repo("rules/linux");

    // What the two changed rules rest on, from the events themselves.
    let curl_execs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::ProcessExec(exec) if exec.exe.ends_with("/curl") => Some(exec.meta.event_id),
            _ => None,
        })
        .collect();
    assert_eq!(curl_execs.len(), 2, "the fixture runs curl twice");
    let shadow_opens: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::FileOpen(open) if &*open.path == "/etc/shadow" => Some(open.meta.event_id),
            _ => None,
        })
        .collect();
    assert_eq!(shadow_opens.len(), 1, "the fixture reads /etc/shadow once");

    let first = replay(&[&spool, &new, &old], true);
    assert_eq!(first.status.code(), Some(0));
    let diff: Value = serde_json::from_slice(&first.stdout).expect("--json prints JSON");
    assert_eq!(diff["events"], events.len());
    assert_eq!(diff["added"], 2, "{diff:#}");
    assert_eq!(diff["removed"], 1);
    let ids = |list: &[u64]| list.iter().map(|id| json!([id])).collect::<Vec<_>>();
    assert_eq!(
        diff["rules"],
        json!([
            {"rule_id": "hf-linux-shadow-read", "added": 0, "removed": 1, "first_added": [], "first_removed": ids(&shadow_opens)},
            {"rule_id": "hf-test-curl-exec", "added": 2, "removed": 0, "first_added": ids(&curl_execs), "first_removed": []},
        ])
    );
    let detections = |side: &str| diff[side]["detections"].as_u64().expect("detections");
    assert_eq!(detections("new") + 1, detections("old") + 2);

    let again = replay(&[&spool, &new, &old], true);
    assert!(first.stdout == again.stdout, "two what-ifs printed different JSON");

    let text = replay(&[&spool, &new, &old], false);
    assert_eq!(text.status.code(), Some(0));
    let shown = String::from_utf8_lossy(&text.stdout).into_owned();
    let show = |ids: &[u64]| ids.iter().map(|id| format!("[{id}]")).collect::<Vec<_>>().join(" ");
    assert!(shown.contains(&format!("-1      hf-linux-shadow-read  first: {}", show(&shadow_opens))), "{shown}");
    assert!(shown.contains(&format!("+2      hf-test-curl-exec  first: {}", show(&curl_execs))), "{shown}");
    assert!(shown.contains("2 rule(s) differ: 2 detection(s) added, 1 removed"), "{shown}");
    let text_again = replay(&[&spool, &new, &old], false);
    assert!(text.stdout == text_again.stdout, "two what-ifs printed different text");
}

#[test]
fn identical_rule_sets_give_an_empty_diff_and_a_missing_argument_is_explained() {
    let ws = Workspace::new();
    let (_, spool) = spool(&ws);
    // The pack's directory and a copy of it: the same rules under another
    // path (so another digest).
    let copy = ws.path("copy");
    std::fs::create_dir_all(&copy).expect("dir");
    for entry in std::fs::read_dir(repo("rules/linux")).expect("rules/linux") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.join(path.file_name().expect("name"))).expect("copy a rule file");
    }
    let output = replay(&[&spool, &copy, &repo("rules/linux")], true);
    assert_eq!(output.status.code(), Some(0));
    let diff: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(diff["rules"], json!([]));
    assert_eq!((diff["added"].as_u64(), diff["removed"].as_u64()), (Some(0), Some(0)));
    assert_eq!(diff["new"]["detections"], diff["old"]["detections"]);
    assert_ne!(diff["new"]["ruleset"], diff["old"]["ruleset"], "the digest covers the files' paths");
    let output = replay(&[&spool, &repo("rules/linux"), &repo("rules/linux")], false);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("no difference: both rule sets give the same detections"), "{shown}");

    let output = hostflow().arg("replay").arg("--spool").arg(&spool).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--config FILE") && stderr.contains("--rules NEW --diff OLD"), "{stderr}");
    let output =
        hostflow().arg("replay").arg("--spool").arg(&spool).arg("--rules").arg("builtin").output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--diff"), "--rules without --diff");
}
