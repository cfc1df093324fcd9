"""The run's results: ratios to the baselines, the JSON file under ``benchmarks/results/``, the Markdown table.

Ratios follow research/performance-anchors.md §3: throughput targets are ratios to baselines measured in the
same run, computed two ways. "by req/s" divides best req/s at 64 connections; "by CPU" divides the median
CPU µs per request the other way round (baseline ÷ scenario), so both read as "fraction of the baseline's
throughput" and the CPU one is the stable figure on a shared machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.measure import Series

__all__ = ["Results", "markdown", "ratios", "write_json"]

_RATIOS = (
    # name, scenario, baseline, what it anchors
    ("cached_vs_hello", "cached", "hello", "T1: cached look-up ≥ 0.80× hello-world"),
    ("cached_vs_hello_body", "cached", "hello_1k", "cached look-up vs a hello-world sending the same 1.1 KB body"),
    ("cached_vs_cached_nolane", "cached", "cached_nolane", "fast lane A/B: cached look-up, lane on vs off"),
    ("proxy_vs_proxy_nolane", "proxy", "proxy_nolane", "fast lane A/B: proxy 302, lane on vs off"),
    ("cached_nolane_vs_hello", "cached_nolane", "hello", "cached look-up through aiohttp vs hello-world"),
    ("cached_gzip_vs_hello", "cached_gzip", "hello", "cached look-up served gzip vs hello-world"),
    ("cached_gzip_vs_cached", "cached_gzip", "cached", "gzip client vs one served the decompressed JSON"),
    ("proxy_vs_hello", "proxy", "hello", "proxy 302 vs hello-world"),
    ("proxy_links_vs_proxy", "proxy_links", "proxy", "302 with typed links + Vary vs plain 302 (issue 13: ≥ 0.95)"),
    ("hello_vs_nginx", "hello", "nginx", "T1c: Python vs the physical limit (≈ 0.27× measured)"),
    ("cold_vs_cached", "cold", "cached", "T3: cold look-up ≥ 0.3× cached, per Python core"),
    ("notfound_cached_vs_cached", "notfound_cached", "cached", "negative hit vs positive hit"),
    ("cached_w2_vs_hello_w2", "cached_w2", "hello_w2", "T1 with 2 workers"),
    ("forwarded_cached_vs_cached", "forwarded_cached", "cached", "forwarded, cached at the asking node, vs local hit"),
    ("forwarded_cold_vs_cached", "forwarded_cold", "cached", "forwarded over HTTP vs local hit (asking node's CPU)"),
)


@dataclass(slots=True)
class Results:
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)

    def find(self, scenario: str, load: str | None = None) -> Series | None:
        """The series of ``scenario`` at ``load`` (e.g. "c64"); the one with most connections when None."""
        found = [s for s in self.series if s.scenario == scenario and s.runs and (load is None or s.load == load)]
        if not found:
            return None
        return max(found, key=lambda s: int(s.load[1:]) if s.load.startswith("c") else -1)

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "notes": self.notes,
            "import": self.load,
            "memory": self.memory,
            "ratios": ratios(self),
            "series": [s.to_json() for s in self.series],
        }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def ratios(results: Results) -> dict[str, dict[str, Any]]:
    """Scenario ÷ baseline, by best req/s and by CPU per request, at the most connections both ran at."""
    out: dict[str, dict[str, Any]] = {}
    for name, scenario, baseline, anchor in _RATIOS:
        s, b = results.find(scenario), results.find(baseline)
        if s is None or b is None:
            continue
        if s.load != b.load and results.find(scenario, b.load) is not None:
            s = results.find(scenario, b.load)
        if s is None or s.best is None or b.best is None:
            continue
        out[name] = {
            "by_requests_per_second": _ratio(s.best.load.per_second, b.best.load.per_second),
            "by_cpu": _ratio(b.median("cpu_us_per_request"), s.median("cpu_us_per_request")),
            "load": s.load if s.load == b.load else f"{s.load} vs {b.load}",
            "anchor": anchor,
        }
    return out


def write_json(results: Results, path: Path) -> Path:
    """Write atomically (``*.tmp`` then rename), so an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results.to_json(), indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _ms(latency: dict[str, float], key: str) -> str:
    value = latency.get(key)
    return "" if value is None else f"{value / 1000:.2f}"


