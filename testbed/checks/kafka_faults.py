#!/usr/bin/env python3
"""The kafka sink under broker faults (issue #6), against a real broker
process (tansu) and read back by an independent client (confluent-kafka).

Each scenario sends N generator events (JSON encoding, one message per
event, spread over 3 partitions) and then checks, from the topic itself,
that exactly N distinct event ids arrived: every acknowledged event is
there, none twice.

1. broker down at start: the agent starts against a closed port, /health
   shows the sink degraded with the reason and an AgentDiag event says so;
   then the broker starts (and only then the topic is created) and the
   agent delivers everything, reports recovery, and stops cleanly.
2. broker killed mid-stream: tansu with its sqlite engine is SIGKILLed while
   the agent produces and a consumer reads, then restarted on the same
   storage; the consumer, reading throughout, ends with every event once
   (the idempotent producer's retries do not duplicate).
3. slow broker: tansu is SIGSTOPped for 3 s with a small producer queue;
   the generator's sent counter stops moving (backpressure reached the
   source through the bounded edge), the edge reports blocked time, nothing
   is discarded with `when_full = "block"`, and all N arrive after SIGCONT.

Exit 77 (skip) when tansu or a Python package is missing outside CI.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import Tansu, agent_env, fail, free_port, hostflow_bin, register, require_kafka_tools, \
    wait_exit  # noqa: E402

BIN = hostflow_bin()
TANSU = require_kafka_tools()
TOPIC = "faults.v1"

TOPOLOGY = """
[api]
address = "127.0.0.1:{api_port}"

[sources.gen]
type = "generator"
count = {count}
rate = {rate}
mix = {{ process_exec = 1 }}

[sources.diag]
type = "agent_diag"

[sinks.to_kafka]
type = "kafka"
inputs = ["gen"]
brokers = ["127.0.0.1:{broker_port}"]
topic = "{topic}"
encoding = "json"
key = "none"
retry_backoff_max_ms = 1000
{extra}

[sinks.diag_file]
type = "file"
inputs = ["diag"]
path = "diag.ndjson"
"""


class Agent:
    def __init__(self, work, broker_port, count, rate, extra=""):
        self.work, self.count = work, count
        self.api_port = free_port()
        self.log = os.path.join(work, "agent.log")
        self.report = os.path.join(work, "report.json")
        config = os.path.join(work, "topology.toml")
        with open(config, "w") as f:
            f.write(TOPOLOGY.format(api_port=self.api_port, broker_port=broker_port, count=count, rate=rate,
                                    topic=TOPIC, extra=extra))
        self.process = register(subprocess.Popen([BIN, "run", "--config", config, "--report", self.report],
                                                 cwd=work, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"),
                                                 env=agent_env()))

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    def metric(self, name, **labels):
        text = self.get("/metrics") or ""
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_health(self, predicate, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            body = self.get("/health")
            if body:
                health = json.loads(body)
                if predicate(health):
                    return health
            if self.process.poll() is not None:
                fail(f"agent exited ({self.process.returncode}) before {what}", self.log)
            time.sleep(0.1)
        fail(f"timed out waiting for {what}", self.log)

    def finish(self, timeout=90):
        """Waits until the kafka sink acknowledged all N, then stops the agent
        (the agent_diag source runs until told to stop, like procfs would)
        and checks its report: all N acknowledged, nothing discarded."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric("hostflow_component_sent_events_total", component="to_kafka") == self.count:
                break
            if self.process.poll() is not None:
                fail(f"agent exited ({self.process.returncode}) before acknowledging {self.count}", self.log)
            time.sleep(0.1)
        else:
            fail(f"the kafka sink did not acknowledge {self.count} events within {timeout} s", self.log)
        self.process.send_signal(signal.SIGTERM)
        code = wait_exit(self.process, 60, self.log)
        if code != 0:
            fail(f"agent exited {code}", self.log)
        report = json.load(open(self.report))
        sink = report["components"]["to_kafka"]
        if sink["sent"] != self.count or any(sink["discarded"].values()):
            fail(f"kafka sink acknowledged {sink['sent']} of {self.count}, discarded {sink['discarded']}", self.log)
        return report

    def diag_types(self):
        path = os.path.join(self.work, "diag.ndjson")
        if not os.path.exists(path):
            return []
        return [json.loads(line)["event_type"] for line in open(path) if line.strip()]


class Reader(threading.Thread):
    """A consumer assigned to every partition from offset 0, reading until
    told to stop — through broker kills and restarts."""

    def __init__(self, port, partitions=3):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition
        self.consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": f"faults-{time.time()}",
                                  "enable.auto.commit": False, "reconnect.backoff.max.ms": 500,
                                  # the outages are on purpose: keep librdkafka's connect errors quiet
                                  "log_level": 2})
        self.consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
        self.ids, self.errors, self.stopping = [], [], threading.Event()

    def run(self):
        while not self.stopping.is_set():
            message = self.consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                self.errors.append(str(message.error()))  # transient while the broker is down
                continue
            self.ids.append(json.loads(message.value())["event_id"])
        self.consumer.close()

    def read_all(self, expected, timeout=90, quiet_secs=3):
        """Stops once `expected` ids arrived and nothing more came for `quiet_secs`."""
        deadline, last_len, last_change = time.time() + timeout, -1, time.time()
        while time.time() < deadline:
            if len(self.ids) != last_len:
                last_len, last_change = len(self.ids), time.time()
            if len(self.ids) >= expected and time.time() - last_change > quiet_secs:
                break
            time.sleep(0.1)
        self.stopping.set()
        self.join(timeout=10)
        return list(self.ids)


