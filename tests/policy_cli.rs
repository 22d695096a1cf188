//! `hostflow policy …` and `hostflow audit verify` through the real
//! binary (issue #17): `check` prints every problem by file:line with exit
//! 78 (66 when unreadable) or the counts and digest; keygen → sign →
//! verify accepts, and a tampered, unsigned or foreign-key policy is
//! rejected; an edited or deleted audit-log line is named; `rollback` and
//! `clear --emergency` POST to the agent's API (a canned listener here)
//! and say so when no agent answers.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, UNIX_EPOCH};

use support::{hostflow, Workspace};

fn run(args: &[&str]) -> Output {
    hostflow().args(args).output().expect("run hostflow")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

const GOOD: &str = r#"[policy]
mode = "enforce"
description = "block instance metadata"

[[rule]]
id = "deny-metadata"
action = "deny"
cidrs = ["169.254.169.254/32", "fd00:ec2::254/128"]
ports = [80, "8000-8100"]
protocol = "tcp"
priority = 100

[[rule]]
id = "audit-rfc1918"
action = "audit"
cidrs = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
"#;

#[test]
fn check_reports_counts_and_digest_or_every_problem() {
    let workspace = Workspace::new();
    let good = workspace.write("good.toml", GOOD);
    let output = run(&["policy", "check", arg(&good)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("ok (2 rules; 4 IPv4 and 1 IPv6 prefixes holding 7 kernel rules; mode enforce)"), "{text}");
    let digest = text.lines().nth(1).and_then(|line| line.strip_prefix("digest ")).expect("digest line");
    assert_eq!(digest.len(), 64);

    let json = run(&["policy", "check", "--json", arg(&good)]);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(document["ok"], true);
    assert_eq!(document["rules"], 2);
    assert_eq!(document["prefixes"]["v6"], 1);
    assert_eq!(document["digest"], digest);

    let bad = workspace.write(
        "bad.toml",
        "[[rule]]\nid = \"x\"\naction = \"deny\"\ncidrs = [\"0.0.0.0/0\", \"10.0.0.1/8\"]\n\n[[rule]]\nid = \"y\"\naction = \"alow\"\ncidrs = [\"::/0\"]\n",
    );
    let output = run(&["policy", "check", arg(&bad)]);
    assert_eq!(output.status.code(), Some(78));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    let file = bad.display().to_string();
    assert_eq!(
        lines,
        [
            format!("{file}:4: rule `x`: CIDR `10.0.0.1/8` has host bits set (hint: write the network, 10.0.0.0/8)"),
            format!("{file}:8: rule `y`: unknown action `alow` (hint: did you mean \"allow\"?)"),
        ],
        "the deny of 0.0.0.0/0 is checked once the rule parses"
    );
    let fixed = workspace.write(
        "fixed.toml",
        &std::fs::read_to_string(&bad).expect("read").replace("10.0.0.1/8", "10.0.0.0/8").replace("alow", "allow"),
    );
    let output = run(&["policy", "check", arg(&fixed)]);
    assert_eq!(output.status.code(), Some(78));
    assert!(stdout(&output).contains(":4: rule `x`: denies every IPv4 destination (0.0.0.0/0)"), "{}", stdout(&output));

    let json = run(&["policy", "check", "--json", arg(&bad)]);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(document["problems"][1]["line"], 8);
    assert_eq!(document["problems"][1]["rule"], "y");

    let missing = run(&["policy", "check", arg(&workspace.path("absent.toml"))]);
    assert_eq!(missing.status.code(), Some(66));
}

#[test]
fn keygen_sign_verify_and_rejections() {
    let workspace = Workspace::new();
    let trust = workspace.path("trust");
    std::fs::create_dir(&trust).expect("trust dir");
    let output = run(&["policy", "keygen", "--out", arg(&trust.join("ops"))]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let key = trust.join("ops.key");
    let policy = workspace.write("policy.toml", GOOD);

    let unsigned = run(&["policy", "verify", "--trust", arg(&trust), arg(&policy)]);
    assert_eq!(unsigned.status.code(), Some(65));
    assert!(stdout(&unsigned).contains("rejected: unsigned"), "{}", stdout(&unsigned));

    let signed = run(&["policy", "sign", "--key", arg(&key), arg(&policy)]);
    assert_eq!(signed.status.code(), Some(0), "{}", stderr(&signed));
    assert!(workspace.path("policy.toml.sig").is_file());
    let good = run(&["policy", "verify", "--trust", arg(&trust), arg(&policy)]);
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    assert!(stdout(&good).contains("good signature by trusted key ops ("), "{}", stdout(&good));

    // One changed byte of meaning.
    std::fs::write(&policy, GOOD.replace("priority = 100", "priority = 101")).expect("tamper");
    let tampered = run(&["policy", "verify", "--trust", arg(&trust), arg(&policy)]);
    assert_eq!(tampered.status.code(), Some(65));
    assert!(stdout(&tampered).contains("rejected: bad signature"), "{}", stdout(&tampered));

    let other = workspace.path("other");
    std::fs::create_dir(&other).expect("dir");
    assert!(run(&["policy", "keygen", "--out", arg(&other.join("eve"))]).status.success());
    assert!(run(&["policy", "sign", "--key", arg(&other.join("eve.key")), arg(&policy)]).status.success());
    let unknown = run(&["policy", "verify", "--trust", arg(&trust), arg(&policy)]);
    assert_eq!(unknown.status.code(), Some(65));
    assert!(stdout(&unknown).contains("rejected: unknown key"), "{}", stdout(&unknown));
}

fn write_audit_log(path: &Path, n: usize) {
    let mut log = policy::audit::AuditLog::open(path).expect("open");
    for index in 0..n {
        let entry =
            policy::audit::Entry { event: "apply".into(), digest: Some(format!("{index:064x}")), ..Default::default() };
        log.append(&entry, UNIX_EPOCH + Duration::from_secs(1_800_000_000 + index as u64)).expect("append");
    }
}

#[test]
fn audit_verify_names_the_edited_or_deleted_line() {
    let workspace = Workspace::new();
    let log = workspace.path("audit.ndjson");
    write_audit_log(&log, 4);
    let ok = run(&["audit", "verify", arg(&log)]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(stdout(&ok).trim(), "ok: 4 lines");

    let original = std::fs::read_to_string(&log).expect("read");
    let lines: Vec<&str> = original.lines().collect();
    let edited = original.replacen(lines[2], &lines[2].replace("\"apply\"", "\"clear\""), 1);
    std::fs::write(&log, edited).expect("edit");
    let output = run(&["audit", "verify", arg(&log)]);
    assert_eq!(output.status.code(), Some(65));
    assert!(stdout(&output).starts_with("line 3: "), "{}", stdout(&output));

    let deleted: String = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&log, deleted).expect("delete");
    let output = run(&["audit", "verify", arg(&log)]);
    assert_eq!(output.status.code(), Some(65));
    assert!(stdout(&output).starts_with("line 2: "), "{}", stdout(&output));

    let missing = run(&["audit", "verify", arg(&workspace.path("absent.ndjson"))]);
    assert_eq!(missing.status.code(), Some(66));
}

/// README's policy example must stay a valid policy.
#[test]
fn readme_policy_example_checks() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let section = readme.split("### Network policy files").nth(1).expect("README has the policy section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a ```toml example");
    let workspace = Workspace::new();
    let path = workspace.write("readme.toml", example);
    let output = run(&["policy", "check", arg(&path)]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("ok (1 rule;"), "{}", stdout(&output));
}

/// Answers one request with `body` and hands back the request it read.
fn canned_agent(status: &str, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let status = status.to_owned();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).expect("write");
        String::from_utf8_lossy(&request).into_owned()
    });
    (addr, handle)
}

