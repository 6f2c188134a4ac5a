"""Operations: the ops listener (metrics, readiness), JSON access logs, the
gateway's in-flight bound, and SIGTERM during ingest.

Real ``arwx server`` processes (embedded: SQLite log + chDB), since chDB takes
one data path per process and the session's in-process server has it.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from arwx.config import ConfigError, resolve
from arwx.log.sqlite_log import SqliteLog
from arwx.logging_setup import JsonFormatter
from arwx.ops import readiness
from arwx.store.clickhouse_store import ClickHouseStore
from tests.helpers import Api, ServerProcess, free_port, points, wait_for

INFLIGHT_LIMIT = 64 * 1024


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _metric(text: str, name: str, **labels: str) -> float:
    """Value of one series in the Prometheus text format (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})?", series)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory: pytest.TempPathFactory):
    """A server with the ops listener on, JSON logs, and a small in-flight bound."""
    metrics_port = free_port()
    srv = ServerProcess(
        tmp_path_factory.mktemp("arwx-ops"),
        extra=[
            "--metrics-port", str(metrics_port),
            "--log-format", "json",
            "--max-body-bytes", str(INFLIGHT_LIMIT),
            "--max-inflight-bytes", str(INFLIGHT_LIMIT),
        ],
    ).start()
    srv.metrics_port = metrics_port
    yield srv
    assert srv.terminate() == 0


@pytest.fixture
def ops_api(ops_server: ServerProcess) -> Api:
    api = ops_server.api()
    return api