def exactly_once(ids, n, what):
    distinct = len(set(ids))
    if distinct != n or len(ids) != n:
        fail(f"{what}: consumed {len(ids)} messages with {distinct} distinct event ids; expected {n} once each")


def broker_down_at_start(work):
    n = 5000
    port = free_port()
    agent = Agent(work, port, count=n, rate=2500)
    health = agent.wait_health(lambda h: h["components"]["to_kafka"]["state"] == "degraded", 30,
                               "the kafka sink to report degraded")
    reason = health["components"]["to_kafka"].get("reason") or ""
    if "cannot reach the Kafka brokers" not in reason:
        fail(f"degraded without the reason: {health}")
    time.sleep(1.0)
    broker = Tansu(TANSU, work, port)
    broker.start()
    broker.create_topic(TOPIC, 3)
    try:
        reader = Reader(port)
        reader.start()
        agent.finish()
        exactly_once(reader.read_all(n), n, "broker down at start")
        types = agent.diag_types()
        if "kafka_degraded" not in types or "kafka_recovered" not in types[types.index("kafka_degraded"):]:
            fail(f"AgentDiag events: {types}; expected kafka_degraded then kafka_recovered", agent.log)
    finally:
        broker.stop()
    return f"broker down at start: degraded ({reason!r}), then {n} delivered once; diag {types}"


def broker_killed_mid_stream(work):
    n = 20000
    port = free_port()
    broker = Tansu(TANSU, work, port, storage="sqlite")
    broker.start()
    broker.create_topic(TOPIC, 3)
    try:
        reader = Reader(port)
        reader.start()
        agent = Agent(work, port, count=n, rate=3000)
        deadline = time.time() + 20
        while len(reader.ids) < 1000 and time.time() < deadline:
            time.sleep(0.05)
        before = len(reader.ids)
        broker.kill()
        time.sleep(2.0)
        broker.start()
        agent.finish()
        ids = reader.read_all(n)
        if before < 1000 or before >= n:
            fail(f"the consumer had read {before} of {n} when the broker was killed: not mid-stream")
        exactly_once(ids, n, "broker killed and restarted")
    finally:
        broker.stop()
    return f"broker SIGKILLed after {before} consumed, restarted on sqlite: {n} consumed once"


def slow_broker(work):
    n = 40000
    port = free_port()
    broker = Tansu(TANSU, work, port)
    broker.start()
    broker.create_topic(TOPIC, 3)
    extra = 'librdkafka_options = { "queue.buffering.max.messages" = "500" }\nbuffer = { capacity = 1000 }'
    try:
        reader = Reader(port)
        reader.start()
        agent = Agent(work, port, count=n, rate=8000, extra=extra)
        agent.wait_health(lambda h: h["components"]["to_kafka"]["state"] == "running", 30, "the sink running")
        time.sleep(1.0)
        broker.signal(signal.SIGSTOP)
        time.sleep(1.0)  # queue and edge fill
        sent_a = agent.metric("hostflow_component_sent_events_total", component="gen")
        buffered = agent.metric("hostflow_edge_buffer_events", component="to_kafka")
        time.sleep(2.0)
        sent_b = agent.metric("hostflow_component_sent_events_total", component="gen")
        blocked_a = agent.metric("hostflow_edge_blocked_seconds_total", to="to_kafka") or 0.0
        broker.signal(signal.SIGCONT)
        if sent_a is None or sent_b is None:
            fail("generator sent counter missing from /metrics", agent.log)
        if sent_a >= n:
            fail(f"the generator finished ({sent_a}) before the broker was stopped; nothing was tested")
        # At 8 000 events/s an unblocked generator would have sent ~16 000 more.
        if sent_b - sent_a > 2000:
            fail(f"generator kept sending while the broker was stopped: {sent_a} -> {sent_b}")
        if not buffered or buffered < 500:
            fail(f"edge gen->to_kafka held {buffered} events while the broker was stopped; expected it full", agent.log)
        # The blocked time is added when the blocked send completes, i.e. after SIGCONT.
        time.sleep(1.0)
        blocked_b = agent.metric("hostflow_edge_blocked_seconds_total", to="to_kafka") or 0.0
        if blocked_b - blocked_a < 1.5:
            fail(f"edge gen->to_kafka reports {blocked_b - blocked_a:.2f} s more blocked time; expected >= 1.5 s",
                 agent.log)
        agent.finish()
        exactly_once(reader.read_all(n), n, "slow broker")
    finally:
        broker.stop()
    return (f"slow broker: generator held at {int(sent_a)} -> {int(sent_b)} events for 2 s while stopped "
            f"(edge holding {int(buffered)}), blocked {blocked_b - blocked_a:.1f} s more; {n} consumed once, "
            "0 discarded")


def main():
    for scenario in (broker_down_at_start, broker_killed_mid_stream, slow_broker):
        work = tempfile.mkdtemp(prefix=f"hostflow-{scenario.__name__}-")
        started = time.time()
        print(f"ok: {scenario(work)} ({time.time() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
