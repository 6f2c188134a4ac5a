"""A run's visible history as *segments* of storage runs: rewind and fork without copying points.

Every attempt of a run stores its points under its own *storage id*: attempt
0 under the run id itself, attempt k >= 1 under ``<run_id>~<k>`` (``~`` is
outside the id pattern of ``wire.py``, so no user id can collide with one).
Points, rollups, ledger, skips and first-wins are therefore exact per attempt
with no schema change, and the writers of a new attempt count seqs from 0.

Invariant: a run's segments ``[(storage_id, step_lo, step_hi | None), ...]``
are ordered by step, disjoint, and name each storage id at most once; the
last is open (``None``) and is the run's own current attempt. A rewind or a
fork at step N keeps what was visible at steps < N and shows the new attempt
from N on: step N itself comes from the new attempt (W&B: logging continues
at N). Segments only ever shrink or are appended to, so each storage id is in
one segment and a read may tell a point's segment by its storage id alone.
"""

from __future__ import annotations

SEP = "~"
OPEN = None

Segment = tuple[str, int, "int | None"]


def storage_id(run_id: str, attempt: int) -> str:
    """Where attempt ``attempt`` of ``run_id`` stores its points."""
    return run_id if attempt == 0 else f"{run_id}{SEP}{attempt}"


def source_of(sid: str) -> tuple[str, int]:
    """(run id, attempt) of a storage id (the inverse of ``storage_id``)."""
    run_id, sep, k = sid.rpartition(SEP)
    return (run_id, int(k)) if sep and k.isdigit() else (sid, 0)


def clip(segments: list[Segment], below: int) -> list[Segment]:
    """The segments' parts at steps < ``below``."""
    out: list[Segment] = []
    for sid, lo, hi in segments:
        if lo >= below:
            break
        out.append((sid, lo, below - 1 if hi is None or hi >= below else hi))
    return out


def branch(segments: list[Segment], sid: str, step: int) -> list[Segment]:
    """The segments of a rewind (or fork) at ``step`` whose new attempt stores under ``sid``."""
    return [*clip(segments, step), (sid, step, OPEN)]


def within(segments: list[Segment], lo: int, hi: int) -> list[tuple[str, int, int]]:
    """The segments intersected with steps ``lo..hi`` (closed), empty ones dropped."""
    out = []
    for sid, s_lo, s_hi in segments:
        a, b = max(lo, s_lo), hi if s_hi is None else min(hi, s_hi)
        if a <= b:
            out.append((sid, a, b))
    return out


def public(segments: list[Segment]) -> list[dict]:
    """Segments as the API shows them: run id and attempt, not storage ids."""
    out = []
    for sid, lo, hi in segments:
        run_id, attempt = source_of(sid)
        out.append({"run_id": run_id, "attempt": attempt, "min_step": lo, "max_step": hi})
    return out
