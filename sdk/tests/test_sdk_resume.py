"""Resume (``init(id=…, resume=…)``) against a real ``arwx server`` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from test_sdk_server import ArwxServer, _server_cmd, child_env, wait_for

import arwandb


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArwxServer]:
    cmd = _server_cmd()
    if cmd is None:
        pytest.skip("arwx server not importable yet (PYTHONPATH=services python -m arwx.cli failed)")
    s = ArwxServer(cmd, str(tmp_path_factory.mktemp("arwx-resume")))
    s.start()
    yield s
    s.kill(signal.SIGTERM)


def _history(server: ArwxServer, run_id: str) -> list[dict]:
    rows, cursor = [], None
    while True:
        q = f"/v1/runs/{run_id}/metrics?limit=100000" + (f"&cursor={cursor}" if cursor else "")
        page = server.get(q)
        rows += page["rows"]
        cursor = page["next"]
        if not cursor:
            return rows


def test_resume_must_on_unknown_and_never_on_existing_fail_at_init(server: ArwxServer, tmp_path) -> None:
    kw = {"base_url": server.url, "api_key": server.key, "dir": str(tmp_path), "system_metrics": False}
    with pytest.raises(arwandb.ResumeError, match="does not exist"):
        arwandb.init(project="resume", id="never-made", writer_id="w", resume="must", **kw)
    r = arwandb.init(project="resume", id="made-once", writer_id="w", resume="never", **kw)
    r.log({"loss": 1.0})
    r.finish()
    with pytest.raises(arwandb.ResumeError, match="already exists"):
        arwandb.init(project="resume", id="made-once", writer_id="w", resume="never", **kw)
    with pytest.raises(ValueError, match="resume must be"):
        arwandb.init(project="resume", id="made-once", writer_id="w", resume="sometimes", **kw)
    # "must" on the finished run re-opens it: running again, the step axis and seq range go on.
    r = arwandb.init(project="resume", id="made-once", writer_id="w", resume="must", **{**kw, "dir": str(tmp_path / "b")})
    assert r.step == 1
    assert server.get("/v1/runs/made-once")["status"] == "running"
    r.log({"loss": 2.0})
    r.finish()
    rec = server.wait_stored("made-once", 2)
    assert rec["intact"] and rec["status"] == "finished" and rec["writers"][0]["sent"] == 2, rec
    assert [(row["step"], row["loss"]) for row in _history(server, "made-once")] == [(0, 1.0), (1, 2.0)]


def test_the_writer_position_endpoint(server: ArwxServer) -> None:
    req = urllib.request.Request(
        server.url + "/v1/runs",
        data=json.dumps({"id": "pos1", "project": "resume"}).encode(),
        headers={"Authorization": f"Bearer {server.key}"},
    )
    urllib.request.urlopen(req, timeout=10).close()
    pts = [{"seq": i, "step": 10 + i, "key": "x", "value": float(i)} for i in range(7)]
    req = urllib.request.Request(
        server.url + "/v1/ingest",
        data=json.dumps({"run_id": "pos1", "writer_id": "rank3", "points": pts}).encode(),
        headers={"Authorization": f"Bearer {server.key}"},
    )
    urllib.request.urlopen(req, timeout=10).close()
    # No waiting here: the endpoint itself waits until what was acknowledged is stored.
    pos = server.get("/v1/runs/pos1/writers/rank3")
    assert pos == {"run_id": "pos1", "writer_id": "rank3", "next_seq": 7, "last_step": 16, "committed": 7, "sent": None,
                   "attempt": 0}
    fresh = server.get("/v1/runs/pos1/writers/rank9")
    assert (fresh["next_seq"], fresh["last_step"], fresh["committed"]) == (0, None, 0)
    # The server checks resume itself too (two processes may race the SDK's own check).
    for body, status, says in (
        ({"id": "pos-none", "resume": "must"}, 404, "resume='must' needs an existing run"),
        ({"id": "pos1", "resume": "never"}, 409, "exists and resume is 'never'"),
        ({"id": "pos1", "resume": "maybe"}, 400, "resume"),
    ):
        req = urllib.request.Request(
            server.url + "/v1/runs", data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {server.key}"}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == status and says in json.load(e.value)["error"], body
    for bad in ("a%2Fb", "x" * 129):
        with pytest.raises(urllib.error.HTTPError) as e:
            server.get(f"/v1/runs/pos1/writers/{bad}")
        assert e.value.code in (400, 404)


RANK_FIRST = r"""
import arwandb, os, sys
rank = int(os.environ["RANK"])
run = arwandb.init(project="preempt", resume="allow", flush_interval=0.2)
print("STARTED", flush=True)
step = 0
while True:  # killed with -9 somewhere in here
    run.log({"loss": step * 10.0 + rank})
    step += 1
    if step % 50 == 0:
        __import__("time").sleep(0.01)
