"""HTTP routes of the Wild V2 sweeps/runs protocol: the seed's paths and bodies, thin handlers.

``X-Auth-Token`` (or any of arwx's credentials) carries an arwx key. Creating
a run with a command and starting one is remote code execution on a runner's
machine, so those routes, and the runner's own calls under
``/wild/v2/runner/``, need the ``launch`` scope (``@requires``); reads need
``read``, a stop ``write``. Everything is within the key's org: another org's
sweep or run is a 404. See docs/api.md (Wild V2) and docs/runner.md.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from arwx.appkeys import API_KEY, CATALOG, CONFIG, LOG, RUNS, STORE, TENANCY
from arwx.compat.wild.dispatch import Dispatch
from arwx.compat.wild.logs import MAX_CHUNK, STREAMS, RunLogs, tail_lines
from arwx.compat.wild.service import WildService
from arwx.compat.wild.state import is_final
from arwx.compat.wild.wire import (
    WildClaim,
    WildHeartbeat,
    WildReport,
    WildRunAction,
    WildRunCreate,
    WildSweepCreate,
)
from arwx.control.http import body, json_body
from arwx.errors import BadRequest
from arwx.gateway.auth import requires
from arwx.params import query_int

SERVICE = web.AppKey("arwx_wild", WildService)
DISPATCH = web.AppKey("arwx_wild_dispatch", Dispatch)
LOGS = web.AppKey("arwx_wild_logs", RunLogs)
FOLLOW_POLL_S = 0.5
FOLLOW_MAX_S = 600.0  # one follow request; the client asks again for more


def _svc(request: web.Request) -> WildService:
    return request.config_dict[SERVICE]


def _dispatch(request: web.Request) -> Dispatch:
    return request.config_dict[DISPATCH]


def _who(request: web.Request) -> tuple[str, str]:
    key = request[API_KEY]
    return key.org, key.key_id


async def _action(request: web.Request) -> str | None:
    """``chat_session_id`` of a start or stop: from the optional body, else the query string."""
    req = await json_body(request, WildRunAction)
    return req.chat_session_id or request.query.get("chat_session_id") or None


# -- sweeps -----------------------------------------------------------------------------------
async def create_sweep(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    sweep, created = await _svc(request).create_sweep(org, key_id, await json_body(request, WildSweepCreate))
    return web.json_response(sweep, status=201 if created else 200)


async def list_sweeps(request: web.Request) -> web.Response:
    await _dispatch(request).reap()
    return web.json_response(await _svc(request).sweeps(request[API_KEY].org, query_int(request, "limit", 100, 1, 1000)))


async def get_sweep(request: web.Request) -> web.Response:
    await _dispatch(request).reap()
    return web.json_response(await _svc(request).sweep(request[API_KEY].org, request.match_info["sweep_id"]))


async def sweep_audit(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).audit_trail(request[API_KEY].org, sweep_id=request.match_info["sweep_id"]))


# -- runs -------------------------------------------------------------------------------------
@requires("launch")
async def create_run(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    run = await _svc(request).create_run(org, key_id, await json_body(request, WildRunCreate))
    return web.json_response(run, status=201)


async def list_runs(request: web.Request) -> web.Response:
    await _dispatch(request).reap()
    q = request.query
    out = await _svc(request).list_runs(
        request[API_KEY].org, q.get("sweep_id") or None, q.get("status") or None, query_int(request, "limit", 100, 1, 1000)
    )
    return web.json_response(out)


async def get_run(request: web.Request) -> web.Response:
    await _dispatch(request).reap()
    return web.json_response(await _svc(request).run(request[API_KEY].org, request.match_info["run_id"]))


@requires("launch")
async def start_run(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    return web.json_response(
        await _svc(request).start(org, key_id, request.match_info["run_id"], await _action(request))
    )


async def stop_run(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    return web.json_response(
        await _svc(request).stop(org, key_id, request.match_info["run_id"], await _action(request))
    )


async def run_audit(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).audit_trail(request[API_KEY].org, run_id=request.match_info["run_id"]))


def _stream_arg(request: web.Request, default: str | None) -> str | None:
    stream = request.query.get("stream") or default
    if stream is not None and stream not in STREAMS:
        raise BadRequest(f"stream must be stdout or stderr, not {stream!r}")
    return stream


async def run_logs(request: web.Request) -> web.StreamResponse:
    """stdout and stderr as JSON (``tail``: the last N lines); ``follow=true``: one stream
    (``stream=``, default stdout) as text/plain, written as it arrives until the run ends."""
    org, run_id = request[API_KEY].org, request.match_info["run_id"]
    run = await _svc(request).run(org, run_id, with_metrics=False)  # 404 first, for another org's run too
    tail = query_int(request, "tail", 0, 0, 1_000_000)
    follow = request.query.get("follow", "").lower() in ("1", "true", "yes")
    logs = request.config_dict[LOGS]
    if follow:
        return await _follow(request, logs, org, run_id, _stream_arg(request, "stdout") or "stdout", tail)
    out: dict = {"id": run_id, "status": run["status"], "cap_bytes": logs.cap_bytes}
    for stream in [_stream_arg(request, None)] if request.query.get("stream") else STREAMS:
        data, end = await logs.read(org, run_id, stream)
        shown = tail_lines(data, tail) if tail else data
        out[stream] = shown.decode("utf-8", errors="replace")
        out[f"{stream}_bytes"] = end
        out[f"{stream}_truncated"] = end >= logs.cap_bytes
    return web.json_response(out)


async def _follow(request: web.Request, logs: RunLogs, org: str, run_id: str, stream: str, tail: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    data, pos = await logs.read(org, run_id, stream)
    await resp.write(tail_lines(data, tail) if tail else data)
    deadline = time.monotonic() + FOLLOW_MAX_S
    while time.monotonic() < deadline:
        # Read the status before the bytes: what a run wrote before it ended is sent, then we stop.
        ended = is_final((await _svc(request).run(org, run_id, with_metrics=False))["status"])
        data, end = await logs.read(org, run_id, stream, pos)
        if data:
            await resp.write(data)
            pos = end
        if ended:
            break
        await _dispatch(request).reap()
        await asyncio.sleep(FOLLOW_POLL_S)
    await resp.write_eof()
    return resp


# -- health -----------------------------------------------------------------------------------
async def system_health(request: web.Request) -> web.Response:
    """The server, the event log, the store, the catalog, and every runner of the key's org."""
    from arwx.ops import readiness  # ops imports the role registry, which imports these routes

    await _dispatch(request).reap()
    app = request.config_dict
    ok, ready = await readiness("running", app[STORE], app[LOG], None, app[CATALOG])
    runners = await _dispatch(request).runners(request[API_KEY].org)
    counts = await _svc(request).status_counts(request[API_KEY].org)
    return web.json_response({
        "status": "ok" if ok else "degraded",
        "server": {"status": "ok", "uptime_s": round(time.time() - _dispatch(request).up_since, 3)},
        "event_log": ready["checks"].get("log"),
        "store": ready["checks"].get("store"),
        "catalog": ready["checks"].get("catalog"),
        "runners": runners,
        "runs": counts,
        "lost_after_s": _dispatch(request).lost_after_s,
    })


