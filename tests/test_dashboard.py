"""The dashboard's static files, over plain HTTP: public, holding no data, confined to their
folder, under a strict Content-Security-Policy. The screens themselves are tested in a real
browser in tests/test_dashboard_browser.py."""

from __future__ import annotations

import http.client
import re

from tests.helpers import Api


def test_static_files_are_public_hold_no_data_and_never_leave_their_folder(embedded) -> None:
    anon = Api(embedded.url, None)
    for path in ("/", "/setup", "/static/js/app.js", "/static/vendor/uplot/uPlot.iife.min.js"):
        conn_status, body = anon.request("GET", path)
        assert conn_status == 200, path
    c = http.client.HTTPConnection("127.0.0.1", int(embedded.url.rsplit(":", 1)[1]), timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    html = r.read().decode()
    csp = r.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("Cache-Control") == "no-cache" and "arwx_live_" not in html
    # The page names every other file under a digest of them all, cached for good there.
    m = re.search(r'<script type="module" src="/static/(v-[0-9a-f]{16})/js/app.js">', html)
    assert m, html
    etag = r.getheader("ETag")
    c.request("GET", "/", headers={"If-None-Match": etag})
    r = c.getresponse()
    r.read()
    assert r.status == 304
    c.request("GET", f"/static/{m.group(1)}/js/api.js")
    r = c.getresponse()
    assert r.status == 200 and b"export async function api" in r.read()
    assert r.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    # Another digest (a page from before an upgrade) gets today's file, not cached for good.
    c.request("GET", "/static/v-0123456789abcdef/js/api.js")
    r = c.getresponse()
    assert r.status == 200 and r.read() and r.getheader("Cache-Control") == "no-cache"
    for bad in ("/static/../routes.py", f"/static/{m.group(1)}/../routes.py", f"/static/{m.group(1)}/", "/static/%2e%2e/routes.py", "/static/js/nope.js", "/static/", "/static//etc/passwd",
                "/static/../../../../etc/passwd"):
        status, body = anon.request("GET", bad)
        assert status in (401, 404), (bad, status)
        assert "import" not in str(body) and "root:" not in str(body)
    # Everything else still needs a key or a session.
    assert anon.request("GET", "/v1/projects")[0] == 401


def test_the_page_runs_in_headless_chromium_and_asks_to_sign_in(embedded) -> None:
    """The browser the screen tests use starts (Debian's chromium, tests/browser.py), the page's
    modules load under the CSP without an error, and with no session it shows the sign-in form."""
    from tests import browser as br

    why = br.missing()
    if why:
        raise AssertionError(why)
    errors: list[str] = []
    with br.chromium() as chromium:
        page = chromium.new_page(viewport=br.VIEWPORT)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security" in m.text else None)
        page.goto(embedded.url + "/#/connection")
        page.wait_for_selector("#signin #email", timeout=20_000)
        assert page.evaluate("typeof uPlot") == "function"  # the vendored chart library loaded
        assert page.locator("#keys").count() == 0  # nothing behind the form without a session
    assert not errors, errors


def test_charts_answer_only_the_arrays_asked_for_gzipped(api: Api) -> None:
    """What the dashboard asks the charts API for: ``fields=value,min,max`` (a line and its band),
    gzip-compressed; an unknown field is a 400 naming it."""
    import gzip
    import json

    from tests.dashboard_data import make_run

    sent = make_run(api, "fields", "fields-run", keys=["loss"], steps=200)
    api.wait_intact("fields-run", sent)
    full = api.ok("GET", "/v1/projects/fields/charts", params={"keys": "loss", "samples": 100})["series"][0]
    assert {"first", "last", "min_x", "max_x"} <= set(full)
    some = api.ok("GET", "/v1/projects/fields/charts", params={"keys": "loss", "samples": 100, "fields": "value,min,max"})
    s = some["series"][0]
    assert set(s) == {"run_id", "key", "writer_id", "x", "skipped", "value", "min", "max"}
    assert s["value"] == full["value"] and s["min"] == full["min"] and s["x"] == full["x"]
    status, body = api.get("/v1/projects/fields/charts", keys="loss", fields="value,bogus")
    assert status == 400 and "bogus" in body["error"]
    c = http.client.HTTPConnection(api.host, api.port, timeout=30)
    c.request("GET", "/v1/projects/fields/charts?keys=loss&samples=100&fields=value,min,max",
              headers={"Authorization": f"Bearer {api.key}", "Accept-Encoding": "gzip"})
    r = c.getresponse()
    raw = r.read()
    assert r.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(raw))["series"][0]["value"] == s["value"]