def _queries(series: Series) -> str:
    """ "none" when no node backend ran a query; else read-path load queries per request (node counters)."""
    flags = [r.db_queried for r in series.runs if r.db_queried is not None]
    if not flags:
        return ""
    counted = [r for r in series.runs if r.node is not None]
    if counted:
        loads = sum(r.node.loads for r in counted if r.node is not None)
        requests = sum(r.load.requests for r in counted)
        if loads:
            return f"{loads / requests:.3f}/req" if requests else f"{loads:.0f}"
        return "0 (+ other queries)" if any(flags) else "none"
    return "yes" if any(flags) else "none"


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _forwarding_notes(series: Series) -> list[str]:
    """For a node that forwards: the share of its look-ups it forwarded, and the upstream node's CPU per request
    (the CPU column is the asking node's alone)."""
    upstream = series.median("upstream_cpu_us_per_request")
    if upstream is None:
        return []
    forwarded = series.median("forwarded_fraction")
    share = [] if forwarded is None else [f"{forwarded:.1%} forwarded"]
    return [*share, f"upstream node CPU {upstream:,.1f} µs/req"]


def markdown(results: Results) -> str:
    """The results as Markdown: one row per series, then ratios, import rate, memory and notes."""
    lines = [
        f"## idnode benchmarks, {results.meta.get('date')} on {results.meta.get('host')} ({results.meta.get('mode')})",
        "",
        "| scenario | load | best req/s | ids/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | DB CPU µs/req "
        "| DB loads/req | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in results.series:
        if s.skipped is not None:
            lines.append(f"| {s.scenario} | {s.load} | | | | | | | | | {s.skipped} |")
            continue
        best = s.best
        if best is None:
            continue
        lat = best.load.latency_us
        ids = _num(best.load.per_second * s.items_per_request) if s.items_per_request > 1 else ""
        queried = _queries(s)
        notes = "; ".join(dict.fromkeys([*_forwarding_notes(s), *s.problems]))
        lines.append(
            f"| {s.scenario} | {s.load} | {_num(best.load.per_second)} | {ids} | {_ms(lat, 'p50')} | {_ms(lat, 'p99')} "
            f"| {_ms(lat, 'p99.9')} | {_num(s.median('cpu_us_per_request'), 1)} "
            f"| {_num(s.median('db_cpu_us_per_request'), 1)} | {queried} | {notes} |"
        )
    table = ratios(results)
    if table:
        lines += ["", "| ratio | by req/s | by CPU µs/req | load | anchor |", "|---|---:|---:|---|---|"]
        for name, r in table.items():
            lines.append(
                f"| {name} | {_num(r['by_requests_per_second'], 3)} | {_num(r['by_cpu'], 3)} | {r['load']} "
                f"| {r['anchor']} |"
            )
    if results.load:
        imp = results.load
        lines += [
            "",
            f"COPY import: {imp['rows']:,} rows in {imp['copy_seconds']:.2f} s "
            f"= **{imp['rows_per_second']:,.0f} rows/s**"
            + (
                f" (without the schema's triggers: {imp['rows_per_second_without_triggers']:,.0f} rows/s)"
                if imp.get("rows_per_second_without_triggers")
                else ""
            ),
        ]
    if results.memory:
        mem = results.memory
        lines += [
            "",
            f"RSS per cached handle: **{mem['bytes_per_handle']:,.0f} B** ({mem['handles']:,} handles, "
            f"VmRSS {mem['rss_before_kib']:,} → {mem['rss_after_kib']:,} KiB; answer body ≈ {mem['body_bytes']:,} B)",
        ]
    if results.notes:
        lines += ["", *[f"- {note}" for note in results.notes]]
    return "\n".join(lines) + "\n"
