#!/usr/bin/env python3
"""Records hostflow's labelled corpus on the real kernel, or checks it.

    sudo testbed/corpus/record.py            re-record testbed/corpus/spool/ and labels.json
    testbed/corpus/record.py --check         only verify the committed corpus (no root needed)

Recording (root; eBPF must attach):

1. Starts the agent (the release binary: $HOSTFLOW_BIN, else
   $CARGO_TARGET_DIR/release/hostflow, else target/release/hostflow) with the
   `ebpf` source exactly as the default topology.toml configures it (file
   selection, exec_env, …) → `enrich` → `arrow_spool` into a temporary
   spool; no detect (raw enriched events are recorded). Waits for /health.
2. Runs every scenario of scenarios.py, one after another, each under its
   own runner process, noting its span: start/end on CLOCK_BOOTTIME (the
   clock the eBPF programs stamp events with) and the runner's process key
   (pid, and the start time as hostflow's ProcessKey holds it:
   /proc/PID/stat starttime × 1e9 / CLK_TCK nanoseconds).
3. Stops the agent (SIGTERM; the spool is finished on shutdown), dumps the
   spool to NDJSON with `hostflow replay` and a `file` sink, and keeps only
   the scenarios' events: within a span, and from the runner or with the
   runner in `ctx_ancestor_keys`. Host background noise is dropped.
4. Adds the synthetic edge cases (synthetic.py: PID reuse, reordering,
   L2 cap pressure), built from recorded events as templates with ids and
   timestamps offset past the recording, and writes everything into ONE
   spool, testbed/corpus/spool/, with the agent's own arrow_spool sink
   (`hostflow run`, a `replay` source with format = "ndjson"): the spool
   format is the agent's, byte for byte as its sink writes it.
5. Writes labels.json and verifies (step 6).

6. Verification (also `--check`): replays the spool through `detect` with
   rules/linux and a `file` sink, attributes each detection to the
   scenario its events belong to, prints a table, and fails when an
   `expect` rule of a malicious scenario did not fire. Firings outside
   `expect` + `allow` are printed as false alerts (eval counts them); they
   do not fail the check.

Everything a scenario creates lives under /tmp/hf-corpus-XXXX/ (or one
file in /dev/shm) and is removed; every child process is killed at the end.
"""

import argparse
import datetime
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "testbed", "pylib"))

from checklib import agent_env, free_port  # noqa: E402
import scenarios as scenario_defs  # noqa: E402
import synthetic  # noqa: E402

SPOOL = os.path.join(HERE, "spool")
LABELS = os.path.join(HERE, "labels.json")
RULES = os.path.join(ROOT, "rules", "linux")
ACTIONS = os.path.join(HERE, "actions.py")
PY = "/usr/bin/python3"
SCENARIO_TIMEOUT_S = 120
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_NS = 1_000_000_000 // CLK_TCK


class Failed(Exception):
    pass


def boot_ns():
    """The clock the eBPF programs stamp events with (bpf_ktime_get_boot_ns)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def binary():
    path = os.environ.get("HOSTFLOW_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        path = os.path.join(target, "release", "hostflow")
    if not os.access(path, os.X_OK):
        raise Failed(f"no hostflow binary at {path} (cargo build --release --bin hostflow, or set HOSTFLOW_BIN)")
    return path


def process_key(pid):
    """(pid, start_time_ns) as hostflow's ProcessKey: /proc/PID/stat
    starttime (clock ticks since boot) × ns per tick."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return pid, int(fields[19]) * TICK_NS


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise Failed(f"topology.toml [sources.kernel] holds a value record.py cannot copy: {value!r}")


def kernel_section():
    """[sources.kernel] of the repository's default topology, as TOML lines."""
    with open(os.path.join(ROOT, "topology.toml"), "rb") as f:
        kernel = tomllib.load(f)["sources"]["kernel"]
    lines = []
    for key, value in kernel.items():
        if isinstance(value, dict):
            raise Failed(f"topology.toml [sources.kernel.{key}] is a table; teach record.py to copy it")
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines)


