"""The consumer against store failures (issue 10, item 2), with the real chDB store.

A failure is injected where the real one comes from: chDB's session raises its
own error type (``ChdbError``) with ClickHouse's code, exactly as a full disk
does (``Code: 243 ... NOT_ENOUGH_SPACE``) while ``SELECT 1`` still answers.
The store classifies it; the consumer must pause and retry, never dead-letter.
(``tests/test_faults.py`` does the same with a real full filesystem.)
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from chdb._exceptions import ChdbError

from arwx import metrics
from arwx.consumer.runner import Consumer, ConsumerConfig
from arwx.log.sqlite_log import SqliteLog
from arwx.query.integrity import receipt
from arwx.runs import Run
from arwx.wire import RunChunk
from tests.helpers import ROOT, Api, free_port, points, wait_for

FULL = "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"
BAD = "Code: 6. DB::Exception: Cannot parse string 'x' as UInt64. (CANNOT_PARSE_TEXT)"


def _message(org: str, run_id: str, writer: str, seqs: range) -> bytes:
    c = RunChunk(run_id)
    for s in seqs:
        c.add(writer, s, s, 1.7e9 + s, "loss", float(s))
    return c.encode(org, 1.7e9)


class _FailingSession:
    """chDB's session, raising ``error`` for inserts into ``table`` while ``fail(sql)`` says so."""

    def __init__(self, real, table: str, error: str, fail) -> None:  # noqa: ANN001
        self.real, self.table, self.error, self.fail = real, table, error, fail
        self.raised = 0

    def query(self, sql, fmt="CSV", params=None):  # noqa: ANN001, ANN201
        if sql.startswith(f"INSERT INTO {self.table} ") and self.fail(sys._getframe(1).f_locals.get("arwx_batch")):
            self.raised += 1
            raise ChdbError(self.error)
        # chDB's Python() table function looks the Arrow table up by name in the caller's frame.
        arwx_batch = sys._getframe(1).f_locals.get("arwx_batch")  # noqa: F841
        return self.real.query(sql, fmt, params=params) if params else self.real.query(sql, fmt)

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self.real, name)


def _chdb(embedded):  # noqa: ANN001, ANN202
    return embedded.server.store.inner


def _run(org: str) -> Run:
    return Run(org, "r", "p", "r", "running", {}, [], 0, None)


async def _dead_letters(store, topic: str) -> list[tuple]:  # noqa: ANN001
    return await store.rows(
        "SELECT log_offset, reason FROM dead_letters FINAL WHERE log_topic = {t:String} ORDER BY log_offset",
        {"t": topic},
    )


async def test_a_full_store_pauses_the_consumer_and_nothing_is_dead_lettered(embedded, tmp_path: Path) -> None:
    """NOT_ENOUGH_SPACE while ``SELECT 1`` answers: an outage. The consumer pauses (``paused``,
    the gauge), retries the same batch, and stores every point once space is back."""
    store, chdb = embedded.server.store, _chdb(embedded)
    org = "org_full_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    for start in range(0, 600, 100):
        await log.append(f"{org}/r", [_message(org, "r", "w", range(start, start + 100))])
    disk_full = True
    real = chdb._session
    chdb._session = _FailingSession(real, "points", FULL, lambda _t: disk_full)
    consumer = Consumer(log, store, ConsumerConfig(commit_interval_s=0.05))
    try:
        await consumer.start()
        deadline = time.monotonic() + 30
        while chdb._session.raised < 3:
            assert time.monotonic() < deadline, "the consumer never tried to store"
            await asyncio.sleep(0.05)
        assert await _dead_letters(store, log.topic) == [], "a full store is an outage, not bad data"
        assert await log.lag() == 6, "nothing may be committed while the store is full"
        assert consumer.paused and "NOT_ENOUGH_SPACE" in consumer.paused
        assert metrics.CONSUMER_PAUSED._value.get() == 1
        disk_full = False  # space is freed
        await consumer.wait_idle(60)
    finally:
        chdb._session = real
        await consumer.stop()
    assert consumer.paused is None and metrics.CONSUMER_PAUSED._value.get() == 0
    assert await _dead_letters(store, log.topic) == []
    r = await receipt(store, log, _run(org))
    assert r["points_stored"] == 600 and r["intact"] and r["pending"] == 0, r
    await log.stop()


