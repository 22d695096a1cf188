#!/usr/bin/env python3
"""eBPF storms (issue #7, Performance): what the `ebpf` source costs the host
and whether it keeps up, measured on the whole process in one run.

    sudo HOSTFLOW_BIN=target/release/hostflow testbed/bench/ebpf_storm.py \
        [--reps 5] [--storms exec,exec:2,tcp,tcp@100000,udp,udp:2] [--no-wakeup-variant] [--no-bpf-stats]

Storms (`testbed/bench/storm.c`, compiled here with `cc -O2`), each written
MODE[:WORKERS][@RATE][=OPS]:
  exec        fork + execve /bin/true + wait (a fork, an exec and an exit
              event per op; programs exec, exit, fork);
  tcp         TCP connect to a closed loopback port, ECONNREFUSED (one
              connect event per op; program connect);
  tcp-listen  TCP connect to a listening loopback port;
  udp         connect() on a UDP socket (no packet: the cheapest connect,
              to push the event rate to where the agent saturates);
  open        open + close of /usr/bin/true, a path outside the file
              selection: no event, the cost of filtering in the kernel.
  With --all-programs the agent attaches its default program set (every
  program, as the embedded default topology does) instead of only the
  storm's, so the figure is what a host pays with everything on.
  WORKERS processes share the ops (default 1); RATE paces the whole storm
  at that many ops/s (default: as fast as it goes), e.g. `tcp@100000` holds
  the agent at the budget's 100 k events/s.

For each storm and each repetition, in rotating order so drift hits every
variant alike:
  detached   the storm alone;
  attached   `hostflow run`: ebpf source (the storm's programs, default ring
             buffer and wake-up) -> blackhole; the storm starts once /health
             says the source is running with its programs attached (a
             degraded source, e.g. the /proc fallback, stops the run);
  wake0      the same with `wakeup_threshold_bytes = 0` (the programs wake
             the reader on every record), to show what batched wake-ups save.
Attached runs read /metrics over one kept-alive connection (a new
connection per scrape would itself be a connect event): the kernel's
per-program counts (`hostflow_ebpf_events_total`,
`hostflow_ebpf_ringbuf_lost_events_total`), what the blackhole received,
and the agent's CPU time (its threads' schedstat), before and after the
storm (after waiting for a drain and a counter export). Then
  - loss rate = lost / (submitted + lost);
  - exactness: delivered == submitted, both before and after the storm,
    each at a moment with nothing in flight (other processes on the host
    add events too, so the script waits for such a moment, up to a few
    seconds), and on shutdown the run report's source sent == sink
    received with nothing discarded;
  - agent CPU per 100 k events, and as % of one core during the storm,
    counted from the storm's start to one drain interval after its end,
    less what the agent spends idle (measured in the second before);
  - slowdown = median detached ops/s / median attached ops/s, and the
    storm's own CPU time attached / detached (the in-kernel cost of the
    programs is charged to the storm; for a paced storm this ratio is the
    only cost figure, its wall time being fixed).
Unless --no-bpf-stats, one extra attached run per storm enables
kernel.bpf_stats_enabled and reads the run time of each of the agent's
programs (ids from its fds, figures from bpftool): the in-kernel cost,
charged to the storm, behind the slowdown. The stats add two clock reads
per program run, so that run's timing is left out of the summary.

Needs root (loading eBPF). Runs itself, the storms and the agent at nice -20
(unless --no-nice) so that other work on a shared host disturbs them less.
Prints one block per run, with how busy the rest of the host was (its CPU
seconds during the storm, approximate: /proc/stat is tick-sampled, the
storm's own CPU exact; and the events other processes made in the second
before it), then a Markdown summary table.
"""

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import agent_env, fail, free_port, hostflow_bin, register, wait_exit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What one op of each mode makes the kernel emit, and the programs it needs.
EVENTS_PER_OP = {"exec": 3, "tcp": 1, "tcp-listen": 1, "udp": 1, "open": 0}
PROGRAMS = {"exec": ["exec", "exit", "fork"], "tcp": ["connect"], "tcp-listen": ["connect"], "udp": ["connect"],
            "open": ["file_open"]}
