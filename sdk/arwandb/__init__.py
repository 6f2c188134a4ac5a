"""arwandb: the arwx Python SDK. W&B-style ``init`` / ``log`` / ``finish`` with an on-disk spool.

``import arwandb as wandb`` works for the common W&B calls; only the base URL changes.
Pure standard library; ``log()`` is a memory-only append and never blocks on disk or network.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from arwandb import _sync
from arwandb._run import Run
from arwandb.config import DEFAULT_FLUSH_INTERVAL, Settings, resolve, split_step_ref
from arwandb.resume import ResumeError

__version__ = "1.3.1"
__all__ = ["ResumeError", "Run", "Settings", "finish", "init", "log", "run", "sync", "__version__"]

logging.getLogger("arwandb").addHandler(logging.NullHandler())

run: Run | None = None
_runs: list[Run] = []
_lock = threading.Lock()


def init(
    project: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    writer_id: str | None = None,
    system_metrics: bool | None = None,
    system_interval: float | None = None,
    mode: str | None = None,
    id: str | None = None,
    dir: str | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    finish_timeout: float = 30.0,
    base_url: str | None = None,
    api_key: str | None = None,
    resume: bool | str | None = None,
    resume_from: int | str | None = None,
    rewind_to: int | str | None = None,
    fork_from: str | None = None,
    at_step: int | None = None,
    **kwargs: Any,
) -> Run:
    """Start (or resume) a run and return it. Touches the network on the caller's thread only to resume.

    Args:
        project: project name (default ``ARWANDB_PROJECT`` / ``WANDB_PROJECT``).
        name: display name (default: the run id).
        config: hyperparameters, stored with the run.
        writer_id: this process's writer id, e.g. ``f"rank{RANK}"`` (default ``ARWANDB_WRITER_ID`` or random).
        system_metrics: collect ``system/*`` telemetry (default on; ``ARWANDB_SYSTEM_METRICS=off`` disables).
        system_interval: seconds between system samples (default 15, floor 1).
        mode: ``online`` | ``offline`` | ``disabled`` (default ``ARWANDB_MODE`` / ``WANDB_MODE`` / online).
        id: run id shared by all ranks (default ``ARWANDB_RUN_ID`` / ``WANDB_RUN_ID`` or random). Re-using
            an id and writer id in the same ``dir`` resumes that writer's spool and step counter.
        dir: where the spool lives (``<dir>/arwandb``; default ``ARWANDB_DIR`` / ``WANDB_DIR`` / cwd).
        flush_interval: seconds between a writer's requests while points keep coming (default 0.2):
            the first point after a quiet spell is sent at once, later ones wait at most this long,
            and a busy writer sends everything logged meanwhile in one request.
        finish_timeout: how long ``finish()`` waits for the upload; the rest stays in the spool.
        base_url, api_key: override ``ARWANDB_BASE_URL`` / ``ARWANDB_API_KEY``.
        resume: W&B's meanings (default ``ARWANDB_RESUME`` / ``WANDB_RESUME``): ``"allow"`` (or True)
            continues the run ``id`` if it exists, else creates it; ``"must"`` continues it and raises
            :class:`ResumeError` if it does not exist; ``"never"`` creates it and raises if it exists.
            A resumed writer continues its seq range and step axis from where the server says it
            ended (plus what its local spool still holds), so a restart after ``kill -9`` of every
            rank, on any machine, neither collides with nor loses acknowledged points. Waits up to
            ``ARWANDB_RESUME_TIMEOUT`` (60 s) for the server.
        resume_from: rewind the run ``id`` to this step (alias ``rewind_to``; W&B's
            ``"<id>?_step=<N>"`` also works): a new *attempt* of the run starts at step N. Its
            history shows the earlier attempts below N and this one from N on; nothing is
            deleted (read an earlier attempt with ``attempt=`` on the history API). Every rank of
            the restarted job passes the same step and joins the same attempt; a writer of an
            older attempt still running is refused from then on. Needs the server (online).
        fork_from: a run id (with ``at_step=N``) or ``"<run id>?_step=<N>"``: create the run
            ``id`` (default random) as a fork whose history below step N is that run's, read in
            place, not copied; this run logs from step N. Needs the server (online).
        at_step: the step of ``fork_from``.
        **kwargs: other W&B arguments (entity, group, tags, reinit, settings ...) are accepted and ignored.
    """
    global run
    settings = resolve(
        project=project,
        name=name,
        config=dict(config) if config else None,
        writer_id=writer_id,
        system_metrics=system_metrics,
        system_interval=system_interval,
        mode=mode,
        id=id,
        dir=dir,
        base_url=base_url,
        api_key=api_key,
        flush_interval=flush_interval,
        finish_timeout=finish_timeout,
        resume=resume,
    )
    _branch(settings, id, resume_from if resume_from is not None else rewind_to, fork_from, at_step)
    settings.extra = kwargs
    with _lock:
        previous = run
    if previous is not None:
        previous.finish()  # one active run per process, like W&B in a script
    r = Run(settings)
    with _lock:
        run = r
        _runs.append(r)
    if settings.mode == "online":
        with contextlib.suppress(Exception):  # never let the backlog stop a run from starting
            _sync.deliver_research_in_background(settings.root, settings.base_url, settings.api_key)
    return r


def _branch(settings: Settings, id: str | None, rewind: Any, fork_from: str | None, at_step: int | None) -> None:
    """Put rewind (``resume_from``/``rewind_to``) and fork arguments into ``settings``; ``ValueError``."""
    if rewind is not None and fork_from is not None:
        raise ValueError("arwandb: resume_from/rewind_to and fork_from exclude each other")
    if rewind is not None:
        run_id, step = split_step_ref(rewind, "resume_from")
        if run_id is not None:
            if id is not None and id != run_id:
                raise ValueError(f"arwandb: resume_from names run {run_id!r} but id is {id!r}")
            settings.run_id = run_id
        settings.rewind_step = step
    if fork_from is not None:
        parent, step = split_step_ref(fork_from, "fork_from") if "?_step=" in fork_from else (fork_from, at_step)
        if step is None or parent is None:
            raise ValueError("arwandb: fork_from needs a step: fork_from='run?_step=N' or at_step=N")
        if parent == settings.run_id:
            raise ValueError("arwandb: a fork needs an id of its own (to restart a run from a step, use resume_from)")
        settings.fork_from, settings.fork_step = parent, int(step)


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the active run (see :meth:`Run.log`). Without a run it warns once and does nothing."""
    r = run
    if r is None:
        _warn_no_run()
        return
    r.log(data, step, commit)


def finish(status: str = "finished", exit_code: int | None = None, timeout: float | None = None) -> None:
    """Finish the active run (see :meth:`Run.finish`). ``exit_code`` != 0 means ``failed`` (W&B style)."""
    global run
    r = run
    if r is None:
        return
    if exit_code:
        status = "failed"
    r.finish(status, timeout=timeout)
    with _lock:
        if run is r:
            run = None


def sync(path: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Upload spools under ``path`` (a run folder, an ``arwandb`` folder or its parent; default
    ``$ARWANDB_DIR`` or cwd) exactly once. Returns a summary dict."""
    return _sync.sync(path, **kwargs)


_warned = False


def _warn_no_run() -> None:
    global _warned
    if not _warned:
        _warned = True
        logging.getLogger("arwandb").warning("arwandb.log() called before arwandb.init(); ignored")


@atexit.register
def _finish_at_exit() -> None:
    for r in list(_runs):
        with contextlib.suppress(Exception):  # interpreter shutdown: never raise
            r.finish()
