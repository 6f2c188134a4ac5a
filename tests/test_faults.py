"""Faults while 8 writers log continuously: nothing lost, nothing shown twice, counts exact.

Distributed mode (a real Kafka broker of the test's own):

- ``arwx server --kafka`` processes (gateway + consumer + query in one
  process) killed with -9 and restarted, interleaved with kill -9 and restart
  of the Kafka broker itself, at random moments;
- two in-process servers in one consumer group (they share the process's chDB
  store): their consumers crash (tasks cancelled, group left without a commit)
  and come back, and the broker is killed and restarted meanwhile.

Embedded mode (SQLite log + chDB): kill -9 / SIGTERM restarts of ``arwx
server`` while NDJSON streams and JSON batches are in flight; and the log's
directory (a small tmpfs) filled up and freed while writers keep sending.

Every writer retries like the SDK (``Retry-After`` honoured) and only moves its
seq forward once a batch is acknowledged, so at the end each writer's total is
known exactly and the receipt and the history must match it.

The moments are random (the seed is printed; ``ARWX_FAULT_SEED`` replays one).
``ARWX_SOAK=1`` injects many more faults over a longer run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import Api, ServerProcess, ServerThread, free_port, ndjson, points, wait_for

SOAK = os.environ.get("ARWX_SOAK") == "1"
WRITERS = 8
SEED = int(os.environ.get("ARWX_FAULT_SEED", str(random.randrange(1 << 30))))

# Faults injected and survived across this module, printed at the end (docs/reliability.md).
INJECTED: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _fault_report():
    yield
    print(f"\nfaults injected and survived (seed {SEED}): {dict(INJECTED)}; total {sum(INJECTED.values())}")


def _post(conns: dict, url: str, key: str, path: str, raw: bytes) -> tuple[int, object, str | None]:
    """POST on a kept-alive connection of this thread: (status, parsed body, Retry-After)."""
    conn = conns.get(url)
    if conn is None:
        parts = urlsplit(url)
        conn = conns[url] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", path, body=raw, headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        conns.pop(url, None)
        raise OSError(str(e)) from None
    try:
        out = json.loads(payload) if payload else None
    except ValueError:
        out = payload[:300]
    return resp.status, out, resp.getheader("Retry-After")


class Writers:
    """``n`` writer threads logging continuously until ``stop()``.

    Even writers send JSON batches to ``/v1/ingest``, odd ones NDJSON to
    ``/v1/ingest/stream``. A writer re-sends a batch until it is acknowledged
    (connection refused/reset, 503, 429: back off, honouring ``Retry-After``)
    and only then moves on, so ``acked[i]`` is exactly what writer i sent.
    Any other answer is recorded as a failure.
    """

    def __init__(
        self, urls: Callable[[], list[str]], key: str, run_id: str, n: int = WRITERS, batch: int = 50,
        rate: float = 250.0, stream_every: int = 2,
    ) -> None:
        self.urls, self.key, self.run_id = urls, key, run_id
        self.n, self.batch, self.rate, self.stream_every = n, batch, rate, stream_every
        self.acked = [0] * n
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.transport_errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def total(self) -> int:
        return sum(self.acked)

    def wait_more(self, n: int, timeout: float = 120.0, what: str = "") -> None:
        """Bounded wait until ``n`` more points are acknowledged (the system is taking writes)."""
        target = self.total() + n
        wait_for(lambda: self.total() >= target or self.failures, timeout, 0.02, what or f"{n} more points acked")
        assert not self.failures, self.failures[:5]

    def stop(self, timeout: float = 180.0) -> dict[str, int]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), "a writer is stuck"
        assert not self.failures, self.failures[:5]
        return {f"rank{i}": self.acked[i] for i in range(self.n)}

    def _send(self, i: int, path: str, raw: bytes, apis: dict) -> None:
        attempt = 0
        deadline = time.monotonic() + 240
        while True:
            urls = self.urls()
            url = urls[(i + attempt) % len(urls)]
            attempt += 1
            delay = min(0.05 * 2 ** min(attempt, 5), 1.0)
            try:
                status, out, retry_after = _post(apis, url, self.key, path, raw)
            except OSError:
                self.transport_errors += 1
                status, out, retry_after = None, None, None
            if status is not None:
                self.statuses[status] += 1
            if status is not None and 200 <= status < 300:
                return
            if status is not None:
                if status in (429, 503):
                    if not retry_after or not (isinstance(out, dict) and out.get("error")):
                        self.failures.append(f"{status} without Retry-After or error: {out}")
                        return
                    delay = min(float(retry_after), 2.0) * random.uniform(0.5, 1.0)
                else:
                    self.failures.append(f"writer {i}: POST {path} -> {status}: {str(out)[:300]}")
                    return
            if time.monotonic() > deadline:
                self.failures.append(f"writer {i}: not acknowledged within 240 s")
                return
            time.sleep(delay)  # back-off between retries (what the SDK does), not synchronization

    def _run(self, i: int) -> None:
        apis: dict = {}
        writer = f"rank{i}"
        seq = 0
        t0 = time.monotonic()
        while not self._stop.is_set() and not self.failures:
            pts = points(self.run_id, writer, range(seq, seq + self.batch))
            if i % self.stream_every:
                self._send(i, "/v1/ingest/stream", ndjson(pts), apis)
            else:
                self._send(i, "/v1/ingest", json.dumps({"points": pts}).encode(), apis)
            if self.failures:
                return
            seq += self.batch
            self.acked[i] = seq
            ahead = seq / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                self._stop.wait(ahead)  # pacing to ``rate`` points/s per writer


def history_pairs(api: Api, run_id: str) -> list[tuple[int, str]]:
    """Every (step, writer) row of the run's history, all pages."""
    out: list[tuple[int, str]] = []
    cursor = None
    while True:
        params = {"limit": 100000, **({"cursor": cursor} if cursor else {})}
        page = api.ok("GET", f"/v1/runs/{run_id}/metrics", params=params)
        out += [(r["step"], r["writer_id"]) for r in page["rows"]]
        cursor = page.get("next")
        if not cursor:
            return out


