"""One-time import of orgs, keys and runs from ClickHouse (data written before the catalog).

Versions up to 3b03d8d kept organizations, API keys, runs and writer totals
in ClickHouse tables (``orgs``, ``api_keys``, ``runs``, ``run_writers``).
The first start of a newer version on such a store copies them into the
catalog, in one catalog transaction with the marker that says it is done
(``Catalog.once``), so it happens exactly once, even when several processes
start together on one PostgreSQL. The ClickHouse ``runs`` table stays: it is
the mirror now. The old ``orgs``, ``api_keys`` and ``run_writers`` tables are
left in place, unread (a downgrade still finds them).

Points never move: they stay in ClickHouse, keyed by (org, run_id), which
the import keeps as they were.
"""

from __future__ import annotations

import logging

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import api_keys, catalog_state, orgs, run_writers, runs
from arwx.store.base import Store

log = logging.getLogger("arwx.catalog")

MARKER = "legacy_clickhouse_import"
LEGACY_TABLES = ("orgs", "api_keys", "run_writers")


async def _exists(store: Store, table: str) -> bool:
    rows = await store.rows(f"EXISTS TABLE {table}")  # table: one of our constant names
    return bool(rows and rows[0][0])


async def has_legacy_tables(store: Store) -> bool:
    """Whether this store was written by a version that kept orgs and keys in ClickHouse."""
    return await _exists(store, "api_keys")


def _ms(sql_col: str) -> str:
    return f"if(isNull({sql_col}), NULL, toUnixTimestamp64Milli(assumeNotNull({sql_col})))"


async def import_from_clickhouse(catalog: Catalog, store: Store) -> dict[str, int] | None:
    """Copy the legacy tables into the catalog once; the counts copied, or None if already done."""
    counts: dict[str, int] = {}

    async def job(conn: AsyncConnection) -> bool:
        if not await has_legacy_tables(store):
            return True  # a store from after the catalog: nothing to import, ever
        counts.update(await _copy(conn, store))
        return True

    if not await catalog.once(MARKER, job):
        return None
    if counts:
        log.info("imported orgs, keys and runs from ClickHouse into the catalog", extra=counts)
    return counts


async def _copy(conn: AsyncConnection, store: Store) -> dict[str, int]:
    org_rows = await store.rows("SELECT org, name, toUnixTimestamp64Milli(created_at) FROM orgs FINAL")
    key_rows = await store.rows(
        "SELECT key_id, org, name, key_hash, prefix, toUnixTimestamp64Milli(created_at), "
        f"{_ms('revoked_at')} FROM api_keys FINAL"
    )
    run_rows = await store.rows(
        "SELECT org, run_id, project, name, status, config, writer_ids, fingerprint, "
        f"toUnixTimestamp64Milli(created_at), {_ms('finished_at')}, version FROM runs FINAL"
    )
    writer_rows = await store.rows(
        "SELECT org, run_id, writer_id, sent, toUnixTimestamp64Milli(reported_at) FROM run_writers FINAL"
    )
    known = {r[0] for r in org_rows}
    # Keys and runs always had an org row; should one be missing, keep the data under a stub org.
    stubs = sorted(({r[1] for r in key_rows} | {r[0] for r in run_rows}) - known)
    new_orgs = [{"org": o, "name": n, "created_at": int(t)} for o, n, t in org_rows]
    new_orgs += [{"org": o, "name": o, "created_at": 0} for o in stubs]
    if new_orgs:
        await conn.execute(orgs.insert(), new_orgs)
    if key_rows:
        # Keys from before scopes could do everything but ``launch``, as migration 0006 grants.
        from arwx.tenancy import OPERATOR_SCOPES, scopes_text

        await conn.execute(
            api_keys.insert(),
            [
                {"key_id": k, "org": o, "name": n, "key_hash": h, "prefix": p, "created_at": int(c), "revoked_at": r,
                 "scopes": scopes_text(OPERATOR_SCOPES)}
                for k, o, n, h, p, c, r in key_rows
            ],
        )
        await conn.execute(
            update(catalog_state).where(catalog_state.c.name == "keys").values(value=catalog_state.c.value + 1)
        )
    dec = msgspec.json.decode
    if run_rows:
        await conn.execute(
            runs.insert(),
            [
                {
                    "org": o, "run_id": rid, "project": proj, "name": name, "status": status,
                    "config": dec(cfg or "{}"), "writer_ids": list(wids), "fingerprint": dec(fp or "{}"),
                    "created_at": int(c), "finished_at": f, "version": int(v),
                }
                for o, rid, proj, name, status, cfg, wids, fp, c, f, v in run_rows
            ],
        )
        # Projects are catalog rows since migration 0005: each project the runs name, from its first run.
        from arwx.control.projects import MAX_NAME, ensure

        first: dict[tuple[str, str], int] = {}
        for o, _, proj, *_, c, _f, _v in run_rows:
            first[(o, proj)] = min(first.get((o, proj), int(c)), int(c))
        for (o, proj), c in sorted(first.items()):
            if len(proj) <= MAX_NAME:
                await ensure(conn, o, proj, c)
    if writer_rows:
        await conn.execute(
            run_writers.insert(),
            [
                {"org": o, "run_id": r, "writer_id": w, "sent": int(s), "reported_at": int(t)}
                for o, r, w, s, t in writer_rows
            ],
        )
    return {"orgs": len(new_orgs), "keys": len(key_rows), "runs": len(run_rows), "run_writers": len(writer_rows)}
