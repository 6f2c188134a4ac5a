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

from aiohttp import web

from arwx import metrics
from arwx.appkeys import API_KEY, CONFIG, LOG, RUNS
from arwx.gateway.body import BodyTooLarge, read_body
from arwx.gateway.errors import json_error
from arwx.log.base import Appended, EventLog, LogUnavailable
from arwx.runs import Runs
from arwx.wire import BadInput, Point, RunChunk, decode_batch, decode_line, numeric_value

CHUNK_POINTS = 5000  # points per log message (~250 KB): well under Kafka's message limit
MAX_ERRORS_LISTED = 100


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
        batch = decode_batch(body)
    except BadInput as e:
        metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
        return json_error(400, f"bad input: {e}")
    result = IngestResult()
    chunker = Chunker(org, request.app[LOG], request.app[RUNS], result)
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
                    reject(f"line is over the {cfg.max_line_bytes}-byte limit")
                    skipping = False
                else:
                    buf += piece[start:nl]
                    if len(buf) > cfg.max_line_bytes:
                        reject(f"line is over the {cfg.max_line_bytes}-byte limit")
                    else:
                        await take(bytes(buf))
                    buf.clear()
                start = nl + 1
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
