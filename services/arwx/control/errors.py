"""What a control-plane service refuses, as exceptions the routes turn into answers.

Services raise these and know nothing of HTTP; ``routes.py`` maps each class
to one status (``Invalid`` 400, ``NotFound`` 404, ``Conflict`` 409).
"""

from __future__ import annotations


class ControlError(Exception):
    """Base: the message names what was wrong and is shown to the client."""

    status = 400

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.extra = extra  # more fields of the error answer (e.g. the missing SHAs)


class Invalid(ControlError):
    """The request names something malformed or impossible (400)."""

    status = 400


class NotFound(ControlError):
    """No such object in the caller's organization (404; another org's looks the same)."""

    status = 404


class Conflict(ControlError):
    """The request contradicts what is stored (409)."""

    status = 409
