"""``arwx server`` with chosen roles on the embedded log (bench only).

The CLI runs a single role only in distributed mode (Kafka + ClickHouse); the
accept-only benchmark needs the gateway (and query, for /health and runs)
without the consumer on the embedded log, so it starts ``Server`` directly:

    python bench/_serve_roles.py gateway,query server --port 8080 --data-dir DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from arwx import cli  # noqa: E402
from arwx.config import resolve  # noqa: E402
from arwx.logging_setup import setup_logging  # noqa: E402

if __name__ == "__main__":
    roles = frozenset(sys.argv[1].split(","))
    args = cli._parser().parse_args(sys.argv[2:])
    settings = resolve(args)
    setup_logging(settings.log_level, settings.log_format)
    sys.exit(asyncio.run(cli._run_service(settings, roles)))
