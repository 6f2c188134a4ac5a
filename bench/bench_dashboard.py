"""The dashboard in headless Chromium: time from navigation to every chart drawn, and bytes moved.

Not a test: prints a table. An in-process ``arwx server`` (embedded: SQLite log, chDB) in a
temporary directory; a person signs in through the form (not timed); then each repetition is a
fresh browser context (cold cache: the static files count too) that navigates to the project
page and waits until every chart panel of the view reports ``data-drawn``. Bytes are what the
network carried (CDP ``encodedDataLength``: compressed sizes, headers included).

Data: runs are created over HTTP; their points go straight into the store's ``points`` table
with ``INSERT ... SELECT ... FROM numbers(N)`` (ClickHouse makes the rows; the rollup
materialized views fill exactly as behind the consumer), so filling 50M points takes about a
minute instead of the ingest path's much longer. This measures the read side only.

Scenarios (``--scenario``):

- ``charts``: ``--runs`` × ``--metrics`` × ``--points`` (default 50 × 10 × 100,000), a
  viewport tall enough that every metric's chart is on screen; the view charts the 10 newest
  runs (the page's default) and, with ``--all-runs``, every run of the first page too.
- ``wide``: ``--runs`` × ``--metrics`` small runs (default 1,000 × 500 × 20 points), a normal
  1280×900 viewport: time until the runs table is shown and until the first charts (those on
  screen) are drawn.

    python bench/bench_dashboard.py --scenario charts --runs 50 --metrics 10 --points 100000 --reps 5 --all-runs
    python bench/bench_dashboard.py --scenario wide --runs 1000 --metrics 500 --points 20 --reps 5

``--mlflow /tmp/benchvenv/bin/mlflow`` (charts) also times the MLflow UI's chart requests for the
default view on the same points (bench/mlflow_charts.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT))

from tests import browser as br  # noqa: E402
from tests.helpers import Api, ServerThread  # noqa: E402

BLOCK = 1_000_000
PASSWORD = "bench password 12345"
TS0_MS = 1_764_000_000_000


# One INSERT ... SELECT FROM numbers(N) per group of runs: ClickHouse makes the rows itself
# (seconds for 50M points), where building them in Python took most of 20 minutes here.
# ``number`` enumerates (run, step, key) with the key fastest, as the SDK interleaves them.
FILL_SQL = (
    "INSERT INTO points (org, run_id, key, writer_id, seq, step, ts, value, log_partition, log_offset, ingested_at)"
    " SELECT {org:String}, concat({project:String}, '-', leftPad(toString(r), 4, '0')), {keys:Array(String)}[k + 1],"
    "  'rank0', s, intDiv(s, {nkeys:UInt64}) AS step, fromUnixTimestamp64Milli(toInt64({ts0:Int64} + step * 100)),"
    "  2.5 * exp(-step / 20000.0) + 0.3 + 0.05 * randNormal(0, 1) + r * 0.01, 0, intDiv(s, 500),"
    "  fromUnixTimestamp64Milli(toInt64({ts0:Int64} + step * 100))"
    " FROM (SELECT {first:UInt64} + intDiv(number, {per_run:UInt64}) AS r, number % {per_run:UInt64} AS s,"
    "  s % {nkeys:UInt64} AS k FROM numbers({rows:UInt64}))"
)


def fill(srv: ServerThread, api: Api, org: str, project: str, runs: int, keys: list[str], points: int) -> float:
    """Runs over HTTP, points into the store, runs finished (so no live polling while timed)."""
    t0 = time.perf_counter()
    store = srv.server.components.store
    per_run = points * len(keys)
    group = max(1, BLOCK // per_run)
    for first in range(0, runs, group):
        n = min(group, runs - first)
        for i in range(first, first + n):
            api.ok("POST", "/v1/runs", {"id": f"{project}-{i:04d}", "project": project, "name": f"run-{i:04d}",
                                        "config": {"lr": 1e-3 * (1 + i % 7), "batch": 32 << (i % 3), "seed": i},
                                        "writer_ids": ["rank0"]})
        srv.call(store.command(FILL_SQL, {
            "org": org, "project": project, "keys": keys, "nkeys": len(keys), "ts0": TS0_MS,
            "first": first, "per_run": per_run, "rows": n * per_run,
        }), timeout=1800)
        for i in range(first, first + n):
            api.ok("POST", f"/v1/runs/{project}-{i:04d}/finish",
                   {"status": "finished", "writer_totals": {"rank0": per_run}})
    return time.perf_counter() - t0


def until(page, js: str, timeout_s: float = 300.0) -> None:  # noqa: ANN001
    """Poll ``js`` in the page every few ms (page.wait_for_function evaluates strings, which
    the dashboard's CSP rightly refuses; CDP's evaluate is not subject to it)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout_s}s: {js}")
        time.sleep(0.005)


