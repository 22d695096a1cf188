#!/usr/bin/env python3
"""Detection live on the kernel, as root (issue #15): the default Linux rule
pack (rules/linux/) fires on real kernel events within a second.

One agent run: ebpf (with the file selection and exec_env of the default
topology.toml, so this also proves that topology captures what the pack
watches) -> enrich -> detect (rules = the repository's rules/linux, by
absolute path) -> filter kinds=["detection"] -> file sink (NDJSON). A second
file sink takes every event detect passes on, to find the kernel events the
detections rest on (and to explain a failure).

1. Download to /tmp, then execute, on loopback: a python http.server on
   127.0.0.1 serves a harmless shell script; a bash runs
   `curl -s -o /tmp/hf-live-XXXX.sh http://127.0.0.1:PORT/x.sh &&
   chmod +x … && /tmp/hf-live-XXXX.sh`. hf-linux-download-then-exec fires
   (an L2 sequence: curl's write-open under /tmp, then an exec from /tmp in
   the same lineage), resting on the script's exec.
2. A canary credential read: a fake private key
   /tmp/hf-canary-XXXX/.ssh/id_rsa (created before the agent starts, so its
   creation is not seen) is read with cat; hf-linux-ssh-private-key-read
   fires, resting on cat's open.

Latency is measured from the kernel timestamp of the event a detection
rests on (the script's exec, cat's open: CLOCK_BOOTTIME, as the eBPF
programs stamp them) to the moment the detection's line appears in the
NDJSON file (a thread tails it, reading the same clock); at most 1 s. The
file sink writes every batch as it comes (no buffering of its own), so the
latency is the agent's: the ring drain (100 ms), enrich, detect's reorder
window for sequences (300 ms by default) and the edges.

Every detection in the file carries the rule-set digest /health shows and
at least one event id. Everything the check creates (the work directory,
the downloaded script, the canary, the http server, the agent) lives under
/tmp or is a child process, and is removed at the end, also on failure.

Exit 0: passed. Exit 77: skipped (not root; or eBPF cannot attach the
programs the scenarios need, per `hostflow probe`). Anything else: failed.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import ROOT, agent_env, fail, free_port, register, skip, wait_exit  # noqa: E402

RULES = os.path.join(ROOT, "rules", "linux")
# The programs the scenarios rest on; the others may be missing on a host
# (module_load on a kernel without modules) without hiding anything here.
NEEDED_PROGRAMS = ["exec", "exit", "fork", "file_open", "file_change"]
BUDGET_S = 1.0
DOWNLOAD_RULE = "hf-linux-download-then-exec"
KEY_RULE = "hf-linux-ssh-private-key-read"
SCRIPT_BODY = "#!/bin/sh\n# hostflow detect_live check: harmless\necho hf-live-ok\n"
FAKE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
            "aGYtbGl2ZSBjYW5hcnk6IG5vdCBhIGtleSwgbmV2ZXIgdXNlZCBmb3IgYW55dGhpbmc=\n"
            "-----END OPENSSH PRIVATE KEY-----\n")


def boot_ns():
    """The clock the eBPF programs stamp events with (bpf_ktime_get_boot_ns)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def binary():
    """$HOSTFLOW_BIN (set by testbed/test), else the release build of this tree."""
    path = os.environ.get("HOSTFLOW_BIN") or os.path.join(ROOT, "target", "release", "hostflow")
    if not os.access(path, os.X_OK):
        fail(f"no hostflow binary at {path} (cargo build --release, or set HOSTFLOW_BIN)")
    return path


