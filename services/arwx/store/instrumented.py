"""A ``Store`` wrapper that counts errors and times calls: one place for store metrics.

Every component of a process (gateway, consumer, query service, tenancy) gets
the wrapped store from ``arwx.server``, so ``arwx_store_errors_total`` and
``arwx_store_operation_duration_seconds`` cover them all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pyarrow as pa

from arwx import metrics
from arwx.store.base import Params, Store

T = TypeVar("T")


class InstrumentedStore:
    """Delegates to ``inner``; ``op`` labels: query (rows, arrow, raw), command, insert."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def _timed(self, op: str, aw: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            return await aw
        except Exception:
            metrics.STORE_ERRORS.labels(op=op).inc()
            raise
        finally:
            metrics.STORE_SECONDS.labels(op=op).observe(time.perf_counter() - t0)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def rows(self, sql: str, params: Params | None = None) -> list[tuple]:
        return await self._timed("query", self.inner.rows(sql, params))

    async def arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        return await self._timed("query", self.inner.arrow(sql, params))

    async def raw(self, sql: str, params: Params | None, fmt: str, settings: dict | None = None) -> bytes:
        return await self._timed("query", self.inner.raw(sql, params, fmt, settings))

    async def command(self, sql: str, params: Params | None = None) -> None:
        await self._timed("command", self.inner.command(sql, params))

    async def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        await self._timed("insert", self.inner.insert(table, data, dedup_token))

    async def ping(self) -> bool:
        return await self.inner.ping()

    def __getattr__(self, name: str) -> Any:
        # Anything else (a store's own helpers) is the inner store's.
        return getattr(self.inner, name)
