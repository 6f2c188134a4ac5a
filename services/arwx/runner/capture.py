"""Copy a child's output pipe into a file, never more than a cap.

Invariant: memory is one read (``CHUNK``) and the file never grows past
``cap_bytes``; past the cap the pipe is still drained (a child blocked on a
full pipe would hang), its bytes counted and dropped. So a command printing
gigabytes costs ``cap_bytes`` of disk per stream and nothing more.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

CHUNK = 64 * 1024


class CappedCapture:
    """One stream of one run: ``path`` holds its first ``cap_bytes`` bytes."""

    def __init__(self, path: Path, cap_bytes: int) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.written = 0  # bytes in the file
        self.dropped = 0  # bytes past the cap, drained and not kept

    async def copy(self, pipe: asyncio.StreamReader) -> None:
        """Until the pipe's end (every process holding its write end has closed it)."""
        with open(self.path, "ab", buffering=0) as f:
            while True:
                chunk = await pipe.read(CHUNK)
                if not chunk:
                    break
                room = self.cap_bytes - self.written
                if room > 0:
                    f.write(chunk[:room])
                    self.written += min(room, len(chunk))
                self.dropped += max(0, len(chunk) - max(room, 0))
