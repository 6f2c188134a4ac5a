"""The run registry, in the catalog: create (idempotent on id), finish, look up.

Runs are scoped by organization: the same run id in two orgs names two runs,
and a lookup never crosses orgs. The catalog's primary key (org, run_id)
makes a run id created by two processes at once one run: the loser of the
insert reads the winner's row. Finishing is final: the first finish sets the
status, and a writer's reported total never changes (a different one is a
409); later calls only add the totals of writers that had not reported. The
run's row lock serializes finishes across processes.

Ingest checks a run on every request, so lookups are cached per process for
``ttl_s`` in a bounded cache (memory must not grow with runs): a finish
through another process is seen here within that bound (a late point is then
judged against the writers' reported totals).

Every change is copied to the ClickHouse mirror (``catalog/mirror.py``) so
that SQL on ClickHouse can label points by project and run name.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgspec
from sqlalchemy import case, delete, select, update
from sqlalchemy.exc import IntegrityError

from arwx.cache import MISSING, BoundedCache
from arwx.catalog import Catalog
from arwx.catalog.mirror import RunMirror
from arwx.catalog.tables import run_writers, runs
from arwx.control.projects import ensure as ensure_project
from arwx.errors import BadRequest, Conflict, NotFound
from arwx.segments import Segment, branch, storage_id
from arwx.segments import public as public_segments
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
    version: int = 0
    config_bytes: int = 0  # the config's size as JSON: its weight in the cache
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    heartbeat_at_ms: int | None = None
    deleted_at_ms: int | None = None
    # Rewind and fork (``arwx/segments.py``): empty/None on a run never rewound nor forked.
    attempt_rows: list[dict] = field(default_factory=list)
    segment_rows: list[Segment] | None = None
    forked_from: str | None = None
    fork_step: int | None = None
    totals_by_storage: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def attempts(self) -> list[dict]:
        """``[{"attempt", "storage_id", "start_step", "created_at", "writers"}]``, oldest first."""
        return self.attempt_rows or [
            {"attempt": 0, "storage_id": self.run_id, "start_step": self.fork_step or 0,
             "created_at": self.created_at_ms, "writers": []}
        ]

    @property
    def attempt(self) -> int:
        """The current attempt: the one new points go to."""
        return int(self.attempts[-1]["attempt"])

    @property
    def storage_id(self) -> str:
        """Where the current attempt stores its points."""
        return self.attempts[-1]["storage_id"]

    @property
    def segments(self) -> list[Segment]:
        """The visible history: ``[(storage id, step_lo, step_hi or None)]`` by step."""
        if self.segment_rows is None:
            return [(self.run_id, 0, None)]
        return [(sid, int(lo), None if hi is None else int(hi)) for sid, lo, hi in self.segment_rows]

    def storage_of(self, attempt: int) -> str | None:
        """The storage id of one of the run's attempts (None: no such attempt)."""
        return next((a["storage_id"] for a in self.attempts if int(a["attempt"]) == attempt), None)

    def storage_ids(self) -> list[str]:
        """Every storage id of the run's own attempts (not a fork's parent)."""
        return [a["storage_id"] for a in self.attempts]

    def at_attempt(self, attempt: int) -> Run | None:
        """A copy of the run that reads (and receipts) one attempt's storage only."""
        sid = self.storage_of(attempt)
        if sid is None:
            return None
        return replace(
            self, run_id=sid, writer_totals=self.totals_by_storage.get(sid, {}), attempt_rows=[], segment_rows=None,
            forked_from=None, fork_step=None,
        )

    def public(self) -> dict:
        return {
            "id": self.run_id,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "config": self.config,
            "tags": self.tags,
            "notes": self.notes,
            "writer_ids": self.writer_ids,
            "writer_totals": self.writer_totals,
            "fingerprint": self.fingerprint or None,
            "created_at": self.created_at_ms / 1000,
            "finished_at": _s(self.finished_at_ms),
            "heartbeat_at": _s(self.heartbeat_at_ms),
            "deleted": self.deleted_at_ms is not None,
            "deleted_at": _s(self.deleted_at_ms),
            "attempt": self.attempt,
            "attempts": [
                {"attempt": a["attempt"], "start_step": a["start_step"], "created_at": a["created_at"] / 1000}
                for a in self.attempts
            ],
            "segments": public_segments(self.segments),
            "forked_from": None if self.forked_from is None else {"run_id": self.forked_from, "step": self.fork_step},
        }


def _s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


