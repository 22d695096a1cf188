//! Helpers for component tests: a compliance harness for transforms and
//! the loud-skip convention the test driver counts.

use std::io::Write as _;

use crate::component::{Output, Transform};
use crate::event::{Batch, Event};
use crate::metrics::DropReason;

/// What a transform did with a sequence of batches.
#[derive(Debug, Default)]
pub struct TransformRun {
    pub received: u64,
    pub events: Vec<Event>,
    pub discarded: [u64; DropReason::COUNT],
}

impl TransformRun {
    /// Events dropped for any reason.
    pub fn discarded_total(&self) -> u64 {
        self.discarded.iter().sum()
    }
}

/// Feeds `batches` through `transform` (then flushes it) the way the
/// runtime does, and checks the accounting rule every 1:1 transform must
/// keep: every event received is either sent or counted as discarded.
pub fn run_transform(transform: &mut dyn Transform, batches: Vec<Batch>) -> TransformRun {
    let mut run = TransformRun::default();
    let mut output = Output::default();
    for batch in batches {
        run.received += batch.len() as u64;
        transform.process(batch, &mut output);
        drain(&mut output, &mut run);
    }
    transform.flush(&mut output);
    drain(&mut output, &mut run);
    assert_eq!(
        run.received,
        run.events.len() as u64 + run.discarded_total(),
        "accounting: received = sent + discarded"
    );
    run
}

fn drain(output: &mut Output, run: &mut TransformRun) {
    run.events.extend(output.take_events());
    for (total, n) in run.discarded.iter_mut().zip(output.take_discarded()) {
        *total += n;
    }
}

/// Marks a test as skipped, loudly: prints the reason and appends a line to
/// the file named by `HOSTFLOW_SKIP_LOG` (set by `testbed/test`), which the
/// driver counts so a skipped test is never reported as passed.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("HOSTFLOW_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{test}\t{reason}");
        }
    }
}
