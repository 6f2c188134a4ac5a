"""Pure SDK behaviour against a stdlib fake server: hot path, seqs, NaN, retry, set-aside, spool."""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fake_server import FakeServer

import arwandb
from arwandb.spool import WriterSpool

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def spool_lines(root: str, run_id: str, writer_id: str) -> list[dict]:
    out = []
    for seg in sorted(glob.glob(os.path.join(root, "arwandb", run_id, writer_id, "seg-*.ndjson"))):
        with open(seg) as f:
            out.extend(json.loads(line) for line in f)
    return out


def test_log_hot_path_touches_no_disk_or_network(fake: FakeServer, tmp_path) -> None:
    run = arwandb.init(
        project="p",
        id="hot1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=fake.url,
        flush_interval=0.05,
        system_interval=1,
    )
    me = threading.get_ident()
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple) -> None:
        if (
            active[0]
            and threading.get_ident() == me
            and event.split(".")[0] in ("open", "socket", "os", "subprocess")
        ):
            seen.append(event)

    sys.addaudithook(hook)  # cannot be removed: the flag turns it off after the test
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        if threading.get_ident() == me:
            seen.append("os.write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if threading.get_ident() == me:
            seen.append("os.fsync")
        return real_fsync(fd)

    os.write, os.fsync = write, fsync
    try:
        times = []
        for i in range(20_000):
            t0 = time.perf_counter_ns()
            run.log({"loss": 1.0 / (i + 1), "lr": 0.1, "acc": 0.5, "g": 2.0})
            times.append(time.perf_counter_ns() - t0)
    finally:
        active[0] = False
        os.write, os.fsync = real_write, real_fsync
    assert seen == [], f"log() did I/O on the caller's thread: {sorted(set(seen))}"
    assert statistics.median(times) / 1000 < 5.0, "log() median above 5 µs"
    wait_for(lambda: fake.count("hot1", "w") == 80_000, what="upload")
    run.finish()
    assert fake.finishes[-1]["writer_totals"]["w"] == 80_000


def test_seq_contiguous_steps_and_commit(tmp_path) -> None:
    run = arwandb.init(id="seq1", writer_id="r0", dir=str(tmp_path), mode="offline", system_metrics=False)
    for i in range(300):
        run.log({"a": i, "b": {"c": i}} if i % 2 else {"a": i})
    run.log({"x": 1}, commit=False)
    run.log({"y": 2})
    run.log({"z": 3}, step=1000)
    run.log({"z": 4})
    run.finish()
    lines = spool_lines(str(tmp_path), "seq1", "r0")
    assert [p["seq"] for p in lines] == list(range(len(lines)))
    assert len(lines) == 150 + 150 * 2 + 4
    by_key = {(p["key"], p["step"]) for p in lines}
    assert ("b.c", 299) in by_key and ("x", 300) in by_key and ("y", 300) in by_key
    assert ("z", 1000) in by_key and ("z", 1001) in by_key


def test_nan_inf_and_non_numeric_skipped_and_counted(tmp_path) -> None:
    run = arwandb.init(id="nan1", writer_id="r0", dir=str(tmp_path), mode="offline", system_metrics=False)
    run.log(
        {
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": -float("inf"),
            "s": "x",
            "b": True,
            "n": None,
            "ok": 1,
        }
    )
    run.log("not a dict")  # type: ignore[arg-type]  # warns, never raises
    run.finish()
    assert run.skipped == 6
    lines = spool_lines(str(tmp_path), "nan1", "r0")
    assert [p["seq"] for p in lines] == list(range(7))  # skipped values keep their seq (sent as null)
    assert {p["key"]: p["value"] for p in lines}["ok"] == 1.0
    assert sum(p["value"] is None for p in lines) == 6


def test_503_retry_after_is_honoured(fake: FakeServer, tmp_path) -> None:
    fake.script = [(503, {"Retry-After": "1"})]
    run = arwandb.init(
        id="ra1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=fake.url,
        flush_interval=0.05,
        system_metrics=False,
    )
    for i in range(10):
        run.log({"v": i})
    wait_for(lambda: fake.count("ra1") == 10, what="points after 503")
    ingest = [r for r in fake.requests if r[1].startswith("/v1/ingest")]
    assert ingest[0][2] == 503 and ingest[1][2] == 200
    assert ingest[1][3] - ingest[0][3] >= 0.95, "Retry-After: 1 not honoured"
    run.finish()


def test_401_is_reported_and_retried(fake: FakeServer, tmp_path, caplog) -> None:
    fake.script = [(401, {}), (401, {})]
    with caplog.at_level(logging.WARNING, logger="arwandb"):
        run = arwandb.init(
            id="auth1",
            writer_id="w",
            dir=str(tmp_path),
            base_url=fake.url,
            flush_interval=0.05,
            system_metrics=False,
        )
        run.log({"v": 1})
        wait_for(lambda: fake.count("auth1") == 1, what="points after 401")
        run.finish()
    assert sum("API key" in r.getMessage() for r in caplog.records) == 1


def test_400_points_set_aside_once(fake: FakeServer, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="arwandb"):
        run = arwandb.init(
            id="bad1",
            writer_id="w",
            dir=str(tmp_path),
            base_url=fake.url,
            flush_interval=0.05,
            system_metrics=False,
        )
        for i in range(50):
            run.log({"good": i, fake.bad_key: i} if i == 7 else {"good": i})
        wait_for(lambda: fake.count("bad1") == 50, what="good points")
        run.finish()
    rej_path = os.path.join(str(tmp_path), "arwandb", "bad1", "w", "rejected.ndjson")
    with open(rej_path) as f:
        rejected = [json.loads(line) for line in f]
    assert len(rejected) == 1 and rejected[0]["point"]["key"] == fake.bad_key and rejected[0]["status"] == 400
    assert sum("set aside" in r.getMessage() for r in caplog.records) == 1
    n_ingest = sum(1 for r in fake.requests if r[1].startswith("/v1/ingest"))
    assert n_ingest <= 3  # batch 400 -> one stream resend -> done; never retried
    assert fake.finishes[-1]["writer_totals"] == {"w": 51}


def test_offline_then_sync_exactly_once(fake: FakeServer, tmp_path) -> None:
    run = arwandb.init(
        project="p", id="off1", writer_id="w", dir=str(tmp_path), mode="offline", system_interval=1
    )
    for i in range(2000):
        run.log({"v": i})
    run.finish()
    assert fake.requests == []
    s = arwandb.sync(str(tmp_path), base_url=fake.url, timeout=20)
    assert s["uploaded"] >= 2000 and s["pending"] == 0
    assert fake.count("off1", "w") == 2000
    assert fake.runs["off1"]["project"] == "p"
    assert any(f["writer_totals"].get("w") == 2000 for f in fake.finishes)
    n = len(fake.requests)
    s2 = arwandb.sync(str(tmp_path), base_url=fake.url, timeout=20)
    assert s2["uploaded"] == 0 and len(fake.requests) == n  # nothing re-sent


CHILD = r"""
import sys, time
sys.path.insert(0, {sdk!r})
import arwandb
run = arwandb.init(id="crash1", writer_id="w", dir={d!r}, base_url={url!r}, system_metrics=False)
for i in range(3000):
    run.log({{"v": i}})
print("LOGGED", flush=True)
time.sleep(60)
"""


def test_spool_resume_after_kill9(fake: FakeServer, tmp_path) -> None:
    code = CHILD.format(sdk=SDK, d=str(tmp_path), url=dead_url())
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "LOGGED"
    time.sleep(0.5)  # the documented bound: rows reach the OS within ~0.1 s
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    run = arwandb.init(
        id="crash1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=fake.url,
        flush_interval=0.05,
        system_metrics=False,
    )
    assert run.step == 3000  # the step axis continues
    run.log({"v": -1})
    wait_for(lambda: fake.count("crash1", "w") == 3001, what="resumed spool upload")
    run.finish()
    assert fake.points[("crash1", "w", 3000)]["step"] == 3000
    assert fake.finishes[-1]["writer_totals"] == {"w": 3001}


def test_spool_resume_at_the_servers_position(tmp_path) -> None:
    # Behind the spool: the server holds seqs 0..1, the spool 0..2: seq 2 is uploaded next.
    sp = WriterSpool(str(tmp_path / "a"), "w")
    sp.append(b'{"seq":0}\n{"seq":1}\n{"seq":2}\n', 3)
    sp.resume_at(2)
    assert (sp.acked, sp.next_seq, sp.read(2, 10)) == (2, 3, [b'{"seq":2}'])
    sp.close()
    # Ahead of the spool (another machine wrote 0..9): the stale lines go, a segment starts at 10.
    sp = WriterSpool(str(tmp_path / "b"), "w")
    sp.append(b'{"seq":0}\n', 1)
    sp.resume_at(10)
    assert (sp.acked, sp.next_seq) == (10, 10)
    sp.append(b'{"seq":10}\n', 1)
    assert sp.read(10, 10) == [b'{"seq":10}']
    sp.close()
    sp = WriterSpool(str(tmp_path / "b"), "w")  # and so it reads back after a restart
    assert (sp.acked, sp.next_seq, sp.read(10, 10)) == (10, 11, [b'{"seq":10}'])
    sp.close()


def test_torn_tail_is_truncated(tmp_path) -> None:
    sp = WriterSpool(str(tmp_path), "w")
    sp.append(b'{"seq":0,"step":4}\n{"seq":1,"step":5}\n', 2)
    sp.close()
    with open(glob.glob(str(tmp_path / "w" / "seg-*"))[0], "ab") as f:
        f.write(b'{"seq":2,"st')
    sp = WriterSpool(str(tmp_path), "w")
    assert sp.next_seq == 2 and sp.last_step == 5
    assert sp.read(0, 10) == [b'{"seq":0,"step":4}', b'{"seq":1,"step":5}']
    sp.close()


def test_wandb_env_and_disabled_mode(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = arwandb.init(project="p")
    arwandb.log({"a": 1})
    arwandb.finish()
    assert run.mode == "disabled" and not os.path.exists(tmp_path / "arwandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_RUN_ID", "envrun")
    monkeypatch.setenv("ARWANDB_WRITER_ID", "rank3")
    monkeypatch.setenv("WANDB_BASE_URL", "http://example.invalid:1")
    monkeypatch.setenv("ARWANDB_SYSTEM_INTERVAL", "0.1")
    run = arwandb.init()
    assert (run.id, run.writer_id, run.mode) == ("envrun", "rank3", "offline")
    assert run.settings.base_url == "http://example.invalid:1" and run.settings.system_interval == 1.0
    arwandb.finish()
    assert os.path.isdir(tmp_path / "arwandb" / "envrun" / "rank3")


def test_finish_is_bounded_when_server_is_down(tmp_path) -> None:
    run = arwandb.init(
        id="down1",
        writer_id="w",
        dir=str(tmp_path),
        base_url=dead_url(),
        system_metrics=False,
        finish_timeout=1.0,
    )
    for i in range(100):
        run.log({"v": i})
    t0 = time.monotonic()
    run.finish()
    assert time.monotonic() - t0 < 4.0
    fin = json.loads((tmp_path / "arwandb" / "down1" / "w" / "finish.json").read_text())
    assert fin == {"status": "finished", "total": 100, "last_step": 99, "sent": False}
