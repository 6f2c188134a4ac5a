"""One run's command on the runner's machine: launched, supervised, stopped, its end told.

Invariants:

- The command runs with ``/bin/sh -c`` in its own fresh working directory and
  its own session (so its own process group): stopping it signals the whole
  group, children included, SIGTERM first and SIGKILL after ``stop_grace_s``.
  When the shell exits, whatever it left running in its group is killed too:
  a run's processes do not outlive it.
- The environment is the runner's minus its own settings and credentials
  (every ``ARWX_*``; ``ARWANDB_``/``WANDB_`` key, URL, run, project, name and
  writer), plus the run's: ``ARWANDB_BASE_URL``,
  ``ARWANDB_API_KEY`` (the run's own write key), ``ARWANDB_RUN_ID``,
  ``ARWANDB_PROJECT``; so ``arwandb.init()`` logs into the run unchanged, and
  the command never sees the runner's launch key.
- stdout and stderr go through pipes into capped files (``capture.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from arwx.runner.capture import CappedCapture

# Where a run logs, and as whom, comes from the run alone; other SDK settings
# (ARWANDB_SYSTEM_METRICS, say) pass through from the runner's environment.
_RUN_ONLY = {p + n for p in ("ARWANDB_", "WANDB_") for n in ("API_KEY", "BASE_URL", "RUN_ID", "PROJECT", "NAME", "WRITER_ID")}


def child_env(base: dict[str, str], run_env: dict[str, str]) -> dict[str, str]:
    """The command's environment: ``base`` without the runner's settings and credentials, plus the run's."""
    env = {k: v for k, v in base.items() if not k.startswith("ARWX_") and k not in _RUN_ONLY}
    env.update(run_env)
    return env


@dataclass
class Outcome:
    """How a run's command ended, as the runner reports it."""

    status: str  # finished | failed | stopped
    exit_code: int | None
    error: str | None = None


@dataclass
class Job:
    """A claimed run being executed."""

    run_id: str
    command: str
    workdir: Path
    env: dict[str, str]
    cap_bytes: int
    max_wall_s: float
    stop_grace_s: float
    captures: dict[str, CappedCapture] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    stop_reason: str | None = None  # set: we are stopping it, and why
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, reason: str) -> None:
        """Stop the command (SIGTERM, then SIGKILL); idempotent."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    async def run(self) -> Outcome:
        """Launch, wait for the end (exit, stop, wall time), and say how it ended."""
        self.workdir.mkdir(parents=True, exist_ok=False)  # fresh: a run never reuses a directory
        logs = self.workdir.parent / f"{self.workdir.name}.logs"
        logs.mkdir(exist_ok=True)
        self.captures = {s: CappedCapture(logs / f"{s}.log", self.cap_bytes) for s in ("stdout", "stderr")}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", self.command, cwd=self.workdir, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            )
        except OSError as e:
            return Outcome("failed", None, f"could not start the command: {e}")
        assert self.proc.stdout is not None and self.proc.stderr is not None
        copies = [
            asyncio.ensure_future(self.captures["stdout"].copy(self.proc.stdout)),
            asyncio.ensure_future(self.captures["stderr"].copy(self.proc.stderr)),
        ]
        waiter = asyncio.ensure_future(self.proc.wait())
        stopper = asyncio.ensure_future(self._stop.wait())
        started = time.monotonic()
        timed_out = False
        try:
            done, _ = await asyncio.wait({waiter, stopper}, timeout=self.max_wall_s, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                timed_out = stopper not in done
                await self._terminate(waiter)
        finally:
            stopper.cancel()
            self._kill_group()  # what the shell left behind, and pipes held open by it
            await asyncio.gather(*copies, return_exceptions=True)
        code = self.proc.returncode
        if self.stop_reason is not None:
            return Outcome("stopped", code, self.stop_reason)
        if timed_out:
            return Outcome("failed", code, f"wall time limit of {self.max_wall_s:g} s reached after "
                                           f"{time.monotonic() - started:.0f} s; stopped")
        if code == 0:
            return Outcome("finished", 0)
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return Outcome("failed", code, why)

    async def _terminate(self, waiter: asyncio.Future) -> None:
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.stop_grace_s)
        except asyncio.TimeoutError:
            self._signal(signal.SIGKILL)
            await waiter

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # the session's group id is the shell's pid

    def _kill_group(self) -> None:
        if self.proc is not None:
            self._signal(signal.SIGKILL)
