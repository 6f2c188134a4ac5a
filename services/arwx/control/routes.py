"""Control-plane routes: thin translations between HTTP and the ``Control`` services.

Writes (POST, PUT) belong to the gateway role, reads to the query role, like
the blob routes: in the distributed layout every write goes to a gateway.
"""

from __future__ import annotations

import re

from aiohttp import web

from arwx.appkeys import API_KEY
from arwx.control.errors import Invalid, NotFound
from arwx.control.http import CONTROL, idempotent, json_body, json_ok
from arwx.control.projects import MAX_PAGE
from arwx.control.research import MAX_LIST
from arwx.control.summary import MAX_CONTEXT_LIMIT
from arwx.control.wire import (
    ID_PATTERN,
    DecisionCreate,
    ExperimentCreate,
    ProjectUpsert,
    SessionCreate,
    TreePut,
)
from arwx.params import query_int

# A diff over the cap is replaced by a marker, so the body may be larger than
# the cap; a tree of 100,000 files is about 20 MB of JSON.
MAX_EXPERIMENT_BODY = 16 << 20
MAX_TREE_BODY = 32 << 20
TEXT_DIFF_CAP = 256 * 1024
_ID_RE = re.compile(ID_PATTERN)
TOTAL_DIFF_CAP = 2 << 20


def _org(request: web.Request) -> str:
    return request[API_KEY].org


def _id(request: web.Request, name: str, what: str) -> str:
    """A path id; one that cannot be an id is unknown (404), like any other."""
    value = request.match_info[name]
    if not _ID_RE.match(value):
        raise NotFound(f"unknown {what} {value[:64]!r}")
    return value


def _project(request: web.Request) -> str:
    value = request.match_info["name"]
    if len(value) > 128 or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise NotFound(f"unknown project {value[:64]!r}")
    return value


def _text_query(request: web.Request, name: str, max_len: int = 256) -> str:
    value = request.query.get(name, "")
    if len(value) > max_len or "\x00" in value:
        raise Invalid(f"{name} must be at most {max_len} characters, without NUL")
    return value


# --- projects ------------------------------------------------------------


@idempotent()
async def upsert_project(request: web.Request) -> web.Response:
    req = await json_body(request, ProjectUpsert)
    project, created = await request.app[CONTROL].projects.upsert(_org(request), req)
    return json_ok(project, 201 if created else 200)


async def list_projects(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, MAX_PAGE)
    page = await request.app[CONTROL].projects.list(
        _org(request), _text_query(request, "prefix"), limit, _text_query(request, "cursor") or None
    )
    return json_ok(page)


async def get_project(request: web.Request) -> web.Response:
    return json_ok(await request.app[CONTROL].projects.get(_org(request), _project(request)))


async def project_sessions(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, MAX_LIST)
    return json_ok(await request.app[CONTROL].research.project_sessions(_org(request), _project(request), limit))


async def project_progress(request: web.Request) -> web.StreamResponse:
    goal, prog = await request.app[CONTROL].research.project_progress(_org(request), _project(request))
    return _progress(request, f"{prog['project']}: progress", goal, prog)


# --- sessions --------------------------------------------------------------


@idempotent()
async def create_session(request: web.Request) -> web.Response:
    req = await json_body(request, SessionCreate)
    session, created = await request.app[CONTROL].research.create_session(_org(request), req)
    return json_ok(session, 201 if created else 200)


def _progress(request: web.Request, title: str, goal, prog: dict) -> web.StreamResponse:  # noqa: ANN001 - a Goal
    from arwx.control.frontier import svg

    fmt = request.query.get("format") or ("svg" if request.path.endswith(".svg") else "json")
    if fmt not in ("json", "svg"):
        raise Invalid("format must be json or svg")
    if fmt == "svg":
        return web.Response(
            text=svg(title, goal, prog), content_type="image/svg+xml",
            headers={"Cache-Control": "no-cache"},  # a README badge shows the current state
        )
    return json_ok(prog)


async def session_progress(request: web.Request) -> web.StreamResponse:
    goal, prog = await request.app[CONTROL].research.session_progress(_org(request), _id(request, "session_id", "session"))
    title = f"{prog['project']} / {prog['tag'] or prog['session_id']}"
    return _progress(request, title, goal, prog)


