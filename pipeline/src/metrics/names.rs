//! Every metric name the engine exports, in one place.
//!
//! Names follow Prometheus conventions: `hostflow_<namespace>_<name>_<unit>`,
//! with `_total` on counters. Labels are low-cardinality by construction:
//! component names come from the topology, drop reasons from a closed enum.

/// Events a component took in (sources: none; transforms and sinks: from their input buffer).
pub const COMPONENT_RECEIVED_EVENTS_TOTAL: &str = "hostflow_component_received_events_total";
/// Events a component passed on (sinks: acknowledged as written).
pub const COMPONENT_SENT_EVENTS_TOTAL: &str = "hostflow_component_sent_events_total";
/// Events a component or its input buffer dropped, by `reason`.
pub const COMPONENT_DISCARDED_EVENTS_TOTAL: &str = "hostflow_component_discarded_events_total";
/// Errors a component hit, by `error_type`.
pub const COMPONENT_ERRORS_TOTAL: &str = "hostflow_component_errors_total";
/// Time spent processing one batch (CPU work, not waiting for input).
pub const COMPONENT_LATENCY_SECONDS: &str = "hostflow_component_latency_seconds";

/// Events waiting in a component's input buffer.
pub const EDGE_BUFFER_EVENTS: &str = "hostflow_edge_buffer_events";
/// Capacity of a component's input buffer, in events.
pub const EDGE_BUFFER_CAPACITY_EVENTS: &str = "hostflow_edge_buffer_capacity_events";
/// Events sent over one edge (`from` → `to`).
pub const EDGE_SENT_EVENTS_TOTAL: &str = "hostflow_edge_sent_events_total";
/// Events dropped on one edge because the policy said so, by `reason`.
pub const EDGE_DISCARDED_EVENTS_TOTAL: &str = "hostflow_edge_discarded_events_total";
/// Time senders spent waiting for room on one edge (backpressure).
pub const EDGE_BLOCKED_SECONDS_TOTAL: &str = "hostflow_edge_blocked_seconds_total";

/// Records of a disk buffer that were torn or corrupt (a crash mid-append,
/// a truncated or damaged segment) and were skipped, per `component`.
pub const BUFFER_TORN_RECORDS_TOTAL: &str = "hostflow_buffer_torn_records_total";
/// Disk buffer records whose checksum held but whose payload did not decode
/// (written by an incompatible version), skipped, per `component`.
pub const BUFFER_UNDECODABLE_RECORDS_TOTAL: &str = "hostflow_buffer_undecodable_records_total";
/// Unacknowledged bytes in a disk buffer's segment files, per `component`.
pub const BUFFER_DISK_BYTES: &str = "hostflow_buffer_disk_bytes";
/// Events found unacknowledged in a disk buffer at start and delivered
/// again (at-least-once), per `component`.
pub const BUFFER_REPLAYED_EVENTS_TOTAL: &str = "hostflow_buffer_replayed_events_total";

/// Wall time of one full scan of /proc.
pub const PROCFS_SCAN_DURATION_SECONDS: &str = "hostflow_procfs_scan_duration_seconds";
/// Processes read in the latest scan.
pub const PROCFS_SCANNED_PROCESSES: &str = "hostflow_procfs_scanned_processes";
/// Processes that exited between being listed and being read (skipped, not errors).
pub const PROCFS_VANISHED_PROCESSES_TOTAL: &str = "hostflow_procfs_vanished_processes_total";
/// Share of the latest scan's CPU ticks carried by the Top-N rows (0 to 1).
pub const TOPN_CAPTURE_RATIO: &str = "hostflow_topn_capture_ratio";
/// Sketches emitted at window flushes.
pub const SKETCH_FLUSHED_SKETCHES_TOTAL: &str = "hostflow_sketch_flushed_sketches_total";

