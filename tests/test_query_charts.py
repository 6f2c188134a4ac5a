"""Charts against the same downsampling computed independently (numpy) on real data.

Points go through the whole pipeline (HTTP → log → consumer → chDB, with the
rollup materialized views), then every bucket is compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers import Api, wait_for

N = 6000
TS0 = 1.7e9


def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.cumsum(rng.normal(0, 1, n))
    v[rng.choice(n, 12, replace=False)] += rng.choice([-500.0, 500.0], 12)  # spikes must survive
    return v


def _pts(run: str, writer: str, key: str, steps: np.ndarray, vals: np.ndarray, seq0: int = 0) -> list[dict]:
    return [
        {"run_id": run, "writer_id": writer, "seq": seq0 + i, "step": int(s), "key": key, "value": float(v), "ts": TS0 + float(s)}
        for i, (s, v) in enumerate(zip(steps, vals))
    ]


def _ingest(api: Api, pts: list[dict], chunk: int = 1500) -> None:
    for i in range(0, len(pts), chunk):
        api.ok("POST", "/v1/ingest", {"points": pts[i : i + chunk]})


def _buckets(steps: np.ndarray, c: dict) -> tuple[np.ndarray, object]:
    """Each step's bucket as a chart of ``samples`` buckets assigns it: the
    range in ``samples`` equal parts, each cell (2^tier steps) whole in the
    bucket of its start; and each bucket's x (its nominal start step)."""
    lo, hi = c["range"]
    n, span = c["samples"], hi - lo + 1
    cell = (steps >> c["tier"]) << c["tier"]
    return np.clip(((cell - lo) * n) // span, 0, n - 1), lambda b: lo + -(-int(b) * span // n)


def _aligned(width: int) -> object:
    """Buckets of a given width (``interval``), aligned to multiples of it."""
    return lambda steps, c: (steps // width, lambda b: int(b) * width)


def _expected(steps: np.ndarray, vals: np.ndarray, c: dict, lo: int, hi: int, buckets=_buckets) -> dict:  # noqa: ANN001
    """min/max/first/last/avg per bucket of the chart ``c``."""
    keep = (steps >= lo) & (steps <= hi) & np.isfinite(vals)
    s, v = steps[keep], vals[keep]
    b, x_of = buckets(s, c)
    out: dict[str, list] = {k: [] for k in ("x", "first", "last", "min", "max", "min_x", "max_x", "avg")}
    for bucket in np.unique(b):
        m = b == bucket
        bs, bv = s[m], v[m]
        out["x"].append(x_of(bucket))
        out["first"].append(float(bv[0]))
        out["last"].append(float(bv[-1]))
        out["min"].append(float(bv.min()))
        out["max"].append(float(bv.max()))
        out["min_x"].append(int(bs[bv.argmin()]))
        out["max_x"].append(int(bs[bv.argmax()]))
        out["avg"].append(float(bv.mean()))
    return out


@pytest.fixture
def run_loss(api: Api) -> tuple[Api, np.ndarray, np.ndarray]:
    """One run, one writer, N points of "loss" (steps 0, 2, 4, ...) with spikes and a few NaNs."""
    api.ok("POST", "/v1/runs", {"id": "r1", "project": "p"})
    steps = np.arange(N, dtype=np.int64) * 2
    vals = _values(N, 1)
    pts = _pts("r1", "w0", "loss", steps, vals)
    for i in (5, 999, 4000):  # skipped on ingest, stored as NaN placeholders
        pts[i]["value"] = "nan-ish"
        vals[i] = np.nan
    _ingest(api, pts)
    api.wait_intact("r1", N)
    return api, steps, vals


def test_minmax_buckets_match_numpy_on_every_tier(run_loss) -> None:
    api, steps, vals = run_loss
    for samples, since, until in ((50, None, None), (8, None, None), (300, 37, 9001), (2000, 100, 300)):
        params = {"keys": "loss", "samples": samples}
        if since is not None:
            params.update(since_step=since, max_step=until)
        c = api.ok("GET", "/v1/projects/p/charts", params=params)
        (s,) = c["series"]
        lo, hi = c["range"]
        assert (lo, hi) == ((since, until) if since is not None else (0, int(steps[-1])))
        assert c["bucket_width"] == (hi - lo + 1) / samples
        # Exactly the requested count whenever there are enough steps for it.
        assert len(s["x"]) == min(samples, len(steps[(steps >= lo) & (steps <= hi)])), (samples, len(s["x"]))
        exp = _expected(steps, vals, c, lo, hi)
        for col in ("x", "first", "last", "min", "max", "min_x", "max_x"):
            assert s[col] == exp[col], (samples, col)
        assert s["value"] == exp["last"]  # the line is the last value (W&B full fidelity)
        assert s["skipped"] == 3
    # A bucket width instead of a count: aligned multiples of it (a multiple of the cell).
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "interval": 1000})
    (s,) = c["series"]
    w = c["bucket_width"]
    assert w % (1 << c["tier"]) == 0 and w >= 1000
    exp = _expected(steps, vals, c, 0, int(steps[-1]), _aligned(w))
    assert s["x"] == exp["x"] and s["min"] == exp["min"] and s["last"] == exp["last"]
    # Coarse requests really read rollups, fine ones raw points.
    assert api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 8})["tier"] >= 8
    assert api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 5000})["tier"] == 0


