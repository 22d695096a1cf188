//! The policy audit log: one NDJSON line per apply, rollback, clear and
//! rejected update, hash-chained so an edited, removed, inserted or moved
//! line is detected and named by number.
//!
//! Each line carries `seq` (1, 2, …), `time` (UTC, RFC 3339), `event`, the
//! event's fields, `prev` (the previous line's `hash`; 64 zeros on the
//! first) and `hash` = SHA-256 of `prev`, a newline, and the line's other
//! fields as compact JSON with keys sorted. A chain alone cannot see its
//! last lines cut off, so `<log>.head` records the last `seq` and `hash`
//! written; verification compares the log's end with it.
//!
//! Files are 0600 and the directory 0700: the log names the policies and
//! keys in force.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::signature::hex;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one line records, besides what the log adds (seq, time, chain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `apply`, `rollback`, `clear`, `rejected`, …
    pub event: String,
    /// The digest of the policy now in force (or proposed, if rejected).
    pub digest: Option<String>,
    /// The digest of the policy it replaced.
    pub previous_digest: Option<String>,
    /// Why (a rejection's reason, a rollback's step count).
    pub reason: Option<String>,
    /// Where the policy came from (a path).
    pub source: Option<String>,
    /// The key that signed it.
    pub key: Option<String>,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// 1-based line number.
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Why the log could not be checked or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit log broken at {0}")]
    Broken(Break),
}

/// An open log, appending after the last line found.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    last_hash: String,
    next_seq: u64,
    broken: Option<Break>,
}

/// What a full read of a log found.
struct Scan {
    lines: usize,
    last_hash: String,
    last_seq: u64,
    broken: Option<Break>,
}

impl AuditLog {
    /// Opens (creating it, and its directory, if absent) the log at `path`
    /// and checks it whole. A broken log still opens: the break is kept in
    /// [`AuditLog::broken`] and logged, and new lines chain from the last
    /// line as found, so the evidence stays and the chain goes on.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io)?;
        }
        let scan = match std::fs::read_to_string(path) {
            Ok(text) => scan(&text, read_head(path).as_ref()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Scan { lines: 0, last_hash: GENESIS.to_owned(), last_seq: 0, broken: None }
            }
            Err(error) => return Err(io(error)),
        };
        if let Some(broken) = &scan.broken {
            tracing::error!(log = %path.display(), "policy audit log broken at {broken}; appending after its last line");
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            last_hash: scan.last_hash,
            next_seq: scan.last_seq + 1,
            broken: scan.broken,
        })
    }

    /// Where the chain was found broken when the log was opened.
    pub fn broken(&self) -> Option<&Break> {
        self.broken.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (synced to disk before returning) and returns it.
    pub fn append(&mut self, entry: &Entry, now: SystemTime) -> Result<String, AuditError> {
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        let mut fields = Map::new();
        fields.insert("seq".into(), Value::from(self.next_seq));
        fields.insert("time".into(), Value::from(rfc3339(now)));
        fields.insert("event".into(), Value::from(entry.event.as_str()));
        let optional = [
            ("digest", &entry.digest),
            ("previous_digest", &entry.previous_digest),
            ("reason", &entry.reason),
            ("source", &entry.source),
            ("key", &entry.key),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.insert(name.into(), Value::from(value.as_str()));
            }
        }
        fields.insert("prev".into(), Value::from(self.last_hash.as_str()));
        let hash = line_hash(&self.last_hash, &fields);
        // Written in a fixed, readable order; the hash does not depend on it.
        let mut line = String::from("{");
        let order = ["seq", "time", "event", "digest", "previous_digest", "reason", "source", "key", "prev"];
        for name in order {
            if let Some(value) = fields.get(name) {
                line.push_str(&format!("{}:{},", Value::from(name), value));
            }
        }
        line.push_str(&format!("\"hash\":\"{hash}\"}}\n"));
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file =
            std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&self.path).map_err(io)?;
        file.write_all(line.as_bytes()).and_then(|()| file.sync_data()).map_err(io)?;
        let head = format!("{{\"seq\":{},\"hash\":\"{hash}\"}}\n", self.next_seq);
        write_private(&head_path(&self.path), head.as_bytes()).map_err(io)?;
        self.last_hash = hash;
        self.next_seq += 1;
        line.pop();
        Ok(line)
    }
}

