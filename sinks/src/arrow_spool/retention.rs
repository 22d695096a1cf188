//! Retention: delete finished spool files, oldest first, while the spool is
//! over its size bound or a file is older than the age bound.
//!
//! Only finished `<kind>-<seq>.arrow` files are candidates, so the files
//! being written (`.arrow.tmp`) are never removed; their bytes still count
//! towards the size bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::writer::parse_seq;

/// A finished spool file.
#[derive(Debug)]
struct Finished {
    modified: SystemTime,
    seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// Deletes finished files under `root/<kind>/` for every kind in `kinds`,
/// oldest first (by modification time, then sequence), while the total of
/// finished bytes plus `open_bytes` exceeds `max_bytes`, or while the oldest
/// is older than `max_age`. Returns the deleted paths.
pub fn enforce(root: &Path, kinds: &[&str], open_bytes: u64, max_bytes: u64, max_age: Duration) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in kinds {
        let Ok(entries) = std::fs::read_dir(root.join(kind)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.ends_with(".arrow") {
                continue;
            }
            let (Some(seq), Ok(meta)) = (parse_seq(kind, &name), entry.metadata()) else { continue };
            files.push(Finished {
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                seq,
                path: entry.path(),
                bytes: meta.len(),
            });
        }
    }
    files.sort_by_key(|f| (f.modified, f.seq));
    let mut total: u64 = open_bytes + files.iter().map(|f| f.bytes).sum::<u64>();
    let now = SystemTime::now();
    let mut deleted = Vec::new();
    for file in files {
        let too_old = now.duration_since(file.modified).is_ok_and(|age| age > max_age);
        if total <= max_bytes && !too_old {
            break;
        }
        match std::fs::remove_file(&file.path) {
            Ok(()) => {
                total -= file.bytes;
                tracing::info!(path = %file.path.display(), bytes = file.bytes, "spool retention deleted a file");
                deleted.push(file.path);
            }
            Err(error) => tracing::warn!(path = %file.path.display(), %error, "spool retention could not delete"),
        }
    }
    deleted
}
