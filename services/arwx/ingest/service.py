"""Validated points → per-run columnar log messages, appended durably.

Invariants:

- A point is acknowledged only once the log holds it durably: ``IngestResult``
  counts only appended messages.
- A batch (``ingest``) is all or nothing: one bad point or refused run raises
  before anything of it is appended.
- Lines (``ingest_lines``) are taken one by one: a bad line (malformed, too
  deep, too long, of an unknown or finished run) is rejected by number and
  every good line is written.
- Only running runs take points; a finished run takes what each writer had
  sent before finishing (late delivery from a spool): seq below its total.
- Points go to the storage id of the run's attempt (``arwx/segments.py``):
  the one the writer says it opened (``attempt``), else the current one. A
  writer of an attempt a rewind superseded is refused (409), so it can never
  write into the new attempt; what it had acknowledged stays in its own.
- Any error raised mid-way (the log full, the client too slow) carries what
  was already written (``extra``), so the client can tell.

Points become columns by one builder (``Chunker.add_many``, C loops) and
messages carry at most ``CHUNK_POINTS`` points.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter

from arwx import metrics
from arwx.errors import ApiError, BadRequest, Conflict, NotFound
from arwx.ingest.ndjson import Line
from arwx.log.base import Appended, EventLog, LogUnavailable
from arwx.runs import Runs
from arwx.wire import (
    BadInput,
    IngestColumns,
    Point,
    RunChunk,
    check_points,
    decode_line,
    decode_lines_fast,
    merge_seq_range,
    numeric_value,
)

CHUNK_POINTS = 5000  # points per log message (~250 KB): well under Kafka's message limit
MAX_ERRORS_LISTED = 100

_get_seq = attrgetter("seq")
_get_step = attrgetter("step")
_get_ts = attrgetter("ts")
_get_key = attrgetter("key")
_get_value = attrgetter("value")
_get_run = attrgetter("run_id")
_get_writer = attrgetter("writer_id")


@dataclass
class IngestResult:
    """What a request wrote; ``body()`` is the receipt the client gets."""

    points: int = 0
    skipped: Counter = field(default_factory=Counter)
    writers: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (run, writer) -> [min, max, n, _]
    log: list[Appended] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    rejected: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        metrics.POINTS_REJECTED.labels(reason="bad_line").inc()
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append({"line": line, "reason": reason})

    def body(self) -> dict:
        out = {
            "points": self.points,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped),
            "writers": [
                {"run_id": r, "writer_id": w, "seq_min": a, "seq_max": b, "count": n}
                for (r, w), (a, b, n, _) in sorted(self.writers.items())
            ],
            "log": [{"topic": a.topic, "partition": a.partition, "offset": a.offset} for a in self.log],
        }
        if self.rejected or self.errors:
            out["rejected"] = self.rejected
            out["errors"] = self.errors
        return out


class Chunker:
    """Points of one request → per-run columnar chunks → durable log messages."""

    def __init__(
        self, org: str, log: EventLog, runs: Runs, result: IngestResult, only_run: str | None = None,
        attempt: int | None = None,
    ) -> None:
        self.org = org
        self.attempt = attempt  # the attempt the writer opened (None: the current one)
        self.storage: dict[str, str] = {}  # run id -> the storage id its points go to
        self.only_run = only_run  # set: a key bound to one run; every other run is unknown to it
        self.log = log
        self.runs = runs
        self.result = result
        self.chunks: dict[str, RunChunk] = {}
        self.pending = 0
        self.received_at = time.time()

    async def check(self, run_id: str, writer_id: str, seq: int) -> bool:
        """Whether the run is running (True) or finished but still owed this
        seq (False); ``NotFound`` for an unknown run, ``Conflict`` for a seq
        past what the writer reported when it finished."""
        if self.only_run is not None and run_id != self.only_run:
            raise NotFound(f"unknown run {run_id!r}")
        run = await self.runs.get(self.org, run_id)
        if run is None:
            raise NotFound(f"unknown run {run_id!r}")
        if run.deleted_at_ms is not None or (self.attempt is not None and self.attempt != run.attempt) or (
            run.status != "running" and run.writer_totals.get(writer_id, seq + 1) <= seq
        ):
            # Resumed or restored through another process since it was cached? Refuse on the truth only.
            run = await self.runs.get(self.org, run_id, fresh=True)
            if run is None:
                raise NotFound(f"unknown run {run_id!r}")
        if run.deleted_at_ms is not None:
            raise Conflict(f"run {run_id!r} is deleted; restore it (POST /v1/runs/{run_id}/restore) to log to it")
        if self.attempt is not None and self.attempt != run.attempt:
            if self.attempt < run.attempt:
                start = run.attempts[-1]["start_step"]
                raise Conflict(
                    f"attempt {self.attempt} of run {run_id!r} is stale: the run was rewound to step {start} "
                    f"(attempt {run.attempt}); this writer's points are refused"
                )
            raise Conflict(f"run {run_id!r} has no attempt {self.attempt} (its current attempt is {run.attempt})")
        self.storage[run_id] = run.storage_id
        if run.status != "running":
            # Ranks finish one by one: a writer that has not reported its
            # total yet is still running and keeps writing.
            total = run.writer_totals.get(writer_id)
            if total is not None and seq >= total:
                raise Conflict(
                    f"run {run_id!r} is {run.status}; writer {writer_id!r} seq {seq} is past what it sent"
                )
            return False
        return True

    async def add_many(self, points: list[Point], run_id: str, writer_id: str) -> None:
        """Points of one checked (run, writer), flushed every ``CHUNK_POINTS``:
        columns are built by C loops (map, attrgetter), not a loop per point."""
        i = 0
        while i < len(points):
            part = points[i : i + max(1, CHUNK_POINTS - self.pending)]
            i += len(part)
            self._add_columns(part, run_id, writer_id)
            if self.pending >= CHUNK_POINTS:
                await self.flush()

    def _add_columns(self, points: list[Point], run_id: str, writer_id: str) -> None:
        self._extend(run_id, writer_id, list(map(_get_value, points)), list(map(_get_ts, points)),
                     map(_get_seq, points), map(_get_step, points), map(_get_key, points))

    async def add_columns(self, cols: IngestColumns) -> None:
        """A checked columnar body (``wire.decode_columns``), flushed every ``CHUNK_POINTS``:
        slices and ``map``, no loop per point."""
        i, n = 0, len(cols.seq)
        keys = cols.keys.__getitem__
        while i < n:
            j = min(n, i + max(1, CHUNK_POINTS - self.pending))
            ts = cols.ts[i:j] if cols.ts is not None else [self.received_at] * (j - i)
            self._extend(cols.run_id, cols.writer_id, cols.value[i:j], ts, cols.seq[i:j], cols.step[i:j],
                         map(keys, cols.key[i:j]))
            i = j
            if self.pending >= CHUNK_POINTS:
                await self.flush()

    def _extend(self, run_id: str, writer_id: str, values: list, ts: list, seq: Iterable, step: Iterable,
                key: Iterable) -> None:
        """Append one writer's columns (``values`` and ``ts`` are lists this call may change)."""
        total = sum(values) if set(map(type, values)) == {float} else None
        if total is None or total - total != 0:  # an int, a non-number, a NaN/inf, or a sum past float range
            skipped = self.result.skipped
            for i, v in enumerate(values):
                values[i], why = numeric_value(v)
                if why:
                    skipped[why] += 1
                    metrics.POINTS_SKIPPED.labels(reason=why).inc()
        if None in ts:
            ts = [self.received_at if t is None else t for t in ts]
        chunk = self.chunks.get(run_id)
        if chunk is None:
            # Keyed by the run id the client named (its receipt says that), stored under the attempt's id.
            chunk = self.chunks[run_id] = RunChunk(self.storage.get(run_id, run_id))
        chunk.extend(writer_id, len(values), seq, step, ts, key, values)
        self.pending += len(values)

    async def flush(self) -> None:
        """Append every pending chunk; returns once all are durable."""
        for run_id, chunk in self.chunks.items():
            t0 = time.perf_counter()
            try:
                appended = await self.log.append(f"{self.org}/{chunk.run_id}", [chunk.encode(self.org, self.received_at)])
            except LogUnavailable:
                metrics.LOG_UNAVAILABLE.inc()
                raise
            metrics.LOG_APPEND_SECONDS.observe(time.perf_counter() - t0)
            self.result.log.extend(appended)
            self.result.points += len(chunk)
            metrics.POINTS_ACCEPTED.inc(len(chunk))
            for w, r in chunk.seq_ranges().items():
                merge_seq_range(self.result.writers, (run_id, w), r)
        self.chunks.clear()
        self.pending = 0


