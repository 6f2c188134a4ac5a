"""The same MLflow training script against ``mlflow server`` (SQLite backend) and arwx, in one run.

Measures, server by server, with the real ``mlflow`` client:

- the logging loop of ``tests/mlflow_scripts/train.py`` (``--steps`` steps of 4
  metrics, ``log_metrics(..., synchronous=False)``), its wall time;
- ``MlflowClient.get_metric_history`` of one metric of ``--history-points``
  steps (logged with ``log_batch`` of 1,000), median of ``--reads``;
- the chart request the MLflow UI makes for that metric
  (``GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval``, 320 points),
  median of ``--reads``.

Needs an ``mlflow`` server executable (full ``mlflow``, not the skinny client;
kept out of arwx's dependencies): ``--mlflow-bin``, e.g. from
``python -m venv /tmp/mlf && /tmp/mlf/bin/pip install mlflow==3.17.2``.
Not a test: prints a table. The machine may be shared: compare the ratio.

    python bench/bench_mlflow.py --mlflow-bin /tmp/mlf/bin/mlflow --steps 2000 --history-points 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))

from tests.helpers import ServerProcess, free_port, wait_for  # noqa: E402

SCRIPT = ROOT / "tests" / "mlflow_scripts" / "train.py"


def start_mlflow(binary: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [binary, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--artifacts-destination", str(work / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(url + "/health", timeout=2).status == 200
        except OSError:
            return False

    wait_for(up, 120, 0.2, "mlflow server to answer /health")
    return proc, url


def measure(url: str, token: str, steps: int, history_points: int, reads: int, work: Path) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=token, GIT_PYTHON_REFRESH="quiet")
    out = subprocess.run([sys.executable, str(SCRIPT), str(steps)], env=env, cwd=work, capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=url)
    e = client.create_experiment(f"bench-{time.time_ns()}")
    run = client.create_run(e).info.run_id
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for lo in range(0, history_points, 1000):
        client.log_batch(run, metrics=[Metric("m", (s % 1000) / 1000, now + s, s) for s in range(lo, min(lo + 1000, history_points))])
    log_s = time.perf_counter() - t0
    client.set_terminated(run)
    history, chart = [], []
    for _ in range(reads):
        t0 = time.perf_counter()
        n = len(client.get_metric_history(run, "m"))
        history.append(time.perf_counter() - t0)
        assert n == history_points, (n, history_points)
        req = urllib.request.Request(
            f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={run}&metric_key=m&max_results=320",
            headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        body = json.loads(urllib.request.urlopen(req, timeout=120).read())
        chart.append(time.perf_counter() - t0)
        assert body["metrics"], body
    return {"loop_s": result["loop_s"], "log_batch_s": log_s, "history_s": statistics.median(history),
            "chart_s": statistics.median(chart)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mlflow-bin", default="mlflow")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--history-points", type=int, default=100_000)
    p.add_argument("--reads", type=int, default=3)
    a = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "mlflow").mkdir()
        proc, url = start_mlflow(a.mlflow_bin, work / "mlflow")
        try:
            rows["mlflow server (SQLite)"] = measure(url, "unused", a.steps, a.history_points, a.reads, work)
        finally:
            proc.terminate()
            proc.wait(30)
        srv = ServerProcess(work / "arwx").start()
        try:
            rows["arwx"] = measure(srv.url, srv.key or "", a.steps, a.history_points, a.reads, work)
        finally:
            srv.terminate()
    cols = ("loop_s", "log_batch_s", "history_s", "chart_s")
    print(f"steps={a.steps} x 4 metrics; history/chart metric of {a.history_points} steps; median of {a.reads} reads")
    print(f"{'server':<24}" + "".join(f"{c:>14}" for c in cols))
    for name, r in rows.items():
        print(f"{name:<24}" + "".join(f"{r[c]:>14.3f}" for c in cols))
    base, ours = rows["mlflow server (SQLite)"], rows["arwx"]
    print(f"{'mlflow / arwx':<24}" + "".join(f"{base[c] / ours[c]:>14.2f}" for c in cols))


if __name__ == "__main__":
    main()
