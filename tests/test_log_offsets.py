"""The embedded log's offsets never go backwards: across restarts, trims, and both together.

Regression (issue 10, item 1): offsets were SQLite rowids, and a trim that
deleted the highest row let the next append reuse an offset below the
committed position, where the consumer never reads: acknowledged points were
never stored while the receipt said ``intact``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from arwx.consumer.runner import Consumer, ConsumerConfig
from arwx.log.sqlite_log import SqliteLog
from arwx.query.integrity import receipt
from arwx.runs import Run
from arwx.wire import RunChunk


def _message(org: str, run_id: str, writer: str, seqs: range) -> bytes:
    c = RunChunk(run_id)
    for s in seqs:
        c.add(writer, s, s, 1.7e9 + s, "loss", float(s))
    return c.encode(org, 1.7e9)


async def _consume_all(log: SqliteLog, store) -> None:  # noqa: ANN001
    consumer = Consumer(log, store, ConsumerConfig(commit_interval_s=0.05))
    await consumer.start()
    await consumer.wait_idle(30)
    await consumer.stop()


async def test_points_appended_after_a_restart_that_trimmed_everything_are_stored(embedded, tmp_path: Path) -> None:
    """The issue's scenario: the backlog is stored and trimmed, the process restarts, 30 points
    are acknowledged: all 30 must be stored (they were at offsets below the committed position)."""
    store = embedded.server.store
    org = "org_offsets_" + secrets.token_hex(3)
    run = Run(org, "r", "p", "r", "running", {}, [], 0, None)
    log = SqliteLog(str(tmp_path), retention_s=0)  # trim whatever is consumed
    await log.start()
    await log.append(f"{org}/r", [_message(org, "r", "w", range(0, 10))])
    await _consume_all(log, store)
    assert await log.lag() == 0
    (left,) = log._reader_conn.execute("SELECT count(*) FROM log").fetchone()
    assert left == 0, "the trim must have emptied the log for this scenario"
    await log.stop()

    log = SqliteLog(str(tmp_path), retention_s=0)
    await log.start()
    (a,) = await log.append(f"{org}/r", [_message(org, "r", "w", range(10, 40))])
    assert a.offset > 1, "an offset at or below the committed position was handed out again"
    await _consume_all(log, store)
    r = await receipt(store, log, run)
    assert r["points_stored"] == 40 and r["pending"] == 0 and r["intact"], r
    await log.stop()


async def test_offsets_strictly_increase_across_restart_and_trim_cycles(embedded, tmp_path: Path) -> None:
    """Five cycles of append, consume (the commit trims), restart; with and without a trim
    before the restart, and a restart with nothing consumed: every offset is new and higher."""
    store = embedded.server.store
    org = "org_offsets_cyc_" + secrets.token_hex(3)
    run = Run(org, "r", "p", "r", "running", {}, [], 0, None)
    seen: list[int] = []
    seq = 0
    for cycle in range(5):
        log = SqliteLog(str(tmp_path), retention_s=0 if cycle % 2 == 0 else 3600)
        await log.start()
        for _ in range(3):
            out = await log.append(f"{org}/r", [_message(org, "r", "w", range(seq, seq + 7))])
            seq += 7
            seen += [x.offset for x in out]
        if cycle != 3:  # cycle 3: restart with an unconsumed backlog
            await _consume_all(log, store)
        await log.stop()
    assert seen == sorted(set(seen)), f"offsets reused or out of order: {seen}"
    log = SqliteLog(str(tmp_path), retention_s=0)
    await log.start()
    await _consume_all(log, store)
    r = await receipt(store, log, run)
    assert r["points_stored"] == seq and r["pending"] == 0 and r["intact"], r
    await log.stop()


async def test_two_writers_on_one_file_never_collide(tmp_path: Path) -> None:
    """Two logs open on one file (two processes on one data dir; in the tests, the session's
    embedded server and a second in-process server): appends through either, interleaved, all
    succeed with distinct, increasing offsets.

    Regression: each writer handed out offsets from its own in-memory mark, so after the
    other one appended every append collided on the primary key and answered 503 ("the event
    log is unavailable or full") for every client: running ``tests/test_security.py`` (whose
    limits test starts a second server on the shared store directory) before
    ``tests/test_fuzz_ingest.py`` failed six fuzz tests."""
    a, b = SqliteLog(str(tmp_path)), SqliteLog(str(tmp_path))
    await a.start()
    await b.start()
    try:
        seen: list[int] = []
        for i in range(6):
            log = (a, b)[i % 2] if i < 4 else a  # a, b, a, b, then a twice after b moved the mark
            out = await log.append("org/r", [_message("org", "r", "w", range(i * 5, i * 5 + 5))] * 2)
            seen += [x.offset for x in out]
        assert seen == sorted(set(seen)), f"offsets reused or out of order: {seen}"
        assert a.held()[0] == 12
    finally:
        await a.stop()
        await b.stop()
