"""Start-up: a catalog without its store, or a store without its catalog, is never a first start
(``arwx.datadir.check_catalog``).

Real ``arwx server`` processes on real data directories; each case removes or
swaps one half and checks the start is refused with a message that says
which, and that nothing was created (no new default org, no new key). The
embedded log's own check (the log fed another store) is tested in
test_startup_checks; here the log goes with the half that is removed, so the
catalog's check is the one that speaks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, ServerProcess, free_port


def _used(data: Path, run: str = "r") -> str:
    """A data directory with a run in it; the first key."""
    srv = ServerProcess(data, catalog="").start()  # the data directory's own SQLite catalog
    try:
        api = srv.api()
        api.ok("POST", "/v1/runs", {"id": run})
        api.ok("POST", "/v1/ingest", {"points": [{"run_id": run, "writer_id": "w", "seq": 0, "step": 0, "key": "k", "value": 1}]})
        api.wait_intact(run, 1)
    finally:
        assert srv.terminate() == 0, srv.logs()
    assert srv.key
    return srv.key


def _start_fails(data: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    out = subprocess.run(
        [sys.executable, "-m", "arwx.cli", "server", "--port", str(free_port()), "--data-dir", str(data),
         "--catalog", ""],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "First start" not in out.stdout
    return out.stderr


def _remove_catalog(data: Path) -> None:
    for p in data.glob("catalog.sqlite*"):
        p.unlink()


def _remove_store_and_log(data: Path) -> None:
    shutil.rmtree(data / "clickhouse")
    for p in data.glob("log.sqlite3*"):
        p.unlink()


def test_store_without_its_catalog_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _used(data)
    _remove_catalog(data)
    err = _start_fails(data)
    assert "the store holds runs or points but the catalog has no runs" in err and "not a first start" in err, err


def test_catalog_without_its_store_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _used(data)
    _remove_store_and_log(data)
    err = _start_fails(data)
    assert "the catalog has runs but the store is empty" in err and "not a first start" in err, err


def test_catalog_and_store_of_two_installations_are_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _used(a)
    _used(b)
    _remove_catalog(a)
    for p in b.glob("catalog.sqlite*"):
        shutil.copy(p, a / p.name)
    err = _start_fails(a)
    assert "belong to different installations" in err, err


def test_rebuild_store_keeps_the_catalog_and_replays_the_points(tmp_path: Path) -> None:
    data = tmp_path / "d"
    key = _used(data)
    shutil.rmtree(data / "clickhouse")  # the log stays: --rebuild-store replays it into a new store
    srv = ServerProcess(data, catalog="", extra=["--rebuild-store"]).start()
    try:
        assert "First start" not in srv.output and "now goes with the store" in srv.output, srv.output
        srv.key = key  # the catalog kept the org and its key
        assert srv.api().wait_intact("r", 1)["points_stored"] == 1
        assert srv.api().ok("GET", "/v1/runs/r")["id"] == "r"
    finally:
        assert srv.terminate() == 0, srv.logs()


def test_a_paired_directory_restarts_and_keeps_its_key(tmp_path: Path) -> None:
    data = tmp_path / "d"
    key = _used(data)
    srv = ServerProcess(data, catalog="").start()  # the data directory's own SQLite catalog
    try:
        srv.key = key
        assert srv.api().receipt("r")["points_stored"] == 1
        assert "First start" not in srv.output
    finally:
        srv.terminate()
