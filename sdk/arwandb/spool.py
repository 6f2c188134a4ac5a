"""On-disk spool: append-only NDJSON segments per (run, writer), an ``acked`` watermark, a ``rejected`` file.

Layout (``root`` is ``<dir>/arwandb``)::

    <root>/<run_id>/run.json                    run metadata, so ``sync`` can create the run
    <root>/<run_id>/<writer_id>/seg-<first_seq>.ndjson   one point per line, exactly the wire format
    <root>/<run_id>/<writer_id>/acked           {"next_seq": N}: seqs < N are on the server (or set aside)
    <root>/<run_id>/<writer_id>/rejected.ndjson points the server refused as the client's fault
    <root>/<run_id>/<writer_id>/finish.json     {"status", "total", "sent"} once finish() ran
    <root>/<run_id>/<writer_id>/lock            flock held by the live process (sync skips busy writers)

Lines are written with one ``os.write`` per batch (no fsync): a process crash (``kill -9``) keeps
everything that reached the kernel; a torn last line (power loss) is truncated on recovery.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from typing import Any

SEGMENT_BYTES = 64 << 20  # rotate segments so acked data can be deleted while a run goes on
_SEG_PREFIX = "seg-"
_SEG_SUFFIX = ".ndjson"


class SpoolBusy(Exception):
    """Another live process holds this writer's spool."""


