"""The catalog's contract, run on SQLite and on a real PostgreSQL (the ``catalog_url`` fixture).

What every caller relies on: migrations are idempotent, match the schema the
code queries, and are safe when several processes start at once; keys are
stored hashed, scoped by org, and a revocation through one process reaches
another within 1 s without a catalog round trip per request; a run id created
by two processes at once is one run; finishing records every writer's total.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, select

from arwx.catalog import Catalog, CatalogError, catalog_url
from arwx.catalog.migrate import current_revision, head_revision
from arwx.catalog.tables import api_keys, metadata
from arwx.errors import Conflict
from arwx.runs import Runs
from arwx.tenancy import Tenancy, hash_key


async def _started(url: str) -> Catalog:
    catalog = Catalog.open(url, Path("/nonexistent"))
    await catalog.start()
    return catalog


def _count_queries(catalog: Catalog) -> list[str]:
    seen: list[str] = []
    assert catalog.engine is not None
    event.listen(catalog.engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


async def test_migrations_are_idempotent_and_match_the_tables(catalog_url: str) -> None:
    catalog = await _started(catalog_url)
    await catalog.stop()
    catalog = await _started(catalog_url)  # a second start on a migrated database: nothing to do
    try:
        async with catalog.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
            diffs = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert diffs == [], f"tables.py and the migrations disagree: {diffs}"
    finally:
        await catalog.stop()


async def test_processes_starting_at_once_migrate_once(catalog_url: str) -> None:
    catalogs = [Catalog.open(catalog_url, Path("/nonexistent")) for _ in range(4)]
    await asyncio.gather(*(c.start() for c in catalogs))  # none fails on "table already exists"
    try:
        ran = await asyncio.gather(*(c.once("test_marker", _did_something) for c in catalogs))
        assert sorted(ran) == [False, False, False, True]
    finally:
        await asyncio.gather(*(c.stop() for c in catalogs))


async def _did_something(conn) -> bool:  # noqa: ANN001
    return True


def test_catalog_urls() -> None:
    assert catalog_url("", Path("/d")).render_as_string() == "sqlite+aiosqlite:////d/catalog.sqlite"
    assert catalog_url("postgresql://u:p@h:5/db", Path("/d")).drivername == "postgresql+asyncpg"
    with pytest.raises(CatalogError, match="is not postgresql"):
        catalog_url("mysql://h/db", Path("/d"))


async def test_keys_are_hashed_scoped_and_revocable(catalog_url: str) -> None:
    catalog = await _started(catalog_url)
    try:
        tenancy = Tenancy(catalog)
        org_a, org_b = await tenancy.create_org("a"), await tenancy.create_org("b ünïcødé")
        assert await tenancy.find_org("b ünïcødé") == org_b
        key_a, secret_a = await tenancy.create_key(org_a, "ci")
        key_b, secret_b = await tenancy.create_key(org_b)
        async with catalog.connect() as conn:
            stored = (await conn.execute(select(api_keys.c.key_hash, api_keys.c.prefix))).all()
        assert {h for h, _ in stored} == {hash_key(secret_a), hash_key(secret_b)}
        assert all(secret_a not in (h + p) or p == secret_a[: len(p)] for h, p in stored)
        assert (await tenancy.authenticate(secret_a)).org == org_a
        assert await tenancy.authenticate(secret_a + "x") is None
        assert await tenancy.authenticate("not-a-key") is None
        assert [k.key_id for k in await tenancy.list_keys(org_a)] == [key_a.key_id]
        assert await tenancy.revoke_key(org_a, key_b.key_id) is None  # another org's key: not found
        assert await tenancy.authenticate(secret_b) is not None
        revoked = await tenancy.revoke_key(org_a, key_a.key_id)
        assert revoked is not None and revoked.revoked_at_ms is not None
        assert await tenancy.authenticate(secret_a) is None
        again = await tenancy.revoke_key(None, key_a.key_id)  # idempotent: the first revocation time stays
        assert again.revoked_at_ms == revoked.revoked_at_ms
        assert [o for o, _ in await tenancy.orgs()] == [org_a, org_b]
    finally:
        await catalog.stop()


async def test_revocation_reaches_another_process_within_1s_without_per_request_queries(catalog_url: str) -> None:
    here, there = await _started(catalog_url), await _started(catalog_url)  # two engines: two processes
    try:
        t_here, t_there = Tenancy(here), Tenancy(there)
        org = await t_here.create_org("o")
        key, secret = await t_here.create_key(org)
        assert await t_there.authenticate(secret) is not None
        queries = _count_queries(there)
        for _ in range(200):
            assert await t_there.authenticate(secret) is not None
        # 200 requests within a refresh period: at most one look at the counter.
        assert len(queries) <= 2, queries
        await t_here.revoke_key(org, key.key_id)
        t0 = time.monotonic()
        while await t_there.authenticate(secret) is not None:
            assert time.monotonic() - t0 < 1.0, "revocation not seen by the other process within 1 s"
            await asyncio.sleep(0.01)
    finally:
        await here.stop()
        await there.stop()


async def test_same_run_created_at_once_by_two_processes_is_one_run(catalog_url: str) -> None:
    one, two = await _started(catalog_url), await _started(catalog_url)
    try:
        org = await Tenancy(one).create_org("o")
        for i in range(5):
            results = await asyncio.gather(
                Runs(one).create(org, f"r{i}", "p", None, {"lr": 0.1}, ["w0"]),
                Runs(two).create(org, f"r{i}", "p", "other name", {"lr": 0.2}, ["w1"]),
            )
            assert sorted(created for _, created in results) == [False, True]
            (a, _), (b, _) = results
            assert (a.name, a.config, a.created_at_ms) == (b.name, b.config, b.created_at_ms)
    finally:
        await one.stop()
        await two.stop()


async def test_runs_are_scoped_and_finish_records_writer_totals(catalog_url: str) -> None:
    catalog = await _started(catalog_url)
    try:
        tenancy, runs = Tenancy(catalog), Runs(catalog)
        org, other = await tenancy.create_org("o"), await tenancy.create_org("x")
        run, created = await runs.create(org, "r1", "proj", "name", {"nested": {"a": [1, 2]}}, ["w0", "w1"], {"commit": "abc"})
        assert created and run.status == "running"
        assert await runs.get(other, "r1") is None
        assert await runs.finish(other, "r1", "finished", {}) is None
        done = await runs.finish(org, "r1", "finished", {"w0": 10})
        assert done.status == "finished" and done.writer_totals == {"w0": 10} and done.finished_at_ms
        assert done.version > run.version
        with pytest.raises(Conflict, match="a writer's total is final"):
            await runs.finish(org, "r1", "finished", {"w1": 7, "w0": 11})
        assert (await runs.get(org, "r1", fresh=True)).writer_totals == {"w0": 10}  # nothing of that call
        later = await runs.finish(org, "r1", "failed", {"w1": 7, "w0": 10})  # a retry, plus a new writer
        assert later.writer_totals == {"w0": 10, "w1": 7}
        assert later.status == "finished" and later.finished_at_ms == done.finished_at_ms  # the first finish stays
        fresh = await Runs(catalog).get(org, "r1")
        assert fresh.config == {"nested": {"a": [1, 2]}} and fresh.fingerprint == {"commit": "abc"}
        assert fresh.public()["writer_ids"] == ["w0", "w1"]
        generated, created = await runs.create(org, None, "proj", None, None, None)
        assert created and generated.name == generated.run_id
    finally:
        await catalog.stop()


async def test_ranks_finishing_at_once_through_two_processes_all_count(catalog_url: str) -> None:
    one, two = await _started(catalog_url), await _started(catalog_url)
    try:
        org = await Tenancy(one).create_org("o")
        await Runs(one).create(org, "ranks", "p", None, None, None)
        await asyncio.gather(*(
            Runs(c).finish(org, "ranks", "finished", {f"rank{i}": 100 + i})
            for i, c in enumerate([one, two] * 4)
        ))
        run = await Runs(two).get(org, "ranks")
        assert run.writer_totals == {f"rank{i}": 100 + i for i in range(8)} and run.status == "finished"
    finally:
        await one.stop()
        await two.stop()
