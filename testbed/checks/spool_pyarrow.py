#!/usr/bin/env python3
"""The Arrow spool, read by an independent reader (pyarrow), issue #5.

Runs `hostflow run` with a generator (every event kind, a fixed count, small
files so they rotate) into the `arrow_spool` sink, then opens every finished
file with `pyarrow.ipc.open_file` and checks: only finished `.arrow` files
are left, each file's schema names its kind, row counts per kind add up to
the sink's sent count, event ids are exactly 0..N-1 once each, ids are
increasing within each kind, and a few values are what the generator makes
(pids in range, the protocol column is tcp/udp, sketch counts match their
bins).

Exit 0: passed. Exit 77: skipped (reason recorded in $HOSTFLOW_SKIP_LOG).
Anything else: failed.
"""

import json
import os
import subprocess
import sys
import tempfile

NAME = "testbed/checks/spool_pyarrow.py"


def skip(reason):
    print(f"SKIPPED {NAME}: {reason}")
    log = os.environ.get("HOSTFLOW_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{NAME}\t{reason}\n")
    sys.exit(77)


def fail(message, stderr_path=None):
    print(f"FAILED {NAME}: {message}")
    if stderr_path and os.path.exists(stderr_path):
        print("--- agent stderr ---")
        print(open(stderr_path).read())
    sys.exit(1)


try:
    import pyarrow.ipc
except ImportError:
    skip("python package pyarrow is not installed (pip install pyarrow)")

BIN = os.environ.get("HOSTFLOW_BIN") or fail("HOSTFLOW_BIN is not set (run through testbed/test)")
# The declared kinds (issues #13, #14, #15, #17), written from one column
# declaration (schemas/src/columns.rs); pyarrow is the independent reader here.
SECURITY_KINDS = ["file_change", "credential_change", "namespace_change", "ptrace_attach", "module_load",
                  "bpf_program_load", "net_listen", "net_accept", "net_send", "process_snapshot", "exe_hash",
                  "detection", "net_policy"]
# Kinds that end with the process context group (has_context + ctx_ columns).
CONTEXT_KINDS = ["process_exec", "process_exit", "process_fork", "net_connect", "file_open", *SECURITY_KINDS]
KINDS = ["process_exec", "process_exit", "process_fork", "net_connect", "file_open",
         "process_sample", "process_aggregate", "sketch", "agent_diag", "process_ephemeral"] + SECURITY_KINDS
N = 50_000


