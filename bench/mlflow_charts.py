"""The MLflow UI's chart requests on the same data as the dashboard benchmark (bench_dashboard.py --mlflow).

What the MLflow UI asks for to draw the charts of N runs (its run-compare "chart" view):
one ``GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=…&metric_key=K&max_results=320``
per metric (every run of the chart in one request; 320 sampled points per run, the UI's
default), sent together; a browser opens at most 6 connections per host, so 6 at a time
here. The arwx dashboard's request for the same view is one ``GET /v1/projects/:name/charts``
for every metric on screen. Both are timed from the same Python client (no browser: MLflow's
UI is not part of this repository), gzip accepted, bytes as they came over the wire.

The data is the same: the points of the charted runs are read back from arwx's store and
written into MLflow's SQLite backend (``metrics`` and ``latest_metrics``) directly, the rows
MLflow's own ``log_batch`` would write (its API takes 1,000 points a request: 10M points
would take hours here). The runs and the experiment are made through MLflow's REST API.

MLflow comes from a separate virtual environment (bench/requirements.txt), never the
project's: ``--mlflow /tmp/benchvenv/bin/mlflow``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

from tests.helpers import ServerThread, free_port, wait_for

UI_MAX_RESULTS = 320  # points per run per chart the MLflow UI asks for
BROWSER_CONNECTIONS = 6  # per host, HTTP/1.1


def _get(port: int, path: str, headers: dict | None = None) -> tuple[float, int, bytes]:
    """ms, status and the body as sent (still compressed) of one GET on a new connection."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", path, headers={"Accept-Encoding": "gzip", **(headers or {})})
    r = c.getresponse()
    body = r.read()
    c.close()
    return (time.perf_counter() - t0) * 1000, r.status, body


def _post(port: int, path: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"POST {path} -> {r.status}: {data[:300]!r}")
    return json.loads(data)


def start(exe: str, d: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db", "--default-artifact-root", f"{d}/art",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,  # its workers stop with it
    )

    def up() -> bool:
        try:
            return _get(port, "/health")[1] == 200
        except OSError:
            return False

    wait_for(up, 300, 0.5, "mlflow server")
    return proc, port


def copy_runs(srv: ServerThread, org: str, run_ids: list[str], port: int, db: Path) -> dict[str, str]:
    """Each arwx run as an MLflow run with the same points; arwx run id -> MLflow run id."""
    exp = _post(port, "/api/2.0/mlflow/experiments/create", {"name": "bench"})["experiment_id"]
    store = srv.server.components.store
    ids: dict[str, str] = {}
    conn = sqlite3.connect(db, timeout=60)
    for run in run_ids:
        ml = _post(port, "/api/2.0/mlflow/runs/create", {"experiment_id": exp, "run_name": run,
                                                         "start_time": 1_764_000_000_000})["run"]["info"]["run_id"]
        ids[run] = ml
        rows = srv.call(store.rows(
            "SELECT key, value, toUnixTimestamp64Milli(ts), step FROM points FINAL"
            " WHERE org = {org:String} AND run_id = {run:String} ORDER BY key, step",
            {"org": org, "run": run},
        ), timeout=600)
        with conn:
            conn.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                ((k, v, ts, ml, step) for k, v, ts, step in rows),
            )
            last: dict[str, tuple] = {}
            for k, v, ts, step in rows:
                last[k] = (k, v, ts, step, ml)
            conn.executemany(
                "INSERT INTO latest_metrics (key, value, timestamp, step, run_uuid, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                last.values(),
            )
        _post(port, "/api/2.0/mlflow/runs/update", {"run_id": ml, "status": "FINISHED", "end_time": 1_764_000_100_000})
    conn.close()
    return ids


def compare(srv: ServerThread, key: str, org: str, project: str, run_ids: list[str], keys: list[str],
            exe: str, reps: int, samples: int, workdir: Path) -> str:
    """A markdown table: the view's chart requests, arwx and MLflow, ``reps`` times each, alternating."""
    proc, port = start(exe, workdir)
    try:
        t0 = time.perf_counter()
        ids = copy_runs(srv, org, run_ids, port, workdir / "mlflow.db")
        copied = time.perf_counter() - t0
        arwx_port = int(srv.url.rsplit(":", 1)[1])
        arwx_path = f"/v1/projects/{project}/charts?" + urlencode({
            "keys": ",".join(keys), "runs": ",".join(run_ids), "x": "step", "writers": "per",
            "samples": samples, "fields": "value,min,max",
        })
        ml_paths = [
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
            + urlencode([("run_ids", ids[r]) for r in run_ids] + [("metric_key", k), ("max_results", UI_MAX_RESULTS)])
            for k in keys
        ]
        # What each answers (checked once): every run of every key, with points.
        _, st, body = _get(port, ml_paths[0])
        assert st == 200, body[:300]
        got = json.loads(body)["metrics"]
        ml_points = len(got)
        assert {m["run_id"] for m in got} == set(ids.values()), "MLflow did not answer every run"
        arwx_ms, ml_ms, arwx_bytes, ml_bytes, ml_each = [], [], [], [], []
        for _ in range(reps):
            ms, st, body = _get(arwx_port, arwx_path, {"Authorization": f"Bearer {key}"})
            assert st == 200, body[:300]
            arwx_ms.append(ms)
            arwx_bytes.append(len(body))
            t1 = time.perf_counter()
            with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
                answers = list(pool.map(lambda p: _get(port, p), ml_paths))
            ml_ms.append((time.perf_counter() - t1) * 1000)
            ml_bytes.append(sum(len(b) for _, _, b in answers))
            ml_each.extend(ms for ms, _, _ in answers)
            assert all(s == 200 for _, s, _ in answers)
        med = statistics.median
        lines = [
            f"MLflow {exe}: {len(run_ids)} runs copied ({sum(1 for _ in ids)} runs x {len(keys)} keys) in {copied:.0f} s;"
            f" MLflow answers {ml_points} points for one key of {len(run_ids)} runs (max_results={UI_MAX_RESULTS})",
            "",
            "| the view's chart data | requests | ms to all answered, median (min-max) | bytes (wire) |",
            "|---|---:|---:|---:|",
            f"| arwx `projects/:name/charts` (samples={samples}, value+min+max) | 1 | {med(arwx_ms):,.0f} "
            f"({min(arwx_ms):,.0f}-{max(arwx_ms):,.0f}) | {med(arwx_bytes):,.0f} |",
            f"| MLflow UI `get-history-bulk-interval` (max_results={UI_MAX_RESULTS}, {BROWSER_CONNECTIONS} at a time) "
            f"| {len(ml_paths)} | {med(ml_ms):,.0f} ({min(ml_ms):,.0f}-{max(ml_ms):,.0f}) | {med(ml_bytes):,.0f} |",
            "",
            f"MLflow per request: median {med(ml_each):,.0f} ms, max {max(ml_each):,.0f} ms.",
        ]
        return "\n".join(lines)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """The server and the workers it started (its own process group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
