"""The ml-service adapter (issue 17): the experiments API document's request bodies, verbatim,
against a real server with an API key added (``docs/compat.md``).

- Experiments: 201 on create, list with search and lifecycle_stage, get, PATCH, soft delete
  (archive) and restore; 404 for an unknown or another org's experiment.
- Runs: create (201), log-metrics, log-params, log-batch (counts), log-artifact (multipart),
  end, compare (2 to 10 runs); the run reads back through arwx (history, charts, an intact
  receipt).
- Errors are ml-service's (FastAPI's) ``{"error": ...}``; a refused batch writes nothing.
"""

from __future__ import annotations

import hashlib

import requests

from tests.helpers import Api

E = "/api/v1/experiments"


class Client:
    """``requests`` with the one added header, as a team's script would do."""

    def __init__(self, api: Api) -> None:
        self.base = api.url + E
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {api.key}"

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, self.base + path, timeout=60, **kw)


def _experiment(c: Client, name: str) -> dict:
    r = c("POST", "", json={"name": name, "description": "string (optional, max 1000 chars)",
                            "artifact_location": "s3://bucket/experiments", "tags": {"key": "value"}})
    assert r.status_code == 201, r.text
    return r.json()


def test_the_documents_bodies_work_and_the_run_reads_back_through_arwx(api: Api) -> None:
    c = Client(api)
    exp = _experiment(c, "churn")
    assert exp["name"] == "churn" and exp["tags"] == {"key": "value"}
    assert exp["artifact_location"] == "s3://bucket/experiments" and exp["lifecycle_stage"] == "active"
    exp_id = exp["experiment_id"]
    # POST /experiments/runs (the document's body, with a real experiment id)
    r = c("POST", "/runs", json={"experiment_id": exp_id, "name": "string (optional)",
                                 "description": "string (optional)", "tags": {"key": "value"}})
    assert r.status_code == 201, r.text
    run = r.json()
    run_id = run["run_id"]
    assert (run["experiment_id"], run["name"], run["status"], run["tags"]) == (
        exp_id, "string (optional)", "running", {"key": "value"})
    # log-metrics, verbatim
    r = c("POST", f"/runs/{run_id}/log-metrics", json={"metrics": {"metric_name": 0.95}, "step": 10,
                                                        "timestamp": 1707723600000})
    assert r.status_code == 200 and r.json()["logged"] == 1, r.text
    # log-batch, verbatim: counts of logged items
    r = c("POST", f"/runs/{run_id}/log-batch", json={
        "metrics": [{"key": "loss", "value": 0.34, "step": 1}],
        "params": [{"key": "lr", "value": "0.01"}],
        "tags": [{"key": "type", "value": "baseline"}]})
    assert r.status_code == 200 and r.json() == {"run_id": run_id, "metrics": 1, "params": 1, "tags": 1}, r.text
    r = c("POST", f"/runs/{run_id}/log-params", json={"params": {"epochs": 10}})
    assert r.status_code == 200 and r.json()["logged"] == 1
    # log-artifact: a multipart form with a file, in a subdirectory
    data = b"id,accuracy\n1,0.95\n"
    r = c("POST", f"/runs/{run_id}/log-artifact", params={"artifact_path": "results"},
          files={"file": ("results.csv", data, "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json() == {"run_id": run_id, "path": "results/results.csv", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "content_type": "text/csv"}
    r = c("POST", f"/runs/{run_id}/end", json={"status": "completed"})
    assert r.status_code == 200 and r.json()["status"] == "completed" and r.json()["end_time"], r.text
    # GET /experiments/runs/:id: params, latest metrics, artifacts
    got = c("GET", f"/runs/{run_id}").json()
    assert got["params"] == {"lr": "0.01", "epochs": 10} and got["tags"] == {"key": "value", "type": "baseline"}
    assert got["metrics"] == {"loss": 0.34, "metric_name": 0.95}
    assert [a["path"] for a in got["artifacts"]] == ["results/results.csv"]
    listed = c("GET", "/runs", params={"experiment_id": exp_id}).json()
    assert [x["run_id"] for x in listed["runs"]] == [run_id]
    # arwx: the same run, in the experiment's project, intact.
    arwx_run = api.ok("GET", f"/v1/runs/{run_id}")
    assert arwx_run["project"] == "churn" and arwx_run["status"] == "finished"
    assert arwx_run["config"]["params"] == {"lr": "0.01", "epochs": 10}
    rec = api.wait_intact(run_id, 2)
    assert rec["points_stored"] == 2 and rec["writers"][0]["writer_id"] == "mlservice" and rec["writers"][0]["sent"] == 2
    hist = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "metric_name,loss"})
    assert [(row["step"], row.get("metric_name"), row.get("loss")) for row in hist["rows"]] == [
        (1, None, 0.34), (10, 0.95, None)]
    assert [row["ts"] for row in hist["rows"] if row.get("metric_name") is not None] == [1707723600.0]
    chart = api.ok("GET", "/v1/projects/churn/charts", params={"keys": "loss", "runs": run_id})
    assert chart["series"][0]["value"] == [0.34]
    assert api.request("GET", f"/v1/blobs/{hashlib.sha256(data).hexdigest()}")[0] == 200


def test_compare_takes_two_to_ten_runs(api: Api) -> None:
    c = Client(api)
    exp_id = _experiment(c, "cmp")["experiment_id"]
    ids = []
    for i in range(11):
        run_id = c("POST", "/runs", json={"experiment_id": exp_id, "name": f"r{i}"}).json()["run_id"]
        c("POST", f"/runs/{run_id}/log-batch", json={
            "metrics": [{"key": "val_accuracy", "value": 0.8 + i / 100, "step": 1},
                        {"key": "val_loss", "value": 1 - i / 10, "step": 1}],
            "params": [{"key": "lr", "value": str(0.1 * (i % 2))}, {"key": "opt", "value": "adam"}]})
        ids.append(run_id)
    r = c("POST", "/runs/compare", json={"run_ids": ids[:3], "metrics": ["val_accuracy", "val_loss"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["run_id"] for x in out["runs"]] == ids[:3] and out["metrics"] == ["val_accuracy", "val_loss"]
    assert [x["metrics"] for x in out["runs"]] == [{"val_accuracy": 0.8 + i / 100, "val_loss": 1 - i / 10}
                                                   for i in range(3)]
    assert out["params"] == ["lr", "opt"] and out["params_differ"] == ["lr"]
    for bad in (ids[:1], ids, [], "x"):
        r = c("POST", "/runs/compare", json={"run_ids": bad})
        assert r.status_code == 400 and set(r.json()) == {"error"}, (bad, r.text)
    r = c("POST", "/runs/compare", json={"run_ids": [ids[0], "nope"]})
    assert r.status_code == 404 and r.json() == {"error": "Run nope not found"}
    assert c("POST", "/runs/compare", json={"run_ids": ids[:10]}).status_code == 200


def test_experiments_soft_delete_restore_and_patch(api: Api) -> None:
    c = Client(api)
    exp = _experiment(c, "lifecycle")
    exp_id = exp["experiment_id"]
    r = c("PATCH", f"/{exp_id}", json={"description": "new words", "tags": {"team": "ml"}})
    assert r.status_code == 200 and r.json()["description"] == "new words", r.text
    assert c("GET", f"/{exp_id}").json()["description"] == "new words"
    assert c("DELETE", f"/{exp_id}").status_code in (200, 204)
    assert c("GET", f"/{exp_id}").status_code == 404
    deleted = c("GET", "", params={"lifecycle_stage": "deleted"}).json()
    assert exp_id in [e["id"] for e in deleted["experiments"]]
    active = c("GET", "", params={"search": "LIFE"}).json()
    assert exp_id not in [e["id"] for e in active["experiments"]]
    r = c("POST", f"/{exp_id}/restore")
    assert r.status_code == 200 and r.json()["lifecycle_stage"] == "active", r.text
    active = c("GET", "", params={"search": "LIFE"}).json()
    assert [e["id"] for e in active["experiments"]] == [exp_id]


def test_errors_and_a_refused_batch_writes_nothing(api: Api, embedded) -> None:
    c = Client(api)
    exp_id = _experiment(c, "errors")["experiment_id"]
    assert c("POST", "/runs", json={"experiment_id": "exp_nope"}).json() == {"error": "Experiment exp_nope not found"}
    assert c("POST", "/runs", json={}).status_code == 400
    assert c("GET", "/runs/nope").json() == {"error": "Run nope not found"}
    run_id = c("POST", "/runs", json={"experiment_id": exp_id}).json()["run_id"]
    for bad in ({"metrics": [{"key": "a", "value": 1}, {"key": "b", "value": "x"}]},
                {"metrics": [{"key": "a", "value": 1}], "params": [{"value": 1}]},
                {"metrics": [{"key": "a,b", "value": 1}]}, {"metrics": [{"key": "a", "value": 1, "step": -1}]},
                {"metrics": "x"}, {"tags": [1]}):
        r = c("POST", f"/runs/{run_id}/log-batch", json=bad)
        assert r.status_code == 400 and set(r.json()) == {"error"}, (bad, r.text)
    r = c("POST", f"/runs/{run_id}/log-metrics", json={"metrics": {"a": 1}, "timestamp": -5})
    assert r.status_code == 400
    r = c("POST", f"/runs/{run_id}/log-artifact", data=b"raw", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    assert api.ok("GET", f"/v1/runs/{run_id}")["config"]["params"] == {}
    c("POST", f"/runs/{run_id}/log-metrics", json={"metrics": {"a": 1}})
    c("POST", f"/runs/{run_id}/end", json={"status": "failed"})
    r = c("POST", f"/runs/{run_id}/log-metrics", json={"metrics": {"a": 2}})
    assert r.status_code == 400 and "ended" in r.json()["error"]
    rec = api.wait_intact(run_id, 1)
    assert rec["points_stored"] == 1 and rec["writers"][0]["sent"] == 1
    # Another org: 404, never 403.
    other = Client(Api(embedded.url, embedded.new_org_key("ms-other")))
    assert other("GET", f"/runs/{run_id}").status_code == 404
    assert other("POST", f"/runs/{run_id}/log-metrics", json={"metrics": {"a": 1}}).status_code == 404
    assert other("POST", "/runs", json={"experiment_id": exp_id}).status_code == 404
    assert other("GET", f"/{exp_id}").status_code == 404
    assert other("POST", "/runs/compare", json={"run_ids": [run_id, run_id]}).status_code == 404


def test_a_request_resent_with_the_same_idempotency_key_is_stored_once(api: Api) -> None:
    c = Client(api)
    exp_id = _experiment(c, "idem")["experiment_id"]
    run_id = c("POST", "/runs", json={"experiment_id": exp_id}).json()["run_id"]
    for _ in range(3):
        r = c("POST", f"/runs/{run_id}/log-batch", json={"metrics": [{"key": "m", "value": 1, "step": 1}]},
              headers={"Idempotency-Key": "batch-1"})
        assert r.status_code == 200
    c("POST", f"/runs/{run_id}/log-batch", json={"metrics": [{"key": "m", "value": 1, "step": 1}]})
    c("POST", f"/runs/{run_id}/end", json={})
    rec = api.wait_intact(run_id, 2)
    assert rec["points_stored"] == 2 and rec["writers"][0]["sent"] == 2, rec
