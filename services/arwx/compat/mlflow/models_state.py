"""MLflow's logged models and model registry rows in the catalog (``mlflow_logged_models``,
``mlflow_registered_models``, ``mlflow_model_versions``).

Invariants:

- Everything is keyed by organization first; no lookup crosses orgs.
- Model version numbers are 1, 2, 3, … per registered model, with no gaps at
  creation and no duplicates when clients register at once: a new number is
  max + 1, read and written in one transaction that holds the registered
  model's row (``FOR UPDATE`` on PostgreSQL; SQLite's write transactions are
  serial). A deleted version keeps its row in stage ``Deleted_Internal``
  (as in MLflow's own SQL store), hidden from every read, so its number is
  never handed out again.
- An alias names one version of its model; deleting the version drops its
  aliases in the same transaction.
- Values reach SQL only as parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from arwx.catalog import Catalog
from arwx.catalog.tables import mlflow_logged_models, mlflow_model_versions, mlflow_registered_models

LM, RM, MV = mlflow_logged_models, mlflow_registered_models, mlflow_model_versions
DELETED = "Deleted_Internal"
_LIVE = MV.c.current_stage != DELETED


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class LoggedModel:
    org: str
    model_id: str
    experiment_id: int
    name: str
    model_type: str | None
    source_run_id: str | None
    status: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RegisteredModel:
    org: str
    name: str
    artifact: str
    description: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str]
    aliases: dict[str, int]


@dataclass
class ModelVersion:
    org: str
    name: str
    version: int
    source: str
    storage_location: str
    run_id: str | None
    model_id: str | None
    description: str
    current_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str]
    arwx_version: int | None


def _logged(r: Any) -> LoggedModel:
    return LoggedModel(r.org, r.model_id, int(r.experiment_id), r.name, r.model_type, r.source_run_id, r.status,
                       r.lifecycle_stage, int(r.creation_time), int(r.last_update_time), dict(r.params or {}),
                       dict(r.tags or {}))


def _registered(r: Any) -> RegisteredModel:
    return RegisteredModel(r.org, r.name, r.artifact, r.description, int(r.creation_time), int(r.last_update_time),
                           dict(r.tags or {}), {k: int(v) for k, v in (r.aliases or {}).items()})


def _version(r: Any) -> ModelVersion:
    return ModelVersion(r.org, r.name, int(r.version), r.source, r.storage_location, r.run_id, r.model_id,
                        r.description, r.current_stage, int(r.creation_time), int(r.last_update_time),
                        dict(r.tags or {}), None if r.arwx_version is None else int(r.arwx_version))


class ModelState:
    """The rows; every method is one transaction."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- logged models ---------------------------------------------------------------------------
    async def create_logged_model(self, m: LoggedModel) -> None:
        async with self.catalog.begin() as conn:
            await conn.execute(LM.insert().values(
                org=m.org, model_id=m.model_id, experiment_id=m.experiment_id, name=m.name, model_type=m.model_type,
                source_run_id=m.source_run_id, status=m.status, lifecycle_stage=m.lifecycle_stage,
                creation_time=m.creation_time, last_update_time=m.last_update_time, params=m.params, tags=m.tags))

    async def logged_model(self, org: str, model_id: str) -> LoggedModel | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(LM).where((LM.c.org == org) & (LM.c.model_id == model_id)))).first()
            return _logged(r) if r else None

    async def logged_models(self, org: str, experiment_ids: list[int]) -> list[LoggedModel]:
        async with self.catalog.connect() as conn:
            rows = await conn.execute(select(LM).where(
                (LM.c.org == org) & LM.c.experiment_id.in_(experiment_ids) & (LM.c.lifecycle_stage == "active")))
            return [_logged(r) for r in rows]

    async def update_logged_model(self, org: str, model_id: str, *, status: str | None = None,
                                  params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
                                  delete_tag: str | None = None, lifecycle_stage: str | None = None
                                  ) -> LoggedModel | None:
        """Merge params and tags, set status or stage; the model after, or None if there is none."""
        where = (LM.c.org == org) & (LM.c.model_id == model_id)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(LM).where(where).with_for_update())).first()
            if r is None:
                return None
            m = _logged(r)
            m.params.update(params or {})
            m.tags.update(tags or {})
            if delete_tag is not None:
                m.tags.pop(delete_tag, None)
            m.status = status or m.status
            m.lifecycle_stage = lifecycle_stage or m.lifecycle_stage
            m.last_update_time = _now_ms()
            await conn.execute(LM.update().where(where).values(
                status=m.status, params=m.params, tags=m.tags, lifecycle_stage=m.lifecycle_stage,
                last_update_time=m.last_update_time))
            return m

    # -- registered models -----------------------------------------------------------------------
    async def create_registered_model(self, m: RegisteredModel) -> bool:
        """False if the org has a registered model of that name."""
        try:
            async with self.catalog.begin() as conn:
                have = await conn.scalar(select(RM.c.name).where((RM.c.org == m.org) & (RM.c.name == m.name)))
                if have is not None:
                    return False
                await conn.execute(RM.insert().values(
                    org=m.org, name=m.name, artifact=m.artifact, description=m.description,
                    creation_time=m.creation_time, last_update_time=m.last_update_time, tags=m.tags, aliases={}))
                return True
        except IntegrityError:
            return False  # created at the same time by another request

    async def registered_model(self, org: str, name: str) -> RegisteredModel | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(RM).where((RM.c.org == org) & (RM.c.name == name)))).first()
            return _registered(r) if r else None

    async def registered_models(self, org: str) -> list[RegisteredModel]:
        async with self.catalog.connect() as conn:
            return [_registered(r) for r in await conn.execute(select(RM).where(RM.c.org == org).order_by(RM.c.name))]

    async def update_registered_model(self, org: str, name: str, *, description: str | None = None,
                                      tags: dict[str, str] | None = None, delete_tag: str | None = None,
                                      set_alias: tuple[str, int] | None = None, delete_alias: str | None = None,
                                      new_name: str | None = None) -> RegisteredModel | None:
        """Change one registered model; None if there is none. ``ValueError`` if ``new_name`` is taken
        or ``set_alias`` names a version that does not exist."""
        where = (RM.c.org == org) & (RM.c.name == name)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(RM).where(where).with_for_update())).first()
            if r is None:
                return None
            m = _registered(r)
            if description is not None:
                m.description = description
            m.tags.update(tags or {})
            if delete_tag is not None:
                m.tags.pop(delete_tag, None)
            if set_alias is not None:
                alias, version = set_alias
                have = await conn.scalar(select(MV.c.version).where(
                    (MV.c.org == org) & (MV.c.name == name) & (MV.c.version == version) & _LIVE))
                if have is None:
                    raise ValueError(f"Model Version (name={name}, version={version}) not found")
                m.aliases[alias] = version
            if delete_alias is not None:
                m.aliases.pop(delete_alias, None)
            m.last_update_time = _now_ms()
            values: dict[str, Any] = dict(description=m.description, tags=m.tags, aliases=m.aliases,
                                          last_update_time=m.last_update_time)
            if new_name is not None and new_name != name:
                if await conn.scalar(select(RM.c.name).where((RM.c.org == org) & (RM.c.name == new_name))):
                    raise ValueError(f"Registered Model (name={new_name}) already exists.")
                values["name"] = m.name = new_name
                await conn.execute(MV.update().where((MV.c.org == org) & (MV.c.name == name)).values(name=new_name))
            await conn.execute(RM.update().where(where).values(**values))
            return m

    async def delete_registered_model(self, org: str, name: str) -> bool:
        async with self.catalog.begin() as conn:
            await conn.execute(MV.delete().where((MV.c.org == org) & (MV.c.name == name)))
            return bool((await conn.execute(RM.delete().where((RM.c.org == org) & (RM.c.name == name)))).rowcount)

    # -- model versions --------------------------------------------------------------------------
    async def create_model_version(self, v: ModelVersion) -> ModelVersion | None:
        """``v`` with its number (max + 1 under the registered model's row lock); None if no such model."""
        async with self.catalog.begin() as conn:
            held = await conn.scalar(select(RM.c.name).where((RM.c.org == v.org) & (RM.c.name == v.name))
                                     .with_for_update())
            if held is None:
                return None
            top = await conn.scalar(select(func.coalesce(func.max(MV.c.version), 0)).where(
                (MV.c.org == v.org) & (MV.c.name == v.name)))
            # Deleted versions keep their rows (stage DELETED), so their numbers are never reused.
            v.version = int(top) + 1
            await conn.execute(MV.insert().values(
                org=v.org, name=v.name, version=v.version, source=v.source, storage_location=v.storage_location,
                run_id=v.run_id, model_id=v.model_id, description=v.description, current_stage=v.current_stage,
                creation_time=v.creation_time, last_update_time=v.last_update_time, tags=v.tags,
                arwx_version=v.arwx_version))
            await conn.execute(RM.update().where((RM.c.org == v.org) & (RM.c.name == v.name)).values(
                last_update_time=v.creation_time))
            return v

    async def model_version(self, org: str, name: str, version: int) -> ModelVersion | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(MV).where(
                (MV.c.org == org) & (MV.c.name == name) & (MV.c.version == version) & _LIVE))).first()
            return _version(r) if r else None

    async def model_versions(self, org: str, name: str | None = None) -> list[ModelVersion]:
        q = select(MV).where((MV.c.org == org) & _LIVE)
        if name is not None:
            q = q.where(MV.c.name == name)
        async with self.catalog.connect() as conn:
            return [_version(r) for r in await conn.execute(q.order_by(MV.c.name, MV.c.version))]

    async def update_model_version(self, org: str, name: str, version: int, *, description: str | None = None,
                                   stage: str | None = None, archive_others: bool = False,
                                   tags: dict[str, str] | None = None, delete_tag: str | None = None
                                   ) -> tuple[ModelVersion, list[ModelVersion]] | None:
        """The version after the change and the versions archived by a stage move; None if none."""
        key = (MV.c.org == org) & (MV.c.name == name)
        where = key & (MV.c.version == version) & _LIVE
        now = _now_ms()
        async with self.catalog.begin() as conn:
            await conn.execute(select(RM.c.name).where((RM.c.org == org) & (RM.c.name == name)).with_for_update())
            r = (await conn.execute(select(MV).where(where))).first()
            if r is None:
                return None
            v = _version(r)
            if description is not None:
                v.description = description
            v.tags.update(tags or {})
            if delete_tag is not None:
                v.tags.pop(delete_tag, None)
            archived: list[ModelVersion] = []
            if stage is not None:
                v.current_stage = stage
                if archive_others and stage in ("Staging", "Production"):
                    others = await conn.execute(select(MV).where(
                        key & (MV.c.current_stage == stage) & (MV.c.version != version)))  # live: stage given
                    archived = [_version(o) for o in others]
                    for o in archived:
                        o.current_stage = "Archived"
                    if archived:
                        await conn.execute(MV.update().where(
                            key & MV.c.version.in_([o.version for o in archived])).values(
                            current_stage="Archived", last_update_time=now))
            v.last_update_time = now
            await conn.execute(MV.update().where(where).values(
                description=v.description, tags=v.tags, current_stage=v.current_stage, last_update_time=now))
            return v, archived

    async def delete_model_version(self, org: str, name: str, version: int) -> bool:
        where = (RM.c.org == org) & (RM.c.name == name)
        async with self.catalog.begin() as conn:
            r = (await conn.execute(select(RM).where(where).with_for_update())).first()
            if r is None:
                return False
            gone = (await conn.execute(MV.update().where(
                (MV.c.org == org) & (MV.c.name == name) & (MV.c.version == version) & _LIVE).values(
                current_stage=DELETED, last_update_time=_now_ms()))).rowcount
            if gone:
                aliases = {k: int(x) for k, x in (r.aliases or {}).items() if int(x) != version}
                await conn.execute(RM.update().where(where).values(aliases=aliases, last_update_time=_now_ms()))
            return bool(gone)
