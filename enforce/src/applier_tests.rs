//! The applier's logic against a fake store and a fake kernel (no
//! privilege needed): start, watch, refuse, rollback, clear, failure.

use std::sync::{Arc, Mutex};

use super::*;

#[derive(Default)]
struct Log {
    installed: Vec<(String, u32)>,
    committed: Vec<(String, String)>,
    fail_install: bool,
    decisions: Decisions,
}

struct FakeStore {
    log: Arc<Mutex<Log>>,
    history: Vec<CompiledPolicy>,
}

fn policy(digest: &str) -> CompiledPolicy {
    CompiledPolicy { digest: digest.into(), ..CompiledPolicy::empty() }
}

impl Store for FakeStore {
    fn propose(&mut self, path: &Path, _now: SystemTime) -> Result<CompiledPolicy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let text = text.trim();
        if text.starts_with("bad") {
            return Err(format!("invalid: {text}"));
        }
        Ok(policy(text))
    }
    fn commit(&mut self, policy: &CompiledPolicy, what: &str, _now: SystemTime) -> Result<(), String> {
        self.history.push(policy.clone());
        self.log.lock().expect("log").committed.push((policy.digest.clone(), what.into()));
        Ok(())
    }
    fn rollback(&mut self, steps: usize, _now: SystemTime) -> Result<CompiledPolicy, String> {
        let index = self.history.len().checked_sub(steps + 1).ok_or("no history")?;
        Ok(self.history[index].clone())
    }
    fn emergency_clear(&mut self, _now: SystemTime) -> Result<CompiledPolicy, String> {
        Ok(policy("cleared"))
    }
    fn current(&self) -> Option<CompiledPolicy> {
        self.history.last().cloned()
    }
}

struct FakeKernel(Arc<Mutex<Log>>);

impl Kernel for FakeKernel {
    fn install(&mut self, policy: &CompiledPolicy, generation: u32) -> Result<(), EnforceError> {
        let mut log = self.0.lock().expect("log");
        if log.fail_install {
            return Err(EnforceError::Map { map: "fake", reason: "refused".into() });
        }
        log.installed.push((policy.digest.clone(), generation));
        Ok(())
    }
    fn decisions(&self) -> Result<Decisions, EnforceError> {
        Ok(self.0.lock().expect("log").decisions)
    }
}

fn start(dir: &Path, history: Vec<CompiledPolicy>) -> (Applier, Arc<Mutex<Log>>) {
    start_watching(dir, history, None)
}

fn start_watching(
    dir: &Path,
    history: Vec<CompiledPolicy>,
    health: Option<pipeline::health::Health>,
) -> (Applier, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let settings = ApplierSettings {
        component: "test".into(),
        policy: dir.join("policy.toml"),
        cgroup: "/".into(),
        poll_interval: Duration::from_millis(50),
        on_status: None,
        names: None,
        health,
        probation: Duration::from_secs(5),
    };
    let store = FakeStore { log: Arc::clone(&log), history };
    let applier = spawn(store, FakeKernel(Arc::clone(&log)), settings).expect("thread");
    (applier, log)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn applies_at_start_and_again_when_the_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), "one").expect("write");
    let (applier, log) = start(dir.path(), Vec::new());
    let handle = applier.handle().clone();
    wait_until("the first apply", || handle.status().digest == "one");
    assert_eq!(handle.status().generation, 1);
    // A change of size is seen by the poll.
    std::fs::write(dir.path().join("policy.toml"), "two!").expect("write");
    wait_until("the second apply", || handle.status().digest == "two!");
    // A refused change leaves the running policy and says why.
    std::fs::write(dir.path().join("policy.toml"), "bad one").expect("write");
    wait_until("the refusal", || handle.status().error.is_some());
    let status = handle.status();
    assert_eq!(status.digest, "two!");
    assert!(status.error.as_deref().is_some_and(|e| e.contains("invalid: bad one")), "{status:?}");
    // Reload answers with the reason.
    assert!(handle.reload().is_err_and(|e| e.contains("invalid")));
    let log = log.lock().expect("log");
    assert_eq!(log.installed, vec![("one".into(), 1), ("two!".into(), 2)]);
    assert_eq!(log.committed.len(), 2);
}

