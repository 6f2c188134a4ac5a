"""Wild V2 sweeps and runs against a real ``arwx server`` process and real ``arwx runner`` processes.

The commands are small Python scripts that log metrics through ``arwandb``
with no knowledge of the runner: the run, project and key come from the
environment the runner gives them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import Api, ServerProcess, wait_for
from tests.wild_helpers import TRAIN_SCRIPT, RunnerProcess, WildApi, launch_key, runner_key, start_server

LOST_AFTER_S = 3.0
FINAL = {"finished", "failed", "stopped", "lost"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv, _ = start_server(tmp_path_factory.mktemp("wild") / "data", ["--wild-lost-after-s", str(LOST_AFTER_S)])
    yield srv
    srv.terminate()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    return server.api()


@pytest.fixture(scope="module")
def wild(server: ServerProcess, admin: Api) -> WildApi:
    """The seed's client, with a key that may launch."""
    return WildApi(server.url, launch_key(admin))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "work" / "scripts").mkdir(parents=True)
    (tmp_path / "work" / "scripts" / "train_mnist_mlp.py").write_text(TRAIN_SCRIPT)
    return tmp_path / "work"


def _sweep(wild: WildApi, name: str, chat: str = "chat-1") -> str:
    return wild.ok("POST", "/sweeps/wild", {"name": name, "goal": f"goal of {name}", "chat_session_id": chat})["id"]


def _run(wild: WildApi, sweep_id: str, command: str, name: str = "r", auto_start: bool = True) -> dict:
    return wild.ok("POST", "/runs", {"name": name, "command": command, "sweep_id": sweep_id,
                                     "chat_session_id": "chat-1", "auto_start": auto_start})


def _wait_status(wild: WildApi, run_id: str, statuses: set[str], timeout: float = 90.0) -> dict:
    try:
        return wait_for(lambda: (r := wild.ok("GET", f"/runs/{run_id}")) and r["status"] in statuses and r,
                        timeout, 0.1, f"run {run_id} to be {statuses}")
    except AssertionError as e:
        raise AssertionError(f"{e}; run: {wild.ok('GET', f'/runs/{run_id}')}") from None


