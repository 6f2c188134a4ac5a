"""Delivering the autoresearch call journal to the server, in order, each call exactly once.

Invariants:

- Calls go out in journal order, one at a time; a call is acked only after
  the server answered it, so the next call never overtakes it (a decision
  never reaches the server before its experiment).
- Every call carries its own ``Idempotency-Key``; sessions and experiments
  also carry a client-chosen id. A resend (the answer was lost, the process
  died, the server was killed mid-request) is answered from the first time.
- Transport failures, 401/403, 408, 425, 429, 5xx and a 409 with
  ``Retry-After`` (the first send is still being answered) stop the drain;
  the call stays first in line for the next attempt. Any other 4xx is the
  call's own fault: it is set aside in ``rejected.ndjson`` with the answer and
  a warning, and the drain goes on.
- Nothing waits past ``deadline``; no exception leaves ``drain``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from arwandb._journal import Journal, dumps
from arwandb.uploader import HttpTransport, Response

logger = logging.getLogger("arwandb")

MISSING_BATCH = 10_000  # the server's limit on one POST /v1/blobs/missing
UPLOAD_WORKERS = 4  # connections uploading a snapshot's blobs at once
IN_MEMORY_UPLOAD = 64 << 20  # bigger files are streamed from disk on a fresh connection
PLACEHOLDER = "pending:"  # an artifact version not known yet: "pending:<digest>"


class _Transient(Exception):
    """The server cannot take the call now; try again later."""


class _Refused(Exception):
    """The server refused the call as the client's fault (or its bytes are gone)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def transient(resp: Response | None) -> bool:
    if resp is None:
        return True
    s = resp.status
    return s in (401, 403, 408, 425, 429) or s >= 500 or (s == 409 and resp.retry_after() is not None)


@dataclass
class DrainResult:
    """What one drain did: answers by idempotency key, and how many calls are left."""

    answers: dict[str, Any] = field(default_factory=dict)
    sent: int = 0
    rejected: int = 0
    pending: int = 0
    reachable: bool = True