def probe(hostflow):
    """Skips when eBPF cannot run the programs the scenarios need. A partial
    host (exit 69 with, e.g., module_load missing) still runs the check."""
    result = subprocess.run([hostflow, "probe", "--json"], capture_output=True, text=True, env=agent_env())
    if result.returncode not in (0, 69):
        fail(f"hostflow probe exited {result.returncode}: {result.stderr.strip()}")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        if result.returncode == 69:
            skip(f"eBPF unavailable (hostflow probe exit 69): {result.stderr.strip() or result.stdout.strip()}")
        fail(f"hostflow probe --json printed no JSON: {result.stdout[:300]!r}")
    programs = {p["program"]: p["fact"] for p in report.get("programs", [])}
    missing = [f"{name}: {programs.get(name, {}).get('status', 'absent')} "
               f"({programs.get(name, {}).get('detail', 'not in the report')})"
               for name in NEEDED_PROGRAMS if programs.get(name, {}).get("status") != "ok"]
    if missing:
        skip("eBPF unavailable for the programs this check needs (hostflow probe exit "
             f"{result.returncode}): " + "; ".join(missing))
    others = [f"{p['program']} {p['fact']['status']}" for p in report.get("programs", [])
              if p["fact"]["status"] != "ok"]
    return others


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    fail(f"topology.toml [sources.kernel] holds a value this check cannot copy: {value!r}")


def kernel_section():
    """[sources.kernel] of the repository's default topology, as TOML lines."""
    with open(os.path.join(ROOT, "topology.toml"), "rb") as f:
        kernel = tomllib.load(f)["sources"]["kernel"]
    lines = []
    for key, value in kernel.items():
        if isinstance(value, dict):
            fail(f"topology.toml [sources.kernel.{key}] is a table; teach this check to copy it")
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines), kernel


class Tail(threading.Thread):
    """Reads the detection file as it grows (one open file: re-opening a
    file under /tmp would itself be a selected file_open), stamping each
    complete line with the boot-clock time it was first seen."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.lines = []  # (seen_boot_ns, parsed)
        self.bad = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self):
        while not os.path.exists(self.path) and not self.stopping.is_set():
            time.sleep(0.005)
        if self.stopping.is_set():
            return
        with open(self.path, "rb") as f:
            pending = b""
            while True:
                chunk = f.read()
                if chunk:
                    seen = boot_ns()
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    with self.lock:
                        for line in complete:
                            if not line.strip():
                                continue
                            try:
                                self.lines.append((seen, json.loads(line)))
                            except json.JSONDecodeError:
                                self.bad.append(line[:200])
                elif self.stopping.is_set():
                    return
                else:
                    time.sleep(0.002)

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def wait_for(self, predicate, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for seen, detection in self.snapshot():
                if predicate(detection):
                    return seen, detection
            time.sleep(0.01)
        return None, None


def health(api_port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=5))


def metric(port, name, component=None):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if component and f'component="{component}"' not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def wait_until(what, predicate, timeout, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"timed out after {timeout} s waiting for {what}", log)


def read_events(path):
    """Every event the second sink wrote (read once, at the end)."""
    events = []
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    events.append(json.loads(line))
    return events


def describe(events, needle):
    """The events mentioning `needle`, one short line each (for a failure)."""
    keys = ("kind", "event_id", "ts_ns", "pid", "exe", "path", "target", "flags", "file_op", "ctx_exe",
            "ctx_lineage", "ctx_session_id", "ctx_ancestor_exes")
    out = []
    for e in events:
        if needle in json.dumps(e):
            out.append(json.dumps({k: e[k] for k in keys if k in e})[:600])
    return "\n".join(out[:30]) or f"(no event mentions {needle})"


def main():
    if os.geteuid() != 0:
        skip("needs root: eBPF programs")
    hostflow = binary()
    not_ok = probe(hostflow)
    if shutil.which("curl") is None:
        skip("curl is not installed (the download scenario uses it as the downloader)")

    token = secrets.token_hex(4)
    work = tempfile.mkdtemp(prefix="hf-detect-live-", dir="/tmp")
    script = f"/tmp/hf-live-{token}.sh"
    canary = f"/tmp/hf-canary-{token}"
    key = os.path.join(canary, ".ssh", "id_rsa")
    server = agent = None
    try:
        log = os.path.join(work, "agent.log")
        detections_path = os.path.join(work, "detections.ndjson")
        events_path = os.path.join(work, "events.ndjson")
        api_port, http_port = free_port(), free_port()

        # Before the agent: the served script, the canary key, the server
        # (none of their writes is part of a scenario).
        srv = os.path.join(work, "srv")
        os.makedirs(srv)
        with open(os.path.join(srv, "x.sh"), "w") as f:
            f.write(SCRIPT_BODY)
        os.makedirs(os.path.dirname(key), mode=0o700)
        with open(key, "w") as f:
            f.write(FAKE_KEY)
        os.chmod(key, 0o600)
        server = register(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1", "--directory", srv],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        kernel, kernel_options = kernel_section()
        config = os.path.join(work, "topology.toml")
        with open(config, "w") as f:
            f.write(f"""
