"""The wire contract: what clients send, what travels through the log.

``schemas/wire.schema.json`` states the same contract as JSON Schema, generated
from these structs by ``scripts/gen_schemas.py``; ``tests/test_schemas.py``
keeps the two in agreement.
"""

from __future__ import annotations

import json
import math
import re
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from arwx.errors import BadRequest, PayloadTooLarge

# Limits are part of the contract (documented in docs/api.md and the schemas).
MAX_ID_LEN = 128
MAX_KEY_LEN = 256
MAX_SEQ = 2**63 - 1
MAX_TS = 4_102_444_800.0  # 2100-01-01, seconds since the epoch
MAX_CONFIG_BYTES = 256 << 10  # a run's config, as JSON: bigger is a 413 (it is cached and served whole)
MAX_CONFIG_DEPTH = 64  # nesting levels of a run's config: deeper is a 400


def _whole(chars: str) -> str:
    """A pattern for a string made only of ``chars``. Python's ``$`` also matches
    before a final newline ("loss\\n" would pass ``^[...]+$``); ``(?!\\n)``
    makes it the end of the string in Python and in JSON Schema alike."""
    return f"^[{chars}]+$(?!\\n)"


# Ids are URL-safe. Metric keys may hold any printable character but ``,``
# (``keys=a,b`` on the read side is split on commas) and no control
# character, no lone surrogate (not encodable).
ID_PATTERN = _whole(r"A-Za-z0-9._:@-")
KEY_PATTERN = _whole(r"^\x00-\x1f\x7f\ud800-\udfff,")
RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN, pattern=ID_PATTERN)]
WriterId = RunId
MetricKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN, pattern=KEY_PATTERN)]
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


COLUMNS_CONTENT_TYPE = "application/vnd.arwx.columns+json"
KeyIndex = Annotated[int, msgspec.Meta(ge=0)]


class IngestColumns(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/ingest`` sent as ``application/vnd.arwx.columns+json``:
    the points of one (run, writer) in columns, each key spelled once.

    Point ``i`` is ``(seq[i], step[i], keys[key[i]], value[i], ts[i])``; the
    columns have one length. ``ts`` omitted: the server's receive time. The
    guarantees of ``IngestBatch`` hold: all or nothing, ``value`` untyped (a
    non-numeric or non-finite value is skipped and counted).
    """

    run_id: RunId
    writer_id: WriterId
    keys: list[MetricKey]
    seq: list[Seq]
    step: list[Step]
    key: list[KeyIndex]
    value: list[Any]
    ts: list[Ts] | None = None


LOG_FORMAT_VERSION = 1
_json_decoder = msgspec.json.Decoder(IngestBatch)
_point_decoder = msgspec.json.Decoder(Point)
_msgpack_encoder = msgspec.msgpack.Encoder()
_logbatch_decoder = msgspec.msgpack.Decoder(LogBatch)
_columns_decoder = msgspec.json.Decoder(IngestColumns)


class BadInput(BadRequest, ValueError):
    """Client input that cannot be accepted; ``str()`` names what and where."""

    @property
    def message(self) -> str:
        return f"bad input: {self}"


_TOO_DEEP = "JSON is nested too deeply"
# msgspec's range error for a float literal past float range (1e309): Python's
# json reads it as inf, which is then skipped like any non-finite value.
_OUT_OF_RANGE = "Number out of range"


def _strict_or_fallback(decode: Any, data: bytes, type_: type) -> Any:
    """msgspec first; for what only Python's json reads (NaN/Infinity
    literals, 1e309) the stdlib, then the same validation. Nesting past the
    decoder's recursion bound is ``BadInput``, never a RecursionError."""
    try:
        try:
            return decode(data)
        except msgspec.ValidationError as e:
            if _OUT_OF_RANGE not in str(e):
                raise BadInput(str(e)) from None
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 in a string
            pass
        try:
            return msgspec.convert(_stdlib_json(data), type_)
        except msgspec.ValidationError as e:
            raise BadInput(str(e)) from None
    except RecursionError:
        raise BadInput(_TOO_DEEP) from None


