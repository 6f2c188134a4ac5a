"""Run lifecycle on a real server: heartbeats and crash detection, edit, soft delete and restore, purge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import arwandb
from tests.helpers import Api, ServerProcess, points, wait_for

SDK = str(Path(__file__).resolve().parent.parent / "sdk")

SILENT = r"""
import arwandb, sys, time
run = arwandb.init(project="crashy", id=sys.argv[1], writer_id="rank0", resume="allow", system_metrics=False)
for step in range(10):
    run.log({"loss": 1.0 / (step + 1)})
print("READY", flush=True)
time.sleep(600)  # killed with -9 here: no finish, no more heartbeats
"""


@pytest.fixture(scope="module")
def quick_crash(tmp_path_factory: pytest.TempPathFactory):
    """A server (a process: chDB takes one data path per process) that calls a run crashed
    after 1 s without a heartbeat."""
    srv = ServerProcess(tmp_path_factory.mktemp("arwx-crash") / "data", env={"ARWX_RUN_CRASH_AFTER_S": "1"}).start()
    yield srv
    srv.terminate()


def test_a_silent_run_becomes_crashed_and_returns_when_a_writer_does(quick_crash: ServerProcess, tmp_path, monkeypatch) -> None:
    api = quick_crash.api()
    # A run whose writers never send heartbeats (curl, an adapter) is never judged.
    api.ok("POST", "/v1/runs", {"id": "quiet", "project": "crashy"})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ARWANDB_", "WANDB_"))},
        "PYTHONPATH": SDK, "ARWANDB_BASE_URL": quick_crash.url, "ARWANDB_API_KEY": api.key or "",
        "ARWANDB_DIR": str(tmp_path / "a"), "ARWANDB_HEARTBEAT_INTERVAL": "0.2",
    }
    p = subprocess.Popen([sys.executable, "-c", SILENT, "beating"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        first = wait_for(lambda: api.ok("GET", "/v1/runs/beating")["heartbeat_at"], 20, what="a first heartbeat")
        # Alive for longer than the bound: heartbeats keep it running.
        wait_for(lambda: api.ok("GET", "/v1/runs/beating")["heartbeat_at"] >= first + 2.0, 20, what="2 s of heartbeats")
        assert api.ok("GET", "/v1/runs/beating")["status"] == "running"
    finally:
        p.kill()
        p.wait(20)
    wait_for(lambda: api.ok("GET", "/v1/runs/beating")["status"] == "crashed", 20, what="the run to be judged crashed")
    listed = api.ok("GET", "/v1/projects/crashy/runs", params={"status": "crashed"})["runs"]
    assert [r["id"] for r in listed] == ["beating"]
    assert api.ok("GET", "/v1/runs/quiet")["status"] == "running"
    assert api.ok("GET", "/v1/runs/beating")["finished_at"] is None  # detected, not reported
    # A writer comes back (a resumed rank on another machine): running again, then finished.
    monkeypatch.setenv("ARWANDB_HEARTBEAT_INTERVAL", "0.2")
    run = arwandb.init(project="crashy", id="beating", writer_id="rank0", resume="must", dir=str(tmp_path / "b"),
                       base_url=quick_crash.url, api_key=api.key, system_metrics=False)
    wait_for(lambda: api.ok("GET", "/v1/runs/beating")["status"] == "running", 20, what="the run to run again")
    listed = api.ok("GET", "/v1/projects/crashy/runs", params={"status": "running"})["runs"]
    assert sorted(r["id"] for r in listed) == ["beating", "quiet"]
    run.log({"loss": 0.01})
    run.finish()
    got = api.ok("GET", "/v1/runs/beating")
    assert got["status"] == "finished" and got["finished_at"] is not None
    rec = api.wait_intact("beating", 11)
    assert rec["points_stored"] == 11 and rec["lost"] == 0


def test_a_finished_run_is_never_judged_and_a_heartbeat_never_undoes_a_finish(quick_crash: ServerProcess) -> None:
    api = quick_crash.api()
    api.ok("POST", "/v1/runs", {"id": "done", "project": "crashy2"})
    assert api.ok("POST", "/v1/runs/done/heartbeat") == {"id": "done", "status": "running"}
    api.ok("POST", "/v1/runs/done/finish", {"status": "finished"})
    assert api.ok("POST", "/v1/runs/done/heartbeat") == {"id": "done", "status": "finished"}
    # Another run, judged crashed meanwhile, shows the watch ran past this one's bound.
    api.ok("POST", "/v1/runs", {"id": "witness", "project": "crashy2"})
    api.ok("POST", "/v1/runs/witness/heartbeat")
    wait_for(lambda: api.ok("GET", "/v1/runs/witness")["status"] == "crashed", 20, what="the witness to crash")
    assert api.ok("GET", "/v1/runs/done")["status"] == "finished"
    # A writer that finishes after a detected crash ends it.
    api.ok("POST", "/v1/runs/witness/finish", {"status": "finished", "writer_totals": {}})
    assert api.ok("GET", "/v1/runs/witness")["status"] == "finished"
    assert api.request("POST", "/v1/runs/nope/heartbeat")[0] == 404


def test_edit_a_run(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "ed1", "project": "edits", "config": {"lr": 0.1, "bs": 32, "opt": "adam"}})
    got = api.ok("PATCH", "/v1/runs/ed1", {"name": "baseline", "tags": ["a", "b", "a"], "notes": "first try",
                                           "config": {"lr": 0.2, "opt": None, "wd": 0.01}})
    assert (got["name"], got["tags"], got["notes"]) == ("baseline", ["a", "b"], "first try")
    assert got["config"] == {"lr": 0.2, "bs": 32, "wd": 0.01}
    assert api.ok("GET", "/v1/runs/ed1") == got
    got = api.ok("PATCH", "/v1/runs/ed1", {"tags": []})  # only what is given changes
    assert (got["name"], got["tags"], got["notes"], got["config"]["lr"]) == ("baseline", [], "first try", 0.2)
    listed = api.ok("GET", "/v1/projects/edits/runs")["runs"]
    assert (listed[0]["name"], listed[0]["tags"], listed[0]["notes"]) == ("baseline", [], "first try")
    for bad, says in (
        ({"tags": "a"}, "tags"), ({"tags": [""]}, "tags"), ({"name": ""}, "name"), ({"nope": 1}, "nope"),
        ({"config": [1]}, "config"), ({"tags": ["x"] * 101}, "tags"),
    ):
        status, out = api.request("PATCH", "/v1/runs/ed1", bad)
        assert status == 400 and says in out["error"], (bad, status, out)
    status, out = api.request("PATCH", "/v1/runs/ed1", {"config": {"big": "x" * (300 << 10)}})
    assert status == 413, out
    assert api.ok("GET", "/v1/runs/ed1")["config"] == {"lr": 0.2, "bs": 32, "wd": 0.01}  # nothing of a refusal kept
    assert api.request("PATCH", "/v1/runs/nope", {"name": "x"})[0] == 404


def test_soft_delete_and_restore(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "del1", "project": "trash"})
    api.ok("POST", "/v1/runs", {"id": "keep1", "project": "trash"})
    api.ok("POST", "/v1/ingest", {"points": points("del1", "w", range(5))})
    api.wait_intact("del1", 5)
    got = api.ok("DELETE", "/v1/runs/del1")
    assert got["deleted"] is True and got["deleted_at"]
    assert [r["id"] for r in api.ok("GET", "/v1/projects/trash/runs")["runs"]] == ["keep1"]
    assert [r["id"] for r in api.ok("GET", "/v1/projects/trash/runs", params={"deleted": "true"})["runs"]] == ["del1"]
    chart = api.ok("GET", "/v1/projects/trash/charts", params={"keys": "loss"})
    assert chart["runs"] == ["keep1"]
    # A deleted run takes no points and cannot be created again; it still reads.
    status, out = api.request("POST", "/v1/ingest", {"points": points("del1", "w", range(5, 10))})
    assert status == 409 and "deleted" in out["error"], out
    status, out = api.request("POST", "/v1/runs", {"id": "del1", "project": "trash"})
    assert status == 409 and "restore" in out["error"], out
    assert api.receipt("del1")["points_stored"] == 5
    assert api.request("GET", "/v1/projects/trash/runs", params={"deleted": "maybe"})[0] == 400
    got = api.ok("POST", "/v1/runs/del1/restore")
    assert got["deleted"] is False and got["deleted_at"] is None
    api.ok("POST", "/v1/ingest", {"points": points("del1", "w", range(5, 10))})
    assert api.wait_intact("del1", 10)["points_stored"] == 10
    assert sorted(r["id"] for r in api.ok("GET", "/v1/projects/trash/runs")["runs"]) == ["del1", "keep1"]
    assert api.request("DELETE", "/v1/runs/nope")[0] == 404
    assert api.request("POST", "/v1/runs/nope/restore")[0] == 404


def _rows(embedded, org_run: tuple[str, str]) -> dict[str, int]:
    """Rows of the run in every ClickHouse table holding runs, counted there."""
    from arwx.purge import count_rows, run_targets

    org, run = org_run
    store = embedded.server.store

    async def count() -> dict[str, int]:
        return await count_rows(store, await run_targets(store), org, [run])

    return embedded.call(count())


def test_purge_needs_an_admin_key_and_a_confirmation_then_removes_every_row(embedded, api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "gone", "project": "purges"})
    api.ok("POST", "/v1/runs", {"id": "stays", "project": "purges"})
    pts = points("gone", "w0", range(300)) + points("gone", "w1", range(200), key="acc")
    pts.append({"run_id": "gone", "writer_id": "w1", "seq": 200, "step": 200, "key": "acc", "value": None})  # skipped
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.ok("POST", "/v1/ingest", {"points": points("gone", "w0", range(250, 260))})  # a re-send: ledger rows
    api.ok("POST", "/v1/ingest", {"points": points("stays", "w0", range(50))})
    api.wait_intact("gone", 501)
    api.wait_intact("stays", 50)
    org = embedded.call(embedded.server.tenancy.authenticate(api.key)).org
    before = _rows(embedded, (org, "gone"))
    assert before["points"] == 501 and before["ledger"] >= 2 and before["chart_cells"] > 0 and before["point_skips"] == 1
    assert before["runs"] >= 1
    # A key of the org without the admin scope: 403; another org's admin: 404 (existence never leaks).
    writer = api.with_key(api.ok("POST", "/v1/keys", {"name": "trainer", "scopes": ["read", "write"]})["key"])
    status, out = writer.request("POST", "/v1/runs/gone/purge", params={"confirm": "gone"})
    assert status == 403 and "admin" in out["error"], out
    other = api.with_key(embedded.new_org_key())
    assert other.request("POST", "/v1/runs/gone/purge", params={"confirm": "gone"})[0] == 404
    status, out = api.request("POST", "/v1/runs/gone/purge")
    assert status == 400 and "confirm=gone" in out["error"], out
    status, out = api.request("POST", "/v1/runs/gone/purge", params={"confirm": "stays"})
    assert status == 400, out
    assert api.receipt("gone")["points_stored"] == 501  # refusals change nothing
    out = api.ok("POST", "/v1/runs/gone/purge", params={"confirm": "gone"})
    removed = out["removed"]
    assert out["purged"] is True and removed["runs"] >= before["runs"]  # the purge's own soft delete adds a row
    assert {t: n for t, n in removed.items() if t != "runs"} == {t: n for t, n in before.items() if t != "runs"}
    assert _rows(embedded, (org, "gone")) == dict.fromkeys(before, 0)
    assert api.request("GET", "/v1/runs/gone")[0] == 404
    assert api.receipt("stays")["points_stored"] == 50  # the other run is untouched
    assert [r["id"] for r in api.ok("GET", "/v1/projects/purges/runs")["runs"]] == ["stays"]
    # The id is free again, its seqs too (nothing remembers the purged points as stored).
    api.ok("POST", "/v1/runs", {"id": "gone", "project": "purges"})
    assert api.receipt("gone")["points_stored"] == 0
    api.ok("POST", "/v1/ingest", {"points": points("gone", "w0", range(10))})
    rec = api.wait_intact("gone", 10)
    assert (rec["points_stored"], rec["duplicates_collapsed"], rec["conflicts"]) == (10, 0, 0), rec