_COLUMNS = (
    runs.c.org, runs.c.run_id, runs.c.project, runs.c.name, runs.c.status, runs.c.config, runs.c.writer_ids,
    runs.c.created_at, runs.c.finished_at, runs.c.fingerprint, runs.c.version,
    runs.c.tags, runs.c.notes, runs.c.heartbeat_at, runs.c.deleted_at,
    runs.c.attempts, runs.c.segments, runs.c.forked_from, runs.c.fork_step,
)


def _run(row: tuple) -> Run:
    return Run(
        *row[:10], version=row[10], config_bytes=len(msgspec.json.encode(row[5])),
        tags=list(row[11] or []), notes=row[12] or "", heartbeat_at_ms=row[13], deleted_at_ms=row[14],
        attempt_rows=list(row[15] or []), segment_rows=None if row[16] is None else [tuple(s) for s in row[16]],
        forked_from=row[17], fork_step=row[18],
    )


CACHE_RUNS = 10_000
CACHE_BYTES = 64 << 20  # of configs: with MAX_CONFIG_BYTES, at least 256 of the largest


def run_cache(ttl_s: float = 2.0, max_runs: int = CACHE_RUNS, max_bytes: int = CACHE_BYTES) -> BoundedCache:
    """The cache of run lookups, weighed by config size: whatever holds runs keeps using it."""
    return BoundedCache(max_runs, ttl_s, max_bytes, weigh=lambda run: 200 + run.config_bytes)


def next_version(now_ns: int):  # noqa: ANN201 - a SQL expression
    """A run's next version: the clock in ns, but always above the last one
    (so the ClickHouse mirror, which keeps the highest, keeps the newest even
    when two hosts' clocks disagree)."""
    return case((runs.c.version + 1 > now_ns, runs.c.version + 1), else_=now_ns)