def _stdlib_json(data: bytes) -> Any:
    # Python's json module writes NaN/Infinity literals; accept them so a
    # stray NaN costs one skipped point, not the whole batch.
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"malformed JSON: {e}") from None


def decode_batch(body: bytes) -> IngestBatch:
    """Decode and validate a JSON ingest body."""
    return _strict_or_fallback(_json_decoder.decode, body, IngestBatch)


# The fast path: the same limits without running a regex per point. Patterns
# are then checked once per *distinct* key/run/writer of the batch (a batch
# has a handful). Anything the fast path refuses is decoded again by the
# strict decoder, which gives the exact error (or accepts NaN literals).
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN)]
_ID_RE = re.compile(ID_PATTERN)
_KEY_RE = re.compile(KEY_PATTERN)


class _FastPoint(msgspec.Struct, forbid_unknown_fields=True):
    seq: Seq
    step: Step
    key: _Key
    value: Any = None
    ts: Ts | None = None
    run_id: _Id | None = None
    writer_id: _Id | None = None


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True):
    points: list[_FastPoint]
    run_id: _Id | None = None
    writer_id: _Id | None = None


_fast_decoder = msgspec.json.Decoder(_FastBatch)
_fast_line_decoder = msgspec.json.Decoder(_FastPoint)
_get_key = attrgetter("key")
_get_run = attrgetter("run_id")
_get_writer = attrgetter("writer_id")


def _patterns_ok(points: list, *ids: str | None) -> bool:
    if not all(map(_KEY_RE.search, set(map(_get_key, points)))):
        return False
    ids_seen = {i for i in ids if i is not None}
    ids_seen.update(map(_get_run, points))
    ids_seen.update(map(_get_writer, points))
    ids_seen.discard(None)
    return all(map(_ID_RE.search, ids_seen))


_get_seq = attrgetter("seq")
_get_step = attrgetter("step")
_get_ts = attrgetter("ts")


def _ranges_ok(points: list) -> bool:
    try:
        for col in (list(map(_get_seq, points)), list(map(_get_step, points))):
            if set(map(type, col)) != {int} or min(col) < 0 or max(col) > MAX_SEQ:
                return False
        ts = [t for t in map(_get_ts, points) if t is not None]
        if ts and (not {type(t) for t in ts} <= {float, int} or min(ts) < 0 or max(ts) > MAX_TS):
            return False
    except TypeError:
        return False
    keys = set(map(_get_key, points))
    ids = set(map(_get_run, points)) | set(map(_get_writer, points))
    ids.discard(None)
    return all(type(k) is str and len(k) <= MAX_KEY_LEN for k in keys) and all(
        type(i) is str and len(i) <= MAX_ID_LEN for i in ids
    )


def check_points(points: list[Point], run_id: str | None = None, writer_id: str | None = None) -> None:
    """Points built in code (an adapter's), held to the same contract as
    decoded ones: ``BadInput`` naming the first bad point. Cheap when all are
    good (C loops, patterns once per distinct key and id)."""
    if not points or (_ranges_ok(points) and _patterns_ok(points, run_id, writer_id)):
        for i in (run_id, writer_id):
            if i is not None and not (type(i) is str and len(i) <= MAX_ID_LEN and _ID_RE.search(i)):
                raise BadInput(f"bad id {i!r}")
        return
    for i, p in enumerate(points):
        try:
            msgspec.convert(msgspec.structs.asdict(p), Point)
        except msgspec.ValidationError as e:
            raise BadInput(f"points[{i}]: {e}") from None
    raise BadInput(f"bad id in {run_id!r}, {writer_id!r}")


def decode_batch_fast(body: bytes) -> IngestBatch:
    """``decode_batch`` with the same outcome, about 3x faster on good input."""
    try:
        batch = _fast_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return decode_batch(body)
    if not _patterns_ok(batch.points, batch.run_id, batch.writer_id):
        return decode_batch(body)
    return batch  # type: ignore[return-value]  # same fields as IngestBatch


