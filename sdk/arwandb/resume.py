"""Resuming a run at ``init``: where each writer's seq range ended on the server, then re-open the run.

Invariant: a resumed writer never re-uses a seq the server holds or was told
of. The server answers a writer's ``next_seq`` only once every point of the
run acknowledged to any client is stored (``GET /v1/runs/:id/writers/:w``),
so after a ``kill -9`` of every rank, on a machine with no spool, the new
process continues exactly after the last point the old one got acknowledged.
A spool still on this machine may hold more (not yet uploaded): the writer
continues after whichever is further (``WriterSpool.resume_at``).

This is the one place ``init`` talks to the server on the caller's thread:
``resume="must"`` on an unknown run and ``"never"`` on an existing one fail
there, as in W&B. So do rewind (``resume_from``: a new attempt of the run from
a step, whose writers count seqs from 0 in a spool of their own) and fork
(``fork_from``: a new run over the parent's history below a step). Every
request of a process that knows its attempt carries it (``Arwx-Attempt``), so
the server refuses the writers of an attempt a later rewind superseded.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any

from arwandb.uploader import Backoff, Response, Transport


class ResumeError(RuntimeError):
    """``init(resume=...)`` cannot go on: the run does not exist ("must"), exists ("never"),
    the key is refused, or the server did not answer in time."""


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


class _Asker:
    """Requests retried on transport errors, 429 and 5xx until a deadline."""

    def __init__(self, transport: Transport, deadline: float) -> None:
        self.t = transport
        self.deadline = deadline
        self.backoff = Backoff(base=0.1, cap=2.0)

    def __call__(self, method: str, path: str, body: bytes | None = None) -> Response:
        last = "no answer"
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise ResumeError(f"arwandb: resuming needs the server; {method} {path} failed: {last}")
            try:
                resp = self.t.request(method, path, body, timeout=min(self.t.timeout, left))
            except (OSError, http.client.HTTPException) as e:
                last = str(e) or type(e).__name__
                resp = None
            if resp is not None:
                if resp.status in (401, 403):
                    raise ResumeError(f"arwandb: the server refused the API key (HTTP {resp.status}: {resp.error()})")
                if resp.status != 429 and resp.status < 500:
                    return resp
                last = f"HTTP {resp.status}: {resp.error()}"
            delay = self.backoff.next(resp.retry_after() if resp is not None else None)
            time.sleep(max(0.0, min(delay, self.deadline - time.monotonic())))


def resume_run(
    transport: Transport, meta: dict[str, Any], writer_ids: list[str], mode: str, timeout: float
) -> dict[str, dict[str, Any]]:
    """Check ``mode`` against the server, re-open (or create) the run, and return each
    writer's position (``{"next_seq", "last_step", ...}``; empty for a new run).
    Raises ``ResumeError``."""
    run_id = meta["id"]
    ask = _Asker(transport, time.monotonic() + timeout)
    positions: dict[str, dict[str, Any]] = {}
    exists = True
    for w in writer_ids:
        resp = ask("GET", f"/v1/runs/{_quote(run_id)}/writers/{_quote(w)}")
        if resp.status == 404:
            exists = False
            break
        if resp.status != 200 or not isinstance(resp.json(), dict):
            raise ResumeError(f"arwandb: asking where writer {w!r} of run {run_id!r} ended: {resp.error()}")
        positions[w] = resp.json()
    if mode == "must" and not exists:
        raise ResumeError(f"arwandb: run {run_id!r} does not exist, and resume='must' needs it to")
    if mode == "never" and exists:
        raise ResumeError(f"arwandb: run {run_id!r} already exists, and resume='never' refuses it")
    body = {k: v for k, v in meta.items() if v is not None and k != "base_url"}
    body["resume"] = mode
    resp = ask("POST", "/v1/runs", json.dumps(body, default=str).encode())
    if resp.status >= 300:
        raise ResumeError(f"arwandb: resuming run {run_id!r} refused (HTTP {resp.status}: {resp.error()})")
    return positions


ATTEMPT_HEADER = "Arwx-Attempt"


def current_attempt(transport: Transport, run_id: str, timeout: float) -> int | None:
    """The run's current attempt (None: no such run yet). Raises ``ResumeError``."""
    ask = _Asker(transport, time.monotonic() + timeout)
    resp = ask("GET", f"/v1/runs/{_quote(run_id)}")
    if resp.status == 404:
        return None
    body = resp.json()
    if resp.status != 200 or not isinstance(body, dict):
        raise ResumeError(f"arwandb: reading run {run_id!r}: HTTP {resp.status}: {resp.error()}")
    return int(body.get("attempt") or 0)


def rewind_run(transport: Transport, run_id: str, step: int, writer_ids: list[str], timeout: float) -> int:
    """Open (or, for a rank of the same restart, join) a new attempt of ``run_id`` from
    ``step``; returns its number. Raises ``ResumeError`` (no such run, refused)."""
    ask = _Asker(transport, time.monotonic() + timeout)
    body = json.dumps({"step": step, "writer_ids": writer_ids}).encode()
    resp = ask("POST", f"/v1/runs/{_quote(run_id)}/rewind", body)
    got = resp.json()
    if resp.status >= 300 or not isinstance(got, dict):
        raise ResumeError(f"arwandb: rewinding run {run_id!r} to step {step} refused (HTTP {resp.status}: {resp.error()})")
    return int(got["attempt"])


def fork_run(transport: Transport, parent: str, step: int, meta: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Create the run ``meta["id"]`` as a fork of ``parent`` at ``step`` (idempotent: every
    rank asks). Returns the run. Raises ``ResumeError``."""
    ask = _Asker(transport, time.monotonic() + timeout)
    body = {k: meta.get(k) for k in ("id", "project", "name", "config", "writer_ids") if meta.get(k) is not None}
    body["step"] = step
    resp = ask("POST", f"/v1/runs/{_quote(parent)}/fork", json.dumps(body, default=str).encode())
    got = resp.json()
    if resp.status >= 300 or not isinstance(got, dict):
        raise ResumeError(f"arwandb: forking run {parent!r} at step {step} refused (HTTP {resp.status}: {resp.error()})")
    return got
