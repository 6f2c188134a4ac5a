"""Start-up: open the catalog beside its store, and refuse a pair that does not belong together.

Invariant: a catalog and a ClickHouse store that hold data are used together
only if they were paired: both carry the same installation id (the catalog in
``catalog_state``, the store in its ``installation`` table). A missing or
empty half is never taken for a first start. Without this, a deleted
``catalog.sqlite`` beside a full store (or a wrong ``--catalog`` URL) would
start "fresh": a new default org, and every old run unreachable; a wiped
store beside a full catalog would show runs without points.

| catalog id | store id | start?                                                    |
|------------|----------|-----------------------------------------------------------|
| none       | none     | yes: a first start (or an upgrade), pair them now         |
| X          | X        | yes                                                       |
| X          | Y        | no: they belong to different installations                |
| X          | none     | only if the store holds nothing and the catalog no runs   |
|            |          | (then the store takes X)                                  |
| none       | Y        | only if the catalog holds no runs and the store nothing   |
|            |          | (then the catalog takes Y)                                |

"Holds data" means runs (and, for the store, points): runs are what ties
the two halves together. A catalog that has only organizations and keys may
get a new, empty store (a second embedded server on one PostgreSQL catalog
does exactly that).

The id is written under the catalog's start-up lock, store first, so two
processes starting together pair once and agree.
"""

from __future__ import annotations

import secrets

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog, CatalogError
from arwx.catalog.legacy import import_from_clickhouse
from arwx.catalog.tables import catalog_state, runs
from arwx.store.base import Store

INSTALLATION = "installation"


class Mismatch(CatalogError):
    """The catalog and the store are not two halves of one installation."""


async def _store_ids(store: Store) -> set[int]:
    return {int(r[0]) for r in await store.rows("SELECT DISTINCT id FROM installation")}


async def _store_holds_data(store: Store) -> bool:
    for table in ("points", "runs"):  # constant names
        if await store.rows(f"SELECT 1 FROM {table} LIMIT 1"):
            return True
    return False


async def _write_store_id(store: Store, ident: int) -> None:
    await store.insert("installation", pa.table({"id": pa.array([ident], pa.uint64())}))


async def pair(catalog: Catalog, store: Store, where: str) -> int:
    """Check (or make) the pairing; the installation id. ``where`` names the store in messages."""
    async with catalog.locked() as conn:
        cat_id = await conn.scalar(select(catalog_state.c.value).where(catalog_state.c.name == INSTALLATION))
        ids = await _store_ids(store)
        if len(ids) > 1:
            raise Mismatch(f"the store {where} names several installations ({sorted(ids)}); it mixes two stores")
        store_id = next(iter(ids), None)
        if cat_id is not None and store_id is not None:
            if cat_id != store_id:
                raise Mismatch(
                    f"the catalog {catalog.display} and the store {where} belong to different installations "
                    f"({cat_id} and {store_id}); point --catalog and --data-dir/--clickhouse at one pair"
                )
            return cat_id
        if cat_id is not None:
            if await _store_holds_data(store):
                raise Mismatch(f"the store {where} holds data but was never paired with the catalog {catalog.display}")
            if await _catalog_holds_data(conn):
                raise Mismatch(
                    f"the catalog {catalog.display} has runs but the store {where} is empty or missing: "
                    "this is not a first start (restore the store, or start with an empty catalog)"
                )
            await _write_store_id(store, cat_id)
            return cat_id
        if store_id is not None and await _catalog_holds_data(conn):
            raise Mismatch(f"the catalog {catalog.display} holds data but was never paired with the store {where}")
        if store_id is not None and await _store_holds_data(store):
            raise Mismatch(
                f"the store {where} holds runs or points but the catalog {catalog.display} is empty or missing: "
                "this is not a first start (restore the catalog, or point --catalog at it)"
            )
        ident = store_id if store_id is not None else secrets.randbits(62)
        if store_id is None:
            await _write_store_id(store, ident)
        await conn.execute(catalog_state.insert().values(name=INSTALLATION, value=ident))
        return ident


async def _catalog_holds_data(conn: AsyncConnection) -> bool:
    return (await conn.scalar(select(runs.c.run_id).limit(1))) is not None


async def open_catalog(url: str, data_dir, store: Store, where: str) -> Catalog:  # noqa: ANN001 - Path
    """The catalog for this store, migrated, with any pre-catalog data imported, checked as its pair."""
    catalog = Catalog.open(url, data_dir)
    try:
        await catalog.start()
        await import_from_clickhouse(catalog, store)
        await pair(catalog, store, where)
    except BaseException:
        await catalog.stop()
        raise
    return catalog
