"""Rewind and fork on a real server with real SDK processes (``arwx/segments.py``): a run's
history is segments of attempts, each stored under its own storage id; nothing is copied
and nothing deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Api, ServerThread, wait_for

SDK = str(Path(__file__).resolve().parent.parent / "sdk")

RANK = r"""
import arwandb, json, sys, time
a = json.loads(sys.argv[1])
run = arwandb.init(project="ckpts", id=a["id"], writer_id=a["writer"], system_metrics=False, **a.get("init", {}))
print("ATTEMPT", run.attempt, flush=True)
for step in range(a["start"], a["stop"]):
    run.log({a.get("key", "loss"): a["base"] + step * 0.001 + a["rank"]}, step=step)
if a.get("hang"):
    print("LOGGED", flush=True)
    sys.stdin.readline()  # killed with -9 here, or told to log on
    for step in range(a["stop"], a["stop"] + 10):
        run.log({a.get("key", "loss"): 0.0}, step=step)
run.finish()
print("DONE", flush=True)
"""


def _env(embedded: ServerThread, api: Api, tmp: Path) -> dict:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ARWANDB_", "WANDB_"))},
        "PYTHONPATH": SDK, "ARWANDB_BASE_URL": embedded.url, "ARWANDB_API_KEY": api.key or "",
        "ARWANDB_DIR": str(tmp),
    }


def _rank(env: dict, **args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RANK, json.dumps(args)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def _done(p: subprocess.Popen) -> str:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "DONE" in out, err[-3000:]
    return out


def _history(api: Api, run: str, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = api.ok("GET", f"/v1/runs/{run}/metrics", params={**params, **({"cursor": cursor} if cursor else {})})
        rows += page["rows"]
        cursor = page["next"]
        if not cursor:
            return rows


def _by_writer(rows: list[dict], key: str = "loss") -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for r in rows:
        if key in r:
            out.setdefault(r["writer_id"], []).append((r["step"], r[key]))
    return out


def _wait_receipt(api: Api, run: str, stored: int) -> dict:
    def done() -> dict | None:
        r = api.receipt(run)
        return r if r["intact"] and r["points_stored"] >= stored and r["pending"] == 0 else None

    try:
        return wait_for(done, 90, 0.1, f"an intact receipt with {stored} points for {run}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last receipt: {api.receipt(run)}") from None


def _value(base: float, step: int, rank: int) -> float:
    return base + step * 0.001 + rank


@pytest.fixture(scope="module")
def restarted(embedded: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run "ckpt": two ranks log steps 0..7499 and are killed (-9); both restart from the
    checkpoint at step 5000 in fresh directories and log 5000..9999. A straggler of attempt 0
    (still alive) tries to go on logging after the rewind."""
    api = Api(embedded.url, embedded.new_org_key())
    tmp = tmp_path_factory.mktemp("rewind")
    env = _env(embedded, api, tmp / "first")
    first = [_rank(env, id="ckpt", writer=f"rank{r}", rank=r, base=1.0, start=0, stop=7500, hang=True,
                   init={"resume": "allow"}) for r in range(2)]
    straggler = _rank(env, id="ckpt", writer="straggler", rank=0, base=0.0, start=0, stop=10, hang=True,
                      key="aux", init={"resume": "allow"})
    for p in [*first, straggler]:
        assert p.stdout is not None
        assert p.stdout.readline().split() == ["ATTEMPT", "0"]
        line = p.stdout.readline().strip()
        assert line == "LOGGED", p.stderr.read() if p.stderr else line
    _wait_receipt(api, "ckpt", 2 * 7500 + 10)
    for p in first:
        p.kill()
        p.wait(20)
    env2 = _env(embedded, api, tmp / "second")  # another machine: no spool
    second = [_rank(env2, id="ckpt", writer=f"rank{r}", rank=r, base=100.0, start=5000, stop=10_000,
                    init={"resume_from": 5000}) for r in range(2)]
    outs = [_done(p) for p in second]
    assert sorted(o.split()[1] for o in outs) == ["1", "1"]  # one attempt for both ranks of the restart
    assert straggler.stdin is not None
    straggler.stdin.write("go\n")
    straggler.stdin.flush()
    _done(straggler)
    return {"api": api, "tmp": tmp, "embedded": embedded}


