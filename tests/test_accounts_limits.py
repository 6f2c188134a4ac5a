"""The sign-in limiter's window, kept in the catalog: two processes' limiters (two engines on
one database, SQLite and PostgreSQL) see each other's failures. The server-level proof (a
failure recorded by another OS process refuses a sign-in at a running server) is in
tests/test_accounts_process.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arwx.accounts.ratelimit import AttemptLimiter
from arwx.catalog import Catalog
from arwx.catalog.tables import login_failures


async def _two_catalogs(url: str) -> tuple[Catalog, Catalog]:
    a, b = Catalog.open(url, Path("/nonexistent")), Catalog.open(url, Path("/nonexistent"))
    await a.start()
    await b.start()
    return a, b


def test_failures_slide_out_of_the_window_and_are_shared(catalog_url: str) -> None:
    async def go() -> None:
        ca, cb = await _two_catalogs(catalog_url)
        try:
            a, b = AttemptLimiter(ca, 3, 10.0), AttemptLimiter(cb, 3, 10.0)
            t0 = 1_800_000_000.0
            # Failures recorded by two processes count against one budget.
            for lim, t in ((a, t0), (b, t0 + 1), (a, t0 + 2)):
                assert await lim.retry_after("email:a", now=t) == 0
                await lim.failed("email:a", now=t)
            for lim in (a, b):
                assert await lim.retry_after("email:a", now=t0 + 2) == pytest.approx(8.0)  # until t0 leaves
            assert await b.retry_after("email:b", now=t0 + 2) == 0  # another key is not affected
            assert await b.retry_after("email:a", now=t0 + 10.5) == 0  # the first failure left the window
            await b.failed("email:a", now=t0 + 10.5)
            assert await a.retry_after("email:a", now=t0 + 10.6) == pytest.approx(0.4)
            await a.clear("email:a")  # a success, on the other process
            assert await b.retry_after("email:a", now=t0 + 10.6) == 0
        finally:
            await ca.stop()
            await cb.stop()

    asyncio.run(go())


def test_keys_are_stored_hashed_and_stale_rows_are_deleted(catalog_url: str) -> None:
    async def go() -> None:
        ca, cb = await _two_catalogs(catalog_url)
        try:
            lim = AttemptLimiter(ca, 1, 100.0)
            t0 = 1_800_000_000.0
            for i in range(50):
                await lim.failed(f"email:user{i}@example.com", now=t0)
            async with cb.connect() as conn:
                stored = [r[0] for r in await conn.execute(select(login_failures.c.key_hash))]
            assert len(stored) == 50 and all(len(h) == 64 and "@" not in h for h in stored)
            assert await lim.retry_after("email:user49@example.com", now=t0 + 1) > 0
            await lim.failed("addr:127.0.0.1", now=t0 + 100.5)  # the 50 left the window: deleted
            async with cb.connect() as conn:
                assert await conn.scalar(select(func.count()).select_from(login_failures)) == 1
        finally:
            await ca.stop()
            await cb.stop()

    asyncio.run(go())
