"""Security beyond tests/test_auth.py: every route x every method, odd paths and headers,
cross-org access to every resource, revocation across processes within the refresh
bound, secrets never logged, SQL metacharacters as data in every string field, and
the body/line limits."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from arwx.sdkdist.wheel import served_wheel
from tests.helpers import Api, ServerThread, ndjson, points, wait_for

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
WHEEL = served_wheel().filename
# Public with GET and HEAD, and what they answer: liveness, the SDK and the dashboard's static files.
# A versioned static path serves the file whatever the digest (only the current one is cached for good).
STATIC_VERSION = "0" * 16
PUBLIC = {"/health": 200, "/sdk": 301, "/sdk/": 200, f"/sdk/{WHEEL}": 200, "/": 200, "/setup": 200, "/static/js/app.js": 200,
          f"/static/v-{STATIC_VERSION}/js/app.js": 200}
PUBLIC_TEMPLATES = {
    "/health", "/sdk", "/sdk/", "/sdk/{filename}", "/", "/setup", "/static/{file}", "/static/v-{version}/{file}",
    "/v1/auth/login", "/v1/auth/setup",
}
# Public with POST only: signing in (an empty body names no account: 400).
PUBLIC_POST = {"/v1/auth/login": 400, "/v1/auth/setup": 400}
# Any other name under /sdk/ answers this, with or without a key, and serves nothing.
SDK_404 = {"error": f"no such file under /sdk/; the SDK is /sdk/{WHEEL}"}


def _route_templates(embedded) -> list[str]:
    return sorted({r.resource.canonical for r in embedded.server.runner.app.router.routes()})


def _fill(template: str, **values: str) -> str:
    for name, v in values.items():
        template = template.replace("{" + name + "}", v)
    assert "{" not in template, f"a route parameter this test does not know: {template}"
    return template


def _is_health(status: int, body: object) -> bool:
    return status == 200 and body == {"status": "ok"}


def test_every_route_every_method_odd_paths_need_a_key(embedded, api: Api) -> None:
    """Not only routed methods: PUT/PATCH/OPTIONS/HEAD on every path, unknown paths,
    traversal and encoded paths all answer 401 without a key (only /health and reading the
    SDK are public; an unknown name under /sdk/ is a 404 that serves nothing)."""
    anon = api.with_key(None)
    values = {"run_id": "r", "key_id": "key_x", "name": "p", "sha": "0" * 64, "filename": WHEEL, "ref": "winner",
              "path": "1/r/artifacts/f.txt", "file": "js/app.js", "session_id": "ses_x", "experiment_id": "exp_x",
              "other_id": "exp_y", "user_id": "usr_x", "writer_id": "w", "id": "exp_x", "model_id": "m-x",
              "tag_key": "t", "sweep_id": "sw-x", "v1": "1", "v2": "2", "version": STATIC_VERSION}
    paths = [_fill(t, **values) for t in _route_templates(embedded)]
    paths += [
        "/v1", "/v1/", "/v2/runs", "/nope", "/v1/runs/r/../../keys", "/v1/runs/%2e%2e/%2e%2e/v1/keys",
        "/v1/runs/..%2f..%2fv1%2fkeys", "/health/../v1/keys", "/v1/keys/../../health/../v1/keys", "//v1/keys",
        "/v1/keys?x=/health", "/HEALTH", "/health%00", "/v1/runs/r%00/metrics", "/v1/runs/" + "a" * 5000,
        "/sdk/../v1/keys", "/sdk/%2e%2e/v1/keys", "/sdk/..%2fv1%2fkeys", "/v1/keys/../../sdk/", "/SDK/", "/sdk/x/../../v1/keys",
        "/v1/sdk/", "/sdk%2f", f"/sdk/{WHEEL}?/../v1/keys", "/health/../sdk/",
        "/static/../v1/keys", "/static/%2e%2e/v1/keys", "/static/..%2fv1%2fkeys", "/static/js/../../v1/keys",
        "/static/nope.js", "/static/../web/routes.py", "/static/..%2froutes.py", "/STATIC/js/app.js",
    ]
    checked = 0
    for path in paths:
        for method in METHODS:
            status, body = anon.request(method, path, body={} if method in ("POST", "PUT", "PATCH") else None)
            checked += 1
            assert status < 500, (method, path, status, body)
            bare = path.partition("?")[0]  # a query string changes nothing
            if bare in PUBLIC and method in ("GET", "HEAD"):
                assert status == PUBLIC[bare], (method, path, status)
            elif bare in PUBLIC_POST and method == "POST":
                assert status == PUBLIC_POST[bare], (method, path, status, body)
            elif _is_health(status, body):
                continue  # the path normalized to /health
            elif path.startswith("/sdk/") and method in ("GET", "HEAD") and status == 404:
                assert method == "HEAD" or body == SDK_404, (method, path, body)
            elif path.startswith("/static/") and method in ("GET", "HEAD") and status == 404:
                # Only the dashboard's own files are served; any other name serves nothing.
                assert method == "HEAD" or body["error"].startswith("no such dashboard file"), (method, path, body)
            elif path in PUBLIC:
                assert status in (401, 405), (method, path, status, body)
            else:
                assert status == 401, (method, path, status, body)
                if method != "HEAD" and "/mlflow" in path:  # the MLflow adapter answers in MLflow's shape
                    assert body == {"error_code": "UNAUTHENTICATED", "message": "missing, invalid or revoked API key"}
                elif method != "HEAD":
                    assert body == {"error": "missing, invalid or revoked API key"}, (method, path, body)
    print(f"\n{checked} unauthenticated method x path requests, all refused")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer " + "arwx_live_" + "A" * 5000,  # long, well-formed prefix
        "Bearer " + "x" * 7000,
        "Bearer arwx_live_" + "é" * 100,
        "bearer   arwx_live_short",
        "Bearer\tarwx_live_x",
        "Bearer arwx_live_x\x00",
        "Bearer",
        "Bearer ",
        "Token arwx_live_x",
    ],
)
def test_odd_authorization_headers_are_refused(embedded, header: str) -> None:
    port = int(embedded.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /v1/keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
                  + header.encode("utf-8") + b"\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 401), reply[:300]


def test_oversized_auth_header_is_refused_not_crashing(embedded, api: Api) -> None:
    for size in (9000, 100_000):
        status, _ = api.with_key(None).request("GET", "/v1/keys", headers={"Authorization": "Bearer " + "a" * size})
        assert status in (400, 401, 431), status
    assert api.get("/v1/keys")[0] == 200  # and the server still serves


@pytest.fixture
def two_orgs(embedded) -> tuple[Api, Api]:
    return Api(embedded.url, embedded.new_org_key("a")), Api(embedded.url, embedded.new_org_key("b"))


def test_cross_org_every_resource_is_404_and_lists_leak_nothing(embedded, two_orgs) -> None:
    a, _ = two_orgs
    # b holds every scope, launch too: what answers must be the lookup (404), never a scope (403).
    b = Api(embedded.url, embedded.new_org_key("b", ("read", "write", "admin", "launch")))
    run, project = "xorg-secret-run", "xorg-secret-project"
    a.ok("POST", "/v1/runs", {"id": run, "project": project, "name": "xorg-secret-name"})
    a.ok("POST", "/v1/ingest", {"points": points(run, "w", range(20))})
    a.wait_intact(run, 20)
    a_key = a.ok("POST", "/v1/keys", {"name": "xorg-secret-keyname", "scopes": ["read", "write", "admin"]})
    blob = a.ok("POST", "/v1/blobs", raw=b"xorg-secret-blob")["sha"]
    # An artifact named like the project (so {name} fills both), with a ref.
    a.ok("POST", "/v1/artifacts/log", {"project": project, "name": project,
                                       "manifest": {"m.bin": {"sha256": blob, "size": 16}}})
    a.ok("PUT", f"/v1/artifacts/{project}/refs/winner", {"project": project, "version": "v1"})
    session = a.ok("POST", "/v1/sessions", {"project": project, "tag": "xorg-secret-tag"})["id"]
    exp = a.ok("POST", "/v1/experiments", {"session_id": session, "note": "xorg-secret-note", "diff": "xorg-secret-diff"})["id"]
    a.ok("PUT", f"/v1/experiments/{exp}/tree", {"files": {"xorg-secret-path": {"sha256": blob, "size": 16}}})
    a.ok("POST", f"/v1/experiments/{exp}/decision", {"status": "keep", "score": 1.0})
    member = a.ok("POST", "/v1/users", {"email": f"xorg-secret-{session}@example.com"})
    wb = a.ok("POST", "/api/v1/experiments", {"name": "xorg-secret-workbench", "run_id": "xorg-secret-wb-run"})["id"]
    sweep = a.ok("POST", "/sweeps/wild", {"name": "xorg-secret-sweep", "goal": "xorg-secret-goal",
                                          "chat_session_id": "xorg-secret-chat"})["id"]
    markers = [run, project, "xorg-secret-name", a_key["id"], "xorg-secret-keyname", "xorg-secret-blob", blob,
               session, exp, "xorg-secret-tag", "xorg-secret-note", "xorg-secret-path", member["id"], member["email"],
               wb, "xorg-secret-workbench", "xorg-secret-wb-run", sweep, "xorg-secret-sweep", "xorg-secret-goal",
               "xorg-secret-chat"]
    templates = _route_templates(embedded)
    values = {"run_id": run, "key_id": a_key["id"], "name": project, "sha": blob, "ref": "winner",
              "session_id": session, "experiment_id": exp, "other_id": exp, "user_id": member["id"], "writer_id": "w",
              "id": wb, "sweep_id": sweep, "v1": "1", "v2": "2"}
    routes = [(r.method, r.resource.canonical) for r in embedded.server.runner.app.router.routes() if r.method != "HEAD"]
    covered = 0
    # The MLflow adapter's routes take MLflow's arguments: tests/test_mlflow.py checks them across orgs.
    # The /v1/auth/ routes act on the caller's own session: tests/test_accounts.py checks them across orgs.
    mlflow = {t for t in templates if "/mlflow" in t or t.startswith("/v1/auth/")}
    for method, template in routes:
        if template in PUBLIC_TEMPLATES or template in mlflow:
            continue
        path = _fill(template, **values)
        body = {}
        query_params = {"/v1/agent/context": {"project": project}, "/api/v1/experiments/compare": {"ids": f"{wb},{wb}"},
                        "/api/compare": {"ids": f"{run},{run}"}, "/v1/projects/{name}/integrity": {"runs": run}}
        if template in query_params:  # a's things in the query
            params = query_params[template]
            status, out = b.request(method, path, params=params)
            assert status == 404 and out.get("error"), (method, path, status, out)
            covered += 1
            continue
        if template == "/v1/ingest":
            body = {"points": points(run, "w", range(20, 30))}
        elif template == "/v1/artifacts/{name}/refs/{ref}":
            body = {"version": "v1"}  # a valid move: what answers is the lookup, not the validation
        elif template == "/v1/experiments/{experiment_id}/decision":
            body = {"status": "drop", "score": 0.0}  # valid: only the experiment's org is wrong
        elif template == "/v1/experiments/{experiment_id}/tree":
            body = {"files": {}}
        elif template.startswith("/api/v1/experiments/{id}/"):  # ml-workbench: valid bodies, a's experiment
            body = {"tags": {"tags": []}, "metrics": {"metrics": []}, "params": {"params": {}},
                    "artifacts": {"name": "a", "s3_key": "k"}}.get(template.rsplit("/", 1)[1], {})
        elif template in ("/v1/runs/{run_id}/rewind", "/v1/runs/{run_id}/fork"):
            body = {"step": 1}  # valid: only the run's org is wrong
        elif template == "/wild/v2/runner/runs/{run_id}/report":
            body = {"runner_id": "b-runner", "status": "finished"}
        raw = ndjson(points(run, "w", range(30, 31))) if template == "/v1/ingest/stream" else None
        status, out = b.request(method, path, body=body if raw is None else None, raw=raw)
        text = json.dumps(out)
        covered += 1
        if "{" in template:
            assert status == 404, (method, path, status, out)
        elif method == "GET":
            assert status == 200, (method, path, status, out)
            assert not any(m in text for m in markers), (method, path, text[:300])
        elif template == "/v1/ingest":
            assert status == 404, (method, path, status, out)
        elif template == "/v1/ingest/stream":
            assert status == 400 and out["points"] == 0 and "unknown run" in out["errors"][0]["reason"], out
        if status == 404:
            assert out.get("error"), out  # 404 with a reason, same shape as any unknown id
    assert covered >= len([t for t in templates if t not in PUBLIC_TEMPLATES and t not in mlflow])
    # Query parameters naming the other org's things change nothing either.
    for path, params in (("/v1/projects", {"prefix": "xorg"}), ("/v1/keys", {"org": "x"})):
        status, out = b.request("GET", path, params=params)
        assert status in (200, 400) and not any(m in json.dumps(out) for m in markers), (path, out)
    # To b, a's blob is missing, like one nobody uploaded.
    assert b.ok("POST", "/v1/blobs/missing", {"shas": [blob]}) == {"missing": [blob]}
    assert a.ok("POST", "/v1/blobs/missing", {"shas": [blob]}) == {"missing": []}
    # a's data is untouched by b's attempts, and a's key still works.
    r = a.receipt(run)
    assert r["points_stored"] == 20 and r["status"] == "running", r
    assert a.with_key(a_key["key"]).get("/v1/keys")[0] == 200


def test_revocation_reaches_another_process_within_the_refresh_bound(embedded, store_dir, api: Api) -> None:
    """Two servers sharing the store: revoked through one, the other refuses within key_refresh_s."""
    refresh = 1.0
    other = ServerThread(frozenset({"gateway", "query"}), data_dir=store_dir, key_refresh_s=refresh)
    try:
        made = api.ok("POST", "/v1/keys", {"name": "revoke-me", "scopes": ["admin"]})
        there = Api(other.url, made["key"])
        wait_for(lambda: there.get("/v1/keys")[0] == 200, 10, 0.05, "the other server to know the new key")
        assert there.get("/v1/keys")[0] == 200  # cached there now
        t0 = time.monotonic()
        api.ok("DELETE", f"/v1/keys/{made['id']}")
        assert api.with_key(made["key"]).get("/v1/keys")[0] == 401  # this process: at once
        wait_for(lambda: there.get("/v1/keys")[0] == 401, refresh + 2.0, 0.02, "the other server to refuse")
        took = time.monotonic() - t0
        print(f"\nrevocation seen by the other server after {took:.2f}s (bound {refresh}s)")
        assert took <= refresh + 0.5, took
    finally:
        other.stop()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001
            text = str(record.msg)
        extra = {k: v for k, v in record.__dict__.items() if k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__}
        self.lines.append(f"{record.name} {text} {extra} {record.exc_text or ''}")


def test_keys_are_never_logged(embedded, api: Api) -> None:
    cap = _Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(cap)
    root.setLevel(logging.DEBUG)
    try:
        made = api.ok("POST", "/v1/keys", {"name": "log-me-not"})
        secret = made["key"]
        k = api.with_key(secret)
        k.ok("POST", "/v1/runs", {"id": "logged"})
        k.post("/v1/ingest", {"points": [{"bad": 1}]})
        k.post("/v1/ingest/stream", raw=b"not json\n")
        k.get("/v1/runs/nope")
        api.ok("DELETE", f"/v1/keys/{made['id']}")
        k.get("/v1/keys")  # refused: a revoked key
        api.with_key(secret[:-1] + "Z").get("/v1/keys")  # refused: a wrong key close to a real one
        api.with_key(None).request("GET", "/v1/keys", headers={"Authorization": f"Basic {secret}"})
    finally:
        root.removeHandler(cap)
        root.setLevel(old)
    from arwx.tenancy import hash_key

    logged = "\n".join(cap.lines)
    assert cap.lines, "nothing was logged: the capture does not work"
    assert secret not in logged and secret[10:] not in logged
    assert hash_key(secret) not in logged
    from tests.test_auth import _catalog_rows

    rows = embedded.call(_catalog_rows(embedded, "key_hash", "prefix", "name"))
    assert not any(secret in " ".join(map(str, r)) for r in rows)


NASTY = [
    "x'); DROP TABLE points; --",
    "a\\nb",  # a literal backslash-n: must not become a newline
    "trailing\\",
    "\\'",
    "\\N",
    "tab\\there",
    "{run:String}",
    "%s %d {0}",
    "' OR 1=1 --",
    '";\\"',
    "ünï©ødé 🚀",
    "..\\..",
]


def test_sql_metacharacters_in_every_string_field_are_data(api: Api) -> None:
    run = "meta:'x'.@-1"[0:4] + ".x@y-z"  # run ids are limited to [A-Za-z0-9._:@-]
    writer = "w:..@-"
    for i, nasty in enumerate(NASTY):
        rid = f"{run}{i}"
        project = nasty.replace("/", "_")
        cfg = {nasty: nasty, "nested": {nasty: [nasty, 1.5]}, "nl": "line\nbreak\ttab"}
        made = api.ok("POST", "/v1/runs", {"id": rid, "project": project, "name": nasty, "config": cfg,
                                           "commit": nasty[:128], "diff_sha": nasty[:128]})
        assert made["project"] == project and made["name"] == nasty and made["config"] == cfg
        api.ok("POST", "/v1/ingest", {"points": points(rid, writer, range(3), key=nasty)})
        api.wait_intact(rid, 3)
        got = api.ok("GET", f"/v1/runs/{rid}")
        assert (got["name"], got["project"], got["config"]) == (nasty, project, cfg), got
        assert got["fingerprint"] == {"commit": nasty, "diff_sha": nasty}, got
        page = api.ok("GET", f"/v1/runs/{rid}/metrics", params={"keys": nasty})
        assert [(r["writer_id"], r[nasty]) for r in page["rows"]] == [(writer, 0.0), (writer, 0.5), (writer, 1.0)], page
        page = api.ok("GET", f"/v1/runs/{rid}/metrics")
        assert page["keys"] == [nasty], page["keys"]
        # A cursor naming a nasty writer is a value, never SQL.
        status, out = api.get(f"/v1/runs/{rid}/metrics", cursor=f"0:{nasty}", limit=10)
        assert status in (200, 400), (status, out)
        status, out = api.get("/v1/projects/" + _quote_path(project))
        assert status == 200, (nasty, status, out)
        status, out = api.get("/v1/projects/" + _quote_path(project) + "/runs")
        assert status == 200 and rid in json.dumps(out), (nasty, status, out)
    status, out = api.get("/v1/projects")
    assert status == 200
    listed = json.dumps(out)
    for nasty in NASTY:
        assert json.dumps(nasty.replace("/", "_"))[1:-1] in listed, nasty


def test_project_names_with_braces_are_reachable(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "braces", "project": "{run:String}"})
    status, out = api.get("/v1/projects/" + _quote_path("{run:String}"))
    assert status == 200, (status, out)
    status, out = api.get("/v1/no/such/path")
    assert status == 404 and out == {"error": "Not Found"}


def _quote_path(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def test_body_and_line_limits_are_enforced(store_dir) -> None:
    """The documented limits (docs/configuration.md): a body over max_body_bytes is 413 with a
    reason; a line over max_line_bytes is rejected alone, its neighbours kept; small control
    bodies over 1 MiB are 400."""
    small = ServerThread(data_dir=store_dir, max_body_bytes=4096, max_line_bytes=1024)
    try:
        api = Api(small.url, small.new_org_key())
        api.ok("POST", "/v1/runs", {"id": "limits"})
        body = json.dumps({"points": points("limits", "w", range(200))}).encode()
        assert len(body) > 4096
        status, out = api.post("/v1/ingest", raw=body)
        assert status == 413 and "4096" in out["error"], (status, out)
        status, out = api.post("/v1/ingest", raw=json.dumps({"points": points("limits", "w", range(5))}).encode())
        assert status == 200 and out["points"] == 5
        good = ndjson(points("limits", "w", range(5, 7)))
        long_line = json.dumps({**points("limits", "w", range(7, 8))[0], "key": "k" * 1100}).encode() + b"\n"
        status, out = api.post("/v1/ingest/stream", raw=good[: len(good) // 2 + 1].split(b"\n")[0] + b"\n" + long_line
                               + good.split(b"\n")[1] + b"\n")
        assert status == 400 and out["points"] == 2 and out["rejected"] == 1, out
        assert "1024" in out["errors"][0]["reason"] and out["errors"][0]["line"] == 2, out
        # Streams are not bound by max_body_bytes: many lines, each under the line limit.
        big = ndjson(points("limits", "w", range(7, 1007)))
        assert len(big) > 4096
        status, out = api.post("/v1/ingest/stream", raw=big)
        assert status == 200 and out["points"] == 1000, out
        status, out = api.post("/v1/runs", raw=b'{"id": "x", "config": {"a": "' + b"x" * (1 << 20) + b'"}}')
        assert status in (400, 413) and out["error"], (status, out)
        api.ok("POST", "/v1/runs/limits/finish", {"writer_totals": {"w": 1007}})
        assert api.wait_intact("limits", 1007)["points_stored"] == 1007
    finally:
        small.stop()