def test_history_shows_the_old_attempt_below_the_checkpoint_and_the_new_from_it(restarted: dict) -> None:
    api: Api = restarted["api"]
    rec = _wait_receipt(api, "ckpt", 2 * 7500 + 10 + 2 * 5000)
    rows = _history(api, "ckpt", keys="loss", limit=3000)
    for r, series in sorted(_by_writer(rows).items()):
        rank = int(r[-1])
        assert [s for s, _ in series] == list(range(10_000)), r  # every step once
        expect = [_value(1.0 if s < 5000 else 100.0, s, rank) for s in range(10_000)]
        assert [v for _, v in series] == pytest.approx(expect), r
    # Every format agrees: NDJSON stream, columns and Arrow pages.
    status, body = api.request("GET", "/v1/runs/ckpt/metrics/stream", params={"keys": "loss"})
    assert status == 200
    nd = [json.loads(line) for line in body.splitlines()] if isinstance(body, str) else [body]
    assert [(r["step"], r["writer_id"], r["loss"]) for r in nd] == [(r["step"], r["writer_id"], r["loss"]) for r in rows]
    cols, cursor, pages = [], None, 0
    while True:
        page = api.ok("GET", "/v1/runs/ckpt/metrics", params={"format": "columns", "keys": "loss", "limit": 4000,
                                                                  **({"cursor": cursor} if cursor else {})})
        pages += 1
        for s in page["series"]:
            cols += [(st, s["writer_id"], v) for st, v in zip(s["step"], s["value"])]
        cursor = page["next"]
        if not cursor:
            break
    assert sorted(cols) == sorted((r["step"], r["writer_id"], r["loss"]) for r in rows)
    # The old attempt, whole, with attempt=0; the new one alone with attempt=1.
    old = _by_writer(_history(api, "ckpt", keys="loss", attempt=0, limit=5000))
    assert {w: [s for s, _ in v] for w, v in old.items()} == {"rank0": list(range(7500)), "rank1": list(range(7500))}
    new = _by_writer(_history(api, "ckpt", keys="loss", attempt=1))
    assert {w: len(v) for w, v in new.items()} == {"rank0": 5000, "rank1": 5000}
    assert api.request("GET", "/v1/runs/ckpt/metrics", params={"attempt": 7})[0] == 404
    # The receipt: exact per attempt, and which is current.
    assert rec["attempt"] == 1
    by = {a["attempt"]: a for a in rec["attempts"]}
    assert (by[0]["points_stored"], by[0]["lost"], by[0]["intact"], by[0]["current"]) == (15_010, 0, True, False)
    assert (by[1]["points_stored"], by[1]["lost"], by[1]["intact"], by[1]["current"]) == (10_000, 0, True, True)
    assert by[1]["start_step"] == 5000
    one = api.ok("GET", "/v1/runs/ckpt/integrity", params={"attempt": 0})
    assert one["attempt"] == 0 and one["points_stored"] == 15_010 and one["intact"]
    run = api.ok("GET", "/v1/runs/ckpt")
    assert run["attempt"] == 1 and run["status"] == "finished"
    assert run["segments"] == [
        {"run_id": "ckpt", "attempt": 0, "min_step": 0, "max_step": 4999},
        {"run_id": "ckpt", "attempt": 1, "min_step": 5000, "max_step": None},
    ]


def test_a_writer_of_a_superseded_attempt_is_refused(restarted: dict) -> None:
    api: Api = restarted["api"]
    # The straggler (attempt 0, alive through the rewind) had its later points refused and set aside.
    rejected = list(Path(restarted["tmp"], "first").rglob("rejected.ndjson"))
    assert rejected and sum(len(p.read_text().splitlines()) for p in rejected) == 10
    aux = _history(api, "ckpt", keys="aux", attempt=0)
    assert len(aux) == 10  # what it logged before the rewind stays in attempt 0
    assert _history(api, "ckpt", keys="aux", attempt=1) == []
    pt = {"run_id": "ckpt", "writer_id": "rank0", "seq": 7500, "step": 7500, "key": "loss", "value": 1.0}
    status, body = api.request("POST", "/v1/ingest", {"points": [pt]}, headers={"Arwx-Attempt": "0"})
    assert status == 409 and "stale" in body["error"] and "step 5000" in body["error"], body
    status, body = api.request("POST", "/v1/ingest", {"points": [pt]}, headers={"Arwx-Attempt": "9"})
    assert status == 409 and "no attempt 9" in body["error"], body
    status, body = api.request("POST", "/v1/ingest", {"points": [pt]}, headers={"Arwx-Attempt": "x"})
    assert status == 400 and "Arwx-Attempt" in body["error"], body
    assert api.receipt("ckpt")["attempts"][0]["points_stored"] == 15_010  # nothing of a refusal stored


