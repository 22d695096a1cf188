//! No input panics the policy compiler: thousands of random and mutated
//! policy texts (a fixed-seed generator, so a failure reproduces) go
//! through `compile_str`, and each either compiles or reports problems.

use std::path::Path;

use policy::{compile_str, ValidationContext};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEED: &str = r#"[policy]
mode = "enforce"
description = "seed"

[[rule]]
id = "a-1"
action = "deny"
cidrs = ["10.0.0.0/8", "2001:db8::/32"]
ports = [80, "8000-8100"]
protocol = "tcp"
priority = 100
exe = "/usr/bin/curl"
cgroup = "/system.slice/x.service"
force = true

[[rule]]
id = "b.2"
action = "allow"
cidrs = ["10.1.0.0/16"]
priority = 200
force = true
"#;

const PIECES: &[&str] = &[
    "[[rule]]",
    "[policy]",
    "id = ",
    "\"",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "/",
    "-",
    ":",
    "0x1F",
    "-1",
    "65536",
    "4294967296",
    "99999999999999999999",
    "::",
    "0.0.0.0/0",
    "::/0",
    "127.0.0.1/32",
    "::1/128",
    "/33",
    "/129",
    "action = \"deny\"",
    "action = 3",
    "cidrs = []",
    "ports = []",
    "ports = [\"5-1\"]",
    "priority = -5",
    "force = \"yes\"",
    "exe = \"relative\"",
    "cgroup = \"/../x\"",
    "\\u0000",
    "é",
    "🦀",
    "mode = \"enforce\"",
    "[[policy]]",
    "rule = 5",
    "policy = []",
    "cidrs = [1]",
    "ports = [1.5]",
    "id = \"a-1\"",
    "x = { a = 1 }",
    "1979-05-27T07:32:00Z",
    "nan",
    "inf",
    "'''",
    "\"\"\"",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                bytes.splice(at..at, piece.iter().copied());
            }
            2 if at < bytes.len() => bytes[at] = (rng.next() & 0x7f) as u8,
            _ => {
                let piece = PIECES[rng.below(PIECES.len())];
                bytes.splice(at..at, piece.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn random_and_mutated_policies_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let context = ValidationContext {
        protected: vec![policy::Protected { addr: "10.1.2.3".parse().expect("addr"), port: None, what: "sink".into() }],
    };
    assert!(compile_str(SEED, Path::new("seed.toml"), &context).is_ok(), "the seed itself is valid");
    let mut compiled = 0;
    for round in 0..4000 {
        let text = match round % 4 {
            0 => mutate(&mut rng, SEED),
            1 => {
                let once = mutate(&mut rng, SEED);
                mutate(&mut rng, &once)
            }
            2 => (0..rng.below(40)).map(|_| PIECES[rng.below(PIECES.len())]).collect::<Vec<_>>().join(" "),
            _ => (0..rng.below(200)).map(|_| char::from((rng.next() % 128) as u8)).collect(),
        };
        match compile_str(&text, Path::new("fuzz.toml"), &context) {
            Ok(policy) => {
                compiled += 1;
                // What compiles must compile again from its canonical form.
                let checked = policy::check_files(&[policy::SourceFile::new("f.toml", text.clone())], &context)
                    .expect("compiled once");
                let again = compile_str(&checked.canonical, Path::new("c.toml"), &context).expect("canonical compiles");
                assert_eq!(again.digest, policy.digest, "canonical form of:\n{text}");
            }
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
    assert!(compiled > 40, "the mutations keep some policies valid ({compiled})");
}
