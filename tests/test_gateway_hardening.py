"""Regression tests for issue 10 items 3, 5, 6 and 9: what a hostile or careless
client could do to the gateway, each against a live in-process server.

- slow and held bodies: bounded in time (408) and holding only the bytes they
  sent; one organization cannot take the budget of the others;
- deep nesting: a 400 everywhere, never a 500, and a bad line keeps its
  neighbours;
- caches bounded by entries, weight and age; configs bounded in size (413);
- contract edges: 1e309 is skipped not rejected, finish is final, keys with
  ``,`` or control characters are refused, aiohttp's parse errors are JSON.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from arwx.backpressure import INFLIGHT
from arwx.cache import BoundedCache
from arwx.runs import Runs, run_cache
from tests.helpers import Api, ServerThread, ndjson, points, wait_for

# -- slow clients (item 3) -----------------------------------------------------------------------

BODY = 64 << 10
BUDGET = 256 << 10


@pytest.fixture(scope="module")
def tight(store_dir):
    """A server with a small budget and short body timeouts."""
    srv = ServerThread(
        data_dir=store_dir, max_body_bytes=BODY, max_inflight_bytes=BUDGET, body_idle_s=1.5, body_timeout_s=4,
    )
    yield srv
    srv.stop()


def _port(srv: ServerThread) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def _open(srv: ServerThread, key: str, head: str, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", _port(srv)), timeout=20)
    s.sendall(f"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{head}\r\n".encode() + first)
    return s


def _reply(s: socket.socket) -> tuple[int, dict, bytes]:
    out = b""
    while b"\r\n\r\n" not in out or len(out.split(b"\r\n\r\n", 1)[1]) < _clen(out):
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body[: _clen(out)]) if body else {}, head


def _clen(out: bytes) -> int:
    for line in out.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _used(srv: ServerThread) -> int:
    return srv.server.runner.app[INFLIGHT].used


def test_held_chunked_requests_hold_what_they_sent_and_time_out(tight: ServerThread) -> None:
    """Sixteen chunked requests that send a byte and stop no longer fill the
    budget (they used to reserve max_body_bytes each, so another org got 429),
    and each is answered 408 once idle for body_idle_s."""
    a = Api(tight.url, tight.new_org_key("held-a"))
    b = Api(tight.url, tight.new_org_key("held-b"))
    b.ok("POST", "/v1/runs", {"id": "held"})
    held = [_open(tight, a.key, "Transfer-Encoding: chunked\r\n", b"1\r\n{\r\n") for _ in range(16)]
    try:
        wait_for(lambda: _used(tight) >= 16, 10, what="the held requests admitted")
        assert _used(tight) < 1024, _used(tight)  # a byte or two each, not 64 KiB each
        status, out = b.post("/v1/ingest", {"points": points("held", "w", range(10))})
        assert status == 200 and out["points"] == 10, (status, out)
        t0 = time.monotonic()
        for s in held:
            status, body, head = _reply(s)
            assert status == 408 and "no body bytes" in body["error"], (status, body)
            assert b"application/json" in head.lower()
        assert time.monotonic() - t0 < 15
    finally:
        for s in held:
            s.close()
    wait_for(lambda: _used(tight) == 0, 10, what="every reservation released")


def test_a_body_trickled_past_body_timeout_is_408(tight: ServerThread) -> None:
    """Never idle, but never done: the total bound answers."""
    a = Api(tight.url, tight.new_org_key("trickle"))
    s = _open(tight, a.key, "Content-Length: 1000\r\n", b"{")
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                s.sendall(b" ")
            except OSError:
                break  # the server answered and closed
            time.sleep(0.5)
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        status, body, _ = _reply(s)
        assert status == 408 and "within 4s" in body["error"], (status, body)
    finally:
        s.close()


def test_one_org_holds_at_most_its_share(tight: ServerThread) -> None:
    """An org's partial bodies stop at its share (half the budget); another org still gets in."""
    a = Api(tight.url, tight.new_org_key("share-a"))
    b = Api(tight.url, tight.new_org_key("share-b"))
    b.ok("POST", "/v1/runs", {"id": "share"})
    part = b'{"points": [' + b" " * (BODY - 2000)
    slow = [_open(tight, a.key, f"Content-Length: {BODY}\r\n", part) for _ in range(2)]
    try:
        wait_for(lambda: _used(tight) >= 2 * len(part), 10, what="two partial bodies received")
        third = _open(tight, a.key, f"Content-Length: {BODY}\r\n", part)
        status, body, _ = _reply(third)
        third.close()
        assert status == 429 and "this organization" in body["error"], (status, body)
        status, out = b.post("/v1/ingest", {"points": points("share", "w", range(10))})
        assert status == 200, (status, out)
    finally:
        for s in slow:
            s.close()
    wait_for(lambda: _used(tight) == 0, 10, what="every reservation released")


