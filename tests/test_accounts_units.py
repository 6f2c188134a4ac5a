"""The pure parts of accounts: password hashes, emails, CSRF tokens."""

from __future__ import annotations

import pytest

from arwx.accounts.passwords import WeakPassword, check_strength, hash_password, verify_password
from arwx.accounts.service import AccountError, csrf_for, normalize_email


def test_password_hashes_are_salted_scrypt_with_their_parameters() -> None:
    a, b = hash_password("same password"), hash_password("same password")
    assert a != b and a.startswith("scrypt$15$8$1$") and "same password" not in a
    assert verify_password("same password", a) and verify_password("same password", b)
    assert not verify_password("Same password", a)
    assert not verify_password("same password", None)  # no such account: False, after the same work
    assert not verify_password("same password", "md5$abc") and not verify_password("x", "scrypt$bad")
    assert not verify_password("x" * 2000, a)  # refused before hashing
    for weak in ("", "seven77", "x" * 1025):
        with pytest.raises(WeakPassword):
            check_strength(weak)
    check_strength("eight888")


def test_emails_and_csrf_tokens() -> None:
    assert normalize_email("  Ana@Example.COM ") == "ana@example.com"
    for bad in ("", "ana", "a@b@c", "a b@c.d", "x" * 65 + "@e.com"):
        with pytest.raises(AccountError):
            normalize_email(bad)
    assert csrf_for("arwx_sess_a") != csrf_for("arwx_sess_b") and len(csrf_for("arwx_sess_a")) == 64
