"""First value wins: a ``(run, writer, seq)`` is stored once, with its first value.

Invariant: for every ``(org, run_id, writer_id, seq)`` the points table (and so
every rollup its materialized views fill) holds only the point of the first log
message that carried that seq; a later point with that seq is dropped before
the insert, and counted: an identical re-send (same key, step and value) is an
ordinary duplicate, anything else is a *conflict*, recorded in
``seq_conflicts`` so the receipt can show it.

This holds because the consumer is the only writer of points and reads each
run's messages in log order (the embedded log is one sequence; Kafka keys
messages by run id, so a run lives in one partition owned by one consumer),
and it screens each batch right before storing it, after every earlier batch
is stored. Screening is cheap in the common case: per (run, writer) this
module keeps a few seq ranges that *may* be stored (a superset: it is loaded
from the ledger, which covers every message stored before the committed log
position, and grown by each stored batch; the one message stored without its
ledger row by a crash is replayed before anything that could re-send it). A
batch whose seqs miss those ranges and repeat nothing within itself is stored
as it is, without a store query; only an overlapping batch reads the exact
stored points of its seqs.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import pyarrow as pa

from arwx.consumer.batching import Batch
from arwx.store.base import Store

WriterKey = tuple[str, str, str]  # (org, run_id, writer_id)
_LOAD_CHUNK = 1000  # writers per ledger query when many are new at once


@dataclass
class Screened:
    """What screening found in one batch (the batch itself is filtered in place)."""

    duplicates: int = 0
    conflicts: list[tuple] = field(default_factory=list)
    # (writer, lo, hi) of every ledger row: what may be stored once the batch is.
    covered: list[tuple[WriterKey, int, int]] = field(default_factory=list)

    def conflicts_table(self) -> pa.Table:
        """Rows for ``seq_conflicts`` (built once per batch: identical on retry)."""
        cols = list(zip(*self.conflicts)) if self.conflicts else [[]] * 15
        return pa.table(
            {
                "org": pa.array(cols[0], pa.string()),
                "run_id": pa.array(cols[1], pa.string()),
                "writer_id": pa.array(cols[2], pa.string()),
                "seq": pa.array(cols[3], pa.uint64()),
                "kept_key": pa.array(cols[4], pa.string()),
                "kept_step": pa.array(cols[5], pa.uint64()),
                "kept_value": pa.array(cols[6], pa.float64()),
                "key": pa.array(cols[7], pa.string()),
                "step": pa.array(cols[8], pa.uint64()),
                "value": pa.array(cols[9], pa.float64()),
                "log_topic": pa.array(cols[10], pa.string()),
                "log_partition": pa.array(cols[11], pa.uint32()),
                "log_offset": pa.array(cols[12], pa.uint64()),
                "log_index": pa.array(cols[13], pa.uint32()),
                "detected_at": pa.array(cols[14], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            }
        )


class _Ranges:
    """Sorted, disjoint, inclusive seq ranges that may be stored (a superset)."""

    __slots__ = ("lo", "hi")

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []

    def overlaps(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.lo, hi)  # ranges starting at or before hi
        return i > 0 and self.hi[i - 1] >= lo

    def add(self, lo: int, hi: int, cap: int) -> None:
        if self.hi and lo == self.hi[-1] + 1:  # the common case: the writer goes on
            self.hi[-1] = max(self.hi[-1], hi)
            return
        i = bisect.bisect_left(self.hi, lo - 1)  # first range that may touch [lo, hi]
        j = i
        while j < len(self.lo) and self.lo[j] <= hi + 1:
            lo, hi = min(lo, self.lo[j]), max(hi, self.hi[j])
            j += 1
        self.lo[i:j] = [lo]
        self.hi[i:j] = [hi]
        while len(self.lo) > cap:  # bounded: merge the two closest ranges (still a superset)
            k = min(range(len(self.lo) - 1), key=lambda k: self.lo[k + 1] - self.hi[k])
            self.hi[k] = self.hi[k + 1]
            del self.lo[k + 1], self.hi[k + 1]


class FirstWins:
    """Screens each batch before it is stored; see the module docstring."""

    def __init__(self, store: Store, max_writers: int = 100_000, max_ranges: int = 32) -> None:
        self.store = store
        self.max_writers = max_writers
        self.max_ranges = max_ranges
        self._known: OrderedDict[WriterKey, _Ranges] = OrderedDict()

    def forget(self) -> None:
        """Partitions moved: another consumer may have stored points since."""
        self._known.clear()

    def stored(self, screened: Screened) -> None:
        """The batch is in the store: its seqs may be stored from now on."""
        for w, lo, hi in screened.covered:
            r = self._known.get(w)
            if r is not None:
                r.add(lo, hi, self.max_ranges)
        # Bounded: the writers seen longest ago go (read again from the ledger if they come back).
        while len(self._known) > self.max_writers:
            self._known.popitem(last=False)

    async def screen(self, batch: Batch, now_ms: int | None = None) -> Screened:
        """Drop from ``batch`` every point whose seq is stored or came earlier
        in the batch; report duplicates and conflicts. Reads the store only
        for writers not seen yet (their ledger ranges, once) and for writers
        whose seqs may overlap."""
        out = Screened()
        per_writer: dict[WriterKey, list[int]] = {}  # writer -> indices of its ledger rows
        for i, row in enumerate(batch.ledger):
            w = (row[0], row[1], row[2])
            per_writer.setdefault(w, []).append(i)
            out.covered.append((w, row[3], row[4]))
        await self._load([w for w in per_writer if w not in self._known])
        suspect = [w for w, rows in per_writer.items() if not self._clear(batch, w, rows)]
        if suspect:
            now_ms = int(time.time() * 1000) if now_ms is None else now_ms
            drop: list[int] = []
            for w in suspect:
                await self._exact(batch, w, per_writer[w], drop, out, now_ms)
            if drop:
                batch.drop(drop)
        return out

    def _clear(self, batch: Batch, w: WriterKey, rows: list[int]) -> bool:
        """No seq of ``w`` in this batch may be stored or repeats: nothing to drop."""
        known = self._known[w]
        self._known.move_to_end(w)
        spans = sorted((batch.ledger[i][3], batch.ledger[i][4], batch.distinct[i]) for i in rows)
        prev_hi = -1
        for lo, hi, distinct in spans:
            if not distinct or lo <= prev_hi or known.overlaps(lo, hi):
                return False
            prev_hi = hi
        return True

    async def _load(self, writers: list[WriterKey]) -> None:
        """Seq ranges of writers first seen since start (or since forget), from
        the ledger: one query for all of them (a batch of many new runs would
        otherwise pay a store round trip per run)."""
        for i in range(0, len(writers), _LOAD_CHUNK):
            chunk = writers[i : i + _LOAD_CHUNK]
            wanted = set(chunk)
            found: dict[WriterKey, tuple[int, int]] = {}
            for org, run, w, lo, hi in await self.store.rows(
                "SELECT org, run_id, writer_id, min(seq_min), max(seq_max) FROM ledger"
                " WHERE org IN {orgs:Array(String)} AND run_id IN {runs:Array(String)}"
                " AND writer_id IN {ws:Array(String)} GROUP BY org, run_id, writer_id",
                {
                    "orgs": sorted({k[0] for k in chunk}),
                    "runs": sorted({k[1] for k in chunk}),
                    "ws": sorted({k[2] for k in chunk}),
                },
            ):
                if (org, run, w) in wanted:  # the IN lists also match other combinations
                    found[(org, run, w)] = (int(lo), int(hi))
            for k in chunk:
                r = _Ranges()
                if k in found:
                    r.add(*found[k], self.max_ranges)
                self._known[k] = r

    async def _exact(
        self, batch: Batch, w: WriterKey, rows: list[int], drop: list[int], out: Screened, now_ms: int
    ) -> None:
        """Walk the writer's points in log order against its stored points."""
        org, run, writer = w
        known = self._known[w]
        idx: list[tuple[int, int]] = []  # (batch row, row of its message's first point)
        for i in rows:
            start, end = batch.spans[i]
            if batch.single_writer[i]:
                idx.extend((j, start) for j in range(start, end))
            else:
                idx.extend((j, start) for j in range(start, end) if batch.writer_id[j] == writer)
        maybe = [batch.seq[j] for j, _ in idx if known.overlaps(batch.seq[j], batch.seq[j])]
        kept: dict[int, tuple[str, int, float]] = {}
        if maybe:
            # Several stored rows for one seq only exist in data written before
            # this rule: the earliest log position is the first value.
            for seq, key, step, value in await self.store.rows(
                "SELECT seq, key, step, value FROM points"
                " WHERE org = {org:String} AND run_id = {run:String} AND writer_id = {w:String}"
                " AND seq BETWEEN {lo:UInt64} AND {hi:UInt64}"
                " ORDER BY seq, log_partition, log_offset LIMIT 1 BY seq",
                {"org": org, "run": run, "w": writer, "lo": min(maybe), "hi": max(maybe)},
            ):
                kept[int(seq)] = (key, int(step), _float(value))
        topics = {p: t for t, p in batch.ranges}
        for j, start in idx:
            s = batch.seq[j]
            first = kept.get(s)
            if first is None:
                kept[s] = (batch.key[j], batch.step[j], batch.value[j])
                continue
            drop.append(j)
            key, step, value = batch.key[j], batch.step[j], batch.value[j]
            if first[0] == key and first[1] == step and _same(first[2], value):
                out.duplicates += 1
            else:
                part = batch.log_partition[j]
                out.conflicts.append(
                    (org, run, writer, s, *first, key, step, value,
                     topics[part], part, batch.log_offset[j], j - start, now_ms)
                )


def _float(v: object) -> float:
    # JSON output writes NaN/inf as null or strings; a stored NaN placeholder is a skipped value.
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # a re-sent skipped value (NaN) is the same point
