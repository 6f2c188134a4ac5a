"""Putting points into the log: the one path every ingest route and adapter takes.

``service.IngestService`` validates runs, builds per-run columnar chunks and
appends them durably; ``ndjson.split_lines`` cuts a body into lines with
bounded memory. Neither knows HTTP: ``gateway/ingest.py`` and every
compatibility adapter call them.
"""