# -- the runner's calls -----------------------------------------------------------------------
@requires("launch")
async def runner_heartbeat(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    return web.json_response(await _dispatch(request).heartbeat(org, key_id, await json_body(request, WildHeartbeat)))


@requires("launch")
async def runner_claim(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    return web.json_response(await _dispatch(request).claim(org, key_id, await json_body(request, WildClaim)))


@requires("launch")
async def runner_report(request: web.Request) -> web.Response:
    org, key_id = _who(request)
    rep = await json_body(request, WildReport)
    return web.json_response(await _dispatch(request).report(org, key_id, request.match_info["run_id"], rep))


@requires("launch")
async def runner_logs(request: web.Request) -> web.Response:
    """Raw bytes of ``stream`` at byte ``offset``; the answer is the stream's new end."""
    org, run_id = request[API_KEY].org, request.match_info["run_id"]
    await _dispatch(request).check_runner_run(org, request.query.get("runner_id", ""), run_id)
    stream = _stream_arg(request, None)
    if stream is None:
        raise BadRequest("stream (stdout or stderr) is missing")
    offset = query_int(request, "offset", 0, 0, 1 << 62)
    return web.json_response(await request.config_dict[LOGS].append(org, run_id, stream, offset, await body(request, MAX_CHUNK)))


ROUTES = [
    ("POST", "/sweeps/wild", create_sweep),
    ("GET", "/sweeps", list_sweeps),
    ("GET", "/sweeps/{sweep_id}", get_sweep),
    ("GET", "/sweeps/{sweep_id}/audit", sweep_audit),
    ("POST", "/runs", create_run),
    ("GET", "/runs", list_runs),
    ("GET", "/runs/{run_id}", get_run),
    ("POST", "/runs/{run_id}/start", start_run),
    ("POST", "/runs/{run_id}/stop", stop_run),
    ("GET", "/runs/{run_id}/logs", run_logs),
    ("GET", "/runs/{run_id}/audit", run_audit),
    ("GET", "/wild/v2/system-health", system_health),
    ("POST", "/wild/v2/runner/heartbeat", runner_heartbeat),
    ("POST", "/wild/v2/runner/claim", runner_claim),
    ("POST", "/wild/v2/runner/runs/{run_id}/report", runner_report),
    ("POST", "/wild/v2/runner/runs/{run_id}/logs", runner_logs),
]


async def _start(app: web.Application) -> None:
    cfg = app[CONFIG]
    wild = WildService(app[RUNS].catalog, app[RUNS], app[TENANCY], app[STORE])
    app[SERVICE] = wild
    app[DISPATCH] = Dispatch(wild, cfg.wild_lost_after_s)
    app[LOGS] = RunLogs(app[RUNS].catalog, cfg.wild_log_cap_bytes)


def add_routes(app: web.Application) -> None:
    """The Wild V2 protocol's routes (docs/api.md, Wild V2) and the runner's."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.on_startup.append(_start)
