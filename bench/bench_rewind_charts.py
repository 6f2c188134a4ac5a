"""Charts of a rewound run against a plain run of the same visible length.

Embedded store (chDB in a temp dir), synthetic points inserted with
``store.insert`` as in ``bench_charts.py`` (so the chart cells fill exactly as
behind the consumer). Per size N: run ``plain`` holds steps 0..N-1; run
``rewound`` has attempt 0 at steps 0..3N/4-1 and attempt 1 (storage id
``rewound~1``) at N/2..N-1, rewound at N/2, so both show N steps. Each chart
is ``charts.chart`` in-process (its ClickHouse queries included), wall p50
and process CPU p50 (all threads: less sensitive to other load). A rewound
run's chart reads each segment's cells; the ratio rewound/plain says what the
segments cost. Not a test: prints a table.

    python bench/bench_rewind_charts.py --exps 5 6 7 --samples 500 --reps 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_charts import ORG, _block, _optimize, _pct, _time  # noqa: E402

from arwx.query.charts import ChartRequest, chart  # noqa: E402
from arwx.store.chdb_store import ChdbStore  # noqa: E402
from arwx.store.schema import apply_schema  # noqa: E402

BLOCK = 1_000_000


async def _fill(store: ChdbStore, run: str, lo: int, hi: int) -> None:
    for start in range(lo, hi, BLOCK):
        await store.insert("points", _block(run, ("loss",), start, min(BLOCK, hi - start)))


async def main(a: argparse.Namespace) -> None:
    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    store = ChdbStore(tempfile.mkdtemp(prefix="arwx-bench-rewind-"))
    await store.start()
    await apply_schema(store)
    rows = []
    for e in a.exps:
        n = 10**e
        plain, rewound = f"plain_1e{e}", f"rewound_1e{e}"
        await _fill(store, plain, 0, n)
        await _fill(store, rewound, 0, 3 * n // 4)
        await _fill(store, f"{rewound}~1", n // 2, n)
        await _optimize(store)
        segments = {rewound: [(rewound, 0, n // 2 - 1), (f"{rewound}~1", n // 2, None)]}
        for label, run, segs in (("plain", plain, {}), ("rewound at N/2", rewound, segments)):

            async def one(run: str = run, segs: dict = segs) -> dict:
                req = ChartRequest(org=ORG, runs=[run], keys=["loss"], samples=a.samples, segments=dict(segs))
                return await chart(store, req)

            res = await one()
            wall, cpu = await _time(one, a.reps)
            rows.append((e, label, res["tier"], len(res["series"][0]["x"]), _pct(wall, 50), _pct(cpu, 50)))
    print(f"\n| chart, 1 metric, samples={a.samples}, agg=minmax | run | tier | buckets | p50 ms | CPU ms p50 |")
    print("|---|---|---:|---:|---:|---:|")
    for e, label, tier, nb, p50, c50 in rows:
        print(f"| 10^{e} steps shown | {label} | {tier} | {nb} | {p50:.1f} | {c50:.1f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exps", type=int, nargs="+", default=[5, 6, 7])
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--reps", type=int, default=15)
    asyncio.run(main(p.parse_args()))
