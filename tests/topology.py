"""The distributed topology on one machine: every part a separate OS process.

What ``docker compose up`` runs, without Docker: a real Kafka broker
(``tests/kafka_broker.py``), a real PostgreSQL catalog
(``tests/postgres_server.py``), a real S3-compatible blob store
(``tests/seaweedfs.py``), the ClickHouse engine behind its HTTP interface
(``tests/clickhouse_http.py``: chDB, since no ClickHouse server can be
installed here), then N ``arwx gateway``, M ``arwx consumer`` and one
``arwx query`` process with exactly the flags a deployment gives them. Used by
``tests/test_topology.py`` (which kills and restarts roles) and by
``scripts/topology`` (people trying it; Ctrl-C stops everything).

    with Topology(gateways=2, consumers=2) as t:
        t.key, t.gateways[0].url, t.query.url

Every helper server runs under the pipe watchdog of ``tests/kafka_broker.py``
or watches its standard input, and every role process gets its parent's death
signal through ``--watch``-free means: the role processes are children of
this process and are stopped by ``stop()``; ``scripts/topology`` stops them on
Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: this repository's tests package
    sys.path.insert(0, str(ROOT))

from tests.kafka_broker import KafkaBroker, free_port  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402
from tests.seaweedfs import SeaweedS3  # noqa: E402


def _wait(cond, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    """One child process whose output is kept; ``ready`` is a line it prints once up."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready: str, log_dir: Path) -> None:
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self, timeout: float = 120.0) -> Proc:
        self.lines = []
        log = open(self.log_path, "a")  # noqa: SIM115 - closed by the pump when the process ends
        # stdin is a pipe nobody writes: the stand-in store stops when it closes (this process died).
        # Own session: Ctrl-C in a terminal reaches only scripts/topology, which stops the parts in order.
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=self.env, text=True, start_new_session=True,
        )

        def pump(p: subprocess.Popen[str]) -> None:
            assert p.stdout is not None
            with log:
                for line in p.stdout:
                    self.lines.append(line)
                    log.write(line)
                    log.flush()

        threading.Thread(target=pump, args=(self.proc,), daemon=True).start()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pump read the last lines
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{''.join(self.lines)[-3000:]}")
            return any(self.ready in ln for ln in self.lines)

        _wait(up, timeout, f"{self.name} to print {self.ready!r}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (the services drain), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        return self.proc.returncode


class Role(Proc):
    """An ``arwx <role>`` process on a fixed port (a restart keeps its address)."""

    def __init__(self, name: str, role: str, flags: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.role = role
        self.port, self.ops_port = free_port(), free_port()
        argv = [sys.executable, "-m", "arwx.cli", role, *flags, "--metrics-port", str(self.ops_port)]
        if role != "consumer":
            argv += ["--port", str(self.port)]
        super().__init__(name, argv, env, "listening on" if role != "consumer" else "running (", log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        """A sample of this process's ``/metrics`` (summed over labels); 0 when absent."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name)] in " {")


class Topology:
    """The helper servers and the arwx role processes; ``start()`` brings all up, ``stop()`` all down."""

    def __init__(self, gateways: int = 2, consumers: int = 2, partitions: int = 4,
                 workdir: Path | None = None, kafka: str | None = None,
                 postgres: PostgresServer | None = None, s3: SeaweedS3 | None = None) -> None:
        """``kafka``, ``postgres``, ``s3``: servers already running (a test session's), used and
        left running; the ones not given are started here and stopped by ``stop()``."""
        self.n_gateways, self.n_consumers, self.partitions = gateways, consumers, partitions
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="arwx-topology-"))
        self.kafka_bootstrap = kafka
        self.broker: KafkaBroker | None = None
        self.pg: PostgresServer | None = postgres
        self.s3: SeaweedS3 | None = s3
        self._own = {"pg": postgres is None, "s3": s3 is None}
        self.store: Proc | None = None
        self.gateways: list[Role] = []
        self.consumers: list[Role] = []
        self.query: Role | None = None
        self.key = ""
        self.tag = secrets.token_hex(4)

    # -- the flags every role gets: what docker-compose.yml and deploy/k8s set

    def flags(self) -> list[str]:
        assert self.store is not None and self.pg is not None and self.s3 is not None
        return [
            "--kafka", self.kafka_bootstrap or "", "--kafka-topic", f"arwx.topology.{self.tag}",
            "--kafka-partitions", str(self.partitions), "--consumer-group", f"arwx-topology-{self.tag}",
            "--clickhouse", self.clickhouse_url, "--catalog", self.catalog_url, "--blobs", self.s3.url,
        ]

    def env(self) -> dict[str, str]:
        assert self.s3 is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARWX_")}
        env.update(self.s3.env)
        env["PYTHONPATH"] = str(ROOT / "services") + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> Topology:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if not self.kafka_bootstrap:
            self.broker = KafkaBroker().start()
            self.kafka_bootstrap = self.broker.bootstrap
        if self.pg is None:
            self.pg = PostgresServer().start()
        self.catalog_url = self.pg.new_database()
        if self.s3 is None:
            self.s3 = SeaweedS3().start()
        ch_port = free_port()
        self.store = Proc(
            "clickhouse", [sys.executable, str(ROOT / "tests" / "clickhouse_http.py"), "--watch-stdin",
                           "--data-dir", str(self.workdir / "clickhouse"), "--port", str(ch_port)],
            dict(os.environ, PYTHONUNBUFFERED="1"), "listening on", logs,
        ).start()
        self.clickhouse_url = f"http://default:@127.0.0.1:{ch_port}/default"
        env, flags = self.env(), self.flags()
        # The first process creates the schema and the catalog's tables; the others find them.
        self.query = Role("query", "query", flags, env, logs).start()
        out = subprocess.run(
            [sys.executable, "-m", "arwx.cli", "keys", "create", "--org", "default", "--name", "topology",
             "--clickhouse", self.clickhouse_url, "--catalog", self.catalog_url],
            env=env, capture_output=True, text=True, timeout=120,
        )
        m = re.search(r"^key: (\S+)$", out.stdout, re.M)
        if out.returncode != 0 or m is None:
            raise RuntimeError(f"arwx keys create failed ({out.returncode}): {out.stdout}{out.stderr}")
        self.key = m.group(1)
        self.gateways = [Role(f"gateway-{i + 1}", "gateway", flags, env, logs) for i in range(self.n_gateways)]
        self.consumers = [Role(f"consumer-{i + 1}", "consumer", flags, env, logs) for i in range(self.n_consumers)]
        for r in [*self.gateways, *self.consumers]:
            r.start()

    def roles(self) -> list[Role]:
        return [r for r in [*self.gateways, *self.consumers, self.query] if r is not None]

    def stop(self) -> None:
        """Roles first (gateways, then consumers drain, then query), then the servers they use."""
        for r in self.roles():
            with contextlib.suppress(Exception):
                r.stop()
        if self.store is not None:
            self.store.stop()
        owned = (self.s3 if self._own["s3"] else None, self.pg if self._own["pg"] else None, self.broker)
        for part in owned:
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        if self._own_dir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Topology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="scripts/topology", description=__doc__.split("\n\n")[0])
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
                   help="an existing broker's bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else start one)")
    a = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t0 = time.monotonic()
    t = Topology(a.gateways, a.consumers, a.partitions, kafka=a.kafka)
    try:
        t.start()
        print(f"\narwx topology up in {time.monotonic() - t0:.0f}s (logs: {t.workdir / 'logs'})", flush=True)
        for r in t.roles():
            print(f"  {r.name:<12} pid {r.pid:<7} {r.url if r.role != 'consumer' else '':<24} "
                  f"metrics http://127.0.0.1:{r.ops_port}/metrics", flush=True)
        print(f"  kafka {t.kafka_bootstrap}  catalog {t.catalog_url}  store {t.clickhouse_url}  blobs {t.s3.url}",  # type: ignore[union-attr]
              flush=True)
        print("\nSend points to any gateway, read from the query service:\n"
              f"  export ARWANDB_BASE_URL={t.gateways[0].url if t.gateways else ''}\n"
              f"  export ARWANDB_API_KEY={t.key}\n"
              f"  curl -H \"Authorization: Bearer $ARWANDB_API_KEY\" {t.query.url}/v1/runs/RUN/integrity\n"
              "Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            dead = [r.name for r in t.roles() if not r.alive()]
            if dead:
                print(f"stopped: {', '.join(dead)} exited (see its log)", file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the topology…", flush=True)
        t.stop()
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
