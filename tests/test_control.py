"""The control plane against a real ``arwx server`` process on each catalog (SQLite and PostgreSQL).

Projects and goals, sessions, experiments with diffs and code snapshots,
decisions, the running best (JSON and SVG), agent context, bootstrap,
Idempotency-Key, bad input named field by field, and organizations kept
apart (404). The seed's cURL example runs verbatim through the real ``curl``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from arwx.control.research import MAX_DIFF_BYTES
from tests.helpers import Api, two_org_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def orgs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(a, b): clients of two organizations on one real server with the given catalog."""
    yield from two_org_server(request, tmp_path_factory, "control", "/v1/projects")


def _name() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def _blob(api: Api, data: bytes) -> str:
    return api.ok("POST", "/v1/blobs", raw=data)["sha"]


def test_seed_curl_sets_the_goal_verbatim(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    # The seed's command, with only the host replaced by this server's.
    cmd = (
        f"curl -s {a.url}/v1/projects \\\n"
        '  -H "Authorization: Bearer $ARWANDB_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        """  -d '{"name":"char-lm","objective_metric":"val_bpb","lower_is_better":true,"target":2.45}'"""
    )
    out = subprocess.run(["bash", "-c", cmd], env={**os.environ, "ARWANDB_API_KEY": a.key}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    p = a.ok("GET", "/v1/projects/char-lm")
    assert (p["objective_metric"], p["lower_is_better"], p["target"]) == ("val_bpb", True, 2.45)
    assert p["best"] is None and p["target_met"] is False


def test_goal_upsert_changes_only_the_fields_given(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    status, p = a.post("/v1/projects", {"name": name})
    assert status == 201 and p["objective_metric"] is None and p["lower_is_better"] is True
    status, p = a.post("/v1/projects", {"name": name, "objective_metric": "acc", "lower_is_better": False})
    assert status == 200 and (p["objective_metric"], p["lower_is_better"], p["target"]) == ("acc", False, None)
    p = a.ok("POST", "/v1/projects", {"name": name, "target": 0.9})
    assert (p["objective_metric"], p["lower_is_better"], p["target"]) == ("acc", False, 0.9)
    p = a.ok("POST", "/v1/projects", {"name": name, "target": None})
    assert p["target"] is None and p["objective_metric"] == "acc"
    listed = [x for x in a.ok("GET", "/v1/projects", params={"prefix": name})["projects"]]
    assert [x["name"] for x in listed] == [name] and listed[0]["objective_metric"] == "acc"


def test_a_run_names_its_project_into_existence(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    assert a.get(f"/v1/projects/{name}")[0] == 404
    a.ok("POST", "/v1/runs", {"id": f"{name}-r1", "project": name, "commit": "abc123", "diff_sha": "d" * 64})
    a.ok("POST", "/v1/runs", {"id": f"{name}-r2", "project": name})
    a.ok("POST", f"/v1/runs/{name}-r2/finish", {"status": "finished"})
    p = a.ok("GET", f"/v1/projects/{name}")
    assert (p["runs"], p["running"], p["by_status"]) == (2, 1, {"running": 1, "finished": 1})
    listed = a.ok("GET", "/v1/projects", params={"prefix": name})["projects"][0]
    # The fields the query service gave before projects were a catalog entity.
    assert {"name", "runs", "running", "created_at", "last_run_at"} <= set(listed)
    assert listed["runs"] == 2 and listed["last_run_at"] >= listed["created_at"]
    # The integrity receipt carries the run's fingerprint.
    assert a.receipt(f"{name}-r1")["fingerprint"] == {"commit": "abc123", "diff_sha": "d" * 64}
    # A goal set later keeps the runs.
    p = a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "loss"})
    assert p["runs"] == 2 and p["objective_metric"] == "loss"


def test_research_loop_running_best_frontier_and_svg(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "val_bpb", "lower_is_better": True, "target": 2.45})
    s1 = a.ok("POST", "/v1/sessions", {"project": name, "tag": "baseline"})
    s2 = a.ok("POST", "/v1/sessions", {"project": name, "tag": "tune <warmup> & \"lr\"", "branch": "exp/warmup"})
    sessions = a.ok("GET", f"/v1/projects/{name}/sessions")["sessions"]
    assert [s["id"] for s in sessions] == [s2["id"], s1["id"]] and [s["active"] for s in sessions] == [True, False]
    # Without a session_id an experiment goes into the active (newest) session.
    scores = [("keep", 2.60), ("drop", 2.70), ("keep", 2.50), ("keep", 2.55), ("keep", 2.40)]
    ids = []
    for i, (status, score) in enumerate(scores):
        e = a.ok("POST", "/v1/experiments", {"project": name, "note": f"try {i}", "commit": f"c{i}"})
        assert e["session_id"] == s2["id"]
        ids.append(e["id"])
        d = a.ok("POST", f"/v1/experiments/{e['id']}/decision", {"status": status, "score": score, "metric": "val_bpb"})
        assert d["decision"]["status"] == status
    # A decision in another metric never moves the best.
    e = a.ok("POST", "/v1/experiments", {"session_id": s2["id"], "note": "other metric"})
    a.ok("POST", f"/v1/experiments/{e['id']}/decision", {"status": "keep", "score": 0.1, "metric": "loss"})
    prog = a.ok("GET", f"/v1/sessions/{s2['id']}/progress")
    assert [p["best"] for p in prog["points"]] == [2.60, 2.60, 2.50, 2.50, 2.40, 2.40]
    assert [p["experiment_id"] for p in prog["frontier"]] == [ids[0], ids[2], ids[4]]
    assert prog["best"] == 2.40 and prog["target_met"] is True
    # A second decision replaces the first; both stay in the history.
    a.ok("POST", f"/v1/experiments/{ids[4]}/decision", {"status": "drop", "score": 2.40, "metric": "val_bpb"})
    exp = a.ok("GET", f"/v1/experiments/{ids[4]}")
    assert exp["decision"]["status"] == "drop" and [d["status"] for d in exp["decisions"]] == ["keep", "drop"]
    front = a.ok("GET", f"/v1/sessions/{s2['id']}/frontier")
    assert [p["experiment_id"] for p in front["frontier"]] == [ids[0], ids[2]]
    assert front["best"] == 2.50 and front["target_met"] is False
    proj = a.ok("GET", f"/v1/projects/{name}")
    assert proj["best"] == 2.50 and proj["active_session"] == s2["id"]
    assert (proj["sessions"], proj["experiments"], proj["decisions"]) == (2, 6, {"keep": 4, "drop": 2})
    pprog = a.ok("GET", f"/v1/projects/{name}/progress")
    assert [p["score"] for p in pprog["frontier"]] == [2.60, 2.50]
    # The session in s1 is empty: its progress is empty, not an error.
    assert a.ok("GET", f"/v1/sessions/{s1['id']}/progress")["points"] == []
    # The SVG is well-formed XML, with the user's text escaped.
    for path in (f"/v1/sessions/{s2['id']}/progress.svg", f"/v1/sessions/{s2['id']}/progress?format=svg"):
        status, svg = a.get(path)
        assert status == 200
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find("{http://www.w3.org/2000/svg}title").text == f'{name} / tune <warmup> & "lr"'
        assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 6
        assert root.find("{http://www.w3.org/2000/svg}path") is not None  # the staircase


def test_experiment_diff_repro_key_and_cap(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    a.ok("POST", "/v1/sessions", {"project": name})
    diff = "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-lr = 3e-3\n+lr = 3e-4\n"
    e1 = a.ok("POST", "/v1/experiments", {"project": name, "commit": "abc", "parent_commit": "abb", "diff": diff, "config": {"lr": 3e-4, "bs": 32}})
    e2 = a.ok("POST", "/v1/experiments", {"project": name, "commit": "abc", "diff": diff, "config": {"bs": 32, "lr": 3e-4}})
    e3 = a.ok("POST", "/v1/experiments", {"project": name, "commit": "abc", "diff": diff + " ", "config": {"bs": 32, "lr": 3e-4}})
    assert e1["repro_key"] == e2["repro_key"] != e3["repro_key"]  # key order does not matter; the diff does
    assert len(e1["repro_key"]) == 64 and e1["parent_commit"] == "abb"
    assert e1["diff_sha"] == hashlib.sha256(diff.encode()).hexdigest() and not e1["diff_truncated"]
    status, text = a.get(f"/v1/experiments/{e1['id']}/diff")
    assert status == 200 and text == diff
    status, raw = a.get(f"/v1/blobs/{e1['diff_sha']}")  # the diff is a blob of the org
    assert status == 200
    big = "+x\n" * (MAX_DIFF_BYTES // 3 + 10)
    e4 = a.ok("POST", "/v1/experiments", {"project": name, "diff": big})
    assert e4["diff_truncated"] and e4["diff_size"] == len(big)
    status, text = a.get(f"/v1/experiments/{e4['id']}/diff")
    assert status == 200 and "was not stored" in text and len(text) < 200
    e5 = a.ok("POST", "/v1/experiments", {"project": name})
    assert e5["diff_sha"] is None and a.get(f"/v1/experiments/{e5['id']}/diff") == (200, None)


def test_tree_needs_uploaded_blobs_and_diffs_between_experiments(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    a.ok("POST", "/v1/sessions", {"project": name})
    old, new, bin_a, bin_b = b"x = 1\ny = 2\n", b"x = 1\ny = 3\n", b"\x00\x01", b"\x00\x02"
    sha = {k: _blob(a, v) for k, v in {"old": old, "new": new, "bin_a": bin_a, "bin_b": bin_b}.items()}
    e1 = a.ok("POST", "/v1/experiments", {"project": name})["id"]
    e2 = a.ok("POST", "/v1/experiments", {"project": name})["id"]
    assert a.get(f"/v1/experiments/{e1}/tree")[0] == 404  # no snapshot yet
    never = hashlib.sha256(b"never uploaded").hexdigest()
    status, err = a.request("PUT", f"/v1/experiments/{e1}/tree", {"files": {"a.py": {"sha256": never, "size": 3}}})
    assert status == 400 and err["missing"] == [never] and never in err["error"]
    status, err = a.request("PUT", f"/v1/experiments/{e1}/tree", {"files": {"a.py": {"sha256": "XYZ", "size": 3}}})
    assert status == 400 and "sha256" in err["error"]
    status, err = a.request("PUT", f"/v1/experiments/{e1}/tree", {"files": {"../etc/passwd": {"sha256": sha["old"], "size": 3}}})
    assert status == 400 and "../etc/passwd" in err["error"]
    # Another org's blob is one this org never uploaded.
    status, err = b.request("PUT", f"/v1/experiments/{e1}/tree", {"files": {"a.py": {"sha256": sha["old"], "size": 12}}})
    assert status == 404
    t1 = {"train.py": {"sha256": sha["old"], "size": len(old)}, "gone.py": {"sha256": sha["old"], "size": len(old)},
          "w.bin": {"sha256": sha["bin_a"], "size": 2}, "run.sh": {"sha256": sha["old"], "size": len(old), "mode": 0o100644}}
    t2 = {"train.py": {"sha256": sha["new"], "size": len(new)}, "new.py": {"sha256": sha["new"], "size": len(new)},
          "w.bin": {"sha256": sha["bin_b"], "size": 2}, "run.sh": {"sha256": sha["old"], "size": len(old), "mode": 0o100755}}
    assert a.ok("PUT", f"/v1/experiments/{e1}/tree", {"files": t1})["total_size"] == 3 * len(old) + 2
    a.ok("PUT", f"/v1/experiments/{e2}/tree", {"files": t2})
    got = a.ok("GET", f"/v1/experiments/{e2}/tree")["files"]
    assert got["run.sh"] == {"sha256": sha["old"], "size": len(old), "mode": 0o100755}
    assert got["new.py"]["mode"] == 0o100644  # the default
    assert a.ok("GET", f"/v1/experiments/{e1}")["has_tree"] is True
    d = a.ok("GET", f"/v1/experiments/{e1}/diff/{e2}")
    assert [x["path"] for x in d["added"]] == ["new.py"] and [x["path"] for x in d["removed"]] == ["gone.py"]
    changed = {c["path"]: c for c in d["changed"]}
    assert set(changed) == {"train.py", "w.bin", "run.sh"}
    assert changed["train.py"]["diff"] == "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n"
    assert changed["w.bin"]["diff"] is None and "binary" in changed["w.bin"]["diff_omitted"]
    assert changed["run.sh"]["diff_omitted"] == "mode only"
    assert a.get(f"/v1/experiments/{e1}/diff/exp_nope")[0] == 404


def test_bad_input_is_a_4xx_naming_the_field(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    s = a.ok("POST", "/v1/sessions", {"project": name})
    cases = [
        ("POST", "/v1/experiments", {"session_id": "ses_0000000000000000"}, 404, "unknown session"),
        ("POST", "/v1/experiments", {"note": "no session"}, 400, "session_id"),
        ("POST", "/v1/experiments", {"project": f"{name}-none"}, 404, "unknown project"),
        ("POST", "/v1/experiments", {"session_id": s["id"], "project": "elsewhere"}, 400, "project"),
        ("POST", "/v1/experiments", {"project": name, "notes": "typo"}, 400, "notes"),
        ("POST", "/v1/experiments", {"project": name, "note": "nul\u0000"}, 400, "note"),
        ("POST", "/v1/experiments", {"project": name, "commit": "a b"}, 400, "commit"),
        ("POST", "/v1/experiments/exp_missing/decision", {"status": "keep", "score": 1}, 404, "unknown experiment"),
        ("POST", "/v1/projects", {"name": "a/b"}, 400, "name"),
        ("POST", "/v1/projects", {"name": name, "lower_is_better": "yes"}, 400, "lower_is_better"),
        ("POST", "/v1/projects", f'{{"name": "{name}", "target": 1e400}}'.encode(), 400, "target"),
        ("POST", "/v1/sessions", {"tag": "no project"}, 400, "project"),
        ("GET", "/v1/agent/context", None, 400, "project"),
        ("GET", "/v1/sessions/ses_nope/progress", None, 404, "unknown session"),
        ("GET", "/v1/sessions/bad%00id/frontier", None, 404, "unknown session"),
        ("GET", f"/v1/sessions/{s['id']}/progress?format=png", None, 400, "format"),
        ("GET", "/v1/projects?limit=0", None, 400, "limit"),
    ]
    e = a.ok("POST", "/v1/experiments", {"project": name})
    cases += [
        ("POST", f"/v1/experiments/{e['id']}/decision", {"status": "maybe"}, 400, "status"),
        ("POST", f"/v1/experiments/{e['id']}/decision", {"status": "keep", "score": "high"}, 400, "score"),
        ("PUT", f"/v1/experiments/{e['id']}/tree", {"files": {"a": {"sha256": "0" * 64}}}, 400, "size"),
    ]
    for method, path, body, status, word in cases:
        raw = body if isinstance(body, bytes) else None
        got, out = a.request(method, path, body=None if raw else body, raw=raw)
        assert got == status and word in out["error"], (method, path, body, got, out)
    assert a.ok("GET", f"/v1/experiments/{e['id']}")["decisions"] == []  # nothing recorded by the bad ones


def test_idempotency_key_replays_the_first_answer_and_refuses_reuse(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = a.request("POST", "/v1/sessions", {"project": name, "tag": "t"}, headers=key)
    again = a.request("POST", "/v1/sessions", {"project": name, "tag": "t"}, headers=key)
    assert first[0] == again[0] == 201 and first[1] == again[1]
    status, err = a.request("POST", "/v1/sessions", {"project": name, "tag": "other"}, headers=key)
    assert status == 409 and "different request" in err["error"]
    # The same key in another org is another key.
    assert b.request("POST", "/v1/sessions", {"project": name, "tag": "t"}, headers=key)[1]["id"] != first[1]["id"]
    # Eight clients resending one create at once: one experiment.
    ekey = {"Idempotency-Key": f"e-{uuid.uuid4().hex}"}
    results: list[tuple[int, dict]] = []
    go = threading.Barrier(8)

    def send() -> None:
        go.wait()
        results.append(a.with_key(a.key).request("POST", "/v1/experiments", {"project": name, "note": "once"}, headers=ekey))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [r for s, r in results if s == 201]
    assert ok and len({r["id"] for r in ok}) == 1, results
    assert all(s in (201, 409) for s, _ in results), results
    assert a.ok("GET", f"/v1/projects/{name}")["experiments"] == 1
    d = {"Idempotency-Key": f"d-{uuid.uuid4().hex}"}
    for _ in range(3):
        a.request("POST", f"/v1/experiments/{ok[0]['id']}/decision", {"status": "keep", "score": 1.0}, headers=d)
    assert len(a.ok("GET", f"/v1/experiments/{ok[0]['id']}")["decisions"]) == 1
    assert a.request("POST", "/v1/sessions", {"project": name}, headers={"Idempotency-Key": "x" * 300})[0] == 400


def test_one_org_never_sees_anothers_research(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "loss"})
    s = a.ok("POST", "/v1/sessions", {"project": name})
    e = a.ok("POST", "/v1/experiments", {"project": name, "diff": "secret diff"})
    a.ok("POST", f"/v1/experiments/{e['id']}/decision", {"status": "keep", "score": 1.0})
    sha = _blob(a, b"code")
    a.ok("PUT", f"/v1/experiments/{e['id']}/tree", {"files": {"a.py": {"sha256": sha, "size": 4}}})
    for path in (
        f"/v1/projects/{name}", f"/v1/projects/{name}/sessions", f"/v1/projects/{name}/progress",
        f"/v1/sessions/{s['id']}/progress", f"/v1/sessions/{s['id']}/progress.svg", f"/v1/sessions/{s['id']}/frontier",
        f"/v1/experiments/{e['id']}", f"/v1/experiments/{e['id']}/diff", f"/v1/experiments/{e['id']}/tree",
        f"/v1/experiments/{e['id']}/diff/{e['id']}", f"/v1/agent/context?project={name}",
    ):
        status, _ = b.get(path)
        assert status == 404, path
    assert b.post(f"/v1/experiments/{e['id']}/decision", {"status": "drop", "score": 9})[0] == 404
    assert b.post("/v1/experiments", {"session_id": s["id"]})[0] == 404
    assert b.request("PUT", f"/v1/experiments/{e['id']}/tree", {"files": {}})[0] == 404
    assert name not in [p["name"] for p in b.ok("GET", "/v1/projects")["projects"]]
    assert name not in [p["name"] for p in b.ok("GET", "/v1/bootstrap")["projects"]]
    # The same project name in b is b's own project.
    assert b.ok("POST", "/v1/projects", {"name": name})["objective_metric"] is None
    assert a.ok("GET", f"/v1/projects/{name}")["objective_metric"] == "loss"


def test_agent_context_and_bootstrap(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "acc", "lower_is_better": False, "target": 0.9})
    a.ok("POST", "/v1/sessions", {"project": name, "tag": "t"})
    for i, score in enumerate([0.5, 0.7, 0.6, 0.8, 0.85, 0.95, 0.93]):
        e = a.ok("POST", "/v1/experiments", {"project": name, "note": f"idea {i}", "commit": f"c{i}"})
        a.ok("POST", f"/v1/experiments/{e['id']}/decision", {"status": "keep" if score != 0.6 else "drop", "score": score})
    a.ok("POST", "/v1/runs", {"id": f"{name}-run", "project": name})
    ctx = a.ok("GET", "/v1/agent/context", params={"project": name, "limit": 3})
    assert ctx["goal"] == {"objective_metric": "acc", "lower_is_better": False, "target": 0.9}
    assert ctx["best"] == 0.95 and ctx["target_met"] is True
    assert [p["score"] for p in ctx["frontier"]] == [0.8, 0.85, 0.95]  # the tail of 0.5, 0.7, 0.8, 0.85, 0.95
    assert [x["note"] for x in ctx["experiments"]] == ["idea 6", "idea 5", "idea 4"]
    assert ctx["experiments"][0]["decision"]["score"] == 0.93
    assert [r["id"] for r in ctx["running_runs"]] == [f"{name}-run"]
    assert ctx["counts"]["experiments"] == 7 and "winner" in ctx
    boot = a.ok("GET", "/v1/bootstrap")
    mine = [p for p in boot["projects"] if p["name"] == name]
    assert mine and mine[0]["best"] == 0.95 and mine[0]["target"] == 0.9
    assert boot["keys"] >= 1 and boot["org"]["id"]
    assert f"{name}-run" in [r["id"] for r in boot["recent_runs"]]
    assert len(boot["recent_runs"]) <= boot["limits"]["recent_runs"]


def test_autoresearch_walkthrough_runs_as_written(orgs: tuple[Api, Api], tmp_path: Path) -> None:
    """docs/autoresearch.md: every bash block, in order, with only the server and key set."""
    from tests.helpers import ROOT

    text = (ROOT / "docs" / "autoresearch.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    script = "\n".join(blocks)
    script = "\n".join(ln for ln in script.splitlines() if not ln.startswith(("export ARWX=", "export ARWANDB_API_KEY=")))
    a, _ = orgs
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ARWX": a.url, "ARWANDB_API_KEY": a.key},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-lr = 3e-3\n+lr = 1e-3" in out.stdout  # the tree diff between the two experiments
    assert '"error"' not in out.stdout, out.stdout
    ET.parse(tmp_path / "progress.svg")
    ctx = a.ok("GET", "/v1/agent/context", params={"project": "char-lm"})
    assert ctx["best"] == 2.41 and ctx["target_met"] is True
    assert ctx["experiments"][1]["note"] == "lr too hot early; added 200-step warmup"


def test_a_goal_only_project_has_no_runs_yet_not_404(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "loss"})
    assert a.ok("GET", f"/v1/projects/{name}/runs")["runs"] == []
    assert b.get(f"/v1/projects/{name}/runs")[0] == 404


def test_winner_and_lineage_show_on_project_experiment_and_context(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    a.ok("POST", "/v1/projects", {"name": name, "objective_metric": "loss"})
    a.ok("POST", "/v1/sessions", {"project": name})
    e = a.ok("POST", "/v1/experiments", {"project": name, "note": "made the model"})
    assert a.ok("GET", f"/v1/projects/{name}")["winner"] is None
    sha = _blob(a, b"weights")
    v = a.ok("POST", "/v1/artifacts/log", {"project": name, "name": "model", "type": "model",
                                           "manifest": {"w.bin": {"sha256": sha, "size": 7}}, "produced_by": e["id"]})
    a.ok("PUT", "/v1/artifacts/model/refs/winner", {"project": name, "version": v["version"]})
    winner = a.ok("GET", f"/v1/projects/{name}")["winner"]
    assert (winner["name"], winner["version"], winner["produced_by"]) == ("model", v["version"], e["id"])
    assert a.ok("GET", "/v1/agent/context", params={"project": name})["winner"]["version"] == v["version"]
    produced = a.ok("GET", f"/v1/experiments/{e['id']}")["produced"]
    assert [(p["name"], p["version"]) for p in produced] == [("model", v["version"])]
    # The seed's second cURL command resolves the same version.
    out = subprocess.run(
        ["bash", "-c", f'curl -s "{a.url}/v1/artifacts/model/winner?project={name}" -H "Authorization: Bearer $ARWANDB_API_KEY"'],
        env={**os.environ, "ARWANDB_API_KEY": a.key}, capture_output=True, text=True, timeout=30,
    )
    assert f'"version": "{v["version"]}"' in out.stdout or f'"version":"{v["version"]}"' in out.stdout, out.stdout
    assert b.get(f"/v1/projects/{name}")[0] == 404
