"""MLflow 3's logged models and the model registry, on arwx's artifacts (knows nothing of HTTP).

One model underneath:

- A **logged model** (``log_model``) belongs to an experiment; its files go
  through the artifact proxy into arwx's blob store, under
  ``mlflow-artifacts:/<experiment>/models/<model_id>/artifacts``.
- A **registered model** is an arwx artifact of type ``model`` in the project
  ``mlflow-registry`` (MLflow's registry is organization-wide; arwx artifacts
  live in a project). Registering a version logs the source's files as an arwx
  artifact version: identical files are one arwx version (content-addressed),
  while MLflow's own numbers (1, 2, 3, …) stay MLflow's.
- **Aliases** (``champion``) and the stages ``Staging`` / ``Production`` move
  arwx refs of the same name (``champion``, ``staging``, ``production``), so
  ``GET /v1/artifacts/<model>/champion`` resolves what ``models:/<model>@champion``
  loads. Refs follow every move the adapter makes; removing an alias or
  deleting a version does not move an arwx ref back (arwx keeps the ref log).
"""

from __future__ import annotations

import posixpath
import re
import time
import uuid
from typing import Any

from arwx.compat.mlflow.models_state import LoggedModel, ModelState, ModelVersion, RegisteredModel
from arwx.compat.mlflow.service import AlreadyExists
from arwx.compat.mlflow.state import MlflowState
from arwx.control.artifacts import Artifacts, parse_version
from arwx.control.projects import ensure
from arwx.errors import BadRequest, NotFound

REGISTRY_PROJECT = "mlflow-registry"
STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_RUN_ART = re.compile(r"^mlflow-artifacts:/+(\d+)/([0-9a-f]{32})/artifacts(?:/(.*))?$")
_MODEL_ART = re.compile(r"^mlflow-artifacts:/+(\d+)/models/(m-[0-9a-f]{32})/artifacts(?:/(.*))?$")
_MODELS_URI = re.compile(r"^models:/+(m-[0-9a-f]{32})/?$")
_RUNS_URI = re.compile(r"^runs:/+([0-9a-f]{32})(?:/(.*))?$")


def new_model_id() -> str:
    return f"m-{uuid.uuid4().hex}"


def model_artifact_uri(experiment_id: int, model_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"


def logged_model_json(m: LoggedModel) -> dict:
    info: dict[str, Any] = {
        "model_id": m.model_id, "experiment_id": str(m.experiment_id), "name": m.name,
        "creation_timestamp_ms": m.creation_time, "last_updated_timestamp_ms": m.last_update_time,
        "artifact_uri": model_artifact_uri(m.experiment_id, m.model_id), "status": m.status,
        "tags": [{"key": k, "value": v} for k, v in sorted(m.tags.items())],
    }
    if m.model_type:
        info["model_type"] = m.model_type
    if m.source_run_id:
        info["source_run_id"] = m.source_run_id
    return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in sorted(m.params.items())],
                                   "metrics": []}}


def model_version_json(v: ModelVersion, aliases: dict[str, int]) -> dict:
    out: dict[str, Any] = {
        "name": v.name, "version": str(v.version), "creation_timestamp": v.creation_time,
        "last_updated_timestamp": v.last_update_time, "user_id": "", "current_stage": v.current_stage,
        "description": v.description, "source": v.source, "status": "READY",
        "tags": [{"key": k, "value": x} for k, x in sorted(v.tags.items())],
        "aliases": sorted(a for a, n in aliases.items() if n == v.version),
    }
    if v.run_id:
        out["run_id"] = v.run_id
    if v.model_id:
        out["model_id"] = v.model_id
    return out


def registered_model_json(m: RegisteredModel, versions: list[ModelVersion]) -> dict:
    latest: dict[str, ModelVersion] = {}
    for v in versions:  # the newest version of each stage, as MLflow's latest_versions
        if v.current_stage not in latest or v.version > latest[v.current_stage].version:
            latest[v.current_stage] = v
    return {
        "name": m.name, "creation_timestamp": m.creation_time, "last_updated_timestamp": m.last_update_time,
        "description": m.description, "user_id": "",
        "latest_versions": [model_version_json(v, m.aliases) for v in sorted(latest.values(), key=lambda x: x.version)],
        "tags": [{"key": k, "value": x} for k, x in sorted(m.tags.items())],
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(m.aliases.items())],
    }


