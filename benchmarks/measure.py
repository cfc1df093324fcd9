"""One measured series: a warm-up, then repeated runs, each paired with the server's CPU time per request.

Method (research/performance-anchors.md, "Notes for whoever writes the perf harness"): warm up (3 s by
default), then repeat the run; report the *best* req/s (sibling load only ever lowers a run, so the best is
closest to capacity) and the *median* CPU µs/request (the stable figure), plus the latencies of the best run.
At the start of every run the processes of other users above 5 % of a core are recorded.

Per run, besides what the load generator saw:
- ``cpu_us_per_request``: Δ(utime+stime) summed over the server's process tree ÷ requests;
- ``db_cpu_us_per_request``: the same over the database's processes (the embedded server's whole tree, or
  the backends of the benchmark database on a given server when they are local), for the cold paths;
- ``db_queried``: whether any node backend started a query during the run (``postgres.py``), and the
  approximate ``pg_stat_database`` deltas;
- ``node``: the node's own read-path counters over the run, scraped from ``/metrics`` (``nodemetrics.py``):
  exact load queries and look-ups per outcome (``forwarded`` among them). Only for idnode targets;
- ``upstream_cpu_us_per_request``: for a node that forwards, the CPU the node it forwards to spent per request
  (the forwarding targets), kept apart from the asking node's own figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.nodemetrics import NodeCounters, scrape
from benchmarks.postgres import BenchDatabase, DbCounters
from benchmarks.procfs import busy_others, descendants, sample_cpu
from benchmarks.servers import Server
from benchmarks.wrk import LoadResult

__all__ = ["UNEXPECTED_LIMIT", "Load", "Meter", "Run", "Series"]

Load = Callable[[float], Awaitable[LoadResult]]
"""Drives the server for the given number of seconds and returns what the generator measured."""
UNEXPECTED_LIMIT = 0.01
"""A run with more than this share of answers of the wrong kind (4xx/5xx where success was expected, or the
reverse) measured something else, such as a storm of 502s or 404s: its series fails rather than report req/s."""


@dataclass(slots=True)
class Run:
    load: LoadResult
    cpu_seconds: float
    db_cpu_seconds: float | None
    others: list[str]
    db_queried: bool | None
    db_delta: DbCounters | None
    node: NodeCounters | None = None
    upstream_cpu_seconds: float | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.cpu_seconds * 1e6 / self.load.requests if self.load.requests else None

    @property
    def db_cpu_us_per_request(self) -> float | None:
        return _per_request(self.db_cpu_seconds, self.load.requests)

    @property
    def upstream_cpu_us_per_request(self) -> float | None:
        return _per_request(self.upstream_cpu_seconds, self.load.requests)

    @property
    def forwarded_fraction(self) -> float | None:
        """Share of the look-ups the node counted that it fetched from another node (outcome ``forwarded``)."""
        if self.node is None:
            return None
        total = sum(self.node.lookups.values())
        return self.node.lookups.get("forwarded", 0.0) / total if total else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.load.requests,
            "seconds": round(self.load.seconds, 3),
            "requests_per_second": round(self.load.per_second, 1),
            "latency_us": self.load.latency_us,
            "errors": self.load.errors,
            "cpu_us_per_request": _round(self.cpu_us_per_request),
            "db_cpu_us_per_request": _round(self.db_cpu_us_per_request),
            "db_queried": self.db_queried,
            "others_busy": self.others,
        }
        if self.upstream_cpu_seconds is not None:
            out["upstream_cpu_us_per_request"] = _round(self.upstream_cpu_us_per_request)
        if self.node is not None:
            out["node_counters_delta"] = self.node.to_json()
        if self.db_delta is not None:
            out["db_stat_delta"] = {
                "xact_commit": self.db_delta.xact_commit,
                "tup_returned": self.db_delta.tup_returned,
                "tup_fetched": self.db_delta.tup_fetched,
            }
        return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _per_request(seconds: float | None, requests: int) -> float | None:
    return None if seconds is None or not requests else seconds * 1e6 / requests


@dataclass(slots=True)
class Series:
    """The runs of one scenario at one load setting (connections, or an offered rate)."""

    scenario: str
    load: str
    items_per_request: int = 1
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def best(self) -> Run | None:
        return max(self.runs, key=lambda r: r.load.per_second) if self.runs else None

    def median(self, attribute: str) -> float | None:
        values = [v for v in (getattr(r, attribute) for r in self.runs) if v is not None]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        best = self.best
        out: dict[str, Any] = {"scenario": self.scenario, "load": self.load}
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out["items_per_request"] = self.items_per_request
        if best is not None:
            out["best_requests_per_second"] = round(best.load.per_second, 1)
            out["best_items_per_second"] = round(best.load.per_second * self.items_per_request, 1)
            out["best_latency_us"] = best.load.latency_us
        out["median_cpu_us_per_request"] = _round(self.median("cpu_us_per_request"))
        out["median_db_cpu_us_per_request"] = _round(self.median("db_cpu_us_per_request"))
        if any(r.upstream_cpu_seconds is not None for r in self.runs):
            out["median_upstream_cpu_us_per_request"] = _round(self.median("upstream_cpu_us_per_request"))
            out["median_forwarded_fraction"] = _round(self.median("forwarded_fraction"), 4)
        out["db_queried_in_any_run"] = any(r.db_queried for r in self.runs) if self.runs else None
        loads = [r.node.loads for r in self.runs if r.node is not None]
        out["node_cache_loads"] = int(sum(loads)) if loads else None
        out["problems"] = self.problems
        out["runs"] = [r.to_json() for r in self.runs]
        return out


class Meter:
    """Runs loads against one server and accounts its CPU (and its database's, and the upstream node's when it
    forwards to one) around each run."""

    def __init__(
        self,
        server: Server,
        db: BenchDatabase | None,
        *,
        busy_window: float = 0.25,
        upstream: Server | None = None,
    ) -> None:
        self.server = server
        self.db = db
        self.busy_window = busy_window
        self.upstream = upstream
        self.node_metrics = db is not None  # only idnode targets have a database (and /metrics)

    async def _db_pids(self) -> list[int]:
        if self.db is None:
            return []
        if self.db.postmaster is not None:
            return descendants(self.db.postmaster)
        return await self.db.backend_pids()

    async def run(self, load: Load, seconds: float) -> Run:
        """One measured run of ``seconds``."""
        server_pids = self.server.pids()
        db_pids = await self._db_pids()
        upstream_pids = self.upstream.pids() if self.upstream is not None else []
        others = [str(b) for b in busy_others([*server_pids, *db_pids, *upstream_pids], window=self.busy_window)]
        node_before = await scrape(self.server.url) if self.node_metrics else None
        cpu_before, db_before = sample_cpu(server_pids), sample_cpu(db_pids)
        upstream_before = sample_cpu(upstream_pids)
        counters_before = started = None
        if self.db is not None:
            counters_before, started = await self.db.counters(), await self.db.now()
        result = await load(seconds)
        cpu_after = sample_cpu(self.server.pids())
        db_after = sample_cpu(await self._db_pids())
        upstream_seconds = (
            sample_cpu(self.upstream.pids()).spent_since(upstream_before) if self.upstream is not None else None
        )
        queried = delta = None
        if self.db is not None and counters_before is not None:
            last = await self.db.last_node_query_start()
            queried = last is not None and started is not None and last > started
            delta = (await self.db.counters()).minus(counters_before)
        db_seconds = db_after.spent_since(db_before) if db_pids else None
        node_after = await scrape(self.server.url) if node_before is not None else None
        node = node_after.minus(node_before) if node_after is not None and node_before is not None else None
        return Run(
            result, cpu_after.spent_since(cpu_before), db_seconds, others, queried, delta, node, upstream_seconds
        )

    async def series(
        self,
        scenario: str,
        load_label: str,
        load: Load,
        *,
        warmup: float,
        seconds: float,
        repeats: int,
        items_per_request: int = 1,
        expect_status_errors: bool = False,
    ) -> Series:
        """Warm up, then ``repeats`` measured runs; flags runs whose answers were not the expected kind, and raises
        RuntimeError when more than ``UNEXPECTED_LIMIT`` of a run's answers were."""
        series = Series(scenario, load_label, items_per_request)
        if warmup > 0:
            await load(warmup)
        for _ in range(repeats):
            run = await self.run(load, seconds)
            series.runs.append(run)
            status = run.load.errors.get("status", 0)
            if run.load.failures:
                series.problems.append(f"{run.load.failures} socket errors/timeouts")
            unexpected = run.load.requests - status if expect_status_errors else status
            if unexpected:
                kind = "not 4xx/5xx" if expect_status_errors else "4xx/5xx"
                what = f"{unexpected:,} of {run.load.requests:,} answers were {kind}"
                if unexpected > UNEXPECTED_LIMIT * run.load.requests:
                    raise RuntimeError(what)
                series.problems.append(what)
        return series
