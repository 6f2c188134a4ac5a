"""Start-up checks of the data directory (issue 10, items 7 and 8), on real processes.

- A corrupt embedded log is refused at start with a message naming the file and
  the ways out; nothing is acknowledged into it.
- A store made anew under a log that fed another one (the ClickHouse directory
  deleted, the log kept) is refused, instead of a "first start" with a new
  organization; ``--rebuild-store`` replays what the log holds and says how much.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, Api, ServerProcess, free_port, points, wait_for


def _server_with_data(data: Path, n_batches: int = 8, extra: list[str] | None = None) -> tuple[ServerProcess, int]:
    srv = ServerProcess(data, extra=extra).start()
    api = Api(srv.url, srv.key)
    api.ok("POST", "/v1/runs", {"id": "r"})
    for b in range(n_batches):
        api.ok("POST", "/v1/ingest", {"points": points("r", "w", range(b * 250, (b + 1) * 250))})
    total = n_batches * 250
    api.wait_intact("r", total)
    assert srv.terminate() == 0
    return srv, total


def _refused(srv: ServerProcess) -> str:
    """Start ``arwx server`` on the same data; it must exit non-zero by itself. Its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    cmd = [sys.executable, "-m", "arwx.cli", "server", "--port", str(srv.port), "--data-dir", str(srv.data_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 1 and "listening on" not in out, out
    return out


@pytest.mark.parametrize("where", ["header", "pages"])
def test_a_corrupt_log_is_refused_at_start_naming_the_file(tmp_path: Path, where: str) -> None:
    data = tmp_path / "data"
    srv, _ = _server_with_data(data)
    path = data / "log.sqlite3"
    assert not (data / "log.sqlite3-wal").exists() or (data / "log.sqlite3-wal").stat().st_size == 0
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    raw = bytearray(path.read_bytes())
    assert len(raw) >= 6 * page, "the log must span several pages for this test"
    if where == "header":
        raw[0:100] = b"\x5a" * 100
    else:
        for p in range(1, len(raw) // page):  # every page but the first (the schema)
            raw[p * page + 8 : p * page + 200] = bytes(range(192))
    path.write_bytes(bytes(raw))
    out = _refused(ServerProcess(data, srv.port))
    assert "refusing to start" in out and str(path) in out, out
    assert ".recover" in out and "move" in out, "the message must give the ways out"


def test_a_lost_store_is_refused_then_rebuilt_from_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv, total = _server_with_data(data)
    shutil.rmtree(data / "clickhouse")  # the store is lost; the log is kept
    out = _refused(ServerProcess(data, srv.port))
    assert "refusing to start" in out and "inconsistent" in out and "--rebuild-store" in out, out
    assert "First start" not in out, "no new organization over a lost store"
    assert str(data / "log.sqlite3") in out and str(data / "clickhouse") in out, out
    # Refused again: the check does not pass just because the first refusal made a store.
    _refused(ServerProcess(data, srv.port))

    metrics_port = free_port()
    again = ServerProcess(data, srv.port, extra=["--rebuild-store", "--metrics-port", str(metrics_port)]).start()
    try:
        m = re.search(r"rebuilding the store .* it holds (\d+) messages .* replaying (\d+) messages", again.output)
        assert m and int(m.group(2)) == 8, again.output  # the 8 batches
        ops = Api(f"http://127.0.0.1:{metrics_port}", None)

        def written() -> float:
            _, page = ops.request("GET", "/metrics")
            found = re.search(r"^arwx_consumer_points_written_total (\S+)$", page, re.M)
            return float(found.group(1)) if found else 0.0

        wait_for(lambda: written() >= total, 60, 0.1, f"{total} points rebuilt into the store")
        assert written() == total
    finally:
        assert again.terminate() == 0
    # Consistent again: a plain start works and is not a first start.
    plain = ServerProcess(data, srv.port).start()
    try:
        assert "First start" in plain.output or "listening on" in plain.output
    finally:
        plain.terminate()


async def test_a_log_corrupted_while_running_stops_acknowledging(tmp_path: Path) -> None:
    """Old pages damaged under a running log: the read fails as corrupt, and from then on appends
    are refused (the gateway answers 503) and the readiness probe of the log fails, instead of
    acknowledging ingest that the consumer can never read."""
    import os as _os

    from arwx.log.base import LogUnavailable
    from arwx.log.sqlite_log import SqliteLog

    log = SqliteLog(str(tmp_path))
    await log.start()
    try:
        for _ in range(300):
            await log.append("k", [_os.urandom(3000)])
        log._reader_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows are in the main file now
        page = log._reader_conn.execute("PRAGMA page_size").fetchone()[0]
        size = Path(log.path).stat().st_size
        with open(log.path, "r+b") as f:
            # Old pages only (the first messages): appends, at the right edge of the tree, still
            # work, so only the read finds the damage, as with a bad sector under old data.
            for p in range(8, size // page // 2):
                f.seek(p * page + 8)
                f.write(bytes(range(100)))
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            while await log.read(500, 1):  # the first, intact pages may come back first
                pass
        with pytest.raises(LogUnavailable, match="corrupt"):
            await log.append("k", [b"more"])
        with pytest.raises(Exception, match=re.escape(log.path)):  # LogCorrupt, naming the file
            await log.pending("k")
    finally:
        await log.stop()
