"""Rewind and fork on a real server (``arwx/segments.py``): a run's history as segments of
attempts, each stored under its own storage id; nothing copied, nothing deleted."""

from __future__ import annotations

from tests.helpers import Api, points


def _pts(run: str, writer: str, steps: range, value: float, seq0: int = 0, key: str = "loss") -> list[dict]:
    return [
        {"run_id": run, "writer_id": writer, "seq": seq0 + i, "step": s, "key": key, "value": value + s, "ts": 1.7e9 + s}
        for i, s in enumerate(steps)
    ]


def _history(api: Api, run: str, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        p = {**params, **({"cursor": cursor} if cursor else {})}
        page = api.ok("GET", f"/v1/runs/{run}/metrics", params=p)
        rows += page["rows"]
        cursor = page["next"]
        if not cursor:
            return rows


def test_rewind_shows_the_old_attempt_below_the_step_and_the_new_from_it(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "rw", "project": "rewinds"})
    api.ok("POST", "/v1/ingest", {"points": _pts("rw", "w0", range(100), 0.0)})
    api.wait_intact("rw", 100)
    out = api.request("POST", "/v1/runs/rw/rewind", {"step": 50, "writer_ids": ["w0"]})
    assert out[0] == 201, out
    assert out[1]["attempt"] == 1
    api.ok("POST", "/v1/ingest", {"points": _pts("rw", "w0", range(50, 120), 1000.0)},
           headers={"Arwx-Attempt": "1"})
    rec = wait_receipt(api, "rw", 170)
    rows = _history(api, "rw", limit=30)
    steps = [r["step"] for r in rows]
    assert steps == list(range(120))
    assert all(r["loss"] == r["step"] for r in rows if r["step"] < 50)
    assert all(r["loss"] == 1000.0 + r["step"] for r in rows if r["step"] >= 50)
    old = _history(api, "rw", attempt=0)
    assert [r["step"] for r in old] == list(range(100))
    assert rec["attempt"] == 1 and [a["points_stored"] for a in rec["attempts"]] == [100, 70]
    # A writer of attempt 0 is refused.
    status, body = api.request("POST", "/v1/ingest", {"points": _pts("rw", "w0", range(100, 101), 0.0, seq0=100)},
                               headers={"Arwx-Attempt": "0"})
    assert status == 409 and "stale" in body["error"], body


def wait_receipt(api: Api, run: str, n: int) -> dict:
    from tests.helpers import wait_for

    return wait_for(lambda: (r := api.receipt(run))["intact"] and r["points_stored"] >= n and r, 60, 0.1, "receipt")


def test_points_helper_is_used(api: Api) -> None:
    assert points("x", "w", range(1))