def _str(v: Any, what: str, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v):
        raise BadRequest(f"{what} must be a non-empty string")
    return v


def _version_number(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise BadRequest(f"version {v!r} is not a version number") from None
    if n < 1:
        raise BadRequest(f"version {v!r} is not a version number")
    return n


def _stage(v: Any) -> str:
    if not isinstance(v, str) or v.lower() not in STAGES:
        raise BadRequest(f"Invalid Model Version stage: {v}. Value must be one of None, Staging, Production, Archived.")
    return STAGES[v.lower()]


class ModelService:
    """Logged models and the registry; every operation takes the caller's org (and key id) first."""

    def __init__(self, state: ModelState, tracking: MlflowState, artifacts: Artifacts) -> None:
        self.state = state
        self.tracking = tracking
        self.artifacts = artifacts

    # -- logged models ---------------------------------------------------------------------------
    async def create_logged_model(self, org: str, body: dict, params: dict[str, str],
                                  tags: dict[str, str]) -> LoggedModel:
        e_id = body.get("experiment_id")
        if not isinstance(e_id, str) or not e_id.isdigit() or len(e_id) > 18:
            raise BadRequest("experiment_id must be an experiment id (a string of digits)")
        e = await self.tracking.experiment(org, experiment_id=int(e_id))
        if e is None:
            raise NotFound(f"Could not find experiment with ID {e_id!r}")
        run_id = body.get("source_run_id") or None
        if run_id is not None and (not isinstance(run_id, str) or await self.tracking.run(org, run_id) is None):
            raise NotFound(f"Run with id={run_id} not found")
        model_id = new_model_id()
        name = body.get("name") or f"model-{model_id[2:10]}"
        if not isinstance(name, str):
            raise BadRequest("name must be a string")
        model_type = body.get("model_type")
        if model_type is not None and not isinstance(model_type, str):
            raise BadRequest("model_type must be a string")
        now = int(time.time() * 1000)
        m = LoggedModel(org, model_id, e.experiment_id, name, model_type, run_id, "LOGGED_MODEL_PENDING", "active",
                        now, now, params, tags)
        await self.state.create_logged_model(m)
        return m

    async def logged_model(self, org: str, model_id: Any, allow_deleted: bool = False) -> LoggedModel:
        m = await self.state.logged_model(org, model_id) if isinstance(model_id, str) else None
        if m is None or (m.lifecycle_stage != "active" and not allow_deleted):
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        return m

    async def update_logged_model(self, org: str, model_id: Any, **changes: Any) -> LoggedModel:
        m = await self.logged_model(org, model_id)
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status {status!r} is not one of {', '.join(STATUSES)}")
        out = await self.state.update_logged_model(org, m.model_id, **changes)
        assert out is not None
        return out

    async def search_logged_models(self, org: str, experiment_ids: list[Any]) -> list[LoggedModel]:
        ids = []
        for e in experiment_ids:
            if not isinstance(e, str) or not e.isdigit() or len(e) > 18:
                raise BadRequest(f"experiment_ids: {e!r} is not an experiment id")
            ids.append(int(e))
        models = await self.state.logged_models(org, ids) if ids else []
        return sorted(models, key=lambda m: -m.creation_time)

    async def log_outputs(self, org: str, run_id: Any, models: Any) -> None:
        if not isinstance(models, list):
            raise BadRequest("models must be a list of {model_id, step}")
        run = await self.tracking.run(org, run_id) if isinstance(run_id, str) else None
        if run is None:
            raise NotFound(f"Run with id={run_id} not found")
        outs = []
        for i, o in enumerate(models):
            if not isinstance(o, dict):
                raise BadRequest(f"models[{i}] must be an object")
            await self.logged_model(org, o.get("model_id"))
            step = o.get("step", 0)
            if isinstance(step, bool) or not isinstance(step, (int, str)) or not str(step).lstrip("-").isdigit():
                raise BadRequest(f"models[{i}].step must be an integer")
            outs.append({"model_id": o["model_id"], "step": int(step)})
        await self.tracking.add_outputs(org, run.run_id, outs)

    # -- registered models -----------------------------------------------------------------------
    async def create_registered_model(self, org: str, name: Any, description: Any, tags: dict[str, str]) -> RegisteredModel:
        name = _str(name, "name")
        if len(name) > 256:
            raise BadRequest("name is over 256 characters")
        now = int(time.time() * 1000)
        m = RegisteredModel(org, name, name, _str(description, "description", False), now, now, tags, {})
        if not await self.state.create_registered_model(m):
            raise AlreadyExists(f"Registered Model (name={name}) already exists.")
        return m

    async def registered_model(self, org: str, name: Any) -> RegisteredModel:
        m = await self.state.registered_model(org, name) if isinstance(name, str) else None
        if m is None:
            raise NotFound(f"Registered Model with name={name} not found")
        return m

    async def registered_model_json(self, org: str, name: Any) -> dict:
        m = await self.registered_model(org, name)
        return registered_model_json(m, await self.state.model_versions(org, m.name))

    async def search_registered_models(self, org: str) -> list[dict]:
        models = await self.state.registered_models(org)
        versions = await self.state.model_versions(org)
        by_name: dict[str, list[ModelVersion]] = {}
        for v in versions:
            by_name.setdefault(v.name, []).append(v)
        return [registered_model_json(m, by_name.get(m.name, [])) for m in models]

    async def update_registered_model(self, org: str, name: Any, **changes: Any) -> RegisteredModel:
        m = await self.registered_model(org, name)
        try:
            out = await self.state.update_registered_model(org, m.name, **changes)
        except ValueError as e:
            if "already exists" in str(e):
                raise AlreadyExists(str(e)) from None
            raise NotFound(str(e)) from None
        if out is None:
            raise NotFound(f"Registered Model with name={name} not found")
        return out

    async def set_alias(self, org: str, key_id: str, name: Any, alias: Any, version: Any) -> None:
        alias = _str(alias, "alias")
        if not _ALIAS_RE.match(alias) or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias.lower()):
            raise BadRequest(f"Invalid alias name: {alias!r}. Aliases may use letters, digits, '_' and '-', "
                             "and cannot be 'latest' or look like a version (v1)")
        n = _version_number(version)
        m = await self.update_registered_model(org, name, set_alias=(alias, n))
        await self._move_ref(org, key_id, m, n, alias)

    async def alias_version(self, org: str, name: Any, alias: Any) -> ModelVersion:
        m = await self.registered_model(org, name)
        n = m.aliases.get(alias) if isinstance(alias, str) else None
        v = await self.state.model_version(org, m.name, n) if n is not None else None
        if v is None:
            raise NotFound(f"Registered model alias {alias} not found.")
        return v

    # -- model versions --------------------------------------------------------------------------
    async def create_model_version(self, org: str, key_id: str, body: dict, tags: dict[str, str]) -> ModelVersion:
        m = await self.registered_model(org, body.get("name"))
        source = _str(body.get("source"), "source")
        run_id = body.get("run_id") or None
        model_id = body.get("model_id") or None
        owner, prefix, location = await self._files_of(org, source, model_id)
        if model_id is None and owner.startswith("m-"):
            model_id = owner
        if run_id is None and model_id is not None:
            lm = await self.state.logged_model(org, model_id)
            run_id = lm.source_run_id if lm else None
        arwx_version = await self._log_files(org, key_id, m, owner, prefix)
        now = int(time.time() * 1000)
        v = ModelVersion(org, m.name, 0, source, location, run_id, model_id,
                         _str(body.get("description"), "description", False), "None", now, now, tags, arwx_version)
        out = await self.state.create_model_version(v)
        if out is None:
            raise NotFound(f"Registered Model with name={m.name} not found")
        return out

    async def model_version(self, org: str, name: Any, version: Any) -> ModelVersion:
        m = await self.registered_model(org, name)
        v = await self.state.model_version(org, m.name, _version_number(version))
        if v is None:
            raise NotFound(f"Model Version (name={m.name}, version={version}) not found")
        return v

    async def search_model_versions(self, org: str, name: str | None) -> list[ModelVersion]:
        return sorted(await self.state.model_versions(org, name), key=lambda v: (v.name, -v.version))

    async def update_model_version(self, org: str, key_id: str, name: Any, version: Any, **changes: Any) -> ModelVersion:
        v = await self.model_version(org, name, version)
        if "stage" in changes:
            changes["stage"] = _stage(changes["stage"])
        out = await self.state.update_model_version(org, v.name, v.version, **changes)
        if out is None:
            raise NotFound(f"Model Version (name={v.name}, version={v.version}) not found")
        if changes.get("stage") in ("Staging", "Production"):
            m = await self.registered_model(org, v.name)
            await self._move_ref(org, key_id, m, v.version, changes["stage"].lower())
        return out[0]

    async def latest_versions(self, org: str, name: Any, stages: list[Any]) -> list[ModelVersion]:
        m = await self.registered_model(org, name)
        want = {_stage(s) for s in stages} if stages else None
        latest: dict[str, ModelVersion] = {}
        for v in await self.state.model_versions(org, m.name):
            if (want is None or v.current_stage in want) and (
                    v.current_stage not in latest or v.version > latest[v.current_stage].version):
                latest[v.current_stage] = v
        return sorted(latest.values(), key=lambda x: x.version)

    # -- files -----------------------------------------------------------------------------------
    async def _files_of(self, org: str, source: str, model_id: str | None) -> tuple[str, str, str]:
        """(owner id in the artifact table: a run id or a model id, path prefix, storage location) of ``source``."""
        if m := _MODELS_URI.match(source):
            lm = await self.logged_model(org, m.group(1))
            return lm.model_id, "", model_artifact_uri(lm.experiment_id, lm.model_id)
        if m := _MODEL_ART.match(source):
            lm = await self.logged_model(org, m.group(2))
            return lm.model_id, (m.group(3) or "").strip("/"), source
        if m := _RUN_ART.match(source):
            run = await self.tracking.run(org, m.group(2))
            if run is None:
                raise NotFound(f"Run with id={m.group(2)} not found")
            return run.run_id, (m.group(3) or "").strip("/"), source
        if m := _RUNS_URI.match(source):
            run = await self.tracking.run(org, m.group(1))
            if run is None:
                raise NotFound(f"Run with id={m.group(1)} not found")
            path = (m.group(2) or "").strip("/")
            loc = f"mlflow-artifacts:/{run.experiment_id}/{run.run_id}/artifacts" + (f"/{path}" if path else "")
            return run.run_id, path, loc
        if model_id:
            lm = await self.logged_model(org, model_id)
            return lm.model_id, "", model_artifact_uri(lm.experiment_id, lm.model_id)
        raise BadRequest(f"source {source!r} is not a location this server holds (models:/m-…, runs:/…, "
                         "or mlflow-artifacts:/…)")

    async def _log_files(self, org: str, key_id: str, m: RegisteredModel, owner: str, prefix: str) -> int | None:
        """Log the files under ``prefix`` of ``owner`` as a version of the arwx artifact; its number."""
        files = await self.tracking.artifacts(org, owner)
        stem = prefix + "/" if prefix else ""
        manifest = {p[len(stem):]: (sha, size) for p, (sha, size) in files.items() if p.startswith(stem)}
        if prefix in files:  # the source names one file
            manifest = {posixpath.basename(prefix): files[prefix]}
        if not manifest:
            return None  # nothing uploaded there (yet): the version is MLflow's only
        async with self.artifacts.catalog.begin() as conn:
            await ensure(conn, org, REGISTRY_PROJECT)
        logged, _ = await self.artifacts.log(org, key_id, REGISTRY_PROJECT, m.artifact, "model", manifest, None, None)
        return parse_version(logged["version"], "version")

    async def _move_ref(self, org: str, key_id: str, m: RegisteredModel, version: int, ref: str) -> None:
        v = await self.state.model_version(org, m.name, version)
        if v is None or v.arwx_version is None:
            return  # a version without files has no arwx version to point at
        await self.artifacts.move_ref(org, key_id, m.artifact, ref, REGISTRY_PROJECT, v.arwx_version,
                                      reason=f"mlflow: {m.name} version {version}")
