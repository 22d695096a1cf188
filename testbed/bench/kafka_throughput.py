#!/usr/bin/env python3
"""Kafka produce throughput (issue #6): hostflow's kafka sink vs the Python
confluent-kafka producer pushing the same pre-encoded payloads, same broker,
same settings, same run.

    HOSTFLOW_BIN=target/release/hostflow testbed/bench/kafka_throughput.py [EVENTS] [BATCH] [IN_FLIGHT] [memory|disk]

IN_FLIGHT is the sink's `max_in_flight_batches` (default 4); `disk` puts a
disk buffer on the sink's input (in the run's work directory).

1. Starts tansu (memory engine) on a loopback port; topics `bench.hostflow`
   and `bench.python`, one partition each.
2. hostflow: generator (default mix: exec/exit/fork/connect/open, as fast as
   backpressure allows, `batch_size` BATCH) -> kafka sink, protobuf (one
   SecurityEvent message per event), zstd, idempotent, acks=all, linger 5 ms.
   Rate = EVENTS / (time from the first to the last delivered message, read
   from /metrics every 50 ms). Delivery latency p50/p99 from the sink's own
   histogram `hostflow_kafka_delivery_latency_seconds` (the upper bound of
   the bucket holding the quantile: 1–2.5–5 steps).
3. The payloads hostflow wrote are consumed back, then produced by
   confluent-kafka's Producer with the same settings (enable.idempotence,
   acks=all, zstd, linger.ms=5) to `bench.python`: rate over produce + flush,
   latency from produce() to the delivery callback.
Prints one summary block for BENCHMARKS.md.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import Tansu, agent_env, fail, free_port, hostflow_bin, require_kafka_tools, \
    wait_exit  # noqa: E402

EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
IN_FLIGHT = int(sys.argv[3]) if len(sys.argv) > 3 else 4
DISK = len(sys.argv) > 4 and sys.argv[4] == "disk"
BIN = hostflow_bin()
TANSU = require_kafka_tools()

TOPOLOGY = """
[api]
address = "127.0.0.1:{api_port}"

[sources.gen]
type = "generator"
count = {count}
batch_size = {batch}

[sinks.to_kafka]
type = "kafka"
inputs = ["gen"]
brokers = ["127.0.0.1:{port}"]
topic = "bench.hostflow"
encoding = "protobuf"
compression = "zstd"
linger_ms = 5
entity_guid = "bench-guid"
max_in_flight_batches = {in_flight}
buffer = {{ capacity = {capacity}{disk} }}
"""


def scrape(api_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def histogram_quantile(text, name, q):
    """The upper bound of the first bucket of histogram `name` holding a
    share q of its samples (an upper bound of the quantile)."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = max(count for _, count in buckets)
    return next(le for le, count in sorted(buckets) if count >= q * total)


def run_hostflow(work, port):
    api_port = free_port()
    config = os.path.join(work, "topology.toml")
    with open(config, "w") as f:
        disk = ', type = "disk", max_bytes = 4294967296, path = "buffer"' if DISK else ""
        f.write(TOPOLOGY.format(api_port=api_port, port=port, count=EVENTS, batch=BATCH, capacity=4 * BATCH,
                                in_flight=IN_FLIGHT, disk=disk))
    log = os.path.join(work, "agent.log")
    agent = subprocess.Popen([BIN, "run", "--config", config, "--report", os.path.join(work, "report.json")],
                             cwd=work, stderr=open(log, "w"), env=agent_env())
    first = last = None
    latency = {}
    while agent.poll() is None:
        text = scrape(api_port)
        delivered = sample(text, "hostflow_kafka_delivered_messages_total")
        now = time.perf_counter()
        if delivered:
            first = first or (now, delivered)
            last = (now, delivered)
            for q in ("0.5", "0.99"):
                value = histogram_quantile(text, "hostflow_kafka_delivery_latency_seconds", float(q))
                if value is not None:
                    latency[q] = value
        time.sleep(0.05)
    if wait_exit(agent, 60, log) != 0:
        fail("hostflow exited non-zero", log)
    report = json.load(open(os.path.join(work, "report.json")))
    acked = report["components"]["to_kafka"]["sent"]
    if acked != EVENTS:
        fail(f"hostflow acknowledged {acked} of {EVENTS}", log)
    if not first or last[0] <= first[0]:
        fail("run too short to measure; raise EVENTS", log)
    rate = (last[1] - first[1]) / (last[0] - first[0])
    return rate, latency


def read_back(port, n):
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "bench-read",
                         "enable.auto.commit": False, "fetch.max.bytes": 52428800})
    consumer.assign([TopicPartition("bench.hostflow", 0, 0)])
    payloads, deadline = [], time.time() + 300
    while len(payloads) < n and time.time() < deadline:
        for message in consumer.consume(10000, 1.0):
            if not message.error():
                payloads.append((message.key(), message.value()))
    consumer.close()
    if len(payloads) != n:
        fail(f"read back {len(payloads)} of {n} hostflow messages")
    return payloads


def run_python(port, payloads):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "acks": "all",
                         "compression.type": "zstd", "linger.ms": 5, "queue.buffering.max.messages": 100000})
    latencies = []
    lock = threading.Lock()

    def delivered(error, _message, sent_at):
        if error is not None:
            fail(f"python producer delivery failed: {error}")
        with lock:
            latencies.append(time.perf_counter() - sent_at)

    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                sent_at = time.perf_counter()
                producer.produce("bench.python", value=value, key=key,
                                 on_delivery=lambda e, m, t=sent_at: delivered(e, m, t))
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return len(payloads) / elapsed, {"0.5": latencies[len(latencies) // 2],
                                     "0.99": latencies[int(len(latencies) * 0.99)]}


def main():
    work = tempfile.mkdtemp(prefix="hostflow-kafka-bench-")
    port = free_port()
    broker = Tansu(TANSU, work, port)
    broker.start()
    broker.create_topic("bench.hostflow", 1)
    broker.create_topic("bench.python", 1)
    try:
        rate, latency = run_hostflow(work, port)
        payloads = read_back(port, EVENTS)
        mean_bytes = statistics.mean(len(v) for _, v in payloads)
        py_rate, py_latency = run_python(port, payloads)
    finally:
        broker.stop()
    print(f"events: {EVENTS}, batch_size {BATCH}, payload mean {mean_bytes:.1f} B (protobuf SecurityEvent, "
          "before zstd)")
    print(f"hostflow kafka sink : {rate:>10,.0f} events/s  {rate * mean_bytes / 1e6:6.1f} MB/s  "
          f"latency p50 <= {latency.get('0.5', float('nan')) * 1e3:.1f} ms  p99 <= {latency.get('0.99', float('nan')) * 1e3:.1f} ms")
    print(f"python confluent-kafka: {py_rate:>10,.0f} events/s  {py_rate * mean_bytes / 1e6:6.1f} MB/s  "
          f"latency p50 {py_latency['0.5'] * 1e3:.1f} ms  p99 {py_latency['0.99'] * 1e3:.1f} ms")
    print(f"ratio hostflow / python: {rate / py_rate:.2f}")


if __name__ == "__main__":
    main()