async def session_frontier(request: web.Request) -> web.Response:
    _, prog = await request.app[CONTROL].research.session_progress(_org(request), _id(request, "session_id", "session"))
    keep = ("project", "session_id", "objective_metric", "lower_is_better", "target", "best", "target_met", "frontier")
    return json_ok({k: prog[k] for k in keep})


# --- experiments -----------------------------------------------------------


@idempotent(MAX_EXPERIMENT_BODY)
async def create_experiment(request: web.Request) -> web.Response:
    req = await json_body(request, ExperimentCreate, MAX_EXPERIMENT_BODY)
    experiment, created = await request.app[CONTROL].research.create_experiment(_org(request), req)
    return json_ok(experiment, 201 if created else 200)


async def get_experiment(request: web.Request) -> web.Response:
    return json_ok(await request.app[CONTROL].research.get_experiment(_org(request), _id(request, "experiment_id", "experiment")))


async def get_diff(request: web.Request) -> web.Response:
    text, truncated = await request.app[CONTROL].research.diff_text(_org(request), _id(request, "experiment_id", "experiment"))
    return web.Response(
        body=text, content_type="text/plain", charset="utf-8",
        headers={"X-Diff-Truncated": "true" if truncated else "false"},
    )


@idempotent()
async def decide(request: web.Request) -> web.Response:
    req = await json_body(request, DecisionCreate)
    return json_ok(await request.app[CONTROL].research.decide(_org(request), _id(request, "experiment_id", "experiment"), req), 201)


async def put_tree(request: web.Request) -> web.Response:
    req = await json_body(request, TreePut, MAX_TREE_BODY)
    return json_ok(await request.app[CONTROL].research.put_tree(_org(request), _id(request, "experiment_id", "experiment"), req))


async def get_tree(request: web.Request) -> web.Response:
    return json_ok(await request.app[CONTROL].research.get_tree(_org(request), _id(request, "experiment_id", "experiment")))


async def tree_diff(request: web.Request) -> web.Response:
    research = request.app[CONTROL].research
    a, b = _id(request, "experiment_id", "experiment"), _id(request, "other_id", "experiment")
    return json_ok(await research.tree_diff(_org(request), a, b, TEXT_DIFF_CAP, TOTAL_DIFF_CAP))


# --- agent and dashboard ---------------------------------------------------


async def agent_context(request: web.Request) -> web.Response:
    project = _text_query(request, "project", 128)
    if not project:
        raise Invalid("project is required (?project=NAME)")
    limit = query_int(request, "limit", 5, 1, MAX_CONTEXT_LIMIT)
    return json_ok(await request.app[CONTROL].summaries.agent_context(_org(request), project, limit))


async def bootstrap(request: web.Request) -> web.Response:
    return json_ok(await request.app[CONTROL].summaries.bootstrap(_org(request)))


_NAME = "{name:[^/]+}"


def add_write_routes(app: web.Application) -> None:
    """The gateway's part."""
    app.router.add_post("/v1/projects", upsert_project)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_post("/v1/experiments", create_experiment)
    app.router.add_post("/v1/experiments/{experiment_id}/decision", decide)
    app.router.add_put("/v1/experiments/{experiment_id}/tree", put_tree)


def add_read_routes(app: web.Application) -> None:
    """The query service's part."""
    app.router.add_get("/v1/projects", list_projects)
    app.router.add_get(f"/v1/projects/{_NAME}", get_project)
    app.router.add_get(f"/v1/projects/{_NAME}/sessions", project_sessions)
    app.router.add_get(f"/v1/projects/{_NAME}/progress", project_progress)
    app.router.add_get("/v1/sessions/{session_id}/progress", session_progress)
    app.router.add_get("/v1/sessions/{session_id}/progress.svg", session_progress)
    app.router.add_get("/v1/sessions/{session_id}/frontier", session_frontier)
    app.router.add_get("/v1/experiments/{experiment_id}", get_experiment)
    app.router.add_get("/v1/experiments/{experiment_id}/diff", get_diff)
    app.router.add_get("/v1/experiments/{experiment_id}/tree", get_tree)
    app.router.add_get("/v1/experiments/{experiment_id}/diff/{other_id}", tree_diff)
    app.router.add_get("/v1/agent/context", agent_context)
    app.router.add_get("/v1/bootstrap", bootstrap)