def main():
    work = tempfile.mkdtemp(prefix="hostflow-spool-")
    spool = os.path.join(work, "spool")
    stderr_path = os.path.join(work, "agent.stderr")
    report_path = os.path.join(work, "report.json")
    mix = ", ".join(f"{kind} = 1" for kind in KINDS)
    config = os.path.join(work, "topology.toml")
    with open(config, "w") as f:
        f.write(f"""
[api]
enabled = false
[sources.gen]
type = "generator"
count = {N}
seed = 3
mix = {{ {mix} }}
[sinks.spool]
type = "arrow_spool"
inputs = ["gen"]
path = "{spool}"
max_file_bytes = 100000
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTFLOW_")}
    with open(stderr_path, "w") as stderr:
        code = subprocess.run([BIN, "run", "--config", config, "--report", report_path],
                              cwd=work, stderr=stderr, env=env, timeout=120).returncode
    if code != 0:
        fail(f"agent exited {code}", stderr_path)
    sent = json.load(open(report_path))["components"]["spool"]["sent"]

    per_kind = {}
    all_ids = []
    files = 0
    for kind in sorted(os.listdir(spool)):
        if kind not in KINDS:
            fail(f"unexpected directory {kind} in the spool")
        ids = []
        for name in sorted(os.listdir(os.path.join(spool, kind))):
            path = os.path.join(spool, kind, name)
            if not (name.startswith(f"{kind}-") and name.endswith(".arrow") and len(name) == len(kind) + 17):
                fail(f"{path}: not a finished spool file name")
            table = pyarrow.ipc.open_file(path).read_all()
            files += 1
            if table.schema.metadata.get(b"hostflow.kind") != kind.encode():
                fail(f"{path}: schema metadata {table.schema.metadata}")
            ids.extend(table.column("event_id").to_pylist())
            if kind in SECURITY_KINDS and table.schema.field("start_time_ns").type != pyarrow.uint64():
                fail(f"{path}: start_time_ns is {table.schema.field('start_time_ns').type}")
            if kind == "process_exec" and table.schema.field("has_attributes").type != pyarrow.bool_():
                fail(f"{path}: process_exec has no boolean has_attributes column")
            if kind in CONTEXT_KINDS:
                names = table.schema.names
                if "has_context" not in names or not names[names.index("has_context") + 1].startswith("ctx_"):
                    fail(f"{path}: no has_context followed by ctx_ columns: {names}")
                if table.schema.field("ctx_ancestor_exes").type != pyarrow.list_(pyarrow.field("item", pyarrow.string(), nullable=False)):
                    fail(f"{path}: ctx_ancestor_exes is {table.schema.field('ctx_ancestor_exes').type}")
                if any(table.column("has_context").to_pylist()):
                    fail(f"{path}: a generated event has a context without an enrich transform")
            if kind == "detection":
                u64_list = pyarrow.list_(pyarrow.field("item", pyarrow.uint64(), nullable=False))
                if table.schema.field("event_ids").type != u64_list:
                    fail(f"{path}: event_ids is {table.schema.field('event_ids').type}")
                if any(max(ids, default=-1) >= own for ids, own in
                       zip(table.column("event_ids").to_pylist(), table.column("event_id").to_pylist())):
                    fail(f"{path}: a generated detection rests on itself or a later event")
            if kind == "net_policy":
                if set(table.column("action").to_pylist()) - {"deny", "audit", "allow"}:
                    fail(f"{path}: policy actions {set(table.column('action').to_pylist())}")
                if table.schema.field("rule_key").type != pyarrow.uint32() or \
                        table.schema.field("dry_run").type != pyarrow.bool_():
                    fail(f"{path}: rule_key is {table.schema.field('rule_key').type}, "
                         f"dry_run is {table.schema.field('dry_run').type}")
                if any(dry and action != "deny" for dry, action in
                       zip(table.column("dry_run").to_pylist(), table.column("action").to_pylist())):
                    fail(f"{path}: a dry-run decision that is not a deny")
            if kind == "file_change" and set(table.column("op").to_pylist()) - {
                    "chmod", "unlink", "rename", "link", "symlink"}:
                fail(f"{path}: file ops {set(table.column('op').to_pylist())}")
            if kind in ("process_exec", "process_sample", "net_connect", "file_open", *SECURITY_KINDS):
                if not all(0 < pid < 1 << 22 for pid in table.column("pid").to_pylist()):
                    fail(f"{path}: a pid out of range")
            if kind == "net_connect" and set(table.column("protocol").to_pylist()) - {"tcp", "udp"}:
                fail(f"{path}: protocols {set(table.column('protocol').to_pylist())}")
            if kind == "sketch":
                for row in table.select(["count", "zero_count", "bins", "neg_bins"]).to_pylist():
                    if row["count"] != row["zero_count"] + sum(row["bins"]) + sum(row["neg_bins"]):
                        fail(f"{path}: sketch count {row['count']} is not its bins' sum")
        if ids != sorted(ids):
            fail(f"{kind}: event ids are not increasing across its files")
        per_kind[kind] = len(ids)
        all_ids.extend(ids)
    if sum(per_kind.values()) != sent or sent != N:
        fail(f"rows per kind {per_kind} add up to {sum(per_kind.values())}; the sink sent {sent} of {N}")
    if sorted(all_ids) != list(range(N)):
        fail("event ids are not exactly 0..N-1 once each")
    if set(k for k, n in per_kind.items() if n > 0) != set(KINDS):
        fail(f"not every kind was written: {per_kind}")
    if files <= len(KINDS):
        fail(f"expected size rotation to make several files per kind, got {files} files")
    print(f"ok: {N} rows in {files} files read by pyarrow {pyarrow.__version__}; per kind {per_kind}")


if __name__ == "__main__":
    main()
