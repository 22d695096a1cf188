//! Property tests: arbitrary bytes, Sigma-shaped token soup and random
//! conditions never panic the loader or the condition parser. A tiny
//! deterministic xorshift generator, so a failure replays.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::super::condition;
use super::super::SigmaLoader;
use crate::rule::{Expr, Rule};
use crate::yaml::{self, Node};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Loads every document of `text` (Sigma or not) and resolves.
fn load_text(text: &str) -> (Vec<Rule>, usize) {
    let file: Arc<Path> = Arc::from(Path::new("fuzz.yml"));
    let mut loader = SigmaLoader::new();
    if let Ok(docs) = yaml::parse(text) {
        for doc in &docs {
            let node = Node::new(doc);
            let _ = SigmaLoader::is_sigma(node);
            loader.add_document(&file, node);
        }
    }
    let (rules, problems) = loader.finish();
    (rules, problems.len())
}

const FIELDS: &[&str] = &[
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "ProcessId",
    "ParentProcessId",
    "TargetFilename",
    "DestinationIp",
    "DestinationPort",
    "Initiated",
    "Protocol",
    "DestinationHostname",
    "type",
    "a0",
    "a1",
    "a99999",
    "name",
    "exe",
    "comm",
    "SYSCALL",
    "key",
    "LogonId",
    "",
    "Hashes",
    "ProcessGuid",
];
const MODS: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "cased",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
    "neq",
    "windash",
    "base64",
    "base64offset",
    "wide",
    "utf16le",
    "expand",
    "fieldref",
    "hour",
    "bogus",
];
const VALUES: &[&str] = &[
    "x",
    "'*'",
    "'a*b?c'",
    "'\\*'",
    "'\\\\'",
    "'\\'",
    "4444",
    "-1",
    "99999999999999999999",
    "null",
    "true",
    "'false'",
    "'10.0.0.0/8'",
    "'10.'",
    "'::1'",
    "'fe80::/10'",
    "'(?<=x)'",
    "'[a-'",
    "''",
    "'-e /c –x'",
    "'- - - - -'",
    "'Ω–ü'",
    "EXECVE",
    "PATH",
    "SYSCALL",
    "TTY",
    "setuid",
    "memfd_create",
    "[a, '*b', 3]",
    "[]",
    "{a: b}",
    "[[x]]",
    "1.5",
    "'192.168.*'",
    "'a\\*b*'",
];
const CONDITION_TOKENS: &[&str] = &[
    "sel", "sel_a", "filter", "_x", "sel_*", "*", "(", ")", "and", "or", "not", "1", "2", "all", "of", "them", "|",
    "count()", ">", "near", "AND", "Not", "0001", "x*y",
];
const CORRELATION_LINES: &[&str] = &[
    "  type: event_count",
    "  type: value_count",
    "  type: temporal",
    "  type: temporal_ordered",
    "  type: x",
    "  rules: [r1, r2]",
    "  rules: r1",
    "  rules: [c1]",
    "  rules: [{a: b}]",
    "  group-by: [User, Image]",
    "  group-by: [Lineage, ProcessGuid, ComputerName]",
    "  group-by: [DestinationHostname]",
    "  timespan: 5m",
    "  timespan: 0s",
    "  timespan: 99999999999999d",
    "  timespan: x",
    "  condition: {gte: 3}",
    "  condition: {gt: 0}",
    "  condition: {gte: -9223372036854775808}",
    "  condition: {field: DestinationPort, gt: 5}",
    "  condition: {lt: 3}",
    "  condition: x",
    "  generate: true",
    "  generate: 3",
    "  aliases: {}",
];

/// Bytes that matter to YAML and Sigma, spliced into valid rules.
const SPLICE: &[u8] = b"*?|:-'\"[]{}\n ";

fn condition_soup(rng: &mut XorShift) -> String {
    let n = rng.below(12);
    (0..n).map(|_| rng.pick(CONDITION_TOKENS)).collect::<Vec<_>>().join(" ")
}

/// A Sigma-shaped document with random parts.
fn sigma_soup(rng: &mut XorShift, id: usize) -> String {
    let mut out = String::new();
    if rng.below(8) != 0 {
        out.push_str("title: fuzz\n");
    }
    match rng.below(6) {
        0 => {}
        1 => out.push_str(&format!("name: r{id}\n")),
        _ => out.push_str(&format!("id: r{}\n", id % 4)),
    }
    out.push_str(&format!("level: {}\n", rng.pick(&["high", "low", "critical", "x", "[1]"])));
    out.push_str(&format!("tags: [{}]\n", rng.pick(&["attack.t1059", "attack.t1059.004", "x", "attack.", "{a: 1}"])));
    if rng.below(5) == 0 {
        out.push_str("correlation:\n");
        for _ in 0..rng.below(6) {
            out.push_str(rng.pick(CORRELATION_LINES));
            out.push('\n');
        }
        return out;
    }
    let source = rng.pick(&[
        "category: process_creation",
        "category: file_event",
        "category: network_connection",
        "service: auditd",
        "service: syslog",
        "category: dns",
    ]);
    out.push_str(&format!("logsource:\n  product: {}\n  {source}\n", rng.pick(&["linux", "linux", "windows"])));
    out.push_str("detection:\n");
    let selections = ["sel", "sel_a", "filter", "_x"];
    for name in selections.iter().take(1 + rng.below(4)) {
        out.push_str(&format!("  {name}:\n"));
        let list = rng.below(4) == 0;
        for i in 0..1 + rng.below(4) {
            let mut key = rng.pick(FIELDS).to_owned();
            for _ in 0..rng.below(3) {
                key.push('|');
                key.push_str(rng.pick(MODS));
            }
            let dash = if list && i == 0 {
                "- "
            } else if list {
                "  "
            } else {
                ""
            };
            out.push_str(&format!("    {dash}'{key}': {}\n", rng.pick(VALUES)));
        }
    }
    if rng.below(10) != 0 {
        out.push_str(&format!("  condition: '{}'\n", condition_soup(rng)));
    }
    out
}

#[test]
fn arbitrary_input_never_panics() {
    let started = Instant::now();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut loaded = 0;
    // Arbitrary bytes (as text, lossily).
    for _ in 0..6_000 {
        let len = rng.below(160);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        loaded += load_text(&String::from_utf8_lossy(&bytes)).0.len();
    }
    // Arbitrary bytes spliced into a valid rule.
    let valid = super::rule_with("process_creation", &["CommandLine|contains: [a, 'b*c']", "Image: /bin/sh"]);
    for _ in 0..4_000 {
        let mut bytes = valid.clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, SPLICE[rng.below(SPLICE.len())]),
            }
        }
        loaded += load_text(&String::from_utf8_lossy(&bytes)).0.len();
    }
    // Sigma-shaped token soup, several documents per file.
    for case in 0..10_000 {
        let docs: Vec<String> = (0..1 + rng.below(3)).map(|d| sigma_soup(&mut rng, case * 3 + d)).collect();
        loaded += load_text(&docs.join("---\n")).0.len();
    }
    // The condition parser and resolver on their own.
    let selections: Vec<(String, Expr)> =
        ["sel", "sel_a", "filter", "_x"].iter().map(|n| (n.to_string(), Expr::always())).collect();
    for _ in 0..20_000 {
        let text = condition_soup(&mut rng);
        if let Ok(cond) = condition::parse(&text) {
            let _ = condition::resolve(&cond, &selections);
        }
    }
    assert!(loaded > 100, "the soup should load some rules ({loaded})");
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs() < 20, "took {elapsed:?}");
}
