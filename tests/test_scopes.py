"""Key scopes (read, write, admin, launch) checked on every route; keys by X-API-Key and X-Auth-Token.

Every route of the app is tried with keys of one scope each: a route answers
403 (never runs) unless the key holds the scope the route needs, and the
seqs-and-scopes migration keeps old keys and old MLflow seq counters working.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from arwx.catalog import Catalog, catalog_url
from arwx.catalog.migrate import alembic_config
from arwx.catalog.tables import api_keys, writer_requests, writer_seqs
from arwx.ingest.reserved_seqs import ReservedSeqs, request_digest
from tests.helpers import Api, points
from tests.test_auth import PUBLIC, _routes

# POSTs that only read: they need ``read``, not ``write``.
READ_POSTS = {f"{prefix}/{path}" for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow") for path in (
    "runs/search", "experiments/search", "logged-models/search", "registered-models/get-latest-versions")}
READ_POSTS |= {"/v1/auth/org", "/v1/auth/logout"}  # a session's own: a viewer may too
# Remote code execution on a runner's machine (docs/runner.md): creating and starting Wild runs, and the runner's calls.
LAUNCH = {("POST", "/runs"), ("POST", "/runs/somerun/start"), ("POST", "/wild/v2/runner/heartbeat"),
          ("POST", "/wild/v2/runner/claim"), ("POST", "/wild/v2/runner/runs/somerun/report"),
          ("POST", "/wild/v2/runner/runs/somerun/logs")}
READ_POSTS |= {"/api/v1/experiments/runs/compare"}  # ml-service's compare


def _needs(method: str, path: str) -> str:
    # Admin: managing keys, adding or removing members (listing them is a read), purging runs.
    if path.startswith("/v1/keys") or (path.startswith("/v1/users") and method != "GET"):
        return "admin"
    if (method, path) in LAUNCH:
        return "launch"
    if path.startswith("/v1/runs/") and path.endswith("/purge"):  # deleting a run's data for good
        return "admin"
    return "read" if method in ("GET", "HEAD") or path in READ_POSTS else "write"


@pytest.fixture
def keyed(embedded) -> dict[str, Api]:
    """One org; a key per single scope, and a key with all four."""
    admin = Api(embedded.url, embedded.new_org_key("scopes", ("read", "write", "admin", "launch")))
    out = {"all": admin}
    for scope in ("read", "write", "admin", "launch"):
        out[scope] = admin.with_key(admin.ok("POST", "/v1/keys", {"name": scope, "scopes": [scope]})["key"])
    return out


def test_every_route_needs_its_scope(embedded, keyed: dict[str, Api]) -> None:
    # Every placeholder filled, so each request reaches its route.
    routes = [(m, re.sub(r"\{[^}]+\}", "x1", p)) for m, p in _routes(embedded) if p not in PUBLIC]
    assert len(routes) >= 40
    for method, path in routes:
        need = _needs(method, path)
        for scope in ("read", "write", "admin", "launch"):
            status, body = keyed[scope].request(method, path, body={})
            if scope == need:
                assert status != 403 or "lacks the" not in str(body), (scope, method, path, status, body)
                continue
            assert status == 403, (scope, method, path, status, body)
            message = body["message"] if "/mlflow" in path else body["error"]
            assert f"lacks the {need!r} scope" in message, (method, path, body)
            if "/mlflow" in path:
                assert body["error_code"] == "PERMISSION_DENIED"
            else:
                assert body["required_scope"] == need


def test_a_write_only_key_ingests_but_cannot_read(keyed: dict[str, Api]) -> None:
    writer, reader = keyed["write"], keyed["read"]
    writer.ok("POST", "/v1/runs", {"id": "wo", "project": "p"})
    assert writer.ok("POST", "/v1/ingest", {"points": points("wo", "rank0", range(5))})["points"] == 5
    for path in ("/v1/runs/wo", "/v1/runs/wo/metrics", "/v1/runs/wo/integrity", "/v1/projects"):
        status, body = writer.get(path)
        assert status == 403 and body["required_scope"] == "read", (path, body)
    assert reader.wait_intact("wo", 5)["points_stored"] == 5
    # A read-only key reads, and cannot write.
    status, body = reader.post("/v1/ingest", {"points": points("wo", "rank0", range(5, 10))})
    assert status == 403 and body == {
        "error": "this API key lacks the 'write' scope that POST /v1/ingest needs (it has: read)",
        "required_scope": "write",
    }
    assert reader.post("/v1/runs", {"id": "ro"})[0] == 403
    assert reader.receipt("wo")["points_stored"] == 5


def test_keys_need_admin_and_show_their_scopes(keyed: dict[str, Api]) -> None:
    admin = keyed["all"].with_key(
        keyed["all"].ok("POST", "/v1/keys", {"name": "operator", "scopes": ["read", "write", "admin"]})["key"])
    made = admin.ok("POST", "/v1/keys", {"name": "default"})
    assert made["scopes"] == ["read", "write"]  # the default
    listed = {k["name"]: k["scopes"] for k in keyed["all"].ok("GET", "/v1/keys")["keys"]}
    assert listed["default"] == ["read", "write"] and listed["launch"] == ["launch"]
    assert listed["scopes"] == ["read", "write", "admin", "launch"]
    user = admin.with_key(made["key"])
    for method, path in (("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", f"/v1/keys/{made['id']}")):
        status, body = user.request(method, path, body={})
        assert status == 403 and body["required_scope"] == "admin", (method, body)
    # Bad scope lists are named; a key never grants what it does not hold.
    status, body = admin.post("/v1/keys", {"scopes": ["read", "root"]})
    assert status == 400 and "unknown scope(s) 'root'" in body["error"], body
    assert admin.post("/v1/keys", {"scopes": []})[0] == 400
    status, body = admin.post("/v1/keys", {"scopes": ["read", "launch"]})
    assert status == 403 and "cannot grant scope(s) it does not hold: launch" in body["error"], body
    assert keyed["all"].post("/v1/keys", {"scopes": ["launch"]})[0] == 201


def test_mlflow_routes_check_scopes_in_mlflows_shape(keyed: dict[str, Api]) -> None:
    base = "/api/2.0/mlflow"
    writer, reader = keyed["write"], keyed["read"]
    exp = writer.ok("POST", f"{base}/experiments/create", {"name": "scoped"})["experiment_id"]
    run = writer.ok("POST", f"{base}/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    writer.ok("POST", f"{base}/runs/log-metric", {"run_id": run, "key": "loss", "value": 1.0, "timestamp": 1, "step": 0})
    status, body = writer.post(f"{base}/runs/search", {"experiment_ids": [exp]})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED", body
    found = reader.ok("POST", f"{base}/runs/search", {"experiment_ids": [exp]})
    assert [r["info"]["run_id"] for r in found["runs"]] == [run]
    status, body = reader.post(f"{base}/runs/log-metric", {"run_id": run, "key": "loss", "value": 2.0,
                                                           "timestamp": 2, "step": 1})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED", body


@pytest.mark.parametrize("header", ["X-API-Key", "X-Auth-Token", "Authorization"])
def test_each_key_header_authenticates(embedded, keyed: dict[str, Api], header: str) -> None:
    secret = keyed["all"].key
    api = Api(embedded.url, secret, key_header=header)
    api.ok("POST", "/v1/runs", {"id": f"h-{header}"})
    assert api.ok("GET", f"/v1/runs/h-{header}")["id"] == f"h-{header}"
    assert api.with_key("arwx_live_nope").get(f"/v1/runs/h-{header}")[0] == 401
    assert api.with_key("").get(f"/v1/runs/h-{header}")[0] == 401
    revoked = keyed["all"].ok("POST", "/v1/keys", {"name": "gone"})
    keyed["all"].ok("DELETE", f"/v1/keys/{revoked['id']}")
    status, body = api.with_key(revoked["key"]).get(f"/v1/runs/h-{header}")
    assert status == 401 and body == {"error": "missing, invalid or revoked API key"}
    # Each header's key is checked for scopes like any other.
    assert api.with_key(keyed["write"].key).get(f"/v1/runs/h-{header}")[0] == 403


def test_no_key_under_any_header_is_401_on_every_route(embedded, api: Api) -> None:
    for header in ("X-API-Key", "X-Auth-Token"):
        for key in (None, "arwx_live_wrong", "Bearer " + (api.key or "")):
            client = api.with_key(key, header)
            for method, path in _routes(embedded):
                if path not in PUBLIC:
                    assert client.request(method, path, body={})[0] == 401, (header, key, method, path)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_migration_0006_keeps_old_keys_and_mlflow_seqs(kind: str, tmp_path: Path, request) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'c.sqlite'}" if kind == "sqlite" else request.getfixturevalue("postgres").new_database()
    engine = create_async_engine(catalog_url(url, tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0005"))
            await conn.execute(text("INSERT INTO orgs (org, name, created_at) VALUES ('org_1', 'o', 0)"))
            await conn.execute(text(
                "INSERT INTO api_keys (key_id, org, name, key_hash, prefix, created_at) "
                "VALUES ('key_1', 'org_1', 'old', :h, 'arwx_live_abcd', 0)"), {"h": "0" * 64})
            await conn.execute(text(
                "INSERT INTO mlflow_runs (org, run_id, experiment_id, run_name, user_id, status, start_time, "
                "lifecycle_stage, params, tags, next_seq) VALUES ('org_1', 'r1', 0, 'n', 'u', 'RUNNING', 0, "
                "'active', '{}', '{}', 7)"))
            await conn.execute(text(
                "INSERT INTO mlflow_requests (org, run_id, digest, first_seq, n) VALUES ('org_1', 'r1', 'k:abc', 4, 3)"))
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0006"))
            assert (await conn.execute(select(api_keys.c.scopes))).scalar_one() == "read write admin"
            assert (await conn.execute(select(writer_seqs))).all() == [("org_1", "r1", "mlflow", 7)]
            assert (await conn.execute(select(writer_requests))).all() == [("org_1", "r1", "mlflow", "k:abc", 4, 3)]
    finally:
        await engine.dispose()
    # Upgraded to head: the retried request gets its old seqs, a new one continues at 7.
    catalog = Catalog.open(url, tmp_path)
    await catalog.start()
    try:
        seqs = ReservedSeqs(catalog)
        assert await seqs.reserve("org_1", "r1", "mlflow", request_digest("abc", b""), 3) == (4, False)
        assert await seqs.reserve("org_1", "r1", "mlflow", "k:new", 2) == (7, True)
        assert await seqs.totals("org_1", "r1") == {"mlflow": 9}
    finally:
        await catalog.stop()
