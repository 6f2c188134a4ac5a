"""Start-up checks: refuse to start on a data directory whose parts disagree.

Invariant: a process starts only when its log and its store belong together.
A store made anew under a log that fed another store (its directory deleted,
a wrong ``--clickhouse`` URL) would otherwise start as a "first start": a new
organization and key, and history silently missing. The way out is explicit:
``arwx server --rebuild-store`` replays what the log still holds.

The catalog (orgs, keys, runs) must agree with the store the same way:
``check_catalog`` pairs them by the store's id, in embedded and distributed
mode alike.

This is the one place for such checks.
"""

from __future__ import annotations

import logging
import secrets
import time

from sqlalchemy import select, update

from arwx.catalog import Catalog
from arwx.catalog.tables import catalog_state, runs
from arwx.store.base import Store

log = logging.getLogger(__name__)


class StartRefused(Exception):
    """The process must not start; the message names the files and the way out."""


async def store_id(store: Store) -> str:
    """The store's identity, made on first use (the earliest row wins any race)."""
    rows = await store.rows("SELECT value FROM store_info WHERE name = 'store_id' ORDER BY created_at, value LIMIT 1")
    if rows:
        return rows[0][0]
    await store.command(
        "INSERT INTO store_info (name, value, created_at) VALUES ('store_id', {v:String}, fromUnixTimestamp64Milli({t:Int64}))",
        {"v": secrets.token_hex(8), "t": int(time.time() * 1000)},
    )
    return await store_id(store)


async def _store_knows(store: Store, topic: str) -> bool:
    """Whether the store holds anything consumed from ``topic``."""
    rows = await store.rows(
        "SELECT (SELECT count() FROM ledger WHERE log_topic = {t:String}) "
        "+ (SELECT count() FROM dead_letters WHERE log_topic = {t:String})",
        {"t": topic},
    )
    return rows[0][0] > 0


async def check_data_dir(sqlite_log, store: Store, store_name: str, rebuild: bool = False) -> str | None:  # noqa: ANN001
    """Refuse (``StartRefused``) when the embedded log fed a store other than ``store``; with
    ``rebuild``, rewind the log so the consumer replays all it holds into ``store``.

    Returns a line to print (what a rebuild will replay), or None.
    """
    sid = await store_id(store)
    fed = sqlite_log.meta("store_id")
    held, lo, hi, committed = sqlite_log.held()
    if fed is None:
        # A log made before the check, or a new one: it knows no store yet. It fed a store
        # if it committed anything; that store must hold what it consumed.
        fed = sid if committed <= 1 or await _store_knows(store, sqlite_log.topic) else "(an earlier store)"
    if fed == sid and not rebuild:
        sqlite_log.set_meta("store_id", sid)
        return None
    what = (
        f"it holds {held} messages (offsets {lo}..{hi}); {max(lo - 1, 0) if held else max(committed - 1, 0)} "
        f"earlier ones were consumed and trimmed (--log-retention-s) and are not in it"
    )
    if not rebuild:
        raise StartRefused(
            f"the data directory is inconsistent: the embedded log {sqlite_log.path} fed a store that is not "
            f"{store_name} (that store is new or another one: was its directory deleted?). Starting would show "
            f"an empty history and make a new organization. The log {what}. Ways out: restore the store from "
            f"a backup; or start once with `arwx server --rebuild-store` to rebuild the store from the log "
            f"(organizations, keys and runs are in the catalog and stay)."
        )
    sqlite_log.rewind()
    sqlite_log.set_meta("store_id", sid)
    msg = f"rebuilding the store {store_name} from the embedded log {sqlite_log.path}: {what}; replaying {held} messages"
    log.warning(msg)
    return msg


PAIRED_STORE = "paired_store"  # catalog_state row: the store_id this catalog goes with


async def _store_holds_data(store: Store) -> bool:
    rows = await store.rows("SELECT (SELECT count() FROM (SELECT 1 FROM points LIMIT 1)) + "
                            "(SELECT count() FROM (SELECT 1 FROM runs LIMIT 1))")
    return rows[0][0] > 0


async def check_catalog(catalog: Catalog, store: Store, store_name: str, rebuild: bool = False) -> str | None:
    """Refuse (``StartRefused``) a catalog and a store that are not two halves of one installation.

    The catalog remembers the ``store_id`` it was first used with. Runs tie the
    two together (a run's points are in the store), so:

    - same store: start;
    - ``rebuild`` (``--rebuild-store``, the store is being remade from the log):
      the catalog keeps its orgs, keys and runs and goes with the new store;
    - never paired (a first start, or the first start after the upgrade that
      made the catalog): pair, unless exactly one side holds data: a catalog
      with runs beside an empty store, or a store with points or runs beside
      an empty catalog, is a half missing, not a first start;
    - paired with another store: refuse, unless neither side holds data yet
      (a second embedded server on one PostgreSQL catalog before any run).

    Under the catalog's start-up lock, so processes starting together agree.
    Returns a line to print when it re-paired, else None.
    """
    sid = await store_id(store)
    async with catalog.locked() as conn:
        paired = await conn.scalar(select(catalog_state.c.text).where(catalog_state.c.name == PAIRED_STORE))
        if paired == sid:
            return None
        cat_runs = (await conn.scalar(select(runs.c.run_id).limit(1))) is not None
        st_data = await _store_holds_data(store)
        where = f"the catalog {catalog.display} and the store {store_name}"
        if not rebuild:
            if cat_runs and not st_data:
                raise StartRefused(
                    f"{where} do not belong together: the catalog has runs but the store is empty (new, or "
                    f"another one: was its directory deleted?). This is not a first start. Restore the store, or "
                    f"rebuild it from the embedded log with `arwx server --rebuild-store`."
                )
            if st_data and not cat_runs:
                raise StartRefused(
                    f"{where} do not belong together: the store holds runs or points but the catalog has no runs "
                    f"(new, or another one: was catalog.sqlite deleted, or is --catalog wrong?). This is not a "
                    f"first start. Restore the catalog, or point --catalog at the one these runs were made in."
                )
            if paired is not None and cat_runs:
                raise StartRefused(
                    f"{where} belong to different installations (the catalog was made with store {paired}, this "
                    f"store is {sid}). Point --catalog and --data-dir/--clickhouse at one pair."
                )
        if paired is None:
            await conn.execute(catalog_state.insert().values(name=PAIRED_STORE, value=0, text=sid))
        else:
            await conn.execute(update(catalog_state).where(catalog_state.c.name == PAIRED_STORE).values(text=sid))
    if paired is not None:
        msg = f"the catalog {catalog.display} now goes with the store {store_name} ({sid}; it was {paired})"
        log.warning(msg)
        return msg
    return None
