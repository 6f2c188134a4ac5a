"""Blob throughput and server memory: one large blob up and down through ``arwx server``.

For each blob store (the data-dir directory, and S3 on a real SeaweedFS that
this script starts from ``tests/seaweedfs.py``), starts a real ``arwx server``,
streams a blob of ``--size-mib`` MiB to ``POST /v1/blobs`` (with its SHA-256
claimed, as the SDK does) and reads it back from ``GET /v1/blobs/:sha``,
checking the hash. Prints one Markdown row per store:

- up / down MiB/s: wall-clock throughput seen by the client
- server RSS before: the server's VmRSS once started, before the upload
- server peak RSS: its VmHWM (peak) after the upload and the download; the
  point is that it does not grow with the blob

The client, the server and SeaweedFS share the machine (and the disk).

    python bench/bench_blobs.py                      # 2 GiB, both stores
    python bench/bench_blobs.py --size-mib 256 --stores directory
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))

from tests.helpers import ServerProcess  # noqa: E402

BLOCK = 1 << 20


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _blocks(block: bytes, n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield block


def run_one(name: str, size_mib: int, extra: list[str], env: dict[str, str]) -> dict:
    block = os.urandom(BLOCK)
    h = hashlib.sha256()
    for _ in range(size_mib):
        h.update(block)
    digest = h.hexdigest()
    with tempfile.TemporaryDirectory(prefix="arwx-bench-blobs-") as tmp:
        srv = ServerProcess(Path(tmp) / "data", extra=extra, env=env).start()
        try:
            assert srv.proc is not None
            pid = srv.proc.pid
            rss_before = _status_kb(pid, "VmRSS") / 1024
            auth = {"Authorization": f"Bearer {srv.key}"}
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
            t0 = time.perf_counter()
            conn.request(
                "POST", f"/v1/blobs?sha256={digest}", body=_blocks(block, size_mib),
                headers={**auth, "Content-Length": str(size_mib * BLOCK)},
            )
            resp = conn.getresponse()
            out = json.loads(resp.read())
            up_s = time.perf_counter() - t0
            assert resp.status == 201 and out == {"sha": digest, "size": size_mib * BLOCK}, (resp.status, out)
            t0 = time.perf_counter()
            conn.request("GET", f"/v1/blobs/{digest}", headers=auth)
            resp = conn.getresponse()
            got = hashlib.sha256()
            n = 0
            while chunk := resp.read(BLOCK):
                got.update(chunk)
                n += len(chunk)
            down_s = time.perf_counter() - t0
            assert resp.status == 200 and got.hexdigest() == digest and n == size_mib * BLOCK
            return {
                "store": name,
                "size_mib": size_mib,
                "up_mibs": size_mib / up_s,
                "down_mibs": size_mib / down_s,
                "rss_before_mib": rss_before,
                "peak_rss_mib": _status_kb(pid, "VmHWM") / 1024,
            }
        finally:
            srv.terminate()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--stores", nargs="+", default=["directory", "s3"], choices=["directory", "s3"])
    args = ap.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, blob {args.size_mib} MiB")
    print("| store | size MiB | up MiB/s | down MiB/s | server RSS before MiB | server peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name in args.stores:
        if name == "directory":
            row = run_one(name, args.size_mib, [], {})
        else:
            from tests.seaweedfs import SeaweedS3

            with SeaweedS3() as s3:
                row = run_one("s3 (SeaweedFS)", args.size_mib, ["--blobs", f"{s3.url}/bench"], s3.env)
        print(
            f"| {row['store']} | {row['size_mib']} | {row['up_mibs']:.0f} | {row['down_mibs']:.0f} "
            f"| {row['rss_before_mib']:.0f} | {row['peak_rss_mib']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