def finish_and_check(api: Api, run_id: str, totals: dict[str, int], timeout: float = 180.0) -> dict:
    """Finish with the writers' exact totals; the receipt and the history must match them exactly."""
    api.ok("POST", f"/v1/runs/{run_id}/finish", {"writer_totals": totals})
    total = sum(totals.values())
    r = api.wait_intact(run_id, total, timeout=timeout)
    assert r["points_stored"] == total, r
    assert r["lost"] == 0 and r["pending"] == 0 and r["intact"], r
    assert r["points_committed"] >= total
    assert r["duplicates_collapsed"] == r["points_committed"] - total
    for w in r["writers"]:
        assert w["stored"] == totals[w["writer_id"]] == w["expected"] and w["missing"] == 0, w
    pairs = history_pairs(api, run_id)
    assert len(pairs) == total, f"history shows {len(pairs)} rows for {total} points"
    assert len(set(pairs)) == total, "a point shows twice in history"
    expected = {(s, w) for w, n in totals.items() for s in range(n)}
    assert set(pairs) == expected
    # A second read after the receipt (merges may have run meanwhile) is still exact.
    assert api.receipt(run_id)["points_stored"] == total
    return r


# -- distributed: Kafka -----------------------------------------------------------------------


def _kafka_extra(bootstrap: str, topic: str) -> list[str]:
    return ["--kafka", bootstrap, "--kafka-topic", topic, "--kafka-partitions", "4", "--send-timeout-s", "5",
            "--consumer-group", f"g-{topic}"]


@pytest.mark.kafka
def test_kafka_kill9_servers_and_broker_while_writers_log(kafka_private_broker, tmp_path: Path) -> None:
    """kill -9 of ``arwx server --kafka`` (gateway + consumer) and of the broker, interleaved."""
    broker = kafka_private_broker
    rnd = random.Random(SEED)
    n_server, n_broker = (6, 5) if SOAK else (2, 2)
    extra = _kafka_extra(broker.bootstrap, "arwx.faults")
    srv = ServerProcess(tmp_path / "data", extra=extra).start()
    key = srv.key
    api = Api(srv.url, key)
    api.ok("POST", "/v1/runs", {"id": "kfaults"})
    faults = ["server"] * n_server + ["broker"] * n_broker
    rnd.shuffle(faults)
    w = Writers(lambda: [srv.url], key, "kfaults").start()
    try:
        for kind in faults:
            w.wait_more(rnd.randint(200, 2500), what=f"writes flowing before the {kind} fault")
            if kind == "server":
                srv.kill9()
                again = ServerProcess(srv.data_dir, srv.port, extra=extra).start()
                again.key = key
                srv = again
            else:
                broker.kill9()
                broker.restart()
            INJECTED[f"kafka: kill -9 {kind}"] += 1
        w.wait_more(1000, what="writes flowing after the last fault")
        totals = w.stop()
        r = finish_and_check(api, "kfaults", totals)
        print(f"kafka kill -9: {faults}; {sum(totals.values())} points, receipt {r['points_committed']} committed, "
              f"{r['duplicates_collapsed']} collapsed; statuses {dict(w.statuses)}; transport errors {w.transport_errors}")
    finally:
        w._stop.set()
        srv.terminate()