def write_json_atomic(path: str, obj: Any) -> None:
    """Write-then-rename so readers never see a half-written file."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, default=str)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _seg_name(start: int) -> str:
    return f"{_SEG_PREFIX}{start:015d}{_SEG_SUFFIX}"


class WriterSpool:
    """The spool of one writer of one run. Appends come from one thread, reads/acks from another."""

    def __init__(self, run_dir: str, writer_id: str, *, lock: bool = True) -> None:
        self.writer_id = writer_id
        self.dir = os.path.join(run_dir, writer_id)
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fd: int | None = None
        if lock:
            self._take_lock()
        self._mu = threading.Lock()
        self.segments: list[int] = self._list_segments()
        state = read_json(os.path.join(self.dir, "acked")) or {}
        self.acked: int = int(state.get("next_seq", 0))
        self.last_step: int = -1
        self.next_seq: int = self._recover()
        self._fd: int | None = None
        self._seg_size = 0
        # reader state (uploader thread)
        self._rf: Any = None
        self._rseq = -1
        self._rseg = -1

    # -- locking ---------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolBusy(f"spool {self.dir} is in use by another process") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._rf is not None:
            self._rf.close()
            self._rf = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- recovery --------------------------------------------------------------------------------
    def _list_segments(self) -> list[int]:
        out = []
        for n in os.listdir(self.dir):
            if n.startswith(_SEG_PREFIX) and n.endswith(_SEG_SUFFIX):
                with contextlib.suppress(ValueError):
                    out.append(int(n[len(_SEG_PREFIX) : -len(_SEG_SUFFIX)]))
        return sorted(out)

    def _path(self, start: int) -> str:
        return os.path.join(self.dir, _seg_name(start))

    def _recover(self) -> int:
        """Next seq to assign: after the last complete line (a torn tail is cut off), never below acked."""
        fin = read_json(os.path.join(self.dir, "finish.json")) or {}
        nxt = max(self.acked, int(fin.get("total", 0) or 0))
        ls = fin.get("last_step")
        self.last_step = ls if isinstance(ls, int) else -1
        if not self.segments:
            return nxt
        start = self.segments[-1]
        path = self._path(start)
        with open(path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # torn last line: nobody acked it, drop it
            with open(path, "r+b") as f:
                f.truncate(end)
            data = data[:end]
        n = data.count(b"\n")
        if n:
            last = data[data.rfind(b"\n", 0, end - 1) + 1 : end]
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.last_step = max(self.last_step, int(json.loads(last)["step"]))
        return max(nxt, start + n)

    # -- writing (spooler thread) ------------------------------------------------------------------
    def append(self, data: bytes, n: int) -> None:
        """Hand ``n`` encoded lines to the OS in one write; seqs must be next_seq .. next_seq+n-1."""
        if not n:
            return
        if self._fd is None or self._seg_size >= SEGMENT_BYTES:
            self._open_segment()
        view = memoryview(data)
        while view:
            k = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[k:]
        self._seg_size += len(data)
        self.next_seq += n  # published only after the bytes are in the kernel: readers may use them

    def _open_segment(self) -> None:
        rotating = self._fd is not None
        if rotating:
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None
        with self._mu:
            start = None
            if not rotating and self.segments:  # a resumed spool keeps appending to its last segment
                last = self.segments[-1]
                if os.path.getsize(self._path(last)) < SEGMENT_BYTES:
                    start = last
            if start is None:
                start = self.next_seq
                if not self.segments or self.segments[-1] != start:
                    self.segments.append(start)
            self._fd = os.open(self._path(start), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._seg_size = os.fstat(self._fd).st_size

    # -- reading and acking (uploader thread) ------------------------------------------------------
    def read(self, seq: int, max_n: int) -> list[bytes]:
        """Lines for seqs [seq, min(seq+max_n, next_seq)), without their newline."""
        n = min(max_n, self.next_seq - seq)
        if n <= 0:
            return []
        if self._rf is None or self._rseq != seq:
            self._seek(seq)
        out: list[bytes] = []
        while len(out) < n and self._rf is not None:
            pos = self._rf.tell()
            line = self._rf.readline()
            if not line.endswith(b"\n"):
                self._rf.seek(pos)
                if not self._next_segment():
                    break
                continue
            out.append(line[:-1])
            self._rseq += 1
        return out

    def _seek(self, seq: int) -> None:
        if self._rf is not None:
            self._rf.close()
            self._rf = None
        with self._mu:
            starts = [s for s in self.segments if s <= seq]
        if not starts:
            return
        self._rseg = starts[-1]
        self._rf = open(self._path(self._rseg), "rb")  # noqa: SIM115 - kept open across reads
        self._rseq = self._rseg
        while self._rseq < seq:
            line = self._rf.readline()
            if not line.endswith(b"\n"):
                break
            self._rseq += 1

    def _next_segment(self) -> bool:
        with self._mu:
            later = [s for s in self.segments if s > self._rseg]
        if not later or later[0] != self._rseq:
            return False
        self._rf.close()
        self._rseg = later[0]
        self._rf = open(self._path(self._rseg), "rb")  # noqa: SIM115 - kept open across reads
        return True

    def set_acked(self, next_seq: int) -> None:
        """Advance the watermark (write-then-rename) and delete segments that are fully acked."""
        if next_seq <= self.acked:
            return
        self.acked = next_seq
        write_json_atomic(os.path.join(self.dir, "acked"), {"next_seq": next_seq})
        with self._mu:
            while len(self.segments) > 1 and self.segments[1] <= next_seq:
                start = self.segments.pop(0)
                with contextlib.suppress(OSError):
                    os.unlink(self._path(start))

    def resume_at(self, server_next: int) -> None:
        """Continue after ``server_next``, the next seq the server expects from this writer
        (before any append: ``init`` calls it). Seqs below it are on the server: acked. A spool
        holding more keeps them (they are uploaded next); a spool behind the server (it never
        saw that range: another machine wrote it) is dropped and starts a segment at it."""
        if server_next <= self.next_seq:
            self.set_acked(server_next)
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._rf is not None:
            self._rf.close()
            self._rf = None
        with self._mu:
            for start in self.segments:
                with contextlib.suppress(OSError):
                    os.unlink(self._path(start))
            self.segments = []
        self.next_seq = server_next
        self.set_acked(server_next)

    def reject(self, lines: list[bytes], status: int, reason: str) -> None:
        """Set points aside in ``rejected.ndjson`` with the server's reason (kept, never retried)."""
        head = b'{"status":%d,"reason":%s,"point":' % (status, json.dumps(reason).encode())
        data = b"".join(head + ln + b"}\n" for ln in lines)
        with open(os.path.join(self.dir, "rejected.ndjson"), "ab") as f:
            f.write(data)

    # -- finish bookkeeping ----------------------------------------------------------------------
    def write_finish(self, status: str, sent: bool) -> None:
        write_json_atomic(
            os.path.join(self.dir, "finish.json"),
            {"status": status, "total": self.next_seq, "last_step": self.last_step, "sent": sent},
        )

    def read_finish(self) -> dict[str, Any] | None:
        return read_json(os.path.join(self.dir, "finish.json"))

    def clear_finish(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.dir, "finish.json"))
