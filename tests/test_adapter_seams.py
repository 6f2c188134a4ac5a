"""The seams a compatibility adapter plugs into (issue 11), exercised by a toy
MLflow-shaped adapter on the live embedded server's parts:

- it puts points through the same ``IngestService`` as ``/v1/ingest`` (so
  they reach the log, the store and the receipt);
- every error (its own, the shared middlewares' 401, unknown runs, bad keys)
  is rendered in its wire shape by one ``set_renderer`` call;
- an extra authenticator (``X-API-Key``) plugs into the list, and a route
  declared ``@public`` answers without a key.
"""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from arwx.app import build_app
from arwx.appkeys import API_KEY, INGEST, TENANCY
from arwx.backpressure import budgeted
from arwx.errors import ApiError
from arwx.gateway.auth import AUTHENTICATORS, bearer_key, public
from arwx.gateway.body import read_body
from arwx.gateway.errors import AppRunner, set_renderer
from arwx.tenancy import ApiKey
from arwx.wire import Point
from tests.helpers import Api


# -- the whole adapter -----------------------------------------------------------------------------
class LogMetric(msgspec.Struct):
    run_id: str
    key: str
    value: float
    step: int = 0


@budgeted("body")
async def log_metric(request: web.Request) -> web.Response:
    m = msgspec.json.decode(await read_body(request, 1 << 20), type=LogMetric)  # bounded in size and time
    p = Point(seq=m.step, step=m.step, key=m.key, value=m.value)
    await request.config_dict[INGEST].ingest(request[API_KEY].org, [p], m.run_id, "mlflow")
    return web.json_response({})


@public
async def ping(request: web.Request) -> web.Response:
    return web.json_response({"pong": True})


def mlflow_adapter() -> web.Application:
    sub = web.Application()
    sub.router.add_post("/runs/log-metric", log_metric)
    sub.router.add_get("/ping", ping)
    set_renderer(sub, lambda e: {"error_code": e.code, "message": e.message})
    return sub
# ---------------------------------------------------------------------------------------------------


async def x_api_key(request: web.Request) -> ApiKey | None:
    secret = request.headers.get("X-API-Key")
    return await request.config_dict[TENANCY].authenticate(secret) if secret else None


@pytest.fixture(scope="module")
def adapter_url(embedded):
    components = embedded.server.components  # the same parts the server's own app runs on

    async def start() -> tuple[AppRunner, str]:
        app = build_app(components, frozenset({"query"}))  # the gateway role mounts the real MLflow adapter there
        app[AUTHENTICATORS] = [bearer_key, x_api_key]
        app.add_subapp("/api/2.0/mlflow", mlflow_adapter())
        runner = AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

    runner, url = embedded.call(start())
    yield url
    embedded.call(runner.cleanup())


def test_adapter_points_take_the_one_ingest_path(adapter_url: str, api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "mlf"})
    mlflow = Api(adapter_url, None)
    for step in range(3):
        status, out = mlflow.post("/api/2.0/mlflow/runs/log-metric", {"run_id": "mlf", "key": "loss", "value": step / 2,
                                                                       "step": step}, headers={"X-API-Key": api.key})
        assert (status, out) == (200, {}), (status, out)
    r = api.wait_intact("mlf", 3)
    assert r["writers"][0]["writer_id"] == "mlflow" and r["points_stored"] == 3, r


@pytest.mark.parametrize(("body", "key", "status", "code"), [
    ({"run_id": "nope", "key": "loss", "value": 1}, True, 404, "RESOURCE_DOES_NOT_EXIST"),
    ({"run_id": "mlf2", "key": "a,b", "value": 1}, True, 400, "INVALID_PARAMETER_VALUE"),
    ({"run_id": "mlf2", "key": "loss", "value": 1}, False, 401, "UNAUTHENTICATED"),
])
def test_adapter_errors_in_its_own_shape(adapter_url: str, api: Api, body: dict, key: bool, status: int,
                                         code: str) -> None:
    api.ok("POST", "/v1/runs", {"id": "mlf2"})
    got, out = Api(adapter_url, None).post("/api/2.0/mlflow/runs/log-metric", body,
                                          headers={"X-API-Key": api.key} if key else {})
    assert got == status and out["error_code"] == code and out["message"] and "error" not in out, (got, out)


def test_public_routes_are_declared_where_they_are(adapter_url: str, api: Api) -> None:
    assert Api(adapter_url, None).get("/api/2.0/mlflow/ping") == (200, {"pong": True})
    # The arwx routes keep their shape, and accept the added authenticator too.
    status, out = Api(adapter_url, None).get("/v1/runs/nope")
    assert status == 401 and out == {"error": "missing, invalid or revoked API key"}
    status, out = Api(adapter_url, None).request("GET", "/v1/runs/nope", headers={"X-API-Key": api.key})
    assert status == 404 and out == {"error": "unknown run 'nope'"}


def test_every_error_class_knows_its_status() -> None:
    from arwx import errors

    classes = [errors.BadRequest, errors.Unauthorized, errors.NotFound, errors.RequestTimeout, errors.Conflict,
               errors.PayloadTooLarge, errors.TooManyRequests, errors.Unavailable]
    assert [c.status for c in classes] == [400, 401, 404, 408, 409, 413, 429, 503]
    assert errors.TooManyRequests("x").headers == {"Retry-After": "1"}
    assert errors.Unavailable("x").headers == {"Retry-After": "1"}
    assert "Bearer" in errors.Unauthorized("x").headers["WWW-Authenticate"]
    from arwx.log.base import LogUnavailable
    from arwx.store.base import StoreUnavailable

    assert issubclass(StoreUnavailable, errors.Unavailable) and issubclass(LogUnavailable, errors.Unavailable)
    assert StoreUnavailable("chdb: disk gone").message == "the store is unavailable; retry later"
    assert all(issubclass(c, ApiError) for c in classes)
