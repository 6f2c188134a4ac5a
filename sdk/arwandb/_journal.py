"""The autoresearch call journal: every write call, on disk, in order, until the server has it.

Layout (``<root>/.autoresearch``, ``root`` being the spool root ``<dir>/arwandb``)::

    calls.ndjson     one call a line: {"key", "op", "method", "path", "body", "blobs"?, ...}
    acked            {"next": N}: the first N lines are delivered (or set aside)
    rejected.ndjson  calls the server refused as the client's fault, with its answer (never retried)
    versions.json    {"pending:<digest>": "v3"}: artifact versions learnt while replaying
    blobs/<sha256>   copies of snapshot files taken while the server was unreachable
    hashes.json      the stat → SHA-256 cache of snapshots
    append.lock      flock held while a line is appended or the journal is compacted
    drain.lock       flock held by the one process delivering the journal

Invariants: a line is appended with one ``os.write`` on an ``O_APPEND`` file
descriptor under ``append.lock``, so the order of lines is the order of the
calls, across threads and processes. Lines are delivered strictly in order,
each with its own ``Idempotency-Key`` (fixed when the call is made), and
``acked`` moves past a line only once the server answered it: a line sent
twice (its answer was lost) is answered from the first time, never done
twice. When every line is acked the journal is emptied (under both locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

from arwandb.spool import read_json, write_json_atomic

DIRNAME = ".autoresearch"


def dumps(obj: Any) -> bytes:
    """The one serialization of a call body: the same bytes on every replay (the server's
    idempotency check compares them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Journal:
    """The call journal of one spool root (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, DIRNAME)
        self.calls = os.path.join(self.dir, "calls.ndjson")
        self.blob_dir = os.path.join(self.dir, "blobs")
        self.hash_cache = os.path.join(self.dir, "hashes.json")
        self._mu = threading.RLock()

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    # -- locks -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, name: str, wait: float | None) -> Iterator[bool]:
        """Hold ``name`` (yields True), or yield False if it stayed busy for ``wait`` seconds
        (``None``: wait as long as it takes)."""
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(os.path.join(self.dir, name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            end = None if wait is None else time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if end is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if time.monotonic() >= end:  # type: ignore[operator]
                        yield False
                        return
                    time.sleep(0.01)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def draining(self, wait: float) -> contextlib.AbstractContextManager[bool]:
        """The right to deliver (one process at a time); False if another holds it for ``wait`` s."""
        return self._flock("drain.lock", wait)

    # -- writing ---------------------------------------------------------------------------------
    def append(self, entry: dict[str, Any]) -> None:
        """Record one call after every call recorded before it."""
        line = dumps(entry) + b"\n"
        with self._mu, self._flock("append.lock", None):
            fd = os.open(self.calls, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    # -- reading and acking (holder of drain.lock) ------------------------------------------------
    def acked(self) -> int:
        return int((read_json(os.path.join(self.dir, "acked")) or {}).get("next", 0))

    def _lines(self) -> list[bytes]:
        """Every complete line, in order (a torn last line is not a call yet)."""
        try:
            with open(self.calls, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return data[: data.rfind(b"\n") + 1].splitlines()

    def entries(self, start: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(how many lines there are, the calls from line ``start`` on, parsed)."""
        lines = self._lines()
        out = []
        for raw in lines[start:]:
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"op": "corrupt", "raw": raw[:200].decode("utf-8", "replace")})
        return len(lines), out

    def pending(self) -> int:
        with self._mu:
            return max(0, len(self._lines()) - self.acked())

    def ack(self, n: int) -> None:
        write_json_atomic(os.path.join(self.dir, "acked"), {"next": n})

    def reject(self, entry: dict[str, Any], status: int, reason: str) -> None:
        rec = {"status": status, "reason": reason, "call": entry, "at": time.time()}
        with open(os.path.join(self.dir, "rejected.ndjson"), "ab") as f:
            f.write(dumps(rec) + b"\n")

    def rejected(self) -> list[dict[str, Any]]:
        try:
            with open(os.path.join(self.dir, "rejected.ndjson"), "rb") as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except (OSError, ValueError):
            return []

    def compact(self) -> None:
        """Empty the journal once every line is delivered (the caller holds drain.lock)."""
        with self._mu, self._flock("append.lock", None):
            if len(self._lines()) > self.acked():
                return  # a call came in meanwhile: keep it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.calls)
            self.ack(0)
            shutil.rmtree(self.blob_dir, ignore_errors=True)

    # -- artifact versions learnt while replaying --------------------------------------------------
    def versions(self) -> dict[str, str]:
        return read_json(os.path.join(self.dir, "versions.json")) or {}

    def learn_version(self, placeholder: str, version: str) -> None:
        v = self.versions()
        if v.get(placeholder) != version:
            v[placeholder] = version
            write_json_atomic(os.path.join(self.dir, "versions.json"), v)

    # -- local copies of snapshot files ------------------------------------------------------------
    def blob_path(self, sha: str) -> str:
        return os.path.join(self.blob_dir, sha)

    def keep_blob(self, src: str, sha: str) -> bool:
        """Copy ``src`` into the journal as ``blobs/<sha>`` unless it is there; False if the file
        no longer hashes to ``sha`` (it changed since it was hashed)."""
        import hashlib

        dst = self.blob_path(sha)
        if os.path.exists(dst):
            return True
        os.makedirs(self.blob_dir, exist_ok=True)
        tmp = f"{dst}.tmp.{os.getpid()}.{threading.get_ident()}"
        h = hashlib.sha256()
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(1 << 20):
                h.update(chunk)
                fo.write(chunk)
        if h.hexdigest() != sha:
            os.unlink(tmp)
            return False
        os.replace(tmp, dst)
        return True
