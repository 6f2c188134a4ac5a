"""``arwx runner``: claim queued Wild runs, execute them, supervise, report, heartbeat.

Invariants:

- At most ``concurrency`` commands run at once; a run is claimed only when
  a slot is free (the server's claim is atomic, so several runners share one
  queue and no run is claimed twice).
- A heartbeat goes out every ``heartbeat_s`` while the runner lives, naming
  the runs it executes; the answer names runs to stop (a user's stop, or a
  run the server no longer gives this runner), and they are stopped.
- A run's end is reported until the server takes it (a server restart or
  outage only delays it); its captured output is uploaded first, so a run
  that is ``finished`` has all of its (capped) output on the server.
- Stopping the runner (SIGTERM, SIGINT) stops its commands, reports them
  ``stopped``, then exits. A runner killed outright reports nothing: the
  server marks its runs ``lost`` after ``wild_lost_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from arwx.runner.client import Refused, RunnerClient, ServerError
from arwx.runner.job import Job, Outcome, child_env

log = logging.getLogger("arwx.runner")

UPLOAD_EVERY_S = 1.0
UPLOAD_CHUNK = 256 * 1024
RETRY_S = 1.0
SHUTDOWN_REPORT_S = 30.0  # how long a stopping runner keeps trying to report its runs' ends


@dataclass(frozen=True)
class RunnerSettings:
    """What one runner process needs (``arwx runner`` flags, ``ARWX_RUNNER_*``)."""

    server: str
    key: str
    root: Path
    runner_id: str
    concurrency: int
    max_wall_s: float
    stop_grace_s: float
    heartbeat_s: float
    poll_s: float
    log_cap_bytes: int


class _Uploader:
    """Ships a job's captured files to the server from where the server's copy ends."""

    def __init__(self, client: RunnerClient, runner_id: str, job: Job) -> None:
        self.client, self.runner_id, self.job = client, runner_id, job
        self.sent = {"stdout": 0, "stderr": 0}

    async def flush(self) -> None:
        """Send what is new in each stream; ``ServerError`` when the server is away."""
        for stream, cap in self.job.captures.items():
            while self.sent[stream] < cap.written:
                with open(cap.path, "rb") as f:
                    f.seek(self.sent[stream])
                    chunk = f.read(min(UPLOAD_CHUNK, cap.written - self.sent[stream]))
                try:
                    out = await self.client.upload_log(self.runner_id, self.job.run_id, stream, self.sent[stream], chunk)
                except Refused as e:
                    if e.status == 409 and isinstance(e.body, dict) and isinstance(e.body.get("end"), int):
                        self.sent[stream] = e.body["end"]  # the server has less or more: resume from its end
                        continue
                    raise
                self.sent[stream] = self.sent[stream] + len(chunk)
                if out.get("truncated"):
                    self.sent[stream] = cap.written  # the server keeps no more of this stream
                    break


class Runner:
    """One runner: the loops of the module docstring."""

    def __init__(self, settings: RunnerSettings) -> None:
        self.s = settings
        self.client = RunnerClient(settings.server, settings.key)
        self.jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self.host = socket.gethostname()

    async def run(self) -> None:
        """Until ``stop()``: heartbeat, claim, supervise; then stop the commands and report them."""
        self.s.root.mkdir(parents=True, exist_ok=True)
        await self.client.start()
        loops = [asyncio.ensure_future(self._heartbeats()), asyncio.ensure_future(self._claims())]
        try:
            await self._stopping.wait()
        finally:
            for t in loops:
                t.cancel()
            for job in self.jobs.values():
                job.request_stop("the runner was stopped")
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.client.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _heartbeats(self) -> None:
        while True:
            try:
                answer = await self.client.heartbeat(self.s.runner_id, self.host, self.s.concurrency, sorted(self.jobs))
                for run_id in answer.get("stop", []):
                    job = self.jobs.get(run_id)
                    if job is not None:
                        job.request_stop("stop requested")
            except (ServerError, Refused) as e:
                log.warning("heartbeat failed: %s", e)
            await asyncio.sleep(self.s.heartbeat_s)

    async def _claims(self) -> None:
        while True:
            free = self.s.concurrency - len(self.jobs)
            if free > 0:
                try:
                    for run in await self.client.claim(self.s.runner_id, free):
                        self._launch(run)
                except (ServerError, Refused) as e:
                    log.warning("claim failed: %s", e)
            await asyncio.sleep(self.s.poll_s)

    def _launch(self, run: dict) -> None:
        run_env = {"ARWANDB_BASE_URL": self.s.server, **run["env"]}
        job = Job(
            run_id=run["id"], command=run["command"], workdir=self.s.root / run["id"],
            env=child_env(dict(os.environ), run_env), cap_bytes=self.s.log_cap_bytes,
            max_wall_s=self.s.max_wall_s, stop_grace_s=self.s.stop_grace_s,
        )
        self.jobs[job.run_id] = job
        task = asyncio.ensure_future(self._supervise(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("claimed run %s: %s", job.run_id, job.command)

    async def _supervise(self, job: Job) -> None:
        uploader = _Uploader(self.client, self.s.runner_id, job)
        work = asyncio.ensure_future(job.run())
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=UPLOAD_EVERY_S)
                with contextlib.suppress(ServerError, Refused):
                    await uploader.flush()
            try:
                outcome = work.result()
            except Exception as e:  # noqa: BLE001 - a runner bug must still end the run, loudly
                log.exception("run %s failed in the runner", job.run_id)
                outcome = Outcome("failed", None, f"runner error: {e}")
            await self._finish(job, uploader, outcome)
        finally:
            self.jobs.pop(job.run_id, None)

    async def _finish(self, job: Job, uploader: _Uploader, outcome: Outcome) -> None:
        """Upload the rest of the output, then report the end until the server takes it."""
        dropped = {s: c.dropped for s, c in job.captures.items() if c.dropped}
        error = outcome.error
        if dropped:
            note = ", ".join(f"{s}: {n} bytes past the {self.s.log_cap_bytes}-byte cap dropped" for s, n in dropped.items())
            error = f"{error}; {note}" if error else note
        give_up_at = None
        while True:
            try:
                with contextlib.suppress(Refused):  # output the server will not take never holds the report back
                    await uploader.flush()
                await self.client.report(self.s.runner_id, job.run_id, outcome.status, outcome.exit_code, error)
                log.info("run %s %s (exit code %s)", job.run_id, outcome.status, outcome.exit_code)
                return
            except Refused as e:
                log.warning("run %s: the server refused its report (%s); dropping it", job.run_id, e)
                return
            except ServerError as e:
                if self._stopping.is_set():
                    # Shutting down with the server away: do not hang; the server marks the run lost.
                    give_up_at = give_up_at or asyncio.get_running_loop().time() + SHUTDOWN_REPORT_S
                    if asyncio.get_running_loop().time() > give_up_at:
                        log.error("run %s: could not report %s before shutdown (%s)", job.run_id, outcome.status, e)
                        return
                log.warning("run %s: report not taken yet (%s); retrying", job.run_id, e)
                await asyncio.sleep(RETRY_S)
