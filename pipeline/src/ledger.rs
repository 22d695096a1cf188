//! The loss ledger: where every event of a run is, at any moment, as one
//! consistent cut.
//!
//! Why one table under one lock: Prometheus counters are read one after
//! another, so two counters scraped "together" disagree by whatever moved
//! in between, and a loss identity checked on them can never be exact.
//! Here every change is a *move* of events from one term to another, made
//! under the lock — so the identities below hold whenever the lock is free,
//! and a snapshot (taken under the lock) satisfies them exactly:
//!
//! - component: `received + created = sent + discarded + absorbed + in_process`
//!   (a source's `received` is what it produced; `created` and `absorbed`
//!   are a transform's aggregates and what they summarised);
//! - edge `from → to`: `offered = accepted + discarded + in_transit`, where
//!   `offered` is the upstream's fan-out (its `sent`) and `in_transit` is a
//!   batch an upstream is still handing over (e.g. blocked on a full buffer);
//! - input buffer of `to`: `Σ accepted + replayed = received + queued + discarded`
//!   (`replayed`: events a disk buffer found unacknowledged at start);
//! - eBPF program (a kernel source's rows, refreshed every second from the
//!   programs' per-CPU counters): `attempted = read + lost + in_ring`, where
//!   `read` is taken before the kernel counters and a program counts a
//!   record as submitted before it becomes visible, so `read ≤ submitted`
//!   at every moment and `in_ring = submitted − read` is never negative;
//!   after the source detached and drained, `in_ring` is 0 and
//!   `attempted = read + lost` exactly.
//!
//! The cost is one uncontended lock per batch and hop (tens of ns against a
//! batch of up to thousands of events); `benches/` measures a snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::metrics::DropReason;

/// The table of one running topology. Shared by the engine's tasks and the
/// API (through [`crate::health::Health::ledger`]).
#[derive(Debug, Default)]
pub struct Ledger {
    table: Mutex<Table>,
}

#[derive(Clone, Debug, Default)]
struct Table {
    components: Vec<ComponentTerms>,
    edges: Vec<EdgeTerms>,
    kernel: Vec<KernelTerms>,
}

/// One eBPF program's account, as its source last read it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KernelTerms {
    /// The source that loaded the program.
    pub source: String,
    pub program: String,
    /// Records the program tried to put in the ring (`submitted + lost`).
    pub attempted: u64,
    /// Records the ring took.
    pub submitted: u64,
    /// Records refused because the ring was full (reserve failures).
    pub lost: u64,
    /// Records the source took from the ring.
    pub read: u64,
    /// `submitted − read`: in the ring, not yet read.
    pub in_ring: u64,
}

/// The terms of one component (see the module doc for its identity).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ComponentTerms {
    pub name: String,
    pub kind: &'static str,
    pub type_name: String,
    pub received: u64,
    pub created: u64,
    pub sent: u64,
    pub discarded: BTreeMap<&'static str, u64>,
    pub absorbed: u64,
    pub in_process: u64,
    /// The component's input buffer (transforms and sinks).
    pub buffer: Option<BufferTerms>,
}

/// The terms of one component's input buffer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BufferTerms {
    pub disk: bool,
    pub accepted: u64,
    pub replayed: u64,
    pub received: u64,
    pub queued: u64,
    pub discarded: u64,
    /// Disk buffer records skipped as torn or corrupt (their events are
    /// unknown: the record's header is what was lost).
    pub torn_records: u64,
}

/// The terms of one edge.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EdgeTerms {
    pub from: String,
    pub to: String,
    pub offered: u64,
    pub accepted: u64,
    pub discarded: BTreeMap<&'static str, u64>,
    pub in_transit: u64,
    pub blocked_seconds: f64,
}

/// A component's row, for the task that runs it.
#[derive(Clone, Debug)]
pub struct ComponentEntry {
    ledger: Arc<Ledger>,
    index: usize,
}

/// An edge's row, for the sender that feeds it.
#[derive(Clone, Debug)]
pub struct EdgeEntry {
    ledger: Arc<Ledger>,
    index: usize,
    /// The downstream component (whose buffer accepts).
    to: usize,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every update is a handful of additions that cannot panic half-way.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a component row.
    pub fn component(
        self: &Arc<Self>,
        name: &str,
        kind: &'static str,
        type_name: &str,
        buffer: Option<bool>,
    ) -> ComponentEntry {
        let mut table = self.lock();
        table.components.push(ComponentTerms {
            name: name.to_owned(),
            kind,
            type_name: type_name.to_owned(),
            buffer: buffer.map(|disk| BufferTerms { disk, ..BufferTerms::default() }),
            ..ComponentTerms::default()
        });
        ComponentEntry { ledger: Arc::clone(self), index: table.components.len() - 1 }
    }

