"""The performance targets of issue 14 as a Markdown table, read from a harness run's JSON.

The README's performance table is this script's output for the committed full run, so the table can be regenerated
rather than retyped: ``python -m benchmarks.targets benchmarks/results/<run>.json``. Figures the harness does not
measure (the end-to-end ``idnode import``, the memory of a million cached handles) come from their own benchmarks
and are named in the README next to the table, not here.

Per-core figures divide a million by the node's median CPU µs per request: on this two-core machine wrk and
PostgreSQL share the box with the node, so req/s understates what a node core does and the CPU figure is the
stable one (research/performance-anchors.md §3).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["rows", "table"]

Finder = Callable[[str], dict[str, Any] | None]


def _finder(results: dict[str, Any]) -> Finder:
    """The series of a scenario at the most connections it ran at (as ``report.Results.find``)."""

    def find(scenario: str) -> dict[str, Any] | None:
        found = [s for s in results["series"] if s["scenario"] == scenario and s.get("best_requests_per_second")]
        return max(found, key=lambda s: int(s["load"][1:]) if s["load"].startswith("c") else -1, default=None)

    return find


def _per_second(series: dict[str, Any] | None) -> str:
    if series is None:
        return "not run"
    return f"{series['best_items_per_second']:,.0f}/s ({series['load']})"


def _per_core(series: dict[str, Any] | None) -> str:
    if series is None or not series.get("median_cpu_us_per_request"):
        return "not run"
    per_core = 1e6 / series["median_cpu_us_per_request"] * series.get("items_per_request", 1)
    return f"{per_core:,.0f}/s per node core; {_per_second(series)}"


def _ratio(results: dict[str, Any], name: str) -> str:
    ratio = results["ratios"].get(name)
    if ratio is None:
        return "not run"
    return f"{ratio['by_requests_per_second']}× by req/s, {ratio['by_cpu']}× by CPU ({ratio['load']})"


def _p99(series: dict[str, Any] | None) -> str:
    if series is None:
        return "not run"
    return f"{series['best_latency_us']['p99'] / 1000:.2f} ms ({series['load']})"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, target, measured) for each target the harness measures."""
    find = _finder(results)
    memory = results.get("memory") or {}
    per_handle = memory.get("bytes_per_handle")
    return [
        ("cached look-up vs aiohttp hello", "≥ 1.0× (2.5× aimed)", _ratio(results, "cached_vs_hello")),
        ("cached look-up vs a hello with the same body", "—", _ratio(results, "cached_vs_hello_body")),
        ("cached look-up, gzip client, vs hello", "—", _ratio(results, "cached_gzip_vs_hello")),
        ("cached look-up, fast lane on vs off (same run)", "—", _ratio(results, "cached_vs_cached_nolane")),
        ("proxy 302, fast lane on vs off (same run)", "—", _ratio(results, "proxy_vs_proxy_nolane")),
        ("p99 of cached look-ups", "≤ 2 ms at c64", _p99(find("cached"))),
        ("RSS per cached handle (harness hot set)", "1M ≤ 1 GiB", f"{per_handle:,.0f} B" if per_handle else "not run"),
        ("COPY into handles (triggers on)", "—", f"{results['import'].get('rows_per_second', 0):,} rows/s"),
        ("batch write API, 2,000 per request", "≥ 25,000/s", _per_core(find("put_batch_2000"))),
        ("SNMS batchCreate, 2,000 per request", "—", _per_core(find("snms_batch_2000"))),
        ("single PUT", "≥ 2,000/s per node core", _per_core(find("put_single"))),
        ("cold look-up vs cached, per core", "≥ 0.5×", _ratio(results, "cold_vs_cached")),
        ("proxy 302 with typed links vs plain 302", "≥ 0.95×", _ratio(results, "proxy_links_vs_proxy")),
    ]


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    head = f"`{meta['command']}` at {meta['commit']}, {meta['date']} ({meta['cores']} cores, {meta['pinning']})"
    lines = [head, "", "| what | target | measured |", "|---|---|---|"]
    lines += [f"| {what} | {target} | {measured} |" for what, target, measured in rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a JSON file the harness wrote under benchmarks/results/")
    args = parser.parse_args()
    print(table(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
