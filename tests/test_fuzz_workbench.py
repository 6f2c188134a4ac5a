"""ml-workbench's routes under generated bad input: never a 5xx, a refused request writes nothing.

hypothesis builds ``POST /api/v1/experiments/:id/metrics`` bodies mixing good
metrics with bad ones (wrong types, negative or huge steps, odd timestamps,
control characters and commas in keys, non-finite values, unknown fields)
and bodies for the other write routes; every answer is a 2xx or a JSON 4xx,
and the run holds exactly the points of the accepted requests at the end
(the integrity receipt intact). Schemathesis covers every route's schema in
tests/test_fuzz_ingest.py.
"""

from __future__ import annotations

import json
import math
import uuid

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.helpers import Api  # noqa: E402

BASE = "/api/v1/experiments"
HS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
metric = st.fixed_dictionaries(
    {"key": st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["loss", "a,b", "x\n", "\x00", ""]), junk),
     "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6), junk)},
    optional={"step": st.one_of(st.integers(-5, 2**64), junk),
              "timestamp": st.one_of(st.floats(-1e15, 1e15, allow_nan=False), st.text(max_size=25), junk),
              "extra": junk},
)
bodies = st.one_of(
    st.fixed_dictionaries({"metrics": st.lists(metric, max_size=6)}),
    st.fixed_dictionaries({"metrics": junk}),
    junk,
)


def _good(m: dict) -> bool:
    """What the adapter accepts, by the document's types and arwx's bounds (the oracle)."""
    key, value = m.get("key"), m.get("value")
    if not isinstance(key, str) or not key or len(key) > 256 or "," in key or any(ord(c) < 32 or c == "\x7f" for c in key):
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    step = m.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**63:
        return False
    t = m.get("timestamp")
    if t is None:
        return True
    # Strings and out-of-range numbers: the server decides (400 or stored), never a 5xx.
    return not isinstance(t, bool) and isinstance(t, (int, float, str))


@pytest.fixture(scope="module")
def target(embedded) -> tuple[Api, str]:
    api = Api(embedded.url, embedded.new_org_key("wb-fuzz", ("read", "write")), key_header="X-API-Key")
    exp = api.ok("POST", f"{BASE}/register", {"name": "fuzz"})["experiment_id"]
    return api, exp


def test_metrics_fuzz_all_or_nothing_never_5xx(target: tuple[Api, str]) -> None:
    api, exp = target
    stored = 0

    @HS
    @given(body=bodies)
    def case(body) -> None:  # noqa: ANN001
        nonlocal stored
        # A key per request: two generated bodies alike are two requests (without one, a byte-identical
        # body is taken for a retry and stored once, as documented).
        status, out = api.request("POST", f"{BASE}/{exp}/metrics", raw=json.dumps(body).encode(),
                                  headers={"Idempotency-Key": uuid.uuid4().hex})
        assert status < 500, (status, out, body)
        if status == 200:
            assert isinstance(body, dict) and out == {"logged": len(body["metrics"])}
            assert all(_good(m) for m in body["metrics"]), body
            stored += len(body["metrics"])
        else:
            assert status in (400, 413) and out["error"], (status, out)
            good = isinstance(body, dict) and isinstance(body.get("metrics"), list) and all(
                isinstance(m, dict) and _good(m) and not isinstance(m.get("timestamp"), (str, float, int))
                for m in body["metrics"])
            assert not good, (body, out)

    case()
    api.ok("PUT", f"{BASE}/{exp}", {"status": "completed"})
    receipt = api.wait_intact(exp, stored)
    assert receipt["points_stored"] == stored and receipt["intact"], receipt


@HS
@given(path=st.sampled_from(["", "/register", "/{exp}", "/{exp}/tags", "/{exp}/params", "/{exp}/artifacts"]),
       method=st.sampled_from(["POST", "PUT"]),
       body=st.one_of(junk, st.dictionaries(st.sampled_from(
           ["name", "tags", "params", "status", "content_base64", "s3_key", "type", "parameters", "final_metrics",
            "run_id", "description", "size"]), junk, max_size=5)))
def test_write_routes_never_5xx(target: tuple[Api, str], path: str, method: str, body: object) -> None:
    api, exp = target
    status, out = api.request(method, BASE + path.replace("{exp}", exp), raw=json.dumps(body).encode())
    assert status < 500, (method, path, status, out, body)
    if status >= 400:
        assert isinstance(out, dict) and out.get("error"), (status, out)
