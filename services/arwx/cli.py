"""``arwx``: run the services and manage API keys.

    arwx server                  every role in one process (embedded by default)
    arwx gateway|consumer|query  one role each (distributed: Kafka + ClickHouse); see arwx.roles
    arwx keys create|list|revoke API keys, straight on the store
    arwx users create|list|set-password  dashboard accounts, straight on the catalog
    arwx blobs gc [--dry-run]    delete blobs no catalog row names (docs/operations.md)
    arwx runner                  execute Wild V2 runs (docs/runner.md); a separate process, own key
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from arwx.config import OPTIONS, RUNNER_OPTIONS, ConfigError, Settings, add_arguments, resolve
from arwx.datadir import StartRefused
from arwx.logging_setup import setup_logging
from arwx.roles import ROLES, SERVER_ROLES, unmet_alone_need
from arwx.server import Server, wait_stop_or_death

if TYPE_CHECKING:  # imported where used: `arwx server` does not load the offline tools
    from arwx.accounts.service import Accounts
    from arwx.tenancy import Tenancy

log = logging.getLogger("arwx")


def _service_help() -> dict[str, str]:
    """One subcommand per role of the registry (read when the parser is built), and ``server``
    for every role of ``arwx server`` in one process."""
    return {
        "server": f"run {', '.join(r for r in ROLES if r in SERVER_ROLES)} in one process (embedded by default)",
        **{name: role.help for name, role in ROLES.items()},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arwx", description="arwx metrics ingest pipeline")
    sub = p.add_subparsers(dest="command", required=True)
    service_opts = [o.name for o in OPTIONS if o.name not in RUNNER_OPTIONS]
    for name, help_ in _service_help().items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_arguments(sp, service_opts)
        if name == "server":
            sp.add_argument(
                "--rebuild-store", action="store_true",
                help="the store was lost but the embedded log kept: rebuild the store from what the log holds",
            )
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    store_opts = ["data_dir", "clickhouse_url", "catalog_url", "log_level", "log_format"]
    c = keys.add_parser("create", help="create a key (and its organization if new); prints the secret once")
    c.add_argument("--org", default="default", help="organization name (created if missing)")
    c.add_argument("--name", default="", help="a label for the key")
    c.add_argument(
        "--scopes", default="read,write", type=_scopes,
        help="what the key may do, comma-separated: read, write, admin (manage keys), launch (default: read,write)",
    )
    add_arguments(c, store_opts)
    ls = keys.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--org", default=None, help="only this organization")
    add_arguments(ls, store_opts)
    r = keys.add_parser("revoke", help="revoke a key by id")
    r.add_argument("key_id")
    add_arguments(r, store_opts)
    users = sub.add_parser("users", help="manage dashboard accounts").add_subparsers(dest="users_command", required=True)
    uc = users.add_parser(
        "create", help="make an account a member of an organization (created if new); "
        "without --password-stdin prints a one-time set-password token",
    )
    uc.add_argument("--email", required=True)
    uc.add_argument("--org", default="default", help="organization name (created if missing)")
    uc.add_argument("--role", default="member", help="admin, member or viewer (default member)")
    uc.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add_arguments(uc, store_opts)
    ul = users.add_parser("list", help="list accounts and their organizations (never passwords)")
    add_arguments(ul, store_opts)
    up = users.add_parser("set-password", help="set an account's password from stdin; its sessions end")
    up.add_argument("--email", required=True)
    add_arguments(up, store_opts)
    blobs = sub.add_parser("blobs", help="manage the blob store").add_subparsers(dest="blobs_command", required=True)
    gc = blobs.add_parser(
        "gc", help="delete blobs that no catalog row names and nothing used within the grace period "
        "(safe beside running servers and other collectors)",
    )
    gc.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    gc.add_argument(
        "--grace", type=_seconds, default=None, metavar="SECONDS",
        help="keep what was used more recently than this (default: blob_gc_grace_s); under 1200 is unsafe "
        "beside running servers",
    )
    add_arguments(gc, ["data_dir", "catalog_url", "blobs_url", "blob_gc_grace_s", "log_level", "log_format"])
    runner_help = "execute queued Wild V2 runs of this key's organization (remote code execution: docs/runner.md)"
    rn = sub.add_parser("runner", help=runner_help, description=runner_help)
    add_arguments(rn, [*sorted(RUNNER_OPTIONS), "log_level", "log_format"])
    return p


async def _run_service(settings: Settings, roles: frozenset[str], rebuild_store: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(settings, roles, rebuild_store=rebuild_store)
    try:
        await server.start()
    except StartRefused as e:
        await server.stop()
        print(f"arwx: refusing to start: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        await server.stop()
        print(f"arwx: could not start: {e}", file=sys.stderr)
        return 1
    if server.notice:
        print(f"arwx: {server.notice}", flush=True)
    mode = "kafka" if settings.kafka_bootstrap else "embedded log"
    store = "ClickHouse server" if settings.clickhouse_url else f"chDB in {settings.data_path}"
    if server.catalog is not None:
        store += f", catalog {server.catalog.display}"
    # The key before "listening on": whoever waits for that line (a test, a script)
    # must find the key already printed.
    if server.first_key:
        print(
            "First start: created organization 'default' and an API key (shown only now):\n"
            f"  export ARWANDB_BASE_URL={server.url}\n"
            f"  export ARWANDB_API_KEY={server.first_key}",
            flush=True,
        )
    if server.first_password_token:
        hours = settings.password_token_ttl_s / 3600
        print(
            f"Create the first dashboard account (an admin of 'default'; one-time link, valid {hours:g} h):\n"
            f"  {server.url}/setup?token={server.first_password_token}\n"
            "  (the page posts it to /v1/auth/setup with your email and password; docs/accounts.md)",
            flush=True,
        )
    if server.url:
        print(f"arwx {'+'.join(sorted(roles))} listening on {server.url} ({mode}, {store})", flush=True)
    else:
        print(f"arwx {'+'.join(sorted(roles))} running ({mode}, {store})", flush=True)
    if server.ops_url:
        print(f"arwx ops listener on {server.ops_url} (/metrics, /ready, /health)", flush=True)
    log.info("started", extra={"roles": sorted(roles), "url": server.url, "ops_url": server.ops_url})
    if not await wait_stop_or_death(server, stop):
        # Loud and non-zero: a supervisor restarts us; half alive, we would ack what nothing consumes.
        print(f"arwx: a background task died ({server.fatal!r}); stopping with exit code 1", file=sys.stderr, flush=True)
        log.critical("stopping: a background task died", extra={"error": repr(server.fatal)})
        await server.stop()
        return 1
    print("arwx: stopping (finishing requests, flushing the consumer)", flush=True)
    log.info("stopping")
    await server.stop()
    log.info("stopped")
    return 0


def _scopes(text: str) -> frozenset[str]:
    from arwx.tenancy import BadScopes, parse_scopes

    try:
        return parse_scopes(text)
    except BadScopes as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be >= 0")
    return v


async def _blobs_gc(args: argparse.Namespace, settings: Settings) -> int:
    """``arwx blobs gc``: needs the catalog and the blob store only, not ClickHouse, so it runs
    beside a server (also an embedded one) and beside other collectors."""
    import json

    from arwx.blobs.gc import GcRefused, collect
    from arwx.catalog import Catalog, CatalogError
    from arwx.components import open_blob_store
    from arwx.config import MIN_GC_GRACE_S
    from arwx.store.base import StoreUnavailable

    grace = settings.blob_gc_grace_s if args.grace is None else args.grace
    if grace < MIN_GC_GRACE_S:
        print(f"arwx blobs gc: warning: a grace of {grace:g} s may delete a blob a client is naming right now "
              f"(safe: at least {MIN_GC_GRACE_S:g} s)", file=sys.stderr)
    catalog = Catalog.open(settings.catalog_url, settings.data_path)
    if not catalog.exists():
        print(f"arwx blobs gc: no catalog at {catalog.display} (wrong --data-dir or --catalog?); nothing deleted",
              file=sys.stderr)
        return 1
    blobs = open_blob_store(settings)
    try:
        await catalog.start()
        await blobs.start()
        report = await collect(blobs, catalog, grace, dry_run=args.dry_run)
    except (CatalogError, GcRefused, StoreUnavailable, OSError) as e:
        print(f"arwx blobs gc: {e}", file=sys.stderr)
        return 1
    finally:
        await blobs.stop()
        await catalog.stop()
    print(json.dumps(report.as_dict()))
    return 0


async def _offline(args: argparse.Namespace, settings: Settings) -> int:
    """``arwx keys`` and ``arwx users``: open the store and its catalog, do the one thing, close."""
    from arwx.accounts.service import Accounts
    from arwx.catalog import CatalogError
    from arwx.catalog.startup import open_catalog
    from arwx.components import open_store, store_name
    from arwx.datadir import StartRefused, check_catalog
    from arwx.store.schema import apply_schema
    from arwx.tenancy import Tenancy

    store = open_store(settings)
    try:
        await store.start()
    except Exception as e:
        print(
            f"arwx {args.command}: cannot open the store ({e}).\n"
            "If `arwx server` is running on this data directory, stop it first or use the HTTP API "
            "(/v1/keys, /v1/users) with a key.",
            file=sys.stderr,
        )
        return 1
    catalog = None
    try:
        await apply_schema(store)
        try:
            catalog = await open_catalog(settings.catalog_url, settings.data_path, store)
            await check_catalog(catalog, store, store_name(settings))
        except (CatalogError, StartRefused) as e:
            print(f"arwx {args.command}: {e}", file=sys.stderr)
            return 1
        tenancy = Tenancy(catalog)
        if args.command == "users":
            return await _users(args, settings, tenancy, Accounts(catalog, settings.session_ttl_s, settings.password_token_ttl_s))
        if args.keys_command == "create":
            org = await tenancy.find_org(args.org) or await tenancy.create_org(args.org)
            key, secret = await tenancy.create_key(org, args.name, args.scopes)
            print(
                f"id: {key.key_id}\norg: {args.org} ({org})\nscopes: {','.join(key.public()['scopes'])}\n"
                f"key: {secret}\n(the key is shown only now)"
            )
        elif args.keys_command == "list":
            names = dict(await tenancy.orgs())
            org = None
            if args.org:
                org = await tenancy.find_org(args.org)
                if org is None:
                    print(f"arwx keys: no organization named {args.org!r}", file=sys.stderr)
                    return 1
            for k in await tenancy.list_keys(org):
                state = "revoked" if k.revoked_at_ms is not None else "active"
                scopes = ",".join(k.public()["scopes"])
                print(f"{k.key_id}\t{names.get(k.org, k.org)}\t{k.prefix}…\t{state}\t{scopes}\t{k.name}")
        else:
            key = await tenancy.revoke_key(None, args.key_id)
            if key is None:
                print(f"arwx keys: no key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"revoked {key.key_id}")
        return 0
    finally:
        if catalog is not None:
            await catalog.stop()
        await store.stop()


async def _users(args: argparse.Namespace, settings: Settings, tenancy: Tenancy, accounts: Accounts) -> int:
    from arwx.accounts.passwords import WeakPassword
    from arwx.accounts.service import AccountError, AlreadyMember

    reads_password = args.users_command == "set-password" or getattr(args, "password_stdin", False)
    password = sys.stdin.readline().rstrip("\r\n") if reads_password else None
    try:
        if args.users_command == "create":
            org = await tenancy.find_org(args.org) or await tenancy.create_org(args.org)
            member, created = await accounts.create_user(args.email, org, args.role, password)
            print(f"id: {member.user.user_id}\nemail: {member.user.email}\norg: {args.org} ({org})\nrole: {member.role}")
            if not created:
                print("(an existing account: its password is unchanged)")
            if not member.has_password:
                token = await accounts.password_token(org, member.role, member.user.user_id)
                hours = settings.password_token_ttl_s / 3600
                print(
                    f"set-password link (one-time, valid {hours:g} h; shown only now): /setup?token={token}\n"
                    "  open it on the server's address, or POST the token to /v1/auth/setup (docs/accounts.md)"
                )
        elif args.users_command == "set-password":
            if not await accounts.set_password(args.email, password or ""):
                print(f"arwx users: no account with email {args.email!r}", file=sys.stderr)
                return 1
            print(f"password set for {args.email.strip().lower()}; its sessions ended")
        else:
            names = dict(await tenancy.orgs())
            for org in names:
                for m in await accounts.members(org):
                    state = "password set" if m.has_password else "no password yet"
                    print(f"{m.user.user_id}\t{m.user.email}\t{names[org]}\t{m.role}\t{state}")
    except (AccountError, AlreadyMember, WeakPassword) as e:
        print(f"arwx users: {e}", file=sys.stderr)
        return 1
async def _runner(settings: Settings) -> int:
    import secrets
    import socket
    from pathlib import Path

    from arwx.runner.agent import Runner, RunnerSettings

    if not settings.runner_key:
        print("arwx runner: needs its own API key with the launch scope: ARWX_RUNNER_KEY (or --runner-key)",
              file=sys.stderr)
        return 2
    # Commands inherit this thread's signal mask: start them with nothing blocked, whatever the
    # runner inherited (a parent that loaded ClickHouse's engine blocks SIGPIPE in its threads; a
    # command's `yes | head` then printed "Broken pipe" instead of ending quietly).
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    runner = Runner(RunnerSettings(
        server=settings.runner_server, key=settings.runner_key, root=Path(settings.runner_root).expanduser(),
        runner_id=settings.runner_id or f"{socket.gethostname()[:40]}-{secrets.token_hex(3)}",
        concurrency=settings.runner_concurrency, max_wall_s=settings.runner_max_wall_s,
        stop_grace_s=settings.runner_stop_grace_s, heartbeat_s=settings.runner_heartbeat_s,
        poll_s=settings.runner_poll_s, log_cap_bytes=settings.runner_log_cap_bytes,
    ))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    print(f"arwx runner {runner.s.runner_id} taking runs from {settings.runner_server} "
          f"(root {runner.s.root}, concurrency {runner.s.concurrency})", flush=True)
    await runner.run()
    print("arwx runner: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = resolve(args)
    except ConfigError as e:
        print(f"arwx: bad configuration: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.command in ("keys", "users"):
        return asyncio.run(_offline(args, settings))
    if args.command == "blobs":
        return asyncio.run(_blobs_gc(args, settings))
    if args.command == "runner":
        return asyncio.run(_runner(settings))
    roles = SERVER_ROLES if args.command == "server" else frozenset({args.command})
    unmet = unmet_alone_need(roles, settings)
    if unmet is not None:
        print(f"arwx {args.command}: distributed mode {unmet.message}", file=sys.stderr)
        return 2
    return asyncio.run(_run_service(settings, roles, getattr(args, "rebuild_store", False)))


if __name__ == "__main__":
    sys.exit(main())