def test_every_extreme_survives(run_loss) -> None:
    api, steps, vals = run_loss
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 20})
    (s,) = c["series"]
    finite = vals[np.isfinite(vals)]
    assert min(s["min"]) == finite.min() and max(s["max"]) == finite.max()
    # Each spike shows in its bucket: the band reaches at least as far as the spike.
    jumps = np.abs(np.diff(np.nan_to_num(vals)))
    for i in np.flatnonzero(jumps > 300) + 1:
        if not np.isfinite(vals[i]):
            continue
        b = s["x"].index(_expected(steps[i : i + 1], vals[i : i + 1], c, 0, int(steps[-1]))["x"][0])
        assert s["min"][b] <= vals[i] <= s["max"][b]
        assert s["max"][b] >= vals[i] if vals[i] > vals[i - 1] else s["min"][b] <= vals[i]


def test_avg_last_lttb_and_smoothing(run_loss) -> None:
    api, steps, vals = run_loss
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 40, "agg": "avg"})
    exp = _expected(steps, vals, c, 0, int(steps[-1]))
    assert np.allclose(c["series"][0]["value"], exp["avg"], rtol=1e-12, atol=1e-9)
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 40, "agg": "last", "smoothing": 0.6})
    exp = _expected(steps, vals, c, 0, int(steps[-1]))
    s = c["series"][0]
    assert s["value"] == exp["last"]
    acc, wsum, sm = 0.0, 0.0, []
    for v in exp["last"]:
        acc, wsum = acc * 0.6 + 0.4 * v, wsum * 0.6 + 0.4
        sm.append(acc / wsum)
    assert np.allclose(s["smoothed"], sm)
    # Asked for a few arrays, a rollup chart computes those (the smoothing's line too) and the same numbers.
    full = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 40, "smoothing": 0.6})["series"][0]
    some = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 40, "smoothing": 0.6,
                                                          "fields": "max_x,smoothed"})["series"][0]
    assert set(some) == {"run_id", "key", "writer_id", "x", "skipped", "max_x", "smoothed"}
    assert (some["x"], some["max_x"], some["smoothed"]) == (full["x"], full["max_x"], full["smoothed"])
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 100, "agg": "lttb"})
    s = c["series"][0]
    raw = {int(x): v for x, v in zip(steps, vals) if math.isfinite(v)}
    assert 2 < len(s["x"]) <= 100
    assert all(raw[x] == y for x, y in zip(s["x"], s["value"]))  # real points only
    assert s["x"][0] == 0 and s["x"][-1] == int(steps[-1])


def test_time_axes_and_grafana_frames(run_loss) -> None:
    api, steps, vals = run_loss
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "x": "relative", "maxDataPoints": 30})
    (s,) = c["series"]
    finite = vals[np.isfinite(vals)]
    assert len(s["x"]) <= 31 and s["x"] == sorted(s["x"]) and s["x"][0] == 0
    assert min(s["min"]) == finite.min() and max(s["max"]) == finite.max()
    # Wall time, zoomed to the first half: only points at or before the cut.
    cut = int((TS0 + steps[N // 2]) * 1000)
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "x": "time", "from": int(TS0 * 1000), "to": cut, "intervalMs": 100_000})
    (s,) = c["series"]
    assert c["bucket_width"] == 100_000 and all(int(TS0 * 1000) <= x <= cut for x in s["x"])
    frames = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "x": "time", "samples": 10, "format": "grafana"})
    (f,) = frames
    assert [fl["name"] for fl in f["schema"]["fields"]] == ["time", "value", "min", "max"]
    assert f["schema"]["fields"][1]["labels"] == {"run": "r1", "key": "loss", "writer": "w0"}
    assert len(f["data"]["values"][0]) == len(f["data"]["values"][1]) <= 11


