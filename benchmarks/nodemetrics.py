"""The node's own counters, scraped from ``GET /metrics`` around each run: exact read-path query counts.

Why: PostgreSQL's ``pg_stat_database`` counts arrive up to 10 s late (``postgres.py``), while the node counts
every load query of its read path the moment it sends it (``idnode_cache_loads_total``, one per
``= ANY($1)`` query, and ``idnode_cache_load_keys_total``), and every identifier looked up by outcome
(``idnode_lookups_total{outcome,api}``: hit, miss, negative_hit, not_found, ...). With several workers the
scrape merges all of them (resolver/metrics.py). A node without ``/metrics`` gives None and the harness falls
back to ``pg_stat_activity`` alone.

The scrape costs the node a few hundred microseconds of CPU, so the meter scrapes outside its CPU window.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

__all__ = ["NodeCounters", "scrape"]

_WANTED = ("idnode_cache_loads_total", "idnode_cache_load_keys_total", "idnode_lookups_total")


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """Read-path counters: load queries, keys loaded, and identifiers looked up per outcome (all APIs)."""

    loads: float
    load_keys: float
    lookups: dict[str, float]

    def minus(self, before: NodeCounters) -> NodeCounters:
        outcomes = set(self.lookups) | set(before.lookups)
        return NodeCounters(
            self.loads - before.loads,
            self.load_keys - before.load_keys,
            {k: self.lookups.get(k, 0.0) - before.lookups.get(k, 0.0) for k in sorted(outcomes)},
        )

    def to_json(self) -> dict[str, object]:
        return {
            "cache_loads": int(self.loads),
            "cache_load_keys": int(self.load_keys),
            "lookups": {k: int(v) for k, v in self.lookups.items() if v},
        }


def parse(text: str) -> NodeCounters | None:
    """The wanted counters from Prometheus text format; None when the node exports none of them."""
    loads = keys = None
    lookups: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        if name == "idnode_cache_loads_total":
            loads = number
        elif name == "idnode_cache_load_keys_total":
            keys = number
        else:
            outcome = name_labels.partition('outcome="')[2].partition('"')[0] or "?"
            lookups[outcome] = lookups.get(outcome, 0.0) + number
    if loads is None:
        return None
    return NodeCounters(loads, keys or 0.0, lookups)


async def scrape(url: str) -> NodeCounters | None:
    """``GET <url>/metrics`` parsed; None when the node has no such endpoint or it fails."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            if response.status != 200:
                return None
            return parse(await response.text())
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
