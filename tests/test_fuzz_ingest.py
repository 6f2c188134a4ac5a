"""Bad input, generated: never a 5xx, never a crash, never good data lost beside bad data.

- hypothesis: NDJSON streams mixing good lines with garbage (malformed and
  truncated JSON, wrong types, negative and huge seqs, control characters,
  unknown fields, unknown and finished runs) and odd-but-valid values (NaN,
  inf, huge numbers, strings, unicode keys, duplicate seqs): every good line is
  stored, every bad one rejected with its line number and a reason. JSON
  batches built the same way are all-or-nothing. After every example a
  known-good batch must still land; at the end the store holds exactly what was
  acknowledged.
- schemathesis: every operation of ``schemas/openapi.json``, positive and
  negative generation, against the live embedded server with a real key.
- hand-made edge cases: huge lines, oversized bodies, truncated and abandoned
  streams, deep nesting, non-UTF-8.

The number of cases run is printed at the end. ``ARWX_SOAK=1`` runs ten times more.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections import Counter

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import Api, points  # noqa: E402

SOAK = os.environ.get("ARWX_SOAK") == "1"
N = 10 if SOAK else 1
CASES: Counter = Counter()
HS = settings(
    max_examples=120 * N, deadline=None, derandomize=not SOAK, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _case_report():
    yield
    print(f"\nfuzz cases run: {dict(CASES)}; total {sum(CASES.values())}")


class Sentinel:
    """A known-good writer: after every fuzz case one more good batch must land, intact."""

    def __init__(self, api: Api, run_id: str, writer: str) -> None:
        self.api, self.run_id, self.writer, self.n = api, run_id, writer, 0

    def check(self) -> None:
        body = {"points": points(self.run_id, self.writer, range(self.n, self.n + 5))}
        status, out = self.api.request("POST", "/v1/ingest", body=body)
        assert status == 200 and out["points"] == 5, (status, out)
        self.n += 5

    def final(self) -> None:
        from tests.helpers import wait_for

        def mine() -> dict | None:
            ws = [w for w in self.api.receipt(self.run_id)["writers"] if w["writer_id"] == self.writer]
            return ws[0] if ws and ws[0]["stored"] >= self.n else None

        w = wait_for(mine, 60, 0.1, f"the sentinel {self.writer}'s points stored")
        assert w["stored"] == self.n and w["missing"] == 0, w
        page = self.api.ok("GET", f"/v1/runs/{self.run_id}/metrics", params={"keys": "loss", "limit": 100000})
        got = sorted(r["step"] for r in page["rows"] if r["writer_id"] == self.writer)
        assert got == list(range(self.n))


def _org(embedded, key: str) -> str:
    return embedded.call(embedded.server.tenancy.authenticate(key)).org


def _stored_seqs(embedded, org: str, run_id: str, writer: str) -> list[int]:
    rows = embedded.call(embedded.server.store.rows(
        "SELECT seq FROM points FINAL WHERE org = {o:String} AND run_id = {r:String} AND writer_id = {w:String} "
        "ORDER BY seq", {"o": org, "r": run_id, "w": writer}))
    return [r[0] for r in rows]


# -- strategies ----------------------------------------------------------------------------

GOOD_RUN = "fuzz-good"
FINISHED_RUN = "fuzz-finished"

# Values a good point may carry: numeric ones are stored, the rest skipped and counted.
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
    st.just(10**400), st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
)
metric_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, range(32))) + "\x7f,"),
    min_size=1, max_size=40,
)


def _expected_skip(v: object) -> str | None:
    if type(v) is float:
        return None if math.isfinite(v) else "non_finite"
    if type(v) is int:
        return None if abs(v) < 1.7e308 else "non_finite"
    return "non_numeric"


def _nested(depth: int, objects: bool) -> bytes:
    """JSON nested ``depth`` levels: arrays, or objects of one key."""
    if objects:
        return b'{"a": ' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


def _bad_line(draw, run_id: str, writer: str, seq: int) -> bytes:
    """A line that must be rejected, of one of many kinds."""
    base = {"run_id": run_id, "writer_id": writer, "seq": seq, "step": seq, "key": "loss", "value": 1.0}
    kind = draw(st.sampled_from([
        "garbage", "truncated", "wrong_type", "negative", "huge_seq", "ctrl_key", "unknown_field",
        "missing", "unknown_run", "finished_run", "bad_run_id", "array", "long_key", "float_seq", "bad_ts", "bad_utf8",
        "deep", "comma_key", "newline_key",
    ]))
    if kind == "deep":
        return json.dumps(base).encode().replace(b'"value": 1.0', b'"value": ' + _nested(draw(st.integers(5000, 50000)),
                                                                                         draw(st.booleans())))
    if kind == "bad_utf8":
        bad = draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xf8\x88\x80\x80\x80", b"a\x80"]))
        return json.dumps(base).encode().replace(b'"loss"', b'"l' + bad + b'"')
    if kind == "garbage":
        return b"#" + draw(st.binary(max_size=60)).replace(b"\n", b" ")
    if kind == "truncated":
        full = json.dumps(base).encode()
        return full[: draw(st.integers(1, len(full) - 1))]
    if kind == "wrong_type":
        field = draw(st.sampled_from(["seq", "step", "key", "ts", "run_id", "writer_id"]))
        base[field] = draw(st.sampled_from([[1], {"a": 1}, True if field in ("key", "run_id", "writer_id") else "x"]))
    elif kind == "negative":
        base[draw(st.sampled_from(["seq", "step", "ts"]))] = -draw(st.integers(1, 2**70))
    elif kind == "huge_seq":
        base["seq"] = draw(st.integers(2**63, 2**80))
    elif kind == "comma_key":
        base["key"] = draw(st.sampled_from([",", "a,b", "loss,", ",x"]))
    elif kind == "newline_key":
        base["key"] = "loss\n"
    elif kind == "ctrl_key":
        base["key"] = "a" + chr(draw(st.integers(0, 31))) + "b"
    elif kind == "unknown_field":
        base[draw(st.sampled_from(["x", "Seq", "values", "__proto__"]))] = 1
    elif kind == "missing":
        del base[draw(st.sampled_from(["seq", "step", "key", "run_id", "writer_id"]))]
    elif kind == "unknown_run":
        base["run_id"] = "no-such-run-" + draw(st.text("abc", min_size=1, max_size=5))
    elif kind == "finished_run":
        base["run_id"], base["writer_id"], base["seq"] = FINISHED_RUN, "w", draw(st.integers(5, 10**6))
    elif kind == "bad_run_id":
        base["run_id"] = draw(st.sampled_from(["", "a b", "x/y", "'; DROP TABLE points --", "é", "a" * 129]))
    elif kind == "array":
        return json.dumps([base]).encode()
    elif kind == "long_key":
        base["key"] = "k" * 257
    elif kind == "float_seq":
        base["seq"] = seq + 0.5
    elif kind == "bad_ts":
        base["ts"] = draw(st.sampled_from([5e9, "now", float("inf")]))
    return json.dumps(base).encode()


@st.composite
def streams(draw) -> tuple[list[tuple], bytes, bool]:
    """A stream as templates (seqs are given at send time, so discarded examples leave no holes):
    [("blank", bytes) | ("bad", bytes) | ("good", value, key, ts) | ("dup", pick)], the line
    separator, whether the last line ends with one."""
    items: list[tuple] = []
    for _ in range(draw(st.integers(1, 25))):
        choice = draw(st.sampled_from(["good", "good", "bad", "blank", "dup"]))
        if choice == "blank":
            items.append(("blank", draw(st.sampled_from([b"", b"  ", b"\r", b"\t "]))))
        elif choice == "bad":
            items.append(("bad", _bad_line(draw, GOOD_RUN, "ndj", 0)))
        elif choice == "dup":
            items.append(("dup", draw(st.integers(0, 2**16))))
        else:
            ts = draw(st.floats(0, 4e9)) if draw(st.booleans()) else None
            items.append(("good", draw(values), draw(metric_keys), ts))
    return items, draw(st.sampled_from([b"\n", b"\r\n"])), draw(st.booleans())


def render_stream(items: list[tuple], sep: bytes, last_nl: bool, state: dict):
    """(body, line numbers that must be rejected, [(line, seq, skip reason)] that must be stored)."""
    lines: list[bytes] = []
    bad: list[int] = []
    good: list[tuple[int, int, str | None]] = []
    for it in items:
        lineno = len(lines) + 1
        if it[0] in ("blank", "bad"):
            lines.append(it[1])
            if it[0] == "bad":
                bad.append(lineno)
            continue
        if it[0] == "dup":
            if not state["sent"]:
                continue
            seq = sorted(state["sent"])[it[1] % len(state["sent"])]
            val, key, ts = state["sent"][seq]  # a re-sent line: the same point again
        else:
            _, val, key, ts = it
            seq = state["seq"]
            state["seq"] += 1
        p = {"run_id": GOOD_RUN, "writer_id": "ndj", "seq": seq, "step": seq, "key": key, "value": val}
        if ts is not None:
            p["ts"] = ts
        lines.append(json.dumps(p).encode())  # NaN/Infinity literals and huge ints, as Python writes them
        good.append((lineno, seq, _expected_skip(val)))
        state["sent"][seq] = (val, key, ts)
    return sep.join(lines) + (sep if last_nl else b""), bad, good


@pytest.fixture(scope="module")
def fuzz_api(embedded) -> Api:
    api = Api(embedded.url, embedded.new_org_key("fuzz"))
    api.ok("POST", "/v1/runs", {"id": GOOD_RUN})
    api.ok("POST", "/v1/runs", {"id": FINISHED_RUN})
    api.ok("POST", "/v1/ingest", {"points": points(FINISHED_RUN, "w", range(5))})
    api.ok("POST", f"/v1/runs/{FINISHED_RUN}/finish", {"writer_totals": {"w": 5}})
    return api


# -- hypothesis: NDJSON and JSON ---------------------------------------------------------------


def test_ndjson_fuzz_good_lines_survive_bad_neighbours(embedded, fuzz_api: Api) -> None:
    api = fuzz_api
    sentinel = Sentinel(api, GOOD_RUN, "sentinel-ndjson")
    state: dict = {"seq": 0, "sent": {}}

    @HS
    @given(data=st.data())
    def case(data) -> None:  # noqa: ANN001
        body, bad, good = render_stream(*data.draw(streams()), state)
        CASES["ndjson streams"] += 1
        CASES["ndjson lines"] += len(bad) + len(good)
        status, out = api.request("POST", "/v1/ingest/stream", raw=body,
                                  headers={"Content-Type": "application/x-ndjson"})
        assert status in (200, 400), (status, out, body[:500])
        assert isinstance(out, dict)
        assert out["points"] == len(good), (out, body[:500])
        skipped = Counter(r for _, _, r in good if r)
        assert out["skipped_by_reason"] == dict(skipped), (out, good)
        if bad:
            assert status == 400 and out["error"] and out["rejected"] == len(bad), out
            assert [e["line"] for e in out["errors"]] == bad, (out["errors"], bad, body[:500])
            assert all(isinstance(e["reason"], str) and e["reason"] for e in out["errors"])
        else:
            assert status == 200 and "rejected" not in out, out
        sentinel.check()

    case()
    # Everything acknowledged is stored exactly once, NaN/skipped ones included (they keep seq whole).
    org = _org(embedded, api.key)
    from tests.helpers import wait_for

    wait_for(lambda: _stored_seqs(embedded, org, GOOD_RUN, "ndj") == sorted(state["sent"]), 60, 0.1,
             "every acknowledged NDJSON point stored once")
    sentinel.final()


@st.composite
def batches(draw) -> list[tuple]:
    """Point templates of one batch: ("good", key, value) or ("bad", line)."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 4)) == 0:
            out.append(("bad", _bad_line(draw, GOOD_RUN, "json", 0)))
        else:
            out.append(("good", draw(metric_keys), draw(values)))
    return out


