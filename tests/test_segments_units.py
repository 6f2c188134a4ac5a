"""The segment algebra of rewind and fork (``arwx/segments.py``), on its own."""

from __future__ import annotations

from arwx.segments import branch, clip, public, source_of, storage_id, within


def test_storage_ids_round_trip_and_never_look_like_a_client_id() -> None:
    assert storage_id("run", 0) == "run" and storage_id("run", 3) == "run~3"
    assert source_of("run~3") == ("run", 3) and source_of("run") == ("run", 0)
    assert source_of("a.b:c@d-e~12") == ("a.b:c@d-e", 12)


def test_a_rewind_keeps_what_was_shown_below_its_step_and_the_new_attempt_from_it() -> None:
    segs = [("r", 0, None)]
    segs = branch(segs, "r~1", 5000)
    assert segs == [("r", 0, 4999), ("r~1", 5000, None)]
    segs = branch(segs, "r~2", 7000)
    assert segs == [("r", 0, 4999), ("r~1", 5000, 6999), ("r~2", 7000, None)]
    # Back before an earlier rewind: the attempts in between disappear from view.
    assert branch(segs, "r~3", 3000) == [("r", 0, 2999), ("r~3", 3000, None)]
    # Exactly at an attempt's start: it is not shown at all; at 0, nothing earlier is.
    assert branch(segs, "r~3", 5000) == [("r", 0, 4999), ("r~3", 5000, None)]
    assert branch(segs, "r~3", 0) == [("r~3", 0, None)]
    assert clip(segs, 1) == [("r", 0, 0)]


def test_within_intersects_and_drops_empty_parts() -> None:
    segs = [("r", 0, 4999), ("r~1", 5000, None)]
    assert within(segs, 0, 2**63 - 1) == [("r", 0, 4999), ("r~1", 5000, 2**63 - 1)]
    assert within(segs, 4990, 5009) == [("r", 4990, 4999), ("r~1", 5000, 5009)]
    assert within(segs, 6000, 7000) == [("r~1", 6000, 7000)]
    assert within(segs, 10, 5) == []
    assert public(segs) == [
        {"run_id": "r", "attempt": 0, "min_step": 0, "max_step": 4999},
        {"run_id": "r", "attempt": 1, "min_step": 5000, "max_step": None},
    ]
