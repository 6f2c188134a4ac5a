"""ml-service's experiment runs (``/api/v1/experiments/runs/...``) on arwx's services; knows nothing of HTTP.

One model underneath, shared with the ml-workbench adapter: an experiment is
a row of ``workbench_experiments`` (``compat/workbench/state.py``), which is an
arwx project; a run is an arwx run in that project (writer ``mlservice``), its
config ``{"params": {...}, "tags": {...}, "mlservice": {experiment_id,
description}}``. Metrics go through ``IngestService``; artifacts are run files
(bytes in the blob store).

Seqs (ml-service sends none) are reserved per request for the writer
``mlservice`` (``ingest/reserved_seqs.py``), named by the ``Idempotency-Key``
when the client sent one (a re-sent request is stored once), else by a fresh
name (two identical requests are two requests).

Params are merged into the config, a new value replacing the old (ml-service
documents no immutability); a batch is checked whole before anything of it is
written, so a refused batch writes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from arwx.compat.common import AdapterRuns, arwx_statuses, fresh_digest, metric_value, section
from arwx.compat.runfiles import RunFile
from arwx.errors import BadRequest, NotFound
from arwx.runs import Run
from arwx.wire import MAX_KEY_LEN, MAX_SEQ, MAX_TS

WRITER = "mlservice"
END_STATUSES = {"completed": "finished", "failed": "failed", "killed": "killed"}
STATUS_OF = {"running": "running", "finished": "completed", "failed": "failed", "crashed": "failed",
             "killed": "killed"}
MAX_METRICS = 10_000
MAX_PARAMS = 10_000
COMPARE_MIN, COMPARE_MAX = 2, 10
MAX_LISTED = 10_000


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run {run_id[:128]} not found")


@dataclass(frozen=True)
class MetricIn:
    key: str
    value: float
    step: int
    ts: float


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{what} must be an integer from {lo} to {hi}, not {v!r}"[:300])
    return v


def _ts(v: Any, what: str, now: float) -> float:
    """A timestamp in milliseconds since the epoch (as ml-service sends it) → seconds."""
    if v is None:
        return now
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_TS * 1000:
        raise BadRequest(f"{what} must be milliseconds since the epoch, not {v!r}"[:300])
    return v / 1000


def _metric(key: Any, value: Any, step: int, ts: float, what: str) -> MetricIn:
    k, v = metric_value(key, value, what)
    return MetricIn(k, v, step, ts)


def metrics_of_map(body: dict) -> list[MetricIn]:
    """``{"metrics": {name: value}, "step"?, "timestamp"?}`` (log-metrics)."""
    metrics = body.get("metrics")
    if not isinstance(metrics, dict):
        raise BadRequest("metrics must be an object of metric name to value")
    if len(metrics) > MAX_METRICS:
        raise BadRequest(f"{len(metrics)} metrics in one request; the limit is {MAX_METRICS}")
    step = _int(body.get("step", 0) if body.get("step") is not None else 0, "step", 0, MAX_SEQ)
    ts = _ts(body.get("timestamp"), "timestamp", time.time())
    return [_metric(k, v, step, ts, "metrics") for k, v in metrics.items()]


def metrics_of_list(items: Any) -> list[MetricIn]:
    """``[{"key", "value", "step"?, "timestamp"?}]`` (log-batch)."""
    if not isinstance(items, list):
        raise BadRequest("metrics must be a list of {key, value, step?, timestamp?}")
    if len(items) > MAX_METRICS:
        raise BadRequest(f"{len(items)} metrics in one request; the limit is {MAX_METRICS}")
    now, out = time.time(), []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise BadRequest(f"metrics[{i}] must be an object {{key, value, step?, timestamp?}}")
        step = _int(m.get("step") if m.get("step") is not None else 0, f"metrics[{i}].step", 0, MAX_SEQ)
        out.append(_metric(m.get("key"), m.get("value"), step, _ts(m.get("timestamp"), f"metrics[{i}].timestamp", now),
                           f"metrics[{i}]"))
    return out


def key_values(items: Any, what: str) -> dict[str, Any]:
    """``[{"key", "value"}]`` → a dict (log-batch's params and tags)."""
    if not isinstance(items, list):
        raise BadRequest(f"{what} must be a list of {{key, value}}")
    if len(items) > MAX_PARAMS:
        raise BadRequest(f"{len(items)} {what} in one request; the limit is {MAX_PARAMS}")
    out: dict[str, Any] = {}
    for i, kv in enumerate(items):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str) or not 0 < len(kv["key"]) <= MAX_KEY_LEN:
            raise BadRequest(f"{what}[{i}] needs a key of 1 to {MAX_KEY_LEN} characters")
        out[kv["key"]] = kv.get("value")
    return out


def check_params(params: Any, what: str = "params") -> dict[str, Any]:
    if not isinstance(params, dict):
        raise BadRequest(f"{what} must be an object of name to value")
    if len(params) > MAX_PARAMS:
        raise BadRequest(f"{len(params)} {what} in one request; the limit is {MAX_PARAMS}")
    for k in params:
        if not 0 < len(k) <= MAX_KEY_LEN:
            raise BadRequest(f"{what}: key {k[:80]!r} must be 1 to {MAX_KEY_LEN} characters")
    return params