def render_batch(items: list[tuple], state: dict) -> tuple[bytes, bool, int]:
    """(body, whether it must be accepted, number of points); seqs from ``state``."""
    pts = []
    valid = True
    for it in items:
        seq = state["seq"]
        state["seq"] += 1
        if it[0] == "bad":
            try:
                pts.append(json.loads(it[1]))
            except (ValueError, RecursionError):  # Python's json gives up on deep nesting too
                return it[1], False, 0  # not even JSON (for Python): the whole body is that line
            valid = False
        else:
            pts.append({"seq": seq, "step": seq, "key": it[1], "value": it[2], "run_id": GOOD_RUN, "writer_id": "json"})
    return json.dumps({"points": pts}).encode(), valid, len(pts)


def test_json_batch_fuzz_all_or_nothing(embedded, fuzz_api: Api) -> None:
    api = fuzz_api
    sentinel = Sentinel(api, GOOD_RUN, "sentinel-json")
    state: dict = {"seq": 0}
    accepted: list[int] = []

    @HS
    @given(data=st.data())
    def case(data) -> None:  # noqa: ANN001
        start = state["seq"]
        raw, valid, n = render_batch(data.draw(batches()), state)
        CASES["json batches"] += 1
        status, out = api.request("POST", "/v1/ingest", raw=raw)
        if valid:
            assert status == 200 and out["points"] == n, (status, out, raw[:500])
            accepted.extend(range(start, start + n))
        else:
            assert status in (400, 404, 409), (status, out, raw[:500])
            assert isinstance(out, dict) and out.get("error"), out
        sentinel.check()

    case()
    org = _org(embedded, api.key)
    from tests.helpers import wait_for

    wait_for(lambda: _stored_seqs(embedded, org, GOOD_RUN, "json") == accepted, 60, 0.1,
             "exactly the accepted JSON batches stored")


