"""MLflow's tracking operations on arwx's services (knows nothing of HTTP).

One model underneath: an experiment is an arwx project (named as the
experiment), an MLflow run an arwx run (same id, writer ``mlflow``), metrics
go through ``IngestService`` into the log, the store, history, charts and
receipts. What arwx does not keep (experiment ids, params, tags, lifecycle,
seq counters) lives in ``state``.

Seqs (MLflow sends none): each request reserves ``n`` seqs of the run's
writer ``mlflow`` under a digest: the ``Idempotency-Key`` if the client sent
one, else a hash of the request's metrics (key, value, timestamp, step, in
order). A request re-sent by the client's retry policy has the same digest,
gets the same seqs and overwrites its own points, so it is stored once. Two
distinct requests with byte-identical metrics (same key, value, step and
millisecond) are therefore stored once too: MLflow's own SQL store keys
metrics by exactly those fields, so nothing MLflow would keep is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from arwx.compat.mlflow.search import BadFilter, matches, parse_filter, parse_order_by, sort_runs
from arwx.compat.mlflow.state import WRITER, Experiment, MlflowState, ParamChanged, RunRow
from arwx.errors import BadRequest, NotFound
from arwx.ingest.reserved_seqs import request_digest
from arwx.ingest.service import IngestService
from arwx.query.charts import ChartRequest, chart
from arwx.query.series import BadCursor, _page_sql, decode_cursor, encode_cursor
from arwx.runs import Runs
from arwx.store.base import Store
from arwx.wire import MAX_SEQ, Point

STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_ARWX_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
READ_WAIT_S = 10.0  # how long a history read waits for the run's acknowledged points to be stored


class AlreadyExists(BadRequest):
    status = 400
    code = "RESOURCE_ALREADY_EXISTS"


def experiment_id_of(text: str | None) -> int:
    """An experiment id as MLflow sends it (a string of digits)."""
    if text is None or not str(text).isdigit() or len(str(text)) > 18:
        raise NotFound(f"Could not find experiment with ID {text!r}")
    return int(text)


def artifact_uri(e_id: int, run_id: str) -> str:
    return f"mlflow-artifacts:/{e_id}/{run_id}/artifacts"


def experiment_json(e: Experiment) -> dict:
    return {
        "experiment_id": str(e.experiment_id), "name": e.name, "artifact_location": f"mlflow-artifacts:/{e.experiment_id}",
        "lifecycle_stage": e.lifecycle_stage, "creation_time": e.creation_time, "last_update_time": e.last_update_time,
        "tags": [{"key": k, "value": v} for k, v in sorted(e.tags.items())],
    }


def run_info_json(r: RunRow) -> dict:
    info = {
        "run_id": r.run_id, "run_uuid": r.run_id, "run_name": r.run_name, "experiment_id": str(r.experiment_id),
        "user_id": r.user_id, "status": r.status, "start_time": r.start_time,
        "artifact_uri": artifact_uri(r.experiment_id, r.run_id), "lifecycle_stage": r.lifecycle_stage,
    }
    if r.end_time is not None:
        info["end_time"] = r.end_time
    return info


def _metric_value(v: float | None) -> float | str:
    return "NaN" if v is None or math.isnan(v) else v


def run_json(r: RunRow) -> dict:
    return {
        "info": run_info_json(r),
        "data": {
            "metrics": [{"key": k, "value": _metric_value(v), "timestamp": ts, "step": step}
                        for k, (v, ts, step) in sorted(r.metrics.items())],
            "params": [{"key": k, "value": v} for k, v in sorted(r.params.items())],
            "tags": [{"key": k, "value": v} for k, v in sorted(r.tags.items())],
        },
        "inputs": {},
        "outputs": {"model_outputs": r.outputs} if r.outputs else {},
    }


@dataclass
class Metric:
    key: str
    value: Any
    timestamp: int
    step: int


def _float(v: Any) -> float:
    """A metric value as MLflow sends it: a number, or "NaN"/"Infinity" strings."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BadRequest(f"metric value {v!r} is not a number")
    try:
        return float(v)
    except ValueError:
        raise BadRequest(f"metric value {v!r} is not a number") from None


def _int(v: Any, what: str, default: int | None = None) -> int:
    if v is None and default is not None:
        return default
    try:
        if isinstance(v, bool):
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} {v!r} is not an integer") from None


