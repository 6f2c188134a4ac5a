"""Fail-closed auth and tenancy: 401 without a valid key, 404 across organizations."""

from __future__ import annotations

import pytest

from arwx.sdkdist.wheel import served_wheel
from tests.helpers import Api, points

# What answers without a key: liveness, the SDK (a redirect, the find-links page, the wheel), and
# the dashboard's static files (they hold no data: docs/dashboard.md), and signing in (400 here:
# an empty body names no account).
PUBLIC = {
    "/health": 200, "/sdk": 301, "/sdk/": 200, f"/sdk/{served_wheel().filename}": 200,
    "/": 200, "/setup": 200, "/static/js/app.js": 200, "/static/v-0123456789abcdef/js/app.js": 200,
    "/v1/auth/login": 400, "/v1/auth/setup": 400,
}


def _routes(embedded) -> list[tuple[str, str]]:
    app = embedded.server.runner.app
    out = []
    for r in app.router.routes():
        path = r.resource.canonical
        if r.method != "HEAD":
            path = path.replace("{run_id}", "somerun").replace("{key_id}", "key_x").replace("{user_id}", "usr_x").replace("{sha}", "0" * 64)
            path = path.replace("{path}", "1/somerun/artifacts/f.txt")
            path = path.replace("{file}", "js/app.js").replace("{version}", "0123456789abcdef")
            out.append((r.method, path.replace("{filename}", served_wheel().filename)))
    return out


def test_every_route_but_health_and_the_sdk_needs_a_key(embedded, api: Api) -> None:
    routes = _routes(embedded)
    assert len(routes) >= 10
    assert {path for _, path in routes} >= set(PUBLIC)
    revoked = api.ok("POST", "/v1/keys", {"name": "to revoke"})
    api.ok("DELETE", f"/v1/keys/{revoked['id']}")
    for key in (None, "", "arwx_live_wrong", "Basic abc", revoked["key"]):
        client = api.with_key(key)
        for method, path in routes:
            status, body = client.request(method, path, body={})
            if path in PUBLIC:
                assert status == PUBLIC[path], (key, method, path, status)
            else:
                assert status == 401, (key, method, path, status, body)
                if "/mlflow" in path:  # the MLflow adapter answers in MLflow's error shape
                    assert body == {"error_code": "UNAUTHENTICATED", "message": "missing, invalid or revoked API key"}
                else:
                    assert body == {"error": "missing, invalid or revoked API key"}


