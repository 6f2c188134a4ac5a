"""``arwandb sync [PATH]`` / ``python -m arwandb sync [PATH]``: upload spooled runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from arwandb._sync import sync


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 when nothing is left pending."""
    p = argparse.ArgumentParser(prog="arwandb", description="arwx SDK tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sync", help="upload spooled runs (offline, crashed, or unfinished uploads)")
    s.add_argument(
        "path", nargs="?", default=None, help="run folder, arwandb folder, or its parent (default: cwd)"
    )
    s.add_argument(
        "--base-url", default=None, help="server URL (default ARWANDB_BASE_URL, then the run's own)"
    )
    s.add_argument("--api-key", default=None, help="API key (default ARWANDB_API_KEY)")
    s.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to keep retrying per run (default 120)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    summary = sync(args.path, base_url=args.base_url, api_key=args.api_key, timeout=args.timeout)
    print(json.dumps(summary, indent=2))
    return 1 if summary["pending"] else 0


if __name__ == "__main__":
    sys.exit(main())
