"""Two ``arwx server`` processes on one PostgreSQL catalog.

Real processes, real PostgreSQL, a real Kafka broker. No ClickHouse server can
be installed here, so each process keeps its own chDB store and consumes the
whole topic into it under its own consumer group: both stores hold every
point, and what is shared (and under test) is the catalog: keys, runs,
writer totals. What holds:

- a key revoked through one process is refused by the other within 1 s;
- the same run id created through both at once is one run;
- points sent through both into one run give an intact receipt through either.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import Api, ServerProcess, points, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres, kafka_bootstrap: str):
    url = postgres.new_database()
    topic = f"arwx.pg.{uuid.uuid4().hex[:8]}"
    procs: list[ServerProcess] = []

    def start(name: str) -> ServerProcess:
        data = tmp_path_factory.mktemp(f"arwx-{name}")
        extra = ["--catalog", url, "--kafka", kafka_bootstrap, "--kafka-topic", topic,
                 "--kafka-partitions", "2", "--consumer-group", f"g-{name}"]
        srv = ServerProcess(Path(data), extra=extra).start()
        procs.append(srv)
        return srv

    try:
        a = start("a")  # the first start: the default org and its key
        b = start("b")  # finds the org; its empty store joins the installation
        assert a.key and not b.key, (a.output, b.output)
        assert "catalog postgresql+asyncpg://postgres@127.0.0.1" in b.output, b.output
        yield Api(a.url, a.key), Api(b.url, a.key)
    finally:
        for p in procs:
            p.terminate()


def test_revocation_through_one_is_refused_by_the_other_within_1s(pair: tuple[Api, Api]) -> None:
    a, b = pair
    made = a.ok("POST", "/v1/keys", {"name": "short-lived", "scopes": ["admin"]})
    there = b.with_key(made["key"])
    deadline = time.monotonic() + 5
    while there.get("/v1/keys")[0] != 200:  # the new key reaches b within its refresh period
        assert time.monotonic() < deadline, "new key never reached the other process"
        time.sleep(0.02)
    a.ok("DELETE", f"/v1/keys/{made['id']}")
    t0 = time.monotonic()
    while there.get("/v1/keys")[0] != 401:
        assert time.monotonic() - t0 < 1.0, "revocation not seen by the other process within 1 s"
        time.sleep(0.01)
    took = time.monotonic() - t0
    print(f"\nrevocation through one process refused by the other after {took * 1000:.0f} ms")


def test_same_run_id_created_through_both_at_once_is_one_run(pair: tuple[Api, Api]) -> None:
    a, b = pair
    for i in range(10):
        run_id = f"both-{i}"
        results: dict[str, tuple[int, dict]] = {}
        go = threading.Barrier(2)

        def create(name: str, api: Api, run_id: str = run_id, go: threading.Barrier = go, results: dict = results) -> None:
            go.wait()
            results[name] = api.request("POST", "/v1/runs", {"id": run_id, "name": f"from {name}"})

        threads = [threading.Thread(target=create, args=(n, api)) for n, api in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(s for s, _ in results.values())
        assert statuses == [200, 201], results
        (_, ra), (_, rb) = results["a"], results["b"]
        assert ra == rb, results  # one run: the same name, times and everything, through both


def test_points_through_both_into_one_run_give_an_intact_receipt(pair: tuple[Api, Api]) -> None:
    a, b = pair
    a.ok("POST", "/v1/runs", {"id": "shared", "project": "pg", "writer_ids": ["wa", "wb"]})
    for lo in range(0, 600, 200):
        a.ok("POST", "/v1/ingest", {"points": points("shared", "wa", range(lo, lo + 200))})
        b.ok("POST", "/v1/ingest", {"points": points("shared", "wb", range(lo, lo + 200))})
    b.ok("POST", "/v1/runs/shared/finish", {"status": "finished", "writer_totals": {"wa": 600, "wb": 600}})
    for api in (a, b):
        r = api.wait_intact("shared", 1200, timeout=90)
        assert r["points_stored"] == 1200 and r["lost"] == 0, r
        # a caches the run for up to 2 s (Runs.ttl_s): the finish through b shows within that.
        r = wait_for(lambda api=api: (x := api.receipt("shared"))["status"] == "finished" and x, 5, 0.05, "finished")
        assert r["intact"] and r["points_stored"] == 1200, r
    assert a.ok("GET", "/v1/runs/shared")["writer_totals"] == {"wa": 600, "wb": 600}