class Replayer:
    """Sends journal lines over one kept-alive connection."""

    def __init__(self, journal: Journal, transport: HttpTransport) -> None:
        self.j = journal
        self.t = transport
        self._auth_warned = False

    # -- one request -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | Any | None, deadline: float,
                ctype: str = "application/json", headers: dict[str, str] | None = None) -> Response | None:
        """One request bounded by ``deadline`` (and the transport's timeout); None if unreachable."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            resp = self.t.request(method, path, body, ctype, timeout=min(self.t.timeout, left),
                                  extra_headers=headers)
        except (OSError, http.client.HTTPException) as e:
            logger.debug("arwandb: %s %s failed: %s", method, path, e)
            return None
        if resp.status in (401, 403) and not self._auth_warned:
            self._auth_warned = True
            logger.warning("arwandb: the server refused the API key (HTTP %d: %s); autoresearch calls stay "
                           "in the spool and are retried. Set ARWANDB_API_KEY.", resp.status, resp.error())
        return resp

    def missing(self, shas: list[str], deadline: float) -> list[str]:
        """The SHAs the server lacks (raises ``_Transient``)."""
        out: list[str] = []
        for i in range(0, len(shas), MISSING_BATCH):
            resp = self.request("POST", "/v1/blobs/missing", dumps({"shas": shas[i : i + MISSING_BATCH]}), deadline)
            if resp is None or transient(resp):
                raise _Transient()
            if resp.status >= 300:
                raise _Refused(resp.status, resp.error())
            out += (resp.json() or {}).get("missing", [])
        return out

    def upload(self, sha: str, source: str, deadline: float) -> None:
        """Upload ``source``'s bytes claiming ``sha`` (the server refuses other bytes)."""
        try:
            size = os.path.getsize(source)
            path = f"/v1/blobs?sha256={sha}"
            if size <= IN_MEMORY_UPLOAD:
                with open(source, "rb") as f:
                    data = f.read()
                resp = self.request("POST", path, data, deadline, "application/octet-stream")
            else:
                self.t.close()  # a fresh connection: the file cannot be re-read by a silent resend
                with open(source, "rb") as f:
                    resp = self.request("POST", path, f, deadline, "application/octet-stream")
        except FileNotFoundError:
            raise _Refused(0, f"{source} is gone; its bytes ({sha}) cannot be uploaded") from None
        except OSError as e:
            raise _Refused(0, f"{source} cannot be read: {e}") from None
        if resp is None or transient(resp):
            raise _Transient()
        if resp.status >= 300:
            raise _Refused(resp.status, f"{source}: {resp.error()}")

    def upload_many(self, blobs: dict[str, str], deadline: float) -> tuple[set[str], set[str], bool]:
        """Upload ``blobs`` (sha → file) over up to ``UPLOAD_WORKERS`` connections. Returns the
        SHAs that went up, those refused (their file changed or vanished), and whether the server
        stopped taking them (unreachable: the rest were not tried)."""
        items = sorted(blobs.items())
        done: set[str] = set()
        refused: set[str] = set()
        lock = threading.Lock()
        it = iter(items)
        failed = threading.Event()

        def work(r: Replayer) -> None:
            try:
                while not failed.is_set():
                    with lock:
                        nxt = next(it, None)
                    if nxt is None:
                        return
                    try:
                        r.upload(nxt[0], nxt[1], deadline)
                        with lock:
                            done.add(nxt[0])
                    except _Refused as e:
                        logger.debug("arwandb: blob %s refused: %s", nxt[0], e.reason)
                        with lock:
                            refused.add(nxt[0])
                    except _Transient:
                        failed.set()
            finally:
                if r is not self:
                    r.t.close()

        t = self.t
        url = f"{'https' if t.https else 'http'}://{t.host}:{t.port}{t.prefix}"
        n = min(UPLOAD_WORKERS, len(items))
        helpers = [Replayer(self.j, HttpTransport(url, t.api_key, t.timeout)) for _ in range(max(0, n - 1))]
        threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in helpers]
        for th in threads:
            th.start()
        if items:
            work(self)
        for th in threads:
            th.join()
        return done, refused, failed.is_set()

    def upload_missing(self, blobs: dict[str, str], deadline: float) -> int:
        """Upload those of ``blobs`` (sha → file) the server lacks; returns how many."""
        if not blobs:
            return 0
        need = self.missing(sorted(blobs), deadline)
        done, refused, failed = self.upload_many({sha: blobs[sha] for sha in need}, deadline)
        if failed:
            raise _Transient()
        if refused:
            raise _Refused(0, f"{len(refused)} file(s) changed or vanished before upload: {sorted(refused)[:5]}")
        return len(done)

    def fetch(self, sha: str, size: int, target: str, deadline: float) -> None:
        """Stream blob ``sha`` into ``target`` through a temporary file, checking its SHA-256 and
        size before the rename; raises ``ResearchError`` (nothing left behind) when it cannot."""
        from arwandb.autoresearch import OfflineError, ResearchError

        t = self.t
        cls = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
        conn = cls(t.host, t.port, timeout=max(0.5, min(t.timeout, deadline - time.monotonic())))
        headers = {"Authorization": f"Bearer {t.api_key}"} if t.api_key else {}
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.arwandb-part"
        try:
            try:
                conn.request("GET", f"{t.prefix}/v1/blobs/{sha}", headers=headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    raise ResearchError(f"blob {sha} of {target}: HTTP {resp.status} "
                                        f"{resp.read()[:300].decode('utf-8', 'replace')}")
                h, n = hashlib.sha256(), 0
                with open(tmp, "wb") as f:
                    while chunk := resp.read(1 << 20):
                        h.update(chunk)
                        f.write(chunk)
                        n += len(chunk)
            except (OSError, http.client.HTTPException) as e:
                raise OfflineError(f"downloading {target}: {e}") from None
            if h.hexdigest() != sha or n != size:
                raise ResearchError(f"{target}: got {n} bytes hashing to {h.hexdigest()}, expected {size} bytes "
                                    f"hashing to {sha}; not kept")
            os.replace(tmp, target)
        finally:
            conn.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    # -- one call ----------------------------------------------------------------------------------
    def send(self, entry: dict[str, Any], deadline: float) -> Any:
        """Deliver one journal line; returns the server's answer (raises ``_Transient``/``_Refused``)."""
        if entry.get("op") == "corrupt":
            raise _Refused(0, "unreadable journal line: " + str(entry.get("raw")))
        blobs = entry.get("blobs") or {}
        if blobs:
            self.upload_missing(blobs, deadline)
        body = entry.get("body")
        if entry.get("subst"):  # a promotion of a version logged offline: its number is known now
            v = body.get("version")
            if isinstance(v, str) and v.startswith(PLACEHOLDER):
                real = self.j.versions().get(v)
                if real is None:
                    raise _Refused(0, f"artifact version {v} was never logged (its log call was set aside)")
                body = {**body, "version": real}
        data = None if body is None else dumps(body)
        resp = self.request(entry["method"], entry["path"], data, deadline,
                            headers={"Idempotency-Key": entry["key"]})
        if resp is None or transient(resp):
            raise _Transient()
        if resp.status >= 300:
            raise _Refused(resp.status, resp.error())
        answer = resp.json()
        if entry.get("placeholder") and isinstance(answer, dict) and answer.get("version"):
            self.j.learn_version(entry["placeholder"], answer["version"])
        return answer

    def drain(self, deadline: float, lock_wait: float = 0.5) -> DrainResult:
        """Deliver pending lines in order until none is left, the server is unreachable, or
        ``deadline`` (``time.monotonic()``) passes."""
        res = DrainResult()
        try:
            with self.j.draining(lock_wait) as mine:
                if not mine:  # another process is delivering; it keeps the order
                    res.pending = self.j.pending()
                    return res
                n = self.j.acked()
                total, todo = self.j.entries(n)
                for entry in todo:
                    try:
                        res.answers[entry.get("key", "")] = self.send(entry, deadline)
                        res.sent += 1
                    except _Transient:
                        res.reachable = False
                        break
                    except _Refused as e:
                        res.rejected += 1
                        self.j.reject(entry, e.status, e.reason)
                        res.answers[entry.get("key", "")] = _Rejection(e.status, e.reason)
                        logger.warning(
                            "arwandb: the server refused autoresearch call %s %s (%s: %s); set aside in %s",
                            entry.get("method"), entry.get("path"), e.status or "client", e.reason,
                            os.path.join(self.j.dir, "rejected.ndjson"),
                        )
                    n += 1
                    self.j.ack(n)
                    if time.monotonic() >= deadline and n < total:
                        break
                res.pending = total - n
                if res.pending == 0 and total:
                    self.j.compact()
                    res.pending = self.j.pending()
        except OSError as e:  # a full disk, a read-only spool: keep the calls, never raise
            logger.warning("arwandb: the autoresearch journal in %s cannot be used: %s", self.j.dir, e)
            res.reachable = False
        return res


def drain_until(replayer: Replayer, deadline: float, lock_wait: float = 0.5) -> DrainResult:
    """Drain, retrying with backoff while the server is unreachable, until nothing is pending or
    ``deadline`` passes (``sync``: the server may be coming back)."""
    total = DrainResult()
    delay = 0.25
    while True:
        res = replayer.drain(deadline, lock_wait)
        total.answers.update(res.answers)
        total.sent += res.sent
        total.rejected += res.rejected
        total.pending, total.reachable = res.pending, res.reachable
        left = deadline - time.monotonic()
        if not res.pending or left <= 0:
            return total
        time.sleep(min(delay, left))
        delay = min(5.0, delay * 2)


@dataclass(frozen=True)
class _Rejection:
    """The answer a refused call gets (its caller sees it as an ``error``)."""

    status: int
    reason: str


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
