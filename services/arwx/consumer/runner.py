"""The consumer: log → decode → batch → insert points → insert ledger → commit.

One task reads and decodes while a writer task stores the previous batch, so
at most two batches are in flight and they are stored strictly in log order.
A message that cannot be decoded or written is dead-lettered; a store outage
is never dead-lettered: the writer waits and retries the same batch (same
dedup token) until the store is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import msgspec

from arwx import metrics
from arwx.consumer.batching import Batch
from arwx.consumer.commit import OffsetCommitter
from arwx.consumer.dead_letter import dead_letter
from arwx.log.base import LogMessage, LogReader
from arwx.store.base import Store, StoreUnavailable
from arwx.wire import decode_log_batch

log = logging.getLogger(__name__)


@dataclass
class ConsumerConfig:
    """Flush a batch at ``max_rows`` points, ``max_bytes`` of messages, or
    ``max_wait_s``; also as soon as the log has nothing more to give (fresh
    data is visible quickly at low rates, batches grow under load)."""

    max_rows: int = 50_000
    max_bytes: int = 16 << 20
    max_wait_s: float = 1.0
    idle_wait_s: float = 0.05
    read_messages: int = 500
    commit_interval_s: float = 1.0


class Consumer:
    """Moves points from a ``LogReader`` into a ``Store``."""

    def __init__(self, reader: LogReader, store: Store, config: ConsumerConfig | None = None) -> None:
        self.reader = reader
        self.store = store
        self.config = config or ConsumerConfig()
        self.committer = OffsetCommitter(reader, self.config.commit_interval_s)
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        self._batch = Batch()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._idle = asyncio.Event()
        self.reader.set_revoke_hook(self._on_revoke)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="arwx-consumer-read"),
            asyncio.create_task(self._write_loop(), name="arwx-consumer-write"),
        ]

    async def stop(self) -> None:
        """Flush what was read, store it, commit, stop."""
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []

    # -- reading ------------------------------------------------------------

    async def _read_loop(self) -> None:
        cfg = self.config
        read_delay = 0.1
        try:
            while not self._stopping.is_set():
                batch = self._batch
                wait = cfg.idle_wait_s if len(batch) else min(cfg.max_wait_s, 0.5)
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
                caught_up = not msgs
                if len(batch) and (
                    caught_up
                    or len(batch) >= cfg.max_rows
                    or batch.nbytes >= cfg.max_bytes
                    or batch.age() >= cfg.max_wait_s
                ):
                    await self._flush()
                elif caught_up and not len(batch) and batch.messages:
                    await self._flush()  # only dead letters: still move the position
                self._idle.set() if caught_up and self._queue.empty() else self._idle.clear()
        finally:
            if len(self._batch) or self._batch.ranges:
                await self._flush()
            await self._queue.put(None)

    async def _add(self, m: LogMessage) -> None:
        try:
            b = decode_log_batch(m.payload)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            await self._dead_letter(m, f"undecodable message: {e}")
            return
        self._batch.add(m, b)

    async def _dead_letter(self, m: LogMessage, reason: str) -> None:
        await _retry_outage(lambda: dead_letter(self.store, m, reason))
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

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every flushed batch has been stored."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() or getattr(self, "_writing", False):
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
        self._writing = False
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

    async def _store(self, batch: Batch) -> None:
        now_ms = int(time.time() * 1000)
        points = batch.points_table(now_ms)
        ledger = batch.ledger_table(now_ms)
        t0 = time.perf_counter()
        try:
            await _retry_outage(
                lambda: self.store.insert("points", points, batch.token("pts")), self.store
            )
            await _retry_outage(
                lambda: self.store.insert("ledger", ledger, batch.token("led")), self.store
            )
        except _BadData as e:
            log.warning("batch of %d messages failed to store (%s); writing them one by one", batch.messages, e)
            await self._store_one_by_one(batch)
            return
        metrics.CONSUMER_BATCH_ROWS.observe(len(batch))
        metrics.CONSUMER_WRITE_SECONDS.observe(time.perf_counter() - t0)
        metrics.POINTS_STORED.inc(len(batch))

    async def _store_one_by_one(self, batch: Batch) -> None:
        """Isolate the message that the store refuses; the rest is written."""
        # Rebuild per message from the batch columns.
        offsets = batch.log_offset
        i = 0
        n = len(offsets)
        while i < n:
            j = i
            while j < n and offsets[j] == offsets[i] and batch.log_partition[j] == batch.log_partition[i]:
                j += 1
            single = _slice(batch, i, j)
            now_ms = int(time.time() * 1000)
            try:
                await _retry_outage(
                    lambda s=single, t=now_ms: self.store.insert("points", s.points_table(t), s.token("pts1")),
                    self.store,
                )
                await _retry_outage(
                    lambda s=single, t=now_ms: self.store.insert("ledger", s.ledger_table(t), s.token("led1")),
                    self.store,
                )
            except _BadData as e:
                (tp, (off, _)), = single.ranges.items()
                await dead_letter(self.store, LogMessage(tp[0], tp[1], off, "", b""), f"store refused message: {e}")
                metrics.DEAD_LETTERS.inc()
            i = j


class _BadData(Exception):
    """The store is up but refuses this data."""


async def _retry_outage(fn, store: Store | None = None) -> None:  # noqa: ANN001
    """Run ``fn`` until it succeeds while the store is unreachable.

    An error while the store still answers a ping is bad data (``_BadData``),
    not an outage. Retries keep going during shutdown too: what was read must
    be stored before its offset may be committed.
    """
    delay = 0.1
    while True:
        try:
            await fn()
            return
        except StoreUnavailable as e:
            reason = str(e)
        except Exception as e:  # chDB raises one error type for everything
            if store is not None and await store.ping():
                raise _BadData(str(e)) from e
            reason = str(e)
        log.warning("store unavailable (%s); retrying in %.1fs", reason, delay)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 5.0)


def _slice(batch: Batch, i: int, j: int) -> Batch:
    out = Batch()
    for name in ("org", "run_id", "key", "writer_id", "seq", "step", "ts", "value", "log_partition", "log_offset"):
        setattr(out, name, getattr(batch, name)[i:j])
    tp = next(tp for tp in batch.ranges if tp[1] == batch.log_partition[i])
    off = batch.log_offset[i]
    out.ranges = {tp: (off, off)}
    out.ledger = [row for row in batch.ledger if row[8] == tp[1] and row[9] == off and row[7] == tp[0]]
    out.messages = 1
    return out
