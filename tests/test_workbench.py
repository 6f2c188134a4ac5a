"""ml-workbench's experiments API (``/api/v1/experiments``) against a real server, over real HTTP.

The document's examples (``shared/seeds/ml-workbench-experiments-api.txt``)
are sent verbatim with only the key header added (``X-API-Key``, as its
clients send it), and every response is checked field by field against the
document. The same run is then read back through arwx: history, charts and
an intact integrity receipt.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import pytest

from tests.helpers import Api, wait_for

BASE = "/api/v1/experiments"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The document's Experiment Object, and the list item (the same without sharedWith).
EXPERIMENT_FIELDS = {"id", "name", "description", "status", "owner", "organizationId", "tags", "pinned", "runCount",
                     "bestRunId", "isPublic", "sharedWith", "createdAt", "updatedAt"}
LIST_FIELDS = EXPERIMENT_FIELDS - {"sharedWith"}

# -- the document's request bodies, verbatim --------------------------------------------------------
CREATE = {
    "name": "Sentiment Analysis v2",
    "description": "Comparing transformer architectures for sentiment classification",
    "tags": ["nlp", "sentiment"],
    "run_id": "run_abc123",
    "experiment_name": "my-experiment",
    "run_name": "baseline-run",
    "parameters": {"learning_rate": 0.01, "epochs": 10},
    "modelType": "classification",
    "problem_type": "binary",
    "framework": "sklearn",
    "parent_run_id": "run_parent_abc",
    "system_info": {"python_version": "3.11.0", "platform": "linux"},
}
UPDATE = {
    "name": "Sentiment Analysis v2 - Updated",
    "description": "Updated description with new findings",
    "status": "completed",
    "final_metrics": {"accuracy": 0.95, "f1_score": 0.92},
    "error_message": "Optional error message if failed",
}
TAGS = {"tags": ["nlp", "sentiment", "production", "v2"]}
REGISTER = {"name": "my-classification-experiment", "description": "Optional description", "tags": ["nlp", "v2"]}
METRICS = {"metrics": [
    {"key": "train_loss", "value": 0.25, "step": 5},
    {"key": "val_loss", "value": 0.30, "step": 5},
    {"key": "accuracy", "value": 0.92, "step": 5},
]}
PARAMS = {"params": {"learning_rate": 0.01, "batch_size": 32, "optimizer": "adam"}}
ARTIFACT_S3 = {
    "name": "model_weights.pkl",
    "path": "models/model_weights.pkl",
    "type": "model",
    "s3_key": "experiments/exp_abc123/artifacts/model_weights.pkl",
    "size": 1048576,
    "content_type": "application/octet-stream",
}
ARTIFACT_UPLOAD = {
    "name": "results.csv",
    "type": "file",
    "content_base64": "aWQsYWNjdXJhY3kKMSwwLjk1Cg==",
    "content_type": "text/csv",
}


@pytest.fixture
def wb(embedded) -> Api:
    """A fresh org's key sent as ``X-API-Key``, with read and write (ml-workbench:read and :write)."""
    return Api(embedded.url, embedded.new_org_key("workbench", ("read", "write")), key_header="X-API-Key")


def _org(embedded, api: Api) -> str:
    return embedded.call(embedded.server.tenancy.authenticate(api.key)).org


