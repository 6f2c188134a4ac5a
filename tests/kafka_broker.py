"""A real single-node Apache Kafka broker (KRaft) for tests.

The broker jars come from Maven Central once and are cached under
``~/.cache/arwx/kafka-<version>/lib`` (override with ``ARWX_KAFKA_CACHE``); the
Maven repository ``~/.m2`` keeps the downloaded artifacts too, so later runs
are offline.

    with KafkaBroker() as broker:
        use(broker.bootstrap)          # "127.0.0.1:PORT"

CLI::

    python tests/kafka_broker.py fetch   # download the jars, print the lib dir
    python tests/kafka_broker.py run     # start a broker, print bootstrap, wait for Ctrl-C

The java process runs under a tiny Python watchdog that reads a pipe from this
process: when this process dies for any reason (even SIGKILL) the pipe closes
and the watchdog kills the broker, so no broker outlives its test run.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

KAFKA_VERSION = "4.1.0"
SCALA_VERSION = "2.13"
# Kafka 4.1 depends on slf4j-api 1.7.x; a matching simple binding keeps the
# broker's logs at WARN (into broker.log in the temp dir) instead of NOP.
SLF4J_VERSION = "1.7.36"

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>arwx</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{SLF4J_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{SLF4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

JVM_OPTS = [
    "-Xmx512m",
    "-Xms128m",
    # Fast startup on a small machine: C1 only, serial GC, no big code cache.
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
]

# Runs as the parent of java: forwards SIGTERM/SIGINT, and once stdin (a pipe
# from the test process) reaches EOF, i.e. the test process died, kills java
# and removes the broker's temp dir (argv[1]).
_WATCHDOG = r"""
import shutil, signal, subprocess, sys, threading
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda sig, _f: p.send_signal(sig))
def watch():
    sys.stdin.buffer.read()
    p.kill()
    p.wait()
    shutil.rmtree(sys.argv[1], ignore_errors=True)
threading.Thread(target=watch, daemon=True).start()
while True:
    try:
        sys.exit(p.wait())
    except InterruptedError:
        pass
"""


class BrokerError(RuntimeError):
    """The broker could not be fetched or started."""


def cache_dir() -> Path:
    """Where the broker jars are cached."""
    env = os.environ.get("ARWX_KAFKA_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "arwx" / f"kafka-{KAFKA_VERSION}"


def fetch(timeout_s: float = 600.0) -> Path:
    """Download the broker jars with Maven (once); return the lib directory."""
    root = cache_dir()
    lib = root / "lib"
    marker = root / ".complete"
    if marker.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent fetches (several test processes at once).
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return lib
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is not on PATH; cannot fetch the Kafka broker jars")
        (root / "pom.xml").write_text(POM)
        shutil.rmtree(lib, ignore_errors=True)
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(root / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"Maven fetch of Kafka {KAFKA_VERSION} timed out after {timeout_s}s") from e
        if res.returncode != 0 or not any(lib.glob(f"kafka_{SCALA_VERSION}-*.jar")):
            tail = (res.stdout + res.stderr)[-3000:]
            raise BrokerError(f"Maven fetch of Kafka {KAFKA_VERSION} failed (rc={res.returncode}):\n{tail}")
        marker.write_text(KAFKA_VERSION + "\n")
    return lib


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_cluster_id() -> str:
    # Kafka's Uuid string form: 16 random bytes, url-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _kafka_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def metadata_ready(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True if the broker answers a Metadata request listing at least one broker.

    The broker only processes requests once it is registered and unfenced, so
    an answer means producers and admin clients can use it.
    """
    # Metadata v4 (non-flexible; still supported by Kafka 4.x): all topics, no auto-create.
    body = struct.pack(">i", -1) + b"\x00"
    req = struct.pack(">hhi", 3, 4, 7) + _kafka_str("arwx-test-ready") + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(struct.pack(">i", len(req)) + req)
            head = _recv_exact(s, 4)
            resp = _recv_exact(s, struct.unpack(">i", head)[0])
    except OSError:
        return False
    # correlation_id, throttle_time_ms, brokers array length
    corr, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
    return corr == 7 and n_brokers >= 1


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


