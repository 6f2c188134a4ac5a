"""Accounts with real ``arwx`` processes: the first start's one-time link, ``arwx users``,
sign-in limits (429), and no secret in the server's own output at debug level."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, ServerProcess, catalog_url_for

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory):
    """A first start of an empty server, logging at debug, with small sign-in limits."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("accounts") / "data",
        extra=["--log-level", "debug", "--login-account-failures", "3", "--login-address-failures", "6"],
    ).start()
    yield srv
    srv.terminate()


def _login(url: str, email: str, password: str = PASSWORD) -> requests.Response:
    return requests.post(url + "/v1/auth/login", json={"email": email, "password": password}, timeout=30)


def test_first_start_prints_a_one_time_link_that_makes_the_first_admin(first: ServerProcess) -> None:
    banner = first.output.split("listening on", 1)[0]
    assert "ARWANDB_API_KEY=arwx_live_" in banner  # the key, as before
    m = re.search(r"(http://\S+)/setup\?token=(arwx_pwt_[A-Za-z0-9_-]+)", banner)
    assert m and m.group(1) == first.url, banner
    token = m.group(2)
    short = requests.post(first.url + "/v1/auth/setup", json={"token": token, "email": "a@example.com",
                                                               "password": "short"}, timeout=30)
    assert short.status_code == 400 and "8 characters" in short.json()["error"]
    no_email = requests.post(first.url + "/v1/auth/setup", json={"token": token, "password": PASSWORD}, timeout=30)
    assert no_email.status_code == 400 and "email" in no_email.json()["error"]
    made = requests.post(first.url + "/v1/auth/setup",
                         json={"token": token, "email": "First@Example.com", "password": PASSWORD}, timeout=30)
    assert made.status_code == 200, made.text
    assert made.json()["user"]["email"] == "first@example.com" and made.json()["role"] == "admin"
    assert [o["name"] for o in made.json()["orgs"]] == ["default"]
    assert made.cookies.get("arwx_session", "").startswith("arwx_sess_")
    # Single use: the refusals above did not use it up, the success did.
    again = requests.post(first.url + "/v1/auth/setup",
                          json={"token": token, "email": "other@example.com", "password": PASSWORD}, timeout=30)
    assert again.status_code == 404
    assert _login(first.url, "first@example.com").status_code == 200
    # The first admin sees what the first key made: the same organization.
    first.api().ok("POST", "/v1/runs", {"id": "from-key"})
    s = requests.Session()
    assert s.post(first.url + "/v1/auth/login", json={"email": "first@example.com", "password": PASSWORD}).ok
    assert s.get(first.url + "/v1/runs/from-key").status_code == 200


