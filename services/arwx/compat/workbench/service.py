"""ml-workbench's experiment operations on arwx's services (knows nothing of HTTP).

One model underneath: an experiment is an arwx project (``state.project_for``)
and its runs are arwx runs of that project. ``POST /api/v1/experiments``
finds the experiment by name (or makes it) and starts a run in it; the
experiment's *current run* (the newest, or one made on first use with the
experiment's id as run id) is where metrics, params and artifacts sent to the
experiment's id go; a run id works in their place. Parameters go into the
run's config (top level, as arwx's own runs keep them); the document's other
run fields (tags, modelType, framework, final_metrics...) under its
``"workbench"`` key. Metrics go through ``IngestService`` as the run's writer
``workbench`` with seqs from ``arwx.ingest.reserved_seqs``; a request re-sent
with the same ``Idempotency-Key`` (or byte-identical metrics) is stored once.
Artifact bytes go into the blob store. Deleting hides an experiment
(restorable); nothing is erased.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from datetime import datetime, timezone
from typing import Any

import msgspec
from sqlalchemy import func, select

from arwx.catalog.tables import runs as runs_table
from arwx.compat.common import AdapterRuns
from arwx.compat.runfiles import RunFiles
from arwx.compat.workbench import wire
from arwx.compat.workbench.state import ArtifactRow, Experiment, NameTaken, WorkbenchState, now_ms
from arwx.errors import BadRequest, Conflict, NotFound
from arwx.ingest.reserved_seqs import ReservedSeqs, request_digest
from arwx.ingest.service import IngestService
from arwx.runs import Runs
from arwx.store.base import Store
from arwx.wire import MAX_TS, decode_body

WRITER = "workbench"
STATUSES = ("draft", "pending", "running", "completed", "failed")
LIST_STATUSES = ("draft", "running", "completed", "failed")
_FINISHED = {"completed": "finished", "failed": "failed"}
ARTIFACT_TYPES = ("file", "model", "dataset", "image")
SORT_FIELDS = {"createdAt": "created_at", "updatedAt": "updated_at", "name": "name", "status": "status",
               "runCount": "run_count"}
MAX_COMPARE = 50
NOT_FOUND = "Experiment not found"


def iso(ms: int) -> str:
    """``2025-01-15T10:30:00Z``, as the document writes times."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_values(v: list[dict[str, Any]] | dict[str, Any] | None, what: str) -> list[dict[str, Any]]:
    """An object or a ``[{"key", "value"}]`` array as the array (the document's "auto-converted")."""
    if v is None:
        return []
    if isinstance(v, dict):
        return [{"key": k, "value": x} for k, x in v.items()]
    for i, item in enumerate(v):
        if not isinstance(item.get("key"), str) or "value" not in item:
            raise BadRequest(f"{what}[{i}] must be an object with a string \"key\" and a \"value\"")
    return [{"key": item["key"], "value": item["value"]} for item in v]


