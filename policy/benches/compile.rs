//! Time to validate and compile 100 000 rules (issue #17): the whole path
//! from policy text to `CompiledPolicy` — TOML parse, every check, the
//! canonical bytes and their digest, prefix inheritance — measured apart
//! from the TOML parse alone, so the split between the two is visible.
//!
//! The policy: 99 999 single-host rules (one port each, IPv4 and IPv6
//! mixed) inside one broad deny that every entry inherits.
//!
//! `cargo bench -p policy --bench compile` — results in BENCHMARKS.md.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use policy::{compile_str, ValidationContext};

const RULES: u32 = 100_000;

fn policy_text() -> String {
    let mut text = String::with_capacity(RULES as usize * 110);
    text.push_str(
        "[policy]\nmode = \"enforce\"\n\n[[rule]]\nid = \"deny-10\"\naction = \"deny\"\ncidrs = [\"10.0.0.0/8\"]\n",
    );
    for index in 1..RULES {
        let [_, b, c, d] = index.to_be_bytes();
        let cidr = if index % 4 == 0 { format!("fd00::{b:x}:{c:x}{d:02x}/128") } else { format!("10.{b}.{c}.{d}/32") };
        let action = ["allow", "audit", "deny"][index as usize % 3];
        text.push_str(&format!(
            "\n[[rule]]\nid = \"rule-{index}\"\naction = \"{action}\"\ncidrs = [\"{cidr}\"]\nports = [{}]\npriority = {}\n",
            1 + index % 60_000,
            index % 100 + 1,
        ));
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = policy_text();
    let context = ValidationContext::default();
    let compiled = compile_str(&text, Path::new("bench.toml"), &context).expect("the bench policy is valid");
    assert_eq!(compiled.rules.len(), RULES as usize);
    let mut group = c.benchmark_group("policy");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).throughput(Throughput::Elements(u64::from(RULES)));
    group.bench_function("validate_and_compile_100k_rules", |b| {
        b.iter(|| compile_str(&text, Path::new("bench.toml"), &context).map(|c| c.v4.len()))
    });
    group.bench_function("toml_parse_only_100k_rules", |b| {
        b.iter(|| toml::de::DeTable::parse(&text).map(|table| table.get_ref().len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
