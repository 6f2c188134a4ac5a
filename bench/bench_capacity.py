"""Capacity of each unit of the distributed topology, measured as separate processes.

One command, one Markdown table: for one ``arwx gateway`` process (accept rate,
acknowledged by Kafka with ``acks=all``), one ``arwx consumer`` process
(Kafka → store), one Kafka partition, and the store's insert rate per core,
the points/s seen here and the CPU-seconds each unit spent per million points
(its own rusage via psutil: user+system of the process and its threads), so
that a figure does not depend on what else runs on the machine. Each unit's
bottleneck is named from a py-spy profile of that process. Then a check of
the capacity model at the largest scale this machine allows: 2 gateways, 2
consumers, 2 partitions, predicted CPU per point (the sum of the units')
against measured.

The parts are those of ``tests/topology.py``: real Kafka (KRaft, one node),
PostgreSQL catalog, SeaweedFS, and as the store the ClickHouse engine (chDB)
behind ClickHouse's HTTP interface (``tests/clickhouse_http.py``): **no
ClickHouse server can be installed on this machine**, so the store's figures
are chDB's, a stand-in for one ClickHouse node.

    python bench/bench_capacity.py                    # ~4 min: 20 s per phase, 8 writers
    python bench/bench_capacity.py --seconds 30 --writers 8 --no-profile

Phases:
1. gateway: 1 ``arwx gateway``, topic of 1 partition, no consumer; writers post
   JSON batches as fast as the gateway acknowledges (acknowledged = on Kafka, acks=all).
2. consumer: 1 ``arwx consumer`` drains phase 1's backlog into the store;
   its CPU and the store process's CPU are measured apart.
3. partition: one aiokafka producer (acks=all) re-sends phase 1's messages
   as they are into a new 1-partition topic: the partition's rate with the
   gateway's Python out of the way, and the broker's CPU per point.
4. store: ``INSERT INTO points`` of 50,000-row Arrow blocks (the consumer's
   flush size) into chDB in this process: points per CPU-second of the engine.
5. scale check: 2 gateways + 2 consumers + 2 partitions (+ writers, broker,
   store) together until every point is stored; measured CPU per point of all
   parts against the sum of the units' figures; receipts intact.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import _writer  # noqa: E402

from tests.helpers import Api, wait_for  # noqa: E402
from tests.topology import Role, Topology  # noqa: E402

PYSPY = str(Path(sys.executable).parent / "py-spy")


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process (all its threads)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def java_pid(topology: Topology) -> int:
    """The broker's JVM (the child of its watchdog)."""
    assert topology.broker is not None and topology.broker._proc is not None
    kids = psutil.Process(topology.broker._proc.pid).children(recursive=True)
    return next(k.pid for k in kids if "java" in k.name())


