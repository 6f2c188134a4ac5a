"""``POST /v1/ingest`` (JSON batch) and ``POST /v1/ingest/stream`` (NDJSON).

Points are validated with msgspec, grouped by run into columnar log messages
(one message per run per chunk of up to ``CHUNK_POINTS`` points, keyed by
run), and acknowledged only once the log has them durably.

A JSON batch is all or nothing: one bad point rejects the request with a 400
naming it, and nothing of it is written. A stream is read and forwarded in
chunks with bounded memory; a bad line is rejected (named in the response,
which is then a 400) while every good line is written.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter

from aiohttp import web

from arwx import metrics
from arwx.appkeys import API_KEY, CONFIG, LOG, RUNS
from arwx.gateway.body import BodyTooLarge, read_body
from arwx.gateway.errors import json_error
from arwx.log.base import Appended, EventLog, LogUnavailable
from arwx.runs import Runs
from arwx.wire import (
    BadInput,
    Point,
    RunChunk,
    decode_batch_fast,
    decode_line,
    decode_lines_fast,
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
    """What a request wrote; becomes the response body."""

    points: int = 0
    skipped: Counter = field(default_factory=Counter)
    writers: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (run, writer) -> [min, max, n]
    log: list[Appended] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    rejected: int = 0

    def body(self) -> dict:
        out = {
            "points": self.points,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped),
            "writers": [
                {"run_id": r, "writer_id": w, "seq_min": a, "seq_max": b, "count": n}
                for (r, w), (a, b, n) in sorted(self.writers.items())
            ],
            "log": [{"topic": a.topic, "partition": a.partition, "offset": a.offset} for a in self.log],
        }
        if self.rejected or self.errors:
            out["rejected"] = self.rejected
            out["errors"] = self.errors
        return out


class RunRejected(Exception):
    """A point names a run that does not take it (unknown: 404; finished: 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Chunker:
    """Validated points → per-run columnar chunks → durable log messages."""

    def __init__(self, org: str, log: EventLog, runs: Runs, result: IngestResult) -> None:
        self.org = org
        self.log = log
        self.runs = runs
        self.result = result
        self.chunks: dict[str, RunChunk] = {}
        self.pending = 0
        self.received_at = time.time()

    async def check(self, run_id: str, writer_id: str, seq: int) -> bool:
        """Whether the run is running. Unknown runs are refused; a finished
        run takes only what its writers had sent before finishing (late
        delivery from a spool)."""
        run = await self.runs.get(self.org, run_id)
        if run is None:
            raise RunRejected(404, f"unknown run {run_id!r}")
        if run.status != "running":
            # Ranks finish one by one: a writer that has not reported its
            # total yet is still running and keeps writing.
            total = run.writer_totals.get(writer_id)
            if total is not None and seq >= total:
                raise RunRejected(
                    409, f"run {run_id!r} is {run.status}; writer {writer_id!r} seq {seq} is past what it sent"
                )
            return False
        return True

    def add(self, p: Point, run_id: str, writer_id: str) -> None:
        value, why = numeric_value(p.value)
        if why:
            self.result.skipped[why] += 1
            metrics.POINTS_SKIPPED.labels(reason=why).inc()
        chunk = self.chunks.get(run_id)
        if chunk is None:
            chunk = self.chunks[run_id] = RunChunk(run_id)
        chunk.add(writer_id, p.seq, p.step, self.received_at if p.ts is None else p.ts, p.key, value)
        self.pending += 1

    async def add_many(self, points: list[Point], run_id: str, writer_id: str) -> None:
        """``add`` for many points of one running (run, writer), flushing at
        ``CHUNK_POINTS`` like ``add``: columns are built by C loops (map,
        attrgetter) instead of a Python loop per point."""
        i = 0
        while i < len(points):
            part = points[i : i + max(1, CHUNK_POINTS - self.pending)]
            i += len(part)
            self._add_columns(part, run_id, writer_id)
            if self.pending >= CHUNK_POINTS:
                await self.flush()

    def _add_columns(self, points: list[Point], run_id: str, writer_id: str) -> None:
        n = len(points)
        values = list(map(_get_value, points))
        total = sum(values) if set(map(type, values)) == {float} else None
        if total is None or total - total != 0:  # an int, a non-number, a NaN/inf, or a sum past float range
            skipped = self.result.skipped
            for i, v in enumerate(values):
                values[i], why = numeric_value(v)
                if why:
                    skipped[why] += 1
                    metrics.POINTS_SKIPPED.labels(reason=why).inc()
        ts = list(map(_get_ts, points))
        if None in ts:
            ts = [self.received_at if t is None else t for t in ts]
        chunk = self.chunks.get(run_id)
        if chunk is None:
            chunk = self.chunks[run_id] = RunChunk(run_id)
        chunk.writer_id += [writer_id] * n
        chunk.seq += map(_get_seq, points)
        chunk.step += map(_get_step, points)
        chunk.ts += ts
        chunk.key += map(_get_key, points)
        chunk.value += values
        self.pending += n

    async def flush(self) -> None:
        """Append every pending chunk; returns once all are durable."""
        for run_id, chunk in self.chunks.items():
            t0 = time.perf_counter()
            try:
                appended = await self.log.append(f"{self.org}/{run_id}", [chunk.encode(self.org, self.received_at)])
            except LogUnavailable:
                metrics.LOG_UNAVAILABLE.inc()
                raise
            metrics.LOG_APPEND_SECONDS.observe(time.perf_counter() - t0)
            self.result.log.extend(appended)
            self.result.points += len(chunk)
            metrics.POINTS_ACCEPTED.inc(len(chunk))
            ws = chunk.writer_id
            if ws.count(ws[0]) == len(ws):  # one writer (the common case): no loop per point
                w, lo, hi, n = ws[0], min(chunk.seq), max(chunk.seq), len(ws)
                acc = self.result.writers.get((run_id, w))
                if acc is None:
                    self.result.writers[(run_id, w)] = [lo, hi, n]
                else:
                    acc[0], acc[1], acc[2] = min(acc[0], lo), max(acc[1], hi), acc[2] + n
                continue
            for w, s in zip(chunk.writer_id, chunk.seq):
                acc = self.result.writers.get((run_id, w))
                if acc is None:
                    self.result.writers[(run_id, w)] = [s, s, 1]
                else:
                    if s < acc[0]:
                        acc[0] = s
                    if s > acc[1]:
                        acc[1] = s
                    acc[2] += 1
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


def _unavailable(result: IngestResult) -> web.Response:
    body = {"error": "the event log is unavailable or full; retry later", **result.body()}
    return web.json_response(body, status=503, headers={"Retry-After": "1"})


async def ingest_batch(request: web.Request) -> web.Response:
    """``POST /v1/ingest``: a JSON batch, all or nothing."""
    org = request[API_KEY].org
    cfg = request.app[CONFIG]
    try:
        body = await read_body(request, cfg.max_body_bytes)
    except BodyTooLarge as e:
        return json_error(413, f"{e}; send large batches to /v1/ingest/stream")
    try:
        batch = decode_batch_fast(body)
    except BadInput as e:
        metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
        return json_error(400, f"bad input: {e}")
    result = IngestResult()
    chunker = Chunker(org, request.app[LOG], request.app[RUNS], result)
    pts = batch.points
    if pts and batch.run_id and batch.writer_id and not any(map(_get_run, pts)) and not any(map(_get_writer, pts)):
        # The common shape (ids once on the batch): one run check, columns in C loops.
        try:
            running = await chunker.check(batch.run_id, batch.writer_id, pts[0].seq)
        except RunRejected as e:
            metrics.POINTS_REJECTED.labels(reason="run").inc()
            return json_error(e.status, str(e))
        if running:
            try:
                await chunker.add_many(pts, batch.run_id, batch.writer_id)
                await chunker.flush()
            except LogUnavailable:
                return _unavailable(result)
            return web.json_response(result.body())
    try:
        resolved = [_ids(p, batch.run_id, batch.writer_id, f"points[{i}]") for i, p in enumerate(batch.points)]
        running: set[tuple[str, str]] = set()  # checked once; a finished run checks every seq
        for p, rw in zip(batch.points, resolved):
            if rw not in running and await chunker.check(rw[0], rw[1], p.seq):
                running.add(rw)
    except BadInput as e:
        metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
        return json_error(400, f"bad input: {e}")
    except RunRejected as e:
        metrics.POINTS_REJECTED.labels(reason="run").inc()
        return json_error(e.status, str(e))
    for p, (r, w) in zip(batch.points, resolved):
        chunker.add(p, r, w)
        if chunker.pending >= CHUNK_POINTS:
            try:
                await chunker.flush()
            except LogUnavailable:
                return _unavailable(result)
    try:
        await chunker.flush()
    except LogUnavailable:
        return _unavailable(result)
    return web.json_response(result.body())


async def ingest_stream(request: web.Request) -> web.Response:
    """``POST /v1/ingest/stream``: NDJSON, any length, bounded memory."""
    org = request[API_KEY].org
    cfg = request.app[CONFIG]
    result = IngestResult()
    chunker = Chunker(org, request.app[LOG], request.app[RUNS], result)
    lineno = 0

    def reject(reason: str) -> None:
        result.rejected += 1
        metrics.POINTS_REJECTED.labels(reason="bad_line").inc()
        if len(result.errors) < MAX_ERRORS_LISTED:
            result.errors.append({"line": lineno, "reason": reason})

    async def take(line: bytes) -> None:
        if not line.strip():
            return
        try:
            p = decode_line(line)
            r, w = _ids(p, None, None, f"line {lineno}")
            await chunker.check(r, w, p.seq)
        except BadInput as e:
            reject(str(e))
            return
        except RunRejected as e:
            reject(str(e))
            return
        chunker.add(p, r, w)
        if chunker.pending >= CHUNK_POINTS:
            await chunker.flush()

    held: list[tuple[int, bytes]] = []  # complete lines of the current network chunk

    async def take_held() -> None:
        """Decode the held lines in one go when they are all good and of one
        running (run, writer); otherwise line by line, naming bad lines."""
        nonlocal lineno
        lines = [(n, ln) for n, ln in held if ln.strip()]
        held.clear()
        if not lines:
            return
        last = lineno
        pts = decode_lines_fast([ln for _, ln in lines])
        if pts is not None:
            runs = set(map(_get_run, pts))
            writers = set(map(_get_writer, pts))
            if len(runs) == 1 and len(writers) == 1 and None not in runs and None not in writers:
                (r,), (w,) = runs, writers
                try:
                    running = await chunker.check(r, w, pts[0].seq)
                except RunRejected:
                    running = False
                if running:
                    await chunker.add_many(pts, r, w)
                    return
        for n, ln in lines:
            lineno = n
            await take(ln)
        lineno = last

    buf = bytearray()
    skipping = False  # inside a line that is over the size limit
    try:
        async for piece in request.content.iter_chunked(64 * 1024):
            start = 0
            while True:
                nl = piece.find(b"\n", start)
                if nl < 0:
                    if not skipping:
                        buf += piece[start:]
                        if len(buf) > cfg.max_line_bytes:
                            skipping = True
                            buf.clear()
                    break
                lineno += 1
                if skipping:
                    await take_held()
                    reject(f"line is over the {cfg.max_line_bytes}-byte limit")
                    skipping = False
                else:
                    buf += piece[start:nl]
                    if len(buf) > cfg.max_line_bytes:
                        await take_held()
                        reject(f"line is over the {cfg.max_line_bytes}-byte limit")
                    else:
                        held.append((lineno, bytes(buf)))
                    buf.clear()
                start = nl + 1
            await take_held()
        if skipping or buf:
            lineno += 1
            if skipping:
                reject(f"line is over the {cfg.max_line_bytes}-byte limit")
            else:
                await take(bytes(buf))
        await chunker.flush()
    except LogUnavailable:
        return _unavailable(result)
    status = 400 if result.rejected else 200
    body = result.body()
    if result.rejected:
        body["error"] = f"{result.rejected} line(s) rejected; every other line was accepted"
    return web.json_response(body, status=status)
