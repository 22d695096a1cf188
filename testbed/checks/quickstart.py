#!/usr/bin/env python3
"""The quick start, checked with independent readers.

Runs `hostflow run` exactly as README's first command does (no --config: the
embedded default topology: procfs -> topn -> tail, procfs -> sketch, both into
the Arrow spool under data/spool), scrapes /metrics with the Prometheus
project's own Python parser (prometheus_client), reads /health, stops the
agent with SIGTERM and checks that it exits 0, that what the spool sink
reports as sent is exactly what its finished Arrow files hold (read with
pyarrow, an independent reader), that no file is left half-written, and that
the first scan's Top-N rows plus tail rows add up to the scan.

Exit 0: passed. Exit 77: skipped (reason recorded in $HOSTFLOW_SKIP_LOG).
Anything else: failed.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NAME = "testbed/checks/quickstart.py"


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
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    skip("python package prometheus-client is not installed (pip install prometheus-client)")
try:
    import pyarrow.ipc
except ImportError:
    skip("python package pyarrow is not installed (pip install pyarrow)")

BIN = os.environ.get("HOSTFLOW_BIN") or fail("HOSTFLOW_BIN is not set (run through testbed/test)")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = 9598  # the default topology's address


def get(path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def main():
    work = tempfile.mkdtemp(prefix="hostflow-quickstart-")
    stderr_path = os.path.join(work, "agent.stderr")
    report_path = os.path.join(work, "report.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTFLOW_")}
    with open(stderr_path, "w") as stderr:
        agent = subprocess.Popen([BIN, "run", "--report", report_path], cwd=work, stderr=stderr, env=env)
    try:
        deadline = time.time() + 20
        families = None
        while time.time() < deadline:
            if agent.poll() is not None:
                fail(f"agent exited early with {agent.returncode}", stderr_path)
            try:
                status, body = get("/metrics")
            except OSError:
                time.sleep(0.1)
                continue
            if status != 200:
                fail(f"/metrics answered {status}")
            families = {f.name: f for f in text_string_to_metric_families(body)}
            sent = [s for s in families["hostflow_component_sent_events"].samples
                    if s.name.endswith("_total") and s.labels.get("component") == "spool"] \
                if "hostflow_component_sent_events" in families else []
            if sent and sent[0].value >= 10:
                break
            time.sleep(0.2)
        else:
            fail("the default topology wrote fewer than 10 rows in 20 s", stderr_path)

        for family in ["hostflow_component_received_events", "hostflow_component_sent_events",
                       "hostflow_component_discarded_events", "hostflow_edge_buffer_events",
                       "hostflow_edge_buffer_capacity_events", "hostflow_component_latency_seconds",
                       "hostflow_procfs_scan_duration_seconds", "hostflow_procfs_scanned_processes",
                       "hostflow_topn_capture_ratio", "hostflow_spool_written_bytes",
                       "hostflow_spool_written_files", "hostflow_spool_unflushed_events"]:
            if family not in families:
                fail(f"/metrics lacks {family}; has {sorted(families)}")
        latency = families["hostflow_component_latency_seconds"]
        if latency.type != "histogram":
            fail(f"latency is exported as a {latency.type}, not a histogram")
        bounds = {s.labels.get("le") for s in latency.samples if s.name.endswith("_bucket")}
        for le in ["0.00001", "0.001", "1", "10", "+Inf"]:
            if le not in bounds:
                fail(f"latency lacks the bucket le={le}: {sorted(bounds)}")

        # The ebpf source attaches /health details once its load attempt is
        # over (it runs off the async workers, after procfs's first rows
        # may already be written): wait for them, briefly.
        deadline = time.time() + 10
        while True:
            status, body = get("/health")
            health = json.loads(body)
            if "programs" in health.get("components", {}).get("kernel", {}).get("details", {}) \
                    or time.time() > deadline:
                break
            time.sleep(0.2)
        if status != 200:
            fail(f"/health: {status} {body}")
        expected = {"procfs", "top", "rest", "sketches", "kernel", "enrich", "detect", "detections", "lifecycle",
                    "diag", "spool", "console"}
        if set(health["components"]) != expected:
            fail(f"/health components: {sorted(health['components'])}, expected {sorted(expected)}")
        # detect runs the built-in pack and says which set it is.
        details = health["components"]["detect"].get("details", {})
        if not (len(details.get("ruleset", "")) == 16 and details.get("path") == "builtin"
                and details.get("rules", {}).get("l1", 0) >= 40):
            fail(f"/health: detect shows no built-in rule set: {details}")
        # Without root (or the service's capabilities) the ebpf source runs on
        # its /proc fallback: degraded, with the reason, and nothing else is.
        kernel = health["components"]["kernel"]
        degraded = sorted(name for name, c in health["components"].items() if c["state"] != "running")
        if os.geteuid() == 0 and os.environ.get("CI") == "true":
            if health["status"] != "ok" or degraded:
                fail(f"/health under CI as root: {health['status']}, not running: {degraded}: {body}")
        elif degraded not in ([], ["kernel"]) or (degraded and not kernel.get("reason")):
            fail(f"/health: not running: {degraded}: {body}")
        if "programs" not in kernel.get("details", {}):
            fail(f"/health: the ebpf source shows no probe facts: {kernel}")
        # Processes for the ebpf source to see (as root: every one of them).
        spawned = []
        for _ in range(3):
            child = subprocess.Popen(["/bin/true", "quickstart"])
            child.wait()
            spawned.append(child.pid)
        time.sleep(0.5)  # > the source's drain interval
        status, _ = get("/does-not-exist")
        if status != 404:
            fail(f"unknown path answered {status}, not 404")

        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("agent did not exit within 20 s of SIGTERM", stderr_path)
        if code != 0:
            fail(f"agent exited {code} after SIGTERM", stderr_path)
        report = json.load(open(report_path))
        spool = os.path.join(work, "data", "spool")
        rows = []
        for kind in sorted(os.listdir(spool)):
            for name in sorted(os.listdir(os.path.join(spool, kind))):
                path = os.path.join(spool, kind, name)
                if name.endswith(".tmp"):
                    fail(f"{path} is still being written after a clean exit")
                if not name.endswith(".arrow"):
                    continue
                table = pyarrow.ipc.open_file(path).read_all()
                if table.schema.metadata.get(b"hostflow.kind") != kind.encode():
                    fail(f"{path}: schema metadata {table.schema.metadata}")
                rows.extend(dict(row, kind=kind) for row in table.to_pylist())
        sink_sent = report["components"]["spool"]["sent"]
        if sink_sent != len(rows):
            fail(f"spool sink reports {sink_sent} sent, its finished files hold {len(rows)} rows")
        kinds = {row["kind"] for row in rows}
        if not {"process_sample", "process_aggregate", "sketch"} <= kinds:
            fail(f"expected Top-N rows, tail rows and sketches (flushed at shutdown), got {kinds}")
        # The kernel events: this check itself starts processes (the query
        # command), so execs were seen — by eBPF as root, else by the fallback.
        kernel_kinds = {"process_exec", "process_exit", "process_fork", "net_connect", "file_open",
                        "process_ephemeral", "agent_diag",
                        # issue #13's security kinds, from anything else on the host
                        "file_change", "credential_change", "namespace_change", "ptrace_attach", "module_load",
                        "bpf_program_load", "net_listen", "net_accept", "net_send",
                        # issue #14: the processes running at start, and late exe hashes
                        "process_snapshot", "exe_hash",
                        # issue #15: a rule fired on any of the above
                        "detection"}
        if kinds - {"process_sample", "process_aggregate", "sketch"} - kernel_kinds:
            fail(f"unexpected kinds in the spool: {kinds}")
        if os.geteuid() == 0 and kernel.get("state") == "running":
            execs = {row["pid"]: row for row in rows if row["kind"] == "process_exec"}
            for pid in spawned:
                if pid not in execs or execs[pid]["argv"] != ["/bin/true", "quickstart"]:
                    fail(f"eBPF attached, yet the spool has no exec of /bin/true quickstart for pid {pid}: "
                         f"{execs.get(pid)}")
                # The kernel's attributes of that exec (issue #13): the
                # executed file is /bin/true's, the cwd this checker's.
                exec_row, true_stat = execs[pid], os.stat("/bin/true")
                if not exec_row["has_attributes"] or exec_row["file_inode"] != true_stat.st_ino \
                        or exec_row["cwd"] != os.getcwd() or exec_row["euid"] != os.geteuid():
                    fail(f"exec of pid {pid} lacks its kernel attributes: has_attributes "
                         f"{exec_row['has_attributes']}, file_inode {exec_row['file_inode']} (stat: "
                         f"{true_stat.st_ino}), cwd {exec_row['cwd']!r} (ours: {os.getcwd()!r}), euid {exec_row['euid']}")
                # The process context (issue #14): the default topology
                # enriches kernel events; this checker started before the
                # agent, so it is known from the start-up snapshot and is
                # the exec's parent, and the lineage reaches PID 1.
                ancestors = [int(key.split(":")[0]) for key in exec_row["ctx_ancestor_keys"]]
                if not exec_row["has_context"] or exec_row["ctx_lineage"] != "complete" \
                        or ancestors[:1] != [os.getpid()] or ancestors[-1:] != [1] \
                        or exec_row["ctx_exe"] != "/usr/bin/true" and exec_row["ctx_exe"] != "/bin/true":
                    fail(f"exec of pid {pid} lacks its process context: has_context {exec_row['has_context']}, "
                         f"lineage {exec_row['ctx_lineage']}, ancestors {ancestors} (checker pid {os.getpid()}), "
                         f"exe {exec_row['ctx_exe']!r}")
        first_scan = min(row["scan_id"] for row in rows if row["kind"] in ("process_sample", "process_aggregate"))
        scan_rows = [row for row in rows if row.get("scan_id") == first_scan]
        scan_size = scan_rows[0]["scan_size"]
        counted = sum(1 if row["kind"] == "process_sample" else row["count"] for row in scan_rows)
        ranked = [row for row in scan_rows if row["kind"] == "process_sample"]
        if counted != scan_size:
            fail(f"scan {first_scan}: Top-N rows + tail counts = {counted}, scan size {scan_size}")
        if not ranked or any(row["top_n_rank"] < 1 for row in ranked) or len(ranked) > 20:
            fail(f"scan {first_scan}: {len(ranked)} ranked rows, ranks {[r['top_n_rank'] for r in ranked]}")
        if os.getpid() not in {row["pid"] for row in rows if row["kind"] == "process_sample"} and \
                not any(row["kind"] == "process_aggregate" and row["name"].startswith("python") for row in rows):
            fail("this checker's own python process is neither a Top-N row nor in a tail row")
        top = report["components"]["top"]
        if top["received"] != top["sent"]:
            fail(f"topn is 1:1 but received {top['received']} and sent {top['sent']}")
        check_query(work, env, rows)
        print(f"ok: {len(rows)} rows written (scan of {scan_size} processes: {len(ranked)} Top-N rows), clean exit, "
              "README's query answers")
    finally:
        if agent.poll() is None:
            agent.kill()


def check_query(work, env, rows):
    """README's query command, as written there, answers from the spool; the
    same GROUP BY in CSV matches what pyarrow read."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    prefix = 'cargo run --release -p hostflow-query -- "'
    line = next((l for l in readme.splitlines() if l.startswith(prefix)), None)
    if line is None:
        fail(f"README has no `{prefix}...\"` command")
    sql = line[len(prefix):-1]
    # README's spelling runs the hostflow-query binary; `hostflow query`
    # must forward to the same binary beside it and print the same answer.
    direct = os.path.join(os.path.dirname(BIN), "hostflow-query")
    shown = subprocess.run([direct, sql], cwd=work, env=env, capture_output=True, text=True)
    forwarded = subprocess.run([BIN, "query", sql], cwd=work, env=env, capture_output=True, text=True)
    if (forwarded.returncode, forwarded.stdout) != (shown.returncode, shown.stdout):
        fail(f"`hostflow query` ({forwarded.returncode}) and hostflow-query ({shown.returncode}) differ: "
             f"{forwarded.stdout}{forwarded.stderr} vs {shown.stdout}")
    if shown.returncode != 0 or "peak_rss" not in shown.stdout:
        fail(f"README's query exited {shown.returncode}: {shown.stdout}{shown.stderr}")
    answer = subprocess.run([BIN, "query", "--format", "csv", "SELECT name, count(*) AS samples, max(rss_bytes) "
                             "AS peak_rss FROM process_sample GROUP BY name"],
                            cwd=work, env=env, capture_output=True, text=True)
    if answer.returncode != 0:
        fail(f"query exited {answer.returncode}: {answer.stderr}")
    got = {}
    for line in answer.stdout.splitlines()[1:]:
        name, samples, peak = line.rsplit(",", 2)
        got[name.strip('"')] = (int(samples), int(peak))
    want = {}
    for row in rows:
        if row["kind"] == "process_sample":
            samples, peak = want.get(row["name"], (0, 0))
            want[row["name"]] = (samples + 1, max(peak, row["rss_bytes"]))
    if got != want:
        fail(f"query's GROUP BY {got} differs from pyarrow's {want}")


if __name__ == "__main__":
    main()
