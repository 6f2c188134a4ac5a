"""The run registry: create (idempotent on id), finish, look up.

Runs are scoped by organization: the same run id in two orgs names two runs,
and a lookup never crosses orgs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import msgspec
import pyarrow as pa

from arwx.store.base import Store

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


class Runs:
    """Run lookups are cached per process for ``ttl_s`` (ingest checks a run on every request)."""

    def __init__(self, store: Store, ttl_s: float = 2.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Run]] = {}
        self._lock = asyncio.Lock()  # read-modify-write of a run row within this process

    async def get(self, org: str, run_id: str, fresh: bool = False) -> Run | None:
        hit = self._cache.get((org, run_id))
        if hit and not fresh and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        rows = await self.store.rows(
            _SELECT + "WHERE org = {org:String} AND run_id = {run:String}", {"org": org, "run": run_id}
        )
        if not rows:
            return None
        r = rows[0]
        run = Run(
            r[0], r[1], r[2], r[3], r[4], msgspec.json.decode(r[5] or "{}"), list(r[6]), r[7], r[8],
            msgspec.json.decode(r[9] or "{}"),
        )
        totals = await self.store.rows(
            "SELECT writer_id, sent FROM run_writers FINAL WHERE org = {org:String} AND run_id = {run:String}",
            {"org": org, "run": run_id},
        )
        run.writer_totals = {w: int(n) for w, n in totals}
        self._cache[(org, run_id)] = (time.monotonic(), run)
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
        """The run and whether it was created now (False: it existed)."""
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
        async with self._lock:
            run = await self.get(org, run_id, fresh=True)
            if run is None:
                return None
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
            run.status = status
            run.finished_at_ms = run.finished_at_ms or now
            await self._write(run)
            return await self.get(org, run_id, fresh=True)

    async def _write(self, run: Run) -> None:
        await self.store.insert(
            "runs",
            pa.table(
                {
                    "org": [run.org],
                    "run_id": [run.run_id],
                    "project": [run.project],
                    "name": [run.name],
                    "status": [run.status],
                    "config": [msgspec.json.encode(run.config).decode()],
                    "writer_ids": pa.array([run.writer_ids], pa.list_(pa.string())),
                    "fingerprint": [msgspec.json.encode(run.fingerprint).decode()],
                    "created_at": _ts([run.created_at_ms]),
                    "finished_at": _ts([run.finished_at_ms]),
                    "version": pa.array([time.time_ns()], pa.uint64()),
                }
            ),
        )
        self._cache[(run.org, run.run_id)] = (time.monotonic(), run)
