"""Content-addressed bytes by SHA-256: the interface (``base``), a directory and S3 storage, the HTTP routes."""
