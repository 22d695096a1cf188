//! The manager as the applier drives it: propose → commit, history kept
//! across reopening, rollback to the right digest, emergency clear without
//! denies, the rate limit (11th apply in a minute refused, accepted after
//! the window; rollback and clear exempt), signatures when required, and
//! every outcome in a verifying audit log.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy::{Action, Manager, ManagerSettings, Rejection};

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn policy_text(n: u16) -> String {
    format!(
        "[policy]\nmode = \"enforce\"\n\n[[rule]]\nid = \"deny-{n}\"\naction = \"deny\"\ncidrs = [\"192.0.2.0/24\"]\nports = [{n}]\n\n[[rule]]\nid = \"audit-all\"\naction = \"audit\"\ncidrs = [\"10.0.0.0/8\"]\n"
    )
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn settings(&self) -> ManagerSettings {
        ManagerSettings::new(self.dir.path().join("state"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn audit_events(&self) -> Vec<String> {
        let path = self.dir.path().join("state/audit.ndjson");
        assert!(policy::audit::verify(&path).is_ok(), "the audit log verifies");
        std::fs::read_to_string(path)
            .expect("audit log")
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("json")["event"]
                    .as_str()
                    .expect("event")
                    .to_owned()
            })
            .collect()
    }
}

fn apply(manager: &mut Manager, path: &Path, now: SystemTime) -> String {
    let compiled = manager.propose(path, now).unwrap_or_else(|rejection| panic!("{rejection}"));
    manager.commit(&compiled, "apply", now).expect("commit");
    compiled.digest
}

#[test]
fn history_survives_reopening_and_rollback_returns_the_right_digest() {
    let setup = Setup::new();
    let mut manager = Manager::open(setup.settings()).expect("open");
    assert!(manager.current().is_none());
    let digests: Vec<String> = (1..=3)
        .map(|n| apply(&mut manager, &setup.write(&format!("p{n}.toml"), &policy_text(n)), at(u64::from(n))))
        .collect();
    assert_eq!(manager.current().map(|c| c.digest.clone()), Some(digests[2].clone()));
    drop(manager);

    let mut manager = Manager::open(setup.settings()).expect("reopen");
    assert_eq!(manager.current().map(|c| c.digest.clone()), Some(digests[2].clone()));
    let history: Vec<String> = manager.history().into_iter().map(|entry| entry.digest).collect();
    assert_eq!(history, digests);

    let back_two = manager.rollback(2, at(10)).expect("rollback 2");
    assert_eq!(back_two.digest, digests[0]);
    manager.commit(&back_two, "rollback", at(10)).expect("commit");
    assert_eq!(manager.current().map(|c| c.digest.clone()), Some(digests[0].clone()));
    let back_one = manager.rollback(1, at(11)).expect("rollback 1");
    assert_eq!(back_one.digest, digests[2], "one step back from the rollback is the policy before it");

    let too_far = manager.rollback(9, at(12)).expect_err("not that much history");
    assert_eq!(too_far, Rejection::NoHistory { steps: 9, available: 3 });
    assert_eq!(manager.rejected_total(), 1);
    assert_eq!(setup.audit_events(), ["apply", "apply", "apply", "rollback", "rejected"]);
}

#[test]
fn history_keeps_the_last_n() {
    let setup = Setup::new();
    let mut settings = setup.settings();
    settings.history_len = 3;
    settings.applies_per_minute = 100;
    let mut manager = Manager::open(settings.clone()).expect("open");
    let digests: Vec<String> =
        (1..=5).map(|n| apply(&mut manager, &setup.write("p.toml", &policy_text(n)), at(u64::from(n)))).collect();
    let kept: Vec<String> = manager.history().into_iter().map(|entry| entry.digest).collect();
    assert_eq!(kept, digests[2..]);
    let files = std::fs::read_dir(setup.dir.path().join("state/history")).expect("history dir").count();
    assert_eq!(files, 3);
    drop(manager);
    let manager = Manager::open(settings).expect("reopen");
    assert_eq!(manager.history().len(), 3);
}

#[test]
fn emergency_clear_removes_every_deny_and_is_recorded() {
    let setup = Setup::new();
    let mut manager = Manager::open(setup.settings()).expect("open");
    apply(&mut manager, &setup.write("p.toml", &policy_text(80)), at(0));
    let cleared = manager.emergency_clear(at(1));
    assert!(cleared.rules.iter().all(|rule| rule.action != Action::Deny));
    assert_eq!(cleared.rules.iter().map(|rule| rule.id.as_str()).collect::<Vec<_>>(), ["audit-all"]);
    assert!(cleared.v4.iter().flat_map(|entry| &entry.rules).all(|rule| rule.action != Action::Deny));
    manager.commit(&cleared, "clear", at(1)).expect("commit");
    assert_eq!(manager.current().map(|c| &c.digest), Some(&cleared.digest));
    assert_eq!(setup.audit_events(), ["apply", "clear"]);

    // With nothing applied, clearing gives the empty policy.
    let other = Setup::new();
    let mut fresh = Manager::open(other.settings()).expect("open");
    let empty = fresh.emergency_clear(at(0));
    assert!(empty.rules.is_empty() && empty.v4.is_empty() && !empty.digest.is_empty());
}

#[test]
fn rate_limit_rejects_the_eleventh_apply_within_a_minute() {
    let setup = Setup::new();
    let mut manager = Manager::open(setup.settings()).expect("open");
    for n in 0..10u16 {
        apply(&mut manager, &setup.write("p.toml", &policy_text(100 + n)), at(u64::from(n)));
    }
    let path = setup.write("p.toml", &policy_text(200));
    let rejected = manager.propose(&path, at(30)).expect_err("11th within a minute");
    assert_eq!(rejected.to_string(), "rate limit: 10 applies in the last minute");
    assert_eq!((manager.rejected_total(), manager.rate_limited_total()), (1, 1));
    // Backing out is never rate limited.
    let back = manager.rollback(1, at(31)).expect("rollback");
    manager.commit(&back, "rollback", at(31)).expect("commit");
    let cleared = manager.emergency_clear(at(32));
    manager.commit(&cleared, "clear", at(32)).expect("commit");
    // The first apply (at 0 s) leaves the window at 60 s.
    assert!(manager.propose(&path, at(59)).is_err());
    assert!(manager.propose(&path, at(60)).is_ok());
    assert_eq!(manager.rate_limited_total(), 2);
    let events = setup.audit_events();
    assert_eq!(events.iter().filter(|e| *e == "rejected").count(), 2);
    assert_eq!(events[10..13], ["rejected", "rollback", "clear"]);
}

#[test]
fn invalid_and_unsigned_proposals_keep_the_running_policy() {
    let setup = Setup::new();
    let trust = setup.dir.path().join("trust");
    std::fs::create_dir(&trust).expect("trust");
    policy::signature::generate_key(&trust.join("ops")).expect("keygen");
    let mut settings = setup.settings();
    settings.trust = Some(trust.clone());
    settings.require_signature = true;
    let mut manager = Manager::open(settings).expect("open");

    let good = setup.write("good.toml", &policy_text(1));
    policy::signature::sign(&good, &trust.join("ops.key")).expect("sign");
    let digest = apply(&mut manager, &good, at(0));

    let unsigned = setup.write("unsigned.toml", &policy_text(2));
    assert!(matches!(manager.propose(&unsigned, at(1)), Err(Rejection::Unsigned { .. })));
    let tampered = setup.write("tampered.toml", &policy_text(3));
    policy::signature::sign(&tampered, &trust.join("ops.key")).expect("sign");
    std::fs::write(&tampered, policy_text(4)).expect("tamper");
    assert!(matches!(manager.propose(&tampered, at(2)), Err(Rejection::BadSignature { .. })));
    let invalid = setup.write("invalid.toml", "[[rule]]\nid = \"x\"\naction = \"deny\"\ncidrs = [\"0.0.0.0/0\"]\n");
    policy::signature::sign(&invalid, &trust.join("ops.key")).expect("a parsable policy can be signed");
    match manager.propose(&invalid, at(3)) {
        Err(Rejection::Invalid(problems)) => assert!(problems.to_string().contains("denies every IPv4"), "{problems}"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert!(matches!(manager.propose(&setup.dir.path().join("absent.toml"), at(4)), Err(Rejection::Unreadable { .. })));
    assert_eq!(manager.rejected_total(), 4);
    assert_eq!(manager.current().map(|c| c.digest.clone()), Some(digest));

    let log = std::fs::read_to_string(setup.dir.path().join("state/audit.ndjson")).expect("log");
    let reasons: Vec<String> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .filter(|line| line["event"] == "rejected")
        .map(|line| line["reason"].as_str().expect("reason").split(':').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reasons, ["unsigned", "bad signature", "invalid policy", "unreadable"]);
    let applied: serde_json::Value = serde_json::from_str(log.lines().next().expect("line")).expect("json");
    assert!(applied["key"].as_str().is_some_and(|key| key.starts_with("ops (")), "{applied}");
}

#[test]
fn commit_refuses_what_was_not_proposed() {
    let setup = Setup::new();
    let mut manager = Manager::open(setup.settings()).expect("open");
    let stranger = policy::compile_str(&policy_text(5), Path::new("x.toml"), &Default::default()).expect("valid");
    assert!(matches!(manager.commit(&stranger, "apply", at(0)), Err(policy::ManagerError::UnknownPolicy { .. })));
    let proposed = manager.propose(&setup.write("p.toml", &policy_text(5)), at(0)).expect("valid");
    assert!(matches!(manager.commit(&proposed, "Apply!", at(0)), Err(policy::ManagerError::BadKind(_))));
    manager.commit(&proposed, "apply", at(0)).expect("commit");
}
