"""Every route the product documents name is served, by the part that owns it (issue 17's bar).

The tables below are the documents' own route lists, as written there (``:id`` style
paths; the documents are in the team's ``shared/seeds/``, outside this repository):
``arwx-api.txt``'s HTTP API reference, the Wild V2 protocol's curl steps, chachaml's write
API table and its Web UI's JSON API table, ml-service's endpoints summary and ml-workbench's
headings. Each must resolve on the running server's router to a handler of the named part
(so ``/api/v1/experiments/runs`` is ml-service's runs list, never ml-workbench's experiment
``runs``). What ``docs/compat.md`` says is not served must really not be routed, so the
document and the server cannot drift apart silently. Behaviour is tested per document in
``test_compat_*.py``, ``test_workbench.py``, ``test_wild.py`` and the control-plane suites.
"""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import make_mocked_request

ARWX = "arwx-api.txt"
CORE = ("arwx.app", "arwx.blobs", "arwx.control", "arwx.gateway", "arwx.query", "arwx.sdkdist")  # never an adapter

# (document, method, path as the document writes it, the module that must serve it)
SEED_ROUTES = [
    *((ARWX, m, p, CORE) for m, p in [
        ("POST", "/v1/runs"), ("POST", "/v1/runs/:id/finish"), ("GET", "/v1/runs/:id/metrics"),
        ("GET", "/v1/runs/:id/integrity"), ("POST", "/v1/ingest"), ("POST", "/v1/ingest/stream"),
        ("POST", "/v1/projects"), ("GET", "/v1/projects"), ("GET", "/v1/projects/:name"),
        ("GET", "/v1/projects/:name/sessions"), ("GET", "/v1/projects/:name/progress"),
        ("GET", "/v1/projects/:name/runs"), ("GET", "/v1/projects/:name/charts"),
        ("POST", "/v1/sessions"), ("POST", "/v1/experiments"), ("GET", "/v1/experiments/:id"),
        ("GET", "/v1/experiments/:id/diff"), ("POST", "/v1/experiments/:id/decision"),
        ("GET", "/v1/experiments/:id/tree"), ("PUT", "/v1/experiments/:id/tree"),
        ("GET", "/v1/experiments/:a/diff/:b"), ("GET", "/v1/sessions/:id/progress"),
        ("GET", "/v1/sessions/:id/progress.svg"), ("GET", "/v1/sessions/:id/frontier"),
        ("POST", "/v1/blobs/missing"), ("POST", "/v1/blobs"), ("GET", "/v1/blobs/:sha"),
        ("POST", "/v1/files"), ("POST", "/v1/files/upload"),
        ("POST", "/v1/artifacts/log"), ("GET", "/v1/artifacts"), ("GET", "/v1/artifacts/:name"),
        ("PUT", "/v1/artifacts/:name/refs/:ref"), ("GET", "/v1/artifacts/:name/:ref"),
        ("GET", "/v1/agent/context"), ("GET", "/v1/bootstrap"),
        ("POST", "/v1/keys"), ("GET", "/v1/keys"), ("DELETE", "/v1/keys/:id"), ("GET", "/health"),
        ("GET", "/sdk/"), ("GET", "/sdk/arwandb-1.3.1-py3-none-any.whl"),
    ]),
    *(("wild-v2-sweeps-runs.txt", m, p, ("arwx.compat.wild",)) for m, p in [
        ("POST", "/sweeps/wild"), ("POST", "/runs"), ("GET", "/runs"), ("GET", "/sweeps/:id"),
        ("GET", "/wild/v2/system-health"),
    ]),
    *(("chachaml-write-api.txt", m, p, ("arwx.compat.chachaml",)) for m, p in [
        ("POST", "/api/w/runs"), ("POST", "/api/w/runs/:id/params"), ("POST", "/api/w/runs/:id/metrics"),
        ("POST", "/api/w/runs/:id/artifacts"), ("POST", "/api/w/runs/:id/end"), ("POST", "/api/w/models"),
        # "Read endpoints are at /api/...": its Web UI's JSON API table.
        ("GET", "/api/runs"), ("GET", "/api/runs/:id"), ("GET", "/api/compare"), ("GET", "/api/search"),
        ("GET", "/api/export"), ("GET", "/api/models"), ("GET", "/api/models/:name"),
        ("GET", "/api/diff/:name/:v1/:v2"), ("GET", "/api/experiments"), ("GET", "/api/artifacts/:id/download"),
        ("GET", "/api/tags/:id"), ("POST", "/api/tags/:id"), ("POST", "/api/note/:id"), ("GET", "/api/datasets/:id"),
    ]),
    *(("ml-service-experiments-api.txt", m, "/api/v1" + p, ("arwx.compat.mlservice", "arwx.compat.workbench"))
      for m, p in [
        ("POST", "/experiments"), ("GET", "/experiments"), ("GET", "/experiments/:id"), ("PATCH", "/experiments/:id"),
        ("DELETE", "/experiments/:id"), ("POST", "/experiments/:id/restore"),
    ]),
    *(("ml-service-experiments-api.txt", m, "/api/v1" + p, ("arwx.compat.mlservice",)) for m, p in [
        ("POST", "/experiments/runs"), ("GET", "/experiments/runs"), ("GET", "/experiments/runs/:id"),
        ("POST", "/experiments/runs/:id/log-metrics"), ("POST", "/experiments/runs/:id/log-params"),
        ("POST", "/experiments/runs/:id/log-batch"), ("POST", "/experiments/runs/:id/log-artifact"),
        ("POST", "/experiments/runs/:id/end"), ("POST", "/experiments/runs/compare"),
    ]),
    *(("ml-workbench-experiments-api.txt", m, p, ("arwx.compat.workbench",)) for m, p in [
        ("GET", "/api/v1/experiments"), ("POST", "/api/v1/experiments"), ("GET", "/api/v1/experiments/:id"),
        ("PUT", "/api/v1/experiments/:id"), ("DELETE", "/api/v1/experiments/:id"),
        ("POST", "/api/v1/experiments/:id/pin"), ("PUT", "/api/v1/experiments/:id/tags"),
        ("GET", "/api/v1/experiments/compare"), ("GET", "/api/v1/experiments/stats"),
        ("POST", "/api/v1/experiments/register"), ("POST", "/api/v1/experiments/:id/metrics"),
        ("POST", "/api/v1/experiments/:id/params"), ("POST", "/api/v1/experiments/:id/artifacts"),
    ]),
]

