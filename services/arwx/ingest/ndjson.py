"""Cutting an NDJSON body into lines with bounded memory.

Invariant: whatever the body's length, at most one partial line (up to
``max_line_bytes``) and one network piece are held. A line over the limit is
reported as ``None`` (its bytes are dropped as they arrive) so the caller can
reject it by number while keeping its neighbours. Lines are numbered from 1,
blank ones included; a last line without a newline counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

Line = tuple[int, bytes | None]  # (line number, bytes without the newline; None: over the limit)


async def split_lines(pieces: AsyncIterable[bytes], max_line_bytes: int) -> AsyncIterator[list[Line]]:
    """The complete lines each piece ends, one list per piece (so a caller can
    decode a piece's lines in one go)."""
    buf = bytearray()
    skipping = False  # inside a line that is over the limit
    lineno = 0
    async for piece in pieces:
        lines: list[Line] = []
        start = 0
        while True:
            nl = piece.find(b"\n", start)
            if nl < 0:
                if not skipping:
                    buf += piece[start:]
                    if len(buf) > max_line_bytes:
                        skipping = True
                        buf.clear()
                break
            lineno += 1
            if skipping:
                lines.append((lineno, None))
                skipping = False
            else:
                buf += piece[start:nl]
                lines.append((lineno, None if len(buf) > max_line_bytes else bytes(buf)))
                buf.clear()
            start = nl + 1
        if lines:
            yield lines
    if skipping or buf:
        yield [(lineno + 1, None if skipping else bytes(buf))]
