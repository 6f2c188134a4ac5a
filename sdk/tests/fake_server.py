"""A stdlib stand-in for the arwx ingest API, for pure SDK behaviour tests (retry, set-aside, spool)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from memory_transport import COLUMNS_TYPE, points_of


class FakeServer:
    """Stores points deduplicated on (run, writer, seq). ``script`` holds canned answers to use first."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.finishes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int, float]] = []  # (method, path, status, monotonic time)
        self.script: list[tuple[int, dict[str, str]]] = []  # (status, headers) for the next ingest calls
        self.bad_key = "bad\u2603key"  # points with this key are refused as bad input
        self.columns = True  # False: answer columnar bodies as a server from before them does
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, run_id: str | None = None, writer_id: str | None = None) -> int:
        with self.lock:
            return sum(1 for (r, w, _) in self.points if (run_id in (None, r)) and (writer_id in (None, w)))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(
                self, status: int, body: Any, headers: dict[str, str] | None = None, store: tuple | None = None
            ) -> None:
                # Points stored and the request logged in one step, before the answer: a test that
                # sees the points also sees the request that brought them.
                with srv.lock:
                    if store is not None:
                        self._store(*store)
                    srv.requests.append((self.command, self.path, status, time.monotonic()))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/v1/ingest"):
                    with srv.lock:
                        canned = srv.script.pop(0) if srv.script else None
                    if canned:
                        return self._send(canned[0], {"error": "canned"}, canned[1])
                    if self.path == "/v1/ingest":
                        ctype = self.headers.get("Content-Type", "")
                        if ctype == COLUMNS_TYPE and not srv.columns:  # as a server from before columns
                            return self._send(400, {"error": "bad input: Object missing required field `points`"})
                        pts, run_id, writer_id = points_of(body, ctype)
                        for i, p in enumerate(pts):
                            if p["key"] == srv.bad_key:
                                return self._send(400, {"error": f"bad input: points[{i}].key"})
                            if p.get("run_id", run_id) not in srv.runs:
                                return self._send(404, {"error": "unknown run"})
                        return self._send(200, {"points": len(pts)}, store=(pts, run_id, writer_id))
                    errors, good = [], []
                    for n, line in enumerate(body.splitlines(), 1):
                        p = json.loads(line)
                        if p["key"] == srv.bad_key:
                            errors.append({"line": n, "reason": "bad key"})
                        else:
                            good.append(p)
                    out = {"points": len(good), "rejected": len(errors), "errors": errors}
                    return self._send(400 if errors else 200, out, store=(good, None, None))
                if self.path == "/v1/runs":
                    doc = json.loads(body)
                    with srv.lock:
                        srv.runs.setdefault(doc["id"], doc)
                    return self._send(201, {**doc, "status": "running"})
                if self.path.endswith("/finish"):
                    doc = json.loads(body)
                    with srv.lock:
                        srv.finishes.append(doc)
                    return self._send(200, {"status": doc["status"]})
                self._send(404, {"error": "no route"})

            def _store(self, pts: list[dict[str, Any]], run_id: str | None, writer_id: str | None) -> None:
                """Keep the points (the caller holds ``srv.lock``)."""
                for p in pts:
                    k = (p.get("run_id") or run_id, p.get("writer_id") or writer_id, p["seq"])
                    srv.points.setdefault(k, p)

        return H
