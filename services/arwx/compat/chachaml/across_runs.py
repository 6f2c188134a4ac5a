"""chachaml's reads across runs (its Web UI's JSON API): compare, version diff, metric search, CSV export.

Invariants:

- A run's metrics here are chachaml's "metric summary": each key's value at
  its latest point (highest step, then time), read through
  ``AdapterRuns.latest``; a run's params are ``params_of`` (a chachaml run's
  params, a plain arwx run's whole config), as in ``GET /api/runs/:id``.
- Every run named or listed is the caller's org's; a named run that is not
  is ``no such run`` (404), exactly like one that does not exist.
- Values are compared as JSON (so ``1`` and ``1.0`` differ, as chachaml's
  Clojure ``=`` has them); thresholds are compared as numbers in Python,
  never as SQL text.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import msgspec

from arwx.compat.chachaml.models import Models
from arwx.compat.chachaml.service import STATUS_OF, ChachamlService, experiment_filter, params_of, run_json
from arwx.errors import BadRequest, NotFound
from arwx.runs import Run

MAX_COMPARE = 100  # runs in one comparison
MAX_SEARCHED = 10_000  # the newest runs a search looks through
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "=": operator.eq,
}


def diff_maps(maps: list[dict]) -> dict[str, dict]:
    """chachaml's ``diff-maps``: each key of any map is ``same`` (one value everywhere), ``partial``
    (missing or null in some: the values aligned to the runs) or ``differ`` (the values aligned)."""
    out: dict[str, dict] = {"same": {}, "differ": {}, "partial": {}}
    for k in sorted({k for m in maps for k in m}):
        values = [m.get(k) for m in maps]
        if len({msgspec.json.encode(v) for v in values}) == 1:
            out["same"][k] = values[0]
        elif any(v is None for v in values):
            out["partial"][k] = values
        else:
            out["differ"][k] = values
    return out


async def compare(svc: ChachamlService, org: str, ids: list[str]) -> dict:
    """``GET /api/compare?ids=a,b``: ``{runs, params: {same, differ, partial}, metrics: {…}}``."""
    if len(ids) < 2:
        raise BadRequest("Provide at least 2 comma-separated ids (?ids=a,b)")
    if len(ids) > MAX_COMPARE:
        raise BadRequest(f"ids names {len(ids)} runs; compare at most {MAX_COMPARE}")
    runs = [await svc.run(org, i) for i in ids]
    latest = await svc.latest(org, ids)
    return {"runs": ids, "params": diff_maps([params_of(r) for r in runs]),
            "metrics": diff_maps([latest.get(r.run_id, {}) for r in runs])}


async def diff_versions(svc: ChachamlService, models: Models, org: str, name: str, v1: str, v2: str) -> dict:
    """``GET /api/diff/:name/:v1/:v2``: ``compare`` of the runs that produced the two versions."""
    try:
        runs = [(await models.version(org, name, int(v)))["run-id"] for v in (v1, v2)]
    except (ValueError, NotFound):
        raise NotFound("Versions not found") from None
    return await compare(svc, org, runs)


async def search(svc: ChachamlService, org: str, experiment: str | None, key: str | None, op: str | None,
                 threshold: str | None, limit: int) -> list[dict]:
    """``GET /api/search?metric_key=&op=&metric_value=&experiment=&limit=``: runs newest first
    (of one experiment if given) whose latest value of ``metric_key`` satisfies ``op metric_value``;
    without the three, every run (as chachaml does)."""
    given = [x is not None for x in (key, op, threshold)]
    if any(given) and not all(given):
        raise BadRequest("give metric_key, op and metric_value together (or none of them)")
    runs = await svc.runs.list(org, experiment_filter(experiment), (), MAX_SEARCHED if all(given) else limit)
    if not all(given):
        return [run_json(r) for r in runs]
    if op not in OPS:
        raise BadRequest(f"op must be one of {', '.join(OPS)}, not {op!r}")
    try:
        bound = float(threshold)  # type: ignore[arg-type]
    except ValueError:
        raise BadRequest(f"metric_value must be a number, not {threshold!r}") from None
    latest = await svc.latest(org, [r.run_id for r in runs], wait=False)
    hits = [r for r in runs if key in latest.get(r.run_id, {}) and OPS[op](latest[r.run_id][key], bound)]
    return [run_json(r) for r in hits[:limit]]


def _cell(v: Any) -> str:
    """chachaml's ``csv-cell``: the value as text, quoted, its quotes doubled (null is empty)."""
    if v is None:
        text = ""
    elif isinstance(v, str):
        text = v
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        text = msgspec.json.encode(v).decode()  # true/false, objects and lists as JSON
    else:
        text = str(v)
    return '"' + text.replace('"', '""') + '"'


def _row(run: Run, params: dict, metrics: dict) -> dict:
    base = {"id": run.run_id, "experiment": run.project, "name": run.name,
            "status": STATUS_OF.get(run.status, run.status), "start-time": run.created_at_ms,
            "end-time": run.finished_at_ms,
            "duration": None if run.finished_at_ms is None else run.finished_at_ms - run.created_at_ms}
    return {**base, **params, **metrics}  # chachaml's merge: params over the run, metrics over both


async def export_csv(svc: ChachamlService, org: str, experiment: str | None, limit: int) -> str:
    """``GET /api/export?experiment=&limit=``: one line per run (newest first): the run's fields,
    its params and its latest metrics; the header is every column, sorted."""
    runs = await svc.runs.list(org, experiment_filter(experiment), (), limit)
    latest = await svc.latest(org, [r.run_id for r in runs])  # waits for what each run acknowledged
    rows = [_row(r, params_of(r), latest.get(r.run_id, {})) for r in runs]
    columns = sorted({k for row in rows for k in row})
    header = ",".join(_cell(c) for c in columns)
    return header + "\n" + "\n".join(",".join(_cell(row.get(c)) for c in columns) for row in rows) + "\n"