def test_the_runs_page_sends_only_the_latest_values_asked_for_gzipped(api: Api) -> None:
    """A table shows a few of hundreds of keys: ``latest_keys`` names them, ``keys`` names every
    key of the page's runs, and the answer is gzipped."""
    import gzip
    import json

    from tests.dashboard_data import make_run

    sent = make_run(api, "table", "table-run", keys=["loss", "acc", "system/cpu"], steps=30)
    api.wait_intact("table-run", sent)
    full = api.ok("GET", "/v1/projects/table/runs")
    assert set(full["runs"][0]["latest"]) == {"loss", "acc", "system/cpu"}  # no latest_keys: every key
    assert full["keys"] == ["acc", "loss", "system/cpu"]
    some = api.ok("GET", "/v1/projects/table/runs", params={"latest_keys": "loss,nope"})
    assert some["runs"][0]["latest"] == {"loss": full["runs"][0]["latest"]["loss"]}
    assert some["runs"][0]["latest"]["loss"]["step"] == 29 and some["keys"] == full["keys"]
    none = api.ok("GET", "/v1/projects/table/runs", params={"latest_keys": ","})
    assert none["runs"][0]["latest"] == {} and none["keys"] == full["keys"]
    status, body = api.get("/v1/projects/table/runs", latest_keys=",".join(f"k{i}" for i in range(101)))
    assert status == 400 and "latest_keys" in body["error"]
    c = http.client.HTTPConnection(api.host, api.port, timeout=30)
    c.request("GET", "/v1/projects/table/runs?latest_keys=loss",
              headers={"Authorization": f"Bearer {api.key}", "Accept-Encoding": "gzip"})
    r = c.getresponse()
    raw = r.read()
    assert r.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(raw)) == some


def test_one_request_answers_the_receipts_of_a_projects_runs(embedded, api: Api) -> None:
    """The badge's request: every named run's receipt and their sums; 404 for a run of another
    project or organization (never a hint it exists), 400 without runs."""
    from tests.dashboard_data import make_run

    a = make_run(api, "badge", "badge-a", keys=["loss"], steps=40, writers=("rank0", "rank1"))
    b = make_run(api, "badge", "badge-b", keys=["loss", "acc"], steps=25, run_no=1)
    make_run(api, "elsewhere", "badge-c", keys=["loss"], steps=5)
    api.wait_intact("badge-a", a)
    api.wait_intact("badge-b", b)
    got = api.ok("GET", "/v1/projects/badge/integrity", params={"runs": "badge-a,badge-b,badge-a"})
    assert got["runs"] == 2 and got["intact"] is True
    assert [r["run_id"] for r in got["receipts"]] == ["badge-a", "badge-b"]
    assert got["points_committed"] == got["points_stored"] == a + b and got["lost"] == 0
    assert got["receipts"][0] == api.receipt("badge-a")
    for runs in ("badge-a,badge-c", "nope"):
        status, body = api.get("/v1/projects/badge/integrity", runs=runs)
        assert status == 404 and "unknown run" in body["error"], runs
    status, body = api.get("/v1/projects/badge/integrity")
    assert status == 400 and "runs" in body["error"]
    other = Api(embedded.url, embedded.new_org_key("badge-other"))
    status, body = other.get("/v1/projects/badge/integrity", runs="badge-a")
    assert status == 404 and "badge-a" in body["error"]
