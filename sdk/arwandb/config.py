"""Settings resolution: explicit arguments > ARWANDB_* env > WANDB_* env > defaults."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:8090"
# Seconds between a writer's requests while points keep coming (uploader.Uploader._due): short enough
# that a logged point is visible within a second, long enough that a busy writer batches.
DEFAULT_FLUSH_INTERVAL = 0.2
ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_OFF = {"0", "off", "false", "no", "disabled", "disable"}


def env(name: str, default: str | None = None) -> str | None:
    """ARWANDB_<name>, then WANDB_<name> (so W&B scripts work unchanged), then default."""
    for prefix in ("ARWANDB_", "WANDB_"):
        v = os.environ.get(prefix + name)
        if v is not None and v.strip() != "":
            return v.strip()
    return default


def random_run_id() -> str:
    """12 random base36 characters (about 62 bits)."""
    return "".join(secrets.choice(_B36) for _ in range(12))


def random_writer_id() -> str:
    return "w-" + secrets.token_hex(4)


def check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ValueError(f"arwandb: invalid {kind} {value!r}: must match {ID_RE.pattern}")
    return value


def normalize_mode(mode: str | None) -> str:
    """Map W&B modes onto ours: online | offline | disabled."""
    m = (mode or "online").strip().lower()
    if m in ("offline", "dryrun"):
        return "offline"
    if m in ("disabled", "off", "noop"):
        return "disabled"
    return "online"


def env_flag(name: str, default: bool) -> bool:
    v = env(name)
    if v is None:
        return default
    return v.strip().lower() not in _OFF


def env_float(name: str, default: float) -> float:
    v = env(name)
    if v is None:
        return default
    try:
        return float(v)
    except ValueError:
        return default


RESUME_MODES = ("allow", "must", "never")


def normalize_resume(resume: bool | str | None) -> str | None:
    """W&B's ``resume`` values onto ours: None (no resume), allow, must, never.
    ``True`` and ``"auto"`` mean allow; ``False`` means none."""
    if resume is None or resume is False:
        return None
    if resume is True:
        return "allow"
    r = str(resume).strip().lower()
    if r in ("", "false", "0", "no", "off"):
        return None
    if r in ("auto", "true", "1", "yes"):
        return "allow"
    if r not in RESUME_MODES:
        raise ValueError(f"arwandb: resume must be one of allow, must, never (or True/False), not {resume!r}")
    return r


@dataclass
class Settings:
    """Everything a run needs, fully resolved."""

    run_id: str
    writer_id: str
    base_url: str
    api_key: str | None
    project: str | None
    name: str | None
    config: dict[str, Any]
    mode: str
    root: str  # <dir>/arwandb: holds one folder per run id
    system_metrics: bool
    system_interval: float
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    finish_timeout: float = 30.0
    batch_size: int = 500
    stream_threshold: int = 5000
    spool_interval: float = 0.05
    request_timeout: float = 15.0
    resume: str | None = None  # allow | must | never: see normalize_resume
    resume_timeout: float = 60.0  # how long init() waits to learn where the writers ended
    heartbeat_interval: float = 30.0  # seconds between heartbeats (the server's crash bound is longer)
    rewind_step: int | None = None  # resume_from / rewind_to: open a new attempt from this step
    fork_from: str | None = None  # a new run whose history below fork_step is this run's
    fork_step: int | None = None
    attempt: int | None = None  # the run's attempt this process writes (None: not asked; the server's current)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> str:
        """The spool of this run's attempt: each attempt counts seqs from 0, so each has its own."""
        name = self.run_id if not self.attempt else f"{self.run_id}~{self.attempt}"
        return os.path.join(self.root, name)


def split_step_ref(ref: Any, what: str) -> tuple[str | None, int]:
    """W&B's ``"<run id>?_step=<N>"`` as (run id, N); a plain step number as (None, N)."""
    if isinstance(ref, str) and "?_step=" in ref:
        run_id, _, step = ref.partition("?_step=")
        if run_id and step.isdigit():
            return check_id("run id", run_id), int(step)
    elif type(ref) is int and ref >= 0:
        return None, ref
    elif isinstance(ref, str) and ref.isdigit():
        return None, int(ref)
    raise ValueError(f"arwandb: {what} must be a step (an int >= 0) or 'run_id?_step=N', not {ref!r}")


def spool_root(dir: str | None) -> str:
    """The directory holding run spools: <dir>/arwandb, dir from arg, ARWANDB_DIR/WANDB_DIR, or cwd."""
    base = dir or env("DIR") or os.getcwd()
    base = os.path.abspath(os.path.expanduser(base))
    return os.path.join(base, "arwandb")


def resolve(
    *,
    project: str | None,
    name: str | None,
    config: dict[str, Any] | None,
    writer_id: str | None,
    system_metrics: bool | None,
    system_interval: float | None,
    mode: str | None,
    id: str | None,
    dir: str | None,
    base_url: str | None,
    api_key: str | None,
    flush_interval: float,
    finish_timeout: float,
    resume: bool | str | None = None,
    resume_timeout: float | None = None,
) -> Settings:
    run_id = id or env("RUN_ID") or random_run_id()
    wid = writer_id or env("WRITER_ID") or random_writer_id()
    check_id("run id", run_id)
    check_id("writer id", wid)
    if system_metrics is None:
        system_metrics = env_flag("SYSTEM_METRICS", True)
    interval = system_interval if system_interval is not None else env_float("SYSTEM_INTERVAL", 15.0)
    return Settings(
        run_id=run_id,
        writer_id=wid,
        base_url=(base_url or env("BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        api_key=api_key or env("API_KEY"),
        project=project or env("PROJECT"),
        name=name or env("NAME"),
        config=dict(config or {}),
        mode=normalize_mode(mode or env("MODE")),
        root=spool_root(dir),
        system_metrics=bool(system_metrics),
        system_interval=max(1.0, float(interval)),
        flush_interval=max(0.01, float(flush_interval)),
        finish_timeout=max(0.0, float(finish_timeout)),
        resume=normalize_resume(resume if resume is not None else env("RESUME")),
        heartbeat_interval=max(0.05, env_float("HEARTBEAT_INTERVAL", 30.0)),
        resume_timeout=max(
            0.1, float(resume_timeout if resume_timeout is not None else env_float("RESUME_TIMEOUT", 60.0))
        ),
    )
