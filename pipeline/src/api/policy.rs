//! `POST /policy/rollback?steps=N` and `POST /policy/clear` (issue #17):
//! the agent's network policy changed over its API.
//!
//! The engine knows no enforcement: whatever applies policy implements
//! [`PolicyControl`] and registers it in the [`PolicySlot`] every
//! [`Health`](crate::health::Health) carries (a source reaches it through
//! its `HealthHandle`, the way it reports its state). With nothing
//! registered the endpoints answer 503 `enforcement is not configured`.
//!
//! Answers are JSON: `{"ok":true,"digest":"…"}` (200) or
//! `{"ok":false,"error":"…"}` — 400 for a bad request, 403 for a caller
//! that may not change policy, 409 for an operation the enforcer refused
//! (no such history, rate limit), 503 when enforcement is not configured
//! or not running.
//!
//! Who may call: these endpoints remove denies, so they are not for
//! anyone who can reach a loopback port. A caller must connect over
//! loopback from a socket owned by root or by the agent's own user (read
//! from `/proc/net/tcp{,6}`, where the kernel lists each socket's owner),
//! and a request with an `Origin` header (a browser's, as in a cross-site
//! form post) is refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use hyper::{Method, StatusCode};

/// Why a policy operation did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyControlError {
    /// The enforcer refused (nothing that far back in the history, the
    /// apply rate limit, a rejected policy): 409.
    #[error("{0}")]
    Refused(String),
    /// Enforcement is configured but not running (no privilege, no cgroup
    /// v2, the programs did not load): 503.
    #[error("{0}")]
    Unavailable(String),
}

/// What the policy endpoints act on; implemented by whatever applies
/// network policy. Calls may block (they rewrite kernel maps): the API runs
/// them on tokio's blocking pool.
pub trait PolicyControl: Send + Sync {
    /// Applies again the policy `steps` applies back in the history (1: the
    /// one before the current); the digest of the policy now in force.
    fn rollback(&self, steps: u32) -> Result<String, PolicyControlError>;
    /// Removes every deny at once (the emergency clear); the digest of the
    /// policy now in force.
    fn clear(&self) -> Result<String, PolicyControlError>;
}

/// The one registered [`PolicyControl`], shared by every clone (the API
/// reads it per request, the enforcing component writes it once it runs).
#[derive(Clone, Default)]
pub struct PolicySlot {
    control: Arc<RwLock<Option<Arc<dyn PolicyControl>>>>,
}

impl std::fmt::Debug for PolicySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySlot").field("registered", &self.get().is_some()).finish()
    }
}

impl PolicySlot {
    /// Makes `control` what the endpoints act on (replacing any other).
    pub fn register(&self, control: Arc<dyn PolicyControl>) {
        *self.control.write().unwrap_or_else(PoisonError::into_inner) = Some(control);
    }