def decode_columns(body: bytes) -> IngestColumns:
    """Decode and validate a columnar ingest body. Every check is a C loop
    (msgspec's per-element bounds, ``min``/``max``/``len``); patterns run once
    per key of ``keys`` and once per id, never per point."""
    cols: IngestColumns = _strict_or_fallback(_columns_decoder.decode, body, IngestColumns)
    n = len(cols.seq)
    lengths = {"step": len(cols.step), "key": len(cols.key), "value": len(cols.value)}
    if cols.ts is not None:
        lengths["ts"] = len(cols.ts)
    for name, m in lengths.items():
        if m != n:
            raise BadInput(f"column {name!r} has {m} entries, 'seq' has {n}: every column has one entry per point")
    if n and max(cols.key) >= len(cols.keys):
        i = cols.key.index(max(cols.key))
        raise BadInput(f"key[{i}] is {cols.key[i]}, not an index into keys (it has {len(cols.keys)})")
    return cols


def decode_lines_fast(lines: list[bytes]) -> list[Point] | None:
    """Non-blank NDJSON lines, each decoded on its own (no regex per point);
    ``None`` if any line needs the strict per-line path (a bad line, a NaN
    literal), which then names the line."""
    dec = _fast_line_decoder.decode
    try:
        points = [dec(line) for line in lines]
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not _patterns_ok(points):
        return None
    return points  # type: ignore[return-value]


def decode_line(line: bytes) -> Point:
    """Decode and validate one NDJSON line."""
    return _strict_or_fallback(_point_decoder.decode, line, Point)


def numeric_value(v: Any) -> tuple[float, str | None]:
    """The stored float for a client value, and why it was skipped (or None)."""
    if type(v) is float:
        return (v, None) if math.isfinite(v) else (math.nan, "non_finite")
    if type(v) is int:
        try:
            f = float(v)
        except OverflowError:  # an int beyond float range (JSON allows any length)
            return math.nan, "non_finite"
        return (f, None) if math.isfinite(f) else (math.nan, "non_finite")
    return math.nan, "non_numeric"


SeqRange = tuple[int, int, int, int]  # (seq_min, seq_max, count, skipped)


def fold_seq_ranges(writer_ids: list[str], seqs: list[int], values: list[float] | None = None) -> dict[str, SeqRange]:
    """Per writer of a column of points: the seq range, the count and how many
    values are NaN (skipped; 0 without ``values``). The one fold of seq ranges:
    the gateway's response and the consumer's ledger both use it."""
    n = len(seqs)
    if writer_ids.count(writer_ids[0]) == n:  # one writer (the common case): no loop per point in Python
        skipped = sum(v != v for v in values) if values is not None else 0
        return {writer_ids[0]: (min(seqs), max(seqs), n, skipped)}
    out: dict[str, list[int]] = {}
    for i, (w, s) in enumerate(zip(writer_ids, seqs)):
        nan = int(values is not None and values[i] != values[i])
        acc = out.get(w)
        if acc is None:
            out[w] = [s, s, 1, nan]
        else:
            if s < acc[0]:
                acc[0] = s
            if s > acc[1]:
                acc[1] = s
            acc[2] += 1
            acc[3] += nan
    return {w: tuple(a) for w, a in out.items()}  # type: ignore[misc]


def merge_seq_range(into: dict, key: object, r: SeqRange) -> None:
    """Fold one writer's ``SeqRange`` into an accumulator of ``[min, max, count, skipped]`` lists."""
    acc = into.get(key)
    if acc is None:
        into[key] = list(r)
    else:
        acc[0], acc[1] = min(acc[0], r[0]), max(acc[1], r[1])
        acc[2] += r[2]
        acc[3] += r[3]


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

    def extend(self, writer_id: str, n: int, seq: Any, step: Any, ts: list[float], key: Any, value: list[float]) -> None:
        """Append ``n`` points of one writer, column by column (iterables of length ``n``)."""
        self.writer_id += [writer_id] * n
        self.seq += seq
        self.step += step
        self.ts += ts
        self.key += key
        self.value += value

    def add(self, writer_id: str, seq: int, step: int, ts: float, key: str, value: float) -> None:
        """One point: ``extend`` with one row."""
        self.extend(writer_id, 1, (seq,), (step,), [ts], (key,), [value])

    def seq_ranges(self) -> dict[str, SeqRange]:
        return fold_seq_ranges(self.writer_id, self.seq)

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