COLUMNS = "application/vnd.arwx.columns+json"
# How a columnar body can be wrong: (what is changed, words the 400 must carry).
COLUMN_FAULTS = [
    "short_column", "long_ts", "key_index", "negative_seq", "huge_seq", "float_step", "string_seq", "bad_key",
    "long_key", "ctrl_key", "bad_run_id", "missing_writer", "unknown_field", "truncated", "bad_ts", "nan_ts",
]


@st.composite
def column_bodies(draw) -> tuple[list[str], list[tuple[int, object]], str | None]:
    """(keys, [(key index, value)], a fault or None)."""
    keys = draw(st.lists(metric_keys, min_size=1, max_size=4))
    pts = draw(st.lists(st.tuples(st.integers(0, len(keys) - 1), values), max_size=30))
    fault = draw(st.one_of(st.none(), st.none(), st.sampled_from(COLUMN_FAULTS)))
    if fault is not None and not pts:
        pts = [(0, 1.0)]
    return keys, pts, fault


def render_columns(keys: list[str], pts: list[tuple[int, object]], fault: str | None, state: dict,
                   with_ts: bool) -> bytes:
    """The body; seqs from ``state``. NaN/Infinity literals and huge ints as Python's json writes them."""
    n = len(pts)
    seqs = list(range(state["seq"], state["seq"] + n))
    state["seq"] += n
    body: dict = {"run_id": GOOD_RUN, "writer_id": "cols", "keys": keys, "seq": seqs, "step": seqs,
                  "key": [k for k, _ in pts], "value": [v for _, v in pts]}
    if with_ts:
        body["ts"] = [1.7e9 + s for s in seqs]
    if fault == "short_column":
        body["step"] = body["step"][:-1]
    elif fault == "long_ts":
        body["ts"] = [1.7e9] * (n + 1)
    elif fault == "key_index":
        body["key"][-1] = len(keys)
    elif fault == "negative_seq":
        body["seq"][0] = -1
    elif fault == "huge_seq":
        body["seq"][-1] = 2**63
    elif fault == "float_step":
        body["step"][0] = 0.5
    elif fault == "string_seq":
        body["seq"][0] = "0"
    elif fault == "bad_key":
        body["keys"] = [*keys[:-1], "a,b"]
    elif fault == "long_key":
        body["keys"] = [*keys[:-1], "k" * 257]
    elif fault == "ctrl_key":
        body["keys"] = [*keys[:-1], "a\x01b"]
    elif fault == "bad_run_id":
        body["run_id"] = "a b"
    elif fault == "missing_writer":
        del body["writer_id"]
    elif fault == "unknown_field":
        body["points"] = []
    elif fault == "bad_ts":
        body["ts"] = [5e9] * n
    elif fault == "nan_ts":
        body["ts"] = [float("nan")] * n
    raw = json.dumps(body).encode()
    return raw[: len(raw) // 2] if fault == "truncated" else raw


def test_columns_fuzz_all_or_nothing(embedded, fuzz_api: Api) -> None:
    """Columnar bodies with odd-but-valid values and one fault or none: a good body is taken
    whole with every skip counted by reason, a bad one is a 400 with a reason and writes
    nothing; at the end the store holds exactly the accepted seqs, once each."""
    api = fuzz_api
    sentinel = Sentinel(api, GOOD_RUN, "sentinel-cols")
    state: dict = {"seq": 0}
    accepted: list[int] = []

    @HS
    @given(case=column_bodies(), with_ts=st.booleans())
    def case(case, with_ts) -> None:  # noqa: ANN001
        keys, pts, fault = case
        start = state["seq"]
        raw = render_columns(keys, pts, fault, state, with_ts)
        CASES["column bodies"] += 1
        status, out = api.request("POST", "/v1/ingest", raw=raw, headers={"Content-Type": COLUMNS})
        if fault is None:
            assert status == 200 and out["points"] == len(pts), (status, out, raw[:500])
            skipped = Counter(r for r in (_expected_skip(v) for _, v in pts) if r)
            assert out["skipped_by_reason"] == dict(skipped), (out, pts)
            accepted.extend(range(start, start + len(pts)))
        else:
            assert status == 400 and isinstance(out, dict) and out.get("error"), (fault, status, out, raw[:500])
        sentinel.check()

    case()
    org = _org(embedded, api.key)
    from tests.helpers import wait_for

    wait_for(lambda: _stored_seqs(embedded, org, GOOD_RUN, "cols") == accepted, 60, 0.1,
             "exactly the accepted columnar bodies stored")
    sentinel.final()


# -- nesting, on every route that takes JSON ------------------------------------------------------


@st.composite
def nested_bodies(draw) -> tuple[str, bytes, bool]:
    """(route, body, whether the nesting is past what the route takes)."""
    # The decoder's bound follows the recursion limit (about 1,000; hypothesis raises it while a
    # case runs): depths near it may go either way, 5,000 and more never pass.
    depth = draw(st.one_of(st.integers(1, 70), st.integers(900, 1100), st.integers(5000, 30000)))
    deep = _nested(depth, draw(st.booleans()))
    route = draw(st.sampled_from(["ingest", "stream", "runs", "finish", "keys"]))
    pt = b'{"run_id": "%s", "writer_id": "nest", "seq": 0, "step": 0, "key": "k", "value": ' % GOOD_RUN.encode()
    if route == "ingest":
        return route, b'{"points": [' + pt + deep + b"}]}", depth >= 5000
    if route == "stream":
        return route, pt + deep + b"}\n", depth >= 5000
    if route == "runs":
        return route, b'{"id": "nest-%d", "config": {"a": ' % depth + deep + b"}}", depth >= 64
    if route == "finish":
        return route, b'{"writer_totals": ' + deep + b"}", True
    return route, b'{"name": ' + deep + b"}", True


def test_nesting_is_never_a_5xx(embedded, fuzz_api: Api) -> None:
    """Any depth, any route: a 2xx or a 4xx naming the problem; past the bound
    always a 4xx; a deep stream line never takes its good neighbours down."""
    api = fuzz_api
    sentinel = Sentinel(api, GOOD_RUN, "sentinel-nest")
    api.ok("POST", "/v1/runs", {"id": "fuzz-nest-fin"})
    paths = {"ingest": "/v1/ingest", "stream": "/v1/ingest/stream", "runs": "/v1/runs",
             "finish": "/v1/runs/fuzz-nest-fin/finish", "keys": "/v1/keys"}
    seq = [0]

    @HS
    @given(case=nested_bodies())
    def run(case) -> None:  # noqa: ANN001
        route, body, too_deep = case
        CASES["nesting"] += 1
        if route == "stream":  # good neighbours on both sides
            good = [json.dumps({"run_id": GOOD_RUN, "writer_id": "nest-n", "seq": seq[0] + i, "step": 0, "key": "k",
                                "value": 1}).encode() + b"\n" for i in range(2)]
            seq[0] += 2
            body = good[0] + body + good[1]
        status, out = api.request("POST", paths[route], raw=body)
        assert status < 500, (route, status, out)
        assert isinstance(out, dict), (route, status, out)
        if too_deep:
            assert 400 <= status < 500 and out.get("error"), (route, status, out)
        if route == "stream":
            assert out["points"] >= 2, out
        sentinel.check()

    run()
    sentinel.final()


# -- slow clients --------------------------------------------------------------------------------


def test_slow_clients_never_hold_the_gateway(store_dir) -> None:
    """Clients that trickle, pause and stop at random, on every body-taking
    route, at once: each is answered (2xx, 408 or another 4xx, never a 5xx)
    within the body bounds, and a well-behaved client of another org gets
    through the whole time."""
    import random
    import threading
    import time

    from tests.helpers import ServerThread

    srv = ServerThread(data_dir=store_dir, max_body_bytes=64 << 10, max_inflight_bytes=256 << 10,
                       body_idle_s=0.5, body_timeout_s=2)
    try:
        slow = Api(srv.url, srv.new_org_key("slow"))
        good = Api(srv.url, srv.new_org_key("good"))
        slow.ok("POST", "/v1/runs", {"id": "slow"})
        good.ok("POST", "/v1/runs", {"id": "good"})
        port = int(srv.url.rsplit(":", 1)[1])
        rng = random.Random(os.environ.get("ARWX_FUZZ_SEED", "slow-clients"))
        results: list[tuple[str, int, float]] = []
        line = json.dumps({"run_id": "slow", "writer_id": "s", "seq": 0, "step": 0, "key": "k", "value": 1}).encode()

        def client(i: int) -> None:
            r = random.Random(rng.random())
            path = r.choice(["/v1/ingest", "/v1/ingest/stream", "/v1/runs"])
            chunked = r.random() < 0.5
            total = r.randint(10, 60_000)
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {slow.key}\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(head.encode())
                sent = 0
                try:
                    for _ in range(r.randint(0, 12)):  # pieces with pauses shorter or longer than the idle bound
                        piece = (line + b"\n") * r.randint(1, 20)
                        s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece[: max(0, total - sent)])
                        sent += len(piece)
                        time.sleep(r.choice([0.05, 0.2, 0.4, 0.8]))
                except OSError:
                    pass  # answered and closed while sending
                out = b""
                try:
                    while chunk := s.recv(65536):
                        out += chunk
                        if b"\r\n\r\n" in out:
                            break
                except OSError:
                    pass
            status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else 0
            results.append((path, status, time.monotonic() - t0))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(24 * N)]
        for t in threads:
            t.start()
        n = 0
        while any(t.is_alive() for t in threads):
            status, out = good.post("/v1/ingest", {"points": points("good", "g", range(n, n + 5))})
            assert status == 200, (status, out)
            n += 5
            time.sleep(0.05)
        for t in threads:
            t.join(60)
        CASES["slow clients"] += len(results)
        assert len(results) == len(threads)
        for path, status, took in results:
            assert status == 0 or status < 500, results  # 0: the server closed a connection it had answered
            assert took < 2 + 0.5 + 12 * 0.8 + 10, (path, status, took)
        assert any(status == 408 for _, status, _ in results), results
        wait_for_used = srv.server.runner.app  # every reservation released once all are answered
        from arwx.backpressure import INFLIGHT
        from tests.helpers import wait_for

        wait_for(lambda: wait_for_used[INFLIGHT].used == 0, 10, what="every reservation released")
    finally:
        srv.stop()