    /// Adds an edge row between two components added before.
    pub fn edge(self: &Arc<Self>, from: &ComponentEntry, to: &ComponentEntry) -> EdgeEntry {
        let mut table = self.lock();
        let edge = EdgeTerms {
            from: table.components[from.index].name.clone(),
            to: table.components[to.index].name.clone(),
            ..EdgeTerms::default()
        };
        table.edges.push(edge);
        EdgeEntry { ledger: Arc::clone(self), index: table.edges.len() - 1, to: to.index }
    }

    /// A consistent cut of every term.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let table = self.lock().clone();
        LedgerSnapshot::new(table.components, table.edges, table.kernel)
    }

    /// A source lost `n` events before it could send them (the diagnostics
    /// bus overwrote records its subscriber had not read): booked as
    /// produced and discarded for `reason`, on the row named `component`.
    pub fn source_discarded(&self, component: &str, reason: DropReason, n: u64) {
        let mut table = self.lock();
        if let Some(c) = table.components.iter_mut().find(|c| c.name == component) {
            c.received += n;
            add(&mut c.discarded, reason, n);
        }
    }

    /// Replaces `source`'s kernel rows: `(program, submitted, lost, read)`,
    /// with `read` taken before the kernel counters were.
    pub fn set_kernel(&self, source: &str, rows: impl IntoIterator<Item = (&'static str, u64, u64, u64)>) {
        let rows: Vec<KernelTerms> = rows
            .into_iter()
            .map(|(program, submitted, lost, read)| KernelTerms {
                source: source.to_owned(),
                program: program.to_owned(),
                attempted: submitted + lost,
                submitted,
                lost,
                read,
                in_ring: submitted.saturating_sub(read),
            })
            .collect();
        let mut table = self.lock();
        table.kernel.retain(|row| row.source != source);
        table.kernel.extend(rows);
    }
}

fn add(map: &mut BTreeMap<&'static str, u64>, reason: DropReason, n: u64) {
    if n > 0 {
        *map.entry(reason.as_str()).or_default() += n;
    }
}

impl ComponentEntry {
    /// A source produced `n` events (they are in process until its fan-out
    /// hands them on).
    pub fn produced(&self, n: u64) {
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        c.received += n;
        c.in_process += n;
    }

    /// The component took `n` events from its input buffer.
    pub fn received(&self, n: u64) {
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        c.received += n;
        c.in_process += n;
        if let Some(buffer) = &mut c.buffer {
            buffer.received += n;
            buffer.queued = buffer.queued.saturating_sub(n);
        }
    }

    /// A transform turned `n_in` events into `n_out` (plus `discarded` by
    /// reason): the difference is absorbed (aggregated) or created.
    pub fn processed(&self, n_in: u64, n_out: u64, discarded: &[u64; DropReason::COUNT]) {
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        let n_dropped: u64 = discarded.iter().sum();
        for reason in DropReason::ALL {
            add(&mut c.discarded, reason, discarded[reason.index()]);
        }
        let consumed = n_dropped + n_out;
        if consumed >= n_in {
            c.created += consumed - n_in;
        } else {
            c.absorbed += n_in - consumed;
        }
        // in_process: -n_in + n_out (the outputs wait for the fan-out).
        c.in_process = (c.in_process + n_out).saturating_sub(n_in);
    }

    /// A sink's events became durable (or a component's events were
    /// handed on by something other than a fan-out).
    pub fn sent(&self, n: u64) {
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        c.sent += n;
        c.in_process = c.in_process.saturating_sub(n);
    }

    /// The component dropped `n` of the events it holds.
    pub fn discarded(&self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        add(&mut c.discarded, reason, n);
        c.in_process = c.in_process.saturating_sub(n);
    }

    /// Events still queued in the input buffer that will never be read
    /// (the component failed): counted out of the buffer.
    pub fn buffer_discarded(&self, n: u64) {
        let mut table = self.ledger.lock();
        if let Some(buffer) = &mut table.components[self.index].buffer {
            buffer.discarded += n;
            buffer.queued = buffer.queued.saturating_sub(n);
        }
    }

    /// A disk buffer found `events` unacknowledged events (and skipped
    /// `torn_records`) at start.
    pub fn replayed(&self, events: u64, torn_records: u64) {
        let mut table = self.ledger.lock();
        if let Some(buffer) = &mut table.components[self.index].buffer {
            buffer.replayed += events;
            buffer.queued += events;
            buffer.torn_records += torn_records;
        }
    }

