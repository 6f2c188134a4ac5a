"""The embedded event log: SQLite (standard library) in WAL mode.

Invariant: an offset, once handed out, is never handed out again and every
new offset is above every offset ever appended or committed, across restarts
and trims. SQLite's ``INTEGER PRIMARY KEY`` alone reuses the highest rowid
once that row is deleted (a trim of everything consumed), which put new
messages below the committed position where the consumer never reads: the
writer therefore assigns offsets itself from a high-water mark kept in
``meta`` and moved in the same transaction as the rows.

Appends from concurrent requests are group-committed by one writer thread: a
request's messages are acknowledged only after the transaction holding them
has committed with ``synchronous=FULL``. The consumer group's position lives
in the same file, so a restart resumes exactly where the last commit left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from arwx.log.base import Appended, LogMessage, LogUnavailable, check_sizes

log = logging.getLogger(__name__)


class LogCorrupt(Exception):
    """The log file is damaged: the server must not start on it (or keep acknowledging into it)."""


def corrupt_message(path: str, detail: str) -> str:
    """What to tell the operator: the file, what is wrong, the ways out."""
    return (
        f"the embedded log {path} is corrupt ({detail}); arwx acknowledges nothing more into it. "
        f"Ways out: restore it from a backup; or salvage what it holds with "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered`, then stop arwx and replace the file "
        f"(and remove {path}-wal and {path}-shm); or move all three aside to start with a new log "
        f"(messages acknowledged but not yet stored are then lost; `arwx_consumer_lag_messages` said how many)."
    )


def _is_corruption(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    offset   INTEGER PRIMARY KEY,
    key      TEXT NOT NULL,
    payload  BLOB NOT NULL,
    appended REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS log_by_key ON log (key, offset);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    group_id    TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
"""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _Append:
    __slots__ = ("key", "payloads", "future", "loop")

    def __init__(self, key: str, payloads: list[bytes], future: asyncio.Future, loop) -> None:  # noqa: ANN001
        self.key = key
        self.payloads = payloads
        self.future = future
        self.loop = loop


