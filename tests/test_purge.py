"""Purge completeness and blob garbage collection.

- On a ClickHouse server (the HTTP stand-in over chDB, ``tests/clickhouse_http.py``, as the
  distributed store talks to it): a purged run leaves no row in any table, counted there;
  its run files go from the catalog; after ``arwx blobs gc`` the blob only it named is gone
  and the blob it shared with another run stays, readable.
- The catalog side on SQLite and PostgreSQL: every table naming a run is purged, detached or
  revoked as ``arwx.purge_catalog.PLAN`` says, and nothing of another run is touched.
- Which ClickHouse tables a purge mutates, also on a cluster (Distributed tables).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, LargeBinary, select

from arwx.catalog import Catalog, tables
from arwx.errors import Conflict
from arwx.purge import Target, count_rows, plan_targets, run_targets
from arwx.purge_catalog import PLAN, check_purgeable, purge_catalog
from arwx.store.clickhouse_store import ClickHouseStore
from tests.helpers import ROOT, Api, ServerProcess, catalog_url_for, free_port, points
from tests.topology import Proc

E = "/api/v1/experiments"


@pytest.fixture(scope="module")
def ch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """``arwx server`` whose store is a ClickHouse server (the stand-in), and that server's URL."""
    work = tmp_path_factory.mktemp("arwx-purge-ch")
    port = free_port()
    ch = Proc(
        "clickhouse", [sys.executable, str(ROOT / "tests" / "clickhouse_http.py"), "--watch-stdin",
                       "--data-dir", str(work / "clickhouse"), "--port", str(port)],
        dict(os.environ, PYTHONUNBUFFERED="1"), "listening on", work,
    ).start()
    url = f"http://default:@127.0.0.1:{port}/default"
    data = work / "data"
    data.mkdir()  # a ClickHouse server makes no first key: the key comes from the catalog below
    catalog = catalog_url_for(data) or f"sqlite:///{data / 'catalog.sqlite'}"
    srv = ServerProcess(data, env={"ARWX_CLICKHOUSE_URL": url}, catalog=catalog).start()
    srv.key = asyncio.run(_admin_key(catalog))
    try:
        yield srv, url
    finally:
        srv.terminate()
        ch.stop()


async def _admin_key(catalog_url: str) -> str:
    from arwx.tenancy import Tenancy

    catalog = Catalog.open(catalog_url, Path("/nonexistent"))
    await catalog.start()
    try:
        tenancy = Tenancy(catalog)
        org = await tenancy.create_org("purger")
        return (await tenancy.create_key(org, "admin", frozenset({"read", "write", "admin"})))[1]
    finally:
        await catalog.stop()


def _rows_of(url: str, org: str, ids: list[str]) -> dict[str, int]:
    async def count() -> dict[str, int]:
        store = ClickHouseStore(url)
        await store.start()
        try:
            return await count_rows(store, await run_targets(store), org, ids)
        finally:
            await store.stop()

    return asyncio.run(count())


def _ml(api: Api, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, api.url + E + path, headers={"Authorization": f"Bearer {api.key}"},
                            timeout=60, **kw)


