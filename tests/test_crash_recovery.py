"""kill -9 in the middle of writing, restart: nothing lost, nothing visible twice.

A real ``arwx server`` process (embedded: SQLite log + chDB) is killed while 8
writers keep sending and the consumer keeps writing; the writers retry like
the SDK does. A second test sends a request and kills the server before the
answer can be read, then re-sends it after the restart.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from tests.helpers import Api, ServerProcess, points, send_until_acked, wait_for

WRITERS = 8
PER_WRITER = 4000
BATCH = 250


def _writer(api: Api, run_id: str, writer: str, progress: list[int], i: int) -> None:
    for start in range(0, PER_WRITER, BATCH):
        send_until_acked(api, "/v1/ingest", {"points": points(run_id, writer, range(start, start + BATCH))})
        progress[i] = start + BATCH


def _restart(srv: ServerProcess) -> ServerProcess:
    again = ServerProcess(srv.data_dir, srv.port)
    again.start()
    again.key = srv.key
    return again


def _assert_exact(api: Api, run_id: str, total: int) -> dict:
    r = api.wait_intact(run_id, total, timeout=120)
    assert r["points_stored"] == total and r["lost"] == 0
    rows = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"limit": 100000})["rows"]
    pairs = [(row["step"], row["writer_id"]) for row in rows]
    assert len(pairs) == total == len(set(pairs)), "a point shows twice or is missing in history"
    return r


def test_kill9_mid_write_then_restart_loses_nothing(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    api = srv.api()
    api.ok("POST", "/v1/runs", {"id": "crash"})
    progress = [0] * WRITERS
    threads = [
        threading.Thread(target=_writer, args=(api, "crash", f"rank{i}", progress, i), daemon=True)
        for i in range(WRITERS)
    ]
    for t in threads:
        t.start()
    kills = 0
    try:
        for fraction in (0.2, 0.5, 0.8):
            wait_for(lambda f=fraction: sum(progress) >= f * WRITERS * PER_WRITER, 120, 0.01, f"{fraction:.0%} acked")
            srv.kill9()
            kills += 1
            srv = _restart(srv)
        for t in threads:
            t.join(180)
            assert not t.is_alive()
        api.ok("POST", "/v1/runs/crash/finish", {"writer_totals": {f"rank{i}": PER_WRITER for i in range(WRITERS)}})
        r = _assert_exact(api, "crash", WRITERS * PER_WRITER)
        assert kills == 3
        assert r["points_committed"] >= WRITERS * PER_WRITER
    finally:
        srv.terminate()


def test_resend_of_a_request_whose_answer_was_never_seen(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    api = srv.api()
    api.ok("POST", "/v1/runs", {"id": "unseen"})
    api.ok("POST", "/v1/ingest", {"points": points("unseen", "w", range(0, 500))})
    body = json.dumps({"points": points("unseen", "w", range(500, 1000))}).encode()
    head = (
        f"POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {srv.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(head + body)
            srv.kill9()  # the answer, if any was written, is never read
        srv = _restart(srv)
        send_until_acked(api, "/v1/ingest", raw=body)
        api.ok("POST", "/v1/runs/unseen/finish", {"writer_totals": {"w": 1000}})
        r = _assert_exact(api, "unseen", 1000)
        assert r["duplicates_collapsed"] in (0, 500)  # 500 if the first send had reached the log
    finally:
        srv.terminate()


def test_sigterm_stops_cleanly_and_keeps_everything(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    api = srv.api()
    api.ok("POST", "/v1/runs", {"id": "term"})
    for start in range(0, 5000, 500):
        api.ok("POST", "/v1/ingest", {"points": points("term", "w", range(start, start + 500))})
    assert srv.terminate() == 0
    assert "stopping" in srv.logs()
    srv = _restart(srv)
    try:
        _assert_exact(api, "term", 5000)
    finally:
        srv.terminate()
