"""A purged run's catalog rows: removed, detached or revoked, in one transaction.

Invariant: after ``purge_catalog`` no catalog row names the run as a live
thing. ``PLAN`` says, for every table with a column naming a run, what a
purge does to it (a test compares it with ``catalog/tables.py``, so a new
table naming runs cannot be forgotten):

- ``delete``: the row is the run's data (its writers, seqs, MLflow or Wild
  record, files, logs) and goes.
- ``detach``: the row belongs to something else that only pointed at the run
  (a registered model's source run, a workbench experiment's current run):
  the pointer becomes NULL, the row stays.
- ``revoke``: a write key bound to the run is revoked (kept, as revoked keys
  are, so it can be audited).
- ``keep``: append-only history (the Wild audit log) and provenance labels
  that are not references (a chachaml model version's ``run_id``, a string
  in its public id and NOT NULL): named, not read, so a purge leaves them.

Blobs the deleted rows named are left to garbage collection (``arwx.blobs.gc``):
content-addressed, they may be shared with other runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Column, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import (
    api_keys,
    chachaml_model_versions,
    compat_run_files,
    mlflow_artifacts,
    mlflow_latest_metrics,
    mlflow_logged_models,
    mlflow_model_versions,
    mlflow_runs,
    run_writers,
    runs,
    wild_audit,
    wild_run_logs,
    wild_runs,
    workbench_artifacts,
    workbench_experiments,
    writer_requests,
    writer_seqs,
)
from arwx.compat.wild.wire import FINAL_STATUSES
from arwx.errors import Conflict
from arwx.tenancy import KEYS_COUNTER, bump_counter

#: (action, the column naming the run); ``runs`` itself goes last.
PLAN: tuple[tuple[str, Column], ...] = (
    ("delete", run_writers.c.run_id),
    ("delete", writer_seqs.c.run_id),
    ("delete", writer_requests.c.run_id),
    ("delete", mlflow_runs.c.run_id),
    ("delete", mlflow_latest_metrics.c.run_id),
    ("delete", mlflow_artifacts.c.run_id),  # never a logged model's artifacts: see below
    ("delete", compat_run_files.c.run_id),
    ("delete", wild_run_logs.c.run_id),
    ("delete", wild_runs.c.id),  # a Wild run is the arwx run of the same id
    ("detach", mlflow_logged_models.c.source_run_id),
    ("detach", mlflow_model_versions.c.run_id),
    ("detach", workbench_experiments.c.run_id),
    ("detach", workbench_artifacts.c.run_id),
    ("revoke", api_keys.c.run_id),
    ("keep", wild_audit.c.run_id),
    ("keep", chachaml_model_versions.c.run_id),
    ("delete", runs.c.run_id),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def check_purgeable(catalog: Catalog, org: str, run_id: str) -> None:
    """``Conflict`` while a runner still executes the run (a queued or running Wild run): it
    would write to a run that no longer exists. Stop it first. (Forks that show the run's
    points are checked by ``Runs.referencing``, in ``arwx.purge``.)"""
    async with catalog.connect() as conn:
        status = await conn.scalar(select(wild_runs.c.status).where(wild_runs.c.org == org, wild_runs.c.id == run_id))
    if status is not None and status not in FINAL_STATUSES and status != "created":
        raise Conflict(f"run {run_id!r} is a Wild run that is {status}: stop it first, then purge it")


async def purge_catalog(catalog: Catalog, org: str, ids: Sequence[str]) -> dict[str, int]:
    """Apply ``PLAN`` to the rows of ``org`` naming any of ``ids`` (the run's storage ids);
    rows changed per ``table.column``. Idempotent: a second call changes nothing."""
    changed: dict[str, int] = {}
    ids = list(ids)
    async with catalog.begin() as conn:
        for action, col in PLAN:
            if action == "keep":
                continue
            table = col.table
            where = (table.c.org == org) & col.in_(ids)
            if col is mlflow_artifacts.c.run_id:
                # MLflow keeps a logged model's artifacts under its model id in the same column.
                models = select(mlflow_logged_models.c.model_id).where(mlflow_logged_models.c.org == org)
                where &= col.not_in(models)
            if action == "delete":
                res = await conn.execute(delete(table).where(where))
            elif action == "detach":
                res = await conn.execute(update(table).where(where).values({col.name: None}))
            else:  # revoke
                res = await conn.execute(
                    update(table).where(where & table.c.revoked_at.is_(None)).values(revoked_at=_now_ms())
                )
                if res.rowcount:
                    await _keys_changed(conn)
            if res.rowcount:
                changed[f"{table.name}.{col.name}"] = int(res.rowcount)
    return changed


async def _keys_changed(conn: AsyncConnection) -> None:
    """Every process's key cache learns of the revocation within ``key_refresh_s``."""
    await bump_counter(conn, KEYS_COUNTER)
