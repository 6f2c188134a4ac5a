"""Accounts and sign-in over real HTTP: the cookie, CSRF, members, organizations, expiry.

Against the session's embedded server (``embedded``); each test makes its own
organizations and accounts (emails are unique per test). Tests that need
their own settings or a first start are in ``test_accounts_process.py``.
"""

from __future__ import annotations

import uuid

import requests

from arwx.accounts.service import Accounts
from tests.helpers import Api, wait_for

PASSWORD = "correct horse battery"


def _email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


class Browser:
    """A signed-in client: the cookie jar of ``requests`` and the session's CSRF token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.csrf = ""

    def login(self, email: str, password: str = PASSWORD) -> requests.Response:
        r = self.http.post(self.url + "/v1/auth/login", json={"email": email, "password": password}, timeout=30)
        if r.status_code == 200:
            self.csrf = r.json()["csrf"]
        return r

    def get(self, path: str, **kw) -> requests.Response:  # noqa: ANN003
        return self.http.get(self.url + path, timeout=30, **kw)

    def send(self, method: str, path: str, body: object = None, csrf: bool = True) -> requests.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.request(method, self.url + path, json=body, headers=headers, timeout=30)


def _member(api: Api, role: str = "admin", tag: str = "u") -> str:
    """A new account with a password, made a ``role`` of ``api``'s organization by its key."""
    email = _email(tag)
    made = api.ok("POST", "/v1/users", {"email": email, "role": role, "password": PASSWORD})
    assert made["created"] is True and made["role"] == role and "password_token" not in made
    return email


def test_login_sets_a_strict_http_only_cookie_and_me_answers_the_same(embedded, api: Api) -> None:
    email = _member(api)
    b = Browser(embedded.url)
    r = b.login(email.upper())  # emails are matched case-insensitively
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["email"] == email and body["role"] == "admin"
    assert [o["org"] for o in body["orgs"]] == [body["org"]] and body["orgs"][0]["name"] == "test"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("arwx_session=arwx_sess_")
    flags = {f.strip().split("=")[0].lower(): f.strip() for f in cookie.split(";")[1:]}
    assert "httponly" in flags and flags["samesite"] == "SameSite=Strict" and flags["path"] == "Path=/"
    assert "secure" not in flags  # plain HTTP here
    me = b.get("/v1/auth/me")
    assert me.status_code == 200 and me.json()["csrf"] == body["csrf"] and me.json()["user"] == body["user"]
    # Behind a TLS-terminating proxy the cookie is Secure.
    tls = requests.post(
        embedded.url + "/v1/auth/login", json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"}, timeout=30,
    )
    assert tls.status_code == 200 and "; Secure" in tls.headers["Set-Cookie"]


def test_wrong_password_and_unknown_email_get_the_same_401(embedded, api: Api) -> None:
    email = _member(api)
    wrong = Browser(embedded.url).login(email, "not the password")
    unknown = Browser(embedded.url).login(_email("nobody"), PASSWORD)
    malformed = Browser(embedded.url).login("not an email", PASSWORD)
    for r in (wrong, unknown, malformed):
        assert r.status_code == 401 and r.json() == {"error": "wrong email or password"}
        assert "Set-Cookie" not in r.headers
    assert requests.get(embedded.url + "/v1/auth/me", timeout=30).status_code == 401
    forged = requests.get(embedded.url + "/v1/keys", cookies={"arwx_session": "arwx_sess_forged"}, timeout=30)
    assert forged.status_code == 401
    assert Browser(embedded.url).http.post(embedded.url + "/v1/auth/login", json={"email": email}).status_code == 400


