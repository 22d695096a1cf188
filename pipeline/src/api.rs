//! The one HTTP listener: `/metrics` (Prometheus text), `/health` (JSON),
//! and the network-policy endpoints `POST /policy/rollback?steps=N` and
//! `POST /policy/clear` ([`policy`]: what they act on is registered by the
//! enforcing component in the health table's [`PolicySlot`]).
//!
//! The Prometheus exporter's own listener answers metrics on every path, so
//! the engine serves the rendered handle itself and keeps the routes honest:
//! anything but these paths is a 404.

pub mod policy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::health::{Health, OverallStatus};
use crate::metrics::names;
pub use policy::{PolicyControl, PolicyControlError, PolicySlot};

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {address} for /metrics and /health: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running API server; dropping it stops the upkeep thread, and
/// [`ApiServer::shutdown`] stops accepting.
pub struct ApiServer {
    local_addr: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
    upkeep_stop: Arc<AtomicBool>,
}

impl ApiServer {
    /// Binds `address` and starts serving. Binding happens before this
    /// returns, so a taken port is a start-up error, not a log line later.
    pub async fn start(
        address: SocketAddr,
        prometheus: PrometheusHandle,
        health: Health,
    ) -> Result<ApiServer, ApiError> {
        let listener = TcpListener::bind(address).await.map_err(|source| ApiError::Bind { address, source })?;
        let local_addr = listener.local_addr().map_err(|source| ApiError::Bind { address, source })?;
        let upkeep_stop = Arc::new(AtomicBool::new(false));
        spawn_upkeep(prometheus.clone(), Arc::clone(&upkeep_stop));
        let accept_task = tokio::spawn(accept_loop(listener, prometheus, health));
        Ok(ApiServer { local_addr, accept_task, upkeep_stop })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections.
    pub fn shutdown(self) {
        self.accept_task.abort();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.upkeep_stop.store(true, Ordering::Relaxed);
    }
}

async fn accept_loop(listener: TcpListener, prometheus: PrometheusHandle, health: Health) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%error, "api: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else { continue };
        let prometheus = prometheus.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (prometheus, health) = (prometheus.clone(), health.clone());
                async move { Ok::<_, Infallible>(respond(&request, &prometheus, &health, (peer, local)).await) }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "api: connection ended with an error");
            }
        });
    }
}

async fn respond(
    request: &Request<Incoming>,
    prometheus: &PrometheusHandle,
    health: &Health,
    (peer, local): (SocketAddr, SocketAddr),
) -> Response<Full<Bytes>> {
    let policy_request = policy::PolicyRequest {
        method: request.method(),
        path: request.uri().path(),
        query: request.uri().query(),
        has_origin: request.headers().contains_key(hyper::header::ORIGIN),
        peer,
        local,
    };
    if let Some((status, body)) = policy::respond(policy_request, health.policy_control()).await {
        return reply(status, "application/json", body);
    }
    let route = (request.method(), request.uri().path());
    match route {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut body = prometheus.render();
            if let Some(ledger) = health.ledger() {
                body.push_str(&ledger.to_prometheus());
            }
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        (&Method::GET | &Method::HEAD, "/health") => {
            let report = health.report();
            let status = match report.status {
                OverallStatus::Failed => StatusCode::SERVICE_UNAVAILABLE,
                OverallStatus::Ok | OverallStatus::Degraded => StatusCode::OK,
            };
            let body = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_owned());
            reply(status, "application/json", body)
        }
        (&Method::GET | &Method::HEAD, "/ledger") => match health.ledger() {
            Some(ledger) => {
                reply(StatusCode::OK, "application/json", serde_json::to_string_pretty(&ledger).unwrap_or_default())
            }
            None => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no topology is running yet\n".to_owned()),
        },
        (_, "/metrics" | "/health" | "/ledger") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".to_owned())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /health, /ledger, POST /policy/rollback or POST /policy/clear\n".to_owned(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

/// Histogram upkeep and process metrics, on a plain thread: reading
/// `/proc/self` is blocking I/O and has no place on the async workers.
fn spawn_upkeep(prometheus: PrometheusHandle, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("hostflow-upkeep".to_owned()).spawn(move || {
        // A gauge because `metrics` counters are integers and CPU time
        // needs fractions of a second; it only grows.
        let cpu = metrics::gauge!(names::PROCESS_CPU_SECONDS_TOTAL);
        let rss = metrics::gauge!(names::PROCESS_RESIDENT_MEMORY_BYTES);
        while !stop.load(Ordering::Relaxed) {
            if let Some(sample) = read_process_stats() {
                cpu.set(sample.cpu_ticks as f64 / TICKS_PER_SECOND as f64);
                rss.set(sample.rss_bytes as f64);
            }
            prometheus.run_upkeep();
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "api: cannot start the upkeep thread; histograms will grow until scraped");
    }
}

/// `USER_HZ`, fixed at 100 on every Linux architecture we build for.
const TICKS_PER_SECOND: u64 = 100;

struct ProcessStats {
    cpu_ticks: u64,
    rss_bytes: u64,
}

fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `comm` (which may contain spaces) start after ") ".
    let after_comm = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 =
        status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(ProcessStats { cpu_ticks: utime + stime, rss_bytes: rss_kib * 1024 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_stats() {
        let stats = read_process_stats().expect("/proc/self is readable on Linux");
        assert!(stats.rss_bytes > 0);
    }
}
