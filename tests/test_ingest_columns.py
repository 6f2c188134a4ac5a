"""The columnar body of ``POST /v1/ingest`` (``application/vnd.arwx.columns+json``), end to end on
the embedded pipeline: every guarantee of the JSON batch holds for it (exact receipt, per-writer
seqs, skipped values counted, all or nothing with a 400 naming what is wrong, first value wins on
re-sends), and the old bodies keep working beside it."""

from __future__ import annotations

import json
import math

from tests.helpers import Api, points

COLUMNS = "application/vnd.arwx.columns+json"


def columns(run_id: str, writer: str, seqs: range, keys: tuple[str, ...] = ("loss", "acc"), **over) -> dict:
    """Points of ``seqs`` in columns: step == seq // len(keys), the keys in turn, value seq * 0.5."""
    n = len(keys)
    body = {
        "run_id": run_id, "writer_id": writer, "keys": list(keys),
        "seq": list(seqs), "step": [s // n for s in seqs], "key": [s % n for s in seqs],
        "value": [s * 0.5 for s in seqs], "ts": [1.7e9 + s for s in seqs],
    }
    body.update(over)
    return body


def post_columns(api: Api, body: dict | bytes) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.post("/v1/ingest", raw=raw, headers={"Content-Type": COLUMNS})


def test_columns_are_stored_exactly_with_the_batch_receipt(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "cols"})
    # 12,000 points: more than one log message (CHUNK_POINTS) per request
    status, out = post_columns(api, columns("cols", "rank0", range(12_000)))
    assert status == 200, out
    assert out["points"] == 12_000 and out["skipped"] == 0 and len(out["log"]) >= 3
    assert out["writers"] == [{"run_id": "cols", "writer_id": "rank0", "seq_min": 0, "seq_max": 11_999, "count": 12_000}]
    # a second writer beside it, in the old batch body
    api.ok("POST", "/v1/ingest", {"points": points("cols", "rank1", range(100))})
    r = api.wait_intact("cols", 12_100)
    assert {w["writer_id"]: (w["stored"], w["gaps"]) for w in r["writers"]} == {
        "rank0": (12_000, []), "rank1": (100, [])}
    rows = api.ok("GET", "/v1/runs/cols/metrics", params={"keys": "loss,acc", "limit": 10})["rows"]
    got = [(x["step"], x["loss"], x["acc"]) for x in rows if x["writer_id"] == "rank0"][:3]
    assert got == [(0, 0.0, 0.5), (1, 1.0, 1.5), (2, 2.0, 2.5)]


def test_ts_is_optional_and_keys_may_repeat(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "cols-nots"})
    body = columns("cols-nots", "w", range(4), keys=("a", "a"))
    del body["ts"]
    status, out = post_columns(api, body)
    assert status == 200 and out["points"] == 4, out
    api.wait_intact("cols-nots", 4)


def test_skipped_values_are_counted_and_the_seq_range_stays_whole(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "cols-nan"})
    body = (
        b'{"run_id":"cols-nan","writer_id":"w","keys":["a"],"seq":[0,1,2,3,4,5,6],"step":[0,1,2,3,4,5,6],'
        b'"key":[0,0,0,0,0,0,0],"value":[1.0,NaN,Infinity,"high",null,1e400,7]}'
    )
    status, out = post_columns(api, body)
    assert status == 200, out
    assert out["points"] == 7 and out["skipped"] == 5
    assert out["skipped_by_reason"] == {"non_finite": 3, "non_numeric": 2}
    r = api.wait_intact("cols-nan", 7)
    assert r["skipped"] == 5 and r["lost"] == 0
    rows = api.ok("GET", "/v1/runs/cols-nan/metrics")["rows"]
    assert [(x["step"], x["a"]) for x in rows] == [(0, 1.0), (6, 7.0)]
    assert all(math.isfinite(x["a"]) for x in rows)


def test_bad_columns_are_a_400_naming_what_and_write_nothing(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "cols-bad"})
    good = columns("cols-bad", "w", range(4))
    cases = [
        (dict(good, step=good["step"][:3]), "column 'step' has 3 entries, 'seq' has 4"),
        (dict(good, ts=good["ts"] + [1.0]), "column 'ts' has 5 entries"),
        (dict(good, key=[0, 1, 2, 0]), "key[2] is 2, not an index into keys (it has 2)"),
        (dict(good, seq=[0, -1, 2, 3]), "$.seq[1]"),
        (dict(good, seq=[0, 1, 2, 2**63]), "$.seq[3]"),
        (dict(good, step=[0, 0, "one", 1]), "$.step[2]"),
        (dict(good, ts=[1.0, 2.0, 5e9, 3.0]), "$.ts[2]"),
        (dict(good, keys=["loss", "a,b"]), "$.keys[1]"),
        (dict(good, keys=["loss", "x" * 257]), "$.keys[1]"),
        (dict(good, run_id="a b"), "$.run_id"),
        ({k: v for k, v in good.items() if k != "writer_id"}, "writer_id"),
        (dict(good, points=[]), "points"),
        (b'{"run_id": "cols-bad", "seq": [', "malformed JSON"),
    ]
    for body, words in cases:
        status, out = post_columns(api, body)
        assert status == 400, (body, out)
        assert words in out["error"], (words, out["error"])
    r = api.receipt("cols-bad")
    assert r["points_committed"] == 0 and r["points_stored"] == 0


def test_unknown_and_finished_runs(api: Api) -> None:
    status, out = post_columns(api, columns("cols-ghost", "w", range(2)))
    assert status == 404 and "unknown run" in out["error"]
    api.ok("POST", "/v1/runs", {"id": "cols-done"})
    api.ok("POST", "/v1/runs/cols-done/finish", {"status": "finished", "writer_totals": {"w": 12}})
    # what the writer sent before finishing may still arrive; nothing past its total
    status, out = post_columns(api, columns("cols-done", "w", range(8, 12)))
    assert status == 200 and out["points"] == 4, out
    status, out = post_columns(api, columns("cols-done", "w", range(10, 13)))
    assert status == 409 and "finished" in out["error"]


def test_first_value_wins_on_resends_in_either_body(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "cols-resend"})
    api.ok("POST", "/v1/ingest", raw=json.dumps(columns("cols-resend", "w", range(100), keys=("k",))).encode(),
           headers={"Content-Type": COLUMNS})
    # the same seqs again with other values, as columns and as a batch: the first values stay
    status, _ = post_columns(api, columns("cols-resend", "w", range(50), keys=("k",), value=[-1.0] * 50))
    assert status == 200
    api.ok("POST", "/v1/ingest", {"points": [dict(p, key="k", value=-2.0) for p in points("cols-resend", "w", range(50, 100))]})
    r = api.wait_intact("cols-resend", 100)
    assert r["points_stored"] == 100, r
    rows = api.ok("GET", "/v1/runs/cols-resend/metrics", params={"keys": "k", "limit": 1000})["rows"]
    assert [x["k"] for x in rows] == [s * 0.5 for s in range(100)]
