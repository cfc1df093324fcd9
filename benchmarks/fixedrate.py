"""Latency at an offered rate, with ``hey``: the p99 a client sees when the server is not saturated.

Why not wrk: wrk is closed-loop, so at saturation its latencies are queueing at the chosen concurrency
(research/performance-anchors.md §2b). ``hey -q R -c C`` paces each of its C workers at R requests/s, so the
offered rate is R×C as long as each worker's answers come back within 1/R s. ``-o csv`` gives every request's
time, from which the percentiles (p99.9 included) are computed here; hey rounds each time to 0.1 ms, so p50 of
a fast path reads as 0.1–0.3 ms.

Limits, stated in every result: one URL (hey has no scripting; the cached scenario uses its hottest key), and
a worker that waits on a slow answer skips its missed ticks (coordinated omission), so a stalled server is
under-sampled. ``achieved`` below ``offered`` by more than 5 % flags either a server or a generator limit.
"""

from __future__ import annotations

import math
from collections import Counter

from benchmarks.wrk import LoadResult, run_command

__all__ = ["percentile", "run_hey"]

_GRACE = 30.0
_MAX_WORKERS = 64
_MIN_PER_WORKER = 50.0
"""hey paces a worker with a ticker; below ~50 requests/s per worker use fewer workers instead."""


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of an ascending list; 0.0 when it is empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _parse_csv(output: str) -> tuple[list[float], Counter[str]]:
    times, statuses = [], Counter()
    for line in output.splitlines()[1:]:
        fields = line.split(",")
        if len(fields) < 7:
            continue
        try:
            times.append(float(fields[0]) * 1e6)
        except ValueError:
            continue
        statuses[fields[6]] += 1
    return sorted(times), statuses


async def run_hey(
    hey: str,
    url: str,
    *,
    rate: float,
    seconds: float,
    cpus: str | None,
    taskset: str | None,
) -> LoadResult:
    """Offer ``rate`` requests/s to ``url`` (GET, redirects not followed) for ``seconds``."""
    workers = max(1, min(_MAX_WORKERS, int(rate // _MIN_PER_WORKER)))
    command = [
        hey,
        "-z",
        f"{max(1, round(seconds))}s",
        "-c",
        str(workers),
        "-q",
        f"{rate / workers:.3f}",
        "-t",
        "10",
        "-disable-redirects",
        "-o",
        "csv",
        url,
    ]
    if cpus is not None and taskset is not None:
        command = [taskset, "-c", cpus, *command]
    output = await run_command(command, seconds + _GRACE)
    times, statuses = _parse_csv(output)
    status_errors = sum(n for code, n in statuses.items() if not code.startswith(("2", "3")))
    latency = {f"p{q:g}": percentile(times, q) for q in (50, 90, 99, 99.9)}
    latency["mean"] = sum(times) / len(times) if times else 0.0
    latency["max"] = times[-1] if times else 0.0
    return LoadResult(
        requests=len(times),
        seconds=float(max(1, round(seconds))),
        latency_us=latency,
        errors={"status": status_errors},
    )
