"""Purging a run: every row of it removed from ClickHouse, then from the catalog.

Invariant: nothing of the run is left behind in the store, and nothing
arrives after the purge. The run is soft-deleted first, so new points are
refused (other processes see it within their run cache's bound, which the
purge waits out); then it waits until every message the log held for the run
at that point is stored; only then are the rows deleted (synchronous
mutations), counted again (none may be left), and the catalog rows removed
or detached (``arwx.purge_catalog``), the run's own row last. A purge that
fails part way leaves the run soft-deleted and findable, so asking again
finishes it; asking again after it finished is a 404.

Which tables: every table of the current database with ``org`` and
``run_id`` columns, read from ``system.tables`` (so tables added later are
purged too). On a ClickHouse cluster (``deploy/clickhouse/cluster.sql``) a
``Distributed`` table is read through, and its rows are deleted in its local
table on every node (``ALTER TABLE … ON CLUSTER``): ClickHouse refuses
mutations of a Distributed table.

A run stores its rows under its id and, once rewound, under one storage id
per attempt (``<run_id>~<k>``; ``~`` is not allowed in a client's run id):
``storage_ids`` lists them all, and everything here purges every one. A run
whose points other runs show (its forks, ``arwx/segments.py``) is not purged:
``Conflict`` naming them, since purging would silently cut their history;
purge the forks first (or soft-delete the parent: forks keep reading it).

Blobs are not touched: they are content-addressed and may be shared, so they
go to garbage collection (``arwx.blobs.gc``) when nothing references them.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from arwx.catalog import Catalog
from arwx.errors import Conflict
from arwx.log.base import EventLog
from arwx.purge_catalog import check_purgeable, purge_catalog
from arwx.query.integrity import pending_messages
from arwx.query.writers import StillStoring
from arwx.runs import Run, Runs
from arwx.store.base import Store, StoreUnavailable

WAIT_S = 10.0
#: Separates a run id from an attempt number in an attempt's storage id.
ATTEMPT_SEP = "~"
WHERE = "org = {org:String} AND run_id IN {ids:Array(String)}"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Distributed(cluster, database, table[, sharding key[, policy]]), names bare or quoted.
_DISTRIBUTED = re.compile(r"^Distributed\(\s*'?([^',()\s]+)'?\s*,\s*('?[^,]+?'?)\s*,\s*'?([^',()\s]+)'?\s*[,)]")


@dataclass(frozen=True, slots=True)
class Target:
    """One table holding rows of runs: counted through ``table``, deleted in ``mutate``
    (``table`` itself, or a Distributed table's local table on every node of ``cluster``)."""

    table: str
    mutate: str
    cluster: str | None = None

    def delete_sql(self) -> str:
        on = f" ON CLUSTER {_quote(self.cluster)}" if self.cluster else ""
        # mutations_sync = 2: done on every replica before the call returns.
        return f"ALTER TABLE {self.mutate}{on} DELETE WHERE {WHERE} SETTINGS mutations_sync = 2"


def _quote(name: str) -> str:
    """A table or cluster name read from ``system.tables`` (never client input), backquoted."""
    if not _NAME.match(name):
        raise ValueError(f"unexpected table name {name!r} in system.tables")
    return f"`{name}`"


def plan_targets(tables: list[tuple[str, str, str]]) -> list[Target]:
    """The targets among ``(name, engine, engine_full)`` of the tables having ``org`` and
    ``run_id`` columns: MergeTree tables directly; a Distributed table through its local
    table ``ON CLUSTER``; the local tables of Distributed tables not twice; views never."""
    targets, local = [], set()
    for name, engine, full in tables:
        if engine == "Distributed":
            m = _DISTRIBUTED.match(full)
            if m is None:
                raise ValueError(f"cannot read the cluster and local table of Distributed table {name!r}: {full!r}")
            cluster, db, table = m.group(1), m.group(2).strip("'"), m.group(3)
            local.add(table)
            qualified = _quote(table) if db.endswith("()") else f"{_quote(db)}.{_quote(table)}"
            targets.append(Target(_quote(name), qualified, cluster))
    for name, engine, _ in tables:
        if engine.endswith("MergeTree") and name not in local:
            targets.append(Target(_quote(name), _quote(name)))
    return sorted(targets, key=lambda t: t.table)


async def run_targets(store: Store) -> list[Target]:
    """Every table of the current database that holds rows of runs."""
    rows = await store.rows(
        "SELECT name, engine, engine_full FROM system.tables WHERE database = currentDatabase()"
        " AND name IN (SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'run_id')"
        " AND name IN (SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'org')"
    )
    return plan_targets([(str(n), str(e), str(f)) for n, e, f in rows])


async def storage_ids(store: Store, org: str, run_id: str) -> list[str]:
    """The ids the run's rows are stored under: its own, and one per attempt of a rewound run
    (``<run_id>~<k>``), as the ledger knows them. The one place a purge learns them."""
    rows = await store.rows(
        "SELECT DISTINCT run_id FROM ledger WHERE org = {org:String} AND startsWith(run_id, {prefix:String})",
        {"org": org, "prefix": run_id + ATTEMPT_SEP},
    )
    return [run_id, *sorted(str(r[0]) for r in rows)]


async def count_rows(store: Store, targets: list[Target], org: str, ids: list[str]) -> dict[str, int]:
    """Rows of ``ids`` in each target table (tables named without quotes)."""
    out = {}
    for t in targets:
        ((n,),) = await store.rows(f"SELECT count() FROM {t.table} WHERE {WHERE}", {"org": org, "ids": ids})
        out[t.table.strip("`")] = int(n)
    return out


async def purge_run(
    store: Store, log: EventLog, runs: Runs, catalog: Catalog, run: Run, wait_s: float = WAIT_S
) -> dict:
    """Remove ``run`` everywhere: ``{"removed": {table: rows}, "catalog": {table.column: rows},
    "storage_ids": [...]}``. ``StillStoring`` (503) when the run's messages are not stored
    within ``wait_s``; ``Conflict`` (409) while a runner executes it: the run stays
    soft-deleted either way, and the purge may be asked again."""
    org, run_id = run.org, run.run_id
    await check_purgeable(catalog, org, run_id)
    forks = await runs.referencing(org, run)
    if forks:
        raise Conflict(f"run {run_id!r} is the parent of forks that show its points ({', '.join(forks)}); purge those first")
    await runs.set_deleted(org, run_id, True)
    await asyncio.sleep(runs.ttl_s)  # every process's cached copy of the run now says deleted
    deadline = time.monotonic() + wait_s
    for sid in run.storage_ids():  # each attempt's messages travel under its own log key
        cut = await log.end_offsets(f"{org}/{sid}")
        while (pending := await pending_messages(store, log, org, sid, cut)) > 0:
            if time.monotonic() >= deadline:
                raise StillStoring(f"{pending} log message(s) of run {run_id!r} are not stored yet; purge again later")
            await asyncio.sleep(0.05)
    # The attempts the catalog knows, and any the ledger holds (one opened and left meanwhile).
    ids = [run_id, *sorted((set(run.storage_ids()) | set(await storage_ids(store, org, run_id))) - {run_id})]
    targets = await run_targets(store)
    removed = await count_rows(store, targets, org, ids)
    p = {"org": org, "ids": ids}
    for t in targets:
        if removed[t.table.strip("`")]:
            await store.command(t.delete_sql(), p)
    left = {t: n for t, n in (await count_rows(store, targets, org, ids)).items() if n}
    if left:
        # Not expected with synchronous mutations; never remove the catalog's run while rows remain.
        raise StoreUnavailable(f"rows of run {run_id!r} are still stored after the purge ({left}); purge again")
    changed = await purge_catalog(catalog, org, ids)
    await runs.forget(org, run_id)
    return {"removed": removed, "catalog": changed, "storage_ids": ids}
