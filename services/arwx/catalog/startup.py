"""Start-up of the catalog: connect, migrate, import what an older version kept in ClickHouse.

Whether this catalog belongs with this store is checked next, with the other
start-up checks, in ``arwx.datadir.check_catalog``.
"""

from __future__ import annotations

from pathlib import Path

from arwx.catalog import Catalog
from arwx.catalog.legacy import import_from_clickhouse
from arwx.store.base import Store


async def open_catalog(url: str, data_dir: Path, store: Store) -> Catalog:
    """The catalog, migrated, with any pre-catalog orgs, keys and runs imported from ``store``."""
    catalog = Catalog.open(url, data_dir)
    try:
        await catalog.start()
        await import_from_clickhouse(catalog, store)
    except BaseException:
        await catalog.stop()
        raise
    return catalog
