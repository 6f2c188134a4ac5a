"""Columnar uploads and the adaptive flush: the body says exactly what the spool lines say,
the spooler's columns and the lines read back agree, an older server still gets every point
once, and a busy writer batches while a quiet one sends at once."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import pytest
from fake_server import FakeServer
from memory_transport import COLUMNS_TYPE, MemoryTransport, points_of
from test_sdk_unit import wait_for

import arwandb
from arwandb._run import Run
from arwandb.columns import ColumnsEncoder, RecentColumns
from arwandb.config import resolve
from arwandb.encode import Columns, PointEncoder

ROWS = [
    (0, 1.7e9, {"loss": 0.5, "lr": 3e-4, "nested": {"a": 1, "b": float("nan")}}),
    (1, 1.7e9 + 0.25, {"loss": float("inf"), 'q"uote\\': -2.5e-300, "ünï": 10**400, "flag": True, "s": "x"}),
    (7, 1.7e9 + 1e-6, {"loss": 1e300, "a,b}\n": 3}),
]


def _encoded(run_id: str = "r", writer_id: str = "w", seq: int = 5) -> tuple[list[bytes], Columns]:
    data, n, _, cols = PointEncoder(run_id, writer_id).encode(ROWS, seq)
    lines = data.split(b"\n")[:-1]
    assert len(lines) == n == len(cols.step)
    return lines, cols


def test_body_carries_exactly_the_lines_points() -> None:
    lines, cols = _encoded()
    enc = ColumnsEncoder("r", "w")
    assert enc.from_lines(lines, 5) == cols  # read back from the spool: the spooler's columns
    body, ctype = enc.body(cols, len(lines)), COLUMNS_TYPE
    got, run_id, writer_id = points_of(body, ctype)
    want = [json.loads(line) for line in lines]
    assert (run_id, writer_id) == ("r", "w")
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for field in ("seq", "step", "key", "ts"):
            assert g[field] == w[field], (field, g, w)
        assert g["value"] == w["value"] or (g["value"] is None and w["value"] is None)
    assert json.loads(body)["keys"] == list(dict.fromkeys(w["key"] for w in want))  # each key once
    assert all(w["value"] is None or math.isfinite(w["value"]) for w in want)
    # a prefix of the columns is a body of that many points
    assert points_of(enc.body(cols, 2), ctype)[0] == got[:2]


@pytest.mark.parametrize("change", ["other_writer", "other_run", "wrong_first_seq", "gap", "extra_field",
                                    "field_order", "truncated", "non_ascii", "blank"])
def test_lines_in_any_other_shape_give_no_body(change: str) -> None:
    lines, _ = _encoded()
    enc, first = ColumnsEncoder("r", "w"), 5
    if change == "other_writer":
        enc = ColumnsEncoder("r", "w2")
    elif change == "other_run":
        enc = ColumnsEncoder("r2", "w")
    elif change == "wrong_first_seq":
        first = 6
    elif change == "gap":
        lines = lines[:2] + lines[3:]
    elif change == "extra_field":
        lines[1] = lines[1][:-1] + b',"x":1}'
    elif change == "field_order":
        lines[0] = lines[0].replace(b',"step":0,"key":"loss"', b',"key":"loss","step":0')
    elif change == "truncated":
        lines[-1] = lines[-1][:-3]
    elif change == "non_ascii":
        lines[0] = lines[0].replace(b'"loss"', '"lösš"'.encode())
    elif change == "blank":
        lines.insert(1, b"")
    assert enc.from_lines(lines, first) is None


def test_recent_columns_take_across_parts_and_stop_at_a_hole() -> None:
    def part(first: int, n: int) -> Columns:
        return Columns(first, [str(s) for s in range(first, first + n)], ['"k"'] * n, ["1.0"] * n, ["0.0"] * n)

    rc = RecentColumns(limit=25)
    rc.add(part(0, 10))
    rc.add(part(10, 10))
    rc.add(part(20, 10))  # over the limit: not held (read back from the spool instead)
    got = rc.take(5, 100)
    assert got is not None and got.first_seq == 5 and got.step == [str(s) for s in range(5, 20)]
    assert rc.take(3, 4).step == ["3", "4", "5", "6"]  # type: ignore[union-attr]
    assert rc.take(20, 5) is None  # not held
    rc.drop_below(10)
    assert rc.take(5, 5) is None and rc.take(10, 1).step == ["10"]  # type: ignore[union-attr]
    rc.add(part(20, 10))  # room again
    assert rc.take(15, 10).step == [str(s) for s in range(15, 25)]  # type: ignore[union-attr]
    rc.drop_below(30)
    assert rc.take(29, 1) is None


def _settings(tmp_path, run_id: str, flush_interval: float, **kw):  # noqa: ANN001, ANN003, ANN202
    return resolve(
        project="p", name=None, config=None, writer_id="w", system_metrics=False, system_interval=None,
        mode="online", id=run_id, dir=str(tmp_path), base_url="http://127.0.0.1:9", api_key=None,
        flush_interval=flush_interval, finish_timeout=30.0, **kw,
    )


def test_a_live_run_uploads_columns(tmp_path) -> None:
    mem = MemoryTransport()
    run = Run(_settings(tmp_path, "col1", 0.05), transport=mem)
    for i in range(3000):
        run.log({"loss": 1.0 / (i + 1), "acc": float("nan") if i % 7 == 0 else 0.5})
    run.finish()
    assert mem.seqs("col1", "w") == list(range(6000))
    assert set(mem.content_types) == {COLUMNS_TYPE}
    nan = [p for (r, w, s), p in mem.points.items() if p["key"] == "acc" and p["value"] is None]
    assert len(nan) == len(range(0, 3000, 7)) == run.skipped


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


def test_a_server_from_before_columns_still_gets_every_point_once(fake: FakeServer, tmp_path) -> None:
    fake.columns = False
    run = arwandb.init(project="p", id="old1", writer_id="w", dir=str(tmp_path), base_url=fake.url,
                       system_metrics=False, flush_interval=0.05)
    for i in range(2000):
        run.log({"loss": float(i)})
    run.finish()
    assert fake.count("old1", "w") == 2000
    assert sorted(s for (r, w, s) in fake.points if r == "old1") == list(range(2000))
    ingest = [p for (_, p, status, _) in fake.requests if p.startswith("/v1/ingest")]
    statuses = [status for (_, p, status, _) in fake.requests if p.startswith("/v1/ingest")]
    # one columnar try (400), its points resent as lines; from then on the old bodies only
    assert statuses.count(400) == 1 and ingest[1] == "/v1/ingest/stream", list(zip(ingest, statuses))


def test_a_quiet_writer_sends_at_once_and_a_busy_one_batches(fake: FakeServer, tmp_path) -> None:
    run = arwandb.init(project="p", id="adapt1", writer_id="w", dir=str(tmp_path), base_url=fake.url,
                       system_metrics=False, flush_interval=30.0)
    run.log({"loss": 1.0})
    # quiet so far: the point goes without waiting out the 30 s interval
    wait_for(lambda: fake.count("adapt1", "w") == 1, 15, "the first point after a quiet spell")
    run.finish()

    run = arwandb.init(project="p", id="adapt2", writer_id="w", dir=str(tmp_path), base_url=fake.url,
                       system_metrics=False, flush_interval=0.25)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.5:  # a busy writer: ~thousands of points a second
        run.log({"loss": float(i), "acc": 0.5})
        i += 1
        if i % 50 == 0:
            time.sleep(0.001)
    busy = time.monotonic() - t0
    wait_for(lambda: fake.count("adapt2", "w") == 2 * i, 30, "the busy writer's points")
    sent = [t for (_, p, _, t) in fake.requests if p.startswith("/v1/ingest") and t <= t0 + busy]
    # at most one request per flush_interval while logging (a slow machine only makes fewer)
    assert len(sent) <= busy / 0.25 + 2, (len(sent), busy, i)
    run.finish()
    assert fake.count("adapt2", "w") == 2 * i
