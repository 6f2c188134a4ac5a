"""Request bodies of the account routes (``routes.py``); ``schemas/wire.schema.json`` renders them."""

from __future__ import annotations

from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
Password = Annotated[str, msgspec.Meta(max_length=1024)]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/auth/login``."""

    email: Email
    password: Password


class OrgSwitch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/auth/org``: act in this organization from now on."""

    org: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class PasswordSetup(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/auth/setup``: redeem a one-time set-password token. ``email`` names
    the new account when the token creates one (the first start's link)."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    password: Password
    email: Email | None = None


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/users``: make someone a member of the caller's organization. Without a
    password the answer carries a one-time set-password token for the new account."""

    email: Email
    role: Annotated[str, msgspec.Meta(max_length=16)] = "member"
    password: Password | None = None


STRUCTS = (Login, OrgSwitch, PasswordSetup, UserCreate)
