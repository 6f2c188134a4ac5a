"""The running best: which decisions count toward the goal, and the staircase they draw.

Pure functions over decisions already read from the catalog (oldest
experiment first). Invariant: a point counts toward the goal when its
experiment's current decision is ``keep`` with a score, measured in the goal's
metric (or in no named metric); the best so far only ever improves in the
goal's direction, and the frontier is exactly the points where it improved.
The same rule is written in SQL in ``projects.best_scores``.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True, slots=True)
class Goal:
    """A project's objective: its metric, direction and optional target."""

    metric: str | None
    lower_is_better: bool
    target: float | None

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats ``b``."""
        return a < b if self.lower_is_better else a > b

    def met(self, best: float | None) -> bool | None:
        """Whether ``best`` reaches the target (None without a target)."""
        if self.target is None:
            return None
        if best is None:
            return False
        return best <= self.target if self.lower_is_better else best >= self.target

    def public(self) -> dict:
        return {"objective_metric": self.metric, "lower_is_better": self.lower_is_better, "target": self.target}


def counts(goal: Goal, status: str | None, score: float | None, metric: str | None) -> bool:
    """Whether a current decision feeds the running best."""
    return status == "keep" and score is not None and (metric is None or goal.metric is None or metric == goal.metric)


def progress(goal: Goal, rows: list[dict]) -> dict:
    """Every judged experiment in order with the best so far, and the frontier.

    ``rows``: experiments oldest first, each with ``experiment_id``, ``note``,
    ``session_id``, ``created_at`` and its current ``decision`` (or None).
    """
    points: list[dict] = []
    frontier: list[dict] = []
    best: float | None = None
    for row in rows:
        d = row.get("decision")
        if d is None or d.get("score") is None:
            continue
        improved = False
        if counts(goal, d["status"], d["score"], d.get("metric")) and (best is None or goal.better(d["score"], best)):
            best, improved = d["score"], True
        point = {
            "n": len(points),
            "experiment_id": row["experiment_id"],
            "session_id": row["session_id"],
            "note": row["note"],
            "status": d["status"],
            "score": d["score"],
            "metric": d.get("metric"),
            "best": best,
            "improved": improved,
            "decided_at": d["decided_at"],
        }
        points.append(point)
        if improved:
            frontier.append(point)
    return {**goal.public(), "best": best, "target_met": goal.met(best), "points": points, "frontier": frontier}


def svg(title: str, goal: Goal, prog: dict, width: int = 640, height: int = 240) -> str:
    """The progress as a standalone SVG: kept and dropped scores as dots, the
    running best as a staircase, the target as a dashed line. Every piece of
    text is XML-escaped (titles and metric names are user input)."""
    pad_l, pad_r, pad_t, pad_b = 56, 16, 28, 28
    pts = prog["points"]
    values = [p["score"] for p in pts] + ([goal.target] if goal.target is not None else [])
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    n = max(len(pts) - 1, 1)
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b

    def x(i: int) -> float:
        return pad_l + pw * i / n

    def y(v: float) -> float:
        return pad_t + ph * (hi - v) / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{pad_l}" y="16" font-size="13">{escape(title)}</text>',
        f'<line x1="{pad_l}" y1="{pad_t + ph}" x2="{pad_l + pw}" y2="{pad_t + ph}" stroke="#999"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + ph}" stroke="#999"/>',
        f'<text x="4" y="{pad_t + 4}">{escape(_num(hi))}</text>',
        f'<text x="4" y="{pad_t + ph}">{escape(_num(lo))}</text>',
        f'<text x="{pad_l}" y="{height - 8}">{escape(goal.metric or "score")}'
        f' ({"lower" if goal.lower_is_better else "higher"} is better), {len(pts)} decisions</text>',
    ]
    if goal.target is not None:
        ty = y(goal.target)
        out.append(f'<line x1="{pad_l}" y1="{ty:.1f}" x2="{pad_l + pw}" y2="{ty:.1f}" stroke="#c33" stroke-dasharray="4 3"/>')
    steps: list[str] = []
    for p in pts:
        if p["best"] is None:
            continue
        px, py = x(p["n"]), y(p["best"])
        steps.append(f"{'M' if not steps else 'H'}{px:.1f}" + (f" {py:.1f}" if not steps else f" V{py:.1f}"))
    if steps:
        steps.append(f"H{x(len(pts) - 1):.1f}")
        out.append(f'<path d="{" ".join(steps)}" fill="none" stroke="#2a6" stroke-width="2"/>')
    for p in pts:
        color = "#2a6" if p["status"] == "keep" else "#aaa"
        out.append(f'<circle cx="{x(p["n"]):.1f}" cy="{y(p["score"]):.1f}" r="3" fill="{color}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _num(v: float) -> str:
    return f"{v:.4g}"