# -- schemathesis: the OpenAPI description against the live server ---------------------------------


def _operation_fuzzer(op, mode, base_url: str, auth: dict, problems: list[str]):  # noqa: ANN001
    @settings(max_examples=25 * N, deadline=None, derandomize=not SOAK, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case) -> None:  # noqa: ANN001
        CASES[f"schemathesis {mode.name.lower()}"] += 1
        resp = case.call(base_url=base_url, headers=auth, timeout=30)
        where = f"{op.method.upper()} {op.path} ({mode.name}) -> {resp.status_code}"
        assert resp.status_code < 500, f"{where}: {resp.text[:300]}"
        if resp.status_code >= 400:
            try:
                body = resp.json()
                # The MLflow adapter answers in MLflow's shape: {"error_code", "message"}.
                err = body.get("message") and body.get("error_code") if "/mlflow" in op.path else body.get("error")
            except (ValueError, AttributeError):
                err = None
            if not err:
                problems.append(f"{where}: no JSON error: {resp.text[:200]!r}")

    return run


def test_openapi_operations_never_5xx(embedded, fuzz_api: Api) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode

    from tests.helpers import ROOT

    @schemathesis.serializer("application/x-ndjson")
    def _ndjson(ctx, value) -> bytes:  # noqa: ANN001
        rows = value if isinstance(value, list) else [value]
        return b"".join(json.dumps(r, default=str).encode() + b"\n" for r in rows)

    schema = schemathesis.openapi.from_path(str(ROOT / "schemas" / "openapi.json"))
    auth = {"Authorization": f"Bearer {fuzz_api.key}"}
    sentinel = Sentinel(fuzz_api, GOOD_RUN, "sentinel-openapi")
    problems: list[str] = []
    ops = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/ajax-api/"):
            continue  # the MLflow UI's mirror: the same handlers as /api/2.0/mlflow/..., fuzzed there
        ops += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _operation_fuzzer(op, mode, embedded.url, auth, problems)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)
            sentinel.check()
    assert ops >= 10
    sentinel.final()
    assert not problems, "\n".join(sorted(set(problems))[:20])