def _count(embedded: ServerThread, org: str, run_id: str) -> int:
    ((n,),) = embedded.call(embedded.server.store.rows(
        "SELECT count() FROM points WHERE org = {org:String} AND run_id = {run:String}", {"org": org, "run": run_id}
    ))
    return int(n)


def test_fork_reads_the_parent_in_place_and_a_fork_of_a_rewound_run_follows_its_segments(restarted: dict) -> None:
    api: Api = restarted["api"]
    embedded: ServerThread = restarted["embedded"]
    org = embedded.call(embedded.server.tenancy.authenticate(api.key)).org
    env = _env(embedded, api, restarted["tmp"] / "forks")
    # A fork at 3000 (inside attempt 0) and one at 7000 (attempt 0 below 5000, attempt 1 above).
    for child, at in (("early", 3000), ("late", 7000)):
        p = _rank(env, id=child, writer="rank0", rank=0, base=500.0, start=at, stop=at + 1000,
                  init={"fork_from": f"ckpt?_step={at}"})
        assert _done(p).split()[1] == "0"
    for child, at in (("early", 3000), ("late", 7000)):
        _wait_receipt(api, child, 1000)
        assert _count(embedded, org, child) == 1000  # only its own points are stored: nothing copied
        series = _by_writer(_history(api, child, keys="loss"))["rank0"]
        assert [s for s, _ in series] == list(range(at + 1000))
        expect = [_value(1.0 if s < min(at, 5000) else 100.0 if s < at else 500.0, s, 0) for s in range(at + 1000)]
        assert [v for _, v in series] == pytest.approx(expect), child
        assert _by_writer(_history(api, child, keys="loss"))["rank1"] == [
            (s, pytest.approx(_value(1.0 if s < 5000 else 100.0, s, 1))) for s in range(at)
        ]
        got = api.ok("GET", f"/v1/runs/{child}")
        assert got["forked_from"] == {"run_id": "ckpt", "step": at} and got["project"] == "ckpts"
    assert api.ok("GET", "/v1/runs/late")["segments"] == [
        {"run_id": "ckpt", "attempt": 0, "min_step": 0, "max_step": 4999},
        {"run_id": "ckpt", "attempt": 1, "min_step": 5000, "max_step": 6999},
        {"run_id": "late", "attempt": 0, "min_step": 7000, "max_step": None},
    ]
    # Forking again with the same id and step is the same run (every rank forks); another step is a conflict.
    assert api.request("POST", "/v1/runs/ckpt/fork", {"id": "late", "step": 7000})[0] == 200
    status, body = api.request("POST", "/v1/runs/ckpt/fork", {"id": "late", "step": 10})
    assert status == 409 and "not a fork" in body["error"], body
    assert api.request("POST", "/v1/runs/nope/fork", {"step": 1})[0] == 404
    assert api.request("POST", "/v1/runs/ckpt/fork", {"id": "ckpt", "step": 1})[0] == 400


def _chart(api: Api, run: str, **params) -> dict:
    return api.ok("GET", "/v1/projects/ckpts/charts", params={"runs": run, "keys": "loss", **params})


