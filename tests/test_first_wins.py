"""First value wins: a seq re-sent with another value changes nothing anyone reads.

A ``(run, writer, seq)`` names one point; the first value the log carried for
it is what history, charts (every tier, every aggregate) and the rollups show,
before and after background merges, and the receipt counts each conflicting
re-send as ``conflicts`` (identical ones stay ``duplicates_collapsed``).
Real chDB, the real embedded log and consumer, the HTTP API.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

from arwx.consumer.runner import Consumer, ConsumerConfig
from arwx.log.sqlite_log import SqliteLog
from arwx.query.history import history
from arwx.query.integrity import receipt
from arwx.query.rollups import ext_value, pos_value
from arwx.runs import Run
from arwx.wire import RunChunk
from tests.helpers import Api, wait_for

N = 3000
TS0 = 1.7e9
AGGS = ("minmax", "avg", "last", "lttb")
# Bucket widths (steps) that make the chart read raw points and then every rollup tier.
INTERVALS = (1, 16, 64, 256, 1024, 4096, 16384, 65536)


def _pts(run: str, writer: str, seqs, steps, vals, key: str = "loss") -> list[dict]:  # noqa: ANN001
    return [
        {"run_id": run, "writer_id": writer, "seq": int(q), "step": int(s), "key": key, "value": float(v), "ts": TS0 + float(s)}
        for q, s, v in zip(seqs, steps, vals)
    ]


def _rounded(x):  # noqa: ANN001, ANN202
    """An average summed in another order (parts merged) may differ in its last bits."""
    if isinstance(x, float):
        return float(f"{x:.10g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def _charts(api: Api, project: str) -> dict:
    out = {}
    for agg in AGGS:
        for interval in INTERVALS:
            c = api.ok("GET", f"/v1/projects/{project}/charts", params={"keys": "loss", "agg": agg, "interval": interval})
            out[(agg, interval)] = _rounded([c["tier"], c["series"], c["latest"]])
    return out


def _history_values(api: Api, run: str) -> dict[int, float]:
    rows = api.ok("GET", f"/v1/runs/{run}/metrics", params={"limit": 100_000, "keys": "loss"})["rows"]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)), "a step shows twice"
    return {r["step"]: r["loss"] for r in rows}


def _rollup_extremes(embedded, run: str) -> list[tuple]:  # noqa: ANN001
    """Per tier: min, max, first and last over the whole run, straight from chart_cells."""
    store = embedded.server.store
    return embedded.call(
        store.rows(
            f"SELECT tier, {ext_value('min(low)')}, {ext_value('max(high)')}, {pos_value('min(first)')},"
            f" {pos_value('max(last)')} FROM chart_cells WHERE run_id = {{run:String}} AND key = 'loss'"
            " GROUP BY tier ORDER BY tier",
            {"run": run},
        )
    )


def _wait_committed(api: Api, run: str, n: int) -> dict:
    """The receipt once the consumer has taken ``n`` points (re-sends included) from the log."""

    def done() -> dict | None:
        r = api.receipt(run)
        return r if r["points_committed"] == n and r["pending"] == 0 else None

    return wait_for(done, 60, 0.1, f"{n} committed points in the receipt of {run}")


def _stop_merges(embedded) -> None:  # noqa: ANN001
    for t in ("points", "chart_cells"):
        embedded.call(embedded.server.store.command(f"SYSTEM STOP MERGES {t}"))


def _merge_now(embedded) -> None:  # noqa: ANN001
    for t in ("points", "chart_cells"):
        embedded.call(embedded.server.store.command(f"SYSTEM START MERGES {t}"))
        embedded.call(embedded.server.store.command(f"OPTIMIZE TABLE {t} FINAL"))


def test_resent_value_changes_no_history_chart_or_rollup(embedded, api: Api) -> None:
    """Re-send seqs with spikes (999, -999): alone in a request, beside a new
    point, and twice in one request. Everything shows the first values, with
    merges stopped and after a forced merge."""
    api.ok("POST", "/v1/runs", {"id": "fw", "project": "fw"})
    rng = np.random.default_rng(3)
    steps = np.arange(N, dtype=np.int64) * 2
    vals = np.round(np.cumsum(rng.normal(0, 1, N)), 6)
    vals[-1] = vals.max() + 1  # the latest value is also the run's max: "latest" must not move
    pts = _pts("fw", "w", range(N), steps, vals)
    _stop_merges(embedded)
    try:
        for i in range(0, N, 1000):
            api.ok("POST", "/v1/ingest", {"points": pts[i : i + 1000]})
        api.wait_intact("fw", N)
        before_hist = _history_values(api, "fw")
        before = _charts(api, "fw")
        before_roll = _rollup_extremes(embedded, "fw")
        assert {tier for tier, _, _ in before.values()} == {0, 4, 6, 8, 10, 12, 14, 16}
        assert before[("minmax", 1)][1][0]["min"] == [float(v) for v in vals]  # raw: one point a bucket

        bad = dict(pts[1500], value=999.0)  # one request re-sending seq 1500
        api.ok("POST", "/v1/ingest", {"points": [bad]})
        # One request: a new point (another key), seq 100 re-sent with -999, then
        # the last seq (the run's latest value and its max) with -999, twice.
        last = dict(pts[-1], value=-999.0)
        extra = _pts("fw", "w", [N], [2 * N], [0.5], key="acc")
        api.ok("POST", "/v1/ingest", {"points": [*extra, dict(pts[100], value=-999.0), last, last]})
        r = _wait_committed(api, "fw", N + 5)

        def check() -> None:
            assert _history_values(api, "fw") == before_hist
            assert _rollup_extremes(embedded, "fw") == before_roll  # min, max, first, last per tier
            assert _charts(api, "fw") == before  # every aggregate on every tier, and the latest value

        check()
        assert r["intact"] and r["lost"] == 0 and r["points_stored"] == N + 1
        assert (r["conflicts"], r["duplicates_collapsed"]) == (4, 0)
        assert [(w["writer_id"], w["conflicts"]) for w in r["writers"]] == [("w", 4)]
        (raw,) = embedded.call(embedded.server.store.rows("SELECT count() FROM points WHERE run_id = 'fw'"))
        assert raw[0] == N + 1, "a re-sent seq reached the points table"
        assert max(before_hist.values()) < 999 and min(before_hist.values()) > -999
    finally:
        _merge_now(embedded)
    check()
    assert api.receipt("fw")["conflicts"] == 4


def test_resent_seq_with_another_step_keeps_the_old_step(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "fwstep", "project": "fwstep"})
    api.ok("POST", "/v1/ingest", {"points": _pts("fwstep", "w", range(100), range(100), np.arange(100.0))})
    api.wait_intact("fwstep", 100)
    api.ok("POST", "/v1/ingest", {"points": _pts("fwstep", "w", [50], [5000], [1.0])})
    r = _wait_committed(api, "fwstep", 101)
    hist = _history_values(api, "fwstep")
    assert hist[50] == 50.0 and 5000 not in hist and len(hist) == 100
    c = api.ok("GET", "/v1/projects/fwstep/charts", params={"keys": "loss"})
    assert c["latest"]["fwstep"]["loss"] == {"step": 99, "value": 99.0}
    assert c["range"] == [0, 99]
    assert r["intact"] and r["points_stored"] == 100
    assert (r["conflicts"], r["duplicates_collapsed"]) == (1, 0)
    # Another key under the same seq is a conflict too: the seq names one point.
    api.ok("POST", "/v1/ingest", {"points": _pts("fwstep", "w", [51], [51], [51.0], key="acc")})
    r = _wait_committed(api, "fwstep", 102)
    rows = api.ok("GET", "/v1/runs/fwstep/metrics", params={"limit": 1000})
    assert rows["keys"] == ["loss"] and len(rows["rows"]) == 100
    assert (r["points_stored"], r["conflicts"], r["duplicates_collapsed"]) == (100, 2, 0)


def test_identical_resend_is_a_duplicate_not_a_conflict(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "fwdup", "project": "fwdup"})
    pts = _pts("fwdup", "w", range(200), range(200), np.arange(200.0))
    pts[7]["value"] = "not a number"  # a skipped point re-sent is the same point too
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.wait_intact("fwdup", 200)
    api.ok("POST", "/v1/ingest", {"points": pts[:120] + pts[:5]})  # re-sent twice over, in one request
    r = _wait_committed(api, "fwdup", 325)
    assert r["intact"] and r["points_stored"] == 200
    assert (r["duplicates_collapsed"], r["conflicts"]) == (125, 0)
    assert r["writers"][0]["conflicts"] == 0


def _message(org: str, run_id: str, writer: str, seqs, value=lambda s: float(s)) -> bytes:  # noqa: ANN001
    c = RunChunk(run_id)
    for s in seqs:
        c.add(writer, s, s, TS0 + s, "loss", value(s))
    return c.encode(org, TS0)


async def _consume(log: SqliteLog, store, max_writers: int = 100_000, **cfg) -> None:  # noqa: ANN001, ANN003
    consumer = Consumer(log, store, ConsumerConfig(commit_interval_s=0.05, **cfg))
    consumer.first_wins.max_writers = max_writers
    await consumer.start()
    await consumer.wait_idle(30)
    await consumer.stop()


async def test_consumer_restart_reloads_what_is_stored(embedded, tmp_path: Path) -> None:
    """The re-send reaches a consumer that never saw the first value (a restart):
    its state comes from the store. Then a crash before the commit replays it all:
    still one value per seq and the same counts."""
    store = embedded.server.store
    org = "org_fw_" + secrets.token_hex(3)
    run = Run(org, "r", "p", "r", "running", {}, [], 0, None)
    log = SqliteLog(str(tmp_path))
    await log.start()
    await store.command("SYSTEM STOP MERGES points")
    try:
        await log.append(f"{org}/r", [_message(org, "r", "w", range(0, 100))])
        await _consume(log, store)
        assert (await receipt(store, log, run))["points_stored"] == 100
        await log.append(f"{org}/r", [_message(org, "r", "w", range(10, 20), lambda s: -1.0)])  # conflicts
        await log.append(f"{org}/r", [_message(org, "r", "w", range(20, 30))])  # identical re-send
        await log.append(f"{org}/r", [_message(org, "r", "w", range(100, 200))])
        await _consume(log, store)  # a new consumer: nothing in memory
        for attempt in ("after the restart", "after a replay"):
            page = await history(store, org, "r", ["loss"], 0, 10**9, 100_000)
            assert [(row["step"], row["loss"]) for row in page["rows"]] == [(s, float(s)) for s in range(200)], attempt
            (raw,) = await store.rows("SELECT count() FROM points WHERE org = {org:String}", {"org": org})
            assert raw[0] == 200, attempt
            r = await receipt(store, log, run)
            assert (r["points_committed"], r["points_stored"]) == (220, 200), attempt
            assert (r["conflicts"], r["duplicates_collapsed"], r["intact"]) == (10, 10, True), attempt
            # The process died before committing: everything is consumed again, cut differently.
            log._reader_conn.execute("DELETE FROM consumer_offsets")
            log._read_pos = None
            await _consume(log, store, read_messages=1, max_rows=50)
        rows = await store.rows(
            "SELECT seq, kept_value, value, log_offset FROM seq_conflicts FINAL WHERE org = {org:String} ORDER BY seq",
            {"org": org},
        )
        assert [(s, k, v) for s, k, v, _ in rows] == [(s, float(s), -1.0) for s in range(10, 20)]
    finally:
        await store.command("SYSTEM START MERGES points")
        await log.stop()


async def test_two_versions_in_the_table_the_engine_keeps_the_first(embedded) -> None:
    """Should two versions of a point ever meet in the table (written outside the
    consumer, or before this rule), FINAL keeps the earlier log position too."""
    store = embedded.server.store
    org = "org_fwver_" + secrets.token_hex(3)
    await store.command("SYSTEM STOP MERGES points")
    try:
        for offset, value in ((5, 1.0), (9, 999.0)):  # the later message is inserted last
            await store.command(
                "INSERT INTO points (org, run_id, key, writer_id, seq, step, ts, value, log_partition, log_offset, ingested_at)"
                " VALUES ({org:String}, 'r', 'loss', 'w', 0, 0, now64(3), {v:Float64}, 0, {o:UInt64}, now64(3))",
                {"org": org, "v": value, "o": offset},
            )
        page = await history(store, org, "r", ["loss"], 0, 10, 10)
        assert [row["loss"] for row in page["rows"]] == [1.0]
    finally:
        await store.command("SYSTEM START MERGES points")
    await store.command("OPTIMIZE TABLE points FINAL")
    rows = await store.rows("SELECT value FROM points WHERE org = {org:String}", {"org": org})
    assert rows == [(1.0,)]


class _CountingStore:
    """The real store, counting the queries the consumer makes."""

    def __init__(self, store) -> None:  # noqa: ANN001
        self.store = store
        self.queries: list[str] = []

    async def rows(self, sql, params=None):  # noqa: ANN001, ANN201
        self.queries.append(sql)
        return await self.store.rows(sql, params)

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self.store, name)


async def test_the_common_case_reads_nothing_but_the_ledger_once(embedded, tmp_path: Path) -> None:
    """New seqs in order (what the SDK sends): one ledger read per writer, no
    point read; only a batch that overlaps what is stored reads points."""
    org = "org_fwcheap_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    counting = _CountingStore(embedded.server.store)
    for start in range(0, 2000, 100):
        await log.append(f"{org}/r", [_message(org, "r", w, range(start, start + 100)) for w in ("a", "b")])
    await _consume(log, counting, read_messages=3, max_rows=300)  # many batches
    assert len(counting.queries) == 1 and "FROM ledger" in counting.queries[0]
    await log.append(f"{org}/r", [_message(org, "r", "a", range(1990, 2010))])  # overlaps the stored tail
    counting.queries.clear()
    await _consume(log, counting)
    assert sum("FROM points" in q for q in counting.queries) == 1
    r = await receipt(embedded.server.store, log, Run(org, "r", "p", "r", "running", {}, [], 0, None))
    assert (r["points_stored"], r["duplicates_collapsed"], r["conflicts"]) == (4010, 10, 0)
    await log.stop()


def test_seq_ranges_stay_bounded_and_never_forget_a_stored_seq() -> None:
    from arwx.consumer.first_wins import _Ranges

    rng = np.random.default_rng(5)
    r = _Ranges()
    added: list[tuple[int, int]] = []
    for _ in range(2000):
        lo = int(rng.integers(0, 100_000))
        hi = lo + int(rng.integers(0, 50))
        r.add(lo, hi, 8)
        added.append((lo, hi))
        assert len(r.lo) <= 8 and r.lo == sorted(r.lo)
        assert all(a <= b < c for a, b, c in zip(r.lo, r.hi, r.lo[1:]))
    assert all(r.overlaps(lo, hi) for lo, hi in added)
    assert all(r.overlaps(s, s) for lo, hi in added[-50:] for s in range(lo, hi + 1))
    fresh = _Ranges()
    for lo in range(0, 1000, 10):  # a writer going on: one range, extended in place
        fresh.add(lo, lo + 9, 8)
    assert (fresh.lo, fresh.hi) == ([0], [999]) and not fresh.overlaps(1000, 2000)


async def test_a_writer_evicted_from_memory_is_read_again(embedded, tmp_path: Path) -> None:
    """Memory holds one writer here: the others are reloaded from the store each time."""
    store = embedded.server.store
    org = "org_fwlru_" + secrets.token_hex(3)
    log = SqliteLog(str(tmp_path))
    await log.start()
    for start in (0, 50):
        for w in ("a", "b", "c"):
            await log.append(f"{org}/r", [_message(org, "r", w, range(start, start + 50))])
    for w in ("a", "b", "c"):
        await log.append(f"{org}/r", [_message(org, "r", w, range(40, 60), lambda s: -s)])
    await _consume(log, store, max_writers=1, read_messages=1, max_rows=10)
    r = await receipt(store, log, Run(org, "r", "p", "r", "running", {}, [], 0, None))
    assert (r["points_stored"], r["conflicts"], r["duplicates_collapsed"]) == (300, 60, 0)
    page = await history(store, org, "r", ["loss"], 0, 10**9, 100_000)
    assert sorted(row["loss"] for row in page["rows"]) == sorted(float(s) for s in range(100) for _ in "abc")
    await log.stop()
