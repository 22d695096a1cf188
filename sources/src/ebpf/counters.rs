//! The kernel's own count of what each program submitted and lost.
//!
//! Every program bumps a per-CPU slot (index = program id) after each ring
//! buffer submission: `submitted` when the ring took the record, `lost`
//! when it was full. Only the program can see a failed reservation, so
//! these counters are the one exact account of loss; summing the CPUs
//! gives `hostflow_ebpf_events_total{program}` and
//! `hostflow_ebpf_ringbuf_lost_events_total{program}`, exported here as
//! Prometheus counters that grow by the delta since the last read.
//!
//! Reading is one `bpf(MAP_LOOKUP_ELEM)` per program on an array map: a
//! non-blocking syscall of a few microseconds, done once a second.

use aya::maps::{MapData, PerCpuArray};
use metrics::Counter;
use pipeline::metrics::names;
use serde::Serialize;

use super::loader::chain;
use super::records::{RawCounter, PROGRAM_COUNT};
use super::Program;

/// One program's totals across CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProgramCounts {
    /// Records the ring buffer accepted.
    pub submitted: u64,
    /// Records refused because the ring buffer was full.
    pub lost: u64,
    /// Calls the program saw and chose not to report (outside the file
    /// selection, a repeated UDP destination, the agent's own BPF load).
    pub filtered: u64,
}

impl ProgramCounts {
    /// Records the program tried to submit.
    pub fn attempted(&self) -> u64 {
        self.submitted + self.lost
    }
}

/// Totals for every program, indexed by [`Program::id`].
pub type AllCounts = [ProgramCounts; PROGRAM_COUNT];

/// The counter array and the metric handles it feeds.
pub struct Counters {
    array: PerCpuArray<MapData, RawCounter>,
    exported: AllCounts,
    handles: Vec<(Counter, Counter, Counter)>,
}

impl Counters {
    /// Registers one pair of metric handles per program, labelled with the
    /// component and the program.
    pub fn new(array: PerCpuArray<MapData, RawCounter>, component: &str) -> Counters {
        metrics::describe_counter!(
            names::EBPF_EVENTS_TOTAL,
            metrics::Unit::Count,
            "Events an eBPF program submitted to its ring buffer (the kernel's per-CPU count)."
        );
        metrics::describe_counter!(
            names::EBPF_RINGBUF_LOST_EVENTS_TOTAL,
            metrics::Unit::Count,
            "Events an eBPF program could not submit because its ring buffer was full."
        );
        metrics::describe_counter!(
            names::EBPF_FILTERED_EVENTS_TOTAL,
            metrics::Unit::Count,
            "Calls an eBPF program saw and chose not to report (file selection, repeats, the agent's own)."
        );
        let handles = Program::ALL
            .iter()
            .map(|program| {
                let labels = vec![
                    metrics::Label::new("component", component.to_owned()),
                    metrics::Label::new("program", program.as_str()),
                ];
                (
                    metrics::counter!(names::EBPF_EVENTS_TOTAL, labels.clone()),
                    metrics::counter!(names::EBPF_RINGBUF_LOST_EVENTS_TOTAL, labels.clone()),
                    metrics::counter!(names::EBPF_FILTERED_EVENTS_TOTAL, labels),
                )
            })
            .collect();
        Counters { array, exported: AllCounts::default(), handles }
    }

    /// Sums every CPU's slots.
    pub fn read(&self) -> Result<AllCounts, String> {
        read_counts(&self.array)
    }

    /// Reads and adds what is new to the metrics; returns the totals.
    pub fn export(&mut self) -> Result<AllCounts, String> {
        let now = self.read()?;
        for ((current, previous), (events, lost, filtered)) in
            now.iter().zip(self.exported.iter_mut()).zip(&self.handles)
        {
            events.increment(current.submitted.saturating_sub(previous.submitted));
            lost.increment(current.lost.saturating_sub(previous.lost));
            filtered.increment(current.filtered.saturating_sub(previous.filtered));
            *previous = *current;
        }
        Ok(now)
    }
}

/// Sums every CPU's slots of a counter array.
pub fn read_counts(array: &PerCpuArray<MapData, RawCounter>) -> Result<AllCounts, String> {
    let mut totals = AllCounts::default();
    for (index, total) in totals.iter_mut().enumerate() {
        let per_cpu = array.get(&(index as u32), 0).map_err(|e| format!("reading eBPF counters: {}", chain(&e)))?;
        for [submitted, lost, filtered] in per_cpu.iter() {
            total.submitted += submitted;
            total.lost += lost;
            total.filtered += filtered;
        }
    }
    Ok(totals)
}