def run(cmd, what, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, env=agent_env(), **kwargs)
    if result.returncode != 0:
        raise Failed(f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def read_ndjson(path):
    events = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                events.append(json.loads(line))
    return events


# ------------------------------------------------------------------ membership

class Spans:
    """Which scenario an event belongs to: `start_ns <= ts_ns <= end_ns` and
    the event's process is the span's root or has it in its ancestry."""

    def __init__(self, labels):
        self.spans = []
        for scenario in labels["scenarios"]:
            for span in scenario["spans"]:
                self.spans.append((span["start_ns"], span["end_ns"], span["root_pid"], span["root_start"],
                                   f'{span["root_pid"]}:{span["root_start"]}', scenario["name"]))
        self.spans.sort()

    def owner(self, event):
        ts = event.get("ts_ns")
        if ts is None or "pid" not in event:
            return None
        key = (event.get("pid"), event.get("start_time_ns"))
        ancestors = event.get("ctx_ancestor_keys") or ()
        for start, end, pid, root_start, text, name in self.spans:
            if start <= ts <= end and (key == (pid, root_start) or text in ancestors):
                return name
        return None


# ------------------------------------------------------------------ recording

class ReverseShellListener(threading.Thread):
    """The attacker's end of the reverse-shell scenarios, on loopback: each
    connection gets `id`, an echo and `exit`, and is read until it closes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(8)
        self.server.settimeout(0.5)
        self.stopping = threading.Event()
        self.sessions = []

    def run(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                received = b""
                try:
                    time.sleep(0.3)
                    conn.sendall(b"id\necho hf-corpus-done\nexit\n")
                    while b"hf-corpus-done" not in received:
                        data = conn.recv(4096)
                        if not data:
                            break
                        received += data
                    time.sleep(0.2)
                except OSError:
                    pass
                self.sessions.append(received)
        self.server.close()


def serve_dir(top):
    srv = os.path.join(top, "srv")
    os.makedirs(srv)
    with open(os.path.join(srv, "payload.sh"), "w") as f:
        f.write(scenario_defs.PAYLOAD)
    with open(os.path.join(srv, "implant.sh"), "w") as f:
        f.write(scenario_defs.IMPLANT)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hostflow corpus: a harmless archive\n"
        info = tarfile.TarInfo("data/README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with open(os.path.join(srv, "data.tar.gz"), "wb") as f:
        f.write(buf.getvalue())
    return srv


def closed_port_base():
    """The first of 64 consecutive loopback ports none of which listens."""
    for base in range(47000, 60000, 64):
        busy = False
        for port in range(base, base + 64):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    busy = True
                    break
        if not busy:
            return base
    raise Failed("no 64 free consecutive loopback ports")


def wait_ready(agent, api_port, log):
    deadline = time.time() + 120
    while time.time() < deadline:
        if agent.poll() is not None:
            raise Failed(f"the agent exited {agent.returncode} while starting; log {log}:\n" + tail(log))
        try:
            report = json.load(urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=5))
            kernel = report.get("components", {}).get("kernel", {})
            if kernel.get("state") in ("failed", "stopped"):
                raise Failed(f"the kernel source is {kernel.get('state')}: {kernel}")
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5).read().decode()
            sent = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("hostflow_component_sent_events_total{")
                       and 'component="kernel"' in line)
            if kernel.get("state") in ("running", "degraded") and sent > 0:
                if kernel.get("state") != "running":
                    print(f"note: kernel source {kernel.get('state')}: {kernel.get('reason')}")
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise Failed("the agent did not become ready within 120 s:\n" + tail(log))


def tail(path, lines=30):
    try:
        return "".join(open(path, errors="replace").readlines()[-lines:])
    except OSError:
        return ""


def run_scenario(scenario, top, env_base, log):
    name = scenario["name"]
    work = os.path.join(top, name)
    home = os.path.join(work, "home")
    os.makedirs(home)
    for rel, content in scenario.get("files", {}).items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    script = os.path.join(work, "run.sh")
    with open(script, "w") as f:
        f.write(scenario_defs.HEADER + scenario["script"])
    env = dict(env_base, W=work, HOME=home)
    # The runner: a /bin/sh that writes its audit loginuid (the kernel gives
    # it a new audit session: its own lineage) and execs bash on the script.
    runner = ["/bin/sh", "-c", 'echo 0 > /proc/self/loginuid; exec /bin/bash "$0"', script]
    start_ns = boot_ns()
    out = open(os.path.join(top, f"{name}.out"), "w")
    process = subprocess.Popen(runner, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, process_group=0)
    root_pid, root_start = process_key(process.pid)
    try:
        code = process.wait(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if code is None:
        process.wait()
    time.sleep(0.2)
    end_ns = boot_ns()
    out.close()
    return dict(start_ns=start_ns, end_ns=end_ns, root_pid=root_pid, root_start=root_start), code


def record(hostflow, keep):
    if os.geteuid() != 0:
        raise Failed("recording needs root (eBPF programs); `record.py --check` verifies without")
    top = tempfile.mkdtemp(prefix="hf-corpus-", dir="/tmp")
    os.chmod(top, 0o755)
    raw = os.path.join(top, "raw-spool")
    log = os.path.join(top, "agent.log")
    children = []
    listener = None
    started = time.time()
    try:
        api_port, http_port, lport = free_port(), free_port(), free_port()
        srv = serve_dir(top)
        children.append(subprocess.Popen([PY, "-m", "http.server", str(http_port), "--bind", "127.0.0.1",
                                          "--directory", srv], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        listener = ReverseShellListener(lport)
        listener.start()
        config = os.path.join(top, "record.toml")
        with open(config, "w") as f:
            f.write(f"""
[api]
address = "127.0.0.1:{api_port}"

# The default topology's ebpf source (file selection, exec_env, programs).
[sources.kernel]
{kernel_section()}

[transforms.enrich]
type = "enrich"
inputs = ["kernel"]

[sinks.spool]
type = "arrow_spool"
inputs = ["enrich"]
path = {json.dumps(raw)}
max_file_age_secs = 86400
""")
        agent = subprocess.Popen([hostflow, "run", "--config", config], cwd=top, env=agent_env(),
                                 stdout=open(log, "w"), stderr=subprocess.STDOUT)
        children.append(agent)
        wait_ready(agent, api_port, log)
        time.sleep(1.0)  # the snapshot is the source's first batch; let enrich take it in
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", http_port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)

        env_base = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8", "TERM": "dumb", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
            "PORT": str(http_port), "LPORT": str(lport), "XPORT": str(free_port()),
            "XPORT2": str(free_port()), "SCANBASE": str(closed_port_base()), "PY": PY, "ACT": ACTIONS,
        }
        spans = {}
        for scenario in scenario_defs.SCENARIOS:
            t0 = time.time()
            span, code = run_scenario(scenario, top, env_base, log)
            spans[scenario["name"]] = span
            print(f"  {scenario['name']:<26} exit {code}  {time.time() - t0:5.1f} s  "
                  f"root {span['root_pid']}:{span['root_start']}", flush=True)
            if agent.poll() is not None:
                raise Failed(f"the agent exited {agent.returncode} during {scenario['name']}:\n" + tail(log))
            time.sleep(0.3)
        time.sleep(1.0)  # the last events through the ring, enrich and the sink
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise Failed("the agent did not stop within 60 s of SIGTERM")
        if code != 0:
            raise Failed(f"the agent exited {code}:\n" + tail(log))
        record_s = time.time() - started
        shells = sum(1 for s in listener.sessions if b"uid=" in s)
        print(f"the reverse-shell listener got {len(listener.sessions)} connections, {shells} ran `id`")

        # Dump, filter, add the synthetic cases, write the corpus spool.
        dump = os.path.join(top, "raw.ndjson")
        replay_to_file(hostflow, raw, dump, top, "dump")
        events = read_ndjson(dump)
        labels = make_labels(spans)
        membership = Spans(labels)
        kept, counts = [], {}
        for event in events:
            name = membership.owner(event)
            if name is not None:
                kept.append(sanitize(event, labels))
                counts[name] = counts.get(name, 0) + 1
        print(f"recorded {len(events)} events in {record_s:.0f} s; {len(kept)} belong to the scenarios "
              f"({len(events) - len(kept)} host background events dropped)")
        synthetic_events, synthetic_labels = synthetic.build(kept)
        labels["scenarios"].extend(synthetic_labels)
        corpus_ndjson = os.path.join(top, "corpus.ndjson")
        with open(corpus_ndjson, "w") as f:
            for event in kept + synthetic_events:
                f.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        write_spool(hostflow, corpus_ndjson, top)
        labels["recorded"]["events"] = len(kept) + len(synthetic_events)
        with open(LABELS, "w") as f:
            json.dump(labels, f, indent=2)
            f.write("\n")
        print(f"wrote {SPOOL} ({spool_bytes() / 1e6:.2f} MB) and {LABELS}")
    finally:
        if listener is not None:
            listener.stopping.set()
        for child in children:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        if keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


def sanitize(event, labels):
    """The ancestors above a scenario's runner are this host's (the shell
    and harness record.py ran under): their keys and executables stay, so
    lineages stay what the kernel saw, but their command lines are replaced
    by the executable, so nothing of the recording host's invocation is
    committed."""
    keys = event.get("ctx_ancestor_keys")
    if not keys:
        return event
    roots = {f'{s["root_pid"]}:{s["root_start"]}' for sc in labels["scenarios"] for s in sc["spans"]}
    own = f'{event.get("pid")}:{event.get("start_time_ns")}'
    above = 0 if own in roots else next((i + 1 for i, k in enumerate(keys) if k in roots), len(keys))
    exes, args = event.get("ctx_ancestor_exes") or [], event.get("ctx_ancestor_args") or []
    for i in range(above, min(len(args), len(exes))):
        args[i] = exes[i]
    return event


def make_labels(spans):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    scenarios = []
    for scenario in scenario_defs.SCENARIOS:
        scenarios.append({
            "name": scenario["name"],
            "description": scenario["description"],
            "malicious": scenario["malicious"],
            "synthetic": False,
            "expect": list(scenario.get("expect", [])),
            "allow": list(scenario.get("allow", [])),
            "spans": [spans[scenario["name"]]],
        })
    return {
        "format": 1,
        "recorded": {
            "kernel": os.uname().release,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "agent_commit": commit,
            "events": 0,
        },
        "scenarios": scenarios,
    }


def replay_to_file(hostflow, spool, out, work, name, detect=False):
    """`hostflow replay` of `spool` into one NDJSON file (through detect
    with rules/linux when `detect`)."""
    config = os.path.join(work, f"{name}.toml")
    stages = ""
    inputs = "replay"
    if detect:
        stages = f"""
[transforms.detect]
type = "detect"
inputs = ["replay"]
rules = {json.dumps(RULES)}
watch = false
"""
        inputs = "detect"
    with open(config, "w") as f:
        f.write(f"""
[api]
enabled = false
{stages}
[sinks.out]
type = "file"
inputs = [{json.dumps(inputs)}]
path = {json.dumps(out)}
append = false
""")
    run([hostflow, "replay", "--spool", spool, "-c", config], f"hostflow replay ({name})")


def write_spool(hostflow, ndjson, work):
    """The corpus NDJSON → testbed/corpus/spool/ through the agent's own
    arrow_spool sink (a replay source with format = "ndjson")."""
    shutil.rmtree(SPOOL, ignore_errors=True)
    config = os.path.join(work, "write.toml")
    with open(config, "w") as f:
        f.write(f"""
[api]
enabled = false

[sources.corpus]
type = "replay"
format = "ndjson"
path = {json.dumps(ndjson)}

[sinks.spool]
type = "arrow_spool"
inputs = ["corpus"]
path = {json.dumps(SPOOL)}
max_file_age_secs = 86400
max_file_bytes = 1073741824
retention_max_age_secs = 3153600000
""")
    run([hostflow, "run", "--config", config], "hostflow run (writing the corpus spool)")


def spool_bytes():
    total = 0
    for dirpath, _, files in os.walk(SPOOL):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


# ------------------------------------------------------------------ verification

def verify(hostflow):
    with open(LABELS) as f:
        labels = json.load(f)
    work = tempfile.mkdtemp(prefix="hf-corpus-check-")
    try:
        out = os.path.join(work, "detect.ndjson")
        t0 = time.time()
        replay_to_file(hostflow, SPOOL, out, work, "check", detect=True)
        replay_s = time.time() - t0
        records = read_ndjson(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    membership = Spans(labels)
    owner_of, events_per = {}, {}
    detections = []
    for record in records:
        if record.get("kind") == "detection":
            detections.append(record)
            continue
        name = membership.owner(record)
        owner_of[record["event_id"]] = name
        events_per[name] = events_per.get(name, 0) + 1
    fired = {}
    unattributed = {}
    for d in detections:
        owners = {owner_of.get(i) for i in d.get("event_ids", [])} - {None}
        if not owners:
            unattributed[d["rule_id"]] = unattributed.get(d["rule_id"], 0) + 1
        for name in owners:
            fired.setdefault(name, {}).setdefault(d["rule_id"], 0)
            fired[name][d["rule_id"]] += 1
    total = sum(events_per.values())
    problems, false_alerts = [], []
    rows = []
    for s in labels["scenarios"]:
        got = fired.get(s["name"], {})
        missing = [r for r in s["expect"] if r not in got]
        extra = sorted(r for r in got if r not in s["expect"] and r not in s["allow"])
        if missing:
            problems.append(f"{s['name']}: expected {missing} did not fire")
        if extra:
            false_alerts.append(f"{s['name']}: {extra}")
        if events_per.get(s["name"], 0) == 0:
            problems.append(f"{s['name']}: no events in the corpus")
        status = "MISSING " + ",".join(missing) if missing else ("ok" if not extra else "false alert")
        rows.append((s["name"], "malicious" if s["malicious"] else "benign",
                     "synthetic" if s["synthetic"] else "recorded", events_per.get(s["name"], 0),
                     ", ".join(f"{r.removeprefix('hf-linux-')}×{n}" for r, n in sorted(got.items())) or "-",
                     status))
    widths = [max(len(str(r[i])) for r in rows + [("scenario", "label", "source", "events", "fired", "status")])
              for i in range(6)]
    header = ("scenario", "label", "source", "events", "rules fired (×detections)", "status")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print(f"{total} events ({events_per.get(None, 0)} outside every scenario), {len(detections)} detections, "
          f"spool {spool_bytes() / 1e6:.2f} MB, replayed through rules/linux in {replay_s:.1f} s")
    if unattributed:
        print(f"detections resting on no scenario's events: {unattributed}")
    if false_alerts:
        print("false alerts (rules outside expect + allow; eval reports them):")
        for line in false_alerts:
            print(f"  {line}")
    else:
        print("no false alerts: nothing outside expect + allow fired")
    if events_per.get(None, 0):
        problems.append(f"{events_per[None]} events belong to no scenario")
    if labels["recorded"]["events"] != total:
        problems.append(f"labels.json says {labels['recorded']['events']} events, the spool holds {total}")
    if problems:
        raise Failed("the corpus does not hold its labels:\n  " + "\n  ".join(problems))
    print("ok: every malicious scenario's expected rules fire")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed corpus")
    parser.add_argument("--keep", action="store_true", help="keep the temporary recording directory")
    args = parser.parse_args()
    try:
        hostflow = binary()
        if not args.check:
            t0 = time.time()
            record(hostflow, args.keep)
            print(f"recording took {time.time() - t0:.0f} s")
        verify(hostflow)
    except Failed as error:
        print(f"FAILED: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
