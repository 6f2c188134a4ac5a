"""The embedded store: the ClickHouse engine in-process (chDB).

One data path and one session per process, every call serialized behind one
lock and run off the event loop: two chDB connections running parameterized
queries at once were reproduced returning wrong values.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec
import pyarrow as pa

from arwx.store.base import Params, StoreUnavailable, check_token
from arwx.store.errors import classify

_SETTINGS = "output_format_json_quote_64bit_integers=0, output_format_json_quote_denormals=0"

# One session and one lock per data path for the whole process, whichever
# ChdbStore objects use it (e.g. an embedded and a Kafka-mode server in one
# test process): path -> [session, lock, users].
_OPEN: dict[str, list] = {}
_OPEN_LOCK = threading.Lock()


def _quote(v: object) -> str:
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(v)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _escape(v: str) -> str:
    """A scalar String parameter in ClickHouse's escaped text form (backslash, tab, newline, CR, NUL)."""
    return v.translate(_ESCAPES)


def _params(params: Params | None) -> Params | None:
    """chDB takes array parameters in ClickHouse's text form (still a
    parameter, parsed by the type's parser, never as SQL)."""
    if not params:
        return params
    # Scalar strings are parsed with ClickHouse's escaping rules too: unescaped, "a\\nb" arrived as
    # a newline and a trailing backslash or a tab was an error (500).
    return {
        k: "[" + ",".join(_quote(x) for x in v) + "]" if isinstance(v, (list, tuple))
        else _escape(v) if isinstance(v, str) else v
        for k, v in params.items()
    }


def _setting(v: object) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"query settings are numbers, not {v!r}")
    return str(v)


def _acquire(path: str) -> tuple[object, threading.Lock]:
    from chdb import session

    with _OPEN_LOCK:
        entry = _OPEN.get(path)
        if entry is None:
            entry = _OPEN[path] = [session.Session(path), threading.Lock(), 0]
        entry[2] += 1
        return entry[0], entry[1]


def _release(path: str) -> None:
    with _OPEN_LOCK:
        entry = _OPEN.get(path)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] == 0:
            del _OPEN[path]
            with entry[1]:
                entry[0].close()


class ChdbStore:
    """``Store`` on chDB, data under ``<data_dir>/clickhouse``."""

    def __init__(self, data_dir: str) -> None:
        self.path = str(Path(data_dir) / "clickhouse")
        self._session = None
        self._lock = threading.Lock()  # replaced by the path's shared lock on start

    async def start(self) -> None:
        Path(self.path).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(self.path).resolve())
        self._session, self._lock = await asyncio.to_thread(_acquire, self.path)

    async def stop(self) -> None:
        if self._session is not None:
            self._session = None
            await asyncio.to_thread(_release, self.path)

    def _query(self, sql: str, fmt: str, params: Params | None):  # noqa: ANN202
        if self._session is None:
            raise StoreUnavailable("chDB store is not open")
        try:
            with self._lock:
                if params:
                    return self._session.query(sql, fmt, params=_params(params))
                return self._session.query(sql, fmt)
        except Exception as e:  # chDB raises one type for everything: its code says which
            c = classify(e)
            if c is e:
                raise
            raise c from e

    async def rows(self, sql: str, params: Params | None = None) -> list[tuple]:
        res = await asyncio.to_thread(self._query, f"{sql}\nSETTINGS {_SETTINGS}", "JSONCompact", params)
        raw = res.bytes()
        if not raw:
            return []
        return [tuple(r) for r in msgspec.json.decode(raw)["data"]]

    async def arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        res = await asyncio.to_thread(self._query, sql, "ArrowStream", params)
        raw = res.bytes()
        if not raw:
            return pa.table({})
        return pa.ipc.open_stream(raw).read_all()

    async def raw(self, sql: str, params: Params | None, fmt: str, settings: dict | None = None) -> bytes:
        if settings:
            sql += "\nSETTINGS " + ", ".join(f"{k}={_setting(v)}" for k, v in settings.items())
        res = await asyncio.to_thread(self._query, sql, fmt, params)
        return res.bytes()

    async def command(self, sql: str, params: Params | None = None) -> None:
        await asyncio.to_thread(self._query, sql, "CSV", params)

    async def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        cols = ", ".join(data.column_names)
        settings = f" SETTINGS insert_deduplication_token='{check_token(dedup_token)}'" if dedup_token else ""
        sql = f"INSERT INTO {table} ({cols}){settings} SELECT {cols} FROM Python(arwx_batch)"
        await asyncio.to_thread(self._insert, sql, data)

    def _insert(self, sql: str, arwx_batch: pa.Table) -> None:  # noqa: ANN001
        # chDB's Python() table function finds the table by its variable name
        # in this frame.
        if self._session is None:
            raise StoreUnavailable("chDB store is not open")
        try:
            with self._lock:
                self._session.query(sql, "CSV")
        except Exception as e:
            c = classify(e)
            if c is e:
                raise
            raise c from e

    async def ping(self) -> bool:
        try:
            return (await self.rows("SELECT 1")) == [(1,)]
        except Exception:
            return False
