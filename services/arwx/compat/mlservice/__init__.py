"""ml-service's experiments API (``/api/v1/experiments``, runs under ``/runs``) on arwx (docs/compat.md)."""
