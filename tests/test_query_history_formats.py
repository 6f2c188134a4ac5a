"""History as columnar JSON and Arrow IPC: the same points as the JSON rows,
every point exactly once across keyset pages, read by pyarrow and pandas."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlencode

import pyarrow as pa
import pytest

import arwx.query.stream as stream
from arwx.query import series
from tests.helpers import Api, points

ARROW = "application/vnd.apache.arrow.stream"


def _raw(api: Api, path: str, params: dict | None = None, accept: str | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {api.key}", **({"Accept": accept} if accept else {})}
        conn.request("GET", path + ("?" + urlencode(params) if params else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _from_rows(rows: list[dict], keys: list[str]) -> list[tuple]:
    """(key, writer, step, ts, value) of the JSON rows, in the sort-key order."""
    out = [(k, r["writer_id"], r["step"], r["ts"], r[k]) for r in rows for k in keys if k in r]
    return sorted(out)


def _columns_pages(api: Api, run: str, **params) -> tuple[list[tuple], int]:
    got, cursor, pages = [], None, 0
    while True:
        page = api.ok("GET", f"/v1/runs/{run}/metrics", params={"format": "columns", **params, **({"cursor": cursor} if cursor else {})})
        assert page["run_id"] == run and set(page) == {"run_id", "series", "next"}
        for s in page["series"]:
            assert len(s["step"]) == len(s["ts"]) == len(s["value"])
            got += [(s["key"], s["writer_id"], st, ts, v) for st, ts, v in zip(s["step"], s["ts"], s["value"])]
        pages += 1
        cursor = page["next"]
        if not cursor:
            return got, pages


def _arrow_pages(api: Api, run: str, **params) -> tuple[list[tuple], int]:
    got, cursor, pages = [], None, 0
    while True:
        status, headers, body = _raw(api, f"/v1/runs/{run}/metrics", {**params, **({"cursor": cursor} if cursor else {})}, ARROW)
        assert status == 200 and headers["content-type"] == ARROW
        table = pa.ipc.open_stream(body).read_all()
        assert table.column_names == ["key", "writer_id", "seq", "step", "ts", "value"]
        got += _arrow_points(table)
        pages += 1
        cursor = headers.get("arwx-next")
        if not cursor:
            return got, pages


def _arrow_points(table: pa.Table) -> list[tuple]:
    df = table.to_pandas()  # pandas reads it directly
    ts_ms = table.column("ts").cast(pa.int64()).to_pylist()  # timestamp[ms, UTC]
    return list(zip(df["key"], df["writer_id"], df["step"].tolist(), [t / 1000 for t in ts_ms], df["value"].tolist()))


@pytest.fixture
def run_with_history(api: Api) -> tuple[str, list[tuple]]:
    """Two writers, two keys, a re-send and a skipped (NaN) point: what the JSON rows say."""
    api.ok("POST", "/v1/runs", {"id": "fmt"})
    pts = points("fmt", "w0", range(500)) + points("fmt", "w1", range(300), key="acc")
    pts += points("fmt", "w1", range(300, 340), key="loss")
    pts[7]["value"] = "NaN"
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.ok("POST", "/v1/ingest", {"points": pts[100:200]})  # a re-send never shows twice
    api.wait_intact("fmt", 840)
    page = api.ok("GET", "/v1/runs/fmt/metrics", params={"limit": 100_000})
    return "fmt", _from_rows(page["rows"], page["keys"])


def test_columns_and_arrow_pages_cover_every_point_once(api: Api, run_with_history) -> None:
    run, want = run_with_history
    assert len(want) == 839  # 840 points, one of them skipped
    cols, n_pages = _columns_pages(api, run, limit=70)
    assert n_pages == 12 and sorted(cols) == want and len(set(cols)) == len(cols)
    # Pages come in the sort-key order: (key, writer, seq), so concatenated they are sorted.
    assert [c[:3] for c in cols] == sorted(c[:3] for c in cols)
    arrow, n_pages = _arrow_pages(api, run, limit=70)
    assert n_pages == 12 and arrow == cols
    # Accept picks Arrow; format=arrow does too.
    status, headers, body = _raw(api, f"/v1/runs/{run}/metrics", {"format": "arrow", "limit": 100_000})
    assert status == 200 and headers["content-type"] == ARROW and "arwx-next" not in headers
    assert _arrow_points(pa.ipc.open_stream(body).read_all()) == cols


def test_filters_apply_to_every_format(api: Api, run_with_history) -> None:
    run, want = run_with_history
    sel = [p for p in want if p[0] == "loss" and 10 <= p[2] <= 319]
    cols, _ = _columns_pages(api, run, keys="loss", min_step=10, max_step=319, limit=100)
    assert cols == sel
    arrow, _ = _arrow_pages(api, run, keys="loss", min_step=10, max_step=319, limit=100)
    assert arrow == sel


def test_arrow_stream_is_one_ipc_stream_of_every_point(api: Api, run_with_history, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "ARROW_PAGE_ROWS", 70)  # many pages, framed into one stream
    run, want = run_with_history
    cols, _ = _columns_pages(api, run, limit=100_000)
    for params, accept in (({}, ARROW), ({"format": "arrow"}, None)):
        status, headers, body = _raw(api, f"/v1/runs/{run}/metrics/stream", params, accept)
        assert status == 200 and headers["content-type"] == ARROW
        assert _arrow_points(pa.ipc.open_stream(body).read_all()) == cols
    # NDJSON stays the default of the stream route.
    status, headers, body = _raw(api, f"/v1/runs/{run}/metrics/stream")
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    assert len(body.splitlines()) == 839  # a row per (step, writer) with a finite value


def test_empty_history_in_every_format(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "empty"})
    assert api.ok("GET", "/v1/runs/empty/metrics", params={"format": "columns"}) == {"run_id": "empty", "series": [], "next": None}
    for path, params in (("/v1/runs/empty/metrics", {}), ("/v1/runs/empty/metrics/stream", {})):
        status, headers, body = _raw(api, path, params, ARROW)
        assert status == 200, body
        table = pa.ipc.open_stream(body).read_all()
        assert table.num_rows == 0 and table.column_names == ["key", "writer_id", "seq", "step", "ts", "value"]


def test_bad_cursor_and_format_are_400(api: Api, run_with_history) -> None:
    run, _ = run_with_history
    rows_cursor = api.ok("GET", f"/v1/runs/{run}/metrics", params={"limit": 5})["next"]
    out_of_range = [series.encode_cursor("loss", "w0", 1 << 64).replace("=", ""), base64.urlsafe_b64encode(b'["a","b","-1"]').decode()]
    for cursor in ("x", "!!!", "é", rows_cursor, "WyJhIl0", *out_of_range):  # WyJhIl0 is base64 of ["a"]
        status, body = api.get(f"/v1/runs/{run}/metrics", format="columns", cursor=cursor)
        assert status == 400 and "cursor" in body["error"], (cursor, body)
        status, _, body = _raw(api, f"/v1/runs/{run}/metrics", {"cursor": cursor}, ARROW)
        assert status == 400 and "cursor" in json.loads(body)["error"]
    assert api.get(f"/v1/runs/{run}/metrics", format="parquet")[0] == 400
    assert api.get(f"/v1/runs/{run}/metrics/stream", format="columns")[0] == 400
