"""Turning logged rows into wire lines (runs on the spooler thread, never on the caller's)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

logger = logging.getLogger("arwandb")
MAX_KEY = 256
_BOOL_TYPE_NAMES = {"bool", "bool_"}  # numpy.bool_ / numpy.bool: a flag, not a metric


def value_json(v: Any) -> str | None:
    """JSON text of a finite number, or None for NaN/inf/bool/non-numeric (the point is sent as null)."""
    t = type(v)
    if t is float:
        return repr(v) if v - v == 0.0 else None  # inf - inf and nan - nan are nan
    if t is int:
        try:
            return repr(float(v))
        except OverflowError:
            return None
    if t is bool or isinstance(v, (str, bytes, bytearray)) or t.__name__ in _BOOL_TYPE_NAMES:
        return None
    try:  # numpy scalars, 0-d tensors, Decimal, Fraction ...
        f = float(v)
    except Exception:  # noqa: BLE001 - anything unconvertible is just skipped
        return None
    return repr(f) if f - f == 0.0 else None


def _sanitize_key(k: Any) -> str:
    s = k if isinstance(k, str) else str(k)
    # The gateway refuses control characters and "," (keys= on reads is comma-separated).
    s = "".join(c if c >= " " and c not in "\x7f," else "_" for c in s)[:MAX_KEY]
    return s or "_"


class PointEncoder:
    """Encodes (step, ts, metrics) rows into NDJSON lines with contiguous seqs for one writer."""

    def __init__(self, run_id: str, writer_id: str) -> None:
        self.head = f'{{"run_id":{json.dumps(run_id)},"writer_id":{json.dumps(writer_id)},"seq":'
        self._keys: dict[Any, str] = {}
        self.skipped = 0
        self.points = 0

    def _key(self, k: Any) -> str:
        j = self._keys.get(k)
        if j is None:
            s = _sanitize_key(k)
            if s != k:
                logger.warning("arwandb: metric name %r is not valid on the wire; logging it as %r", k, s)
            j = self._keys[k] = json.dumps(s)
        return j

    def _flat(self, metrics: Mapping[Any, Any], prefix: str) -> Iterable[tuple[Any, Any]]:
        for k, v in metrics.items():
            if isinstance(v, Mapping):  # W&B flattens nested dicts into dotted names
                yield from self._flat(v, f"{prefix}{k}.")
            elif prefix:
                yield f"{prefix}{k}", v
            else:
                yield k, v

    def encode(
        self, rows: Iterable[tuple[int, float, Mapping[Any, Any]]], seq: int
    ) -> tuple[bytes, int, int, Columns]:
        """Returns (lines, number of points, last step, the same points as columns); seqs start
        at ``seq`` in row order. The columns hold JSON text (what the lines say), so an upload
        can send them without reading the lines back."""
        parts: list[str] = []
        head = self.head
        key = self._key
        start = seq
        last_step = -1
        steps: list[str] = []
        tss: list[str] = []
        keys: list[str] = []
        vals: list[str] = []
        for step, ts, metrics in rows:
            ts_s = repr(ts)
            step_s = str(step)
            tail = f',"ts":{ts_s}}}\n'
            mid = f',"step":{step_s},"key":'
            last_step = step
            row_start = seq
            for k, v in self._flat(metrics, ""):
                val = value_json(v)
                if val is None:
                    self.skipped += 1
                    val = "null"
                kj = key(k)
                parts.append(f'{head}{seq}{mid}{kj},"value":{val}{tail}')
                keys.append(kj)
                vals.append(val)
                seq += 1
            steps += [step_s] * (seq - row_start)
            tss += [ts_s] * (seq - row_start)
        n = seq - start
        self.points += n
        return "".join(parts).encode(), n, last_step, Columns(start, steps, keys, vals, tss)


class Columns(NamedTuple):
    """Points with seqs ``first_seq`` on, column by column, each cell JSON text."""

    first_seq: int
    step: list[str]
    key: list[str]
    value: list[str]
    ts: list[str]
