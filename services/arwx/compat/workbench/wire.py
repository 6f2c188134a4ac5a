"""ml-workbench's request bodies (``/api/v1/experiments``), as msgspec structs.

Unknown fields are accepted and ignored: the document lists what matters,
and its SDK and AutoML trainer send more. Types and bounds are checked
(400 naming the field); ``parameters`` and ``final_metrics`` may be an object
or a ``[{"key", "value"}]`` array, as the document says.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from arwx.wire import MAX_KEY_LEN, MetricKey, RunId, _whole

# One line of printable text (names, tags, keys, types); free text may span lines.
# Neither may hold NUL, which PostgreSQL's text columns refuse.
_LINE = _whole(r"^\x00-\x1f\x7f")
_TEXT = r"^[^\x00]*$(?!\n)"


def _line(max_length: int) -> Any:
    return Annotated[str, msgspec.Meta(min_length=1, max_length=max_length, pattern=_LINE)]


Name = _line(512)
Text = Annotated[str, msgspec.Meta(max_length=10_000, pattern=_TEXT)]
Tag = _line(256)
Tags = Annotated[list[Tag], msgspec.Meta(max_length=256)]
#: ml-service's experiments carry ``{"key": "value"}`` tags on the same path; kept as given.
TagMap = Annotated[dict[_line(256), Annotated[str, msgspec.Meta(max_length=1024, pattern=_TEXT)]],
                   msgspec.Meta(max_length=256)]
KeyValues = Annotated[list[dict[str, Any]], msgspec.Meta(max_length=10_000)] | dict[str, Any]
Status = _line(16)
MAX_METRICS = 10_000


class WorkbenchExperimentCreate(msgspec.Struct):
    """``POST /api/v1/experiments``: an experiment (found by name, else made) and a run in it."""

    name: Name | None = None
    experiment_name: Name | None = None
    run_name: Name | None = None
    description: Text | None = None
    tags: Tags | TagMap | None = None
    run_id: RunId | None = None
    parameters: KeyValues | None = None
    final_metrics: KeyValues | None = None
    modelType: _line(128) | None = None  # the wire's name
    problem_type: _line(128) | None = None
    framework: _line(128) | None = None
    parent_run_id: _line(256) | None = None
    system_info: dict[str, Any] | None = None
    status: Status | None = None
    duration_seconds: Annotated[float, msgspec.Meta(ge=0)] | None = None
    artifact_location: _line(2048) | None = None  # ml-service's field


class WorkbenchExperimentUpdate(msgspec.Struct):
    """``PUT /api/v1/experiments/:id``."""

    name: Name | None = None
    description: Text | None = None
    tags: Tags | TagMap | None = None
    status: Status | None = None
    final_metrics: KeyValues | None = None
    duration_seconds: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error_message: Text | None = None


class WorkbenchTagsReplace(msgspec.Struct):
    """``PUT /api/v1/experiments/:id/tags``."""

    tags: Tags


class WorkbenchRegister(msgspec.Struct):
    """``POST /api/v1/experiments/register``."""

    name: Name
    description: Text | None = None
    tags: Tags | None = None


class WorkbenchMetric(msgspec.Struct):
    """One metric of ``POST /api/v1/experiments/:id/metrics``. ``timestamp``: seconds or
    milliseconds since the epoch, or an ISO 8601 string; absent: the time it arrived."""

    key: MetricKey
    value: float
    step: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    timestamp: float | str | None = None


class WorkbenchMetrics(msgspec.Struct):
    metrics: Annotated[list[WorkbenchMetric], msgspec.Meta(max_length=MAX_METRICS)]


class WorkbenchParams(msgspec.Struct):
    """``POST /api/v1/experiments/:id/params``."""

    params: Annotated[dict[_line(MAX_KEY_LEN), Any], msgspec.Meta(max_length=10_000)]


class WorkbenchArtifact(msgspec.Struct):
    """``POST /api/v1/experiments/:id/artifacts``: ``s3_key`` (registered where it is) or
    ``content_base64`` (the bytes, stored in arwx's blob store)."""

    name: Name
    path: _line(1024) | None = None
    type: _line(32) = "file"
    s3_key: _line(2048) | None = None
    content_base64: str | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    content_type: _line(256) | None = None


STRUCTS = (
    WorkbenchExperimentCreate, WorkbenchExperimentUpdate, WorkbenchTagsReplace, WorkbenchRegister, WorkbenchMetric,
    WorkbenchMetrics, WorkbenchParams, WorkbenchArtifact,
)
