"""chachaml's write API (``/api/w``) and read API (``/api``) on arwx's services; knows nothing of HTTP.

One model underneath: a chachaml experiment is an arwx project (named as the
experiment), a chachaml run an arwx run (writer ``chachaml``). Params and tags
land in the run's config, ``{"params": {...}, "tags": {...}, "chachaml":
{parent_run_id, created_by, error}}``; metrics go through ``IngestService``
(the log, the store, history, charts, receipts); artifacts are run files
(``compat/runfiles.py``, bytes in the blob store); a model version is an arwx
artifact version (``models.py``).

Seqs (chachaml sends none): each metrics request reserves its points' seqs of
the run's writer ``chachaml`` (``ingest/reserved_seqs.py``) under a digest, the ``Idempotency-Key`` when the
client sent one (a re-sent request gets the same seqs, so its points are
stored once), else a fresh one (two identical requests without a key are two
requests: chachaml stores both). Finishing the run reports the writer's total,
so the integrity receipt can tell whether every point arrived.

A run that does not exist, is another org's, or has ended answers
``no such run`` to params and metrics, as chachaml does.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select

from arwx.catalog.tables import projects
from arwx.compat.common import AdapterRuns, arwx_statuses, fresh_digest, metric_value, section, section_of
from arwx.compat.runfiles import RunFile
from arwx.errors import BadRequest, Conflict, NotFound
from arwx.runs import Run
from arwx.wire import ID_PATTERN, MAX_ID_LEN, MAX_KEY_LEN, MAX_SEQ, ProjectName

WRITER = "chachaml"
END_STATUSES = {"completed": "finished", "failed": "failed"}
STATUS_OF = {"running": "running", "finished": "completed", "failed": "failed", "crashed": "failed", "killed": "failed"}
MAX_METRICS = 10_000  # metrics in one request
MAX_DETAIL_POINTS = 100_000  # metric points in one run detail (the rest: /v1/runs/:id/metrics)
_ID_RE = re.compile(ID_PATTERN)
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,512}$(?!\n)")  # an artifact name, as the upload checks it


class NoSuchRun(NotFound):
    """chachaml's own words for a run that is missing, another org's, or ended."""

    def __init__(self) -> None:
        super().__init__("no such run")


@dataclass(frozen=True)
class StartRun:
    experiment: str
    name: str | None
    tags: dict
    parent_run_id: str | None
    created_by: str | None


def _section(run: Run, name: str) -> dict:
    """A section of a chachaml run's config; {} for a run chachaml did not make."""
    return section(run, name) if WRITER in run.writer_ids else {}


def run_json(run: Run) -> dict:
    """A run as chachaml's read API shows it (keys as Clojure keywords print: ``start-time``)."""
    extra = _section(run, "chachaml")
    out: dict[str, Any] = {
        "id": run.run_id, "experiment": run.project, "name": run.name, "status": STATUS_OF.get(run.status, run.status),
        "start-time": run.created_at_ms,
    }
    if run.finished_at_ms is not None:
        out["end-time"] = run.finished_at_ms
    if extra.get("error") is not None:
        out["error"] = extra["error"]
    out["tags"] = _section(run, "tags")
    if extra.get("parent_run_id") is not None:
        out["parent-run-id"] = extra["parent_run_id"]
    if extra.get("created_by") is not None:
        out["created-by"] = extra["created_by"]
    return out


def params_of(run: Run) -> dict:
    """chachaml's params of a run: the ``params`` section of a chachaml run, a plain arwx run's whole config."""
    return _section(run, "params") if WRITER in run.writer_ids else dict(run.config)


def file_json(f: RunFile) -> dict:
    return {"id": f"{f.run_id}/{f.name}", "run-id": f.run_id, "name": f.name, "path": f"{f.run_id}/{f.name}",
            "content-type": f.content_type, "size": f.size, "hash": f.sha256, "created-at": f.created_at_ms}


def experiment_filter(experiment: str | None) -> str | None:
    """A read's ``?experiment=``: None for all, else a name an arwx project can have (400 otherwise)."""
    if not experiment:
        return None
    try:
        return msgspec.convert(experiment, ProjectName)
    except msgspec.ValidationError:
        raise BadRequest(f"experiment {experiment[:80]!r} is not an experiment name (1 to 128 characters, "
                         "no '/' or control character)") from None


def check_metrics(body: dict) -> tuple[dict[str, float], int]:
    """``{key: value, ..., step?}`` (or chachaml's ``{"metrics": {...}, "step": n}``) → (metrics, step).
    Every key and value is checked before anything is written: a refused request writes nothing."""
    step = body.get("step", 0)
    if step is None:
        step = 0
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_SEQ:
        raise BadRequest(f"step must be an integer from 0 to {MAX_SEQ}, not {step!r}")
    metrics = body["metrics"] if isinstance(body.get("metrics"), dict) else {k: v for k, v in body.items() if k != "step"}
    if len(metrics) > MAX_METRICS:
        raise BadRequest(f"{len(metrics)} metrics in one request; the limit is {MAX_METRICS}")
    return dict(metric_value(k, v, "metric") for k, v in metrics.items()), step