def measure(browser, url: str, email: str, path: str, viewport: dict, wait_js: str, marks: dict[str, str],  # noqa: ANN001
            setup_js: str | None = None) -> dict:
    """One cold navigation: ms until each ``marks`` condition holds, and bytes moved."""
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    br.sign_in(page, url, email, PASSWORD)
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    moved = {"all": 0, "api": 0, "requests": 0}
    urls: dict[str, str] = {}
    sent_at: dict[str, float] = {}
    took: list[tuple[str, float]] = []

    def sent(e: dict) -> None:
        urls[e["requestId"]] = e["request"]["url"]
        sent_at[e["requestId"]] = e["timestamp"]

    cdp.on("Network.requestWillBeSent", sent)

    def done(e: dict) -> None:
        if e["requestId"] in sent_at:
            took.append((urls[e["requestId"]], (e["timestamp"] - sent_at[e["requestId"]]) * 1000))
        moved["all"] += e["encodedDataLength"]
        moved["requests"] += 1
        if "/v1/" in urls.get(e["requestId"], ""):
            moved["api"] += e["encodedDataLength"]

    cdp.on("Network.loadingFinished", done)
    out: dict = {}
    t0 = time.perf_counter()
    page.goto(url + "/?bench=" + str(time.time_ns()) + path)  # a new document: static files load again
    if setup_js:
        until(page, setup_js)
    for name, js in marks.items():
        until(page, js)
        out[name] = (time.perf_counter() - t0) * 1000
    # As a person would: scroll to the charts (below the runs table), which then mount.
    page.evaluate("document.getElementById('metric-panels') && document.getElementById('metric-panels').scrollIntoView()")
    until(page, wait_js)
    out["all drawn"] = (time.perf_counter() - t0) * 1000
    page.wait_for_timeout(300)  # responses still in flight count
    out.update(moved)
    out["took"] = took
    out["panels"] = page.evaluate("document.querySelectorAll('.panel[data-drawn=\"1\"]').length")
    out["samples"] = int(page.evaluate("(document.querySelector('.panel[data-samples]') || {dataset: {samples: 0}}).dataset.samples"))
    out["series"] = page.evaluate("[...document.querySelectorAll('.panel[data-drawn=\"1\"]')].reduce((n, p) => n + Number(p.dataset.series), 0)")
    ctx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=("charts", "wide"), default="charts")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--metrics", type=int)
    ap.add_argument("--points", type=int)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--all-runs", action="store_true", help="charts: also time every run of the first page picked")
    ap.add_argument("--requests", action="store_true", help="also print each kind of request's time")
    ap.add_argument("--mlflow", metavar="EXE", help="charts: also time the MLflow UI's chart requests for the default "
                    "view on the same data, with this mlflow executable (a separate venv: bench/mlflow_charts.py)")
    args = ap.parse_args()
    wide = args.scenario == "wide"
    runs = args.runs or (1000 if wide else 50)
    metrics = args.metrics or (500 if wide else 10)
    points = args.points or (20 if wide else 100_000)
    why = br.missing()
    if why:
        sys.exit(why)
    keys = [f"train/m{i:03d}" for i in range(metrics - metrics // 10)] + [f"system/s{i:03d}" for i in range(metrics // 10)]
    if not wide:
        keys = [f"m{i:02d}" for i in range(metrics)]
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as d:
        srv = ServerThread(data_dir=Path(d))
        try:
            tenancy = srv.server.components.tenancy

            async def make() -> tuple[str, str]:
                org = await tenancy.create_org("bench")
                from arwx.tenancy import OPERATOR_SCOPES  # noqa: PLC0415 - bench-only import

                return org, (await tenancy.create_key(org, "bench", OPERATOR_SCOPES))[1]

            org, key = srv.call(make())
            api = Api(srv.url, key)
            email = "bench@example.com"
            api.ok("POST", "/v1/users", {"email": email, "password": PASSWORD, "role": "admin"})
            filled = fill(srv, api, org, "bench", runs, keys, points)
            print(f"filled {runs} runs x {metrics} metrics x {points:,} points = {runs * metrics * points:,} points "
                  f"in {filled:.0f} s; load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
            views: list[tuple[str, dict, str, dict, str | None]] = []
            every = ("document.querySelectorAll('#metric-panels .panel').length > 0 && "
                     "[...document.querySelectorAll('#metric-panels .panel')].every(p => p.dataset.drawn === '1')")
            if not wide:
                tall = {"width": 1280, "height": 300 * metrics + 1500}
                views.append(("10 newest runs charted (default)", tall, every, {}, None))
                if args.all_runs:
                    pick_all = "(() => { const b = document.getElementById('pick-page'); if (b && document.querySelector('#runs tr[data-run]')) { b.click(); return true; } return false; })()"
                    views.append((f"{min(runs, 50)} runs charted (pick this page)", tall, every, {}, pick_all))
            else:
                first = ("document.getElementById('metric-panels') && (document.getElementById('metric-panels').scrollIntoView(), true)"
                         " && document.querySelectorAll('#metric-panels .panel[data-drawn=\"1\"]').length >= 2")
                views.append(("runs table and first charts", {"width": 1280, "height": 900}, first,
                              {"table shown": "document.querySelectorAll('#runs tr[data-run]').length > 0"}, None))
            samples = 0
            with br.chromium() as browser:
                for label, viewport, wait_js, marks, setup in views:
                    results = [measure(browser, srv.url, email, "#/p/bench", viewport, wait_js, marks, setup)
                               for _ in range(args.reps)]
                    print(f"\n{label}, viewport {viewport['width']}x{viewport['height']}, {args.reps} cold navigations:")
                    print("| measure | median | min | max |")
                    print("|---|---:|---:|---:|")
                    for name in [*marks, "all drawn"]:
                        xs = [r[name] for r in results]
                        print(f"| ms to {name} | {statistics.median(xs):,.0f} | {min(xs):,.0f} | {max(xs):,.0f} |")
                    for name, unit in (("all", "bytes moved (all)"), ("api", "bytes moved (/v1 API)"), ("requests", "requests")):
                        xs = [r[name] for r in results]
                        print(f"| {unit} | {statistics.median(xs):,.0f} | {min(xs):,.0f} | {max(xs):,.0f} |")
                    print(f"| charts drawn / series | {results[0]['panels']} / {results[0]['series']} | | |")
                    if args.requests:
                        kinds: dict[str, list[float]] = {}
                        for r in results:
                            for u, ms in r["took"]:
                                path = u.split("?", 1)[0].split("/v1/", 1)[-1]
                                parts = path.split("/")
                                kind = "/".join(parts[:1] + ["*"] + parts[2:]) if len(parts) > 1 and parts[0] != "auth" else path
                                kinds.setdefault(kind if "/v1/" in u else "static", []).append(ms)
                        print("| request | count per view | median ms | max ms |\n|---|---:|---:|---:|")
                        for kind, xs in sorted(kinds.items(), key=lambda kv: -max(kv[1])):
                            print(f"| {kind} | {len(xs) / len(results):.0f} | {statistics.median(xs):,.0f} | {max(xs):,.0f} |")
                    print(f"<!-- load average {os.getloadavg()[0]:.1f} -->", flush=True)
                    samples = samples or results[0]["samples"]
            if args.mlflow and not wide:
                from bench.mlflow_charts import compare  # noqa: PLC0415 - only with --mlflow

                newest = [f"bench-{i:04d}" for i in range(runs - 1, max(-1, runs - 11), -1)]
                print(f"\nThe default view's chart data, arwx and the MLflow UI's requests ({args.reps} each, "
                      "alternating):", flush=True)
                print(compare(srv, key, org, "bench", newest, keys, args.mlflow, args.reps, samples or 600, Path(d)))
                print(f"<!-- load average {os.getloadavg()[0]:.1f} -->", flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
