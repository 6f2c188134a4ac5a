"""A Wild run's status moves only by compare-and-set, and every move is audited.

Invariant: ``wild_runs.status`` changes only through ``move``, an UPDATE
whose WHERE names the status(es) it expects. When two parties race (two
runners claiming one queued run, a stop against a finishing report, the
reaper against a late report), the database lets exactly one UPDATE match;
the others see ``False`` and read what won. A final status
(``finished | failed | stopped | lost``) is never left.

This module knows nothing of HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog.tables import wild_audit, wild_runs
from arwx.compat.wild.wire import FINAL_STATUSES


def now_ms() -> int:
    return int(time.time() * 1000)


async def move(
    conn: AsyncConnection, org: str, run_id: str, expect: Iterable[str], to: str, *, held_by: str | None = None,
    **values: object,
) -> bool:
    """Set ``status = to`` (and ``values``) if the run is in one of ``expect`` (and, given
    ``held_by``, held by that runner); whether this call made the move."""
    where = [wild_runs.c.org == org, wild_runs.c.id == run_id, wild_runs.c.status.in_(list(expect))]
    if held_by is not None:
        where.append(wild_runs.c.runner_id == held_by)
    result = await conn.execute(update(wild_runs).where(*where).values(status=to, **values))
    return result.rowcount == 1


async def audit(
    conn: AsyncConnection, org: str, action: str, key_id: str, *, sweep_id: str | None = None,
    run_id: str | None = None, chat_session_id: str | None = None, detail: dict | None = None,
    at: int | None = None,
) -> None:
    """Append who (key, chat session) did ``action`` to which sweep or run, and when."""
    await conn.execute(
        insert(wild_audit).values(
            org=org, sweep_id=sweep_id, run_id=run_id, action=action, key_id=key_id,
            chat_session_id=chat_session_id, detail=detail or {}, at=at or now_ms(),
        )
    )


async def run_row(conn: AsyncConnection, org: str, run_id: str) -> Row | None:
    return (await conn.execute(select(wild_runs).where(wild_runs.c.org == org, wild_runs.c.id == run_id))).first()


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


# What a Wild run's end means for its arwx run (``/v1/runs/:id``), whose first finish wins.
ARWX_STATUS = {"finished": "finished", "failed": "failed", "stopped": "killed", "lost": "crashed"}
