//! `hostflow validate --buffer DIR`: a disk buffer's directory checked the
//! way the agent would read it at start, without changing anything: every
//! segment's records and checksums, torn tails, the acknowledgement file,
//! and files that do not belong there.
//!
//! Exit 0 when everything is sound; 65 (`EX_DATAERR`) when a segment is
//! torn or unreadable, the ack file is damaged, or unknown files are
//! present; 66 when DIR cannot be read.

use std::path::Path;

use crate::commands::Outcome;

/// Checks the disk buffer at `dir` and prints one line per file and a summary.
pub fn validate_buffer(dir: &Path) -> Outcome {
    if !dir.is_dir() {
        eprintln!("{}: error: not a directory (a disk buffer's `path`)", dir.display());
        return Outcome::Unreadable;
    }
    let report = match pipeline::disk_buffer::verify_dir(dir) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("{}: error: {}", dir.display(), pipeline::error_chain(&error));
            return Outcome::Unreadable;
        }
    };
    let (mut records, mut events, mut problems) = (0u64, 0u64, 0usize);
    for segment in &report.segments {
        let shown = segment.path.strip_prefix(dir).unwrap_or(&segment.path).display();
        records += segment.records;
        events += segment.events;
        match (&segment.problem, segment.torn_records) {
            (Some(problem), _) => {
                problems += 1;
                println!("PROBLEM {shown}: {problem}");
            }
            (None, 0) => println!(
                "ok      {shown}: {} records, {} events, {} bytes",
                segment.records, segment.events, segment.bytes
            ),
            (None, torn) => {
                problems += 1;
                println!(
                    "TORN    {shown}: {} records readable, then {torn} torn ({} bytes) that the agent would skip and count",
                    segment.records, segment.torn_bytes
                );
            }
        }
    }
    if let Some(problem) = &report.ack_file_problem {
        problems += 1;
        println!("PROBLEM ack file: {problem} (the agent would deliver from the oldest segment again)");
    }
    for unknown in &report.unknown_files {
        problems += 1;
        let shown = unknown.strip_prefix(dir).unwrap_or(unknown).display();
        println!("UNKNOWN {shown}: not a segment or ack file; the agent refuses to start on this directory");
    }
    println!(
        "{}: {} segments, {records} records, {events} events readable; acknowledged through {}; {problems} problem(s)",
        dir.display(),
        report.segments.len(),
        report.acked_through.map_or_else(|| "nothing".to_owned(), |id| format!("{id:?}")),
    );
    if report.is_clean() && problems == 0 {
        Outcome::Success
    } else {
        Outcome::BadInput
    }
}
