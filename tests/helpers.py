"""Test helpers: a small sync HTTP client, servers in a thread or a process, bounded waits."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from arwx.config import resolve
from arwx.roles import SERVER_ROLES
from arwx.server import Server

ROOT = Path(__file__).resolve().parent.parent


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the thing may not be up yet
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def catalog_url_for(data_dir: Path | str) -> str:
    """The catalog a test server on ``data_dir`` uses: "" (SQLite in the data directory), or with
    ``ARWX_TEST_CATALOG=postgresql`` a database of the test PostgreSQL server named after the
    data directory (so a restart on the same directory finds its catalog again)."""
    if os.environ.get("ARWX_TEST_CATALOG", "sqlite") != "postgresql":
        return ""
    import hashlib

    from tests.postgres_server import shared

    name = "d_" + hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:20]
    return shared().database(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """Just enough HTTP for tests; one kept-alive connection per thread."""

    def __init__(self, url: str, key: str | None, key_header: str = "Authorization") -> None:
        self.url = url
        self.key = key
        self.key_header = key_header  # "Authorization" sends "Bearer <key>"; X-API-Key, X-Auth-Token the key
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self._local = threading.local()

    def with_key(self, key: str | None, key_header: str | None = None) -> Api:
        return Api(self.url, key, key_header or self.key_header)

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return c

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, params: dict | None = None,
        headers: dict | None = None,
    ) -> tuple[int, Any]:
        if params:
            path += "?" + urlencode(params)
        hdrs = dict(headers or {})
        if self.key:
            hdrs[self.key_header] = f"Bearer {self.key}" if self.key_header == "Authorization" else self.key
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        try:
            return resp.status, json.loads(payload) if payload else None
        except ValueError:
            return resp.status, payload.decode(errors="replace")

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body=body, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, out = self.request(method, path, body=body, **kw)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {out}"
        return out

    def receipt(self, run_id: str) -> dict:
        return self.ok("GET", f"/v1/runs/{run_id}/integrity")

    def wait_intact(self, run_id: str, expected: int, timeout: float = 60.0) -> dict:
        """The receipt once every expected point is stored and nothing is pending."""

        def done() -> dict | None:
            r = self.receipt(run_id)
            return r if r["intact"] and r["points_stored"] >= expected and r["pending"] == 0 else None

        try:
            return wait_for(done, timeout, 0.1, f"an intact receipt with {expected} points for {run_id}")
        except AssertionError as e:
            raise AssertionError(f"{e}; last receipt: {self.receipt(run_id)}") from None


def points(run_id: str, writer: str, seqs: range, key: str = "loss", ts0: float = 1.7e9) -> list[dict]:
    """Points as the SDK makes them: step == seq, a deterministic value."""
    return [
        {"run_id": run_id, "writer_id": writer, "seq": s, "step": s, "key": key, "value": s * 0.5, "ts": ts0 + s}
        for s in seqs
    ]


def ndjson(pts: list[dict]) -> bytes:
    return b"".join(json.dumps(p).encode() + b"\n" for p in pts)


class ServerThread:
    """A ``Server`` on its own event loop in a thread, for in-process tests."""

    def __init__(self, roles: frozenset[str] = SERVER_ROLES, **settings: Any) -> None:
        settings.setdefault("port", 0)
        if "catalog_url" not in settings and "data_dir" in settings:
            settings["catalog_url"] = catalog_url_for(settings["data_dir"])
        args = type("Args", (), {k: str(v) for k, v in settings.items()})()
        self.settings = resolve(args, env={})
        self.server = Server(self.settings, roles)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="arwx-test-server")
        self.thread.start()
        self.call(self.server.start())
        self.url = self.server.url

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def new_org_key(self, name: str = "test", scopes: Iterable[str] = ("read", "write", "admin")) -> str:
        """A fresh organization and a key for it (the operator's scopes unless told): tests never share data."""
        tenancy = self.server.tenancy

        async def make() -> str:
            org = await tenancy.create_org(name)
            return (await tenancy.create_key(org, name, frozenset(scopes)))[1]

        return self.call(make())

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class ServerProcess:
    """``arwx server`` as a real process: for kill -9 and restart tests."""

    def __init__(
        self, data_dir: Path, port: int | None = None, extra: list[str] | None = None, env: dict | None = None,
        source: Path = ROOT, catalog: str | None = None,
    ) -> None:
        """``source``: the tree whose ``services/`` runs (another version's, for upgrade tests);
        ``catalog``: its ``--catalog`` ("" SQLite; None: ``catalog_url_for(data_dir)``)."""
        self.data_dir = data_dir
        self.env = env or {}
        self.source = source
        self.catalog = catalog
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.key: str | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = ""

    def start(self, timeout: float = 90.0) -> ServerProcess:
        # A first start (no data directory yet) prints a new key, before "listening on".
        fresh = not self.data_dir.exists()
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = str(self.source / "services") + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "arwx.cli", "server", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if "--catalog" not in self.extra and self.catalog is None:
            self.catalog = catalog_url_for(self.data_dir)
        if self.catalog:
            cmd += ["--catalog", self.catalog]
        self.proc = subprocess.Popen(
            cmd + self.extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        lines: list[str] = []

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line)

        threading.Thread(target=pump, daemon=True).start()

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {''.join(lines)}")
            return any("listening on" in ln for ln in lines)

        wait_for(up, timeout, 0.05, "arwx server to listen")
        self.output = "".join(lines)
        # Only what came before "listening on": a key printed after it would be read or
        # missed depending on the machine's load (that race once made first requests 401).
        key_re = r"ARWANDB_API_KEY=(arwx_live_[A-Za-z0-9_-]+)"
        before = self.output.split("listening on", 1)[0]
        m = re.search(key_re, before)
        if m is None and fresh and self.source != ROOT:
            # An older release (the upgrade tests run one) printed its first key just
            # after "listening on": wait for that line, bounded, for that code only.
            wait_for(lambda: re.search(key_re, "".join(lines)), 15.0, 0.05, "the old release's first key")
            self.output = "".join(lines)
            m = re.search(key_re, self.output)
        if m:
            self.key = m.group(1)
        elif fresh:
            raise RuntimeError(f"a first start printed no API key before 'listening on':\n{self.output}")
        self._lines = lines
        return self

    def api(self) -> Api:
        return Api(self.url, self.key)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def logs(self) -> str:
        return "".join(getattr(self, "_lines", []))


def send_until_acked(api: Api, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 120.0) -> Any:
    """What the SDK does: resend until the gateway acknowledges (server down, 503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, out = api.request("POST", path, body=body, raw=raw)
            if 200 <= status < 300:
                return out
            if status < 500 and status != 429:
                raise AssertionError(f"POST {path} -> {status}: {out}")
        except OSError:
            pass  # refused or reset while the server restarts
        if time.monotonic() > deadline:
            raise AssertionError(f"POST {path} not acknowledged within {timeout}s")
        time.sleep(0.05)


async def new_org_key_in(catalog_url: str, name: str) -> str:
    """A new organization and a key for it, made straight in a catalog (as another process would)."""
    from arwx.catalog import Catalog
    from arwx.tenancy import Tenancy

    catalog = Catalog.open(catalog_url, Path("/nonexistent"))
    await catalog.start()
    try:
        tenancy = Tenancy(catalog)
        org = await tenancy.create_org(name)
        return (await tenancy.create_key(org, name))[1]
    finally:
        await catalog.stop()


def two_org_server(request: Any, tmp_path_factory: Any, label: str, probe: str) -> Iterator[tuple[Api, Api]]:
    """(a, b): clients of two organizations on one real server whose catalog is ``request.param``
    ("sqlite" or "postgresql"); ``probe`` is a GET that answers 200 once b's key has reached it."""

    data = tmp_path_factory.mktemp(f"arwx-{label}-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    srv = ServerProcess(Path(data), catalog=url).start()
    try:
        assert srv.key, srv.output
        other = asyncio.run(new_org_key_in(url, "other"))
        a, b = Api(srv.url, srv.key), Api(srv.url, other)
        # Keys made outside the process reach it within its refresh period.
        wait_for(lambda: b.get(probe)[0] == 200, 10, 0.05, "the second org's key")
        yield a, b
    finally:
        srv.terminate()
