"""µs per arwandb log() of 4 metrics (offline mode, background threads running); wandb if installed.

With ``--upload-calls N``: the server's CPU per point of SDK uploads, beside bulk JSON in
the same run. For each tree (this one, and ``--baseline DIR`` holding another revision's
``services/`` and ``sdk/``: ``git archive <rev> services schemas sdk | tar -x -C DIR``) an
``arwx server`` (embedded) is started and warmed up. Then, per ``--upload-rate`` (log() calls/s;
0: as fast as it can, a backlog): an SDK process (that tree's arwandb, defaults but no system
metrics) logs N calls of 4 metrics at that pace (at most ``--upload-seconds``) and finishes;
then one client posts as many points as JSON batches of 5,000 (bench_ingest's bodies) at the
same pace (the consumer batches by rate, so only equal paces compare). Printed per phase: the
server process's CPU (user+sys, from /proc) from the phase's start until the consumer has
stored its last point, per point; the ingest requests; the SDK process's own CPU per point;
for paced SDK phases, log() → the server's acknowledgement of the call's points, p50/p99 (the
SDK's part of freshness: the rest is the server storing them).

    PYTHONPATH=sdk python bench/bench_sdk_log.py [--calls 200000]
    python bench/bench_sdk_log.py --calls 0 --upload-calls 50000 --upload-rate 20 2500 0 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "--upload-child" not in sys.argv:  # the child imports the SDK of the tree it is given
    sys.path.insert(0, str(ROOT / "sdk"))


def measure(log, calls: int) -> list[float]:
    """Per-call wall time in µs (each call timed on its own, perf_counter_ns overhead included)."""
    pc = time.perf_counter_ns
    out = [0.0] * calls
    for i in range(calls):
        m = {"loss": 1.0 / (i + 1), "lr": 3e-4, "acc": 0.5, "grad_norm": 1.25}
        t0 = pc()
        log(m)
        out[i] = (pc() - t0) / 1000.0
    return out


def row(name: str, us: list[float]) -> str:
    us = sorted(us)
    p = lambda q: us[min(len(us) - 1, int(q * len(us)))]  # noqa: E731
    return (
        f"| {name:<22} | {len(us):>8} | {statistics.median(us):>8.2f} | {p(0.99):>8.2f} | {p(0.999):>8.2f} |"
    )


def upload_child(url: str, key: str, calls: int, rate: float, run_id: str) -> None:
    """The SDK side of one upload phase (its own process, the tree's SDK on sys.path)."""
    import arwandb
    from arwandb import uploader

    requests = [0]
    orig = uploader.HttpTransport.request

    def counted(self, method, path, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if path.startswith("/v1/ingest"):
            requests[0] += 1
        return orig(self, method, path, *a, **kw)

    uploader.HttpTransport.request = counted  # type: ignore[method-assign]
    logged = [0.0] * calls  # monotonic time of each log() call
    acked = [0.0] * calls  # ... and of the server's acknowledgement of its 4 points
    with tempfile.TemporaryDirectory() as d:
        cpu0 = time.process_time()
        run = arwandb.init(project="bench", id=run_id, writer_id="w", dir=d, system_metrics=False,
                           base_url=url, api_key=key, finish_timeout=600)
        done = threading.Event()
        spool = run._main.spool  # the acknowledged watermark: seqs below it are on the server

        def watch() -> None:
            j = 0
            while j < calls and not done.is_set():
                a = spool.acked
                now = time.monotonic()
                while j < calls and logged[j] and a >= 4 * j + 4:
                    acked[j] = now
                    j += 1
                time.sleep(0.001)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        for i in range(calls):
            if rate and i % max(1, int(rate // 100)) == 0:
                due = t0 + i / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            logged[i] = time.monotonic()
            run.log({"loss": 1.0 / (i + 1), "lr": 3e-4, "acc": 0.5, "grad_norm": 1.25})
        run.finish()
        done.set()
        watcher.join()
        lat = sorted((a - t) * 1000 for a, t in zip(acked, logged) if a)
        pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
        print(json.dumps({"requests": requests[0], "sdk_cpu_s": time.process_time() - cpu0,
                          "ack_p50_ms": pct(0.5), "ack_p99_ms": pct(0.99)}))


def upload_rows(tree: Path, calls: int, rates: list[float], seconds: float) -> list[dict]:
    """Server µs/pt of SDK uploads (one row per rate) and of bulk JSON, one server per tree."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_ingest import _body, _cpu_s, _wait_stored

    from tests.helpers import ServerProcess, free_port

    out = []
    with tempfile.TemporaryDirectory() as d:
        ops = free_port()
        srv = ServerProcess(Path(d) / "data", extra=["--metrics-port", str(ops)], source=tree).start()
        try:
            api = srv.api()
            pid = srv.proc.pid
            # warm up: the first run created and stored loads the catalog mirror and the store's
            # libraries (about a second of CPU, once), which no phase should pay
            api.ok("POST", "/v1/runs", {"id": "warm-up"})
            api.ok("POST", "/v1/ingest", raw=_body("warm-up", "w", 0, 1000, "json"))
            stored = 1000
            _wait_stored(ops, stored)
            for i, rate in enumerate(rates):
                calls_here = calls if not rate else min(calls, int(rate * seconds))
                env = dict(os.environ, PYTHONPATH=str(tree / "sdk"))
                cpu0 = _cpu_s(pid)
                child = subprocess.run(
                    [sys.executable, __file__, "--upload-child", srv.url, srv.key, str(calls_here), str(rate), f"sdk-{i}"],
                    env=env, capture_output=True, text=True, timeout=1800, check=True,
                )
                stored += calls_here * 4
                _wait_stored(ops, stored)
                sdk_cpu = _cpu_s(pid) - cpu0
                res = json.loads(child.stdout.strip().splitlines()[-1])
                pace = "as fast as it can" if not rate else f"{rate * 4:,.0f} points/s"
                out.append({"tree": tree, "what": f"SDK, {pace}", "points": calls_here * 4,
                            "server_us": sdk_cpu / (calls_here * 4) * 1e6, "requests": res["requests"],
                            "sdk_us": res["sdk_cpu_s"] / (calls_here * 4) * 1e6,
                            "ack": (res["ack_p50_ms"], res["ack_p99_ms"]) if rate else None})
                # bulk JSON at the same pace: the consumer's batching depends on the rate, not the body
                n = calls_here * 4
                api.ok("POST", "/v1/runs", {"id": f"bulk-{i}"})
                bodies = [_body(f"bulk-{i}", "w", seq0, min(5000, n - seq0), "json") for seq0 in range(0, n, 5000)]
                cpu0 = _cpu_s(pid)
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
                hdr = {"Authorization": f"Bearer {srv.key}", "Content-Type": "application/json"}
                t0 = time.monotonic()
                for j, body in enumerate(bodies):
                    if rate:
                        due = t0 + j * 5000 / (rate * 4)
                        if due > time.monotonic():
                            time.sleep(due - time.monotonic())
                    conn.request("POST", "/v1/ingest", body=body, headers=hdr)
                    r = conn.getresponse()
                    r.read()
                    assert r.status == 200, r.status
                conn.close()
                stored += n
                _wait_stored(ops, stored)
                out.append({"tree": tree, "what": f"bulk JSON, batches of 5,000, {pace}", "points": n,
                            "server_us": (_cpu_s(pid) - cpu0) / n * 1e6, "requests": len(bodies), "sdk_us": None,
                            "ack": None})
        finally:
            srv.terminate()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--upload-calls", type=int, default=0, help="log() calls per SDK upload phase (0: none)")
    ap.add_argument("--upload-rate", type=float, nargs="+", default=[2500.0, 0.0],
                    help="log() calls/s of each SDK upload phase (0: as fast as it can)")
    ap.add_argument("--upload-seconds", type=float, default=20.0, help="at most this long per paced phase")
    ap.add_argument("--baseline", help="a tree with another revision's services/ and sdk/")
    ap.add_argument("--upload-child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upload_child:
        url, key, calls, rate, run_id = args.upload_child
        upload_child(url, key, int(calls), float(rate), run_id)
        return
    if args.upload_calls:
        la = os.getloadavg()
        print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
        trees = [("this tree", ROOT)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else [])
        print("| tree | upload | points | server µs/pt | ÷ bulk JSON at that pace | requests | SDK process µs/pt "
              "| log() → acknowledged p50 / p99 ms |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, tree in trees:
            rows = upload_rows(tree, args.upload_calls, args.upload_rate, args.upload_seconds)
            for sdk_row, bulk_row in zip(rows[0::2], rows[1::2]):
                for r in (sdk_row, bulk_row):
                    sdk = f"{r['sdk_us']:.2f}" if r["sdk_us"] is not None else "–"
                    ack = f"{r['ack'][0]:.0f} / {r['ack'][1]:.0f}" if r["ack"] else "–"
                    print(f"| {name} | {r['what']} | {r['points']:,} | {r['server_us']:.2f} | "
                          f"{r['server_us'] / bulk_row['server_us']:.2f} | {r['requests']:,} | {sdk} | {ack} |",
                          flush=True)
        if not args.calls:
            return
    import arwandb

    lines = [
        "| SDK                    |    calls | median µs |  p99 µs | p99.9 µs |",
        "|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as d:
        run = arwandb.init(project="bench", mode="offline", dir=d, system_metrics=True)
        measure(run.log, 5_000)  # warm-up
        us = measure(run.log, args.calls)
        t0 = time.perf_counter()
        run.finish()
        fin = time.perf_counter() - t0
        lines.append(row("arwandb (offline)", us))
    try:
        import wandb  # type: ignore[import-not-found]
    except ImportError:
        wandb = None
    if wandb is None:
        note = "wandb not installed"
    else:
        with tempfile.TemporaryDirectory() as d:
            wr = wandb.init(project="bench", mode="offline", dir=d)
            wus = measure(wr.log, min(args.calls, 50_000))
            wr.finish()
            lines.append(row("wandb (offline)", wus))
            note = f"wandb {wandb.__version__}"
    print("\n".join(lines))
    print(f"\narwandb finish() (spool drain of {args.calls * 4} points): {fin:.2f} s; {note}")


if __name__ == "__main__":
    main()
