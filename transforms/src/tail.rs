//! `tail`: folds every process outside the Top-N into one
//! `ProcessAggregateSample` per display name and scan.
//!
//! Put it after `topn`: rows with a `top_n_rank` pass through unchanged,
//! unranked rows are summed by name (count, CPU ticks and percent, RSS sum
//! and max). Integer sums make the books balance exactly: for every scan,
//! Top-N rows plus tail rows add up to the scan's process count, CPU ticks
//! and RSS. This is an aggregating transform: `sent` counts the rows and
//! aggregates it emits, not the processes folded into them.
//!
//! ```toml
//! [transforms.rest]
//! type = "tail"
//! inputs = ["top"]
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use pipeline::event::{EventMeta, ProcessAggregateSample, ProcessSample};
use pipeline::{Batch, ComponentOptions, ConfigError, Event, Output, Transform};
use serde::Deserialize;

use crate::scan::ScanCollector;

/// `[transforms.NAME] type = "tail"` (no options yet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {}

/// Builds a tail from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |_: TailConfig, _| Ok(Box::new(Tail::default()) as Box<dyn Transform>))
}

/// Folds the unranked rows of each scan.
#[derive(Debug, Default)]
pub struct Tail {
    collector: ScanCollector,
}

impl Tail {
    fn fold_scan(rows: Vec<ProcessSample>, out: &mut Output) {
        let Some(first) = rows.first() else { return };
        let scan = first.scan;
        let mut ts_ns = 0;
        let mut groups: BTreeMap<Arc<str>, ProcessAggregateSample> = BTreeMap::new();
        for row in rows {
            ts_ns = ts_ns.max(row.meta.ts_ns);
            if row.top_n_rank > 0 {
                out.push(Event::ProcessSample(row));
                continue;
            }
            let group = groups.entry(Arc::clone(&row.name)).or_insert_with(|| ProcessAggregateSample {
                meta: EventMeta { ts_ns: 0, event_id: 0 },
                scan,
                name: Arc::clone(&row.name),
                count: 0,
                cpu_ticks_sum: 0,
                cpu_percent_sum: 0.0,
                rss_bytes_sum: 0,
                rss_bytes_max: 0,
            });
            group.count += 1;
            group.cpu_ticks_sum += row.cpu_ticks;
            group.cpu_percent_sum += row.cpu_percent;
            group.rss_bytes_sum += row.rss_bytes;
            group.rss_bytes_max = group.rss_bytes_max.max(row.rss_bytes);
        }
        // Names in sorted order and ids drawn in that order: the same scan
        // always yields byte-identical aggregates.
        for (_, mut group) in groups {
            group.meta = EventMeta { ts_ns, event_id: out.next_event_id() };
            out.push(Event::ProcessAggregate(group));
        }
    }
}

impl Transform for Tail {
    fn process(&mut self, batch: Batch, out: &mut Output) {
        let mut completed = Vec::new();
        let mut passed = Vec::new();
        self.collector.push_batch(batch, |event| passed.push(event), |rows| completed.push(rows));
        for event in passed {
            out.push(event);
        }
        for rows in completed {
            Tail::fold_scan(rows, out);
        }
    }

    fn flush(&mut self, out: &mut Output) {
        Tail::fold_scan(self.collector.take(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topn::tests::{random_scan, Rng};
    use crate::topn::TopN;

    /// topn → tail over random scans: per scan, Top-N rows + tail rows add
    /// up exactly to the scan's totals, and every tail row is one name.
    #[test]
    fn top_rows_plus_tail_rows_equal_the_scan_totals() {
        let mut rng = Rng(7);
        for scan_id in 0..200u64 {
            let k = (rng.next() % 300) as u32;
            let n = 1 + (rng.next() % 25) as usize;
            let rows = random_scan(&mut rng, scan_id, k);
            let totals = (
                rows.len() as u64,
                rows.iter().map(|r| r.cpu_ticks).sum::<u64>(),
                rows.iter().map(|r| r.rss_bytes).sum::<u64>(),
            );
            let mut top = TopN::new(n, 1.0, 0.01);
            let ranked =
                pipeline::testing::run_transform(&mut top, vec![rows.into_iter().map(Event::ProcessSample).collect()]);
            let mut tail = Tail::default();
            let mut output = Output::default();
            tail.process(ranked.events, &mut output);
            tail.flush(&mut output);
            let events = output.take_events();

            let (mut count, mut ticks, mut rss, mut names) = (0u64, 0u64, 0u64, Vec::new());
            for event in &events {
                match event {
                    Event::ProcessSample(row) => {
                        assert!(row.top_n_rank >= 1 && row.top_n_rank as usize <= n);
                        count += 1;
                        ticks += row.cpu_ticks;
                        rss += row.rss_bytes;
                    }
                    Event::ProcessAggregate(group) => {
                        count += u64::from(group.count);
                        ticks += group.cpu_ticks_sum;
                        rss += group.rss_bytes_sum;
                        assert!(group.rss_bytes_max <= group.rss_bytes_sum);
                        assert_eq!(group.scan.scan_id, scan_id);
                        names.push(group.name.clone());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!((count, ticks, rss), totals, "scan {scan_id}: n={n} k={k}");
            let mut unique = names.clone();
            unique.dedup();
            assert_eq!(names, unique, "one aggregate per name, in name order");
        }
    }

    #[test]
    fn folds_by_name_with_exact_sums_and_max() {
        let mut rows = Vec::new();
        for (pid, name, ticks, rss, rank) in
            [(1, "a", 5, 100, 1), (2, "b", 1, 10, 0), (3, "b", 2, 30, 0), (4, "c", 0, 7, 0)]
        {
            let mut row = crate::scan::tests::sample(1, 4, pid);
            row.name = Arc::from(name);
            row.cpu_ticks = ticks;
            row.cpu_percent = ticks as f64;
            row.rss_bytes = rss;
            row.top_n_rank = rank;
            rows.push(Event::ProcessSample(row));
        }
        let mut tail = Tail::default();
        let mut output = Output::with_event_id_prefix(7 << 48);
        tail.process(rows, &mut output);
        let events = output.take_events();
        assert_eq!(events.len(), 3);
        let Event::ProcessAggregate(b) = &events[1] else { panic!("{:?}", events[1]) };
        assert_eq!((&*b.name, b.count, b.cpu_ticks_sum, b.rss_bytes_sum, b.rss_bytes_max), ("b", 2, 3, 40, 30));
        assert_eq!(b.meta.event_id, 7 << 48, "ids from the transform's own space");
        let Event::ProcessAggregate(c) = &events[2] else { panic!("{:?}", events[2]) };
        assert_eq!((&*c.name, c.count, c.meta.event_id), ("c", 1, (7 << 48) | 1));
    }
}
