//! `procfs`: every process on the host, sampled from `/proc` on an interval.
//!
//! Each scan becomes one batch of `ProcessSample` rows (one per process:
//! pid, ppid, uid, display name, bounded command line, start time, threads,
//! state, CPU since the previous scan, resident memory), all carrying the
//! same `scan_id` and `scan_size` so per-scan transforms (`topn`, `tail`)
//! know when a scan is complete. The first scan runs at start.
//!
//! The scan itself ([`Scanner`]) is blocking file I/O and runs on tokio's
//! blocking pool, the scanner's state moved in and back out; the async
//! worker only waits, sends and records metrics. A process that exits
//! between being listed and being read is skipped and counted
//! (`hostflow_procfs_vanished_processes_total`), never logged as an error.
//!
//! Secrets in command lines (`--password=…`, `TOKEN=…`, URL credentials)
//! are scrubbed as each command line is read, argument by argument, before
//! it is joined into `cmdline` ([`crate::scrub`]; the `scrub` table,
//! [`ScrubOptions`]); the count goes to `hostflow_scrubbed_values_total`.
//!
//! Failure modes: a `proc_root` that cannot be listed at start stops the
//! source with an error naming the path; a proc mount with `hidepid` (for
//! a non-root agent), processes that cannot be read, or a listing that
//! fails later put the source in the `degraded` state in `/health`, with
//! the reason, and it keeps scanning what it can see.

mod scanner;
pub mod scrub_options;
mod stat;
mod visibility;

#[cfg(test)]
pub(crate) mod test_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{Counter, Gauge, Histogram};
use pipeline::health::{ComponentState, HealthHandle};
use pipeline::metrics::names;
use pipeline::{ComponentError, ComponentOptions, ConfigError, Source, SourceContext};
use serde::Deserialize;
use toml::Spanned;

pub use scanner::{boottime_ns, raise_open_file_limit, ProcfsError, ScanOutcome, Scanner, ScannerSettings};
pub use scrub_options::ScrubOptions;
pub use stat::{clean_cmdline, parse_stat, tty_name, StatFields};

/// `[sources.NAME] type = "procfs"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcfsConfig {
    /// Seconds between scans, fractions allowed (0.001 to 86400). The
    /// first scan runs at start.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: Spanned<f64>,
    /// Longest command line kept per process, in bytes (0 keeps none, at
    /// most 1 MiB). Read at a process's first sighting and after an exec.
    #[serde(default = "default_cmdline_max_bytes")]
    pub cmdline_max_bytes: Spanned<usize>,
    /// The proc filesystem to walk.
    #[serde(default = "default_proc_root")]
    pub proc_root: Spanned<PathBuf>,
    /// Secret scrubbing of command lines (`[sources.NAME.scrub]`; on by
    /// default).
    #[serde(default)]
    pub scrub: Option<ScrubOptions>,
}

/// Shortest accepted interval: below this a scan would never rest.
pub const MIN_INTERVAL_SECS: f64 = 0.001;
/// Longest accepted interval: one day.
pub const MAX_INTERVAL_SECS: f64 = 86_400.0;
/// Longest accepted command-line bound (Linux's own limit is 2 MiB).
pub const MAX_CMDLINE_BYTES: usize = 1 << 20;

fn default_interval_secs() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}

fn default_cmdline_max_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 4096)
}

fn default_proc_root() -> Spanned<PathBuf> {
    Spanned::new(0..0, PathBuf::from("/proc"))
}

/// Builds a procfs source from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Source>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: ProcfsConfig, options| {
        Ok(Box::new(Procfs::new(config, options)?) as Box<dyn Source>)
    })
}

/// A configured procfs source. Building opens nothing; `/proc` is first
/// read when the source runs.
#[derive(Debug)]
pub struct Procfs {
    interval: Duration,
    settings: ScannerSettings,
}

impl Procfs {
    /// Checks the configuration.
    pub fn new(config: ProcfsConfig, options: &ComponentOptions) -> Result<Procfs, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let interval_secs = *config.interval_secs.get_ref();
        if !(interval_secs.is_finite() && (MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&interval_secs)) {
            errors.push(options.error_at(
                config.interval_secs.span(),
                format!(
                    "interval_secs must be a positive number of seconds \
                     ({MIN_INTERVAL_SECS} to {MAX_INTERVAL_SECS}), got {interval_secs}"
                ),
            ));
        }
        let cmdline_max_bytes = *config.cmdline_max_bytes.get_ref();
        if cmdline_max_bytes > MAX_CMDLINE_BYTES {
            errors.push(options.error_at(
                config.cmdline_max_bytes.span(),
                format!("cmdline_max_bytes {cmdline_max_bytes} is larger than the maximum of {MAX_CMDLINE_BYTES}"),
            ));
        }
        if config.proc_root.get_ref().as_os_str().is_empty() {
            errors.push(options.error_at(config.proc_root.span(), "proc_root must not be empty"));
        }
        let scrub = ScrubOptions::check(config.scrub.as_ref(), options, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Procfs {
            interval: Duration::from_secs_f64(interval_secs),
            settings: ScannerSettings {
                proc_root: config.proc_root.into_inner(),
                cmdline_max_bytes,
                max_open_fds: None,
                scrub,
            },
        })
    }

    /// A source with these settings, for tests and benches.
    pub fn with_settings(interval: Duration, settings: ScannerSettings) -> Procfs {
        Procfs { interval: interval.max(Duration::from_secs_f64(MIN_INTERVAL_SECS)), settings }
    }
}