# -- deep nesting (item 5) -----------------------------------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_deep_nesting_is_400_on_every_route(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "deep"})
    good = points("deep", "w", range(3))
    bad_point = '{"run_id": "deep", "writer_id": "w", "seq": 9, "step": 9, "key": "k", "value": ' + _deep(5000) + "}"
    status, out = api.post("/v1/ingest", raw=('{"points": [' + bad_point + "]}").encode())
    assert status == 400 and "nested too deeply" in out["error"], (status, out)
    status, out = api.post("/v1/ingest/stream", raw=ndjson(good[:1]) + bad_point.encode() + b"\n" + ndjson(good[1:]))
    assert status == 400 and out["points"] == 3 and out["rejected"] == 1, (status, out)
    assert out["errors"] == [{"line": 2, "reason": "JSON is nested too deeply"}], out
    status, out = api.post("/v1/runs", raw=('{"id": "deep2", "config": {"a": ' + _deep(2000) + "}}").encode())
    assert status == 400 and "nested" in out["error"], (status, out)
    # Below the decoder's bound but past the config's: still a clear 400.
    status, out = api.post("/v1/runs", raw=('{"id": "deep3", "config": {"a": ' + _deep(100) + "}}").encode())
    assert status == 400 and "64 levels" in out["error"], (status, out)
    nested = json.loads(_deep(60))
    run = api.ok("POST", "/v1/runs", {"id": "deep4", "config": {"a": nested}})
    assert api.ok("GET", "/v1/runs/deep4")["config"] == run["config"] == {"a": nested}


# -- bounded caches and configs (item 6) -------------------------------------------------------


def test_bounded_cache_by_entries_weight_and_age() -> None:
    now = [0.0]
    c: BoundedCache[str, bytes] = BoundedCache(3, 10, max_weight=100, weigh=len, clock=lambda: now[0])
    for k in "abcd":
        c.put(k, b"x")
    assert len(c) == 3 and c.get("a") is None and c.get("b") == b"x"  # the oldest went
    c.put("big", b"y" * 90)
    assert c.weight <= 100 and c.get("big") == b"y" * 90
    c.put("huge", b"z" * 101)  # bigger than the whole cache: never held
    assert c.get("huge") is None and c.weight <= 100
    now[0] = 10.0
    assert c.get("big") is None and c.get("b") is None  # aged out
    c.put("e", b"e")
    assert len(c) == 1 and c.weight == 1  # expired entries are dropped on the way


def test_run_cache_stays_bounded_with_many_big_configs(embedded, api: Api) -> None:
    """150 runs with 200 KB configs kept every one in memory before; now the
    cache's weight stays under its bound and a lookup still answers."""
    org = embedded.call(embedded.server.tenancy.authenticate(api.key)).org
    runs = Runs(embedded.server.catalog, cache=run_cache(ttl_s=60, max_runs=1000, max_bytes=1 << 20))
    config = {"blob": "x" * (200 << 10)}

    async def create_all() -> None:
        for i in range(30):
            await runs.create(org, f"cache-{i}", "p", None, config, None)
            await runs.get(org, f"cache-{i}")

    embedded.call(create_all(), timeout=120)
    assert runs._cache.weight <= 1 << 20 and len(runs._cache) <= 5, (runs._cache.weight, len(runs._cache))
    assert embedded.call(runs.get(org, "cache-0")).config == config


def test_config_over_the_limit_is_413(api: Api) -> None:
    status, out = api.post("/v1/runs", {"id": "bigconf", "config": {"a": "x" * (300 << 10)}})
    assert status == 413 and "config" in out["error"] and str(256 << 10) in out["error"], (status, out)
    assert api.get("/v1/runs/bigconf")[0] == 404


# -- contract edges (item 9) ---------------------------------------------------------------------


def test_float_literal_past_float_range_is_skipped_not_rejected(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "inf"})
    raw = (b'{"run_id": "inf", "writer_id": "w", "points": ['
           b'{"seq": 0, "step": 0, "key": "k", "value": 1e309}, {"seq": 1, "step": 1, "key": "k", "value": -1e309},'
           b'{"seq": 2, "step": 2, "key": "k", "value": 2.5}]}')
    status, out = api.post("/v1/ingest", raw=raw)
    assert status == 200 and out["points"] == 3 and out["skipped_by_reason"] == {"non_finite": 2}, (status, out)
    line = b'{"run_id": "inf", "writer_id": "s", "seq": 0, "step": 0, "key": "k", "value": 1e999}\n'
    status, out = api.post("/v1/ingest/stream", raw=line)
    assert status == 200 and out["skipped"] == 1, (status, out)


