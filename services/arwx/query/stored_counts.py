"""Per-writer counts of a run's stored points, exact, without reading the run FINAL each time.

Invariant: ``stored_by_writer`` returns exactly what this query over the run
returns, per writer:

    SELECT writer_id, count(), min(seq), max(seq), sum(seq), sum(seq * seq),
           countIf(isNaN(value)) FROM points FINAL WHERE <run> GROUP BY writer_id

Why it can be computed part by part: a part of ``points`` is immutable (a
merge, a mutation or a purge makes a new part with a new name), and inside one
part no sort key repeats (ReplacingMergeTree collapses equal keys when it
writes a part, at insert and at merge). So when, for every writer, the seq
ranges ``[min, max]`` of the parts holding its points do not overlap, no
stored point can sit in two parts and the FINAL counts are the sums of the
per-part counts. When they overlap (a replay not yet merged, or a part that
was merged while being listed: its rows then show up twice), the run is read
FINAL, as before.

Per-part counts of a run are cached by the part's identity (name,
modification time, rows), so a receipt reads only the parts that appeared
since the last one (the ones just inserted or merged) plus the part list:
a finished run's receipt reads no points at all.
"""

from __future__ import annotations

import weakref

from arwx.cache import MISSING, BoundedCache
from arwx.store.base import Store

# (writer_id, count, seq_min, seq_max, sum(seq), sum(seq^2), NaN count)
WriterCounts = tuple[int, int, int, int, int, int]

_RUN = "org = {org:String} AND run_id = {run:String}"
_AGG = (
    "count(), min(seq), max(seq), sum(toUInt128(seq)), sum(toUInt128(seq) * seq), countIf(isNaN(value))"
)

# Per store (a process may hold several, e.g. tests): (org, run, part identity) -> counts per writer.
_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
CACHE_ENTRIES = 200_000
CACHE_AGE_S = 3600.0  # parts never change; the age only bounds memory held for gone parts


def _cache(store: Store) -> BoundedCache:
    c = _CACHES.get(store)
    if c is None:
        c = _CACHES[store] = BoundedCache(CACHE_ENTRIES, CACHE_AGE_S)
    return c


async def stored_by_writer(store: Store, org: str, run_id: str) -> dict[str, WriterCounts]:
    """``writer -> (count, seq_min, seq_max, sum(seq), sum(seq²), NaN count)`` of
    the run's distinct stored points (see the module docstring)."""
    p = {"org": org, "run": run_id}
    cache = _cache(store)
    # Read first: a part listed here is active or was merged since; a part made
    # after this read is not listed and so is read below (nothing is missed).
    active = {
        name: (name, str(mtime), int(rows))
        for name, mtime, rows in await store.rows(
            "SELECT name, modification_time, rows FROM system.parts"
            " WHERE database = currentDatabase() AND table = 'points' AND active",
            {},
        )
    }
    known: dict[str, tuple] = {}
    for name, ident in active.items():
        hit = cache.get((org, run_id, ident), MISSING)
        if hit is not MISSING:
            known[name] = hit  # type: ignore[assignment]
    fresh: dict[str, list] = {}
    for part, w, *counts in await store.rows(
        f"SELECT _part, writer_id, {_AGG} FROM points WHERE {_RUN} AND _part NOT IN {{known:Array(String)}}"
        " GROUP BY _part, writer_id",
        {**p, "known": sorted(known)},
    ):
        fresh.setdefault(part, []).append((w, *(int(c) for c in counts)))
    for name, ident in active.items():
        if name not in known:
            # Listed and read now: its counts (none: the part holds nothing of the run).
            cache.put((org, run_id, ident), tuple(fresh.get(name, ())))
    per_part = [*known.values(), *fresh.values()]
    combined = _combine(per_part)
    if combined is not None:
        return combined
    return {
        w: tuple(int(c) for c in counts)  # type: ignore[misc]
        for w, *counts in await store.rows(f"SELECT writer_id, {_AGG} FROM points FINAL WHERE {_RUN} GROUP BY writer_id", p)
    }


def _combine(per_part: list) -> dict[str, WriterCounts] | None:
    """Sum the parts' counts per writer; None if a writer's seq ranges overlap
    between parts (a point may then be stored twice: only FINAL can tell)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    out: dict[str, list[int]] = {}
    for rows in per_part:
        for w, n, lo, hi, s1, s2, nan in rows:
            if n == 0:
                continue
            ranges.setdefault(w, []).append((lo, hi))
            acc = out.get(w)
            if acc is None:
                out[w] = [n, lo, hi, s1, s2, nan]
            else:
                acc[0] += n
                acc[1] = min(acc[1], lo)
                acc[2] = max(acc[2], hi)
                acc[3] += s1
                acc[4] += s2
                acc[5] += nan
    for spans in ranges.values():
        spans.sort()
        for (_, hi), (lo, _) in zip(spans, spans[1:]):
            if lo <= hi:
                return None
    return {w: tuple(v) for w, v in out.items()}  # type: ignore[misc]
