"""KafkaLog / KafkaLogReader against a real Kafka broker (KRaft, loopback)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest

from arwx.log.base import Appended, LogMessage, LogUnavailable
from arwx.log.kafka_log import KafkaLog, KafkaLogReader, partition_for_key
from tests.kafka_broker import free_port

pytestmark = pytest.mark.kafka

PARTITIONS = 4


def names() -> tuple[str, str]:
    """A fresh topic and group per test, so tests on a shared broker stay apart."""
    tag = uuid.uuid4().hex[:8]
    return f"arwx.test.{tag}", f"arwx-test-{tag}"


async def read_until(reader: KafkaLogReader, want: int, timeout_s: float = 30.0) -> list[LogMessage]:
    """Read until ``want`` messages arrived (fails after ``timeout_s``)."""
    got: list[LogMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)}/{want} messages within {timeout_s}s"
        got += await reader.read(1000, 0.5)
    return got


async def read_quiet(reader: KafkaLogReader, quiet_s: float = 1.0) -> list[LogMessage]:
    """Whatever arrives within ``quiet_s`` (to check that nothing more comes)."""
    return await reader.read(1000, quiet_s)


def next_positions(msgs: list[LogMessage]) -> dict[tuple[str, int], int]:
    pos: dict[tuple[str, int], int] = {}
    for m in msgs:
        pos[(m.topic, m.partition)] = max(pos.get((m.topic, m.partition), 0), m.offset + 1)
    return pos


async def append_all(log: KafkaLog, keys: list[str], per_key: int, tag: str) -> dict[tuple[int, int], bytes]:
    """Append ``per_key`` payloads for each key (in chunks, concurrently across keys)."""

    async def one(key: str) -> list[tuple[Appended, bytes]]:
        payloads = [f"{key}:{tag}:{i}".encode() for i in range(per_key)]
        out: list[tuple[Appended, bytes]] = []
        for i in range(0, per_key, 5):
            chunk = payloads[i : i + 5]
            out += zip(await log.append(key, chunk), chunk)
        return out

    where: dict[tuple[int, int], bytes] = {}
    for res in await asyncio.gather(*(one(k) for k in keys)):
        for a, payload in res:
            assert a.topic == log.topic and a.offset >= 0
            where[(a.partition, a.offset)] = payload
    return where


async def test_roundtrip_order_commit_and_redelivery(kafka_bootstrap: str) -> None:
    topic, group = names()
    log = KafkaLog(kafka_bootstrap, topic=topic, partitions=PARTITIONS, group_id=group)
    await log.start()
    keys = [f"run-{i}" for i in range(6)]
    try:
        sent = await append_all(log, keys, 20, "a")
        # Same key -> same partition, the one partition_for_key predicts.
        by_key = defaultdict(set)
        for (part, _), payload in sent.items():
            by_key[payload.decode().split(":")[0]].add(part)
        assert {k: {partition_for_key(k, PARTITIONS)} for k in keys} == dict(by_key)

        r1 = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
        await r1.start()
        try:
            got = await read_until(r1, len(sent))
            assert {(m.partition, m.offset): m.payload for m in got} == sent
            for k in keys:  # per-key order is append order
                mine = [m.payload.decode() for m in got if m.key == k]
                assert mine == [f"{k}:a:{i}" for i in range(20)]
            assert all(m.topic == topic for m in got)
            await r1.commit(next_positions(got))
        finally:
            await r1.stop()

        sent2 = await append_all(log, keys, 3, "b")
        r2 = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
        await r2.start()
        try:
            got2 = await read_until(r2, len(sent2))
            got2 += await read_quiet(r2)
            # Resumed after the commit: only the new messages, none of the old.
            assert {(m.partition, m.offset): m.payload for m in got2} == sent2
            assert len(got2) == len(sent2)
            # no commit: these must come again
        finally:
            await r2.stop()

        r3 = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
        await r3.start()
        try:
            got3 = await read_until(r3, len(sent2))
            assert {(m.partition, m.offset): m.payload for m in got3} == sent2
        finally:
            await r3.stop()
    finally:
        await log.stop()


async def test_two_readers_share_partitions_and_revoke_hook_commits(kafka_bootstrap: str) -> None:
    topic, group = names()
    log = KafkaLog(kafka_bootstrap, topic=topic, partitions=PARTITIONS, group_id=group)
    await log.start()
    keys = [f"run-{i}" for i in range(24)]
    assert len({partition_for_key(k, PARTITIONS) for k in keys}) == PARTITIONS
    a = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
    b = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
    try:
        sent1 = await append_all(log, keys, 2, "one")
        await a.start()
        got_a = await read_until(a, len(sent1))
        assert a.assignment() == {(topic, p) for p in range(PARTITIONS)}
        held = next_positions(got_a)
        revoked: list[list[tuple[str, int]]] = []

        async def hook(parts: list[tuple[str, int]]) -> None:
            # What a consumer does: commit what it holds for the partitions it loses.
            revoked.append(parts)
            await a.commit({tp: off for tp, off in held.items() if tp in parts})

        a.set_revoke_hook(hook)
        await b.start()

        # Drive both until the group settled on a split of the partitions.
        extra: list[LogMessage] = []
        deadline = time.monotonic() + 30
        while not (a.assignment() and b.assignment() and revoked):
            assert time.monotonic() < deadline, "readers did not split the partitions within 30s"
            for msgs in await asyncio.gather(a.read(1000, 0.2), b.read(1000, 0.2)):
                extra += msgs
        assert revoked[0] == sorted((topic, p) for p in range(PARTITIONS))
        assert a.assignment().isdisjoint(b.assignment())
        assert a.assignment() | b.assignment() == {(topic, p) for p in range(PARTITIONS)}
        # The hook committed before the partitions moved: nothing old is read again.
        assert not [m for m in extra if (m.partition, m.offset) in sent1]

        sent2 = await append_all(log, keys, 2, "two")
        per_reader: dict[str, list[LogMessage]] = {"a": [], "b": []}
        deadline = time.monotonic() + 30
        while sum(map(len, per_reader.values())) < len(sent2):
            assert time.monotonic() < deadline, "second batch not read within 30s"
            ra, rb = await asyncio.gather(a.read(1000, 0.3), b.read(1000, 0.3))
            per_reader["a"] += ra
            per_reader["b"] += rb
        assert per_reader["a"] and per_reader["b"], "each reader gets some"
        assert {(m.partition, m.offset): m.payload for m in per_reader["a"] + per_reader["b"]} == sent2
        assert {(m.topic, m.partition) for m in per_reader["a"]} <= a.assignment()
        assert {(m.topic, m.partition) for m in per_reader["b"]} <= b.assignment()
    finally:
        await b.stop()
        await a.stop()
        await log.stop()


async def test_pending_drops_to_zero_after_commit(kafka_bootstrap: str) -> None:
    topic, group = names()
    log = KafkaLog(kafka_bootstrap, topic=topic, partitions=PARTITIONS, group_id=group)
    await log.start()
    reader = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
    try:
        assert await log.pending("run-x") == 0
        await log.append("run-x", [b"1", b"2", b"3"])
        await log.append("run-x", [b"4", b"5"])
        assert await log.pending("run-x") == 5
        await reader.start()
        got = await read_until(reader, 5)
        await reader.commit(next_positions(got[:2]))
        assert await log.pending("run-x") == 3
        # Stored (the ledger) beyond the committed position: counted from there.
        assert await log.pending("run-x", {(got[3].topic, got[3].partition): got[3].offset}) == 1
        assert await log.pending("run-x", {(got[3].topic, got[3].partition): got[0].offset}) == 3
        await reader.commit(next_positions(got))
        assert await log.pending("run-x") == 0
    finally:
        await reader.stop()
        await log.stop()


async def test_large_message_roundtrip(kafka_bootstrap: str) -> None:
    topic, group = names()
    log = KafkaLog(kafka_bootstrap, topic=topic, partitions=1, group_id=group)
    await log.start()
    reader = KafkaLogReader(kafka_bootstrap, topic=topic, group_id=group)
    try:
        big = bytes(range(256)) * (3 * 4096)  # 3 MiB, above the 1 MiB batch size
        [where] = await log.append("run-big", [big])
        await reader.start()
        [m] = await read_until(reader, 1)
        assert (m.partition, m.offset, m.payload) == (where.partition, where.offset, big)
    finally:
        await reader.stop()
        await log.stop()


async def test_start_against_unreachable_broker_is_unavailable() -> None:
    log = KafkaLog(f"127.0.0.1:{free_port()}", topic="arwx.none")
    t0 = time.monotonic()
    with pytest.raises(LogUnavailable):
        await log.start()
    assert time.monotonic() - t0 < 35
    await log.stop()


async def test_append_unavailable_while_broker_down_then_recovers(kafka_private_broker) -> None:
    broker = kafka_private_broker
    topic, group = names()
    log = KafkaLog(broker.bootstrap, topic=topic, partitions=1, send_timeout_s=2.0, group_id=group)
    await log.start()
    try:
        [first] = await log.append("run-1", [b"before"])
        await asyncio.to_thread(broker.kill9)

        t0 = time.monotonic()
        with pytest.raises(LogUnavailable):
            await log.append("run-1", [b"during"])
        assert time.monotonic() - t0 < 4.0, "append must give up within send_timeout_s"

        await asyncio.to_thread(broker.restart)
        deadline = time.monotonic() + 30
        while True:  # the client's retry loop, bounded
            try:
                [after] = await log.append("run-1", [b"after"])
                break
            except LogUnavailable:
                assert time.monotonic() < deadline, "append did not recover within 30s of restart"
        assert after.offset > first.offset
    finally:
        await log.stop()

    # Every acknowledged message survived the crash; "during" may have landed later (at-least-once).
    reader = KafkaLogReader(broker.bootstrap, topic=topic, group_id=group)
    await reader.start()
    try:
        got = await read_until(reader, 2)
        got += await read_quiet(reader, 0.5)
        payloads = [m.payload for m in got]
        assert payloads[0] == b"before" and payloads[-1] == b"after"
        assert set(payloads) <= {b"before", b"during", b"after"}
    finally:
        await reader.stop()
