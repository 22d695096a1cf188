#!/usr/bin/env python3
"""Least privilege, proven (issue #12): the agent as an unprivileged user
with exactly the systemd unit's capabilities sees everything it sees as
root, and with CAP_BPF dropped says so.

As root, the check creates (or reuses) the system user `hostflow-test`,
mounts tracefs when absent (what the unit's privileged ExecStartPre does),
and starts `hostflow run` through `setpriv` as that user with the ambient,
inheritable and bounding sets all equal to the unit's capability set (read
from packaging/systemd/hostflow.service when it exists; otherwise
CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE). Its
topology: an ebpf source (exec, exit, fork, connect, file_open under a
prefix of the check's own) and a procfs source, each into an NDJSON file in
a 0700 directory owned by that user. Then:

1. /health shows the ebpf source `running` (not degraded) with every
   program attached, and no capability reported missing;
2. an exec of a distinctive command (its fork, exec and exit), a TCP
   connect to a loopback listener and an open of a file under the prefix
   each appear in the NDJSON;
3. procfs rows include root-owned processes with their command line
   (PID 1's among them);
4. without CAP_BPF (the same set minus it): `hostflow probe --json` exits
   69 and names CAP_BPF, and an agent started that way reports the ebpf
   source degraded with CAP_BPF named in its /health reason and details.

Exit 77 (skip, with the reason) when not root or setpriv/useradd are
missing; under CI=true that is a failure, like every check.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import ROOT, agent_env, fail, free_port, hostflow_bin, register, skip, wait_exit  # noqa: E402

USER = "hostflow-test"
UNIT = os.path.join(ROOT, "packaging", "systemd", "hostflow.service")
DEFAULT_CAPS = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]
TRACEFS = "/sys/kernel/tracing"

TOPOLOGY = """
[api]
address = "127.0.0.1:{api_port}"

[sources.kernel]
type = "ebpf"
programs = ["exec", "exit", "fork", "connect", "file_open"]
file_prefixes = ["{prefix}"]
drain_interval_ms = 50

[sources.procs]
type = "procfs"
interval_secs = 0.5

[sinks.kernel_file]
type = "file"
inputs = ["kernel"]
path = "{work}/kernel.ndjson"

[sinks.procs_file]
type = "file"
inputs = ["procs"]
path = "{work}/procs.ndjson"
"""


def unit_caps():
    """The unit's AmbientCapabilities= and CapabilityBoundingSet= (systemd
    semantics: lines add up, an empty assignment resets), or the default."""
    if not os.path.exists(UNIT):
        print(f"{os.path.relpath(UNIT, ROOT)} not found: using the default set {' '.join(DEFAULT_CAPS)}")
        return DEFAULT_CAPS, DEFAULT_CAPS
    sets = {"AmbientCapabilities": [], "CapabilityBoundingSet": []}
    for line in open(UNIT):
        key, _, value = line.strip().partition("=")
        if key in sets:
            if value.startswith("~"):
                fail(f"{UNIT}: {key}={value}: an inverted set is not supported by this check")
            sets[key] = sets[key] + value.split() if value.strip() else []
    ambient, bounding = sets["AmbientCapabilities"], sets["CapabilityBoundingSet"]
    if not ambient:
        fail(f"{UNIT} sets no AmbientCapabilities=")
    print(f"capabilities from {os.path.relpath(UNIT, ROOT)}: ambient {' '.join(ambient)}; "
          f"bounding {' '.join(bounding) or '(unset: all)'}")
    return ambient, bounding or None


def setpriv_caps(caps):
    """CAP_BPF CAP_PERFMON -> -all,+bpf,+perfmon (setpriv's spelling)."""
    return ",".join(["-all"] + ["+" + c.lower().removeprefix("cap_") for c in caps])


def ensure_user():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if not useradd:
        skip("useradd is missing (apt-get install passwd): cannot create the unprivileged user")
    created = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                              "--shell", "/usr/sbin/nologin", USER], capture_output=True, text=True)
    if created.returncode != 0:
        fail(f"useradd {USER}: {created.stderr.strip()}")
    return pwd.getpwnam(USER)


def ensure_tracefs():
    mounted = any(line.split()[2] == "tracefs" and line.split()[1] == TRACEFS for line in open("/proc/self/mounts"))
    if mounted:
        return
    result = subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"cannot mount tracefs at {TRACEFS} (the unit's ExecStartPre does this): {result.stderr.strip()}")
    print(f"mounted tracefs at {TRACEFS}, as the unit's ExecStartPre would (left mounted)")


