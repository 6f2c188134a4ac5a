"""Wild V2 sweeps and runs over the catalog: create, start, stop, read, audit.

A sweep is an arwx project (``control/projects.py::ensure``); a Wild run is an
arwx run of the same id in that project (``arwx/runs.py``), so its metrics,
charts, receipt and dashboard page are every run's. What arwx runs lack (the
command, the launch status, the runner, the exit code) is in ``wild_runs``.

Commands never run here: ``start`` only queues a run; a runner process
(``arwx/runner``) claims it through ``dispatch.Dispatch``. Every call takes
the caller's org first and never reads across orgs (another org's sweep or
run is ``NotFound``). This module knows nothing of HTTP.
"""

from __future__ import annotations

import secrets

from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError

from arwx.catalog import Catalog
from arwx.catalog.tables import wild_audit, wild_runs, wild_sweeps
from arwx.compat.wild.state import ARWX_STATUS, audit, is_final, move, now_ms, run_row
from arwx.compat.wild.wire import RUN_STATUSES, WildRunCreate, WildSweepCreate
from arwx.control.projects import ensure as ensure_project
from arwx.errors import BadRequest, Conflict, NotFound
from arwx.runs import Runs
from arwx.store.base import Store
from arwx.tenancy import Tenancy

MAX_PAGE = 1000
MAX_METRIC_KEYS = 1000  # GET /runs/:id shows at most this many keys' latest values


def _ms(v: int | None) -> float | None:
    return None if v is None else v / 1000


def sweep_json(row: Row) -> dict:
    return {
        "id": row.id, "name": row.name, "goal": row.goal, "project": row.project,
        "chat_session_id": row.chat_session_id, "created_by": row.created_by, "created_at": row.created_at / 1000,
    }


def run_json(row: Row) -> dict:
    end = row.ended_at if row.ended_at is not None else None
    return {
        "id": row.id, "name": row.name, "sweep_id": row.sweep_id, "command": row.command, "status": row.status,
        "exit_code": row.exit_code, "error": row.error, "runner_id": row.runner_id,
        "stop_requested": bool(row.stop_requested), "chat_session_id": row.chat_session_id,
        "created_by": row.created_by, "created_at": row.created_at / 1000, "queued_at": _ms(row.queued_at),
        "started_at": _ms(row.started_at), "ended_at": _ms(end),
        "duration_s": None if row.started_at is None or end is None else (end - row.started_at) / 1000,
        "arwx_run": f"/v1/runs/{row.id}",
    }


def audit_json(row: Row) -> dict:
    return {
        "seq": row.seq, "action": row.action, "sweep_id": row.sweep_id, "run_id": row.run_id, "key_id": row.key_id,
        "chat_session_id": row.chat_session_id, "detail": row.detail, "at": row.at / 1000,
    }


