//! Collects the rows of one `/proc` scan so per-scan transforms (`topn`,
//! `tail`) can work on a whole scan at once.
//!
//! A scan is complete when `scan_size` rows with its `scan_id` have
//! arrived (the procfs source sends each scan as one batch, so this is
//! normally the end of that batch). If rows of a newer scan arrive first —
//! an upstream `drop_newest` buffer cut the scan short — the partial scan is
//! released as it is rather than held forever.

use pipeline::event::ProcessSample;
use pipeline::{Batch, Event};

/// Rows of the scan in progress.
#[derive(Debug, Default)]
pub struct ScanCollector {
    rows: Vec<ProcessSample>,
    scan_id: Option<u64>,
    scan_size: usize,
}

impl ScanCollector {
    /// Takes a batch: process samples are collected, every other event is
    /// handed to `pass` at once. Each completed scan is handed to `complete`
    /// (in arrival order).
    pub fn push_batch(
        &mut self,
        batch: Batch,
        mut pass: impl FnMut(Event),
        mut complete: impl FnMut(Vec<ProcessSample>),
    ) {
        for event in batch {
            let Event::ProcessSample(sample) = event else {
                pass(event);
                continue;
            };
            if self.scan_id.is_some_and(|id| id != sample.scan.scan_id) {
                complete(self.take());
            }
            self.scan_id = Some(sample.scan.scan_id);
            self.scan_size = sample.scan.scan_size as usize;
            self.rows.push(sample);
            if self.rows.len() >= self.scan_size {
                complete(self.take());
            }
        }
    }

    /// True when no scan is in progress.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows of an unfinished scan (at shutdown), if any.
    pub fn take(&mut self) -> Vec<ProcessSample> {
        self.scan_id = None;
        std::mem::take(&mut self.rows)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use pipeline::event::{EventMeta, ScanInfo};
    use pipeline::ProcessKey;

    use super::*;

    pub(crate) fn sample(scan_id: u64, scan_size: u32, pid: u32) -> ProcessSample {
        ProcessSample {
            meta: EventMeta { ts_ns: scan_id, event_id: u64::from(pid) },
            process: ProcessKey { pid, start_time_ns: 1 },
            scan: ScanInfo { scan_id, scan_size },
            ppid: 1,
            uid: 0,
            name: Arc::from("p"),
            cmdline: Arc::from(""),
            state: b'S',
            threads: 1,
            cpu_ticks: 0,
            cpu_percent: 0.0,
            rss_bytes: 0,
            top_n_rank: 0,
        }
    }

    fn check(batches: Vec<Batch>, expected_scans: &[&[u32]]) {
        let mut collector = ScanCollector::default();
        let mut scans: Vec<Vec<u32>> = Vec::new();
        for batch in batches {
            collector.push_batch(batch, |_| {}, |rows| scans.push(rows.iter().map(|r| r.process.pid).collect()));
        }
        let rest = collector.take();
        if !rest.is_empty() {
            scans.push(rest.iter().map(|r| r.process.pid).collect());
        }
        let expected: Vec<Vec<u32>> = expected_scans.iter().map(|s| s.to_vec()).collect();
        assert_eq!(scans, expected);
    }

    #[test]
    fn scans_complete_by_size_across_batches_and_on_a_newer_scan() {
        let s = |scan, size, pid| Event::ProcessSample(sample(scan, size, pid));
        check(vec![vec![s(1, 2, 10), s(1, 2, 11), s(2, 1, 12)]], &[&[10, 11], &[12]]);
        check(vec![vec![s(1, 3, 10)], vec![s(1, 3, 11), s(1, 3, 12)]], &[&[10, 11, 12]]);
        // Scan 1 lost a row upstream: released when scan 2 starts.
        check(vec![vec![s(1, 3, 10), s(1, 3, 11)], vec![s(2, 1, 20)]], &[&[10, 11], &[20]]);
        // Unfinished at shutdown.
        check(vec![vec![s(5, 4, 1)]], &[&[1]]);
    }
}
