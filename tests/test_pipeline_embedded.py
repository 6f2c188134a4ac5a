"""End to end on the embedded pipeline: HTTP → SQLite log → consumer → chDB → history and receipt."""

from __future__ import annotations

import json
import math
import threading

from tests.helpers import Api, ndjson, points, wait_for

WRITERS = 8
PER_WRITER = 3000
BATCH = 500


def _ingest_writer(api: Api, run_id: str, writer: str, n: int, stream: bool) -> None:
    for start in range(0, n, BATCH):
        pts = points(run_id, writer, range(start, min(n, start + BATCH)))
        if stream:
            out = api.ok("POST", "/v1/ingest/stream", raw=ndjson(pts), headers={"Content-Type": "application/x-ndjson"})
        else:
            out = api.ok("POST", "/v1/ingest", {"points": pts})
        assert out["points"] == len(pts)
        (w,) = out["writers"]
        assert (w["writer_id"], w["seq_min"], w["seq_max"]) == (writer, start, start + len(pts) - 1)


def test_many_writers_json_and_ndjson_exact_receipt(api: Api) -> None:
    run = api.ok("POST", "/v1/runs", {"id": "ranks8", "project": "e2e", "config": {"lr": 3e-4}})
    assert run["id"] == "ranks8" and run["status"] == "running"
    threads = [
        threading.Thread(target=_ingest_writer, args=(api, "ranks8", f"rank{i}", PER_WRITER, i % 2 == 1))
        for i in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    total = WRITERS * PER_WRITER
    api.ok("POST", "/v1/runs/ranks8/finish", {"writer_totals": {f"rank{i}": PER_WRITER for i in range(WRITERS)}})
    r = api.wait_intact("ranks8", total)
    assert r["points_committed"] == total, r
    assert r["points_stored"] == total
    assert r["duplicates_collapsed"] == 0 and r["lost"] == 0
    assert r["status"] == "finished"
    assert [w["writer_id"] for w in r["writers"]] == [f"rank{i}" for i in range(WRITERS)]
    for w in r["writers"]:
        assert (w["sent"], w["stored"], w["missing"], w["gaps"]) == (PER_WRITER, PER_WRITER, 0, [])

    # History: every (step, writer) once, values as sent, paged with the cursor.
    seen: list[tuple[int, str]] = []
    cursor = None
    while True:
        page = api.ok("GET", "/v1/runs/ranks8/metrics", params={"keys": "loss", "limit": 5000, **({"cursor": cursor} if cursor else {})})
        seen += [(row["step"], row["writer_id"]) for row in page["rows"]]
        for row in page["rows"]:
            assert row["loss"] == row["step"] * 0.5
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == total == len(set(seen))
    assert seen == sorted(seen)


def test_history_step_range_and_keys(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "hist"})
    pts = points("hist", "w", range(100), key="loss") + points("hist", "w2", range(100), key="lr")
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.wait_intact("hist", 200)
    page = api.ok("GET", "/v1/runs/hist/metrics", params={"keys": "lr", "min_step": 10, "max_step": 19})
    assert [r["step"] for r in page["rows"]] == list(range(10, 20))
    assert all(set(r) == {"step", "ts", "writer_id", "lr"} for r in page["rows"])
    page = api.ok("GET", "/v1/runs/hist/metrics", params={"max_step": 0})
    assert page["keys"] == ["loss", "lr"] and len(page["rows"]) == 2
    assert api.get("/v1/runs/hist/metrics", limit="x")[0] == 400


def test_resent_batch_collapses_and_never_shows_twice(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "resend"})
    pts = points("resend", "rank0", range(1000))
    api.ok("POST", "/v1/ingest", {"points": pts})
    # The client never saw the answer and sends the same batch again (twice).
    api.ok("POST", "/v1/ingest", {"points": pts[:600]})
    api.ok("POST", "/v1/ingest/stream", raw=ndjson(pts[400:]))
    r = api.wait_intact("resend", 1000)
    assert r["points_committed"] == 2200  # 1000 + 600 + 600 re-sent
    assert r["points_stored"] == 1000
    assert r["duplicates_collapsed"] == 1200
    page = api.ok("GET", "/v1/runs/resend/metrics", params={"limit": 5000})
    assert len(page["rows"]) == 1000


