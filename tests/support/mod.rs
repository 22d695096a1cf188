//! Shared helpers for end-to-end tests that drive the real `hostflow`
//! binary: a temporary workspace, a running agent, a tiny HTTP client and
//! a Prometheus text parser wrapper.

#![allow(dead_code, reason = "each test binary uses a different subset of these helpers")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory for one test's files.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().expect("create a temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    /// The `event_id` of every NDJSON line in `name` (empty if absent).
    pub fn event_ids(&self, name: &str) -> Vec<u64> {
        let Ok(text) = std::fs::read_to_string(self.path(name)) else { return Vec::new() };
        text.lines()
            .filter(|line| line.ends_with('}'))
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
                value["event_id"].as_u64().expect("event_id")
            })
            .collect()
    }
}

/// The `hostflow` binary under test, with the caller's `HOSTFLOW_*`
/// settings removed so the environment cannot change what is tested.
pub fn hostflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hostflow"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOSTFLOW_") {
            command.env_remove(key);
        }
    }
    command
}

/// A running `hostflow run`.
pub struct Agent {
    child: Child,
    stderr_path: PathBuf,
    report_path: PathBuf,
}

/// How an agent ended.
pub struct Finished {
    pub code: Option<i32>,
    pub stderr: String,
    report_path: PathBuf,
}

impl Finished {
    /// The JSON written by `--report`.
    pub fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.report_path).unwrap_or_else(|e| {
            panic!("report {} missing ({e}); stderr:\n{}", self.report_path.display(), self.stderr)
        });
        serde_json::from_str(&text).expect("report is JSON")
    }
}

impl Agent {
    /// Starts `hostflow run --config CONFIG --report WS/report.json` in the workspace.
    pub fn start(ws: &Workspace, config: &Path) -> Agent {
        let stderr_path = ws.path("agent.stderr");
        let report_path = ws.path("report.json");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = hostflow()
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--report")
            .arg(&report_path)
            .current_dir(ws.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start hostflow");
        Agent { child, stderr_path, report_path }
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for exit; kills the agent and fails the test after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                return Finished { code: status.code(), stderr, report_path: self.report_path.clone() };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                panic!("hostflow did not exit within {timeout:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:port over HTTP/1.1; `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response { status, body: body.to_owned() })
}

/// Polls `probe` every 50 ms until it returns `Some`, failing after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A parsed Prometheus text exposition.
pub struct Scrape(prometheus_parse::Scrape);

/// Parses Prometheus text format with the `prometheus-parse` crate.
pub fn parse_prometheus(text: &str) -> Scrape {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    Scrape(prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text"))
}

impl Scrape {
    /// The value of the sample `name` whose labels include all of `labels`.
    /// A `quantile` label selects one quantile of a histogram: the upper
    /// bound of the first bucket holding that share of the samples (what
    /// PromQL's `histogram_quantile` bounds from above).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let quantile =
            labels.iter().find(|(key, _)| *key == "quantile").map(|(_, q)| q.parse::<f64>().expect("quantile"));
        self.0
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| {
                labels.iter().filter(|(k, _)| *k != "quantile").all(|(k, v)| sample.labels.get(k) == Some(*v))
            })
            .find_map(|sample| match (&sample.value, quantile) {
                (prometheus_parse::Value::Histogram(buckets), Some(q)) => {
                    let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                    (total > 0.0).then(|| buckets.iter().find(|b| b.count >= q * total).map(|b| b.less_than)).flatten()
                }
                (
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v),
                    None,
                ) => Some(*v),
                _ => None,
            })
    }
}
