"""Read-side routes: runs, their history (paged or streamed), integrity receipts,
a project's runs and charts (projects themselves are in ``arwx.control``)."""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from arwx.appkeys import API_KEY, LOG, RUNS, STORE
from arwx.control.http import CONTROL
from arwx.errors import BadRequest, NotFound
from arwx.params import query_int
from arwx.query import charts as charts_mod
from arwx.query import projects as projects_mod
from arwx.query import segmented, series
from arwx.query.history import MAX_LIMIT, history, parse_cursor
from arwx.query.receipts import attempt_receipt, run_receipt
from arwx.query.stream import stream_arrow, stream_history
from arwx.query.writers import writer_position
from arwx.runs import RUN_STATUSES, Run
from arwx.segments import Segment, source_of
from arwx.wire import ID_PATTERN, MAX_ID_LEN, MAX_SEQ


async def _run(request: web.Request, fresh: bool = False) -> Run | None:
    # 404 for a run of another org too: existence must not leak.
    return await request.app[RUNS].get(request[API_KEY].org, request.match_info["run_id"], fresh=fresh)


async def get_run(request: web.Request) -> web.Response:
    run = await _run(request)
    if run is None:
        raise NotFound(f"unknown run {request.match_info['run_id']!r}")
    return web.json_response(run.public())


def _attempt(request: web.Request, run: Run) -> Run:
    """The run itself, or (``attempt=k``) a view of one attempt's own points, all its steps."""
    if not request.query.get("attempt"):
        return run
    k = query_int(request, "attempt", 0, 0, 1 << 30)
    one = run.at_attempt(k)
    if one is None:
        raise NotFound(f"run {run.run_id!r} has no attempt {k} (attempts: 0..{run.attempt})")
    return one


async def _history_args(request: web.Request) -> tuple[Run, list[str], int, int, list[Segment]]:
    """The run, the history filters both history routes take, and the segments to read
    (the run's visible history, or one attempt's points with ``attempt=``); ``NotFound``/``BadRequest``."""
    run = await _run(request)
    if run is None:
        raise NotFound(f"unknown run {request.match_info['run_id']!r}")
    keys = [k for k in request.query.get("keys", "").split(",") if k]
    min_step = query_int(request, "min_step", 0, 0, MAX_SEQ)
    max_step = query_int(request, "max_step", MAX_SEQ, 0, MAX_SEQ)
    one = _attempt(request, run)
    return run, keys, min_step, max_step, one.segments


_ID_RE = re.compile(ID_PATTERN)

HISTORY_FORMATS = ("json", "ndjson", "columns", "arrow")
_JSON = msgspec.json.Encoder()


def _history_format(request: web.Request) -> str | None:
    """``format=`` if given, else Arrow when the client accepts only that, else json."""
    fmt = request.query.get("format")
    if fmt:
        return fmt if fmt in HISTORY_FORMATS else None
    accept = request.headers.get("Accept", "")
    return "arrow" if series.ARROW_STREAM in accept and "json" not in accept else "json"


async def get_metrics(request: web.Request) -> web.StreamResponse:
    run, keys, min_step, max_step, segments = await _history_args(request)
    fmt = _history_format(request)
    if fmt is None:
        raise BadRequest(f"format must be one of {', '.join(HISTORY_FORMATS)}")
    store = request.app[STORE]
    if fmt == "ndjson":
        return await stream_history(request, store, run.org, run.run_id, keys, min_step, max_step, segments=segments)
    limit = query_int(request, "limit", 10_000, 1, MAX_LIMIT)
    cursor = request.query.get("cursor")
    if fmt in ("columns", "arrow"):
        try:
            after = series.decode_history_cursor(cursor) if cursor else None
        except series.BadCursor as e:
            raise BadRequest(str(e)) from None
        rng = series.Range(run.org, run.run_id, keys, min_step, max_step, segments)
        if fmt == "columns":
            body = await series.columns_page(store, rng, limit, after)
            return web.Response(body=body, content_type="application/json")
        body, nxt = await series.arrow_page(store, rng, limit, after)
        return web.Response(body=body, content_type=series.ARROW_STREAM, headers={"Arwx-Next": nxt} if nxt else None)
    after_row = None
    if cursor:
        try:
            after_row = parse_cursor(cursor)
        except ValueError:
            raise BadRequest("cursor is not one this service gave out") from None
    page = await history(store, run.org, run.run_id, keys, min_step, max_step, limit, after_row, segments)
    # msgspec, not json.dumps: a 100k-row page encodes ~10x faster (profiled).
    return web.Response(body=_JSON.encode(page), content_type="application/json")


async def get_metrics_stream(request: web.Request) -> web.StreamResponse:
    """The whole history (or a step range) as NDJSON or one Arrow IPC stream, with bounded memory."""
    run, keys, min_step, max_step, segments = await _history_args(request)
    fmt = _history_format(request)
    if fmt not in ("json", "ndjson", "arrow"):
        raise BadRequest("format must be ndjson or arrow")
    if fmt == "arrow":
        rng = series.Range(run.org, run.run_id, keys, min_step, max_step, segments)
        return await stream_arrow(request, request.app[STORE], rng)
    return await stream_history(
        request, request.app[STORE], run.org, run.run_id, keys, min_step, max_step, segments=segments
    )


