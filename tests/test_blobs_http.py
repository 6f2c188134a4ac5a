"""The blob routes over HTTP: upload, missing, download; on the embedded server
(directory store) and on a server whose blobs live in a real SeaweedFS."""

from __future__ import annotations

import hashlib
import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import Api, ServerThread
from tests.seaweedfs import SeaweedS3


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _conn(api: Api) -> http.client.HTTPConnection:
    u = urlsplit(api.url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def upload_stream(api: Api, parts: Iterator[bytes], length: int | None, claim: str | None = None) -> tuple[int, dict]:
    """POST /v1/blobs with a body streamed from ``parts`` (chunked when ``length`` is None)."""
    import json

    conn = _conn(api)
    headers = {"Authorization": f"Bearer {api.key}"}
    if claim:
        headers["X-Content-SHA256"] = claim
    if length is not None:
        headers["Content-Length"] = str(length)
    conn.request("POST", "/v1/blobs", body=parts, headers=headers, encode_chunked=length is None)
    resp = conn.getresponse()
    out = json.loads(resp.read())
    conn.close()
    return resp.status, out


def download_digest(api: Api, digest: str) -> tuple[int, int, str]:
    """GET /v1/blobs/:sha read in chunks: status, Content-Length, SHA-256 of the body."""
    conn = _conn(api)
    conn.request("GET", f"/v1/blobs/{digest}", headers={"Authorization": f"Bearer {api.key}"})
    resp = conn.getresponse()
    h = hashlib.sha256()
    while chunk := resp.read(1 << 20):
        h.update(chunk)
    conn.close()
    return resp.status, int(resp.getheader("Content-Length", "-1")), h.hexdigest()


def test_upload_missing_download(api: Api) -> None:
    data = os.urandom(300_000)
    digest = sha(data)
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [digest]}) == {"missing": [digest]}
    status, out = api.post("/v1/blobs", raw=data, params={"sha256": digest})
    assert (status, out) == (201, {"sha": digest, "size": len(data)})
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [digest, "0" * 64]}) == {"missing": ["0" * 64]}
    assert download_digest(api, digest) == (200, len(data), digest)
    # No claim: the server names the address.
    status, out = api.post("/v1/blobs", raw=b"")
    assert (status, out) == (201, {"sha": sha(b""), "size": 0})
    # HEAD answers the size without a body.
    conn = _conn(api)
    conn.request("HEAD", f"/v1/blobs/{digest}", headers={"Authorization": f"Bearer {api.key}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Length") == str(len(data)) and resp.read() == b""


def test_a_wrong_claim_is_a_400_and_stores_nothing(api: Api) -> None:
    data = os.urandom(5000)
    wrong = sha(b"other")
    for how in ({"params": {"sha256": wrong}}, {"headers": {"X-Content-SHA256": wrong}}):
        status, out = api.post("/v1/blobs", raw=data, **how)
        assert status == 400 and wrong in out["error"] and sha(data) in out["error"], out
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [wrong, sha(data)]}) == {"missing": [wrong, sha(data)]}
    assert api.get(f"/v1/blobs/{sha(data)}")[0] == 404
    # Streamed and bigger than a write chunk: refused at the end, still nothing stored.
    big = os.urandom(3 << 20)
    status, out = upload_stream(api, iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), None, wrong)
    assert status == 400 and sha(big) in out["error"]
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [sha(big)]}) == {"missing": [sha(big)]}


def test_bad_input_is_named(api: Api) -> None:
    status, out = api.post("/v1/blobs/missing", {"shas": ["a" * 64, "XYZ"]})
    assert status == 400 and "shas[1]" in out["error"] and "'XYZ'" in out["error"], out
    status, out = api.post("/v1/blobs/missing", {"shas": ["a" * 64] * 10_001})
    assert status == 400 and "10000" in out["error"], out
    assert api.post("/v1/blobs/missing", {"shas": ["a" * 64] * 10_000})[0] == 200
    status, out = api.post("/v1/blobs/missing", {"sha": []})
    assert status == 400 and "sha" in out["error"], out
    status, out = api.post("/v1/blobs", raw=b"x", params={"sha256": "nothex"})
    assert status == 400 and "'nothex'" in out["error"], out
    status, out = api.post("/v1/blobs", raw=b"x", params={"sha256": sha(b"x")}, headers={"X-Content-SHA256": "a" * 64})
    assert status == 400 and "differ" in out["error"], out
    status, out = api.get("/v1/blobs/" + "A" * 64)
    assert status == 400 and "lowercase hex" in out["error"], out
    assert api.get("/v1/blobs/" + "b" * 64) == (404, {"error": f"unknown blob {'b' * 64}"})


