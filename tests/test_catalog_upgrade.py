"""Upgrade: a data directory written before the catalog (commit 3b03d8d, orgs, keys and runs
in ClickHouse) starts under this version with every org, key, run and point intact.

The old data directory is made here, by the old code itself: ``git archive``
of that commit, run as a real ``arwx server`` process (and its ``arwx keys``
CLI). Then the current code starts on the same directory, twice (the import
runs once). Needs the repository's history (a fresh clone has it).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, Api, ServerProcess, points

OLD = "3b03d8d"  # the last commit that kept orgs, keys and runs in ClickHouse


@pytest.fixture(scope="module")
def old_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arwx-3b03d8d")
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", OLD, "services", "schemas"], capture_output=True
    )
    assert tar.returncode == 0, f"git archive {OLD} failed (a shallow clone?): {tar.stderr.decode()}"
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(out, filter="data")
    assert (out / "services" / "arwx" / "tenancy.py").read_text().count("FROM api_keys FINAL") == 1
    return out


def _old_keys_cli(source: Path, data_dir: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(source / "services")}
    out = subprocess.run(
        [sys.executable, "-m", "arwx.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _secret(cli_out: str) -> str:
    return next(ln.split(": ", 1)[1] for ln in cli_out.splitlines() if ln.startswith("key: "))


def test_a_data_directory_from_before_the_catalog_starts_with_everything_intact(
    tmp_path: Path, old_source: Path
) -> None:
    data = tmp_path / "data"
    # -- the old version writes: two orgs, four keys (one revoked), runs with points --
    old = ServerProcess(data, source=old_source, catalog="").start()
    try:
        assert old.key, old.output
        assert "catalog" not in old.output, "the old code did not run"
        api = old.api()
        api.ok("POST", "/v1/runs", {"id": "r1", "project": "vision", "name": "first", "config": {"lr": 0.1}})
        api.ok("POST", "/v1/ingest", {"points": points("r1", "w0", range(100))})
        api.ok("POST", "/v1/runs/r1/finish", {"status": "finished", "writer_totals": {"w0": 100}})
        api.ok("POST", "/v1/runs", {"id": "r2", "project": "text", "writer_ids": ["a", "b"]})
        api.ok("POST", "/v1/ingest", {"points": points("r2", "a", range(50), key="acc")})
        revoked = api.ok("POST", "/v1/keys", {"name": "to revoke"})
        api.ok("DELETE", f"/v1/keys/{revoked['id']}")
        kept = api.ok("POST", "/v1/keys", {"name": "kept"})
        api.wait_intact("r1", 100)
        api.wait_intact("r2", 50)
        before_r1 = api.ok("GET", "/v1/runs/r1")
        before_projects = api.ok("GET", "/v1/projects")
    finally:
        assert old.terminate() == 0, old.logs()
    other_secret = _secret(_old_keys_cli(old_source, data, "create", "--org", "other", "--name", "cli"))

    # -- the new version starts on it --
    for attempt in range(2):  # the import happens once; a second start finds it done
        new = ServerProcess(data, catalog="").start()  # the upgrade of an embedded data directory
        try:
            assert "First start" not in new.output, new.output  # not taken for a first start
            assert f"catalog sqlite+aiosqlite:///{data}" in new.output, new.output
            api = Api(new.url, old.key)
            now_r1 = api.ok("GET", "/v1/runs/r1")  # fields added since (tags, notes, ...) come on top
            assert {k: now_r1[k] for k in before_r1} == before_r1  # status, writer totals, config, times
            # The fields projects had (counts from runs) are unchanged; goal fields come on top.
            old_fields = ("name", "runs", "running", "created_at", "last_run_at")
            now_projects = [{k: p[k] for k in old_fields} for p in api.ok("GET", "/v1/projects")["projects"]]
            assert now_projects == before_projects["projects"]
            r1 = api.receipt("r1")
            assert r1["intact"] and r1["points_stored"] == 100 and r1["status"] == "finished", r1
            r2 = api.receipt("r2")
            assert r2["intact"] and r2["points_stored"] >= 50, r2
            assert api.with_key(revoked["key"]).get("/v1/keys")[0] == 401
            assert api.with_key(kept["key"]).get("/v1/runs/r2")[0] == 200
            listed = {k["name"]: k["revoked"] for k in api.ok("GET", "/v1/keys")["keys"]}
            assert listed == {"first key": False, "to revoke": True, "kept": False}
            other = api.with_key(other_secret)
            assert other.get("/v1/keys")[0] == 200
            assert other.get("/v1/runs/r1")[0] == 404  # orgs stay apart
            # The old run keeps taking points, and its ledger continues where it was.
            if attempt == 0:
                api.ok("POST", "/v1/ingest", {"points": points("r2", "a", range(50, 80), key="acc")})
            assert api.wait_intact("r2", 80)["points_stored"] == 80
        finally:
            assert new.terminate() == 0, new.logs()
