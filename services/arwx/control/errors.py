"""What a control-plane service refuses: the project-wide ``arwx.errors`` classes.

Services raise these and know nothing of HTTP; the app's one error middleware
renders them (``Invalid`` 400, ``NotFound`` 404, ``Conflict`` 409), with any
``extra`` fields (the missing SHAs of a tree) in the JSON body.
"""

from __future__ import annotations

from arwx.errors import ApiError as ControlError
from arwx.errors import BadRequest as Invalid
from arwx.errors import Conflict, NotFound

__all__ = ["ControlError", "Conflict", "Invalid", "NotFound"]