class Profile:
    """``py-spy record`` of one process for ``seconds``, raw (collapsed) stacks."""

    def __init__(self, pid: int, seconds: float, enabled: bool) -> None:
        self.out = Path(tempfile.mkstemp(prefix="capacity-", suffix=".txt")[1])
        self.proc = None
        if enabled and Path(PYSPY).exists() and seconds >= 2:
            self.proc = subprocess.Popen(
                [PYSPY, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw",
                 "--nonblocking", "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

    def summary(self, top: int = 3) -> str:
        """Where the busy samples are: the leaf functions holding the most (self time), then
        the arwx functions whose calls hold the most (inclusive, below 90%: not the loop itself).
        Threads waiting in select/poll/lock waits are idle, not counted."""
        if self.proc is None:
            return "(not profiled)"
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        leaves: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = [_frame(f) for f in stack.split(";")]
            if frames[-1][0].rsplit(".", 1)[-1] in _IDLE:
                continue
            leaves[frames[-1][1]] += int(n)
            for name in {label for (_fn, label, mine) in frames if mine}:
                inclusive[name] += int(n)
        self.out.unlink(missing_ok=True)
        total = sum(leaves.values())
        if not total:
            return "(no samples)"
        self_part = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in leaves.most_common(top))
        incl = [(k, v) for k, v in inclusive.most_common() if v < 0.9 * total][:top]
        return f"self: {self_part}; inclusive: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in incl)


_IDLE = {"select", "poll", "wait", "_wait_for_tstate_lock", "accept", "_recv_into", "read", "readinto", "sleep"}


def _frame(raw: str) -> tuple[str, str, bool]:
    """A py-spy frame ``func (path:line)``: (function, ``func (file)``, whether it is arwx's code)."""
    name, _, where = raw.partition(" (")
    path = where.split(":")[0]
    # py-spy names files relative to their sys.path entry: "arwx/wire.py"
    mine = path.startswith("arwx/") or "/arwx/" in path or "clickhouse_http" in path
    return name, f"{name} ({Path(path).name})", mine


@dataclass
class Row:
    unit: str
    points: int
    seconds: float
    cpu: dict[str, float]  # process kind -> CPU seconds
    note: str = ""
    profile: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0

    def per_m(self, kind: str) -> float:
        return self.cpu.get(kind, 0.0) / self.points * 1e6 if self.points else 0.0


def run_writers(urls: list[str], key: str, runs: list[str], writers: int, seconds: float, batch: int) -> tuple[int, dict]:
    """``writers`` processes post JSON batches round-robin over ``urls`` for ``seconds``;
    returns the points acknowledged and per run, per writer counts."""
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    go = ctx.Event()
    procs = []
    for i in range(writers):
        port = int(urls[i % len(urls)].rsplit(":", 1)[1])
        # Writer i: gateway i mod G, run (i div G) mod R, so every gateway serves every run.
        mine = [runs[(i // len(urls)) % len(runs)]]
        procs.append(ctx.Process(target=_writer, args=(port, key, mine, f"w{i}", batch, "json", seconds, None, 4, q, go)))
    for p in procs:
        p.start()
    time.sleep(1 + writers * 0.4)  # let the writers pre-encode their bodies
    go.set()
    results = [q.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(30)
    per_run: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for w, sent, _lat in results:
        for r, n in sent.items():
            if n:
                per_run[r][w] = n
    return sum(n for d in per_run.values() for n in d.values()), per_run


def _written(roles: list[Role]) -> float:
    return sum(r.metric("arwx_consumer_points_written_total") for r in roles)


def _batch_rows(roles: list[Role]) -> float:
    """Mean points per store insert of these consumers (their ``arwx_consumer_batch_rows`` histogram)."""
    n = sum(r.metric("arwx_consumer_batch_rows_count") for r in roles)
    return sum(r.metric("arwx_consumer_batch_rows_sum") for r in roles) / n if n else 0.0


def _finish_and_check(t: Topology, per_run: dict[str, dict[str, int]]) -> bool:
    gw = Api(t.gateways[0].url, t.key)
    q = Api(t.query.url, t.key)  # type: ignore[union-attr]
    for r, totals in per_run.items():
        gw.ok("POST", f"/v1/runs/{r}/finish", {"writer_totals": totals})
    ok = True
    for r, totals in per_run.items():
        rec = q.wait_intact(r, sum(totals.values()), timeout=600)
        ok &= rec["intact"] and rec["lost"] == 0 and rec["points_stored"] == sum(totals.values())
    return ok


def phase_gateway_consumer(a: argparse.Namespace) -> tuple[Row, Row, list[bytes]]:
    t = Topology(gateways=1, consumers=0, partitions=1).start()
    try:
        gw = t.gateways[0]
        api = Api(gw.url, t.key)
        runs = [f"cap-{i}" for i in range(a.runs)]
        for r in runs:
            api.ok("POST", "/v1/runs", {"id": r})
        brk, store = java_pid(t), t.store.pid  # type: ignore[union-attr]
        c0 = {"gateway": cpu_s(gw.pid), "kafka broker": cpu_s(brk)}
        prof = Profile(gw.pid, a.seconds - 4, a.profile)
        t0 = time.perf_counter()
        total, per_run = run_writers([gw.url], t.key, runs, a.writers, a.seconds, a.batch)
        wall = time.perf_counter() - t0
        cpu = {k: cpu_s(p) - c0[k] for k, p in (("gateway", gw.pid), ("kafka broker", brk))}
        log_bytes = sum(f.stat().st_size for f in (t.broker.workdir / "data").glob("arwx.topology.*-0/*.log"))  # type: ignore[union-attr]
        gateway = Row("one gateway (accept, acks=all, 1 partition)", total, wall, cpu, profile=prof.summary(),
                      extra={"bytes_per_point": log_bytes / total if total else 0})
        # Phase 2: one consumer drains the backlog (nothing else writes).
        messages = asyncio.run(_read_topic(t.kafka_bootstrap, f"arwx.topology.{t.tag}", a.partition_messages))  # type: ignore[arg-type]
        gw.stop()
        cons = Role("consumer-1", "consumer", t.flags(), t.env(), t.workdir / "logs")
        cons.start()
        t.consumers.append(cons)
        # From the moment it is up: its start-up (imports, joining the group) is not per point.
        c0 = {"store": cpu_s(store), "consumer": cpu_s(cons.pid)}
        w0 = _written([cons])
        t0 = time.perf_counter()
        prof = Profile(cons.pid, min(a.seconds, 15), a.profile)
        prof_store = Profile(store, min(a.seconds, 15), a.profile)
        wait_for(lambda: _written([cons]) >= total, 1800, 0.05, "the consumer to store the backlog")
        wall = time.perf_counter() - t0
        cpu = {k: cpu_s(p) - c0[k] for k, p in (("consumer", cons.pid), ("store", store))}
        consumer = Row("one consumer (Kafka → store), 1 partition", int(total - w0), wall, cpu,
                       profile=f"consumer: {prof.summary()}; store process: {prof_store.summary()}",
                       extra={"batch_rows": _batch_rows([cons])})
        t.gateways[0].start()
        consumer.extra["intact"] = _finish_and_check(t, per_run)
        return gateway, consumer, messages
    finally:
        t.stop()


async def _read_topic(bootstrap: str, topic: str, limit: int) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None)
    await c.start()
    out: list[bytes] = []
    try:
        while len(out) < limit:
            got = await c.getmany(timeout_ms=2000, max_records=500)
            if not got:
                break
            out += [m.value for batch in got.values() for m in batch]
    finally:
        await c.stop()
    return out[:limit]


def phase_partition(a: argparse.Namespace, messages: list[bytes], points_per_message: float) -> Row:
    """The real messages, re-sent into a new 1-partition topic by one producer (acks=all)."""
    from tests.kafka_broker import KafkaBroker

    broker = KafkaBroker().start()
    try:
        kids = psutil.Process(broker._proc.pid).children(recursive=True)  # type: ignore[union-attr]
        brk = next(k.pid for k in kids if "java" in k.name())
        n_sent, wall, cpu_producer, cpu_broker = asyncio.run(_produce(broker.bootstrap, messages, a.seconds, brk))
    finally:
        broker.stop()
    points = int(n_sent * points_per_message)
    size = sum(len(m) for m in messages) / max(1, len(messages))
    return Row("one Kafka partition (acks=all, producer alone)", points, wall,
               {"kafka broker": cpu_broker, "producer": cpu_producer},
               extra={"messages": n_sent, "mb_s": n_sent * size / wall / 1e6, "msg_kb": size / 1e3})


async def _produce(bootstrap: str, messages: list[bytes], seconds: float, broker_pid: int) -> tuple[int, float, float, float]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("capacity.partition", 1, 1)])
    await admin.close()
    # The gateway's producer settings (arwx.log.kafka_log.KafkaLog).
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", compression_type="lz4",
                         linger_ms=5, max_batch_size=1 << 20, max_request_size=64 << 20)
    await p.start()
    sent = 0
    try:
        c0, b0 = resource.getrusage(resource.RUSAGE_SELF), cpu_s(broker_pid)
        t0 = time.perf_counter()
        pending: collections.deque = collections.deque()
        while time.perf_counter() - t0 < seconds:
            pending.append(await p.send("capacity.partition", messages[sent % len(messages)], key=b"org/run"))
            sent += 1
            while len(pending) > 64:
                await pending.popleft()
        for f in pending:
            await f
        wall = time.perf_counter() - t0
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        return sent, wall, (c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime), cpu_s(broker_pid) - b0
    finally:
        await p.stop()


def phase_store(a: argparse.Namespace) -> Row:
    """``INSERT INTO points`` of 50k-row blocks into chDB in this process (the engine's threads included)."""
    import pyarrow as pa

    from arwx.store.chdb_store import ChdbStore
    from arwx.store.schema import apply_schema

    async def go() -> tuple[int, float, float]:
        with tempfile.TemporaryDirectory() as d:
            s = ChdbStore(d)
            await s.start()
            await apply_schema(s)
            rows, n = 50_000, 0
            seq = pa.array(range(rows), pa.uint64())
            ts = pa.array([1_700_000_000_000 + i for i in range(rows)], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
            keys = pa.array([("loss", "lr", "grad_norm", "tokens_per_s")[i % 4] for i in range(rows)])
            # Built before the clock: only the insert is measured (the consumer's column building is its own row).
            tables = [
                pa.table({
                    "org": pa.array(["org_bench"] * rows), "run_id": pa.array([f"run{i}"] * rows), "key": keys,
                    "writer_id": pa.array(["w0"] * rows), "seq": pa.array(range(i * rows, (i + 1) * rows), pa.uint64()),
                    "step": seq, "ts": ts, "value": pa.array([float(x) for x in range(rows)]),
                    "log_partition": pa.array([0] * rows, pa.uint32()), "log_offset": pa.array([i] * rows, pa.uint64()),
                    "ingested_at": ts,
                })
                for i in range(8)
            ]
            c0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            i = 0
            while time.perf_counter() - t0 < a.seconds:
                await s.insert("points", tables[i % len(tables)], f"cap:{i}")  # a new token: a new insert
                n += rows
                i += 1
            wall = time.perf_counter() - t0
            c1 = resource.getrusage(resource.RUSAGE_SELF)
            await s.stop()
            return n, wall, c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime

    n, wall, cpu = asyncio.run(go())
    return Row("store insert (chDB, 50k-row blocks, 2 rollup views)", n, wall, {"store": cpu})


def phase_scale(a: argparse.Namespace) -> Row:
    """2 gateways + 2 consumers + 2 partitions, writers over both gateways, until all is stored."""
    t = Topology(gateways=2, consumers=2, partitions=2).start()
    try:
        api = Api(t.gateways[0].url, t.key)
        by_partition: dict[int, list[str]] = collections.defaultdict(list)
        probes: dict[str, dict[str, int]] = {}
        i = 0
        while min((len(by_partition[p]) for p in (0, 1)), default=0) < a.runs:  # runs on both partitions
            r = f"scale-{i}"
            i += 1
            api.ok("POST", "/v1/runs", {"id": r})
            out = api.ok("POST", "/v1/ingest", {"run_id": r, "writer_id": "probe",
                                               "points": [{"seq": 0, "step": 0, "key": "probe", "value": 1.0}]})
            part = out["log"][0]["partition"]
            probes[r] = {"probe": 1}
            if len(by_partition[part]) < a.runs:
                by_partition[part].append(r)
            if i > 200:
                raise RuntimeError("could not place runs on both partitions")
        runs = [r for pair in zip(by_partition[0], by_partition[1], strict=False) for r in pair]
        pids = {
            "gateway": [g.pid for g in t.gateways], "consumer": [c.pid for c in t.consumers],
            "kafka broker": [java_pid(t)], "store": [t.store.pid],  # type: ignore[union-attr]
        }
        wait_for(lambda: _written(t.consumers) >= len(probes), 120, 0.05, "the probes stored")
        c0 = {k: sum(cpu_s(p) for p in ps) for k, ps in pids.items()}
        w0 = _written(t.consumers)
        t0 = time.perf_counter()
        total, per_run = run_writers([g.url for g in t.gateways], t.key, runs, a.writers, a.seconds, a.batch)
        accepted_wall = time.perf_counter() - t0
        wait_for(lambda: _written(t.consumers) - w0 >= total, 1800, 0.05, "every point stored")
        wall = time.perf_counter() - t0
        cpu = {k: sum(cpu_s(p) for p in ps) - c0[k] for k, ps in pids.items()}
        split = [c.metric("arwx_consumer_points_written_total") for c in t.consumers]
        for r, d in probes.items():
            per_run.setdefault(r, {}).update(d)
        row = Row("scale check: 2 gateways + 2 consumers + 2 partitions + 1 store", total, wall, cpu,
                  extra={"accept_rate": total / accepted_wall, "split": split, "batch_rows": _batch_rows(t.consumers)})
        row.extra["intact"] = _finish_and_check(t, per_run)
        return row
    finally:
        t.stop()


@dataclass
class Plan:
    """The capacity model: unit counts for a target rate from CPU-seconds per million points.

    A gateway or consumer process is one asyncio event loop: at most one core, planned
    at ``util`` of it. A ClickHouse node's insert work is planned at ``ch_util`` of its
    cores (the rest for merges and queries). Partitions: twice the consumers, so
    consumers can be added later without re-partitioning (adding partitions moves runs)."""

    gateway: float  # CPU-s / 1M points, gateway process
    consumer: float  # consumer process (decode, columns, the insert request)
    broker: float  # Kafka broker, per point through one partition, acks=all
    store: float  # the store's CPU for the insert
    bytes_per_point: float  # on the Kafka log, compressed
    util: float = 0.6
    ch_util: float = 0.5
    node_cores: int = 32
    broker_cores: int = 8
    replication: int = 3

    def need(self, rate: float) -> dict[str, float]:
        import math

        gw = math.ceil(rate * self.gateway / 1e6 / self.util)
        cons = math.ceil(rate * self.consumer / 1e6 / self.util)
        broker_cpu = rate * self.broker / 1e6 * self.replication  # every replica appends
        ch_cores = rate * self.store / 1e6 / self.ch_util
        return {
            "gateways": gw, "consumers": cons, "partitions": 2 * cons,
            "broker cores": broker_cpu / self.util, "log MB/s (x replication)": rate * self.bytes_per_point * self.replication / 1e6,
            "brokers": max(self.replication, math.ceil(broker_cpu / self.util / self.broker_cores)),
            "ClickHouse cores": ch_cores, "ClickHouse shards": math.ceil(ch_cores / self.node_cores),
        }

    def largest_run(self) -> float:
        """A run's messages go to one partition, read by one consumer, inserted into one shard."""
        return min(self.util * 1e6 / self.consumer, self.util * self.node_cores * 1e6 / self.store)

    def table(self, rates: tuple[float, ...] = (1e5, 1e6, 1e7)) -> str:
        cols = list(self.need(rates[0]))
        out = ["| points/s | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
        for r in rates:
            n = self.need(r)
            out.append(f"| {r:,.0f} | " + " | ".join(f"{n[c]:,.1f}" if isinstance(n[c], float) else f"{n[c]:,}" for c in cols) + " |")
        return "\n".join(out)


def machine() -> str:
    import chdb

    load = os.getloadavg()
    return (f"{platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}, chdb {chdb.__version__}; "
            f"load avg {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20, help="length of each phase's load")
    p.add_argument("--writers", type=int, default=8, help="writer processes posting JSON batches")
    p.add_argument("--batch", type=int, default=5000, help="points per request")
    p.add_argument("--runs", type=int, default=2, help="runs the writers spread over (per partition in the scale check)")
    p.add_argument("--partition-messages", type=int, default=400, help="phase 1 messages re-sent in phase 3")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
    p.add_argument("--skip-scale", action="store_true", help="only the per-unit phases")
    a = p.parse_args()
    print(f"<!-- {machine()} -->", flush=True)
    gateway, consumer, messages = phase_gateway_consumer(a)
    ppm = _points_per_message(messages)
    partition = phase_partition(a, messages, ppm)
    store = phase_store(a)
    print("\n| unit | points | seconds | points/s here | CPU-s per 1M points (process) | points per CPU-second | notes |")
    print("|---|---:|---:|---:|---|---:|---|")
    for r, main_kind in ((gateway, "gateway"), (consumer, "consumer"), (partition, "kafka broker"), (store, "store")):
        per = "; ".join(f"{k} {r.per_m(k):.2f}" for k in r.cpu)
        notes = {
            "gateway": f"{gateway.extra['bytes_per_point']:.1f} log bytes/point",
            "consumer": f"{consumer.extra['batch_rows']:,.0f} points per insert; receipts intact: {consumer.extra.get('intact')}",
            "kafka broker": f"{partition.extra['messages']:,} messages of {partition.extra['msg_kb']:.0f} kB, "
                            f"{partition.extra['mb_s']:.1f} MB/s",
            "store": "chDB in-process (stand-in for one ClickHouse node)",
        }[main_kind]
        pcs = 1e6 / r.per_m(main_kind) if r.per_m(main_kind) else 0
        print(f"| {r.unit} | {r.points:,} | {r.seconds:.1f} | {r.rate:,.0f} | {per} | {pcs:,.0f} ({main_kind}) | {notes} |")
    plan = Plan(gateway.per_m("gateway"), consumer.per_m("consumer"), gateway.per_m("kafka broker"),
                consumer.per_m("store"), gateway.extra["bytes_per_point"])
    print(f"\nThe model (processes at {plan.util:.0%} of a core; ClickHouse inserts at {plan.ch_util:.0%} of "
          f"{plan.node_cores}-core nodes; brokers of {plan.broker_cores} cores, replication {plan.replication}):\n")
    print(plan.table())
    print(f"\nLargest single run (one partition, one consumer, one shard): {plan.largest_run():,.0f} points/s")
    print("\nBottlenecks (py-spy, leaf functions by share of samples):\n")
    print(f"- gateway: {gateway.profile}")
    print(f"- consumer: {consumer.profile}")
    print(f"<!-- after units: {machine()} -->", flush=True)
    if a.skip_scale:
        return
    scale = phase_scale(a)
    predicted = {
        "gateway": gateway.per_m("gateway"), "consumer": consumer.per_m("consumer"),
        "store": consumer.per_m("store"), "kafka broker": gateway.per_m("kafka broker"),
    }
    print("\n| scale check (2+2+2) | predicted CPU-s / 1M points | measured CPU-s / 1M points | measured / predicted |")
    print("|---|---:|---:|---:|")
    for k, v in predicted.items():
        m = scale.per_m(k)
        print(f"| {k} | {v:.2f} | {m:.2f} | {m / v if v else 0:.2f} |")
    pt, mt = sum(predicted.values()), sum(scale.per_m(k) for k in predicted)
    print(f"| **all parts** | **{pt:.2f}** | **{mt:.2f}** | **{mt / pt if pt else 0:.2f}** |")
    cores = sum(scale.cpu.values()) / scale.seconds
    print(f"\n{scale.points:,} points in {scale.seconds:.1f} s end to end ({scale.rate:,.0f} points/s; accepted at "
          f"{scale.extra['accept_rate']:,.0f}/s); the parts got {cores:.2f} cores on average; at that CPU the model "
          f"predicts {cores / pt * 1e6:,.0f} points/s. Points stored per consumer: "
          f"{', '.join(f'{x:,.0f}' for x in scale.extra['split'])}; {scale.extra['batch_rows']:,.0f} points per insert; "
          f"receipts intact: {scale.extra['intact']}.")
    print(f"<!-- done: {machine()} -->", flush=True)


def _points_per_message(messages: list[bytes]) -> float:
    """Points in one of phase 1's log messages, on average (a message is one run's share of a request)."""
    from arwx.wire import decode_log_batch

    return sum(len(decode_log_batch(m).seq) for m in messages) / max(1, len(messages))


if __name__ == "__main__":
    main()
