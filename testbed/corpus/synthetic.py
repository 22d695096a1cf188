"""Synthetic edge cases of the corpus, labelled `"synthetic": true`.

Built by record.py after a recording, from recorded events used as
templates (so every field is exactly what the `file` sink writes for that
kind, attributes and process context included) with new process keys,
paths, sessions and ancestries. Timestamps start 120 s after the last
recorded event and each case is 120 s after the previous one (no L2
window spans two cases); event ids start at 2^40, far above any id one
agent run assigns. Pids are above 3 000 000, a range the recording's
kernel did not hand out. PID 1 keeps its recorded key, so an ancestry
that reaches it is `complete`.

The cases (what each proves is in its description):

- pid_reuse_lineage (benign): two services below PID 1 with the same pid
  and different start times; the first one's curl writes a file under
  /tmp, the second one's child runs it. Joined by pid, the lineages would
  be one and hf-linux-download-then-exec would complete; by process key
  they are two, and nothing may fire.
- download_exec_same_lineage (malicious): the twin of the above where the
  file runs in the first service's own lineage: it must fire.
- pid_reuse_port_scan (benign): two processes with one pid and different
  start times each connect to 30 distinct ports within 10 s; joined by pid
  that is 60 ports and hf-linux-port-scan (more than 50) would fire.
- reorder_within_window (malicious): curl's write and the exec 100 ms
  later, but the write reaches detect after the exec (a later file_open of
  the same case precedes it in the spool's file_open order, so the spool
  merge hands the exec over first): 200 ms late, inside the 300 ms reorder
  window, so the sequence must still complete.
- exec_before_download (benign): the exec happens first and the download
  of the same path a second later: a sequence in the wrong order must not
  complete.
- l2_cap_pressure (malicious): 10 050 login sessions each leave a pending
  download-then-exec step (a curl write under /tmp) within 10 s — more
  than the default max_states_per_rule (10 000), so the oldest are
  evicted — and then the newest session runs its file: the firing must
  survive the evictions.
"""

import copy

ID_BASE = 1 << 40
PID_BASE = 3_000_000
GAP_NS = 120 * 1_000_000_000
TICK_NS = 10_000_000
NO_SESSION = 4294967295


class Builder:
    def __init__(self, kept):
        self.templates = {}
        for e in kept:
            kind = e["kind"]
            if kind == "process_exec" and "exec" not in self.templates and e.get("has_context"):
                self.templates["exec"] = e
            elif kind == "file_open" and "open" not in self.templates and e.get("ctx_exe", "").endswith("/curl") \
                    and e.get("flags", 0) & 579:
                self.templates["open"] = e
            elif kind == "process_fork" and "fork" not in self.templates and e.get("has_context"):
                self.templates["fork"] = e
            elif kind == "process_exit" and "exit" not in self.templates and e.get("has_context"):
                self.templates["exit"] = e
            elif kind == "net_connect" and "connect" not in self.templates and e.get("has_context"):
                self.templates["connect"] = e
        missing = {"exec", "open", "fork", "exit", "connect"} - set(self.templates)
        if missing:
            raise RuntimeError(f"the recording has no template for {sorted(missing)}")
        self.pid1 = "1:0"
        for e in kept:
            keys = e.get("ctx_ancestor_keys") or []
            if keys and keys[-1].startswith("1:"):
                self.pid1 = keys[-1]
                break
        self.next_id = ID_BASE
        self.next_pid = PID_BASE
        self.t = max(e["ts_ns"] for e in kept) + GAP_NS

    def pid(self):
        self.next_pid += 1
        return self.next_pid

    def event(self, template, ts):
        e = copy.deepcopy(self.templates[template])
        e["event_id"] = self.next_id
        self.next_id += 1
        e["ts_ns"] = ts
        return e


