"""Helpers shared by the testbed checks (imported, never run by the driver:
the driver runs only the files in testbed/checks/).

- `skip(reason)` / `fail(message, log_path)`: the exit protocol of a check
  (77 = skipped, recorded in $HOSTFLOW_SKIP_LOG; under CI=true a skip is a
  failure, because CI must run everything).
- `Tansu`: a real Kafka-protocol broker process on a loopback port, which
  can be killed, stopped, continued and restarted on the same storage.
- `compile_protos`, `consume`: decode payloads with the project's own
  .proto files and read topics with the independent confluent-kafka client.
"""

import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)


def skip(reason):
    if os.environ.get("CI") == "true":
        fail(f"would skip, but CI must run it: {reason}")
    log = os.environ.get("HOSTFLOW_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{CHECK}\t{reason}\n")
    print(f"SKIPPED: {reason}")
    sys.exit(77)


_CHILDREN = []


def register(process):
    """Kills `process` when the check fails, so no agent or broker outlives it."""
    _CHILDREN.append(process)
    return process


def fail(message, log_path=None):
    print(f"FAILED: {message}")
    for child in _CHILDREN:
        if child.poll() is None:
            child.kill()
    for path in [log_path] if isinstance(log_path, str) else (log_path or []):
        if path and os.path.exists(path):
            print(f"--- {path} (tail) ---")
            print("".join(open(path, errors="replace").readlines()[-30:]))
    sys.exit(1)


def hostflow_bin():
    path = os.environ.get("HOSTFLOW_BIN")
    if not path:
        fail("HOSTFLOW_BIN is not set (run through testbed/test)")
    return path


def agent_env():
    """The caller's environment without HOSTFLOW_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HOSTFLOW_")}


_HANDED_OUT = set()


def free_port():
    """A port free now, below Linux's ephemeral range (32768-60999) so that
    no outgoing connection of the agent, a broker or a client takes it
    between this call and the bind, and never one this process handed out
    before (a broker and an agent API asked for one each used to collide)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_kafka_tools():
    """The tansu binary, or a skip; and the Python client, or a skip."""
    tansu = shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
    if not os.path.exists(tansu):
        skip("tansu is not installed (testbed/test installs it with cargo install when root)")
    try:
        import confluent_kafka  # noqa: F401
        import grpc_tools.protoc  # noqa: F401
    except ImportError as error:
        skip(f"python package missing ({error.name}); pip install confluent-kafka grpcio-tools")
    return tansu


class Tansu:
    """A tansu broker on 127.0.0.1:port, working directory `work`.

    storage: "memory" (lost on restart) or "sqlite" (`sqlite://tansu.db`,
    relative to `work`, survives kill + restart)."""

    def __init__(self, binary, work, port, storage="memory"):
        self.binary, self.work, self.port = binary, work, port
        self.engine = "memory://tansu/" if storage == "memory" else "sqlite://tansu.db"
        self.log = os.path.join(work, "tansu.log")
        self.process = None

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        self.process = register(subprocess.Popen(
            [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
             "--storage-engine", self.engine],
            cwd=self.work, stdout=open(self.log, "a"), stderr=subprocess.STDOUT))
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                fail(f"tansu exited with {self.process.returncode}", self.log)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        fail("tansu did not listen within 30 s", self.log)

    def create_topic(self, name, partitions):
        created = subprocess.run([self.binary, "topic", "create", name, "--partitions", str(partitions),
                                  "--broker", self.url], cwd=self.work, capture_output=True, text=True)
        if created.returncode != 0:
            fail(f"tansu topic create {name}: {created.stdout}{created.stderr}", self.log)

    def signal(self, sig):
        self.process.send_signal(sig)

    def kill(self):
        """SIGKILL: no shutdown hook runs, as in a crash."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def compile_protos(out):
    """Compiles schemas/proto/*.proto with grpcio-tools' protoc into `out`
    and makes the modules importable."""
    protos = sorted(glob.glob(os.path.join(ROOT, "schemas", "proto", "*.proto")))
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/schemas/proto",
                             f"--python_out={out}", *protos], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"protoc on schemas/proto failed: {result.stderr}")
    sys.path.insert(0, out)


def consume(port, topic, expected_messages, quiet_secs=3, timeout_secs=60):
    """Every message of `topic` from the beginning, through a consumer group.
    Stops once at least `expected_messages` arrived and the topic stayed
    quiet for `quiet_secs` (so extra messages — duplicates — are caught)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": f"check-{topic}-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages, last = [], time.time()
    deadline = time.time() + timeout_secs
    while time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if len(messages) >= expected_messages and time.time() - last > quiet_secs:
                break
            continue
        if message.error():
            fail(f"consuming {topic}: {message.error()}")
        messages.append(message)
        last = time.time()
    consumer.close()
    return messages


def wait_exit(process, timeout, log_path, what="agent"):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        fail(f"{what} did not exit within {timeout} s", log_path)
