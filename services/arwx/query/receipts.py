"""The integrity receipt of a run, per attempt (``arwx/segments.py``).

Invariant: each attempt stores under its own storage id, so each attempt's
receipt is ``integrity.receipt`` of that storage id with the totals its own
writers reported: exact on its own (committed, stored, lost each), whatever
a rewind hid from the visible history. The run's receipt lists them all
(``attempts``, ``current`` marking the attempt new points go to) and sums
them; it is intact only when every attempt is. A fork's receipt covers its
own attempts: the points it shows from its parent are the parent's, on the
parent's receipt.
"""

from __future__ import annotations

from arwx.log.base import EventLog
from arwx.query.integrity import receipt
from arwx.runs import Run
from arwx.segments import source_of
from arwx.store.base import Store

_SUMMED = (
    "points_committed", "points_stored", "duplicates_collapsed", "conflicts", "skipped", "lost", "pending",
    "pending_points",
)


async def attempt_receipt(store: Store, log: EventLog, run: Run, one: Run) -> dict:
    """The receipt of one attempt (``one`` = ``run.at_attempt(k)``)."""
    out = await receipt(store, log, one)
    k = source_of(one.run_id)[1]
    start = next(a["start_step"] for a in run.attempts if a["attempt"] == k)
    out.update(run_id=run.run_id, attempt=k, start_step=start, current=k == run.attempt)
    for w in out["writers"]:
        w["attempt"] = k
    return out


async def run_receipt(store: Store, log: EventLog, run: Run) -> dict:
    """The run's receipt: every attempt's, summed, and each listed in ``attempts``."""
    per = []
    for a in run.attempts:
        one = run.at_attempt(a["attempt"])
        assert one is not None
        per.append(await attempt_receipt(store, log, run, one))
    out = {
        "run_id": run.run_id,
        "status": run.status,
        **{k: sum(r[k] for r in per) for k in _SUMMED},
        "intact": all(r["intact"] for r in per),
        "writers": [w for r in per for w in r["writers"]],
        "fingerprint": run.fingerprint or None,
        "attempt": run.attempt,
        "attempts": [
            {k: r[k] for k in ("attempt", "start_step", "current", "intact", *_SUMMED)} for r in per
        ],
    }
    return out
