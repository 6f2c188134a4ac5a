"""The consumer's commit logic: offsets move only after the store has the data.

Batches are written strictly in log order by one writer task, so the position
recorded here never passes an unfinished batch. Commits are throttled (about
once a second) and forced on partition revoke and on shutdown; a replay of
what was written but not yet committed is harmless (the store deduplicates).
"""

from __future__ import annotations

import logging
import time

from arwx.log.base import LogReader

log = logging.getLogger(__name__)


class OffsetCommitter:
    """Tracks the stored-up-to position per partition and commits it."""

    def __init__(self, reader: LogReader, interval_s: float = 1.0) -> None:
        self.reader = reader
        self.interval_s = interval_s
        self._stored: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._last = 0.0

    def stored(self, positions: dict[tuple[str, int], int]) -> None:
        """Record that everything before these offsets is in the store."""
        for tp, nxt in positions.items():
            if nxt > self._stored.get(tp, -1):
                self._stored[tp] = nxt

    def uncommitted(self) -> dict[tuple[str, int], int]:
        return {tp: o for tp, o in self._stored.items() if self._committed.get(tp) != o}

    async def maybe_commit(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.interval_s:
            return
        todo = self.uncommitted()
        if not todo:
            return
        await self.reader.commit(todo)
        self._committed.update(todo)
        self._last = time.monotonic()

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions taken away: their position belongs to the new owner now."""
        for tp in partitions:
            self._stored.pop(tp, None)
            self._committed.pop(tp, None)
