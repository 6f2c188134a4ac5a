"""The receipt's stored counts, computed part by part and cached per part
(``query/stored_counts.py``), always equal what a FINAL read of the run says:
after new parts, a replayed part that duplicates stored points, merges, a
purge's mutation, and one seq stored under two keys."""

from __future__ import annotations

import secrets

import pyarrow as pa

from arwx.query.stored_counts import stored_by_writer

_FINAL = (
    "SELECT writer_id, count(), min(seq), max(seq), sum(toUInt128(seq)), sum(toUInt128(seq) * seq),"
    " countIf(isNaN(value)) FROM points FINAL WHERE org = {org:String} AND run_id = {run:String} GROUP BY writer_id"
)


class _Recording:
    """The store, recording the SQL of every ``rows`` call."""

    def __init__(self, store) -> None:  # noqa: ANN001
        self._store = store
        self.sql: list[tuple[str, dict]] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._store, name)

    async def rows(self, sql: str, params=None):  # noqa: ANN001, ANN201
        self.sql.append((sql, params or {}))
        return await self._store.rows(sql, params)


def _points(org: str, run: str, writer: str, seqs: list[int], key: str = "loss", nan: set[int] = frozenset()) -> pa.Table:
    n = len(seqs)
    return pa.table(
        {
            "org": [org] * n,
            "run_id": [run] * n,
            "key": [key] * n,
            "writer_id": [writer] * n,
            "seq": pa.array(seqs, pa.uint64()),
            "step": pa.array(seqs, pa.uint64()),
            "ts": pa.array([1_700_000_000_000 + s for s in seqs], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "value": pa.array([float("nan") if s in nan else float(s) for s in seqs], pa.float64()),
            "log_partition": pa.array([0] * n, pa.uint32()),
            "log_offset": pa.array([s // 10 for s in seqs], pa.uint64()),
            "ingested_at": pa.array([1_700_000_000_000] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )


async def _final(store, org: str, run: str) -> dict:  # noqa: ANN001
    return {w: tuple(int(c) for c in rest) for w, *rest in await store.rows(_FINAL, {"org": org, "run": run})}


async def _insert(store, table: pa.Table) -> None:  # noqa: ANN001
    await store.insert("points", table, f"test:{secrets.token_hex(8)}")  # a new token: a new part


async def test_counts_equal_final_through_parts_replays_merges_and_purges(embedded) -> None:
    store = _Recording(embedded.server.store)
    org, run = "org_counts_" + secrets.token_hex(3), "r"
    assert await stored_by_writer(store, org, run) == {} == await _final(store, org, run)

    # Three parts, disjoint seq ranges, two writers, a skipped value.
    await _insert(store, _points(org, run, "a", list(range(0, 100)), nan={7}))
    await _insert(store, _points(org, run, "a", list(range(100, 250))))
    await _insert(store, _points(org, run, "b", list(range(0, 40))))
    got = await stored_by_writer(store, org, run)
    assert got == await _final(store, org, run)
    assert got["a"] == (250, 0, 249, sum(range(250)), sum(s * s for s in range(250)), 1)

    # Asked again with nothing new: served from the cache, the parts' points
    # are not read again (merges held back, so the parts stay the same).
    await store.command("SYSTEM STOP MERGES points")
    try:
        await stored_by_writer(store, org, run)
        store.sql.clear()
        assert await stored_by_writer(store, org, run) == got
        active = await store.rows(
            "SELECT name FROM system.parts WHERE database = currentDatabase() AND table = 'points' AND active"
        )
    finally:
        await store.command("SYSTEM START MERGES points")
    (_, known) = next((q, p) for q, p in store.sql if "_part NOT IN" in q)
    assert sorted(known["known"]) == sorted(n for (n,) in active) != []

    # A replay in another cut (a new token, so ClickHouse keeps it as a new
    # part): those points are stored twice until a merge, and counted once.
    await _insert(store, _points(org, run, "a", list(range(90, 120))))
    assert await stored_by_writer(store, org, run) == await _final(store, org, run) == got

    # A new part that goes on, and the same seq under another key (two
    # stored points, as FINAL counts them).
    await _insert(store, _points(org, run, "a", list(range(250, 300))))
    await _insert(store, _points(org, run, "b", [5], key="acc"))
    final = await _final(store, org, run)
    assert final["a"][0] == 300 and final["b"][0] == 41
    assert await stored_by_writer(store, org, run) == final

    # Merged: new parts replace the cached ones.
    await store.command("OPTIMIZE TABLE points FINAL")
    assert await stored_by_writer(store, org, run) == await _final(store, org, run) == final

    # A purge-like mutation deletes points: no cached count survives it.
    await store.command(
        "ALTER TABLE points DELETE WHERE org = {org:String} AND run_id = {run:String} AND seq >= 200"
        " SETTINGS mutations_sync = 2",
        {"org": org, "run": run},
    )
    after = await stored_by_writer(store, org, run)
    assert after == await _final(store, org, run)
    assert after["a"][:3] == (200, 0, 199)


async def test_counts_are_per_run_and_per_org(embedded) -> None:
    store = embedded.server.store
    org, other = "org_counts_" + secrets.token_hex(3), "org_counts_" + secrets.token_hex(3)
    await _insert(store, _points(org, "r", "w", list(range(0, 30))))
    await _insert(store, _points(other, "r", "w", list(range(0, 10))))
    await _insert(store, _points(org, "s", "w", list(range(0, 5))))
    assert (await stored_by_writer(store, org, "r"))["w"][0] == 30
    assert (await stored_by_writer(store, other, "r"))["w"][0] == 10
    assert (await stored_by_writer(store, org, "s"))["w"][0] == 5
    assert await stored_by_writer(store, other, "s") == {}