def test_the_seeds_canonical_flow(server: ServerProcess, wild: WildApi, workdir: Path, tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-a"), tmp_path / "runner", "runner-a",
                           runner_concurrency=2)
    try:
        # Step 1: create sweep.
        status, sweep = wild.post("/sweeps/wild", {
            "name": "mnist-mlp-cpu-grid", "goal": "one-layer MLP grid search on MNIST CPU", "chat_session_id": "chat-42",
        })
        assert status == 201, sweep
        sweep_id = sweep["id"]
        # Step 2: create runs, once per grid combination.
        grid = [("1e-2", 128, 1), ("1e-3", 128, 1), ("1e-2", 256, 2)]
        run_ids = []
        for lr, bs, seed in grid:
            status, run = wild.post("/runs", {
                "name": f"mnist-mlp-lr{lr}-bs{bs}-seed{seed}",
                "command": f"cd {workdir} && {sys.executable} scripts/train_mnist_mlp.py --lr {lr} --batch-size {bs} "
                           f"--seed {seed} --device cpu --log-dir exp/logs --out-dir exp/outputs",
                "sweep_id": sweep_id, "chat_session_id": "chat-42", "auto_start": True,
            })
            assert status == 201 and run["status"] == "queued", run
            run_ids.append(run["id"])
        # Step 3: monitor.
        def done() -> bool:
            runs = {r["id"]: r for r in wild.ok("GET", "/runs")["runs"]}
            health = wild.ok("GET", "/wild/v2/system-health")
            assert health["status"] == "ok" and [r["id"] for r in health["runners"]] == ["runner-a"]
            return all(runs[i]["status"] in FINAL for i in run_ids)

        wait_for(done, 120, 0.2, "the sweep's runs to end")
        got = wild.ok("GET", f"/sweeps/{sweep_id}")
        assert got["name"] == "mnist-mlp-cpu-grid" and got["project"] == "mnist-mlp-cpu-grid"
        assert got["counts"]["finished"] == 3 and got["total"] == 3, got["counts"]
        assert sorted(r["id"] for r in got["runs"]) == sorted(run_ids)
        for run_id, (lr, _, seed) in zip(run_ids, grid):
            run = wild.ok("GET", f"/runs/{run_id}")
            assert run["status"] == "finished" and run["exit_code"] == 0, run
            assert run["started_at"] <= run["ended_at"] and run["duration_s"] >= 0 and run["runner_id"] == "runner-a"
            # The metrics it logged, through arwandb into the run the runner named.
            assert run["metrics"]["loss"] == {"last": pytest.approx(float(lr) * 100 / 20), "step": 19, "count": 20}
            assert run["metrics"]["acc"]["count"] == 20
            # An arwx run like any other: in the sweep's project, its receipt intact, its history complete.
            arwx_run = wild.ok("GET", f"/v1/runs/{run_id}")
            assert arwx_run["project"] == "mnist-mlp-cpu-grid" and arwx_run["status"] == "finished"
            # The script's own config (arwandb.init(config=...)) beside what the sweep recorded.
            assert arwx_run["config"]["lr"] == float(lr) and arwx_run["config"]["seed"] == seed
            assert arwx_run["config"]["wild"]["sweep_id"] == sweep_id
            receipt = wild.wait_intact(run_id, 40)
            assert receipt["points_stored"] == 40 and receipt["lost"] == 0
            rows = wild.ok("GET", f"/v1/runs/{run_id}/metrics", params={"keys": "loss"})["rows"]
            assert [r["step"] for r in rows] == list(range(20))
            logs = wild.ok("GET", f"/runs/{run_id}/logs")
            assert f"trained lr={float(lr)} seed={seed} steps=20" in logs["stdout"], logs
            # The audit trail: who (key, chat session) created, started and ran it, and when.
            events = wild.ok("GET", f"/runs/{run_id}/audit")["events"]
            actions = [e["action"] for e in events]
            assert actions == ["run.create", "run.start", "run.claim", "run.finished"], actions
            assert events[0]["chat_session_id"] == "chat-42" and events[0]["key_id"] == events[1]["key_id"]
            assert events[2]["detail"] == {"runner_id": "runner-a"} and events[0]["at"] <= events[3]["at"]
        # The project shows the sweep's runs; the sweep's own audit has its creation.
        project = wild.ok("GET", "/v1/projects/mnist-mlp-cpu-grid")
        assert project["runs"] == 3 and project["by_status"] == {"finished": 3}
        assert wild.ok("GET", f"/sweeps/{sweep_id}/audit")["events"][0]["action"] == "sweep.create"
        # Every run's own write key was revoked when it ended.
        keys = {k["name"]: k for k in server.api().ok("GET", "/v1/keys")["keys"]}
        assert all(keys[f"wild run {i}"]["revoked"] for i in run_ids)
        assert any(s["id"] == sweep_id for s in wild.ok("GET", "/sweeps")["sweeps"])
    finally:
        runner.stop()


PROBE = """\
import json, os, sys, urllib.request
u, k, me = os.environ["ARWANDB_BASE_URL"], os.environ["ARWANDB_API_KEY"], os.environ["ARWANDB_RUN_ID"]
def call(method, path, body=None):
    req = urllib.request.Request(u + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + k})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
pt = [{"seq": 0, "step": 0, "key": "x", "value": 1.0}]
print(json.dumps({
    "own_ingest": call("POST", "/v1/ingest", {"run_id": me, "writer_id": "w", "points": pt}),
    "other_ingest": call("POST", "/v1/ingest", {"run_id": sys.argv[1], "writer_id": "w", "points": pt}),
    "other_create": call("POST", "/v1/runs", {"id": "not-mine"}),
    "other_finish": call("POST", "/v1/runs/" + sys.argv[1] + "/finish", {}),
    "read_own": call("GET", "/v1/runs/" + me),
    "sweep": call("POST", "/sweeps/wild", {"name": "x", "goal": "g", "chat_session_id": "c"}),
    "stop_other": call("POST", "/runs/" + sys.argv[1] + "/stop", {}),
    "keys": call("GET", "/v1/keys"),
}))
"""