def _scrape(srv: ServerProcess) -> str:
    status, headers, body = _get(srv.metrics_port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return body.decode()


def test_ops_listener_answers_without_a_key_and_the_api_port_has_no_metrics(ops_server: ServerProcess) -> None:
    assert _get(ops_server.metrics_port, "/health")[0] == 200
    status, _, body = _get(ops_server.metrics_port, "/ready")
    assert status == 200, body
    # Every background role reports too: the consumer, and the query role's crash detection.
    assert json.loads(body) == {"status": "ready", "checks": {"store": "ok", "catalog": "ok", "log": "ok", "consumer": "ok",
                                                             "query": "ok"}}
    text = _scrape(ops_server)
    assert "# TYPE arwx_http_requests_total counter" in text
    assert "# TYPE arwx_log_append_duration_seconds histogram" in text
    assert _metric(text, "arwx_ready") == 1
    # The API port serves no metrics and no readiness without a key.
    api_port = int(ops_server.url.rsplit(":", 1)[1])
    for path in ("/metrics", "/ready"):
        assert _get(api_port, path)[0] == 401
    # Only the three ops paths exist on the ops port: no tenant data there.
    assert _get(ops_server.metrics_port, "/v1/runs")[0] == 404


def test_counters_move_after_an_ingest(ops_server: ServerProcess, ops_api: Api) -> None:
    before = _scrape(ops_server)
    ops_api.ok("POST", "/v1/runs", {"id": "m1", "project": "p"})
    pts = points("m1", "w", range(10))
    pts[3]["value"] = "NaN"
    ops_api.ok("POST", "/v1/ingest", {"points": pts})
    assert ops_api.post("/v1/ingest", {"points": [{"run_id": "m1"}]})[0] == 400
    ops_api.wait_intact("m1", 10)
    after = _scrape(ops_server)

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("arwx_points_accepted_total") == 10
    assert delta("arwx_points_skipped_total") == 1
    assert delta("arwx_points_rejected_total", reason="bad_request") == 1
    assert delta("arwx_http_requests_total", route="/v1/ingest", method="POST", status="200") == 1
    assert delta("arwx_http_requests_total", route="/v1/ingest", method="POST", status="400") == 1
    assert delta("arwx_http_request_duration_seconds_count", route="/v1/ingest") == 2
    assert delta("arwx_log_append_duration_seconds_count") >= 1
    assert delta("arwx_consumer_points_written_total") >= 10
    assert delta("arwx_consumer_batch_rows_count") >= 1
    assert delta("arwx_store_operation_duration_seconds_count", op="query") >= 1
    # Sampled at scrape: everything was consumed, so no lag and no backlog.
    assert re.search(r'^arwx_consumer_lag_messages\{partition="0",topic="embedded\.\w+"\} 0\.0$', after, re.M)
    assert _metric(after, "arwx_embedded_log_backlog_messages") == 0
    assert "arwx_embedded_log_pending_bytes" in after


def test_json_access_log_carries_request_ids_and_never_the_key(ops_server: ServerProcess, ops_api: Api) -> None:
    ops_api.ok("POST", "/v1/runs", {"id": "logged", "project": "p"})
    rid = "req-" + str(time.time_ns())
    status, _ = ops_api.request(
        "POST", "/v1/ingest", body={"points": points("logged", "w", range(3))}, headers={"X-Request-Id": rid}
    )
    assert status == 200

    def line() -> dict | None:
        for ln in ops_server.logs().splitlines():
            if ln.startswith("{") and rid in ln:
                return json.loads(ln)
        return None

    rec = wait_for(line, 10, what="the access log line")
    assert rec["logger"] == "arwx.access" and rec["level"] == "info"
    assert (rec["request_id"], rec["method"], rec["route"], rec["status"]) == (rid, "POST", "/v1/ingest", 200)
    assert rec["org"].startswith("org_") and rec["duration_ms"] >= 0
    json_lines = [ln for ln in ops_server.logs().splitlines() if ln.startswith("{")]
    assert json_lines and all(json.loads(ln) for ln in json_lines)  # every one parses
    assert not any(ops_api.key in ln for ln in json_lines)


def test_inflight_bound_answers_429_with_retry_after(ops_server: ServerProcess, ops_api: Api) -> None:
    ops_api.ok("POST", "/v1/runs", {"id": "bp", "project": "p"})
    api_port = int(ops_server.url.rsplit(":", 1)[1])
    big = json.dumps({"points": points("bp", "slow", range(100))}).encode()
    big += b" " * (62_000 - len(big))  # a 62 kB body (JSON allows trailing whitespace)
    # A slow client: headers and most of the body, then nothing. The bytes it sent stay reserved
    # (what it sent, not what it announced: see test_gateway_hardening for held requests).
    slow = socket.create_connection(("127.0.0.1", api_port), timeout=30)
    slow.sendall(
        b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {ops_api.key}\r\nContent-Length: {len(big)}\r\n\r\n".encode()
        + big[:60_500]
    )
    try:
        wait_for(lambda: _metric(_scrape(ops_server), "arwx_gateway_inflight_bytes") >= 60_000, 10,
                 what="the slow request to be admitted")
        body = json.dumps({"points": points("bp", "fast", range(50))}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=30)
        conn.request("POST", "/v1/ingest", body=body, headers={"Authorization": f"Bearer {ops_api.key}"})
        resp = conn.getresponse()
        assert resp.status == 429, resp.read()
        assert resp.getheader("Retry-After") == "1"
        assert "in flight" in json.loads(resp.read())["error"]
        conn.close()
        # The slow one finishes and is acknowledged; then the refused one goes through.
        slow.sendall(big[60_500:])
        reply = slow.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    finally:
        slow.close()
    assert ops_api.post("/v1/ingest", {"points": points("bp", "fast", range(50))})[0] == 200
    ops_api.wait_intact("bp", 150)
    assert _metric(_scrape(ops_server), "arwx_gateway_throttled_requests_total") >= 1


# -- readiness of parts that are down (real objects, nothing mocked) ----------


async def test_ready_names_the_part_that_is_down(tmp_path: Path) -> None:
    assert await readiness("stopping") == (False, {"status": "stopping", "checks": {}})
    log = SqliteLog(str(tmp_path))
    await log.start()
    store = ClickHouseStore(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    ok, body = await readiness("running", store=store, log=log)
    assert not ok and body["checks"]["log"] == "ok" and body["checks"]["store"] != "ok"
    await log.stop()
    ok, body = await readiness("running", log=log)
    assert not ok and body["checks"]["log"].startswith("log:")


def test_new_settings_are_checked() -> None:
    for env, message in [
        ({"ARWX_LOG_FORMAT": "xml"}, "log_format"),
        ({"ARWX_METRICS_PORT": "8090"}, "is the API port"),
        ({"ARWX_MAX_INFLIGHT_BYTES": "1024"}, "must be at least max_body_bytes"),
        ({"ARWX_METRICS_PORT": "-1"}, "not in 0..65535"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            resolve(None, env=env)
    s = resolve(None, env={"ARWX_METRICS_PORT": "9464", "ARWX_LOG_FORMAT": "json"})
    assert (s.metrics_port, s.metrics_host, s.log_format) == (9464, "127.0.0.1", "json")


def test_json_formatter_puts_extras_on_top() -> None:
    rec = logging.makeLogRecord({"name": "arwx.access", "levelno": 20, "levelname": "INFO", "msg": "GET %s",
                                 "args": ("/x",), "request_id": "abc", "status": 200})
    out = json.loads(JsonFormatter().format(rec))
    assert (out["msg"], out["request_id"], out["status"], out["level"]) == ("GET /x", "abc", 200, "info")


# -- SIGTERM during ingest ------------------------------------------------------


def test_sigterm_during_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    api = srv.api()
    api.ok("POST", "/v1/runs", {"id": "term", "project": "p"})
    writers = [f"rank{i}" for i in range(6)]
    acked = dict.fromkeys(writers, 0)  # each writer's acknowledged seqs are a prefix
    refused: dict[str, str] = {}
    go = threading.Event()

    def write(w: str) -> None:
        a = Api(api.url, api.key)
        go.wait()
        while True:
            try:
                status, out = a.post("/v1/ingest", {"points": points("term", w, range(acked[w], acked[w] + 200))})
            except OSError as e:
                refused[w] = repr(e)
                return
            if status != 200:
                refused[w] = f"{status} {out}"
                return
            acked[w] += 200

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    go.set()
    wait_for(lambda: sum(acked.values()) >= 6000, 60, what="ingest under way")
    assert srv.terminate() == 0, srv.logs()  # SIGTERM while the writers keep sending
    for t in threads:
        t.join(30)
    assert set(refused) == set(writers)  # every writer was cut off by the shutdown
    assert "stopping" in srv.logs()
    # The consumer stored and committed everything before exiting: no backlog is left.
    with sqlite3.connect(tmp_path / "data" / "log.sqlite3") as db:
        (backlog,) = db.execute(
            "SELECT count(*) FROM log WHERE offset >= (SELECT coalesce(max(next_offset), 0) FROM consumer_offsets)"
        ).fetchone()
    assert backlog == 0
    again = ServerProcess(srv.data_dir, srv.port).start()
    again.key = srv.key
    try:
        r = again.api().wait_intact("term", sum(acked.values()), timeout=60)
        assert r["lost"] == 0
        by_writer = {w["writer_id"]: w for w in r["writers"]}
        for w, n in acked.items():
            assert by_writer[w]["stored"] >= n and by_writer[w]["missing"] == 0, (w, n, by_writer[w])
    finally:
        assert again.terminate() == 0