# Enough ops for a storm of a few seconds on the 2-core VM (unpaced).
DEFAULT_OPS = {"exec": 4_000, "tcp": 1_000_000, "tcp-listen": 300_000, "udp": 5_000_000, "open": 3_000_000}
# The reader's counter export period (sources/src/ebpf/reader.rs).
COUNTER_INTERVAL_S = 1.0
DRAIN_INTERVAL_MS = 100  # the source's default drain_interval_ms

TOPOLOGY = """
[api]
address = "127.0.0.1:{api_port}"

[sources.ebpf]
type = "ebpf"
{programs}
drain_interval_ms = {drain_ms}
{extra}

[sinks.sink]
type = "blackhole"
inputs = ["ebpf"]
"""


class Storm:
    """One storm spec: MODE[:WORKERS][@RATE][=OPS]."""

    def __init__(self, spec):
        match = re.fullmatch(r"([a-z-]+)(?::(\d+))?(?:@(\d+))?(?:=(\d+))?", spec)
        if not match or match.group(1) not in EVENTS_PER_OP:
            fail(f"bad storm `{spec}`: MODE[:WORKERS][@RATE][=OPS], MODE one of {', '.join(EVENTS_PER_OP)}")
        self.spec, self.mode = spec, match.group(1)
        self.workers = int(match.group(2) or 1)
        self.rate = int(match.group(3) or 0)
        default_ops = DEFAULT_OPS[self.mode] if not self.rate else self.rate * 5  # paced: 5 s
        self.ops = int(match.group(4) or default_ops)
        self.programs = PROGRAMS[self.mode]

    @property
    def events(self):
        return self.ops * EVENTS_PER_OP[self.mode]


class Api:
    """/metrics and /health over one kept-alive HTTP connection."""

    def __init__(self, port):
        self.port, self.conn = port, None

    def get(self, path):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                return response.status, response.read().decode()
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
        return None, ""

    def metrics(self):
        status, text = self.get("/metrics")
        return parse_metrics(text) if status == 200 else None

    def health(self):
        status, text = self.get("/health")
        return json.loads(text) if status == 200 else None

    def close(self):
        if self.conn:
            self.conn.close()


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels)): value}."""
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def total(samples, name, **labels):
    """Sum of the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and want <= l)


def counts(samples, programs):
    """(submitted, lost, delivered) as the agent reports them now; `programs`
    None = every program the source reports."""
    if programs is None:
        programs = sorted({dict(l).get("program") for (n, l) in samples
                           if n == "hostflow_ebpf_events_total" and dict(l).get("component") == "ebpf"} - {None})
    submitted = sum(total(samples, "hostflow_ebpf_events_total", component="ebpf", program=p) for p in programs)
    lost = sum(total(samples, "hostflow_ebpf_ringbuf_lost_events_total", component="ebpf", program=p)
               for p in programs)
    delivered = total(samples, "hostflow_component_received_events_total", component="sink")
    return int(submitted), int(lost), int(delivered)


class CpuSample(dict):
    """Per-thread CPU time (ns, from schedstat) at one moment. Subtracting
    two samples gives seconds spent in between by the threads alive at the
    later one: a thread that exited in between (tokio's blocking-pool
    thread that loaded the programs exits 10 s after its last use, which
    with every program attached falls inside a storm) takes only its
    in-between time with it, not everything it ever spent."""

    def __sub__(self, earlier):
        return sum(ns - earlier.get(tid, 0) for tid, ns in self.items()) / 1e9


