"""The chachaml adapter (issue 17): chachaml's curl and ``requests`` examples run against arwx
with only the host and an API key header changed (``docs/compat.md``), on a real server.

- The write API document's examples, verbatim but for ``HOST`` and the key header,
  answer field by field what the document says; the run then reads back through
  arwx's own API (history, charts, an intact integrity receipt) and chachaml's read API.
- Models are artifact versions with ``production`` as a ref; promoting demotes the
  previous holder to ``archived``.
- chachaml's errors: ``{"error": "no such run"}`` for a missing or ended run, 400 on a
  Content-Type mismatch, nothing of a refused request written; 404 across orgs.
- A request re-sent with the same ``Idempotency-Key`` is stored once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
from pathlib import Path

import pytest
import requests

from tests.helpers import Api

# The document's curl example, verbatim but for HOST and the key header (-H "$KEY_HEADER").
CURL_EXAMPLE = r"""
# Start a run — returns the run id
RUN_ID=$(curl -s -X POST $HOST/api/w/runs \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d '{"experiment":"iris","name":"from-python","tags":{"author":"maria"}}' \
| jq -r .id)
echo "Run id: $RUN_ID"
# Log params
curl -X POST $HOST/api/w/runs/$RUN_ID/params \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d '{"lr":0.01,"epochs":100}'
# Log a metric (single)
curl -X POST $HOST/api/w/runs/$RUN_ID/metrics \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d '{"accuracy":0.94}'
# Log time-series metrics
for i in 0 1 2 3 4; do
curl -X POST $HOST/api/w/runs/$RUN_ID/metrics \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d "{\"loss\":$(echo "scale=3; 1.0 / ($i + 1)" | bc),\"step\":$i}"
done
# Optionally upload an artifact (raw bytes)
curl -X POST "$HOST/api/w/runs/$RUN_ID/artifacts?name=model.pkl" \
-H "$KEY_HEADER" \
-H 'Content-Type: application/octet-stream' \
--data-binary @model.pkl
# End the run
curl -X POST $HOST/api/w/runs/$RUN_ID/end \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d '{"status":"completed"}'
curl -X POST $HOST/api/w/models \
-H "$KEY_HEADER" \
-H 'Content-Type: application/json' \
-d "{\"name\":\"iris-classifier\",
\"run_id\":\"$RUN_ID\",
\"artifact\":\"model.pkl\",
\"stage\":\"staging\",
\"description\":\"first cut\"}"
"""

MODEL_BYTES = bytes(range(256)) * 40


def _answers(out: str) -> list:
    """The JSON documents curl printed back to back (no newline between them)."""
    dec, i, docs = json.JSONDecoder(), 0, []
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        doc, i = dec.raw_decode(out, i)
        docs.append(doc)
    return docs


def _curl_example(api: Api, cwd: Path) -> tuple[str, list]:
    (cwd / "model.pkl").write_bytes(MODEL_BYTES)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", CURL_EXAMPLE], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOST": api.url,
                                            "KEY_HEADER": f"Authorization: Bearer {api.key}"})
    assert proc.returncode == 0, proc.stderr
    first, _, rest = proc.stdout.partition("\n")
    assert first.startswith("Run id: ")
    return first.removeprefix("Run id: "), _answers(rest)


def test_the_curl_example_works_unchanged_and_reads_back_through_arwx(api: Api, tmp_path: Path) -> None:
    run_id, answers = _curl_example(api, tmp_path)
    assert len(run_id) == 36 and run_id.count("-") == 4, run_id  # a UUID, as chachaml makes
    params, accuracy, *losses, artifact, end, model = answers
    assert params == {"ok": True} and accuracy == {"ok": True} and end == {"ok": True}
    assert losses == [{"ok": True}] * 5
    assert artifact == {"ok": True, "sha256": __import__("hashlib").sha256(MODEL_BYTES).hexdigest(),
                        "size": len(MODEL_BYTES), "name": "model.pkl"}
    assert model["name"] == "iris-classifier" and model["version"] == 1 and model["stage"] == "staging"
    assert model["run-id"] == run_id and model["description"] == "first cut" and model["artifact"] == "model.pkl"

    # arwx: one run in project "iris", params and tags in its config, finished.
    run = api.ok("GET", f"/v1/runs/{run_id}")
    assert (run["project"], run["name"], run["status"]) == ("iris", "from-python", "finished")
    assert run["config"]["params"] == {"lr": 0.01, "epochs": 100}
    assert run["config"]["tags"] == {"author": "maria"}
    r = api.wait_intact(run_id, 6)
    assert r["points_stored"] == 6 and r["lost"] == 0 and r["intact"], r
    (w,) = r["writers"]
    assert (w["writer_id"], w["sent"], w["seq_min"], w["seq_max"]) == ("chachaml", 6, 0, 5), w
    hist = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "loss,accuracy"})
    assert [(row["step"], row.get("loss")) for row in hist["rows"] if row.get("loss") is not None] == [
        (0, 1.0), (1, 0.5), (2, 0.333), (3, 0.25), (4, 0.2)]
    assert [row["accuracy"] for row in hist["rows"] if row.get("accuracy") is not None] == [0.94]
    chart = api.ok("GET", "/v1/projects/iris/charts", params={"keys": "loss", "runs": run_id})
    (s,) = chart["series"]
    assert s["run_id"] == run_id and s["x"] == [0, 1, 2, 3, 4] and s["value"] == [1.0, 0.5, 0.333, 0.25, 0.2]
    status, blob = api.request("GET", f"/v1/blobs/{artifact['sha256']}")
    assert status == 200

    # chachaml's read API: the run with params, metrics and artifacts.
    detail = api.ok("GET", f"/api/runs/{run_id}")
    assert (detail["id"], detail["experiment"], detail["name"], detail["status"]) == (
        run_id, "iris", "from-python", "completed")
    assert detail["params"] == {"lr": 0.01, "epochs": 100} and detail["tags"] == {"author": "maria"}
    assert detail["end-time"] >= detail["start-time"]
    assert [(m["key"], m["step"], m["value"]) for m in detail["metrics"]] == [
        ("accuracy", 0, 0.94), ("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, 0.333), ("loss", 3, 0.25),
        ("loss", 4, 0.2)]
    (art,) = detail["artifacts"]
    assert (art["name"], art["size"], art["hash"]) == ("model.pkl", len(MODEL_BYTES), artifact["sha256"])
    listed = api.ok("GET", "/api/runs", params={"experiment": "iris"})
    assert [x["id"] for x in listed] == [run_id] and listed[0]["status"] == "completed"
    assert api.ok("GET", "/api/runs", params={"status": "running"}) == []
    assert "iris" in api.ok("GET", "/api/experiments")
    models = api.ok("GET", "/api/models")
    assert [(m["name"], m["versions"]) for m in models] == [("iris-classifier", 1)]
    one = api.ok("GET", "/api/models/iris-classifier")
    assert [v["stage"] for v in one["versions"]] == ["staging"]


def test_the_requests_example_works_unchanged(api: Api) -> None:
    HOST = api.url
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api.key}"  # the one added line
    # Start
    r = session.post(f"{HOST}/api/w/runs",
                     json={"experiment": "iris",
                           "name": "from-python",
                           "tags": {"author": "maria"}})
    r.raise_for_status()
    run_id = r.json()["id"]
    # Params
    assert session.post(f"{HOST}/api/w/runs/{run_id}/params",
                        json={"lr": 0.01, "epochs": 100}).json() == {"ok": True}
    # Metric per epoch
    for epoch in range(100):
        resp = session.post(f"{HOST}/api/w/runs/{run_id}/metrics",
                            json={"loss": 1.0 / (epoch + 1), "step": epoch})
        assert resp.status_code == 200 and resp.json() == {"ok": True}
    # Final accuracy
    session.post(f"{HOST}/api/w/runs/{run_id}/metrics",
                 json={"accuracy": 0.94})
    # End
    assert session.post(f"{HOST}/api/w/runs/{run_id}/end",
                        json={"status": "completed"}).json() == {"ok": True}
    r = api.wait_intact(run_id, 101)
    assert r["points_stored"] == 101 and r["writers"][0]["sent"] == 101, r
    hist = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "loss", "limit": 1000})
    assert [(row["step"], row["loss"]) for row in hist["rows"]] == [(e, 1.0 / (e + 1)) for e in range(100)]
    # After /end, logging answers chachaml's error.
    resp = session.post(f"{HOST}/api/w/runs/{run_id}/metrics", json={"loss": 1})
    assert (resp.status_code, resp.json()) == (404, {"error": "no such run"})


def _run(api: Api, experiment: str = "e") -> str:
    return api.ok("POST", "/api/w/runs", {"experiment": experiment})["id"]


def _upload(api: Api, run_id: str, name: str, data: bytes) -> dict:
    return api.ok("POST", f"/api/w/runs/{run_id}/artifacts", raw=data, params={"name": name},
                  headers={"Content-Type": "application/octet-stream"})


def test_promoting_to_production_demotes_the_previous_holder(api: Api) -> None:
    stages = {}
    for i in range(3):
        run_id = _run(api, "models")
        _upload(api, run_id, "model.pkl", f"weights {i}".encode())
        stage = "production" if i < 2 else "staging"
        v = api.ok("POST", "/api/w/models", {"name": "clf", "run_id": run_id, "artifact": "model.pkl", "stage": stage})
        assert (v["name"], v["version"], v["stage"]) == ("clf", i + 1, stage)
        stages[i + 1] = run_id
    one = api.ok("GET", "/api/models/clf")
    assert [(v["version"], v["stage"]) for v in one["versions"]] == [(1, "archived"), (2, "production"), (3, "staging")]
    # The arwx artifact: versions v1..v3, the production ref on v2, the move in the ref log.
    art = api.ok("GET", "/v1/artifacts/clf")
    assert art["type"] == "model" and art["refs"]["production"] == "v2" and art["project"] == "models"
    assert [(m["ref"], m["from"], m["to"]) for m in art["ref_log"]] == [("production", "v1", "v2"),
                                                                      ("production", None, "v1")]
    # Promote v3 by registering its bytes again with stage production: v2 is archived.
    v3 = api.ok("POST", "/api/w/models", {"name": "clf", "run_id": stages[3], "artifact": "model.pkl",
                                          "stage": "production"})
    assert (v3["version"], v3["stage"]) == (3, "production")
    one = api.ok("GET", "/api/models/clf")
    assert [v["stage"] for v in one["versions"]] == ["archived", "archived", "production"]
    # The production holder cannot be moved to another stage here (the ref cannot be taken back).
    status, out = api.post("/api/w/models", {"name": "clf", "run_id": stages[3], "artifact": "model.pkl",
                                             "stage": "staging"})
    assert status == 409 and "production" in out["error"], out
    assert api.ok("GET", "/api/models")[0]["production-version"] == 3


def test_errors_in_chachamls_shape_and_nothing_of_a_refused_request_is_written(api: Api, embedded) -> None:
    run_id = _run(api)
    for path in ("params", "metrics"):
        assert api.post(f"/api/w/runs/nope/{path}", {"a": 1}) == (404, {"error": "no such run"})
    assert api.post("/api/w/runs/nope/end", {}) == (404, {"error": "no such run"})
    # Content-Type mismatches: JSON endpoints take JSON, artifacts take octet-stream.
    status, out = api.post(f"/api/w/runs/{run_id}/metrics", raw=b"loss=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "application/json" in out["error"], out
    status, out = api.post(f"/api/w/runs/{run_id}/artifacts", raw=b"{}", params={"name": "x"},
                           headers={"Content-Type": "application/json"})
    assert status == 400 and "octet-stream" in out["error"], out
    # A bad value anywhere refuses the whole request: nothing of it is stored.
    for bad in ({"loss": 1, "acc": "high"}, {"loss": 1, "step": -1}, {"loss": 1, "a,b": 2}, {"loss": True},
                {"loss": 1, "step": 1.5}, [1, 2], {"loss": 1, "x": None}):
        status, out = api.post(f"/api/w/runs/{run_id}/metrics", bad)
        assert status == 400 and set(out) == {"error"}, (bad, status, out)
    status, out = api.post(f"/api/w/runs/{run_id}/metrics", raw=b'{"loss": 1', headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON" in out["error"]
    assert api.post(f"/api/w/runs/{run_id}/end", {"status": "done"})[0] == 400
    # Params are immutable: another value is refused, the same one is harmless.
    api.ok("POST", f"/api/w/runs/{run_id}/params", {"lr": 0.1})
    api.ok("POST", f"/api/w/runs/{run_id}/params", {"lr": 0.1})
    status, out = api.post(f"/api/w/runs/{run_id}/params", {"lr": 0.2, "new": 1})
    assert status == 409 and "lr" in out["error"]
    assert api.ok("GET", f"/v1/runs/{run_id}")["config"]["params"] == {"lr": 0.1}
    api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"loss": 0.5, "step": 3})
    api.ok("POST", f"/api/w/runs/{run_id}/end", {"status": "failed", "error": "OOM"})
    r = api.wait_intact(run_id, 1)
    assert r["points_stored"] == 1 and r["writers"][0]["sent"] == 1, r
    detail = api.ok("GET", f"/api/runs/{run_id}")
    assert detail["status"] == "failed" and detail["error"] == "OOM"
    assert [(m["key"], m["step"], m["value"]) for m in detail["metrics"]] == [("loss", 3, 0.5)]
    # Ended: no more params or metrics; ending again changes nothing.
    assert api.post(f"/api/w/runs/{run_id}/params", {"b": 1}) == (404, {"error": "no such run"})
    assert api.ok("POST", f"/api/w/runs/{run_id}/end", {"status": "completed"}) == {"ok": True}
    assert api.ok("GET", f"/v1/runs/{run_id}")["status"] == "failed"
    # Registering an artifact the run does not have, or of a missing run: 404.
    assert api.post("/api/w/models", {"name": "m", "run_id": run_id, "artifact": "none"})[0] == 404
    assert api.post("/api/w/models", {"name": "m", "run_id": "nope", "artifact": "x"})[0] == 404
    assert api.post("/api/w/models", {"name": "bad name!", "run_id": run_id, "artifact": "x"})[0] == 400
    # Another org: the same run id is no run at all.
    other = Api(embedded.url, embedded.new_org_key("other"))
    assert other.post(f"/api/w/runs/{run_id}/metrics", {"a": 1}) == (404, {"error": "no such run"})
    assert other.get(f"/api/runs/{run_id}") == (404, {"error": "no such run"})
    assert other.request("POST", f"/api/w/runs/{run_id}/artifacts", raw=b"x", params={"name": "n"})[0] == 404
    assert other.get("/api/runs") == (200, [])
    assert other.get("/api/models/clf")[0] == 404


def test_a_request_resent_with_the_same_idempotency_key_is_stored_once(api: Api) -> None:
    run_id = _run(api)
    for _ in range(3):
        out = api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"loss": 0.5, "acc": 0.9, "step": 1},
                     headers={"Idempotency-Key": "epoch-1"})
        assert out == {"ok": True}
    # Without a key, two identical requests are two requests (chachaml stores both).
    for _ in range(2):
        api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"loss": 0.4, "step": 2})
    # A re-sent start is one run.
    a = api.ok("POST", "/api/w/runs", {"experiment": "e"}, headers={"Idempotency-Key": "start-1"})
    b = api.ok("POST", "/api/w/runs", {"experiment": "e"}, headers={"Idempotency-Key": "start-1"})
    assert a["id"] == b["id"]
    api.ok("POST", f"/api/w/runs/{run_id}/end", {})
    r = api.wait_intact(run_id, 4)
    assert r["points_stored"] == 4 and r["writers"][0]["sent"] == 4, r
    detail = api.ok("GET", f"/api/runs/{run_id}")
    assert sorted((m["key"], m["step"]) for m in detail["metrics"]) == [("acc", 1), ("loss", 1), ("loss", 2),
                                                                        ("loss", 2)]
    assert not any(math.isnan(m["value"]) for m in detail["metrics"])


@pytest.mark.parametrize("body", [{}, {"metrics": {"a": 1, "b": 2}, "step": 7}])
def test_metrics_body_forms(api: Api, body: dict) -> None:
    run_id = _run(api)
    api.ok("POST", f"/api/w/runs/{run_id}/metrics", body)
    api.ok("POST", f"/api/w/runs/{run_id}/end", {"status": "completed"})
    n = len(body.get("metrics", {}))
    r = api.wait_intact(run_id, n)
    assert r["points_stored"] == n


# chachaml's Web UI JSON API (its doc/WEB_UI.md, "The JSON API"): the read examples as written,
# with the run ids and artifact id of runs logged through the write API above.
READ_EXAMPLES = r"""
curl -s "$HOST/api/compare?ids=$A,$B" -H "$KEY_HEADER"; echo
curl -s "$HOST/api/search?metric_key=accuracy&op=>&metric_value=0.9" -H "$KEY_HEADER"; echo
curl -s "$HOST/api/export?experiment=iris-read" -H "$KEY_HEADER"; echo '<<end>>'
curl -s -D headers.txt -o downloaded.bin "$HOST/api/artifacts/$ARTIFACT_ID/download" -H "$KEY_HEADER"
"""


def _log_run(api: Api, experiment: str, name: str, params: dict, losses: list[float], accuracy: float) -> str:
    run_id = api.ok("POST", "/api/w/runs", {"experiment": experiment, "name": name})["id"]
    api.ok("POST", f"/api/w/runs/{run_id}/params", params)
    for step, loss in enumerate(losses):
        api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"loss": loss, "step": step})
    api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"accuracy": accuracy})
    return run_id


def test_the_read_apis_compare_search_export_and_download_examples(api: Api, embedded, tmp_path: Path) -> None:
    a = _log_run(api, "iris-read", "a", {"lr": 0.01, "epochs": 100, "opt": "adam"}, [1.0, 0.5, 0.25], 0.94)
    b = _log_run(api, "iris-read", "b", {"lr": 0.1, "epochs": 100}, [0.9, 0.7], 0.85)
    api.ok("POST", f"/api/w/runs/{b}/end", {"status": "failed", "error": "diverged"})
    other = _log_run(api, "elsewhere", "c", {}, [], 0.99)
    _upload(api, a, "model.pkl", MODEL_BYTES)
    art_id = api.ok("GET", f"/api/runs/{a}")["artifacts"][0]["id"]
    assert art_id == f"{a}/model.pkl"
    for run_id, n in ((a, 4), (b, 3), (other, 1)):
        api.wait_intact(run_id, n)  # search and export read what is stored

    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", READ_EXAMPLES], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOST": api.url, "A": a, "B": b,
                               "ARTIFACT_ID": art_id, "KEY_HEADER": f"Authorization: Bearer {api.key}"})
    assert proc.returncode == 0, proc.stderr
    compared_line, searched_line, rest = proc.stdout.split("\n", 2)
    exported = rest.split("<<end>>")[0]

    # Compare: params and each metric's latest value, as chachaml's compare-runs sorts them.
    compared = json.loads(compared_line)
    assert compared["runs"] == [a, b]
    assert compared["params"]["same"] == {"epochs": 100}
    assert compared["params"]["differ"] == {"lr": [0.01, 0.1]}
    assert compared["params"]["partial"] == {"opt": ["adam", None]}
    assert compared["metrics"]["same"] == {}
    assert compared["metrics"]["differ"] == {"accuracy": [0.94, 0.85], "loss": [0.25, 0.7]}
    assert compared["metrics"]["partial"] == {}
    assert set(compared) == {"runs", "params", "metrics"}
    # ... the same latest values arwx's own history holds.
    for run_id, want in ((a, {"loss": 0.25, "accuracy": 0.94}), (b, {"loss": 0.7, "accuracy": 0.85})):
        rows = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "loss,accuracy"})["rows"]
        for key, value in want.items():
            assert [r[key] for r in rows if r.get(key) is not None][-1] == value

    # Search: the runs whose latest accuracy is over 0.9, newest first, in /api/runs's shape.
    searched = json.loads(searched_line)
    assert [r["id"] for r in searched] == [other, a]
    hit = searched[1]
    assert (hit["experiment"], hit["name"], hit["status"]) == ("iris-read", "a", "running")
    assert hit == api.ok("GET", "/api/runs", params={"experiment": "iris-read", "status": "running"})[0]
    assert [r["id"] for r in api.ok("GET", "/api/search", params={
        "metric_key": "loss", "op": ">=", "metric_value": "0.7", "experiment": "iris-read"})] == [b]
    assert [r["id"] for r in api.ok("GET", "/api/search", params={
        "metric_key": "loss", "op": "=", "metric_value": "0.25"})] == [a]
    assert api.ok("GET", "/api/search", params={"metric_key": "nope", "op": "<", "metric_value": "1"}) == []
    assert [r["id"] for r in api.ok("GET", "/api/search", params={"experiment": "iris-read"})] == [b, a]

    # Export: one CSV line per run of the experiment, every column sorted, every cell quoted.
    header, *lines = exported.rstrip("\n").split("\n")
    assert header == ",".join(f'"{c}"' for c in sorted(
        ["id", "experiment", "name", "status", "start-time", "end-time", "duration", "lr", "epochs", "opt", "loss",
         "accuracy"]))
    rows = [dict(zip(next(csv.reader([header])), cells, strict=True)) for cells in csv.reader(lines)]
    assert [r["id"] for r in rows] == [b, a]
    rb, ra = rows
    run_b = api.ok("GET", f"/v1/runs/{b}")
    assert (rb["experiment"], rb["name"], rb["status"], rb["lr"], rb["epochs"], rb["opt"]) == (
        "iris-read", "b", "failed", "0.1", "100", "")
    assert (rb["loss"], rb["accuracy"]) == ("0.7", "0.85")
    assert int(rb["end-time"]) - int(rb["start-time"]) == int(rb["duration"]) >= 0
    assert int(rb["start-time"]) == round(run_b["created_at"] * 1000)
    assert int(rb["end-time"]) == round(run_b["finished_at"] * 1000)
    assert (ra["status"], ra["end-time"], ra["duration"], ra["opt"], ra["loss"], ra["accuracy"]) == (
        "running", "", "", "adam", "0.25", "0.94")

    # Download: the bytes uploaded, the same as arwx's blob of that hash.
    assert (tmp_path / "downloaded.bin").read_bytes() == MODEL_BYTES
    headers = (tmp_path / "headers.txt").read_text().lower()
    assert "200" in headers.splitlines()[0]
    assert "content-type: application/octet-stream" in headers
    assert 'content-disposition: inline; filename="model.pkl"' in headers
    sha = hashlib.sha256(MODEL_BYTES).hexdigest()
    assert api.request("GET", f"/v1/blobs/{sha}")[0] == 200

    # Errors in chachaml's shape; another org sees none of it.
    assert api.get("/api/compare", ids=a) == (400, {"error": "Provide at least 2 comma-separated ids (?ids=a,b)"})
    assert api.get("/api/compare", ids=f"{a},nope") == (404, {"error": "no such run"})
    assert api.get("/api/search", metric_key="loss", op="~", metric_value="1")[0] == 400
    assert api.get("/api/search", metric_key="loss", op=">", metric_value="high")[0] == 400
    assert api.get("/api/search", metric_key="loss")[0] == 400
    assert api.get(f"/api/artifacts/{a}/nope/download") == (404, {"error": "Artifact not found"})
    outsider = Api(embedded.url, embedded.new_org_key("read-other"))
    assert outsider.get("/api/compare", ids=f"{a},{b}") == (404, {"error": "no such run"})
    assert outsider.get(f"/api/artifacts/{art_id}/download") == (404, {"error": "Artifact not found"})
    assert outsider.get("/api/search", metric_key="accuracy", op=">", metric_value="0") == (200, [])
    assert outsider.get("/api/export")[1].strip() == ""


def test_tags_notes_datasets_and_version_diffs(api: Api, embedded) -> None:
    # The write document's table and notes: parent_run_id on start; several metrics at one step.
    parent = _run(api, "tags")
    child = api.ok("POST", "/api/w/runs", {"experiment": "tags", "name": "child", "tags": {"author": "maria"},
                                          "parent_run_id": parent})
    assert (child["experiment"], child["name"], child["parent-run-id"], child["tags"]) == (
        "tags", "child", parent, {"author": "maria"})
    run_id = child["id"]
    assert api.ok("POST", f"/api/w/runs/{run_id}/metrics", {"loss": 0.4, "accuracy": 0.9, "step": 12}) == {"ok": True}
    api.ok("POST", f"/api/w/runs/{run_id}/end", {"status": "completed"})
    api.wait_intact(run_id, 2)
    rows = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "loss,accuracy"})["rows"]
    assert [(r["step"], r["loss"], r["accuracy"]) for r in rows] == [(12, 0.4, 0.9)]  # both at step 12

    # Tags and notes (its Web UI's JSON API: POST /api/tags/:id {key, value}, POST /api/note/:id {note}),
    # on an ended run too; they are the run's tags in arwx's config.
    assert api.ok("POST", f"/api/tags/{run_id}", {"key": "reviewed", "value": "yes"}) == {"ok": True}
    assert api.ok("POST", f"/api/note/{run_id}", {"note": "lr too hot"}) == {"ok": True}
    want = {"author": "maria", "reviewed": "yes", "note": "lr too hot"}
    assert api.ok("GET", f"/api/tags/{run_id}") == want
    assert api.ok("GET", f"/api/runs/{run_id}")["tags"] == want
    assert api.ok("GET", f"/v1/runs/{run_id}")["config"]["tags"] == want
    assert api.ok("GET", f"/api/datasets/{run_id}") == []
    assert api.post(f"/api/tags/{run_id}", {"value": "no key"})[0] == 400
    assert api.post("/api/tags/nope", {"key": "k", "value": "v"}) == (404, {"error": "no such run"})

    # Version diff: the comparison of the runs behind two versions of a model.
    for i, (lr, acc) in enumerate(((0.1, 0.8), (0.01, 0.9))):
        r = _run(api, "tags")
        api.ok("POST", f"/api/w/runs/{r}/params", {"lr": lr})
        api.ok("POST", f"/api/w/runs/{r}/metrics", {"acc": acc})
        _upload(api, r, "m.bin", f"weights {i}".encode())
        api.ok("POST", "/api/w/models", {"name": "tagged", "run_id": r, "artifact": "m.bin"})
    diff = api.ok("GET", "/api/diff/tagged/1/2")
    assert diff["params"] == {"same": {}, "differ": {"lr": [0.1, 0.01]}, "partial": {}}
    assert diff["metrics"] == {"same": {}, "differ": {"acc": [0.8, 0.9]}, "partial": {}}
    assert diff["runs"] == [v["run-id"] for v in api.ok("GET", "/api/models/tagged")["versions"]]
    assert api.get("/api/diff/tagged/1/3") == (404, {"error": "Versions not found"})
    assert api.get("/api/diff/tagged/1/x") == (404, {"error": "Versions not found"})

    outsider = Api(embedded.url, embedded.new_org_key("tags-other"))
    assert outsider.get(f"/api/tags/{run_id}") == (404, {"error": "no such run"})
    assert outsider.post(f"/api/note/{run_id}", {"note": "mine"}) == (404, {"error": "no such run"})
    assert outsider.get(f"/api/datasets/{run_id}") == (404, {"error": "no such run"})
    assert outsider.get("/api/diff/tagged/1/2") == (404, {"error": "Versions not found"})
    assert api.ok("GET", f"/api/tags/{run_id}") == want