_LIVE: set[KafkaBroker] = set()


def _stop_all() -> None:
    for b in list(_LIVE):
        with contextlib.suppress(Exception):
            b.stop()


atexit.register(_stop_all)


class KafkaBroker:
    """A single-node KRaft Kafka (broker + controller) on free loopback ports.

    ``start()`` fetches the jars if needed, formats storage in a temp dir and
    waits (bounded) until the broker answers metadata requests. ``stop()``
    terminates it and removes the temp dir. ``kill9()`` + ``restart()`` are for
    fault tests: the restart reuses the same ports and data directory.
    """

    def __init__(self, start_timeout_s: float = 60.0, stop_timeout_s: float = 15.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port = 0
        self.controller_port = 0
        self.workdir: Path | None = None
        self._lib: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the running broker."""
        if not self.port:
            raise BrokerError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr (WARN and above)."""
        assert self.workdir is not None
        return self.workdir / "broker.log"

    # -- lifecycle -----------------------------------------------------

    def start(self) -> KafkaBroker:
        """Fetch, format and start the broker; return once it serves requests."""
        if self._proc is not None:
            return self
        self._lib = fetch()
        self.workdir = Path(tempfile.mkdtemp(prefix="arwx-kafka-"))
        _LIVE.add(self)
        try:
            self.port, self.controller_port = free_port(), free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()
            self._write_config()
            self._format()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the broker, SIGKILL after ``stop_timeout_s``; remove the temp dir."""
        self._terminate(graceful=True)
        _LIVE.discard(self)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill9(self) -> None:
        """Kill the broker with SIGKILL (crash), keeping ports and data for ``restart()``."""
        self._terminate(graceful=False)

    def restart(self) -> None:
        """Start the broker again on the same ports and data dir (after ``kill9``/crash)."""
        if self.workdir is None:
            raise BrokerError("restart() needs a broker that was started and not stop()ped")
        self._terminate(graceful=True)
        self._launch()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTS, "-cp", f"{self._lib}/*", main, *args]

    def _write_config(self) -> None:
        assert self.workdir is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            # Fewer offsets partitions: the group coordinator is ready sooner.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Classic-protocol groups (aiokafka): notice dead members quickly.
            "group.min.session.timeout.ms": "1000",
            # After a kill -9 the controller keeps the old broker registration until
            # its session expires (default 9 s); a short session makes restart() fast.
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            # Two cores: keep thread pools small.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (self.workdir / "server.properties").write_text(text)

    def _format(self) -> None:
        assert self.workdir is not None
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            # "=" form: a random id may start with "-", which argparse would take for a flag.
            f"--cluster-id={_random_cluster_id()}",
            "-c",
            str(self.workdir / "server.properties"),
        )
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.start_timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BrokerError("kafka storage format timed out") from e
        if res.returncode != 0:
            raise BrokerError(
                f"kafka storage format failed (rc={res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}"
            )

    def _launch(self) -> None:
        assert self.workdir is not None
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        cmd = [
            sys.executable,
            "-c",
            _WATCHDOG,
            str(self.workdir),
            *self._java("kafka.Kafka", str(self.workdir / "server.properties")),
        ]
        # Own session: Ctrl-C in a terminal does not hit the broker directly, and
        # kill9() can SIGKILL watchdog + java as one process group.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"kafka broker exited with rc={self._proc.returncode}:\n{self._log_tail()}")
            if metadata_ready("127.0.0.1", self.port):
                return
            time.sleep(0.2)
        raise BrokerError(f"kafka broker not ready after {self.start_timeout_s}s:\n{self._log_tail()}")

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no broker log)"

    def _terminate(self, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if graceful:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(self.stop_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        elif proc is not None:
            # The watchdog is gone; make sure no java is left in its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "run"
    if cmd == "fetch":
        print(fetch())
        return 0
    if cmd == "run":
        t0 = time.monotonic()
        with KafkaBroker() as broker:
            print(
                f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}  (started in {time.monotonic() - t0:.1f}s; "
                f"log: {broker.log_path}; Ctrl-C to stop)",
                flush=True,
            )
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
        return 0
    print(f"usage: {argv[0]} fetch|run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
