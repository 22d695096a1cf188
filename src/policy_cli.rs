//! `hostflow policy …` and `hostflow audit …`: network policy files
//! checked, keys made, bundles signed and verified, the audit log's chain
//! verified — all offline, through the `policy` crate — and rollback and
//! emergency clear asked of the running agent over its HTTP API (the
//! agent owns the kernel maps, so only it can switch them).
//!
//! The HTTP client is a few lines over `std::net::TcpStream`: one POST,
//! `Connection: close`, read to the end. The agent binary carries no HTTP
//! client crate for two requests an operator types.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use policy::{audit, signature, Rejection, ValidationContext};

use crate::commands::Outcome;

/// Where `hostflow run` serves its API unless the topology's `[api]` says
/// otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:9598";
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate and compile a policy (file, or directory of `*.toml`);
    /// print every problem (file:line: rule `id`: what (hint: …)), or the
    /// rule and prefix counts and the digest.
    ///
    /// Exit codes: 0 valid, 66 unreadable, 78 invalid.
    Check {
        policy: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an ed25519 key pair: PREFIX.key (secret, 0600) and PREFIX.pub
    /// (copy it into the agents' trust store).
    Keygen {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign a policy's canonical bytes: writes `POLICY.sig` (or
    /// `bundle.sig` inside a policy directory).
    ///
    /// Exit codes: 0 signed, 66 key or policy unreadable, 78 the policy
    /// does not parse.
    Sign {
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        policy: PathBuf,
    },
    /// Check a policy's signature against a trust store (a directory of
    /// `*.pub`).
    ///
    /// Exit codes: 0 valid signature by a trusted key, 65 unsigned, unknown
    /// key or bad signature, 66 unreadable, 78 the policy does not parse.
    Verify {
        #[arg(long, value_name = "DIR")]
        trust: PathBuf,
        policy: PathBuf,
    },
    /// Ask the running agent to switch back to the policy N applies ago
    /// (default 1: the previous one).
    ///
    /// Exit codes: 0 done, 1 the agent refused, 69 no agent API.
    Rollback {
        #[arg(default_value_t = 1)]
        steps: usize,
        /// The agent's API address.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
        api: String,
    },
    /// Ask the running agent to remove every deny rule at once (allows and
    /// audits stay). Not rate limited.
    ///
    /// Exit codes: 0 done, 1 the agent refused, 69 no agent API.
    Clear {
        /// Required: says this is the emergency exit.
        #[arg(long, required = true)]
        emergency: bool,
        /// The agent's API address.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
        api: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the policy audit log's hash chain: prints `ok: N lines`, or
    /// the first bad line and what is wrong with it.
    ///
    /// Exit codes: 0 intact, 65 broken, 66 unreadable.
    Verify { file: PathBuf },
}

/// Runs one `hostflow policy` command.
pub fn policy(command: PolicyCommand) -> Outcome {
    match command {
        PolicyCommand::Check { policy, json } => check(&policy, json),
        PolicyCommand::Keygen { out } => keygen(&out),
        PolicyCommand::Sign { key, policy } => sign(&key, &policy),
        PolicyCommand::Verify { trust, policy } => verify(&trust, &policy),
        PolicyCommand::Rollback { steps, api } => {
            ask_agent(&api, &format!("/policy/rollback?steps={steps}"), "rolled back")
        }
        PolicyCommand::Clear { emergency: _, api } => ask_agent(&api, "/policy/clear", "cleared every deny"),
    }
}

/// Runs one `hostflow audit` command.
pub fn audit(command: AuditCommand) -> Outcome {
    match command {
        AuditCommand::Verify { file } => match audit::verify(&file) {
            Ok(lines) => {
                println!("ok: {lines} lines");
                Outcome::Success
            }
            Err(audit::AuditError::Broken(broken)) => {
                println!("{broken}");
                Outcome::BadInput
            }
            Err(error) => {
                eprintln!("error: {error}");
                Outcome::Unreadable
            }
        },
    }
}

fn check(path: &Path, json: bool) -> Outcome {
    match policy::check_path(path, &ValidationContext::default()) {
        Ok(checked) => {
            let compiled = &checked.compiled;
            let kernel_rules: usize =
                compiled.v4.iter().map(|e| e.rules.len()).chain(compiled.v6.iter().map(|e| e.rules.len())).sum();
            let mode = match compiled.mode {
                policy::Mode::DryRun => "dry_run",
                policy::Mode::Enforce => "enforce",
            };
            if json {
                let document = serde_json::json!({
                    "ok": true,
                    "mode": mode,
                    "rules": compiled.rules.len(),
                    "kernel_rules": kernel_rules,
                    "prefixes": { "v4": compiled.v4.len(), "v6": compiled.v6.len() },
                    "digest": compiled.digest,
                });
                println!("{document}");
            } else {
                let rules = compiled.rules.len();
                println!(
                    "{}: ok ({rules} rule{}; {} IPv4 and {} IPv6 prefixes holding {kernel_rules} kernel rule{}; mode {mode})",
                    path.display(),
                    if rules == 1 { "" } else { "s" },
                    compiled.v4.len(),
                    compiled.v6.len(),
                    if kernel_rules == 1 { "" } else { "s" },
                );
                println!("digest {}", compiled.digest);
            }
            Outcome::Success
        }
        Err(problems) => {
            if json {
                let listed: Vec<serde_json::Value> = problems
                    .iter()
                    .map(|problem| {
                        serde_json::json!({
                            "file": problem.file.display().to_string(),
                            "line": problem.line,
                            "rule": problem.rule,
                            "message": problem.message,
                            "hint": problem.hint,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "ok": false, "problems": listed }));
            } else {
                println!("{problems}");
                let noun = if problems.len() == 1 { "problem" } else { "problems" };
                eprintln!("{}: {} {noun} found", path.display(), problems.len());
            }
            if problems.is_unreadable() {
                Outcome::Unreadable
            } else {
                Outcome::InvalidConfig
            }
        }
    }
}

fn keygen(prefix: &Path) -> Outcome {
    match signature::generate_key(prefix) {
        Ok(id) => {
            let shown = prefix.display();
            println!("wrote {shown}.key (secret, 0600) and {shown}.pub (copy it into the trust store); key id {id}");
            Outcome::Success
        }
        Err(error) => {
            eprintln!("error: {error}");
            Outcome::RunFailed
        }
    }
}

fn sign(key: &Path, path: &Path) -> Outcome {
    match signature::sign(path, key) {
        Ok((sig_path, id)) => {
            println!("{}: signed with key {id}; wrote {}", path.display(), sig_path.display());
            Outcome::Success
        }
        Err(signature::KeyError::Policy(problems)) => {
            println!("{problems}");
            if problems.is_unreadable() {
                Outcome::Unreadable
            } else {
                Outcome::InvalidConfig
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            Outcome::Unreadable
        }
    }
}

fn verify(trust: &Path, path: &Path) -> Outcome {
    match policy::verify(path, trust) {
        Ok(id) => {
            println!("{}: good signature by trusted key {id}", path.display());
            Outcome::Success
        }
        Err(rejection) => {
            println!("{}: rejected: {rejection}", path.display());
            match rejection {
                Rejection::Unreadable { .. } => Outcome::Unreadable,
                Rejection::Invalid(_) => Outcome::InvalidConfig,
                _ => Outcome::BadInput,
            }
        }
    }
}

/// POSTs to the agent's policy API and reports its `{"ok":…}` answer.
fn ask_agent(api: &str, path: &str, done: &str) -> Outcome {
    let response = match http("POST", api, path) {
        Ok(response) => response,
        Err(HttpError::Refused) => {
            eprintln!("error: no agent API at {api} (is hostflow running?)");
            return Outcome::Unavailable;
        }
        Err(HttpError::Other(message)) => {
            eprintln!("error: agent API at {api}: {message}");
            return Outcome::Unavailable;
        }
    };
    let body: Option<serde_json::Value> = serde_json::from_str(&response.body).ok();
    match body {
        Some(body) if body["ok"] == true => {
            println!("{done}; policy now in force: {}", body["digest"].as_str().unwrap_or("(no digest given)"));
            Outcome::Success
        }
        Some(body) if body["ok"] == false => {
            eprintln!("error: the agent refused: {}", body["error"].as_str().unwrap_or("(no reason given)"));
            Outcome::RunFailed
        }
        _ if response.status == 404 => {
            eprintln!("error: the agent at {api} has no {path} endpoint (HTTP 404); is it older than policy support?");
            Outcome::Unavailable
        }
        _ => {
            let shown: String = response.body.chars().take(200).collect();
            eprintln!("error: unexpected answer from {api} (HTTP {}): {shown}", response.status);
            Outcome::RunFailed
        }
    }
}

/// An HTTP/1.1 answer from the agent's API.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Why the agent's API could not be asked.
pub(crate) enum HttpError {
    Refused,
    Other(String),
}

/// One request without a body to the agent's API (`HOST:PORT`, or a URL).
pub(crate) fn http(method: &str, api: &str, path: &str) -> Result<Response, HttpError> {
    // An address pasted as a URL works too.
    let api = api.strip_prefix("http://").unwrap_or(api).trim_end_matches('/');
    let addrs: Vec<_> = api
        .to_socket_addrs()
        .map_err(|error| HttpError::Other(format!("`{api}` is not a HOST:PORT address ({error})")))?
        .collect();
    let mut last_error = HttpError::Other(format!("`{api}` resolves to no address"));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, HTTP_TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => last_error = HttpError::Refused,
            Err(error) => last_error = HttpError::Other(error.to_string()),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let io = |error: std::io::Error| HttpError::Other(error.to_string());
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nUser-Agent: hostflow/{}\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    // Bounded: the answer is a line of JSON, or a ledger of a few KiB per component.
    stream.take(16 << 20).read_to_end(&mut raw).map_err(io)?;
    parse_response(&raw).ok_or_else(|| HttpError::Other("the answer is not an HTTP/1.1 response".to_owned()))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.strip_prefix("HTTP/1.")?.get(2..)?.split(' ').next()?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(length) = length {
        body.truncate(length);
    }
    Some(Response { status, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_responses() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}extra").expect("parses");
        assert_eq!((plain.status, plain.body.as_str()), (200, "{\"ok\":true}"));
        let chunked = parse_response(
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n7\r\n:false}\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!((chunked.status, chunked.body.as_str()), (409, "{\"ok\":false}"));
        assert!(parse_response(b"garbage").is_none());
    }
}
