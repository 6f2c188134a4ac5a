"""A typical training script, unchanged but for the tracking URI, run by tests/test_mlflow.py
(and bench/bench_mlflow.py) with the real ``mlflow`` client. Prints one JSON line of what it saw.

Arguments: STEPS (steps of 4 metrics each). Environment: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

KEYS = ("loss", "acc", "lr", "grad_norm")


def value(key: str, step: int) -> float:
    return {"loss": 1 / (step + 1), "acc": step / (step + 10), "lr": 0.1 * 0.999**step,
            "grad_norm": 5.0 if step == 777 else math.sin(step) + 2}[key]


def main(steps: int) -> dict:
    out: dict = {"steps": steps}
    mlflow.set_experiment("mlflow-compat")
    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "outputs", "sub"))
    for name, text in (("a.txt", "alpha"), ("sub/b.txt", "beta" * 1000)):
        with open(os.path.join(work, "outputs", name), "w") as f:
            f.write(text)
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_params({"lr": 0.1, "batch_size": 32, "optimizer": "adam"})
        mlflow.log_param("epochs", 3)
        mlflow.set_tags({"team": "vision", "stage": "dev"})
        mlflow.set_tag("note", "hello")
        t0 = time.perf_counter()
        for step in range(steps):
            mlflow.log_metrics({k: value(k, step) for k in KEYS}, step=step, synchronous=False)
        mlflow.flush_async_logging()
        out["loop_s"] = time.perf_counter() - t0
        for i in range(5):  # log_metric without a step: MLflow's step 0, five values
            mlflow.log_metric("no_step", float(i))
        mlflow.log_metric("sync_one", 1.5, step=3)
        from mlflow.entities import Metric, Param, RunTag
        now = int(time.time() * 1000)
        MlflowClient().log_batch(run.info.run_id, metrics=[Metric("batch_m", 2.0, now, 0), Metric("batch_m", 3.0, now, 1)],
                                 params=[Param("from_batch", "yes")], tags=[RunTag("batch_tag", "1")])
        mlflow.log_artifacts(os.path.join(work, "outputs"), artifact_path="outputs")
        mlflow.log_artifact(os.path.join(work, "outputs", "a.txt"))
        mlflow.log_dict({"layers": [64, 32]}, "model/config.json")
        mlflow.log_text("done", "notes/summary.txt")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_loss", 0.5, step=0)
            mlflow.log_metric("child_loss", 0.25, step=1)
        failed = mlflow.start_run(run_name="failed-child", nested=True)
        mlflow.log_metric("child_loss", 9.0, step=0)
        mlflow.end_run(status="FAILED")
    out["run_id"], out["child_id"], out["failed_id"] = run.info.run_id, child.info.run_id, failed.info.run_id
    out["experiment_id"] = run.info.experiment_id
    client = MlflowClient()
    r = client.get_run(run.info.run_id)
    out["status"], out["params"], out["tags"] = r.info.status, r.data.params, r.data.tags
    out["metrics"] = r.data.metrics
    out["artifact_uri"] = r.info.artifact_uri
    out["child_parent"] = client.get_run(child.info.run_id).data.tags.get("mlflow.parentRunId")
    out["child_status"] = client.get_run(child.info.run_id).info.status
    out["failed_status"] = client.get_run(failed.info.run_id).info.status
    t0 = time.perf_counter()
    hist = client.get_metric_history(run.info.run_id, "loss")
    out["history_s"] = time.perf_counter() - t0
    out["loss_history"] = [[m.step, m.value, m.timestamp] for m in hist]
    out["no_step_history"] = sorted(m.value for m in client.get_metric_history(run.info.run_id, "no_step"))
    dst = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tempfile.mkdtemp())
    out["artifacts"] = {os.path.relpath(os.path.join(a, f), dst): Path(a, f).read_text()
                        for a, _, fs in os.walk(dst) for f in fs}
    out["experiments"] = [e.name for e in mlflow.search_experiments()]
    df = mlflow.search_runs(filter_string="metrics.child_loss < 1", order_by=["start_time DESC"])
    out["search_child"] = list(df["run_id"])
    df = mlflow.search_runs(filter_string="params.optimizer = 'adam' and tags.team = 'vision'")
    out["search_params_tags"] = list(df["run_id"])
    df = mlflow.search_runs(filter_string="attributes.status = 'FAILED'")
    out["search_failed"] = list(df["run_id"])
    df = mlflow.search_runs(order_by=["metrics.child_loss DESC"])
    out["ordered"] = list(df["run_id"])
    pages = client.search_runs([run.info.experiment_id], max_results=1)
    out["first_page"], out["has_token"] = len(pages), bool(pages.token)
    client.delete_run(child.info.run_id)
    out["after_delete"] = sorted(mlflow.search_runs()["run_id"])
    client.restore_run(child.info.run_id)
    out["after_restore"] = sorted(mlflow.search_runs()["run_id"])
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
