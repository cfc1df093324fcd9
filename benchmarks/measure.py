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
  exact load queries and look-ups per outcome. Only for idnode targets.
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

__all__ = ["Meter", "Run", "Series"]

Load = Callable[[float], Awaitable[LoadResult]]
"""Drives the server for the given number of seconds and returns what the generator measured."""


@dataclass(slots=True)
class Run:
    load: LoadResult
    cpu_seconds: float
    db_cpu_seconds: float | None
    others: list[str]
    db_queried: bool | None
    db_delta: DbCounters | None
    node: NodeCounters | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.cpu_seconds * 1e6 / self.load.requests if self.load.requests else None

    @property
    def db_cpu_us_per_request(self) -> float | None:
        if self.db_cpu_seconds is None or not self.load.requests:
            return None
        return self.db_cpu_seconds * 1e6 / self.load.requests

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
        out["db_queried_in_any_run"] = any(r.db_queried for r in self.runs) if self.runs else None
        loads = [r.node.loads for r in self.runs if r.node is not None]
        out["node_cache_loads"] = int(sum(loads)) if loads else None
        out["problems"] = self.problems
        out["runs"] = [r.to_json() for r in self.runs]
        return out


class Meter:
    """Runs loads against one server and accounts its CPU (and its database's) around each run."""

    def __init__(self, server: Server, db: BenchDatabase | None, *, busy_window: float = 0.25) -> None:
        self.server = server
        self.db = db
        self.busy_window = busy_window
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
        others = [str(b) for b in busy_others([*server_pids, *db_pids], window=self.busy_window)]
        node_before = await scrape(self.server.url) if self.node_metrics else None
        cpu_before, db_before = sample_cpu(server_pids), sample_cpu(db_pids)
        counters_before = started = None
        if self.db is not None:
            counters_before, started = await self.db.counters(), await self.db.now()
        result = await load(seconds)
        cpu_after = sample_cpu(self.server.pids())
        db_after = sample_cpu(await self._db_pids())
        queried = delta = None
        if self.db is not None and counters_before is not None:
            last = await self.db.last_node_query_start()
            queried = last is not None and started is not None and last > started
            delta = (await self.db.counters()).minus(counters_before)
        db_seconds = db_after.spent_since(db_before) if db_pids else None
        node_after = await scrape(self.server.url) if node_before is not None else None
        node = node_after.minus(node_before) if node_after is not None and node_before is not None else None
        return Run(result, cpu_after.spent_since(cpu_before), db_seconds, others, queried, delta, node)

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
        """Warm up, then ``repeats`` measured runs; flags runs whose answers were not the expected kind."""
        series = Series(scenario, load_label, items_per_request)
        if warmup > 0:
            await load(warmup)
        for _ in range(repeats):
            run = await self.run(load, seconds)
            series.runs.append(run)
            status = run.load.errors.get("status", 0)
            if run.load.failures:
                series.problems.append(f"{run.load.failures} socket errors/timeouts")
            if expect_status_errors and status < run.load.requests:
                series.problems.append(f"{run.load.requests - status} answers were not 4xx/5xx")
            if not expect_status_errors and status:
                series.problems.append(f"{status} answers were 4xx/5xx")
        return series
