"""Freshness: time from the SDK's ``log()`` to the point being visible in history.

Starts ``arwx server`` (embedded), puts a background load on it (writer
processes of bench_ingest, capped at --rate points/s: use about half the
end-to-end maximum bench_ingest measured), and runs one ``arwandb`` run that
logs a "probe" metric every --every seconds. A poller reads the probe's
history (``GET /v1/runs/:id/metrics?keys=probe&min_step=…``) as fast as the
server answers; a probe's freshness is (first poll that shows it) − (its
``log()`` call). Prints p50/p90/p99/max. The poll interval bounds resolution:
each figure is too high by at most one poll's duration (printed).

    python bench/bench_freshness.py --rate 100000 --seconds 60
    python bench/bench_freshness.py --rate 0 --seconds 20        # an idle server
    python bench/bench_freshness.py --receipt 30 --baseline DIR  # ack -> intact receipt, idle server

``--receipt N``: instead, N probes of the receipt's freshness on an idle server:
a burst of 5 batches of 1000 points, then the time from the last batch's
acknowledgement to the first ``intact`` receipt counting them (polled every
5 ms; ``bench_history.freshness``), with the receipt's own duration (p50 of
its polls). ``--baseline DIR`` measures another tree's ``services/`` in the
same invocation, interleaved run by run. ``--receipt-points N`` also loads a
run of N points, restarts the server and times its receipts: the first one
after the restart, then the median of 10.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "sdk"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import _writer  # noqa: E402

from tests.helpers import ServerProcess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100_000, help="background points/s (0: none)")
    ap.add_argument("--writers", type=int, default=4, help="background writer processes")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--every", type=float, default=0.05, help="seconds between probe log() calls")
    ap.add_argument("--flush-interval", type=float, default=None, help="the SDK's flush_interval (default: the SDK's)")
    ap.add_argument("--receipt", type=int, default=0, help="probes of ack -> intact receipt (idle server) instead")
    ap.add_argument("--receipt-points", type=int, default=0,
                    help="with --receipt: also time receipts of a run of this many points (after a restart, then warm)")
    ap.add_argument("--baseline", help="with --receipt: a tree whose services/ is the 'before' server; "
                    "without: measure that tree's sdk/ and services/ instead of this one's")
    a = ap.parse_args()
    if a.receipt:
        receipt_freshness(a)
        return
    source = Path(a.baseline).resolve() if a.baseline else ROOT
    sys.path.insert(0, str(source / "sdk"))
    import arwandb

    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    with tempfile.TemporaryDirectory() as d:
        srv = ServerProcess(Path(d) / "data", source=source).start()
        try:
            api = srv.api()
            procs = []
            q: mp.Queue = mp.Queue()
            if a.rate > 0:
                api.ok("POST", "/v1/runs", {"id": "load"})
                ctx = mp.get_context("fork")
                go = ctx.Event()
                procs = [
                    ctx.Process(target=_writer, args=(srv.port, srv.key, ["load"], f"w{i}", a.batch, "json",
                                                      a.seconds + 5, a.rate / a.writers, 2, q, go))
                    for i in range(a.writers)
                ]
                for p in procs:
                    p.start()
                time.sleep(2)
                go.set()
                time.sleep(3)  # let the load settle
            flush = {} if a.flush_interval is None else {"flush_interval": a.flush_interval}
            run = arwandb.init(
                project="bench", id="probe", writer_id="probe", mode="online", dir=d, system_metrics=False,
                base_url=srv.url, api_key=srv.key, **flush,
            )
            logged: dict[int, float] = {}
            seen: dict[int, float] = {}
            polls: list[float] = []
            stop = threading.Event()

            def poll() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                hdr = {"Authorization": f"Bearer {srv.key}"}
                nxt = 0
                while not stop.is_set() or len(seen) < len(logged):
                    t0 = time.perf_counter()
                    conn.request("GET", f"/v1/runs/probe/metrics?keys=probe&min_step={nxt}&limit=10000", headers=hdr)
                    resp = conn.getresponse()
                    body = resp.read()
                    now = time.time()
                    polls.append(time.perf_counter() - t0)
                    if resp.status == 200:
                        for row in json.loads(body)["rows"]:
                            s = int(row["step"])
                            seen.setdefault(s, now)
                            nxt = max(nxt, s + 1)
                    if stop.is_set() and time.perf_counter() - t_stop > 60:
                        return
                    time.sleep(0.005)

            t_stop = 0.0
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            t_end = time.monotonic() + a.seconds
            i = 0
            while time.monotonic() < t_end:
                logged[i] = time.time()
                run.log({"probe": float(i)}, step=i)
                i += 1
                time.sleep(a.every)
            t_stop = time.perf_counter()
            stop.set()
            poller.join(90)
            run.finish()
            for p in procs:
                p.join(60)
        finally:
            srv.terminate()
    lat = sorted((seen[s] - logged[s]) * 1000 for s in logged if s in seen)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    print("| background load | probes | seen | p50 ms | p90 ms | p99 ms | max ms | poll p50 ms | SDK flush_interval |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {a.rate:,.0f} pts/s | {len(logged)} | {len(lat)} | {pct(0.5):.0f} | {pct(0.9):.0f} | {pct(0.99):.0f} | "
        f"{lat[-1]:.0f} | {statistics.median(polls) * 1000:.1f} | {a.flush_interval or 'default'} |"
    )


def receipt_freshness(a: argparse.Namespace) -> None:
    """Ack of a last batch -> intact receipt, idle server; this tree and the baseline, alternating."""
    from bench_history import Client, freshness

    trees = [("this tree", ROOT)] + ([("baseline", Path(a.baseline).resolve())] if a.baseline else [])
    got: dict[str, list[float]] = {n: [] for n, _ in trees}
    receipt_ms: dict[str, list[float]] = {n: [] for n, _ in trees}
    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    rounds = 2
    for r in range(rounds):
        for name, tree in trees:
            with tempfile.TemporaryDirectory() as d:
                srv = ServerProcess(Path(d) / "data", source=tree).start()
                try:
                    c = Client(srv.port, srv.key)
                    n = a.receipt // rounds + (a.receipt % rounds if r == 0 else 0)
                    got[name] += freshness(c, f"fresh{r}", n)
                    for _ in range(20):
                        t0 = time.perf_counter()
                        c.json("GET", f"/v1/runs/fresh{r}/integrity")
                        receipt_ms[name].append((time.perf_counter() - t0) * 1000)
                finally:
                    srv.terminate()
    big: dict[str, tuple[float, float]] = {}
    if a.receipt_points:
        from bench_history import load

        for name, tree in trees:
            with tempfile.TemporaryDirectory() as d:
                srv = ServerProcess(Path(d) / "data", source=tree).start()
                key = srv.key
                try:
                    load(Client(srv.port, key), "big", a.receipt_points)
                finally:
                    srv.terminate()
                srv = ServerProcess(Path(d) / "data", source=tree).start()
                srv.key = key
                try:
                    c = Client(srv.port, srv.key)
                    times = []
                    for _ in range(11):
                        t0 = time.perf_counter()
                        r = c.json("GET", "/v1/runs/big/integrity")
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r["intact"] and r["points_stored"] == a.receipt_points, r
                    big[name] = (times[0], statistics.median(times[1:]))
                finally:
                    srv.terminate()
    la = os.getloadavg()
    print(f"<!-- done; load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    names = [n for n, _ in trees]
    print(f"| ack → intact receipt, idle server, {a.receipt} probes (ms) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        print(f"| {label} | " + " | ".join(f"{pct(got[n], q) * 1000:,.0f}" for n in names) + " |")
    print("| one receipt of the idle run, p50 ms | " + " | ".join(f"{statistics.median(receipt_ms[n]):.1f}" for n in names) + " |")
    if big:
        print(f"| receipt of a {a.receipt_points:,}-point run, first after a restart, ms | "
              + " | ".join(f"{big[n][0]:,.0f}" for n in names) + " |")
        print(f"| receipt of a {a.receipt_points:,}-point run, then (median of 10), ms | "
              + " | ".join(f"{big[n][1]:,.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
