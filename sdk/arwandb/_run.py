"""The Run: a memory-only ``log()`` hot path, a spooler thread and an uploader thread."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from arwandb.columns import RecentColumns
from arwandb.config import Settings
from arwandb.encode import PointEncoder
from arwandb.resume import ATTEMPT_HEADER, ResumeError, current_attempt, fork_run, resume_run, rewind_run
from arwandb.spool import SpoolBusy, WriterSpool, write_json_atomic
from arwandb.system_metrics import SystemMetricsThread
from arwandb.uploader import HttpTransport, Transport, Uploader

logger = logging.getLogger("arwandb")
_now = time.time
_FINISH_STATUSES = {"finished", "failed", "crashed", "killed"}


class _Writer:
    """One (run, writer) stream: the in-memory queue the caller appends to, and its spool."""

    def __init__(self, settings: Settings, writer_id: str) -> None:
        self.spool = WriterSpool(settings.run_dir, writer_id)
        self.writer_id = writer_id
        # deque.append / popleft are atomic under the GIL: the caller never takes a lock
        self.queue: collections.deque[tuple[int, float, Any]] = collections.deque()
        self.encoder = PointEncoder(settings.run_id, writer_id)
        self.recent = RecentColumns()  # what the uploader sends without reading the spool back
        self.step = self.spool.last_step + 1  # a resumed spool continues its step axis

    def drain(self) -> int:
        """Move everything queued to the spool (spooler thread). Returns points written."""
        q = self.queue
        n = len(q)
        if not n:
            return 0
        rows = [q.popleft() for _ in range(n)]
        data, count, last_step, cols = self.encoder.encode(rows, self.spool.next_seq)
        self.spool.append(data, count)
        self.recent.add(cols)  # after the append: the uploader may send only what the spool holds
        if last_step >= 0:
            self.spool.last_step = last_step
        return count


class Run:
    """A live run. Create it with :func:`arwandb.init`; all methods are safe to call from training code."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        """``transport``: how to reach the server (default: HTTP to ``settings.base_url``); tests pass
        an in-memory one."""
        self.settings = settings
        self.id: str = settings.run_id
        self.project = settings.project
        self.name = settings.name or settings.run_id
        self.config: dict[str, Any] = settings.config
        self.mode = settings.mode
        self.attempt: int | None = None
        self.dir = settings.run_dir
        self._finished = False
        self._pid = os.getpid()
        self._finish_lock = threading.Lock()
        self._writers: list[_Writer] = []
        self._sys: _Writer | None = None
        self._spooler: threading.Thread | None = None
        self._upload_thread: threading.Thread | None = None
        self._sys_thread: SystemMetricsThread | None = None
        self.uploader: Uploader | None = None
        self._closing = threading.Event()
        self._kick = threading.Event()
        self._step = 0
        if self.mode == "disabled":
            self.writer_id = settings.writer_id
            self._q = collections.deque(maxlen=0)  # log() stays valid and keeps nothing
            return
        branched = settings.rewind_step is not None or settings.fork_from is not None
        if self.mode == "online":
            transport = transport or HttpTransport(settings.base_url, settings.api_key, settings.request_timeout)
            try:
                self._open_attempt(transport)
            except BaseException:
                transport.close()
                raise
        elif branched:
            raise ResumeError("arwandb: resume_from/rewind_to/fork_from need the server; they are not available offline")
        self.dir = settings.run_dir  # the attempt's own spool (seqs count from 0 in each attempt)
        os.makedirs(self.dir, exist_ok=True)
        main = self._open_writer(settings.writer_id)
        self.writer_id = main.writer_id
        self._main = main
        self._q = main.queue  # bound once: the hot path is one attribute load and one append
        self._writers.append(main)
        if settings.system_metrics:
            with contextlib.suppress(Exception):
                self._sys = self._open_writer(self.writer_id + ".sys")
                self._writers.append(self._sys)
        start = settings.rewind_step if settings.rewind_step is not None else settings.fork_step
        if start is not None:
            for w in self._writers:  # the new attempt's step axis continues at the step it starts from
                w.step = max(w.step, start)
        self._step = main.step
        meta = {
            "id": self.id,
            "project": self.project,
            "name": settings.name,
            "config": self.config,
            "writer_ids": [w.writer_id for w in self._writers],
        }
        write_json_atomic(
            os.path.join(self.dir, "run.json"), {**meta, "base_url": settings.base_url, "attempt": self.attempt}
        )
        resumed = branched and self.mode == "online"  # the server made or re-opened the run already
        if settings.resume is not None and not resumed:
            if self.mode != "online":
                logger.warning("arwandb: resume=%r needs the server; offline, the local spool is continued", settings.resume)
            else:
                try:
                    self._resume(transport, meta)
                except BaseException:
                    for w in self._writers:
                        w.spool.close()
                    transport.close()
                    raise
                resumed = True
        self._spooler = threading.Thread(target=self._spool_loop, name="arwandb-spooler", daemon=True)
        self._spooler.start()
        if self.mode == "online":
            self.uploader = Uploader(
                transport,
                meta,
                [w.spool for w in self._writers],
                batch_size=settings.batch_size,
                stream_threshold=settings.stream_threshold,
                flush_interval=settings.flush_interval,
                heartbeat_interval=settings.heartbeat_interval,
                recent={w.writer_id: w.recent for w in self._writers},
            )
            self.uploader.run_created = resumed  # resume_run created or re-opened it
            self._upload_thread = threading.Thread(
                target=self._upload_loop, name="arwandb-uploader", daemon=True
            )
            self._upload_thread.start()
        if self._sys is not None:
            self._sys_thread = SystemMetricsThread(self._log_system, settings.system_interval, self.dir)
            self._sys_thread.start()

    def _planned_writers(self) -> list[str]:
        ids = [self.settings.writer_id]
        return ids + [ids[0] + ".sys"] if self.settings.system_metrics else ids

    def _open_attempt(self, transport: Transport) -> None:
        """Before any spool is opened, learn (or make) the attempt this process writes:
        fork (a new run), rewind (a new attempt, or the one another rank of this restart
        opened), or resume (the current one). Every later request names it."""
        st = self.settings
        if st.fork_from is not None:
            meta = {"id": st.run_id, "project": st.project, "name": st.name, "config": self.config,
                    "writer_ids": self._planned_writers()}
            got = fork_run(transport, st.fork_from, int(st.fork_step or 0), meta, st.resume_timeout)
            self.project = got.get("project", self.project)
            st.attempt = int(got.get("attempt") or 0)
        elif st.rewind_step is not None:
            st.attempt = rewind_run(transport, st.run_id, st.rewind_step, self._planned_writers(), st.resume_timeout)
        elif st.resume is not None:
            # No run yet: whoever creates it makes attempt 0, and no rewind can come before that.
            st.attempt = current_attempt(transport, st.run_id, st.resume_timeout) or 0
        self.attempt = st.attempt
        headers = getattr(transport, "headers", None)
        if st.attempt is not None and isinstance(headers, dict):
            headers[ATTEMPT_HEADER] = str(st.attempt)

    def _resume(self, transport: Transport, meta: dict[str, Any]) -> None:
        """Continue each writer's seq range and step axis from where the server says it ended
        (``resume.py``); raises ``ResumeError`` when the run may not be resumed."""
        positions = resume_run(
            transport, meta, [w.writer_id for w in self._writers], self.settings.resume, self.settings.resume_timeout
        )
        for w in self._writers:
            pos = positions.get(w.writer_id)
            if pos is None:
                continue
            w.spool.resume_at(int(pos["next_seq"]))
            if pos.get("last_step") is not None:
                w.step = max(w.step, int(pos["last_step"]) + 1)
        self._step = self._main.step

    def _open_writer(self, writer_id: str) -> _Writer:
        try:
            w = _Writer(self.settings, writer_id)
        except SpoolBusy:
            # two live processes must not share a writer id (their seqs would collide)
            new = f"{writer_id}-{secrets.token_hex(3)}"
            logger.warning(
                "arwandb: writer id %r is in use by another process here; using %r", writer_id, new
            )
            w = _Writer(self.settings, new)
        w.spool.clear_finish()  # a resumed writer is live again
        return w

    # -- hot path --------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Record ``data`` (a flat or nested dict of name -> number) at ``step``.

        Memory-only: no network, no disk, no lock. Without ``step`` the run's step goes up by one
        per call; ``commit=False`` keeps the step for the next call (W&B's way to build one row).
        NaN/inf/non-numeric values are skipped (counted in :attr:`skipped`), never raised.
        """
        if step is None:
            step = self._step
        elif type(step) is not int or step < 0:
            step = self._coerce_step(step)
        self._step = step if commit is False else step + 1
        if self._finished:
            return
        try:
            self._q.append((step, _now(), dict(data)))
        except Exception:  # noqa: BLE001 - a bad argument must not crash training
            logger.warning("arwandb: log() takes a dict of name -> number, got %s", type(data).__name__)

    def _coerce_step(self, step: Any) -> int:
        try:
            s = int(step)
            if s >= 0:
                return s
        except (TypeError, ValueError):
            pass
        logger.warning("arwandb: step %r is not a non-negative integer; using step %d", step, self._step)
        return self._step

    def _log_system(self, sample: dict[str, float]) -> None:
        w = self._sys
        if w is not None and not self._finished:
            w.queue.append((w.step, _now(), sample))
            w.step += 1

    @property
    def skipped(self) -> int:
        """Values skipped so far as NaN/inf/non-numeric (counted once the spooler has seen them)."""
        return self._main.encoder.skipped if self._writers else 0

    @property
    def step(self) -> int:
        """The step the next ``log()`` without a step will use."""
        return self._step

    # -- background threads ----------------------------------------------------------------------
    def _spool_loop(self) -> None:
        interval = self.settings.spool_interval
        while True:
            closing = self._closing.is_set()
            for w in self._writers:
                try:
                    spooled = w.drain()
                except Exception:  # noqa: BLE001 - e.g. disk full: keep the rows queued, retry later
                    logger.warning("arwandb: writing the spool failed; retrying", exc_info=True)
                    closing = False
                    spooled = 0
                if spooled and self.uploader is not None:
                    self.uploader.wake.set()  # it decides whether they go now (uploader.Uploader._due)
            if closing and not any(w.queue for w in self._writers):
                return
            self._kick.wait(interval)
            self._kick.clear()

    def _upload_loop(self) -> None:
        up = self.uploader
        assert up is not None
        idle_wait = min(0.5, max(0.02, self.settings.flush_interval / 2))
        try:
            # Live: send each writer's points when due (Uploader._due), woken by the spooler when
            # points come, until finish() asks for the drain.
            while not up.abort.is_set() and not up.draining:
                if not up.step():
                    up.wake.wait(up.wait_time(1.0))
                    up.wake.clear()
            if up.abort.is_set() or up.deadline is None:
                return
            # The spooler's last rows may still be coming; the run is created even with no points;
            # time is kept to tell the server the totals.
            up.drain(
                up.deadline,
                reserve=self._finish_reserve,
                more=lambda: bool(self._spooler and self._spooler.is_alive()) or not up.run_created,
                idle_wait=idle_wait,
            )
            if up.abort.is_set():
                return
            totals = {w.writer_id: w.spool.next_seq for w in self._writers}
            if up.finish_run(self._finish_status, totals):
                for w in self._writers:
                    w.spool.write_finish(self._finish_status, sent=True)
        except Exception:  # noqa: BLE001 - never propagate into the interpreter
            logger.warning("arwandb: uploader stopped", exc_info=True)
        finally:
            up.close()

    _finish_status = "finished"
    _finish_reserve = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def finish(self, status: str = "finished", timeout: float | None = None) -> None:
        """Flush and close the run, waiting at most ``timeout`` (default ``finish_timeout``) seconds.

        What is not uploaded by then stays in the spool for ``arwandb sync``. Tells the server how many
        points each writer sent so the integrity receipt can compare sent, committed and stored.
        """
        with self._finish_lock:
            if self._finished or os.getpid() != self._pid:
                return
            self._finished = True
        if status not in _FINISH_STATUSES:
            status = "finished"
        if self.mode == "disabled":
            return
        limit = self.settings.finish_timeout if timeout is None else max(0.0, float(timeout))
        deadline = time.monotonic() + limit
        if self._sys_thread is not None:
            self._sys_thread.stop()
        self._closing.set()
        self._kick.set()
        if self._spooler is not None:
            self._spooler.join(max(0.1, deadline - time.monotonic()))
        for w in self._writers:
            with contextlib.suppress(OSError):
                w.spool.write_finish(status, sent=False)  # sync sends it if we cannot
        up, th = self.uploader, self._upload_thread
        if up is not None and th is not None:
            self._finish_status = status
            self._finish_reserve = min(2.0, 0.1 * limit)  # keep time to tell the server the totals
            up.start_draining(deadline)
            th.join(max(0.0, deadline - time.monotonic()) + 0.5)
            if th.is_alive():
                up.abort.set()
                th.join(1.0)
            if up.pending():
                logger.warning(
                    "arwandb: %d point(s) of run %s not uploaded yet; they are in %s (run `arwandb sync`)",
                    up.pending(),
                    self.id,
                    self.dir,
                )
        if self._upload_thread is None or not self._upload_thread.is_alive():
            for w in self._writers:
                w.spool.close()

    def sync(self, path: str | None = None) -> dict[str, Any]:
        """Upload spools under ``path`` (default: this run's spool root). See :func:`arwandb.sync`."""
        from arwandb._sync import sync as _sync

        return _sync(
            path or self.settings.root, base_url=self.settings.base_url, api_key=self.settings.api_key
        )

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish("failed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"<arwandb.Run id={self.id!r} writer_id={self.writer_id!r} mode={self.mode!r}>"
