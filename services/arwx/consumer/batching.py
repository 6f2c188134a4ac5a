"""Decoded log messages accumulate into one columnar batch for the store."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from arwx.log.base import LogMessage
from arwx.wire import LogBatch, fold_seq_ranges


def _ms_timestamps(seconds: list[float]) -> pa.Array:
    ms = pc.floor(pc.multiply(pa.array(seconds, pa.float64()), 1000.0))
    return ms.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


@dataclass
class Batch:
    """Points and ledger rows of consecutive log messages, plus their positions."""

    started: float = field(default_factory=time.monotonic)
    digest: hashlib.blake2b = field(default_factory=lambda: hashlib.blake2b(digest_size=16))
    nbytes: int = 0
    messages: int = 0
    # points columns
    org: list[str] = field(default_factory=list)
    run_id: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    writer_id: list[str] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    log_partition: list[int] = field(default_factory=list)
    log_offset: list[int] = field(default_factory=list)
    # one ledger row per (message, writer); these columns stay whole when
    # points are dropped as re-sends (the ledger counts what the log carried)
    ledger: list[tuple] = field(default_factory=list)
    # per ledger row, for first-wins screening: the rows of its message, whether
    # the writer's seqs in it are all different, whether it is the only writer
    spans: list[tuple[int, int]] = field(default_factory=list)
    distinct: list[bool] = field(default_factory=list)
    single_writer: list[bool] = field(default_factory=list)
    # (topic, partition) -> (first offset, last offset) in this batch
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    # the decoded messages themselves (already in memory): a message the store
    # refuses is dead-lettered whole, with its original bytes
    sources: list[LogMessage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seq)

    def age(self) -> float:
        return time.monotonic() - self.started

    def add(self, msg: LogMessage, b: LogBatch) -> None:
        n = len(b.seq)
        start = len(self.seq)
        self.messages += 1
        self.sources.append(msg)
        self.nbytes += len(msg.payload)
        self.digest.update(msg.payload)
        self.org.extend([b.org] * n)
        self.run_id.extend([b.run_id] * n)
        self.key.extend(b.key)
        self.writer_id.extend(b.writer_id)
        self.seq.extend(b.seq)
        self.step.extend(b.step)
        self.ts.extend(b.ts)
        self.value.extend(b.value)
        self.log_partition.extend([msg.partition] * n)
        self.log_offset.extend([msg.offset] * n)
        per_writer = _per_writer(b)
        for writer, (lo, hi, count, skipped, distinct) in per_writer.items():
            self.ledger.append(
                (b.org, b.run_id, writer, lo, hi, count, skipped, msg.topic, msg.partition, msg.offset)
            )
            self.spans.append((start, start + n))
            self.distinct.append(distinct)
            self.single_writer.append(len(per_writer) == 1)
        tp = (msg.topic, msg.partition)
        first, _ = self.ranges.get(tp, (msg.offset, msg.offset))
        self.ranges[tp] = (first, msg.offset)

    def drop(self, rows: list[int]) -> None:
        """Remove these point rows (re-sent seqs); ledger rows and the token stay."""
        gone = set(rows)
        keep = [i for i in range(len(self.seq)) if i not in gone]
        for name in _POINT_COLUMNS:
            col = getattr(self, name)
            setattr(self, name, [col[i] for i in keep])
        self.spans = []  # row positions moved: screening is done

    def token(self, prefix: str) -> str:
        """Insert dedup token: a retry of this very batch is a no-op in ClickHouse.

        Built from the log offset ranges *and* the bytes of the messages, so
        two different batches can never share a token (ClickHouse silently
        drops an insert whose token it has seen: offsets alone collide when a
        log or topic is recreated).
        """
        h = self.digest.copy()
        for (t, p), (a, b) in sorted(self.ranges.items()):
            h.update(f"|{t}:{p}:{a}-{b}".encode())
        return f"{prefix}:{h.hexdigest()}"

    def positions(self) -> dict[tuple[str, int], int]:
        """What to commit once this batch is stored: next offset per partition."""
        return {tp: last + 1 for tp, (_, last) in self.ranges.items()}

    def points_table(self, ingested_at_ms: int) -> pa.Table:
        n = len(self.seq)
        return pa.table(
            {
                "org": pa.array(self.org, pa.string()),
                "run_id": pa.array(self.run_id, pa.string()),
                "key": pa.array(self.key, pa.string()),
                "writer_id": pa.array(self.writer_id, pa.string()),
                "seq": pa.array(self.seq, pa.uint64()),
                "step": pa.array(self.step, pa.uint64()),
                "ts": _ms_timestamps(self.ts),
                "value": pa.array(self.value, pa.float64()),
                "log_partition": pa.array(self.log_partition, pa.uint32()),
                "log_offset": pa.array(self.log_offset, pa.uint64()),
                "ingested_at": pa.array([ingested_at_ms] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            }
        )

    def ledger_table(self, committed_at_ms: int) -> pa.Table:
        cols = list(zip(*self.ledger)) if self.ledger else [[]] * 10
        n = len(self.ledger)
        return pa.table(
            {
                "org": pa.array(cols[0], pa.string()),
                "run_id": pa.array(cols[1], pa.string()),
                "writer_id": pa.array(cols[2], pa.string()),
                "seq_min": pa.array(cols[3], pa.uint64()),
                "seq_max": pa.array(cols[4], pa.uint64()),
                "points": pa.array(cols[5], pa.uint32()),
                "skipped": pa.array(cols[6], pa.uint32()),
                "log_topic": pa.array(cols[7], pa.string()),
                "log_partition": pa.array(cols[8], pa.uint32()),
                "log_offset": pa.array(cols[9], pa.uint64()),
                "committed_at": pa.array([committed_at_ms] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            }
        )


_POINT_COLUMNS = ("org", "run_id", "key", "writer_id", "seq", "step", "ts", "value", "log_partition", "log_offset")


def _per_writer(b: LogBatch) -> dict[str, tuple[int, int, int, int, bool]]:
    """(seq_min, seq_max, count, skipped, seqs all different) per writer of one message."""
    ranges = fold_seq_ranges(b.writer_id, b.seq, b.value)
    if len(ranges) == 1:  # the common case: one SDK writer per request
        ((w, (lo, hi, n, skipped)),) = ranges.items()
        # The SDK sends consecutive seqs in order: one list comparison in C.
        distinct = (hi - lo + 1 == n and b.seq == list(range(lo, hi + 1))) or len(set(b.seq)) == n
        return {w: (lo, hi, n, skipped, distinct)}
    seen: dict[str, set[int]] = {}
    for w, s in zip(b.writer_id, b.seq):
        seen.setdefault(w, set()).add(s)
    return {w: (*r, len(seen[w]) == r[2]) for w, r in ranges.items()}
