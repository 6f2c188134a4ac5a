"""The arwandb SDK served by the server: a wheel built from the SDK sources, and its routes."""