/// Checks the log at `path` whole: `Ok(number of lines)`, or the first
/// break.
pub fn verify(path: &Path) -> Result<usize, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let scan = scan(&text, read_head(path).as_ref());
    match scan.broken {
        Some(broken) => Err(AuditError::Broken(broken)),
        None => Ok(scan.lines),
    }
}

fn line_hash(prev: &str, fields: &Map<String, Value>) -> String {
    let mut names: Vec<&String> = fields.keys().filter(|name| *name != "hash").collect();
    names.sort();
    let mut canonical = String::from("{");
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            canonical.push(',');
        }
        canonical.push_str(&format!("{}:{}", Value::from(name.as_str()), fields[name.as_str()]));
    }
    canonical.push('}');
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex(&hasher.finalize())
}

fn scan(text: &str, head: Option<&(u64, String)>) -> Scan {
    let mut found = Scan { lines: 0, last_hash: GENESIS.to_owned(), last_seq: 0, broken: None };
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return check_head(found, head);
    }
    for (index, raw) in body.split('\n').enumerate() {
        let number = index + 1;
        found.lines = number;
        let problem = check_line(raw, &found.last_hash, found.last_seq + 1);
        // Chain on from what the line says (or its bytes), so a later append
        // continues after it whatever it holds.
        let parsed: Option<Map<String, Value>> = serde_json::from_str(raw).ok();
        let hash = parsed.as_ref().and_then(|fields| fields.get("hash")?.as_str().map(str::to_owned));
        found.last_hash = hash.unwrap_or_else(|| hex(&Sha256::digest(raw.as_bytes())));
        let seq = parsed.as_ref().and_then(|fields| fields.get("seq")?.as_u64());
        found.last_seq = seq.unwrap_or(found.last_seq + 1);
        if let (Some(what), None) = (problem, &found.broken) {
            found.broken = Some(Break { line: number, what });
        }
    }
    check_head(found, head)
}

/// What is wrong with one line, given what the line before it says.
fn check_line(raw: &str, expected_prev: &str, expected_seq: u64) -> Option<String> {
    let Ok(fields) = serde_json::from_str::<Map<String, Value>>(raw) else {
        return Some("not a JSON object (edited or truncated)".to_owned());
    };
    let Some(hash) = fields.get("hash").and_then(Value::as_str) else {
        return Some("no `hash` field".to_owned());
    };
    if line_hash(fields.get("prev").and_then(Value::as_str).unwrap_or(""), &fields) != hash {
        return Some("content does not match its hash (the line was edited)".to_owned());
    }
    if fields.get("prev").and_then(Value::as_str) != Some(expected_prev) {
        return Some(if expected_seq == 1 {
            "does not start the chain (lines removed from the start?)".to_owned()
        } else {
            format!("`prev` is not the hash of line {}: a line was removed, inserted or moved here", expected_seq - 1)
        });
    }
    match fields.get("seq").and_then(Value::as_u64) {
        Some(seq) if seq == expected_seq => None,
        Some(seq) => Some(format!("seq {seq}, expected {expected_seq}")),
        None => Some("no `seq` field".to_owned()),
    }
}

fn check_head(mut found: Scan, head: Option<&(u64, String)>) -> Scan {
    let Some((head_seq, head_hash)) = head else { return found };
    if found.broken.is_some() {
        return found;
    }
    if *head_seq > found.last_seq {
        found.broken = Some(Break {
            line: found.lines + 1,
            what: format!(
                "missing: the log ends at seq {} but seq {head_seq} was written (lines removed from the end)",
                found.last_seq
            ),
        });
    } else if *head_seq == found.last_seq && *head_hash != found.last_hash {
        found.broken = Some(Break { line: found.lines, what: "not the last line that was written".to_owned() });
    }
    // A log longer than its head: a crash between the two writes, or lines
    // added by hand (which the chain itself catches unless hashed right).
    found
}

fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

fn read_head(log: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(head_path(log)).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    Some((value["seq"].as_u64()?, value["hash"].as_str()?.to_owned()))
}

/// Creates `dir` (and parents) as 0700 if absent.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Replaces `path` with `bytes` (0600), atomically: written beside it,
/// synced, renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&temporary, path)
}

/// `2026-12-04T10:09:31.123Z`: RFC 3339 in UTC with milliseconds, from
/// the civil-from-days algorithm (no calendar crate for one format).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_380_171)), "2026-12-04T10:29:31.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59.000Z");
    }
}