def test_the_documents_examples_field_by_field_then_read_back_through_arwx(embedded, wb: Api) -> None:
    org = _org(embedded, wb)
    # POST /api/v1/experiments -> 201
    status, made = wb.post(BASE, CREATE)
    assert status == 201, made
    assert set(made) == {"id", "experiment_id", "run_id", "name", "status", "createdAt"}
    assert made["id"].startswith("exp_") and made["experiment_id"] == made["id"]
    assert made["run_id"] == "run_abc123" and made["name"] == "Sentiment Analysis v2"
    assert made["status"] == "pending" and ISO.match(made["createdAt"])
    exp = made["id"]

    # GET /api/v1/experiments/:id -> the full Experiment object
    got = wb.ok("GET", f"{BASE}/{exp}")
    assert set(got) >= EXPERIMENT_FIELDS
    assert got["id"] == exp and got["name"] == CREATE["name"] and got["description"] == CREATE["description"]
    assert got["status"] == "pending" and got["tags"] == ["nlp", "sentiment"] and got["pinned"] is False
    assert got["organizationId"] == org and got["owner"].startswith("key_")
    assert got["runCount"] == 1 and got["bestRunId"] == "run_abc123" and got["isPublic"] is False
    assert got["sharedWith"] == [] and ISO.match(got["createdAt"]) and ISO.match(got["updatedAt"])
    assert got["parameters"] == [{"key": "learning_rate", "value": 0.01}, {"key": "epochs", "value": 10}]
    assert got["modelType"] == "classification" and got["framework"] == "sklearn"

    # The run is an arwx run of the experiment's project; parameters are its config.
    run = wb.ok("GET", "/v1/runs/run_abc123")
    assert run["project"] == "Sentiment Analysis v2" and run["name"] == "baseline-run" and run["status"] == "running"
    assert run["config"]["learning_rate"] == 0.01 and run["config"]["epochs"] == 10
    assert run["config"]["workbench"]["tags"] == ["nlp", "sentiment"]
    assert run["config"]["workbench"]["system_info"] == CREATE["system_info"]

    # POST /:id/metrics -> {"logged": 3}; POST /:id/params -> {"logged": 3}
    assert wb.ok("POST", f"{BASE}/{exp}/metrics", METRICS) == {"logged": 3}
    assert wb.ok("POST", f"{BASE}/{exp}/params", PARAMS) == {"logged": 3}
    config = wb.ok("GET", "/v1/runs/run_abc123")["config"]
    assert {k: config[k] for k in PARAMS["params"]} == PARAMS["params"] and config["epochs"] == 10  # merged

    # POST /:id/artifacts, both modes -> {"artifact": {...}}
    a = wb.ok("POST", f"{BASE}/{exp}/artifacts", ARTIFACT_S3)["artifact"]
    assert {k: a[k] for k in ARTIFACT_S3} == ARTIFACT_S3 and ISO.match(a["created_at"])
    u = wb.ok("POST", f"{BASE}/{exp}/artifacts", ARTIFACT_UPLOAD)["artifact"]
    assert u["name"] == "results.csv" and u["path"] == "results.csv" and u["type"] == "file"
    assert u["content_type"] == "text/csv" and u["size"] == len(b"id,accuracy\n1,0.95\n")
    # The uploaded bytes are in the blob store, readable through arwx.
    status, blob = wb.request("GET", f"/v1/blobs/{u['sha256']}")
    assert status == 200 and blob == "id,accuracy\n1,0.95\n"

    # POST /:id/pin toggles; PUT /:id/tags replaces
    assert wb.ok("POST", f"{BASE}/{exp}/pin") == {"id": exp, "pinned": True, "message": "Experiment pinned successfully"}
    assert wb.ok("PUT", f"{BASE}/{exp}/tags", TAGS) == {"id": exp, "tags": TAGS["tags"], "message": "Tags updated successfully"}

    # GET list: {count, limit, offset, experiments}
    listed = wb.ok("GET", BASE)
    assert {k: listed[k] for k in ("count", "limit", "offset")} == {"count": 1, "limit": 20, "offset": 0}
    (item,) = listed["experiments"]
    assert set(item) == LIST_FIELDS and item["id"] == exp and item["pinned"] is True and item["tags"] == TAGS["tags"]

    # PUT /:id -> the updated Experiment object; completed finishes the run.
    updated = wb.ok("PUT", f"{BASE}/{exp}", UPDATE)
    assert set(updated) >= EXPERIMENT_FIELDS
    assert updated["name"] == UPDATE["name"] and updated["description"] == UPDATE["description"]
    assert updated["status"] == "completed" and updated["error_message"] == UPDATE["error_message"]
    assert updated["final_metrics"] == [{"key": "accuracy", "value": 0.95}, {"key": "f1_score", "value": 0.92}]

    # Read back through arwx: history, charts, the integrity receipt (intact).
    receipt = wb.wait_intact("run_abc123", 3)
    assert receipt["status"] == "finished" and receipt["points_stored"] == 3 and receipt["intact"], receipt
    rows = wb.ok("GET", "/v1/runs/run_abc123/metrics", params={"keys": "train_loss,val_loss,accuracy"})["rows"]
    assert [(r["step"], r["train_loss"], r["val_loss"], r["accuracy"]) for r in rows] == [(5, 0.25, 0.30, 0.92)]
    chart = wb.ok("GET", f"/v1/projects/{quote(CREATE['name'])}/charts", params={"keys": "val_loss"})
    (series,) = chart["series"]
    assert series["run_id"] == "run_abc123" and series["writer_id"] == "workbench" and series["x"] == [5]
    assert series["value"] == [0.30], series

    # stats, and compare (a second experiment through register)
    stats = wb.ok("GET", f"{BASE}/stats")
    assert stats == {"total": 1, "running": 0, "completed": 1, "failed": 0, "pinned": 1}
    status, reg = wb.post(f"{BASE}/register", REGISTER)
    assert status == 201 and set(reg) == {"experiment_id", "name", "exists"}
    assert reg["name"] == REGISTER["name"] and reg["exists"] is False
    status, again = wb.post(f"{BASE}/register", REGISTER)
    assert status == 200 and again == {**reg, "exists": True}
    other = reg["experiment_id"]
    assert wb.ok("POST", f"{BASE}/{other}/metrics", {"metrics": [{"key": "accuracy", "value": 0.97, "step": 1}]}) == {"logged": 1}
    compared = wb.ok("GET", f"{BASE}/compare", params={"ids": f"{exp},{other}"})["experiments"]
    assert [c["id"] for c in compared] == [exp, other]
    assert set(compared[0]) == {"id", "name", "status", "runCount", "bestRunId", "bestMetrics", "tags", "createdAt"}
    assert compared[0]["bestMetrics"] == {"accuracy": 0.95, "f1_score": 0.92, "train_loss": 0.25, "val_loss": 0.30}
    assert compared[1]["bestMetrics"] == {"accuracy": 0.97} and compared[1]["bestRunId"] == other
    assert wb.receipt(other)["intact"]

    # DELETE -> 204; hidden, never erased: the run and its points stay, restore brings it back.
    assert wb.request("DELETE", f"{BASE}/{exp}") == (204, None)
    assert wb.get(f"{BASE}/{exp}") == (404, {"error": "Experiment not found"})
    assert [e["id"] for e in wb.ok("GET", BASE)["experiments"]] == [other]
    assert wb.receipt("run_abc123")["points_stored"] == 3
    assert [e["id"] for e in wb.ok("GET", BASE, params={"lifecycle_stage": "deleted"})["experiments"]] == [exp]
    assert wb.ok("POST", f"{BASE}/{exp}/restore")["id"] == exp
    assert wb.ok("GET", f"{BASE}/{exp}")["status"] == "completed"


