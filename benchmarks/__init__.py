"""The idnode benchmark harness (issue 5): ``python -m benchmarks [--quick | --smoke]``.

Modules, one job each:

- ``plan``: sizes and durations of a full, quick or smoke run;
- ``tools``: finds wrk, nginx and hey, installing them from Debian when missing;
- ``postgres``: the benchmark database (embedded or given) and the node's query counters;
- ``dataset``: realistic product records and their COPY import;
- ``servers``: idnode, hello-world (``hello``) and nginx as stoppable process trees;
- ``lua`` / ``wrk`` / ``fixedrate``: load generation at a fixed concurrency or a fixed rate;
- ``procfs``: CPU time, RSS and busy neighbours from /proc;
- ``measure``: warm-up, repeats, CPU per request; ``nodemetrics``: the node's ``/metrics`` counters per run;
- ``scenarios`` / ``writes``: what is measured; ``suite``: in which order; ``smoke``: the CI check;
- ``client``: cache filling and look-ups over HTTP; ``report``: ratios, JSON and Markdown.

``metrics_overhead.py`` is a separate script (the cost of the hot path's metric lines), not part of the harness.
"""

__all__: list[str] = []