def test_writers_per_and_combined(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "ddp", "project": "p"})
    steps = np.arange(1000, dtype=np.int64)
    per = {f"rank{i}": _values(1000, 10 + i) for i in range(3)}
    per["rank2"] = per["rank2"] + 50  # the straggler
    for w, v in per.items():
        _ingest(api, _pts("ddp", w, "loss", steps, v))
    api.wait_intact("ddp", 3000)
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 25, "writers": "per"})
    assert [s["writer_id"] for s in c["series"]] == ["rank0", "rank1", "rank2"]
    for s in c["series"]:
        assert s["max"] == _expected(steps, per[s["writer_id"]], c, 0, 999)["max"]
    c = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 25, "writers": "combined"})
    (s,) = c["series"]
    lasts = np.array([_expected(steps, per[k], c, 0, 999)["last"] for k in sorted(per)])
    assert np.allclose(s["value"], lasts.mean(axis=0))
    assert s["min"] == list(lasts.min(axis=0)) and s["max"] == list(lasts.max(axis=0))
    assert set(s["writers"]) == {3}
    band = api.ok("GET", "/v1/projects/p/charts", params={"keys": "loss", "samples": 25, "writers": "combined",
                                                          "fields": "min"})["series"][0]
    assert (band["x"], band["min"]) == (s["x"], s["min"]) and "value" not in band and "writers" not in band


def test_many_runs_default_and_latest(api: Api) -> None:
    for r in ("a", "b"):
        api.ok("POST", "/v1/runs", {"id": r, "project": "multi"})
        pts = _pts(r, "w", "acc", np.arange(200), np.arange(200) * (1.0 if r == "a" else 2.0))
        pts += _pts(r, "w", "lr", np.arange(200), np.full(200, 0.1), seq0=200)
        _ingest(api, pts)
        api.wait_intact(r, 400)
    c = api.ok("GET", "/v1/projects/multi/charts")
    assert c["keys"] == ["acc", "lr"] and sorted(c["runs"]) == ["a", "b"]
    assert {(s["run_id"], s["key"]) for s in c["series"]} == {(r, k) for r in "ab" for k in ("acc", "lr")}
    assert c["latest"]["b"]["acc"] == {"step": 199, "value": 398.0}
    c = api.ok("GET", "/v1/projects/multi/charts", params={"runs": "a", "keys": "acc"})
    assert [s["run_id"] for s in c["series"]] == ["a"]
    assert api.get("/v1/projects/multi/charts", runs="a,nope")[0] == 404
    for bad in ({"agg": "median"}, {"x": "epoch"}, {"samples": 1}, {"smoothing": 1.5}, {"writers": "all"}):
        assert api.get("/v1/projects/multi/charts", **bad)[0] == 400, bad


def test_no_duplicate_effect_with_merges_stopped(embedded, api: Api) -> None:
    """A client re-send, cut differently, with merges stopped: the chart is what
    numpy says, unchanged."""
    store = embedded.server.store
    api.ok("POST", "/v1/runs", {"id": "dup", "project": "dups"})
    steps = np.arange(3000, dtype=np.int64)
    vals = _values(3000, 7)
    pts = _pts("dup", "w", "loss", steps, vals)
    for t in ("points", "chart_cells"):
        embedded.call(store.command(f"SYSTEM STOP MERGES {t}"))
    try:
        _ingest(api, pts)
        api.wait_intact("dup", 3000)
        before = {
            agg: api.ok("GET", "/v1/projects/dups/charts", params={"keys": "loss", "samples": s, "agg": agg})
            for agg, s in (("minmax", 30), ("avg", 30), ("last", 7))
        }
        (cells,) = embedded.call(store.rows("SELECT count() FROM chart_cells WHERE run_id = 'dup' AND tier = 4"))
        _ingest(api, pts[500:2100], chunk=700)  # the client never saw the answer: re-send, cut differently
        wait_for(lambda: api.receipt("dup")["points_committed"] == 4600, 60)
        r = api.wait_intact("dup", 3000)
        assert r["duplicates_collapsed"] == 1600 and r["conflicts"] == 0
        # The consumer drops re-sent seqs before inserting (first value wins), so
        # the re-send never reaches the rollup view (merges are stopped).
        assert embedded.call(store.rows("SELECT count() FROM chart_cells WHERE run_id = 'dup' AND tier = 4")) == [cells]
        for agg, s in (("minmax", 30), ("avg", 30), ("last", 7)):
            after = api.ok("GET", "/v1/projects/dups/charts", params={"keys": "loss", "samples": s, "agg": agg})
            assert after["series"] == before[agg]["series"], agg
        c = before["minmax"]
        exp = _expected(steps, vals, c, 0, 2999)
        assert c["series"][0]["min"] == exp["min"] and c["series"][0]["first"] == exp["first"]
        page = api.ok("GET", "/v1/runs/dup/metrics", params={"limit": 10_000})
        assert len(page["rows"]) == 3000
    finally:
        for t in ("points", "chart_cells"):
            embedded.call(store.command(f"SYSTEM START MERGES {t}"))


