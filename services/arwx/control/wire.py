"""Request bodies of the control plane (projects, sessions, experiments, decisions, trees).

Every body is a msgspec struct that refuses unknown fields, so a typo is a 400
naming the field, never a silently ignored value. ``scripts/gen_schemas.py``
renders them into ``schemas/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from arwx.wire import MetricKey, ProjectName

# Server-chosen ids ("ses_…", "exp_…"); the pattern keeps them path- and log-safe.
# (No text field may hold NUL: PostgreSQL text cannot store it.)
ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
ObjectId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
Label = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
GitRef = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[^\x00-\x20\x7f]*$")]
Score = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]  # finite: NaN and inf are not scores
MAX_NOTE = 64 * 1024
MAX_TREE_FILES = 100_000
MAX_PATH = 4096
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class ProjectUpsert(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/projects``: create the project, or update the goal fields given."""

    name: ProjectName
    objective_metric: MetricKey | None | UnsetType = UNSET
    lower_is_better: bool | UnsetType = UNSET
    target: Score | None | UnsetType = UNSET


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/sessions``: the newest session is the project's active one."""

    project: ProjectName
    tag: Label = ""
    branch: Label = ""
    # A client-chosen id (an SDK that works offline names the session before the
    # server sees it); sending it again answers the session made the first time.
    id: ObjectId | None = None


class ExperimentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/experiments``.

    ``session_id`` defaults to the active (newest) session of ``project``.
    ``diff`` is the working-tree diff that ran; over the server's cap a marker
    saying so is stored instead. ``id`` is a client-chosen id: sending it again
    answers the experiment made the first time (a create is safe to resend
    even after its ``Idempotency-Key`` expired).
    """

    id: ObjectId | None = None
    session_id: ObjectId | None = None
    project: ProjectName | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE, pattern=r"^[^\x00]*$")] = ""
    commit: GitRef | None = None
    parent_commit: GitRef | None = None
    diff: str | None = None
    config: dict[str, Any] | None = None


class DecisionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/experiments/:id/decision``: a keep/drop verdict and the score reached."""

    status: Literal["keep", "drop"]
    score: Score | None = None
    metric: MetricKey | None = None


TreePath = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATH, pattern=r"^[^\x00-\x1f\x7f]+$")]


class TreeEntry(msgspec.Struct, forbid_unknown_fields=True):
    """One file of a code snapshot: its content's SHA-256 (a blob of the org), size and mode."""

    sha256: Sha256
    size: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o177777)] = 0o100644


class TreePut(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PUT /v1/experiments/:id/tree``: the snapshot manifest, path → entry."""

    files: Annotated[dict[TreePath, TreeEntry], msgspec.Meta(max_length=MAX_TREE_FILES)]


STRUCTS = (ProjectUpsert, SessionCreate, ExperimentCreate, DecisionCreate, TreeEntry, TreePut)
