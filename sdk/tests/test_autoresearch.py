"""arwandb.autoresearch against a real ``arwx server`` process: the seed's example in a real git
repository, git capture, snapshots, the frontier and context, artifacts, the loop done offline and
synced, and the server killed mid-loop. Every script runs in its own Python process, as a user's would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sdk_server import SDK, ArwxServer, _server_cmd, wait_for

from arwandb import _git, _snapshot

# The seed's example, exactly as written (arwx-api.txt, "The autoresearch loop").
SEED = """\
from arwandb import autoresearch as ar # 1. define the objective (minimize val_bpb toward 2.45)
ar.goal(metric="val_bpb", lower_is_better=True, target=2.45) # 2. open a line of inquiry
ar.session(tag="tune-warmup") # 3. record a tried change. Inside a git repo, commit + parent + the
# UNCOMMITTED working-tree diff are captured automatically (the code
# that actually ran) — no arguments needed. note = the flaw→fix story.
exp = ar.experiment(
    note="lr too hot early; added 200-step warmup",
    snapshot=".", # optional: full code tree, content-addressed
) # 4. judge it — the score feeds the frontier
ar.decision(experiment_id=exp["id"], status="keep", score=2.41, metric="val_bpb")
"""
# The seed's artifact example, exactly as written ("Artifacts & lineage").
SEED_ARTIFACTS = """\
from arwandb import autoresearch as ar # log a new version from files; content-addressed, so re-logging same bytes is a no-op
v = ar.artifact("char-lm", "out/model", type="model", produced_by=exp["id"])
ar.promote("char-lm", "winner", version=v["version"]) # move the ref
ar.get_artifact("char-lm", "winner") # resolve ref → version
ar.artifacts(type="model") # list
"""


@pytest.fixture(scope="module")
def server_cmd() -> list[str]:
    cmd = _server_cmd()
    if cmd is None:
        pytest.skip("arwx server not importable (PYTHONPATH=services python -m arwx.cli failed)")
    return cmd


@pytest.fixture(scope="module")
def server(server_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArwxServer]:
    s = ArwxServer(server_cmd, str(tmp_path_factory.mktemp("arwx-data")))
    s.start()
    yield s
    s.kill(signal.SIGTERM)


def _env(server: ArwxServer, project: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARWANDB_", "WANDB_", "GIT_"))}
    return {**env, **server.env(), "PYTHONPATH": SDK, "ARWANDB_SYSTEM_METRICS": "off",
            "ARWANDB_PROJECT": project, **extra}


def _py(code: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def _git_cmd(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def _repo(tmp: Path) -> Path:
    """A repository with two commits, an uncommitted change, a new file, an ignored file, a
    virtualenv, a dataset folder and model weights."""
    repo = tmp / "repo"
    repo.mkdir()
    _git_cmd(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("secret.env\nlogs/\n")
    (repo / "train.py").write_text("lr = 3e-3\n")
    _git_cmd(repo, "add", ".")
    _git_cmd(repo, "commit", "-qm", "first")
    (repo / "model.py").write_text("layers = 4\n")
    _git_cmd(repo, "add", ".")
    _git_cmd(repo, "commit", "-qm", "second")
    (repo / "train.py").write_text("lr = 3e-3\nwarmup = 200\n")  # the uncommitted change
    (repo / "sched.py").write_text("def warmup(step):\n    return min(1.0, step / 200)\n")  # new, untracked
    (repo / "secret.env").write_text("TOKEN=x\n")  # ignored by .gitignore
    (repo / "logs").mkdir()
    (repo / "logs" / "a.txt").write_text("log\n")
    (repo / ".venv" / "lib").mkdir(parents=True)
    (repo / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (repo / ".venv" / "lib" / "x.py").write_text("x = 1\n")
    (repo / "data").mkdir()
    (repo / "data" / "train.txt").write_text("hello\n")
    (repo / "weights.pt").write_bytes(b"\0" * 64)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    return repo


def _expected_tree(repo: Path) -> dict[str, str]:
    return {p: hashlib.sha256((repo / p).read_bytes()).hexdigest()
            for p in (".gitignore", "train.py", "model.py", "sched.py")}


def _experiments(server: ArwxServer, project: str) -> list[dict[str, Any]]:
    return server.get(f"/v1/agent/context?project={project}&limit=50")["experiments"]


def _blob(server: ArwxServer, sha: str) -> bytes:
    req = urllib.request.Request(f"{server.url}/v1/blobs/{sha}", headers={"Authorization": f"Bearer {server.key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def _diff(server: ArwxServer, eid: str) -> str:
    req = urllib.request.Request(f"{server.url}/v1/experiments/{eid}/diff",
                                 headers={"Authorization": f"Bearer {server.key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


# --- the seed's example ------------------------------------------------------------------------


def test_seed_example_in_a_git_repo_captures_commit_parent_diff_and_tree(server: ArwxServer, tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    head = _git_cmd(repo, "rev-parse", "HEAD").strip()
    parent = _git_cmd(repo, "rev-parse", "HEAD^").strip()
    out = _py(SEED + "import json; print(json.dumps(exp))\n", repo, _env(server, "char-lm"))
    exp = json.loads(out.stdout.strip().splitlines()[-1])
    assert exp["id"].startswith("exp_") and not exp.get("pending"), exp
    assert exp["snapshot"]["files"] == 4 and not exp["snapshot"].get("error"), exp["snapshot"]

    got = server.get(f"/v1/experiments/{exp['id']}")
    assert got["commit"] == head and got["parent_commit"] == parent
    assert got["note"] == "lr too hot early; added 200-step warmup"
    assert got["decision"]["status"] == "keep" and got["decision"]["score"] == 2.41
    assert got["has_tree"] is True

    # The diff is the code that ran: applied to a clean checkout of the commit it gives the working tree.
    diff = _diff(server, exp["id"])
    assert "+warmup = 200" in diff and "sched.py" in diff
    assert "secret.env" not in diff and "arwandb" not in diff  # ignored files and the SDK's spool stay out
    clone = tmp_path / "clone"
    _git_cmd(tmp_path, "clone", "-q", str(repo), str(clone))
    (clone / "exp.patch").write_text(diff)
    _git_cmd(clone, "apply", "exp.patch")
    for name in ("train.py", "sched.py", "model.py"):
        assert (clone / name).read_text() == (repo / name).read_text(), name

    # The tree: the code, not the ignored file, the virtualenv, the dataset, the weights or caches.
    tree = server.get(f"/v1/experiments/{exp['id']}/tree")["files"]
    assert {p: e["sha256"] for p, e in tree.items()} == _expected_tree(repo)
    for path, e in tree.items():
        assert _blob(server, e["sha256"]) == (repo / path).read_bytes()

    # The session is the active one, and the frontier and context show the decision.
    ctx = server.get("/v1/agent/context?project=char-lm")
    assert ctx["best"] == 2.41 and ctx["target_met"] is True
    assert ctx["active_session"] == got["session_id"]
    sessions = server.get("/v1/projects/char-lm/sessions")["sessions"]
    assert sessions[0]["id"] == got["session_id"] and sessions[0]["tag"] == "tune-warmup"
    assert sessions[0]["branch"] == "main"

    # The seed's artifact example after it, as written.
    (repo / "out" / "model").mkdir(parents=True)
    (repo / "out" / "model" / "model.pt").write_bytes(b"weights-1" * 1000)
    (repo / "out" / "model" / "config.json").write_text('{"layers": 4}')
    code = (SEED + SEED_ARTIFACTS
            + "import json; print(json.dumps({'v': v, 'w': ar.get_artifact('char-lm', 'winner')}))\n")
    res = json.loads(_py(code, repo, _env(server, "char-lm")).stdout.strip().splitlines()[-1])
    assert res["v"]["version"] == "v1" and res["w"]["version"] == "v1"
    assert {m["path"] for m in res["w"]["manifest"]} == {"model.pt", "config.json"}
    assert res["w"]["produced_by"] == res["v"]["produced_by"]


def test_outside_git_nothing_is_captured_and_nothing_fails(server: ArwxServer, tmp_path: Path) -> None:
    work = tmp_path / "plain"
    work.mkdir()
    (work / "train.py").write_text("print('hi')\n")
    (work / "node_modules").mkdir()
    (work / "node_modules" / "x.js").write_text("1\n")
    (work / "ckpt.safetensors").write_bytes(b"\1" * 10)
    code = textwrap.dedent("""
        import json
        from arwandb import autoresearch as ar
        ar.session(tag="plain")
        exp = ar.experiment(note="no git here", snapshot=".")
        print(json.dumps(exp))
    """)
    env = _env(server, "plain-p", GIT_CEILING_DIRECTORIES=str(tmp_path))
    exp = json.loads(_py(code, work, env).stdout.strip().splitlines()[-1])
    got = server.get(f"/v1/experiments/{exp['id']}")
    assert got["commit"] is None and got["parent_commit"] is None and got["diff_sha"] is None
    assert set(server.get(f"/v1/experiments/{exp['id']}/tree")["files"]) == {"train.py"}


def test_arguments_override_capture_and_a_big_diff_becomes_a_marker(server: ArwxServer, tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "big.py").write_text("x = 1\n" * 100)
    code = textwrap.dedent("""
        import json
        from arwandb import autoresearch as ar
        ar.session(tag="args")
        a = ar.experiment(commit="abc123", note="given", diff="")
        b = ar.experiment(note="capped")
        c = ar.experiment(note="given diff", diff="--- a/x\\n+++ b/x\\n")
        print(json.dumps([a, b, c]))
    """)
    a, b, c = json.loads(_py(code, repo, _env(server, "args-p", ARWANDB_MAX_DIFF_BYTES="200")).stdout.splitlines()[-1])
    ga = server.get(f"/v1/experiments/{a['id']}")
    assert ga["commit"] == "abc123" and ga["diff_sha"] is None  # diff="" suppresses
    assert "ARWANDB_MAX_DIFF_BYTES=200" in _diff(server, b["id"])
    assert server.get(f"/v1/experiments/{b['id']}")["commit"] == _git_cmd(repo, "rev-parse", "HEAD").strip()
    assert _diff(server, c["id"]) == "--- a/x\n+++ b/x\n"


def test_frontier_and_context_reflect_decisions(server: ArwxServer, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json
        from arwandb import autoresearch as ar
        ar.goal(metric="loss", lower_is_better=True, target=1.0)
        ar.session(tag="sweep")
        ids = []
        for note, status, score in [("base", "keep", 3.0), ("worse", "drop", 3.5), ("better", "keep", 2.0),
                                    ("tiny", "drop", 1.9)]:
            e = ar.experiment(note=note, diff="")
            ar.decision(e["id"], status, score, metric="loss")
            ids.append(e["id"])
        ar.decision(ids[3], "keep", 1.9, metric="loss")  # a later decision replaces the first
        print(json.dumps({"ids": ids, "frontier": ar.frontier(), "progress": ar.progress(),
                          "context": ar.context(limit=3)}))
    """)
    out = json.loads(_py(code, tmp_path, _env(server, "fr-p")).stdout.splitlines()[-1])
    ids, fr, ctx = out["ids"], out["frontier"], out["context"]
    assert fr["best"] == 1.9 and fr["target_met"] is False
    assert [p["experiment_id"] for p in fr["frontier"]] == [ids[0], ids[2], ids[3]]
    assert [p["id"] for p in ctx["experiments"]] == [ids[3], ids[2], ids[1]]
    assert ctx["experiments"][0]["decision"]["status"] == "keep" and ctx["best"] == 1.9
    assert len(server.get(f"/v1/experiments/{ids[3]}")["decisions"]) == 2


