//! `topn`: ranks the N highest-scoring processes of each scan.
//!
//! Every row passes through (the transform is 1:1); the N best get
//! `top_n_rank` 1..=N and the rest keep 0, so a following `tail` can fold
//! them. Score = `cpu_weight` × cpu% + `rss_weight` × RSS in MiB. Ties break
//! on pid, then start time, so the same scan always ranks the same way.
//!
//! Selection is a bounded min-heap of the N best seen so far — O(k log N)
//! for k processes — except when k ≤ 1.25·N, where sorting everything is
//! cheaper than maintaining a heap that keeps almost every row anyway.
//!
//! ```toml
//! [transforms.top]
//! type = "topn"
//! inputs = ["procfs"]
//! n = 20
//! cpu_weight = 1.0
//! rss_weight = 0.01   # per MiB: 100 MiB of RSS weighs like 1 % of a core
//! ```

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use metrics::Gauge;
use pipeline::event::ProcessSample;
use pipeline::metrics::names;
use pipeline::{Batch, ComponentOptions, ConfigError, Event, Output, Transform};
use serde::Deserialize;
use toml::Spanned;

use crate::scan::ScanCollector;

/// `[transforms.NAME] type = "topn"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopNConfig {
    /// Processes ranked per scan (at least 1).
    #[serde(default = "default_n")]
    pub n: Spanned<i64>,
    /// Weight of cpu% (of one core) in the score.
    #[serde(default = "default_cpu_weight")]
    pub cpu_weight: Spanned<f64>,
    /// Weight of each MiB of resident memory in the score.
    #[serde(default = "default_rss_weight")]
    pub rss_weight: Spanned<f64>,
}

fn default_n() -> Spanned<i64> {
    Spanned::new(0..0, 20)
}

fn default_cpu_weight() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

fn default_rss_weight() -> Spanned<f64> {
    Spanned::new(0..0, 0.01)
}

/// Largest N accepted: a "top" of more rows than this is not a top.
pub const MAX_N: i64 = 100_000;

/// Builds a topn from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: TopNConfig, options| {
        let mut errors = Vec::new();
        let n = *config.n.get_ref();
        if !(1..=MAX_N).contains(&n) {
            errors.push(options.error_at(config.n.span(), format!("n must be between 1 and {MAX_N}, got {n}")));
        }
        for (key, weight) in [("cpu_weight", &config.cpu_weight), ("rss_weight", &config.rss_weight)] {
            let value = *weight.get_ref();
            if !(value.is_finite() && value >= 0.0) {
                errors.push(options.error_at(weight.span(), format!("{key} must be a finite number ≥ 0, got {value}")));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut top = TopN::new(n as usize, *config.cpu_weight.get_ref(), *config.rss_weight.get_ref());
        top.capture_gauge = metrics::gauge!(names::TOPN_CAPTURE_RATIO, "component" => options.component.clone());
        Ok(Box::new(top) as Box<dyn Transform>)
    })
}

/// A configured Top-N ranker.
pub struct TopN {
    n: usize,
    cpu_weight: f64,
    rss_weight_per_mib: f64,
    collector: ScanCollector,
    capture_gauge: Gauge,
    last_capture_ratio: Option<f64>,
}

/// A row's ranking key: higher score first, then lower pid, then earlier start.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f64,
    pid: u32,
    start_time_ns: u64,
    index: usize,
}

impl Candidate {
    /// `Less` means `self` ranks before (is better than) `other`.
    fn rank_cmp(&self, other: &Candidate) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.pid.cmp(&other.pid))
            .then(self.start_time_ns.cmp(&other.start_time_ns))
    }
}

/// Heap order: the *worst* kept candidate on top, so it is the one replaced.
struct Worst(Candidate);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_cmp(&other.0)
    }
}

impl TopN {
    /// A ranker keeping `n` rows per scan (n ≥ 1).
    pub fn new(n: usize, cpu_weight: f64, rss_weight_per_mib: f64) -> TopN {
        TopN {
            n: n.max(1),
            cpu_weight,
            rss_weight_per_mib,
            collector: ScanCollector::default(),
            capture_gauge: Gauge::noop(),
            last_capture_ratio: None,
        }
    }

    /// Share of the last completed scan's CPU ticks carried by its Top-N
    /// rows (1.0 for a scan that used no CPU at all).
    pub fn last_capture_ratio(&self) -> Option<f64> {
        self.last_capture_ratio
    }

    fn score(&self, row: &ProcessSample) -> f64 {
        self.cpu_weight * row.cpu_percent + self.rss_weight_per_mib * (row.rss_bytes as f64 / (1024.0 * 1024.0))
    }

