"""The MLflow adapter (issue 19): the real ``mlflow`` client logs to arwx by changing one URI.

- A typical training script (``tests/mlflow_scripts/train.py``) runs unchanged with
  the real client against a real ``arwx server`` process; what it reads back through
  MLflow matches what it logged, and arwx's own API shows every point stored once
  with an intact receipt.
- A request re-sent by a client's retry policy is stored once (by digest, or by
  ``Idempotency-Key``).
- Errors are MLflow's shape; 401 without a key, 404 across orgs; fuzzed bodies never 5xx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Api, ServerProcess
from tests.mlflow_scripts.train import KEYS, value

SCRIPT = Path(__file__).parent / "mlflow_scripts" / "train.py"
# 2,000 steps x 4 metrics for a bare pytest run; ./scripts/test (CI) sets 10,000, the size.
STEPS = int(os.environ.get("ARWX_MLFLOW_STEPS", "2000"))
M = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tmp_path_factory.mktemp("mlflow-arwx")).start()
    yield srv
    srv.terminate()


def run_script(url: str, key: str, steps: int, cwd: Path) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=key, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
               GIT_PYTHON_REFRESH="quiet")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(steps)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # the client prints run links before


def test_a_training_script_runs_unchanged_and_every_point_is_stored_once(server: ServerProcess, tmp_path: Path) -> None:
    out = run_script(server.url, server.key, STEPS, tmp_path)
    api = server.api()
    run_id = out["run_id"]
    # Read back through MLflow: what was logged.
    assert out["status"] == "FINISHED" and out["child_status"] == "FINISHED" and out["failed_status"] == "FAILED"
    assert out["params"] == {"lr": "0.1", "batch_size": "32", "optimizer": "adam", "epochs": "3", "from_batch": "yes"}
    assert {k: out["tags"][k] for k in ("team", "stage", "note", "batch_tag", "mlflow.runName")} == {
        "team": "vision", "stage": "dev", "note": "hello", "batch_tag": "1", "mlflow.runName": "train"}
    assert out["child_parent"] == run_id
    assert out["artifact_uri"] == f"mlflow-artifacts:/{out['experiment_id']}/{run_id}/artifacts"
    last = STEPS - 1
    assert out["metrics"]["loss"] == value("loss", last) and out["metrics"]["no_step"] == 4.0
    assert out["metrics"]["batch_m"] == 3.0 and out["metrics"]["sync_one"] == 1.5
    # In the order stored (seq: the async logger may send batches out of step order), each step once.
    assert sorted((s, v) for s, v, _ in out["loss_history"]) == [(s, value("loss", s)) for s in range(STEPS)]
    assert all(ts > 1.6e12 for _, _, ts in out["loss_history"])  # milliseconds
    assert out["no_step_history"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert out["artifacts"] == {"outputs/a.txt": "alpha", "outputs/sub/b.txt": "beta" * 1000, "a.txt": "alpha",
                                "model/config.json": json.dumps({"layers": [64, 32]}, indent=2),
                                "notes/summary.txt": "done"}
    assert out["experiments"][0] == "mlflow-compat" and "Default" in out["experiments"]
    assert out["search_child"] == [out["child_id"]]
    assert out["search_params_tags"] == [run_id]
    assert out["search_failed"] == [out["failed_id"]]
    assert out["ordered"] == [out["failed_id"], out["child_id"], run_id]  # 9.0, 0.25, then the run without it
    assert out["first_page"] == 1 and out["has_token"]
    assert out["after_delete"] == sorted([run_id, out["failed_id"]])
    assert out["after_restore"] == sorted([run_id, out["child_id"], out["failed_id"]])
    # Through arwx's own API: one run, every point once, the receipt intact.
    expected = STEPS * len(KEYS) + 5 + 1 + 2
    receipt = api.wait_intact(run_id, expected)
    assert receipt["points_stored"] == expected and receipt["lost"] == 0, receipt
    (w,) = receipt["writers"]
    assert (w["writer_id"], w["sent"], w["seq_min"], w["seq_max"]) == ("mlflow", expected, 0, expected - 1), w
    run = api.ok("GET", f"/v1/runs/{run_id}")
    assert run["project"] == "mlflow-compat" and run["status"] == "finished", run
    hist = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "grad_norm", "limit": 100000})
    assert [(r["step"], r["grad_norm"]) for r in hist["rows"]] == [(s, value("grad_norm", s)) for s in range(STEPS)]
    assert api.wait_intact(out["failed_id"], 1)["points_stored"] == 1


def _new_run(api: Api) -> str:
    e = api.ok("POST", f"{M}/experiments/create", {"name": "retry"})["experiment_id"]
    return api.ok("POST", f"{M}/runs/create", {"experiment_id": e, "start_time": 1})["run"]["info"]["run_id"]


def test_a_retried_request_is_stored_once(api: Api) -> None:
    run_id = _new_run(api)
    batch = {"run_id": run_id, "metrics": [{"key": "m", "value": i, "timestamp": 1700000000000 + i, "step": i}
                                           for i in range(10)]}
    for _ in range(3):  # the client's retry policy re-sends the same request
        api.ok("POST", f"{M}/runs/log-batch", batch)
    for _ in range(2):  # the same body under two Idempotency-Keys is two requests; each key's retry is one
        for k in ("a", "b"):
            api.ok("POST", f"{M}/runs/log-batch", {**batch, "metrics": batch["metrics"][:2]},
                   headers={"Idempotency-Key": k})
    api.ok("POST", f"{M}/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 2})
    r = api.wait_intact(run_id, 14)
    assert r["points_stored"] == 14 and r["writers"][0]["sent"] == 14, r
    status, out = api.get(f"{M}/metrics/get-history", run_id=run_id, metric_key="m", max_results=4)
    assert status == 200 and [m["step"] for m in out["metrics"]] == [0, 1, 2, 3] and out["next_page_token"]
    seen, token = [], None
    while True:
        status, out = api.get(f"{M}/metrics/get-history", run_id=run_id, metric_key="m", max_results=4,
                              page_token=token)
        seen += [(m["step"], m["value"]) for m in out["metrics"]]
        token = out.get("next_page_token")
        if not token:
            break
    assert sorted(seen) == sorted([(i, i) for i in range(10)] + [(0, 0), (1, 1)] * 2)


def test_errors_are_mlflows_shape_and_orgs_are_apart(api: Api, embedded) -> None:
    run_id = _new_run(api)
    other = api.with_key(embedded.new_org_key("other"))
    for method, path, body in [("GET", f"{M}/runs/get?run_id={run_id}", None),
                               ("POST", f"{M}/runs/log-metric", {"run_id": run_id, "key": "x", "value": 1}),
                               ("POST", f"{M}/runs/update", {"run_id": run_id, "status": "KILLED"}),
                               ("POST", f"{M}/runs/delete", {"run_id": run_id}),
                               ("GET", f"{M}/metrics/get-history?run_id={run_id}&metric_key=x", None),
                               ("GET", f"/api/2.0/mlflow-artifacts/artifacts?path=1/{run_id}/artifacts", None),
                               ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{run_id}/artifacts/f", None),
                               ("GET", f"/api/2.0/mlflow-artifacts/artifacts/1/{run_id}/artifacts/f", None),
                               ("POST", f"{M}/runs/restore", {"run_id": run_id}),
                               ("POST", f"{M}/runs/log-batch", {"run_id": run_id, "params": [{"key": "a", "value": "1"}]}),
                               ("POST", f"{M}/runs/log-parameter", {"run_id": run_id, "key": "a", "value": "1"}),
                               ("POST", f"{M}/runs/set-tag", {"run_id": run_id, "key": "a", "value": "1"}),
                               ("POST", f"{M}/runs/delete-tag", {"run_id": run_id, "key": "mlflow.runName"}),
                               ("GET", f"{M}/experiments/get?experiment_id=1", None),
                               ("POST", f"{M}/experiments/update", {"experiment_id": "1", "new_name": "x"}),
                               ("POST", f"{M}/experiments/delete", {"experiment_id": "1"}),
                               ("POST", f"{M}/experiments/set-experiment-tag", {"experiment_id": "1", "key": "a"}),
                               ("GET", f"{M}/experiments/get-by-name?experiment_name=retry", None),
                               ("GET", f"{M}/metrics/get-history-bulk-interval?run_ids={run_id}&metric_key=x", None)]:
        status, out = other.request(method, path, body=body)
        assert status == 404 and out["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, status, out)
        status, out = api.with_key(None).request(method, path, body=body)
        assert status == 401 and out["error_code"] == "UNAUTHENTICATED", (path, status, out)
    info = api.ok("GET", f"{M}/runs/get?run_id={run_id}")["run"]
    assert info["info"]["status"] == "RUNNING" and info["data"]["params"] == [], info  # untouched by the other org
    # Lists leak nothing across orgs.
    assert other.ok("POST", f"{M}/runs/search", {"experiment_ids": ["1"]}) == {"runs": []}
    assert [e["name"] for e in other.ok("GET", f"{M}/experiments/search")["experiments"]] == ["Default"]
    status, out = api.get(f"{M}/experiments/get-by-name", experiment_name="absent")
    assert status == 404 and out["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for path in (f"{M}/traces", "/api/3.0/mlflow/scorers/list", "/ajax-api/2.0/mlflow/nope"):
        status, out = api.get(path)
        assert status == 404 and out["error_code"] == "ENDPOINT_NOT_FOUND" and out["message"], (path, out)
    status, out = api.post(f"{M}/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"})
    status, out = api.post(f"{M}/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "2"})
    assert status == 400 and out["error_code"] == "INVALID_PARAMETER_VALUE" and "Changing param" in out["message"]
    status, out = api.post(f"{M}/experiments/create", {"name": "retry"})
    assert status == 400 and out["error_code"] == "RESOURCE_ALREADY_EXISTS"
    status, out = api.post(f"{M}/runs/search", {"experiment_ids": ["1"], "filter": "metrics.x < 'a' OR"})
    assert status == 400 and out["error_code"] == "INVALID_PARAMETER_VALUE"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                     max_leaves=12)
_FIELDS = ["run_id", "experiment_id", "key", "value", "step", "timestamp", "metrics", "params", "tags", "filter",
           "order_by", "max_results", "page_token", "status", "name", "experiment_ids", "run_view_type", "end_time"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["runs/create", "runs/update", "runs/log-batch", "runs/log-metric", "runs/log-parameter",
                             "runs/set-tag", "runs/search", "experiments/create", "experiments/search",
                             "runs/delete", "runs/delete-tag", "experiments/update"]),
       body=st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=6) | _json)
def test_fuzzed_bodies_never_5xx(api_once: Api, path: str, body: object) -> None:
    status, out = api_once.post(f"{M}/{path}", body)
    assert status < 500 and isinstance(out, dict), (path, body, status, out)
    if status >= 400:
        assert set(out) == {"error_code", "message"}, out


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["runs/get", "metrics/get-history", "metrics/get-history-bulk-interval",
                             "experiments/get", "experiments/get-by-name"]),
       params=st.dictionaries(st.sampled_from(["run_id", "run_ids", "metric_key", "max_results", "page_token",
                                               "experiment_id", "experiment_name", "start_step", "end_step"]),
                              st.text(max_size=30), max_size=5))
def test_fuzzed_queries_never_5xx(api_once: Api, path: str, params: dict) -> None:
    status, out = api_once.get(f"{M}/{path}", **params)
    assert status < 500 and isinstance(out, dict), (path, params, status, out)


@pytest.fixture(scope="module")
def api_once(embedded) -> Api:
    """One org for the fuzzers (hypothesis runs many examples per test)."""
    api = Api(embedded.url, embedded.new_org_key("fuzz"))
    _new_run(api)
    return api