async def _crash_consumer(server) -> None:  # noqa: ANN001
    """A consumer crash: its tasks die mid-batch (nothing more stored or committed), it leaves the group."""
    c = server.consumer
    tasks, c._tasks = c._tasks, []  # the revoke hook sees a dead consumer and commits nothing
    deadline = time.monotonic() + 30
    while not all(t.done() for t in tasks):  # cancel again if a ``finally`` blocks on the dead writer
        assert time.monotonic() < deadline, "consumer tasks would not die"
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=0.2)
    await server.reader.stop()


async def _new_consumer(server) -> None:  # noqa: ANN001
    from arwx.consumer.runner import Consumer
    from arwx.log.kafka_log import KafkaLogReader

    s = server.settings
    reader = KafkaLogReader(s.kafka_bootstrap, topic=s.kafka_topic, group_id=s.consumer_group)
    await reader.start()
    server.components.reader = reader
    consumer = server.background["consumer"] = Consumer(reader, server.store)
    await consumer.start()


@pytest.mark.kafka
def test_kafka_consumer_crashes_and_broker_kill_in_one_group(kafka_private_broker, store_dir: Path) -> None:
    """Two gateways + two consumers in one group; consumers crash and return, the broker dies."""
    broker = kafka_private_broker
    rnd = random.Random(SEED + 1)
    settings = {"kafka_bootstrap": broker.bootstrap, "kafka_topic": "arwx.group-faults",
                "consumer_group": "g-group-faults", "kafka_partitions": 4, "send_timeout_s": 5}
    a = ServerThread(data_dir=store_dir, **settings)
    b = ServerThread(frozenset({"gateway", "consumer"}), data_dir=store_dir, **settings)
    servers = [a, b]
    n_consumer, n_broker = (8, 4) if SOAK else (3, 1)
    faults = ["consumer"] * n_consumer + ["broker"] * n_broker
    rnd.shuffle(faults)
    key = a.new_org_key()
    api = Api(a.url, key)
    api.ok("POST", "/v1/runs", {"id": "gfaults"})
    w = Writers(lambda: [a.url, b.url], key, "gfaults").start()
    try:
        for kind in faults:
            w.wait_more(rnd.randint(200, 2500), what=f"writes flowing before the {kind} fault")
            if kind == "consumer":
                victim = rnd.choice(servers)
                victim.call(_crash_consumer(victim.server))
                # Writes keep flowing while it is gone; the other consumer takes its partitions.
                w.wait_more(rnd.randint(100, 1000), what="writes while a consumer is down")
                victim.call(_new_consumer(victim.server))
            else:
                broker.kill9()
                broker.restart()
            INJECTED[f"kafka group: {kind} crash"] += 1
        w.wait_more(1000, what="writes flowing after the last fault")
        totals = w.stop()
        r = finish_and_check(api, "gfaults", totals)
        print(f"kafka group: {faults}; {sum(totals.values())} points, {r['duplicates_collapsed']} collapsed; "
              f"statuses {dict(w.statuses)}")
    finally:
        w._stop.set()
        for s in servers:
            s.call(s.server.consumer.stop())
            s.call(s.server.reader.stop())
        b.stop()
        a.stop()


# -- embedded ----------------------------------------------------------------------------------