def metrics_of(items: list[Any]) -> list[Metric]:
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict) or not isinstance(m.get("key"), str) or not m["key"]:
            raise BadRequest(f"metrics[{i}]: a metric needs a non-empty string key")
        step = _int(m.get("step"), f"metrics[{i}].step", 0)
        if not 0 <= step <= MAX_SEQ:
            raise BadRequest(f"metrics[{i}].step {step} is out of range: 0 to {MAX_SEQ}")
        ts = _int(m.get("timestamp"), f"metrics[{i}].timestamp", int(time.time() * 1000))
        if not 0 <= ts < 1 << 45:
            raise BadRequest(f"metrics[{i}].timestamp {ts} is not a time in milliseconds")
        out.append(Metric(m["key"], _float(m.get("value")), ts, step))
    return out


def digest_of(metrics: list[Metric]) -> str:
    h = hashlib.sha256()
    for m in metrics:
        h.update(f"{m.key}\x00{m.value!r}\x00{m.timestamp}\x00{m.step}\x01".encode())
    return "m:" + h.hexdigest()


class MlflowService:
    """The operations the routes call; every one takes the caller's org first."""

    def __init__(self, state: MlflowState, runs: Runs, ingest: IngestService, store: Store) -> None:
        self.state = state
        self.runs = runs
        self.ingest = ingest
        self.store = store

    # -- experiments ---------------------------------------------------------------------------
    async def create_experiment(self, org: str, name: Any, tags: list[Any]) -> str:
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("experiment name must be a non-empty string")
        e = await self.state.create_experiment(org, name, kv_list(tags, "tags"))
        if e is None:
            raise AlreadyExists(f"Experiment '{name}' already exists.")
        return str(e.experiment_id)

    async def experiment(self, org: str, experiment_id: str | None = None, name: str | None = None) -> Experiment:
        if name is not None:
            e = await self.state.experiment(org, name=name)
            if e is None:
                raise NotFound(f"Could not find experiment with name {name!r}")
            return e
        e = await self.state.experiment(org, experiment_id=experiment_id_of(experiment_id))
        if e is None:
            raise NotFound(f"Could not find experiment with ID {experiment_id!r}")
        return e

    async def search_experiments(self, org: str, view: str, name_filter: str | None, max_results: int,
                                 page_token: str | None) -> tuple[list[Experiment], str | None]:
        es = await self.state.experiments(org)
        es = [e for e in es if _view_ok(view, e.lifecycle_stage)]
        clauses = parse_filter(name_filter)
        es = [e for e in es if matches(clauses, lambda ent, k, e=e: e.name if k == "name" else e.tags.get(k) if ent == "tags" else None)]
        es.sort(key=lambda e: -e.experiment_id)
        return page_of(es, max_results, page_token)

    # -- runs ------------------------------------------------------------------------------------
    async def create_run(self, org: str, body: dict) -> RunRow:
        e = await self.experiment(org, str(body.get("experiment_id", "0")))
        if e.lifecycle_stage != "active":
            raise BadRequest(f"The experiment {e.experiment_id} must be in the 'active' state.")
        tags = kv_list(body.get("tags") or [], "tags")
        run_id = uuid.uuid4().hex
        name = body.get("run_name") or tags.get("mlflow.runName") or f"run-{run_id[:8]}"
        if not isinstance(name, str):
            raise BadRequest("run_name must be a string")
        tags["mlflow.runName"] = name
        start = _int(body.get("start_time"), "start_time", int(time.time() * 1000))
        user = body.get("user_id") or tags.get("mlflow.user") or ""
        await self.runs.create(org, run_id, e.name, name, {"mlflow": {"experiment_id": str(e.experiment_id), "tags": tags}}, [WRITER])
        row = RunRow(org, run_id, e.experiment_id, name, str(user), "RUNNING", start, None, "active", {}, tags)
        await self.state.create_run(row)
        return row

    async def run(self, org: str, run_id: Any) -> RunRow:
        if not isinstance(run_id, str) or not run_id:
            raise BadRequest("run_id is missing")
        r = await self.state.run(org, run_id)
        if r is None:
            raise NotFound(f"Run with id={run_id} not found")
        return r

    async def update_run(self, org: str, body: dict) -> RunRow:
        r = await self.run(org, body.get("run_id") or body.get("run_uuid"))
        changes: dict[str, Any] = {}
        status = body.get("status")
        if status is not None:
            if status not in STATUSES:
                raise BadRequest(f"status {status!r} is not one of {', '.join(STATUSES)}")
            changes["status"] = status
        if body.get("end_time") is not None:
            changes["end_time"] = _int(body["end_time"], "end_time")
        if body.get("run_name"):
            changes["run_name"] = str(body["run_name"])
            await self.state.log_data(org, r.run_id, {}, {"mlflow.runName": changes["run_name"]})
        if status in _ARWX_STATUS:
            # The arwx run finishes with its writer's total: the receipt can then tell whether all arrived.
            run = await self.state.run(org, r.run_id)
            assert run is not None
            await self.runs.finish(org, r.run_id, _ARWX_STATUS[status], {WRITER: run.next_seq})
            changes.setdefault("end_time", int(time.time() * 1000))
        out = await self.state.update_run(org, r.run_id, **changes)
        assert out is not None
        return out

    async def set_lifecycle(self, org: str, run_id: Any, stage: str) -> None:
        r = await self.run(org, run_id)
        await self.state.update_run(org, r.run_id, lifecycle_stage=stage)

    async def search_runs(self, org: str, body: dict) -> tuple[list[RunRow], str | None]:
        ids = body.get("experiment_ids") or []
        if not isinstance(ids, list):
            raise BadRequest("experiment_ids must be a list")
        clauses = parse_filter(body.get("filter"))
        order = parse_order_by(body.get("order_by") or [])
        view = body.get("run_view_type") or "ACTIVE_ONLY"
        if not isinstance(view, str):
            raise BadRequest("run_view_type must be a string")
        runs = await self.state.runs(org, [experiment_id_of(str(i)) for i in ids]) if ids else []
        runs = [r for r in runs if _view_ok(view, r.lifecycle_stage) and matches(clauses, lambda e, k, r=r: _value(r, e, k))]
        runs = sort_runs(runs, order, _value)
        return page_of(runs, _int(body.get("max_results"), "max_results", 1000), body.get("page_token"), cap=50_000)

    # -- params, tags, metrics -------------------------------------------------------------------
    async def log_batch(self, org: str, run_id: Any, metrics: list[Any], params: list[Any], tags: list[Any],
                        idempotency_key: str | None = None) -> None:
        if len(metrics) > 1000 or len(params) > 100 or len(tags) > 100:
            raise BadRequest("A batch logging request can contain at most 1000 metrics, 100 params and 100 tags")
        r = await self.run(org, run_id)
        p, t = kv_list(params, "params"), kv_list(tags, "tags")
        ms = metrics_of(metrics)
        if p or t:
            try:
                await self.state.log_data(org, r.run_id, p, t)
            except ParamChanged as e:
                raise BadRequest(str(e)) from None
            await self._copy_to_config(org, r.run_id)
        if ms:
            await self._log_metrics(org, r.run_id, ms, idempotency_key)

    async def delete_tag(self, org: str, run_id: Any, key: Any) -> None:
        r = await self.run(org, run_id)
        if not isinstance(key, str) or key not in r.tags:
            raise NotFound(f"No tag with name: {key!r} in run with id {r.run_id}")
        await self.state.log_data(org, r.run_id, {}, {}, [key])
        await self._copy_to_config(org, r.run_id)

    async def _copy_to_config(self, org: str, run_id: str) -> None:
        """The arwx run's config gets the params (top level, as ``arwandb.init(config=…)`` gives them)
        and the tags (under ``mlflow.tags``): what the dashboard's config columns and
        ``/v1/runs/{id}`` show. The adapter's own rows stay the source of MLflow's answers."""
        r = await self.state.run(org, run_id)
        assert r is not None
        patch: dict[str, Any] = {k: v for k, v in r.params.items() if k != "mlflow"}
        patch["mlflow"] = {"experiment_id": str(r.experiment_id), "tags": dict(r.tags)}
        await self.runs.merge_config(org, run_id, patch)

    async def _log_metrics(self, org: str, run_id: str, ms: list[Metric], idempotency_key: str | None) -> None:
        # The digest of a request without a key stays MLflow's own (rows migrated from 0004 keep matching).
        digest = request_digest(idempotency_key, b"") if idempotency_key else digest_of(ms)
        async with self.state.seqs.reserved(org, run_id, WRITER, digest, len(ms)) as first:
            points = [Point(seq=first + i, step=m.step, key=m.key, value=m.value, ts=m.timestamp / 1000)
                      for i, m in enumerate(ms)]
            await self.ingest.ingest(org, points, run_id, WRITER)
        latest: dict[str, tuple[float | None, int, int]] = {}
        for m in ms:
            have = latest.get(m.key)
            if have is None or (m.step, m.timestamp) >= (have[2], have[1]):
                latest[m.key] = (None if math.isnan(m.value) else m.value, m.timestamp, m.step)
        await self.state.record_latest(org, run_id, latest)

    # -- reads -----------------------------------------------------------------------------------
    async def _settled(self, org: str, run: RunRow) -> None:
        """Wait (bounded) until the store holds every point acknowledged for the run: MLflow
        clients read right after they log, and the log is consumed asynchronously."""
        deadline = time.monotonic() + READ_WAIT_S
        delay = 0.01
        while True:
            ((n,),) = await self.store.rows(
                "SELECT count() FROM points FINAL WHERE org = {org:String} AND run_id = {run:String}"
                " AND writer_id = {w:String}", {"org": org, "run": run.run_id, "w": WRITER})
            if int(n) >= run.next_seq or time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def metric_history(self, org: str, run_id: Any, key: Any, max_results: int,
                             page_token: str | None) -> tuple[list[dict], str | None]:
        r = await self.run(org, run_id)
        if not isinstance(key, str) or not key:
            raise BadRequest("metric_key is missing")
        if not 1 <= max_results <= 25_000:
            raise BadRequest("max_results must be between 1 and 25000")
        after = None
        if page_token is not None and not isinstance(page_token, str):
            raise BadRequest("page_token must be a string")
        if page_token:
            try:
                after = decode_cursor(page_token)
            except BadCursor as e:
                raise BadRequest(f"page_token: {e}") from None
        else:
            await self._settled(org, r)
        page = _page_sql(True, after is not None)
        params: dict = {"org": org, "run": r.run_id, "min_step": 0, "max_step": MAX_SEQ, "keys": [key],
                        "limit": max_results}
        if after:
            params["a_key"], params["a_writer"], params["a_seq"] = after
        rows = await self.store.rows(
            f"SELECT key, writer_id, seq, step, toUnixTimestamp64Milli(ts), value FROM ({page})", params)
        out = [{"key": k, "value": v, "timestamp": int(ts), "step": int(step)} for k, _, _, step, ts, v in rows]
        nxt = encode_cursor(rows[-1][0], rows[-1][1], int(rows[-1][2])) if len(rows) == max_results else None
        return out, nxt

    async def bulk_interval(self, org: str, run_ids: list[str], key: str, start_step: int | None,
                            end_step: int | None, max_results: int) -> list[dict]:
        """The UI's chart request, answered by arwx's charts: per run, at most ``max_results``
        real points picked by MinMaxLTTB (spikes kept) from the rollups."""
        if not run_ids or len(run_ids) > 100:
            raise BadRequest("run_ids: give 1 to 100 run ids")
        if not key or not isinstance(key, str):
            raise BadRequest("metric_key is missing")
        if not all(isinstance(r, str) for r in run_ids):
            raise BadRequest("run_ids must be strings")
        if not 1 <= max_results <= 2500:
            raise BadRequest("max_results must be between 1 and 2500")
        for run_id in run_ids:
            await self._settled(org, await self.run(org, run_id))
        req = ChartRequest(org=org, runs=list(run_ids), keys=[key], samples=max(max_results, 3), agg="lttb",
                           since_step=start_step, max_step=end_step)
        result = await chart(self.store, req)
        out = []
        for s in result["series"]:
            for x, v in zip(s["x"], s["value"]):
                out.append({"key": key, "value": v, "timestamp": 0, "step": int(x), "run_id": s["run_id"]})
        out.sort(key=lambda m: (m["run_id"], m["step"]))
        return out