#[test]
fn rollback_and_clear_ask_the_agent() {
    let (addr, agent) = canned_agent("200 OK", r#"{"ok":true,"digest":"abc123"}"#);
    let output = run(&["policy", "rollback", "2", "--api", &addr]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("rolled back; policy now in force: abc123"), "{}", stdout(&output));
    let request = agent.join().expect("agent");
    assert!(request.starts_with("POST /policy/rollback?steps=2 HTTP/1.1\r\n"), "{request}");

    let (addr, agent) = canned_agent("200 OK", r#"{"ok":true,"digest":"def456"}"#);
    let output = run(&["policy", "clear", "--emergency", "--api", &format!("http://{addr}/")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("def456"));
    assert!(agent.join().expect("agent").starts_with("POST /policy/clear HTTP/1.1\r\n"));

    let (addr, agent) = canned_agent("409 Conflict", r#"{"ok":false,"error":"no policy 1 step(s) back"}"#);
    let output = run(&["policy", "rollback", "--api", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("the agent refused: no policy 1 step(s) back"), "{}", stderr(&output));
    assert!(agent.join().expect("agent").starts_with("POST /policy/rollback?steps=1 "));

    // `--emergency` is required.
    assert_eq!(run(&["policy", "clear"]).status.code(), Some(2));

    // Nobody listening: a port just freed.
    let free = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let output = run(&["policy", "rollback", "--api", &free]);
    assert_eq!(output.status.code(), Some(69));
    assert!(stderr(&output).contains(&format!("no agent API at {free} (is hostflow running?)")), "{}", stderr(&output));
}
