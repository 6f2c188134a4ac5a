"""The pure parts of accounts: password hashes and the sign-in attempt window."""

from __future__ import annotations

import pytest

from arwx.accounts.passwords import WeakPassword, check_strength, hash_password, verify_password
from arwx.accounts.ratelimit import AttemptLimiter
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


def test_failures_slide_out_of_the_window() -> None:
    lim = AttemptLimiter(max_failures=3, window_s=10.0)
    for t in (0.0, 1.0, 2.0):
        assert lim.retry_after("email:a", now=t) == 0
        lim.failed("email:a", now=t)
    assert lim.retry_after("email:a", now=2.0) == pytest.approx(8.0)  # until the failure at 0 s leaves
    assert lim.retry_after("email:b", now=2.0) == 0  # another key is not affected
    assert lim.retry_after("email:a", now=10.5) == 0  # the first failure left the window
    lim.failed("email:a", now=10.5)
    assert lim.retry_after("email:a", now=10.6) == pytest.approx(0.4)
    lim.clear("email:a")
    assert lim.retry_after("email:a", now=10.6) == 0


def test_the_limiter_tracks_a_bounded_number_of_keys() -> None:
    lim = AttemptLimiter(max_failures=1, window_s=100.0, max_keys=10)
    for i in range(50):
        lim.failed(f"addr:{i}", now=1.0)
    assert len(lim._failures) == 10
    assert lim.retry_after("addr:49", now=2.0) > 0 and lim.retry_after("addr:0", now=2.0) == 0


def test_emails_and_csrf_tokens() -> None:
    assert normalize_email("  Ana@Example.COM ") == "ana@example.com"
    for bad in ("", "ana", "a@b@c", "a b@c.d", "x" * 65 + "@e.com"):
        with pytest.raises(AccountError):
            normalize_email(bad)
    assert csrf_for("arwx_sess_a") != csrf_for("arwx_sess_b") and len(csrf_for("arwx_sess_a")) == 64
