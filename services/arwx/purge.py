"""Purging a run: every row of it removed from ClickHouse, then from the catalog.

Invariant: nothing of the run is left behind in the store, and nothing
arrives after the purge. The run is soft-deleted first, so new points are
refused (other processes see it within their run cache's bound, which the
purge waits out); then it waits until every message the log held for the run
at that point is stored; only then are the rows deleted (synchronous
mutations) and the catalog rows removed. Blobs are not touched: they are
content-addressed and may be shared, so they go to garbage collection when
nothing references them.
"""

from __future__ import annotations

import asyncio
import time

from arwx.log.base import EventLog
from arwx.query.integrity import pending_messages
from arwx.query.writers import StillStoring
from arwx.runs import Run, Runs
from arwx.store.base import Store

#: Every table holding rows of a run (each has ``org`` and ``run_id`` columns).
RUN_TABLES = ("points", "point_rollups", "point_skips", "ledger", "seq_conflicts", "runs")
WAIT_S = 10.0


async def purge_run(store: Store, log: EventLog, runs: Runs, run: Run, wait_s: float = WAIT_S) -> dict[str, int]:
    """Remove ``run`` everywhere; returns the rows removed per ClickHouse table.
    ``StillStoring`` (503) when the run's messages are not stored within ``wait_s``:
    the run stays soft-deleted and the purge may be asked again."""
    org, run_id = run.org, run.run_id
    await runs.set_deleted(org, run_id, True)
    await asyncio.sleep(runs.ttl_s)  # every process's cached copy of the run now says deleted
    cut = await log.end_offsets(f"{org}/{run_id}")
    deadline = time.monotonic() + wait_s
    while (pending := await pending_messages(store, log, org, run_id, cut)) > 0:
        if time.monotonic() >= deadline:
            raise StillStoring(f"{pending} log message(s) of run {run_id!r} are not stored yet; purge again later")
        await asyncio.sleep(0.05)
    p = {"org": org, "run": run_id}
    where = "org = {org:String} AND run_id = {run:String}"
    removed = {}
    for table in RUN_TABLES:
        ((n,),) = await store.rows(f"SELECT count() FROM {table} WHERE {where}", p)
        removed[table] = int(n)
        if n:
            # mutations_sync = 2: done on every replica before the call returns.
            await store.command(f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 2", p)
    await runs.forget(org, run_id)
    return removed
