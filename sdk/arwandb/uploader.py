"""Moving spooled points to the server: kept-alive HTTP, batching, backoff, set-aside of refused points."""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from arwandb.columns import CONTENT_TYPE as COLUMNS_TYPE
from arwandb.columns import ColumnsEncoder, RecentColumns
from arwandb.config import DEFAULT_FLUSH_INTERVAL
from arwandb.encode import Columns
from arwandb.spool import WriterSpool

logger = logging.getLogger("arwandb")

CLIENT_FAULT = {400, 404, 409, 413, 422}
STREAM_MAX_POINTS = 50_000  # per NDJSON request: ~7 MB, well under any proxy's patience
COLUMNS_MAX_POINTS = 50_000  # per columnar request: ~2.5 MB


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def error(self) -> str:
        j = self.json()
        if isinstance(j, dict) and j.get("error"):
            return str(j["error"])
        return self.body[:300].decode("utf-8", "replace") or f"HTTP {self.status}"

    def retry_after(self) -> float | None:
        v = self.headers.get("retry-after")
        if v is None:
            return None
        try:
            return max(0.0, float(v))
        except ValueError:
            return None


class Transport(Protocol):
    """How the uploader reaches the server: ``HttpTransport``, or anything with these two
    methods (an in-memory server in tests)."""

    timeout: float  # the bound on one request when no deadline is nearer

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Response:
        """One request; raises ``OSError`` / ``http.client.HTTPException`` when the server cannot be reached."""
        ...

    def close(self) -> None: ...


