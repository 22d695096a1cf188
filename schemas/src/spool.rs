//! The on-disk layout of the Arrow spool, shared by the spool sink that writes
//! it, the replay source and the query command that read it.
//!
//! ```text
//! <spool dir>/<kind>/<kind>-<seq>.arrow        finished: an Arrow IPC file with its footer
//! <spool dir>/<kind>/<kind>-<seq>.arrow.tmp    being written (or left by a crash)
//! <spool dir>/<kind>/quarantine/               unreadable leftovers, set aside
//! ```
//!
//! `<kind>` is one of [`KINDS`](crate::KINDS) and names the file's schema
//! ([`schema_for`](crate::schema_for)); `<seq>` is ten decimal digits, so
//! name order is write order. Readers only ever open finished files: a file
//! without its footer cannot be opened as an IPC file, which is why the writer
//! renames only once the footer is written.

/// The finished name of file `seq` of `kind`.
pub fn finished_name(kind: &str, seq: u64) -> String {
    format!("{kind}-{seq:010}.arrow")
}

/// The name of file `seq` of `kind` while it is written.
pub fn tmp_name(kind: &str, seq: u64) -> String {
    format!("{kind}-{seq:010}.arrow.tmp")
}

/// The sequence number of a spool file name of `kind` (finished or tmp).
pub fn parse_seq(kind: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(kind)?.strip_prefix('-')?;
    let digits = rest.strip_suffix(".arrow.tmp").or_else(|| rest.strip_suffix(".arrow"))?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Whether `name` is a finished file of `kind` (not a tmp file).
pub fn is_finished(kind: &str, name: &str) -> bool {
    name.ends_with(".arrow") && parse_seq(kind, name).is_some()
}

/// The finished files of `kind` under `spool_dir`, oldest first, with their
/// sequence numbers. A missing kind directory is an empty list; any other
/// error reading the directory is returned.
pub fn finished_files(spool_dir: &std::path::Path, kind: &str) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
    let dir = spool_dir.join(kind);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".arrow") {
            if let Some(seq) = parse_seq(kind, name) {
                files.push((seq, entry.path()));
            }
        }
    }
    files.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(finished_name("sketch", 7), "sketch-0000000007.arrow");
        assert_eq!(parse_seq("sketch", &finished_name("sketch", 7)), Some(7));
        assert_eq!(parse_seq("sketch", &tmp_name("sketch", 42)), Some(42));
        assert!(is_finished("sketch", "sketch-0000000007.arrow"));
        assert!(!is_finished("sketch", "sketch-0000000007.arrow.tmp"));
        for stranger in
            ["sketch-7.arrow", "sketch-00000000x7.arrow", "process_exec-0000000007.arrow", "sketch-0000000007.parquet"]
        {
            assert_eq!(parse_seq("sketch", stranger), None, "{stranger}");
        }
    }

    #[test]
    fn finished_files_are_listed_in_write_order() {
        let dir = std::env::temp_dir().join(format!("hostflow-spool-layout-{}", std::process::id()));
        let kind_dir = dir.join("sketch");
        std::fs::create_dir_all(&kind_dir).expect("mkdir");
        for name in
            [finished_name("sketch", 10), finished_name("sketch", 2), tmp_name("sketch", 11), "notes.txt".into()]
        {
            std::fs::write(kind_dir.join(name), b"").expect("write");
        }
        let files = finished_files(&dir, "sketch").expect("list");
        assert_eq!(files.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![2, 10]);
        assert!(finished_files(&dir, "process_exec").expect("missing kind").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
