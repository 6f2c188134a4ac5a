"""``search_runs`` filters and orderings, MLflow's grammar, evaluated on a run's values.

A filter is clauses joined by ``AND``: ``<entity>.<key> <op> <value>`` where
the entity is ``metrics``, ``params``, ``tags`` or ``attributes`` (each with
MLflow's aliases; a bare name is an attribute), the key may be quoted or
backticked, and ``op`` is one of ``= != < <= > >= LIKE ILIKE IN NOT IN IS
NULL IS NOT NULL``. Anything else is a ``BadFilter`` naming what was wrong
(the client shows it as ``INVALID_PARAMETER_VALUE``). A run without the
compared metric/param/tag does not match (as in MLflow).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arwx.wire import BadInput

_ENTITIES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
    "dataset": "datasets", "datasets": "datasets",
}
_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<bt>`[^`]*`)"""
    r"""|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)|(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.]))"""
    r"""|(?P<word>[A-Za-z_]\w*(?:\.(?:`[^`]*`|"[^"]*"|'[^']*'|[\w.]*))?))"""
)
_ATTRIBUTES = frozenset({"run_id", "run_name", "status", "start_time", "end_time", "user_id", "artifact_uri",
               "lifecycle_stage", "experiment_id", "created", "Created", "run_uuid"})


class BadFilter(BadInput):
    """A filter or order-by this adapter cannot evaluate."""


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"`":
        return s[1:-1].replace("\\" + s[0], s[0])
    return s


def _tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            raise BadFilter(f"cannot parse the filter at {text[i:i + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind).strip()))
        i = m.end()
    return out


def _identifier(kind: str, tok: str, attributes: frozenset[str]) -> tuple[str, str]:
    """(entity, key) of ``metrics.loss``, ``params."a b"``, ``status``."""
    if kind == "bt":
        return "attributes", _unquote(tok)
    head, dot, rest = tok.partition(".")
    if dot and head.lower() in _ENTITIES:
        entity = _ENTITIES[head.lower()]
        if entity == "datasets":
            raise BadFilter("filtering on datasets is not supported by this server")
        return entity, _unquote(rest)
    if tok in attributes:
        return "attributes", tok
    raise BadFilter(f"invalid identifier {tok!r}: use metrics.<key>, params.<key>, tags.<key> or an attribute")


@dataclass(frozen=True)
class Clause:
    entity: str
    key: str
    op: str
    value: Any


def parse_filter(text: str | None, attributes: frozenset[str] = _ATTRIBUTES) -> list[Clause]:
    """The clauses of ``text`` (all must hold); a bare name must be one of ``attributes``."""
    if text is not None and not isinstance(text, str):
        raise BadFilter("filter must be a string")
    if not text or not text.strip():
        return []
    toks = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while i < len(toks):
        kind, tok = toks[i]
        if kind not in ("word", "bt"):
            raise BadFilter(f"expected an identifier, got {tok!r}")
        entity, key = _identifier(kind, tok, attributes)
        i += 1
        if i >= len(toks):
            raise BadFilter(f"{tok!r} has no comparison")
        kind, tok = toks[i]
        op = tok.upper()
        if kind == "word" and op == "NOT" and i + 1 < len(toks) and toks[i + 1][1].upper() == "IN":
            op, i = "NOT IN", i + 1
        elif kind == "word" and op == "IS":
            if i + 1 < len(toks) and toks[i + 1][1].upper() == "NOT":
                op, i = "IS NOT NULL", i + 1
            else:
                op = "IS NULL"
            if i + 1 >= len(toks) or toks[i + 1][1].upper() != "NULL":
                raise BadFilter("IS must be followed by NULL or NOT NULL")
            i += 1
        elif op == "<>":
            op = "!="
        elif op not in ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN"):
            raise BadFilter(f"unsupported comparison {tok!r}")
        i += 1
        value: Any = None
        if op in ("IN", "NOT IN"):
            if i >= len(toks) or toks[i][1] != "(":
                raise BadFilter(f"{op} needs a parenthesized list of values")
            value, i = [], i + 1
            while i < len(toks) and toks[i][1] != ")":
                k, t = toks[i]
                if k == "str":
                    value.append(_unquote(t))
                elif k == "num":
                    value.append(t)
                elif t != ",":
                    raise BadFilter(f"unexpected {t!r} in the {op} list")
                i += 1
            if i >= len(toks):
                raise BadFilter(f"the {op} list is not closed")
            i += 1
        elif op not in ("IS NULL", "IS NOT NULL"):
            if i >= len(toks) or toks[i][0] not in ("str", "num"):
                raise BadFilter(f"expected a quoted string or a number after {op}")
            k, t = toks[i]
            value = float(t) if k == "num" else _unquote(t)
            i += 1
        if entity == "metrics" and op not in ("IS NULL", "IS NOT NULL", "IN", "NOT IN") and not isinstance(value, float):
            raise BadFilter(f"metrics.{key} must be compared with a number")
        clauses.append(Clause(entity, key, op, value))
        if i < len(toks):
            if toks[i][1].upper() != "AND":
                raise BadFilter(f"expected AND between clauses, got {toks[i][1]!r} (OR is not supported)")
            i += 1
            if i >= len(toks):
                raise BadFilter("the filter ends with AND")
    return clauses


def _like(pattern: str, flags: int = 0) -> re.Pattern:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{rx}$", flags | re.DOTALL)


def _compare(have: Any, op: str, want: Any) -> bool:
    if op == "IS NULL":
        return have is None
    if op == "IS NOT NULL":
        return have is not None
    if have is None:
        return False
    if op in ("IN", "NOT IN"):
        inside = str(have) in [str(w) for w in want]
        return inside if op == "IN" else not inside
    if op == "LIKE":
        return bool(_like(str(want)).match(str(have)))
    if op == "ILIKE":
        return bool(_like(str(want), re.IGNORECASE).match(str(have)))
    if isinstance(want, float) and not isinstance(have, (int, float)):
        try:
            have = float(have)
        except ValueError:
            return False
    if isinstance(have, (int, float)) and isinstance(want, str):
        try:
            want = float(want)
        except ValueError:
            return False
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }
    return ops[op](have, want)


