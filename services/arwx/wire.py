"""The wire contract: what clients send, what travels through the log.

``schemas/point.schema.json`` states the same contract as JSON Schema;
``tests/test_schemas.py`` keeps the two in agreement.
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any

import msgspec

# Limits are part of the contract (documented in docs/api.md and the schemas).
MAX_ID_LEN = 128
MAX_KEY_LEN = 256
MAX_SEQ = 2**63 - 1
MAX_TS = 4_102_444_800.0  # 2100-01-01, seconds since the epoch

RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN, pattern=r"^[A-Za-z0-9._:@-]+$")]
WriterId = RunId
MetricKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN, pattern=r"^[^\x00-\x1f\x7f]+$")]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Step = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Ts = Annotated[float, msgspec.Meta(ge=0, le=MAX_TS)]


class Point(msgspec.Struct, forbid_unknown_fields=True):
    """One metric value as a client sends it.

    ``run_id``/``writer_id`` may be given once on the batch instead. ``value``
    is deliberately untyped: a non-numeric or non-finite value is skipped and
    counted, never a reason to reject the batch.
    """

    seq: Seq
    step: Step
    key: MetricKey
    value: Any = None
    ts: Ts | None = None
    run_id: RunId | None = None
    writer_id: WriterId | None = None


class IngestBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/ingest``."""

    points: list[Point]
    run_id: RunId | None = None
    writer_id: WriterId | None = None


class LogBatch(msgspec.Struct, array_like=True):
    """One log message: validated points of one run, in columns (msgpack).

    Skipped values travel as NaN so the writer's seq range stays whole; the
    store keeps them and every read filters them out.
    """

    v: int
    org: str
    run_id: str
    received_at: float
    writer_id: list[str]
    seq: list[int]
    step: list[int]
    ts: list[float]
    key: list[str]
    value: list[float]


LOG_FORMAT_VERSION = 1
_json_decoder = msgspec.json.Decoder(IngestBatch)
_point_decoder = msgspec.json.Decoder(Point)
_msgpack_encoder = msgspec.msgpack.Encoder()
_logbatch_decoder = msgspec.msgpack.Decoder(LogBatch)


class BadInput(ValueError):
    """Client input that cannot be accepted; ``str()`` names what and where."""


def _stdlib_json(data: bytes) -> Any:
    # Python's json module writes NaN/Infinity literals; accept them so a
    # stray NaN costs one skipped point, not the whole batch.
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"malformed JSON: {e}") from None


def decode_batch(body: bytes) -> IngestBatch:
    """Decode and validate a JSON ingest body."""
    try:
        return _json_decoder.decode(body)
    except msgspec.ValidationError as e:
        raise BadInput(str(e)) from None
    except msgspec.DecodeError:
        pass
    try:
        return msgspec.convert(_stdlib_json(body), IngestBatch)
    except msgspec.ValidationError as e:
        raise BadInput(str(e)) from None


def decode_line(line: bytes) -> Point:
    """Decode and validate one NDJSON line."""
    try:
        return _point_decoder.decode(line)
    except msgspec.ValidationError as e:
        raise BadInput(str(e)) from None
    except msgspec.DecodeError:
        pass
    try:
        return msgspec.convert(_stdlib_json(line), Point)
    except msgspec.ValidationError as e:
        raise BadInput(str(e)) from None


def numeric_value(v: Any) -> tuple[float, str | None]:
    """The stored float for a client value, and why it was skipped (or None)."""
    if type(v) is float:
        return (v, None) if math.isfinite(v) else (math.nan, "non_finite")
    if type(v) is int:
        f = float(v)  # ints beyond float range raise OverflowError? no: they become inf below
        return (f, None) if math.isfinite(f) else (math.nan, "non_finite")
    return math.nan, "non_numeric"


class RunChunk:
    """Points of one run accumulating into log messages, in columns."""

    __slots__ = ("run_id", "writer_id", "seq", "step", "ts", "key", "value")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.writer_id: list[str] = []
        self.seq: list[int] = []
        self.step: list[int] = []
        self.ts: list[float] = []
        self.key: list[str] = []
        self.value: list[float] = []

    def __len__(self) -> int:
        return len(self.seq)

    def add(self, writer_id: str, seq: int, step: int, ts: float, key: str, value: float) -> None:
        self.writer_id.append(writer_id)
        self.seq.append(seq)
        self.step.append(step)
        self.ts.append(ts)
        self.key.append(key)
        self.value.append(value)

    def encode(self, org: str, received_at: float) -> bytes:
        return _msgpack_encoder.encode(
            LogBatch(
                LOG_FORMAT_VERSION,
                org,
                self.run_id,
                received_at,
                self.writer_id,
                self.seq,
                self.step,
                self.ts,
                self.key,
                self.value,
            )
        )


def decode_log_batch(payload: bytes) -> LogBatch:
    """Decode a log message; raises ``msgspec.DecodeError``/``ValidationError`` on a poison message."""
    batch = _logbatch_decoder.decode(payload)
    n = len(batch.seq)
    if batch.v != LOG_FORMAT_VERSION:
        raise msgspec.ValidationError(f"unknown log format version {batch.v}")
    if not (len(batch.writer_id) == len(batch.step) == len(batch.ts) == len(batch.key) == len(batch.value) == n):
        raise msgspec.ValidationError("log batch columns differ in length")
    return batch


def now() -> float:
    return time.time()


ProjectName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f/]+$")]


class RunCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs``. Idempotent on ``id``."""

    id: RunId | None = None
    project: ProjectName = "default"
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    config: dict[str, Any] | None = None
    writer_ids: list[WriterId] | None = None
    commit: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    diff_sha: Annotated[str, msgspec.Meta(max_length=128)] | None = None


RunStatus = Annotated[str, msgspec.Meta(pattern=r"^(finished|failed|crashed|killed)$")]


class RunFinish(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs/:id/finish``: the writers' own totals feed the receipt."""

    status: RunStatus = "finished"
    writer_totals: dict[WriterId, Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]] = {}


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/keys``."""

    name: Annotated[str, msgspec.Meta(max_length=128)] = ""


def decode_body(body: bytes, type_: type) -> Any:
    """Decode a small JSON request body into ``type_``; empty means all defaults."""
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise BadInput(str(e)) from None
