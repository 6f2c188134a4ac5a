"""What the run-tracking compatibility adapters (chachaml, ml-service, ml-workbench) share.

Invariants:

- An adapter's run is an arwx run; the adapter writes its points as one
  writer of it (``writer``: ``chachaml``, ``mlservice``, ``workbench``), with
  seqs reserved in the catalog (``ingest/reserved_seqs.py``): a request
  re-sent under the same digest gets the same seqs again and is stored once.
  Finishing a run reports that writer's total, so the integrity receipt can
  tell whether every acknowledged point arrived.
- A read that must see what was just acknowledged waits, bounded, until the
  store holds every point of the writer (``settled``): the log is consumed
  asynchronously, and these clients read right after they write.
- Every call names the caller's org first; values reach SQL only as parameters.

The HTTP helpers at the end are the adapters' common glue: thin, no logic of
any one document.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, ClassVar, Self

import msgspec
from aiohttp import web

from arwx.appkeys import API_KEY, BLOBS, INGEST, RUNS, STORE
from arwx.compat.runfiles import RunFile, RunFiles
from arwx.control.http import body
from arwx.errors import BadRequest
from arwx.ingest.reserved_seqs import ReservedSeqs, request_digest
from arwx.ingest.service import IngestService
from arwx.runs import Run, Runs
from arwx.store.base import Store
from arwx.wire import KEY_PATTERN, MAX_KEY_LEN, Point

READ_WAIT_S = 10.0  # how long a read waits for a run's acknowledged points to be stored
_KEY_RE = re.compile(KEY_PATTERN)

#: One metric point as an adapter checked it: (key, value, step, time in seconds).
Metric = tuple[str, float, int, float]


def fresh_digest(idempotency_key: str | None) -> str:
    """The name of a request that clients send without a timestamp (chachaml, ml-service):
    its ``Idempotency-Key`` if it has one, else a name of its own (two equal bodies are two logs)."""
    return request_digest(idempotency_key, b"") if idempotency_key else f"r:{uuid.uuid4().hex}"


def metric_value(key: Any, value: Any, what: str) -> tuple[str, float]:
    """``(key, value)`` checked: a metric name arwx can store and a finite number (400 otherwise)."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN or not _KEY_RE.search(key):
        raise BadRequest(f"{what}: {str(key)[:80]!r} is not a metric name (1 to {MAX_KEY_LEN} characters, "
                         "no comma or control character)")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{what} ({key!r}): value {str(value)[:80]!r} is not a number")
    try:
        f = float(value)
    except OverflowError:
        raise BadRequest(f"{what} ({key!r}): value is out of the range of a double") from None
    if not math.isfinite(f):
        raise BadRequest(f"{what} ({key!r}): value {value!r} is not finite")
    return key, f


def arwx_statuses(status: str | None, status_of: dict[str, str]) -> tuple[str, ...]:
    """The arwx run statuses that read as an adapter's ``status`` (``status_of``: arwx's → the
    adapter's); () for no filter; a status the adapter does not have is a 400 naming its statuses."""
    if not status:
        return ()
    out = tuple(s for s, c in status_of.items() if c == status)
    if not out:
        names = ", ".join(dict.fromkeys(status_of.values()))
        raise BadRequest(f"status must be one of {names}, not {status[:40]!r}")
    return out


def section_of(config: dict, name: str) -> dict:
    """A dict-valued key of a config (a copy), or {}."""
    v = config.get(name)
    return dict(v) if isinstance(v, dict) else {}


def section(run: Run, name: str) -> dict:
    """A dict-valued key of the run's config (a copy), or {}."""
    return section_of(run.config, name)