def test_cookie_works_like_a_key_of_the_org_and_writes_need_the_csrf_token(embedded, api: Api) -> None:
    b = Browser(embedded.url)
    assert b.login(_member(api)).status_code == 200
    # Reads need no token.
    assert b.get("/v1/keys").status_code == 200
    # Writes without the token (or with another) are refused, and change nothing.
    assert b.send("POST", "/v1/runs", {"id": "by-cookie"}, csrf=False).status_code == 403
    b_bad = b.http.post(embedded.url + "/v1/runs", json={"id": "by-cookie"}, headers={"X-CSRF-Token": "0" * 64})
    assert b_bad.status_code == 403 and "X-CSRF-Token" in b_bad.json()["error"]
    assert api.get("/v1/runs/by-cookie")[0] == 404
    made = b.send("POST", "/v1/runs", {"id": "by-cookie", "project": "p"})
    assert made.status_code == 201, made.text
    assert api.ok("GET", "/v1/runs/by-cookie")["project"] == "p"  # the same org as the key
    # The Connection panel: create, list and revoke keys with the cookie.
    key = b.send("POST", "/v1/keys", {"name": "from the dashboard"})
    assert key.status_code == 201 and key.json()["key"].startswith("arwx_live_")
    assert key.json()["id"] in [k["id"] for k in b.get("/v1/keys").json()["keys"]]
    assert api.with_key(key.json()["key"]).get("/v1/runs/by-cookie")[0] == 200
    assert b.send("DELETE", f"/v1/keys/{key.json()['id']}", csrf=False).status_code == 403
    assert b.send("DELETE", f"/v1/keys/{key.json()['id']}").json()["revoked"] is True
    # A request with a key is unaffected by a cookie beside it: no token needed.
    both = b.http.post(embedded.url + "/v1/runs", json={"id": "by-key"}, headers={"Authorization": f"Bearer {api.key}"})
    assert both.status_code == 201


def test_a_user_of_one_org_never_sees_another_orgs_runs(embedded) -> None:
    a, other = Api(embedded.url, embedded.new_org_key("a")), Api(embedded.url, embedded.new_org_key("b"))
    other.ok("POST", "/v1/runs", {"id": "theirs", "project": "secret"})
    a.ok("POST", "/v1/runs", {"id": "mine", "project": "mine"})
    b = Browser(embedded.url)
    assert b.login(_member(a)).status_code == 200
    assert b.get("/v1/runs/mine").status_code == 200
    for path in ("/v1/runs/theirs", "/v1/runs/theirs/metrics", "/v1/runs/theirs/integrity", "/v1/projects/secret",
                 "/v1/projects/secret/runs"):
        r = b.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
    assert b.send("POST", "/v1/runs/theirs/finish", {}).status_code == 404
    projects = b.get("/v1/projects").json()
    assert "secret" not in str(projects)
    # Switching to an organization one does not belong to: 404, and the session stays where it was.
    me = b.get("/v1/auth/me").json()
    r = b.send("POST", "/v1/auth/org", {"org": "org_000000000000"})
    assert r.status_code == 404
    assert b.get("/v1/auth/me").json()["org"] == me["org"]


def test_one_account_in_two_orgs_switches_between_them(embedded) -> None:
    a, c = Api(embedded.url, embedded.new_org_key("first")), Api(embedded.url, embedded.new_org_key("second"))
    email = _member(a, role="admin")
    again = c.ok("POST", "/v1/users", {"email": email, "role": "member"})
    # An existing account joins with its own password: no token handed out, password unchanged.
    assert again["created"] is False and again["has_password"] is True and "password_token" not in again
    assert c.post("/v1/users", {"email": email})[0] == 409
    c.ok("POST", "/v1/runs", {"id": "in-second", "project": "p2"})
    b = Browser(embedded.url)
    first = b.login(email).json()
    assert [o["name"] for o in first["orgs"]] == ["first", "second"] and first["role"] == "admin"
    assert b.get("/v1/runs/in-second").status_code == 404
    second = next(o["org"] for o in first["orgs"] if o["name"] == "second")
    assert b.send("POST", "/v1/auth/org", {"org": second}, csrf=False).status_code == 403
    switched = b.send("POST", "/v1/auth/org", {"org": second})
    assert switched.status_code == 200 and switched.json()["org"] == second and switched.json()["role"] == "member"
    assert b.get("/v1/runs/in-second").status_code == 200
    # A member (not an admin) of "second" may not manage its members.
    assert b.send("POST", "/v1/users", {"email": _email()}).status_code == 403