    /// Indices (positions in `rows`) of the best `n` rows, best first.
    fn select<'a>(&self, rows: impl ExactSizeIterator<Item = &'a ProcessSample>) -> Vec<usize> {
        let k = rows.len();
        let candidates = rows.enumerate().map(|(index, row)| Candidate {
            score: self.score(row),
            pid: row.process.pid,
            start_time_ns: row.process.start_time_ns,
            index,
        });
        let mut best: Vec<Candidate> = if k * 4 <= self.n * 5 {
            // k ≤ 1.25·N: the heap would keep nearly everything; sort instead.
            candidates.collect()
        } else {
            let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(self.n + 1);
            for candidate in candidates {
                if heap.len() < self.n {
                    heap.push(Worst(candidate));
                } else if let Some(mut worst) = heap.peek_mut() {
                    if candidate.rank_cmp(&worst.0) == Ordering::Less {
                        *worst = Worst(candidate);
                    }
                }
            }
            heap.into_iter().map(|w| w.0).collect()
        };
        best.sort_by(Candidate::rank_cmp);
        best.truncate(self.n);
        best.into_iter().map(|c| c.index).collect()
    }

    fn rank_scan(&mut self, mut rows: Vec<ProcessSample>, out: &mut Output) {
        let selected = self.select(rows.iter());
        let total_ticks = rows.iter().map(|r| r.cpu_ticks).sum();
        let mut rows_mut: Vec<&mut ProcessSample> = rows.iter_mut().collect();
        self.assign_ranks(&selected, &mut rows_mut, total_ticks);
        for row in rows {
            out.push(Event::ProcessSample(row));
        }
    }

    /// Sets ranks 1..=n on the selected rows and records the capture ratio.
    fn assign_ranks(&mut self, selected: &[usize], rows: &mut [&mut ProcessSample], total_ticks: u64) {
        let mut top_ticks = 0u64;
        for (rank, &index) in selected.iter().enumerate() {
            rows[index].top_n_rank = rank as u32 + 1;
            top_ticks += rows[index].cpu_ticks;
        }
        let ratio = if total_ticks == 0 { 1.0 } else { top_ticks as f64 / total_ticks as f64 };
        self.capture_gauge.set(ratio);
        self.last_capture_ratio = Some(ratio);
    }

    /// The common case — the batch is exactly one whole scan and nothing is
    /// pending — ranked in place, without moving a row.
    fn try_rank_whole_batch(&mut self, batch: &mut Batch) -> bool {
        let Some(Event::ProcessSample(first)) = batch.first() else { return false };
        let scan = first.scan;
        if !self.collector.is_empty()
            || batch.len() != scan.scan_size as usize
            || !batch.iter().all(|e| matches!(e, Event::ProcessSample(s) if s.scan.scan_id == scan.scan_id))
        {
            return false;
        }
        let rows = || batch.iter().filter_map(|e| if let Event::ProcessSample(s) = e { Some(s) } else { None });
        let total_ticks: u64 = rows().map(|r| r.cpu_ticks).sum();
        let selected = self.select(ExactRows(rows(), batch.len()));
        let mut rows_mut: Vec<&mut ProcessSample> =
            batch.iter_mut().filter_map(|e| if let Event::ProcessSample(s) = e { Some(s) } else { None }).collect();
        self.assign_ranks(&selected, &mut rows_mut, total_ticks);
        true
    }
}

/// An iterator with a known length (the rows of an all-sample batch).
struct ExactRows<I>(I, usize);

impl<'a, I: Iterator<Item = &'a ProcessSample>> Iterator for ExactRows<I> {
    type Item = &'a ProcessSample;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.0.next()?;
        self.1 -= 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<'a, I: Iterator<Item = &'a ProcessSample>> ExactSizeIterator for ExactRows<I> {}

impl Transform for TopN {
    fn process(&mut self, mut batch: Batch, out: &mut Output) {
        if self.try_rank_whole_batch(&mut batch) {
            out.extend(batch);
            return;
        }
        let mut completed = Vec::new();
        let mut passed = Vec::new();
        self.collector.push_batch(batch, |event| passed.push(event), |rows| completed.push(rows));
        for event in passed {
            out.push(event);
        }
        for rows in completed {
            self.rank_scan(rows, out);
        }
    }

