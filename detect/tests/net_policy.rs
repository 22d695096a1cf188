//! The `net_policy` kind (issue #17) is matchable like any other: a native
//! rule names the kind and its fields (`rule_id`, `action`, `dry_run`,
//! `dst_addr`, `dst_port`), and the engine fires on it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use detect::engine::Engine;
use pipeline::event::{NetPolicy, PolicyAction, Protocol};
use pipeline::{Event, EventMeta, ProcessKey};

const RULES: &str = r#"
rules:
  - id: test-policy-deny-metadata
    title: A process was refused the cloud metadata service
    severity: medium
    confidence: high
    match:
      kind: net_policy
      action: deny
      rule_id: { prefix: [deny-meta] }
      dry_run: 0
      dst_addr: { cidr: [169.254.0.0/16] }
      dst_port: [80]
"#;

fn decision(id: u64, rule_id: &str, action: PolicyAction, dry_run: bool) -> Event {
    Event::NetPolicy(NetPolicy {
        meta: EventMeta { ts_ns: id * 1_000, event_id: id },
        process: ProcessKey { pid: 4242, start_time_ns: 10_000_000 },
        rule_id: rule_id.into(),
        rule_key: 7,
        action,
        dry_run,
        protocol: Protocol::Tcp,
        dst_addr: IpAddr::from([169, 254, 169, 254]),
        dst_port: 80,
        cgroup_id: 1,
        generation: 1,
        policy_digest: "d".into(),
        context: None,
    })
}

#[test]
fn a_native_rule_matches_net_policy_fields() {
    let loaded = detect::ruleset::load_texts(vec![(PathBuf::from("policy.yml"), Ok(RULES.as_bytes().to_vec()))]);
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let mut engine = Engine::new(Arc::new(loaded.set.expect("compiles")), Default::default());
    let mut firings = Vec::new();
    for event in [
        decision(1, "deny-metadata", PolicyAction::Deny, false),
        decision(2, "deny-metadata", PolicyAction::Deny, true),
        decision(3, "deny-metadata", PolicyAction::Audit, false),
        decision(4, "audit-all", PolicyAction::Deny, false),
    ] {
        engine.process(&event, &mut firings);
    }
    engine.flush(u64::MAX, &mut firings);
    let ids: Vec<Vec<u64>> = firings.iter().map(|f| f.event_ids.clone()).collect();
    assert_eq!(ids, [vec![1]], "only the enforced deny of the named rule");
}
