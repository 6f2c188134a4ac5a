"""The integrity receipt: the durability ledger checked against the store.

- ``points_committed``: points in log messages the consumer wrote (ledger).
- ``points_stored``: distinct points stored (replays collapsed, as FINAL
  counts them; computed part by part and cached per immutable part, see
  ``stored_counts``, so a receipt reads only the parts new since the last one).
- ``conflicts``: re-sent seqs that carried another key, step or value than
  the first one stored; the first value was kept (``seq_conflicts``).
- ``duplicates_collapsed``: committed minus stored minus conflicts (identical
  client re-sends).
- ``skipped``: distinct stored points whose value was skipped (a NaN
  placeholder): counted in the store, so a re-sent point counts once.
- per writer: expected points = max(what the client said it sent at finish,
  the highest committed seq + 1); holes in the stored seq range are listed.
- ``pending``: log messages of this run acknowledged but not yet stored
  (after the last of its messages the ledger holds, and after the consumer's
  committed position); while any are pending, missing points count as
  pending, not lost.
- ``intact``: nothing missing and nothing pending.
"""

from __future__ import annotations

from arwx.log.base import EventLog
from arwx.query.stored_counts import stored_by_writer
from arwx.runs import Run
from arwx.store.base import Store

MAX_GAPS_LISTED = 10

_RUN = "org = {org:String} AND run_id = {run:String}"


async def receipt(store: Store, log: EventLog, run: Run) -> dict:
    p = {"org": run.org, "run": run.run_id}
    # Pending first, before the counts: when it is 0, every message of the run
    # was stored before the reads below, so the ledger read cannot miss a batch
    # whose points the points read sees (committed < stored on an intact receipt).
    # Not one ledger read for both: pending also trusts the consumer's committed
    # position, read live, so a batch stored and committed after that ledger
    # read would be pending for neither (seen in test_faults.py's Kafka test).
    pending = await pending_messages(store, log, run.org, run.run_id)
    ledger = {
        w: (int(n), int(sk), int(lo), int(hi))
        for w, n, sk, lo, hi in await store.rows(
            "SELECT writer_id, sum(points), sum(skipped), min(seq_min), max(seq_max)"
            f" FROM ledger FINAL WHERE {_RUN} GROUP BY writer_id",
            p,
        )
    }
    stored, skipped_by_writer = {}, {}
    for w, (n, lo, hi, s1, s2, nan) in (await stored_by_writer(store, run.org, run.run_id)).items():
        stored[w] = (n, lo, hi, s1, s2)
        skipped_by_writer[w] = nan
    # Distinct seqs per writer: when count, range and the first two moments
    # of seq all match lo..hi exactly, the seqs are that range (a repeated
    # seq under another key would have to cancel a hole in both sums); only
    # otherwise pay for the exact count.
    distinct = {w: n for w, (n, lo, hi, s1, s2) in stored.items() if _whole(n, lo, hi, s1, s2)}
    if len(distinct) < len(stored):
        distinct.update(
            (w, int(u))
            for w, u in await store.rows(
                f"SELECT writer_id, uniqExact(seq) FROM points FINAL WHERE {_RUN} GROUP BY writer_id", p
            )
        )
    conflicts = {
        w: int(n)
        for w, n in await store.rows(
            f"SELECT writer_id, count() FROM seq_conflicts FINAL WHERE {_RUN} GROUP BY writer_id", p
        )
    }
    writers = []
    missing_total = 0
    for w in sorted(set(ledger) | set(stored) | set(run.writer_totals)):
        committed, _, _, l_hi = ledger.get(w, (0, 0, 0, -1))
        n_stored, s_lo, s_hi, _, _ = stored.get(w, (0, 0, -1, 0, 0))
        uniq = distinct.get(w, 0)
        sent = run.writer_totals.get(w)
        expected = max(sent or 0, l_hi + 1, s_hi + 1)
        missing = max(0, expected - uniq)
        missing_total += missing
        writers.append(
            {
                "writer_id": w,
                "sent": sent,
                "committed": committed,
                "stored": n_stored,
                "conflicts": conflicts.get(w, 0),
                "skipped": skipped_by_writer.get(w, 0),
                "seq_min": s_lo if n_stored else None,
                "seq_max": s_hi if n_stored else None,
                "expected": expected,
                "missing": missing,
                "gaps": [],
            }
        )
    if missing_total:
        await _fill_gaps(store, p, writers)
    committed = sum(v[0] for v in ledger.values())
    n_stored = sum(v[0] for v in stored.values())
    n_conflicts = sum(conflicts.values())
    lost = 0 if pending else missing_total
    return {
        "run_id": run.run_id,
        "status": run.status,
        "points_committed": committed,
        "points_stored": n_stored,
        "duplicates_collapsed": max(0, committed - n_stored - n_conflicts),
        "conflicts": n_conflicts,
        "skipped": sum(skipped_by_writer.values()),
        "lost": lost,
        "pending": pending,
        "pending_points": missing_total if pending else 0,
        "intact": missing_total == 0 and pending == 0,
        "writers": writers,
        "fingerprint": run.fingerprint or None,
    }


