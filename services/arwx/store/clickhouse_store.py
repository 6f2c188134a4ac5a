"""The distributed store: a ClickHouse server through clickhouse-connect.

``{name:Type}`` placeholders make clickhouse-connect send values as server-side
query parameters, never as SQL text.
"""

from __future__ import annotations

import asyncio
import threading

import pyarrow as pa

from arwx.store.base import Params, StoreUnavailable, check_token
from arwx.store.errors import classify


class ClickHouseStore:
    """``Store`` on a ClickHouse server, e.g. ``http://user:pass@host:8123/db``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = None
        # The sync client is not safe for concurrent use; one call at a time
        # per process is enough since ClickHouse parallelizes each query.
        self._lock = threading.Lock()

    async def start(self) -> None:
        import clickhouse_connect

        try:
            self._client = await asyncio.to_thread(
                clickhouse_connect.get_client,
                dsn=self.url,
                settings={"output_format_json_quote_64bit_integers": 0},
                autogenerate_session_id=False,
            )
        except Exception as e:  # connection refused, DNS, auth
            raise StoreUnavailable(f"ClickHouse at {self.url} unreachable: {e}") from e

    async def stop(self) -> None:
        if self._client is not None:
            c, self._client = self._client, None
            await asyncio.to_thread(c.close)

    def _call(self, fn_name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        from clickhouse_connect.driver.exceptions import OperationalError

        if self._client is None:
            raise StoreUnavailable("ClickHouse store is not open")
        try:
            with self._lock:
                return getattr(self._client, fn_name)(*args, **kwargs)
        except OperationalError as e:  # connection refused, reset, timed out
            raise StoreUnavailable(str(e)) from e
        except Exception as e:  # a server error: its ClickHouse code says which
            c = classify(e)
            if c is e:
                raise
            raise c from e

    async def rows(self, sql: str, params: Params | None = None) -> list[tuple]:
        res = await asyncio.to_thread(self._call, "query", sql, parameters=params or {})
        return [tuple(r) for r in res.result_rows]

    async def arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        return await asyncio.to_thread(self._call, "query_arrow", sql, parameters=params or {})

    async def raw(self, sql: str, params: Params | None, fmt: str, settings: dict | None = None) -> bytes:
        return await asyncio.to_thread(
            self._call, "raw_query", sql, parameters=params or {}, settings=settings or None, fmt=fmt
        )

    async def command(self, sql: str, params: Params | None = None) -> None:
        await asyncio.to_thread(self._call, "command", sql, parameters=params or {})

    async def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        settings = {"insert_deduplication_token": check_token(dedup_token)} if dedup_token else None
        await asyncio.to_thread(self._call, "insert_arrow", table, data, settings=settings)

    async def ping(self) -> bool:
        try:
            return await asyncio.to_thread(self._call, "ping")
        except Exception:
            return False