class AdapterRuns:
    """An adapter's runs: points with reserved seqs, finishing with the writer's total, named
    files, and reads that wait for what was acknowledged. Subclasses set ``writer``."""

    writer: ClassVar[str]

    def __init__(self, runs: Runs, ingest: IngestService, store: Store, files: RunFiles, seqs: ReservedSeqs) -> None:
        self.runs = runs
        self.ingest = ingest
        self.store = store
        self.files = files
        self.seqs = seqs

    @classmethod
    def from_app(cls, app: web.Application) -> Self:
        """The adapter on the app's services (its runs, ingest, store and blob store)."""
        catalog = app[RUNS].catalog
        return cls(app[RUNS], app[INGEST], app[STORE], RunFiles(catalog, app[BLOBS]), ReservedSeqs(catalog))

    async def log_points(self, org: str, run_id: str, metrics: list[Metric], digest: str) -> None:
        """Write checked points as this adapter's writer, under the request's ``digest``."""
        if not metrics:
            return
        async with self.seqs.reserved(org, run_id, self.writer, digest, len(metrics)) as first:
            points = [Point(seq=first + i, step=step, key=k, value=v, ts=ts)
                      for i, (k, v, step, ts) in enumerate(metrics)]
            await self.ingest.ingest(org, points, run_id, self.writer)

    async def finish(self, org: str, run_id: str, status: str) -> Run | None:
        """Finish the run (arwx ``status``) with this writer's total; None if it is not the org's."""
        return await self.runs.finish(org, run_id, status, {self.writer: await self.seqs.total(org, run_id, self.writer)})

    async def put_file(self, org: str, run_id: str, name: str, chunks: AsyncIterable[bytes],
                       content_type: str) -> RunFile:
        """Name the bytes ``name`` on the run (the caller checked the run is the org's)."""
        return await self.files.put(org, run_id, name, chunks, content_type)

    async def settled(self, org: str, run_ids: list[str]) -> None:
        """Wait (at most ``READ_WAIT_S``) until the store holds every point acknowledged to this
        writer in each of the runs (one catalog and one store query a round, however many runs)."""
        want = {r: n for r, n in (await self.seqs.totals_of(org, run_ids, self.writer)).items() if n}
        deadline, delay = time.monotonic() + READ_WAIT_S, 0.01
        while want:
            rows = await self.store.rows(
                "SELECT run_id, count() FROM points FINAL WHERE org = {org:String} AND writer_id = {w:String}"
                " AND run_id IN {runs:Array(String)} GROUP BY run_id",
                {"org": org, "w": self.writer, "runs": list(want)})
            stored = {r: int(n) for r, n in rows}
            want = {r: n for r, n in want.items() if stored.get(r, 0) < n}
            if not want or time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def latest(self, org: str, run_ids: Iterable[str], wait: bool = True) -> dict[str, dict[str, float]]:
        """Each run's metrics at their latest point (highest step, then time, then seq), with
        ``wait`` once the runs' acknowledged points are stored; runs with no points are absent."""
        ids = list(dict.fromkeys(run_ids))
        if wait:
            await self.settled(org, ids)
        rows = await self.store.rows(
            "SELECT run_id, key, argMax(value, (step, ts, seq)) FROM points FINAL WHERE org = {org:String}"
            " AND run_id IN {runs:Array(String)} AND isFinite(value) GROUP BY run_id, key ORDER BY run_id, key",
            {"org": org, "runs": ids})
        out: dict[str, dict[str, float]] = {}
        for run_id, k, v in rows:
            out.setdefault(run_id, {})[k] = v
        return out


# -- HTTP glue -------------------------------------------------------------------------------------
def org_of(request: web.Request) -> str:
    """The caller's organization (its key authenticated it)."""
    return request[API_KEY].org


async def json_object(request: web.Request, limit: int, parse: Callable[[bytes], Any] = msgspec.json.decode) -> dict:
    """The request's JSON object body (an empty body is ``{}``); malformed JSON or another
    JSON value is a 400."""
    raw = await body(request, limit)
    if not raw.strip():
        return {}
    try:
        out = parse(raw)
    except msgspec.DecodeError as e:
        raise BadRequest(f"malformed JSON body: {e}") from None
    if not isinstance(out, dict):
        raise BadRequest("the JSON body must be an object")
    return out


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def add_adapter_routes(app: web.Application, routes: list[Route],
                       services: dict[web.AppKey, Callable[[web.Application], Any]]) -> None:
    """Route ``routes`` on ``app`` and, at its start, build each service once (an app that gets
    two route sets of one adapter, as a single-process server does, builds it once)."""
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)

    async def start(app: web.Application) -> None:
        for key, make in services.items():
            if key not in app:
                app[key] = make(app)

    app.on_startup.append(start)