def test_another_orgs_blob_is_404(embedded, api: Api) -> None:
    other = Api(embedded.url, embedded.new_org_key("other"))
    digest = api.ok("POST", "/v1/blobs", raw=b"org-a secret bytes")["sha"]
    assert other.get(f"/v1/blobs/{digest}") == (404, {"error": f"unknown blob {digest}"})
    assert other.ok("POST", "/v1/blobs/missing", {"shas": [digest]}) == {"missing": [digest]}
    assert api.get(f"/v1/blobs/{digest}")[0] == 200


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_blob_streams_through_with_bounded_memory(api: Api) -> None:
    """512 MiB up and down through the in-process server: the peak RSS of this process
    (server and client) grows by far less than the blob. Not timing-based."""
    size, block = 512 << 20, os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(size // len(block)):
        h.update(block)
    digest = h.hexdigest()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _vm_hwm_kib()
    status, out = upload_stream(api, (block for _ in range(size // len(block))), size, digest)
    assert (status, out) == (201, {"sha": digest, "size": size})
    assert download_digest(api, digest) == (200, size, digest)
    grown_mib = (_vm_hwm_kib() - base) / 1024
    print(f"\npeak RSS grew by {grown_mib:.0f} MiB moving a {size >> 20} MiB blob up and down")
    assert grown_mib < 128, grown_mib


@pytest.fixture(scope="module")
def s3_server(seaweed: SeaweedS3, store_dir: Path, embedded) -> Iterator[ServerThread]:
    """A second server on the shared store whose blobs live in SeaweedFS."""
    mp = pytest.MonkeyPatch()
    for k, v in seaweed.env.items():
        mp.setenv(k, v)
    srv = ServerThread(frozenset({"gateway", "query"}), data_dir=store_dir, blobs_url=f"{seaweed.url}/http")
    yield srv
    srv.stop()
    mp.undo()


def test_blob_routes_on_s3(s3_server: ServerThread) -> None:
    api = Api(s3_server.url, s3_server.new_org_key("s3"))
    other = Api(s3_server.url, s3_server.new_org_key("s3-other"))
    data = os.urandom(20 << 20)  # multipart
    digest = sha(data)
    status, out = upload_stream(api, iter([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]), None, digest)
    assert (status, out) == (201, {"sha": digest, "size": len(data)})
    assert download_digest(api, digest) == (200, len(data), digest)
    assert other.get(f"/v1/blobs/{digest}")[0] == 404
    status, out = api.post("/v1/blobs", raw=b"abc", params={"sha256": sha(b"abd")})
    assert status == 400 and sha(b"abc") in out["error"]
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [sha(b"abc"), digest]}) == {"missing": [sha(b"abc")]}


def test_a_client_that_hangs_up_mid_upload_leaves_nothing(embedded, api: Api) -> None:
    """A real socket closed after part of the body: no blob, no temporary file left."""
    import socket

    from tests.helpers import wait_for

    data = os.urandom(6 << 20)
    digest = sha(data)
    tmp = embedded.server.blobs.root / "tmp"
    u = urlsplit(api.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(
            f"POST /v1/blobs?sha256={digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.key}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
        )
        s.sendall(data[: 3 << 20])
        wait_for(lambda: any(tmp.iterdir()), 30, what="the upload to start writing")
    wait_for(lambda: not any(tmp.iterdir()), 30, what="the cut-off upload's temporary file to go")
    assert api.ok("POST", "/v1/blobs/missing", {"shas": [digest]}) == {"missing": [digest]}
    assert api.get(f"/v1/blobs/{digest}")[0] == 404


def test_an_unreachable_object_store_is_a_503_with_retry_after(store_dir: Path, embedded) -> None:
    """An outage, not bad input: 503 + Retry-After, never a 500 (and never a 4xx blaming the client)."""
    from tests.helpers import free_port

    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    for k, v in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y"), ("AWS_REGION", "us-east-1")):
        mp.setenv(k, v)
    srv = ServerThread(frozenset({"gateway", "query"}), data_dir=store_dir, blobs_url="s3://nowhere")
    try:
        api = Api(srv.url, srv.new_org_key("outage"))
        conn = _conn(api)
        conn.request("POST", f"/v1/blobs?sha256={sha(b'x')}", body=b"x", headers={"Authorization": f"Bearer {api.key}"})
        resp = conn.getresponse()
        assert resp.status == 503 and resp.getheader("Retry-After"), (resp.status, resp.read())
        assert api.get(f"/v1/blobs/{sha(b'x')}")[0] == 503
    finally:
        srv.stop()
        mp.undo()