    /// Back to "enforcement is not configured" (the enforcer stopped).
    pub fn unregister(&self) {
        *self.control.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The registered control, if any.
    pub fn get(&self) -> Option<Arc<dyn PolicyControl>> {
        self.control.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The most steps a rollback may ask for (far more than any history keeps;
/// the enforcer refuses what it does not have).
pub const MAX_ROLLBACK_STEPS: u32 = 1_000;

/// One policy request, as the router saw it.
pub(super) struct PolicyRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The request carried an `Origin` header.
    pub has_origin: bool,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// What to do about a request to `/policy/…`; `None` when the path is not
/// one of the policy endpoints.
pub(super) async fn respond(request: PolicyRequest<'_>, slot: &PolicySlot) -> Option<(StatusCode, String)> {
    let operation = match request.path {
        "/policy/rollback" => Operation::Rollback(rollback_steps(request.query)),
        "/policy/clear" => Operation::Clear,
        _ => return None,
    };
    if request.method != Method::POST {
        return Some(failure(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
    }
    if request.has_origin {
        return Some(failure(StatusCode::FORBIDDEN, "policy changes are not accepted from a browser (Origin header)"));
    }
    let steps = match operation {
        Operation::Rollback(Err(message)) => return Some(failure(StatusCode::BAD_REQUEST, &message)),
        Operation::Rollback(Ok(steps)) => Some(steps),
        Operation::Clear => None,
    };
    let Some(control) = slot.get() else {
        return Some(failure(StatusCode::SERVICE_UNAVAILABLE, "enforcement is not configured"));
    };
    let (peer, local) = (request.peer, request.local);
    // Reading /proc and rewriting kernel maps block: off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        may_change_policy(peer, local).map_err(|e| (StatusCode::FORBIDDEN, e))?;
        let result = match steps {
            Some(steps) => control.rollback(steps),
            None => control.clear(),
        };
        result.map_err(|error| match error {
            PolicyControlError::Refused(message) => (StatusCode::CONFLICT, message),
            PolicyControlError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
        })
    })
    .await;
    Some(match outcome {
        Ok(Ok(digest)) => (StatusCode::OK, answer(Answer { ok: true, digest: Some(&digest), error: None })),
        Ok(Err((status, message))) => failure(status, &message),
        Err(join) => failure(StatusCode::INTERNAL_SERVER_ERROR, &format!("the policy operation failed: {join}")),
    })
}

enum Operation {
    Rollback(Result<u32, String>),
    Clear,
}

/// The JSON answer, `ok` first.
#[derive(serde::Serialize)]
struct Answer<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn answer(answer: Answer<'_>) -> String {
    serde_json::to_string(&answer).unwrap_or_else(|_| r#"{"ok":false}"#.to_owned())
}

fn failure(status: StatusCode, error: &str) -> (StatusCode, String) {
    (status, answer(Answer { ok: false, digest: None, error: Some(error) }))
}

/// `steps` from the query: absent means 1; anything but one `steps` of
/// 1..=[`MAX_ROLLBACK_STEPS`] is an error that says what is expected.
fn rollback_steps(query: Option<&str>) -> Result<u32, String> {
    let mut steps = None;
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "steps" {
            return Err(format!("unknown parameter {key:?}: only steps is accepted"));
        }
        if steps.is_some() {
            return Err("steps is given twice".to_owned());
        }
        let parsed = value.parse::<u32>().ok().filter(|n| (1..=MAX_ROLLBACK_STEPS).contains(n));
        steps =
            Some(parsed.ok_or_else(|| {
                format!("steps must be a whole number from 1 to {MAX_ROLLBACK_STEPS}, not {value:?}")
            })?);
    }
    Ok(steps.unwrap_or(1))
}

/// Whether the connection `peer` → `local` may change policy: it comes
/// over loopback, from a socket owned by root or by the agent's user (the
/// owner of the agent's own end of the connection).
fn may_change_policy(peer: SocketAddr, local: SocketAddr) -> Result<(), String> {
    if !is_loopback(peer.ip()) {
        return Err(format!("policy changes are accepted over loopback only, not from {}", peer.ip()));
    }
    let owners = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| socket_owners(&table, peer, local))
        .fold((None, None), |found, more| (found.0.or(more.0), found.1.or(more.1)));
    match owners {
        (Some(caller), Some(agent)) if caller == 0 || caller == agent => Ok(()),
        (Some(caller), _) => Err(format!("uid {caller} may not change policy: only root or the agent's user")),
        (None, _) => Err("the caller's socket owner could not be found in /proc/net/tcp".to_owned()),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The owners (uid) of the two ends of the TCP connection `peer` ↔
/// `local`, from one `/proc/net/tcp{,6}` table: `(peer's, local's)`.
fn socket_owners(table: &str, peer: SocketAddr, local: SocketAddr) -> (Option<u32>, Option<u32>) {
    let (mut caller, mut agent) = (None, None);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(from), Some(to), Some(uid)) = (fields.get(1), fields.get(2), fields.get(7)) else { continue };
        let (Some(from), Some(to), Ok(uid)) = (proc_net_addr(from), proc_net_addr(to), uid.parse::<u32>()) else {
            continue;
        };
        if same(from, peer) && same(to, local) {
            caller = Some(uid);
        } else if same(from, local) && same(to, peer) {
            agent = Some(uid);
        }
    }
    (caller, agent)
}

/// Equal addresses, an IPv4-mapped IPv6 one equal to its IPv4 form.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// One `ADDR:PORT` of `/proc/net/tcp{,6}`: the address as 32-bit words in
/// hex, each in host byte order; the port in hex.
fn proc_net_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