def cpu_seconds(pid):
    """The agent's CPU time so far, per thread (see CpuSample). /proc/PID/stat
    counts in 10 ms ticks, too coarse for an agent that spends tens of
    milliseconds on a whole storm."""
    sample = CpuSample()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                sample[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread exited while listed
    return sample


def host_busy_ticks():
    """All CPUs' non-idle time, to tell how busy the rest of the host was."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]  # minus idle, iowait


def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bpf_prog_ids(pid):
    """The ids of the eBPF programs `pid` holds, from its fds' fdinfo."""
    ids = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
            ids.append(int(info["prog_id"]))
        except (OSError, KeyError, ValueError):
            continue
    return ids


def bpf_progs():
    """Every loaded eBPF program: {id: {name, type, run_time_ns, run_cnt}} (needs bpftool)."""
    if not shutil.which("bpftool"):
        return {}
    listed = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    if listed.returncode != 0:
        return {}
    return {p["id"]: p for p in json.loads(listed.stdout or "[]")}


def foreign_tracers(own_ids=()):
    """hostflow programs (name hf_*) loaded by someone else: another agent or
    the kernel tests. They run on the same tracepoints and would make a
    "detached" storm anything but."""
    return sorted(p.get("name", "?") for i, p in bpf_progs().items()
                  if i not in own_ids and p.get("name", "").startswith("hf_"))


def compile_storm(work):
    binary = os.path.join(work, "storm")
    built = subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", binary, os.path.join(HERE, "storm.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        fail(f"cc -O2 storm.c failed:\n{built.stderr}")
    return binary


def run_storm(binary, storm, port):
    """Runs the storm once; returns its parsed summary line plus the CPU it
    (and every child it waited for) used."""
    before = children_cpu_s()
    done = subprocess.run([binary, storm.mode, str(storm.ops), str(storm.workers), str(port), str(storm.rate)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"storm {storm.spec} failed: {done.stdout}{done.stderr}")
    result = dict(item.split("=", 1) for item in done.stdout.split())
    return {"elapsed": float(result["elapsed_s"]), "ops_per_s": float(result["ops_per_s"]),
            "cpu": children_cpu_s() - before}


class Agent:
    """`hostflow run` with ebpf -> blackhole, ready once its programs are attached."""

    def __init__(self, binary, work, programs, extra, all_programs=False):
        """`programs`: the ones the storm needs (waited for); with
        `all_programs` the source attaches its default set and every
        program's counts are summed."""
        self.api_port = free_port()
        self.work = work
        self.config = os.path.join(work, "topology.toml")
        self.report = os.path.join(work, "report.json")
        self.log = os.path.join(work, "agent.log")
        self.programs = programs
        self.counted = None if all_programs else programs
        line = "" if all_programs else f"programs = {json.dumps(programs)}"
        with open(self.config, "w") as f:
            f.write(TOPOLOGY.format(api_port=self.api_port, programs=line,
                                    drain_ms=DRAIN_INTERVAL_MS, extra=extra))
        if os.path.exists(self.report):
            os.remove(self.report)
        self.process = register(subprocess.Popen(
            [binary, "run", "--config", self.config, "--report", self.report],
            cwd=work, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=agent_env()))
        self.api = Api(self.api_port)
        self.wait_ready()

    def wait_ready(self):
        """The source reports `running` before its programs are loaded; the
        per-program counters exist only once they are attached and read, so
        both are waited for. A degraded source fails the whole run: a storm
        against the /proc fallback, or with a program missing, measures
        something else."""
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                fail(f"hostflow exited with {self.process.returncode} before the storm", self.log)
            health = self.api.health()
            source = (health or {}).get("components", {}).get("ebpf", {})
            if source.get("state") in ("degraded", "failed"):
                fail(f"the ebpf source is {source['state']}, not running on eBPF: {source.get('reason')}", self.log)
            samples = self.api.metrics()
            attached = samples is not None and any(
                n == "hostflow_ebpf_events_total" and ("program", p) in l
                for (n, l) in samples for p in self.programs)
            if source.get("state") == "running" and attached:
                self.wait_quiet()
                # The source also sends events no program submitted: the
                # start-up snapshot of running processes (issue #14) and
                # late exe hashes. Their count so far is the settled gap.
                time.sleep(COUNTER_INTERVAL_S + 0.1)
                snap = self.snapshot()
                self.offset = snap["delivered"] - snap["submitted"]
                return
            time.sleep(0.05)
        fail("the ebpf source did not attach within 30 s", self.log)

    def wait_quiet(self, timeout=30):
        """The storm's programs attach before the last of the others (with
        --all-programs the verifier is still busy for seconds): waits until
        the agent spends under 5 ms of CPU in half a second, so neither the
        idle figure nor the storm carries start-up work."""
        deadline = time.time() + timeout
        before = cpu_seconds(self.process.pid)
        while time.time() < deadline:
            time.sleep(0.5)
            now = cpu_seconds(self.process.pid)
            if now - before < 0.005:
                return
            before = now
        fail("the agent did not settle within 30 s of attaching", self.log)

    def snapshot(self):
        samples = self.api.metrics()
        if samples is None:
            fail("cannot read /metrics", self.log)
        submitted, lost, delivered = counts(samples, self.counted)
        return {"t": time.perf_counter(), "submitted": submitted, "lost": lost, "delivered": delivered,
                "cpu": cpu_seconds(self.process.pid)}

    def settled(self, timeout=8):
        """Waits until nothing is in flight: delivered == submitted (both
        cumulative since attach) at the same scrape, so that differences
        between two such snapshots are exact. After a storm its records are
        all drained within a drain interval and counted at the next export
        (the caller waits that long first), less the events the source
        sends on its own (`self.offset`); the rest of the wait is for
        other processes' events, which arrive at any time. Returns
        (snapshot, exact); when no such moment came, the closest one."""
        deadline = time.time() + timeout
        closest = None
        while True:
            snap = self.snapshot()
            if snap["delivered"] - snap["submitted"] == self.offset:
                return snap, True
            if closest is None or abs(snap["delivered"] - snap["submitted"] - self.offset) < \
                    abs(closest["delivered"] - closest["submitted"] - self.offset):
                closest = snap
            if time.time() > deadline:
                return closest, False
            time.sleep(0.1)

    def stop(self):
        """SIGTERM, then checks the run report: every event the source sent
        reached the sink, none discarded on the way."""
        self.api.close()
        self.process.send_signal(signal.SIGTERM)
        if wait_exit(self.process, 30, self.log) != 0:
            fail("hostflow exited non-zero", self.log)
        report = json.load(open(self.report))["components"]
        sent, received = report["ebpf"]["sent"], report["sink"]["received"]
        discarded = report["ebpf"]["discarded"] or report["sink"]["discarded"]
        if sent != received or discarded:
            fail(f"run report: source sent {sent}, sink received {received}, discarded {discarded}", self.log)
        return received


ALL_PROGRAMS = False  # --all-programs


def attached_run(binary, storm_bin, storm, port, work, extra, bpf_stats=False):
    agent = Agent(binary, work, storm.programs, extra, ALL_PROGRAMS)
    own = set(bpf_prog_ids(agent.process.pid))
    foreign = foreign_tracers(own)
    if bpf_stats:
        before_progs = {i: p for i, p in bpf_progs().items() if i in own}
    # A quiet second before the storm: what the agent costs idle (drain and
    # counter timers), subtracted below, and how many events the rest of
    # the host makes on these programs (builds, shells).
    idle = agent.snapshot()
    time.sleep(COUNTER_INTERVAL_S + 0.1)
    start, exact_start = agent.settled(timeout=3)
    idle_cpu_rate = (start["cpu"] - idle["cpu"]) / (start["t"] - idle["t"])
    background = (start["submitted"] - idle["submitted"]) / (start["t"] - idle["t"])
    host0 = host_busy_ticks()
    result = run_storm(storm_bin, storm, port)
    host1 = host_busy_ticks()
    agent_at_storm_end = cpu_seconds(agent.process.pid)
    # Every record is drained within one drain interval (sooner past the
    # wake-up threshold): the agent's CPU is read then, before the longer
    # wait for the counters, so a short storm is not charged idle seconds.
    time.sleep(DRAIN_INTERVAL_MS / 1e3 + 0.05)
    drained_cpu, drained_t = cpu_seconds(agent.process.pid), time.perf_counter()
    time.sleep(COUNTER_INTERVAL_S + 0.05)
    end, exact_end = agent.settled()
    run = dict(result)
    run.update({
        "foreign": foreign,
        "submitted": end["submitted"] - start["submitted"],
        "lost": end["lost"] - start["lost"],
        "delivered": end["delivered"] - start["delivered"],
        "agent_cpu": drained_cpu - start["cpu"] - idle_cpu_rate * (drained_t - start["t"]),
        "agent_idle": idle_cpu_rate,
        "exact": exact_start and exact_end,
        "gaps": (start["delivered"] - start["submitted"], end["delivered"] - end["submitted"]),
        "background_eps": background,
        "others_cpu": (host1 - host0) / CLK_TCK - (agent_at_storm_end - start["cpu"]) - result["cpu"],
    })
    if bpf_stats:
        after_progs = bpf_progs()
        run["bpf"] = {after_progs[i]["name"]: (after_progs[i].get("run_time_ns", 0)
                                              - before_progs.get(i, {}).get("run_time_ns", 0),
                                              after_progs[i].get("run_cnt", 0)
                                              - before_progs.get(i, {}).get("run_cnt", 0))
                      for i in own if i in after_progs}
    run["report_received"] = agent.stop()
    return run


def detached_run(storm_bin, storm, port):
    foreign = foreign_tracers()
    host0 = host_busy_ticks()
    run = run_storm(storm_bin, storm, port)
    run["others_cpu"] = (host_busy_ticks() - host0) / CLK_TCK - run["cpu"]
    run["foreign"] = foreign
    return run


def fmt_run(storm, variant, rep, run):
    line = (f"{storm.spec:<14} {variant:<9} #{rep}: {storm.ops:>9,} ops in {run['elapsed']:6.2f} s = "
            f"{run['ops_per_s']:>10,.0f} ops/s; storm CPU {run['cpu']:.2f} s, rest of host ~{run['others_cpu']:.1f} s")
    if run["foreign"]:
        line += f"\n    WARNING: another agent's or test's hostflow eBPF programs were loaded: {', '.join(run['foreign'])}"
    if variant == "detached":
        return line
    line += (f"\n    kernel submitted {run['submitted']:,} (expected >= {storm.events:,}), lost {run['lost']:,}, "
             f"sink got {run['delivered']:,}; {run['delivered'] / run['elapsed']:,.0f} events/s; "
             f"agent CPU {run['agent_cpu'] * 1e3:.2f} ms over idle ({run['agent_idle'] * 100:.2f} % of a core idle); "
             f"background {run['background_eps']:.0f} events/s; "
             + ("exact" if run["exact"] else "NOT settled: delivered - submitted = {:+d} before, {:+d} after"
                .format(*run["gaps"])))
    if "bpf" in run:
        for name, (ns, cnt) in sorted(run["bpf"].items()):
            if cnt:
                line += f"\n    bpf {name:<16} {cnt:>10,} runs  {ns / cnt:7.0f} ns/run  {ns / storm.ops:7.0f} ns per op"
    return line


def summarize(storm, runs):
    """One row per attached variant: medians over the repetitions, loss and
    CPU per event summed over them."""
    detached = runs["detached"]
    base = statistics.median(r["ops_per_s"] for r in detached)
    base_cpu = statistics.median(r["cpu"] for r in detached)
    rows = []
    for variant in [v for v in runs if v != "detached"]:
        rs = runs[variant]
        ops = statistics.median(r["ops_per_s"] for r in rs)
        submitted, lost = sum(r["submitted"] for r in rs), sum(r["lost"] for r in rs)
        delivered = sum(r["delivered"] for r in rs)
        rows.append({
            "storm": storm.spec, "variant": variant, "paced": bool(storm.rate), "detached": base, "attached": ops,
            "slowdown": base / ops,
            "slowdown_range": (min(base / r["ops_per_s"] for r in rs), max(base / r["ops_per_s"] for r in rs)),
            # What the programs cost the storm itself; the one cost figure
            # of a paced storm, whose wall time the pacing fixes.
            "cpu_ratio": statistics.median(r["cpu"] for r in rs) / base_cpu,
            "eps": statistics.median(r["delivered"] / r["elapsed"] for r in rs),
            "loss": lost / (submitted + lost) if submitted + lost else 0.0,
            "exact": sum(r["exact"] for r in rs), "n": len(rs),
            "cpu_per_100k": sum(r["agent_cpu"] for r in rs) / delivered * 1e5 if delivered else float("nan"),
            "core_pct": statistics.median(r["agent_cpu"] / r["elapsed"] * 100 for r in rs),
        })
    return rows


def print_summary(rows, reps):
    print(f"\nsummary: medians of {reps} runs (loss and agent CPU per event: summed over them)\n")
    print("| storm | variant | ops/s detached | ops/s attached | slowdown (min–max) | storm CPU ratio "
          "| events/s to sink | loss | exact | agent CPU per 100 k events (= % of a core at 100 k/s) "
          "| agent CPU during storm |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        slowdown = ("paced" if r["paced"] else
                    f"{r['slowdown']:.3f}× ({r['slowdown_range'][0]:.3f}–{r['slowdown_range'][1]:.3f})")
        print(f"| {r['storm']} | {r['variant']} | {r['detached']:,.0f} | {r['attached']:,.0f} | {slowdown} "
              f"| {r['cpu_ratio']:.3f}× | {r['eps']:,.0f} | {r['loss'] * 100:.4f} % | {r['exact']}/{r['n']} "
              f"| {r['cpu_per_100k'] * 1e3:.1f} ms ({r['cpu_per_100k'] * 100:.2f} %) "
              f"| {r['core_pct']:.1f} % |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--storms", default="exec,exec:2,tcp,tcp@100000,udp,udp:2")
    parser.add_argument("--no-wakeup-variant", action="store_true", help="skip wakeup_threshold_bytes = 0")
    parser.add_argument("--no-bpf-stats", action="store_true", help="skip the kernel.bpf_stats_enabled run")
    parser.add_argument("--no-nice", action="store_true", help="stay at the caller's priority")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=TOML",
                        help="one more attached variant with these source options, e.g. "
                             "'tp=connect_hook = \"tracepoint\"' (repeatable)")
    parser.add_argument("--all-programs", action="store_true",
                        help="attach the source's default program set, not only the storm's programs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        fail("needs root: the ebpf source loads eBPF programs (run with sudo)")
    if not args.no_nice:
        # The storm and the agent inherit this: on a shared 2-core VM a
        # compiler at nice 0 then takes ~1 % of their CPU instead of half,
        # and both compete with each other exactly as at equal priority.
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    binary = hostflow_bin()
    components = subprocess.run([binary, "components"], capture_output=True, text=True).stdout
    if not re.search(r"^\s+ebpf\s", components, re.M):
        fail(f"{binary} has no ebpf source (`hostflow components` does not list it)")
    storms = [Storm(spec) for spec in args.storms.split(",")]
    global ALL_PROGRAMS
    ALL_PROGRAMS = args.all_programs
    variants = {"attached": ""}
    if not args.no_wakeup_variant:
        variants["wake0"] = "wakeup_threshold_bytes = 0"
    for spec in args.variant:
        name, _, options = spec.partition("=")
        if not name or not options:
            fail(f"bad --variant `{spec}`: NAME=TOML")
        variants[name] = options

    work = tempfile.mkdtemp(prefix="hostflow-ebpf-storm-")
    storm_bin = compile_storm(work)
    # Attach every program once before measuring anything, so a host where
    # eBPF falls back fails here rather than after minutes of detached runs.
    Agent(binary, work, sorted({p for storm in storms for p in storm.programs}), "").stop()
    with open("/proc/loadavg") as f:
        print(f"start: load average {' '.join(f.read().split()[:3])}; {os.cpu_count()} CPUs; "
              f"kernel {os.uname().release}; nice {os.getpriority(os.PRIO_PROCESS, 0)}; binary {binary}")
    summary = []
    for storm in storms:
        port = free_port()  # closed (tcp) or any (udp): nothing listens on it
        runs = {"detached": [], **{v: [] for v in variants}}
        order = list(runs)
        for rep in range(args.reps):
            for variant in order[rep % len(order):] + order[:rep % len(order)]:
                if variant == "detached":
                    run = detached_run(storm_bin, storm, port)
                else:
                    run = attached_run(binary, storm_bin, storm, port, work, variants[variant])
                runs[variant].append(run)
                print(fmt_run(storm, variant, rep + 1, run), flush=True)
        if not args.no_bpf_stats:
            stats_path = "/proc/sys/kernel/bpf_stats_enabled"
            previous = open(stats_path).read().strip()
            try:
                with open(stats_path, "w") as f:
                    f.write("1")
                run = attached_run(binary, storm_bin, storm, port, work, "", bpf_stats=True)
            finally:
                with open(stats_path, "w") as f:
                    f.write(previous)
            print(fmt_run(storm, "bpfstats", 1, run) + "   (timing not used: stats add cost)", flush=True)
        summary += summarize(storm, runs)
    with open("/proc/loadavg") as f:
        print(f"end: load average {' '.join(f.read().split()[:3])}")

    print_summary(summary, args.reps)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