async def pending_messages(
    store: Store, log: EventLog, org: str, run_id: str, before: dict[tuple[str, int], int] | None = None
) -> int:
    """Log messages of the run acknowledged to a client and not yet stored
    (only those below ``before``, a cut from ``EventLog.end_offsets``, if given).

    The ledger is read first: what is stored can only grow while the log is
    asked, so pending is never undercounted."""
    stored_at = {
        (t, int(part)): int(o)
        for t, part, o in await store.rows(
            f"SELECT log_topic, log_partition, max(log_offset) FROM ledger WHERE {_RUN} GROUP BY log_topic, log_partition",
            {"org": org, "run": run_id},
        )
    }
    return await log.pending(f"{org}/{run_id}", stored_at, before)


async def _fill_gaps(store: Store, p: dict, writers: list[dict]) -> None:
    """List the first holes of each writer's seq range, in ClickHouse."""
    rows = await store.rows(
        "SELECT writer_id, if(rn = 1, 0, prev + 1) AS gap_from, seq - 1 AS gap_to FROM ("
        "  SELECT writer_id, seq,"
        "    lagInFrame(seq, 1, toUInt64(0)) OVER w AS prev, row_number() OVER w AS rn"
        f"  FROM (SELECT DISTINCT writer_id, seq FROM points FINAL WHERE {_RUN})"
        "  WINDOW w AS (PARTITION BY writer_id ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)"
        ") WHERE (rn = 1 AND seq > 0) OR (rn > 1 AND seq > prev + 1)"
        " ORDER BY writer_id, gap_from LIMIT {n:UInt32} BY writer_id",
        {**p, "n": MAX_GAPS_LISTED},
    )
    by_writer = {w["writer_id"]: w for w in writers}
    for w, a, b in rows:
        by_writer[w]["gaps"].append([int(a), int(b)])
    for w in writers:
        # A tail the store never saw: after the last stored seq up to what was expected.
        last = w["seq_max"] if w["seq_max"] is not None else -1
        if w["expected"] - 1 > last and len(w["gaps"]) < MAX_GAPS_LISTED:
            w["gaps"].append([last + 1, w["expected"] - 1])


def _whole(n: int, lo: int, hi: int, s1: int, s2: int) -> bool:
    """Whether n seqs with these sums are exactly lo..hi, each once."""
    if n != hi - lo + 1:
        return False

    def sq(k: int) -> int:  # sum of i*i for i in 0..k
        return k * (k + 1) * (2 * k + 1) // 6 if k >= 0 else 0

    return s1 == (lo + hi) * n // 2 and s2 == sq(hi) - sq(lo - 1)
