"""A real S3-compatible server for tests: SeaweedFS, built from the Go module proxy.

``go install …/weed@version`` is refused (SeaweedFS's ``go.mod`` has a
``replace``), so ``fetch()`` builds it from a throwaway module that requires the
pinned version with the same ``replace`` line, once, and caches the binary as
``~/.cache/arwx/weed-<version>/weed`` (override the folder with
``ARWX_WEED_CACHE``; ``ARWX_WEED_BIN`` names a ready binary instead).

    with SeaweedS3() as s3:
        s3.env        # AWS_* variables pointing at it, bucket already created
        s3.url        # "s3://<bucket>"

CLI::

    python tests/seaweedfs.py fetch   # build (or find) the binary, print its path
    python tests/seaweedfs.py run     # start a server, print its variables, wait for Ctrl-C

The server runs under the Kafka broker's watchdog: if the test process dies,
the watchdog kills ``weed`` and removes its temporary folder.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repository's tests package, not another one
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kafka_broker import _WATCHDOG, free_port  # noqa: E402

WEED_MODULE = "github.com/seaweedfs/seaweedfs"
WEED_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"

GO_MOD = f"""module arwx/weedbuild

go 1.24

require {WEED_MODULE} {WEED_VERSION}

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
"""
TOOLS_GO = f"""//go:build tools

package tools

import _ "{WEED_MODULE}/weed"
"""

ACCESS_KEY = "arwxtest"
SECRET_KEY = "arwxtestsecret"
BUCKET = "arwx-test"


class SeaweedError(RuntimeError):
    """SeaweedFS could not be built or started."""


def cache_dir() -> Path:
    env = os.environ.get("ARWX_WEED_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "arwx" / f"weed-{WEED_VERSION}"


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise SeaweedError("Go (go) is not on PATH; cannot build SeaweedFS from the Go module proxy")
    return go


def fetch(timeout_s: float = 1800.0) -> Path:
    """Build the ``weed`` binary once (minutes: a large Go program); return its path."""
    if os.environ.get("ARWX_WEED_BIN"):
        return Path(os.environ["ARWX_WEED_BIN"])
    root = cache_dir()
    binary = root / "weed"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent builds (several test processes at once).
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        build = root / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        (build / "go.mod").write_text(GO_MOD)
        (build / "tools.go").write_text(TOOLS_GO)
        env = dict(os.environ, GOFLAGS="-buildvcs=false")
        go = _go()
        for cmd in ([go, "mod", "tidy"], [go, "build", "-o", str(root / "weed.partial"), f"{WEED_MODULE}/weed"]):
            try:
                res = subprocess.run(cmd, cwd=build, env=env, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired as e:
                raise SeaweedError(f"{' '.join(cmd[1:3])} of SeaweedFS timed out after {timeout_s}s") from e
            if res.returncode != 0:
                tail = (res.stdout + res.stderr)[-3000:]
                raise SeaweedError(f"{' '.join(cmd[1:3])} of SeaweedFS failed (rc={res.returncode}):\n{tail}")
        # Renamed only when whole: a build cut off never leaves a binary that looks cached.
        os.replace(root / "weed.partial", binary)
        shutil.rmtree(build, ignore_errors=True)
    return binary


_LIVE: set[SeaweedS3] = set()


def _stop_all() -> None:
    for s in list(_LIVE):
        with contextlib.suppress(Exception):
            s.stop()


atexit.register(_stop_all)


class SeaweedS3:
    """``weed server`` (master, volume, filer, S3 gateway) on free loopback ports, one bucket made."""

    def __init__(self, start_timeout_s: float = 90.0, bucket: str = BUCKET) -> None:
        self.start_timeout_s = start_timeout_s
        self.bucket = bucket
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._binary: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The arwx blobs URL of the bucket."""
        return f"s3://{self.bucket}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> SeaweedS3:
        if self._proc is not None:
            return self
        self._binary = fetch()
        self.workdir = Path(tempfile.mkdtemp(prefix="arwx-weed-"))
        _LIVE.add(self)
        try:
            self._launch()
            self._make_bucket()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ports(self, n: int) -> list[int]:
        ports: set[int] = set()
        while len(ports) < n:
            ports.add(free_port())
        return list(ports)

    def _launch(self) -> None:
        assert self.workdir is not None and self._binary is not None
        identities = {
            "identities": [
                {
                    "name": "arwx",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "identities.json").write_text(json.dumps(identities))
        (self.workdir / "data").mkdir()
        master, volume, filer, s3, mg, vg, fg, sg = self._ports(8)
        self.port = s3
        cmd = [
            str(self._binary), "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.workdir / 'data'}",
            f"-master.port={master}", f"-master.port.grpc={mg}",
            # Small volumes: a test server should not preallocate gigabytes.
            "-master.volumeSizeLimitMB=256", "-volume.max=64",
            f"-volume.port={volume}", f"-volume.port.grpc={vg}",
            f"-filer.port={filer}", f"-filer.port.grpc={fg}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={sg}",
            f"-s3.config={self.workdir / 'identities.json'}",
            # Side services with fixed default ports: off, so servers can run side by side.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-iam=false",
        ]
        self._log_file = open(self.workdir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.workdir), *cmd],
            stdin=subprocess.PIPE, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _make_bucket(self) -> None:
        """Create the bucket through the S3 API, retrying (bounded) until the gateway is up."""
        from obstore.store import S3Store  # noqa: F401 - fail early and clearly if obstore is missing

        deadline = time.monotonic() + self.start_timeout_s
        last = ""
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SeaweedError(f"weed exited with rc={self._proc.returncode}:\n{self._log_tail()}")
            try:
                status = _signed_put_bucket(self.endpoint, self.bucket)
                if status in (200, 409):
                    return
                last = f"HTTP {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise SeaweedError(f"SeaweedFS S3 not ready after {self.start_timeout_s}s ({last}):\n{self._log_tail()}")

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return (self.workdir / "weed.log").read_text(errors="replace")[-n:] if self.workdir else ""
        except OSError:
            return "(no log)"


def _signed_put_bucket(endpoint: str, bucket: str) -> int:
    """``PUT /<bucket>`` signed with AWS Signature V4 (the one call obstore does not make)."""
    import datetime
    import hashlib
    import hmac

    host = endpoint.split("://", 1)[1]
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["PUT", f"/{bucket}", "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"
    req = urllib.request.Request(
        f"{endpoint}/{bucket}", method="PUT",
        headers={"x-amz-content-sha256": payload, "x-amz-date": amz_date, "Authorization": auth},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        print(fetch())
        return 0
    if argv[:1] == ["run"]:
        with SeaweedS3() as s3:
            for k, v in s3.env.items():
                print(f"export {k}={v}")
            print(f"# blobs URL: {s3.url}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
