"""chachaml's model registry on arwx artifacts: a model is an artifact of type ``model``,
a model version an artifact version, the ``production`` stage the artifact's ref of that name.

Invariants:

- A version's bytes are the run file it was registered from (``artifact`` on
  ``run_id``), logged as a one-file artifact version: the same bytes are the
  same version (content-addressed), so registering them again answers the
  existing version (with the stage and description given, if any).
- At most one version of a model is in production, and it is the one the
  artifact's ``production`` ref points at: promoting a version moves the ref
  (one compare-free move under the artifact's row lock, written to the ref
  log with the key that made it). The previous holder is demoted to
  ``archived``, as chachaml does (ADR-0006): its row is set so, and a row
  that still says ``production`` while the ref points elsewhere reads as
  ``archived`` (a demotion interrupted between the two writes reads right).
- Other stages (``none``, ``staging``, ``archived``) are per version, with no
  exclusivity. The production holder cannot be moved to another stage here
  (a ref cannot be taken back): promote another version instead (409).
- The model's project is the project of its first version's run; later
  versions join it whatever their run's project.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from arwx.catalog import Catalog
from arwx.catalog.tables import chachaml_model_versions
from arwx.compat.runfiles import RunFiles
from arwx.control.artifacts import Artifacts, Unresolvable, parse_version
from arwx.errors import Conflict, NotFound
from arwx.runs import Runs

V = chachaml_model_versions
STAGES = ("none", "staging", "production", "archived")
PRODUCTION = "production"
TYPE = "model"


def _stage(row_stage: str, version: int, production: int | None) -> str:
    if version == production:
        return PRODUCTION
    return "archived" if row_stage == PRODUCTION else row_stage


def version_json(row, production: int | None) -> dict:  # noqa: ANN001 - a Row
    """A version as chachaml prints it (``model-name``, ``run-id``, …)."""
    out = {"model-name": row.model, "version": int(row.version), "run-id": row.run_id,
           "artifact-id": f"{row.run_id}/{row.artifact}", "artifact": row.artifact,
           "stage": _stage(row.stage, int(row.version), production), "created-at": int(row.created_at)}
    if row.description is not None:
        out["description"] = row.description
    return out


class Models:
    """Registering, promoting and reading model versions of every org."""

    def __init__(self, catalog: Catalog, artifacts: Artifacts, runs: Runs, files: RunFiles) -> None:
        self.catalog = catalog
        self.artifacts = artifacts
        self.runs = runs
        self.files = files

    async def _project(self, org: str, name: str, default: str) -> str:
        try:
            return await self.artifacts.project_of(org, name, None)
        except Unresolvable:
            return default

    async def _production(self, org: str, name: str, project: str) -> int | None:
        try:
            return parse_version((await self.artifacts.resolve(org, name, PRODUCTION, project))["version"], "version")
        except Unresolvable:
            return None

    async def register(self, org: str, key_id: str, name: str, run_id: str, artifact: str, stage: str | None,
                       description: str | None) -> dict:
        """A new version of ``name`` from ``artifact`` of ``run_id`` (or the existing one of the
        same bytes); with ``stage`` production, promoted (the previous holder archived)."""
        run = await self.runs.get(org, run_id, fresh=True)
        if run is None:
            raise NotFound("no such run")
        f = await self.files.get(org, run_id, artifact)
        if f is None:
            raise NotFound(f"no artifact {artifact!r} on run {run_id!r}")
        project = await self._project(org, name, run.project)
        logged, _ = await self.artifacts.log(org, key_id, project, name, TYPE, {artifact: (f.sha256, f.size)},
                                             None, None)
        version = parse_version(logged["version"], "version")
        current = await self._production(org, name, project)
        if current == version and stage is not None and stage != PRODUCTION:
            raise Conflict(f"version {version} of model {name!r} is in production; promote another version to "
                           "production to demote it")
        if stage == PRODUCTION and current != version:
            # The ref first: it alone says which version is in production (see the module docstring).
            await self.artifacts.move_ref(org, key_id, name, PRODUCTION, project, version,
                                          reason=f"chachaml: version {version} registered with stage production")
        await self._write(org, name, project, version, run_id, artifact, stage, description,
                          demote=current if stage == PRODUCTION and current not in (None, version) else None)
        return await self.version(org, name, version)

    async def _write(self, org: str, name: str, project: str, version: int, run_id: str, artifact: str,
                     stage: str | None, description: str | None, demote: int | None) -> None:
        key = (V.c.org == org) & (V.c.model == name)
        async with self.catalog.begin() as conn:
            have = (await conn.execute(select(V.c.stage).where(key & (V.c.version == version)).with_for_update())).first()
            if have is None:
                await conn.execute(V.insert().values(
                    org=org, model=name, version=version, project=project, run_id=run_id, artifact=artifact,
                    stage=stage or "none", description=description, created_at=int(time.time() * 1000)))
            else:
                changes = {k: v for k, v in (("stage", stage), ("description", description)) if v is not None}
                if changes:
                    await conn.execute(V.update().where(key & (V.c.version == version)).values(**changes))
            if demote is not None:
                await conn.execute(V.update().where(key & (V.c.version == demote) & (V.c.stage == PRODUCTION))
                                   .values(stage="archived"))

    async def version(self, org: str, name: str, version: int) -> dict:
        async with self.catalog.connect() as conn:
            row = (await conn.execute(select(V).where(
                (V.c.org == org) & (V.c.model == name) & (V.c.version == version)))).first()
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return version_json(row, await self._production(org, name, row.project))

    async def list(self, org: str) -> list[dict]:
        """Every model: name, description, created-at, its production version and version count."""
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(select(V).where(V.c.org == org).order_by(V.c.model, V.c.version))).all()
        out: dict[str, dict] = {}
        for r in rows:
            m = out.setdefault(r.model, {"name": r.model, "description": None, "created-at": int(r.created_at),
                                         "project": r.project, "versions": 0})
            m["versions"] += 1
        for m in out.values():
            m["production-version"] = await self._production(org, m["name"], m["project"])
        return list(out.values())

    async def get(self, org: str, name: str) -> dict:
        """``{model, versions}`` (versions oldest first), as chachaml's ``GET /api/models/:name``."""
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(select(V).where((V.c.org == org) & (V.c.model == name))
                                       .order_by(V.c.version))).all()
        if not rows:
            raise NotFound(f"no model {name!r}")
        production = await self._production(org, name, rows[0].project)
        model = {"name": name, "description": None, "created-at": int(rows[0].created_at), "project": rows[0].project,
                 "production-version": production, "versions": len(rows)}
        return {"model": model, "versions": [version_json(r, production) for r in rows]}