def test_finish_is_final(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "fin"})
    run = api.ok("POST", "/v1/runs/fin/finish", {"status": "finished", "writer_totals": {"w": 10}})
    assert run["status"] == "finished" and run["writer_totals"] == {"w": 10}
    status, out = api.post("/v1/runs/fin/finish", {"status": "killed", "writer_totals": {"w": 20}})
    assert status == 409 and "final" in out["error"], (status, out)
    again = api.ok("POST", "/v1/runs/fin/finish", {"status": "finished", "writer_totals": {"w": 10}})  # a retry
    assert again["status"] == "finished" and again["writer_totals"] == {"w": 10}
    later = api.ok("POST", "/v1/runs/fin/finish", {"status": "killed", "writer_totals": {"v": 5}})  # another rank
    assert later["status"] == "finished" and later["writer_totals"] == {"w": 10, "v": 5}
    assert later["finished_at"] == run["finished_at"]
    status, _ = api.post("/v1/ingest", {"points": points("fin", "w", range(10, 11))})
    assert status == 409  # still refused past the first total


@pytest.mark.parametrize("key", ["loss,train", "loss\n", "loss\u0000", "\u0000", "a\tb"])
def test_keys_with_commas_or_control_characters_are_refused(api: Api, key: str) -> None:
    api.ok("POST", "/v1/runs", {"id": "keys"})
    pt = {"run_id": "keys", "writer_id": "w", "seq": 0, "step": 0, "key": key, "value": 1}
    status, out = api.post("/v1/ingest", {"points": [pt]})
    assert status == 400 and "key" in out["error"], (status, out)
    status, out = api.post("/v1/ingest/stream", raw=json.dumps(pt).encode() + b"\n")
    assert status == 400 and out["rejected"] == 1, (status, out)


def test_ids_with_a_trailing_newline_are_refused(api: Api) -> None:
    status, out = api.post("/v1/runs", {"id": "run\n"})
    assert status == 400 and "id" in out["error"], (status, out)


def test_keys_without_commas_round_trip_through_keys_param(api: Api) -> None:
    api.ok("POST", "/v1/runs", {"id": "kp"})
    pts = points("kp", "w", range(2), key="a b/c:d") + points("kp", "w", range(2, 4), key="é")
    api.ok("POST", "/v1/ingest", {"points": pts})
    api.wait_intact("kp", 4)
    page = api.ok("GET", "/v1/runs/kp/metrics", params={"keys": "a b/c:d,é"})
    assert sorted(page["keys"]) == ["a b/c:d", "é"] and len(page["rows"]) == 4, page


def _raw(srv_url: str, data: bytes) -> tuple[int, bytes, bytes]:
    port = int(srv_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize("name", ["huge header", "content-length and chunked", "bad chunk size"])
def test_aiohttp_parse_errors_answer_the_json_error_shape(embedded, api: Api, name: str) -> None:
    auth = f"Authorization: Bearer {api.key}\r\n"
    data = {
        "huge header": f"GET /v1/keys HTTP/1.1\r\nHost: x\r\n{auth}X-Big: {'a' * 20000}\r\n\r\n".encode(),
        "content-length and chunked": (f"POST /v1/ingest HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode(),
        "bad chunk size": (f"POST /v1/ingest HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
                           "zz\r\nabc\r\n0\r\n\r\n").encode(),
    }[name]
    status, head, body = _raw(embedded.url, data)
    assert 400 <= status < 500, (status, head, body)
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"], body


def test_receipt_counts_a_resent_skipped_point_once(api: Api) -> None:
    """The receipt's ``skipped`` counted every message's NaNs, so a re-send counted again."""
    api.ok("POST", "/v1/runs", {"id": "nan"})
    raw = (b'{"run_id": "nan", "writer_id": "w", "points": [{"seq": 0, "step": 0, "key": "k", "value": NaN},'
           b'{"seq": 1, "step": 1, "key": "k", "value": 1.5}]}')
    for _ in range(3):  # the client did not see the answer and re-sent
        status, out = api.post("/v1/ingest", raw=raw)
        assert status == 200 and out["skipped"] == 1, (status, out)
    wait_for(lambda: api.receipt("nan")["points_committed"] == 6, 60, what="all three messages consumed")
    r = api.wait_intact("nan", 2)
    assert r["skipped"] == 1 and r["writers"][0]["skipped"] == 1, r
    assert r["duplicates_collapsed"] == 4, r
