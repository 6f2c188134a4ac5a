"""The distributed event log: Apache Kafka through aiokafka.

``KafkaLog`` is the gateway's producer side: idempotent, ``acks=all``, one
message per validated request chunk, keyed by run id so a run's messages stay
in one partition, in order. ``KafkaLogReader`` is the consumer side: manual
commits after the store has a batch, and a revoke hook so the consumer can
flush and commit before its partitions move to another member.

aiokafka has no ``max.block.ms``/``buffer.memory``; every Kafka await here is
bounded with a timeout instead, and a timeout surfaces as ``LogUnavailable``
(the gateway answers 503 with ``Retry-After``; the client retries; the store
deduplicates whatever the retry duplicates).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.codec import has_lz4
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.partitioner import murmur2

from arwx.log.base import (
    MAX_MESSAGE_BYTES,
    Appended,
    LogMessage,
    LogUnavailable,
    MessageTooLarge,
    check_sizes,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
# Bound on Kafka calls that have no natural deadline of their own (admin,
# commit, start/stop).
CALL_TIMEOUT_S = 30.0
# How long a revoke hook may hold up a rebalance (flush + commit).
REVOKE_HOOK_TIMEOUT_S = 20.0

RevokeHook = Callable[[list[tuple[str, int]]], Awaitable[None]]


async def _bounded(aw: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``aw`` for at most ``timeout_s``; timeouts and Kafka errors become ``LogUnavailable``."""
    try:
        return await asyncio.wait_for(aw, timeout_s)
    except asyncio.TimeoutError as e:
        raise LogUnavailable(f"kafka: {what} timed out after {timeout_s:g}s") from e
    except KafkaError as e:
        raise LogUnavailable(f"kafka: {what} failed: {e!r}") from e


