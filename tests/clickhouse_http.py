"""The ClickHouse engine (chDB) behind ClickHouse's HTTP interface, for multi-process tests.

Why: a ClickHouse server cannot be installed on these machines (docs/distributed.md),
and chDB keeps one data path per process, so separate ``arwx gateway``,
``arwx consumer`` and ``arwx query`` processes could not share a store. This
process owns one chDB data path and answers the part of the HTTP interface
that ``clickhouse-connect`` (``arwx.store.clickhouse_store``) uses, so those
processes run unchanged with ``--clickhouse http://127.0.0.1:PORT``. The SQL
runs in the real engine; only the HTTP front is ours:

- ``GET /ping``; ``GET``/``POST /?query=…``: the SQL is the ``query`` URL
  parameter followed by the body; ``param_<name>`` are query parameters
  (ClickHouse's text form, handed to chDB as they come); any other URL
  parameter that is not transport is a setting, applied with ``SET`` for this
  query and reset after it;
- ``INSERT … FORMAT Arrow|ArrowStream`` with the data in the body (lz4 or zstd
  as ``Content-Encoding``): the body is read with pyarrow and inserted through
  chDB's ``Python()`` table function;
- an error answers 500 with ClickHouse's ``Code: N. DB::Exception`` text and
  ``X-ClickHouse-Exception-Code``, which the store classifies as a server would.

One chDB session, every request serialized behind one lock (chDB is not safe
for concurrent parameterized queries). Not a production server: a stand-in
for one ClickHouse node, used by tests/test_topology.py, scripts/topology and
bench/bench_capacity.py.

    python tests/clickhouse_http.py --data-dir DIR [--port N]   # prints "listening on http://…"

With ``--watch-stdin`` it stops when its standard input closes (its parent died).
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

# URL parameters of the HTTP protocol itself, not settings.
_TRANSPORT = {
    "query", "database", "session_id", "session_timeout", "session_check", "query_id", "compress",
    "decompress", "default_format", "wait_end_of_query", "buffer_size", "user", "password",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
    "http_zlib_compression_level", "role", "quota_key", "client_protocol_version",
}
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>[`\w.]+)\s*(?P<cols>\([^)]*\))?\s*(?:SETTINGS\s+(?P<settings>.*?))?\s*"
    r"FORMAT\s+(?P<fmt>\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")


def _decompress(body: bytes, encoding: str) -> bytes:
    enc = encoding.strip().lower()
    if not enc or enc == "identity":
        return body
    if enc == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if enc == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    if enc == "gzip":
        import gzip

        return gzip.decompress(body)
    if enc == "deflate":
        import zlib

        return zlib.decompress(body)
    if enc == "br":
        import brotli  # type: ignore[import-not-found]

        return brotli.decompress(body)
    raise ValueError(f"Content-Encoding {encoding!r} is not supported by this stand-in")


def _literal(value: str) -> str:
    """A setting's value as SQL: a number as it is, anything else a quoted string."""
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _arrow_table(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(body).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.BufferReader(body)).read_all()


class Engine:
    """One chDB session over ``data_dir``; one statement at a time."""

    def __init__(self, data_dir: str) -> None:
        from chdb import session

        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._session = session.Session(str(Path(data_dir).resolve()))
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def execute(self, sql: str, params: dict[str, str], settings: dict[str, str], body: bytes) -> tuple[bytes, str]:
        """Run one request's SQL; return the result bytes and their format."""
        for name in settings:
            if not _SETTING_NAME.match(name):
                raise ValueError(f"Code: 115. DB::Exception: Unknown setting {name!r}. (UNKNOWN_SETTING)")
        with self._lock:
            for name, value in settings.items():
                self._session.query(f"SET {name} = {_literal(value)}", "CSV")
            try:
                m = _INSERT.match(sql)
                if m and body:
                    return self._insert(m, body), "TabSeparated"
                if body:
                    sql = f"{sql}\n{body.decode()}"
                fmt_m = _FORMAT.search(sql)
                fmt = fmt_m.group(1) if fmt_m else "TabSeparated"
                res = self._session.query(sql, fmt, params=params) if params else self._session.query(sql, fmt)
                return (res.bytes() if res is not None else b""), fmt
            finally:
                for name in settings:
                    self._session.query(f"SET {name} = DEFAULT", "CSV")

    def _insert(self, m: re.Match[str], body: bytes) -> bytes:
        fmt = m.group("fmt")
        if fmt.lower() not in ("arrow", "arrowstream"):
            raise ValueError(f"Code: 73. DB::Exception: this stand-in inserts Arrow only, not {fmt}. (UNKNOWN_FORMAT)")
        arwx_batch = _arrow_table(body)  # noqa: F841 - read by chDB's Python() table function, by name
        cols = m.group("cols") or "(" + ", ".join(f"`{c}`" for c in arwx_batch.column_names) + ")"
        settings = f" SETTINGS {m.group('settings')}" if m.group("settings") else ""
        sql = f"INSERT INTO {m.group('table')} {cols}{settings} SELECT {cols[1:-1]} FROM Python(arwx_batch)"
        self._session.query(sql, "CSV")
        return b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine: Engine

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Timezone", "UTC")
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http-stand-in")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self._handle(body)

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/health"):
            self._answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        params = {k[6:]: v for k, v in args.items() if k.startswith("param_")}
        settings = {k: v for k, v in args.items() if not k.startswith("param_") and k not in _TRANSPORT}
        try:
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            sql = args.get("query", "")
            if not sql:
                sql, body = body.decode(), b""
            out, fmt = self.engine.execute(sql, params, settings, body)
        except Exception as e:  # the engine's error text carries ClickHouse's code
            text = str(e)
            code = _CODE.search(text)
            self._answer(
                500, text.encode(errors="replace"),
                {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001", "Content-Type": "text/plain"},
            )
            return
        self._answer(200, out, {"X-ClickHouse-Format": fmt, "Content-Type": "application/octet-stream",
                                "X-ClickHouse-Summary": '{"read_rows":"0","written_rows":"0"}'})


def serve(data_dir: str, port: int = 0) -> tuple[ThreadingHTTPServer, Engine]:
    """A started server (call ``serve_forever`` on it) and its engine."""
    engine = Engine(data_dir)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server, engine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="chDB behind ClickHouse's HTTP interface (a test stand-in)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--watch-stdin", action="store_true", help="stop when standard input closes")
    a = p.parse_args(argv)
    server, engine = serve(a.data_dir, a.port)
    if a.watch_stdin:
        def watch() -> None:
            sys.stdin.buffer.read()
            server.shutdown()

        threading.Thread(target=watch, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