def test_members_by_http_roles_and_removal(embedded, api: Api) -> None:
    admin = Browser(embedded.url)
    assert admin.login(_member(api, "admin")).status_code == 200
    # An admin signed in adds a member without a password: a one-time token comes back.
    new = admin.send("POST", "/v1/users", {"email": _email("new"), "role": "viewer"})
    assert new.status_code == 201, new.text
    token = new.json()["password_token"]
    assert new.json()["setup_path"] == f"/setup?token={token}" and new.json()["has_password"] is False
    assert admin.send("POST", "/v1/users", {"email": _email(), "role": "owner"}).status_code == 400
    assert admin.send("POST", "/v1/users", {"email": "nope"}).status_code == 400
    assert admin.send("POST", "/v1/users", {"email": _email(), "password": "short"}).status_code == 400
    # Nobody can sign in to an account without a password.
    assert Browser(embedded.url).login(new.json()["email"], "").status_code == 401
    viewer = Browser(embedded.url)
    setup = viewer.http.post(embedded.url + "/v1/auth/setup", json={"token": token, "password": PASSWORD})
    assert setup.status_code == 200 and setup.json()["role"] == "viewer", setup.text
    viewer.csrf = setup.json()["csrf"]
    again = requests.post(embedded.url + "/v1/auth/setup", json={"token": token, "password": PASSWORD}, timeout=30)
    assert again.status_code == 404  # single use
    # A viewer reads, and may not write even with the token; but may sign out.
    assert viewer.get("/v1/projects").status_code == 200
    assert viewer.get("/v1/keys").status_code == 403  # key management needs the admin role
    assert viewer.send("POST", "/v1/runs", {"id": "by-viewer"}).status_code == 403
    listed = admin.get("/v1/users").json()["users"]
    assert {u["role"] for u in listed} == {"admin", "viewer"} and all(set(u) == {"id", "email", "role", "has_password"} for u in listed)
    # Removing a member ends their sessions in that org at once.
    assert admin.send("DELETE", f"/v1/users/{new.json()['id']}").status_code == 200
    assert viewer.get("/v1/projects").status_code == 401
    assert admin.send("DELETE", f"/v1/users/{new.json()['id']}").status_code == 404


def test_users_of_another_org_are_invisible(embedded) -> None:
    a, other = Api(embedded.url, embedded.new_org_key("a")), Api(embedded.url, embedded.new_org_key("b"))
    theirs = other.ok("POST", "/v1/users", {"email": _email("b"), "password": PASSWORD})
    assert theirs["id"] not in str(a.ok("GET", "/v1/users"))
    assert a.request("DELETE", f"/v1/users/{theirs['id']}")[0] == 404


def test_logout_ends_the_session(embedded, api: Api) -> None:
    b = Browser(embedded.url)
    assert b.login(_member(api)).status_code == 200
    cookie = b.http.cookies["arwx_session"]
    assert b.send("POST", "/v1/auth/logout", csrf=False).status_code == 403
    out = b.send("POST", "/v1/auth/logout")
    assert out.status_code == 200 and "arwx_session=" in out.headers["Set-Cookie"]
    # The old cookie, replayed, is dead on the server (not only deleted in the browser).
    assert requests.get(embedded.url + "/v1/keys", cookies={"arwx_session": cookie}, timeout=30).status_code == 401
    assert requests.get(embedded.url + "/v1/auth/me", cookies={"arwx_session": cookie}, timeout=30).status_code == 401


def test_a_session_expires(embedded, api: Api) -> None:
    email = _member(api)
    # A session made with a 1 s lifetime, on the server's own catalog; the server checks it.
    short = Accounts(embedded.server.catalog, session_ttl_s=1.0, token_ttl_s=60.0)

    async def sign_in() -> str:
        user = await short.check_password(email, PASSWORD)
        assert user is not None
        token, _ = await short.start_session(user)
        return token

    token = embedded.call(sign_in())
    jar = {"arwx_session": token}
    assert requests.get(embedded.url + "/v1/auth/me", cookies=jar, timeout=30).status_code == 200
    wait_for(
        lambda: requests.get(embedded.url + "/v1/keys", cookies=jar, timeout=30).status_code == 401,
        10, 0.1, "the session to expire",
    )


def test_sessions_and_passwords_are_stored_hashed(embedded, api: Api) -> None:
    email = _member(api)
    b = Browser(embedded.url)
    assert b.login(email).status_code == 200
    cookie = b.http.cookies["arwx_session"]

    async def rows() -> str:
        from sqlalchemy import select

        from arwx.catalog.tables import login_sessions, users

        async with embedded.server.catalog.connect() as conn:
            return repr(list(await conn.execute(select(users)))) + repr(list(await conn.execute(select(login_sessions))))

    stored = embedded.call(rows())
    assert email in stored and "scrypt$" in stored
    assert cookie not in stored and PASSWORD not in stored
