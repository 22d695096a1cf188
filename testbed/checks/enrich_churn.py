#!/usr/bin/env python3
"""Process-table churn (issue #14): a million process events, most of them
forks of new short-lived processes, through `enrich` with a 10 000-entry
table. The table never holds more than its bound, evictions are counted by
reason, and the agent's RSS stays flat once the table is full.

The events come from the generator (a fork-heavy mix, every fork a new
child key) rather than a million real execs, which would take this VM
minutes; the table cannot tell the difference, and the real-kernel paths
are covered by testbed/checks/process_context.py.

Exit 0: passed. Anything else: failed.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import agent_env, fail, free_port, hostflow_bin, register, wait_exit  # noqa: E402

EVENTS = 1_000_000
CAPACITY = 10_000
RATE = 150_000  # events/s: about 7 s, long enough to watch the RSS


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("hostflow_enrich_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    work = tempfile.mkdtemp(prefix="hostflow-churn-")
    log = os.path.join(work, "agent.log")
    port = free_port()
    config = os.path.join(work, "topology.toml")
    with open(config, "w") as f:
        f.write(f"""
[api]
address = "127.0.0.1:{port}"

[sources.gen]
type = "generator"
count = {EVENTS}
rate = {RATE}
seed = 14
mix = {{ process_fork = 6, process_exec = 1, process_exit = 1, net_connect = 2 }}

[transforms.enrich]
type = "enrich"
inputs = ["gen"]
capacity = {CAPACITY}

[sinks.out]
type = "blackhole"
inputs = ["enrich"]
""")
    report = os.path.join(work, "report.json")
    agent = register(subprocess.Popen([hostflow_bin(), "run", "--config", config, "--report", report], cwd=work,
                                      env=agent_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT))
    samples, peak_entries, seen = [], 0, {}
    while agent.poll() is None:
        time.sleep(0.25)
        try:
            seen = metrics(port) or seen
            samples.append(rss_kib(agent.pid))
        except (OSError, ValueError):
            continue
        entries = sum(v for k, v in seen.items() if k.startswith("hostflow_enrich_table_entries"))
        peak_entries = max(peak_entries, entries)
    code = wait_exit(agent, 60, log)
    if code != 0:
        fail(f"agent exited {code}", log)
    import json
    sent = json.load(open(report))["components"]["enrich"]["sent"]
    if sent != EVENTS:
        fail(f"enrich passed on {sent} of {EVENTS} events", log)
    if not seen:
        fail("no hostflow_enrich_ metrics were scraped", log)
    if peak_entries > CAPACITY or peak_entries < CAPACITY * 0.9:
        fail(f"table entries peaked at {peak_entries}, bound {CAPACITY}: {seen}")
    evicted = sum(v for k, v in seen.items() if k.startswith("hostflow_enrich_evictions_total") and "capacity" in k)
    if evicted < EVENTS * 0.2:
        fail(f"only {evicted} capacity evictions counted for a fork-heavy million: {seen}")
    if len(samples) < 8:
        fail(f"only {len(samples)} RSS samples; the run was too short to judge")
    # Flat: the last third's peak within 10 % (or 2 MiB) of the middle third's.
    third = len(samples) // 3
    middle, last = max(samples[third:2 * third]), max(samples[2 * third:])
    if last > max(middle * 1.10, middle + 2048):
        fail(f"RSS grew from {middle} KiB to {last} KiB after the table was full: {samples}")
    print(f"ok: {EVENTS} events, table peak {int(peak_entries)} of {CAPACITY}, {int(evicted)} capacity evictions, "
          f"RSS {samples[0]} -> {middle} -> {last} KiB ({len(samples)} samples)")


if __name__ == "__main__":
    main()