def test_revoked_key_stops_at_once_and_keys_are_listed_without_secrets(api: Api) -> None:
    made = api.ok("POST", "/v1/keys", {"name": "ci", "scopes": ["read", "admin"]})
    assert made["key"].startswith("arwx_live_") and made["prefix"] == made["key"][:14]
    other = api.with_key(made["key"])
    assert other.get("/v1/keys")[0] == 200
    listed = api.ok("GET", "/v1/keys")["keys"]
    assert made["id"] in [k["id"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert api.ok("DELETE", f"/v1/keys/{made['id']}")["revoked"] is True
    assert other.get("/v1/keys")[0] == 401
    assert api.request("DELETE", "/v1/keys/key_nope")[0] == 404


def test_keys_are_stored_hashed(embedded, api: Api) -> None:
    made = api.ok("POST", "/v1/keys", {"name": "hashed"})
    rows = embedded.call(_catalog_rows(embedded, "key_hash", "prefix"))
    assert all(made["key"] not in (h, p) for h, p in rows)
    assert any(len(h) == 64 and p == made["prefix"] for h, p in rows)


async def _catalog_rows(embedded, *columns: str) -> list[tuple]:
    """Every API key row as stored in the catalog."""
    from sqlalchemy import select

    from arwx.catalog.tables import api_keys

    async with embedded.server.catalog.connect() as conn:
        return [tuple(r) for r in await conn.execute(select(*(api_keys.c[c] for c in columns)))]


@pytest.fixture
def two_orgs(embedded) -> tuple[Api, Api]:
    return Api(embedded.url, embedded.new_org_key("a")), Api(embedded.url, embedded.new_org_key("b"))


def test_an_org_never_sees_or_writes_another_orgs_run(two_orgs: tuple[Api, Api]) -> None:
    a, b = two_orgs
    a.ok("POST", "/v1/runs", {"id": "secret-run"})
    a.ok("POST", "/v1/ingest", {"points": points("secret-run", "w", range(10))})
    a.wait_intact("secret-run", 10)
    for path in ("/v1/runs/secret-run", "/v1/runs/secret-run/metrics", "/v1/runs/secret-run/integrity",
                 "/v1/runs/secret-run/metrics?format=columns", "/v1/runs/secret-run/metrics?format=arrow",
                 "/v1/runs/secret-run/metrics/stream?format=arrow"):
        status, body = b.get(path)
        assert status == 404 and "unknown run" in body["error"], path
    assert b.post("/v1/runs/secret-run/finish", {})[0] == 404
    assert b.post("/v1/ingest", {"points": points("secret-run", "w", range(10, 20))})[0] == 404
    assert b.post("/v1/ingest/stream", raw=b'{"run_id":"secret-run","writer_id":"w","seq":99,"step":0,"key":"k","value":1}\n')[0] == 400
    # b may use the same run id for its own run: a different run.
    assert b.post("/v1/runs", {"id": "secret-run"})[0] == 201
    assert b.receipt("secret-run")["points_stored"] == 0
    assert a.receipt("secret-run")["points_stored"] == 10
    # Keys of one org cannot be listed or revoked by another.
    a_key = a.ok("POST", "/v1/keys", {"name": "a2", "scopes": ["admin"]})
    assert a_key["id"] not in [k["id"] for k in b.ok("GET", "/v1/keys")["keys"]]
    assert b.request("DELETE", f"/v1/keys/{a_key['id']}")[0] == 404
    assert a.with_key(a_key["key"]).get("/v1/keys")[0] == 200


def test_sql_metacharacters_are_data(api: Api) -> None:
    nasty = "x'); DROP TABLE points; --\\"
    api.ok("POST", "/v1/runs", {"id": "meta", "name": nasty, "config": {nasty: nasty}})
    api.ok("POST", "/v1/ingest", {"points": points("meta", "w", range(3), key=nasty)})
    api.wait_intact("meta", 3)
    run = api.ok("GET", "/v1/runs/meta")
    assert run["name"] == nasty and run["config"] == {nasty: nasty}
    page = api.ok("GET", "/v1/runs/meta/metrics", params={"keys": nasty})
    assert [r[nasty] for r in page["rows"]] == [0.0, 0.5, 1.0]


def test_adapters_answer_another_orgs_things_as_missing(two_orgs: tuple[Api, Api]) -> None:
    """chachaml's run, its files and models are 404 to another org, in chachaml's own words."""
    a, b = two_orgs
    run_id = a.ok("POST", "/api/w/runs", {"experiment": "private"})["id"]
    a.ok("POST", f"/api/w/runs/{run_id}/artifacts", raw=b"weights", params={"name": "m.pkl"},
         headers={"Content-Type": "application/octet-stream"})
    a.ok("POST", "/api/w/models", {"name": "private-model", "run_id": run_id, "artifact": "m.pkl"})
    for method, path, body in (("POST", f"/api/w/runs/{run_id}/params", {"x": 1}),
                               ("POST", f"/api/w/runs/{run_id}/metrics", {"x": 1}),
                               ("POST", f"/api/w/runs/{run_id}/end", {}),
                               ("GET", f"/api/runs/{run_id}", None)):
        assert b.request(method, path, body=body) == (404, {"error": "no such run"}), path
    assert b.request("POST", f"/api/w/runs/{run_id}/artifacts", raw=b"x", params={"name": "m.pkl"})[0] == 404
    assert b.post("/api/w/models", {"name": "private-model", "run_id": run_id, "artifact": "m.pkl"})[0] == 404
    assert b.get("/api/models/private-model")[0] == 404
    assert b.get("/api/models") == (200, []) and b.get("/api/runs") == (200, [])
    assert "private" not in b.ok("GET", "/api/experiments")
    assert b.get("/api/compare", ids=f"{run_id},{run_id}") == (404, {"error": "no such run"})
    assert b.get(f"/api/artifacts/{run_id}/m.pkl/download") == (404, {"error": "Artifact not found"})
    assert b.get("/api/search") == (200, []) and run_id not in b.ok("GET", "/api/export")
    assert a.request("GET", f"/api/artifacts/{run_id}/m.pkl/download") == (200, "weights")
    assert a.ok("GET", f"/api/runs/{run_id}")["experiment"] == "private"
