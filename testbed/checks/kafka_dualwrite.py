#!/usr/bin/env python3
"""Dual-write to a real Kafka-protocol broker (issue #6), read back by an
independent client.

Starts `tansu` (a separately built Kafka-protocol broker, memory engine) on a
free loopback port, creates `proc.raw.v1` and `proc.sketch.v1` with three
partitions each, and runs `hostflow run` with the default topology's shape
(procfs -> topn -> tail, procfs -> sketch) writing both Kafka topics, for a few
scans, then SIGTERM. Then the Python `confluent-kafka` client (librdkafka
2.x, not ours) consumes both topics and every payload is decoded with the
project's own .proto files (compiled here by grpcio-tools' protoc):

- every raw message is a ProcessEnvelope v2.1 and the Top-N + tail rows in
  them add up to exactly the events the raw sink acknowledged;
- every sketch message is a SketchEnvelope v1, one per acknowledged sketch;
- every message is keyed by the entity guid it carries, so each topic's
  messages sit in one partition (same strategy for both topics).

Exit 77 (skip) when tansu or a Python package is missing outside CI.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HOSTFLOW_BIN")


def skip(reason):
    if os.environ.get("CI") == "true":
        fail(f"would skip, but CI must run it: {reason}")
    log = os.environ.get("HOSTFLOW_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"testbed/checks/kafka_dualwrite.py\t{reason}\n")
    print(f"SKIPPED: {reason}")
    sys.exit(77)


def fail(message, log_path=None):
    print(f"FAILED: {message}")
    if log_path and os.path.exists(log_path):
        print(f"--- {log_path} (tail) ---")
        print("".join(open(log_path, errors="replace").readlines()[-30:]))
    sys.exit(1)


if not BIN:
    fail("HOSTFLOW_BIN is not set (run through testbed/test)")
TANSU = shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
if not os.path.exists(TANSU):
    skip("tansu is not installed (testbed/test installs it with cargo install when root)")
try:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient  # noqa: F401  (import check only)
    import grpc_tools.protoc  # noqa: F401
except ImportError as error:
    skip(f"python package missing ({error.name}); pip install confluent-kafka grpcio-tools")

TOPICS = ("proc.raw.v1", "proc.sketch.v1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compile_protos(out):
    protos = sorted(glob.glob(os.path.join(ROOT, "schemas", "proto", "*.proto")))
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/schemas/proto",
                             f"--python_out={out}", *protos], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"protoc on schemas/proto failed: {result.stderr}")
    sys.path.insert(0, out)


def start_broker(work, port):
    log = os.path.join(work, "tansu.log")
    broker = subprocess.Popen(
        [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", "memory://tansu/"],
        cwd=work, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if broker.poll() is not None:
            fail(f"tansu exited with {broker.returncode}", log)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        fail("tansu did not listen within 30 s", log)
    for topic in TOPICS:
        created = subprocess.run([TANSU, "topic", "create", topic, "--partitions", "3",
                                  "--broker", f"tcp://127.0.0.1:{port}"], cwd=work, capture_output=True, text=True)
        if created.returncode != 0:
            fail(f"tansu topic create {topic}: {created.stdout}{created.stderr}", log)
    return broker, log


TOPOLOGY = """
[api]
enabled = false

[sources.procfs]
type = "procfs"
interval_secs = 1

[transforms.top]
type = "topn"
inputs = ["procfs"]
n = 20

[transforms.rest]
type = "tail"
inputs = ["top"]

[transforms.sketches]
type = "sketch"
inputs = ["procfs"]
window_secs = 1
top_names = 20

[sinks.raw]
type = "kafka"
inputs = ["rest"]
brokers = ["127.0.0.1:{port}"]
topic = "proc.raw.v1"
entity_guid = "test-host-guid"

[sinks.sketch_topic]
type = "kafka"
inputs = ["sketches"]
brokers = ["127.0.0.1:{port}"]
topic = "proc.sketch.v1"
entity_guid = "test-host-guid"
"""


def consume(port, topic, expected_messages):
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": f"check-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages, last = [], time.time()
    deadline = time.time() + 60
    while time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if len(messages) >= expected_messages and time.time() - last > 3:
                break
            continue
        if message.error():
            fail(f"consuming {topic}: {message.error()}")
        messages.append(message)
        last = time.time()
    consumer.close()
    return messages


def main():
    work = tempfile.mkdtemp(prefix="hostflow-kafka-")
    compile_protos(work)
    import process_pb2
    import sketch_pb2

    port = free_port()
    broker, broker_log = start_broker(work, port)
    try:
        config = os.path.join(work, "topology.toml")
        with open(config, "w") as f:
            f.write(TOPOLOGY.replace("{port}", str(port)))
        report_path = os.path.join(work, "report.json")
        agent_log = os.path.join(work, "agent.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTFLOW_")}
        agent = subprocess.Popen([BIN, "run", "--config", config, "--report", report_path], cwd=work,
                                 stderr=open(agent_log, "w"), env=env)
        time.sleep(4.5)
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            fail("agent did not stop within 60 s of SIGTERM", agent_log)
        if code != 0:
            fail(f"agent exited {code}", agent_log)
        report = json.load(open(report_path))
        raw_acked = report["components"]["raw"]["sent"]
        sketch_acked = report["components"]["sketch_topic"]["sent"]
        if raw_acked == 0 or sketch_acked == 0:
            fail(f"nothing acknowledged: raw {raw_acked}, sketches {sketch_acked}", agent_log)
        if report["components"]["raw"]["discarded"] or report["components"]["sketch_topic"]["discarded"]:
            fail(f"kafka sinks discarded events: {report['components']}")

        raw = consume(port, "proc.raw.v1", 1)
        rows = 0
        for message in raw:
            envelope = process_pb2.ProcessEnvelope()
            envelope.ParseFromString(message.value())
            if envelope.schema_version != "2.1" or envelope.entity_guid != "test-host-guid":
                fail(f"raw envelope {envelope.schema_version!r} {envelope.entity_guid!r}")
            if message.key() != b"test-host-guid":
                fail(f"raw message key {message.key()!r}")
            rows += len(envelope.top_n_batch.top_n) + len(envelope.top_n_batch.tail)
        if rows != raw_acked:
            fail(f"raw topic holds {rows} rows in {len(raw)} envelopes; the sink acknowledged {raw_acked}")

        sketches = consume(port, "proc.sketch.v1", sketch_acked)
        for message in sketches:
            envelope = sketch_pb2.SketchEnvelope()
            envelope.ParseFromString(message.value())
            if envelope.sketch_version != 1 or envelope.entity_guid != "test-host-guid" or not envelope.metric_name:
                fail(f"sketch envelope {envelope}")
            if message.key() != b"test-host-guid":
                fail(f"sketch message key {message.key()!r}")
        if len(sketches) != sketch_acked:
            fail(f"sketch topic holds {len(sketches)} messages; the sink acknowledged {sketch_acked}")
        for name, messages in (("raw", raw), ("sketch", sketches)):
            partitions = {m.partition() for m in messages}
            if len(partitions) != 1:
                fail(f"{name} messages of one entity guid spread over partitions {partitions}")
        print(f"ok: {rows} raw rows in {len(raw)} ProcessEnvelopes and {len(sketches)} SketchEnvelopes "
              "consumed and decoded; counts equal the sinks' acknowledgements")
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()


if __name__ == "__main__":
    main()