class MlServiceRuns(AdapterRuns):
    """Runs of ml-service experiments; every call names the caller's org first."""

    writer = WRITER

    async def run(self, org: str, run_id: str) -> Run:
        run = await self.runs.get(org, run_id, fresh=True)
        if run is None or WRITER not in run.writer_ids:
            raise RunNotFound(run_id)
        return run

    async def _active(self, org: str, run_id: str) -> Run:
        run = await self.run(org, run_id)
        if run.status != "running":
            raise BadRequest(f"Run {run_id} has ended ({STATUS_OF.get(run.status, run.status)}); it takes no more data")
        return run

    async def create(self, org: str, experiment_id: str, project: str, name: str | None, description: str | None,
                     tags: dict) -> Run:
        run_id = uuid.uuid4().hex
        config = {"params": {}, "tags": tags, "mlservice": {"experiment_id": experiment_id,
                                                            "description": description or ""}}
        run, _ = await self.runs.create(org, run_id, project, name, config, [WRITER])
        return run

    async def log(self, org: str, run_id: str, metrics: list[MetricIn], params: dict, tags: dict,
                  idempotency_key: str | None) -> None:
        """Everything was checked by the caller; the run must still be running."""
        await self._active(org, run_id)
        await self.log_points(org, run_id, [(m.key, m.value, m.step, m.ts) for m in metrics],
                              fresh_digest(idempotency_key))
        if params or tags:
            await self.runs.update_config(org, run_id, lambda c: {
                **c, "params": {**(c.get("params") or {}), **params}, "tags": {**(c.get("tags") or {}), **tags}})

    async def log_artifact(self, org: str, run_id: str, name: str, chunks: AsyncIterable[bytes],
                           content_type: str) -> RunFile:
        await self.run(org, run_id)
        return await self.put_file(org, run_id, name, chunks, content_type)

    async def end(self, org: str, run_id: str, status: str) -> Run:
        run = await self.run(org, run_id)
        if run.status != "running":
            return run
        out = await self.finish(org, run_id, END_STATUSES[status])
        if out is None:
            raise RunNotFound(run_id)
        return out

    async def list(self, org: str, project: str | None, status: str | None, limit: int, offset: int) -> list[Run]:
        statuses = arwx_statuses(status, STATUS_OF)
        # Runs of the project made through other adapters are not ml-service runs: filtered here,
        # from a bounded window of the newest.
        runs = await self.runs.list(org, project, statuses, MAX_LISTED)
        return [r for r in runs if WRITER in r.writer_ids][offset:offset + limit]

    async def latest_of(self, org: str, run: Run) -> dict[str, float]:
        """Each metric's latest value (highest step, then time) once the run's points are stored."""
        return (await self.latest(org, [run.run_id])).get(run.run_id, {})

    async def run_json(self, org: str, run: Run) -> dict:
        """ml-service's RunResponse (docs/compat.md)."""
        extra = section(run, "mlservice")
        return {
            "id": run.run_id, "run_id": run.run_id, "experiment_id": extra.get("experiment_id"),
            "name": run.name, "description": extra.get("description", ""),
            "status": STATUS_OF.get(run.status, run.status), "start_time": run.created_at_ms,
            "end_time": run.finished_at_ms, "params": section(run, "params"), "tags": section(run, "tags"),
            "metrics": await self.latest_of(org, run),
            "artifacts": [{"path": f.name, "size": f.size, "sha256": f.sha256, "content_type": f.content_type}
                          for f in await self.files.list(org, run.run_id)],
        }

    async def compare(self, org: str, run_ids: Any, metrics: Any) -> dict:
        if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
            raise BadRequest("run_ids must be a list of run ids")
        if not COMPARE_MIN <= len(run_ids) <= COMPARE_MAX:
            raise BadRequest(f"Compare {COMPARE_MIN} to {COMPARE_MAX} runs (got {len(run_ids)})")
        if metrics is not None and (not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)):
            raise BadRequest("metrics must be a list of metric names")
        runs = [await self.run(org, r) for r in run_ids]
        out = []
        for run in runs:
            latest = await self.latest_of(org, run)
            if metrics is not None:
                latest = {m: latest.get(m) for m in metrics}
            out.append({"run_id": run.run_id, "name": run.name,
                        "experiment_id": section(run, "mlservice").get("experiment_id"),
                        "status": STATUS_OF.get(run.status, run.status), "params": section(run, "params"),
                        "metrics": latest})
        names = metrics if metrics is not None else sorted({k for r in out for k in r["metrics"]})
        keys = sorted({k for r in out for k in r["params"]})
        differ = [k for k in keys if len({repr(r["params"].get(k)) for r in out}) > 1]
        return {"runs": out, "metrics": names, "params": keys, "params_differ": differ}