async def get_integrity(request: web.Request) -> web.Response:
    # Fresh from the catalog: a writer's total reported through another process (a gateway)
    # must count at once, or a cached run could call a receipt intact without it.
    run = await _run(request, fresh=True)
    if run is None:
        raise NotFound(f"unknown run {request.match_info['run_id']!r}")
    if request.query.get("attempt"):
        one = _attempt(request, run)
        return web.json_response(await attempt_receipt(request.app[STORE], request.app[LOG], run, one))
    return web.json_response(await run_receipt(request.app[STORE], request.app[LOG], run))


RECEIPT_SUMS = ("points_committed", "points_stored", "duplicates_collapsed", "conflicts", "skipped", "lost",
                "pending", "pending_points")


async def get_project_integrity(request: web.Request) -> web.Response:
    """The receipts of several runs of a project in one answer, with their sums (the dashboard's
    badge: one request instead of one per charted run)."""
    org, name = request[API_KEY].org, request.match_info["name"]
    ids = list(dict.fromkeys(r for r in request.query.get("runs", "").split(",") if r))
    if not ids:
        raise BadRequest("runs: name at least one run id (comma-separated)")
    if len(ids) > MAX_CHART_RUNS:
        raise BadRequest(f"runs: at most {MAX_CHART_RUNS} runs")
    runs_cache = request.app[RUNS]
    runs = [await runs_cache.get(org, run_id[:MAX_ID_LEN], fresh=True) for run_id in ids]
    unknown = [i for i, run in zip(ids, runs, strict=True) if run is None or run.project != name]
    if unknown:
        raise NotFound(f"unknown run(s) in project {name!r}: {', '.join(unknown)}")
    store, log = request.app[STORE], request.app[LOG]
    receipts = [await run_receipt(store, log, run) for run in runs]  # one store: no gain from gather
    body = {"project": name, "runs": len(receipts), "intact": all(r["intact"] for r in receipts)}
    body.update({f: sum(r[f] for r in receipts) for f in RECEIPT_SUMS})
    body["receipts"] = receipts
    return web.json_response(body)


async def get_writer(request: web.Request) -> web.Response:
    """Where a writer's seq range ends on the server (what a resumed writer continues from)."""
    run = await _run(request)
    if run is None:
        raise NotFound(f"unknown run {request.match_info['run_id']!r}")
    writer_id = request.match_info["writer_id"]
    if len(writer_id) > MAX_ID_LEN or not _ID_RE.search(writer_id):
        raise BadRequest(f"bad writer id {writer_id[:MAX_ID_LEN]!r}")
    # A resumed writer continues its current attempt (or, ``attempt=``, an earlier one).
    one = _attempt(request, run) if request.query.get("attempt") else run.at_attempt(run.attempt)
    assert one is not None
    pos = await writer_position(request.app[STORE], request.app[LOG], one, writer_id)
    return web.json_response({**pos, "run_id": run.run_id, "attempt": source_of(one.run_id)[1]})


def _opt_int(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    return query_int(request, name, None, lo, hi) if request.query.get(name) else None  # type: ignore[arg-type]


MAX_LATEST_KEYS = 100  # latest values asked by name: a table's columns, not every key


async def get_project_runs(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    status = request.query.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(RUN_STATUSES)}")
    limit = query_int(request, "limit", 100, 1, projects_mod.MAX_PAGE)
    after = None
    if request.query.get("cursor"):
        try:
            after = projects_mod.parse_run_cursor(request.query["cursor"])
        except ValueError:
            raise BadRequest("cursor is not one this service gave out") from None
    deleted = request.query.get("deleted", "false")
    if deleted not in ("true", "false"):
        raise BadRequest("deleted must be true (the deleted runs) or false (the others)")
    latest_keys = None
    if "latest_keys" in request.query:
        latest_keys = [k for k in request.query["latest_keys"].split(",") if k]
        if len(latest_keys) > MAX_LATEST_KEYS:
            raise BadRequest(f"latest_keys: at most {MAX_LATEST_KEYS} keys")
    page = await projects_mod.project_runs(
        request.app[STORE], request[API_KEY].org, name, status, request.query.get("name_prefix", ""), limit, after,
        deleted=deleted == "true", latest_keys=latest_keys,
    )
    if not page["runs"] and after is None and not await request.app[CONTROL].projects.exists(request[API_KEY].org, name):
        raise NotFound(f"unknown project {name!r}")
    # Rewound and forked runs: their latest values are those their segments show.
    segs = await request.app[RUNS].segments_of(request[API_KEY].org, [r["id"] for r in page["runs"]])
    if segs:
        shown = await segmented.latest(request.app[STORE], request[API_KEY].org, segs, latest_keys)
        for r in page["runs"]:
            if r["id"] in shown:
                r["latest"] = shown[r["id"]]
    resp = web.Response(body=_JSON.encode(page), content_type="application/json")
    resp.enable_compression()  # configs and key names: a page of runs compresses several times
    return resp


MAX_CHART_RUNS = 100
MAX_CHART_KEYS = 50
# Per-series arrays a client may ask for with ``fields=`` (x and the series' identity always come).
SERIES_FIELDS = ("value", "first", "last", "min", "max", "min_x", "max_x", "writers", "smoothed")
_ALWAYS = ("run_id", "key", "writer_id", "x", "skipped")


def _choice(request: web.Request, name: str, options: tuple[str, ...]) -> str:
    v = request.query.get(name) or options[0]
    if v not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}")
    return v


