"""Fast unit tests of the consumer's pure parts: no server, no store, no broker.

- ``consumer/batching.py``: messages → one columnar batch, ledger rows, commit positions, dedup tokens.
- ``consumer/commit.py``: offsets move only to what was stored; throttled; forced; forgotten on revoke.

The gateway's in-flight budget has its own in ``test_gateway_units.py``.
"""

from __future__ import annotations

import math

import pytest

from arwx.consumer.batching import Batch
from arwx.consumer.commit import OffsetCommitter
from arwx.log.base import LogMessage
from arwx.wire import LOG_FORMAT_VERSION, LogBatch

NAN = float("nan")


def _log_batch(run_id: str, rows: list[tuple[str, int, float]], org: str = "o1") -> LogBatch:
    """One message's points: (writer, seq, value); step == seq, ts from seq."""
    return LogBatch(
        LOG_FORMAT_VERSION, org, run_id, 1.7e9,
        [w for w, _, _ in rows], [s for _, s, _ in rows], [s for _, s, _ in rows],
        [1.7e9 + s for _, s, _ in rows], ["loss"] * len(rows), [v for _, _, v in rows],
    )


def _msg(offset: int, payload: bytes = b"p", partition: int = 0, topic: str = "t") -> LogMessage:
    return LogMessage(topic, partition, offset, "o1/r", payload)


# -- batching -----------------------------------------------------------------


def test_batch_columns_ledger_rows_and_positions() -> None:
    b = Batch()
    b.add(_msg(10, b"a"), _log_batch("r", [("w0", 0, 1.0), ("w0", 1, 2.0), ("w0", 2, NAN)]))
    b.add(_msg(11, b"b"), _log_batch("r", [("w1", 5, 1.0), ("w0", 3, 1.0), ("w1", 4, NAN), ("w1", 6, NAN)]))
    b.add(_msg(7, b"c", partition=1), _log_batch("r", [("w2", 0, 0.5)]))
    assert len(b) == 8 and b.messages == 3 and b.nbytes == 3
    assert b.seq == [0, 1, 2, 5, 3, 4, 6, 0]
    assert b.log_offset == [10, 10, 10, 11, 11, 11, 11, 7]
    assert b.log_partition == [0] * 7 + [1]
    # One ledger row per (message, writer): its seq range, count and skipped (NaN) points.
    ledger = {(row[9], row[2]): row[3:7] for row in b.ledger}
    assert ledger == {
        (10, "w0"): (0, 2, 3, 1),
        (11, "w1"): (4, 6, 3, 2),
        (11, "w0"): (3, 3, 1, 0),
        (7, "w2"): (0, 0, 1, 0),
    }
    assert all(row[7] == "t" and row[0] == "o1" and row[1] == "r" for row in b.ledger)
    # Commit positions: the next offset per partition.
    assert b.positions() == {("t", 0): 12, ("t", 1): 8}
    assert b.ranges == {("t", 0): (10, 11), ("t", 1): (7, 7)}


def test_batch_tables_have_the_store_columns() -> None:
    b = Batch()
    b.add(_msg(0), _log_batch("r", [("w", 0, 1.5), ("w", 1, NAN)]))
    pts = b.points_table(1_700_000_000_000)
    assert pts.num_rows == 2
    assert pts.column("value").to_pylist()[0] == 1.5 and math.isnan(pts.column("value").to_pylist()[1])
    assert pts.column("ts").to_pylist()[0].timestamp() == pytest.approx(1.7e9)
    led = b.ledger_table(1_700_000_000_000)
    assert led.num_rows == 1 and led.column("skipped").to_pylist() == [1]
    # An empty batch still makes well-formed (empty) tables.
    assert Batch().ledger_table(0).num_rows == 0 and Batch().points_table(0).num_rows == 0


def test_dedup_token_depends_on_bytes_and_offsets() -> None:
    def batch(offset: int, payload: bytes) -> Batch:
        b = Batch()
        b.add(_msg(offset, payload), _log_batch("r", [("w", 0, 1.0)]))
        return b

    same = batch(3, b"x")
    assert same.token("pts") == batch(3, b"x").token("pts")  # a retry of the same batch: same token
    assert same.token("pts") != same.token("led")
    assert same.token("pts") != batch(4, b"x").token("pts")  # other offsets
    assert same.token("pts") != batch(3, b"y").token("pts")  # a recreated log: same offsets, other bytes
    assert same.token("pts") == same.token("pts")  # computing it does not consume the digest


# -- the offset committer ----------------------------------------------------------------


class _RecordingReader:
    """Records commits (the committer uses only ``commit``)."""

    def __init__(self, fail: int = 0) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []
        self.fail = fail

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("log down")
        self.commits.append(dict(positions))


async def test_committer_commits_only_what_was_stored_and_never_backwards() -> None:
    reader = _RecordingReader()
    c = OffsetCommitter(reader, interval_s=3600)  # nothing is due by time in this test
    await c.maybe_commit(force=True)
    assert reader.commits == []  # nothing stored, nothing to commit
    c.stored({("t", 0): 5, ("t", 1): 2})
    c.stored({("t", 0): 3})  # an older position never moves the offset back
    await c.maybe_commit(force=True)
    assert reader.commits == [{("t", 0): 5, ("t", 1): 2}]
    await c.maybe_commit(force=True)
    assert len(reader.commits) == 1  # unchanged positions are not committed again
    c.stored({("t", 1): 9})
    await c.maybe_commit(force=True)
    assert reader.commits[-1] == {("t", 1): 9}  # only what moved


async def test_committer_is_throttled_unless_forced() -> None:
    reader = _RecordingReader()
    c = OffsetCommitter(reader, interval_s=3600)
    c.stored({("t", 0): 1})
    await c.maybe_commit(force=True)
    c.stored({("t", 0): 2})
    await c.maybe_commit()  # within the interval: held back
    assert reader.commits == [{("t", 0): 1}]
    assert c.uncommitted() == {("t", 0): 2}
    await c.maybe_commit(force=True)
    assert reader.commits[-1] == {("t", 0): 2} and c.uncommitted() == {}


async def test_committer_keeps_the_position_when_the_commit_fails() -> None:
    reader = _RecordingReader(fail=1)
    c = OffsetCommitter(reader, interval_s=0)
    c.stored({("t", 0): 4})
    with pytest.raises(ConnectionError):
        await c.maybe_commit(force=True)
    assert c.uncommitted() == {("t", 0): 4}  # still owed
    await c.maybe_commit(force=True)
    assert reader.commits == [{("t", 0): 4}]


async def test_committer_forgets_revoked_partitions() -> None:
    reader = _RecordingReader()
    c = OffsetCommitter(reader, interval_s=0)
    c.stored({("t", 0): 4, ("t", 1): 7})
    c.forget([("t", 1)])
    await c.maybe_commit(force=True)
    assert reader.commits == [{("t", 0): 4}]  # the new owner of partition 1 commits it, not us
    c.stored({("t", 1): 3})  # got it back later, at an older position: that is the position now
    assert c.uncommitted() == {("t", 1): 3}