class Proc:
    """A synthetic process: key, image, arguments, session, ancestry
    (a list of Proc, parent first; PID 1 is added at the end)."""

    def __init__(self, b, start_ns, exe, argv, parent=None, session=NO_SESSION, pid=None):
        self.b = b
        self.pid = pid if pid is not None else b.pid()
        self.start = start_ns // TICK_NS * TICK_NS
        self.exe, self.argv, self.session = exe, argv, session
        self.parent = parent

    @property
    def key(self):
        return f"{self.pid}:{self.start}"

    def ancestry(self):
        chain, p = [], self.parent
        while p is not None:
            chain.append(p)
            p = p.parent
        keys = [a.key for a in chain] + [self.b.pid1]
        exes = [a.exe for a in chain] + ["/sbin/init"]
        args = [" ".join(a.argv)[:128] for a in chain] + ["/sbin/init"]
        return keys, exes, args

    def context(self, e):
        keys, exes, args = self.ancestry()
        e.update({
            "pid": self.pid, "start_time_ns": self.start,
            "has_context": True,
            "ctx_exe": self.exe, "ctx_argv": list(self.argv), "ctx_uid": 0, "ctx_user": "root", "ctx_euid": 0,
            "ctx_cwd": "/", "ctx_tty": "",
            "ctx_loginuid": 0 if self.session != NO_SESSION else NO_SESSION, "ctx_session_id": self.session,
            "ctx_cgroup_path": "/", "ctx_container_runtime": "host", "ctx_container_id": "", "ctx_pod_uid": "",
            "ctx_lineage": "complete", "ctx_origin": "exec",
            "ctx_ancestor_keys": keys, "ctx_ancestor_exes": exes, "ctx_ancestor_args": args,
        })
        return e

    def exec(self, ts):
        e = self.context(self.b.event("exec", ts))
        e.update({
            "ppid": self.parent.pid if self.parent else 1, "comm": self.exe.rsplit("/", 1)[-1][:15],
            "exe": self.exe, "argv": list(self.argv), "argv_truncated": False,
            "loginuid": 0 if self.session != NO_SESSION else NO_SESSION, "session_id": self.session,
            "cwd": "/", "env": [], "stdin_type": "other", "stdout_type": "file", "stderr_type": "file",
        })
        return e

    def fork(self, ts, child):
        e = self.context(self.b.event("fork", ts))
        e.update({"child_pid": child.pid, "child_start_time_ns": child.start})
        return e

    def open(self, ts, path, flags=577):
        e = self.context(self.b.event("open", ts))
        e.update({"path": path, "flags": flags})
        return e

    def connect(self, ts, port):
        e = self.context(self.b.event("connect", ts))
        e.update({"protocol": "tcp", "dst_addr": "127.0.0.1", "dst_port": port, "result": None})
        return e

    def exit(self, ts):
        e = self.context(self.b.event("exit", ts))
        e.update({"exit_code": 0, "cpu_ns": 1_000_000})
        return e


MS = 1_000_000


def span(start, end, *roots):
    return [{"start_ns": start, "end_ns": end, "root_pid": r.pid, "root_start": r.start} for r in roots]


def spawn(b, parent, t, exe, argv, session=None, pid=None):
    """parent forks a child that execs exe: the child and its two events."""
    child = Proc(b, t, exe, argv, parent=parent, session=parent.session if session is None else session, pid=pid)
    return child, [parent.fork(t, child), child.exec(t + 2 * MS)]


def download_exec(b, name, reuse):
    """A service below PID 1 downloads into /tmp; the file is run by a
    child of the same service (reuse=False) or of a later service with the
    same pid (reuse=True)."""
    t0 = b.t
    path = f"/tmp/hf-syn-{name}/payload"
    svc = Proc(b, t0, "/usr/sbin/hf-syn-updater", ["/usr/sbin/hf-syn-updater", "--once"])
    events = [svc.exec(t0)]
    curl, ev = spawn(b, svc, t0 + 100 * MS, "/usr/bin/curl", ["curl", "-s", "-o", path, "http://127.0.0.1:8000/p"])
    events += ev + [curl.open(t0 + 150 * MS, path), curl.exit(t0 + 200 * MS)]
    if reuse:
        events.append(svc.exit(t0 + 300 * MS))
        runner = Proc(b, t0 + 1000 * MS, svc.exe, svc.argv, pid=svc.pid)
        events.append(runner.exec(t0 + 1000 * MS))
        roots = (svc, runner)
    else:
        runner = svc
        roots = (svc,)
    child, ev = spawn(b, runner, t0 + 1500 * MS, path, [path])
    events += ev + [child.exit(t0 + 1600 * MS), runner.exit(t0 + 1700 * MS)]
    end = t0 + 2000 * MS
    b.t = end + GAP_NS
    return events, span(t0, end, *roots)


def pid_reuse_port_scan(b):
    t0 = b.t
    first = Proc(b, t0, "/usr/local/bin/hf-syn-poller", ["hf-syn-poller", "--targets", "a"])
    events = [first.exec(t0)]
    for i in range(30):
        events.append(first.connect(t0 + (10 + i * 20) * MS, 20000 + i))
    events.append(first.exit(t0 + 700 * MS))
    second = Proc(b, t0 + 1000 * MS, first.exe, ["hf-syn-poller", "--targets", "b"], pid=first.pid)
    events.append(second.exec(t0 + 1000 * MS))
    for i in range(30):
        events.append(second.connect(t0 + (1010 + i * 20) * MS, 21000 + i))
    events.append(second.exit(t0 + 1700 * MS))
    end = t0 + 2000 * MS
    b.t = end + GAP_NS
    return events, span(t0, end, first, second)