def test_nan_inf_and_non_numeric_are_skipped_and_counted(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "nan"})
    body = (
        '{"run_id":"nan","writer_id":"w","points":['
        '{"seq":0,"step":0,"key":"a","value":1.0},'
        '{"seq":1,"step":1,"key":"a","value":NaN},'
        '{"seq":2,"step":2,"key":"a","value":Infinity},'
        '{"seq":3,"step":3,"key":"a","value":"high"},'
        '{"seq":4,"step":4,"key":"a","value":null},'
        '{"seq":5,"step":5,"key":"a","value":1e400},'
        '{"seq":6,"step":6,"key":"a","value":7}]}'
    )
    out = api.ok("POST", "/v1/ingest", raw=body.encode())
    assert out["points"] == 7 and out["skipped"] == 5
    assert out["skipped_by_reason"] == {"non_finite": 3, "non_numeric": 2}
    r = api.wait_intact("nan", 7)
    assert r["skipped"] == 5 and r["lost"] == 0  # the seq range stays whole
    rows = api.ok("GET", "/v1/runs/nan/metrics")["rows"]
    assert [(x["step"], x["a"]) for x in rows] == [(0, 1.0), (6, 7.0)]
    assert all(math.isfinite(x["a"]) for x in rows)


def test_bad_json_batch_names_the_point_and_writes_nothing(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "bad"})
    good = points("bad", "w", range(3))
    bad = dict(good[1], seq="one")
    status, out = api.post("/v1/ingest", {"points": [good[0], bad, good[2]]})
    assert status == 400 and "points[1].seq" in out["error"]
    status, out = api.post("/v1/ingest", raw=b'{"points": [')
    assert status == 400 and "malformed JSON" in out["error"]
    status, out = api.post("/v1/ingest", {"points": [dict(good[0], seq=-1)]})
    assert status == 400 and "seq" in out["error"]
    status, out = api.post("/v1/ingest", {"points": [{k: v for k, v in good[0].items() if k != "writer_id"}]})
    assert status == 400 and "writer_id is missing" in out["error"]
    status, out = api.post("/v1/ingest", {"points": [dict(good[0], extra=1)]})
    assert status == 400 and "extra" in out["error"]
    r = api.receipt("bad")
    assert r["points_committed"] == 0 and r["points_stored"] == 0


def test_ndjson_bad_lines_are_named_and_good_lines_kept(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "badlines"})
    pts = points("badlines", "w", range(5))
    lines = [json.dumps(p).encode() for p in pts]
    lines.insert(2, b'{"run_id":"badlines","writer_id":"w","seq":"x","step":0,"key":"k","value":1}')
    lines.insert(4, b"{not json")
    lines.insert(5, b'{"run_id":"nosuchrun","writer_id":"w","seq":9,"step":0,"key":"k","value":1}')
    status, out = api.post("/v1/ingest/stream", raw=b"\n".join(lines) + b"\n")
    assert status == 400
    assert out["points"] == 5 and out["rejected"] == 3
    assert [e["line"] for e in out["errors"]] == [3, 5, 6]
    assert "seq" in out["errors"][0]["reason"] and "unknown run" in out["errors"][2]["reason"]
    api.wait_intact("badlines", 5)


def test_oversized_stream_line_is_rejected_alone(api: Api, embedded) -> None:
    api.ok("POST", "/v1/runs", {"id": "bigline"})
    limit = embedded.settings.max_line_bytes
    pts = points("bigline", "w", range(2))
    huge = json.dumps(dict(pts[0], key="k" * 10, value=1, pad="x" * (limit + 10))).encode()
    status, out = api.post("/v1/ingest/stream", raw=ndjson(pts[:1]) + huge + b"\n" + ndjson(pts[1:]))
    assert status == 400 and out["points"] == 2
    assert out["errors"] == [{"line": 2, "reason": f"line is over the {limit}-byte limit"}]


def test_body_over_limit_is_413(api: Api, embedded) -> None:
    status, out = api.post("/v1/ingest", raw=b" " * (embedded.settings.max_body_bytes + 1))
    assert status == 413 and "limit" in out["error"]


def test_unknown_and_finished_runs(api: Api) -> None:
    status, out = api.post("/v1/ingest", {"points": points("ghost", "w", range(1))})
    assert status == 404 and "unknown run" in out["error"]
    api.ok("POST", "/v1/runs", {"id": "done"})
    api.ok("POST", "/v1/ingest", {"points": points("done", "w", range(10))})
    api.ok("POST", "/v1/runs/done/finish", {"status": "finished", "writer_totals": {"w": 12}})
    # Points the writer had sent before finishing may still arrive (spool sync) ...
    api.ok("POST", "/v1/ingest", {"points": points("done", "w", range(10, 12))})
    # ... but nothing past what it said it sent.
    status, out = api.post("/v1/ingest", {"points": points("done", "w", range(12, 13))})
    assert status == 409 and "finished" in out["error"]
    r = api.wait_intact("done", 12)
    assert r["writers"][0]["sent"] == 12


