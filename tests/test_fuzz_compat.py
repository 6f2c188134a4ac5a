"""The compatibility adapters under generated bad input (issue 17): never a 5xx, always the
adapter's own error shape, and a refused request writes nothing (the run's writer total and
its config are what the accepted requests made them).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Api

HS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))

_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=12))
_json = st.recursive(_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                     max_leaves=8)
_keys = st.sampled_from(["loss", "step", "metrics", "a,b", "", "x" * 300, "é", "\x01", "experiment", "name", "tags",
                         "status", "error", "run_id", "artifact", "stage", "description", "parent_run_id", "key",
                         "value", "note"])


@pytest.fixture(scope="module")
def fuzz_api(embedded) -> Api:
    return Api(embedded.url, embedded.new_org_key("fuzz-compat"))


@pytest.fixture(scope="module")
def chachaml_run(fuzz_api: Api) -> dict:
    run_id = fuzz_api.ok("POST", "/api/w/runs", {"experiment": "fuzz"})["id"]
    return {"id": run_id, "accepted": 0}


@HS
@given(path=st.sampled_from(["params", "metrics", "end?", "runs", "models", "tags", "note"]),
       body=st.dictionaries(_keys, _json, max_size=5) | _json,
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
def test_chachaml_bodies_never_5xx_and_a_refused_request_writes_nothing(fuzz_api: Api, chachaml_run: dict, path: str,
                                                                         body: object, content_type: str) -> None:
    run_id = chachaml_run["id"]
    if path == "end?":  # never end the shared run: a fresh one per example
        target = f"/api/w/runs/{fuzz_api.ok('POST', '/api/w/runs', {})['id']}/end"
    elif path in ("runs", "models"):
        target = f"/api/w/{path}"
    elif path in ("tags", "note"):  # chachaml's two writes outside /api/w
        target = f"/api/{path}/{run_id}"
    else:
        target = f"/api/w/runs/{run_id}/{path}"
    before = fuzz_api.ok("GET", f"/v1/runs/{run_id}")["config"]
    headers = {"Content-Type": content_type} if content_type else {}
    status, out = fuzz_api.post(target, body, headers=headers)
    assert status < 500, (target, body, status, out)
    if status >= 400:
        assert isinstance(out, dict) and set(out) == {"error"} and out["error"], out
        assert fuzz_api.ok("GET", f"/v1/runs/{run_id}")["config"] == before
    elif path == "metrics":
        m = body.get("metrics") if isinstance(body.get("metrics"), dict) else {k: v for k, v in body.items() if k != "step"}
        chachaml_run["accepted"] += len(m)


def test_chachaml_fuzzed_run_holds_exactly_what_was_accepted(fuzz_api: Api, chachaml_run: dict) -> None:
    """Runs after the fuzzer: the writer's total is the accepted points, all stored, the receipt intact."""
    run_id = chachaml_run["id"]
    fuzz_api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"sentinel": 1.0})
    fuzz_api.ok("POST", f"/api/w/runs/{run_id}/end", {"status": "completed"})
    n = chachaml_run["accepted"] + 1
    r = fuzz_api.wait_intact(run_id, n)
    assert r["points_stored"] == n and r["writers"][0]["sent"] == n, r


@HS
@given(path=st.sampled_from(["/api/runs", "/api/runs/x", "/api/models", "/api/models/x", "/api/experiments",
                              "/api/compare", "/api/search", "/api/export", "/api/artifacts/{run}/x/download",
                              "/api/artifacts/x/download", "/api/tags/{run}", "/api/datasets/x", "/api/diff/x/1/2"]),
       params=st.dictionaries(st.sampled_from(["experiment", "status", "limit", "ids", "metric_key", "op",
                                               "metric_value"]),
                              st.text(max_size=20) | st.sampled_from([">", "<=", "=", "0.5", "loss"]), max_size=5))
def test_chachaml_queries_never_5xx(fuzz_api: Api, chachaml_run: dict, path: str, params: dict) -> None:
    if "ids" in params:
        params["ids"] = f"{chachaml_run['id']},{params['ids']}"
    status, out = fuzz_api.get(path.replace("{run}", chachaml_run["id"]), **params)
    assert status < 500, (path, params, status, out)
    if status >= 400:
        assert set(out) == {"error"}, out


@pytest.fixture(scope="module")
def mlservice_run(fuzz_api: Api) -> dict:
    exp = fuzz_api.ok("POST", "/api/v1/experiments", {"name": "fuzz-ms", "tags": {"k": "v"}})
    run_id = fuzz_api.ok("POST", "/api/v1/experiments/runs", {"experiment_id": exp["id"]})["run_id"]
    return {"id": run_id, "experiment_id": exp["id"], "accepted": 0}


_ms_keys = st.sampled_from(["metrics", "params", "tags", "step", "timestamp", "key", "value", "run_ids",
                            "experiment_id", "name", "description", "status"])
_metric_item = st.fixed_dictionaries({"key": st.sampled_from(["loss", "a,b", "", "é"]), "value": _json},
                                     optional={"step": _json, "timestamp": _json})


@HS
@given(path=st.sampled_from(["log-metrics", "log-params", "log-batch", "compare", "runs", "end?"]),
       body=st.dictionaries(_ms_keys, _json | st.lists(_metric_item, max_size=3), max_size=4)
       | st.fixed_dictionaries({"metrics": st.lists(_metric_item, max_size=4)}) | _json)
def test_mlservice_bodies_never_5xx_and_a_refused_batch_writes_nothing(fuzz_api: Api, mlservice_run: dict, path: str,
                                                                        body: object) -> None:
    run_id, base = mlservice_run["id"], "/api/v1/experiments/runs"
    if path == "end?":
        other = fuzz_api.ok("POST", base, {"experiment_id": mlservice_run["experiment_id"]})["run_id"]
        target = f"{base}/{other}/end"
    elif path == "compare":
        target = f"{base}/compare"
    elif path == "runs":
        target = base
    else:
        target = f"{base}/{run_id}/{path}"
    before = fuzz_api.ok("GET", f"/v1/runs/{run_id}")["config"]
    status, out = fuzz_api.post(target, body)
    assert status < 500, (target, body, status, out)
    if status >= 400:
        assert isinstance(out, dict) and set(out) == {"error"} and out["error"], out
        assert fuzz_api.ok("GET", f"/v1/runs/{run_id}")["config"] == before
    elif path == "log-metrics":
        mlservice_run["accepted"] += len(body["metrics"])
    elif path == "log-batch":
        mlservice_run["accepted"] += len(body.get("metrics") or [])


def test_mlservice_fuzzed_run_holds_exactly_what_was_accepted(fuzz_api: Api, mlservice_run: dict) -> None:
    run_id, base = mlservice_run["id"], "/api/v1/experiments/runs"
    fuzz_api.ok("POST", f"{base}/{run_id}/log-metrics", {"metrics": {"sentinel": 1.0}})
    fuzz_api.ok("POST", f"{base}/{run_id}/end", {})
    n = mlservice_run["accepted"] + 1
    r = fuzz_api.wait_intact(run_id, n)
    assert r["points_stored"] == n and r["writers"][0]["sent"] == n, r
