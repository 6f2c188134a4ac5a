"""Columnar upload bodies (``application/vnd.arwx.columns+json``): the points of one writer,
keys spelled once, from the spooler's columns or, failing that, from spool lines.

Invariant: a body carries exactly the points of seqs ``first_seq`` on, in order, with the
same step, key, value and ts text as their spool lines; where that cannot be shown the
answer is ``None`` and the caller sends the lines as they are. No loop per point runs in
Python here: cells are JSON text joined by C code, never parsed.

Two sources:

- ``RecentColumns``: the columns ``PointEncoder`` made while spooling, held (bounded) until
  acknowledged, so a live run never reads its spool back.
- ``from_lines``: spool lines cut at the field names ``PointEncoder`` writes
  (``bytes.replace``/``split``). That is sound because every line has that one layout for
  this run and writer, and a key never holds a comma or a raw newline (the encoder replaces
  commas; JSON escapes newlines). Lines of any other shape give ``None``.
"""

from __future__ import annotations

import collections
import json
import threading
from itertools import chain

from arwandb.encode import Columns

CONTENT_TYPE = "application/vnd.arwx.columns+json"
_SEP = b"\x00"  # never in a line: JSON escapes control characters
_FIELDS = (b',"step":', b',"key":', b',"value":', b',"ts":')
RECENT_MAX_POINTS = 200_000  # columns held for the uploader (~20 MB); past it, lines are read back


class ColumnsEncoder:
    """Columnar bodies of one (run, writer)."""

    def __init__(self, run_id: str, writer_id: str) -> None:
        ids = f'{{"run_id":{json.dumps(run_id)},"writer_id":{json.dumps(writer_id)},'
        self._head = (ids + '"seq":').encode()  # how PointEncoder starts each line
        self._prefix = ids + '"keys":['

    def body(self, cols: Columns, n: int) -> bytes:
        """The body of the first ``n`` points of ``cols``."""
        key = cols.key[:n]
        keys = list(dict.fromkeys(key))  # first-seen order; a run has a handful
        index = {k: str(i) for i, k in enumerate(keys)}
        first = cols.first_seq
        return "".join((
            self._prefix, ",".join(keys),
            '],"seq":[', ",".join(map(str, range(first, first + n))),
            '],"step":[', ",".join(cols.step[:n]),
            '],"key":[', ",".join(map(index.__getitem__, key)),
            '],"value":[', ",".join(cols.value[:n]),
            '],"ts":[', ",".join(cols.ts[:n]), "]}",
        )).encode()

    def from_lines(self, lines: list[bytes], first_seq: int) -> Columns | None:
        """The columns of spool ``lines`` (seqs ``first_seq`` on, one per line), or ``None``
        if they are not all in the encoder's layout with exactly those seqs."""
        n = len(lines)
        if not n:
            return None
        data = b"\n".join(lines)
        head = self._head
        if not (data.startswith(head) and data.endswith(b"}")) or data.count(head) != n:
            return None
        if data.count(b"\n") != n - 1 or data.count(b"}\n") != n - 1 or any(data.count(f) != n for f in _FIELDS):
            return None
        for f in _FIELDS:
            data = data.replace(f, _SEP)
        try:
            text = data[len(head) : -1].replace(b"}\n" + head, _SEP).decode("ascii")
        except UnicodeDecodeError:
            return None
        if "," in text:  # no cell holds a comma (keys cannot): a field this layout does not have
            return None
        cells = text.split("\x00")
        if len(cells) != 5 * n or cells[0::5] != list(map(str, range(first_seq, first_seq + n))):
            return None
        step, key = cells[1::5], cells[2::5]
        if not "".join(step).isdigit() or not all(map(_quoted, key)):  # the fields in this order
            return None
        return Columns(first_seq, step, key, cells[3::5], cells[4::5])


def _quoted(cell: str) -> bool:
    return cell[:1] == '"' == cell[-1:] and len(cell) > 1


class RecentColumns:
    """Columns this process spooled and the server has not acknowledged yet, oldest first.

    The spooler thread adds, the uploader thread takes and drops. At most
    ``limit`` points are held (a server down for long must not grow memory):
    what is not held is read back from the spool file instead.
    """

    def __init__(self, limit: int = RECENT_MAX_POINTS) -> None:
        self.limit = limit
        self._parts: collections.deque[Columns] = collections.deque()
        self._held = 0
        self._mu = threading.Lock()

    def add(self, cols: Columns) -> None:
        n = len(cols.step)
        with self._mu:
            if n and self._held + n <= self.limit:
                self._parts.append(cols)
                self._held += n

    def drop_below(self, seq: int) -> None:
        """Forget points with seqs below ``seq`` (acknowledged or set aside)."""
        with self._mu:
            while self._parts and self._parts[0].first_seq + len(self._parts[0].step) <= seq:
                self._held -= len(self._parts.popleft().step)

    def take(self, start: int, n: int) -> Columns | None:
        """Up to ``n`` points from seq ``start`` on, if held without a hole from ``start``."""
        with self._mu:
            parts = list(self._parts)
        out: list[Columns] = []
        got = 0
        nxt = start
        for p in parts:
            size = len(p.step)
            if p.first_seq + size <= nxt:
                continue
            if p.first_seq > nxt or got >= n:
                break
            lo = nxt - p.first_seq
            hi = min(size, lo + n - got)
            out.append(p if (lo, hi) == (0, size) else
                       Columns(nxt, p.step[lo:hi], p.key[lo:hi], p.value[lo:hi], p.ts[lo:hi]))
            got += hi - lo
            nxt += hi - lo
        if not out:
            return None
        if len(out) == 1:
            return out[0]
        return Columns(start, *(list(chain.from_iterable(p[i] for p in out)) for i in range(1, 5)))
