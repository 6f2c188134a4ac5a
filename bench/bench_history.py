"""History reads over HTTP and receipt freshness, client decode included.

Starts ``arwx server`` (embedded) from this tree and, with ``--baseline DIR``,
a second one from another tree's ``services/`` (e.g. the commit before a
change, ``git archive <rev> services | tar -x -C DIR``), loads the same runs
into each through ``/v1/ingest`` and measures, server by server:

- full history of one metric of ``--points`` points: every page of the default
  JSON rows (``limit=100000``, decoded with ``json.loads``), columnar JSON
  (``format=columns``, decoded with ``json.loads`` and with msgspec) and Arrow
  IPC (``Accept: application/vnd.apache.arrow.stream``, decoded with pyarrow);
  median of ``--reads`` reads;
- a metric of ``--pages-points`` points read in pages of 100,000: each page's
  time and the whole read;
- the stream endpoint's rate (points/s through the client, bytes only counted);
- freshness of the receipt: from the acknowledgement of a last batch to the
  first ``intact`` receipt that counts it (polled every 5 ms), idle server.

A format a server does not know (400) prints as "—". Not a test: prints tables.

    python bench/bench_history.py --points 100000 --pages-points 1000000 --baseline /tmp/arwx-base
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))

import tests.helpers as helpers  # noqa: E402

ARROW = "application/vnd.apache.arrow.stream"
BATCH = 5000


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.auth = {"Authorization": f"Bearer {key}"}

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        resp = self.conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()

    def json(self, method: str, path: str, body: object = None) -> dict:
        status, _, data = self.raw(method, path, msgspec.json.encode(body) if body is not None else None,
                                   {"Content-Type": "application/json"})
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data)


def load(c: Client, run_id: str, n: int) -> None:
    """``n`` points of key ``loss`` from one writer, step == seq, until the receipt is intact."""
    c.json("POST", "/v1/runs", {"id": run_id})
    for s0 in range(0, n, BATCH):
        pts = [{"seq": s, "step": s, "key": "loss", "value": s * 0.001 + 0.5, "ts": 1.7e9 + s / 1000}
               for s in range(s0, min(n, s0 + BATCH))]
        c.json("POST", "/v1/ingest", {"run_id": run_id, "writer_id": "w0", "points": pts})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = c.json("GET", f"/v1/runs/{run_id}/integrity")
        if r["intact"] and r["points_stored"] >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{run_id}: receipt not intact: {r}")


def read_all(c: Client, run_id: str, n: int, fmt: str, limit: int = 100_000, decoder: str = "json") -> tuple[float, list[float]] | None:
    """Seconds to read (and decode) every page of the metric; per-page seconds."""
    q: dict = {"keys": "loss", "limit": limit}
    headers = {}
    if fmt == "arrow":
        headers["Accept"] = ARROW
    elif fmt != "json":
        q["format"] = fmt
    t0 = time.perf_counter()
    got, cursor, pages = 0, None, []
    while True:
        tp = time.perf_counter()
        path = f"/v1/runs/{run_id}/metrics?" + urlencode({**q, **({"cursor": cursor} if cursor else {})})
        status, hdrs, body = c.raw("GET", path, headers=headers)
        if status == 400 or (fmt == "arrow" and hdrs.get("Content-Type") != ARROW):
            return None  # a server without this format
        if status != 200:
            raise RuntimeError(f"{path} -> {status}: {body[:300]!r}")
        if fmt == "arrow":
            import pyarrow as pa

            table = pa.ipc.open_stream(body).read_all()
            got += table.num_rows
            cursor = hdrs.get("Arwx-Next")
        else:
            out = msgspec.json.decode(body) if decoder == "msgspec" else json.loads(body)
            got += len(out["rows"]) if fmt == "json" else sum(len(s["step"]) for s in out["series"])
            cursor = out["next"]
        pages.append(time.perf_counter() - tp)
        if not cursor:
            break
    dt = time.perf_counter() - t0
    if got != n:
        raise RuntimeError(f"{fmt}: read {got} of {n} points")
    return dt, pages


def stream_rate(c: Client, run_id: str, n: int, arrow: bool) -> float | None:
    """Points/s through GET .../metrics/stream (the client only counts bytes)."""
    headers = {"Accept": ARROW} if arrow else {}
    t0 = time.perf_counter()
    c.conn.request("GET", f"/v1/runs/{run_id}/metrics/stream?keys=loss", headers={**c.auth, **headers})
    resp = c.conn.getresponse()
    if resp.status != 200 or (arrow and resp.getheader("Content-Type") != ARROW):
        resp.read()
        return None
    body = resp.read()
    dt = time.perf_counter() - t0
    if arrow:
        import pyarrow as pa

        got = pa.ipc.open_stream(body).read_all().num_rows
    else:
        got = body.count(b"\n")
    if got != n:
        raise RuntimeError(f"stream: {got} of {n}")
    return n / dt


def freshness(c: Client, run_id: str, probes: int, burst: int = 5) -> list[float]:
    """Seconds from the acknowledgement of the last batch of a burst to an
    intact receipt counting it (the burst keeps the consumer's throttled
    commit from being due right then, as under real writes)."""
    c.json("POST", "/v1/runs", {"id": run_id})
    out = []
    seq = 0
    for _ in range(probes):
        for _ in range(burst):
            pts = [{"seq": s, "step": s, "key": "loss", "value": 1.0, "ts": 1.7e9 + s} for s in range(seq, seq + 1000)]
            seq += 1000
            c.json("POST", "/v1/ingest", {"run_id": run_id, "writer_id": "w0", "points": pts})
            time.sleep(0.02)
        t0 = time.perf_counter()
        while True:
            r = c.json("GET", f"/v1/runs/{run_id}/integrity")
            if r["intact"] and r["points_stored"] >= seq:
                break
            if time.perf_counter() - t0 > 10:
                raise RuntimeError(f"receipt not intact after 10 s: {r}")
            time.sleep(0.005)
        out.append(time.perf_counter() - t0)
        time.sleep(1.5)  # idle again
    return out


def measure(name: str, srv: helpers.ServerProcess, a: argparse.Namespace) -> dict:
    c = Client(srv.port, srv.key)
    res: dict = {"name": name}
    load(c, "h-small", a.points)
    load(c, "h-big", a.pages_points)
    for label, fmt, dec in (("rows JSON (json.loads)", "json", "json"), ("columns JSON (json.loads)", "columns", "json"),
                            ("columns JSON (msgspec)", "columns", "msgspec"), ("Arrow IPC (pyarrow)", "arrow", None)):
        runs = [read_all(c, "h-small", a.points, fmt, decoder=dec) for _ in range(a.reads)]
        res[label] = None if runs[0] is None else statistics.median(r[0] for r in runs)
    for fmt in ("json", "columns", "arrow"):
        r = read_all(c, "h-big", a.pages_points, fmt)
        res[f"pages {fmt}"] = r
    res["stream ndjson"] = stream_rate(c, "h-big", a.pages_points, arrow=False)
    res["stream arrow"] = stream_rate(c, "h-big", a.pages_points, arrow=True)
    res["freshness"] = freshness(c, "h-fresh", a.probes)
    return res


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:,.0f}"


def report(results: list[dict], a: argparse.Namespace) -> None:
    names = [r["name"] for r in results]
    print(f"\n| full history of {a.points:,} points, one metric, client decode included (ms, median of {a.reads}) | "
          + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label in ("rows JSON (json.loads)", "columns JSON (json.loads)", "columns JSON (msgspec)", "Arrow IPC (pyarrow)"):
        print(f"| {label} | " + " | ".join(_ms(r[label]) for r in results) + " |")
    print(f"\n| {a.pages_points:,} points in pages of 100,000 | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for fmt in ("json", "columns", "arrow"):
        cells, firsts = [], []
        for r in results:
            p = r[f"pages {fmt}"]
            cells.append("—" if p is None else f"{p[0]:.2f} s")
            firsts.append("—" if p is None else f"{_ms(p[1][0])} / {_ms(statistics.median(p[1][1:] or p[1]))} / {_ms(max(p[1]))}")
        print(f"| {fmt}: whole read | " + " | ".join(cells) + " |")
        print(f"| {fmt}: first / median / slowest page ms | " + " | ".join(firsts) + " |")
    print(f"\n| stream of {a.pages_points:,} points (points/s through the client) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k in ("stream ndjson", "stream arrow"):
        print(f"| {k} | " + " | ".join("—" if r[k] is None else f"{r[k]:,.0f}" for r in results) + " |")
    print(f"\n| ack → intact receipt, idle server, {a.probes} probes (ms) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, f in (("p50", lambda xs: statistics.median(xs)), ("max", max)):
        print(f"| {label} | " + " | ".join(_ms(f(r["freshness"])) for r in results) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--pages-points", type=int, default=1_000_000)
    ap.add_argument("--reads", type=int, default=5)
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--baseline", help="a tree whose services/ is the 'before' server")
    a = ap.parse_args()
    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    trees = [("this tree", ROOT)] + ([("baseline", Path(a.baseline).resolve())] if a.baseline else [])
    results = []
    for name, tree in trees:
        helpers.ROOT = tree  # ServerProcess puts ROOT/services first on the server's path
        with tempfile.TemporaryDirectory() as d:
            srv = helpers.ServerProcess(Path(d) / "arwx").start()
            try:
                results.append(measure(name, srv, a))
            finally:
                srv.terminate()
        print(f"<!-- {name} done; load avg {os.getloadavg()[0]:.2f} -->", flush=True)
    report(results, a)


if __name__ == "__main__":
    main()
