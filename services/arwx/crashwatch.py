"""Crash detection: a running run whose writers all went silent becomes ``crashed``.

Invariant: a run is judged only on heartbeats (``POST /v1/runs/:id/heartbeat``,
sent by the SDK's uploader): one whose writers never sent any (curl, an
adapter) is never called crashed. The judgement is a conditional update in
the catalog, so several processes may watch at once; a heartbeat brings a
detected crash back to ``running`` (``Runs.heartbeat``), a finish ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arwx.runs import Runs

log = logging.getLogger("arwx.crashwatch")


class CrashWatch:
    """Background work of the query role: every ``interval_s``, mark silent runs crashed."""

    paused: str | None = None  # never set: a failed sweep is logged and retried; reads go on

    def __init__(self, runs: Runs, silent_s: float, interval_s: float | None = None) -> None:
        self.runs = runs
        self.silent_ms = int(silent_s * 1000)
        # A run is marked within silent_s + interval_s of its last heartbeat.
        self.interval_s = interval_s if interval_s is not None else max(0.05, min(15.0, silent_s / 4))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="arwx-crashwatch")

    async def _loop(self) -> None:
        while True:
            try:
                for run in await self.runs.mark_crashed(self.silent_ms):
                    log.info("run %s/%s crashed: no heartbeat for %.0f s", run.org, run.run_id, self.silent_ms / 1000)
            except Exception:  # noqa: BLE001 - a catalog outage delays detection, never stops the process
                log.warning("crash detection failed; retrying", exc_info=True)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
