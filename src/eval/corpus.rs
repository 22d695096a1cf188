//! The recorded side of an evaluation: one read of the spool that places
//! every event in its scenarios (so a detection can be attributed by the
//! ids it rests on), and the shuffled copy `--shuffle-within` replays.

use std::collections::HashMap;
use std::path::Path;

use pipeline::{Event, EventKind};
use sources::replay::{read_spool, Selection};

use super::labels::{Labels, Membership};
use crate::commands::Outcome;

/// Events per batch when reading the spool here (memory only: the
/// replay that feeds `detect` batches on its own).
const READ_BATCH: usize = 4096;

/// Where each recorded event belongs.
#[derive(Debug, Default)]
pub struct Corpus {
    /// Recorded events (detections a recording topology may have spooled
    /// are not corpus events and are left out of every count).
    pub events: u64,
    /// Per scenario (labels order): its events.
    pub scenario_events: Vec<u64>,
    /// Events in no malicious scenario: what a false-alert rate is per.
    pub benign_events: u64,
    /// Events in no scenario at all.
    pub background_events: u64,
    /// Event id → its scenarios; only events in at least one.
    pub member: HashMap<u64, Vec<usize>>,
    /// FNV-1a of every event's (id, ts, kind) in spool order: names the
    /// corpus in the report without naming its path.
    pub digest: String,
}

/// Reads the spool once and places every event. A file the reader has to
/// skip makes the corpus unreadable (exit 66): an evaluation over part of
/// a corpus would report figures nobody recorded.
pub fn index(spool: &Path, labels: &Labels) -> Result<Corpus, Outcome> {
    let membership = Membership::new(labels);
    let mut corpus = Corpus { scenario_events: vec![0; labels.scenarios.len()], ..Corpus::default() };
    let mut digest = Fnv::default();
    let mut reader = read_spool(spool, &Selection::all(), READ_BATCH);
    for batch in reader.by_ref() {
        for event in batch.iter().filter(|e| e.kind() != EventKind::Detection) {
            let meta = event.meta();
            digest.write(&meta.event_id.to_le_bytes());
            digest.write(&meta.ts_ns.to_le_bytes());
            digest.write(event.kind().as_str().as_bytes());
            corpus.events += 1;
            let scenarios = membership.of(event);
            if !scenarios.iter().any(|s| labels.scenarios[*s].malicious) {
                corpus.benign_events += 1;
            }
            if scenarios.is_empty() {
                corpus.background_events += 1;
                continue;
            }
            for s in &scenarios {
                corpus.scenario_events[*s] += 1;
            }
            corpus.member.insert(meta.event_id, scenarios);
        }
    }
    let stats = reader.stats();
    if stats.files_skipped > 0 {
        eprintln!(
            "{}: error: {} spool file(s) could not be read (logged above); the corpus is incomplete",
            spool.display(),
            stats.files_skipped
        );
        eprintln!("hint: re-record the corpus, or restore the files from version control");
        return Err(Outcome::Unreadable);
    }
    if corpus.events == 0 {
        eprintln!("{}: error: the spool holds no events", spool.display());
        eprintln!("hint: a corpus directory holds `spool/` (an arrow_spool sink's directory) and `labels.json`");
        return Err(Outcome::Unreadable);
    }
    corpus.digest = digest.hex();
    Ok(corpus)
}

/// Writes the spool's events to `out` as NDJSON (the `file` sink's
/// encoding, which the replay source reads back exactly), each window of
/// `window_ms` of event time shuffled by a seeded PRNG. Windows are
/// aligned on multiples of `window_ms`, so no event moves by `window_ms`
/// or more: within `detect`'s reorder window, the detections must not
/// change.
///
/// Returns how many events left their place, so a shuffle that moved
/// nothing (windows too small for the corpus's pace) is visible.
pub fn write_shuffled(spool: &Path, window_ms: u64, seed: u64, out: &Path) -> Result<u64, Outcome> {
    let mut events: Vec<Event> = read_spool(spool, &Selection::all(), READ_BATCH).flatten().collect();
    events.sort_by_key(|e| (e.meta().ts_ns, e.meta().event_id));
    let window_ns = window_ms.saturating_mul(1_000_000).max(1);
    let sorted: Vec<u64> = events.iter().map(|e| e.meta().event_id).collect();
    let mut rng = XorShift::new(seed);
    let mut start = 0;
    while start < events.len() {
        let bucket = events[start].meta().ts_ns / window_ns;
        let end = start + events[start..].iter().take_while(|e| e.meta().ts_ns / window_ns == bucket).count();
        let window = &mut events[start..end];
        for i in (1..window.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            window.swap(i, j);
        }
        start = end;
    }
    let moved = events.iter().zip(&sorted).filter(|(e, id)| e.meta().event_id != **id).count() as u64;
    let mut bytes = Vec::new();
    sinks::ndjson::encode_batch(&events, &mut bytes);
    if let Err(error) = std::fs::write(out, bytes) {
        eprintln!("{}: error: cannot write the shuffled events: {error}", out.display());
        return Err(Outcome::RunFailed);
    }
    Ok(moved)
}

/// xorshift64*: a fixed sequence per seed, no dependency, plenty for
/// permuting a window.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        let state = seed ^ 0x9E37_79B9_7F4A_7C15;
        XorShift(if state == 0 { 0x2545_F491_4F6C_DD1D } else { state })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// FNV-1a, 64 bits (as the rule set's digest): stable across builds and
/// platforms, which is all an identity in a report needs.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prng_is_a_fixed_sequence_per_seed() {
        let take = |seed| {
            let mut rng = XorShift::new(seed);
            [rng.next(), rng.next(), rng.next()]
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        let mut zero = XorShift::new(0x9E37_79B9_7F4A_7C15);
        assert_ne!(zero.next(), 0, "a seed that cancels the mix still moves");
    }
}
