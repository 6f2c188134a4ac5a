"""People who sign in to the dashboard: accounts, organizations they belong to, sessions.

``service.py`` (the catalog side), ``passwords.py`` (scrypt), ``ratelimit.py``
(sign-in attempts), ``wire.py`` (bodies), ``routes.py`` (thin HTTP); the
cookie authenticator with its CSRF check is ``arwx.gateway.auth.session_cookie``.
See docs/accounts.md.
"""