ProjectName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_whole(r"^\x00-\x1f\x7f\ud800-\udfff/"))]


class RunCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs``. Idempotent on ``id``."""

    id: RunId | None = None
    project: ProjectName = "default"
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    config: dict[str, Any] | None = None
    writer_ids: list[WriterId] | None = None
    commit: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    diff_sha: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    # W&B's meanings. None: create, or return the run as it is (every rank creates it).
    # "allow": create, or re-open an existing run for ``writer_ids``; "must": re-open, 404
    # if there is none; "never": create, 409 if it exists.
    resume: Literal["allow", "must", "never"] | None = None


MAX_TAGS = 100
MAX_NOTES_BYTES = 64 << 10
RunTag = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RunUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PATCH /v1/runs/:id``: only the fields given change. ``config`` is merged
    into the run's config key by key; a key set to null is removed."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    tags: Annotated[list[RunTag], msgspec.Meta(max_length=MAX_TAGS)] | None = None
    notes: Annotated[str, msgspec.Meta(max_length=MAX_NOTES_BYTES)] | None = None
    config: dict[str, Any] | None = None


RunStatus = Annotated[str, msgspec.Meta(pattern=r"^(finished|failed|crashed|killed)$")]


class RunFinish(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs/:id/finish``: the writers' own totals feed the receipt."""

    status: RunStatus = "finished"
    writer_totals: dict[WriterId, Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]] = {}


class RunRewind(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs/:id/rewind``: open a new attempt of the run from ``step``
    (earlier attempts' points at steps >= ``step`` stop being shown; nothing is deleted).
    Every rank sends it with its ``writer_ids``; ranks of one restart share one attempt."""

    step: Step
    writer_ids: list[WriterId] = []


class RunFork(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/runs/:id/fork``: a new run ``id`` whose history below ``step`` is
    the parent's (read in place, not copied). Idempotent on ``id`` for the same parent and step."""

    step: Step
    id: RunId | None = None
    project: ProjectName | None = None
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    config: dict[str, Any] | None = None
    writer_ids: list[WriterId] | None = None


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/keys``."""

    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    #: ``read``, ``write``, ``admin``, ``launch`` (``arwx.tenancy.SCOPES``); omitted: read and write.
    scopes: Annotated[list[Annotated[str, msgspec.Meta(max_length=16)]], msgspec.Meta(max_length=8)] | None = None


MAX_BLOB_QUERY = 10_000


class BlobsMissing(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/blobs/missing``: SHA-256s (lowercase hex) to check."""

    shas: Annotated[list[str], msgspec.Meta(max_length=MAX_BLOB_QUERY)]


def decode_body(body: bytes, type_: type) -> Any:
    """Decode a small JSON request body into ``type_``; empty means all defaults."""
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as e:
        raise BadInput(str(e)) from None
    except RecursionError:
        raise BadInput(_TOO_DEEP) from None


def _depth(obj: Any) -> int:
    """Nesting levels of decoded JSON, without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        o, d = todo.pop()
        if isinstance(o, dict):
            o = o.values()
        elif not isinstance(o, list):
            continue
        deepest = max(deepest, d)
        if d > MAX_CONFIG_DEPTH:
            break
        todo.extend((v, d + 1) for v in o)
    return deepest


def check_config(config: dict | None) -> None:
    """A run config within the contract's bounds: ``BadInput`` if nested past
    ``MAX_CONFIG_DEPTH``, ``PayloadTooLarge`` past ``MAX_CONFIG_BYTES`` as JSON."""
    if not config:
        return
    if _depth(config) > MAX_CONFIG_DEPTH:
        raise BadInput(f"config is nested deeper than {MAX_CONFIG_DEPTH} levels")
    size = len(msgspec.json.encode(config))
    if size > MAX_CONFIG_BYTES:
        raise PayloadTooLarge(f"config is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}")