/// Bytes the Arrow spool wrote to its files.
pub const SPOOL_WRITTEN_BYTES_TOTAL: &str = "hostflow_spool_written_bytes_total";
/// Spool files finished (footer written, renamed into place).
pub const SPOOL_FILES_WRITTEN_TOTAL: &str = "hostflow_spool_written_files_total";
/// Rows written to spool files but not yet fsynced.
pub const SPOOL_UNFLUSHED_EVENTS: &str = "hostflow_spool_unflushed_events";
/// Spool files removed by retention (size or age).
pub const SPOOL_RETENTION_DELETED_FILES_TOTAL: &str = "hostflow_spool_retention_deleted_files_total";
/// Leftover temporary files recovered into finished files at start.
pub const SPOOL_RECOVERED_FILES_TOTAL: &str = "hostflow_spool_recovered_files_total";
/// Leftover temporary files set aside in `quarantine/` as unreadable.
pub const SPOOL_QUARANTINED_FILES_TOTAL: &str = "hostflow_spool_quarantined_files_total";

/// Events the replay source read back and handed on (after `kinds` and the
/// time range).
pub const REPLAY_READ_EVENTS_TOTAL: &str = "hostflow_replay_read_events_total";
/// Replay files (or kind directories) that could not be read, wholly or in part.
pub const REPLAY_SKIPPED_FILES_TOTAL: &str = "hostflow_replay_skipped_files_total";
/// Replayed NDJSON lines that were not an event.
pub const REPLAY_SKIPPED_LINES_TOTAL: &str = "hostflow_replay_skipped_lines_total";

/// Kafka messages handed to librdkafka, per `topic` (each message once, retries not counted).
pub const KAFKA_PRODUCED_MESSAGES_TOTAL: &str = "hostflow_kafka_produced_messages_total";
/// Kafka messages the broker acknowledged (`acks=all`), per `topic`.
pub const KAFKA_DELIVERED_MESSAGES_TOTAL: &str = "hostflow_kafka_delivered_messages_total";
/// Failed attempts to deliver a Kafka message, per `topic` and `reason`
/// (the message is retried, not dropped, unless the error is permanent).
pub const KAFKA_FAILED_DELIVERIES_TOTAL: &str = "hostflow_kafka_failed_deliveries_total";
/// Kafka messages enqueued and not yet acknowledged, per `topic`.
pub const KAFKA_IN_FLIGHT_MESSAGES: &str = "hostflow_kafka_in_flight_messages";
/// Time from enqueueing a Kafka message to its acknowledgement, per `topic`.
pub const KAFKA_DELIVERY_LATENCY_SECONDS: &str = "hostflow_kafka_delivery_latency_seconds";

/// Events an eBPF program submitted to its ring buffer, per `program`
/// (read from the program's own per-CPU counter, so it is the kernel's count).
pub const EBPF_EVENTS_TOTAL: &str = "hostflow_ebpf_events_total";
/// Events an eBPF program could not submit because its ring buffer was full,
/// per `program` (per-CPU reserve-failure counter, exact and immediate).
pub const EBPF_RINGBUF_LOST_EVENTS_TOTAL: &str = "hostflow_ebpf_ringbuf_lost_events_total";
/// Calls an eBPF program saw and chose not to report, per `program`: paths
/// outside the file selection, repeated UDP destinations, the agent's own
/// BPF loads (the kernel's per-CPU count).
pub const EBPF_FILTERED_EVENTS_TOTAL: &str = "hostflow_ebpf_filtered_events_total";

/// Diagnostics the agent reported about itself, per `module` and `event_type`
/// (a fallback taken, an outage, a file set aside); see `pipeline::diag`.
pub const AGENT_DIAG_EVENTS_TOTAL: &str = "hostflow_agent_diag_events_total";

/// CPU time of the agent process.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "hostflow_process_cpu_seconds_total";
/// Resident memory of the agent process.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "hostflow_process_resident_memory_bytes";
/// Constant 1, labelled with the agent version.
pub const BUILD_INFO: &str = "hostflow_build_info";