# What docs/compat.md lists as not served (chachaml's UI-only routes outside its JSON API table).
NOT_SERVED = [("POST", "/api/chat"), ("POST", "/api/model-note/:name"), ("GET", "/api/pipelines"),
              ("GET", "/api/pipelines/:id"), ("GET", "/compare"), ("GET", "/search"), ("GET", "/models")]


def _concrete(path: str) -> str:
    """The document's ``:param`` placeholders as values (``:a``/``:b`` as experiment ids, versions as numbers)."""
    values = {"v1": "1", "v2": "2", "id": "x1"}
    path = re.sub(r":(\w+)", lambda m: values.get(m.group(1), f"{m.group(1)}-value"), path)
    return path.replace("/api/artifacts/x1/", "/api/artifacts/run-1/model.pkl/")  # chachaml's artifact id


async def _resolve(app, method: str, path: str):  # noqa: ANN001, ANN202
    return await app.router.resolve(make_mocked_request(method, path, app=app))


@pytest.mark.parametrize(("doc", "method", "path", "owners"), SEED_ROUTES,
                         ids=[f"{d}:{m} {p}" for d, m, p, _ in SEED_ROUTES])
def test_every_documented_route_is_served_by_its_part(embedded, doc: str, method: str, path: str,
                                                      owners: tuple[str, ...]) -> None:
    match = embedded.call(_resolve(embedded.server.runner.app, method, _concrete(path)))
    assert match.http_exception is None, f"{doc}: {method} {path} is not routed ({match.http_exception})"
    module = match.handler.__module__
    assert module.startswith(owners), f"{doc}: {method} {path} is served by {module}, not {owners}"


@pytest.mark.parametrize(("method", "path"), NOT_SERVED)
def test_what_the_docs_call_not_served_is_not_routed(embedded, method: str, path: str) -> None:
    match = embedded.call(_resolve(embedded.server.runner.app, method, _concrete(path)))
    assert match.http_exception is not None, f"{method} {path} is routed: update docs/compat.md"