def test_embedded_restarts_mid_stream(tmp_path: Path) -> None:
    """kill -9 and SIGTERM restarts of ``arwx server`` while streams and batches are in flight."""
    rnd = random.Random(SEED + 2)
    srv = ServerProcess(tmp_path / "data").start()
    key = srv.key
    api = Api(srv.url, key)
    api.ok("POST", "/v1/runs", {"id": "efaults"})
    faults = ["kill9"] * (8 if SOAK else 3) + ["sigterm"] * (3 if SOAK else 1)
    rnd.shuffle(faults)
    # Bigger NDJSON bodies so a kill usually lands inside a stream.
    w = Writers(lambda: [srv.url], key, "efaults", batch=400, rate=1500).start()
    try:
        for kind in faults:
            w.wait_more(rnd.randint(400, 6000), what=f"writes flowing before {kind}")
            if kind == "kill9":
                srv.kill9()
            else:
                assert srv.terminate() == 0
            again = ServerProcess(srv.data_dir, srv.port).start()
            again.key = key
            srv = again
            INJECTED[f"embedded: {kind} + restart"] += 1
        w.wait_more(2000, what="writes flowing after the last restart")
        totals = w.stop()
        r = finish_and_check(api, "efaults", totals)
        print(f"embedded restarts: {faults}; {sum(totals.values())} points, {r['duplicates_collapsed']} collapsed")
    finally:
        w._stop.set()
        srv.terminate()


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason it cannot be done, or None."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return None if p.returncode == 0 else f"mount -t tmpfs failed: {p.stderr.strip()}"


