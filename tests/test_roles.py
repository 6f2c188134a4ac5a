"""The role registry: a role is one entry, and the CLI, the API app and the server follow it."""

from __future__ import annotations

import pytest
from aiohttp import web

from arwx.cli import _parser, main
from arwx.components import Components
from arwx.roles import LOG_AND_STORE, ROLES, SERVER_ROLES, Role, add_routes, needs, unmet_alone_need
from tests.helpers import Api, ServerThread


def test_every_role_is_a_subcommand_and_server_runs_them_all() -> None:
    for name in ROLES:
        assert _parser().parse_args([name]).command == name
    assert {"gateway", "consumer", "query"} <= SERVER_ROLES
    assert {"reader", "blobs"} <= needs(SERVER_ROLES)
    assert needs(frozenset({"consumer"})) == {"reader"}


class _Ticker:
    """Background work that records its stop."""

    paused: str | None = None

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"echo": request.query.get("say", "")})


def test_a_new_role_is_one_entry(monkeypatch: pytest.MonkeyPatch, embedded, store_dir, capsys) -> None:  # noqa: ANN001
    started: list[_Ticker] = []

    async def start(c: Components, on_fatal) -> _Ticker:  # noqa: ANN001
        assert c.reader is None and c.blobs is None  # it needs neither, so the process opened neither
        started.append(_Ticker())
        return started[-1]

    # The whole of what adding a role takes:
    monkeypatch.setitem(ROLES, "echo", Role(
        "echo a word back", routes=(lambda app: app.router.add_get("/v1/echo", _echo),), start=start, in_server=False,
    ))

    assert _parser().parse_args(["echo"]).command == "echo"  # a subcommand
    assert main(["echo"]) == 2  # alone, it needs what every role shares with other processes
    assert "needs --kafka and --clickhouse" in capsys.readouterr().err
    assert unmet_alone_need(frozenset({"echo"}), embedded.settings) is LOG_AND_STORE

    app = web.Application()
    add_routes(app, frozenset({"echo"}))
    assert {(r.method, r.resource.canonical) for r in app.router.routes()} == {("GET", "/v1/echo"), ("HEAD", "/v1/echo")}

    srv = ServerThread(frozenset({"echo"}), data_dir=store_dir)
    try:
        key = embedded.new_org_key("echo")
        assert Api(srv.url, key).ok("GET", "/v1/echo", params={"say": "hi"}) == {"echo": "hi"}
        assert Api(srv.url, None).get("/v1/echo")[0] == 401  # behind the same authentication
        assert Api(srv.url, key).get("/v1/runs/x")[0] == 404  # only the routes of its roles
        assert len(started) == 1 and not started[0].stopped
    finally:
        srv.stop()
    assert started[0].stopped  # stopped with the process