def test_post_with_a_live_name_adds_a_run_and_metrics_follow_the_newest(wb: Api) -> None:
    first = wb.ok("POST", BASE, {"experiment_name": "automl", "run_name": "trial-1", "parameters": [
        {"key": "depth", "value": 3}]})
    second = wb.ok("POST", BASE, {"experiment_name": "automl", "run_name": "trial-2", "status": "running"})
    assert first["id"] == second["id"] and first["run_id"] != second["run_id"]
    assert wb.ok("GET", f"{BASE}/{first['id']}")["runCount"] == 2
    wb.ok("POST", f"{BASE}/{first['id']}/metrics", {"metrics": [{"key": "loss", "value": 1.0}]})
    # A run id works where the document says "Experiment/run ID".
    wb.ok("POST", f"{BASE}/{first['run_id']}/metrics", {"metrics": [{"key": "loss", "value": 2.0, "step": 1}]})
    assert wb.wait_intact(second["run_id"], 1)["points_stored"] == 1
    assert wb.wait_intact(first["run_id"], 1)["points_stored"] == 1
    assert wb.ok("GET", f"/v1/runs/{first['run_id']}")["config"]["depth"] == 3


def test_a_retry_with_the_same_idempotency_key_is_stored_once(wb: Api) -> None:
    exp = wb.ok("POST", f"{BASE}/register", {"name": "retries"})["experiment_id"]
    body = {"metrics": [{"key": "loss", "value": v, "step": i} for i, v in enumerate((0.5, 0.4, 0.3))]}
    for _ in range(3):
        assert wb.ok("POST", f"{BASE}/{exp}/metrics", body, headers={"Idempotency-Key": "batch-1"}) == {"logged": 3}
    body2 = {"metrics": [{"key": "loss", "value": 0.2, "step": 3}]}
    wb.ok("POST", f"{BASE}/{exp}/metrics", body2, headers={"Idempotency-Key": "batch-2"})
    wb.ok("PUT", f"{BASE}/{exp}", {"status": "completed"})
    receipt = wb.wait_intact(exp, 4)  # the lazily made run's id is the experiment's id
    assert receipt["points_stored"] == 4 and receipt["writers"][0]["writer_id"] == "workbench", receipt


