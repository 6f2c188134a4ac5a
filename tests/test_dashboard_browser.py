"""The dashboard in a real browser: Debian's headless Chromium (tests/browser.py) against a real
server, signed in through the form with the session cookie, data written over HTTP and by the SDK.

Screenshots of each screen go to ``ARWX_SCREENSHOT_DIR`` when it is set (``docs/img`` for
docs/dashboard.md), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests import browser as br
from tests import dashboard_data as data
from tests.helpers import Api, wait_for

PASSWORD = "correct horse battery staple 42"
T = 20_000  # ms: a bound on each wait in the page


@pytest.fixture(scope="module")
def chromium():
    why = br.missing()
    if why:
        pytest.fail(why, pytrace=False)
    with br.chromium() as b:
        yield b


@pytest.fixture
def page(chromium, tmp_path: Path):
    ctx = chromium.new_context(viewport=br.VIEWPORT)
    pg = ctx.new_page()
    pg.errors = []  # uncaught errors and CSP refusals in the page fail the test at teardown
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" and "Content Security" in m.text else None)
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.accept()))
    pg.set_default_timeout(T)
    yield pg
    ctx.close()
    assert not pg.errors, pg.errors


class Account:
    """A fresh organization, its API key and a person who signs in to it."""

    def __init__(self, embedded, name: str) -> None:
        self.api = Api(embedded.url, embedded.new_org_key(name))
        self.email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        self.api.ok("POST", "/v1/users", {"email": self.email, "password": PASSWORD, "role": "admin"})
        self.url = embedded.url


@pytest.fixture
def account(embedded) -> Account:
    return Account(embedded, "dash")


def shoot(page, name: str, tmp_path: Path) -> Path:  # noqa: ANN001
    out = Path(os.environ.get("ARWX_SCREENSHOT_DIR") or tmp_path) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000  # a rendered screen, not a blank one
    return out


def panel(page, key: str):  # noqa: ANN001
    return page.locator(f'.panel[data-key="{key}"]')


def wait_drawn(page, key: str) -> dict:  # noqa: ANN001
    loc = panel(page, key)
    loc.scroll_into_view_if_needed()
    page.wait_for_selector(f'.panel[data-key="{key}"][data-drawn="1"]')
    return {"series": int(loc.get_attribute("data-series")), "points": [int(n) for n in loc.get_attribute("data-points").split(",")]}


# --- in the browser ---


def test_sign_in_wrong_password_refused_then_signed_in_with_an_httponly_cookie(page, account: Account, tmp_path) -> None:
    page.goto(account.url + "/")
    page.wait_for_selector("#signin")
    shoot(page, "sign-in", tmp_path)
    page.fill("#email", account.email)
    page.fill("#password", "not the password")
    page.click("#signin button[type=submit]")
    err = page.wait_for_selector("#signin-error:visible")
    assert "Wrong email or password" in err.inner_text()
    assert page.locator("#projects").count() == 0
    assert not [c for c in page.context.cookies() if c["name"] == "arwx_session"]
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.wait_for_selector("h1:text('Projects')")
    cookie = [c for c in page.context.cookies() if c["name"] == "arwx_session"]
    assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] in ("Lax", "Strict")
    assert page.evaluate("document.cookie").find("arwx_session") < 0  # scripts cannot read it
    page.click("#sign-out")
    page.wait_for_selector("#signin")
    page.goto(account.url + "/#/connection")
    page.wait_for_selector("#signin")  # signed out means signed out, also by URL


def test_create_and_revoke_a_key_the_secret_shown_once(page, account: Account, tmp_path) -> None:
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(account.url + "/#/connection")
    page.wait_for_selector("#keys")
    assert f"pip install arwandb --find-links {account.url}/sdk/" in page.inner_text("#pip-line")
    page.fill("#key-name", "laptop")
    page.click("#create-key button[type=submit]")
    lines = page.wait_for_selector("#export-lines").inner_text()
    assert f"export ARWANDB_BASE_URL={account.url}" in lines
    secret = lines.split("ARWANDB_API_KEY=", 1)[1].strip()
    assert secret.startswith("arwx_live_")
    made = account.api.with_key(secret)
    assert made.get("/v1/projects")[0] == 200  # the key the page showed works: read (and write) by default
    assert made.get("/v1/keys")[0] == 403  # admin was not ticked
    assert "read, write" in page.inner_text("#keys tr:has-text('laptop')")
    shoot(page, "connection", tmp_path)
    row = page.locator("#keys tr", has_text="laptop")
    assert secret not in page.inner_text("#keys")  # the list never shows a secret
    row.locator("button.revoke").click()
    page.wait_for_selector("#keys tr:has-text('laptop') .badge:text('revoked')")
    assert page.dialogs and "Revoke" in page.dialogs[0]
    assert made.get("/v1/projects")[0] == 401
    page.reload()
    page.wait_for_selector("#keys")
    assert secret not in page.inner_text("#view") and page.locator("#export-lines").count() == 0  # shown once


def test_runs_appear_and_charts_grow_while_an_sdk_run_logs(page, account: Account, tmp_path) -> None:
    import arwandb

    project = "live-" + uuid.uuid4().hex[:6]
    account.api.ok("POST", "/v1/projects", {"name": project, "objective_metric": "loss"})
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(f"{account.url}/#/p/{project}")
    page.wait_for_selector("#runs-section")
    assert page.locator("#runs tr[data-run]").count() == 0
    stop = threading.Event()
    run = arwandb.init(project=project, name="sdk-live", base_url=account.url, api_key=account.api.key,
                       system_metrics=False, dir=str(tmp_path), flush_interval=0.2)
    logged = []

    def train() -> None:
        step = 0
        while not stop.is_set() and step < 5000:
            run.log({"loss": 3.0 / (1 + step / 50), "acc": step / 5000})
            step += 1
            logged.append(step)
            time.sleep(0.004)

    t = threading.Thread(target=train, daemon=True)
    t.start()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/charts?" in r.url else None)
    try:
        page.wait_for_selector(f'#runs tr[data-run="{run.id}"] .status.running', timeout=30_000)
        first = wait_drawn(page, "loss")["points"][0]
        n_first = len(asked)
        # Live: later ticks append the tail; the panel's point count grows without a reload.
        wait_for(lambda: wait_drawn(page, "loss")["points"][0] > first + 20, 30, 0.2, "the loss chart to grow live")
        # ... by asking only for the buckets from the last one drawn on, never the history again.
        tails = [u for u in asked[n_first:] if "keys=loss" in u]
        assert tails and all("since_step=" in u and "interval=" in u for u in tails), tails
    finally:
        stop.set()
        t.join(10)
        run.finish()
    page.wait_for_selector(f'#runs tr[data-run="{run.id}"] .status.finished', timeout=30_000)
    assert wait_drawn(page, "acc")["series"] == 1


def test_charts_hold_every_series_and_point_badge_intact_system_section(page, account: Account, tmp_path) -> None:
    project = "charts-" + uuid.uuid4().hex[:6]
    keys = ["loss", "acc", "system/cpu", "system/gpu_mem"]
    a = data.make_run(account.api, project, "ra-" + project, name="two-ranks", keys=keys, steps=300,
                      writers=("rank0", "rank1"), config={"lr": 0.003, "batch": 64})
    b = data.make_run(account.api, project, "rb-" + project, name="one-rank", keys=keys, steps=300, run_no=1,
                      config={"lr": 0.001, "batch": 32})
    account.api.wait_intact("ra-" + project, a)
    account.api.wait_intact("rb-" + project, b)
    br.sign_in(page, account.url, account.email, PASSWORD)
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/charts?" in r.url else None)
    page.goto(f"{account.url}/#/p/{project}")
    # Every series (run × writer) and every point: 300 steps, fewer than the chart's buckets.
    for key in ("loss", "acc"):
        got = wait_drawn(page, key)
        assert got == {"series": 3, "points": [300, 300, 300]}, (key, got)
    badge = page.wait_for_selector("#integrity[data-intact='true']")
    text = badge.inner_text()
    assert "intact" in text and f"{a + b:,} committed" in text and f"{a + b:,} stored" in text and "0 lost" in text
    # system/* only in the System section, which mounts nothing until it is opened.
    assert page.locator("#metric-panels .panel").evaluate_all("els => els.map(e => e.dataset.key)") == ["acc", "loss"]
    sys_keys = page.locator("#system-panels .panel").evaluate_all("els => els.map(e => e.dataset.key)")
    assert sys_keys == ["system/cpu", "system/gpu_mem"]
    assert page.locator("#system-panels .panel[data-drawn='1']").count() == 0
    assert not [u for u in requests if "system" in u]
    shoot(page, "project-two-runs", tmp_path)
    page.click("#system-section summary")
    assert wait_drawn(page, "system/cpu") == {"series": 3, "points": [300, 300, 300]}
    # Writers combined: one series per run (mean, band across ranks).
    page.select_option("#writers", "combined")
    wait_for(lambda: panel(page, "loss").get_attribute("data-series") == "2", 20, 0.1, "combined series")
    page.select_option("#writers", "per")
    wait_for(lambda: panel(page, "loss").get_attribute("data-series") == "3", 20, 0.1, "per-writer series")
    # Zoom: dragging across the chart asks the server for that step range at full resolution.
    over = panel(page, "loss").locator(".u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    with page.expect_request(lambda r: "/charts?" in r.url and "since_step=" in r.url and "keys=loss" in r.url):
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    zoomed = wait_for(lambda: (lambda g: g if g["points"][0] < 300 else None)(wait_drawn(page, "loss")), 20, 0.1, "zoomed")
    assert 40 <= zoomed["points"][0] <= 120 and zoomed["series"] == 3
    # Smoothing redraws from the buckets it has: no request.
    n = len(requests)
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_timeout(300)
    assert len(requests) == n
    # Unpicking a run removes its series.
    page.locator(f'#runs tr[data-run="rb-{project}"] input.pick').uncheck()
    wait_for(lambda: panel(page, "acc").get_attribute("data-drawn") == "1"
             and panel(page, "acc").get_attribute("data-series") == "2", 20, 0.1, "one run charted")


def test_frontier_chart_and_winner_badge_after_the_autoresearch_loop(page, account: Account, tmp_path) -> None:
    project = "research-" + uuid.uuid4().hex[:6]
    made = data.autoresearch(account.api, project)
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(f"{account.url}/#/")
    page.wait_for_selector(f'#projects tr[data-project="{project}"]')
    row = page.inner_text(f'#projects tr[data-project="{project}"]')
    assert "minimize val_bpb, target 2.45" in row and "2.43" in row and "target met" in row
    page.goto(f"{account.url}/#/p/{project}")
    chart = page.wait_for_selector("#frontier-chart[data-drawn='1']")
    keeps = sum(1 for _, s, _ in data.LOOP if s == "keep")
    assert chart.get_attribute("data-keep") == str(keeps)
    assert chart.get_attribute("data-drop") == str(len(data.LOOP) - keeps)
    assert chart.get_attribute("data-frontier") == "4"  # 2.71 → 2.58 → 2.47 → 2.43
    assert page.locator("#frontier-chart canvas").count() == 1
    # Clicking the last point opens that experiment.
    over = page.locator("#frontier-chart .u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] - 1, over["y"] + over["height"] / 2)
    page.mouse.click(over["x"] + over["width"] - 1, over["y"] + over["height"] / 2)
    page.wait_for_selector("#experiment-facts")
    assert "tie embeddings" in page.inner_text("h1")
    page.go_back()
    page.wait_for_selector("#frontier-chart[data-drawn='1']")
    assert page.inner_text("#winner") == "winner: char-lm-model v2"
    assert "tune-schedule" in page.inner_text("#sessions")
    page.click("#winner")
    page.wait_for_selector("#versions")
    assert page.inner_text('#versions tr[data-version="v2"]').count("winner") == 1
    assert "winner → v2" in page.inner_text("#refs")
    assert made["best"] in page.inner_text('#versions tr[data-version="v2"]')
    shoot(page, "artifact", tmp_path)
    page.click(f'#versions tr[data-version="v1"] a[href="#/e/{made["warmup"]}"]')
    page.wait_for_selector("#experiment-facts")
    assert "add 200-step warmup" in page.inner_text("h1")
    assert "keep" in page.inner_text("#decision") and "2.58" in page.inner_text("#decision")
    assert "+warmup = 200" in page.inner_text("#diff")
    assert "char-lm-model v1" in page.inner_text("#produced")
    page.click("#tree button:text('train.py')")
    assert "warmup = 200" in page.wait_for_selector("#file-text").inner_text()
    shoot(page, "experiment", tmp_path)


def test_one_organizations_user_never_sees_anothers_project_also_by_url(page, embedded, account: Account) -> None:
    other = Account(embedded, "other")
    secret = "secret-" + uuid.uuid4().hex[:6]
    made = data.autoresearch(other.api, secret)
    data.make_run(other.api, secret, "hidden-" + secret, name="hidden-run", keys=["loss"], steps=10)
    mine = "mine-" + uuid.uuid4().hex[:6]
    account.api.ok("POST", "/v1/projects", {"name": mine})
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.wait_for_selector(f'#projects tr[data-project="{mine}"]')
    assert secret not in page.inner_text("#view")
    for path in (f"#/p/{secret}", f"#/e/{made['best']}", f"#/a/{secret}/char-lm-model"):
        page.goto(f"{account.url}/{path}")
        err = page.wait_for_selector("#view .error")
        assert "(404)" in err.inner_text(), path
        assert "hidden-run" not in page.inner_text("#view") and "tie embeddings" not in page.inner_text("#view")
    # The page's own API calls with the cookie: another org's run is a 404 too.
    status = page.evaluate(f"fetch('/v1/runs/hidden-{secret}/integrity').then(r => r.status)")
    assert status == 404


def test_a_run_named_like_markup_shows_as_text(page, account: Account) -> None:
    project = "xss-" + uuid.uuid4().hex[:6]
    evil = "<img src=x onerror=alert(1)>"
    data.make_run(account.api, project, "xss-" + project, name=evil, keys=["loss"], steps=20,
                  config={"note": "<script>alert(2)</script>"})
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(f"{account.url}/#/p/{project}")
    cell = page.wait_for_selector(f'#runs tr[data-run="xss-{project}"] td.run-name')
    assert cell.inner_text() == evil
    wait_drawn(page, "loss")
    assert evil in page.inner_text('.panel[data-key="loss"] .legend')
    assert "<script>alert(2)</script>" in page.inner_text("#runs")
    assert page.locator("#view img, #view script").count() == 0
    assert page.dialogs == []


def test_a_full_project_screen_draws_every_chart(page, account: Account, tmp_path) -> None:
    """The project screen with everything on it (the docs' screenshot): goal, Experiments chart,
    session, runs with config columns, every metric and system chart drawn."""
    project = "char-lm-" + uuid.uuid4().hex[:4]
    data.autoresearch(account.api, project)
    keys = ["loss", "val_bpb", "lr", "acc", "system/cpu", "system/gpu_mem"]
    for i in range(4):
        sent = data.make_run(account.api, project, f"{project}-r{i}", name=f"warmup-{i * 100}", keys=keys, steps=2000,
                             writers=("rank0", "rank1") if i == 0 else ("rank0",), run_no=i,
                             config={"lr": 3e-3 * (i + 1), "warmup": i * 100, "batch": 64})
        account.api.wait_intact(f"{project}-r{i}", sent)
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(f"{account.url}/#/p/{project}")
    page.wait_for_selector("#frontier-chart[data-drawn='1']")
    page.click("#system-section summary")
    for key in keys:
        # 2,000 steps, more than the chart's width in pixels: one bucket per pixel asked, each filled.
        got = wait_drawn(page, key)
        samples = int(panel(page, key).get_attribute("data-samples"))
        assert 64 <= samples < 2000
        assert got == {"series": 5, "points": [samples] * 5}, key
    page.wait_for_selector("#integrity[data-intact='true']")
    # The table's metric columns: the goal's metric first, then the first keys; every value shown
    # (asked for by name: latest_keys), however the first answer chose the columns.
    cols = page.locator("#runs th[data-col^='m:']").evaluate_all("els => els.map(e => e.dataset.col)")
    assert cols == ["m:val_bpb", "m:acc", "m:loss", "m:lr"], cols
    wait_for(lambda: page.locator("#runs td.metric").evaluate_all("els => els.map(e => e.textContent)").count("") == 0,
             20, 0.1, "every latest value in the table")
    assert page.locator("#runs td.metric").count() == 4 * 4
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "project", tmp_path)
    page.goto(f"{account.url}/#/")
    row = page.wait_for_selector(f'#projects tr[data-project="{project}"]').inner_text()
    assert "minimize val_bpb" in row and "\t4\t" in row  # 4 runs
    shoot(page, "projects", tmp_path)


def test_switching_organization_shows_that_organizations_projects(page, embedded, account: Account) -> None:
    other = Account(embedded, "second")
    mine, theirs = "home-" + uuid.uuid4().hex[:6], "away-" + uuid.uuid4().hex[:6]
    account.api.ok("POST", "/v1/projects", {"name": mine})
    other.api.ok("POST", "/v1/projects", {"name": theirs})
    other.api.ok("POST", "/v1/users", {"email": account.email, "role": "member"})  # the same person joins
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.wait_for_selector(f'#projects tr[data-project="{mine}"]')
    options = page.locator("#org-switch option").all_inner_texts()
    assert sorted(options) == ["dash", "second"]
    page.select_option("#org-switch", label="second")  # POST /v1/auth/org with the CSRF token
    page.wait_for_selector(f'#projects tr[data-project="{theirs}"]')
    assert mine not in page.inner_text("#view")
    page.reload()  # the switch is the session's, on the server
    page.wait_for_selector(f'#projects tr[data-project="{theirs}"]')
    assert page.locator("#org-switch option:checked").inner_text() == "second"


def test_runs_table_pages_sorts_and_filters(page, account: Account) -> None:
    project = "many-" + uuid.uuid4().hex[:6]
    for i in range(60):
        account.api.ok("POST", "/v1/runs", {"id": f"{project}-{i:02d}", "project": project, "name": f"run-{i:02d}",
                                            "config": {"lr": round(0.001 * (60 - i), 3), "seed": i}})
    for i in range(0, 60, 10):
        account.api.ok("POST", f"/v1/runs/{project}-{i:02d}/finish", {"status": "failed"})
    br.sign_in(page, account.url, account.email, PASSWORD)
    page.goto(f"{account.url}/#/p/{project}")
    page.wait_for_selector("#runs tr[data-run]")
    names = lambda: page.locator("#runs td.run-name").all_inner_texts()  # noqa: E731
    assert len(names()) == 50 and names()[0] == "run-59"  # newest first, 50 a page
    assert page.locator("#runs input.pick:checked").count() == 10  # the 10 newest charted by default
    page.click("#next-page")
    wait_for(lambda: len(names()) == 10 and names()[-1] == "run-00", 20, 0.1, "the second page")
    page.click("#prev-page")
    wait_for(lambda: len(names()) == 50, 20, 0.1, "the first page again")
    page.click('#runs th[data-col="c:lr"]')  # sort by the config column, ascending
    lrs = page.locator("#runs td.cfg").evaluate_all("els => els.filter((e, i) => i % 2 === 0).map(e => Number(e.textContent))")
    assert lrs == sorted(lrs) and len(lrs) == 50
    page.select_option("#status-filter", "failed")
    wait_for(lambda: sorted(names()) == [f"run-{i:02d}" for i in range(0, 60, 10)], 20, 0.1, "failed runs only")
    page.select_option("#status-filter", "")
    page.fill("#name-filter", "run-1")
    wait_for(lambda: sorted(names()) == [f"run-1{i}" for i in range(10)], 20, 0.1, "names starting run-1")
