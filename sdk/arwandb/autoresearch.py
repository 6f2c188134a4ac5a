"""arwandb.autoresearch: the research loop. A goal, sessions of experiments, keep/drop decisions,
the running-best frontier, context for an agent's next step, and versioned artifacts.

    from arwandb import autoresearch as ar
    ar.goal(metric="val_bpb", lower_is_better=True, target=2.45)
    ar.session(tag="tune-warmup")
    exp = ar.experiment(note="lr too hot early; added 200-step warmup", snapshot=".")
    ar.decision(experiment_id=exp["id"], status="keep", score=2.41, metric="val_bpb")

Offline-first, like ``log()``: every write call (goal, session, experiment, its
snapshot, decision, artifact, promote) is first recorded in the spool's call
journal (``<dir>/arwandb/.autoresearch``), then delivered in order with a
bounded wait. While the server is unreachable, or with ``ARWANDB_MODE=offline``,
the call returns at once with what is known locally (``"pending": True``) and
stays in the journal; the next call, the next process, or ``arwandb sync``
delivers it, exactly once (each call has its own ``Idempotency-Key``).

Ids are chosen here, not by the server: ``session()`` and ``experiment()``
return their final ``ses_…`` / ``exp_…`` id even offline, so
``decision(exp["id"], …)`` and ``artifact(…, produced_by=exp["id"])`` work
before the server has seen the experiment. An artifact logged offline has the
version ``"pending:<digest>"`` (its number is the server's to give);
``promote()`` accepts it and the number is filled in when the log is delivered.

Reads (``progress``, ``frontier``, ``context``, ``get_artifact``,
``artifacts``) need the server: they deliver what is pending first, then ask;
offline or unreachable they raise :class:`OfflineError`. Write calls never
raise for the network or the server: a refusal is a warning and an ``"error"``
in the answer. Wrong arguments (no project, a status that is not keep/drop)
raise ``ValueError`` at once.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arwandb import _git, _snapshot
from arwandb._journal import Journal
from arwandb._replay import (
    PLACEHOLDER,
    Replayer,
    _Refused,
    _Rejection,
    _Transient,
    drain_until,
    quote,
    transient,
)
from arwandb.config import DEFAULT_BASE_URL, env, env_float, normalize_mode, spool_root
from arwandb.uploader import HttpTransport

logger = logging.getLogger("arwandb")

__all__ = [
    "OfflineError", "ResearchError", "artifact", "artifacts", "configure", "context", "decision",
    "download_artifact", "experiment", "frontier", "get_artifact", "goal", "pending", "progress", "promote",
    "session", "sync",
]

DEFAULT_TIMEOUT = 10.0  # ARWANDB_CALL_TIMEOUT: the longest a call waits on the server
DEFAULT_MAX_DIFF = 1 << 20  # ARWANDB_MAX_DIFF_BYTES
DEFAULT_MAX_FILE = 5 << 20  # ARWANDB_SNAPSHOT_MAX_FILE
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BACKOFF_MAX = 30.0


class ResearchError(RuntimeError):
    """A read call could not be answered (the server refused it, or could not be reached)."""


class OfflineError(ResearchError):
    """A call that must return server state was made offline or while the server is unreachable."""


@dataclass(frozen=True)
class _Settings:
    base_url: str
    api_key: str | None
    mode: str
    root: str
    timeout: float


_overrides: dict[str, Any] = {}
_lock = threading.RLock()
_client: _Client | None = None
_active: dict[str, str] = {}  # project -> the session this process opened last (the active one)


def configure(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    mode: str | None = None,
    dir: str | None = None,
    project: str | None = None,
    timeout: float | None = None,
) -> None:
    """Override where and how calls go (default: the active run's settings, then ``ARWANDB_*``).

    ``dir``: the spool folder's parent (the journal is ``<dir>/arwandb/.autoresearch``);
    ``timeout``: the longest one call waits on the server (``ARWANDB_CALL_TIMEOUT``, default 10 s).
    """
    with _lock:
        for k, v in (("base_url", base_url), ("api_key", api_key), ("mode", mode), ("dir", dir),
                     ("project", project), ("timeout", timeout)):
            if v is None:
                _overrides.pop(k, None)
            else:
                _overrides[k] = v


def _run() -> Any:
    import arwandb

    return arwandb.run


def _resolve() -> _Settings:
    r = _run()
    s = getattr(r, "settings", None)
    base = _overrides.get("base_url") or (s.base_url if s else None) or env("BASE_URL") or DEFAULT_BASE_URL
    key = _overrides.get("api_key") or (s.api_key if s else None) or env("API_KEY")
    mode = normalize_mode(_overrides.get("mode") or (s.mode if s else None) or env("MODE"))
    root = spool_root(_overrides["dir"]) if "dir" in _overrides else (s.root if s else _default_root())
    timeout = float(_overrides.get("timeout") or env_float("CALL_TIMEOUT", DEFAULT_TIMEOUT))
    return _Settings(base.rstrip("/"), key, mode, root, max(0.1, timeout))


_first_root: list[str] = []


def _default_root() -> str:
    """``$ARWANDB_DIR``/cwd as it was at the first call: a later ``chdir`` must not split the
    journal in two (the calls' order lives in one journal)."""
    if not _first_root:
        _first_root.append(spool_root(None))
    return _first_root[0]


def _project(project: str | None) -> str:
    p = project or _overrides.get("project") or getattr(_run(), "project", None) or env("PROJECT")
    if not p or not isinstance(p, str):
        raise ValueError("arwandb.autoresearch: no project: pass project=..., call arwandb.init(project=...) "
                         "or set ARWANDB_PROJECT")
    return p


def _int_env(name: str, default: int) -> int:
    v = env(name)
    try:
        return int(float(v)) if v is not None else default
    except ValueError:
        return default


class _Client:
    """The journal, the connection and the delivery state of one set of settings."""

    def __init__(self, s: _Settings) -> None:
        self.s = s
        self.journal = Journal(s.root)
        self.transport = HttpTransport(s.base_url, s.api_key, s.timeout)
        self.replayer = Replayer(self.journal, self.transport)
        self._down_until = 0.0
        self._backoff = 0.0

    # -- delivery ----------------------------------------------------------------------------------
    def _deadline(self) -> float:
        return time.monotonic() + self.s.timeout

    def deliver(self, deadline: float, force: bool = False) -> Any:
        """Drain the journal now, unless the server was unreachable a moment ago (``force`` tries anyway)."""
        if self.s.mode != "online" or (not force and time.monotonic() < self._down_until):
            return None
        res = self.replayer.drain(deadline)
        if res.reachable:
            self._backoff = 0.0
        else:
            self._backoff = min(_BACKOFF_MAX, max(1.0, self._backoff * 2))
            self._down_until = time.monotonic() + self._backoff
        return res

    def submit(self, method: str, path: str, body: Any, local: dict[str, Any], op: str, **extra: Any) -> dict[str, Any]:
        """Record one write call, try to deliver it, and answer: the server's answer if it came back
        within the call's bound, else ``local`` marked ``"pending": True``."""
        entry = {"key": "ar-" + secrets.token_hex(16), "op": op, "method": method, "path": path, "body": body,
                 "t": time.time(), **{k: v for k, v in extra.items() if v is not None}}
        if self.s.mode == "disabled":
            return {**local, "pending": False, "disabled": True}
        try:
            self.journal.append(entry)
        except OSError as e:
            logger.warning("arwandb: cannot record %s in %s (%s); sending it without a spool", op, self.journal.dir, e)
            return self._send_unjournaled(entry, local)
        res = self.deliver(self._deadline())
        ans = None if res is None else res.answers.get(entry["key"])
        if ans is None:
            return {**local, "pending": True}
        if isinstance(ans, _Rejection):
            return {**local, "pending": False, "error": ans.reason, "status": ans.status}
        return ans if isinstance(ans, dict) else {**local, "pending": False, "answer": ans}

    def _send_unjournaled(self, entry: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
        if self.s.mode != "online":
            return {**local, "pending": True, "error": "not recorded: the spool cannot be written"}
        try:
            ans = self.replayer.send(entry, self._deadline())
        except _Transient:
            return {**local, "pending": True, "error": "lost: the spool cannot be written and the server is unreachable"}
        except _Refused as e:
            return {**local, "pending": False, "error": e.reason, "status": e.status}
        return ans if isinstance(ans, dict) else {**local, "answer": ans}

    # -- reads ---------------------------------------------------------------------------------------
    def read(self, what: str, path: str) -> Any:
        if self.s.mode != "online":
            raise OfflineError(f"arwandb.autoresearch.{what}() needs the server, and the mode is {self.s.mode!r} "
                               "(ARWANDB_MODE); it is not answered offline")
        deadline = self._deadline()
        res = self.deliver(deadline, force=True)
        if res is not None and res.pending:
            raise OfflineError(
                f"arwandb.autoresearch.{what}() needs the server: {self.s.base_url} is unreachable and "
                f"{res.pending} autoresearch call(s) wait in {self.journal.dir} (run `arwandb sync` later)")
        resp = self.replayer.request("GET", path, None, deadline)
        if resp is None:
            raise OfflineError(f"arwandb.autoresearch.{what}() needs the server: {self.s.base_url} is unreachable")
        if resp.status >= 300:
            kind = "unavailable" if transient(resp) else "refused"
            raise ResearchError(f"arwandb.autoresearch.{what}(): server {kind} the request "
                                f"(HTTP {resp.status}: {resp.error()})")
        return resp.json()


def _get() -> _Client:
    global _client
    with _lock:
        s = _resolve()
        if _client is None or _client.s != s:
            if _client is not None:
                _client.transport.close()
            _client = _Client(s)
        return _client


# --- the goal and sessions ---------------------------------------------------------------------


def goal(metric: str, lower_is_better: bool = True, target: float | None = None, *,
         project: str | None = None) -> dict[str, Any]:
    """Set (or update) the project's objective: ``metric``, its direction, an optional ``target``.

    ``project`` defaults to the active run's, then ``ARWANDB_PROJECT``. A ``target`` of None
    leaves the stored target as it is.
    """
    if not isinstance(metric, str) or not metric:
        raise ValueError("arwandb.autoresearch.goal: metric must be a non-empty string")
    p = _project(project)
    body: dict[str, Any] = {"name": p, "objective_metric": metric, "lower_is_better": bool(lower_is_better)}
    if target is not None:
        body["target"] = float(target)
    local = {"name": p, "objective_metric": metric, "lower_is_better": bool(lower_is_better), "target": target}
    with _lock:
        return _get().submit("POST", "/v1/projects", body, local, "goal")


def session(tag: str | None = None, branch: str | None = None, *, project: str | None = None) -> dict[str, Any]:
    """Open a session (a line of inquiry); it becomes the active one, here and on the server.

    ``branch`` defaults to the current git branch. The answer's ``id`` is final even offline.
    """
    p = _project(project)
    if branch is None:
        branch = _git.branch(os.getcwd()) or ""
    sid = "ses_" + secrets.token_hex(8)
    body = {"id": sid, "project": p, "tag": tag or "", "branch": branch or ""}
    local = {**body, "active": True}
    with _lock:
        _active[p] = sid
        return _get().submit("POST", "/v1/sessions", body, local, "session")


# --- experiments and decisions -----------------------------------------------------------------


def experiment(
    commit: str | None = None,
    note: str | None = None,
    diff: str | None = None,
    snapshot: str | list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    parent_commit: str | None = None,
    project: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Record one tried change under the active session and return it (``id`` final even offline).

    Inside a git repository the commit, its parent and the uncommitted diff (tracked changes and
    untracked files git would not ignore) are captured; arguments given override, ``diff=""``
    sends none. A diff over ``ARWANDB_MAX_DIFF_BYTES`` (1 MiB) becomes a marker. ``config``
    defaults to the active run's. ``snapshot`` ("." or a list of files/folders) attaches the code
    tree (see the module docs); a snapshot that fails warns and the experiment stays.
    """
    p = _project(project)
    with _lock:
        c = _get()
        max_diff = _int_env("MAX_DIFF_BYTES", DEFAULT_MAX_DIFF)
        if commit is None or diff is None:
            st = _git.capture(os.getcwd(), max_diff, exclude=(c.s.root,))
            if st is not None:
                if commit is None:
                    commit = st.commit
                    parent_commit = parent_commit if parent_commit is not None else st.parent
                if diff is None:
                    diff = st.diff
        if diff is not None and len(diff.encode("utf-8", "replace")) > max_diff:
            diff = _git.diff_marker(len(diff.encode("utf-8", "replace")), max_diff)
        if config is None:
            run_cfg = getattr(_run(), "config", None)
            config = dict(run_cfg) if run_cfg else None
        eid = "exp_" + secrets.token_hex(8)
        sid = session_id or _active.get(p)
        body = {
            "id": eid, "project": p, "session_id": sid, "note": note or "", "commit": commit,
            "parent_commit": parent_commit, "diff": diff or None, "config": dict(config) if config else None,
        }
        local = {**{k: v for k, v in body.items() if k != "diff"}, "diff_size": len((diff or "").encode()),
                 "has_tree": False, "decision": None}
        out = c.submit("POST", "/v1/experiments", body, local, "experiment")
        if snapshot is not None and not out.get("error"):
            try:
                out["snapshot"] = _attach_snapshot(c, eid, snapshot)
                out["has_tree"] = not out["snapshot"].get("error")
            except Exception as e:  # noqa: BLE001 - a snapshot never breaks the experiment
                logger.warning("arwandb: the code snapshot of %s failed (%s: %s); the experiment is recorded "
                               "without it", eid, type(e).__name__, e)
                out["snapshot"] = {"error": f"{type(e).__name__}: {e}"}
        return out


def _excludes() -> tuple[str, ...]:
    v = env("SNAPSHOT_EXCLUDE")
    return tuple(x.strip() for x in v.split(",") if x.strip()) if v else ()


def _attach_snapshot(c: _Client, eid: str, spec: str | list[str]) -> dict[str, Any]:
    """Hash the files, upload those the server lacks (or keep copies while it is unreachable),
    and record the tree. Returns what it did."""
    t0 = time.perf_counter()
    lister = _snapshot.Lister(_int_env("SNAPSHOT_MAX_FILE", DEFAULT_MAX_FILE), _excludes(), skip=(c.s.root,))
    cache = _snapshot.HashCache(c.journal.hash_cache)
    entries = _snapshot.scan(spec if isinstance(spec, str) else list(spec), lister, cache)
    if lister.too_big:
        logger.warning("arwandb: snapshot of %s leaves out %d file(s) over ARWANDB_SNAPSHOT_MAX_FILE: %s",
                       eid, len(lister.too_big), ", ".join(lister.too_big[:5]))
    by_sha = {e.sha256: e.abspath for e in entries}
    dropped: set[str] = set()
    keep: dict[str, str] = {}
    uploaded = 0
    left = set(by_sha)
    direct = c.s.mode == "online" and time.monotonic() >= c._down_until and c.journal.pending() == 0
    if direct:
        deadline = c._deadline()
        try:
            need = c.replayer.missing(sorted(by_sha), deadline)
            done, dropped, _ = c.replayer.upload_many({sha: by_sha[sha] for sha in need}, deadline)
            uploaded = len(done)
            # dropped: the file changed after it was hashed, so it stays out; what the server did
            # not take goes through the journal (copied now: the code will change)
            left = set(need) - done - dropped
        except (_Transient, _Refused) as e:
            logger.debug("arwandb: snapshot of %s goes through the journal: %r", eid, e)
    for sha in sorted(left):
        try:
            if c.journal.keep_blob(by_sha[sha], sha):
                keep[sha] = c.journal.blob_path(sha)
            else:
                dropped.add(sha)
        except OSError:
            dropped.add(sha)
    files = {e.path: {"sha256": e.sha256, "size": e.size, "mode": e.mode} for e in entries if e.sha256 not in dropped}
    if dropped:
        logger.warning("arwandb: snapshot of %s leaves out %d file(s) that changed while being read", eid,
                       sum(1 for e in entries if e.sha256 in dropped))
    local = {"experiment_id": eid}
    ans = c.submit("PUT", f"/v1/experiments/{quote(eid)}/tree", {"files": files}, local, "snapshot",
                   blobs=keep or None)
    return {
        "files": len(files), "bytes": sum(f["size"] for f in files.values()), "uploaded": uploaded,
        "kept_for_later": len(keep), "too_big": lister.too_big, "pending": bool(ans.get("pending")),
        "seconds": round(time.perf_counter() - t0, 4), **({"error": ans["error"]} if ans.get("error") else {}),
    }


def decision(experiment_id: str, status: str, score: float | None = None, metric: str | None = None) -> dict[str, Any]:
    """Judge an experiment: ``status`` "keep" or "drop", with the ``score`` it reached.

    A later decision replaces this one (both stay in the history). A NaN/inf score is sent as no
    score, with a warning (training that diverged can still be dropped).
    """
    if status not in ("keep", "drop"):
        raise ValueError(f"arwandb.autoresearch.decision: status must be 'keep' or 'drop', not {status!r}")
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError("arwandb.autoresearch.decision: experiment_id must be an experiment's id")
    if score is not None:
        score = float(score)
        if not math.isfinite(score):
            logger.warning("arwandb: decision on %s: score %r is not finite; recorded without a score",
                           experiment_id, score)
            score = None
    body: dict[str, Any] = {"status": status, "score": score}
    if metric is not None:
        body["metric"] = metric
    local = {"id": experiment_id, "decision": {"status": status, "score": score, "metric": metric}}
    with _lock:
        return _get().submit("POST", f"/v1/experiments/{quote(experiment_id)}/decision", body, local, "decision")


# --- reading the loop --------------------------------------------------------------------------


def _session_for(session_id: str | None, project: str | None) -> tuple[str | None, str | None]:
    if session_id is not None:
        return session_id, None
    p = _project(project)
    return _active.get(p), p


def progress(session_id: str | None = None, *, project: str | None = None) -> dict[str, Any]:
    """The running best, point by point: of ``session_id``, else of the session this process
    opened, else of the whole project. Raises ``OfflineError`` offline."""
    sid, p = _session_for(session_id, project)
    with _lock:
        if sid is not None:
            return _get().read("progress", f"/v1/sessions/{quote(sid)}/progress")
        return _get().read("progress", f"/v1/projects/{quote(p or '')}/progress")


def frontier(session_id: str | None = None, *, project: str | None = None) -> dict[str, Any]:
    """The points where the running best improved (``best``, ``target_met``, ``frontier``): of
    ``session_id``, else of this process's session, else of the project's active session."""
    sid, p = _session_for(session_id, project)
    with _lock:
        c = _get()
        if sid is None:
            sessions = c.read("frontier", f"/v1/projects/{quote(p or '')}/sessions?limit=1").get("sessions") or []
            if not sessions:
                prog = c.read("frontier", f"/v1/projects/{quote(p or '')}/progress")
                keep = ("project", "objective_metric", "lower_is_better", "target", "best", "target_met", "frontier")
                return {k: prog.get(k) for k in keep}
            sid = sessions[0]["id"]
        return c.read("frontier", f"/v1/sessions/{quote(sid)}/frontier")


def context(project: str | None = None, limit: int = 5) -> dict[str, Any]:
    """A compact summary for an agent's next step: goal, best, frontier tail, last experiments."""
    p = _project(project)
    with _lock:
        return _get().read("context", f"/v1/agent/context?project={quote(p)}&limit={int(limit)}")


# --- artifacts -----------------------------------------------------------------------------------


def _artifact_name(project: str, name: str | None) -> str:
    n = name if name is not None else project
    if _NAME_RE.match(n):
        return n
    if name is not None:
        raise ValueError(f"arwandb.autoresearch: artifact name {name!r} must match {_NAME_RE.pattern}")
    return re.sub(r"[^A-Za-z0-9._-]", "-", n).lstrip("._-")[:128] or "artifact"


def _artifact_files(path: str) -> list[tuple[str, str]]:
    """(manifest path, file) pairs: the file itself, or every regular file under the folder."""
    if os.path.isfile(path):
        return [(os.path.basename(path), os.path.abspath(path))]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for n in sorted(filenames):
            full = os.path.join(dirpath, n)
            if os.path.isfile(full) and not os.path.islink(full):
                out.append((os.path.relpath(full, path).replace(os.sep, "/"), os.path.abspath(full)))
    return out


def _digest(manifest: dict[str, dict[str, Any]]) -> str:
    """The server's version digest: SHA-256 of the compact JSON of [path, sha256, size] by path."""
    rows = [[p, e["sha256"], e["size"]] for p, e in sorted(manifest.items())]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def artifact(project: str, path: str, type: str = "model", produced_by: str | None = None, *,
             name: str | None = None) -> dict[str, Any]:
    """Log a new version of the artifact ``name`` (default: the project's name) of ``project`` from
    the file or folder ``path``. Content-addressed: the same bytes give the same version.

    Offline the answer's ``version`` is ``"pending:<digest>"``, accepted by ``promote``; the files
    must stay in place until the call is delivered (their hashes are checked then).
    """
    art = _artifact_name(project, name)
    if not os.path.exists(path):
        logger.warning("arwandb: artifact %s: %s does not exist; nothing logged", art, path)
        return {"project": project, "name": art, "error": f"{path} does not exist", "pending": False}
    with _lock:
        c = _get()
        cache = _snapshot.HashCache(c.journal.hash_cache)
        manifest: dict[str, dict[str, Any]] = {}
        blobs: dict[str, str] = {}
        for rel, full in _artifact_files(path):
            try:
                st = os.stat(full)
                sha = cache.hash(full, st)
            except OSError:
                continue
            manifest[rel] = {"sha256": sha, "size": st.st_size}
            blobs[sha] = full
        cache.save()
        digest = _digest(manifest)
        placeholder = PLACEHOLDER + digest
        body = {"project": project, "name": art, "type": type, "manifest": manifest, "produced_by": produced_by}
        local = {"project": project, "name": art, "type": type, "version": placeholder, "digest": digest,
                 "size": sum(e["size"] for e in manifest.values()), "file_count": len(manifest),
                 "produced_by": produced_by}
        return c.submit("POST", "/v1/artifacts/log", body, local, "artifact", blobs=blobs or None,
                        placeholder=placeholder)


def promote(project: str, ref: str, version: str | int, *, name: str | None = None,
            reason: str | None = None) -> dict[str, Any]:
    """Move ``ref`` (``winner``, ``production`` …) of the artifact ``name`` (default: the project's
    name) to ``version`` ("v3", 3, or an offline ``"pending:<digest>"``)."""
    art = _artifact_name(project, name)
    if not isinstance(ref, str) or not _NAME_RE.match(ref):
        raise ValueError(f"arwandb.autoresearch.promote: ref {ref!r} must match {_NAME_RE.pattern}")
    if isinstance(version, int) and not isinstance(version, bool):
        version = f"v{version}"
    body: dict[str, Any] = {"project": project, "version": version}
    if reason is not None:
        body["reason"] = reason
    local = {"project": project, "name": art, "ref": ref, "version": version}
    sub = isinstance(version, str) and version.startswith(PLACEHOLDER)
    with _lock:
        return _get().submit("PUT", f"/v1/artifacts/{quote(art)}/refs/{quote(ref)}", body, local, "promote",
                             subst=sub or None)


def get_artifact(project: str, ref: str = "latest", *, name: str | None = None,
                 download: str | None = None) -> dict[str, Any]:
    """Resolve ``name:ref`` (``latest``, ``vN`` or a ref such as ``winner``) to its version, with
    its manifest. With ``download`` (a folder), also fetch its files there, each checked against
    its SHA-256 (see ``download_artifact``). Raises ``OfflineError`` offline."""
    art = _artifact_name(project, name)
    with _lock:
        c = _get()
        out = c.read("get_artifact", f"/v1/artifacts/{quote(art)}/{quote(ref)}?project={quote(project)}")
        if download is not None:
            out["path"] = _download(c, out, download)
        return out


def download_artifact(project: str, ref: str, dest: str, *, name: str | None = None) -> dict[str, Any]:
    """Fetch the files of ``name:ref`` into the folder ``dest`` (their manifest paths under it).

    Each file is written to a temporary name, checked against its SHA-256 and size, and only
    then renamed into place; a mismatch raises ``ResearchError`` and leaves no file behind.
    """
    return get_artifact(project, ref, name=name, download=dest)


def _download(c: _Client, version: dict[str, Any], dest: str) -> str:
    root = os.path.abspath(dest)
    os.makedirs(root, exist_ok=True)
    for item in version.get("manifest") or []:
        target = os.path.abspath(os.path.join(root, item["path"]))
        if os.path.commonpath([target, root]) != root:
            raise ResearchError(f"artifact path {item['path']!r} leaves the download folder")
        c.replayer.fetch(item["sha256"], int(item["size"]), target, c._deadline())
    return root


def artifacts(type: str | None = None, *, project: str | None = None) -> list[dict[str, Any]]:
    """The organization's artifacts (of one ``type`` / ``project`` if given), newest change first."""
    q = []
    if type is not None:
        q.append(f"type={quote(type)}")
    if project is not None:
        q.append(f"project={quote(project)}")
    with _lock:
        return _get().read("artifacts", "/v1/artifacts" + ("?" + "&".join(q) if q else "")).get("artifacts", [])


# --- delivery --------------------------------------------------------------------------------------


def pending() -> int:
    """How many autoresearch calls wait in the journal for the server."""
    with _lock:
        return _get().journal.pending()


def sync(timeout: float = 60.0) -> dict[str, Any]:
    """Deliver every pending call now, retrying while the server is unreachable, for at most
    ``timeout`` seconds. Returns
    ``{"sent", "rejected", "pending"}``. ``arwandb sync`` does the same from the shell."""
    with _lock:
        c = _get()
        if c.s.mode != "online":
            return {"sent": 0, "rejected": 0, "pending": c.journal.pending()}
        res = drain_until(c.replayer, time.monotonic() + timeout)
        c._down_until, c._backoff = 0.0, 0.0
        return {"sent": res.sent, "rejected": res.rejected, "pending": res.pending}


@atexit.register
def _deliver_at_exit() -> None:
    c = _client
    if c is None or c.s.mode != "online":
        return
    with contextlib.suppress(Exception):  # interpreter shutdown: never raise
        if c.journal.pending():
            res = c.deliver(time.monotonic() + c.s.timeout, force=True)
            if res is not None and res.pending:
                logger.warning("arwandb: %d autoresearch call(s) not delivered yet; they are in %s "
                               "(run `arwandb sync`)", res.pending, c.journal.dir)