def test_list_filters_sort_and_paging(wb: Api) -> None:
    ids = {}
    for name, tags in (("alpha", ["a"]), ("beta", ["b"]), ("gamma", ["a", "b"])):
        ids[name] = wb.ok("POST", f"{BASE}/register", {"name": name, "tags": tags, "description": f"about {name}"})["experiment_id"]
    wb.ok("PUT", f"{BASE}/{ids['beta']}", {"status": "running"})
    wb.ok("POST", f"{BASE}/{ids['gamma']}/pin")

    def names(**params) -> list[str]:  # noqa: ANN003
        return [e["name"] for e in wb.ok("GET", BASE, params=params)["experiments"]]

    assert names(sort="name:asc") == ["gamma", "alpha", "beta"]  # pinned first
    assert names(tag="a", sort="name:asc") == ["gamma", "alpha"]
    assert names(status="running") == ["beta"]
    assert names(pinned="false", sort="name:desc") == ["beta", "alpha"]
    assert names(search="ABOUT al") == ["alpha"]
    page = wb.ok("GET", BASE, params={"limit": 1, "offset": 1, "sort": "name:asc"})
    assert page["count"] == 3 and page["limit"] == 1 and page["offset"] == 1
    assert [e["name"] for e in page["experiments"]] == ["alpha"]
    for bad in ({"sort": "nope"}, {"limit": 0}, {"pinned": "maybe"}, {"status": "weird"}, {"offset": -1}):
        status, body = wb.get(BASE, **bad)
        assert status == 400 and body["error"], (bad, body)


