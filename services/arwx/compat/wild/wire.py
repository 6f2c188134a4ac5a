"""Request bodies of the Wild V2 protocol (the seed's fields, exactly) and of the runner's calls.

Every body refuses unknown fields, so a typo is a 400 naming the field; a
missing required field (``chat_session_id`` above all: the audit trail needs
it) is a 400 naming it. ``scripts/gen_schemas.py`` renders them into
``schemas/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from arwx.wire import ProjectName

# No text field may hold NUL (PostgreSQL text cannot store it) nor, for names, other controls.
_NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"
_NO_NUL = r"^[^\x00]*$"
ChatSessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_NO_CONTROLS)]
RunName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_NO_CONTROLS)]
Goal = Annotated[str, msgspec.Meta(max_length=64 * 1024, pattern=_NO_NUL)]
MAX_COMMAND = 64 * 1024
Command = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_COMMAND, pattern=_NO_NUL)]
# Server-chosen ids (``sw_…``, ``wr_…``) and runner ids (chosen by the runner).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]

RUN_STATUSES = ("created", "queued", "running", "finished", "failed", "stopped", "lost")
FINAL_STATUSES = ("finished", "failed", "stopped", "lost")


class WildSweepCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /sweeps/wild``: a sweep is an arwx project named ``name``."""

    name: ProjectName
    goal: Goal
    chat_session_id: ChatSessionId


class WildRunCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /runs``: a run of ``command`` in the sweep; ``auto_start`` queues it at once."""

    name: RunName
    command: Command
    sweep_id: Id
    chat_session_id: ChatSessionId
    auto_start: bool = False


class WildRunAction(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body of ``POST /runs/:id/start`` and ``/stop``: who asks, for the audit trail."""

    chat_session_id: ChatSessionId | None = None


class WildHeartbeat(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /wild/v2/runner/heartbeat``: the runner is alive and runs these."""

    runner_id: Id
    host: Annotated[str, msgspec.Meta(max_length=256, pattern=_NO_CONTROLS)] = ""
    capacity: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 1
    running: list[Id] = []


class WildClaim(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /wild/v2/runner/claim``: up to ``max`` queued runs for this runner."""

    runner_id: Id
    max: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class WildReport(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /wild/v2/runner/runs/:id/report``: how the runner's command ended."""

    runner_id: Id
    status: Literal["finished", "failed", "stopped"]
    exit_code: Annotated[int, msgspec.Meta(ge=-255, le=255)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=4096, pattern=_NO_NUL)] | None = None


STRUCTS = (WildSweepCreate, WildRunCreate, WildRunAction, WildHeartbeat, WildClaim, WildReport)
