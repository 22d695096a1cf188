#!/usr/bin/env python3
"""Process context on real kernel events (issue #14), read back by
independent readers: the NDJSON file sink (json), the Arrow spool (pyarrow)
and a Kafka topic (confluent-kafka on a real tansu broker, decoded with
protoc-compiled Python classes of schemas/proto).

One agent run (ebpf -> enrich -> file + spool + kafka), as root:

1. Lineage from the first second: a bash started *before* the agent (known
   only from the start-up snapshot) runs a 6-deep chain of bash processes
   ending in a python connect to a loopback port. The connect carries every
   ancestor, nearest first (chain 0..5, the early bash, this checker, …,
   PID 1), with exe paths and `complete` lineage; the agent's
   `hostflow_enrich_lineage_missing_total` does not grow while the
   scenario runs (a process exiting during the start-up snapshot can be an
   honest miss, so the count starts after it).
2. Containers: a process moved into a cgroup named like a docker scope
   (`…/docker-<64 hex>.scope`) before it execs gets that container id and
   runtime `docker`; others are `host`.
3. PID reuse: a process gets exactly the pid of one that exited before
   (via /proc/sys/kernel/ns_last_pid); its events never carry the old
   process's exe.
4. Scrubbing: `python3 -c 'import time; time.sleep(3)' --password=Hunter2
   -pHunter2 TOKEN=Hunter2`, one started before the agent (snapshot) and
   one after (exec): no reader finds `Hunter2` anywhere; the flag names
   are there.

Exit 0: passed. Exit 77: skipped (not root, or no Kafka tools). Anything
else: failed.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import (Tansu, agent_env, compile_protos, consume, fail, free_port, hostflow_bin,  # noqa: E402
                      register, require_kafka_tools, skip, wait_exit)

SECRET = "Hunter2"
CONTAINER_ID = "c0ffee" + "0123456789abcdef" * 3 + "0123456789"


def cgroup2_mount():
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on a hybrid host like this VM)."""
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "cgroup2":
            return fields[4]
    return None

DEPTH = 6

if os.geteuid() != 0:
    skip("needs root: eBPF programs and cgroup moves")
try:
    import pyarrow.ipc
except ImportError:
    skip("python package pyarrow is not installed (pip install pyarrow)")
TANSU = require_kafka_tools()

CHAIN = """#!/bin/bash
# chain.sh N PORT PIDS: a child bash per level, then a python connect.
echo "$1 $$" >> "$3"
if [ "$1" -gt 0 ]; then
  bash "$0" $(( $1 - 1 )) "$2" "$3"
else
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$2"
fi
"""


def listener():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def accept():
        while True:
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def wait_until(what, predicate, timeout, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"timed out waiting for {what}", log)


def connects_to(events, port):
    return [e for e in events if e["kind"] == "net_connect" and e.get("dst_port") == port]