class HttpTransport:
    """One kept-alive HTTP(S) connection to the server; reconnects on any failure."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 15.0) -> None:
        u = urllib.parse.urlsplit(base_url)
        self.https = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        # Sent on every request: ``Arwx-Attempt`` once the run's attempt is known (resume.py).
        self.headers: dict[str, str] = {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        """Raises OSError / http.client.HTTPException on transport failure (the caller retries).

        ``extra_headers``: more request headers (an ``Idempotency-Key``, say)."""
        headers = {"Content-Type": content_type, "Accept": "application/json", **self.headers, **(extra_headers or {})}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        t = self.timeout if timeout is None else max(0.5, timeout)
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self._conn = cls(self.host, self.port, timeout=t)
            elif self._conn.sock is not None:
                self._conn.sock.settimeout(t)
            try:
                self._conn.request(method, self.prefix + path, body=body, headers=headers)
                r = self._conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self.close()
                # a kept-alive connection the server closed meanwhile fails at once: retry it fresh once
                if reused and attempt == 0:
                    continue
                raise
            if r.will_close:
                self.close()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        raise AssertionError("unreachable")


class Backoff:
    """Exponential backoff with jitter; Retry-After wins when the server sends one."""

    def __init__(self, base: float = 0.25, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self, retry_after: float | None = None, cap: float | None = None) -> float:
        self.attempt += 1
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)  # honour it; jitter only upwards
        d = min(cap or self.cap, self.base * (2 ** min(self.attempt - 1, 16)))
        return d * random.uniform(0.5, 1.0)


class Uploader:
    """Drains the spools of one run to the server. Used by the live run's thread and by ``sync``.

    Nothing here raises to the caller: transport errors and 401/429/5xx back off and retry until
    ``deadline``; client-fault answers (400/404/409/413/422) set the points aside once, with a warning.

    When to send (adaptive): a writer's pending points go in one request as soon as its last
    request started ``flush_interval`` ago or longer. So the first point after a quiet spell goes
    at once, and a busy writer makes at most one request per ``flush_interval`` (plus one per full
    request of ``COLUMNS_MAX_POINTS``), carrying whatever came meanwhile: batches grow with the
    rate, requests do not. Points go as one columnar body (``columns.py``); a server that does not
    take that (an older one) gets JSON batches of ``batch_size`` and NDJSON streams as before.
    """

    def __init__(
        self,
        transport: Transport,
        run_meta: dict[str, Any],
        spools: list[WriterSpool],
        *,
        batch_size: int = 500,
        stream_threshold: int = 5000,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        heartbeat_interval: float | None = None,
        recent: dict[str, RecentColumns] | None = None,
    ) -> None:
        """``heartbeat_interval``: seconds between heartbeats while live (None: none, as in ``sync``);
        ``recent``: per writer id, the columns the spooler made (a live run), so its points are
        sent without reading the spool back."""
        self.t = transport
        self.meta = run_meta
        self.run_id: str = run_meta["id"]
        self.spools = spools
        self.batch_size = batch_size
        self.stream_threshold = stream_threshold
        self.flush_interval = flush_interval
        self.wake = threading.Event()
        self.abort = threading.Event()
        self.deadline: float | None = None  # monotonic; set when draining toward finish/sync
        self.draining = False
        self.run_created = False
        self.backoff = Backoff()
        self.rejected = 0
        self._warned: set[tuple[int, str]] = set()
        self._auth_warned = False
        self._recreated = False
        self._last_send: dict[str, float] = {}  # monotonic start of each writer's last request
        self.columns = True  # the server takes columnar bodies (until it shows it does not)
        self.recent = recent or {}
        self._col_enc = {sp.writer_id: ColumnsEncoder(self.run_id, sp.writer_id) for sp in spools}
        self._cap: dict[str, int] = {}  # per-writer batch cap after a 413
        self.heartbeat_interval = heartbeat_interval
        self._last_beat = float("-inf")

    # -- driving it ------------------------------------------------------------------------------
    def start_draining(self, deadline: float) -> None:
        """From now on send whatever is pending at once (not waiting for full batches), and give up
        at ``deadline`` (``time.monotonic()``). Wakes a thread waiting in ``drain`` or on ``wake``."""
        self.deadline = deadline
        self.draining = True
        self.wake.set()

    def drain(
        self,
        deadline: float,
        *,
        reserve: float = 0.0,
        more: Callable[[], bool] | None = None,
        idle_wait: float = 0.05,
    ) -> int:
        """Upload until nothing is pending (and ``more()``, if given, says nothing more is coming),
        ``abort`` is set, or fewer than ``reserve`` seconds are left before ``deadline`` (time kept
        for what the caller sends next, such as ``finish_run``). Returns the points still pending."""
        self.start_draining(deadline)
        self.wake.clear()
        while not self.abort.is_set():
            if self.pending() == 0 and not (more is not None and more()):
                break
            r = self._remaining()
            if r is not None and r <= reserve:
                break
            if not self.step():
                self.wake.wait(idle_wait)
                self.wake.clear()
        return self.pending()

    def close(self) -> None:
        """Close the connection; the spools stay open (their owner closes them)."""
        self.t.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _expired(self) -> bool:
        r = self._remaining()
        return self.abort.is_set() or (r is not None and r <= 0)

    def _sleep(self, delay: float) -> None:
        r = self._remaining()
        if r is not None:
            delay = min(delay, max(0.0, r))
        self.abort.wait(delay)

    def _req(
        self, method: str, path: str, body: bytes | None, ctype: str = "application/json"
    ) -> Response | None:
        r = self._remaining()
        try:
            return self.t.request(
                method, path, body, ctype, timeout=None if r is None else min(self.t.timeout, r)
            )
        except (OSError, http.client.HTTPException) as e:
            logger.debug("arwandb: %s %s failed: %s", method, path, e)
            return None

    def _transient(self, resp: Response | None) -> float:
        """Delay before retrying after a transport failure / 401 / 429 / 5xx."""
        if resp is not None and resp.status in (401, 403):
            if not self._auth_warned:
                self._auth_warned = True
                logger.warning(
                    "arwandb: the server refused the API key (HTTP %d: %s). Set ARWANDB_API_KEY; "
                    "points stay in the spool and are retried.",
                    resp.status,
                    resp.error(),
                )
            return self.backoff.next(cap=60.0)
        return self.backoff.next(resp.retry_after() if resp is not None else None)

    def _warn_once(self, status: int, reason: str, n: int, sp: WriterSpool) -> None:
        self.rejected += n
        sig = (status, reason[:60])
        if sig in self._warned:
            return
        self._warned.add(sig)
        logger.warning(
            "arwandb: the server refused %d point(s) of run %s writer %s (HTTP %d: %s); "
            "they are set aside in %s/rejected.ndjson and not retried.",
            n,
            self.run_id,
            sp.writer_id,
            status,
            reason,
            sp.dir,
        )

    # -- run lifecycle ---------------------------------------------------------------------------
    def create_run(self) -> float | None:
        """POST /v1/runs (idempotent on id). Returns None on success, else a retry delay."""
        body = {k: v for k, v in self.meta.items() if v is not None and k != "base_url"}
        resp = self._req("POST", "/v1/runs", json.dumps(body, default=str).encode())
        if resp is not None and resp.status < 300:
            self.run_created = True
            self._learn_attempt(resp)
            self.backoff.reset()
            self._auth_warned = False
            return None
        if resp is not None and resp.status in (400, 413, 422):
            # metadata the server will not take (a bad config, say) must not strand the metrics
            logger.warning(
                "arwandb: run %s metadata refused (%s); creating it with its id only",
                self.run_id,
                resp.error(),
            )
            slim = {"id": self.run_id, "writer_ids": self.meta.get("writer_ids")}
            resp = self._req("POST", "/v1/runs", json.dumps(slim).encode())
            if resp is not None and resp.status < 300:
                self.run_created = True
                return None
        return self._transient(resp)

    def _learn_attempt(self, resp: Response) -> None:
        """From now on name the run's attempt this writer started in (``Arwx-Attempt``), unless
        ``init`` did: after a rewind the server refuses this writer instead of mixing it in."""
        headers, got = getattr(self.t, "headers", None), resp.json()
        if isinstance(headers, dict) and "Arwx-Attempt" not in headers and isinstance(got, dict):
            headers["Arwx-Attempt"] = str(int(got.get("attempt") or 0))

    def finish_run(self, status: str, totals: dict[str, int]) -> bool:
        """POST /v1/runs/{id}/finish with the writers' totals; retries transient errors until the deadline."""
        body = json.dumps({"status": status, "writer_totals": totals}).encode()
        path = f"/v1/runs/{urllib.parse.quote(self.run_id, safe='')}/finish"
        while not self._expired():
            resp = self._req("POST", path, body)
            if resp is not None and resp.status < 300:
                return True
            if resp is not None and resp.status == 404 and self.create_run() is None:
                continue
            if resp is not None and resp.status in CLIENT_FAULT:
                logger.warning(
                    "arwandb: finishing run %s refused: HTTP %d %s", self.run_id, resp.status, resp.error()
                )
                return False
            self._sleep(self._transient(resp))
        return False

    def heartbeat(self, now: float) -> None:
        """Tell the server this run's writers are alive (one small request; its answer does not
        matter: a missed heartbeat is retried at the next interval, and points go on regardless)."""
        self._last_beat = now
        self._req("POST", f"/v1/runs/{urllib.parse.quote(self.run_id, safe='')}/heartbeat", b"")

    # -- points ----------------------------------------------------------------------------------
    def pending(self) -> int:
        return sum(sp.next_seq - sp.acked for sp in self.spools)

    def step(self) -> bool:
        """Try one request for the writer that is due. Returns True if any progress was made."""
        if not self.run_created:
            delay = self.create_run()
            if delay is not None:
                self._sleep(delay)
                return False
        now = time.monotonic()
        if self.heartbeat_interval is not None and not self.draining and now - self._last_beat >= self.heartbeat_interval:
            self.heartbeat(now)
        progressed = False
        for sp in self.spools:
            pend = sp.next_seq - sp.acked
            if pend <= 0 or not (self.draining or self._due(sp.writer_id, pend, now)):
                continue
            self._last_send[sp.writer_id] = now
            ok, delay = self._send(sp, pend)
            if not ok:
                if delay is not None:
                    self._sleep(delay)
                return progressed
            progressed = True
        return progressed

    def _full(self) -> int:
        return COLUMNS_MAX_POINTS if self.columns else self.batch_size

    def _due(self, writer_id: str, pend: int, now: float) -> bool:
        """Whether a writer with ``pend`` points should send now (see the class docstring)."""
        last = self._last_send.get(writer_id)
        return last is None or now - last >= self.flush_interval or pend >= self._full()

    def wait_time(self, idle: float) -> float:
        """How long the live loop may sleep before a writer is due (``idle`` when none has points:
        the spooler wakes it when points come)."""
        now = time.monotonic()
        due = [self._last_send.get(sp.writer_id, now) + self.flush_interval - now
               for sp in self.spools if sp.next_seq > sp.acked]
        return min(idle, max(0.0, min(due))) if due else idle

    def _columns(self, sp: WriterSpool, start: int, n: int) -> Columns | None:
        """Columns of up to ``n`` points from ``start``: those the spooler kept, else read back."""
        recent = self.recent.get(sp.writer_id)
        cols = recent.take(start, n) if recent is not None else None
        if cols is None:
            cols = self._col_enc[sp.writer_id].from_lines(sp.read(start, n), start)
        return cols

    def _send(self, sp: WriterSpool, pend: int) -> tuple[bool, float | None]:
        cap = self._cap.get(sp.writer_id)
        start = sp.acked
        cols = self._columns(sp, start, min(pend, cap or COLUMNS_MAX_POINTS)) if self.columns else None
        lines: list[bytes] | None = None
        stream = False
        if cols is not None:
            n = len(cols.step)
            resp = self._req("POST", "/v1/ingest", self._col_enc[sp.writer_id].body(cols, n), COLUMNS_TYPE)
        else:
            stream = pend > self.stream_threshold and cap is None
            lines = sp.read(start, STREAM_MAX_POINTS if stream else min(self.batch_size, cap or self.batch_size))
            if not lines:
                return False, 0.05
            n = len(lines)
            if stream:
                resp = self._post_stream(lines)
            else:
                body = b'{"run_id":%s,"writer_id":%s,"points":[%s]}' % (
                    json.dumps(self.run_id).encode(),
                    json.dumps(sp.writer_id).encode(),
                    b",".join(lines),
                )
                resp = self._req("POST", "/v1/ingest", body)
        if resp is None or resp.status in (401, 403, 408, 425, 429) or resp.status >= 500:
            return False, self._transient(resp)
        if resp.status < 300:
            self._ok(sp, start + n)
            return True, None
        if lines is None:  # refused: what follows names, resends or sets aside the lines themselves
            lines = sp.read(start, n)
        if resp.status == 404 or (stream and resp.status == 400 and self._unknown_run(resp)):
            if not self._recreated:  # the server lost the run (fresh data dir?): create it again
                self._recreated = True
                self.run_created = False
                return False, None
            self._set_aside(sp, lines, start, resp.status, resp.error())
            return True, None
        if resp.status == 413:
            if len(lines) > 1:
                self._cap[sp.writer_id] = max(1, len(lines) // 2)
                return False, None
            self._set_aside(sp, lines, start, 413, resp.error())
            return True, None
        if resp.status == 400 and not stream:
            # the batch is all-or-nothing: resend as a stream, which takes the good lines and names the bad
            resp = self._post_stream(lines)
            if resp is None or resp.status in (401, 403, 429) or resp.status >= 500:
                return False, self._transient(resp)
            if resp.status < 300:
                if cols is not None:
                    # it took every point as lines but not as columns: a server from before them
                    logger.info("arwandb: the server does not take columnar uploads; sending JSON batches")
                    self.columns = False
                self._ok(sp, start + len(lines))
                return True, None
            stream = True
        if stream and resp.status == 400 and isinstance(resp.json(), dict) and "errors" in resp.json():
            self._stream_partial(sp, lines, start, resp)
            return True, None
        self._set_aside(sp, lines, start, resp.status, resp.error())
        return True, None

    def _post_stream(self, lines: list[bytes]) -> Response | None:
        return self._req("POST", "/v1/ingest/stream", b"\n".join(lines) + b"\n", "application/x-ndjson")

    @staticmethod
    def _unknown_run(resp: Response) -> bool:
        j = resp.json()
        errs = j.get("errors") if isinstance(j, dict) else None
        return bool(errs) and all("unknown run" in str(e.get("reason", "")) for e in errs)

    def _ok(self, sp: WriterSpool, next_seq: int) -> None:
        self._acked(sp, next_seq)
        self.backoff.reset()
        self._auth_warned = False
        self._recreated = False
        cap = self._cap.get(sp.writer_id)
        if cap is not None:  # after a 413, grow back toward the normal batch size
            if cap * 2 >= self._full():
                del self._cap[sp.writer_id]
            else:
                self._cap[sp.writer_id] = cap * 2

    def _acked(self, sp: WriterSpool, next_seq: int) -> None:
        sp.set_acked(next_seq)
        recent = self.recent.get(sp.writer_id)
        if recent is not None:
            recent.drop_below(sp.acked)

    def _set_aside(self, sp: WriterSpool, lines: list[bytes], start: int, status: int, reason: str) -> None:
        sp.reject(lines, status, reason)
        self._warn_once(status, reason, len(lines), sp)
        self._acked(sp, start + len(lines))

    def _stream_partial(self, sp: WriterSpool, lines: list[bytes], start: int, resp: Response) -> None:
        """A stream 400 lists refused lines (1-based, at most ~100): set those aside, ack the rest."""
        j = resp.json()
        errors = [e for e in j.get("errors", []) if isinstance(e, dict) and isinstance(e.get("line"), int)]
        rejected_total = int(j.get("rejected", len(errors)) or 0)
        by_reason: dict[str, list[bytes]] = {}
        last = 0
        for e in errors:
            i = e["line"]
            if 1 <= i <= len(lines):
                by_reason.setdefault(str(e.get("reason", "")), []).append(lines[i - 1])
                last = max(last, i)
        if not by_reason:  # nothing usable named: keep the whole request aside rather than guess
            self._set_aside(sp, lines, start, resp.status, resp.error())
            return
        for reason, bad in by_reason.items():
            sp.reject(bad, 400, reason)
            self._warn_once(400, reason, len(bad), sp)
        # lines past the last listed error may hold unlisted refusals: resend them (accepted ones dedupe)
        done = len(lines) if rejected_total <= len(errors) else last
        self._acked(sp, start + done)
        self.backoff.reset()
