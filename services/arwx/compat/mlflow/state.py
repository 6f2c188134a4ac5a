"""What MLflow has and arwx's runs do not, in the catalog (``catalog/tables.py``, ``mlflow_*``).

Invariants:

- Everything is keyed by organization first; no lookup crosses orgs.
- Experiment ids are per-org integers, handed out as strings ("0" is
  ``Default``, made on first use), as MLflow's own SQL store does.
- Metric seqs of a run's writer ``mlflow`` (``WRITER``) are reserved by
  ``arwx.ingest.reserved_seqs`` (``seqs``), the one reservation every adapter
  uses; ``RunRow.next_seq`` is read from there.
- Every method is one transaction; per-run writes lock the run's row first
  (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction locks the file),
  so processes sharing a PostgreSQL catalog serialize per run. Values reach
  SQL only as parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import (
    mlflow_artifacts,
    mlflow_experiments,
    mlflow_latest_metrics,
    mlflow_runs,
    writer_seqs,
)
from arwx.control.projects import MAX_NAME as MAX_PROJECT_NAME
from arwx.control.projects import ensure as ensure_project
from arwx.ingest.reserved_seqs import ReservedSeqs

E, R, LM, A, W = mlflow_experiments, mlflow_runs, mlflow_latest_metrics, mlflow_artifacts, writer_seqs
#: The writer id of every point the adapter logs.
WRITER = "mlflow"
# A run's row with its writer's next seq (0 before its first reservation).
_RUN_WITH_SEQ = select(R, func.coalesce(W.c.next_seq, literal(0)).label("next_seq")).select_from(
    R.outerjoin(W, (W.c.org == R.c.org) & (W.c.run_id == R.c.run_id) & (W.c.writer_id == WRITER))
)


@dataclass
class Experiment:
    org: str
    experiment_id: int
    name: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunRow:
    org: str
    run_id: str
    experiment_id: int
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    params: dict[str, str]
    tags: dict[str, str]
    next_seq: int = 0
    outputs: list[dict] = field(default_factory=list)  # [{model_id, step}]: models the run logged
    metrics: dict[str, tuple[float | None, int, int]] = field(default_factory=dict)  # key -> (value, ts, step)


class ParamChanged(ValueError):
    """A param logged again with another value (MLflow refuses that too)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _experiment(r: Any) -> Experiment:
    return Experiment(r.org, int(r.experiment_id), r.name, r.lifecycle_stage, int(r.creation_time),
                      int(r.last_update_time), dict(r.tags or {}))


def _run(r: Any) -> RunRow:
    return RunRow(r.org, r.run_id, int(r.experiment_id), r.run_name, r.user_id, r.status, int(r.start_time),
                  None if r.end_time is None else int(r.end_time), r.lifecycle_stage, dict(r.params or {}),
                  dict(r.tags or {}), int(r.next_seq), list(r.outputs or []))


