//! Tests of the policy endpoints: the parsers on their own, then real HTTP
//! over loopback against an [`ApiServer`] with a fake [`PolicyControl`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::api::ApiServer;
use crate::health::Health;

#[test]
fn steps_default_to_one_and_anything_else_is_refused_with_a_reason() {
    assert_eq!(rollback_steps(None), Ok(1));
    assert_eq!(rollback_steps(Some("")), Ok(1));
    assert_eq!(rollback_steps(Some("steps=3")), Ok(3));
    assert_eq!(rollback_steps(Some("steps=1000")), Ok(MAX_ROLLBACK_STEPS));
    for bad in ["steps=0", "steps=-1", "steps=two", "steps=", "steps", "steps=1001", "steps=99999999999"] {
        let error = rollback_steps(Some(bad)).expect_err(bad);
        assert!(error.starts_with("steps must be a whole number from 1 to 1000"), "{bad}: {error}");
    }
    assert!(rollback_steps(Some("steps=1&steps=2")).expect_err("twice").contains("twice"));
    assert!(rollback_steps(Some("force=1")).expect_err("unknown").contains("\"force\""));
}

#[test]
fn proc_net_tcp_addresses_and_owners_are_read() {
    // Two ends of one loopback connection (127.0.0.1:40000 → :9598) and a
    // listener, as /proc/net/tcp prints them on a little-endian host.
    let word = |ip: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(ip.octets()));
    let lo = word(Ipv4Addr::LOCALHOST);
    let table = format!(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
         0: {lo}:2575 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n\
         1: {lo}:9C40 {lo}:257E 01 00000000:00000000 00:00000000 00000000  1000        0 2\n\
         2: {lo}:257E {lo}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3\n\
         3: garbage\n"
    );
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 9598));
    assert_eq!(socket_owners(&table, peer, local), (Some(1000), Some(0)));
    assert_eq!(socket_owners(&table, local, peer), (Some(0), Some(1000)));

    let v6 = Ipv6Addr::LOCALHOST.octets();
    let hex: String =
        v6.chunks_exact(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect();
    assert_eq!(proc_net_addr(&format!("{hex}:0050")), Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 80))));
    for bad in ["", "0100007F", "0100007F:", "0100007F:XYZ", "0100007:0050", "ZZ00007F:0050"] {
        assert_eq!(proc_net_addr(bad), None, "{bad:?}");
    }
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().expect("mapped");
    assert!(same(mapped, SocketAddr::from((Ipv4Addr::LOCALHOST, 5))));
    assert!(is_loopback(mapped.ip()) && is_loopback(Ipv6Addr::LOCALHOST.into()));
    assert!(!is_loopback(Ipv4Addr::new(10, 0, 0, 1).into()));
    assert!(may_change_policy(SocketAddr::from(([10, 0, 0, 1], 5)), local).expect_err("remote").contains("loopback"));
}

/// Records what it was asked and answers from a script.
#[derive(Default)]
struct FakeControl {
    calls: Mutex<Vec<String>>,
    answer: Mutex<Option<PolicyControlError>>,
}

impl FakeControl {
    fn outcome(&self, call: String, digest: String) -> Result<String, PolicyControlError> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
        match self.answer.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            Some(error) => Err(error),
            None => Ok(digest),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl PolicyControl for FakeControl {
    fn rollback(&self, steps: u32) -> Result<String, PolicyControlError> {
        self.outcome(format!("rollback {steps}"), format!("digest-back-{steps}"))
    }

    fn clear(&self) -> Result<String, PolicyControlError> {
        self.outcome("clear".to_owned(), "digest-cleared".to_owned())
    }
}

/// One HTTP/1.1 request over a fresh loopback connection: status and body.
async fn http(server: SocketAddr, method: &str, target: &str, headers: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server).await.expect("connect");
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_answer_json_over_http() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let health = Health::default();
    let server = ApiServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), prometheus, health.clone())
        .await
        .expect("the API starts");
    let at = server.local_addr();

    // Nothing registered: enforcement is not configured.
    for target in ["/policy/rollback?steps=1", "/policy/clear"] {
        let (status, body) = http(at, "POST", target, "").await;
        assert_eq!((status, body.as_str()), (503, r#"{"ok":false,"error":"enforcement is not configured"}"#));
    }

    let fake = Arc::new(FakeControl::default());
    health.policy_control().register(fake.clone());
    let (status, body) = http(at, "POST", "/policy/rollback?steps=2", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true,"digest":"digest-back-2"}"#), "ok first");
    let (status, body) = http(at, "POST", "/policy/rollback", "").await;
    assert_eq!((status, json(&body)["digest"].as_str()), (200, Some("digest-back-1")), "steps defaults to 1");
    let (status, body) = http(at, "POST", "/policy/clear", "").await;
    assert_eq!((status, json(&body)), (200, serde_json::json!({"ok": true, "digest": "digest-cleared"})));

    // Bad requests never reach the control.
    for target in ["/policy/rollback?steps=abc", "/policy/rollback?steps=0", "/policy/rollback?steps=-3"] {
        let (status, body) = http(at, "POST", target, "").await;
        let body = json(&body);
        assert_eq!((status, &body["ok"]), (400, &serde_json::json!(false)), "{target}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("steps must be a whole number")), "{body}");
    }
    let (status, body) = http(at, "GET", "/policy/clear", "").await;
    assert_eq!((status, json(&body)["error"].as_str()), (405, Some("use POST")));
    let (status, body) = http(at, "POST", "/policy/clear", "Origin: http://evil.example\r\n").await;
    assert_eq!((status, json(&body)["ok"].as_bool()), (403, Some(false)), "a browser's cross-site post");
    assert_eq!(fake.calls(), ["rollback 2", "rollback 1", "clear"]);

    // The control's refusals: 409 for a refused operation, 503 for
    // enforcement that is not running.
    *fake.answer.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(PolicyControlError::Refused("only 1 policy in the history".to_owned()));
    let (status, body) = http(at, "POST", "/policy/rollback?steps=5", "").await;
    assert_eq!((status, json(&body)), (409, serde_json::json!({"ok": false, "error": "only 1 policy in the history"})));
    *fake.answer.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(PolicyControlError::Unavailable("the connect programs did not load".to_owned()));
    let (status, body) = http(at, "POST", "/policy/clear", "").await;
    assert_eq!((status, json(&body)["error"].as_str()), (503, Some("the connect programs did not load")));

    health.policy_control().unregister();
    let (status, _) = http(at, "POST", "/policy/clear", "").await;
    assert_eq!(status, 503, "unregistered again");
    let (status, _) = http(at, "GET", "/health", "").await;
    assert_eq!(status, 200, "the other routes are untouched");
    let (status, _) = http(at, "POST", "/policy/other", "").await;
    assert_eq!(status, 404);
    server.shutdown();
}
