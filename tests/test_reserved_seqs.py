"""Writer seq reservations (arwx/ingest/reserved_seqs.py) on SQLite and a real PostgreSQL.

Two catalogs on one database stand for two gateway processes: their
reservations never overlap, a retried digest gets its seqs back, and a failed
write gives its seqs back only when nothing came after it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arwx.catalog import Catalog
from arwx.ingest.reserved_seqs import MAX_DIGEST, ReservedSeqs, request_digest


async def _started(url: str) -> Catalog:
    catalog = Catalog.open(url, Path("/nonexistent"))
    await catalog.start()
    return catalog


async def test_concurrent_reservations_of_two_processes_never_overlap(catalog_url: str) -> None:
    one, two = await _started(catalog_url), await _started(catalog_url)
    try:
        a, b = ReservedSeqs(one), ReservedSeqs(two)
        got = await asyncio.gather(*(
            (a if i % 2 else b).reserve("org", "run", "w", f"d{i}", 1 + i % 3) for i in range(40)
        ))
        spans = sorted((first, 1 + i % 3) for i, (first, fresh) in enumerate(got))
        assert all(fresh for _, fresh in got)
        at = 0
        for first, n in spans:  # contiguous, no overlap, no gap
            assert first == at
            at += n
        assert await a.totals("org", "run") == {"w": at}
        # Writers and runs and orgs are apart.
        assert await a.reserve("org", "run", "other", "d0", 2) == (0, True)
        assert await b.reserve("org2", "run", "w", "d0", 2) == (0, True)
        assert await a.total("org", "run", "w") == at
    finally:
        await one.stop()
        await two.stop()


async def test_a_retry_gets_its_seqs_and_a_failed_write_gives_them_back(catalog_url: str) -> None:
    catalog = await _started(catalog_url)
    try:
        seqs = ReservedSeqs(catalog)
        assert await seqs.reserve("o", "r", "w", "first", 5) == (0, True)
        assert await seqs.reserve("o", "r", "w", "first", 5) == (0, False)  # the retry
        assert await seqs.reserve("o", "r", "w", "first", 2) == (5, True)  # same name, other count: new request

        with pytest.raises(RuntimeError):
            async with seqs.reserved("o", "r", "w", "fails", 3) as first:
                assert first == 7
                raise RuntimeError("the log refused it")
        assert await seqs.total("o", "r", "w") == 7  # given back: it was the last
        async with seqs.reserved("o", "r", "w", "next", 1) as first:
            assert first == 7  # no gap

        # Not the last any more: the seqs stay with the digest for its retry.
        first, _ = await seqs.reserve("o", "r", "w", "middle", 2)
        await seqs.reserve("o", "r", "w", "after", 1)
        await seqs.release("o", "r", "w", "middle", first, 2)
        assert await seqs.reserve("o", "r", "w", "middle", 2) == (first, False)

        # A retry whose write fails again keeps its seqs: they may hold stored points.
        with pytest.raises(RuntimeError):
            async with seqs.reserved("o", "r", "w", "after", 1):
                raise RuntimeError("again")
        total = await seqs.total("o", "r", "w")
        async with seqs.reserved("o", "r", "w", "later", 1) as later:
            assert later == total
    finally:
        await catalog.stop()


def test_request_digests() -> None:
    assert request_digest("abc", b"x") == "k:abc"
    assert request_digest(None, b"x") == request_digest("", b"x") != request_digest(None, b"y")
    long = request_digest("k" * 1000, b"")
    assert len(long) <= MAX_DIGEST and long != request_digest("k" * 999 + "j", b"")