def _ts(t: float | str | None, i: int) -> float:
    if t is None:
        return time.time()
    if isinstance(t, str):
        try:
            d = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"metrics[{i}].timestamp {t!r} is not an ISO 8601 time or a number") from None
        sec = (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    else:
        sec = t / 1000 if t > 1e11 else t  # milliseconds (what JavaScript and most SDKs send) or seconds
    if not 0 <= sec <= MAX_TS:
        raise BadRequest(f"metrics[{i}].timestamp {t!r} is out of range")
    return sec


def _status(s: str | None, field: str = "status") -> str | None:
    if s is not None and s not in STATUSES:
        raise BadRequest(f"{field} must be one of {', '.join(STATUSES)}, not {s!r}")
    return s


class WorkbenchService(AdapterRuns):
    """The operations of ml-workbench's experiments API, per org."""

    writer = WRITER

    def __init__(self, runs: Runs, ingest: IngestService, store: Store, files: RunFiles, seqs: ReservedSeqs) -> None:
        super().__init__(runs, ingest, store, files, seqs)
        self.catalog = runs.catalog
        self.state = WorkbenchState(runs.catalog)
        self.blobs = files.blobs

    # -- experiments ---------------------------------------------------------------------------
    async def experiment(self, org: str, exp_id: str) -> Experiment:
        e = await self.state.get(org, exp_id)
        if e is None:
            raise NotFound(NOT_FOUND)
        return e

    async def create(self, org: str, owner: str, req: wire.WorkbenchExperimentCreate) -> dict:
        """``POST /api/v1/experiments``: find or make the experiment, start a run in it."""
        name = req.name or req.experiment_name or req.run_name
        if not name:
            raise BadRequest("name is required (or experiment_name, or run_name)")
        status = _status(req.status) or "pending"
        params = key_values(req.parameters, "parameters")
        final = key_values(req.final_metrics, "final_metrics")
        extra = {k: v for k, v in (
            ("modelType", req.modelType), ("problem_type", req.problem_type), ("framework", req.framework),
            ("parent_run_id", req.parent_run_id), ("system_info", req.system_info),
            ("duration_seconds", req.duration_seconds), ("artifact_location", req.artifact_location),
        ) if v is not None}
        if isinstance(req.tags, dict) or req.artifact_location is not None:
            return await self._create_mlservice(org, owner, name, req, extra)
        e, _ = await self.state.find_or_create(org, name, {
            "description": req.description, "status": status, "owner": owner, "tags": req.tags, "extra": {},
        })
        run_id = req.run_id or "run_" + secrets.token_hex(6)
        config = {p["key"]: p["value"] for p in params}
        config["workbench"] = {**extra, "tags": req.tags if req.tags is not None else e.tags}
        if final:
            config["workbench"]["final_metrics"] = final
        run = await self._run(org, e, run_id, req.run_name or name, config)

        def started(x: Experiment) -> None:
            x.run_id, x.status = run, status
            x.extra.update(extra)
            if params:
                x.extra["parameters"] = params
            if final:
                x.extra["final_metrics"] = final

        e = await self._update(org, e.id, started)
        if status in _FINISHED:
            await self._finish(org, run, status)
        return {"id": e.id, "experiment_id": e.id, "run_id": run, "name": e.name, "status": status,
                "createdAt": iso(e.created_at)}

    async def _create_mlservice(self, org: str, owner: str, name: str, req: wire.WorkbenchExperimentCreate,
                                extra: dict) -> dict:
        """ml-service's create on the same path (its ``tags`` an object, or ``artifact_location``):
        an experiment and no run; a live name is a 409, as ml-service answers."""
        e, created = await self.state.find_or_create(org, name, {
            "description": req.description, "status": _status(req.status) or "draft", "owner": owner,
            "tags": req.tags, "extra": extra,
        })
        if not created:
            raise Conflict(f"an experiment named {name!r} already exists")
        return await self.public(org, e, full=True)

    async def _run(self, org: str, e: Experiment, run_id: str, name: str, config: dict) -> str:
        """Create the run ``run_id`` in ``e``'s project (the same call again finds it)."""
        run, _ = await self.runs.create(org, run_id, e.project, name, config, [WRITER])
        if run.project != e.project:
            raise Conflict(f"run {run_id!r} belongs to another experiment")
        return run.run_id

    async def _update(self, org: str, exp_id: str, change: Any) -> Experiment:
        try:
            e = await self.state.update(org, exp_id, change)
        except NameTaken as t:
            raise Conflict(f"an experiment named {str(t)!r} already exists") from None
        if e is None:
            raise NotFound(NOT_FOUND)
        return e

    async def register(self, org: str, owner: str, req: wire.WorkbenchRegister) -> tuple[dict, bool]:
        """``POST /api/v1/experiments/register``: the live experiment of that name, or a new one."""
        e, created = await self.state.find_or_create(org, req.name, {
            "description": req.description, "status": "draft", "owner": owner, "tags": req.tags,
        })
        return {"experiment_id": e.id, "name": e.name, "exists": not created}, created

    async def update(self, org: str, exp_id: str, req: wire.WorkbenchExperimentUpdate) -> dict:
        """``PUT /api/v1/experiments/:id``; a final status finishes the current run."""
        _status(req.status)
        final = key_values(req.final_metrics, "final_metrics")

        def change(x: Experiment) -> None:
            for attr, v in (("name", req.name), ("description", req.description), ("tags", req.tags),
                            ("status", req.status)):
                if v is not None:
                    setattr(x, attr, v)
            for k, v in (("final_metrics", final or None), ("duration_seconds", req.duration_seconds),
                         ("error_message", req.error_message)):
                if v is not None:
                    x.extra[k] = v

        e = await self._update(org, exp_id, change)
        if e.run_id is not None and (final or req.tags is not None or req.error_message is not None):
            await self._merge_run_config(org, e.run_id, {k: v for k, v in (
                ("final_metrics", final or None), ("tags", req.tags), ("error_message", req.error_message),
                ("duration_seconds", req.duration_seconds)) if v is not None})
        if req.status in _FINISHED and e.run_id is not None:
            await self._finish(org, e.run_id, req.status)
        return await self.public(org, e, full=True)

    async def _merge_run_config(self, org: str, run_id: str, workbench: dict) -> None:
        """Set keys under the run config's ``"workbench"`` (its other keys kept)."""
        run = await self.runs.get(org, run_id, fresh=True)
        if run is not None:
            await self.runs.merge_config(org, run_id, {"workbench": {**(run.config.get("workbench") or {}), **workbench}})

    async def _finish(self, org: str, run_id: str, status: str) -> None:
        await self.finish(org, run_id, _FINISHED[status])

    async def delete(self, org: str, exp_id: str) -> None:
        """Hide the experiment (its runs and points stay; ``restore`` brings it back)."""
        if await self.state.set_deleted(org, exp_id, True) is None:
            raise NotFound(NOT_FOUND)

    async def restore(self, org: str, exp_id: str) -> dict:
        try:
            e = await self.state.set_deleted(org, exp_id, False)
        except NameTaken as t:
            raise Conflict(f"an experiment named {str(t)!r} exists; rename it before restoring this one") from None
        if e is None:
            raise NotFound(NOT_FOUND)
        return await self.public(org, e, full=True)

    async def pin(self, org: str, exp_id: str) -> dict:
        def toggle(x: Experiment) -> None:
            x.pinned = not x.pinned

        e = await self._update(org, exp_id, toggle)
        word = "pinned" if e.pinned else "unpinned"
        return {"id": e.id, "pinned": e.pinned, "message": f"Experiment {word} successfully"}

    async def replace_tags(self, org: str, exp_id: str, tags: list[str]) -> dict:
        def replace(x: Experiment) -> None:
            x.tags = list(tags)

        e = await self._update(org, exp_id, replace)
        if e.run_id is not None:
            await self._merge_run_config(org, e.run_id, {"tags": list(tags)})
        return {"id": e.id, "tags": e.tags, "message": "Tags updated successfully"}

    # -- reads -----------------------------------------------------------------------------------
    async def _run_counts(self, org: str, projects: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        async with self.catalog.connect() as conn:
            for i in range(0, len(projects), 500):
                rows = await conn.execute(
                    select(runs_table.c.project, func.count()).where(
                        (runs_table.c.org == org) & runs_table.c.project.in_(projects[i:i + 500]))
                    .group_by(runs_table.c.project))
                out.update({p: int(n) for p, n in rows})
        return out

    async def public(self, org: str, e: Experiment, *, full: bool, count: int | None = None) -> dict:
        """The document's Experiment object (``full``: with ``sharedWith`` and the run fields)."""
        if count is None:
            count = (await self._run_counts(org, [e.project])).get(e.project, 0)
        out = {
            "id": e.id, "name": e.name, "description": e.description, "status": e.status, "owner": e.owner,
            "organizationId": org, "tags": e.tags, "pinned": e.pinned, "runCount": count,
            "bestRunId": e.run_id, "isPublic": e.is_public,
        }
        if full:
            out["sharedWith"] = e.shared_with
        out["createdAt"], out["updatedAt"] = iso(e.created_at), iso(e.updated_at)
        if full:
            # The run-tracking fields a client set (run_id, parameters, final_metrics, modelType...),
            # and ml-service's names for what it reads on the same path.
            if e.run_id is not None:
                out["run_id"] = e.run_id
            out["project"] = e.project
            out.update(e.extra)
            out["experiment_id"] = e.id
            out["lifecycle_stage"] = "deleted" if e.deleted_at is not None else "active"
        return out

    async def get(self, org: str, exp_id: str) -> dict:
        return await self.public(org, await self.experiment(org, exp_id), full=True)

    async def list(self, org: str, *, search: str | None, status: str | None, tag: str | None,
                   pinned: bool | None, limit: int, offset: int, sort: str | None,
                   deleted: bool = False) -> dict:
        """``GET /api/v1/experiments``: pinned first, then ``sort`` (default ``createdAt:desc``)."""
        field, _, direction = (sort or "createdAt:desc").partition(":")
        if field not in SORT_FIELDS or direction not in ("", "asc", "desc"):
            raise BadRequest(f"sort must be one of {', '.join(SORT_FIELDS)} with :asc or :desc, not {sort!r}")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(LIST_STATUSES)}, not {status!r}")
        es = await self.state.list(org, deleted=deleted, status=status, pinned=pinned, search=search)
        if tag is not None:
            es = [e for e in es if tag in e.tags]
        counts = await self._run_counts(org, [e.project for e in es])
        for e in es:
            e.run_count = counts.get(e.project, 0)
        attr = SORT_FIELDS[field]
        es.sort(key=lambda e: (getattr(e, attr), e.id), reverse=direction != "asc")
        es.sort(key=lambda e: not e.pinned)  # stable: pinned first, each group in the asked order
        page = es[offset:offset + limit]
        return {"count": len(es), "limit": limit, "offset": offset,
                "experiments": [await self.public(org, e, full=False, count=e.run_count) for e in page]}

    async def stats(self, org: str) -> dict:
        es = await self.state.list(org)
        by = {s: sum(1 for e in es if e.status == s) for s in ("running", "completed", "failed")}
        return {"total": len(es), **by, "pinned": sum(1 for e in es if e.pinned)}

    async def compare(self, org: str, ids: list[str]) -> dict:
        if len(ids) < 2:
            raise BadRequest("ids must name at least 2 experiments (comma-separated)")
        if len(ids) > MAX_COMPARE:
            raise BadRequest(f"ids may name at most {MAX_COMPARE} experiments")
        es = [await self.experiment(org, i) for i in ids]
        counts = await self._run_counts(org, [e.project for e in es])
        out = []
        for e in es:
            best = (await self.latest(org, [e.run_id])).get(e.run_id, {}) if e.run_id else {}
            for m in e.extra.get("final_metrics") or []:  # what the client called final wins
                if isinstance(m.get("value"), (int, float)) and not isinstance(m.get("value"), bool):
                    best[m["key"]] = m["value"]
            out.append({"id": e.id, "name": e.name, "status": e.status, "runCount": counts.get(e.project, 0),
                        "bestRunId": e.run_id, "bestMetrics": best, "tags": e.tags, "createdAt": iso(e.created_at)})
        return {"experiments": out}

    # -- run tracking ----------------------------------------------------------------------------
    async def target(self, org: str, id_: str) -> tuple[Experiment, str]:
        """The experiment and run that ``:id`` names: an experiment (its current run, made on
        first use) or a run of a live experiment of the org."""
        e = await self.state.get(org, id_)
        if e is not None:
            if e.run_id is not None:
                return e, e.run_id
            run = await self._run(org, e, e.id, e.name, {"workbench": {"tags": e.tags}})

            def first_run(x: Experiment) -> None:
                x.run_id = x.run_id or run

            e = await self._update(org, e.id, first_run)
            return e, e.run_id  # type: ignore[return-value]
        run = await self.runs.get(org, id_)
        if run is not None:
            e = await self.state.by_project(org, run.project)
            if e is not None and e.deleted_at is None:
                return e, run.run_id
        raise NotFound(NOT_FOUND)

    async def log_metrics(self, org: str, id_: str, raw: bytes, idempotency_key: str | None) -> dict:
        """``POST /api/v1/experiments/:id/metrics``: all points written, or none."""
        req = decode_body(raw, wire.WorkbenchMetrics)
        _, run_id = await self.target(org, id_)
        ms = req.metrics
        stamps = [_ts(m.timestamp, i) for i, m in enumerate(ms)]
        for i, m in enumerate(ms):
            if not math.isfinite(m.value):
                raise BadRequest(f"metrics[{i}].value must be a finite number")
        # The request's name: its key, else its metrics as sent (a byte-identical retry is the same request).
        digest = request_digest(idempotency_key, msgspec.json.encode(ms))
        await self.log_points(org, run_id, [(m.key, m.value, m.step, stamps[i]) for i, m in enumerate(ms)], digest)
        return {"logged": len(ms)}

    async def log_params(self, org: str, id_: str, params: dict[str, Any]) -> dict:
        """``POST /api/v1/experiments/:id/params``: merged into the run's config (new keys added,
        existing keys updated)."""
        e, run_id = await self.target(org, id_)
        await self.runs.merge_config(org, run_id, params)

        def merged(x: Experiment) -> None:
            have = {p["key"]: p["value"] for p in x.extra.get("parameters") or []}
            have.update(params)
            x.extra["parameters"] = [{"key": k, "value": v} for k, v in have.items()]

        if run_id == e.run_id:
            await self._update(org, e.id, merged)
        return {"logged": len(params)}

    async def log_artifact(self, org: str, id_: str, req: wire.WorkbenchArtifact) -> dict:
        """``POST /api/v1/experiments/:id/artifacts``: by ``s3_key`` or ``content_base64``."""
        if (req.s3_key is None) == (req.content_base64 is None):
            raise BadRequest("either s3_key or content_base64 must be provided (not both)")
        if req.type not in ARTIFACT_TYPES:
            raise BadRequest(f"type must be one of {', '.join(ARTIFACT_TYPES)}, not {req.type!r}")
        e, run_id = await self.target(org, id_)
        sha, size = None, req.size
        if req.content_base64 is not None:
            try:
                data = base64.b64decode(req.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("content_base64 is not valid base64") from None
            async def one() -> Any:
                yield data

            info = await self.blobs.put(org, one())
            sha, size = info.sha, info.size
        a = ArtifactRow(org, e.id, req.path or req.name, run_id, req.name, req.type, req.s3_key, sha, size,
                        req.content_type, now_ms())
        await self.state.put_artifact(a)
        out: dict[str, Any] = {"name": a.name, "path": a.path, "type": a.type}
        if a.s3_key is not None:
            out["s3_key"] = a.s3_key
        if a.sha256 is not None:
            out["sha256"] = a.sha256
        out.update(size=a.size, content_type=a.content_type, created_at=iso(a.created_at))
        return {"artifact": out}