def test_lost_points_show_as_gaps(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "holes"})
    pts = points("holes", "w", range(100))
    api.ok("POST", "/v1/ingest", {"points": pts[:10] + pts[20:50] + pts[51:90]})
    api.ok("POST", "/v1/runs/holes/finish", {"writer_totals": {"w": 100}})
    r = api.receipt("holes")
    for _ in range(100):
        if r["pending"] == 0:
            break
        r = api.receipt("holes")
    assert r["pending"] == 0
    assert r["intact"] is False and r["lost"] == 21
    assert r["writers"][0]["gaps"] == [[10, 19], [50, 50], [90, 99]]


def test_run_create_is_idempotent_and_fingerprinted(api: Api) -> None:
    status, a = api.post("/v1/runs", {"id": "same", "project": "p", "name": "first", "commit": "abc123", "diff_sha": "d1"})
    assert status == 201
    status, b = api.post("/v1/runs", {"id": "same", "project": "p", "name": "second"})
    assert status == 200 and b["name"] == "first"
    assert api.ok("GET", "/v1/runs/same")["fingerprint"] == {"commit": "abc123", "diff_sha": "d1"}
    assert api.receipt("same")["fingerprint"] == {"commit": "abc123", "diff_sha": "d1"}
    status, c = api.post("/v1/runs", {"project": "p"})
    assert status == 201 and c["id"] != "same"
    assert api.post("/v1/runs", {"id": "bad id!"})[0] == 400
    assert api.post("/v1/runs/same/finish", {"status": "exploded"})[0] == 400


def test_history_pages_of_any_size_with_uneven_steps(api: Api) -> None:
    """Step windows are sized from the run's density; dense stretches, long
    jumps and several writers/keys per step must still page exactly."""
    api.ok("POST", "/v1/runs", {"id": "uneven"})
    steps = list(range(0, 300)) + list(range(10_000, 10_050)) + [500_000, 500_001, 9_000_000]
    pts = []
    for w in ("w0", "w1"):
        for key in ("loss", "lr"):
            seq0 = len([p for p in pts if p["writer_id"] == w])
            pts += [
                {"run_id": "uneven", "writer_id": w, "seq": seq0 + i, "step": s, "key": key, "value": s + 0.25, "ts": 1.7e9}
                for i, s in enumerate(steps)
            ]
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.wait_intact("uneven", len(pts))
    expected = [(s, w) for s in steps for w in ("w0", "w1")]
    for limit in (1, 7, 64, 1000):
        got, cursor = [], None
        while True:
            params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = api.ok("GET", "/v1/runs/uneven/metrics", params=params)
            assert len(page["rows"]) <= limit
            got += [(r["step"], r["writer_id"]) for r in page["rows"]]
            assert all(r["loss"] == r["lr"] == r["step"] + 0.25 for r in page["rows"])
            cursor = page["next"]
            if not cursor:
                break
        assert got == expected, limit
    page = api.ok("GET", "/v1/runs/uneven/metrics", params={"min_step": 299, "max_step": 10_001, "keys": "lr"})
    assert [(r["step"], r["writer_id"]) for r in page["rows"]] == [(s, w) for s in (299, 10_000, 10_001) for w in ("w0", "w1")]


def test_a_reused_seq_cannot_hide_a_hole(api: Api) -> None:
    """seq 5 sent under two keys and seq 7 never sent: ten points over 0..9 look
    whole by count alone; the receipt must still find the hole. (The second
    seq 5 is a conflict now: the first value wins and it is never stored.)"""
    api.ok("POST", "/v1/runs", {"id": "reuse"})
    pts = [p for p in points("reuse", "w", range(10)) if p["seq"] != 7]
    pts.append(dict(pts[5], key="other"))
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.ok("POST", "/v1/runs/reuse/finish", {"writer_totals": {"w": 10}})
    r = wait_for(lambda: (x := api.receipt("reuse"))["pending"] == 0 and x, 30, 0.05, "nothing pending")
    assert r["points_committed"] == 10 and r["conflicts"] == 1
    assert r["points_stored"] == 9 and r["lost"] == 1 and not r["intact"]
    assert r["writers"][0]["gaps"] == [[7, 7]]