def _drop_result(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def partition_for_key(key: str, num_partitions: int) -> int:
    """The partition aiokafka's ``DefaultPartitioner`` picks for ``key`` (Java-compatible murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % num_partitions


async def ensure_topic(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, replication_factor: int
) -> None:
    """Create ``topic`` unless it exists (an existing topic is left as it is)."""
    resp = await admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=partitions,
                replication_factor=replication_factor,
                # Room for the largest message plus batch overhead.
                topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES + MiB)},
            )
        ]
    )
    for err in resp.topic_errors:
        code = err[1]
        if code and code != TopicAlreadyExistsError.errno:
            raise for_code(code)(f"creating topic {err[0]!r}: {err[2] if len(err) > 2 else ''}")


class KafkaLog:
    """Producer side of the Kafka event log (``EventLog``)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = "arwx.points",
        partitions: int = 12,
        send_timeout_s: float = 10.0,
        replication_factor: int = 1,
        group_id: str = "arwx-consumer",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.send_timeout_s = send_timeout_s
        self.replication_factor = replication_factor
        self.group_id = group_id
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets_consumer: AIOKafkaConsumer | None = None  # lazily, for pending()
        self._offsets_lock = asyncio.Lock()
        self._num_partitions: int | None = None
        self._coordinator: int | None = None

    async def start(self) -> None:
        """Create the topic if missing and start the producer. Raises ``LogUnavailable``."""
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=20000)
        await _bounded(self._admin.start(), CALL_TIMEOUT_S, "admin start")
        await _bounded(
            ensure_topic(self._admin, self.topic, self.partitions, self.replication_factor),
            CALL_TIMEOUT_S,
            f"create topic {self.topic}",
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,  # implies acks="all"
            acks="all",
            # aiokafka's lz4 needs cramjam (aiokafka[lz4]); the lz4 module alone is not used.
            compression_type="lz4" if has_lz4() else None,
            linger_ms=5,
            max_batch_size=MiB,
            max_request_size=MAX_MESSAGE_BYTES + MiB,  # the payload limit is checked before sending
            request_timeout_ms=30000,
        )
        await _bounded(self._producer.start(), CALL_TIMEOUT_S, "producer start")
        parts = await _bounded(self._producer.partitions_for(self.topic), CALL_TIMEOUT_S, "topic metadata")
        self._num_partitions = len(parts)

    async def stop(self) -> None:
        """Flush what can be flushed (bounded) and close all clients."""
        for client in (self._producer, self._offsets_consumer, self._admin):
            if client is None:
                continue
            try:
                await asyncio.wait_for(
                    client.stop() if hasattr(client, "stop") else client.close(), CALL_TIMEOUT_S
                )
            except Exception:  # noqa: BLE001 - shutting down; nothing better to do
                log.warning("kafka: error stopping %s", type(client).__name__, exc_info=True)
        self._producer = self._offsets_consumer = self._admin = None

    async def append(self, key: str, payloads: list[bytes]) -> list[Appended]:
        """Send ``payloads`` keyed by ``key`` (one partition, in order) and wait for ``acks=all``.

        Bounded by ``send_timeout_s`` in total. Raises ``LogUnavailable`` on
        timeout or Kafka error (messages may still land later: the client's
        retry is deduplicated downstream), ``MessageTooLarge`` for a payload
        over ``MAX_MESSAGE_BYTES`` (before sending any). With the idempotent producer
        Kafka may, rarely, report ``offset == -1`` (a duplicate it dropped).
        """
        if self._producer is None:
            raise LogUnavailable("kafka: log not started")
        if not payloads:
            return []
        check_sizes(payloads)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout_s
        key_bytes = key.encode()
        futures: list[asyncio.Future] = []
        try:
            for payload in payloads:
                # send() may wait for metadata or accumulator space; cancelling it is safe.
                fut = await asyncio.wait_for(
                    self._producer.send(self.topic, payload, key=key_bytes),
                    max(deadline - loop.time(), 0.001),
                )
                futures.append(fut)
            # asyncio.wait, not wait_for: do not cancel the delivery futures on timeout.
            _, not_done = await asyncio.wait(futures, timeout=max(deadline - loop.time(), 0.001))
            if not_done:
                # They may still complete later; retrieve their outcome so asyncio does
                # not warn about exceptions that were never retrieved.
                for f in not_done:
                    f.add_done_callback(_drop_result)
                raise asyncio.TimeoutError
            metas = [f.result() for f in futures]
        except MessageSizeTooLargeError as e:
            raise MessageTooLarge(f"kafka: message too large: {e}") from e
        except asyncio.TimeoutError as e:
            raise LogUnavailable(f"kafka: append not acknowledged within {self.send_timeout_s:g}s") from e
        except KafkaError as e:
            raise LogUnavailable(f"kafka: append failed: {e!r}") from e
        return [Appended(m.topic, m.partition, m.offset) for m in metas]

    async def end_offsets(self, key: str) -> dict[tuple[str, int], int]:
        """The end offset of the partition ``key`` hashes to."""
        if self._admin is None or self._num_partitions is None:
            raise LogUnavailable("kafka: log not started")
        tp = TopicPartition(self.topic, partition_for_key(key, self._num_partitions))
        consumer = await self._get_offsets_consumer()
        return {(tp.topic, tp.partition): (await _bounded(consumer.end_offsets([tp]), CALL_TIMEOUT_S, "end offsets"))[tp]}

    async def pending(
        self,
        key: str,
        stored: dict[tuple[str, int], int] | None = None,
        before: dict[tuple[str, int], int] | None = None,
    ) -> int:
        """Lag of the consumer group on the partition ``key`` hashes to (an upper
        bound for the key), counted from past ``stored`` where that is further,
        up to ``before`` where given."""
        if self._admin is None or self._num_partitions is None:
            raise LogUnavailable("kafka: log not started")
        tp = TopicPartition(self.topic, partition_for_key(key, self._num_partitions))
        consumer = await self._get_offsets_consumer()
        end = (await _bounded(consumer.end_offsets([tp]), CALL_TIMEOUT_S, "end offsets"))[tp]
        end = min(end, (before or {}).get((tp.topic, tp.partition), end))
        committed = await self._committed(tp)
        if committed < 0:
            # Nothing committed: the group starts at the earliest retained offset.
            committed = (
                await _bounded(consumer.beginning_offsets([tp]), CALL_TIMEOUT_S, "beginning offsets")
            )[tp]
        after_stored = (stored or {}).get((tp.topic, tp.partition), -1) + 1
        return max(end - max(committed, after_stored), 0)

    async def _committed(self, tp: TopicPartition, retry: bool = True) -> int:
        """The group's committed offset for ``tp``, -1 if none."""
        assert self._admin is not None
        if self._coordinator is None:
            self._coordinator = await _bounded(
                self._admin.find_coordinator(self.group_id), CALL_TIMEOUT_S, "find coordinator"
            )
        try:
            offsets = await _bounded(
                self._admin.list_consumer_group_offsets(self.group_id, self._coordinator, [tp]),
                CALL_TIMEOUT_S,
                "committed offsets",
            )
        except LogUnavailable:
            self._coordinator = None  # the coordinator may have moved: look it up again, once
            if not retry:
                raise
            return await self._committed(tp, retry=False)
        meta = offsets.get(tp)
        return -1 if meta is None else meta.offset

    async def _get_offsets_consumer(self) -> AIOKafkaConsumer:
        async with self._offsets_lock:
            if self._offsets_consumer is None:
                # No group: it only asks for offsets, it never joins or commits.
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
                )
                await _bounded(consumer.start(), CALL_TIMEOUT_S, "offsets consumer start")
                self._offsets_consumer = consumer
            return self._offsets_consumer