    /// More torn records found while reading.
    pub fn torn(&self, records: u64) {
        let mut table = self.ledger.lock();
        if let Some(buffer) = &mut table.components[self.index].buffer {
            buffer.torn_records += records;
        }
    }

    /// A fan-out starts handing `n` events to `edges`: they leave the
    /// component (sent) and are in transit on every edge.
    pub fn fan_out<'a>(&self, n: u64, edges: impl IntoIterator<Item = &'a EdgeEntry>) {
        let mut table = self.ledger.lock();
        let c = &mut table.components[self.index];
        c.sent += n;
        c.in_process = c.in_process.saturating_sub(n);
        for edge in edges {
            let e = &mut table.edges[edge.index];
            e.offered += n;
            e.in_transit += n;
        }
    }
}

impl EdgeEntry {
    /// `n` events of the batch in transit entered the buffer. Booked just
    /// before the reader can see them, so `queued` never runs behind.
    pub fn accept(&self, n: u64) {
        let mut table = self.ledger.lock();
        let e = &mut table.edges[self.index];
        e.in_transit = e.in_transit.saturating_sub(n);
        e.accepted += n;
        if let Some(buffer) = &mut table.components[self.to].buffer {
            buffer.accepted += n;
            buffer.queued += n;
        }
    }

    /// An acceptance booked by [`EdgeEntry::accept`] did not happen after
    /// all (a disk buffer turned out full and the sender waits): the events
    /// are back in transit.
    pub fn unaccept(&self, n: u64) {
        let mut table = self.ledger.lock();
        let e = &mut table.edges[self.index];
        e.accepted = e.accepted.saturating_sub(n);
        e.in_transit += n;
        if let Some(buffer) = &mut table.components[self.to].buffer {
            buffer.accepted = buffer.accepted.saturating_sub(n);
            buffer.queued = buffer.queued.saturating_sub(n);
        }
    }

    /// `n` events in transit were dropped for `reason`.
    pub fn drop_in_transit(&self, n: u64, reason: DropReason) {
        if n == 0 {
            return;
        }
        let mut table = self.ledger.lock();
        let e = &mut table.edges[self.index];
        e.in_transit = e.in_transit.saturating_sub(n);
        add(&mut e.discarded, reason, n);
    }

    /// Senders waited `seconds` for room on this edge.
    pub fn blocked(&self, seconds: f64) {
        if seconds > 0.0 {
            self.ledger.lock().edges[self.index].blocked_seconds += seconds;
        }
    }
}

/// A consistent cut, with each identity checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LedgerSnapshot {
    pub components: Vec<ComponentTerms>,
    pub edges: Vec<EdgeTerms>,
    /// Every kernel source's programs.
    pub kernel: Vec<KernelTerms>,
    /// Every identity that does not hold (empty when the books balance).
    pub imbalances: Vec<String>,
    /// The component, buffer or edge that lost the most events (drops
    /// other than a filter's `filtered`), and how many.
    pub biggest_loss: Option<(String, u64)>,
    /// The edge whose senders waited longest, and for how long.
    pub longest_blocked: Option<(String, f64)>,
}

