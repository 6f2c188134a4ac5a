"""The SDK against a real ``arwx server`` subprocess (skipped until the server is importable)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import arwandb

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SDK)
SERVICES = os.path.join(REPO, "services")
KEY_RE = re.compile(r"ARWANDB_API_KEY=(arwx_live_\S+)")


def _server_cmd() -> list[str] | None:
    exe = os.path.join(REPO, ".venv", "bin", "arwx")
    if os.path.exists(exe):
        return [exe]
    env = {**os.environ, "PYTHONPATH": SERVICES}
    ok = subprocess.run([sys.executable, "-c", "import arwx.cli"], env=env, capture_output=True, timeout=60)
    return [sys.executable, "-m", "arwx.cli"] if ok.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class ArwxServer:
    """``arwx server --port P --data-dir D`` as a subprocess; restartable on the same port and data."""

    def __init__(self, cmd: list[str], data_dir: str) -> None:
        self.cmd = cmd
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 45.0) -> None:
        env = {**os.environ, "PYTHONPATH": SERVICES}
        self.proc = subprocess.Popen(
            [*self.cmd, "server", "--port", str(self.port), "--data-dir", self.data_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        wait_for(self.healthy, timeout, "arwx server /health")
        if self.key is None:
            self.key = wait_for(self._key, 10, "API key line")

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    def _key(self) -> str | None:
        for line in self.output:
            m = KEY_RE.search(line)
            if m:
                return m.group(1)
        return None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def integrity(self, run_id: str) -> dict[str, Any]:
        return self.get(f"/v1/runs/{run_id}/integrity")

    def wait_stored(self, run_id: str, n: int, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the store holds ``n`` points of the run (the consumer commits asynchronously)."""
        last: dict[str, Any] = {}

        def done() -> bool:
            nonlocal last
            try:
                last = self.integrity(run_id)
            except (OSError, urllib.error.URLError):
                return False
            return last.get("points_stored") == n and last.get("pending", 0) == 0

        try:
            wait_for(done, timeout, f"{n} points stored")
        except AssertionError:
            raise AssertionError(f"integrity never reached {n} stored: {json.dumps(last)[:2000]}") from None
        return last

    def env(self) -> dict[str, str]:
        return {"ARWANDB_BASE_URL": self.url, "ARWANDB_API_KEY": self.key or ""}


@pytest.fixture(scope="module")
def server_cmd() -> list[str]:
    cmd = _server_cmd()
    if cmd is None:
        pytest.skip("arwx server not importable yet (PYTHONPATH=services python -m arwx.cli failed)")
    return cmd


@pytest.fixture(scope="module")
def server(server_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArwxServer]:
    s = ArwxServer(server_cmd, str(tmp_path_factory.mktemp("arwx-data")))
    s.start()
    yield s
    s.kill(signal.SIGTERM)


@pytest.fixture
def own_server(server_cmd: list[str], tmp_path) -> Iterator[ArwxServer]:
    """A server this test may kill and restart."""
    s = ArwxServer(server_cmd, str(tmp_path / "arwx-data"))
    s.start()
    yield s
    s.kill()


def child_env(server: ArwxServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARWANDB_", "WANDB_"))}
    return {**env, **server.env(), "PYTHONPATH": SDK, "ARWANDB_SYSTEM_METRICS": "off", **extra}


RANK = r"""
import arwandb, os
run = arwandb.init(project="ddp", config={"world": 8})   # run id from ARWANDB_RUN_ID, writer id from ARWANDB_WRITER_ID
rank = int(os.environ["RANK"])
for step in range(1000):
    run.log({"loss": 1.0 / (step + 1), "lr": 3e-4, f"rank{rank}/x": rank})
run.finish()
"""


def test_eight_ranks_one_run_intact(server: ArwxServer, tmp_path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK],
            env=child_env(
                server,
                RANK=str(r),
                ARWANDB_RUN_ID="ddp8",
                ARWANDB_WRITER_ID=f"rank{r}",
                ARWANDB_DIR=str(tmp_path),
            ),
        )
        for r in range(8)
    ]
    assert [p.wait(60) for p in procs] == [0] * 8
    rec = server.wait_stored("ddp8", 8 * 3000)
    assert rec["intact"] is True and rec["lost"] == 0 and rec["points_committed"] == 24000
    writers = {w["writer_id"]: w for w in rec["writers"]}
    assert sorted(writers) == [f"rank{r}" for r in range(8)]
    for w in writers.values():
        assert (w["sent"], w["stored"], w["seq_min"], w["seq_max"], w["gaps"]) == (3000, 3000, 0, 2999, [])
    for r in range(8):  # nothing was set aside
        assert not os.path.exists(tmp_path / "arwandb" / "ddp8" / f"rank{r}" / "rejected.ndjson")


