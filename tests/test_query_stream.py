"""Streamed history (NDJSON): the same rows as the paged form, across many pages."""

from __future__ import annotations

import json

import pytest

import arwx.query.stream as stream
from tests.helpers import Api, points


def test_stream_equals_paged_history(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "PAGE_ROWS", 70)  # many pages, as a long run would have
    api.ok("POST", "/v1/runs", {"id": "s"})
    pts = points("s", "w0", range(500)) + points("s", "w1", range(300), key="acc")
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.ok("POST", "/v1/ingest", {"points": pts[100:200]})  # a re-send never shows twice
    api.wait_intact("s", 800)
    paged = api.ok("GET", "/v1/runs/s/metrics", params={"limit": 100_000})["rows"]
    for path, params in (("/v1/runs/s/metrics/stream", {}), ("/v1/runs/s/metrics", {"format": "ndjson"})):
        status, body = api.get(path, **params)
        assert status == 200
        rows = [json.loads(line) for line in body.splitlines()]
        assert rows == paged and len(rows) == 800
    status, body = api.get("/v1/runs/s/metrics/stream", keys="acc", min_step=10, max_step=19)
    rows = [json.loads(line) for line in body.splitlines()]
    assert [(r["step"], r["acc"]) for r in rows] == [(s, s * 0.5) for s in range(10, 20)]
    assert api.get("/v1/runs/s/metrics", format="csv")[0] == 400
