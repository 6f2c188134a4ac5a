"""The distributed topology as separate OS processes, crashed and restarted mid-run.

Two ``arwx gateway``, two ``arwx consumer`` and one ``arwx query`` process
(``tests/topology.py``: the flags docker-compose.yml gives them) on a real
Kafka broker, the PostgreSQL catalog, SeaweedFS for blobs and the ClickHouse
engine behind its HTTP interface. Real SDK ranks (``arwandb`` processes) of
one run are spread over both gateways. Mid-run a gateway and then the
consumer that stores the run are killed with SIGKILL and restarted; the run's
receipt, read from the query service, must end intact: every point each rank
logged stored once, none lost, no gap, no duplicate row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, Api, wait_for
from tests.topology import Topology

pytestmark = pytest.mark.kafka

RANKS = 4
KEYS = ("loss", "lr", "grad_norm")
RANK = r"""
import os, sys, time
import arwandb
run = arwandb.init(project="topology", flush_interval=0.1, finish_timeout=180)
stop, step = os.environ["STOP_FILE"], 0
while step < 300 or not os.path.exists(stop):
    run.log({"loss": 1.0 / (step + 1), "lr": 3e-4, "grad_norm": step * 0.5})
    step += 1
    if step % 10 == 0:
        time.sleep(0.02)  # a training step's pace, so the run outlives the kills
run.finish()
print(f"logged {step}", flush=True)
"""


@pytest.fixture(scope="module")
def topology(kafka_bootstrap: str, postgres, seaweed) -> Iterator[Topology]:  # noqa: ANN001
    t = Topology(gateways=2, consumers=2, partitions=4, kafka=kafka_bootstrap, postgres=postgres, s3=seaweed)
    t.start()
    yield t
    t.stop()


def _ranks(t: Topology, run_id: str, stop_file: Path, tmp: Path) -> list[subprocess.Popen[str]]:
    procs = []
    for r in range(RANKS):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARWANDB_", "WANDB_", "ARWX_"))}
        env.update(
            PYTHONPATH=str(ROOT / "sdk"), ARWANDB_BASE_URL=t.gateways[r % len(t.gateways)].url,
            ARWANDB_API_KEY=t.key, ARWANDB_RUN_ID=run_id, ARWANDB_WRITER_ID=f"rank{r}",
            ARWANDB_DIR=str(tmp / f"rank{r}"), ARWANDB_SYSTEM_METRICS="off", STOP_FILE=str(stop_file),
        )
        procs.append(subprocess.Popen([sys.executable, "-c", RANK], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def test_gateway_and_consumer_killed_mid_run_receipt_intact(topology: Topology, tmp_path: Path) -> None:
    t = topology
    query = Api(t.query.url, t.key)  # type: ignore[union-attr]
    stop_file = tmp_path / "stop"
    ranks = _ranks(t, "topo", stop_file, tmp_path)
    try:
        def stored() -> int:
            return query.receipt("topo")["points_stored"] if query.get("/v1/runs/topo")[0] == 200 else 0

        wait_for(lambda: stored() >= 3000, 120, 0.1, "the ranks' first points stored")

        # A gateway dies (its ranks' requests in flight are never answered) and comes back.
        gw = t.gateways[0]
        gw.kill9()
        base = stored()
        wait_for(lambda: stored() >= base + 3000, 120, 0.1, "points stored through the other gateway")
        gw.start()

        # The consumer storing the run dies with a batch in hand; the other takes its partitions
        # when the group notices (session timeout), and the restarted one rejoins.
        busy = wait_for(lambda: [c for c in t.consumers if c.metric("arwx_consumer_points_written_total") > 0],
                        60, 0.1, "a consumer storing the run")[0]
        base = stored()
        busy.kill9()
        wait_for(lambda: stored() >= base + 3000, 180, 0.1, "points stored after the consumer died")
        busy.start()
        base = stored()
        wait_for(lambda: stored() >= base + 3000, 120, 0.1, "points stored after the consumer came back")
        stop_file.touch()
        outs = [p.communicate(timeout=300)[0] for p in ranks]
    finally:
        stop_file.touch()
        for p in ranks:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in ranks] == [0] * RANKS, outs
    logged = {f"rank{r}": int(outs[r].strip().rsplit("logged ", 1)[1]) * len(KEYS) for r in range(RANKS)}
    total = sum(logged.values())
    rec = query.wait_intact("topo", total, timeout=180)
    assert rec["intact"] is True and rec["lost"] == 0 and rec["pending"] == 0
    assert rec["points_stored"] == rec["points_committed"] - rec["duplicates_collapsed"] == total
    writers = {w["writer_id"]: w for w in rec["writers"]}
    assert sorted(writers) == sorted(logged)
    for name, n in logged.items():
        w = writers[name]
        assert (w["sent"], w["stored"], w["seq_min"], w["seq_max"], w["missing"], w["gaps"]) == (n, n, 0, n - 1, 0, [])
    # No duplicate row: every (writer, step) of every key is stored once.
    seen: dict[tuple[str, int], int] = {}
    cursor = None
    while True:
        params = {"keys": ",".join(KEYS), "limit": 100000, **({"cursor": cursor} if cursor else {})}
        page = query.ok("GET", "/v1/runs/topo/metrics", params=params)
        for row in page["rows"]:
            k = (row["writer_id"], row["step"])
            seen[k] = seen.get(k, 0) + 1
            assert all(row.get(key) is not None for key in KEYS), row
        cursor = page.get("next")
        if not cursor:
            break
    assert len(seen) * len(KEYS) == total and set(seen.values()) == {1}
    # Both gateways took points; the killed gateway and consumer were restarted and are serving.
    assert all(g.metric("arwx_points_accepted_total") > 0 for g in t.gateways)
    assert all(r.alive() for r in t.roles())
