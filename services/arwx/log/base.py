"""The event log interface shared by the embedded (SQLite) log and Kafka.

A log holds *messages*: one per validated request chunk of one run, carrying
many points (see ``arwx.wire.LogBatch``). The gateway appends; the consumer
reads from its committed position, writes to the store, then commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from arwx.errors import Unavailable


class LogUnavailable(Unavailable):
    """The log cannot take an append right now (down, full, timed out).

    The gateway answers 503 with ``Retry-After``; the client retries.
    """

    public_message = "the event log is unavailable or full; retry later"


class MessageTooLarge(ValueError):
    """A message over ``MAX_MESSAGE_BYTES``: the caller's chunking is wrong.

    Never the client's fault and never worth a retry: the gateway keeps its
    messages far below the limit (``CHUNK_POINTS`` points each).
    """


# The largest payload either log takes; Kafka topics are created to hold it
# (``max.message.bytes`` with room for the record's own overhead).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def check_sizes(payloads: list[bytes]) -> None:
    """Raise ``MessageTooLarge`` if any payload is over ``MAX_MESSAGE_BYTES``."""
    for p in payloads:
        if len(p) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"a log message of {len(p)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")


@dataclass(frozen=True, slots=True)
class Appended:
    """Where a message landed, durably."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LogMessage:
    """One message read back from the log, with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: str
    payload: bytes


class EventLog(Protocol):
    """Producer side: durable appends."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, key: str, payloads: list[bytes]) -> list[Appended]:
        """Append messages for one key (a run id), in order.

        Returns only once every message is durable (SQLite commit, Kafka
        ``acks=all``). Raises ``LogUnavailable`` on timeout, when full or
        stopped (retry later), ``MessageTooLarge`` for a payload over
        ``MAX_MESSAGE_BYTES`` (nothing of the call is appended).
        """
        ...

    async def end_offsets(self, key: str) -> dict[tuple[str, int], int]:
        """Per (topic, partition) ``key`` is written to, the offset the next message
        will get: every message of ``key`` acknowledged so far lies below it (a cut
        that ``pending(before=…)`` waits for while appends go on)."""
        ...

    async def pending(
        self,
        key: str,
        stored: dict[tuple[str, int], int] | None = None,
        before: dict[tuple[str, int], int] | None = None,
    ) -> int:
        """Messages for ``key`` acknowledged and not yet stored (with ``before``,
        from ``end_offsets``: only those below that cut).

        ``stored``: per (topic, partition), the highest offset of a message of
        ``key`` the store already holds (its ledger rows). The consumer writes
        a partition strictly in offset order, points before ledger, so every
        message of the partition up to that offset is stored (or dead-lettered)
        even before the consumer commits its position (commits are throttled);
        pending counts what lies after both that offset and the committed
        position. Exact for the embedded log; for Kafka, the lag of the
        partition the key hashes to (an upper bound).
        """
        ...


class LogReader(Protocol):
    """Consumer side: read from the committed position, commit after the store has it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def read(self, max_messages: int, timeout_s: float) -> list[LogMessage]:
        """Up to ``max_messages`` messages after what was already read, waiting
        at most ``timeout_s`` for the first one. Empty list on timeout."""
        ...

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Commit ``{(topic, partition): next_offset_to_read}``."""
        ...

    async def partition_lag(self) -> dict[tuple[str, int], int]:
        """Per partition this reader holds now: messages appended but not yet
        committed by its group (a metrics gauge; may raise on any failure)."""
        ...

    def set_revoke_hook(self, hook) -> None:  # noqa: ANN001
        """``hook(partitions)`` is awaited before partitions are taken away,
        so the consumer can flush and commit what it holds for them."""
        ...