class ChachamlService(AdapterRuns):
    """chachaml's operations; every call names the caller's org first."""

    writer = WRITER

    async def _running(self, org: str, run_id: str) -> Run:
        run = await self.runs.get(org, run_id, fresh=True)
        if run is None or run.status != "running":
            raise NoSuchRun()
        return run

    async def run(self, org: str, run_id: str) -> Run:
        if len(run_id) > MAX_ID_LEN or not _ID_RE.search(run_id):
            raise NoSuchRun()  # no run could have this id
        run = await self.runs.get(org, run_id, fresh=True)
        if run is None:
            raise NoSuchRun()
        return run

    # -- writes ----------------------------------------------------------------------------------
    async def start_run(self, org: str, req: StartRun) -> Run:
        extra = {k: v for k, v in (("parent_run_id", req.parent_run_id), ("created_by", req.created_by)) if v}
        config = {"params": {}, "tags": req.tags, "chachaml": extra}
        run_id = str(uuid.uuid4())
        run, _ = await self.runs.create(org, run_id, req.experiment, req.name, config, [WRITER])
        return run

    async def log_params(self, org: str, run_id: str, params: dict) -> None:
        """Add params; one already logged with another value is refused (chachaml's params are
        immutable), and then nothing of the request is stored."""
        await self._running(org, run_id)
        for k in params:
            if not k or len(k) > MAX_KEY_LEN:
                raise BadRequest(f"param key {k[:80]!r} must be 1 to {MAX_KEY_LEN} characters")

        def merge(config: dict) -> dict:
            have = dict(config.get("params") or {})
            for k, v in params.items():
                if k in have and have[k] != v:
                    raise Conflict(f"param {k!r} was already logged with value {have[k]!r}; params are immutable")
            return {**config, "params": {**have, **params}}

        if params and await self.runs.update_config(org, run_id, merge) is None:
            raise NoSuchRun()

    async def log_metrics(self, org: str, run_id: str, body: dict, idempotency_key: str | None) -> int:
        await self._running(org, run_id)  # first: an unknown run is "no such run" whatever the body
        metrics, step = check_metrics(body)
        if not metrics:
            return 0
        now = time.time()
        await self.log_points(org, run_id, [(k, v, step, now) for k, v in metrics.items()],
                              fresh_digest(idempotency_key))
        return len(metrics)

    async def log_artifact(self, org: str, run_id: str, name: str, chunks: AsyncIterable[bytes],
                           content_type: str) -> RunFile:
        await self.run(org, run_id)  # chachaml takes artifacts of an ended run too (a model saved after the end)
        return await self.put_file(org, run_id, name, chunks, content_type)

    async def end_run(self, org: str, run_id: str, status: str, error: str | None) -> Run:
        """Finish the run with the writer's total; ending an ended run again changes nothing."""
        run = await self.run(org, run_id)
        if run.status != "running":
            return run
        if error is not None:
            await self.runs.update_config(org, run_id, lambda c: {
                **c, "chachaml": {**(c.get("chachaml") or {}), "error": error}})
        out = await self.finish(org, run_id, END_STATUSES[status])
        if out is None:
            raise NoSuchRun()
        return out

    async def set_tag(self, org: str, run_id: str, key: str, value: Any) -> None:
        """Set one of the run's tags (``config.tags``); any run of the org, ended ones too (chachaml's
        tags are for annotating after the fact)."""
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LEN:
            raise BadRequest(f"key must be a string of 1 to {MAX_KEY_LEN} characters")
        await self.run(org, run_id)
        if await self.runs.update_config(org, run_id, lambda c: {**c, "tags": {**section_of(c, "tags"), key: value}}) is None:
            raise NoSuchRun()

    async def tags(self, org: str, run_id: str) -> dict:
        """The run's tags: those it started with and those set since."""
        return section(await self.run(org, run_id), "tags")

    # -- reads -----------------------------------------------------------------------------------

    async def run_detail(self, org: str, run_id: str) -> dict:
        """The run with params, metrics (every point, by key, step, time) and artifacts."""
        run = await self.run(org, run_id)
        await self.settled(org, [run.run_id])
        rows = await self.store.rows(
            "SELECT key, value, step, toUnixTimestamp64Milli(ts) FROM points FINAL"
            " WHERE org = {org:String} AND run_id = {run:String} AND isFinite(value)"
            " ORDER BY key, step, ts, writer_id, seq LIMIT {limit:UInt64}",
            {"org": org, "run": run.run_id, "limit": MAX_DETAIL_POINTS + 1})
        out = {
            **run_json(run),
            "params": params_of(run),
            "metrics": [{"key": k, "value": v, "step": int(s), "timestamp": int(ts)} for k, v, s, ts in rows],
            "artifacts": [file_json(f) for f in await self.files.list(org, run.run_id)],
            "datasets": [],
        }
        if len(rows) > MAX_DETAIL_POINTS:
            # One answer stays bounded; the whole history pages through /v1/runs/:id/metrics.
            out["metrics"] = out["metrics"][:MAX_DETAIL_POINTS]
            out["metrics-truncated"] = True
        return out

    async def artifact(self, org: str, artifact_id: str) -> RunFile | None:
        """The run file an artifact id (``<run id>/<name>``, ``file_json``'s ``id``) names, if the org has it."""
        run_id, _, name = artifact_id.partition("/")
        if not name or len(run_id) > MAX_ID_LEN or not _ID_RE.search(run_id) or not _NAME_RE.search(name):
            return None  # no file could have this id
        return await self.files.get(org, run_id, name)

    async def list_runs(self, org: str, experiment: str | None, status: str | None, limit: int) -> list[Run]:
        """Runs newest first, of one experiment and in one chachaml status if given."""
        return await self.runs.list(org, experiment_filter(experiment), arwx_statuses(status, STATUS_OF), limit)

    async def experiments(self, org: str) -> list[str]:
        """Experiment names (the org's arwx projects), sorted."""
        async with self.runs.catalog.connect() as conn:
            return [r[0] for r in await conn.execute(
                select(projects.c.name).where(projects.c.org == org).order_by(projects.c.name))]