async def test_a_refused_message_is_dead_lettered_whole_and_the_rest_stored(embedded, tmp_path: Path) -> None:
    """The store refuses one message's rows (a parse error, not an outage): that message is
    dead-lettered with its original bytes, so it can be replayed; its neighbours are stored."""
    store, chdb = embedded.server.store, _chdb(embedded)
    org = "org_refused_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    payloads = [_message(org, "r", "w", range(s, s + 50)) for s in range(0, 150, 50)]
    offsets = [(await log.append(f"{org}/r", [p]))[0].offset for p in payloads]
    real = chdb._session

    def refuse(table) -> bool:  # noqa: ANN001 - the batch holding seq 50..99 is refused
        return table is not None and 60 in table.column("seq").to_pylist()

    chdb._session = _FailingSession(real, "points", BAD, refuse)
    try:
        consumer = Consumer(log, store, ConsumerConfig(commit_interval_s=0.05))
        await consumer.start()
        await consumer.wait_idle(60)
        await consumer.stop()
    finally:
        chdb._session = real
    dead = await _dead_letters(store, log.topic)
    assert [d[0] for d in dead] == [offsets[1]], dead
    assert "CANNOT_PARSE_TEXT" in dead[0][1]
    (raw,) = await store.rows(
        "SELECT hex(payload) FROM dead_letters FINAL WHERE log_topic = {t:String}", {"t": log.topic}
    )
    assert bytes.fromhex(raw[0]) == payloads[1], "the dead letter must keep the whole original message"
    r = await receipt(store, log, _run(org))
    assert r["points_stored"] == 100, r
    await log.stop()


def test_a_dead_consumer_task_stops_the_process_loudly(tmp_path: Path) -> None:
    """A consumer task that dies takes the process down with exit code 1 and a log line,
    instead of leaving a gateway acknowledging what no consumer will ever store."""
    port = free_port()
    code = (
        "import sys, arwx.consumer.runner as r\n"
        "async def boom(self, batch):\n"
        "    raise RuntimeError('injected bug in the writer')\n"
        "r.Consumer._store = boom\n"
        "from arwx.cli import main\n"
        f"sys.exit(main(['server', '--port', '{port}', '--data-dir', {str(tmp_path / 'data')!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    out: list[str] = []
    import threading

    threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True).start()
    try:
        key = wait_for(lambda: re.search(r"ARWANDB_API_KEY=(\S+)", "".join(out)), 90, 0.05, "the server").group(1)
        api = Api(f"http://127.0.0.1:{port}", key)
        api.ok("POST", "/v1/runs", {"id": "r"})
        api.ok("POST", "/v1/ingest", {"points": points("r", "w", range(10))})
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    text = "".join(out)
    assert rc == 1, text[-3000:]
    assert "injected bug in the writer" in text and "background task died" in text, text[-3000:]


async def test_the_chdb_store_classifies_its_own_errors(embedded) -> None:
    """Refused data is ``StoreRejected``; a full disk is ``StoreUnavailable`` whatever a ping says;
    anything else (a query bug) stays itself, so HTTP answers 500 and the consumer still pauses."""
    from arwx.store.base import StoreRejected, StoreUnavailable
    from arwx.store.errors import classify

    store = embedded.server.store
    try:
        await store.rows("SELECT toUInt64({v:String})", {"v": "not a number"})
    except StoreRejected as e:
        assert "CANNOT_PARSE" in str(e)
    else:
        raise AssertionError("a value the store cannot parse must be StoreRejected")
    try:
        await store.rows("SELECT * FROM no_such_table")
    except (StoreRejected, StoreUnavailable):
        raise AssertionError("a query bug is neither an outage nor bad data") from None
    except ChdbError:
        pass
    assert isinstance(classify(ChdbError(FULL)), StoreUnavailable)
    assert isinstance(classify(OSError("[Errno 30] Read-only file system: '/data'")), StoreUnavailable)
