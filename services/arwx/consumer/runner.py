"""The consumer: log → decode → batch → screen → insert points → insert ledger → commit.

One task reads and decodes while a writer task stores the previous batch, so
at most two batches are in flight and they are stored strictly in log order.

Invariants:

- Only a message that cannot be decoded, or whose rows the store explicitly
  refuses (``StoreRejected``), is dead-lettered, and the dead letter keeps the
  whole original message so it can be replayed. Any other store error (an
  outage: full disk, read-only, unreachable; or one nobody classified) pauses
  the consumer, which retries the same batch (same dedup token) until the
  store takes it; the pause shows in ``/ready`` and ``arwx_consumer_paused``.
- An offset is committed only after its message is stored or dead-lettered.
- ``stop()`` first reads what the log already holds (the gateway has
  stopped accepting), stores and commits it. It is bounded: what cannot be
  stored within the grace period is left uncommitted in the log (replayed at the next start, collapsed by the
  store), never dropped.
- A task that dies calls ``on_fatal``: the process goes down loudly instead
  of acknowledging ingest that nothing consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from arwx import metrics
from arwx.consumer.batching import Batch
from arwx.consumer.commit import OffsetCommitter
from arwx.consumer.dead_letter import dead_letter
from arwx.consumer.first_wins import FirstWins, Screened
from arwx.log.base import LogMessage, LogReader
from arwx.store.base import Store, StoreRejected
from arwx.wire import decode_log_batch

log = logging.getLogger(__name__)


@dataclass
class ConsumerConfig:
    """Hand a batch to the writer when the writer is free and the log has
    nothing more to give right now (fresh data is stored at once when the
    server is idle), and while the writer is busy keep reading into the same
    batch (batches grow with the load: fewer, larger inserts and parts, so
    less merging), up to ``max_rows`` points, ``max_bytes`` of messages or
    ``max_wait_s``.

    200k rows: a 50k-row insert cost about 35 % more CPU per point, most of
    it in ClickHouse's background merges of the smaller parts (measured in
    docs/benchmarks.md section 1)."""

    max_rows: int = 200_000
    max_bytes: int = 16 << 20
    max_wait_s: float = 1.0
    idle_wait_s: float = 0.05
    read_messages: int = 500
    commit_interval_s: float = 1.0
    stop_grace_s: float = 10.0


class Consumer:
    """Moves points from a ``LogReader`` into a ``Store``."""

    def __init__(
        self,
        reader: LogReader,
        store: Store,
        config: ConsumerConfig | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.reader = reader
        self.store = store
        self.config = config or ConsumerConfig()
        self.committer = OffsetCommitter(reader, self.config.commit_interval_s)
        self.first_wins = FirstWins(store)
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        self._batch = Batch()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._idle = asyncio.Event()
        self._writing = False
        self._written = asyncio.Event()  # set each time the writer finishes a batch
        self._on_fatal = on_fatal
        #: Why the consumer is waiting for the store; None while writes flow.
        self.paused: str | None = None
        self.reader.set_revoke_hook(self._on_revoke)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="arwx-consumer-read"),
            asyncio.create_task(self._write_loop(), name="arwx-consumer-write"),
        ]
        for t in self._tasks:
            t.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        err = task.exception() or RuntimeError(f"{task.get_name()} returned while the consumer was running")
        log.critical("consumer task %s died: %r; the process must stop", task.get_name(), err, exc_info=err)
        if self._on_fatal is not None:
            self._on_fatal(err)

    async def stop(self) -> None:
        """Read what the log holds, store it, commit, stop: within ``stop_grace_s``.

        Past the grace period (the store is down) the tasks are cancelled; what
        they held is not committed, so the log replays it at the next start.
        """
        self._stopping.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=self.config.stop_grace_s)
        if late:
            log.warning(
                "consumer did not finish within %.0fs (%s); the rest stays uncommitted in the log",
                self.config.stop_grace_s,
                self.paused or "still writing",
            )
            for t in late:
                t.cancel()
            await asyncio.wait(late, timeout=5)
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("consumer task %s had failed: %r", t.get_name(), t.exception())
        self._tasks = []

    # -- reading ------------------------------------------------------------

    def _writer_free(self) -> bool:
        return self._queue.empty() and not self._writing

    async def _read_loop(self) -> None:
        cfg = self.config
        read_delay = 0.1
        try:
            while not self._stopping.is_set():
                batch = self._batch
                # Holding points: take only what is already there (no wait) so
                # they reach the writer at once when it is free.
                wait = 0.0 if len(batch) else min(cfg.max_wait_s, 0.5)
                try:
                    msgs = await self.reader.read(cfg.read_messages, wait)
                    read_delay = 0.1
                except Exception as e:  # the log is down: keep what we hold, retry
                    log.warning("log read failed (%s); retrying in %.1fs", e, read_delay)
                    await asyncio.sleep(read_delay)
                    read_delay = min(read_delay * 2, 5.0)
                    msgs = []
                for m in msgs:
                    await self._add(m)
                    if len(self._batch) >= cfg.max_rows or self._batch.nbytes >= cfg.max_bytes:
                        await self._flush()  # a backlog read in one go still makes bounded batches
                batch = self._batch
                # Fewer than asked for: the log had nothing more right now.
                caught_up = len(msgs) < cfg.read_messages
                if len(batch) and (
                    (caught_up and self._writer_free())
                    or len(batch) >= cfg.max_rows
                    or batch.nbytes >= cfg.max_bytes
                    or batch.age() >= cfg.max_wait_s
                ):
                    await self._flush()
                elif len(batch) and caught_up:
                    # The writer is busy: let what arrives meanwhile join this
                    # batch, and hand it over as soon as the writer is done.
                    self._written.clear()
                    if not self._writer_free():
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._written.wait(), cfg.idle_wait_s)
                elif not msgs and not len(batch) and batch.messages:
                    await self._flush()  # only dead letters: still move the position
                idle = not msgs and not len(self._batch) and self._queue.empty()
                self._idle.set() if idle else self._idle.clear()
            await self._read_rest()
        finally:
            if len(self._batch) or self._batch.ranges:
                await self._flush()
            await self._queue.put(None)

    async def _read_rest(self) -> None:
        """Stopping: read what the log already holds, so that what the gateway
        acknowledged before it stopped accepting is stored and committed now,
        not at the next start. Bounded by half the stop grace (a gateway in
        another process may still be appending): what is left stays in the
        log, uncommitted, and is replayed at the next start."""
        cfg = self.config
        deadline = time.monotonic() + cfg.stop_grace_s / 2
        while time.monotonic() < deadline:
            try:
                msgs = await self.reader.read(cfg.read_messages, 0.0)
            except Exception as e:  # the log is down: the rest waits for the next start
                log.warning("log read failed while stopping (%s); the rest stays in the log", e)
                return
            for m in msgs:
                await self._add(m)
                if len(self._batch) >= cfg.max_rows or self._batch.nbytes >= cfg.max_bytes:
                    await self._flush()
            if len(msgs) < cfg.read_messages:
                return

    async def _add(self, m: LogMessage) -> None:
        try:
            b = decode_log_batch(m.payload)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            await self._dead_letter(m, f"undecodable message: {e}")
            return
        self._batch.add(m, b)

    async def _dead_letter(self, m: LogMessage, reason: str) -> None:
        await self._until_stored(lambda: dead_letter(self.store, m, reason))
        metrics.DEAD_LETTERS.inc()
        tp = (m.topic, m.partition)
        first, _ = self._batch.ranges.get(tp, (m.offset, m.offset))
        self._batch.ranges[tp] = (first, m.offset)
        self._batch.messages += 1

    async def _flush(self) -> None:
        batch, self._batch = self._batch, Batch()
        await self._queue.put(batch)

    async def _on_revoke(self, partitions: list[tuple[str, int]]) -> None:
        """Before partitions move to another consumer: store and commit what we hold."""
        if not self._tasks:  # stopped: everything was stored and committed then
            return
        if len(self._batch) or self._batch.ranges:
            await self._flush()
        await self.drain()
        await self._commit(force=True)
        self.committer.forget(partitions)
        self.first_wins.forget()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every flushed batch has been stored."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() or self._writing:
            if time.monotonic() > deadline:
                raise TimeoutError("consumer did not drain in time")
            await asyncio.sleep(0.01)

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """For tests and shutdown: wait until the log is consumed and committed."""
        deadline = time.monotonic() + timeout_s
        while True:
            await asyncio.wait_for(self._idle.wait(), max(0.01, deadline - time.monotonic()))
            await self.drain(max(0.01, deadline - time.monotonic()))
            await self._commit(force=True)
            if self._idle.is_set():
                return

    # -- writing ------------------------------------------------------------

    async def _commit(self, force: bool = False) -> None:
        try:
            await self.committer.maybe_commit(force=force)
        except Exception as e:  # the log is down: the position is kept and committed later
            log.warning("offset commit failed (%s); will retry", e)

    async def _write_loop(self) -> None:
        while True:
            try:
                batch = await asyncio.wait_for(self._queue.get(), self.config.commit_interval_s)
            except asyncio.TimeoutError:
                # Quiet: the throttled commit of the last batches is due now.
                await self._commit()
                continue
            if batch is None:
                await self._commit(force=True)
                return
            self._writing = True
            try:
                if len(batch):
                    await self._store(batch)
                self.committer.stored(batch.positions())
                await self._commit()
            finally:
                self._writing = False
                self._written.set()

    async def _store(self, batch: Batch) -> None:
        t0 = time.perf_counter()
        try:
            written = await self._write(batch, int(time.time() * 1000))
        except StoreRejected as e:
            log.warning("batch of %d messages refused by the store (%s); writing them one by one", batch.messages, e)
            await self._store_one_by_one(batch)
            return
        metrics.CONSUMER_BATCH_ROWS.observe(written)
        metrics.CONSUMER_WRITE_SECONDS.observe(time.perf_counter() - t0)
        metrics.POINTS_STORED.inc(written)

    async def _write(self, batch: Batch, now_ms: int, tag: str = "") -> int:
        """Screen the batch (first value wins), then insert its points, its
        conflicts and its ledger rows; the points written. Raises only
        ``StoreRejected``.

        Re-sent seqs leave the batch once, before the first insert, so every
        retry inserts the very same rows under the same token."""
        screened = Screened()

        async def screen() -> None:
            nonlocal screened
            screened = await self.first_wins.screen(batch, now_ms)

        await self._until_stored(screen)
        points = batch.points_table(now_ms)
        ledger = batch.ledger_table(now_ms)
        if len(batch):
            await self._until_stored(lambda: self.store.insert("points", points, batch.token(f"pts{tag}")))
        if screened.conflicts:
            conflicts = screened.conflicts_table()
            await self._until_stored(lambda: self.store.insert("seq_conflicts", conflicts, batch.token(f"cfl{tag}")))
        await self._until_stored(lambda: self.store.insert("ledger", ledger, batch.token(f"led{tag}")))
        self.first_wins.stored(screened)
        if screened.conflicts:
            metrics.SEQ_CONFLICTS.inc(len(screened.conflicts))
        return len(batch)

    async def _store_one_by_one(self, batch: Batch) -> None:
        """Isolate the message the store refuses; the rest is written. The refused
        one is dead-lettered whole (its original bytes), so it can be replayed."""
        for m in batch.sources:
            one = Batch()
            one.add(m, decode_log_batch(m.payload))  # it decoded once already
            try:
                written = await self._write(one, int(time.time() * 1000), "1")
            except StoreRejected as e:
                reason = f"store refused message: {e}"
                await self._until_stored(lambda: dead_letter(self.store, m, reason))  # noqa: B023
                metrics.DEAD_LETTERS.inc()
                continue
            metrics.POINTS_STORED.inc(written)

    async def _until_stored(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` until the store takes it; raise only ``StoreRejected``.

        Every other error pauses: an outage (``StoreUnavailable``: disk full,
        read-only, unreachable) or an error nobody classified. Retrying never
        loses data; giving up would. Retries go on during shutdown too, until
        ``stop()`` cancels them past its grace period.
        """
        delay = 0.1
        while True:
            try:
                await fn()
            except StoreRejected:
                raise
            except Exception as e:  # noqa: BLE001 - anything else: pause, never drop
                reason = f"{type(e).__name__}: {e}"[:500]
                if self.paused is None:
                    log.error("the store cannot take writes (%s); the consumer pauses and retries", reason)
                    metrics.CONSUMER_PAUSED.set(1)
                self.paused = reason
                metrics.CONSUMER_STORE_RETRIES.inc()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            if self.paused is not None:
                log.warning("the store takes writes again; the consumer resumes")
                self.paused = None
                metrics.CONSUMER_PAUSED.set(0)
            return