class SqliteLog:
    """Both sides of the embedded log (``EventLog`` and ``LogReader``).

    ``max_pending_bytes`` bounds what waits for the writer thread; beyond it
    appends fail fast with ``LogUnavailable`` (the gateway answers 503).
    ``retention_s``: committed messages older than this are deleted.
    """

    def __init__(
        self,
        data_dir: str,
        group_id: str = "arwx-consumer",
        max_pending_bytes: int = 256 << 20,
        retention_s: float = 3600.0,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.path = str(Path(data_dir) / "log.sqlite3")
        self.group_id = group_id
        self.max_pending_bytes = max_pending_bytes
        self.retention_s = retention_s
        self.send_timeout_s = send_timeout_s
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._pending_bytes = 0
        self._pending_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._rlock = threading.Lock()  # the reader connection is used from worker threads
        self._read_pos: int | None = None
        self._new_data: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_trim = 0.0
        self._stopped = False
        self._next_offset = 1  # owned by the writer thread once started
        self._corrupt: str | None = None  # set when a read or write finds the file damaged
        # "embedded.<id>": a log file made anew (data wiped, store kept) is a
        # different topic, so its offsets never alias the old one's in the
        # ledger.
        self.topic = "embedded"

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._new_data = asyncio.Event()
        try:
            conn = _connect(self.path)
            (verdict,) = conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                conn.close()
                raise LogCorrupt(corrupt_message(self.path, verdict))
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise LogCorrupt(corrupt_message(self.path, str(e))) from e
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('log_id', ?)", (secrets.token_hex(4),))
        (log_id,) = conn.execute("SELECT value FROM meta WHERE name = 'log_id'").fetchone()
        self.topic = f"embedded.{log_id}"
        self._next_offset = _high_water(conn)
        self._reader_conn = conn
        self._writer = threading.Thread(target=self._write_loop, name="arwx-log-writer", daemon=True)
        self._writer.start()

    async def stop(self) -> None:
        if self._writer is None or self._stopped:
            return
        self._stopped = True
        self._queue.put(None)
        await asyncio.to_thread(self._writer.join, 30)
        if self._reader_conn is not None:
            self._reader_conn.close()

    # -- producer side ----------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of appends waiting for the writer thread (a metrics hook)."""
        return self._pending_bytes

    async def append(self, key: str, payloads: list[bytes]) -> list[Appended]:
        if self._stopped or self._writer is None:
            raise LogUnavailable("the log is shutting down")
        if self._corrupt is not None:
            # Never acknowledge what the consumer cannot read back.
            raise LogUnavailable(f"the embedded log is corrupt: {self._corrupt}")
        check_sizes(payloads)
        size = sum(len(p) for p in payloads)
        with self._pending_lock:
            if self._pending_bytes + size > self.max_pending_bytes and self._pending_bytes > 0:
                raise LogUnavailable("log append queue is full")
            self._pending_bytes += size
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Append(key, payloads, fut, loop))
        try:
            # A commit that takes this long (a stalled disk) answers 503; if it
            # lands later anyway, the client's retry collapses in the store.
            return await asyncio.wait_for(asyncio.shield(fut), self.send_timeout_s)
        except asyncio.TimeoutError:
            raise LogUnavailable(f"log append not durable within {self.send_timeout_s}s") from None
        finally:
            with self._pending_lock:
                self._pending_bytes -= size

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                # Group commit: take everything queued meanwhile into one transaction.
                while True:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
                self._commit_batch(conn, batch)
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Append]) -> None:
        now = time.time()
        results: list[list[Appended]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read the mark under the write lock: another writer on the same file (a
            # second process on one data dir, in-process test servers) may have appended.
            offset = max(self._next_offset, _high_water(conn))
            for a in batch:
                out = []
                for p in a.payloads:
                    conn.execute(
                        "INSERT INTO log (offset, key, payload, appended) VALUES (?, ?, ?, ?)", (offset, a.key, p, now)
                    )
                    out.append(Appended(self.topic, 0, offset))
                    offset += 1
                results.append(out)
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('next_offset', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(offset),),
            )
            conn.execute("COMMIT")
            self._next_offset = offset
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._note_corruption(e)
            log.warning("embedded log append failed: %s", e)
            err = LogUnavailable(f"log append failed: {e}")
            for a in batch:
                a.loop.call_soon_threadsafe(_set_exception, a.future, err)
            return
        for a, res in zip(batch, results):
            a.loop.call_soon_threadsafe(_set_result, a.future, res)
        if self._loop is not None and self._new_data is not None:
            self._loop.call_soon_threadsafe(self._new_data.set)

    def _note_corruption(self, e: sqlite3.Error) -> None:
        if _is_corruption(e) and self._corrupt is None:
            self._corrupt = str(e)
            log.critical(corrupt_message(self.path, str(e)))

    async def end_offsets(self, key: str) -> dict[tuple[str, int], int]:
        if self._corrupt is not None:
            raise LogCorrupt(f"the embedded log {self.path} is corrupt: {self._corrupt}")

        def q() -> int:
            with self._rlock:
                (n,) = self._reader_conn.execute("SELECT max(offset) FROM log WHERE key = ?", (key,)).fetchone()
            return -1 if n is None else n

        return {(self.topic, 0): await asyncio.to_thread(q) + 1}

    async def pending(
        self,
        key: str,
        stored: dict[tuple[str, int], int] | None = None,
        before: dict[tuple[str, int], int] | None = None,
    ) -> int:
        if self._corrupt is not None:
            raise LogCorrupt(f"the embedded log {self.path} is corrupt: {self._corrupt}")
        after_stored = (stored or {}).get((self.topic, 0), -1) + 1
        below = (before or {}).get((self.topic, 0), 2**63 - 1)

        def q() -> int:
            with self._rlock:
                (n,) = self._reader_conn.execute(
                    "SELECT count(*) FROM log WHERE key = ? AND offset >= ? AND offset < ?",
                    (key, max(self._committed(), after_stored), below),
                ).fetchone()
            return n

        return await asyncio.to_thread(q)

    def _committed(self) -> int:
        row = self._reader_conn.execute(
            "SELECT next_offset FROM consumer_offsets WHERE group_id = ?", (self.group_id,)
        ).fetchone()
        return row[0] if row else 0

    # -- consumer side ----------------------------------------------------

    def set_revoke_hook(self, hook) -> None:  # noqa: ANN001
        """One consumer owns the embedded log: nothing is ever revoked."""

    async def read(self, max_messages: int, timeout_s: float) -> list[LogMessage]:
        assert self._new_data is not None
        deadline = time.monotonic() + timeout_s
        while True:
            self._new_data.clear()
            msgs = await asyncio.to_thread(self._read_some, max_messages)
            if msgs:
                return msgs
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            try:
                await asyncio.wait_for(self._new_data.wait(), left)
            except asyncio.TimeoutError:
                return []

    def _read_some(self, max_messages: int) -> list[LogMessage]:
        with self._rlock:
            if self._read_pos is None:
                self._read_pos = self._committed()
            try:
                rows = self._reader_conn.execute(
                    "SELECT offset, key, payload FROM log WHERE offset >= ? ORDER BY offset LIMIT ?",
                    (self._read_pos, max_messages),
                ).fetchall()
            except sqlite3.DatabaseError as e:
                self._note_corruption(e)
                raise
            if any(type(k) is not str or type(p) is not bytes for _, k, p in rows):
                # NOT NULL columns read back NULL or as another type: damaged pages that
                # SQLite's structure checks let through.
                e = sqlite3.DatabaseError("database disk image is malformed (a message read back without its bytes)")
                self._note_corruption(e)
                raise e
        if rows:
            self._read_pos = rows[-1][0] + 1
        return [LogMessage(self.topic, 0, off, key, bytes(payload)) for off, key, payload in rows]

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        nxt = positions.get((self.topic, 0))
        if nxt is None:
            return
        await asyncio.to_thread(self._commit, nxt)

    def _commit(self, next_offset: int) -> None:
        with self._rlock:
            self._commit_locked(next_offset)

    def _commit_locked(self, next_offset: int) -> None:
        conn = self._reader_conn
        conn.execute(
            "INSERT INTO consumer_offsets (group_id, next_offset) VALUES (?, ?) "
            "ON CONFLICT (group_id) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
            (self.group_id, next_offset),
        )
        now = time.time()
        if now - self._last_trim > 60:
            self._last_trim = now
            # Consumed and old: the store has it and the ledger records it.
            conn.execute(
                "DELETE FROM log WHERE offset < ? AND appended < ?", (next_offset, now - self.retention_s)
            )

    # -- start-up checks (arwx.datadir) ---------------------------------------

    def meta(self, name: str) -> str | None:
        """A value of the log's ``meta`` table."""
        with self._rlock:
            row = self._reader_conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._rlock:
            self._reader_conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def held(self) -> tuple[int, int, int, int]:
        """(messages held, lowest offset, highest offset, committed position) of the group."""
        with self._rlock:
            n, lo, hi = self._reader_conn.execute("SELECT count(*), min(offset), max(offset) FROM log").fetchone()
            return n, lo or 0, hi or 0, self._committed()

    def rewind(self) -> None:
        """Consume again from the oldest message held (a store rebuilt from the log)."""
        with self._rlock:
            # The high-water mark first: offsets must stay above the position being forgotten.
            self._reader_conn.execute(
                "INSERT INTO meta (name, value) VALUES ('next_offset', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(self._next_offset),),
            )
            self._reader_conn.execute("DELETE FROM consumer_offsets WHERE group_id = ?", (self.group_id,))
            self._read_pos = None

    async def partition_lag(self) -> dict[tuple[str, int], int]:
        """The one partition's ``lag()``."""
        return {(self.topic, 0): await self.lag()}

    async def lag(self) -> int:
        """Messages appended but not yet committed (all keys)."""

        def q() -> int:
            with self._rlock:
                (n,) = self._reader_conn.execute(
                    "SELECT count(*) FROM log WHERE offset >= ?", (self._committed(),)
                ).fetchone()
            return n

        return await asyncio.to_thread(q)


def _high_water(conn: sqlite3.Connection) -> int:
    """The next offset to hand out: above every offset ever appended (the
    ``meta`` mark, the rows still held) and every position ever committed."""
    (mark,) = conn.execute("SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM meta WHERE name = 'next_offset'").fetchone()
    (top,) = conn.execute("SELECT coalesce(max(offset), 0) + 1 FROM log").fetchone()
    (committed,) = conn.execute("SELECT coalesce(max(next_offset), 0) FROM consumer_offsets").fetchone()
    return max(mark, top, committed, 1)


def _set_result(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