class MlflowState:
    """The adapter's rows in the catalog; every method is one transaction."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.seqs = ReservedSeqs(catalog)

    # -- experiments ---------------------------------------------------------------------------
    @staticmethod
    async def _ensure_default(conn: AsyncConnection, org: str) -> None:
        if (await conn.execute(select(E.c.experiment_id).where((E.c.org == org) & (E.c.experiment_id == 0)))).first():
            return
        now = _now_ms()
        try:
            async with conn.begin_nested():
                await conn.execute(E.insert().values(org=org, experiment_id=0, name="Default", lifecycle_stage="active",
                                                     creation_time=now, last_update_time=now, tags={}))
        except IntegrityError:
            pass  # made at the same time by another request

    async def create_experiment(self, org: str, name: str, tags: dict[str, str]) -> Experiment | None:
        """The new experiment, or None if the org has one of that name."""
        async with self.catalog.begin() as conn:
            await self._ensure_default(conn, org)
            if (await conn.execute(select(E.c.experiment_id).where((E.c.org == org) & (E.c.name == name)))).first():
                return None
            top = (await conn.execute(select(func.max(E.c.experiment_id)).where(E.c.org == org))).scalar() or 0
            now = _now_ms()
            e = Experiment(org, int(top) + 1, name, "active", now, now, tags)
            try:
                async with conn.begin_nested():
                    await conn.execute(E.insert().values(org=org, experiment_id=e.experiment_id, name=name,
                                                         lifecycle_stage="active", creation_time=now,
                                                         last_update_time=now, tags=tags))
            except IntegrityError:
                return None  # the name (or the id) was taken at the same time
            if len(name) <= MAX_PROJECT_NAME:  # the experiment is the arwx project of the same name
                await ensure_project(conn, org, name, now)
            return e

    async def experiment(self, org: str, *, experiment_id: int | None = None, name: str | None = None) -> Experiment | None:
        async with self.catalog.begin() as conn:
            await self._ensure_default(conn, org)
            where = (E.c.org == org) & ((E.c.name == name) if name is not None else (E.c.experiment_id == experiment_id))
            r = (await conn.execute(select(E).where(where))).first()
            return _experiment(r) if r else None

    async def experiments(self, org: str) -> list[Experiment]:
        async with self.catalog.begin() as conn:
            await self._ensure_default(conn, org)
            rows = await conn.execute(select(E).where(E.c.org == org).order_by(E.c.experiment_id))
            return [_experiment(r) for r in rows]

    async def update_experiment(self, org: str, experiment_id: int, *, name: str | None = None,
                                lifecycle_stage: str | None = None, tags: dict[str, str] | None = None) -> bool:
        """False if there is no such experiment; ``ValueError`` if ``name`` is taken."""
        where = (E.c.org == org) & (E.c.experiment_id == experiment_id)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(E).where(where).with_for_update())).first()
            if r is None:
                return False
            e = _experiment(r)
            if name is not None and name != e.name:
                if (await conn.execute(select(E.c.experiment_id).where((E.c.org == org) & (E.c.name == name)))).first():
                    raise ValueError(f"an experiment named {name!r} already exists")
                e.name = name
            e.tags.update(tags or {})
            await conn.execute(E.update().where(where).values(
                name=e.name, lifecycle_stage=lifecycle_stage or e.lifecycle_stage, tags=e.tags,
                last_update_time=_now_ms()))
            return True

    # -- runs ------------------------------------------------------------------------------------
    @staticmethod
    async def _with_metrics(conn: AsyncConnection, runs: list[RunRow]) -> list[RunRow]:
        if not runs:
            return runs
        by_id = {r.run_id: r for r in runs}
        ids = list(by_id)
        for i in range(0, len(ids), 500):
            rows = await conn.execute(select(LM).where((LM.c.org == runs[0].org) & LM.c.run_id.in_(ids[i:i + 500])))
            for m in rows:
                by_id[m.run_id].metrics[m.key] = (m.value, int(m.timestamp), int(m.step))
        return runs

    async def create_run(self, run: RunRow) -> None:
        async with self.catalog.begin() as conn:
            await conn.execute(R.insert().values(
                org=run.org, run_id=run.run_id, experiment_id=run.experiment_id, run_name=run.run_name,
                user_id=run.user_id, status=run.status, start_time=run.start_time, end_time=run.end_time,
                lifecycle_stage=run.lifecycle_stage, params=run.params, tags=run.tags))

    async def run(self, org: str, run_id: str) -> RunRow | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(_RUN_WITH_SEQ.where((R.c.org == org) & (R.c.run_id == run_id)))).first()
            return (await self._with_metrics(conn, [_run(r)]))[0] if r else None

    async def runs(self, org: str, experiment_ids: list[int]) -> list[RunRow]:
        if not experiment_ids:
            return []
        async with self.catalog.connect() as conn:
            rows = await conn.execute(_RUN_WITH_SEQ.where((R.c.org == org) & R.c.experiment_id.in_(experiment_ids)))
            return await self._with_metrics(conn, [_run(r) for r in rows])

    async def add_outputs(self, org: str, run_id: str, outputs: list[dict]) -> None:
        """Record models as outputs of the run (a model logged again at the same step is kept once)."""
        where = (R.c.org == org) & (R.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            have = (await conn.execute(select(R.c.outputs).where(where).with_for_update())).scalar()
            merged = list(have or [])
            merged += [o for o in outputs if o not in merged]
            await conn.execute(R.update().where(where).values(outputs=merged))

    async def update_run(self, org: str, run_id: str, **changes: Any) -> RunRow | None:
        """Set columns (status, end_time, run_name, lifecycle_stage); the run after, or None."""
        assert set(changes) <= {"status", "end_time", "run_name", "lifecycle_stage"}, changes
        where = (R.c.org == org) & (R.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            if changes:
                await conn.execute(R.update().where(where).values(**changes))
            r = (await conn.execute(_RUN_WITH_SEQ.where(where))).first()
            return _run(r) if r else None

    async def log_data(self, org: str, run_id: str, params: dict[str, str], tags: dict[str, str],
                       delete_tags: list[str] | tuple[str, ...] = ()) -> None:
        """Add params (a new value for a logged one: ``ParamChanged``, nothing stored) and tags."""
        where = (R.c.org == org) & (R.c.run_id == run_id)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(R.c.params, R.c.tags, R.c.run_name).where(where).with_for_update())).first()
            have_params, have_tags = dict(r.params or {}), dict(r.tags or {})
            for k, v in params.items():
                if k in have_params and have_params[k] != v:
                    raise ParamChanged(
                        f"Changing param values is not allowed. Param with key={k!r} was already logged with "
                        f"value={have_params[k]!r} for run ID={run_id!r}. Attempted logging new value {v!r}."
                    )
            have_params.update(params)
            have_tags.update(tags)
            for k in delete_tags:
                have_tags.pop(k, None)
            await conn.execute(R.update().where(where).values(
                params=have_params, tags=have_tags, run_name=have_tags.get("mlflow.runName", r.run_name)))

    # -- metrics ---------------------------------------------------------------------------------
    async def record_latest(self, org: str, run_id: str, latest: dict[str, tuple[float | None, int, int]]) -> None:
        """Keep each key's latest value as MLflow ranks them: highest step, then timestamp."""
        async with self.catalog.begin() as conn:
            # The run's row first: writers of one run take turns (no two inserts of one key).
            await conn.execute(select(R.c.run_id).where((R.c.org == org) & (R.c.run_id == run_id)).with_for_update())
            have = {m.key: m for m in await conn.execute(select(LM).where(
                (LM.c.org == org) & (LM.c.run_id == run_id) & LM.c.key.in_(list(latest))))}
            for key, (value, ts, step) in latest.items():
                old = have.get(key)
                if old is None:
                    await conn.execute(LM.insert().values(org=org, run_id=run_id, key=key, value=value, timestamp=ts,
                                                          step=step))
                elif (step, ts) >= (int(old.step), int(old.timestamp)):
                    await conn.execute(LM.update().where(
                        (LM.c.org == org) & (LM.c.run_id == run_id) & (LM.c.key == key)).values(
                        value=value, timestamp=ts, step=step))

    # -- artifacts -------------------------------------------------------------------------------
    async def put_artifact(self, org: str, run_id: str, path: str, sha: str, size: int) -> None:
        where = (A.c.org == org) & (A.c.run_id == run_id) & (A.c.path == path)
        async with self.catalog.begin() as conn:
            await conn.execute(select(R.c.run_id).where((R.c.org == org) & (R.c.run_id == run_id)).with_for_update())
            await conn.execute(A.delete().where(where))
            await conn.execute(A.insert().values(org=org, run_id=run_id, path=path, sha=sha, size=size))

    async def artifacts(self, org: str, run_id: str) -> dict[str, tuple[str, int]]:
        async with self.catalog.connect() as conn:
            rows = await conn.execute(select(A.c.path, A.c.sha, A.c.size).where((A.c.org == org) & (A.c.run_id == run_id)))
            return {r.path: (r.sha, int(r.size)) for r in rows}