def test_charts_agree_with_history_point_for_point_and_read_rollups_per_segment(restarted: dict) -> None:
    api: Api = restarted["api"]
    hist = _by_writer(_history(api, "ckpt", keys="loss", limit=20_000))
    raw = _chart(api, "ckpt", samples=10_000)
    assert raw["tier"] == 0 and sorted(s["writer_id"] for s in raw["series"]) == ["rank0", "rank1"]
    for s in raw["series"]:
        assert list(zip(s["x"], s["value"])) == hist[s["writer_id"]]
    # 100 buckets: rollup cells of 64 steps, cut at the rewind (step 5000 is inside a cell) and read
    # raw there: each bucket's min, max, first and last are those of the history's points in it.
    coarse = _chart(api, "ckpt", samples=100)
    assert coarse["tier"] == 6
    for s in coarse["series"]:
        buckets: dict[int, list[tuple[int, float]]] = {}
        for step, v in hist[s["writer_id"]]:
            buckets.setdefault((step >> 6 << 6) * 100 // 10_000, []).append((step, v))
        want = {-(-b * 10_000 // 100): pts for b, pts in buckets.items()}
        assert s["x"] == sorted(want)
        for x, mn, mx, first, last in zip(s["x"], s["min"], s["max"], s["first"], s["last"]):
            pts = want[x]
            assert (mn, mx, first, last) == pytest.approx(
                (min(v for _, v in pts), max(v for _, v in pts), min(pts)[1], max(pts)[1])
            ), (s["writer_id"], x)
    # On a time axis too, nothing hidden by the rewind shows.
    shown = {v for series in hist.values() for _, v in series}
    timed = _chart(api, "ckpt", x="time", samples=50)
    values = [v for s in timed["series"] for k in ("min", "max") for v in s[k]]
    assert values and all(any(abs(v - h) < 1e-9 for h in (v,)) and v in shown for v in values)
    assert min(values) == min(shown) and max(values) == max(shown)
    # A fork's chart is its history too.
    late = _by_writer(_history(api, "late", keys="loss", limit=20_000))
    forked = api.ok("GET", "/v1/projects/ckpts/charts", params={"runs": "late", "keys": "loss", "samples": 8000})
    assert forked["tier"] == 0
    assert {s["writer_id"]: list(zip(s["x"], s["value"])) for s in forked["series"]} == late
    # Latest values in the project's run list and in charts: what the segments show.
    listed = {r["id"]: r["latest"]["loss"] for r in api.ok("GET", "/v1/projects/ckpts/runs")["runs"]}
    assert listed["ckpt"]["step"] == 9999
    assert listed["ckpt"]["value"] == pytest.approx(_value(100.0, 9999, 1)) or listed["ckpt"]["value"] == pytest.approx(
        _value(100.0, 9999, 0)
    )
    assert listed["early"]["step"] == 3999 and listed["early"]["value"] == pytest.approx(_value(500.0, 3999, 0))
    assert raw["latest"]["ckpt"]["loss"]["step"] == 9999


def test_purge_removes_every_attempt_and_refuses_a_parent_its_forks_read(restarted: dict) -> None:
    api: Api = restarted["api"]
    embedded: ServerThread = restarted["embedded"]
    org = embedded.call(embedded.server.tenancy.authenticate(api.key)).org
    status, body = api.request("POST", "/v1/runs/ckpt/purge", params={"confirm": "ckpt"})
    assert status == 409 and "early, late" in body["error"], body
    assert _count(embedded, org, "ckpt") == 15_010  # a refusal removes nothing
    for child in ("late", "early"):
        api.ok("POST", f"/v1/runs/{child}/purge", params={"confirm": child})
        assert _count(embedded, org, child) == 0
    assert _count(embedded, org, "ckpt~1") == 10_000
    out = api.ok("POST", "/v1/runs/ckpt/purge", params={"confirm": "ckpt"})
    assert out["removed"]["points"] == 25_010
    assert _count(embedded, org, "ckpt") == 0 and _count(embedded, org, "ckpt~1") == 0
    assert api.request("GET", "/v1/runs/ckpt")[0] == 404


def test_another_org_never_rewinds_forks_or_reads_an_attempt(embedded: ServerThread) -> None:
    a, b = Api(embedded.url, embedded.new_org_key("a")), Api(embedded.url, embedded.new_org_key("b"))
    a.ok("POST", "/v1/runs", {"id": "mine", "project": "p"})
    assert a.request("POST", "/v1/runs/mine/rewind", {"step": 0})[0] == 201
    for method, path, body in (
        ("POST", "/v1/runs/mine/rewind", {"step": 0}), ("POST", "/v1/runs/mine/fork", {"step": 0, "id": "theirs"}),
        ("GET", "/v1/runs/mine/metrics?attempt=0", None), ("GET", "/v1/runs/mine/integrity?attempt=1", None),
        ("GET", "/v1/runs/mine/metrics/stream?attempt=1", None), ("GET", "/v1/runs/mine/writers/w?attempt=0", None),
    ):
        status, out = b.request(method, path, body)
        assert status == 404 and "unknown run" in out["error"], (path, status, out)
    assert b.request("GET", "/v1/runs/theirs")[0] == 404
    assert a.ok("GET", "/v1/runs/mine")["attempt"] == 1
    # Bad bodies are a 400 naming what is wrong.
    for bad, says in (({}, "step"), ({"step": -1}, "step"), ({"step": 1, "writer_ids": ["a b"]}, "writer_ids")):
        status, out = a.request("POST", "/v1/runs/mine/rewind", bad)
        assert status == 400 and says in out["error"], (bad, out)
    status, out = a.request("POST", "/v1/runs/mine/fork", {"step": 1, "id": "bad id"})
    assert status == 400 and "id" in out["error"], out
    status, out = a.request("GET", "/v1/runs/mine/metrics", params={"attempt": "x"})
    assert status == 400 and "attempt" in out["error"], out
