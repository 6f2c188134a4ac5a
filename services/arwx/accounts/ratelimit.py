"""Sign-in attempts, limited per account and per client address.

Invariant: once an account (an email, known or not) or an address has
failed ``max_failures`` sign-ins within ``window_s``, every attempt for it is
refused (429 with ``Retry-After``) until the oldest of those failures leaves
the window; a correct password does not get through meanwhile, so guessing
gains nothing from the refusals. A success clears the account's failures,
not the address's.

The counts live in this process: with several gateways an attacker gets at
most that many times the budget (docs/accounts.md). Memory is bounded: at
most ``max_keys`` accounts and addresses are tracked, the stalest dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque


class AttemptLimiter:
    """Failures per key (``"email:…"``, ``"addr:…"``) in a sliding window."""

    def __init__(self, max_failures: int, window_s: float, max_keys: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        q = self._recent(key, now)
        if q is None or len(q) < self.max_failures:
            return 0.0
        return q[-self.max_failures] + self.window_s - now

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._recent(key, now)
        if q is None:
            q = self._failures[key] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        self._failures.move_to_end(key)
        q.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
