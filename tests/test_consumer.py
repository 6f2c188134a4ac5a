"""The consumer against the real ClickHouse engine (chDB) and the embedded log."""

from __future__ import annotations

import secrets
from pathlib import Path

from arwx.consumer.runner import Consumer, ConsumerConfig
from arwx.log.sqlite_log import SqliteLog
from arwx.query.history import history
from arwx.query.integrity import receipt
from arwx.runs import Run
from arwx.store.base import StoreUnavailable
from arwx.wire import RunChunk


def _message(org: str, run_id: str, writer: str, seqs: range) -> bytes:
    c = RunChunk(run_id)
    for s in seqs:
        c.add(writer, s, s, 1.7e9 + s, "loss", float(s))
    return c.encode(org, 1.7e9)


def _run(org: str, run_id: str) -> Run:
    return Run(org, run_id, "p", run_id, "running", {}, [], 0, None)


async def _consume_all(log: SqliteLog, store, cfg: ConsumerConfig | None = None) -> Consumer:  # noqa: ANN001
    consumer = Consumer(log, store, cfg or ConsumerConfig(commit_interval_s=0.05))
    await consumer.start()
    await consumer.wait_idle(30)
    await consumer.stop()
    return consumer


async def test_poison_message_is_dead_lettered_and_the_rest_written(embedded, tmp_path: Path) -> None:
    store = embedded.server.store
    org = "org_poison_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    (good1,) = await log.append(f"{org}/r", [_message(org, "r", "w", range(0, 100))])
    (bad,) = await log.append(f"{org}/r", [b"\x93not msgpack at all"])
    (good2,) = await log.append(f"{org}/r", [_message(org, "r", "w", range(100, 200))])
    await _consume_all(log, store)
    dead = await store.rows(
        "SELECT log_offset, reason FROM dead_letters FINAL WHERE log_topic = {t:String} AND log_offset = {o:UInt64}",
        {"t": bad.topic, "o": bad.offset},
    )
    assert len(dead) == 1 and "undecodable" in dead[0][1]
    r = await receipt(store, log, _run(org, "r"))
    assert r["points_stored"] == 200 and r["intact"] and r["pending"] == 0
    assert await log.lag() == 0  # the position moved past the poison message
    await log.stop()


async def test_replay_after_a_crash_before_commit_never_shows_twice(embedded, tmp_path: Path) -> None:
    store = embedded.server.store
    org = "org_replay_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    for start in range(0, 3000, 500):
        await log.append(f"{org}/r", [_message(org, "r", "w", range(start, start + 500))])
    await store.command("SYSTEM STOP MERGES points")
    await store.command("SYSTEM STOP MERGES ledger")
    try:
        await _consume_all(log, store)
        # The process died after the inserts but before the offset commit:
        # forget the commit, consume everything again.
        log._reader_conn.execute("DELETE FROM consumer_offsets")
        log._read_pos = None
        # Cut differently this time (two messages a batch), so the insert dedup token
        # cannot drop the replay: the consumer's first-wins screening does (every
        # seq is stored already), and ledger rows collapse by log position.
        await _consume_all(log, store, ConsumerConfig(commit_interval_s=0.05, read_messages=1, max_rows=700))
        p = {"org": org}
        (raw,) = await store.rows("SELECT count() FROM points WHERE org = {org:String}", p)
        assert raw[0] == 3000, "the replay wrote points again"
        (led,) = await store.rows("SELECT count() FROM ledger WHERE org = {org:String}", p)
        assert led[0] > 6, "the replay must really have written ledger rows again (merges are stopped)"
        r = await receipt(store, log, _run(org, "r"))
        assert (r["points_stored"], r["points_committed"], r["duplicates_collapsed"]) == (3000, 3000, 0)
        page = await history(store, org, "r", ["loss"], 0, 10**9, 100_000)
        assert [row["step"] for row in page["rows"]] == list(range(3000))
    finally:
        await store.command("SYSTEM START MERGES points")
        await store.command("SYSTEM START MERGES ledger")
        await log.stop()


class _FlakyStore:
    """The real store, unreachable for its first ``failures`` inserts."""

    def __init__(self, store, failures: int) -> None:  # noqa: ANN001
        self.store = store
        self.failures = failures

    async def insert(self, table, data, dedup_token=None):  # noqa: ANN001, ANN201
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection refused (simulated outage)")
        return await self.store.insert(table, data, dedup_token)

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self.store, name)


async def test_store_outage_pauses_and_retries_never_dead_letters(embedded, tmp_path: Path) -> None:
    org = "org_outage_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    await log.append(f"{org}/r", [_message(org, "r", "w", range(0, 1000))])
    flaky = _FlakyStore(embedded.server.store, failures=4)
    await _consume_all(log, flaky)
    assert flaky.failures == 0
    r = await receipt(embedded.server.store, log, _run(org, "r"))
    assert r["points_stored"] == 1000 and r["intact"]
    (n,) = await embedded.server.store.rows(
        "SELECT count() FROM dead_letters WHERE reason LIKE '%simulated%'"
    )
    assert n[0] == 0
    await log.stop()


async def test_a_recreated_log_never_aliases_the_old_ones_offsets(embedded, tmp_path: Path) -> None:
    """Regression: dedup tokens made of offsets alone made ClickHouse drop the
    first batches of a new log whose offsets matched an earlier log's."""
    store = embedded.server.store
    orgs = ["org_alias_a_" + secrets.token_hex(3), "org_alias_b_" + secrets.token_hex(3)]
    for i, org in enumerate(orgs):
        log = SqliteLog(str(tmp_path / f"log{i}"))  # both logs start at offset 1
        await log.start()
        (a,) = await log.append(f"{org}/r", [_message(org, "r", "w", range(0, 300))])
        assert a.offset == 1
        await _consume_all(log, store)
        r = await receipt(store, log, _run(org, "r"))
        assert (r["points_stored"], r["intact"]) == (300, True), org
        await log.stop()
