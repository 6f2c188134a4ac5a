"""INTERIM, process-local stand-in for the shared writer-seq reservation (helper found17's
module replaces it before this lands). Same calls: ``reserve``, ``release``, ``total``."""

from __future__ import annotations

import asyncio


class InterimSeqs:
    def __init__(self) -> None:
        self._next: dict[tuple[str, str, str], int] = {}
        self._seen: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        self._lock = asyncio.Lock()

    async def reserve(self, org: str, run_id: str, writer: str, digest: str, n: int) -> int:
        async with self._lock:
            seen = self._seen.get((org, run_id, writer, digest))
            if seen is not None and seen[1] == n:
                return seen[0]
            first = self._next.get((org, run_id, writer), 0)
            self._next[(org, run_id, writer)] = first + n
            self._seen[(org, run_id, writer, digest)] = (first, n)
            return first

    async def release(self, org: str, run_id: str, writer: str, digest: str, first: int, n: int) -> None:
        async with self._lock:
            if self._next.get((org, run_id, writer)) == first + n:
                self._next[(org, run_id, writer)] = first
                self._seen.pop((org, run_id, writer, digest), None)

    async def total(self, org: str, run_id: str, writer: str) -> int:
        return self._next.get((org, run_id, writer), 0)
