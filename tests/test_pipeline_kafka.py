"""End to end with a real Kafka broker as the log and the real ClickHouse engine (chDB) as the store.

In-process: several gateways and consumers in one consumer group share the
test process's chDB store (one data path per process). Out of process: an
``arwx server --kafka`` killed with -9 while writing and restarted.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest

from tests.helpers import Api, ServerProcess, ServerThread, ndjson, points, send_until_acked, wait_for

pytestmark = pytest.mark.kafka

WRITERS = 8
PER_WRITER = 2000
BATCH = 250


def _topic_settings(bootstrap: str) -> dict:
    tag = secrets.token_hex(4)
    return {
        "kafka_bootstrap": bootstrap,
        "kafka_topic": f"arwx.test.{tag}",
        "consumer_group": f"arwx-test-{tag}",
        "kafka_partitions": 4,
    }


@pytest.fixture(scope="module")
def kafka_server(kafka_bootstrap: str, store_dir: Path):
    srv = ServerThread(data_dir=store_dir, **_topic_settings(kafka_bootstrap))
    yield srv
    srv.stop()


def _write(api: Api, run_id: str, writer: str, n: int, stream: bool = False) -> None:
    for start in range(0, n, BATCH):
        pts = points(run_id, writer, range(start, min(n, start + BATCH)))
        if stream:
            send_until_acked(api, "/v1/ingest/stream", raw=ndjson(pts))
        else:
            send_until_acked(api, "/v1/ingest", {"points": pts})


def _run_writers(apis: list[Api], run_id: str, n: int = PER_WRITER) -> None:
    threads = [
        threading.Thread(target=_write, args=(apis[i % len(apis)], run_id, f"rank{i}", n, i % 2 == 1), daemon=True)
        for i in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
        assert not t.is_alive()


def _finish_and_check(api: Api, run_id: str, n: int = PER_WRITER, extra: int = 0) -> dict:
    """``extra``: points of other writers in the run besides the ranks."""
    api.ok("POST", f"/v1/runs/{run_id}/finish", {"writer_totals": {f"rank{i}": n for i in range(WRITERS)}})
    total = WRITERS * n + extra
    r = api.wait_intact(run_id, total, timeout=120)
    assert r["points_stored"] == total and r["lost"] == 0 and r["pending"] == 0
    rows = api.ok("GET", f"/v1/runs/{run_id}/metrics", params={"limit": 100000})["rows"]
    pairs = [(row["step"], row["writer_id"]) for row in rows]
    assert len(pairs) == total == len(set(pairs))
    return r


def test_eight_writers_through_kafka_exact_receipt(kafka_server: ServerThread) -> None:
    api = Api(kafka_server.url, kafka_server.new_org_key())
    api.ok("POST", "/v1/runs", {"id": "kafka8"})
    out = api.ok("POST", "/v1/ingest", {"points": points("kafka8", "probe", range(1))})
    assert out["log"][0]["topic"] == kafka_server.settings.kafka_topic
    _run_writers([api], "kafka8")
    api.ok("POST", "/v1/ingest", {"points": points("kafka8", "probe", range(1))})  # a client re-send
    r = _finish_and_check(api, "kafka8", extra=1)
    assert r["points_committed"] == WRITERS * PER_WRITER + 2
    assert r["duplicates_collapsed"] == 1


def test_two_gateways_two_consumers_one_group_with_a_rebalance(kafka_bootstrap: str, store_dir: Path) -> None:
    settings = _topic_settings(kafka_bootstrap)
    first = ServerThread(data_dir=store_dir, **settings)
    second = ServerThread(frozenset({"gateway", "consumer"}), data_dir=store_dir, **settings)
    try:
        key = first.new_org_key()
        apis = [Api(first.url, key), Api(second.url, key)]
        apis[0].ok("POST", "/v1/runs", {"id": "group"})
        # Both consumers must have joined before the partition split is checked.
        wait_for(lambda: first.server.reader.assignment() and second.server.reader.assignment(), 60, 0.1, "both consumers to get partitions")
        writers = threading.Thread(target=_run_writers, args=(apis, "group"), daemon=True)
        writers.start()
        wait_for(lambda: apis[0].receipt("group")["points_stored"] > 0, 60, 0.05, "first points stored")
        # One consumer leaves mid-run: its partitions are revoked (it stores and
        # commits what it holds) and move to the other.
        second.call(second.server.consumer.stop())
        second.call(second.server.reader.stop())
        writers.join(180)
        assert not writers.is_alive()
        _finish_and_check(apis[0], "group")
    finally:
        second.stop()
        first.stop()


def test_first_value_wins_across_a_rebalance(kafka_bootstrap: str, store_dir: Path) -> None:
    """A run's points are stored while two consumers share the topic; one leaves,
    so the run's partition may move to a consumer that never saw it, and then
    seqs are re-sent with other values and other steps: the first values stay
    (state reloaded from the store) and the receipt counts the conflicts."""
    settings = _topic_settings(kafka_bootstrap)
    first = ServerThread(data_dir=store_dir, **settings)
    second = ServerThread(frozenset({"gateway", "consumer"}), data_dir=store_dir, **settings)
    try:
        api = Api(first.url, first.new_org_key())
        api.ok("POST", "/v1/runs", {"id": "kfw"})
        wait_for(lambda: first.server.reader.assignment() and second.server.reader.assignment(), 60, 0.1, "both consumers to get partitions")
        pts = points("kfw", "w", range(500))
        for i in range(0, 500, 100):
            send_until_acked(api, "/v1/ingest", {"points": pts[i : i + 100]})
        api.wait_intact("kfw", 500, timeout=120)
        second.call(second.server.consumer.stop())
        second.call(second.server.reader.stop())
        wait_for(lambda: len(first.server.reader.assignment()) == settings["kafka_partitions"], 60, 0.1, "all partitions on one consumer")
        resent = [dict(p, value=-1.0) for p in pts[100:110]] + [dict(pts[200], step=10**6)] + pts[300:305]
        send_until_acked(api, "/v1/ingest", {"points": resent})
        r = wait_for(lambda: (x := api.receipt("kfw"))["points_committed"] == 516 and x["pending"] == 0 and x, 120)
        rows = api.ok("GET", "/v1/runs/kfw/metrics", params={"limit": 1000})["rows"]
        assert [(row["step"], row["loss"]) for row in rows] == [(p["step"], p["value"]) for p in pts]
        assert (r["points_stored"], r["conflicts"], r["duplicates_collapsed"], r["intact"]) == (500, 11, 5, True)
    finally:
        second.stop()
        first.stop()


def test_kill9_of_a_kafka_mode_server_mid_write(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = _topic_settings(kafka_bootstrap)
    extra = ["--kafka", kafka_bootstrap, "--kafka-topic", s["kafka_topic"], "--consumer-group", s["consumer_group"]]
    srv = ServerProcess(tmp_path / "data", extra=extra).start()
    api = srv.api()
    api.ok("POST", "/v1/runs", {"id": "kcrash"})
    writers = threading.Thread(target=_run_writers, args=([api], "kcrash"), daemon=True)
    writers.start()
    try:
        for target in (0.3, 0.7):
            wait_for(lambda t=target: api.receipt("kcrash")["points_stored"] >= t * WRITERS * PER_WRITER,
                     120, 0.02, f"{target:.0%} stored")
            srv.kill9()
            again = ServerProcess(srv.data_dir, srv.port, extra=extra).start()
            again.key = srv.key
            srv = again
        writers.join(180)
        assert not writers.is_alive()
        _finish_and_check(api, "kcrash")
    finally:
        srv.terminate()
