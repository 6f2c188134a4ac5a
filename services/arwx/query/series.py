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
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

import msgspec
import pyarrow as pa

from arwx.store.base import Store

ARROW_STREAM = "application/vnd.apache.arrow.stream"


class BadCursor(ValueError):
    """A cursor this service did not give out."""


def encode_cursor(key: str, writer_id: str, seq: int) -> str:
    """The opaque ``next``: URL-safe base64 (unpadded) of ``["key", "writer", "seq"]``.

    ClickHouse builds the same text for columnar JSON (``_NEXT``); any JSON
    spelling of the three strings decodes the same."""
    return base64.urlsafe_b64encode(msgspec.json.encode([key, writer_id, str(seq)])).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[str, str, int]:
    """(key, writer_id, seq) of a ``next``; ``BadCursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, writer, seq = msgspec.json.decode(raw, type=tuple[str, str, str])
        n = int(seq)
    except (binascii.Error, msgspec.DecodeError, ValueError, UnicodeError) as e:
        raise BadCursor("cursor is not one this service gave out") from e
    if not 0 <= n < 1 << 64:  # a UInt64 parameter: anything else would be a store error
        raise BadCursor("cursor is not one this service gave out")
    return key, writer, n


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
    "SELECT run_id, series, next FROM (SELECT {run:String} AS run_id,"
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
    """What a history read asks for (see docs/query.md)."""

    org: str
    run_id: str
    keys: list[str]
    min_step: int
    max_step: int

    def params(self, limit: int, after: tuple[str, str, int] | None) -> dict:
        p: dict = {"org": self.org, "run": self.run_id, "min_step": self.min_step, "max_step": self.max_step, "limit": limit}
        if self.keys:
            p["keys"] = self.keys
        if after:
            p["a_key"], p["a_writer"], p["a_seq"] = after
        return p


async def columns_page(store: Store, rng: Range, limit: int, after: tuple[str, str, int] | None) -> bytes:
    """One page as the columnar JSON body (ClickHouse's bytes, ``next`` included)."""
    page = _page_sql(bool(rng.keys), after is not None)
    sql = _COLUMNS.replace("{series}", _SERIES.replace("{page}", page))
    body = await store.raw(sql, rng.params(limit, after), "JSONEachRow", _JSON_SETTINGS)
    return body.rstrip(b"\n")


async def arrow_page(store: Store, rng: Range, limit: int, after: tuple[str, str, int] | None) -> tuple[bytes, str | None]:
    """One page as an Arrow IPC stream (ClickHouse's bytes) and its ``next``."""
    body = await store.raw(_page_sql(bool(rng.keys), after is not None), rng.params(limit, after), "ArrowStream")
    return body, _next_of(body, limit)


def _next_of(body: bytes, limit: int) -> str | None:
    """The cursor after a full page: its last row, read without copying the page."""
    if not body:
        return None
    table = pa.ipc.open_stream(body).read_all()
    if table.num_rows < limit:
        return None
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    return encode_cursor(last["key"], last["writer_id"], last["seq"])


async def arrow_pages(store: Store, rng: Range, page_rows: int) -> AsyncIterator[bytes]:
    """Every point of the range as one Arrow IPC stream, a page at a time:
    ClickHouse's messages as it wrote them (compressed record batches), the
    schema once, then each page's batches, then the end-of-stream marker."""
    after = None
    while True:
        body = await store.raw(_page_sql(bool(rng.keys), after is not None), rng.params(page_rows, after), "ArrowStream")
        parts = [
            msg.serialize().to_pybytes()
            for msg in pa.ipc.MessageReader.open_stream(body)
            if after is None or msg.type != "schema"
        ]
        yield b"".join(parts)
        table = pa.ipc.open_stream(body).read_all()
        if table.num_rows < page_rows:
            yield _EOS
            return
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        after = (last["key"], last["writer_id"], last["seq"])


_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC stream's end marker (continuation, length 0)
