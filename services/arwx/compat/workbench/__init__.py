"""ml-workbench's experiments API (``/api/v1/experiments``), served by arwx.

A thin adapter (``docs/compat.md``): ``wire`` holds its request bodies,
``routes`` its paths (thin handlers), ``service`` maps them onto arwx (an
experiment is a project, a run a run, metrics through ``IngestService`` with
reserved seqs, params into the run's config, artifact bytes into the blob
store), ``state`` keeps what ml-workbench has and arwx does not (experiment
ids, status, pinning, tags, artifacts' metadata).
"""