def _ids(p: Point, run_id: str | None, writer_id: str | None, where: str) -> tuple[str, str]:
    r = p.run_id or run_id
    w = p.writer_id or writer_id
    if not r:
        raise BadInput(f"{where}: run_id is missing (give it on the point or the batch)")
    if not w:
        raise BadInput(f"{where}: writer_id is missing (give it on the point or the batch)")
    return r, w


class IngestService:
    """The ingest path of every route and adapter: ``ingest`` (all or nothing) and ``ingest_lines``."""

    def __init__(self, log: EventLog, runs: Runs) -> None:
        self.log = log
        self.runs = runs

    def _chunker(self, org: str, only_run: str | None, attempt: int | None = None) -> Chunker:
        return Chunker(org, self.log, self.runs, IngestResult(), only_run, attempt)

    async def ingest(
        self, org: str, points: list[Point], run_id: str | None = None, writer_id: str | None = None,
        validated: bool = False, only_run: str | None = None, attempt: int | None = None,
    ) -> IngestResult:
        """Write ``points`` (ids on each point or given once here) all or nothing.

        Points are held to the wire contract (``wire.check_points``) unless
        ``validated`` says a ``wire`` decoder made them. Raises ``BadInput`` (a
        bad point, one without ids), ``NotFound``/``Conflict`` (a run that does
        not take it, or is not ``only_run`` when that is set, or ``attempt`` is stale) before writing anything,
        and ``LogUnavailable`` (with what was written) if the log fails mid-way."""
        chunker = self._chunker(org, only_run, attempt)
        try:
            if not validated:
                check_points(points, run_id, writer_id)
            # The common shape (ids once on the batch): one run check, columns in C loops.
            once = points and run_id and writer_id and not any(map(_get_run, points)) and not any(map(_get_writer, points))
            if once and await self._checked(chunker, run_id, writer_id, points[0].seq):  # type: ignore[arg-type]
                await chunker.add_many(points, run_id, writer_id)  # type: ignore[arg-type]
                await chunker.flush()
                return chunker.result
            resolved = [_ids(p, run_id, writer_id, f"points[{i}]") for i, p in enumerate(points)]
            running: set[tuple[str, str]] = set()  # checked once; a finished run checks every seq
            groups: dict[tuple[str, str], list[Point]] = {}
            for p, rw in zip(points, resolved):
                if rw not in running and await self._checked(chunker, rw[0], rw[1], p.seq):
                    running.add(rw)
                groups.setdefault(rw, []).append(p)
            for (r, w), pts in groups.items():
                await chunker.add_many(pts, r, w)
            await chunker.flush()
        except BadInput:
            metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
            raise
        except LogUnavailable as e:
            e.extra = chunker.result.body()
            raise
        return chunker.result

    async def ingest_columns(
        self, org: str, cols: IngestColumns, only_run: str | None = None, attempt: int | None = None
    ) -> IngestResult:
        """Write a columnar body (``wire.decode_columns`` made it) all or nothing: one run
        check (with the highest seq, which a finished run must still be owed), columns in C
        loops. Raises as ``ingest`` does."""
        chunker = self._chunker(org, only_run, attempt)
        try:
            if cols.seq:
                await self._checked(chunker, cols.run_id, cols.writer_id, max(cols.seq))
                await chunker.add_columns(cols)
                await chunker.flush()
        except LogUnavailable as e:
            e.extra = chunker.result.body()
            raise
        return chunker.result

    @staticmethod
    async def _checked(chunker: Chunker, run_id: str, writer_id: str, seq: int) -> bool:
        try:
            return await chunker.check(run_id, writer_id, seq)
        except (NotFound, Conflict):
            metrics.POINTS_REJECTED.labels(reason="run").inc()
            raise

    async def ingest_lines(
        self, org: str, groups: AsyncIterable[list[Line]], max_line_bytes: int, only_run: str | None = None,
        attempt: int | None = None,
    ) -> IngestResult:
        """Write NDJSON points line by line (``ndjson.split_lines`` groups):
        bad lines are listed in ``rejected``/``errors``, good ones written.

        Any ``ApiError`` raised mid-way (the log full, the body too slow)
        carries what was already written in ``extra``."""
        chunker = self._chunker(org, only_run, attempt)
        try:
            async for lines in groups:
                await self._take(chunker, [(n, ln) for n, ln in lines if ln is None or ln.strip()], max_line_bytes)
            await chunker.flush()
        except ApiError as e:
            e.extra = {**chunker.result.body(), **e.extra}
            raise
        return chunker.result

    async def _take(self, chunker: Chunker, lines: list[Line], max_line_bytes: int) -> None:
        """Decode a piece's lines in one go when they are all good and of one
        running (run, writer); otherwise line by line, naming bad lines."""
        if not lines:
            return
        if all(ln is not None for _, ln in lines):
            pts = decode_lines_fast([ln for _, ln in lines])  # type: ignore[misc]
            if pts is not None:
                runs, writers = set(map(_get_run, pts)), set(map(_get_writer, pts))
                if len(runs) == 1 and len(writers) == 1 and None not in runs and None not in writers:
                    (r,), (w,) = runs, writers
                    try:
                        running = await chunker.check(r, w, pts[0].seq)
                    except (NotFound, Conflict):
                        running = False
                    if running:
                        await chunker.add_many(pts, r, w)
                        return
        result = chunker.result
        groups: dict[tuple[str, str], list[Point]] = {}
        for n, ln in lines:
            if ln is None:
                result.reject(n, f"line is over the {max_line_bytes}-byte limit")
                continue
            try:
                p = decode_line(ln)
                rw = _ids(p, None, None, f"line {n}")
                await chunker.check(rw[0], rw[1], p.seq)
            except (BadRequest, NotFound, Conflict) as e:
                result.reject(n, str(e))
                continue
            groups.setdefault(rw, []).append(p)
        for (r, w), pts in groups.items():
            await chunker.add_many(pts, r, w)