@pytest.mark.parametrize("body", [
    b'{"run_id": "fuzz-good", "writer_id": "sur", "seq": 0, "step": 0, "key": "l\\ud800", "value": 1}\n',
    b'{"run_id": "fuzz-good", "writer_id": "sur", "seq": 0, "step": 0, "key": "l\xed\xa0\x80", "value": 1}\n',
])
def test_lone_surrogate_in_a_key_is_a_400_not_a_500(fuzz_api: Api, body: bytes) -> None:
    good = json.dumps({"run_id": GOOD_RUN, "writer_id": "sur", "seq": 1, "step": 1, "key": "k", "value": 1}).encode()
    status, out = fuzz_api.request("POST", "/v1/ingest/stream", raw=body + good + b"\n")
    assert status == 400 and out["points"] == 1 and out["rejected"] == 1, (status, out)


# -- hand-made edge cases ----------------------------------------------------------------------------


def _raw_http(port: int, head: bytes, body: bytes, close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        if close_early:
            return b""
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_edge_cases_each_rejected_with_a_reason(embedded, fuzz_api: Api) -> None:
    api = fuzz_api
    sentinel = Sentinel(api, GOOD_RUN, "sentinel-edge")
    cfg = embedded.settings
    good = json.dumps({"run_id": GOOD_RUN, "writer_id": "edge", "seq": 0, "step": 0, "key": "k", "value": 1}).encode()
    cases = {
        "empty json body": (b"", "/v1/ingest", 400),
        "json null": (b"null", "/v1/ingest", 400),
        "points not a list": (b'{"points": 5}', "/v1/ingest", 400),
        "deep nesting": (b'{"points": ' + b"[" * 100000 + b"]" * 100000 + b"}", "/v1/ingest", 400),
        "not utf-8": (b'{"points": [{"seq": 0, "step": 0, "key": "\xff\xfe", "value": 1, "run_id": "fuzz-good", "writer_id": "x"}]}', "/v1/ingest", 400),
        "huge number literal": (b'{"points": [{"seq": 1' + b"0" * 5000 + b', "step": 0, "key": "k", "run_id": "fuzz-good", "writer_id": "x"}]}', "/v1/ingest", 400),
        "body over the limit": (b'{"points": [' + b" " * (cfg.max_body_bytes + 10) + b"]}", "/v1/ingest", 413),
        "huge line between good lines": (good + b"\n" + b'{"key": "' + b"x" * (cfg.max_line_bytes + 10) + b'"}\n' + good.replace(b'"seq": 0', b'"seq": 1') + b"\n", "/v1/ingest/stream", 400),
        "huge last line, no newline": (b"x" * (cfg.max_line_bytes * 2 + 3), "/v1/ingest/stream", 400),
        "stream of only newlines": (b"\n" * 10000, "/v1/ingest/stream", 200),
    }
    for name, (raw, path, want) in cases.items():
        CASES["edge cases"] += 1
        status, out = api.request("POST", path, raw=raw)
        assert status == want, (name, status, str(out)[:300])
        if want >= 400:
            assert isinstance(out, dict) and out.get("error"), (name, out)
        sentinel.check()
    # The stream with a huge line in the middle kept both good neighbours.
    assert api.request("POST", "/v1/ingest/stream", raw=cases["huge line between good lines"][0])[1]["points"] == 2
    # A stream abandoned mid-line (the client goes away) and one that claims more than it sends.
    port = int(embedded.url.rsplit(":", 1)[1])
    half = good + b"\n" + good[:20]
    for claimed in (len(half), len(half) + 1000):
        CASES["edge cases"] += 1
        head = (f"POST /v1/ingest/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.key}\r\n"
                f"Content-Length: {claimed}\r\n\r\n").encode()
        _raw_http(port, head, half, close_early=True)
        sentinel.check()
    # Chunked transfer with a broken chunk header.
    CASES["edge cases"] += 1
    head = (f"POST /v1/ingest/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.key}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    reply = _raw_http(port, head, b"5\r\nabcde\r\nZZZ\r\n\r\n")
    # aiohttp answers a parse error found before the request is dispatched as HTTP/1.0.
    assert reply[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and reply[9:10] == b"4" or reply == b"", reply[:200]
    sentinel.check()
    assert api.get("/health")[0] == 200
    sentinel.final()
