"""Ingest throughput: points/s from HTTP clients into queryable storage.

Starts a real ``arwx server`` (embedded unless --kafka), runs N writer
processes that post pre-encoded batches (JSON or NDJSON) as fast as the server
acknowledges, then waits until the integrity receipt shows every point stored.
Prints the accept rate (acknowledged by the gateway) and the end-to-end rate
(first request → last point queryable), and checks nothing was lost.

    python bench/bench_ingest.py                       # 8 writers, 60 s, JSON batches of 5000
    python bench/bench_ingest.py --quick               # a few seconds (CI smoke: asserts nothing lost)
    python bench/bench_ingest.py --writers 64 --format ndjson --seconds 60
    python bench/bench_ingest.py --kafka 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))

from tests.helpers import Api, ServerProcess  # noqa: E402


def _writer(port: int, key: str, run_id: str, writer: str, batch: int, fmt: str, seconds: float, q: mp.Queue) -> None:
    path = "/v1/ingest" if fmt == "json" else "/v1/ingest/stream"
    ctype = "application/json" if fmt == "json" else "application/x-ndjson"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    sent = 0
    lat: list[float] = []
    deadline = time.monotonic() + seconds
    chunk = 64  # pre-encode in chunks so memory stays small for long runs
    b = 0
    while time.monotonic() < deadline:
        bodies = [_one(run_id, writer, batch, fmt, b + i) for i in range(chunk)]
        for body in bodies:
            if time.monotonic() >= deadline:
                break
            t0 = time.perf_counter()
            while True:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status in (200, 201):
                    break
                if resp.status in (429, 503):
                    time.sleep(float(resp.getheader("Retry-After", "0.1")) / 10)
                    continue
                raise RuntimeError(f"{path} -> {resp.status}")
            lat.append(time.perf_counter() - t0)
            sent += batch
            b += 1
    q.put((writer, sent, lat))


def _one(run_id: str, writer: str, batch: int, fmt: str, b: int) -> bytes:
    keys = ("loss", "lr", "grad_norm", "tokens_per_s")
    pts = [
        {"seq": s, "step": s // 4, "key": keys[s % 4], "value": s * 0.001, "ts": 1.7e9 + s / 1000}
        for s in range(b * batch, (b + 1) * batch)
    ]
    if fmt == "json":
        return json.dumps({"run_id": run_id, "writer_id": writer, "points": pts}).encode()
    return b"".join(json.dumps({"run_id": run_id, "writer_id": writer, **p}).encode() + b"\n" for p in pts)


def run(writers: int, batch: int, fmt: str, seconds: float, kafka: str | None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        extra = ["--kafka", kafka, "--kafka-topic", f"bench.{int(time.time())}"] if kafka else []
        srv = ServerProcess(Path(d) / "data", extra=extra).start()
        try:
            api: Api = srv.api()
            run_id = f"bench-{writers}-{fmt}"
            api.ok("POST", "/v1/runs", {"id": run_id})
            q: mp.Queue = mp.Queue()
            ctx = mp.get_context("fork")
            procs = [
                ctx.Process(target=_writer, args=(srv.port, srv.key, run_id, f"w{i}", batch, fmt, seconds, q))
                for i in range(writers)
            ]
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            results = [q.get(timeout=seconds + 300) for _ in procs]
            t_accept = time.perf_counter() - t0
            for p in procs:
                p.join(30)
            total = sum(r[1] for r in results)
            api.ok("POST", f"/v1/runs/{run_id}/finish", {"writer_totals": {w: n for w, n, _ in results}})
            receipt = api.wait_intact(run_id, total, timeout=600)
            t_stored = time.perf_counter() - t0
            lats = sorted(x for r in results for x in r[2])
            rss = _rss_kb(srv.proc.pid)
            return {
                "writers": writers,
                "format": fmt,
                "batch": batch,
                "points": total,
                "accept_pps": total / t_accept,
                "e2e_pps": total / t_stored,
                "p50_ms": lats[len(lats) // 2] * 1000 if lats else 0,
                "p99_ms": lats[int(len(lats) * 0.99)] * 1000 if lats else 0,
                "rss_mb": rss / 1024,
                "lost": receipt["lost"],
                "intact": receipt["intact"],
            }
        finally:
            srv.terminate()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set size
            return int(line.split()[1])
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writers", type=int, nargs="+", default=[8])
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--format", choices=["json", "ndjson"], nargs="+", default=["json"])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--kafka", default=None)
    p.add_argument("--quick", action="store_true", help="3 s, 4 writers: a smoke test that nothing is lost")
    a = p.parse_args()
    if a.quick:
        a.writers, a.seconds, a.batch = [4], 3.0, 1000
    print(f"{'mode':9} {'writers':>7} {'format':>6} {'batch':>5} {'points':>10} {'accepted/s':>11} "
          f"{'stored/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'peak RSS':>9} intact")
    ok = True
    for fmt in a.format:
        for w in a.writers:
            r = run(w, a.batch, fmt, a.seconds, a.kafka)
            ok &= r["intact"] and r["lost"] == 0
            print(f"{'kafka' if a.kafka else 'embedded':9} {r['writers']:>7} {r['format']:>6} {r['batch']:>5} "
                  f"{r['points']:>10,} {r['accept_pps']:>11,.0f} {r['e2e_pps']:>10,.0f} {r['p50_ms']:>7.1f} "
                  f"{r['p99_ms']:>7.1f} {r['rss_mb']:>7.0f}MB {r['intact']}", flush=True)
    if not ok:
        sys.exit("LOST POINTS: the receipt is not intact")


if __name__ == "__main__":
    main()