def main():
    work = tempfile.mkdtemp(prefix="hostflow-context-")
    compile_protos(work)
    import security_pb2

    log = os.path.join(work, "agent.log")
    ndjson = os.path.join(work, "events.ndjson")
    spool = os.path.join(work, "spool")
    api_port, kafka_port = free_port(), free_port()
    broker = Tansu(TANSU, work, kafka_port)
    broker.start()
    broker.create_topic("sec.v1", 1)
    chain = os.path.join(work, "chain.sh")
    with open(chain, "w") as f:
        f.write(CHAIN)
    pids_file = os.path.join(work, "chain.pids")
    server, port = listener()

    # Before the agent: the bash the chain will start from, and a process
    # with secrets in its arguments (seen only by the start-up snapshot).
    early = register(subprocess.Popen(["bash", "-c", "while read -r line; do eval \"$line\"; done"],
                                      stdin=subprocess.PIPE, text=True))
    early_secret = register(subprocess.Popen(
        ["python3", "-c", "import time; time.sleep(60)", f"--password={SECRET}", f"-p{SECRET}", f"TOKEN={SECRET}"]))

    config = os.path.join(work, "topology.toml")
    with open(config, "w") as f:
        f.write(f"""
[api]
address = "127.0.0.1:{api_port}"

[sources.kernel]
type = "ebpf"
programs = ["exec", "exit", "fork", "connect"]
connect_hook = "tracepoint"

[transforms.enrich]
type = "enrich"
inputs = ["kernel"]

[sinks.file]
type = "file"
inputs = ["enrich"]
path = "{ndjson}"

[sinks.spool]
type = "arrow_spool"
inputs = ["enrich"]
path = "{spool}"

[sinks.kafka]
type = "kafka"
inputs = ["enrich"]
brokers = ["127.0.0.1:{kafka_port}"]
topic = "sec.v1"
entity_guid = "context-check"
""")
    agent = register(subprocess.Popen([hostflow_bin(), "run", "--config", config], cwd=work, env=agent_env(),
                                      stdout=open(log, "w"), stderr=subprocess.STDOUT))

    def ready():
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=5))
        state = health.get("components", {}).get("kernel", {}).get("state")
        if state not in (None, "starting", "running"):
            fail(f"the kernel source is {state}: {health}", log)
        return state == "running" and (metric(api_port, "hostflow_component_sent_events_total") or 0) > 0

    wait_until("the agent's kernel source", ready, 90, log)
    time.sleep(1.5)  # the snapshot is the source's first batch; give enrich a moment
    # A process that exits while the snapshot reads /proc is in neither the
    # snapshot nor (its fork predating the programs) the ring: its exit is
    # an honest miss. Only misses from here on count against the scenario.
    missing_at_start = metric(api_port, "hostflow_enrich_lineage_missing_total") or 0

    # 1. The chain from the early bash.
    early.stdin.write(f"bash {chain} {DEPTH - 1} {port} {pids_file}\n")
    early.stdin.flush()
    wait_until("the chain", lambda: os.path.exists(pids_file) and len(open(pids_file).read().split("\n")) > DEPTH,
               30, log)

    # 2. A process moved into a docker-like scope before it execs.
    cgroup_root = cgroup2_mount()
    if cgroup_root is None:
        fail("no cgroup2 hierarchy is mounted (the kernel's cgroup ids are v2 ids)")
    parent_dir = os.path.join(cgroup_root, "hostflow-check")
    scope = os.path.join(parent_dir, f"docker-{CONTAINER_ID}.scope")
    try:
        os.makedirs(scope, exist_ok=True)
    except OSError as error:
        fail(f"cannot create a test cgroup under {cgroup_root}: {error}")
    contained = subprocess.run(
        ["sh", "-c", f"echo $$ > {scope}/cgroup.procs && exec python3 -c "
                     f"'import socket; socket.create_connection((\"127.0.0.1\", {port})).close()'"],
        capture_output=True, text=True)
    if contained.returncode != 0:
        fail(f"the contained process failed: {contained.stderr}")

    # 3. PID reuse: B gets the pid A had.
    reuse = None
    for _ in range(20):
        first = subprocess.Popen(["sleep", "0.05"])
        first.wait()
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(first.pid - 1))
        second = subprocess.Popen(["python3", "-c",
                                   f"import socket; socket.create_connection(('127.0.0.1', {port})).close()"])
        second.wait()
        if second.pid == first.pid:
            reuse = first.pid
            break
    if reuse is None:
        fail("could not get a pid reused in 20 tries (the host is forking too much)")

    # 4. Secrets in a process started now.
    subprocess.run(["python3", "-c", "import time; time.sleep(3)", f"--password={SECRET}", f"-p{SECRET}",
                    f"TOKEN={SECRET}"], check=True)

    time.sleep(1.5)
    missing = (metric(api_port, "hostflow_enrich_lineage_missing_total") or 0) - missing_at_start
    agent.send_signal(signal.SIGTERM)
    code = wait_exit(agent, 60, log)
    if code != 0:
        fail(f"agent exited {code}", log)
    for process in (early, early_secret):
        process.kill()
    server.close()
    for path in (scope, parent_dir):
        try:
            os.rmdir(path)
        except OSError:
            pass

    events = [json.loads(line) for line in open(ndjson)]
    by_pid = {}
    for e in events:
        by_pid.setdefault(e.get("pid"), []).append(e)
    unenriched = [e for e in events if "has_context" not in e and e["kind"] in (
        "process_exec", "process_exit", "process_fork", "net_connect", "process_snapshot")]
    if unenriched:
        fail(f"{len(unenriched)} process events left enrich without a context, e.g. {unenriched[0]}")

    # 1. Ancestry.
    chain_pids = {}
    for line in open(pids_file).read().split("\n"):
        if line:
            level, pid = line.split()
            chain_pids[int(level)] = int(pid)
    chain_connects = [e for e in connects_to(events, port) if e["ctx_ancestor_keys"]
                      and int(e["ctx_ancestor_keys"][0].split(":")[0]) == chain_pids[0]]
    if len(chain_connects) != 1:
        fail(f"expected one connect from the chain's end, got {len(chain_connects)}")
    connect = chain_connects[0]
    ancestors = [int(key.split(":")[0]) for key in connect["ctx_ancestor_keys"]]
    expected = [chain_pids[level] for level in range(DEPTH)] + [early.pid, os.getpid()]
    if ancestors[:len(expected)] != expected or ancestors[-1] != 1:
        fail(f"ancestors {ancestors}, expected {expected} … 1")
    if connect["ctx_lineage"] != "complete" or connect["ctx_origin"] != "exec":
        fail(f"lineage {connect['ctx_lineage']}, origin {connect['ctx_origin']}")
    exes = connect["ctx_ancestor_exes"]
    try:
        os.readlink("/proc/1/exe")
        init_exe_known = True
    except OSError:  # some sandboxes refuse PID 1's exe link even to root
        init_exe_known = False
    if not all(exes[:-1]) or (init_exe_known and not exes[-1]) or not all(exe.endswith("/bash") for exe in exes[:DEPTH + 1]) \
            or not exes[DEPTH + 1].split("/")[-1].startswith("python"):
        fail(f"ancestor exes {exes}")
    if not connect["ctx_exe"].split("/")[-1].startswith("python") or connect["ctx_user"] != "root":
        fail(f"the connect's own context: exe {connect['ctx_exe']!r}, user {connect['ctx_user']!r}")
    if f"bash {chain} 0 {port}" not in connect["ctx_ancestor_args"][0]:
        fail(f"the parent's argv head {connect['ctx_ancestor_args'][0]!r}")
    if missing != 0:
        fail(f"hostflow_enrich_lineage_missing_total grew by {missing} during the scenario, expected 0 "
             f"({missing_at_start} at start)")

    # 2. Container.
    docker = [e for e in connects_to(events, port) if e["ctx_container_runtime"] == "docker"]
    if len(docker) != 1 or docker[0]["ctx_container_id"] != CONTAINER_ID \
            or not docker[0]["ctx_cgroup_path"].endswith(f"/docker-{CONTAINER_ID}.scope"):
        fail(f"the contained connect: {docker}")
    if connect["ctx_container_runtime"] != "host" or connect["ctx_container_id"] != "":
        fail(f"the chain's connect is not on the host: {connect['ctx_container_runtime']}")

    # 3. PID reuse.
    reused = [e for e in by_pid.get(reuse, []) if e["kind"] == "net_connect" and e["dst_port"] == port]
    sleeps = [e for e in by_pid.get(reuse, []) if e["kind"] == "process_exec" and e["exe"].endswith("/sleep")]
    if len(reused) != 1 or not sleeps:
        fail(f"pid {reuse}: {len(sleeps)} sleep execs and {len(reused)} connects")
    if reused[0]["start_time_ns"] == sleeps[0]["start_time_ns"] or reused[0]["ctx_exe"].endswith("/sleep") \
            or not reused[0]["ctx_exe"].split("/")[-1].startswith("python"):
        fail(f"the reused pid's connect has the old process's context: {reused[0]['ctx_exe']!r}")

    # 4. Scrubbing, in every reader.
    raw = open(ndjson).read()
    if SECRET in raw:
        fail(f"NDJSON holds {SECRET}: " + next(l for l in raw.splitlines() if SECRET in l)[:400])
    scrubbed = [e for e in events if e["kind"] in ("process_exec", "process_snapshot")
                and any(arg.startswith("--password=") for arg in e["argv"])]
    kinds = {e["kind"] for e in scrubbed}
    if kinds != {"process_exec", "process_snapshot"}:
        fail(f"expected the flag names in an exec and a snapshot, got {kinds}")
    for e in scrubbed:
        if not any(arg.startswith("TOKEN=") for arg in e["argv"]) or not any(a.startswith("-p") for a in e["argv"]):
            fail(f"flag names lost: {e['argv']}")
    rows = 0
    for kind in os.listdir(spool):
        for name in os.listdir(os.path.join(spool, kind)):
            if name.endswith(".arrow"):
                table = pyarrow.ipc.open_file(os.path.join(spool, kind, name)).read_all()
                rows += table.num_rows
                if SECRET in json.dumps(table.to_pylist(), default=str):
                    fail(f"the spool's {kind}/{name} holds {SECRET}")
    if rows != len(events):
        fail(f"the spool holds {rows} rows, the NDJSON file {len(events)}")
    messages = consume(kafka_port, "sec.v1", len(events), quiet_secs=2)
    secure = 0
    for message in messages:
        if SECRET.encode() in message.value():
            fail(f"a Kafka message holds {SECRET}")
        decoded = security_pb2.SecurityEvent()
        decoded.ParseFromString(message.value())
        if decoded.HasField("context") and any(a.startswith("--password=") for a in decoded.context.ctx_argv):
            secure += 1
    if secure < 2:
        fail(f"expected the scrubbed --password= flag in Kafka contexts, found {secure}")
    broker.stop()
    print(f"ok: lineage misses {int(missing)} during the scenario ({int(missing_at_start)} at start-up); "
          f"{len(events)} events; the chain's connect has {len(ancestors)} ancestors ({connect['ctx_lineage']}); "
          f"container {CONTAINER_ID[:12]}…; pid {reuse} reused without inheriting; no {SECRET} in "
          f"NDJSON, {rows} spool rows or {len(messages)} Kafka messages")


if __name__ == "__main__":
    main()