[api]
address = "127.0.0.1:{api_port}"

# The default topology's ebpf source (file selection, exec_env, programs).
[sources.kernel]
{kernel}

[transforms.enrich]
type = "enrich"
inputs = ["kernel"]

[transforms.detect]
type = "detect"
inputs = ["enrich"]
rules = {json.dumps(RULES)}
# One rule set for the whole run: an edit of rules/ elsewhere must not
# change the digest the detections are checked against.
watch = false

[transforms.detections]
type = "filter"
inputs = ["detect"]
kinds = ["detection"]

[sinks.detections_file]
type = "file"
inputs = ["detections"]
path = {json.dumps(detections_path)}
append = false

[sinks.events_file]
type = "file"
inputs = ["detect"]
path = {json.dumps(events_path)}
append = false
""")
        tail = Tail(detections_path)
        tail.start()
        agent = register(subprocess.Popen([hostflow, "run", "--config", config], cwd=work, env=agent_env(),
                                          stdout=open(log, "w"), stderr=subprocess.STDOUT))

        def ready():
            if agent.poll() is not None:
                fail(f"the agent exited {agent.returncode} while starting", log)
            report = health(api_port)
            components = report.get("components", {})
            kernel_state = components.get("kernel", {}).get("state")
            if kernel_state in ("failed", "stopped"):
                fail(f"the kernel source is {kernel_state}: {components.get('kernel')}", log)
            ruleset = (components.get("detect", {}).get("details") or {}).get("ruleset")
            sent = metric(api_port, "hostflow_component_sent_events_total", "kernel") or 0
            if kernel_state in ("running", "degraded") and ruleset and sent > 0:
                return report
            return None

        report = wait_until("the agent (kernel source running, its snapshot sent, detect's ruleset)", ready, 120,
                            log)
        kernel_health = report["components"]["kernel"]
        if kernel_health.get("state") != "running":
            print(f"note: kernel source {kernel_health.get('state')}: {kernel_health.get('reason')}")
        detect_details = report["components"]["detect"]["details"]
        digest = detect_details["ruleset"]
        # The snapshot is the source's first batch; let enrich take it in.
        time.sleep(1.0)
        wait_until("the http server", lambda: socket.create_connection(("127.0.0.1", http_port), 0.5).close()
                   or True, 10, log)

        # 1. Download to /tmp, then execute, started from a bash.
        command = (f"curl -s -o {script} http://127.0.0.1:{http_port}/x.sh && chmod +x {script} && {script}")
        run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        if run.returncode != 0 or "hf-live-ok" not in run.stdout:
            fail(f"the download scenario failed ({run.returncode}): {run.stdout!r} {run.stderr!r}", log)
        seen_download, download = tail.wait_for(
            lambda d: d.get("rule_id") == DOWNLOAD_RULE and script in json.dumps(d), 5)

        # 2. A read of the canary key.
        read = subprocess.run(["cat", key], capture_output=True, text=True, timeout=30)
        if read.returncode != 0 or "OPENSSH PRIVATE KEY" not in read.stdout:
            fail(f"cat {key} failed ({read.returncode}): {read.stderr!r}", log)
        seen_key, key_read = tail.wait_for(
            lambda d: d.get("rule_id") == KEY_RULE and key in json.dumps(d), 5)

        time.sleep(0.5)
        agent.send_signal(signal.SIGTERM)
        code = wait_exit(agent, 60, log)
        tail.stopping.set()
        tail.join(timeout=5)
        if code != 0:
            fail(f"agent exited {code}", log)
        events = read_events(events_path)
        by_id = {e["event_id"]: e for e in events if "event_id" in e}

        if download is None:
            fail(f"{DOWNLOAD_RULE} did not fire within 5 s of the script's exec. Events mentioning {script}:\n"
                 + describe(events, script), log)
        if key_read is None:
            fail(f"{KEY_RULE} did not fire within 5 s of `cat {key}`. Events mentioning {key}:\n"
                 + describe(events, key), log)

        # The kernel events they rest on.
        execs = [e for e in events if e["kind"] == "process_exec" and e.get("exe") == script]
        if len(execs) != 1:
            fail(f"expected one exec of {script}, got {len(execs)}:\n" + describe(events, script))
        script_exec = execs[0]
        if script_exec["event_id"] not in download["event_ids"]:
            fail(f"{DOWNLOAD_RULE} does not rest on the script's exec {script_exec['event_id']}: "
                 f"event_ids {download['event_ids']}")
        writes = [by_id[i] for i in download["event_ids"] if i in by_id
                  and by_id[i]["kind"] in ("file_open", "file_change") and by_id[i].get("path") == script
                  and by_id[i].get("ctx_exe", "").endswith("/curl")]
        if not writes:
            fail(f"{DOWNLOAD_RULE} does not rest on curl's write of {script}: event_ids {download['event_ids']}:\n"
                 + describe(events, script))
        opens = [e for e in events if e["kind"] == "file_open" and e.get("path") == key
                 and e.get("ctx_exe", "").endswith("/cat")]
        if len(opens) != 1:
            fail(f"expected one open of {key} by cat, got {len(opens)}:\n" + describe(events, key))
        key_open = opens[0]
        if key_open["event_id"] not in key_read["event_ids"]:
            fail(f"{KEY_RULE} does not rest on cat's open {key_open['event_id']}: event_ids {key_read['event_ids']}")

        # Every detection: this run's rule set, and events to rest on.
        detections = [d for _, d in tail.snapshot()]
        if tail.bad:
            fail(f"the detection file holds lines that are not JSON: {tail.bad[:3]}")
        for d in detections:
            if d.get("kind") != "detection":
                fail(f"the filter let a {d.get('kind')} through: {json.dumps(d)[:300]}")
            if d.get("ruleset") != digest:
                fail(f"detection {d.get('rule_id')} has ruleset {d.get('ruleset')!r}, /health shows {digest!r}")
            if not d.get("event_ids"):
                fail(f"detection {d.get('rule_id')} rests on no event: {json.dumps(d)[:300]}")
            for field in ("rule_id", "summary", "title", "severity", "confidence"):
                if not d.get(field):
                    fail(f"detection without {field}: {json.dumps(d)[:300]}")

        download_latency = (seen_download - script_exec["ts_ns"]) / 1e9
        key_latency = (seen_key - key_open["ts_ns"]) / 1e9
        print(f"download-then-exec: {DOWNLOAD_RULE} fired {download_latency * 1000:.0f} ms after the exec of "
              f"{script} (rests on events {download['event_ids']}: curl's {writes[0]['kind']} of the script, "
              f"then its exec); summary: {download['summary']}")
        print(f"canary key read: {KEY_RULE} fired {key_latency * 1000:.0f} ms after cat opened {key} "
              f"(rests on {key_read['event_ids']}); summary: {key_read['summary']}")
        others = {}
        for d in detections:
            if d is not download and d is not key_read:
                others[d["rule_id"]] = others.get(d["rule_id"], 0) + 1
        print(f"rule set {digest[:16]}… ({detect_details.get('rules')}, {detect_details.get('files')} files); "
              f"{len(detections)} detections in all, every one with this digest and event ids; "
              f"other firings during the run: {others or 'none'}; {len(events)} events seen"
              + (f"; programs not ok on this host: {', '.join(not_ok)}" if not_ok else ""))
        slow = [(name, latency) for name, latency in (("download-then-exec", download_latency),
                                                      ("canary key read", key_latency)) if latency > BUDGET_S]
        if slow:
            fail("over the 1 s budget: " + ", ".join(f"{n} {l * 1000:.0f} ms" for n, l in slow))
        if download_latency < 0 or key_latency < 0:
            fail(f"negative latency ({download_latency}, {key_latency}): the events are not on CLOCK_BOOTTIME")
        print("ok: both detections within 1 s on the live kernel")
    finally:
        for process in (agent, server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for path in (script,):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        shutil.rmtree(canary, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
