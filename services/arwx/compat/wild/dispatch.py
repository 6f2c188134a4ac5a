"""The server's side of the runner protocol: heartbeats, claims, reports, lost runs, log uploads.

Invariants:

- A queued run is claimed by exactly one runner: the claim is a conditional
  UPDATE (``state.move`` from ``queued``), so of several runners racing for
  one run, one UPDATE matches and the others move on to the next run.
- A runner only ever sees and touches runs of its own key's org.
- A run held by a runner that has sent no heartbeat for ``lost_after_s`` is
  ``lost``; so is a run its (live) runner no longer lists as running. Time
  the server itself was down does not count against runners: a process
  declares nothing lost before it has been up for ``lost_after_s``.
- The write key a claimed run's command gets is minted at the claim and
  revoked when the run ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from arwx.catalog.tables import wild_runners, wild_runs
from arwx.compat.wild.service import WildService, run_json
from arwx.compat.wild.state import audit, is_final, move, now_ms, run_row
from arwx.compat.wild.wire import WildClaim, WildHeartbeat, WildReport
from arwx.errors import Conflict, NotFound

REAP_EVERY_S = 1.0  # reads reap lost runs at most this often per process
# What a run's command may do with its key: write its own run (create it, ingest, finish; the key is
# bound to the run, ``gateway/auth.py``); not read, not launch, no other run.
RUN_KEY_SCOPES = frozenset({"write"})


class Dispatch:
    """Runner-facing operations over the same catalog as ``WildService``."""

    def __init__(self, wild: WildService, lost_after_s: float) -> None:
        self.wild = wild
        self.catalog = wild.catalog
        self.lost_after_s = lost_after_s
        self.up_since = time.time()
        self._reaped_at = float("-inf")
        self._reap_lock = asyncio.Lock()

    # -- runners -------------------------------------------------------------------------------
    async def _runner(
        self, conn, org: str, key_id: str, runner_id: str, host: str | None = None,  # noqa: ANN001 - AsyncConnection
        capacity: int | None = None,
    ) -> None:
        """Record that the runner is alive (registering it; ``host``/``capacity`` when given);
        a runner id belongs to the key that first used it."""
        now = now_ms()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(wild_runners)
            .values(org=org, id=runner_id, key_id=key_id, host=host or "", capacity=capacity or 0, started_at=now,
                    last_heartbeat_at=now)
            .on_conflict_do_nothing(index_elements=["org", "id"])
        )
        values: dict = {"last_heartbeat_at": now}
        if host is not None:
            values["host"] = host
        if capacity is not None:
            values["capacity"] = capacity
        result = await conn.execute(
            update(wild_runners)
            .where(wild_runners.c.org == org, wild_runners.c.id == runner_id, wild_runners.c.key_id == key_id)
            .values(**values)
        )
        if result.rowcount != 1:
            raise Conflict(f"runner id {runner_id!r} is in use by another key; start this runner with another id")

    async def heartbeat(self, org: str, key_id: str, hb: WildHeartbeat) -> dict:
        """The runner is alive and runs ``hb.running``; the answer lists the runs it must stop
        (stop asked, or no longer its own: ended, lost). A run this runner holds but does not
        list, claimed over ``lost_after_s`` ago, is lost (the runner restarted without it)."""
        now = now_ms()
        lost: list[tuple[str, str | None]] = []
        async with self.catalog.begin() as conn:
            await self._runner(conn, org, key_id, hb.runner_id, hb.host, hb.capacity)
            held = (await conn.execute(
                select(wild_runs.c.id, wild_runs.c.stop_requested, wild_runs.c.started_at, wild_runs.c.key_id,
                       wild_runs.c.sweep_id)
                .where(wild_runs.c.org == org, wild_runs.c.runner_id == hb.runner_id, wild_runs.c.status == "running")
            )).all()
            held_ids = {r.id for r in held}
            stop = sorted(r.id for r in held if r.stop_requested and r.id in hb.running)
            # Listed but not held: ended here (stopped, lost) or never this runner's.
            stop += sorted(set(hb.running) - held_ids)
            for r in held:
                if r.id not in hb.running and (r.started_at or 0) < now - self.lost_after_s * 1000:
                    error = f"runner {hb.runner_id!r} no longer runs it"
                    if await move(conn, org, r.id, ["running"], "lost", held_by=hb.runner_id, ended_at=now,
                                  error=error):
                        await audit(conn, org, "run.lost", key_id, sweep_id=r.sweep_id, run_id=r.id,
                                    detail={"error": error}, at=now)
                        lost.append((r.id, r.key_id))
        for run_id, run_key in lost:
            await self.wild.end_effects(org, run_id, "lost", run_key)
        return {"stop": stop, "lost_after_s": self.lost_after_s}

    async def claim(self, org: str, key_id: str, req: WildClaim) -> dict:
        """Up to ``req.max`` queued runs of the org, oldest first, now ``running`` on this runner,
        each with the environment its command needs (a fresh write key among it)."""
        await self.reap()
        now = now_ms()
        rows = []
        async with self.catalog.begin() as conn:
            await self._runner(conn, org, key_id, req.runner_id)
            # PostgreSQL: rows another claim holds are skipped, not waited for. SQLite: this write
            # transaction holds the database's one write lock, so no other claim runs meanwhile.
            candidates = (await conn.execute(
                select(wild_runs.c.id).where(wild_runs.c.org == org, wild_runs.c.status == "queued")
                .order_by(wild_runs.c.queued_at, wild_runs.c.id).limit(req.max)
                .with_for_update(skip_locked=True)
            )).scalars().all()
            for run_id in candidates:
                # Compare-and-set all the same: correctness never rests on the lock alone.
                if await move(conn, org, run_id, ["queued"], "running", runner_id=req.runner_id, started_at=now):
                    row = await run_row(conn, org, run_id)
                    assert row is not None
                    await audit(conn, org, "run.claim", key_id, sweep_id=row.sweep_id, run_id=run_id,
                                detail={"runner_id": req.runner_id}, at=now)
                    rows.append(row)
        claimed = []
        for row in rows:
            claimed.append({**run_json(row), **await self._equip(org, row.id, row.sweep_id, row.name)})
        return {"runs": claimed}

    async def _equip(self, org: str, run_id: str, sweep_id: str, name: str) -> dict:
        """The claimed run's project and environment, with its own write key (revoked when the run ends)."""
        run_key, secret = await self.wild.tenancy.create_key(org, f"wild run {run_id}", RUN_KEY_SCOPES, run_id=run_id)
        async with self.catalog.begin() as conn:
            await conn.execute(update(wild_runs).where(wild_runs.c.org == org, wild_runs.c.id == run_id)
                               .values(key_id=run_key.key_id))
            status = await conn.scalar(select(wild_runs.c.status).where(wild_runs.c.org == org, wild_runs.c.id == run_id))
        if is_final(status):  # ended (lost, say) before its key was recorded: nobody else will revoke it
            await self.wild.tenancy.revoke_key(org, run_key.key_id)
        project = (await self.wild.sweep(org, sweep_id, with_runs=False))["project"]
        return {
            "project": project,
            "env": {"ARWANDB_API_KEY": secret, "ARWANDB_RUN_ID": run_id, "ARWANDB_PROJECT": project,
                    "ARWANDB_NAME": name},
        }

    async def report(self, org: str, key_id: str, run_id: str, rep: WildReport) -> dict:
        """The runner's command ended: record status and exit code (once; a resend is answered
        with what was recorded), then revoke its key and finish its arwx run."""
        now = now_ms()
        async with self.catalog.begin() as conn:
            row = await run_row(conn, org, run_id)
            if row is None or row.runner_id != rep.runner_id:
                raise NotFound(f"unknown run {run_id!r} for runner {rep.runner_id!r}")
            moved = await move(conn, org, run_id, ["running"], rep.status, held_by=rep.runner_id, ended_at=now,
                               exit_code=rep.exit_code, error=rep.error)
            if moved:
                await audit(conn, org, f"run.{rep.status}", key_id, sweep_id=row.sweep_id, run_id=run_id,
                            detail={"exit_code": rep.exit_code, "error": rep.error}, at=now)
        if moved:
            await self.wild.end_effects(org, run_id, rep.status, row.key_id)
        elif not is_final(row.status):
            raise Conflict(f"run {run_id!r} is {row.status}, not running")
        return await self.wild.run(org, run_id, with_metrics=False)

    # -- lost runs -----------------------------------------------------------------------------
    async def reap(self, force: bool = False) -> int:
        """Mark ``lost`` every running run whose runner has been silent for ``lost_after_s``
        (in any org); how many. Throttled to once per ``REAP_EVERY_S`` unless ``force``."""
        now = time.time()
        if now - self.up_since < self.lost_after_s:
            return 0  # the silence may be ours: runners could not reach a server that was down
        if not force and time.monotonic() - self._reaped_at < REAP_EVERY_S:
            return 0
        async with self._reap_lock:
            self._reaped_at = time.monotonic()
            cutoff = int((now - self.lost_after_s) * 1000)
            async with self.catalog.connect() as conn:
                silent = (await conn.execute(
                    select(wild_runs.c.org, wild_runs.c.id, wild_runs.c.runner_id, wild_runs.c.key_id,
                           wild_runs.c.sweep_id, wild_runners.c.key_id.label("runner_key"),
                           wild_runners.c.last_heartbeat_at)
                    .select_from(wild_runs.join(wild_runners, and_(
                        wild_runners.c.org == wild_runs.c.org, wild_runners.c.id == wild_runs.c.runner_id)))
                    .where(wild_runs.c.status == "running", wild_runners.c.last_heartbeat_at < cutoff)
                )).all()
            n = 0
            for r in silent:
                silent_s = (now * 1000 - r.last_heartbeat_at) / 1000
                error = f"runner {r.runner_id!r} silent for {silent_s:.0f} s (limit {self.lost_after_s:g} s)"
                async with self.catalog.begin() as conn:
                    if not await move(conn, r.org, r.id, ["running"], "lost", held_by=r.runner_id,
                                      ended_at=now_ms(), error=error):
                        continue  # reported meanwhile
                    await audit(conn, r.org, "run.lost", r.runner_key, sweep_id=r.sweep_id, run_id=r.id,
                                detail={"error": error})
                await self.wild.end_effects(r.org, r.id, "lost", r.key_id)
                n += 1
            return n

    async def runners(self, org: str) -> list[dict]:
        """The org's runners: last heartbeat, whether that is within ``lost_after_s``, capacity, running runs."""
        now = now_ms()
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(
                select(wild_runners).where(wild_runners.c.org == org).order_by(wild_runners.c.id)
            )).all()
            running: dict[str, list[str]] = {}
            for runner_id, run_id in await conn.execute(
                select(wild_runs.c.runner_id, wild_runs.c.id)
                .where(wild_runs.c.org == org, wild_runs.c.status == "running").order_by(wild_runs.c.id)
            ):
                running.setdefault(runner_id, []).append(run_id)
        return [
            {
                "id": r.id, "host": r.host, "key_id": r.key_id, "capacity": r.capacity,
                "started_at": r.started_at / 1000, "last_heartbeat_at": r.last_heartbeat_at / 1000,
                "seconds_since_heartbeat": round((now - r.last_heartbeat_at) / 1000, 3),
                "alive": now - r.last_heartbeat_at <= self.lost_after_s * 1000,
                "running": running.get(r.id, []),
            }
            for r in rows
        ]

    async def check_runner_run(self, org: str, runner_id: str, run_id: str) -> None:
        """``NotFound`` unless ``run_id`` is (or was) held by ``runner_id`` in ``org``."""
        async with self.catalog.connect() as conn:
            row = await run_row(conn, org, run_id)
        if row is None or row.runner_id != runner_id:
            raise NotFound(f"unknown run {run_id!r} for runner {runner_id!r}")
