"""Where a writer's seq range ended on the server: what a resumed writer continues from.

Invariant: ``next_seq`` is above every seq of the writer the server holds or
was told of: the highest committed seq (ledger) + 1, and the total the writer
reported at a finish. It is only answered once every message of the run
that the log held when asked is stored (``EventLog.end_offsets`` is the cut:
the run's other writers may go on appending), so a seq acknowledged before a
``kill -9`` is never handed out again. While something is pending
the answer waits (``wait_s``), then is a 503 with ``Retry-After``: the SDK
retries.

``last_step`` is the writer's highest stored step (finite values, from the
coarsest rollup tier: a few rows per series), so a resumed step counter
continues after it.
"""

from __future__ import annotations

import asyncio
import time

from arwx.errors import Unavailable
from arwx.log.base import EventLog
from arwx.query.integrity import pending_messages
from arwx.query.rollups import pos_step
from arwx.runs import Run
from arwx.store.base import Store

WAIT_S = 5.0
_POLL_S = 0.05


class StillStoring(Unavailable):
    """Points of the run are acknowledged and not stored yet: the position is not known."""


async def writer_position(store: Store, log: EventLog, run: Run, writer_id: str, wait_s: float = WAIT_S) -> dict:
    """``{"run_id", "writer_id", "next_seq", "last_step", "committed", "sent"}``; ``StillStoring``
    when the run's log messages are not all stored within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    # A cut, not "nothing pending": other writers of the run may go on writing meanwhile.
    cut = await log.end_offsets(f"{run.org}/{run.run_id}")
    while (pending := await pending_messages(store, log, run.org, run.run_id, cut)) > 0:
        if time.monotonic() >= deadline:
            raise StillStoring(
                f"{pending} log message(s) of run {run.run_id!r} are not stored yet; retry to learn where "
                f"writer {writer_id!r} ended"
            )
        await asyncio.sleep(_POLL_S)
    p = {"org": run.org, "run": run.run_id, "writer": writer_id}
    ((seq_max, committed, rows),) = await store.rows(
        "SELECT max(seq_max), sum(points), count() FROM ledger FINAL"
        " WHERE org = {org:String} AND run_id = {run:String} AND writer_id = {writer:String}",
        p,
    )
    ((step, cells),) = await store.rows(
        f"SELECT {pos_step('max(last)')}, count() FROM chart_cells"
        " WHERE org = {org:String} AND tier = 16 AND run_id = {run:String} AND writer_id = {writer:String}",
        p,
    )
    sent = run.writer_totals.get(writer_id)
    next_seq = max(int(seq_max) + 1 if rows else 0, sent or 0)
    return {
        "run_id": run.run_id,
        "writer_id": writer_id,
        "next_seq": next_seq,
        "last_step": int(step) if cells else None,
        "committed": int(committed) if rows else 0,
        "sent": sent,
    }