@pytest.mark.parametrize("path,body,message", [
    (BASE, {}, "name is required"),
    (BASE, {"name": "x", "status": "bogus"}, "status must be one of"),
    (BASE, {"name": "x", "tags": "nlp"}, "tags"),
    (BASE, {"name": "x", "parameters": [{"value": 1}]}, "parameters[0]"),
    (f"{BASE}/register", {}, "name"),
    ("{exp}/metrics", {"metrics": [{"key": "ok", "value": 1}, {"key": "bad", "value": "high"}]}, "value"),
    ("{exp}/metrics", {"metrics": [{"key": "ok", "value": 1, "timestamp": "yesterday"}]}, "timestamp"),
    ("{exp}/metrics", {"metrics": [{"key": "ok", "value": 1, "step": -1}]}, "step"),
    ("{exp}/metrics", {}, "metrics"),
    ("{exp}/params", {"params": []}, "params"),
    ("{exp}/artifacts", {"name": "a"}, "either s3_key or content_base64"),
    ("{exp}/artifacts", {"name": "a", "content_base64": "not base64!"}, "content_base64"),
    ("{exp}/artifacts", {"name": "a", "s3_key": "k", "type": "weird"}, "type must be one of"),
])
def test_bad_input_is_a_400_naming_it_and_writes_nothing(wb: Api, path: str, body: dict, message: str) -> None:
    exp = wb.ok("POST", f"{BASE}/register", {"name": "strict"})["experiment_id"]
    wb.ok("POST", f"{BASE}/{exp}/metrics", {"metrics": [{"key": "good", "value": 1.0}]})
    status, out = wb.post(path.replace("{exp}", f"{BASE}/{exp}"), body)
    assert status == 400 and message in out["error"], out
    wb.ok("PUT", f"{BASE}/{exp}", {"status": "failed"})
    receipt = wb.wait_intact(exp, 1)
    assert receipt["points_stored"] == 1 and receipt["status"] == "failed"  # the refused batch wrote nothing


def test_compare_needs_two_and_unknown_ids_are_404(wb: Api) -> None:
    exp = wb.ok("POST", f"{BASE}/register", {"name": "lonely"})["experiment_id"]
    assert wb.get(f"{BASE}/compare", ids=exp)[0] == 400
    assert wb.get(f"{BASE}/compare")[0] == 400
    assert wb.get(f"{BASE}/compare", ids=f"{exp},exp_nope") == (404, {"error": "Experiment not found"})


def test_auth_401_without_a_key_and_404_across_orgs(embedded, wb: Api) -> None:
    exp = wb.ok("POST", BASE, {"name": "private", "run_id": "private-run"})["id"]
    wb.ok("POST", f"{BASE}/{exp}/metrics", METRICS)
    nobody = wb.with_key(None)
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/{exp}"), ("GET", f"{BASE}/stats"),
                         ("POST", f"{BASE}/{exp}/metrics"), ("POST", f"{BASE}/register")):
        assert nobody.request(method, path, body={})[0] == 401, (method, path)
        assert wb.with_key("arwx_live_wrong").request(method, path, body={})[0] == 401
    other = Api(embedded.url, embedded.new_org_key("other", ("read", "write")), key_header="X-API-Key")
    for method, path, body in (
        ("GET", f"{BASE}/{exp}", None), ("PUT", f"{BASE}/{exp}", {"name": "mine"}), ("DELETE", f"{BASE}/{exp}", None),
        ("POST", f"{BASE}/{exp}/pin", None), ("PUT", f"{BASE}/{exp}/tags", TAGS),
        ("POST", f"{BASE}/{exp}/metrics", METRICS), ("POST", f"{BASE}/private-run/metrics", METRICS),
        ("POST", f"{BASE}/{exp}/params", PARAMS), ("POST", f"{BASE}/{exp}/artifacts", ARTIFACT_S3),
        ("POST", f"{BASE}/{exp}/restore", None),
    ):
        assert other.request(method, path, body=body) == (404, {"error": "Experiment not found"}), (method, path)
    assert other.get(f"{BASE}/compare", ids=f"{exp},{exp}")[0] == 404
    assert other.ok("GET", BASE)["count"] == 0 and other.ok("GET", f"{BASE}/stats")["total"] == 0
    # The same name in another org is another experiment.
    assert other.ok("POST", f"{BASE}/register", {"name": "private"})["experiment_id"] != exp
    wait_for(lambda: wb.receipt("private-run")["points_stored"] == 3, 30, 0.05, "a's points stored")
    assert wb.ok("GET", f"{BASE}/{exp}")["pinned"] is False


