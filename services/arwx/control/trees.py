"""Comparing two code snapshots: which paths were added, removed or changed, and how.

A changed file gets a unified text diff when both sides are UTF-8 text of at
most ``text_cap`` bytes and the answer has not yet reached ``total_cap``
bytes of diff text; otherwise it says why not (binary, too large, over the
budget), so an answer stays bounded however big the trees are.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable

ReadBlob = Callable[[str, int], Awaitable[bytes | None]]


def _text(data: bytes | None) -> str | None:
    if data is None or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def diff_trees(
    a: str, b: str, ta: dict, tb: dict, read: ReadBlob, text_cap: int, total_cap: int
) -> dict:
    """The difference from tree ``ta`` (experiment ``a``) to ``tb`` (``b``)."""
    added = sorted(set(tb) - set(ta))
    removed = sorted(set(ta) - set(tb))
    changed: list[dict] = []
    budget = total_cap
    for path in sorted(set(ta) & set(tb)):
        ea, eb = ta[path], tb[path]
        if ea["sha256"] == eb["sha256"] and ea["mode"] == eb["mode"]:
            continue
        item: dict = {"path": path, "from": ea, "to": eb, "diff": None, "diff_omitted": None}
        if ea["sha256"] == eb["sha256"]:
            item["diff_omitted"] = "mode only"
        elif max(ea["size"], eb["size"]) > text_cap:
            item["diff_omitted"] = f"over the {text_cap}-byte per-file cap"
        elif budget <= 0:
            item["diff_omitted"] = f"over the {total_cap}-byte cap for the whole answer"
        else:
            old, new = _text(await read(ea["sha256"], text_cap)), _text(await read(eb["sha256"], text_cap))
            if old is None or new is None:
                item["diff_omitted"] = "binary (or unreadable) content"
            else:
                text = "".join(
                    difflib.unified_diff(
                        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
                    )
                )
                if len(text.encode()) > budget:
                    item["diff_omitted"] = f"over the {total_cap}-byte cap for the whole answer"
                else:
                    item["diff"] = text
                    budget -= len(text.encode())
        changed.append(item)
    return {
        "from": a,
        "to": b,
        "added": [{"path": p, **tb[p]} for p in added],
        "removed": [{"path": p, **ta[p]} for p in removed],
        "changed": changed,
        "unchanged": len(set(ta) & set(tb)) - len(changed),
    }