def test_org_isolation(api: Api, embedded) -> None:
    api.ok("POST", "/v1/runs", {"id": "mine", "project": "secret"})
    _ingest(api, _pts("mine", "w", "loss", np.arange(10), np.arange(10.0)))
    api.wait_intact("mine", 10)
    other = api.with_key(embedded.new_org_key("other"))
    assert other.get("/v1/projects/secret/charts")[0] == 404
    assert other.get("/v1/projects/secret/charts", runs="mine")[0] == 404
    assert other.get("/v1/projects/secret")[0] == 404
    # Same project name in the other org: it sees only its own runs.
    other.ok("POST", "/v1/runs", {"id": "theirs", "project": "secret"})
    c = other.ok("GET", "/v1/projects/secret/charts", params={"keys": "loss"})
    assert c["runs"] == ["theirs"] and c["series"] == []
    assert other.get("/v1/projects/secret/charts", runs="mine")[0] == 404


def test_a_store_made_before_chart_cells_is_filled_once_at_start(embedded, api: Api) -> None:
    """Points stored while no chart_cells view existed (a store of the older
    schema, with its point_rollups table and view) are charted exactly after
    the schema is applied again at start; the old table and view are gone, and
    a second start (or a fill overlapping the view's inserts) changes nothing."""
    import pyarrow as pa

    from arwx.store.schema import apply_schema

    store = embedded.server.store
    api.ok("POST", "/v1/runs", {"id": "old", "project": "olds"})
    org = embedded.call(embedded.server.tenancy.authenticate(api.key)).org
    steps = np.arange(0, 9000, 3, dtype=np.uint64)
    vals = _values(len(steps), 11)
    n = len(steps)
    ts = (np.int64(TS0 * 1000) + steps.astype(np.int64)).astype("datetime64[ms]")
    table = pa.table({
        "org": [org] * n, "run_id": ["old"] * n, "key": ["loss"] * n, "writer_id": ["w"] * n,
        "seq": pa.array(np.arange(n, dtype=np.uint64)), "step": pa.array(steps), "ts": pa.array(ts, pa.timestamp("ms", "UTC")),
        "value": pa.array(vals), "log_partition": pa.array(np.zeros(n, np.uint32)),
        "log_offset": pa.array(np.arange(n, dtype=np.uint64)), "ingested_at": pa.array(ts, pa.timestamp("ms", "UTC")),
    })
    for sql in (
        "DROP VIEW chart_cells_mv",
        "CREATE TABLE point_rollups (org String) ENGINE = MergeTree ORDER BY org",
        "CREATE MATERIALIZED VIEW point_rollups_mv TO point_rollups AS SELECT org FROM points",
        "DELETE FROM store_info WHERE name = 'filled:chart_cells'",
    ):
        embedded.call(store.command(sql))
    embedded.call(store.insert("points", table))
    assert embedded.call(store.rows("SELECT count() FROM chart_cells WHERE run_id = 'old'")) == [(0,)]
    assert api.ok("GET", "/v1/projects/olds/charts", params={"keys": "loss"})["series"] == []

    embedded.call(apply_schema(store))  # what every start does
    tables = {r[0] for r in embedded.call(store.rows("SELECT name FROM system.tables WHERE database = currentDatabase()"))}
    assert "point_rollups" not in tables and "point_rollups_mv" not in tables and "chart_cells_mv" in tables
    charts = []
    for samples in (40, 100):
        c = api.ok("GET", "/v1/projects/olds/charts", params={"keys": "loss", "samples": samples})
        assert c["tier"] > 0
        exp = _expected(steps.astype(np.int64), vals, c, 0, int(steps[-1]))
        for col in ("x", "first", "last", "min", "max", "min_x", "max_x"):
            assert c["series"][0][col] == exp[col], (samples, col)
        charts.append(c)
    assert c["latest"]["old"]["loss"] == {"step": int(steps[-1]), "value": float(vals[-1])}

    # Filled once: a second start leaves the marker alone; a forced second fill changes no chart.
    embedded.call(apply_schema(store))
    assert embedded.call(store.rows("SELECT count() FROM store_info WHERE name = 'filled:chart_cells'")) == [(1,)]
    embedded.call(store.command("DELETE FROM store_info WHERE name = 'filled:chart_cells'"))
    embedded.call(apply_schema(store))
    for samples, before in zip((40, 100), charts):
        assert api.ok("GET", "/v1/projects/olds/charts", params={"keys": "loss", "samples": samples}) == before
