"""Both stores honour one contract with the same SQL text.

chDB always runs. The server client (``ClickHouseStore``, clickhouse-connect
over HTTP) always runs too, against ``tests/clickhouse_http.py``: chDB in its
own process behind ClickHouse's HTTP interface, the stand-in the topology
tests use. A real ClickHouse server runs when CLICKHOUSE_URL is set (for
example http://default:@127.0.0.1:8123/default); none can be installed on our
CI machines, so there it is skipped, saying so.
"""

from __future__ import annotations

import os
import secrets
import sys

import pyarrow as pa
import pytest

from arwx.store.base import check_token
from arwx.store.schema import apply_schema
from tests.helpers import ROOT, free_port


@pytest.fixture(scope="module")
def http_stand_in(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The URL of chDB behind ClickHouse's HTTP interface, in a process of its own."""
    from tests.topology import Proc

    d = tmp_path_factory.mktemp("ch-http")
    proc = Proc("clickhouse", [sys.executable, str(ROOT / "tests" / "clickhouse_http.py"), "--watch-stdin",
                               "--data-dir", str(d / "data"), "--port", str(free_port())],
                dict(os.environ), "listening on", d).start(60)
    yield proc.lines[-1].split("listening on ", 1)[1].strip().replace("http://", "http://default:@") + "/default"
    proc.stop()


@pytest.fixture(params=["chdb", "http-stand-in", "server"])
async def store(request, embedded):  # noqa: ANN001, ANN201
    if request.param != "chdb":
        url = os.environ.get("CLICKHOUSE_URL")
        if request.param == "http-stand-in":
            url = request.getfixturevalue("http_stand_in")
        elif not url:
            pytest.skip("CLICKHOUSE_URL is not set: no ClickHouse server on this machine (chDB runs the same SQL)")
        from arwx.store.clickhouse_store import ClickHouseStore

        s = ClickHouseStore(url)
        await s.start()
        await apply_schema(s)
        yield s
        await s.stop()
    else:
        yield embedded.server.store


def _points(org: str, n: int) -> pa.Table:
    ts = pa.array([1_700_000_000_000 + i for i in range(n)], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "org": [org] * n,
            "run_id": ["r"] * n,
            "key": ["loss"] * n,
            "writer_id": ["w"] * n,
            "seq": pa.array(range(n), pa.uint64()),
            "step": pa.array(range(n), pa.uint64()),
            "ts": ts,
            "value": pa.array([float(i) for i in range(n)]),
            "log_partition": pa.array([0] * n, pa.uint32()),
            "log_offset": pa.array([1] * n, pa.uint64()),
            "ingested_at": ts,
        }
    )


async def test_insert_token_dedup_final_and_parameters(store) -> None:  # noqa: ANN001
    org = "org_contract_" + secrets.token_hex(3)
    data = _points(org, 1000)
    token = check_token(f"pts:{secrets.token_hex(8)}")
    await store.insert("points", data, token)
    await store.insert("points", data, token)  # a retried insert: dropped by the token
    p = {"org": org}
    assert await store.rows("SELECT count() FROM points WHERE org = {org:String}", p) == [(1000,)]
    await store.insert("points", data)  # a replay with another cut: collapsed by FINAL
    assert await store.rows("SELECT count() FROM points FINAL WHERE org = {org:String}", p) == [(1000,)]
    rows = await store.rows(
        "SELECT key, sum(value) FROM points FINAL WHERE org = {org:String} AND key IN {keys:Array(String)} GROUP BY key",
        {**p, "keys": ["loss", "x'); DROP TABLE points; --"]},
    )
    assert rows == [("loss", float(sum(range(1000))))]
    table = await store.arrow("SELECT seq FROM points FINAL WHERE org = {org:String} ORDER BY seq", p)
    assert table.column("seq").to_pylist() == list(range(1000))
    assert await store.ping()


def test_tokens_are_checked() -> None:
    with pytest.raises(ValueError):
        check_token("x' SETTINGS max_threads=1")
