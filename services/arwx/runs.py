"""The run registry: create (idempotent on id), finish, look up.

Runs are scoped by organization: the same run id in two orgs names two runs,
and a lookup never crosses orgs. Finishing is final: the first finish sets
the status, and a writer's reported total never changes (a different one is a
409); later calls only add the totals of writers that had not reported.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import msgspec
import pyarrow as pa

from arwx.cache import MISSING, BoundedCache
from arwx.errors import Conflict
from arwx.store.base import Store
from arwx.wire import check_config

RUN_STATUSES = ("running", "finished", "failed", "crashed", "killed")


@dataclass
class Run:
    org: str
    run_id: str
    project: str
    name: str
    status: str
    config: dict
    writer_ids: list[str]
    created_at_ms: int
    finished_at_ms: int | None
    fingerprint: dict = field(default_factory=dict)
    writer_totals: dict[str, int] = field(default_factory=dict)
    config_bytes: int = 0  # the config's size as JSON: its weight in the cache

    def public(self) -> dict:
        return {
            "id": self.run_id,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "config": self.config,
            "writer_ids": self.writer_ids,
            "writer_totals": self.writer_totals,
            "fingerprint": self.fingerprint or None,
            "created_at": self.created_at_ms / 1000,
            "finished_at": None if self.finished_at_ms is None else self.finished_at_ms / 1000,
        }


def _ts(values: list[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


_SELECT = (
    "SELECT org, run_id, project, name, status, config, writer_ids, toUnixTimestamp64Milli(created_at), "
    "if(isNull(finished_at), NULL, toUnixTimestamp64Milli(assumeNotNull(finished_at))), fingerprint FROM runs FINAL "
)


CACHE_RUNS = 10_000
CACHE_BYTES = 64 << 20  # of configs: with MAX_CONFIG_BYTES, at least 256 of the largest


def run_cache(ttl_s: float = 2.0, max_runs: int = CACHE_RUNS, max_bytes: int = CACHE_BYTES) -> BoundedCache:
    """The cache of run lookups, weighed by config size: whatever holds runs keeps using it."""
    return BoundedCache(max_runs, ttl_s, max_bytes, weigh=lambda run: 200 + run.config_bytes)


class Runs:
    """Run lookups are cached per process for ``ttl_s`` in a bounded cache
    (ingest checks a run on every request; memory must not grow with runs)."""

    def __init__(self, store: Store, ttl_s: float = 2.0, cache: BoundedCache | None = None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache = cache if cache is not None else run_cache(ttl_s)
        self._lock = asyncio.Lock()  # read-modify-write of a run row within this process

    async def get(self, org: str, run_id: str, fresh: bool = False) -> Run | None:
        if not fresh:
            hit = self._cache.get((org, run_id), MISSING)
            if hit is not MISSING:
                return hit  # type: ignore[return-value]
        rows = await self.store.rows(
            _SELECT + "WHERE org = {org:String} AND run_id = {run:String}", {"org": org, "run": run_id}
        )
        if not rows:
            return None
        r = rows[0]
        run = Run(
            r[0], r[1], r[2], r[3], r[4], msgspec.json.decode(r[5] or "{}"), list(r[6]), r[7], r[8],
            msgspec.json.decode(r[9] or "{}"), config_bytes=len(r[5] or ""),
        )
        totals = await self.store.rows(
            "SELECT writer_id, sent FROM run_writers FINAL WHERE org = {org:String} AND run_id = {run:String}",
            {"org": org, "run": run_id},
        )
        run.writer_totals = {w: int(n) for w, n in totals}
        self._cache.put((org, run_id), run)
        return run

    async def create(
        self,
        org: str,
        run_id: str | None,
        project: str,
        name: str | None,
        config: dict | None,
        writer_ids: list[str] | None,
        fingerprint: dict | None = None,
    ) -> tuple[Run, bool]:
        """The run and whether it was created now (False: it existed).
        Raises ``BadInput``/``PayloadTooLarge`` for a config past the contract's bounds."""
        check_config(config)
        async with self._lock:
            if run_id:
                existing = await self.get(org, run_id, fresh=True)
                if existing is not None:
                    return existing, False
            run_id = run_id or secrets.token_hex(6)
            run = Run(
                org, run_id, project, name or run_id, "running", config or {}, writer_ids or [],
                int(time.time() * 1000), None, fingerprint or {},
            )
            await self._write(run)
            return run, True

    async def finish(self, org: str, run_id: str, status: str, writer_totals: dict[str, int]) -> Run | None:
        """Finish a run (or report more writers' totals); None if there is no such run.

        The first finish sets the status; a running run's later finishes keep
        it. A total already reported may be reported again (a retry) but not
        changed: ``Conflict``, and nothing of the call is recorded."""
        async with self._lock:
            run = await self.get(org, run_id, fresh=True)
            if run is None:
                return None
            changed = sorted(w for w, n in writer_totals.items() if run.writer_totals.get(w, n) != n)
            if changed:
                w = changed[0]
                raise Conflict(
                    f"writer {w!r} of run {run_id!r} already reported {run.writer_totals[w]} points; "
                    f"a writer's total is final (got {writer_totals[w]})"
                )
            writer_totals = {w: n for w, n in writer_totals.items() if w not in run.writer_totals}
            now = int(time.time() * 1000)
            if writer_totals:
                await self.store.insert(
                    "run_writers",
                    pa.table(
                        {
                            "org": [org] * len(writer_totals),
                            "run_id": [run_id] * len(writer_totals),
                            "writer_id": list(writer_totals),
                            "sent": pa.array(list(writer_totals.values()), pa.uint64()),
                            "reported_at": _ts([now] * len(writer_totals)),
                        }
                    ),
                )
            if run.status == "running":
                run.status = status
                run.finished_at_ms = now
                await self._write(run)
            return await self.get(org, run_id, fresh=True)

    async def _write(self, run: Run) -> None:
        config = msgspec.json.encode(run.config).decode()
        run.config_bytes = len(config)
        await self.store.insert(
            "runs",
            pa.table(
                {
                    "org": [run.org],
                    "run_id": [run.run_id],
                    "project": [run.project],
                    "name": [run.name],
                    "status": [run.status],
                    "config": [config],
                    "writer_ids": pa.array([run.writer_ids], pa.list_(pa.string())),
                    "fingerprint": [msgspec.json.encode(run.fingerprint).decode()],
                    "created_at": _ts([run.created_at_ms]),
                    "finished_at": _ts([run.finished_at_ms]),
                    "version": pa.array([time.time_ns()], pa.uint64()),
                }
            ),
        )
        self._cache.put((run.org, run.run_id), run)
