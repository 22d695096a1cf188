//! The component registry: the one list of every component type the
//! binary knows. Adding a component is one file in its crate plus one line
//! here. Order within a role is the order shown in `hostflow components`
//! and in "known types" error messages.

use pipeline::{BuildFn, ComponentSpec};

/// Every component type.
pub const COMPONENTS: &[ComponentSpec] = &[
    // sources
    ComponentSpec {
        type_name: "generator",
        summary: "synthetic events at a set rate from a fixed seed (benchmarks, load tests)",
        build: BuildFn::Source(sources::generator::build),
    },
    ComponentSpec {
        type_name: "procfs",
        summary: "scan /proc on an interval: one row per process with cpu%, RSS, name, cmdline",
        build: BuildFn::Source(sources::procfs::build),
    },
    ComponentSpec {
        type_name: "ebpf",
        summary:
            "process exec/exit/fork, connects and file opens from eBPF programs (falls back to /proc without eBPF)",
        build: BuildFn::Source(sources::ebpf::build),
    },
    ComponentSpec {
        type_name: "agent_diag",
        summary: "the agent's own diagnostics (fallbacks taken, outages) as AgentDiag events",
        build: BuildFn::Source(sources::agent_diag::build),
    },
    ComponentSpec {
        type_name: "replay",
        summary: "read an Arrow spool (or NDJSON corpus) back in (ts_ns, event_id) order, at max or recorded speed",
        build: BuildFn::Source(sources::replay::build),
    },
    // transforms
    ComponentSpec {
        type_name: "filter",
        summary: "keep events of chosen kinds that meet every field condition",
        build: BuildFn::Transform(transforms::filter::build),
    },
    ComponentSpec {
        type_name: "enrich",
        summary: "attach one shared process context (exe, argv, user, container, ancestry) to process events",
        build: BuildFn::Transform(transforms::enrich::build),
    },
    ComponentSpec {
        type_name: "detect",
        summary: "evaluate detection rules (native YAML and Sigma; L1 indicators, L2 sequences and counts): every match fires",
        build: BuildFn::Transform(detect::build),
    },
    ComponentSpec {
        type_name: "topn",
        summary: "rank the N highest-scoring processes of each scan (score: weighted cpu% and RSS)",
        build: BuildFn::Transform(transforms::topn::build),
    },
    ComponentSpec {
        type_name: "tail",
        summary: "fold processes outside the Top-N into one aggregate row per name and scan",
        build: BuildFn::Transform(transforms::tail::build),
    },
    ComponentSpec {
        type_name: "sketch",
        summary: "DDSketch per metric and process name (plus host-wide), flushed every window",
        build: BuildFn::Transform(transforms::sketch::build),
    },
    ComponentSpec {
        type_name: "lifecycle",
        summary: "fold processes that exec and exit within a window into one ephemeral row per name and interval",
        build: BuildFn::Transform(transforms::lifecycle::build),
    },
    // sinks
    ComponentSpec {
        type_name: "arrow_spool",
        summary: "Arrow IPC files per event kind, zstd, rotated and retained; read by `query` and `replay`",
        build: BuildFn::Sink(sinks::arrow_spool::build),
    },
    ComponentSpec {
        type_name: "kafka",
        summary: "produce to a Kafka topic: protobuf envelopes or JSON, zstd, idempotent, acked on delivery",
        build: BuildFn::Sink(sinks::kafka::build),
    },
    ComponentSpec {
        type_name: "blackhole",
        summary: "accept and forget every event (benchmarks)",
        build: BuildFn::Sink(sinks::blackhole::build),
    },
    ComponentSpec {
        type_name: "console",
        summary: "NDJSON lines on stdout or stderr",
        build: BuildFn::Sink(sinks::console::build),
    },
    ComponentSpec {
        type_name: "file",
        summary: "NDJSON lines appended to a file",
        build: BuildFn::Sink(sinks::file::build),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique_and_match_their_files() {
        for (i, spec) in COMPONENTS.iter().enumerate() {
            assert!(COMPONENTS[i + 1..].iter().all(|other| other.type_name != spec.type_name), "{}", spec.type_name);
            let crate_dir = match spec.role() {
                pipeline::Role::Source => "sources",
                pipeline::Role::Transform => "transforms",
                pipeline::Role::Sink => "sinks",
            };
            // One file, or one folder when the component is large, or a
            // crate of its own named after the type (`detect/`).
            let base = format!("{}/{crate_dir}/src/{}", env!("CARGO_MANIFEST_DIR"), spec.type_name);
            let own_crate = format!("{}/{}/src/lib.rs", env!("CARGO_MANIFEST_DIR"), spec.type_name);
            let found = [format!("{base}.rs"), format!("{base}/mod.rs"), own_crate]
                .into_iter()
                .any(|f| std::path::Path::new(&f).exists());
            assert!(found, "type name = file (or folder) name: {base}.rs");
        }
    }
}