#[test]
fn rollback_and_clear_answer_with_the_digest_now_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), "first").expect("write");
    let (applier, log) = start(dir.path(), Vec::new());
    let handle = applier.handle().clone();
    wait_until("the first apply", || handle.status().digest == "first");
    std::fs::write(dir.path().join("policy.toml"), "second").expect("write");
    assert_eq!(handle.reload(), Ok("second".into()));
    assert_eq!(handle.rollback(1), Ok("first".into()));
    assert_eq!(handle.status().digest, "first");
    assert!(handle.rollback(10).is_err());
    assert_eq!(handle.clear(), Ok("cleared".into()));
    let whats: Vec<String> = log.lock().expect("log").committed.iter().map(|(_, w)| w.clone()).collect();
    assert_eq!(whats, ["apply", "apply", "rollback", "clear"]);
    applier.stop();
    assert!(handle.reload().is_err(), "a stopped applier answers nothing");
}

#[test]
fn a_refused_file_at_start_restores_the_last_applied_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), "bad").expect("write");
    let (applier, log) = start(dir.path(), vec![policy("good")]);
    let handle = applier.handle().clone();
    wait_until("the restore", || handle.status().digest == "good");
    assert_eq!(log.lock().expect("log").installed, vec![("good".into(), 1)]);
}

#[test]
fn a_failed_install_keeps_the_running_policy_and_counters_reach_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), "kept").expect("write");
    let (applier, log) = start(dir.path(), Vec::new());
    let handle = applier.handle().clone();
    wait_until("the first apply", || handle.status().digest == "kept");
    log.lock().expect("log").fail_install = true;
    std::fs::write(dir.path().join("policy.toml"), "lost").expect("write");
    assert!(handle.reload().is_err_and(|e| e.contains("refused")));
    let status = handle.status();
    assert_eq!((status.digest.as_str(), status.generation), ("kept", 1));
    log.lock().expect("log").decisions = Decisions { allowed: 1, denied: 2, audited: 3, reserve_failures: 0 };
    wait_until("the counters", || handle.status().decisions.denied == 2);
}

/// Issue #17: a policy after which one of the agent's sinks turns
/// unhealthy (it cut the sink off from its broker) is rolled back at once;
/// a sink already unhealthy before the apply does not count.
#[test]
fn a_sink_turning_unhealthy_right_after_an_apply_rolls_it_back() {
    use pipeline::health::{ComponentState, Health};
    use pipeline::Role;
    let health = Health::default();
    let kafka = health.register("kafka", Role::Sink, "kafka");
    kafka.set(ComponentState::Running, None);
    let flaky = health.register("flaky", Role::Sink, "kafka");
    flaky.set(ComponentState::Degraded, Some("already down".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.toml"), "good").expect("write");
    let (applier, log) = start_watching(dir.path(), Vec::new(), Some(health));
    let handle = applier.handle().clone();
    wait_until("the first apply", || handle.status().digest == "good");
    std::fs::write(dir.path().join("policy.toml"), "cuts-kafka").expect("write");
    wait_until("the second apply", || handle.status().digest == "cuts-kafka");
    // The already-degraded sink staying degraded changes nothing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(handle.status().digest, "cuts-kafka");
    kafka.set(ComponentState::Degraded, Some("broker unreachable".into()));
    wait_until("the automatic rollback", || handle.status().digest == "good");
    let status = handle.status();
    assert!(status.error.as_deref().is_some_and(|e| e.contains("kafka") && e.contains("rolled back")), "{status:?}");
    let whats: Vec<String> = log.lock().expect("log").committed.iter().map(|(_, w)| w.clone()).collect();
    assert_eq!(whats, ["apply", "apply", "auto_rollback"]);
}