    fn flush(&mut self, out: &mut Output) {
        let rows = self.collector.take();
        if !rows.is_empty() {
            self.rank_scan(rows, out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scan::tests::sample;

    /// A tiny seeded PRNG (SplitMix64) so property tests are reproducible.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    pub(crate) fn random_scan(rng: &mut Rng, scan_id: u64, k: u32) -> Vec<ProcessSample> {
        (0..k)
            .map(|i| {
                let mut row = sample(scan_id, k, 100 + (rng.next() % 50_000) as u32 + i * 50_000);
                // Coarse values so ties happen and tie-breaking is exercised.
                row.cpu_ticks = rng.next() % 20;
                row.cpu_percent = row.cpu_ticks as f64 * 10.0;
                row.rss_bytes = (rng.next() % 8) * 64 * 1024 * 1024;
                row.name = std::sync::Arc::from(["bash", "nginx", "kworker", "sshd"][(rng.next() % 4) as usize]);
                row
            })
            .collect()
    }

    fn ranks(events: &[Event]) -> Vec<(u32, u32)> {
        let mut ranked: Vec<(u32, u32)> = events
            .iter()
            .filter_map(|e| match e {
                Event::ProcessSample(s) if s.top_n_rank > 0 => Some((s.top_n_rank, s.process.pid)),
                _ => None,
            })
            .collect();
        ranked.sort_unstable();
        ranked
    }

    /// Brute force: sort every row by the same rule, take n.
    fn brute_force(rows: &[ProcessSample], top: &TopN) -> Vec<(u32, u32)> {
        let mut sorted: Vec<&ProcessSample> = rows.iter().collect();
        sorted.sort_by(|a, b| {
            top.score(b)
                .total_cmp(&top.score(a))
                .then(a.process.pid.cmp(&b.process.pid))
                .then(a.process.start_time_ns.cmp(&b.process.start_time_ns))
        });
        sorted.iter().take(top.n).enumerate().map(|(i, r)| (i as u32 + 1, r.process.pid)).collect()
    }

    #[test]
    fn heap_and_bypass_paths_match_a_brute_force_sort() {
        let mut rng = Rng(42);
        let (mut heap_cases, mut bypass_cases) = (0, 0);
        for case in 0..400u64 {
            let n = 1 + (rng.next() % 30) as usize;
            let k = (rng.next() % 120) as u32;
            let mut top = TopN::new(n, 1.0, 0.01);
            let rows = random_scan(&mut rng, case, k);
            let expected = brute_force(&rows, &top);
            if (k as usize) * 4 <= n * 5 {
                bypass_cases += 1;
            } else {
                heap_cases += 1;
            }
            // Half the cases arrive as one whole-scan batch (ranked in place),
            // half split across two batches (ranked through the collector).
            let mut batch: Batch = rows.into_iter().map(Event::ProcessSample).collect();
            let batches = if case % 2 == 0 || batch.len() < 2 {
                vec![batch]
            } else {
                let second = batch.split_off(batch.len() / 2);
                vec![batch, second]
            };
            let run = pipeline::testing::run_transform(&mut top, batches);
            assert_eq!(run.events.len(), k as usize, "1:1: every row passes");
            assert_eq!(ranks(&run.events), expected, "case {case}: n={n} k={k}");
        }
        assert!(heap_cases > 100 && bypass_cases > 50, "both paths covered: {heap_cases} heap, {bypass_cases} bypass");
    }

    #[test]
    fn capture_ratio_is_the_top_rows_share_of_cpu() {
        let mut top = TopN::new(2, 1.0, 0.0);
        let rows: Vec<ProcessSample> = [(1, 50), (2, 30), (3, 15), (4, 5)]
            .into_iter()
            .map(|(pid, ticks)| {
                let mut row = sample(9, 4, pid);
                row.cpu_ticks = ticks;
                row.cpu_percent = ticks as f64;
                row
            })
            .collect();
        let run =
            pipeline::testing::run_transform(&mut top, vec![rows.into_iter().map(Event::ProcessSample).collect()]);
        assert_eq!(ranks(&run.events), vec![(1, 1), (2, 2)]);
        assert_eq!(top.last_capture_ratio(), Some(0.8));

        let idle = vec![Event::ProcessSample(sample(10, 1, 7))];
        pipeline::testing::run_transform(&mut top, vec![idle]);
        assert_eq!(top.last_capture_ratio(), Some(1.0), "an idle scan is fully captured");
    }

    #[test]
    fn rss_weight_ranks_memory_heavy_processes() {
        let mut top = TopN::new(1, 1.0, 0.01);
        let mut busy = sample(1, 2, 1);
        busy.cpu_percent = 5.0;
        let mut fat = sample(1, 2, 2);
        fat.rss_bytes = 1024 * 1024 * 1024; // 1 GiB → score 10.24
        let run = pipeline::testing::run_transform(
            &mut top,
            vec![vec![Event::ProcessSample(busy), Event::ProcessSample(fat)]],
        );
        assert_eq!(ranks(&run.events), vec![(1, 2)]);
    }

    fn build_topn(table: &str) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
        let text =
            format!("[sources.g]\ntype = \"generator\"\n[transforms.t]\ntype = \"topn\"\ninputs = [\"g\"]\n{table}\n");
        let config = pipeline::TopologyConfig::parse(pipeline::SourceFile::new("t.toml", text)).expect("TOML");
        let options = config.components.into_iter().find(|c| c.name == "t").expect("declared").options;
        build(&options)
    }

    #[test]
    fn bad_config_is_located() {
        let message = |table: &str| match build_topn(table) {
            Ok(_) => panic!("{table} should be rejected"),
            Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        };
        assert_eq!(message("n = 0"), "t.toml:6:5: error: transform `t`: n must be between 1 and 100000, got 0");
        assert!(message("n = -3").contains("got -3"));
        assert_eq!(
            message("cpu_weight = -1.0"),
            "t.toml:6:14: error: transform `t`: cpu_weight must be a finite number ≥ 0, got -1"
        );
        assert!(message("top = 5").contains("unknown field `top`"));
        assert!(build_topn("n = 5\nrss_weight = 0.0").is_ok());
    }
}