def kv_list(items: Any, what: str) -> dict[str, str]:
    if not isinstance(items, list):
        raise BadRequest(f"{what} must be a list of {{key, value}}")
    out = {}
    for i, kv in enumerate(items):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str) or not kv["key"]:
            raise BadRequest(f"{what}[{i}]: needs a non-empty string key")
        v = kv.get("value", "")
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise BadRequest(f"{what}[{i}].value must be a string")
        if len(kv["key"]) > 250 or len(str(v)) > 8000:
            raise BadRequest(f"{what}[{i}]: key over 250 or value over 8000 characters")
        out[kv["key"]] = str(v)
    return out


def _view_ok(view: str, stage: str) -> bool:
    if view not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        raise BadRequest(f"view type {view!r} is not ACTIVE_ONLY, DELETED_ONLY or ALL")
    return view == "ALL" or (view == "ACTIVE_ONLY") == (stage == "active")


def _value(r: RunRow, entity: str, key: str) -> Any:
    if entity == "metrics":
        m = r.metrics.get(key)
        return None if m is None else m[0]
    if entity == "params":
        return r.params.get(key)
    if entity == "tags":
        return r.tags.get(key)
    info = run_info_json(r)
    key = {"run_uuid": "run_id", "created": "start_time", "Created": "start_time"}.get(key, key)
    return info.get(key)


def page_of(items: list, max_results: int, token: Any, cap: int = 50_000) -> tuple[list, str | None]:
    if not 1 <= max_results <= cap:
        raise BadRequest(f"max_results must be between 1 and {cap}")
    offset = 0
    if token:
        if not isinstance(token, str) or not token.isdigit() or len(token) > 12:
            raise BadRequest("page_token is not one this server gave out")
        offset = int(token)
    page = items[offset:offset + max_results]
    return page, str(offset + max_results) if offset + max_results < len(items) else None


__all__ = ["BadFilter", "MlflowService"]