class Runs:
    """Runs of every org; see the module docstring for caching and mirroring."""

    def __init__(
        self, catalog: Catalog, mirror: RunMirror | None = None, ttl_s: float = 2.0, cache: BoundedCache | None = None
    ) -> None:
        self.catalog = catalog
        self.mirror = mirror
        self.ttl_s = ttl_s
        self._cache = cache if cache is not None else run_cache(ttl_s)

    async def get(self, org: str, run_id: str, fresh: bool = False) -> Run | None:
        if not fresh:
            hit = self._cache.get((org, run_id), MISSING)
            if hit is not MISSING:
                return hit  # type: ignore[return-value]
        async with self.catalog.connect() as conn:
            row = (
                await conn.execute(select(*_COLUMNS).where((runs.c.org == org) & (runs.c.run_id == run_id)))
            ).first()
            if row is None:
                return None
            run = _run(tuple(row))
            # Totals are per attempt: a writer of each attempt reports its own (run_id: the storage id).
            totals = await conn.execute(
                select(run_writers.c.run_id, run_writers.c.writer_id, run_writers.c.sent).where(
                    (run_writers.c.org == org) & run_writers.c.run_id.in_(run.storage_ids())
                )
            )
            for sid, w, n in totals:
                run.totals_by_storage.setdefault(sid, {})[w] = int(n)
            run.writer_totals = run.totals_by_storage.get(run.storage_id, {})
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
        resume: str | None = None,
    ) -> tuple[Run, bool]:
        """The run and whether it was created now (False: it existed).

        ``resume`` (W&B's meanings): None returns an existing run as it is;
        ``"allow"`` and ``"must"`` re-open it for ``writer_ids`` (``reopen``),
        ``"must"`` raising ``NotFound`` when there is none; ``"never"`` raises
        ``Conflict`` when it exists. Raises ``BadInput``/``PayloadTooLarge`` for
        a config past the contract's bounds."""
        check_config(config)
        if resume == "must" and not run_id:
            raise BadRequest("resume='must' needs the id of the run to resume")
        if run_id:
            existing = await self.get(org, run_id, fresh=True)
            if existing is not None:
                if existing.deleted_at_ms is not None:
                    raise Conflict(f"run {run_id!r} is deleted; restore it first (POST /v1/runs/{run_id}/restore)")
                if resume == "never":
                    raise Conflict(f"run {run_id!r} exists and resume is 'never'")
                if resume in ("allow", "must"):
                    return await self.reopen(org, run_id, writer_ids or []), False
                await self._mirror(existing)  # repairs a mirror write lost to an earlier outage
                return existing, False
            if resume == "must":
                raise NotFound(f"unknown run {run_id!r}: resume='must' needs an existing run")
        run_id = run_id or secrets.token_hex(6)
        run = Run(
            org, run_id, project, name or run_id, "running", config or {}, writer_ids or [],
            int(time.time() * 1000), None, fingerprint or {}, version=time.time_ns(),
        )
        try:
            async with self.catalog.begin() as conn:
                # A run names its project into existence (POST /v1/projects can set its goal later).
                await ensure_project(conn, org, project, run.created_at_ms)
                await conn.execute(
                    runs.insert().values(
                        org=run.org, run_id=run.run_id, project=run.project, name=run.name, status=run.status,
                        config=run.config, writer_ids=run.writer_ids, fingerprint=run.fingerprint,
                        created_at=run.created_at_ms, finished_at=None, version=run.version,
                    )
                )
        except IntegrityError:
            # Another process created the same id between our read and insert: one run, theirs.
            existing = await self.get(org, run_id, fresh=True)
            if existing is None:
                raise
            if resume == "never":
                raise Conflict(f"run {run_id!r} exists and resume is 'never'") from None
            return existing, False
        run.config_bytes = len(msgspec.json.encode(run.config))
        await self._mirror(run)
        self._cache.put((org, run_id), run)
        return run, True

    async def finish(
        self, org: str, run_id: str, status: str, writer_totals: dict[str, int], attempt: int | None = None
    ) -> Run | None:
        """Finish a run (or report more writers' totals); None if there is no such run.

        The first finish sets the status; a finished run's later finishes keep
        it. A total already reported may be reported again (a retry) but not
        changed: ``Conflict``, and nothing of the call is recorded. Totals are
        per attempt: those of the current one (``attempt``, when given, must be
        it: the writers of an attempt a rewind superseded are refused, ``Conflict``,
        as their points are, so their refused points never count as lost)."""
        now = int(time.time() * 1000)
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            # FOR UPDATE (PostgreSQL; SQLite's write transaction locks the whole file):
            # finishes of one run from any process run one after the other.
            row = (await conn.execute(
                select(runs.c.status, runs.c.finished_at, runs.c.attempts).where(where).with_for_update()
            )).first()
            if row is None:
                return None
            attempts = row[2] or [{"attempt": 0, "storage_id": run_id, "start_step": 0}]
            current = attempts[-1]
            if attempt is not None and attempt != int(current["attempt"]):
                raise Conflict(
                    f"attempt {attempt} of run {run_id!r} is stale: the run was rewound to step "
                    f"{current['start_step']} (attempt {current['attempt']}); this writer's finish is refused"
                    if attempt < int(current["attempt"]) else f"run {run_id!r} has no attempt {attempt}"
                )
            sid = current["storage_id"]
            w_where = (run_writers.c.org == org) & (run_writers.c.run_id == sid)
            have = {w: int(n) for w, n in await conn.execute(
                select(run_writers.c.writer_id, run_writers.c.sent).where(w_where)
            )}
            changed = sorted(w for w, n in writer_totals.items() if have.get(w, n) != n)
            if changed:
                w = changed[0]
                raise Conflict(
                    f"writer {w!r} of run {run_id!r} already reported {have[w]} points; "
                    f"a writer's total is final (got {writer_totals[w]})"
                )
            new = [
                {"org": org, "run_id": sid, "writer_id": w, "sent": n, "reported_at": now}
                for w, n in writer_totals.items() if w not in have
            ]
            if new:
                await conn.execute(run_writers.insert(), new)
            # A crash the server detected (no finished_at) ends when a writer finishes after all.
            finished_now = row[0] == "running" or (row[0] == "crashed" and row[1] is None)
            if finished_now:
                await conn.execute(
                    update(runs).where(where).values(
                        status=status, finished_at=now, version=next_version(time.time_ns())
                    )
                )
        run = await self.get(org, run_id, fresh=True)
        if run is not None and finished_now:
            await self._mirror(run)
        return run

    async def reopen(self, org: str, run_id: str, writer_ids: list[str]) -> Run:
        """Resume a run: it is running again, and the totals ``writer_ids``
        reported at an earlier finish are withdrawn (the resumed writers
        continue their seq ranges and report new totals). A resumed writer
        first asks where its range ended (``query/writers.py``), which
        counts the withdrawn total. ``NotFound`` if the run is gone."""
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(select(runs.c.status, runs.c.attempts).where(where).with_for_update())).first()
            if row is None:
                raise NotFound(f"unknown run {run_id!r}")
            sid = (row[1] or [{"storage_id": run_id}])[-1]["storage_id"]  # the current attempt resumes
            if writer_ids:
                await conn.execute(
                    delete(run_writers).where(
                        (run_writers.c.org == org) & (run_writers.c.run_id == sid)
                        & run_writers.c.writer_id.in_(writer_ids)
                    )
                )
            reopened = row[0] != "running"
            if reopened:
                await conn.execute(
                    update(runs).where(where).values(
                        status="running", finished_at=None, version=next_version(time.time_ns())
                    )
                )
        run = await self.get(org, run_id, fresh=True)
        if run is None:
            raise NotFound(f"unknown run {run_id!r}")
        await self._mirror(run)
        return run

    async def rewind(self, org: str, run_id: str, step: int, writer_ids: list[str]) -> tuple[Run, bool]:
        """Open a new attempt of the run from ``step`` (``arwx/segments.py``): its history
        shows the earlier attempts below ``step`` and the new one from ``step`` on. Returns
        the run and whether an attempt was opened now (False: joined).

        Every rank of a restarted job asks: the first opens attempt k+1 for its
        ``writer_ids``; a rank whose writers are not in the current attempt, which
        starts at the same step, joins it. A writer already in it restarts again:
        a new attempt. ``NotFound``/``Conflict`` (deleted)."""
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        now = int(time.time() * 1000)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(
                select(*_COLUMNS).where(where).with_for_update()
            )).first()
            if row is None:
                raise NotFound(f"unknown run {run_id!r}")
            run = _run(tuple(row))
            if run.deleted_at_ms is not None:
                raise Conflict(f"run {run_id!r} is deleted; restore it first (POST /v1/runs/{run_id}/restore)")
            if run.fork_step is not None and step < run.fork_step:
                raise BadRequest(
                    f"run {run_id!r} was forked at step {run.fork_step}; rewind to a step >= that, or fork its "
                    "parent instead"
                )
            attempts = [dict(a) for a in run.attempts]
            cur = attempts[-1]
            joined = (
                cur["attempt"] > 0 and cur["start_step"] == step and bool(writer_ids)
                and not set(writer_ids) & set(cur["writers"])
            )
            if joined:
                cur["writers"] = [*cur["writers"], *writer_ids]
                segments = run.segments
            else:
                k = cur["attempt"] + 1
                sid = storage_id(run_id, k)
                attempts.append(
                    {"attempt": k, "storage_id": sid, "start_step": step, "created_at": now, "writers": list(writer_ids)}
                )
                segments = branch(run.segments, sid, step)
            await conn.execute(
                update(runs).where(where).values(
                    attempts=attempts, segments=[list(s) for s in segments], status="running", finished_at=None,
                    version=next_version(time.time_ns()),
                )
            )
        got = await self._changed(org, run_id)
        if got is None:
            raise NotFound(f"unknown run {run_id!r}")
        return got, not joined

    async def fork(
        self, org: str, parent_id: str, step: int, run_id: str | None, project: str | None, name: str | None,
        config: dict | None, writer_ids: list[str] | None,
    ) -> tuple[Run, bool]:
        """A new run whose history below ``step`` is the parent's as it is visible now (its
        segments, clipped; nothing copied) and its own from ``step`` on. Idempotent on
        ``run_id`` for the same parent and step (every rank forks); another run of that id is a
        ``Conflict``. Returns the run and whether it was created now."""
        check_config(config)
        parent = await self.get(org, parent_id, fresh=True)
        if parent is None:
            raise NotFound(f"unknown run {parent_id!r}")
        if parent.deleted_at_ms is not None:
            raise Conflict(f"run {parent_id!r} is deleted; restore it to fork it")
        run_id = run_id or secrets.token_hex(6)
        if run_id == parent_id:
            raise BadRequest("a fork needs an id of its own; to restart a run from a step, rewind it")
        existing = await self.get(org, run_id, fresh=True)
        if existing is not None:
            if existing.forked_from == parent_id and existing.fork_step == step:
                return existing, False
            raise Conflict(f"run {run_id!r} exists and is not a fork of {parent_id!r} at step {step}")
        segments = branch(parent.segments, run_id, step)
        now = int(time.time() * 1000)
        run = Run(
            org, run_id, project or parent.project, name or run_id, "running",
            config if config is not None else dict(parent.config), writer_ids or [], now, None, {},
            version=time.time_ns(), segment_rows=segments, forked_from=parent_id, fork_step=step,
        )
        try:
            async with self.catalog.begin() as conn:
                await ensure_project(conn, org, run.project, now)
                await conn.execute(
                    runs.insert().values(
                        org=org, run_id=run_id, project=run.project, name=run.name, status=run.status,
                        config=run.config, writer_ids=run.writer_ids, fingerprint={}, created_at=now,
                        finished_at=None, version=run.version, segments=[list(s) for s in segments],
                        forked_from=parent_id, fork_step=step,
                    )
                )
        except IntegrityError:
            existing = await self.get(org, run_id, fresh=True)
            if existing is not None and existing.forked_from == parent_id and existing.fork_step == step:
                return existing, False
            raise Conflict(f"run {run_id!r} exists and is not a fork of {parent_id!r} at step {step}") from None
        got = await self._changed(org, run_id)
        assert got is not None
        return got, True

    async def segments_of(self, org: str, run_ids: list[str]) -> dict[str, list[Segment]]:
        """The segments of those of ``run_ids`` that were rewound or forked (one query; the
        others read under their own id)."""
        if not run_ids:
            return {}
        async with self.catalog.connect() as conn:
            rows = await conn.execute(
                select(runs.c.run_id, runs.c.segments).where(
                    (runs.c.org == org) & runs.c.run_id.in_(run_ids) & runs.c.segments.is_not(None)
                )
            )
            return {r: [(sid, int(lo), None if hi is None else int(hi)) for sid, lo, hi in segs] for r, segs in rows}

    async def referencing(self, org: str, run: Run) -> list[str]:
        """Ids of the org's other runs whose visible history reads any of ``run``'s attempts
        (its forks, and forks of those): what purging its points would break."""
        own = set(run.storage_ids())
        async with self.catalog.connect() as conn:
            rows = await conn.execute(
                select(runs.c.run_id, runs.c.segments).where((runs.c.org == org) & runs.c.segments.is_not(None))
            )
            return sorted(r for r, segs in rows if r != run.run_id and any(seg[0] in own for seg in segs or []))

    async def list(self, org: str, project: str | None = None, statuses: tuple[str, ...] = (),
                   limit: int = 100) -> list[Run]:
        """The org's runs, newest first: of one project, in some statuses (writer totals not read)."""
        q = select(*_COLUMNS).where(runs.c.org == org)
        if project is not None:
            q = q.where(runs.c.project == project)
        if statuses:
            q = q.where(runs.c.status.in_(statuses))
        async with self.catalog.connect() as conn:
            rows = await conn.execute(q.order_by(runs.c.created_at.desc(), runs.c.run_id).limit(limit))
            return [_run(tuple(r)) for r in rows]

    async def merge_config(self, org: str, run_id: str, patch: dict) -> Run | None:
        """Set top-level keys of a run's config (others kept); None if there is no such run.
        ``BadInput``/``PayloadTooLarge`` if the result is past the contract's bounds (nothing changes)."""
        return await self.update_config(org, run_id, lambda config: {**config, **patch})

    async def update_config(self, org: str, run_id: str, change: Callable[[dict], dict]) -> Run | None:
        """Replace a run's config by ``change(config)``, under the run's row lock (so two
        adapters' merges never lose each other's keys); None if there is no such run.
        ``change`` may raise to refuse (nothing is written); the result is held to
        ``check_config``'s bounds like a config given at create."""
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(select(runs.c.config).where(where).with_for_update())).first()
            if row is None:
                return None
            config = change(dict(row[0] or {}))
            if config == row[0]:
                return await self.get(org, run_id)
            check_config(config)
            await conn.execute(update(runs).where(where).values(config=config, version=next_version(time.time_ns())))
        run = await self.get(org, run_id, fresh=True)
        if run is not None:
            await self._mirror(run)
        return run

    async def heartbeat(self, org: str, run_id: str) -> Run | None:
        """A writer of the run is alive: record the time, and a run the server had judged
        ``crashed`` (``mark_crashed``) is ``running`` again. None if there is no such run."""
        now = int(time.time() * 1000)
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(select(runs.c.status, runs.c.finished_at).where(where))).first()
            if row is None:
                return None
            back = row[0] == "crashed" and row[1] is None  # detected, not reported, crash
            values: dict = {"heartbeat_at": now}
            if back:
                values.update(status="running", version=next_version(time.time_ns()))
            # The status condition makes a racing finish win: it is never undone here.
            await conn.execute(update(runs).where(where & (runs.c.status == row[0])).values(**values))
        run = await self.get(org, run_id, fresh=True)
        if run is not None and back:
            await self._mirror(run)
        return run

    async def mark_crashed(self, silent_ms: int) -> list[Run]:
        """Running runs whose writers all went silent (no heartbeat for ``silent_ms``) become
        ``crashed``; runs that never sent a heartbeat are never judged. Returns those changed."""
        cutoff = int(time.time() * 1000) - silent_ms
        silent = (
            (runs.c.status == "running") & runs.c.heartbeat_at.is_not(None) & (runs.c.heartbeat_at < cutoff)
            & runs.c.deleted_at.is_(None)
        )
        changed = []
        async with self.catalog.begin() as conn:
            found = (await conn.execute(select(runs.c.org, runs.c.run_id).where(silent))).all()
            for org, run_id in found:
                # One by one, each re-checked: a heartbeat or finish since the read wins.
                res = await conn.execute(
                    update(runs).where(silent & (runs.c.org == org) & (runs.c.run_id == run_id))
                    .values(status="crashed", version=next_version(time.time_ns()))
                )
                if res.rowcount:
                    changed.append((org, run_id))
        out = []
        for org, run_id in changed:
            run = await self.get(org, run_id, fresh=True)
            if run is not None:
                await self._mirror(run)
                out.append(run)
        return out

    async def update(
        self, org: str, run_id: str, *, name: str | None = None, tags: list[str] | None = None,
        notes: str | None = None, config: dict | None = None,
    ) -> Run | None:
        """Edit a run: ``name``, ``tags`` and ``notes`` replace; ``config`` is merged into the
        run's config key by key (a key set to None is removed: JSON merge patch at the top
        level). None if there is no such run; ``BadInput``/``PayloadTooLarge`` for a config
        past the contract's bounds."""
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(select(runs.c.config).where(where).with_for_update())).first()
            if row is None:
                return None
            values: dict = {}
            if config is not None:
                merged = {**(row[0] or {}), **config}
                merged = {k: v for k, v in merged.items() if v is not None}
                if merged != row[0]:
                    check_config(merged)
                    values["config"] = merged
            if name is not None:
                values["name"] = name
            if tags is not None:
                values["tags"] = list(dict.fromkeys(tags))
            if notes is not None:
                values["notes"] = notes
            if not values:  # nothing changes (an adapter re-setting a param): no new version to mirror
                return await self.get(org, run_id)
            await conn.execute(update(runs).where(where).values(**values, version=next_version(time.time_ns())))
        return await self._changed(org, run_id)

    async def set_deleted(self, org: str, run_id: str, deleted: bool) -> Run | None:
        """Soft-delete (or restore) a run: hidden from lists and charts, its points kept,
        new points refused until it is restored. None if there is no such run."""
        where = (runs.c.org == org) & (runs.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            res = await conn.execute(
                update(runs).where(where).values(
                    deleted_at=int(time.time() * 1000) if deleted else None, version=next_version(time.time_ns())
                )
            )
            if not res.rowcount:
                return None
        return await self._changed(org, run_id)

    async def forget(self, org: str, run_id: str) -> None:
        """Remove the run's catalog rows (after its data was purged from ClickHouse)."""
        run = await self.get(org, run_id, fresh=True)
        sids = run.storage_ids() if run is not None else [run_id]
        async with self.catalog.begin() as conn:
            await conn.execute(delete(run_writers).where((run_writers.c.org == org) & run_writers.c.run_id.in_(sids)))
            await conn.execute(delete(runs).where((runs.c.org == org) & (runs.c.run_id == run_id)))
        self._cache.pop((org, run_id))

    async def _changed(self, org: str, run_id: str) -> Run | None:
        run = await self.get(org, run_id, fresh=True)
        if run is not None:
            await self._mirror(run)
        return run

    async def sync_mirror(self, batch: int = 5000) -> int:
        """Copy to the mirror every run it lacks at its catalog version; how many were copied."""
        if self.mirror is None:
            return 0
        have = await self.mirror.versions()
        pending: list[Run] = []
        copied = 0
        async with self.catalog.connect() as conn:
            async for row in await conn.stream(select(*_COLUMNS)):
                if have.get((row[0], row[1])) != row[10]:
                    pending.append(_run(tuple(row)))
                if len(pending) >= batch:
                    await self.mirror.write(pending)
                    copied, pending = copied + len(pending), []
        await self.mirror.write(pending)
        return copied + len(pending)

    async def _mirror(self, run: Run) -> None:
        if self.mirror is not None:
            await self.mirror.write([run])
