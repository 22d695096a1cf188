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

- every raw message is a ProcessEnvelope v2.2 and the Top-N + tail rows in
  them add up to exactly the events the raw sink acknowledged;
- every sketch message is a SketchEnvelope v1, one per acknowledged sketch;
- every message is keyed by the entity guid it carries, so each topic's
  messages sit in one partition (same strategy for both topics).

Exit 77 (skip) when tansu or a Python package is missing outside CI.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
from checklib import Tansu, agent_env, compile_protos, consume, fail, free_port, hostflow_bin, \
    require_kafka_tools, wait_exit  # noqa: E402

BIN = hostflow_bin()
TANSU = require_kafka_tools()
TOPICS = ("proc.raw.v1", "proc.sketch.v1")


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


def main():
    work = tempfile.mkdtemp(prefix="hostflow-kafka-")
    compile_protos(work)
    import process_pb2
    import sketch_pb2

    port = free_port()
    broker = Tansu(TANSU, work, port)
    broker.start()
    for topic in TOPICS:
        broker.create_topic(topic, 3)
    try:
        config = os.path.join(work, "topology.toml")
        with open(config, "w") as f:
            f.write(TOPOLOGY.replace("{port}", str(port)))
        report_path = os.path.join(work, "report.json")
        agent_log = os.path.join(work, "agent.log")
        agent = subprocess.Popen([BIN, "run", "--config", config, "--report", report_path], cwd=work,
                                 stderr=open(agent_log, "w"), env=agent_env())
        time.sleep(4.5)
        agent.send_signal(signal.SIGTERM)
        code = wait_exit(agent, 60, agent_log)
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
            if envelope.schema_version != "2.2" or envelope.entity_guid != "test-host-guid":
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
        broker.stop()


if __name__ == "__main__":
    main()