async def get_project_charts(request: web.Request) -> web.Response:
    """Downsampled series of ``keys`` for the project's runs (see docs/query.md)."""
    store, org, name = request.app[STORE], request[API_KEY].org, request.match_info["name"]
    runs = [r for r in request.query.get("runs", "").split(",") if r]
    if len(runs) > MAX_CHART_RUNS:
        raise BadRequest(f"at most {MAX_CHART_RUNS} runs per chart")
    keys = [k for k in request.query.get("keys", "").split(",") if k]
    if len(keys) > MAX_CHART_KEYS:
        raise BadRequest(f"at most {MAX_CHART_KEYS} keys per chart")
    samples = query_int(request, "maxDataPoints", 500, 2, 10_000) if "maxDataPoints" in request.query else query_int(request, "samples", 500, 2, 10_000)
    interval = _opt_int(request, "intervalMs", 1, MAX_SEQ) or _opt_int(request, "interval", 1, MAX_SEQ)
    try:
        smoothing = float(request.query.get("smoothing") or 0)
    except ValueError:
        raise BadRequest("smoothing must be a number in 0..1") from None
    if not 0 <= smoothing < 1:
        raise BadRequest("smoothing must be a number in 0..1 (1 excluded)")
    fmt = _choice(request, "format", ("json", "grafana"))
    req = charts_mod.ChartRequest(
        org=org, runs=runs, keys=keys, samples=samples, x=_choice(request, "x", charts_mod.AXES),
        agg=_choice(request, "agg", charts_mod.AGGS), writers=_choice(request, "writers", charts_mod.WRITER_MODES),
        since_step=_opt_int(request, "since_step", 0, MAX_SEQ), max_step=_opt_int(request, "max_step", 0, MAX_SEQ),
        from_ms=_opt_int(request, "from", -(2**62), 2**62), to_ms=_opt_int(request, "to", -(2**62), 2**62),
        interval=interval, smoothing=smoothing,
    )
    if req.agg == "lttb" and req.writers == "combined":
        raise BadRequest("agg=lttb works per writer (writers=per)")
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    unknown_fields = [f for f in fields if f not in SERIES_FIELDS]
    if unknown_fields:
        raise BadRequest(f"fields: unknown {', '.join(unknown_fields)}; one of {', '.join(SERIES_FIELDS)}")
    req.fields = tuple(fields)  # the chart computes only these arrays
    project_runs = await projects_mod.project_run_ids(store, org, name, 10_000 if runs else MAX_CHART_RUNS)
    if not project_runs:
        raise NotFound(f"unknown project {name!r}")
    if runs:
        unknown = sorted(set(runs) - set(project_runs))
        if unknown:
            raise NotFound(f"unknown run(s) in project {name!r}: {', '.join(unknown)}")
    else:
        req.runs = project_runs
    req.segments = await request.app[RUNS].segments_of(org, req.runs)
    result = await charts_mod.chart(store, req)
    if fmt == "grafana":
        return web.json_response(charts_mod.grafana_frames(result))
    result["project"] = name
    result["runs"] = req.runs
    if fields:
        # A dashboard drawing a line and its min/max band needs 4 of the 8 arrays: half the bytes.
        keep = set(_ALWAYS) | set(fields)
        result["series"] = [{k: v for k, v in s.items() if k in keep} for s in result["series"]]
    resp = web.Response(body=_JSON.encode(result), content_type="application/json")
    # Arrays of numbers compress about 4x; a browser always accepts gzip.
    resp.enable_compression()
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_get("/v1/runs/{run_id}/metrics", get_metrics)
    app.router.add_get("/v1/runs/{run_id}/metrics/stream", get_metrics_stream)
    app.router.add_get("/v1/projects/{name:[^/]+}/runs", get_project_runs)
    app.router.add_get("/v1/projects/{name:[^/]+}/charts", get_project_charts)
    app.router.add_get("/v1/runs/{run_id}/integrity", get_integrity)
    app.router.add_get("/v1/projects/{name:[^/]+}/integrity", get_project_integrity)
    app.router.add_get("/v1/runs/{run_id}/writers/{writer_id}", get_writer)