def test_a_commands_key_writes_its_own_run_only(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    sweep = _sweep(wild, "key-probe")
    victim = _run(wild, sweep, "true", auto_start=False)
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-p"), tmp_path / "runner", "runner-p")
    try:
        run = _run(wild, sweep, f"{sys.executable} {tmp_path / 'probe.py'} {victim['id']}")
        assert _wait_status(wild, run["id"], FINAL)["status"] == "finished"
    finally:
        runner.stop()
    got = json.loads(wild.ok("GET", f"/runs/{run['id']}/logs")["stdout"])
    assert got == {"own_ingest": 200, "other_ingest": 404, "other_create": 403, "other_finish": 403, "read_own": 403,
                   "sweep": 403, "stop_other": 403, "keys": 403}, got
    assert wild.ok("GET", f"/runs/{victim['id']}")["status"] == "created"
    assert wild.ok("GET", f"/v1/runs/{victim['id']}")["status"] == "running"
    wild.ok("POST", f"/runs/{victim['id']}/stop", {})


def test_create_or_reuse_a_sweep_and_filters(wild: WildApi) -> None:
    first = wild.post("/sweeps/wild", {"name": "reuse-me", "goal": "g", "chat_session_id": "c1"})
    again = wild.post("/sweeps/wild", {"name": "reuse-me", "goal": "other", "chat_session_id": "c2"})
    assert (first[0], again[0]) == (201, 200) and first[1]["id"] == again[1]["id"] and again[1]["goal"] == "g"
    other = _sweep(wild, "other-sweep")
    a = _run(wild, first[1]["id"], "true", auto_start=False)
    b = _run(wild, other, "true", auto_start=False)
    assert a["status"] == "created"
    listed = wild.ok("GET", "/runs", params={"sweep_id": other})["runs"]
    assert [r["id"] for r in listed] == [b["id"]]
    created = {r["id"] for r in wild.ok("GET", "/runs", params={"status": "created"})["runs"]}
    assert {a["id"], b["id"]} <= created
    assert wild.get("/runs", status="bogus")[0] == 400
    # A run not started yet is stopped at once; an ended run cannot be started again.
    stopped = wild.ok("POST", f"/runs/{a['id']}/stop", {"chat_session_id": "c3"})
    assert stopped["status"] == "stopped"
    assert wild.post(f"/runs/{a['id']}/start", {})[0] == 409
    assert wild.ok("GET", f"/v1/runs/{a['id']}")["status"] == "killed"
    assert [e["action"] for e in wild.ok("GET", f"/runs/{a['id']}/audit")["events"]] == ["run.create", "run.stop"]


def test_stop_a_running_run_kills_its_process_group(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-s"), tmp_path / "runner", "runner-s")
    try:
        sweep = _sweep(wild, "stop-sweep")
        # A shell that ignores SIGTERM, with a child of its own: both must die (SIGKILL after the grace).
        child_pid = tmp_path / "child.pid"
        cmd = f"trap '' TERM; sleep 1000 & echo $! > {child_pid}; echo started; wait"
        run = _run(wild, sweep, cmd)
        _wait_status(wild, run["id"], {"running"})
        wait_for(lambda: "started" in wild.ok("GET", f"/runs/{run['id']}/logs")["stdout"], 30, 0.1, "output")
        t0 = time.monotonic()
        assert wild.ok("POST", f"/runs/{run['id']}/stop", {"chat_session_id": "c"})["stop_requested"] is True
        ended = _wait_status(wild, run["id"], FINAL, 30)
        assert ended["status"] == "stopped" and ended["exit_code"] == -9, ended  # SIGKILL: TERM was ignored
        assert time.monotonic() - t0 >= 2  # the grace period passed first
        pid = int(child_pid.read_text())
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                 10, 0.1, "the command's child to be killed")
        actions = [e["action"] for e in wild.ok("GET", f"/runs/{run['id']}/audit")["events"]]
        assert actions == ["run.create", "run.start", "run.claim", "run.stop", "run.stopped"]
    finally:
        runner.stop()


def test_a_runner_stopped_with_sigterm_stops_and_reports_its_runs(server: ServerProcess, wild: WildApi,
                                                                  tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-t"), tmp_path / "runner", "runner-t")
    run = _run(wild, _sweep(wild, "sigterm"), "sleep 1000")
    _wait_status(wild, run["id"], {"running"})
    assert runner.stop() == 0
    ended = wild.ok("GET", f"/runs/{run['id']}")
    assert ended["status"] == "stopped" and ended["error"] == "the runner was stopped", ended
    assert "arwx runner: stopped" in runner.output()


def test_a_killed_runner_has_its_runs_marked_lost(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-k"), tmp_path / "runner", "runner-k")
    pid_file = tmp_path / "cmd.pid"
    try:
        sweep = _sweep(wild, "lost-sweep")
        run = _run(wild, sweep, f"echo $$ > {pid_file}; exec sleep 1000")
        _wait_status(wild, run["id"], {"running"})
        runner.kill9()
        t0 = time.monotonic()
        lost = _wait_status(wild, run["id"], FINAL, LOST_AFTER_S + 30)
        assert lost["status"] == "lost" and "runner-k" in lost["error"], lost
        assert time.monotonic() - t0 <= LOST_AFTER_S + 10
        health = wild.ok("GET", "/wild/v2/system-health")
        me = next(r for r in health["runners"] if r["id"] == "runner-k")
        assert me["alive"] is False and me["running"] == [] and me["seconds_since_heartbeat"] >= LOST_AFTER_S
        assert wild.ok("GET", f"/v1/runs/{run['id']}")["status"] == "crashed"
        keys = {k["name"]: k for k in server.api().ok("GET", "/v1/keys")["keys"]}
        assert keys[f"wild run {run['id']}"]["revoked"] is True
    finally:
        if pid_file.exists():  # the command outlived its killed runner (its own session): end it
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_two_runners_share_one_queue_without_a_double_claim(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    sweep = _sweep(wild, "shared-queue")
    ledger = tmp_path / "executed.txt"
    runs = [_run(wild, sweep, f"echo $ARWANDB_RUN_ID >> {ledger}; sleep 0.2", name=f"q{i}") for i in range(8)]
    keys = [runner_key(server.api(), f"runner-{n}") for n in "xy"]
    runners = [RunnerProcess(server.url, k, tmp_path / n, f"runner-{n}", runner_concurrency=2, runner_poll_s=0.05)
               for k, n in zip(keys, "xy")]
    try:
        for r in runs:
            assert _wait_status(wild, r["id"], FINAL)["status"] == "finished"
    finally:
        for rp in runners:
            rp.stop()
    executed = ledger.read_text().split()
    assert sorted(executed) == sorted(r["id"] for r in runs)  # each ran exactly once
    for r in runs:
        claims = [e for e in wild.ok("GET", f"/runs/{r['id']}/audit")["events"] if e["action"] == "run.claim"]
        assert len(claims) == 1


def test_concurrent_claims_never_hand_out_a_run_twice(server: ServerProcess, wild: WildApi) -> None:
    """The claim itself, raced: 16 claimers at once on 24 queued runs, no runner process involved."""
    sweep = _sweep(wild, "claim-race")
    ids = {_run(wild, sweep, "true", name=f"c{i}")["id"] for i in range(24)}
    claimer_keys = [launch_key(server.api(), f"claimer-{i}") for i in range(4)]
    got: list[list[str]] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        api = WildApi(server.url, claimer_keys[i % 4])
        out = api.ok("POST", "/wild/v2/runner/claim", {"runner_id": f"claimer-{i % 4}", "max": 3})
        with lock:
            got.append([r["id"] for r in out["runs"] if r["id"] in ids])

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for batch in got for i in batch]
    assert len(claimed) == len(set(claimed)) == 24, got
    for run_id in ids:  # end them, so no other test's runner sees them
        run = wild.ok("GET", f"/runs/{run_id}")
        api = WildApi(server.url, claimer_keys[int(run["runner_id"].split("-")[1])])
        api.ok("POST", f"/wild/v2/runner/runs/{run_id}/report", {"runner_id": run["runner_id"], "status": "finished",
                                                                  "exit_code": 0})


def test_output_past_the_cap_costs_no_more_than_the_cap(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    cap = 1 << 20
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-c"), tmp_path / "runner", "runner-c",
                           runner_log_cap_bytes=cap)
    try:
        sweep = _sweep(wild, "loud")
        run = _run(wild, sweep, "yes 0123456789abcdef | head -c 40000000; echo err >&2")
        ended = _wait_status(wild, run["id"], FINAL, 120)
        assert ended["status"] == "finished", ended
        assert "stdout: 38951424 bytes past the 1048576-byte cap dropped" in ended["error"]
        logs = wild.ok("GET", f"/runs/{run['id']}/logs", params={"tail": 2})
        assert logs["stdout_bytes"] == cap and logs["stderr"] == "err\n"
        # 1 MiB is 61680 whole lines of 17 bytes and 16 bytes of the next: the last two lines.
        assert logs["stdout"] == "0123456789abcdef\n0123456789abcdef"
        assert (tmp_path / "runner" / f"{run['id']}.logs" / "stdout.log").stat().st_size == cap
    finally:
        runner.stop()


def test_wall_time_limit_fails_the_run(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-w"), tmp_path / "runner", "runner-w",
                           runner_max_wall_s=1.5)
    try:
        run = _run(wild, _sweep(wild, "slow"), "sleep 1000")
        ended = _wait_status(wild, run["id"], FINAL, 60)
        assert ended["status"] == "failed" and "wall time limit of 1.5 s" in ended["error"], ended
    finally:
        runner.stop()


def test_follow_logs_streams_until_the_run_ends(server: ServerProcess, wild: WildApi, tmp_path: Path) -> None:
    runner = RunnerProcess(server.url, runner_key(server.api(), "runner-f"), tmp_path / "runner", "runner-f")
    try:
        run = _run(wild, _sweep(wild, "follow"), "for i in 1 2 3; do echo line$i; sleep 0.5; done")
        status, text = wild.get(f"/runs/{run['id']}/logs", follow="true", stream="stdout")
        assert status == 200 and text == "line1\nline2\nline3\n", text
        assert wild.ok("GET", f"/runs/{run['id']}")["status"] == "finished"
    finally:
        runner.stop()


def test_a_server_restart_loses_no_queued_or_running_run(tmp_path: Path, workdir: Path) -> None:
    srv, admin = start_server(tmp_path / "data", ["--wild-lost-after-s", "5"])
    w = WildApi(srv.url, launch_key(admin))
    runner = RunnerProcess(srv.url, runner_key(srv.api(), "runner-r"), tmp_path / "runner", "runner-r")
    try:
        sweep = _sweep(w, "restart")
        release = tmp_path / "release"
        running = _run(w, sweep, f"while [ ! -e {release} ]; do sleep 0.1; done; echo released")
        _wait_status(w, running["id"], {"running"})
        # The runner's one slot is taken: this one waits in the queue across the restart.
        queued = _run(w, sweep, f"cd {workdir} && {sys.executable} scripts/train_mnist_mlp.py --lr 0.5 --steps 5")
        srv.terminate()
        srv = ServerProcess(tmp_path / "data", port=srv.port, extra=["--wild-lost-after-s", "5"]).start()
        w = WildApi(srv.url, w.key)
        assert w.ok("GET", f"/runs/{running['id']}")["status"] == "running"
        assert w.ok("GET", f"/runs/{queued['id']}")["status"] == "queued"
        release.touch()
        assert _wait_status(w, running["id"], FINAL)["status"] == "finished"
        assert _wait_status(w, queued["id"], FINAL)["status"] == "finished"
        assert "released" in w.ok("GET", f"/runs/{running['id']}/logs")["stdout"]
        assert w.ok("GET", f"/runs/{queued['id']}")["metrics"]["loss"]["count"] == 5
    finally:
        runner.stop()
        srv.terminate()


# -- the API alone: bad input, scopes, tenancy (the in-process server) ------------------------------


LAUNCHER = ("read", "write", "admin", "launch")


@pytest.fixture
def wild_embedded(embedded) -> WildApi:
    """A fresh org's key holding admin and launch, speaking X-Auth-Token."""
    return WildApi(embedded.url, embedded.new_org_key("wild", LAUNCHER))


def test_missing_fields_are_400s_naming_them(wild_embedded: WildApi) -> None:
    w = wild_embedded
    status, body = w.post("/sweeps/wild", {"name": "s", "goal": "g"})
    assert status == 400 and "chat_session_id" in body["error"], body
    status, body = w.post("/sweeps/wild", {"goal": "g", "chat_session_id": "c"})
    assert status == 400 and "name" in body["error"], body
    sweep = _sweep(w, "fields")
    base = {"name": "r", "command": "true", "sweep_id": sweep, "chat_session_id": "c"}
    for field in ("name", "command", "sweep_id", "chat_session_id"):
        status, body = w.post("/runs", {k: v for k, v in base.items() if k != field})
        assert status == 400 and f"`{field}`" in body["error"], (field, body)
    status, body = w.post("/runs", {**base, "typo": 1})
    assert status == 400 and "typo" in body["error"]
    status, body = w.post("/runs", {**base, "sweep_id": "sw-nope"})
    assert status == 404 and "sweep" in body["error"]
    assert w.post("/runs", {**base, "command": "x" * (64 * 1024 + 1)})[0] == 400
    assert w.post("/sweeps/wild", raw=b"{not json")[0] == 400
    assert w.get("/runs/wr-nope")[0] == 404


def test_a_key_without_launch_scope_cannot_create_or_start_runs(embedded, wild_embedded: WildApi) -> None:
    made = wild_embedded.ok("POST", "/v1/keys", {"name": "no-launch", "scopes": ["read", "write"]})
    plain = WildApi(embedded.url, made["key"])
    sweep = plain.ok("POST", "/sweeps/wild", {"name": "scoped", "goal": "g", "chat_session_id": "c"})["id"]
    status, body = plain.post("/runs", {"name": "r", "command": "true", "sweep_id": sweep, "chat_session_id": "c"})
    assert status == 403 and "launch" in body["error"], body
    run = _run(wild_embedded, sweep, "true", auto_start=False)
    assert plain.post(f"/runs/{run['id']}/start", {})[0] == 403
    assert plain.post("/wild/v2/runner/claim", {"runner_id": "sneaky"})[0] == 403
    assert plain.post("/wild/v2/runner/heartbeat", {"runner_id": "sneaky"})[0] == 403
    assert wild_embedded.ok("GET", f"/runs/{run['id']}")["status"] == "created"  # nothing was queued
    assert plain.ok("GET", f"/runs/{run['id']}")["id"] == run["id"]  # reading is fine
    assert plain.ok("POST", f"/runs/{run['id']}/stop", {})["status"] == "stopped"  # and so is stopping


def test_another_org_sees_nothing(embedded, wild_embedded: WildApi) -> None:
    a = wild_embedded
    b = WildApi(embedded.url, embedded.new_org_key("other", LAUNCHER))
    sweep = _sweep(a, "private")
    run = _run(a, sweep, "echo secret")
    for path in (f"/sweeps/{sweep}", f"/sweeps/{sweep}/audit", f"/runs/{run['id']}", f"/runs/{run['id']}/logs",
                 f"/runs/{run['id']}/audit", f"/v1/runs/{run['id']}"):
        status, body = b.get(path)
        assert status == 404, (path, status, body)
    for path in (f"/runs/{run['id']}/start", f"/runs/{run['id']}/stop"):
        assert b.post(path, {})[0] == 404, path
    assert b.post("/runs", {"name": "r", "command": "true", "sweep_id": sweep, "chat_session_id": "c"})[0] == 404
    assert b.ok("GET", "/runs")["runs"] == [] and b.ok("GET", "/sweeps")["sweeps"] == []
    # A runner of the other org never gets this org's queued run, nor reports on it.
    assert b.ok("POST", "/wild/v2/runner/claim", {"runner_id": "b-runner", "max": 10})["runs"] == []
    rep = b.post(f"/wild/v2/runner/runs/{run['id']}/report", {"runner_id": "b-runner", "status": "finished"})
    assert rep[0] == 404
    assert b.post(f"/wild/v2/runner/runs/{run['id']}/logs?runner_id=b-runner&stream=stdout&offset=0", raw=b"x")[0] == 404
    assert a.ok("GET", f"/runs/{run['id']}")["status"] == "queued"
    assert json.dumps(b.ok("GET", "/wild/v2/system-health")).count(run["id"]) == 0
    a.ok("POST", f"/runs/{run['id']}/stop", {})  # nothing of this org's queue is left for other tests


# The seed's three steps as written (its curl commands, which already send X-Auth-Token); only
# the placeholder /path/to/workdir is the test's work directory. Step 3's three commands stand on
# one line in the seed's flattened text: here each on its own line.
SEED_STEP_1 = r"""
curl -X POST "$SERVER_URL/sweeps/wild" \
-H "Content-Type: application/json" \
-H "X-Auth-Token: $AUTH_TOKEN" \
-d '{
"name": "mnist-mlp-cpu-grid",
"goal": "one-layer MLP grid search on MNIST CPU",
"chat_session_id": "$CHAT_SESSION_ID"
}'
"""
SEED_STEP_2 = r"""
curl -X POST "$SERVER_URL/runs" \
-H "Content-Type: application/json" \
-H "X-Auth-Token: $AUTH_TOKEN" \
-d "{
\"name\": \"mnist-mlp-lr1e-2-bs128-seed1\",
\"command\": \"cd /path/to/workdir && python scripts/train_mnist_mlp.py --lr 1e-2 --batch-size 128 --seed 1 --device cpu --log-dir exp/logs --out-dir exp/outputs\",
\"sweep_id\": \"${SWEEP_ID}\",
\"chat_session_id\": \"$CHAT_SESSION_ID\",
\"auto_start\": true
}"
"""
SEED_STEP_3 = r"""
curl -X GET "$SERVER_URL/runs" -H "X-Auth-Token: $AUTH_TOKEN"; echo
curl -X GET "$SERVER_URL/sweeps/$SWEEP_ID" -H "X-Auth-Token: $AUTH_TOKEN"; echo
curl -X GET "$SERVER_URL/wild/v2/system-health" -H "X-Auth-Token: $AUTH_TOKEN"; echo
"""


def test_the_seeds_curl_commands_as_written(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv, admin = start_server(tmp_path / "data", [])
    bin_dir = tmp_path / "bin"  # the seed's command says `python`: the runner's PATH has one
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runner = RunnerProcess(srv.url, runner_key(admin, "seed-runner"), tmp_path / "runner", "seed-runner")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "SERVER_URL": srv.url, "AUTH_TOKEN": launch_key(admin),
           "CHAT_SESSION_ID": "chat-seed"}

    def sh(script: str, **more: str) -> list[dict]:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("/path/to/workdir", str(workdir))],
                              capture_output=True, text=True, timeout=60, env={**env, **more})
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.replace("}{", "}\n{").splitlines() if line.strip()]

    try:
        (sweep,) = sh(SEED_STEP_1)
        assert (sweep["name"], sweep["goal"], sweep["chat_session_id"]) == (
            "mnist-mlp-cpu-grid", "one-layer MLP grid search on MNIST CPU", "$CHAT_SESSION_ID")  # single quotes
        sweep_id = sweep["id"]  # "Extract id from response as SWEEP_ID."
        (run,) = sh(SEED_STEP_2, SWEEP_ID=sweep_id)
        assert (run["name"], run["sweep_id"], run["chat_session_id"], run["status"]) == (
            "mnist-mlp-lr1e-2-bs128-seed1", sweep_id, "chat-seed", "queued"), run
        assert run["command"].startswith(f"cd {workdir} && python scripts/train_mnist_mlp.py --lr 1e-2")

        def ended() -> list[dict] | None:
            out = sh(SEED_STEP_3, SWEEP_ID=sweep_id)
            return out if out[0]["runs"][0]["status"] in FINAL else None

        runs, got, health = wait_for(ended, 120, 0.3, "the seed's run to end")
        (listed,) = runs["runs"]
        assert (listed["id"], listed["status"], listed["exit_code"]) == (run["id"], "finished", 0), listed
        assert got["id"] == sweep_id and got["counts"]["finished"] == 1 and [r["id"] for r in got["runs"]] == [run["id"]]
        assert health["status"] == "ok" and [r["id"] for r in health["runners"]] == ["seed-runner"]
        # Visible through arwx's own API: the run in the sweep's project, every point stored.
        arwx_run = admin.ok("GET", f"/v1/runs/{run['id']}")
        assert arwx_run["project"] == "mnist-mlp-cpu-grid" and arwx_run["config"]["lr"] == 0.01
        assert admin.wait_intact(run["id"], 40)["points_stored"] == 40
    finally:
        runner.stop()
        srv.terminate()