def _fill(path: Path) -> int:
    """Write a filler file until the filesystem is full (down to the last 512 bytes); its size."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 64 << 10, 4096, 512):
            chunk = b"\0" * size
            while True:
                try:
                    n += os.write(fd, chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    return n


def test_embedded_log_disk_full_then_freed(tmp_path: Path) -> None:
    """The log's filesystem fills up: appends answer 503 + Retry-After, nothing acknowledged is
    lost, and writes resume by themselves once space is freed. (chDB stays on the real disk,
    bind-mounted into the data directory, so only the log's disk is full.)"""
    data = tmp_path / "data"
    reason = _mount_tmpfs(data, "24m")
    if reason:
        pytest.skip(f"cannot make a small filesystem for the log: {reason}")
    real_store = tmp_path / "store"
    real_store.mkdir()
    (data / "clickhouse").mkdir()
    mounts = [data]
    srv = None
    w = None
    try:
        p = subprocess.run(["mount", "--bind", str(real_store), str(data / "clickhouse")], capture_output=True, text=True)
        if p.returncode:
            pytest.skip(f"cannot bind-mount the store beside the tmpfs log: {p.stderr.strip()}")
        mounts.append(data / "clickhouse")
        srv = ServerProcess(data).start()
        key = srv.key
        api = Api(srv.url, key)
        api.ok("POST", "/v1/runs", {"id": "diskfull"})
        w = Writers(lambda: [srv.url], key, "diskfull", batch=200, rate=1000).start()
        rounds = 3 if SOAK else 1
        for _ in range(rounds):
            w.wait_more(2000, what="writes flowing before the disk fills")
            filler = data / "filler"
            _fill(filler)
            before = Counter(w.statuses)
            # The writers now get 503s (the log cannot commit) and keep retrying.
            wait_for(lambda b=before: w.statuses[503] > b[503] or w.failures, 60, 0.05, "503s while the disk is full")
            assert not w.failures, w.failures[:5]
            stuck = w.total()
            filler.unlink()
            INJECTED["embedded: log disk full + freed"] += 1
            w.wait_more(2000, what="writes resuming after space was freed")
            assert w.total() > stuck
        totals = w.stop()
        r = finish_and_check(api, "diskfull", totals)
        print(f"disk full x{rounds}: {sum(totals.values())} points, statuses {dict(w.statuses)}, "
              f"{r['duplicates_collapsed']} collapsed")
        assert "Traceback" not in srv.logs()
    finally:
        if w is not None:
            w._stop.set()
        if srv is not None:
            srv.terminate()
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        shutil.rmtree(real_store, ignore_errors=True)


def _ready(ops_url: str) -> tuple[int, dict]:
    return Api(ops_url, None).get("/ready")


def test_embedded_store_disk_full_pauses_then_resumes(tmp_path: Path) -> None:
    """The store's filesystem fills up (chDB answers ``SELECT 1`` but cannot write): ingest is
    still acknowledged (the log is on another disk), the consumer pauses and says so in
    ``/ready`` and ``arwx_consumer_paused``, nothing is dead-lettered, control writes answer
    503 not 500, SIGTERM during the outage exits in bounded time, and once space is freed
    every acknowledged point is stored and the receipt is exact."""
    data = tmp_path / "data"
    data.mkdir()
    store = data / "clickhouse"
    reason = _mount_tmpfs(store, "48m")
    if reason:
        pytest.skip(f"cannot make a small filesystem for the store: {reason}")
    srv = w = None
    metrics_port = free_port()
    extra = ["--metrics-port", str(metrics_port)]
    ops = f"http://127.0.0.1:{metrics_port}"
    try:
        srv = ServerProcess(data, extra=extra).start()
        key = srv.key
        api = Api(srv.url, key)
        api.ok("POST", "/v1/runs", {"id": "storefull"})
        w = Writers(lambda: [srv.url], key, "storefull", batch=200, rate=1000).start()
        w.wait_more(2000, what="writes flowing before the store's disk fills")
        filler = store / "filler"
        _fill(filler)
        INJECTED["embedded: store disk full + freed"] += 1
        status, body = wait_for(
            lambda: (r := _ready(ops))[0] == 503 and r[1]["checks"].get("consumer", "").startswith("paused") and r,
            60, 0.1, "/ready to say the consumer is paused",
        )
        assert "NOT_ENOUGH_SPACE" in body["checks"]["consumer"] or "space" in body["checks"]["consumer"], body
        _, page = Api(ops, None).request("GET", "/metrics")
        assert re.search(r"^arwx_consumer_paused 1\.0$", page, re.M), "the pause must show in the metrics"
        w.wait_more(1000, what="ingest still acknowledged while the store is full (the log has it)")
        status, out = api.request("POST", "/v1/runs", {"id": "made-while-full"})
        assert status == 503 and out.get("error"), (status, out)
        t0 = time.monotonic()
        rc = srv.terminate()
        stop_s = time.monotonic() - t0
        assert rc == 0 and stop_s < 40, f"SIGTERM during the outage: exit {rc} after {stop_s:.1f}s"
        INJECTED["embedded: SIGTERM while the store is full"] += 1
        logs = srv.logs()
        assert "dead-lettered" not in logs, "a full store is an outage, never bad data"
        filler.unlink()
        srv = ServerProcess(data, srv.port, extra=extra).start()
        srv.key = key
        w.wait_more(2000, what="writes flowing after space was freed")
        totals = w.stop()
        r = finish_and_check(api, "storefull", totals)
        assert _ready(ops)[0] == 200
        assert "dead-lettered" not in srv.logs()
        print(f"store disk full: {sum(totals.values())} points, stop took {stop_s:.1f}s, "
              f"{r['duplicates_collapsed']} collapsed")
    finally:
        if w is not None:
            w._stop.set()
        if srv is not None:
            srv.terminate()
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


def test_embedded_offsets_keep_rising_across_restarts_and_trims(tmp_path: Path) -> None:
    """Restarts (kill -9 and SIGTERM) of a server that trims everything consumed at once
    (``--log-retention-s 0``), writers pausing around each one so the log empties: offsets
    never go back below the committed position, so every acknowledged point is stored."""
    rnd = random.Random(SEED + 3)
    extra = ["--log-retention-s", "0"]
    srv = ServerProcess(tmp_path / "data", extra=extra).start()
    key = srv.key
    api = Api(srv.url, key)
    api.ok("POST", "/v1/runs", {"id": "offsets"})
    stored = 0
    try:
        for i, kind in enumerate(["sigterm", "kill9", "sigterm", "kill9"] * (3 if SOAK else 1)):
            n = rnd.randint(2, 6) * 50
            for b in range(0, n, 50):
                api.ok("POST", "/v1/ingest", {"points": points("offsets", f"w{i}", range(b, b + 50))})
            stored += n
            api.wait_intact("offsets", stored, timeout=60)  # consumed and committed: the next commit trims it all
            if kind == "kill9":
                srv.kill9()
            else:
                assert srv.terminate() == 0
            srv = ServerProcess(srv.data_dir, srv.port, extra=extra).start()
            srv.key = key
            INJECTED[f"embedded: {kind} + trim + restart"] += 1
        api.ok("POST", "/v1/ingest", {"points": points("offsets", "last", range(30))})
        r = api.wait_intact("offsets", stored + 30, timeout=60)
        assert r["points_stored"] == stored + 30 and r["pending"] == 0, r
    finally:
        srv.terminate()
