"""Run history per series (key, writer), as bytes ClickHouse writes itself.

Invariant: a page is the next ``limit`` finite points in the ``points`` sort
key order (key, writer_id, seq) after the cursor, read FINAL; the cursor is
that order's last (key, writer_id, seq) of the page. So every page is one
range read of the sort key whatever its position in the run (no count, no
OFFSET), and consecutive pages cover every point exactly once.

Two formats, both produced by ClickHouse (no Python per point):

- columnar JSON: ``{"run_id", "series": [{"key", "writer_id", "step": [...],
  "ts": [...], "value": [...]}], "next"}``; ``ts`` in seconds as in the row
  format; ClickHouse writes the whole body, ``next`` included;
- Arrow IPC stream: one table with columns key, writer_id, seq, step, ts
  (timestamp[ms, UTC]), value; ``next`` comes back beside it (a header).

A page may end exactly at the last point, so a ``next`` can lead to an empty
last page.

A rewound or forked run (``arwx/segments.py``) is read segment after
segment, each in its storage id's sort-key order, so a page is still one
range read; a page ends at its segment's end (``next`` then names the next
segment) and a series (key, writer) comes once per segment, each over the
segment's steps only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

import msgspec
import pyarrow as pa

from arwx.segments import Segment, within
from arwx.store.base import Store

ARROW_STREAM = "application/vnd.apache.arrow.stream"


class BadCursor(ValueError):
    """A cursor this service did not give out."""


def encode_cursor(key: str, writer_id: str, seq: int, segment: int = 0) -> str:
    """The opaque ``next``: URL-safe base64 (unpadded) of ``["key", "writer", "seq"]``
    (and ``"segment"`` when it is not the first; key "" names a segment's start).

    ClickHouse builds the same text for columnar JSON (``_NEXT``); any JSON
    spelling of the strings decodes the same."""
    parts = [key, writer_id, str(seq)] + ([str(segment)] if segment else [])
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).rstrip(b"=").decode()


def _decode(cursor: str) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw, type=list[str])
        nums = [int(x) for x in parts[2:]]
    except (binascii.Error, msgspec.DecodeError, ValueError, UnicodeError) as e:
        raise BadCursor("cursor is not one this service gave out") from e
    # UInt64 parameters: anything else would be a store error.
    if len(parts) not in (3, 4) or not all(0 <= n < 1 << 64 for n in nums):
        raise BadCursor("cursor is not one this service gave out")
    return parts


def decode_cursor(cursor: str) -> tuple[str, str, int]:
    """(key, writer_id, seq) of a ``next`` of one storage run; ``BadCursor`` for anything else."""
    parts = _decode(cursor)
    if len(parts) != 3:
        raise BadCursor("cursor is not one this service gave out")
    return parts[0], parts[1], int(parts[2])


Cursor = tuple[int, str, str, int]  # (segment, key, writer_id, seq); key "": the segment's start


def decode_history_cursor(cursor: str) -> Cursor:
    """(segment, key, writer_id, seq) of a history ``next``; ``BadCursor`` for anything else."""
    parts = _decode(cursor)
    return int(parts[3]) if len(parts) == 4 else 0, parts[0], parts[1], int(parts[2])


def _page_sql(keys: bool, after: bool) -> str:
    """The page's points in sort-key order. The keyset condition is spelled
    out as OR/AND of single columns: ClickHouse prunes the primary key with
    that form at a constant cost (a tuple comparison was measured to read
    the run from its start, slower page by page)."""
    cond = (
        "org = {org:String} AND run_id = {run:String} AND isFinite(value)"
        " AND step BETWEEN {min_step:UInt64} AND {max_step:UInt64}"
    )
    if keys:
        cond += " AND key IN {keys:Array(String)}"
    if after:
        cond += (
            " AND (key > {a_key:String} OR (key = {a_key:String} AND (writer_id > {a_writer:String}"
            " OR (writer_id = {a_writer:String} AND seq > {a_seq:UInt64}))))"
        )
    return (
        "SELECT key, writer_id, seq, step, ts, value FROM points FINAL"
        f" WHERE {cond} ORDER BY key, writer_id, seq LIMIT {{limit:UInt32}}"
    )


# The columnar JSON body, one row written as JSONEachRow. Each series sorts
# its own points by seq: an aggregate's input order is not guaranteed.
_SERIES = (
    "SELECT key, writer_id, arraySort(groupArray((seq, step, toUnixTimestamp64Milli(ts) / 1000, value))) AS pts,"
    " count() AS n, max(seq) AS last_seq FROM ({page}) GROUP BY key, writer_id"
)
_NEXT = (
    "if(sum(n) = {limit:UInt32}, base64URLEncode(toJSONString(arrayMap(x -> toString(x),"
    " [tupleElement(m, 1), tupleElement(m, 2), toString(tupleElement(m, 3))]))), NULL)"
)
_COLUMNS = (
    "SELECT run_id, series, next FROM (SELECT {visible:String} AS run_id,"
    " arrayMap(s -> CAST((s.1, s.2, arrayMap(p -> p.2, s.3), arrayMap(p -> p.3, s.3), arrayMap(p -> p.4, s.3)),"
    "   'Tuple(key String, writer_id String, step Array(UInt64), ts Array(Float64), value Array(Float64))'),"
    "   arraySort(s -> (s.1, s.2), groupArray((toString(key), toString(writer_id), pts)))) AS series,"
    f" max((toString(key), toString(writer_id), last_seq)) AS m, {_NEXT} AS next"
    " FROM ({series}))"
)
_JSON_SETTINGS = {
    "output_format_json_named_tuples_as_objects": 1,
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
}


class Range(msgspec.Struct, frozen=True):
    """What a history read asks for (see docs/query.md); ``segments``: a rewound or
    forked run's (``arwx/segments.py``), else the run's own storage from step 0."""

    org: str
    run_id: str
    keys: list[str]
    min_step: int
    max_step: int
    segments: list[Segment] | None = None

    def sources(self) -> list[tuple[str, int, int]]:
        """(storage id, first step, last step) to read, in order."""
        return within(self.segments or [(self.run_id, 0, None)], self.min_step, self.max_step)

    def params(self, source: tuple[str, int, int], limit: int, after: tuple[str, str, int] | None) -> dict:
        sid, lo, hi = source
        p: dict = {"org": self.org, "run": sid, "visible": self.run_id, "min_step": lo, "max_step": hi, "limit": limit}
        if self.keys:
            p["keys"] = self.keys
        if after:
            p["a_key"], p["a_writer"], p["a_seq"] = after
        return p


def _start(rng: Range, after: Cursor | None) -> tuple[list[tuple[str, int, int]], int, tuple[str, str, int] | None]:
    """The sources, the index of the one to read now, and the keyset cursor within it."""
    sources = rng.sources()
    if after is None:
        return sources, 0, None
    seg, key, writer, seq = after
    return sources, seg, (key, writer, seq) if key else None


def _next(sources: list, seg: int, last: tuple[str, str, int] | None) -> str | None:
    """The ``next`` after a page of segment ``seg``: its last point when the page was
    full, else the next segment's start (None: nothing after)."""
    if last is not None:
        return encode_cursor(*last, segment=seg)
    return encode_cursor("", "", 0, segment=seg + 1) if seg + 1 < len(sources) else None


async def columns_page(store: Store, rng: Range, limit: int, after: Cursor | None) -> bytes:
    """One page as the columnar JSON body (ClickHouse's bytes, ``next`` included)."""
    sources, seg, within_seg = _start(rng, after)
    if seg >= len(sources):
        return _JSON_ENC.encode({"run_id": rng.run_id, "series": [], "next": None})
    page = _page_sql(bool(rng.keys), within_seg is not None)
    sql = _COLUMNS.replace("{series}", _SERIES.replace("{page}", page))
    body = (await store.raw(sql, rng.params(sources[seg], limit, within_seg), "JSONEachRow", _JSON_SETTINGS)).rstrip(b"\n")
    if len(sources) == 1 and seg == 0:
        return body  # one storage run: ClickHouse's ``next`` is the cursor
    # ``next`` is the body's last member: rewrite it to carry the segment.
    head, _, tail = body.rpartition(b',"next":')
    last = msgspec.json.decode(tail[:-1], type=str | None)
    nxt = _next(sources, seg, decode_cursor(last) if last else None)
    return head + b',"next":' + _JSON_ENC.encode(nxt) + b"}"


_JSON_ENC = msgspec.json.Encoder()


async def arrow_page(store: Store, rng: Range, limit: int, after: Cursor | None) -> tuple[bytes, str | None]:
    """One page as an Arrow IPC stream (ClickHouse's bytes) and its ``next``."""
    sources, seg, within_seg = _start(rng, after)
    if seg >= len(sources):
        sources, seg, within_seg = [(rng.run_id, 1, 0)], 0, None  # an empty read, for the schema
    body = await store.raw(
        _page_sql(bool(rng.keys), within_seg is not None), rng.params(sources[seg], limit, within_seg), "ArrowStream"
    )
    return body, _next(sources, seg, _last_of(body, limit))


def _last_of(body: bytes, limit: int) -> tuple[str, str, int] | None:
    """The last point of a full page (None: not full), read without copying the page."""
    if not body:
        return None
    table = pa.ipc.open_stream(body).read_all()
    if table.num_rows < limit:
        return None
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    return last["key"], last["writer_id"], last["seq"]


async def arrow_pages(store: Store, rng: Range, page_rows: int) -> AsyncIterator[bytes]:
    """Every point of the range as one Arrow IPC stream, a page at a time:
    ClickHouse's messages as it wrote them (compressed record batches), the
    schema once, then each page's batches (segment after segment), then the
    end-of-stream marker."""
    sources = rng.sources() or [(rng.run_id, 1, 0)]  # nothing to read: still a schema
    schema_sent = False
    for source in sources:
        after = None
        while True:
            body = await store.raw(
                _page_sql(bool(rng.keys), after is not None), rng.params(source, page_rows, after), "ArrowStream"
            )
            parts = [
                msg.serialize().to_pybytes()
                for msg in pa.ipc.MessageReader.open_stream(body)
                if not schema_sent or msg.type != "schema"
            ]
            schema_sent = True
            yield b"".join(parts)
            after = _last_of(body, page_rows)
            if after is None:
                break
    yield _EOS


_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC stream's end marker (continuation, length 0)
