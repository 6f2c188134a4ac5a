"""An in-memory arwx ingest API behind the uploader's ``Transport`` protocol: no sockets, no threads."""

from __future__ import annotations

import json
import threading
from typing import Any

from arwandb.columns import CONTENT_TYPE as COLUMNS_TYPE
from arwandb.uploader import Response


def points_of(body: bytes, content_type: str) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """The points of a ``POST /v1/ingest`` body, JSON batch or columns, with the batch's ids."""
    doc = json.loads(body or b"{}")
    if content_type == COLUMNS_TYPE:
        n = len(doc["seq"])
        pts = [{"seq": doc["seq"][i], "step": doc["step"][i], "key": doc["keys"][doc["key"][i]],
                "value": doc["value"][i], **({"ts": doc["ts"][i]} if "ts" in doc else {})} for i in range(n)]
        return pts, doc["run_id"], doc["writer_id"]
    return doc["points"], doc.get("run_id"), doc.get("writer_id")


class MemoryTransport:
    """Answers like the server (runs, batch and stream ingest, finish); ``down`` makes every
    request fail the way an unreachable server does."""

    def __init__(self) -> None:
        self.timeout = 1.0
        self.down = False
        self.closed = False
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.content_types: list[str] = []  # of each ingest request
        self.runs: dict[str, dict[str, Any]] = {}
        self.points: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.finishes: list[dict[str, Any]] = []

    def close(self) -> None:
        self.closed = True

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Response:
        if self.down:
            raise ConnectionRefusedError("memory transport is down")
        with self.lock:
            self.calls.append((method, path))
            if path == "/v1/runs":
                doc = json.loads(body or b"{}")
                self.runs.setdefault(doc["id"], doc)
                return self._json(201, doc)
            if path.endswith("/finish"):
                self.finishes.append(json.loads(body or b"{}"))
                return self._json(200, {})
            if path.startswith("/v1/ingest"):
                self.content_types.append(content_type)
            if path == "/v1/ingest":
                batch, run_id, writer_id = points_of(body or b"", content_type)
                pts = [{"run_id": run_id, "writer_id": writer_id, **p} for p in batch]
            elif path == "/v1/ingest/stream":
                pts = [json.loads(line) for line in (body or b"").splitlines() if line]
            else:
                return self._json(404, {"error": "no route"})
            if any(p["run_id"] not in self.runs for p in pts):
                return self._json(404, {"error": "unknown run"})
            for p in pts:
                self.points.setdefault((p["run_id"], p["writer_id"], p["seq"]), p)
            return self._json(200, {"points": len(pts)})

    @staticmethod
    def _json(status: int, doc: Any) -> Response:
        return Response(status, {"content-type": "application/json"}, json.dumps(doc).encode())

    def seqs(self, run_id: str, writer_id: str) -> list[int]:
        with self.lock:
            return sorted(s for r, w, s in self.points if (r, w) == (run_id, writer_id))
