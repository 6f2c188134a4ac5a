"""Fast unit tests of the gateway's pure parts: the in-flight budget, the
NDJSON splitter, the seq-range fold, the contract check of points built in
code. No server, no store."""

from __future__ import annotations

import asyncio
import math

import pytest

from arwx.backpressure import InflightBytes, Reservation
from arwx.errors import TooManyRequests
from arwx.ingest.ndjson import split_lines
from arwx.wire import MAX_SEQ, BadInput, Point, RunChunk, check_points, fold_seq_ranges, merge_seq_range


def test_budget_caps_the_gateway_and_each_org() -> None:
    b = InflightBytes(100, org_limit=60)
    a1, a2, other = Reservation(b, "a", 1000), Reservation(b, "a", 1000), Reservation(b, "b", 1000)
    a1.grow(50)
    with pytest.raises(TooManyRequests, match="this organization"):
        a2.grow(20)  # a would hold 70 > 60
    a2.grow(10)
    other.grow(40)  # b is not held back by a
    with pytest.raises(TooManyRequests):
        other.grow(1)  # the gateway is full (100)
    a1.release()
    with pytest.raises(TooManyRequests, match="this organization"):
        other.grow(30)  # room in the gateway now, but b would hold 70 > 60
    other.grow(20)
    assert (b.used, b.by_org) == (70, {"a": 10, "b": 60})
    a2.release()
    other.release()
    assert (b.used, b.by_org) == (0, {})  # orgs with nothing in flight are forgotten


def test_a_lone_request_is_admitted_past_the_limit_and_a_reservation_stops_at_its_cap() -> None:
    b = InflightBytes(10, org_limit=5)
    r = Reservation(b, "a", cap=30)
    r.grow(25)  # alone: never wedged by a small limit
    r.grow(100)  # only up to its cap
    assert r.held == 30 and b.used == 30
    r.release()
    assert b.used == 0


def _split(pieces: list[bytes], limit: int = 10) -> list[list]:
    async def gen():
        for p in pieces:
            yield p

    async def collect() -> list[list]:
        return [lines async for lines in split_lines(gen(), limit)]

    return asyncio.run(collect())


def test_split_lines_numbers_lines_across_pieces_and_drops_long_ones() -> None:
    got = _split([b"ab\ncd", b"e\n\nxxxxxxxx", b"xxxxxxxx\nlast"])
    assert got == [[(1, b"ab")], [(2, b"cde"), (3, b"")], [(4, None)], [(5, b"last")]]
    assert _split([b"x" * 25]) == [[(1, None)]]  # a long last line without a newline
    assert _split([b"a\r\n"]) == [[(1, b"a\r")]]  # the decoder takes \r as whitespace


def test_seq_ranges_fold_one_way_for_one_writer_and_many() -> None:
    assert fold_seq_ranges(["w"] * 3, [5, 3, 4], [1.0, math.nan, 2.0]) == {"w": (3, 5, 3, 1)}
    assert fold_seq_ranges(["a", "b", "a"], [7, 1, 2]) == {"a": (2, 7, 2, 0), "b": (1, 1, 1, 0)}
    acc: dict = {}
    merge_seq_range(acc, "a", (2, 7, 2, 0))
    merge_seq_range(acc, "a", (0, 3, 4, 1))
    assert acc == {"a": [0, 7, 6, 1]}
    c = RunChunk("r")
    c.add("w", 0, 0, 1.0, "k", 1.0)
    c.extend("w", 2, [1, 2], [1, 2], [1.0, 1.0], ["k", "k"], [1.0, 2.0])
    assert len(c) == 3 and c.seq_ranges() == {"w": (0, 2, 3, 0)}


@pytest.mark.parametrize(("point", "why"), [
    (Point(seq=-1, step=0, key="k"), "seq"),
    (Point(seq=MAX_SEQ + 1, step=0, key="k"), "seq"),
    (Point(seq=0, step=0, key="a,b"), "key"),
    (Point(seq=0, step=0, key="k\n"), "key"),
    (Point(seq=0, step=0, key="k" * 257), "key"),
    (Point(seq=0, step=0, key="k", ts=-1.0), "ts"),
    (Point(seq=0, step=0, key="k", run_id="a b"), "run_id"),
])
def test_points_built_in_code_meet_the_wire_contract(point: Point, why: str) -> None:
    check_points([Point(seq=0, step=0, key="ok")], "r", "w")
    with pytest.raises(BadInput, match=why):
        check_points([Point(seq=0, step=0, key="ok"), point], "r", "w")
    with pytest.raises(BadInput, match="bad id"):
        check_points([Point(seq=0, step=0, key="ok")], "r\n", "w")