def test_scopes_map_read_and_write(embedded, wb: Api) -> None:
    exp = wb.ok("POST", f"{BASE}/register", {"name": "scoped"})["experiment_id"]
    org_key = embedded.call(embedded.server.tenancy.authenticate(wb.key))
    tenancy = embedded.server.tenancy
    reader = wb.with_key(embedded.call(tenancy.create_key(org_key.org, "r", frozenset({"read"})))[1])
    writer = wb.with_key(embedded.call(tenancy.create_key(org_key.org, "w", frozenset({"write"})))[1])
    assert reader.ok("GET", f"{BASE}/{exp}")["id"] == exp and reader.ok("GET", f"{BASE}/stats")["total"] == 1
    for method, path in (("POST", f"{BASE}/{exp}/metrics"), ("POST", f"{BASE}/register"), ("PUT", f"{BASE}/{exp}/tags"),
                         ("DELETE", f"{BASE}/{exp}")):
        status, body = reader.request(method, path, body={})
        assert status == 403 and body["required_scope"] == "write", (method, path, body)
    assert writer.ok("POST", f"{BASE}/{exp}/metrics", METRICS) == {"logged": 3}
    for path in (BASE, f"{BASE}/{exp}", f"{BASE}/stats", f"{BASE}/compare?ids={exp},{exp}"):
        status, body = writer.get(path)
        assert status == 403 and body["required_scope"] == "read", (path, body)


def test_concurrent_registers_of_one_name_make_one_experiment(wb: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: wb.post(f"{BASE}/register", {"name": "raced"}), range(8)))
    assert {b["experiment_id"] for _, b in got} == {got[0][1]["experiment_id"]}
    assert sorted(s for s, _ in got) == [200] * 7 + [201]


def test_upload_is_content_addressed_and_big_bodies_are_413(embedded, wb: Api) -> None:
    exp = wb.ok("POST", f"{BASE}/register", {"name": "uploads"})["experiment_id"]
    data = bytes(range(256)) * 64
    a = wb.ok("POST", f"{BASE}/{exp}/artifacts", {"name": "w.bin", "content_base64": base64.b64encode(data).decode()})
    import hashlib

    assert a["artifact"]["sha256"] == hashlib.sha256(data).hexdigest() and a["artifact"]["size"] == len(data)
    too_big = embedded.server.settings.max_body_bytes + 1
    status, body = wb.post(f"{BASE}/{exp}/artifacts", raw=b"x" * too_big)
    assert status == 413 and body["error"], body


def test_ml_services_create_on_the_same_path_makes_an_experiment_without_a_run(wb: Api) -> None:
    """ml-service's document also owns POST /api/v1/experiments (tags an object): served by the same handler."""
    body = {"name": "churn", "description": "ml-service style", "artifact_location": "s3://bucket/churn",
            "tags": {"team": "growth"}}
    status, made = wb.post(BASE, body)
    assert status == 201, made
    assert made["experiment_id"] == made["id"] and made["name"] == "churn" and made["tags"] == {"team": "growth"}
    assert made["lifecycle_stage"] == "active" and made["artifact_location"] == "s3://bucket/churn"
    assert made["runCount"] == 0 and made["bestRunId"] is None
    status, again = wb.post(BASE, body)
    assert status == 409 and "already exists" in again["error"], again
    assert [e["id"] for e in wb.ok("GET", BASE, params={"tag": "team"})["experiments"]] == [made["id"]]
    wb.request("DELETE", f"{BASE}/{made['id']}")
    assert wb.ok("GET", BASE, params={"lifecycle_stage": "deleted"})["experiments"][0]["id"] == made["id"]
    assert wb.ok("POST", f"{BASE}/{made['id']}/restore")["lifecycle_stage"] == "active"
