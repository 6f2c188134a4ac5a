"""``arwx runner``: the process that executes Wild V2 runs (docs/runner.md).

Commands never run inside the API server. A person starts a runner, with its
own key holding the ``launch`` scope, on a machine that may run jobs;
``agent.Runner`` claims queued runs of that key's org, ``job.Job`` runs each
command in a fresh directory under the runner's root with output captured
to capped files (``capture.py``), and ``client.RunnerClient`` talks to the server.
"""