class Unprivileged:
    """Runs commands as USER with exactly `caps` (ambient, inheritable and
    bounding), nothing else: the unit's process, as setpriv builds it."""

    def __init__(self, user, ambient, bounding):
        self.user, self.ambient, self.bounding = user, ambient, bounding

    def argv(self, command):
        prefix = [shutil.which("setpriv"), f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                  "--clear-groups", f"--inh-caps={setpriv_caps(self.ambient)}",
                  f"--ambient-caps={setpriv_caps(self.ambient)}"]
        if self.bounding is not None:
            prefix.append(f"--bounding-set={setpriv_caps(self.bounding)}")
        return prefix + ["--"] + command


class Agent:
    def __init__(self, runner, binary, work, prefix, name):
        self.work, self.api_port = work, free_port()
        self.log = os.path.join(work, f"{name}.log")
        config = os.path.join(work, f"{name}.toml")
        with open(config, "w") as f:
            f.write(TOPOLOGY.format(api_port=self.api_port, prefix=prefix, work=work))
        os.chown(config, runner.user.pw_uid, runner.user.pw_gid)
        self.process = register(subprocess.Popen(runner.argv([binary, "run", "--config", config]), cwd=work,
                                                 stdout=subprocess.DEVNULL, stderr=open(self.log, "w"),
                                                 env=agent_env()))

    def health(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/health", timeout=2) as response:
                return json.loads(response.read().decode())
        except OSError:
            return None
        except ValueError as error:
            fail(f"/health is not JSON: {error}", self.log)

    def wait_kernel(self, timeout=20):
        """/health once the ebpf source has loaded: it publishes its facts
        (details) after the load attempt and sets degraded right after, so
        read again a moment later to see the settled state."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            health = self.health()
            if health and (health["components"].get("kernel") or {}).get("details"):
                time.sleep(0.5)
                return self.health() or fail("/health stopped answering", self.log)
            if self.process.poll() is not None:
                fail(f"agent exited ({self.process.returncode}) before the ebpf source loaded", self.log)
            time.sleep(0.1)
        fail(f"the ebpf source did not load within {timeout} s", self.log)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = wait_exit(self.process, 20, self.log)
        if code != 0:
            fail(f"agent exited {code} on SIGTERM", self.log)


def records(path, kind):
    if not os.path.exists(path):
        return []
    rows = []
    for line in open(path, errors="replace"):
        if line.endswith("\n"):
            row = json.loads(line)
            if row.get("kind") == kind:
                rows.append(row)
    return rows


def wait_for(what, predicate, log, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    fail(f"not seen within {timeout} s: {what}", log)


def main():
    started = time.time()
    if os.geteuid() != 0:
        skip("needs root: creates a user, mounts tracefs and drops to that user with setpriv")
    if not shutil.which("setpriv"):
        skip("setpriv is missing (apt-get install util-linux)")
    binary = os.path.abspath(hostflow_bin())
    ambient, bounding = unit_caps()
    user = ensure_user()
    ensure_tracefs()
    runner = Unprivileged(user, ambient, bounding)

    work = tempfile.mkdtemp(prefix="hf-lp-")
    os.chown(work, user.pw_uid, user.pw_gid)
    os.chmod(work, 0o700)
    try:
        # The binary must be reachable by the user; copy it in when it is not.
        if subprocess.run(runner.argv(["test", "-x", binary])).returncode != 0:
            copy = os.path.join(work, "hostflow")
            shutil.copy(binary, copy)
            os.chown(copy, user.pw_uid, user.pw_gid)
            print(f"{binary} is not executable by {USER}: running a copy")
            binary = copy
        watched = os.path.join(work, "watched") + "/"
        os.mkdir(watched)
        os.chown(watched, user.pw_uid, user.pw_gid)

        full_set(runner, binary, work, watched)
        without_bpf(Unprivileged(user, [c for c in ambient if c != "CAP_BPF"],
                                 None if bounding is None else [c for c in bounding if c != "CAP_BPF"]),
                    binary, work, watched)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"least privilege: OK in {time.time() - started:.1f} s")


def full_set(runner, binary, work, watched):
    agent = Agent(runner, binary, work, watched, "full")
    health = agent.wait_kernel()
    kernel = health["components"]["kernel"]
    if kernel["state"] != "running":
        fail(f"with {' '.join(runner.ambient)} the ebpf source is {kernel['state']}: {kernel.get('reason')}\n"
             f"details: {json.dumps(kernel.get('details'), indent=1)}", agent.log)
    details = kernel.get("details") or {}
    states = {p["program"]: p["state"]["state"] for p in (details.get("load") or {}).get("programs", [])}
    if sorted(states) != ["connect", "exec", "exit", "file_open", "fork"] or \
            any(state != "attached" for state in states.values()):
        fail(f"not every program attached: {states}", agent.log)
    if details.get("privileges", {}).get("status") != "ok":
        fail(f"privileges fact: {details.get('privileges')}", agent.log)
    proc_access = details.get("proc_access", {})
    if proc_access.get("status") != "ok":
        fail(f"proc_access fact: {proc_access}", agent.log)
    print(f"ebpf source running as uid {runner.user.pw_uid}; privileges: {details['privileges']['detail']}")
    print(f"proc access: {proc_access['detail']}")

    kernel_file = os.path.join(work, "kernel.ndjson")
    token = f"lp{os.getpid()}x{int(time.time())}"
    # exec (with its fork and exit)
    child = subprocess.run(["/bin/echo", "hostflow-least-privilege", token], stdout=subprocess.DEVNULL)
    exec_row = wait_for(f"process_exec with argv containing {token}",
                        lambda: next((r for r in records(kernel_file, "process_exec") if token in r["argv"]), None),
                        agent.log)
    pid = exec_row["pid"]
    wait_for(f"process_fork of pid {pid}",
             lambda: any(r.get("child_pid") == pid for r in records(kernel_file, "process_fork")), agent.log)
    wait_for(f"process_exit of pid {pid} with code {child.returncode}",
             lambda: any(r["pid"] == pid and r["exit_code"] == child.returncode
                         for r in records(kernel_file, "process_exit")), agent.log)
    # connect
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        wait_for(f"net_connect to 127.0.0.1:{port}",
                 lambda: any(r["dst_port"] == port and r["dst_addr"] == "127.0.0.1"
                             for r in records(kernel_file, "net_connect")), agent.log)
    # open under the prefix
    opened = os.path.join(watched, f"opened-{token}")
    with open(opened, "w") as f:
        f.write("x")
    wait_for(f"file_open of {opened}",
             lambda: any(r["path"] == opened for r in records(kernel_file, "file_open")), agent.log)
    print(f"exec (pid {pid}, with fork and exit), connect to port {port} and open of {opened}: all recorded")

    # procfs: other users' processes, with their command lines
    procs_file = os.path.join(work, "procs.ndjson")
    pid1_cmdline = open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
    pid1 = wait_for("procfs row of PID 1 with its cmdline",
                    lambda: next((r for r in records(procs_file, "process_sample")
                                  if r["pid"] == 1 and r["cmdline"]), None), agent.log)
    if pid1["uid"] != os.stat("/proc/1").st_uid or not pid1["cmdline"].startswith(pid1_cmdline):
        fail(f"PID 1 row {pid1} does not match /proc/1 (cmdline {pid1_cmdline!r})", agent.log)
    root_rows = [r for r in records(procs_file, "process_sample") if r["uid"] == 0 and r["cmdline"]]
    if len({r["pid"] for r in root_rows}) < 2:
        fail(f"procfs saw fewer than 2 root processes with a command line: {root_rows[:3]}", agent.log)
    procs = agent.health()["components"]["procs"]
    if procs["state"] != "running":
        fail(f"procfs is {procs['state']}: {procs.get('reason')}", agent.log)
    print(f"procfs: {len({r['pid'] for r in root_rows})} root processes with command lines, "
          f"PID 1 {pid1['cmdline']!r}")
    agent.stop()


def without_bpf(runner, binary, work, watched):
    probe = subprocess.run(runner.argv([binary, "probe", "--json"]), capture_output=True, text=True,
                           env=agent_env(), timeout=30)
    if probe.returncode != 69:
        fail(f"probe without CAP_BPF exited {probe.returncode}, not 69\n{probe.stdout}\n{probe.stderr}")
    if "CAP_BPF" not in probe.stdout:
        fail(f"probe without CAP_BPF does not name it:\n{probe.stdout}\n{probe.stderr}")
    report = json.loads(probe.stdout)
    privileges = report["privileges"]
    if privileges["status"] != "missing" or not re.search(r"\bCAP_BPF missing", privileges["detail"]):
        fail(f"probe's privileges fact without CAP_BPF: {privileges}")
    print(f"probe without CAP_BPF: exit 69; privileges: {privileges['detail']}")
    print(f"probe load error: {report.get('load_error')}")

    agent = Agent(runner, binary, work, watched, "no-bpf")
    health = agent.wait_kernel()
    kernel = health["components"]["kernel"]
    reason = kernel.get("reason") or ""
    if kernel["state"] != "degraded" or "CAP_BPF" not in reason:
        fail(f"without CAP_BPF the ebpf source is {kernel['state']} ({reason!r}), not degraded naming CAP_BPF",
             agent.log)
    if "CAP_BPF missing" not in (kernel.get("details") or {}).get("privileges", {}).get("detail", ""):
        fail(f"/health details do not name CAP_BPF: {kernel.get('details')}", agent.log)
    print(f"/health without CAP_BPF: degraded: {reason}")
    agent.stop()


if __name__ == "__main__":
    main()
