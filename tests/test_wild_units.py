"""The runner's and the log store's small parts, on their own: output caps, tails, the command's environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from arwx.compat.wild.logs import tail_lines
from arwx.runner.capture import CappedCapture
from arwx.runner.job import Job, child_env


def test_tail_lines() -> None:
    assert tail_lines(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert tail_lines(b"a\nb\nc", 2) == b"b\nc"
    assert tail_lines(b"a\nb\n", 5) == b"a\nb\n"
    assert tail_lines(b"", 3) == b""
    assert tail_lines(b"a\nb\n", 0) == b""


def test_the_command_never_sees_the_runners_credentials() -> None:
    base = {"PATH": "/bin", "ARWX_RUNNER_KEY": "arwx_live_runner", "ARWX_CATALOG_URL": "postgresql://u:p@h/db",
            "ARWANDB_API_KEY": "arwx_live_operator", "WANDB_API_KEY": "w", "WANDB_RUN_ID": "other",
            "ARWANDB_SYSTEM_METRICS": "off"}
    env = child_env(base, {"ARWANDB_API_KEY": "arwx_live_run", "ARWANDB_RUN_ID": "wr-1"})
    assert env == {"PATH": "/bin", "ARWANDB_SYSTEM_METRICS": "off", "ARWANDB_API_KEY": "arwx_live_run",
                   "ARWANDB_RUN_ID": "wr-1"}


async def test_a_capture_keeps_the_cap_and_drains_the_rest(tmp_path: Path) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 300_000)
    reader.feed_eof()
    cap = CappedCapture(tmp_path / "out.log", 100_000)
    await cap.copy(reader)
    assert (cap.written, cap.dropped) == (100_000, 200_000)
    assert (tmp_path / "out.log").stat().st_size == 100_000


async def test_a_job_runs_in_a_fresh_directory_and_reports_its_exit(tmp_path: Path) -> None:
    job = Job("wr-1", "pwd; echo oops >&2; exit 3", tmp_path / "wr-1", {"PATH": os.environ["PATH"]}, 1 << 20, 30, 1)
    outcome = await job.run()
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 3, "exit code 3")
    assert job.captures["stdout"].path.read_text().strip() == str(tmp_path / "wr-1")
    assert job.captures["stderr"].path.read_text() == "oops\n"
    again = Job("wr-1", "true", tmp_path / "wr-1", {}, 1 << 20, 30, 1)
    with pytest.raises(FileExistsError):  # a directory is never reused
        await again.run()