"""

RANK_RESUMED = r"""
import arwandb, os
rank = int(os.environ["RANK"])
run = arwandb.init(project="preempt", resume="must")
start = run.step
for step in range(start, start + 1500):
    run.log({"loss": step * 10.0 + rank})
run.finish()
print("RESUMED", start, start + 1500, flush=True)
"""


def test_eight_ranks_killed_then_resumed_in_fresh_directories(server: ArwxServer, tmp_path) -> None:
    """kill -9 of every rank mid-run, then a restart with resume="must" and no spool (another
    machine): one run, an intact receipt, every step of every rank exactly once."""
    run_id = "preempt8"

    def spawn(script: str, rank: int, phase: str) -> subprocess.Popen[str]:
        env = child_env(
            server, RANK=str(rank), ARWANDB_RUN_ID=run_id, ARWANDB_WRITER_ID=f"rank{rank}",
            ARWANDB_DIR=str(tmp_path / phase / f"rank{rank}"),
        )
        return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)

    first = [spawn(RANK_FIRST, r, "first") for r in range(8)]
    for p in first:
        assert p.stdout is not None and p.stdout.readline().strip() == "STARTED"

    def committed_each() -> bool:
        rec = server.integrity(run_id)
        got = {w["writer_id"]: w["committed"] for w in rec["writers"]}
        return len(got) == 8 and min(got.values()) >= 1000

    wait_for(committed_each, 90, "every rank to have points committed")
    for p in first:
        p.kill()  # SIGKILL: no finish, no flush
    for p in first:
        p.wait(20)
    assert server.get(f"/v1/runs/{run_id}")["status"] == "running"

    resumed = [spawn(RANK_RESUMED, r, "second") for r in range(8)]
    ends = {}
    for r, p in enumerate(resumed):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
        _, start, end = out.split()[-3:]
        assert int(start) > 0  # it continued; it did not start over
        ends[f"rank{r}"] = int(end)

    rec = server.wait_stored(run_id, sum(ends.values()), timeout=60)
    assert rec["intact"] is True and rec["lost"] == 0 and rec["conflicts"] == 0, rec
    assert rec["status"] == "finished"
    for w in rec["writers"]:
        end = ends[w["writer_id"]]
        # One point per step: the seq range is the step range, whole, each point once.
        assert (w["sent"], w["stored"], w["seq_min"], w["seq_max"], w["gaps"]) == (end, end, 0, end - 1, []), w
    by_writer: dict[str, list[tuple[int, float]]] = {}
    for row in _history(server, run_id):
        by_writer.setdefault(row["writer_id"], []).append((row["step"], row["loss"]))
    assert sorted(by_writer) == sorted(ends)
    for w, pts in by_writer.items():
        rank = int(w[4:])
        assert pts == [(s, s * 10.0 + rank) for s in range(ends[w])], w  # no step twice, none missing
    runs = server.get("/v1/projects/preempt/runs")["runs"]
    assert [r["id"] for r in runs] == [run_id]
    assert not any(os.path.exists(tmp_path / "second" / f"rank{r}" / "arwandb" / run_id / f"rank{r}" / "rejected.ndjson")
                   for r in range(8))