def test_artifact_versions_dedupe_promote_and_download_by_hash(server: ArwxServer, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, os
        from arwandb import autoresearch as ar
        ar.session(tag="art")
        e = ar.experiment(note="weights", diff="")
        os.makedirs("out/model", exist_ok=True)
        open("out/model/model.pt", "wb").write(os.urandom(300_000))
        v1 = ar.artifact("art-p", "out/model", produced_by=e["id"])
        again = ar.artifact("art-p", "out/model", produced_by=e["id"])
        open("out/model/model.pt", "ab").write(b"more")
        v2 = ar.artifact("art-p", "out/model")
        ar.promote("art-p", "winner", version=v1["version"])
        ar.promote("art-p", "winner", version=v2["version"])
        w = ar.get_artifact("art-p", "winner", download="dl")
        print(json.dumps({"v1": v1, "again": again, "v2": v2, "w": w, "list": ar.artifacts(type="model")}))
    """)
    out = json.loads(_py(code, tmp_path, _env(server, "art-p")).stdout.splitlines()[-1])
    assert out["v1"]["version"] == "v1" and out["v1"]["created"] is True
    assert out["again"]["version"] == "v1" and out["again"]["created"] is False  # same bytes: no new version
    assert out["v2"]["version"] == "v2" and out["w"]["version"] == "v2"
    got = (tmp_path / "dl" / "model.pt").read_bytes()
    assert got == (tmp_path / "out" / "model" / "model.pt").read_bytes()
    assert any(a["name"] == "art-p" and a["latest"] == "v2" for a in out["list"])
    detail = server.get("/v1/artifacts/art-p?project=art-p")
    assert [m["to"] for m in detail["ref_log"]] == ["v2", "v1"]


def test_download_refuses_bytes_that_do_not_match(server: ArwxServer, tmp_path: Path) -> None:
    """A manifest whose hash does not match what the blob route serves is refused, and no file is left."""
    from arwandb import autoresearch as ar
    from arwandb._replay import Replayer

    ar.configure(base_url=server.url, api_key=server.key, dir=str(tmp_path), project="dl-p")
    try:
        c = ar._get()
        sha = hashlib.sha256(b"right").hexdigest()
        body = b"right"
        req = urllib.request.Request(f"{server.url}/v1/blobs?sha256={sha}", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {server.key}"})
        urllib.request.urlopen(req, timeout=10).close()
        assert isinstance(c.replayer, Replayer)
        with pytest.raises(ar.ResearchError, match="expected 6 bytes"):
            c.replayer.fetch(sha, 6, str(tmp_path / "x" / "f.bin"), c._deadline())
        assert not (tmp_path / "x" / "f.bin").exists() and not list((tmp_path / "x").iterdir())
    finally:
        ar.configure()


# --- offline, then synced ----------------------------------------------------------------------

LOOP = textwrap.dedent("""
    import json, os, sys
    from arwandb import autoresearch as ar
    ar.goal(metric="val_bpb", lower_is_better=True, target=2.45)
    s = ar.session(tag="offline")
    out = {"session": s, "exps": []}
    for i in range(3):
        open("train.py", "w").write(f"lr = {i}e-3\\n")
        e = ar.experiment(note=f"try {i}", snapshot=".")
        d = ar.decision(e["id"], "keep" if i != 1 else "drop", 2.6 - i / 10, metric="val_bpb")
        out["exps"].append({"e": e, "d": d})
    os.makedirs("out", exist_ok=True)
    open("out/model.pt", "wb").write(b"w" * 5000)
    P = os.environ["ARWANDB_PROJECT"]
    v = ar.artifact(P, "out/model.pt", produced_by=out["exps"][-1]["e"]["id"])
    out["v"] = v
    out["promote"] = ar.promote(P, "winner", version=v["version"])
    try:
        ar.progress()
        out["progress_error"] = None
    except ar.OfflineError as err:
        out["progress_error"] = str(err)
    out["pending"] = ar.pending()
    print(json.dumps(out))
""")


def _check_loop_arrived_once(server: ArwxServer, project: str, out: dict[str, Any], repo: Path) -> None:
    exps = _experiments(server, project)
    assert sorted(e["id"] for e in exps) == sorted(x["e"]["id"] for x in out["exps"])  # each exactly once
    sessions = server.get(f"/v1/projects/{project}/sessions")["sessions"]
    assert [s["id"] for s in sessions] == [out["session"]["id"]]
    for i, x in enumerate(out["exps"]):
        got = server.get(f"/v1/experiments/{x['e']['id']}")
        assert len(got["decisions"]) == 1 and got["decision"]["score"] == pytest.approx(2.6 - i / 10)
        tree = server.get(f"/v1/experiments/{x['e']['id']}/tree")["files"]
        # the snapshot holds the code as it was when the experiment was made, not as it is now
        assert _blob(server, tree["train.py"]["sha256"]) == f"lr = {i}e-3\n".encode()
    art = server.get(f"/v1/artifacts/{project}?project={project}")
    assert [v["version"] for v in art["versions"]] == ["v1"] and art["refs"]["winner"] == "v1"
    assert art["lineage"] == [{"version": "v1", "produced_by": out["exps"][-1]["e"]["id"]}]
    prog = server.get(f"/v1/projects/{project}/progress")
    assert prog["best"] == pytest.approx(2.4)


def test_whole_loop_offline_then_synced_arrives_exactly_once(server: ArwxServer, tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    env = _env(server, "off-p", ARWANDB_MODE="offline")
    out = json.loads(_py(LOOP, repo, env).stdout.splitlines()[-1])
    assert out["progress_error"] and "offline" in out["progress_error"]
    assert out["pending"] == 13 and all(x["e"]["pending"] for x in out["exps"])
    assert out["v"]["version"].startswith("pending:") and out["promote"]["pending"] is True
    with pytest.raises(urllib.error.HTTPError):  # nothing reached the server
        server.get("/v1/projects/off-p")

    journal = repo / "arwandb" / ".autoresearch"
    saved = (journal / "calls.ndjson").read_bytes()
    sync_env = {**env, "ARWANDB_MODE": "online"}
    p = subprocess.run([sys.executable, "-m", "arwandb", "sync"], cwd=repo, env=sync_env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads(p.stdout)
    assert summary["research"] == {"sent": 13, "rejected": 0, "pending": 0}
    _check_loop_arrived_once(server, "off-p", out, repo)

    # Every answer lost: the same calls are delivered again. Idempotency keys and client ids
    # answer them from the first time, so still nothing is doubled.
    (journal / "calls.ndjson").write_bytes(saved)
    (journal / "acked").write_text('{"next": 0}')
    p = subprocess.run([sys.executable, "-m", "arwandb", "sync"], cwd=repo, env=sync_env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["research"] == {"sent": 13, "rejected": 0, "pending": 0}
    _check_loop_arrived_once(server, "off-p", out, repo)
    again = subprocess.run([sys.executable, "-m", "arwandb", "sync"], cwd=repo, env=sync_env,
                           capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["research"]["sent"] == 0


def test_unreachable_server_then_the_next_run_delivers(server_cmd: list[str], tmp_path: Path) -> None:
    """Online mode with the server down: calls return at once, pending; the next process delivers."""
    srv = ArwxServer(server_cmd, str(tmp_path / "data"))
    repo = _repo(tmp_path)
    env = {**_env(srv, "down-p"), "ARWANDB_CALL_TIMEOUT": "2"}
    out = json.loads(_py(LOOP, repo, env).stdout.splitlines()[-1])
    assert out["pending"] == 13 and "unreachable" in out["progress_error"]
    srv.start()
    try:
        env = {**_env(srv, "down-p"), "ARWANDB_CALL_TIMEOUT": "10"}
        done = json.loads(_py("import json; from arwandb import autoresearch as ar; "
                              "print(json.dumps({'p': ar.progress(project='down-p'), 'n': ar.pending()}))",
                              repo, env).stdout.splitlines()[-1])
        assert done["n"] == 0 and done["p"]["best"] == pytest.approx(2.4)
        _check_loop_arrived_once(srv, "down-p", out, repo)
    finally:
        srv.kill(signal.SIGTERM)


KILL_LOOP = textwrap.dedent("""
    import json, sys, time
    from arwandb import autoresearch as ar
    ar.goal(metric="loss", lower_is_better=True)
    ar.session(tag="kill")
    ids = []
    for i in range(int(sys.argv[1])):
        open("train.py", "w").write(f"step = {i}\\n")
        e = ar.experiment(note=f"n{i}", snapshot=".")
        ar.decision(e["id"], "keep", 10.0 - i * 0.01, metric="loss")
        ids.append(e["id"])
        print(json.dumps({"i": i, "id": e["id"], "pending": ar.pending()}), flush=True)
        time.sleep(0.02)
    left = ar.sync(timeout=120)
    print(json.dumps({"ids": ids, "sync": left}), flush=True)
""")


def test_server_killed_mid_loop_nothing_doubled_or_lost(server_cmd: list[str], tmp_path: Path) -> None:
    srv = ArwxServer(server_cmd, str(tmp_path / "data"))
    srv.start()
    repo = _repo(tmp_path)
    n = 60
    env = {**_env(srv, "kill-p"), "ARWANDB_CALL_TIMEOUT": "2"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, str(n)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict[str, Any]] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(lines) >= 15, 120, "15 experiments")
        srv.kill(signal.SIGKILL)  # kill -9, mid-loop
        wait_for(lambda: len(lines) >= 30, 120, "15 more experiments with the server down")
        srv.start()  # the same port and data dir
        assert proc.wait(240) == 0, proc.stderr.read() if proc.stderr else ""
        t.join(10)
        final = lines[-1]
        assert final["sync"]["pending"] == 0 and final["sync"]["rejected"] == 0, final
        assert any(x.get("pending") for x in lines[:-1])  # some calls did wait for the server
        assert len(set(final["ids"])) == n
        project = srv.get("/v1/projects/kill-p")
        assert project["experiments"] == n and project["decisions"] == {"keep": n, "drop": 0}, project
        for i, eid in enumerate(final["ids"]):
            got = srv.get(f"/v1/experiments/{eid}")
            assert got["note"] == f"n{i}" and len(got["decisions"]) == 1, got
            tree = srv.get(f"/v1/experiments/{eid}/tree")["files"]
            assert _blob(srv, tree["train.py"]["sha256"]) == f"step = {i}\n".encode()
        assert len(srv.get("/v1/projects/kill-p/sessions")["sessions"]) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.kill(signal.SIGTERM)


# --- snapshots, without a server ---------------------------------------------------------------


def test_snapshot_lister_honours_gitignore_and_default_excludes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = _repo(tmp_path)
    lister = _snapshot.Lister(5 << 20, skip=(str(repo / "arwandb"),))
    assert [rel for rel, _ in lister.files(str(repo))] == sorted(_expected_tree(repo))
    plain = tmp_path / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"))
    # outside git: no .gitignore rules, but the default excludes still hold
    assert _git.toplevel(str(plain)) is None
    names = [rel for rel, _ in _snapshot.Lister(5 << 20).files(str(plain))]
    assert names == sorted([*_expected_tree(repo), "logs/a.txt", "secret.env"])
    big = _snapshot.Lister(20, extra=("model.py",))
    entries = _snapshot.scan(str(repo), big, _snapshot.HashCache(str(tmp_path / "h.json")))
    assert [e.path for e in entries] == [".gitignore"] and "train.py" in big.too_big


def test_hash_cache_sees_a_changed_file(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("one\n")
    cache = _snapshot.HashCache(str(tmp_path / "h.json"))
    sha1 = cache.hash(str(f), os.stat(f))
    f.write_text("two\n")  # same size, new content
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 1))
    assert cache.hash(str(f), os.stat(f)) == hashlib.sha256(b"two\n").hexdigest() != sha1


def test_a_failing_snapshot_warns_and_keeps_the_experiment(server: ArwxServer, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, logging
        logging.basicConfig()
        from arwandb import autoresearch as ar
        ar.session(tag="bad")
        e = ar.experiment(note="bad snapshot", diff="", snapshot=42)
        print(json.dumps(e))
    """)
    p = _py(code, tmp_path, _env(server, "bad-p"))
    e = json.loads(p.stdout.splitlines()[-1])
    assert "snapshot" in e and e["snapshot"].get("error") and "snapshot" in p.stderr
    assert server.get(f"/v1/experiments/{e['id']}")["note"] == "bad snapshot"


def test_the_next_run_delivers_the_offline_backlog(server: ArwxServer, tmp_path: Path) -> None:
    """``arwandb.init()`` online delivers autoresearch calls an earlier offline process left behind."""
    repo = _repo(tmp_path)
    out = json.loads(_py(LOOP, repo, _env(server, "next-p", ARWANDB_MODE="offline")).stdout.splitlines()[-1])
    assert out["pending"] == 13
    code = textwrap.dedent("""
        import time, arwandb
        from arwandb._journal import Journal
        run = arwandb.init(project="next-p", system_metrics=False)
        j = Journal(run.settings.root)
        end = time.monotonic() + 60
        while j.pending() and time.monotonic() < end:
            time.sleep(0.05)
        run.log({"loss": 1.0})
        run.finish()
        print(j.pending())
    """)
    assert _py(code, repo, _env(server, "next-p")).stdout.split()[-1] == "0"
    _check_loop_arrived_once(server, "next-p", out, repo)