/// Every name above, for the naming test and for documentation.
pub const ALL: [&str; 40] = [
    COMPONENT_RECEIVED_EVENTS_TOTAL,
    COMPONENT_SENT_EVENTS_TOTAL,
    COMPONENT_DISCARDED_EVENTS_TOTAL,
    COMPONENT_ERRORS_TOTAL,
    COMPONENT_LATENCY_SECONDS,
    EDGE_BUFFER_EVENTS,
    EDGE_BUFFER_CAPACITY_EVENTS,
    EDGE_SENT_EVENTS_TOTAL,
    EDGE_DISCARDED_EVENTS_TOTAL,
    EDGE_BLOCKED_SECONDS_TOTAL,
    BUFFER_TORN_RECORDS_TOTAL,
    BUFFER_UNDECODABLE_RECORDS_TOTAL,
    BUFFER_DISK_BYTES,
    BUFFER_REPLAYED_EVENTS_TOTAL,
    PROCFS_SCAN_DURATION_SECONDS,
    PROCFS_SCANNED_PROCESSES,
    PROCFS_VANISHED_PROCESSES_TOTAL,
    TOPN_CAPTURE_RATIO,
    SKETCH_FLUSHED_SKETCHES_TOTAL,
    SPOOL_WRITTEN_BYTES_TOTAL,
    SPOOL_FILES_WRITTEN_TOTAL,
    SPOOL_UNFLUSHED_EVENTS,
    SPOOL_RETENTION_DELETED_FILES_TOTAL,
    SPOOL_RECOVERED_FILES_TOTAL,
    SPOOL_QUARANTINED_FILES_TOTAL,
    REPLAY_READ_EVENTS_TOTAL,
    REPLAY_SKIPPED_FILES_TOTAL,
    REPLAY_SKIPPED_LINES_TOTAL,
    KAFKA_PRODUCED_MESSAGES_TOTAL,
    KAFKA_DELIVERED_MESSAGES_TOTAL,
    KAFKA_FAILED_DELIVERIES_TOTAL,
    KAFKA_IN_FLIGHT_MESSAGES,
    KAFKA_DELIVERY_LATENCY_SECONDS,
    EBPF_EVENTS_TOTAL,
    EBPF_RINGBUF_LOST_EVENTS_TOTAL,
    EBPF_FILTERED_EVENTS_TOTAL,
    AGENT_DIAG_EVENTS_TOTAL,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    BUILD_INFO,
];

/// Why events were dropped. A closed set, so the `reason` label can never
/// explode in cardinality and every drop site has to pick a documented cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A `drop_newest` buffer had no room.
    BufferFull,
    /// The downstream component stopped (failed) while events were still
    /// addressed to it.
    DownstreamClosed,
    /// A filter's conditions rejected the event (intentional).
    Filtered,
    /// A sink's write failed and the sink stopped.
    WriteFailed,
    /// A `drop_newest` disk buffer's filesystem had no space left.
    DiskFull,
    /// A disk buffer record that did not decode (see
    /// `hostflow_buffer_undecodable_records_total`).
    Undecodable,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 6] = [
        DropReason::BufferFull,
        DropReason::DownstreamClosed,
        DropReason::Filtered,
        DropReason::WriteFailed,
        DropReason::DiskFull,
        DropReason::Undecodable,
    ];
    /// Number of reasons, for per-reason arrays.
    pub const COUNT: usize = DropReason::ALL.len();

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::DownstreamClosed => "downstream_closed",
            DropReason::Filtered => "filtered",
            DropReason::WriteFailed => "write_failed",
            DropReason::DiskFull => "disk_full",
            DropReason::Undecodable => "undecodable",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for name in ALL {
            assert!(name.starts_with("hostflow_"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            let base = name.trim_end_matches("_total");
            assert!(!base.ends_with("_total"), "{name}");
            // Counters of things (`_errors_total`) need no unit; everything
            // else names its base unit.
            let has_unit =
                ["_events", "_seconds", "_bytes", "_info", "_ratio", "_processes", "_sketches", "_files", "_messages"]
                    .iter()
                    .any(|unit| base.ends_with(unit));
            assert!(has_unit || (name.ends_with("_total") && base.ends_with('s')), "{name} lacks a unit suffix");
        }
        for reason in DropReason::ALL {
            assert_eq!(DropReason::ALL[reason.index()], reason);
            assert!(reason.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