impl LedgerSnapshot {
    fn new(components: Vec<ComponentTerms>, edges: Vec<EdgeTerms>, kernel: Vec<KernelTerms>) -> LedgerSnapshot {
        let mut imbalances = Vec::new();
        let mut losses: Vec<(String, u64)> = Vec::new();
        for k in &kernel {
            if k.read > k.submitted || k.attempted != k.read + k.lost + k.in_ring {
                imbalances.push(format!(
                    "program `{}` of `{}`: attempted {} != read {} + lost {} + in_ring {} (submitted {})",
                    k.program, k.source, k.attempted, k.read, k.lost, k.in_ring, k.submitted
                ));
            }
            losses.push((format!("program `{}` of `{}` (ring full)", k.program, k.source), k.lost));
        }
        for c in &components {
            let discarded: u64 = c.discarded.values().sum();
            let left = c.received + c.created;
            let right = c.sent + discarded + c.absorbed + c.in_process;
            if left != right {
                imbalances.push(format!(
                    "component `{}`: received {} + created {} != sent {} + discarded {} + absorbed {} + in_process {}",
                    c.name, c.received, c.created, c.sent, discarded, c.absorbed, c.in_process
                ));
            }
            if let Some(b) = &c.buffer {
                let accepted_here: u64 = edges.iter().filter(|e| e.to == c.name).map(|e| e.accepted).sum();
                if b.accepted != accepted_here || b.accepted + b.replayed != b.received + b.queued + b.discarded {
                    imbalances.push(format!(
                        "buffer of `{}`: accepted {} (edges: {}) + replayed {} != received {} + queued {} + discarded {}",
                        c.name, b.accepted, accepted_here, b.replayed, b.received, b.queued, b.discarded
                    ));
                }
                losses.push((format!("buffer of `{}`", c.name), b.discarded));
            }
            // A filter's drops are what it is for, not a loss.
            let lost = discarded - c.discarded.get(DropReason::Filtered.as_str()).copied().unwrap_or(0);
            losses.push((format!("component `{}`", c.name), lost));
        }
        for e in &edges {
            let discarded: u64 = e.discarded.values().sum();
            if e.offered != e.accepted + discarded + e.in_transit {
                imbalances.push(format!(
                    "edge `{}` -> `{}`: offered {} != accepted {} + discarded {} + in_transit {}",
                    e.from, e.to, e.offered, e.accepted, discarded, e.in_transit
                ));
            }
            losses.push((format!("edge `{}` -> `{}`", e.from, e.to), discarded));
        }
        let biggest_loss = losses.into_iter().filter(|(_, n)| *n > 0).max_by_key(|(_, n)| *n);
        let longest_blocked = edges
            .iter()
            .filter(|e| e.blocked_seconds > 0.0)
            .max_by(|a, b| a.blocked_seconds.total_cmp(&b.blocked_seconds))
            .map(|e| (format!("edge `{}` -> `{}`", e.from, e.to), e.blocked_seconds));
        LedgerSnapshot { components, edges, kernel, imbalances, biggest_loss, longest_blocked }
    }