class WildService:
    """Sweeps, runs and their audit trail; ``end_effects`` closes an ended run's arwx side."""

    def __init__(self, catalog: Catalog, runs: Runs, tenancy: Tenancy, store: Store) -> None:
        self.catalog = catalog
        self.runs = runs
        self.tenancy = tenancy
        self.store = store

    # -- sweeps --------------------------------------------------------------------------------
    async def create_sweep(self, org: str, key_id: str, req: WildSweepCreate) -> tuple[dict, bool]:
        """The sweep named ``req.name`` (created now, or the org's existing one: "create or reuse");
        (sweep, created)."""
        now = now_ms()
        sweep_id = "sw-" + secrets.token_hex(8)
        try:
            async with self.catalog.begin() as conn:
                existing = (await conn.execute(
                    select(wild_sweeps).where(wild_sweeps.c.org == org, wild_sweeps.c.name == req.name)
                )).first()
                if existing is not None:
                    await audit(conn, org, "sweep.reuse", key_id, sweep_id=existing.id,
                                chat_session_id=req.chat_session_id, at=now)
                    return sweep_json(existing), False
                await ensure_project(conn, org, req.name, now)
                await conn.execute(wild_sweeps.insert().values(
                    org=org, id=sweep_id, name=req.name, goal=req.goal, project=req.name,
                    chat_session_id=req.chat_session_id, created_by=key_id, created_at=now,
                ))
                await audit(conn, org, "sweep.create", key_id, sweep_id=sweep_id, chat_session_id=req.chat_session_id,
                            detail={"name": req.name, "goal": req.goal}, at=now)
        except IntegrityError:
            # Created by a concurrent request with the same name: that one is the sweep.
            async with self.catalog.connect() as conn:
                won = await conn.scalar(
                    select(wild_sweeps.c.id).where(wild_sweeps.c.org == org, wild_sweeps.c.name == req.name)
                )
            if won is None:
                raise
            return await self.sweep(org, won, with_runs=False), False
        return await self.sweep(org, sweep_id, with_runs=False), True

    async def _sweep_row(self, conn, org: str, sweep_id: str) -> Row:  # noqa: ANN001 - AsyncConnection
        row = (await conn.execute(
            select(wild_sweeps).where(wild_sweeps.c.org == org, wild_sweeps.c.id == sweep_id)
        )).first()
        if row is None:
            raise NotFound(f"unknown sweep {sweep_id!r}")
        return row

    async def _counts(self, conn, org: str, sweep_ids: list[str]) -> dict[str, dict[str, int]]:  # noqa: ANN001
        out: dict[str, dict[str, int]] = {s: dict.fromkeys(RUN_STATUSES, 0) for s in sweep_ids}
        if sweep_ids:
            rows = await conn.execute(
                select(wild_runs.c.sweep_id, wild_runs.c.status, func.count())
                .where(wild_runs.c.org == org, wild_runs.c.sweep_id.in_(sweep_ids))
                .group_by(wild_runs.c.sweep_id, wild_runs.c.status)
            )
            for sweep_id, status, n in rows:
                out[sweep_id][status] = int(n)
        return out

    async def sweep(self, org: str, sweep_id: str, with_runs: bool = True) -> dict:
        """The sweep, its runs (oldest first) and their status counts."""
        async with self.catalog.connect() as conn:
            row = await self._sweep_row(conn, org, sweep_id)
            out = sweep_json(row)
            counts = (await self._counts(conn, org, [sweep_id]))[sweep_id]
            out.update(counts=counts, total=sum(counts.values()))
            if with_runs:
                rows = await conn.execute(
                    select(wild_runs).where(wild_runs.c.org == org, wild_runs.c.sweep_id == sweep_id)
                    .order_by(wild_runs.c.created_at, wild_runs.c.id).limit(MAX_PAGE)
                )
                out["runs"] = [run_json(r) for r in rows]
        return out

    async def sweeps(self, org: str, limit: int = 100) -> dict:
        """The org's sweeps, newest first, each with its status counts."""
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(
                select(wild_sweeps).where(wild_sweeps.c.org == org)
                .order_by(wild_sweeps.c.created_at.desc(), wild_sweeps.c.id.desc()).limit(limit)
            )).all()
            counts = await self._counts(conn, org, [r.id for r in rows])
        out = []
        for r in rows:
            s = sweep_json(r)
            s.update(counts=counts[r.id], total=sum(counts[r.id].values()))
            out.append(s)
        return {"sweeps": out}

    # -- runs ----------------------------------------------------------------------------------
    async def create_run(self, org: str, key_id: str, req: WildRunCreate) -> dict:
        """A run of ``req.command`` in the sweep: ``queued`` with ``auto_start``, else ``created``.
        Its arwx run exists from now on (same id, the sweep's project)."""
        async with self.catalog.connect() as conn:
            sweep = await self._sweep_row(conn, org, req.sweep_id)
        run_id = "wr-" + secrets.token_hex(8)
        # The arwx run first: the SDK inside the command finds it by ARWANDB_RUN_ID.
        await self.runs.create(
            org, run_id, sweep.project, req.name,
            {"wild": {"sweep_id": sweep.id, "command": req.command, "chat_session_id": req.chat_session_id}}, None,
        )
        now = now_ms()
        status = "queued" if req.auto_start else "created"
        async with self.catalog.begin() as conn:
            await conn.execute(wild_runs.insert().values(
                org=org, id=run_id, sweep_id=sweep.id, name=req.name, command=req.command,
                chat_session_id=req.chat_session_id, status=status, exit_code=None, error=None, runner_id=None,
                key_id=None, stop_requested=False, created_by=key_id, created_at=now,
                queued_at=now if req.auto_start else None, started_at=None, ended_at=None,
            ))
            await audit(conn, org, "run.create", key_id, sweep_id=sweep.id, run_id=run_id,
                        chat_session_id=req.chat_session_id,
                        detail={"name": req.name, "command": req.command, "auto_start": req.auto_start}, at=now)
            if req.auto_start:
                await audit(conn, org, "run.start", key_id, sweep_id=sweep.id, run_id=run_id,
                            chat_session_id=req.chat_session_id, at=now)
        return await self.run(org, run_id, with_metrics=False)

    async def run(self, org: str, run_id: str, with_metrics: bool = True) -> dict:
        """The run: status, exit code, timings and (``with_metrics``) the latest value of each metric it logged."""
        async with self.catalog.connect() as conn:
            row = await run_row(conn, org, run_id)
        if row is None:
            raise NotFound(f"unknown run {run_id!r}")
        out = run_json(row)
        if with_metrics:
            out["metrics"] = await self.latest_metrics(org, run_id)
        return out

    async def latest_metrics(self, org: str, run_id: str) -> dict[str, dict]:
        """Per metric key: the value at its highest step, that step, and how many points it has."""
        rows = await self.store.rows(
            "SELECT key, argMax(value, (step, ts)), max(step), count() FROM points FINAL"
            " WHERE org = {org:String} AND run_id = {run:String} AND isFinite(value)"
            " GROUP BY key ORDER BY key LIMIT {limit:UInt32}",
            {"org": org, "run": run_id, "limit": MAX_METRIC_KEYS},
        )
        return {k: {"last": float(v), "step": int(s), "count": int(n)} for k, v, s, n in rows}

    async def list_runs(self, org: str, sweep_id: str | None, status: str | None, limit: int = 100) -> dict:
        """The org's runs, newest first, filtered by sweep and status."""
        if status is not None and status not in RUN_STATUSES:
            raise BadRequest(f"status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        where = [wild_runs.c.org == org]
        if sweep_id is not None:
            where.append(wild_runs.c.sweep_id == sweep_id)
        if status is not None:
            where.append(wild_runs.c.status == status)
        async with self.catalog.connect() as conn:
            if sweep_id is not None:
                await self._sweep_row(conn, org, sweep_id)
            rows = await conn.execute(
                select(wild_runs).where(*where)
                .order_by(wild_runs.c.created_at.desc(), wild_runs.c.id.desc()).limit(limit)
            )
            return {"runs": [run_json(r) for r in rows]}

    async def status_counts(self, org: str) -> dict[str, int]:
        """How many of the org's runs are in each status."""
        async with self.catalog.connect() as conn:
            rows = await conn.execute(
                select(wild_runs.c.status, func.count()).where(wild_runs.c.org == org).group_by(wild_runs.c.status)
            )
            counts = dict.fromkeys(RUN_STATUSES, 0)
            counts.update({s: int(n) for s, n in rows})
        return counts

    async def start(self, org: str, key_id: str, run_id: str, chat_session_id: str | None) -> dict:
        """Queue a ``created`` run; a queued or running one is left as it is; an ended one is a 409."""
        async with self.catalog.begin() as conn:
            row = await run_row(conn, org, run_id)
            if row is None:
                raise NotFound(f"unknown run {run_id!r}")
            if is_final(row.status):
                raise Conflict(f"run {run_id!r} has ended ({row.status}); create a new run to run it again")
            now = now_ms()
            if await move(conn, org, run_id, ["created"], "queued", queued_at=now):
                await audit(conn, org, "run.start", key_id, sweep_id=row.sweep_id, run_id=run_id,
                            chat_session_id=chat_session_id, at=now)
        return await self.run(org, run_id, with_metrics=False)

    async def stop(self, org: str, key_id: str, run_id: str, chat_session_id: str | None) -> dict:
        """Stop a run: one not claimed yet is ``stopped`` at once; a running one is asked to stop
        (its runner sends SIGTERM, then SIGKILL, and reports ``stopped``); an ended one is left."""
        ended = False
        async with self.catalog.begin() as conn:
            row = await run_row(conn, org, run_id)
            if row is None:
                raise NotFound(f"unknown run {run_id!r}")
            now = now_ms()
            if await move(conn, org, run_id, ["created", "queued"], "stopped", ended_at=now, stop_requested=True):
                ended = True
            elif row.status == "running" and not row.stop_requested:
                await conn.execute(
                    update(wild_runs).where(wild_runs.c.org == org, wild_runs.c.id == run_id,
                                            wild_runs.c.status == "running").values(stop_requested=True)
                )
            else:
                return await self.run(org, run_id, with_metrics=False)  # ended, or already asked: nothing to do
            await audit(conn, org, "run.stop", key_id, sweep_id=row.sweep_id, run_id=run_id,
                        chat_session_id=chat_session_id, detail={"was": row.status}, at=now)
        if ended:
            await self.end_effects(org, run_id, "stopped", None)
        return await self.run(org, run_id, with_metrics=False)

    async def end_effects(self, org: str, run_id: str, status: str, key_id: str | None) -> None:
        """After a run ended: revoke the write key its command had, and finish its arwx run
        (the SDK may have finished it first: the first finish wins)."""
        if key_id is not None:
            await self.tenancy.revoke_key(org, key_id)
        await self.runs.finish(org, run_id, ARWX_STATUS[status], {})

    # -- audit ---------------------------------------------------------------------------------
    async def audit_trail(self, org: str, sweep_id: str | None = None, run_id: str | None = None) -> dict:
        """Who did what to the sweep (and its runs) or the run, and when, oldest first."""
        async with self.catalog.connect() as conn:
            if run_id is not None:
                if await run_row(conn, org, run_id) is None:
                    raise NotFound(f"unknown run {run_id!r}")
                where = wild_audit.c.run_id == run_id
            else:
                assert sweep_id is not None
                await self._sweep_row(conn, org, sweep_id)
                where = wild_audit.c.sweep_id == sweep_id
            rows = await conn.execute(
                select(wild_audit).where(wild_audit.c.org == org, where).order_by(wild_audit.c.seq).limit(10_000)
            )
            return {"events": [audit_json(r) for r in rows]}
