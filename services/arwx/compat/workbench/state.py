"""The ml-workbench adapter's rows in the catalog (``workbench_experiments``, ``workbench_artifacts``).

Invariants:

- Every lookup is keyed by organization first; another org's experiment is
  "not found", exactly like one that does not exist.
- An experiment is an arwx project: ``project`` names it, one experiment per
  project (a unique index), fixed at creation (a rename changes only the
  display name). A name is held by at most one live experiment of an org:
  creating under a live name finds that experiment (``find_or_create``), and
  two requests creating one name at once get the same experiment (the
  loser's insert fails on the project index and it reads the winner's row).
- Deleting hides (``deleted_at``); nothing is erased, ``restore`` brings it back.
- Each method is one transaction; values reach SQL only as parameters.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import workbench_artifacts, workbench_experiments

E, A = workbench_experiments, workbench_artifacts
MAX_PROJECT = 128
_NOT_IN_PROJECT_NAMES = re.compile(r"[\x00-\x1f\x7f/\ud800-\udfff]")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Experiment:
    org: str
    id: str
    name: str
    project: str
    description: str
    status: str
    owner: str
    tags: list[str] | dict[str, str]
    pinned: bool
    is_public: bool
    shared_with: list[str]
    run_id: str | None
    extra: dict[str, Any]
    created_at: int
    updated_at: int
    deleted_at: int | None = None
    run_count: int = 0
    best_run_id: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "org": self.org, "id": self.id, "name": self.name, "project": self.project,
            "description": self.description, "status": self.status, "owner": self.owner, "tags": self.tags,
            "pinned": self.pinned, "is_public": self.is_public, "shared_with": self.shared_with,
            "run_id": self.run_id, "extra": self.extra, "created_at": self.created_at,
            "updated_at": self.updated_at, "deleted_at": self.deleted_at,
        }


@dataclass
class ArtifactRow:
    org: str
    experiment_id: str
    path: str
    run_id: str | None
    name: str
    type: str
    s3_key: str | None
    sha256: str | None
    size: int | None
    content_type: str | None
    created_at: int
    extra: dict = field(default_factory=dict)


def _experiment(r: Any) -> Experiment:
    return Experiment(
        r.org, r.id, r.name, r.project, r.description, r.status, r.owner,
        r.tags if isinstance(r.tags, (list, dict)) else [], bool(r.pinned), bool(r.is_public),
        list(r.shared_with or []), r.run_id, dict(r.extra or {}), int(r.created_at), int(r.updated_at),
        None if r.deleted_at is None else int(r.deleted_at),
    )


def project_for(name: str, experiment_id: str, taken: bool) -> str:
    """The arwx project an experiment named ``name`` goes into: its name where that is a valid
    project name not held by another experiment, else a cleaned, bounded name with its id."""
    clean = _NOT_IN_PROJECT_NAMES.sub("_", name).strip() or experiment_id
    if not taken and clean == name and len(name) <= MAX_PROJECT:
        return name
    suffix = f" [{experiment_id}]"
    return clean[: MAX_PROJECT - len(suffix)] + suffix


class WorkbenchState:
    """The adapter's catalog rows; every method is one transaction."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @staticmethod
    async def _live_by_name(conn: AsyncConnection, org: str, name: str) -> Experiment | None:
        r = (await conn.execute(
            select(E).where((E.c.org == org) & (E.c.name == name) & E.c.deleted_at.is_(None))
            .order_by(E.c.created_at, E.c.id).limit(1)
        )).first()
        return _experiment(r) if r else None

    async def find_or_create(self, org: str, name: str, fields: dict[str, Any]) -> tuple[Experiment, bool]:
        """The org's live experiment named ``name``, or a new one with ``fields``; (it, created)."""
        for _ in range(3):
            async with self.catalog.begin() as conn:
                found = await self._live_by_name(conn, org, name)
                if found is not None:
                    return found, False
                exp_id = "exp_" + secrets.token_hex(6)
                held = await conn.scalar(select(func.count()).where((E.c.org == org) & (E.c.project == name)))
                now = now_ms()
                e = Experiment(
                    org=org, id=exp_id, name=name, project=project_for(name, exp_id, bool(held)),
                    description=fields.get("description") or "", status=fields.get("status") or "draft",
                    owner=fields.get("owner") or "", tags=fields.get("tags") or [], pinned=False,
                    is_public=False, shared_with=[], run_id=None, extra=fields.get("extra") or {},
                    created_at=now, updated_at=now,
                )
                try:
                    async with conn.begin_nested():
                        await conn.execute(E.insert().values(**e.row()))
                except IntegrityError:
                    continue  # the same name made at the same moment: read the winner's row
                return e, True
        raise RuntimeError(f"could not create experiment {name!r}")  # three lost races in a row

    async def get(self, org: str, exp_id: str, *, deleted: bool = False) -> Experiment | None:
        """The experiment (a deleted one only with ``deleted``), or None."""
        where = (E.c.org == org) & (E.c.id == exp_id)
        if not deleted:
            where &= E.c.deleted_at.is_(None)
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(E).where(where))).first()
            return _experiment(r) if r else None

    async def by_project(self, org: str, project: str) -> Experiment | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(E).where((E.c.org == org) & (E.c.project == project)))).first()
            return _experiment(r) if r else None

    async def list(self, org: str, *, deleted: bool = False, status: str | None = None,
                   pinned: bool | None = None, search: str | None = None) -> list[Experiment]:
        """The org's experiments matching the filters SQL can apply (tags are filtered by the caller)."""
        where = (E.c.org == org) & (E.c.deleted_at.is_not(None) if deleted else E.c.deleted_at.is_(None))
        if status is not None:
            where &= E.c.status == status
        if pinned is not None:
            where &= E.c.pinned == pinned
        if search:
            pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where &= func.lower(E.c.name).like(pattern, escape="\\") | func.lower(E.c.description).like(
                pattern, escape="\\")
        async with self.catalog.connect() as conn:
            return [_experiment(r) for r in await conn.execute(select(E).where(where))]

    async def update(self, org: str, exp_id: str, change: Callable[[Experiment], None]) -> Experiment | None:
        """Apply ``change(experiment)`` (it edits the object, may raise to refuse) under the row's
        lock; the experiment after, or None if there is no live one."""
        where = (E.c.org == org) & (E.c.id == exp_id) & E.c.deleted_at.is_(None)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(E).where(where).with_for_update())).first()
            if r is None:
                return None
            e = _experiment(r)
            old_name = e.name
            change(e)
            if e.name != old_name and await self._live_by_name(conn, org, e.name) is not None:
                raise NameTaken(e.name)
            e.updated_at = now_ms()
            row = e.row()
            await conn.execute(E.update().where(where).values(**{k: row[k] for k in row if k not in ("org", "id")}))
            return e

    async def set_deleted(self, org: str, exp_id: str, deleted: bool) -> Experiment | None:
        """Hide (``deleted``) or bring back an experiment; None if there is none in that state."""
        where = (E.c.org == org) & (E.c.id == exp_id)
        where &= E.c.deleted_at.is_(None) if deleted else E.c.deleted_at.is_not(None)
        now = now_ms()
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(E).where(where).with_for_update())).first()
            if r is None:
                return None
            e = _experiment(r)
            if not deleted and await self._live_by_name(conn, org, e.name) is not None:
                raise NameTaken(e.name)
            e.deleted_at, e.updated_at = (now if deleted else None), now
            await conn.execute(E.update().where(where).values(deleted_at=e.deleted_at, updated_at=now))
            return e

    # -- artifacts -------------------------------------------------------------------------------
    async def put_artifact(self, a: ArtifactRow) -> None:
        """Register an artifact; a path registered again is replaced."""
        where = (A.c.org == a.org) & (A.c.experiment_id == a.experiment_id) & (A.c.path == a.path)
        async with self.catalog.begin() as conn:
            await conn.execute(A.delete().where(where))
            await conn.execute(A.insert().values(
                org=a.org, experiment_id=a.experiment_id, path=a.path, run_id=a.run_id, name=a.name, type=a.type,
                s3_key=a.s3_key, sha256=a.sha256, size=a.size, content_type=a.content_type,
                created_at=a.created_at))

    async def artifacts(self, org: str, exp_id: str) -> list[ArtifactRow]:
        async with self.catalog.connect() as conn:
            rows = await conn.execute(
                select(A).where((A.c.org == org) & (A.c.experiment_id == exp_id)).order_by(A.c.created_at, A.c.path))
            return [ArtifactRow(r.org, r.experiment_id, r.path, r.run_id, r.name, r.type, r.s3_key, r.sha256,
                                None if r.size is None else int(r.size), r.content_type, int(r.created_at))
                    for r in rows]


class NameTaken(ValueError):
    """Another live experiment of the org has this name."""
