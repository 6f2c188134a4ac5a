"""Uploading spools after the fact: offline runs, crashed processes, whatever finish() left behind."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from arwandb.config import DEFAULT_BASE_URL, env, spool_root
from arwandb.resume import ATTEMPT_HEADER
from arwandb.spool import SpoolBusy, WriterSpool, read_json
from arwandb.uploader import HttpTransport, Transport, Uploader

logger = logging.getLogger("arwandb")


def find_run_dirs(path: str | None) -> list[str]:
    """Run spool folders under ``path``: a run folder, an ``arwandb`` folder, or the folder holding it."""
    root = spool_root(None) if path is None else os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(os.path.join(root, "run.json")):
        return [root]
    if os.path.isfile(os.path.join(os.path.dirname(root), "run.json")):  # a writer folder
        return [os.path.dirname(root)]
    for base in (os.path.join(root, "arwandb"), root):
        if os.path.isdir(base):
            runs = sorted(
                os.path.join(base, d)
                for d in os.listdir(base)
                if os.path.isfile(os.path.join(base, d, "run.json"))
            )
            if runs:
                return runs
    return []


def sync_run(
    run_dir: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Upload everything above each writer's ``acked`` watermark, then send pending finishes.

    ``transport`` replaces the HTTP connection (tests); ``base_url`` and ``api_key`` then go unused.
    """
    meta = read_json(os.path.join(run_dir, "run.json")) or {}
    run_id = meta.get("id") or os.path.basename(run_dir.rstrip("/"))
    report: dict[str, Any] = {"run_id": run_id, "uploaded": 0, "pending": 0, "rejected": 0, "busy": []}
    spools: list[WriterSpool] = []
    for name in sorted(os.listdir(run_dir)):
        if not os.path.isdir(os.path.join(run_dir, name)):
            continue
        try:
            spools.append(WriterSpool(run_dir, name))
        except SpoolBusy:
            report["busy"].append(name)  # its process is alive and uploading it itself
    try:
        todo = [
            sp for sp in spools if sp.next_seq > sp.acked or (sp.read_finish() or {}).get("sent") is False
        ]
        if not todo:
            return report
        url = (base_url or env("BASE_URL") or meta.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        body = {k: meta.get(k) for k in ("project", "name", "config")}
        body["id"] = run_id
        body["writer_ids"] = [sp.writer_id for sp in spools]
        tr = transport or HttpTransport(url, api_key or env("API_KEY"))
        if meta.get("attempt") is not None and isinstance(getattr(tr, "headers", None), dict):
            tr.headers[ATTEMPT_HEADER] = str(meta["attempt"])  # the spool of one attempt goes to it, or is refused
        up = Uploader(tr, body, todo)
        before = {sp.writer_id: sp.acked for sp in todo}
        up.drain(time.monotonic() + timeout)
        # finish what was finished locally (offline runs, or a finish() that could not reach the server)
        by_status: dict[str, dict[str, int]] = {}
        for sp in todo:
            fin = sp.read_finish()
            if fin and fin.get("sent") is False and sp.next_seq == sp.acked:
                by_status.setdefault(str(fin.get("status") or "finished"), {})[sp.writer_id] = sp.next_seq
        for status, totals in by_status.items():
            if up.finish_run(status, totals):
                for sp in todo:
                    if sp.writer_id in totals:
                        sp.write_finish(status, sent=True)
        up.close()
        report["uploaded"] = sum(sp.acked - before[sp.writer_id] for sp in todo)
        report["pending"] = up.pending()
        report["rejected"] = up.rejected
        return report
    finally:
        for sp in spools:
            sp.close()


def find_journal(path: str | None) -> str | None:
    """The spool root holding an autoresearch journal: ``path`` itself (an ``arwandb`` folder),
    its ``arwandb`` child, or (no path) the default spool root."""
    from arwandb._journal import DIRNAME

    root = spool_root(None) if path is None else os.path.abspath(os.path.expanduser(path))
    if os.path.basename(root) == DIRNAME:
        return os.path.dirname(root)
    for base in (root, os.path.join(root, "arwandb")):
        if os.path.isdir(os.path.join(base, DIRNAME)):
            return base
    return None


def sync_research(
    root: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """Deliver the autoresearch calls journaled under the spool root ``root``, in order, exactly once."""
    from arwandb._journal import Journal
    from arwandb._replay import Replayer, drain_until

    j = Journal(root)
    if not j.pending():
        return {"sent": 0, "rejected": 0, "pending": 0}
    url = (base_url or env("BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    t = HttpTransport(url, api_key or env("API_KEY"))
    try:
        res = drain_until(Replayer(j, t), time.monotonic() + timeout, lock_wait=min(timeout, 5.0))
    finally:
        t.close()
    return {"sent": res.sent, "rejected": res.rejected, "pending": res.pending}


def deliver_research_in_background(root: str, base_url: str, api_key: str | None, timeout: float = 60.0) -> None:
    """A new online run delivers the autoresearch calls an earlier process left in this spool
    root, on a daemon thread (training does not wait; ``sync`` or the next call finish the job)."""
    from arwandb._journal import Journal

    if not Journal(root).pending():
        return

    def work() -> None:
        try:
            sync_research(root, base_url=base_url, api_key=api_key, timeout=timeout)
        except Exception:  # noqa: BLE001 - a background helper never raises into the process
            logger.debug("arwandb: delivering the autoresearch backlog failed", exc_info=True)

    import threading

    threading.Thread(target=work, name="arwandb-research-backlog", daemon=True).start()


def sync(
    path: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Upload every run spool under ``path`` (default ``$ARWANDB_DIR``/cwd) exactly once, then
    deliver the autoresearch call journal there (``research`` in the summary).

    Safe to run repeatedly and alongside live runs (their writers are skipped as busy).
    Returns a summary: runs, points uploaded, points still pending, points set aside.
    """
    runs = [
        sync_run(d, base_url=base_url, api_key=api_key, timeout=timeout, transport=transport)
        for d in find_run_dirs(path)
    ]
    # runs first: an experiment may name a run, never the other way round
    journal = find_journal(path) if transport is None else None
    research = (
        sync_research(journal, base_url=base_url, api_key=api_key, timeout=timeout)
        if journal is not None
        else {"sent": 0, "rejected": 0, "pending": 0}
    )
    return {
        "runs": runs,
        "uploaded": sum(r["uploaded"] for r in runs),
        "pending": sum(r["pending"] for r in runs) + research["pending"],
        "rejected": sum(r["rejected"] for r in runs) + research["rejected"],
        "research": research,
    }
