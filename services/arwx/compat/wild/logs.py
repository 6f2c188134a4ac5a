"""A Wild run's stdout and stderr on the server: chunks at byte offsets, capped per stream.

Invariant: a stream is the bytes ``[0, end)`` with no hole. The runner sends
each chunk with the offset of its first byte; a chunk that starts inside what
is stored (a resend after a lost answer) adds only its new tail, one that
starts past the end is refused (409, the runner resends from ``end``), and
nothing past ``cap_bytes`` is kept (the answer says ``truncated``). So a
command printing gigabytes costs the server at most ``cap_bytes`` per stream.
"""

from __future__ import annotations

from sqlalchemy import func, select

from arwx.catalog import Catalog
from arwx.catalog.tables import wild_run_logs
from arwx.errors import Conflict

STREAMS = ("stdout", "stderr")
MAX_CHUNK = 1 << 20  # one upload


class RunLogs:
    """Chunks of every run's streams, in the catalog."""

    def __init__(self, catalog: Catalog, cap_bytes: int) -> None:
        self.catalog = catalog
        self.cap_bytes = cap_bytes

    async def _end(self, conn, org: str, run_id: str, stream: str) -> int:  # noqa: ANN001 - AsyncConnection
        last = (await conn.execute(
            select(wild_run_logs.c.pos, func.length(wild_run_logs.c.data))
            .where(wild_run_logs.c.org == org, wild_run_logs.c.run_id == run_id, wild_run_logs.c.stream == stream)
            .order_by(wild_run_logs.c.pos.desc()).limit(1)
        )).first()
        return 0 if last is None else int(last[0]) + int(last[1])

    async def append(self, org: str, run_id: str, stream: str, pos: int, data: bytes) -> dict:
        """Store ``data`` at byte ``pos`` of the stream; the stream's new end and whether the cap cut it."""
        async with self.catalog.begin() as conn:
            end = await self._end(conn, org, run_id, stream)
            if pos > end:
                raise Conflict(f"{stream} of run {run_id!r} has {end} bytes; send from offset {end}", extra={"end": end})
            data = data[end - pos:]  # what is stored already is not stored again
            room = max(0, self.cap_bytes - end)
            keep = data[:room]
            if keep:
                await conn.execute(wild_run_logs.insert().values(
                    org=org, run_id=run_id, stream=stream, pos=end, data=keep
                ))
        return {"end": end + len(keep), "truncated": len(keep) < len(data) or end + len(keep) >= self.cap_bytes}

    async def read(self, org: str, run_id: str, stream: str, start: int = 0) -> tuple[bytes, int]:
        """The stream's bytes from ``start`` (at most ``cap_bytes``) and its end."""
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(
                select(wild_run_logs.c.pos, wild_run_logs.c.data)
                .where(wild_run_logs.c.org == org, wild_run_logs.c.run_id == run_id,
                       wild_run_logs.c.stream == stream)
                .order_by(wild_run_logs.c.pos)
            )).all()
        out = bytearray()
        end = 0
        for pos, data in rows:
            end = pos + len(data)
            if end > start:
                out += data[max(0, start - pos):]
        return bytes(out), end


def tail_lines(data: bytes, n: int) -> bytes:
    """The last ``n`` lines of ``data`` (a final partial line counts as one)."""
    if n <= 0:
        return b""
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(n):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1:]