def test_server_down_at_start_then_up(own_server: ArwxServer, tmp_path) -> None:
    own_server.kill()
    run = arwandb.init(
        id="late1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=own_server.url,
        api_key=own_server.key,
        system_metrics=False,
        flush_interval=0.2,
        finish_timeout=60,
    )
    for i in range(2000):
        run.log({"a": i, "b": -i})
    time.sleep(0.5)  # a few refused connections
    own_server.start()
    for i in range(2000, 3000):
        run.log({"a": i, "b": -i})
    run.finish()
    rec = own_server.wait_stored("late1", 6000)
    assert rec["intact"] and rec["writers"][0]["sent"] == 6000 and rec["writers"][0]["gaps"] == []


def test_server_killed_and_restarted_mid_run(own_server: ArwxServer, tmp_path) -> None:
    run = arwandb.init(
        id="bounce1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=own_server.url,
        api_key=own_server.key,
        system_metrics=False,
        flush_interval=0.1,
        finish_timeout=60,
    )
    stop = threading.Event()
    logged = [0]

    def train() -> None:
        while not stop.is_set() or logged[0] < 3000:
            run.log({"loss": 1.0 / (logged[0] + 1), "acc": 0.5})
            logged[0] += 1
            if logged[0] % 50 == 0:
                time.sleep(0.01)

    t = threading.Thread(target=train)
    t.start()
    wait_for(lambda: logged[0] >= 1000, 20, "training progress")
    own_server.kill()  # kill -9 mid-run
    time.sleep(0.5)
    own_server.start()
    stop.set()
    t.join(30)
    run.finish()
    n = logged[0] * 2
    rec = own_server.wait_stored("bounce1", n)
    assert rec["intact"] and rec["lost"] == 0
    w = rec["writers"][0]
    assert (w["sent"], w["stored"], w["seq_max"], w["gaps"]) == (n, n, n - 1, [])


KILLED = r"""
import arwandb, time
run = arwandb.init(id="kill9", writer_id="w", flush_interval=30)   # big flush interval: most points only in the spool
for i in range(4000):
    run.log({"loss": i * 0.5, "acc": 0.25})
print("LOGGED", flush=True)
time.sleep(120)
"""


def test_kill9_then_sync(server: ArwxServer, tmp_path) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", KILLED],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(server, ARWANDB_DIR=str(tmp_path)),
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "LOGGED"
    time.sleep(0.5)  # the documented bound for rows to reach the spool file
    p.kill()
    p.wait()
    out = subprocess.run(
        [sys.executable, "-m", "arwandb", "sync", str(tmp_path), "--timeout", "30"],
        env=child_env(server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rec = server.wait_stored("kill9", 8000)
    w = rec["writers"][0]
    assert (w["stored"], w["seq_min"], w["seq_max"], w["gaps"]) == (8000, 0, 7999, [])
    assert rec["duplicates_collapsed"] == 0 or rec["points_stored"] == 8000
    again = subprocess.run(
        [sys.executable, "-m", "arwandb", "sync", str(tmp_path)],
        env=child_env(server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(again.stdout)["uploaded"] == 0  # exactly once


def test_offline_then_sync(server: ArwxServer, tmp_path) -> None:
    run = arwandb.init(
        project="off", id="offline1", writer_id="w", dir=str(tmp_path), mode="offline", system_metrics=False
    )
    for i in range(1500):
        run.log({"a": i, "b": 2 * i})
    run.finish()
    s = arwandb.sync(str(tmp_path), base_url=server.url, api_key=server.key, timeout=30)
    assert s["uploaded"] == 3000 and s["pending"] == 0
    rec = server.wait_stored("offline1", 3000)
    assert rec["intact"] and rec["status"] == "finished" and rec["writers"][0]["sent"] == 3000
    assert arwandb.sync(str(tmp_path), base_url=server.url, api_key=server.key)["uploaded"] == 0
    assert server.integrity("offline1")["points_committed"] == 3000  # nothing re-sent


def test_nan_inf_skipped_and_counted(server: ArwxServer, tmp_path) -> None:
    run = arwandb.init(
        id="nan1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=server.url,
        api_key=server.key,
        system_metrics=False,
        flush_interval=0.1,
    )
    for i in range(500):
        run.log({"loss": float("nan") if i % 10 == 0 else 1.0 / (i + 1), "inf": float("inf"), "ok": i})
    run.finish()
    assert run.skipped == 50 + 500
    rec = server.wait_stored("nan1", 1500)
    assert rec["intact"] and rec["skipped"] == 550 and rec["writers"][0]["gaps"] == []
    rows = server.get("/v1/runs/nan1/metrics?keys=loss&limit=1000")["rows"]
    vals = [r["loss"] for r in rows if "loss" in r and r["loss"] is not None]
    assert len(vals) == 450


@pytest.fixture(autouse=True, scope="module")
def _cleanup_runs() -> Iterator[None]:
    yield
    arwandb.finish()