def test_secrets_never_reach_the_servers_output(first: ServerProcess) -> None:
    api = first.api()
    # An admin: managing keys (below) needs the admin role.
    api.ok("POST", "/v1/users", {"email": "logs@example.com", "password": "log-me-not-password", "role": "admin"})
    invited = api.ok("POST", "/v1/users", {"email": "invited@example.com"})
    s = requests.Session()
    ok = s.post(first.url + "/v1/auth/login", json={"email": "logs@example.com", "password": "log-me-not-password"})
    assert ok.status_code == 200
    cookie, csrf = s.cookies["arwx_session"], ok.json()["csrf"]
    assert s.get(first.url + "/v1/auth/me").status_code == 200
    assert s.post(first.url + "/v1/runs", json={"id": "x"}).status_code == 403  # no token: refused, logged
    key = s.post(first.url + "/v1/keys", json={"name": "k"}, headers={"X-CSRF-Token": csrf}).json()["key"]
    assert _login(first.url, "logs@example.com", "wrong-password-marker").status_code == 401
    used = requests.post(first.url + "/v1/auth/setup",
                         json={"token": invited["password_token"], "password": "invited-password-marker"}, timeout=30)
    assert used.status_code == 200
    assert s.post(first.url + "/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert requests.get(first.url + "/v1/keys", cookies={"arwx_session": cookie}, timeout=30).status_code == 401
    # What the process wrote after its start banner (which shows the first key and link once, by design).
    logged = first.logs().split("listening on", 1)[1]
    assert "/v1/auth/login" in logged and "POST /v1/keys" in logged, "the access log did not reach the capture"
    assert "signed in" in logged and "sign-in failed" in logged  # who signed in, by user id: an audit trail
    for secret in (first.key, key, cookie, cookie[len("arwx_sess_"):], csrf, "log-me-not-password",
                   "wrong-password-marker", "invited-password-marker", invited["password_token"]):
        assert secret not in logged, secret


OTHER_PROCESS = """
import asyncio, sys
from pathlib import Path
from arwx.accounts.ratelimit import AttemptLimiter
from arwx.catalog import Catalog

async def main():
    catalog = Catalog.open(sys.argv[1], Path("/nonexistent"))
    await catalog.start()
    try:
        for _ in range(3):
            await AttemptLimiter(catalog, 3, 900.0).failed("email:" + sys.argv[2])
    finally:
        await catalog.stop()

asyncio.run(main())
"""


def test_the_limit_holds_across_processes(first: ServerProcess) -> None:
    """Failures another process records (a second gateway, here a bare process on the same
    catalog) refuse a sign-in at this server: the budget is not per process."""
    first.api().ok("POST", "/v1/users", {"email": "elsewhere@example.com", "password": PASSWORD})
    url = first.catalog or f"sqlite:///{first.data_dir / 'catalog.sqlite'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, url, "elsewhere@example.com"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    refused = _login(first.url, "Elsewhere@Example.com")  # the right password, refused here
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0, refused.text


def test_sign_in_is_limited_per_account_and_per_address(first: ServerProcess) -> None:
    """Runs last on this server: it leaves 127.0.0.1 over its limit."""
    api = first.api()
    for email in ("limited@example.com", "fine@example.com"):
        api.ok("POST", "/v1/users", {"email": email, "password": PASSWORD})
    for _ in range(3):
        assert _login(first.url, "limited@example.com", "guess").status_code == 401
    refused = _login(first.url, "limited@example.com")  # the right password, too late
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many failed sign-ins" in refused.json()["error"] and "Set-Cookie" not in refused.headers
    # Another account from the same address still signs in: under 6 address failures so far
    # (these 3, and the earlier tests' wrong password and used token).
    assert _login(first.url, "fine@example.com").status_code == 200
    for i in range(7):  # unknown emails count against the address too
        r = _login(first.url, f"nobody{i}@example.com", "guess")
        if r.status_code == 429:
            break
        assert r.status_code == 401
    assert r.status_code == 429 and 1 <= i <= 3, i  # the 6th failure from this address at the latest
    assert _login(first.url, "fine@example.com").status_code == 429
    # Keys are not sign-ins: the API goes on.
    assert api.get("/v1/keys")[0] == 200


def _arwx(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    cmd = [sys.executable, "-m", "arwx.cli", *args, "--data-dir", str(data)]
    catalog = catalog_url_for(data)
    if catalog:
        cmd += ["--catalog", catalog]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_arwx_users_create_set_password_and_list(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = _arwx(data, "users", "create", "--email", "Ops@Example.com", "--org", "lab", "--role", "admin",
                 "--password-stdin", stdin="first password\n")
    assert made.returncode == 0, made.stderr
    assert "email: ops@example.com" in made.stdout and "role: admin" in made.stdout and "token" not in made.stdout
    invited = _arwx(data, "users", "create", "--email", "new@example.com", "--org", "lab")
    assert invited.returncode == 0, invited.stderr
    token = re.search(r"/setup\?token=(arwx_pwt_[A-Za-z0-9_-]+)", invited.stdout).group(1)
    dup = _arwx(data, "users", "create", "--email", "ops@example.com", "--org", "lab")
    assert dup.returncode == 1 and "already a member" in dup.stderr
    weak = _arwx(data, "users", "create", "--email", "w@example.com", "--org", "lab", "--password-stdin", stdin="x\n")
    assert weak.returncode == 1 and "8 characters" in weak.stderr
    reset = _arwx(data, "users", "set-password", "--email", "ops@example.com", stdin="second password\n")
    assert reset.returncode == 0, reset.stderr
    assert _arwx(data, "users", "set-password", "--email", "ghost@example.com", stdin="second password\n").returncode == 1
    listed = _arwx(data, "users", "list")
    assert listed.returncode == 0
    rows = sorted(line.split("\t")[1:] for line in listed.stdout.splitlines())
    assert rows == [["new@example.com", "lab", "member", "no password yet"],
                    ["ops@example.com", "lab", "admin", "password set"]]
    assert "password" not in listed.stdout.replace("password set", "").replace("no password yet", "")
    srv = ServerProcess(data).start()
    try:
        assert _login(srv.url, "ops@example.com", "first password").status_code == 401
        ok = _login(srv.url, "ops@example.com", "second password")
        assert ok.status_code == 200 and [o["name"] for o in ok.json()["orgs"]] == ["lab"]
        assert _login(srv.url, "new@example.com", "").status_code in (400, 401)
        set_pw = requests.post(srv.url + "/v1/auth/setup", json={"token": token, "password": PASSWORD}, timeout=30)
        assert set_pw.status_code == 200 and set_pw.json()["user"]["email"] == "new@example.com"
        assert _login(srv.url, "new@example.com").status_code == 200
    finally:
        srv.terminate()