    /// Prometheus text lines for `/metrics`, from this one cut.
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::from(
            "# HELP hostflow_ledger_events Where a run's events are, per component and term, from one consistent cut.\n\
             # TYPE hostflow_ledger_events gauge\n",
        );
        for c in &self.components {
            let mut line = |term: &str, n: u64| {
                let _ =
                    writeln!(text, "hostflow_ledger_events{{component=\"{}\",term=\"{term}\"}} {n}", escape(&c.name));
            };
            line("received", c.received);
            line("created", c.created);
            line("sent", c.sent);
            line("absorbed", c.absorbed);
            line("in_process", c.in_process);
            for (reason, n) in &c.discarded {
                let _ = writeln!(
                    text,
                    "hostflow_ledger_events{{component=\"{}\",term=\"discarded\",reason=\"{reason}\"}} {n}",
                    escape(&c.name)
                );
            }
            if let Some(b) = &c.buffer {
                for (term, n) in [
                    ("buffer_accepted", b.accepted),
                    ("buffer_replayed", b.replayed),
                    ("buffer_received", b.received),
                    ("buffer_queued", b.queued),
                    ("buffer_discarded", b.discarded),
                ] {
                    let _ = writeln!(
                        text,
                        "hostflow_ledger_events{{component=\"{}\",term=\"{term}\"}} {n}",
                        escape(&c.name)
                    );
                }
            }
        }
        text.push_str("# HELP hostflow_ledger_edge_events Events per edge and term, from the same cut.\n# TYPE hostflow_ledger_edge_events gauge\n");
        for e in &self.edges {
            let (from, to) = (escape(&e.from), escape(&e.to));
            for (term, n) in [("offered", e.offered), ("accepted", e.accepted), ("in_transit", e.in_transit)] {
                let _ =
                    writeln!(text, "hostflow_ledger_edge_events{{from=\"{from}\",to=\"{to}\",term=\"{term}\"}} {n}");
            }
            for (reason, n) in &e.discarded {
                let _ = writeln!(
                    text,
                    "hostflow_ledger_edge_events{{from=\"{from}\",to=\"{to}\",term=\"discarded\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        text.push_str("# HELP hostflow_ledger_kernel_records Per eBPF program and term, from the same cut.\n# TYPE hostflow_ledger_kernel_records gauge\n");
        for k in &self.kernel {
            let (source, program) = (escape(&k.source), escape(&k.program));
            for (term, n) in [
                ("attempted", k.attempted),
                ("submitted", k.submitted),
                ("lost", k.lost),
                ("read", k.read),
                ("in_ring", k.in_ring),
            ] {
                let _ = writeln!(
                    text,
                    "hostflow_ledger_kernel_records{{component=\"{source}\",program=\"{program}\",term=\"{term}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            text,
            "# HELP hostflow_ledger_imbalances Identities that did not hold in this cut (0 when the books balance).\n\
             # TYPE hostflow_ledger_imbalances gauge\nhostflow_ledger_imbalances {}",
            self.imbalances.len()
        );
        text
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_keeps_the_books_balanced() {
        let ledger = Arc::new(Ledger::default());
        let source = ledger.component("gen", "source", "generator", None);
        let sink = ledger.component("out", "sink", "blackhole", Some(false));
        let edge = ledger.edge(&source, &sink);
        source.produced(100);
        source.fan_out(100, [&edge]);
        assert!(ledger.snapshot().imbalances.is_empty(), "{:?}", ledger.snapshot().imbalances);
        edge.accept(60);
        edge.drop_in_transit(40, DropReason::BufferFull);
        edge.blocked(0.5);
        sink.received(50);
        sink.sent(30);
        sink.discarded(DropReason::WriteFailed, 5);
        sink.buffer_discarded(4);
        let snapshot = ledger.snapshot();
        assert!(snapshot.imbalances.is_empty(), "{:?}", snapshot.imbalances);
        let out = &snapshot.components[1];
        assert_eq!((out.received, out.sent, out.in_process), (50, 30, 15));
        assert_eq!(out.buffer.as_ref().map(|b| (b.accepted, b.queued, b.discarded)), Some((60, 6, 4)));
        assert_eq!(snapshot.biggest_loss, Some(("edge `gen` -> `out`".to_owned(), 40)));
        assert_eq!(snapshot.longest_blocked, Some(("edge `gen` -> `out`".to_owned(), 0.5)));
        assert!(snapshot.to_prometheus().contains("hostflow_ledger_imbalances 0"));
    }

    #[test]
    fn a_transform_that_aggregates_absorbs_and_one_that_adds_creates() {
        let ledger = Arc::new(Ledger::default());
        let top = ledger.component("top", "transform", "topn", None);
        top.received(1000);
        top.processed(1000, 20, &[0; DropReason::COUNT]);
        top.fan_out(20, std::iter::empty());
        let detect = ledger.component("detect", "transform", "detect", None);
        detect.received(10);
        let mut filtered = [0; DropReason::COUNT];
        filtered[DropReason::Filtered.index()] = 2;
        detect.processed(10, 12, &filtered);
        let snapshot = ledger.snapshot();
        assert!(snapshot.imbalances.is_empty(), "{:?}", snapshot.imbalances);
        assert_eq!((snapshot.components[0].absorbed, snapshot.components[0].sent), (980, 20));
        assert_eq!((snapshot.components[1].created, snapshot.components[1].in_process), (4, 12));
    }

    #[test]
    fn kernel_rows_balance_and_reading_ahead_of_the_kernel_is_an_imbalance() {
        let ledger = Arc::new(Ledger::default());
        ledger.set_kernel("kernel", [("exec", 100, 7, 90), ("exit", 5, 0, 5)]);
        let snapshot = ledger.snapshot();
        assert!(snapshot.imbalances.is_empty(), "{:?}", snapshot.imbalances);
        assert_eq!((snapshot.kernel[0].attempted, snapshot.kernel[0].in_ring), (107, 10));
        assert_eq!(snapshot.biggest_loss, Some(("program `exec` of `kernel` (ring full)".to_owned(), 7)));
        ledger.set_kernel("kernel", [("exec", 100, 7, 101)]);
        let snapshot = ledger.snapshot();
        assert_eq!(snapshot.kernel.len(), 1, "a source's rows are replaced, not added");
        assert_eq!(snapshot.imbalances.len(), 1, "{:?}", snapshot.imbalances);
    }

    #[test]
    fn a_source_that_missed_records_books_them_as_its_own_drops() {
        let ledger = Arc::new(Ledger::default());
        let diag = ledger.component("diag", "source", "agent_diag", None);
        diag.produced(3);
        diag.fan_out(3, std::iter::empty());
        ledger.source_discarded("diag", DropReason::BufferFull, 5);
        let snapshot = ledger.snapshot();
        assert!(snapshot.imbalances.is_empty(), "{:?}", snapshot.imbalances);
        assert_eq!(snapshot.components[0].received, 8);
        assert_eq!(snapshot.biggest_loss, Some(("component `diag`".to_owned(), 5)));
    }

    #[test]
    fn an_unbalanced_table_is_reported() {
        let ledger = Arc::new(Ledger::default());
        let sink = ledger.component("out", "sink", "blackhole", None);
        sink.received(5);
        ledger.lock().components[0].sent = 9;
        let snapshot = ledger.snapshot();
        assert_eq!(snapshot.imbalances.len(), 1, "{:?}", snapshot.imbalances);
    }
}
