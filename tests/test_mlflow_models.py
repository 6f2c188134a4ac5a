"""MLflow 3's logged models and model registry on arwx (issue 19), with the real client.

``tests/mlflow_scripts/models.py`` logs two pyfunc models into the registry,
moves an alias and stages, loads the model back by alias, version and stage,
edits and deletes; what it read back through MLflow is checked here, and the
same registry is checked through arwx's own artifacts API (versions, refs, the
ref log) and the run's config and project.
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

SCRIPT = Path(__file__).parent / "mlflow_scripts" / "models.py"
M = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tmp_path_factory.mktemp("mlflow-models")).start()
    yield srv
    srv.terminate()


@pytest.fixture(scope="module")
def out(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=server.key,
               MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", GIT_PYTHON_REFRESH="quiet")
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, cwd=tmp_path_factory.mktemp("models-cwd"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_log_model_register_alias_and_load_back(out: dict) -> None:
    assert out["versions"] == ["1", "2"]
    one, two = out["model_ids"]
    assert one.startswith("m-") and two.startswith("m-") and one != two
    assert out["logged"] == {
        "name": "adder-one", "status": "READY", "source_run_id": out["run_id"], "params": {"k": "1", "kind": "adder"},
        "tags": {"flavor": "pyfunc"}, "model_type": "adder",
        "artifact_location": f"mlflow-artifacts:/1/models/{one}/artifacts"}
    assert out["searched_models"] == ["adder-one", "adder-two"]
    assert out["run_outputs"] == [one]
    # Loaded back through the registry: the bytes went up through the artifact proxy and came back.
    assert out["champion"] == "1" and out["predict_champion"] == [2, 3]
    assert out["predict_moved"] == [3, 4] and out["predict_v1"] == [2] and out["predict_production"] == [3]
    assert out["stages"] == {"1": "Archived", "2": "Production"} and out["latest_production"] == ["2"]
    assert out["registered"] == {"description": "adds k", "tags": {"owner": "ml"}, "aliases": {"champion": "2"}}
    assert out["v1"]["description"] == "the first" and out["v1"]["tags"]["validated"] == "yes"
    assert out["v1"]["run_id"] == out["run_id"] and out["v1"]["source"] == f"models:/{one}"
    assert out["search_registered"] == ["adder"] and out["search_like"] == ["adder"]
    assert out["aliases_after_delete"] == {}
    assert out["after_rename_delete"] == ["adder"] and out["duplicate"] == "RESOURCE_ALREADY_EXISTS"
    assert out["after_version_delete"] == ["2"]


def test_the_registry_is_arwx_artifacts_and_refs(out: dict, server: ServerProcess) -> None:
    api = server.api()
    art = api.ok("GET", "/v1/artifacts/adder", params={"project": "mlflow-registry"})
    assert art["type"] == "model" and [v["version"] for v in art["versions"]] == ["v2", "v1"]
    # champion and production follow every move the client made (the alias's removal leaves the ref).
    assert art["refs"] == {"champion": "v2", "production": "v2", "latest": "v2"}
    moves = [(m["ref"], m["from"], m["to"]) for m in reversed(art["ref_log"])]
    assert moves == [("champion", None, "v1"), ("champion", "v1", "v2"), ("production", None, "v1"),
                     ("production", "v1", "v2")]
    files = api.ok("GET", "/v1/artifacts/adder/champion", params={"project": "mlflow-registry"})["manifest"]
    assert "MLmodel" in {f["path"] for f in files} and "python_model.pkl" in {f["path"] for f in files}
    # The version MLflow deleted stays in arwx (versions are immutable); MLflow no longer lists it.
    status, body = api.get(f"{M}/model-versions/get", name="adder", version="1")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    v2 = api.ok("GET", f"{M}/model-versions/get", params={"name": "adder", "version": "2"})["model_version"]
    assert v2["model_id"] == out["model_ids"][1] and v2["status"] == "READY"


def test_experiment_is_a_project_and_params_tags_are_run_config(out: dict, server: ServerProcess) -> None:
    api = server.api()
    assert api.ok("GET", "/v1/projects/mlflow-models")["name"] == "mlflow-models"
    run = api.ok("GET", f"/v1/runs/{out['run_id']}")
    cfg = run["config"]
    assert cfg["k"] == "1" and cfg["kind"] == "adder", cfg
    assert cfg["mlflow"]["experiment_id"] == "1" and cfg["mlflow"]["tags"]["team"] == "models", cfg
    assert run["project"] == "mlflow-models"


def test_model_routes_fail_closed_and_stay_in_their_org(api: Api, embedded) -> None:
    e = api.ok("POST", f"{M}/experiments/create", {"name": "models-auth"})["experiment_id"]
    run = api.ok("POST", f"{M}/runs/create", {"experiment_id": e})["run"]["info"]["run_id"]
    one = api.ok("POST", f"{M}/logged-models", {"experiment_id": e, "name": "m", "source_run_id": run})
    one = one["model"]["info"]["model_id"]
    status, _ = api.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{e}/models/{one}/artifacts/MLmodel",
                            raw=b"flavors: {}")
    assert status == 200
    api.ok("POST", f"{M}/registered-models/create", {"name": "auth-model"})
    v = api.ok("POST", f"{M}/model-versions/create", {"name": "auth-model", "source": f"models:/{one}"})
    assert v["model_version"]["version"] == "1" and v["model_version"]["model_id"] == one
    other = api.with_key(embedded.new_org_key("other-models"))
    paths = [("GET", f"{M}/logged-models/{one}", None),
             ("PATCH", f"{M}/logged-models/{one}", {"status": "LOGGED_MODEL_READY"}),
             ("POST", f"{M}/logged-models/{one}/params", {"params": [{"key": "a", "value": "1"}]}),
             ("GET", f"{M}/registered-models/get?name=auth-model", None),
             ("GET", f"{M}/model-versions/get?name=auth-model&version=1", None),
             ("POST", f"{M}/registered-models/alias", {"name": "auth-model", "alias": "x", "version": "1"}),
             ("POST", f"{M}/model-versions/create", {"name": "auth-model", "source": f"models:/{one}"}),
             ("GET", f"/api/2.0/mlflow-artifacts/artifacts?path={e}/models/{one}/artifacts", None),
             ("GET", f"/api/2.0/mlflow-artifacts/artifacts/{e}/models/{one}/artifacts/MLmodel", None)]
    for method, path, body in paths:
        status, res = api.with_key(None).request(method, path, body=body)
        assert status == 401 and res["error_code"] == "UNAUTHENTICATED", (path, status, res)
        status, res = other.request(method, path, body=body)
        assert status == 404 and res["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, status, res)
    assert other.ok("GET", f"{M}/registered-models/search") == {"registered_models": []}
    assert other.ok("POST", f"{M}/logged-models/search", {"experiment_ids": [e]}) == {"models": []}
    status, res = api.get("/api/3.0/mlflow/server-info")
    assert status == 200 and res["multipart_uploads_enabled"] is False
    for bad in ({"name": "auth-model", "alias": "latest", "version": "1"},
                {"name": "auth-model", "alias": "ok", "version": "9"},
                {"name": "auth-model", "alias": "ok", "version": "x"}):
        status, res = api.post(f"{M}/registered-models/alias", bad)
        assert 400 <= status < 500 and set(res) == {"error_code", "message"}, (bad, status, res)
    status, res = api.post(f"{M}/model-versions/create", {"name": "auth-model", "source": "s3://elsewhere/model"})
    assert status == 400 and res["error_code"] == "INVALID_PARAMETER_VALUE"
    status, res = api.post(f"{M}/registered-models/create", {"name": "auth-model"})
    assert status == 400 and res["error_code"] == "RESOURCE_ALREADY_EXISTS"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                     max_leaves=12)
_FIELDS = ["name", "new_name", "version", "alias", "source", "run_id", "model_id", "experiment_id", "stage",
           "archive_existing_versions", "description", "tags", "params", "key", "value", "status", "models",
           "experiment_ids", "max_results", "page_token", "source_run_id", "model_type"]
_ROUTES = [("POST", "logged-models"), ("POST", "logged-models/search"), ("POST", "runs/outputs"),
           ("PATCH", "logged-models/m-0123456789abcdef0123456789abcdef"),
           ("POST", "registered-models/create"), ("PATCH", "registered-models/update"),
           ("POST", "registered-models/rename"), ("DELETE", "registered-models/delete"),
           ("POST", "registered-models/set-tag"), ("POST", "registered-models/alias"),
           ("DELETE", "registered-models/alias"), ("POST", "registered-models/get-latest-versions"),
           ("POST", "model-versions/create"), ("PATCH", "model-versions/update"),
           ("POST", "model-versions/transition-stage"), ("DELETE", "model-versions/delete"),
           ("POST", "model-versions/set-tag")]


@pytest.fixture(scope="module")
def fuzz_api(embedded) -> Api:
    api = Api(embedded.url, embedded.new_org_key("fuzz-models"))
    api.ok("POST", f"{M}/registered-models/create", {"name": "fuzzed"})
    return api


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(_ROUTES),
       body=st.dictionaries(st.sampled_from(_FIELDS), _json | st.just("fuzzed"), max_size=6) | _json)
def test_fuzzed_model_bodies_never_5xx(fuzz_api: Api, route: tuple[str, str], body: object) -> None:
    method, path = route
    status, out = fuzz_api.request(method, f"{M}/{path}", body=body)
    assert status < 500 and isinstance(out, dict), (route, body, status, out)
    if status >= 400:
        assert set(out) == {"error_code", "message"}, out
