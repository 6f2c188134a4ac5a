"""Start-up checks: refuse to start on a data directory whose parts disagree.

Invariant: a process starts only when its log and its store belong together.
A store made anew under a log that fed another store (its directory deleted,
a wrong ``--clickhouse`` URL) would otherwise start as a "first start": a new
organization and key, and history silently missing. The way out is explicit:
``arwx server --rebuild-store`` replays what the log still holds.

This is the one place for such checks; a new part that must agree with the
others (a catalog) adds its check to ``check_data_dir``.
"""

from __future__ import annotations

import logging
import secrets
import time

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
            f"(organizations, keys and runs lived in the store and must be made again)."
        )
    sqlite_log.rewind()
    sqlite_log.set_meta("store_id", sid)
    msg = f"rebuilding the store {store_name} from the embedded log {sqlite_log.path}: {what}; replaying {held} messages"
    log.warning(msg)
    return msg
