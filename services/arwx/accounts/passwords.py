"""Password hashing: scrypt (memory-hard), its parameters stored with each hash.

Invariant: a password is never stored or compared in clear. A stored hash is
``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, so the parameters can be
raised later and old hashes still verify. Hashing costs about 32 MiB and
tens of milliseconds on purpose: callers run it off the event loop
(``asyncio.to_thread``), and sign-in attempts are rate-limited
(``arwx.accounts.ratelimit``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

LOG2_N, R, P = 15, 8, 1  # 2**15 * 8 * 128 bytes = 32 MiB per hash
_DKLEN = 32
_MAXMEM = 256 << 20
MIN_LENGTH = 8
MAX_LENGTH = 1024  # longer is refused before hashing: a huge password would be free CPU for a caller


class WeakPassword(ValueError):
    """A password too short or too long to be set."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password`` (blocking: call it in a thread)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << LOG2_N, r=R, p=P, maxmem=_MAXMEM, dklen=_DKLEN)
    return f"scrypt${LOG2_N}${R}${P}${_b64(salt)}${_b64(digest)}"


@cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that an unknown account costs the same
    time as a wrong password and timing does not tell which emails exist."""
    return hash_password("arwx: no such account")


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (blocking). None (no such account, no password
    set): False, after the same work as a real check; a malformed hash: False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        scheme, log2_n, r, p, salt, digest = (stored or _dummy_hash()).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=1 << int(log2_n), r=int(r), p=int(p), maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return stored is not None and hmac.compare_digest(got, expected)