class _RevokeListener(ConsumerRebalanceListener):
    def __init__(self, reader: KafkaLogReader) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        hook = self._reader._revoke_hook
        if hook is None or not revoked:
            return
        parts = sorted((tp.topic, tp.partition) for tp in revoked)
        try:
            # Bounded: a stuck hook must not stall the whole group's rebalance.
            await asyncio.wait_for(hook(parts), REVOKE_HOOK_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - replay covers what the hook failed to commit
            log.warning("kafka: revoke hook failed for %s", parts, exc_info=True)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("kafka: assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


class KafkaLogReader:
    """Consumer side of the Kafka event log (``LogReader``): manual commits, at-least-once."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = "arwx.points",
        group_id: str = "arwx-consumer",
        max_poll_records: int = 2000,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.max_poll_records = max_poll_records
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._revoke_hook: RevokeHook | None = None

    def set_revoke_hook(self, hook: RevokeHook | None) -> None:
        """``await hook([(topic, partition), ...])`` runs before partitions are taken away
        (bounded to 20 s), so the consumer can flush and ``commit()`` what it holds."""
        self._revoke_hook = hook

    async def start(self) -> None:
        """Connect and subscribe. Raises ``LogUnavailable``."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_poll_records,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
        )
        await _bounded(self._consumer.start(), CALL_TIMEOUT_S, "consumer start")
        self._consumer.subscribe([self.topic], listener=_RevokeListener(self))

    async def stop(self) -> None:
        """Leave the group (the revoke hook runs) and close."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), CALL_TIMEOUT_S + REVOKE_HOOK_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - shutting down
                log.warning("kafka: error stopping consumer", exc_info=True)

    async def read(self, max_messages: int, timeout_s: float) -> list[LogMessage]:
        """Up to ``max_messages`` messages, each partition's in offset order; ``[]`` after ``timeout_s``."""
        if self._consumer is None:
            raise LogUnavailable("kafka: reader not started")
        # getmany may also run a rebalance (and our revoke hook): allow for that.
        batches = await _bounded(
            self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_messages),
            timeout_s + REVOKE_HOOK_TIMEOUT_S + CALL_TIMEOUT_S,
            "read",
        )
        out: list[LogMessage] = []
        for tp, records in batches.items():
            for r in records:
                key = r.key.decode("utf-8", "replace") if r.key is not None else ""
                out.append(LogMessage(tp.topic, tp.partition, r.offset, key, r.value or b""))
        return out

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Commit ``{(topic, partition): next_offset}``.

        A commit refused because the group rebalanced (or the partition is no
        longer ours) is logged and dropped: the new owner replays from the last
        commit and the store deduplicates. Raises ``LogUnavailable`` on timeout
        or other Kafka errors.
        """
        if self._consumer is None:
            raise LogUnavailable("kafka: reader not started")
        if not positions:
            return
        offsets = {TopicPartition(t, p): o for (t, p), o in positions.items()}
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), CALL_TIMEOUT_S)
        except (CommitFailedError, IllegalStateError) as e:
            log.warning("kafka: commit of %s dropped (will replay): %s", positions, e)
        except asyncio.TimeoutError as e:
            raise LogUnavailable(f"kafka: commit timed out after {CALL_TIMEOUT_S:g}s") from e
        except KafkaError as e:
            raise LogUnavailable(f"kafka: commit failed: {e!r}") from e

    async def partition_lag(self) -> dict[tuple[str, int], int]:
        """End offset minus the group's committed offset, per partition held now."""
        consumer = self._consumer
        if consumer is None:
            return {}
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): max(ends[tp] - (await consumer.committed(tp) or 0), 0) for tp in tps}

    def assignment(self) -> set[tuple[str, int]]:
        """Partitions this reader holds right now."""
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
