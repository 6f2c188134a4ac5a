"""A project's runs from the ClickHouse runs mirror, always within one org (projects
themselves are catalog entities: ``arwx.control.projects``).

Lists are keyset-paginated: ``next`` is an opaque cursor for the next page.
"""

from __future__ import annotations

import msgspec

from arwx.query.rollups import extents_sql
from arwx.store.base import Store

MAX_PAGE = 1000


def parse_run_cursor(cursor: str) -> tuple[int, str]:
    """``"<created_ms>:<run_id>"`` as given in ``next``."""
    ms, _, run = cursor.partition(":")
    return int(ms), run


async def project_runs(
    store: Store,
    org: str,
    project: str,
    status: str | None,
    prefix: str,
    limit: int,
    after: tuple[int, str] | None,
    with_latest: bool = True,
    deleted: bool = False,
    latest_keys: list[str] | None = None,
) -> dict:
    """Runs of a project, newest first, with each run's latest value per key; soft-deleted
    runs only with ``deleted`` (then only those). ``latest_keys``: only those keys' latest
    values (a table shows a few of hundreds); ``keys`` always names every metric key of the
    page's runs, so a client can choose."""
    cond = (
        "org = {org:String} AND project = {project:String} AND startsWith(name, {prefix:String})"
        f" AND {'isNotNull' if deleted else 'isNull'}(deleted_at)"
    )
    params: dict = {"org": org, "project": project, "prefix": prefix, "limit": limit + 1}
    if status:
        cond += " AND status = {status:String}"
        params["status"] = status
    if after:
        cond += " AND (toUnixTimestamp64Milli(created_at), run_id) < ({a_ms:Int64}, {a_run:String})"
        params.update(a_ms=after[0], a_run=after[1])
    rows = await store.rows(
        "SELECT run_id, name, status, config, writer_ids, toUnixTimestamp64Milli(created_at),"
        " if(isNull(finished_at), NULL, toUnixTimestamp64Milli(assumeNotNull(finished_at))), tags, notes"
        f" FROM runs FINAL WHERE {cond}"
        " ORDER BY created_at DESC, run_id DESC LIMIT {limit:UInt32}",
        params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    runs = [
        {
            "id": r[0], "name": r[1], "status": r[2], "config": msgspec.json.decode(r[3] or "{}"),
            "writer_ids": list(r[4]), "created_at": r[5] / 1000,
            "finished_at": None if r[6] is None else r[6] / 1000, "tags": list(r[7]), "notes": r[8],
            "deleted": deleted, "latest": {},
        }
        for r in rows
    ]
    keys: set[str] = set()
    if with_latest and runs:
        by_id = {r["id"]: r for r in runs}
        wanted = None if latest_keys is None else set(latest_keys)
        for run, key, *_, val, step in await store.rows(extents_sql(False), {"org": org, "runs": list(by_id)}):
            keys.add(key)
            if wanted is None or key in wanted:
                by_id[run]["latest"][key] = {"step": step, "value": val}
    nxt = f"{rows[-1][5]}:{rows[-1][0]}" if more and rows else None
    return {"project": project, "runs": runs, "next": nxt, "keys": sorted(keys)}


async def project_run_ids(store: Store, org: str, project: str, cap: int) -> list[str]:
    """Ids of a project's runs that are not deleted (newest first, at most ``cap``)."""
    rows = await store.rows(
        "SELECT run_id FROM runs FINAL WHERE org = {org:String} AND project = {project:String} AND isNull(deleted_at)"
        " ORDER BY created_at DESC, run_id DESC LIMIT {cap:UInt32}",
        {"org": org, "project": project, "cap": cap},
    )
    return [r[0] for r in rows]