Lookup = Callable[[str, str], Any]  # (entity, key) -> the run's value or None


def matches(clauses: list[Clause], value_of: Lookup) -> bool:
    return all(_compare(value_of(c.entity, c.key), c.op, c.value) for c in clauses)


@dataclass(frozen=True)
class Order:
    entity: str
    key: str
    ascending: bool


def parse_order_by(items: list[str]) -> list[Order]:
    """``["metrics.loss DESC", "start_time"]`` → orderings (ascending unless DESC)."""
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise BadFilter("order_by must be a list of strings")
    out = []
    for item in items:
        toks = _tokens(item)
        if not toks or len(toks) > 2:
            raise BadFilter(f"invalid order_by {item!r}: expected '<identifier> [ASC|DESC]'")
        kind, tok = toks[0]
        if kind not in ("word", "bt"):
            raise BadFilter(f"invalid order_by {item!r}")
        entity, key = _identifier(kind, tok, _ATTRIBUTES)
        direction = toks[1][1].upper() if len(toks) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise BadFilter(f"invalid order_by direction {toks[1][1]!r}: ASC or DESC")
        out.append(Order(entity, key, direction == "ASC"))
    return out


def sort_runs(runs: list, orders: list[Order], value_of: Callable[[Any, str, str], Any]) -> list:
    """Runs in ``orders`` (then start_time DESC, run id), runs lacking a value last (as MLflow)."""
    out = sorted(runs, key=lambda r: (-value_of(r, "attributes", "start_time"), value_of(r, "attributes", "run_id")))
    for o in reversed(orders):
        present = [r for r in out if value_of(r, o.entity, o.key) is not None]
        absent = [r for r in out if value_of(r, o.entity, o.key) is None]
        present.sort(key=lambda r: value_of(r, o.entity, o.key), reverse=not o.ascending)
        out = present + absent
    return out
