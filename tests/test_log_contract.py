"""One contract, both event logs: the embedded SQLite log and Kafka run the same suite.

What ``arwx.log.base`` promises, checked against each backend the way Arroyo's
``tests/backends/mixins.py`` checks its Kafka and local backends: appends come
back with their coordinates, in order per key; a reader resumes after the
group's commit and gets what was not committed again; ``pending`` and
``partition_lag`` count what is appended and not committed; a stopped log and
an oversized message fail the way the contract says. Backend-specific
behaviour (partition split across group members, revoke hooks, broker crashes)
stays in ``test_kafka_log.py`` and ``test_consumer.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from arwx.log.base import MAX_MESSAGE_BYTES, EventLog, LogMessage, LogReader, LogUnavailable, MessageTooLarge
from arwx.log.kafka_log import KafkaLog, KafkaLogReader
from arwx.log.sqlite_log import SqliteLog


@dataclass
class Backend:
    """How to make the two sides of one log; every call of ``reader`` is a new member of one group."""

    name: str
    log: Callable[[], EventLog]
    reader: Callable[[], LogReader]


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest, tmp_path) -> Backend:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    if request.param == "sqlite":
        # Separate instances on one file: the producer side and a reader that can be stopped and reopened.
        return Backend("sqlite", lambda: SqliteLog(str(tmp_path), group_id=tag),
                       lambda: SqliteLog(str(tmp_path), group_id=tag))
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    topic, group = f"arwx.contract.{tag}", f"arwx-contract-{tag}"
    return Backend(
        "kafka",
        lambda: KafkaLog(bootstrap, topic=topic, partitions=3, group_id=group, send_timeout_s=10),
        lambda: KafkaLogReader(bootstrap, topic=topic, group_id=group),
    )


@asynccontextmanager
async def started(part: Any) -> AsyncIterator[Any]:
    await part.start()
    try:
        yield part
    finally:
        await part.stop()


async def read_until(reader: LogReader, want: int, timeout_s: float = 30.0) -> list[LogMessage]:
    got: list[LogMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)}/{want} messages within {timeout_s}s"
        got += await reader.read(1000, 0.5)
    return got


def next_positions(msgs: list[LogMessage]) -> dict[tuple[str, int], int]:
    pos: dict[tuple[str, int], int] = {}
    for m in msgs:
        pos[(m.topic, m.partition)] = max(pos.get((m.topic, m.partition), 0), m.offset + 1)
    return pos


async def test_appends_come_back_in_order_with_their_coordinates(backend: Backend) -> None:
    async with started(backend.log()) as log:
        keys = [f"org/run-{i}" for i in range(5)]
        sent: dict[tuple[str, int, int], tuple[str, bytes]] = {}
        for round_ in range(4):
            for k in keys:
                payloads = [f"{k}:{round_}:{i}".encode() for i in range(3)]
                appended = await log.append(k, payloads)
                assert len(appended) == len(payloads)
                for a, p in zip(appended, payloads):
                    sent[(a.topic, a.partition, a.offset)] = (k, p)
        assert await log.append("org/none", []) == []
        async with started(backend.reader()) as reader:
            got = await read_until(reader, len(sent))
            got += await reader.read(1000, 0.3)  # and nothing more
    # Each message once, where append said it landed, with its key.
    assert {(m.topic, m.partition, m.offset): (m.key, m.payload) for m in got} == sent
    assert len(got) == len(sent)
    for k in keys:
        mine = [m for m in got if m.key == k]
        assert len({m.partition for m in mine}) == 1  # one key, one partition
        assert [m.payload for m in mine] == [f"{k}:{r}:{i}".encode() for r in range(4) for i in range(3)]
        assert [m.offset for m in mine] == sorted(m.offset for m in mine)


async def test_a_new_reader_resumes_after_the_commit_and_gets_the_rest_again(backend: Backend) -> None:
    async with started(backend.log()) as log:
        await log.append("org/r", [b"%d" % i for i in range(6)])
        async with started(backend.reader()) as r1:
            first = await read_until(r1, 6)
            await r1.commit(next_positions(first[:4]))
        for _ in range(2):  # not committed: delivered again to every next reader
            async with started(backend.reader()) as r2:
                again = await read_until(r2, 2)
                again += await r2.read(1000, 0.3)
            assert [m.payload for m in again] == [b"4", b"5"]
        async with started(backend.reader()) as r3:
            await read_until(r3, 2)  # a Kafka member commits only once it holds the partitions
            await r3.commit(next_positions(first))
        async with started(backend.reader()) as r4:
            assert await r4.read(1000, 0.5) == []


async def test_pending_and_partition_lag_count_what_is_not_committed(backend: Backend) -> None:
    async with started(backend.log()) as log:
        assert await log.pending("org/p") == 0
        first = await log.append("org/p", [b"1", b"2", b"3"])
        await log.append("org/p", [b"4", b"5"])
        assert await log.pending("org/p") == 5
        # What the store already holds (its ledger's highest offset) counts as done before any commit.
        held = {(first[1].topic, first[1].partition): first[1].offset}
        assert await log.pending("org/p", held) == 3
        async with started(backend.reader()) as reader:
            got = await read_until(reader, 5)
            lag = await reader.partition_lag()
            assert sum(lag.values()) == 5
            assert {tp for tp, n in lag.items() if n} == {(got[0].topic, got[0].partition)}
            await reader.commit(next_positions(got[:2]))
            assert await log.pending("org/p") == 3
            assert sum((await reader.partition_lag()).values()) == 3
            await reader.commit(next_positions(got))
            assert await log.pending("org/p") == 0
            assert sum((await reader.partition_lag()).values()) == 0
            await reader.commit({})  # nothing to commit is a no-op


async def test_end_offsets_cut_what_pending_waits_for(backend: Backend) -> None:
    """A writer resuming waits for what was acknowledged before it asked, not for appends after."""
    async with started(backend.log()) as log:
        assert all(v >= 0 for v in (await log.end_offsets("org/cut")).values())
        first = await log.append("org/cut", [b"1", b"2"])
        cut = await log.end_offsets("org/cut")
        assert cut == {(first[1].topic, first[1].partition): first[1].offset + 1}
        await log.append("org/cut", [b"3", b"4", b"5"])
        assert await log.pending("org/cut") == 5
        assert await log.pending("org/cut", before=cut) == 2
        held = {(first[1].topic, first[1].partition): first[1].offset}
        assert await log.pending("org/cut", held, cut) == 0


async def test_empty_log_read_times_out_with_nothing(backend: Backend) -> None:
    async with started(backend.log()), started(backend.reader()) as reader:
        assert await reader.read(100, 0.3) == []


async def test_a_message_over_the_limit_is_refused_and_nothing_appended(backend: Backend) -> None:
    async with started(backend.log()) as log:
        big = b"x" * (MAX_MESSAGE_BYTES + 1)
        with pytest.raises(MessageTooLarge):
            await log.append("org/big", [b"small", big])
        assert await log.pending("org/big") == 0
        # The limit itself fits, and comes back whole.
        at_limit = bytes(range(256)) * (MAX_MESSAGE_BYTES // 256)
        [where] = await log.append("org/big", [at_limit])
        async with started(backend.reader()) as reader:
            [m] = await read_until(reader, 1)
        assert (m.partition, m.offset, m.payload) == (where.partition, where.offset, at_limit)


async def test_append_after_stop_is_unavailable(backend: Backend) -> None:
    log = backend.log()
    await log.start()
    await log.append("org/s", [b"before"])
    await log.stop()
    with pytest.raises(LogUnavailable):
        await log.append("org/s", [b"after"])


async def test_two_producers_on_one_log_never_share_an_offset(backend: Backend) -> None:
    # Two gateways on one Kafka topic; two servers on one embedded data directory.
    async with started(backend.log()) as a, started(backend.log()) as b:
        where = []
        for i in range(5):
            where += await a.append("org/two", [b"a%d" % i])
            where += await b.append("org/two", [b"b%d" % i, b"b%d'" % i])
        assert len({(w.topic, w.partition, w.offset) for w in where}) == 15
        async with started(backend.reader()) as reader:
            got = await read_until(reader, 15)
    assert sorted(m.payload for m in got) == sorted([b"a%d" % i for i in range(5)] + [
        p for i in range(5) for p in (b"b%d" % i, b"b%d'" % i)])
    assert [m.offset for m in got] == sorted(m.offset for m in got)
