//! Tests of loading a rules directory: uniqueness, digests, unreadable input and fuzzing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

fn texts(files: &[(&str, &str)]) -> Vec<(PathBuf, std::io::Result<Vec<u8>>)> {
    files.iter().map(|(p, t)| (PathBuf::from(p), Ok(t.as_bytes().to_vec()))).collect()
}

const RULE: &str = "rules:\n  - id: hf-a\n    title: a\n    severity: low\n    confidence: low\n    match: { kind: process_exec, exe: /bin/a }\n";

#[test]
fn duplicate_ids_across_files_refuse_the_set_naming_both_places() {
    let loaded = load_texts(texts(&[("r/one.yml", RULE), ("r/two.yml", RULE)]));
    assert!(loaded.set.is_none());
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("r/two.yml:2: rule `hf-a`: duplicate rule id; first defined at r/one.yml:2"),
        "{problems:#?}"
    );
}

#[test]
fn the_digest_follows_the_bytes_and_nothing_else() {
    let a = load_texts(texts(&[("r/one.yml", RULE)])).set.expect("loads");
    let b = load_texts(texts(&[("r/one.yml", RULE)])).set.expect("loads");
    assert_eq!(a.digest, b.digest);
    let edited = RULE.replace("/bin/a", "/bin/b");
    let c = load_texts(texts(&[("r/one.yml", &edited)])).set.expect("loads");
    assert_ne!(a.digest, c.digest);
    assert_eq!(a.counts().get(&pipeline::DetectionLayer::L1), Some(&1));
}

#[test]
fn unreadable_non_utf8_and_unknown_documents_are_problems() {
    let loaded = load_texts(vec![
        (PathBuf::from("r/gone.yml"), Err(std::io::Error::other("gone"))),
        (PathBuf::from("r/bin.yml"), Ok(vec![0xff, 0xfe, 0x00])),
        (PathBuf::from("r/other.yml"), Ok(b"just: a mapping\n".to_vec())),
        (PathBuf::from("r/bad.yml"), Ok(b"rules: [\n".to_vec())),
    ]);
    assert!(loaded.set.is_none());
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("cannot read"));
    assert!(problems[1].contains("not UTF-8"));
    assert!(problems[2].contains("neither a hostflow rule file nor a Sigma rule"));
    assert!(problems[3].contains("not valid YAML"));
}

/// A deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "rules:",
    "ioc_sets:",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "id: ",
    "title: ",
    "severity: ",
    "confidence: ",
    "match: ",
    "count: ",
    "sequence: ",
    "steps: ",
    "within: ",
    "kind: ",
    "exe: ",
    "{",
    "}",
    "[",
    "]",
    ",",
    ": ",
    "prefix: ",
    "regex: ",
    "cidr: ",
    "'(?i)a+'",
    "\"(\"",
    "10.0.0.0/8",
    "::1/129",
    "all: ",
    "any: ",
    "not: ",
    "process_exec",
    "high",
    "low",
    "1s",
    "0s",
    "99999999999999999999d",
    "more_than: ",
    "-1",
    "argv[9999]",
    "argv[",
    "&a ",
    "*a",
    "!!str ",
    "---\n",
    "? ",
    "|\n",
    "detection:",
    "logsource:",
    "condition: ",
    "selection",
    " and ",
    " or ",
    " not ",
    "1 of sel*",
    "(",
    ")",
    "product: linux",
    "category: process_creation",
    "Image|endswith: ",
    "CommandLine|contains|all: ",
    "correlation:",
    "type: temporal",
    "group-by: ",
    "timespan: ",
    "in_set: ",
    "x",
    "é",
    "\t",
    "\"",
    "'",
    "#",
    "%",
    "@",
];

/// Issue #15: "Fuzz the rule parser and the Sigma front end: no panic, no
/// hang." Random bytes, random token soup and mutations of a valid file,
/// through the whole loader (YAML, native, Sigma, compile).
#[test]
fn arbitrary_input_never_panics_or_hangs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    for case in 0..30_000 {
        let text: Vec<u8> = match case % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => (0..rng.below(60)).map(|_| TOKENS[rng.below(TOKENS.len())]).collect::<String>().into_bytes(),
            _ => {
                let mut bytes = RULE.as_bytes().to_vec();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    match rng.below(3) {
                        0 => bytes[at] = TOKENS[rng.below(TOKENS.len())].as_bytes()[0],
                        1 => {
                            bytes.remove(at);
                        }
                        _ => bytes.splice(at..at, TOKENS[rng.below(TOKENS.len())].bytes()).for_each(drop),
                    }
                }
                bytes
            }
        };
        let loaded = load_texts(vec![(PathBuf::from("fuzz.yml"), Ok(text))]);
        // Loaded or refused with reasons, never both empty-handed.
        assert!(loaded.set.is_some() || loaded.problems().count() > 0 || loaded.files.is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
}

#[test]
fn an_unsupported_sigma_rule_is_skipped_and_counted_while_the_rest_loads() {
    let sigma = "title: paste site by name\nid: 11111111-2222-4333-8444-555555555555\nlogsource: { product: linux, category: network_connection }\ndetection:\n  selection:\n    DestinationHostname|endswith: '.example'\n  condition: selection\nlevel: high\n";
    let loaded = load_texts(texts(&[("r/native.yml", RULE), ("r/sigma.yml", sigma)]));
    assert_eq!(loaded.problems().count(), 0);
    let rejected: Vec<String> = loaded.rejected().map(ToString::to_string).collect();
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert!(rejected[0].starts_with("r/sigma.yml:6: rule `11111111-2222-4333-8444-555555555555`"), "{rejected:#?}");
    let set = loaded.set.expect("the rest loads");
    assert_eq!((set.rules.len(), set.rejected), (1, 1));
    // A Sigma file that is not YAML is a problem, not a rejection.
    let broken = load_texts(texts(&[("r/native.yml", RULE), ("r/sigma.yml", "title: x\ndetection: [\n")]));
    assert!(broken.set.is_none());
}
