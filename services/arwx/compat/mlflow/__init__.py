"""The MLflow tracking REST API (what the ``mlflow`` 3.x client calls), served by arwx.

A thin adapter (``docs/mlflow.md``): ``routes`` parses MLflow's wire shapes,
``service`` maps them onto arwx (an experiment is a project, a run a run,
metrics go through ``IngestService``), ``state`` keeps what MLflow has and
arwx does not (numeric experiment ids, params, tags, lifecycle, seq counters),
``search`` evaluates ``search_runs`` filters and orderings.
"""
