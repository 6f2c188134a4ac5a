"""The Wild V2 sweeps/runs protocol (docs/runner.md): ``routes`` (the seed's paths, thin),
``service`` (sweeps, runs, audit), ``dispatch`` (the runner's side: claims, heartbeats,
reports, lost runs), ``logs`` (captured output), ``state`` (status compare-and-set), ``wire``."""
