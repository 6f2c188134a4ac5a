"""Ingest throughput: points/s from HTTP clients into queryable storage.

Starts a real ``arwx server`` (embedded unless --kafka), runs N writer
processes that post batches (JSON or NDJSON) as fast as the server
acknowledges, then waits until every run's integrity receipt shows every point
stored. Prints, per configuration, one row of a Markdown table:

- accepted/s: points acknowledged by the gateway per second (durable in the log)
- stored/s: end to end, first request → last point written by the consumer
  (the ops listener's counter, polled every 20 ms); then every run's
  integrity receipt must be intact with every point stored
- backlog, drain/s: points not yet written when the writers stopped, and the
  rate the consumer wrote them at afterwards (consumer alone on the machine)
- µs/pt accept / total: CPU time (user+sys) the server process(es) spent per
  point while writers posted / in all (until the receipt is intact), whatever
  the load of the machine: the figure to compare between code versions
- p50/p99 ms: request latency seen by the writers
- peak RSS: the server's VmHWM; with --rss-every the RSS series is printed too

    python bench/bench_ingest.py                       # 8 writers, 60 s, JSON batches of 5000
    python bench/bench_ingest.py --quick               # a few seconds (CI smoke: asserts nothing lost)
    python bench/bench_ingest.py --writers 1 8 64 --format json ndjson --seconds 60
    python bench/bench_ingest.py --accept-only         # gateway alone: the consumer is not running
    python bench/bench_ingest.py --runs 1 10 100       # cost growth with the number of runs
    python bench/bench_ingest.py --kafka 127.0.0.1:9092   # or --kafka auto: start tests/kafka_broker.py
    python bench/bench_ingest.py --seconds 600 --rss-every 30   # memory stays flat?

--accept-only runs ``arwx gateway`` (gateway role only, embedded log) on the
data directory of a bootstrapped server, so nothing consumes while writers
post; afterwards a full ``arwx server`` consumes the backlog and the receipt
is checked as always (its drain time is reported as stored/s of the backlog).

The writers run on the same machine as the server: on a small machine they
take CPU from it (each pre-encodes its bodies with msgspec before its clock
starts, up to --pregen MB, then encodes on the fly).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))

from tests.helpers import Api, ServerProcess, free_port, wait_for  # noqa: E402

KEYS = ("loss", "lr", "grad_norm", "tokens_per_s")
_enc = msgspec.json.Encoder()


def _body(run_id: str, writer: str, seq0: int, n: int, fmt: str) -> bytes:
    pts = [
        {"seq": s, "step": s // 4, "key": KEYS[s % 4], "value": s * 0.001 + 0.5, "ts": 1.7e9 + s / 1000}
        for s in range(seq0, seq0 + n)
    ]
    if fmt == "json":
        return _enc.encode({"run_id": run_id, "writer_id": writer, "points": pts})
    return b"".join(_enc.encode({"run_id": run_id, "writer_id": writer, **p}) + b"\n" for p in pts)


def _writer(
    port: int, key: str, runs: list[str], writer: str, batch: int, fmt: str, seconds: float,
    rate: float | None, pregen_mb: float, q: mp.Queue, go: mp.Event,  # type: ignore[valid-type]
) -> None:
    """Post batches round-robin over ``runs`` until ``seconds`` pass; ``rate``: points/s cap."""
    path = "/v1/ingest" if fmt == "json" else "/v1/ingest/stream"
    ctype = "application/json" if fmt == "json" else "application/x-ndjson"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    next_seq = dict.fromkeys(runs, 0)
    b = 0

    def make() -> tuple[str, bytes, int]:
        nonlocal b
        run = runs[b % len(runs)]
        b += 1
        body = _body(run, writer, next_seq[run], batch, fmt)
        next_seq[run] += batch
        return run, body, batch

    pre: list[tuple[str, bytes, int]] = []
    size = 0
    while size < pregen_mb * 1e6:
        pre.append(make())
        size += len(pre[-1][1])
    go.wait()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    sent: dict[str, int] = dict.fromkeys(runs, 0)
    lat: list[float] = []
    t_start = time.monotonic()
    deadline = t_start + seconds
    i = 0
    total = 0
    while time.monotonic() < deadline:
        run, body, n = pre[i] if i < len(pre) else make()
        i += 1
        if rate:
            due = t_start + total / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
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
        sent[run] += n
        total += n
    q.put((writer, sent, lat))


def _stored(ops_port: int) -> float:
    c = http.client.HTTPConnection("127.0.0.1", ops_port, timeout=30)
    c.request("GET", "/metrics")
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith("arwx_consumer_points_written_total "):
            return float(line.split()[1])
    return 0.0


def _wait_stored(ops_port: int, total: int, timeout: float = 1800) -> None:
    """Until the consumer has written ``total`` points: a cheap poll of the ops
    listener's counter (a receipt reads the whole run, FINAL: polling it would
    cost the server more CPU than the ingest being measured)."""
    deadline = time.monotonic() + timeout
    while _stored(ops_port) < total and time.monotonic() < deadline:
        time.sleep(0.02)


def _wait_intact(api: Api, run_id: str, expected: int, timeout: float = 1800) -> dict:
    """The receipt once every point is stored."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.receipt(run_id)
        if r["intact"] and r["points_stored"] >= expected and r["pending"] == 0:
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"no intact receipt for {run_id} with {expected} points: {r}")
        time.sleep(0.5)