def reorder(b):
    """The write at t+100 ms, the exec at t+200 ms; in the file_open order a
    later open (t+300 ms) of the same case comes first, so the spool merge
    hands over the exec, then that open, then the write (200 ms late)."""
    t0 = b.t
    session = 900_001
    path = "/tmp/hf-syn-reorder/payload"
    shell = Proc(b, t0, "/bin/bash", ["-bash"], session=session)
    curl, ev = spawn(b, shell, t0 + 50 * MS, "/usr/bin/curl", ["curl", "-s", "-o", path, "http://127.0.0.1:8000/p"])
    run, ev2 = spawn(b, shell, t0 + 190 * MS, path, [path])
    write = curl.open(t0 + 100 * MS, path)
    later = run.open(t0 + 300 * MS, "/etc/ld.so.cache", flags=524288)
    events = [shell.exec(t0)] + ev + ev2 + [later, write, curl.exit(t0 + 400 * MS), run.exit(t0 + 450 * MS),
                                            shell.exit(t0 + 500 * MS)]
    end = t0 + 1000 * MS
    b.t = end + GAP_NS
    return events, span(t0, end, shell)


def exec_before_download(b):
    t0 = b.t
    session = 900_002
    path = "/tmp/hf-syn-order/payload"
    shell = Proc(b, t0, "/bin/bash", ["-bash"], session=session)
    run, ev = spawn(b, shell, t0 + 100 * MS, path, [path])
    events = [shell.exec(t0)] + ev + [run.exit(t0 + 200 * MS)]
    curl, ev = spawn(b, shell, t0 + 1200 * MS, "/usr/bin/curl", ["curl", "-s", "-o", path, "http://127.0.0.1:8000/p"])
    events += ev + [curl.open(t0 + 1250 * MS, path), curl.exit(t0 + 1300 * MS), shell.exit(t0 + 1400 * MS)]
    end = t0 + 2000 * MS
    b.t = end + GAP_NS
    return events, span(t0, end, shell)


def cap_pressure(b, sessions=10_050):
    """`sessions` logins under one root each leave a pending step 1; the
    newest then runs its file. One event per pending session (the write;
    the curl processes are only implied by their context) keeps it small."""
    t0 = b.t
    root = Proc(b, t0, "/usr/sbin/hf-syn-sshd", ["hf-syn-sshd: flood"])
    events = [root.exec(t0)]
    step = 1 * MS
    last = None
    for i in range(sessions):
        ts = t0 + 10 * MS + i * step
        path = "/tmp/hf-syn-cap/payload"
        curl = Proc(b, ts, "/usr/bin/curl", ["curl", "-s", "-o", path, "http://127.0.0.1:8000/p"],
                    parent=root, session=800_000 + i)
        events.append(curl.open(ts, path))
        last = (curl, path)
    curl, path = last
    t1 = t0 + 10 * MS + sessions * step + 100 * MS
    shell = Proc(b, t1, "/bin/bash", ["-bash"], parent=root, session=curl.session)
    run, ev = spawn(b, shell, t1 + 10 * MS, path, [path])
    events += [shell.exec(t1)] + ev + [run.exit(t1 + 50 * MS), shell.exit(t1 + 60 * MS)]
    end = t1 + 1000 * MS
    b.t = end + GAP_NS
    return events, span(t0, end, root)


def build(kept):
    """(events, scenario labels) of every synthetic case."""
    b = Builder(kept)
    out, scenarios = [], []

    def add(name, description, malicious, expect, result):
        events, spans = result
        out.extend(events)
        scenarios.append({"name": name, "description": description, "malicious": malicious, "synthetic": True,
                          "expect": expect, "allow": [], "spans": spans})

    add("pid_reuse_lineage",
        "two services below PID 1 share a pid (different start times): one's curl writes /tmp/…/payload, "
        "the other's child runs it; joined by pid the download-then-exec sequence would complete",
        False, [], download_exec(b, "reuse", reuse=True))
    add("download_exec_same_lineage",
        "the twin of pid_reuse_lineage: the downloaded file runs in the downloading service's own lineage",
        True, ["hf-linux-download-then-exec"], download_exec(b, "same", reuse=False))
    add("pid_reuse_port_scan",
        "two processes with one pid (different start times) connect to 30 distinct ports each within 2 s; "
        "joined by pid that is 60 and the port-scan count (> 50) would fire",
        False, [], pid_reuse_port_scan(b))
    add("reorder_within_window",
        "curl's write under /tmp reaches detect 200 ms after the exec that follows it (inside the 300 ms "
        "reorder window): the sequence must complete",
        True, ["hf-linux-download-then-exec"], reorder(b))
    add("exec_before_download",
        "a file under /tmp runs, then curl writes that path 1 s later: steps in the wrong order",
        False, [], exec_before_download(b))
    add("l2_cap_pressure",
        "10 050 sessions each leave a pending download-then-exec step within 10 s (over the default "
        "max_states_per_rule 10 000: the oldest are evicted), then the newest completes",
        True, ["hf-linux-download-then-exec"], cap_pressure(b))
    return out, scenarios