#[async_trait]
impl Source for Procfs {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        let metrics = ScanMetrics::new(&cx.name);
        let settings = self.settings.clone();
        let proc_root = settings.proc_root.clone();
        let (mut scanner, hidepid) = tokio::task::spawn_blocking(move || {
            raise_open_file_limit();
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let hidepid = visibility::hidepid_mode(&mountinfo, &settings.proc_root);
            Scanner::new(settings).map(|scanner| (scanner, hidepid))
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("procfs start-up task failed: {e}")))?
        .map_err(|e| ComponentError::Failed(e.to_string()))?;
        let euid = rustix::process::geteuid().as_raw();
        let hidepid_problem = visibility::hidepid_problem(hidepid.as_deref(), &proc_root, euid);
        let mut health = HealthReporter { handle: cx.health.clone(), name: cx.name.to_string(), current: None };

        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = cx.shutdown.clone();
        let mut n_scans = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = ticker.tick() => {}
            }
            let event_id_prefix = cx.event_id_prefix;
            let (returned, result, elapsed) = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = scanner.scan(event_id_prefix);
                (scanner, result, started.elapsed())
            })
            .await
            .map_err(|e| ComponentError::Failed(format!("procfs scan task failed: {e}")))?;
            scanner = returned;
            n_scans += 1;
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(error) => {
                    health.update(vec![error.to_string()]);
                    continue;
                }
            };
            metrics.record(&outcome, elapsed);
            let mut problems: Vec<String> = hidepid_problem.iter().cloned().collect();
            if let Some(first) = &outcome.first_unreadable {
                problems.push(format!("{} processes could not be read (first: {first})", outcome.unreadable));
            }
            if hidepid_problem.is_none() {
                problems.extend(visibility::only_own_processes_problem(outcome.samples(), &proc_root, euid));
            }
            health.update(problems);
            // Never abandoned half-way, even at shutdown: downstream keeps
            // draining until this source is gone, so a blocked send completes.
            cx.out.send(outcome.events).await;
        }
        tracing::debug!(source = %cx.name, n_scans, "procfs source finished");
        Ok(())
    }
}

/// The source's own metric handles, registered once at start.
struct ScanMetrics {
    duration: Histogram,
    scanned: Gauge,
    vanished: Counter,
    scrubbed: Counter,
}

impl ScanMetrics {
    fn new(component: &str) -> ScanMetrics {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_histogram!(names::PROCFS_SCAN_DURATION_SECONDS, Unit::Seconds, "Wall time of one full scan of /proc.");
        describe_gauge!(names::PROCFS_SCANNED_PROCESSES, Unit::Count, "Processes read in the latest scan.");
        describe_counter!(
            names::PROCFS_VANISHED_PROCESSES_TOTAL,
            Unit::Count,
            "Processes that exited between being listed and being read (skipped)."
        );
        let labels = vec![metrics::Label::new("component", component.to_owned())];
        ScanMetrics {
            duration: metrics::histogram!(names::PROCFS_SCAN_DURATION_SECONDS, labels.clone()),
            scanned: metrics::gauge!(names::PROCFS_SCANNED_PROCESSES, labels.clone()),
            vanished: metrics::counter!(names::PROCFS_VANISHED_PROCESSES_TOTAL, labels),
            scrubbed: scrub_options::scrubbed_counter(component),
        }
    }

    fn record(&self, outcome: &ScanOutcome, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
        self.scanned.set(outcome.scanned() as f64);
        self.vanished.increment(outcome.vanished);
        self.scrubbed.increment(outcome.scrubbed);
    }
}

/// Sets `degraded` with the reasons while there are any, `running` once
/// they are gone; touches `/health` (and logs) only on a change.
struct HealthReporter {
    handle: HealthHandle,
    name: String,
    current: Option<String>,
}

impl HealthReporter {
    fn update(&mut self, problems: Vec<String>) {
        let reason = (!problems.is_empty()).then(|| problems.join("; "));
        if reason == self.current {
            return;
        }
        match &reason {
            Some(reason) => {
                tracing::warn!(source = %self.name, %reason, "procfs source degraded");
                self.handle.set(ComponentState::Degraded, Some(reason.clone()));
            }
            None => {
                tracing::info!(source = %self.name, "procfs source sees every process again");
                self.handle.set(ComponentState::Running, None);
            }
        }
        self.current = reason;
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