def _log_file(api: Api, run_id: str, name: str, data: bytes) -> str:
    r = _ml(api, "POST", f"/runs/{run_id}/log-artifact", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()["sha256"]


def _blob_file(data_dir: Path, sha: str) -> Path:
    return data_dir / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha


def test_purge_on_a_clickhouse_server_leaves_no_row_and_gc_keeps_only_shared_blobs(ch_server) -> None:
    srv, url = ch_server
    api = srv.api()
    exp = _ml(api, "POST", "", json={"name": "purge-ch"}).json()
    gone = _ml(api, "POST", "/runs", json={"experiment_id": exp["experiment_id"], "name": "gone"}).json()["run_id"]
    kept = _ml(api, "POST", "/runs", json={"experiment_id": exp["experiment_id"], "name": "kept"}).json()["run_id"]
    for run_id in (gone, kept):
        r = _ml(api, "POST", f"/runs/{run_id}/log-batch", json={
            "metrics": [{"key": "loss", "value": 1.0 / (s + 1), "step": s} for s in range(40)],
            "params": [{"key": "lr", "value": "0.1"}]})
        assert r.status_code == 200, r.text
    api.ok("POST", "/v1/ingest", {"points": points(gone, "w0", range(300))})
    shared, own = os.urandom(40_000), os.urandom(30_000)
    shared_sha = _log_file(api, gone, "model.bin", shared)
    own_sha = _log_file(api, gone, "own.bin", own)
    assert _log_file(api, kept, "model.bin", shared) == shared_sha  # the same bytes: one blob, two rows
    api.wait_intact(gone, 340)
    api.wait_intact(kept, 40)
    org = _org_of(url, gone)
    before = _rows_of(url, org, [gone])
    assert before["points"] == 340 and before["ledger"] >= 1 and before["chart_cells"] > 0, before
    kept_before = _rows_of(url, org, [kept])

    out = api.ok("POST", f"/v1/runs/{gone}/purge", params={"confirm": gone})
    assert out["purged"] is True and out["storage_ids"] == [gone]
    assert out["removed"]["points"] == 340
    assert out["catalog"]["compat_run_files.run_id"] == 2
    # Counted in ClickHouse itself: not one row of the purged run in any table.
    assert _rows_of(url, org, [gone]) == dict.fromkeys(before, 0)
    kept_after = _rows_of(url, org, [kept])
    # The other run keeps every row (``runs`` is a versioned mirror whose versions ClickHouse may merge).
    assert kept_after.pop("runs") >= 1 and kept_before.pop("runs") >= 1
    assert kept_after == kept_before
    assert api.request("GET", f"/v1/runs/{gone}")[0] == 404
    assert _ml(api, "GET", f"/runs/{gone}").status_code == 404
    assert api.request("POST", f"/v1/runs/{gone}/purge", params={"confirm": gone})[0] == 404  # done: nothing left

    # Both blobs are still stored: collection is separate, and nothing here is old.
    assert _blob_file(srv.data_dir, own_sha).exists() and _blob_file(srv.data_dir, shared_sha).exists()
    gc = [sys.executable, "-m", "arwx.cli", "blobs", "gc", "--data-dir", str(srv.data_dir),
          "--catalog", srv.catalog or ""]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    dry = subprocess.run([*gc, "--grace", "0", "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout.strip().splitlines()[-1])
    assert report["dry_run"] is True and report["blobs_deleted"] >= 1
    assert _blob_file(srv.data_dir, own_sha).exists()
    # The default grace (a day): nothing this young goes.
    young = subprocess.run(gc, env=env, capture_output=True, text=True, timeout=120)
    assert young.returncode == 0 and json.loads(young.stdout.strip().splitlines()[-1])["blobs_deleted"] == 0
    done = subprocess.run([*gc, "--grace", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr  # a grace of 0 beside a running server is said to be unsafe
    assert not _blob_file(srv.data_dir, own_sha).exists()
    assert _blob_file(srv.data_dir, shared_sha).exists()
    status, _ = api.request("GET", f"/v1/blobs/{own_sha}")
    assert status == 404
    r = requests.get(f"{api.url}/v1/blobs/{shared_sha}", headers={"Authorization": f"Bearer {api.key}"}, timeout=60)
    assert r.status_code == 200 and r.content == shared
    files = _ml(api, "GET", f"/runs/{kept}").json()
    assert "model.bin" in json.dumps(files)


def _org_of(url: str, run_id: str) -> str:
    """The org id the run's points are stored under (the server made the org at first start)."""
    async def one() -> str:
        store = ClickHouseStore(url)
        await store.start()
        try:
            ((org,),) = await store.rows("SELECT any(org) FROM ledger WHERE run_id = {r:String}", {"r": run_id})
            return str(org)
        finally:
            await store.stop()

    return asyncio.run(one())


# --- The catalog side, on SQLite and PostgreSQL -------------------------------------------------


def _filler(col, i: int):  # noqa: ANN001, ANN202 - a Column
    t = col.type
    if isinstance(t, JSON):
        return {}
    if isinstance(t, Boolean):
        return False
    if isinstance(t, (BigInteger, Integer)):
        return i
    if isinstance(t, Float):
        return 0.0
    if isinstance(t, LargeBinary):
        return b""
    return f"v{i}"  # unique per row (unique columns), short (VARCHAR(16))


async def _insert_naming(conn, column, org: str, run_id: str, i: int) -> None:  # noqa: ANN001
    """A row of ``column``'s table for ``run_id``, every other column filled plausibly."""
    table = column.table
    values = {c.name: _filler(c, i) for c in table.columns if not c.nullable and c.autoincrement is not True}
    values.update(org=org, **{column.name: run_id})
    if table is tables.wild_runs:
        values["sweep_id"] = "sweep"
    if table is tables.api_keys:
        values["revoked_at"] = None
    for c in table.columns:
        if c.name == "seq" and c.primary_key:
            values.pop("seq", None)
    await conn.execute(table.insert().values(**values))


async def test_purge_catalog_removes_detaches_and_revokes_only_the_runs_rows(catalog_url: str, tmp_path: Path) -> None:
    catalog = Catalog.open(catalog_url, tmp_path)
    await catalog.start()
    try:
        async with catalog.begin() as conn:
            for org in ("o1", "o2"):
                await conn.execute(tables.orgs.insert().values(org=org, name=org, created_at=0))
                await conn.execute(tables.wild_sweeps.insert().values(
                    org=org, id="sweep", name="s", goal="", project="p", chat_session_id="", created_by="k",
                    created_at=0))
            i = 0
            for _, col in PLAN:
                # The run, an attempt of it, another run of the org, and the same id in another org.
                for org, run_id in (("o1", "r"), ("o1", "r~1"), ("o1", "other"), ("o2", "r")):
                    i += 1
                    await _insert_naming(conn, col, org, run_id, i)
        changed = await purge_catalog(catalog, "o1", ["r", "r~1"])
        async with catalog.connect() as conn:
            for action, col in PLAN:
                t = col.table
                rows = {(r[0], r[1]) for r in await conn.execute(select(t.c.org, col))}
                revoked = {r[0] for r in await conn.execute(select(t.c.org).where(col == "r", t.c.revoked_at.is_not(None)))} \
                    if t is tables.api_keys else set()
                if action == "delete":
                    assert rows == {("o1", "other"), ("o2", "r")}, (t.name, rows)
                    assert changed[f"{t.name}.{col.name}"] == 2
                elif action == "detach":
                    assert rows == {("o1", None), ("o1", "other"), ("o2", "r")}, (t.name, rows)
                    assert changed[f"{t.name}.{col.name}"] == 2
                elif action == "revoke":
                    assert ("o1", "r") in rows and revoked == {"o1"}, (t.name, rows, revoked)
                    assert changed[f"{t.name}.{col.name}"] == 2
                else:
                    assert ("o1", "r") in rows and f"{t.name}.{col.name}" not in changed
        # Asked again (a retry): nothing more changes.
        assert await purge_catalog(catalog, "o1", ["r", "r~1"]) == {}
    finally:
        await catalog.stop()


async def test_a_wild_run_still_executing_cannot_be_purged(tmp_path: Path) -> None:
    catalog = Catalog.open("", tmp_path)
    await catalog.start()
    try:
        async with catalog.begin() as conn:
            await conn.execute(tables.orgs.insert().values(org="o1", name="o1", created_at=0))
            await conn.execute(tables.wild_sweeps.insert().values(
                org="o1", id="sweep", name="s", goal="", project="p", chat_session_id="", created_by="k", created_at=0))
            for i, status in enumerate(("created", "queued", "running", "finished", "failed", "stopped", "lost")):
                await _insert_naming(conn, tables.wild_runs.c.id, "o1", status, i)
                await conn.execute(tables.wild_runs.update().where(tables.wild_runs.c.id == status).values(status=status))
        for status in ("queued", "running"):
            with pytest.raises(Conflict, match=f"is {status}: stop it first"):
                await check_purgeable(catalog, "o1", status)
        for status in ("created", "finished", "failed", "stopped", "lost", "not-a-wild-run"):
            await check_purgeable(catalog, "o1", status)
        await check_purgeable(catalog, "o2", "running")  # another org's run of that id is not this one
    finally:
        await catalog.stop()


def test_every_catalog_column_naming_a_run_has_a_purge_action() -> None:
    planned = {(col.table.name, col.name) for _, col in PLAN}
    naming = {
        (t.name, c.name) for t in tables.metadata.tables.values() for c in t.columns if c.name.endswith("run_id")
    } | {("wild_runs", "id")}
    assert naming <= planned, naming - planned
    assert {a for a, _ in PLAN} == {"delete", "detach", "revoke", "keep"}
    assert PLAN[-1][1] is tables.runs.c.run_id  # the run's own row goes last


# --- Which ClickHouse tables, embedded and on a cluster ------------------------------------------


def test_purge_targets_on_one_server_and_on_a_cluster() -> None:
    one = plan_targets([
        ("points", "ReplacingMergeTree", "ReplacingMergeTree(first_wins) ORDER BY …"),
        ("runs", "ReplacingMergeTree", "…"),
        ("point_rollups_mv", "MaterializedView", ""),
    ])
    assert one == [Target("`points`", "`points`"), Target("`runs`", "`runs`")]
    assert one[0].delete_sql() == (
        "ALTER TABLE `points` DELETE WHERE org = {org:String} AND run_id IN {ids:Array(String)} "
        "SETTINGS mutations_sync = 2"
    )
    # As system.tables shows deploy/clickhouse/cluster.sql: Distributed tables over replicated local ones.
    cluster = plan_targets([
        ("points", "Distributed", "Distributed('arwx', 'default', 'points_local', cityHash64(org, run_id))"),
        ("points_local", "ReplicatedReplacingMergeTree", "ReplicatedReplacingMergeTree('/clickhouse/…')"),
        ("ledger", "Distributed", "Distributed(arwx, currentDatabase(), ledger_local, cityHash64(org, run_id))"),
        ("ledger_local", "ReplicatedReplacingMergeTree", "…"),
        ("extra", "MergeTree", "MergeTree ORDER BY org"),
    ])
    assert cluster == [
        Target("`extra`", "`extra`"),
        Target("`ledger`", "`ledger_local`", "arwx"),
        Target("`points`", "`default`.`points_local`", "arwx"),
    ]
    assert cluster[2].delete_sql().startswith("ALTER TABLE `default`.`points_local` ON CLUSTER `arwx` DELETE WHERE ")
    with pytest.raises(ValueError, match="Distributed"):
        plan_targets([("points", "Distributed", "Distributed(oops)")])


async def test_the_periodic_collection_runs_and_keeps_what_is_young(tmp_path: Path) -> None:
    from arwx.blobs.directory import DirectoryBlobStore
    from arwx.blobs.gc import PeriodicGc

    catalog = Catalog.open("", tmp_path)
    await catalog.start()
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    await blobs.start()
    async with catalog.begin() as conn:
        await conn.execute(tables.orgs.insert().values(org="o1", name="o1", created_at=0))

    async def one() -> AsyncIterator[bytes]:
        yield b"unnamed but young"

    info = await blobs.put("o1", one())
    gc = PeriodicGc(blobs, catalog, interval_s=0.05, grace_s=1200)
    await gc.start()
    try:
        for _ in range(400):  # bounded: 20 s
            if gc.last is not None:
                break
            await asyncio.sleep(0.05)
        assert gc.last is not None and gc.last.refs_kept == 1 and gc.last.blobs_deleted == 0
        assert REGISTRY.get_sample_value("arwx_blob_gc_runs_total", {"result": "ok"}) >= 1
        assert await blobs.size("o1", info.sha) == len(b"unnamed but young")
    finally:
        await gc.stop()
        await catalog.stop()
