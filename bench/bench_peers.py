"""arwx against its peers, same machine, same run: MLflow tracking server and wandb (offline).

- write: points/s of one metric through one HTTP client, 1000 points per
  request (MLflow's ``runs/log-batch`` limit; arwx ``/v1/ingest`` gets the same
  batches) until the points are readable (arwx: integrity receipt intact);
- history: seconds to read the whole history of that metric
  (MLflow ``metrics/get-history``, every page; arwx ``/v1/runs/:id/metrics``,
  every page), median of --reads reads;
- SDK: µs per ``log()`` of 4 metrics, arwandb offline vs ``wandb.log`` offline
  (WANDB_MODE=offline, WANDB_SILENT=true: no network).

Each figure is printed with the ratio arwx / peer (for times: lower is better
for arwx; for rates: higher is better).

    python bench/bench_peers.py                       # 100,000 points, wandb 20,000 calls
    python bench/bench_peers.py --points 10000 100000 1000000 --mlflow-max 100000   # cost growth

MLflow runs as ``mlflow server --backend-store-uri sqlite:///… --workers 1``
on 127.0.0.1 (its default SQLite backend); needs ``pip install mlflow wandb``
(bench/requirements.txt).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "sdk"))

from tests.helpers import ServerProcess, free_port, wait_for  # noqa: E402

BATCH = 1000


class Http:
    def __init__(self, port: int, headers: dict | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def call(self, method: str, path: str, body: object = None) -> dict:
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path} -> {resp.status}: {data[:300]!r}")
        return json.loads(data) if data else {}


# -- MLflow ---------------------------------------------------------------------------------------


def start_mlflow(d: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    exe = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db", "--default-artifact-root", f"{d}/art",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health")
        return c.getresponse().status == 200

    wait_for(up, 180, 0.5, "mlflow server")
    return proc, port


def mlflow_write(port: int, n: int) -> tuple[float, str]:
    h = Http(port)
    exp = h.call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-{time.time_ns()}"})["experiment_id"]
    run_id = h.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    t0 = time.perf_counter()
    for s0 in range(0, n, BATCH):
        metrics = [
            {"key": "loss", "value": s * 0.001 + 0.5, "timestamp": 1_700_000_000_000 + s, "step": s}
            for s in range(s0, min(n, s0 + BATCH))
        ]
        h.call("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    return n / (time.perf_counter() - t0), run_id


def mlflow_history(port: int, run_id: str, n: int) -> float:
    h = Http(port)
    t0 = time.perf_counter()
    got, token = 0, None
    while True:
        path = f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss&max_results=25000"
        if token:
            path += f"&page_token={token}"
        out = h.call("GET", path)
        got += len(out.get("metrics", []))
        token = out.get("next_page_token")
        if not token:
            break
    dt = time.perf_counter() - t0
    assert got == n, f"mlflow history returned {got} of {n}"
    return dt


# -- arwx -----------------------------------------------------------------------------------------


def arwx_write(srv: ServerProcess, n: int) -> tuple[float, str]:
    h = Http(srv.port, {"Authorization": f"Bearer {srv.key}"})
    run_id = f"peer-{n}-{time.time_ns()}"
    h.call("POST", "/v1/runs", {"id": run_id})
    t0 = time.perf_counter()
    for s0 in range(0, n, BATCH):
        pts = [
            {"seq": s, "step": s, "key": "loss", "value": s * 0.001 + 0.5, "ts": 1.7e9 + s / 1000}
            for s in range(s0, min(n, s0 + BATCH))
        ]
        h.call("POST", "/v1/ingest", {"run_id": run_id, "writer_id": "w0", "points": pts})
    while True:  # until readable: the receipt is intact with every point stored
        r = h.call("GET", f"/v1/runs/{run_id}/integrity")
        if r["intact"] and r["points_stored"] >= n and r["pending"] == 0:
            break
        time.sleep(0.05)
    return n / (time.perf_counter() - t0), run_id


def arwx_history(srv: ServerProcess, run_id: str, n: int) -> float:
    h = Http(srv.port, {"Authorization": f"Bearer {srv.key}"})
    t0 = time.perf_counter()
    got, cursor = 0, None
    while True:
        path = f"/v1/runs/{run_id}/metrics?keys=loss&limit=100000"
        if cursor:
            path += f"&cursor={cursor}"
        out = h.call("GET", path)
        got += len(out["rows"])
        cursor = out.get("next")
        if not cursor:
            break
    dt = time.perf_counter() - t0
    assert got == n, f"arwx history returned {got} of {n}"
    return dt


# -- SDKs -----------------------------------------------------------------------------------------


def _measure(log, calls: int) -> list[float]:  # noqa: ANN001
    pc = time.perf_counter_ns
    out = [0.0] * calls
    for i in range(calls):
        m = {"loss": 1.0 / (i + 1), "lr": 3e-4, "acc": 0.5, "grad_norm": 1.25}
        t0 = pc()
        log(m)
        out[i] = (pc() - t0) / 1000.0
    return out


def sdk_us(calls: int) -> dict[str, tuple[float, float]]:
    import arwandb

    out = {}
    with tempfile.TemporaryDirectory() as d:
        run = arwandb.init(project="bench", mode="offline", dir=d, system_metrics=False)
        _measure(run.log, 2000)
        us = sorted(_measure(run.log, calls))
        run.finish()
        out["arwandb"] = (statistics.median(us), us[int(len(us) * 0.99)])
    try:
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
        import wandb  # type: ignore[import-not-found]
    except ImportError:
        return out
    with tempfile.TemporaryDirectory() as d:
        wr = wandb.init(project="bench", mode="offline", dir=d)
        _measure(wr.log, 1000)
        us = sorted(_measure(wr.log, calls))
        wr.finish()
        out[f"wandb {wandb.__version__}"] = (statistics.median(us), us[int(len(us) * 0.99)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, nargs="+", default=[100_000])
    ap.add_argument("--mlflow-max", type=int, default=100_000, help="skip MLflow above this many points")
    ap.add_argument("--reads", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20_000, help="log() calls per SDK")
    a = ap.parse_args()
    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        srv = ServerProcess(Path(d) / "arwx").start()
        ml = None
        try:
            try:
                ml, ml_port = start_mlflow(d)
            except Exception as e:  # not installed / does not start
                print(f"MLflow unavailable: {e}")
            for n in a.points:
                a_pps, a_run = arwx_write(srv, n)
                a_hist = statistics.median(arwx_history(srv, a_run, n) for _ in range(a.reads))
                if ml is not None and n <= a.mlflow_max:
                    m_pps, m_run = mlflow_write(ml_port, n)
                    m_hist = statistics.median(mlflow_history(ml_port, m_run, n) for _ in range(a.reads))
                    rows.append((f"write {n:,} points, 1 client, {BATCH}/request (points/s)", a_pps, m_pps))
                    rows.append((f"history read of {n:,} points (s)", a_hist, m_hist))
                else:
                    rows.append((f"write {n:,} points, 1 client, {BATCH}/request (points/s)", a_pps, None))
                    rows.append((f"history read of {n:,} points (s)", a_hist, None))
        finally:
            if ml is not None:
                ml.terminate()
                ml.wait(30)
            srv.terminate()
    sdk = sdk_us(a.calls)
    print("| measure | arwx | MLflow | arwx / MLflow |\n|---|---:|---:|---:|")
    for name, av, mv in rows:
        fmt = "{:,.0f}" if "points/s" in name else "{:.3f}"
        ratio = f"{av / mv:.2f}" if mv else "—"
        print(f"| {name} | {fmt.format(av)} | {fmt.format(mv) if mv else '—'} | {ratio} |")
    print()
    base = sdk["arwandb"]
    print("| SDK, log() of 4 metrics, offline | median µs | p99 µs | arwandb / this (median) |\n|---|---:|---:|---:|")
    for name, (med, p99) in sdk.items():
        print(f"| {name} | {med:.2f} | {p99:.2f} | {base[0] / med:.3f} |")
    if len(sdk) == 1:
        print("wandb is not installed: no wandb figure")


if __name__ == "__main__":
    main()