def _cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (``comm``) of the process: chDB names its
    threads (merges, inserts, query pipelines), which py-spy cannot see."""
    out: dict[str, float] = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (t / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """VmRSS of the server every ``every`` seconds."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.samples.append((time.monotonic() - self.t0, _status_kb(self.pid, "VmRSS") / 1024))
            except OSError:
                return


def _start_kafka() -> tuple[str, object]:
    from tests.kafka_broker import KafkaBroker  # type: ignore[attr-defined]

    broker = KafkaBroker()
    broker.start()
    return broker.bootstrap, broker


def run(
    writers: int, batch: int, fmt: str, seconds: float, kafka: str | None, n_runs: int = 1,
    accept_only: bool = False, rate: float | None = None, rss_every: float = 0, pregen_mb: float = 8,
    source: Path = ROOT, profile: str | None = None,
) -> dict:
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        extra = ["--kafka", kafka, "--kafka-topic", f"bench.{time.time_ns()}"] if kafka else []
        ops_port = free_port()
        srv = ServerProcess(data, extra=[*extra, "--metrics-port", str(ops_port)], source=source).start()
        gw: subprocess.Popen | None = None
        spy: subprocess.Popen | None = None
        try:
            api: Api = srv.api()
            runs = [f"bench-{writers}-{fmt}-{r}" for r in range(n_runs)]
            for r in runs:
                api.ok("POST", "/v1/runs", {"id": r})
            target = srv
            if accept_only:
                srv.terminate()
                gw_srv = ServerProcess(data, extra=extra)
                gw_srv.key = srv.key
                env = dict(os.environ, PYTHONPATH=str(source / "services"), PYTHONUNBUFFERED="1")
                gw = subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "_serve_roles.py"), "gateway,query", "server",
                     "--port", str(gw_srv.port), "--data-dir", str(data), *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                )
                wait_for(lambda: Api(gw_srv.url, srv.key).get("/health")[0] == 200, 60, 0.1, "gateway up")
                target = gw_srv
                target.proc = gw
            pid = target.proc.pid
            q: mp.Queue = mp.Queue()
            ctx = mp.get_context("fork")
            go = ctx.Event()
            procs = [
                ctx.Process(
                    target=_writer,
                    args=(target.port, srv.key, runs[i % n_runs :] + runs[: i % n_runs], f"w{i}", batch, fmt,
                          seconds, rate / writers if rate else None, pregen_mb / max(1, writers // 8), q, go),
                )
                for i in range(writers)
            ]
            for p in procs:
                p.start()
            time.sleep(min(30, 1 + writers * pregen_mb / 40))  # let the writers pre-encode
            rss = RssSampler(pid, rss_every or 1.0)
            rss.start()
            if profile:
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-r", "50", "-f", "raw",
                     "-o", profile, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            cpu0 = _cpu_s(pid)
            threads0 = _threads_cpu(pid)
            t0 = time.perf_counter()
            go.set()
            results = [q.get(timeout=seconds + 300) for _ in procs]
            t_accept = time.perf_counter() - t0
            cpu_accept = _cpu_s(pid) - cpu0
            stored_at_accept = 0.0 if accept_only else _stored(ops_port)
            for p in procs:
                p.join(30)
            sent: dict[str, dict[str, int]] = {r: {} for r in runs}
            for w, per_run, _ in results:
                for r, n in per_run.items():
                    if n:
                        sent[r][w] = n
            total = sum(n for per in sent.values() for n in per.values())
            t_drain0 = time.perf_counter()
            if accept_only:
                assert gw is not None
                gw.terminate()
                gw.wait(60)
                srv = ServerProcess(data, extra=[*extra, "--metrics-port", str(ops_port)], source=source).start()
                srv.key = target.key
                api = Api(srv.url, srv.key)
                pid = srv.proc.pid
                t_drain0 = time.perf_counter()
                cpu0 = _cpu_s(pid)
            _wait_stored(ops_port, total)
            if spy is not None:  # the whole time until stored: the consumer's drain too
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            threads = {k: v - threads0.get(k, 0.0) for k, v in _threads_cpu(pid).items()} if not accept_only else {}
            t_stored = time.perf_counter() - (t_drain0 if accept_only else t0)
            t_drain = time.perf_counter() - t_drain0 if accept_only else t_stored - t_accept
            cpu_total = _cpu_s(pid) - cpu0 + (cpu_accept if accept_only else 0)
            for r in runs:
                api.ok("POST", f"/v1/runs/{r}/finish", {"writer_totals": sent[r]})
            receipts = [_wait_intact(api, r, sum(sent[r].values())) for r in runs]
            rss.stop.set()
            lats = sorted(x for r in results for x in r[2])
            return {
                "mode": ("kafka" if kafka else "embedded") + (" accept-only" if accept_only else ""),
                "writers": writers,
                "runs": n_runs,
                "format": fmt,
                "batch": batch,
                "seconds": seconds,
                "points": total,
                "accept_pps": total / t_accept,
                "e2e_pps": total / t_stored,
                "backlog": total - stored_at_accept,
                "drain_pps": (total - stored_at_accept) / t_drain if t_drain > 0.05 else 0,
                "cpu_us_accept": cpu_accept / total * 1e6 if total else 0,
                "cpu_us_total": cpu_total / total * 1e6 if total else 0,
                "p50_ms": lats[len(lats) // 2] * 1000 if lats else 0,
                "p99_ms": lats[int(len(lats) * 0.99)] * 1000 if lats else 0,
                "rss_mb": _status_kb(pid, "VmHWM") / 1024,
                "rss_series": rss.samples,
                "threads": threads,
                "lost": sum(rc["lost"] for rc in receipts),
                "intact": all(rc["intact"] for rc in receipts),
            }
        finally:
            if gw is not None and gw.poll() is None:
                gw.kill()
            if srv.proc is not None and srv.proc.poll() is None:
                srv.terminate()


HEADER = (
    "| code | mode | writers | runs | format | batch | seconds | points | accepted/s | stored/s | backlog | drain/s | µs/pt accept | µs/pt total | "
    "p50 ms | p99 ms | peak RSS MB | intact |\n|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def fmt_row(r: dict) -> str:
    return (
        f"| {r.get('code', 'this tree')} | {r['mode']} | {r['writers']} | {r['runs']} | {r['format']} | {r['batch']} | {r['seconds']:.0f} | "
        f"{r['points']:,} | {r['accept_pps']:,.0f} | {r['e2e_pps']:,.0f} | {r['backlog']:,.0f} | "
        f"{r['drain_pps']:,.0f} | {r['cpu_us_accept']:.2f} | "
        f"{r['cpu_us_total']:.2f} | "
        f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rss_mb']:.0f} | {r['intact'] and r['lost'] == 0} |"
    )


def machine() -> str:
    load = os.getloadavg()
    import chdb

    return (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}, "
        f"chdb {chdb.__version__}, msgspec {msgspec.__version__}; load avg {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writers", type=int, nargs="+", default=[8])
    p.add_argument("--runs", type=int, nargs="+", default=[1], help="runs the writers spread over")
    p.add_argument("--batch", type=int, default=5000, help="points per request")
    p.add_argument("--format", choices=["json", "ndjson"], nargs="+", default=["json"])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rate", type=float, default=None, help="cap on points/s offered (all writers)")
    p.add_argument("--kafka", default=None, help="bootstrap servers, or 'auto' to start a local broker")
    p.add_argument("--accept-only", action="store_true", help="gateway alone; the consumer drains afterwards")
    p.add_argument("--rss-every", type=float, default=0, help="print the server's RSS every N s")
    p.add_argument("--pregen-mb", type=float, default=8, help="bodies each writer encodes before the clock starts")
    p.add_argument("--quick", action="store_true", help="3 s, 4 writers: a smoke test that nothing is lost")
    p.add_argument("--baseline", help="a tree whose services/ is the 'before' server: each row is run on both, interleaved")
    p.add_argument("--threads", action="store_true", help="print the server's CPU per point by thread name")
    p.add_argument("--profile", help="py-spy raw profiles of the server while writers post: FILE prefix")
    a = p.parse_args()
    if a.quick:
        a.writers, a.seconds, a.batch, a.pregen_mb = [4], 3.0, 1000, 1
    broker = None
    if a.kafka == "auto":
        a.kafka, broker = _start_kafka()
    trees = [("this tree", ROOT)] + ([("baseline", Path(a.baseline).resolve())] if a.baseline else [])
    print(f"<!-- {machine()} -->", flush=True)
    print(HEADER, flush=True)
    ok = True
    try:
        for fmt in a.format:
            for w in a.writers:
                for nr in a.runs:
                    for code, tree in trees:
                        prof = f"{a.profile}-{code.replace(' ', '_')}-w{w}-r{nr}-{fmt}.txt" if a.profile else None
                        r = run(w, a.batch, fmt, a.seconds, a.kafka, nr, a.accept_only, a.rate, a.rss_every,
                                a.pregen_mb, tree, prof)
                        r["code"] = code
                        ok &= r["intact"] and r["lost"] == 0
                        print(fmt_row(r), flush=True)
                        if a.threads:
                            top = sorted(r["threads"].items(), key=lambda kv: -kv[1])[:12]
                            print("<!-- µs/pt by thread: " + ", ".join(
                                f"{k} {v / r['points'] * 1e6:.2f}" for k, v in top if v > 0) + " -->", flush=True)
                    if a.rss_every:
                        print("RSS MB over time: " + ", ".join(f"{t:.0f}s={m:.0f}" for t, m in r["rss_series"]))
    finally:
        if broker is not None:
            broker.stop()  # type: ignore[attr-defined]
    print(f"<!-- done: {machine()} -->", flush=True)
    if not ok:
        sys.exit("LOST POINTS: the receipt is not intact")


if __name__ == "__main__":
    main()
