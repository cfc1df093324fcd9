"""A full harness run: set up, load the data, drive every target in turn, and collect the results.

Order, and why:
1. Tools (apt-get when missing), then the database and the COPY import, so the import rate is measured on an
   idle server and every node starts with all data present.
2. Baselines first (hello-world, nginx), as the anchors' method asks: ratios compare against them.
3. The node with the default cache: memory per cached handle is measured while filling the hot set, before
   any other scenario allocates; then the cached scenarios, the 404s, the batches, the fixed-rate run, the
   forwarding targets (each a second node asking this one, while its hot set is still cached and before any
   write changes a record), and the write-API probe.
4. The node with a small cache (cold look-ups), then the two-worker pair, which uses both cores.

Every process is started inside ``async with`` blocks, so an error or Ctrl-C at any point stops what was
started, and the temporary work directory is removed at the end.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import dataset, writes
from benchmarks.client import fill_cache
from benchmarks.fixedrate import run_hey
from benchmarks.measure import Meter, Series
from benchmarks.plan import Plan
from benchmarks.postgres import BenchDatabase, bench_database
from benchmarks.procfs import busy_others, rss_kib
from benchmarks.report import Results
from benchmarks.scenarios import FORWARDING_TARGETS, Scenario, absent_hot_numbers, catalogue
from benchmarks.servers import Server, hello_server, idnode_server, nginx_server
from benchmarks.tools import Tools, find_tools
from benchmarks.wrk import LoadResult, run_wrk

__all__ = ["Options", "run_suite"]

Say = Callable[[str], None]
_PRIMER = 2000
"""Records cached before the RSS baseline is read, so that pool buffers and code paths warmed by the first
loads are not counted as cache memory."""
_W2_PASSES = 8
_RUN_ERRORS = (RuntimeError, ValueError, OSError, TimeoutError)
_TARGET_ERRORS = (*_RUN_ERRORS, aiohttp.ClientError)


@dataclass(frozen=True, slots=True)
class Options:
    plan: Plan
    database_url: str | None = None
    install: bool = True


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _meta(plan: Plan, tools: Tools) -> dict[str, Any]:
    commit = _first_line(["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "mode": plan.mode,
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "commit": commit,
        "cpu": _cpu_model(),
        "cores": _first_line(["nproc"]),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in ("aiohttp", "uvloop", "asyncpg", "orjson")},
        "tools": {
            "wrk": _first_line([tools.wrk, "-v"]) if tools.wrk else None,
            "nginx": _first_line([tools.nginx, "-v"]) if tools.nginx else None,
            "hey": "hey (Debian package)" if tools.hey else None,
        },
        "pinning": f"server CPU {plan.server_cpus}, load generator CPU {plan.client_cpus}"
        if tools.taskset
        else "none (taskset missing)",
        "plan": asdict(plan),
    }


class _Runner:
    """Runs the scenarios of one target against one started server."""

    def __init__(self, options: Options, tools: Tools, workdir: Path, results: Results, say: Say) -> None:
        self.plan = options.plan
        self.options = options
        self.tools = tools
        self.workdir = workdir
        self.results = results
        self.say = say

    def _pinned(self, scenario_target: str) -> tuple[str | None, int]:
        """(generator CPUs, wrk threads): pinned single-core set-up, or both cores for the two-worker pair."""
        if scenario_target.endswith("-w2"):
            return None, 2
        return self.plan.client_cpus, 1

    def _record(self, series: Series) -> Series:
        self.results.series.append(series)
        best = series.best
        if series.skipped is not None:
            self.say(f"  {series.scenario:<16} {series.load:<6} skipped: {series.skipped}")
        elif best is not None:
            cpu = series.median("cpu_us_per_request")
            lat = best.load.latency_us
            self.say(
                f"  {series.scenario:<16} {series.load:<6} {best.load.per_second:>10,.0f} req/s"
                f"  p99 {lat.get('p99', 0) / 1000:6.2f} ms  CPU {cpu or 0:6.1f} µs/req"
                + (f"  [{'; '.join(dict.fromkeys(series.problems))}]" if series.problems else "")
            )
        return series

    def target_failed(self, target: str, exc: BaseException) -> None:
        """A target that could not be run: a note, and a row saying why in place of its scenarios."""
        note = f"target {target} failed: {type(exc).__name__}: {exc}"
        self.say(note)
        self.results.notes.append(note)
        self._record(Series(target, "-", skipped=f"target failed: {exc}"[:300]))

    async def wrk_series(self, meter: Meter, scenario: Scenario, server: Server) -> None:
        script = self.workdir / f"{scenario.name}.lua"
        script.write_text(scenario.script)
        cpus, threads = self._pinned(scenario.target)
        url = server.url + scenario.path
        for connections in scenario.connections(self.plan):
            server.check_alive()

            async def load(seconds: float, connections: int = connections) -> LoadResult:
                return await run_wrk(
                    self.tools.wrk or "wrk",
                    url,
                    script,
                    connections=connections,
                    threads=threads,
                    seconds=seconds,
                    cpus=cpus,
                    taskset=self.tools.taskset,
                )

            try:
                series = await meter.series(
                    scenario.name,
                    f"c{connections}",
                    load,
                    warmup=self.plan.warmup_s,
                    seconds=self.plan.run_s,
                    repeats=self.plan.repeats,
                    items_per_request=scenario.items_per_request,
                    expect_status_errors=scenario.expect_status_errors,
                )
            except _RUN_ERRORS as exc:  # one broken scenario must not lose the rest of the run
                series = Series(scenario.name, f"c{connections}", skipped=f"failed: {type(exc).__name__}: {exc}")
            self._record(series)

    async def fixed_rate(self, meter: Meter, name: str, url: str) -> None:
        """Latency at ``plan.rate`` (or half of ``name``'s best closed-loop req/s), with hey."""
        if self.tools.hey is None:
            self._record(Series(f"{name}_rate", "rate", skipped="not available: hey is not installed"))
            return
        closed = self.results.find(name)
        rate = self.plan.rate or (
            closed.best.load.per_second * self.plan.rate_fraction if closed and closed.best else 0
        )
        if rate < 1:
            return

        async def load(seconds: float) -> LoadResult:
            return await run_hey(
                self.tools.hey or "hey",
                url,
                rate=rate,
                seconds=seconds,
                cpus=self.plan.client_cpus,
                taskset=self.tools.taskset,
            )

        try:
            series = await meter.series(
                f"{name}_rate", f"{rate:,.0f}/s", load, warmup=0, seconds=self.plan.rate_s, repeats=1
            )
        except _RUN_ERRORS as exc:
            self._record(Series(f"{name}_rate", "rate", skipped=f"failed: {type(exc).__name__}: {exc}"))
            return
        achieved = series.best.load.per_second if series.best else 0.0
        if achieved < 0.95 * rate:
            series.problems.append(f"achieved {achieved:,.0f}/s of {rate:,.0f}/s offered")
        self._record(series)

    async def writes(self, meter: Meter, server: Server, unavailable: str | None) -> None:
        """The registry scenarios, or one "skipped" line each saying why they cannot run."""
        if unavailable:
            available = writes.Availability(unavailable, unavailable, unavailable)
        else:
            available = await writes.probe(server.url)
        for scenario in writes.write_scenarios(self.plan, available.token):
            why = available.why_not(scenario.kind)
            if why is not None:
                self._record(Series(scenario.name, "-", skipped=why))
                continue
            await self.wrk_series(
                meter,
                Scenario(
                    scenario.name,
                    scenario.title,
                    "node",
                    scenario.script,
                    items_per_request=scenario.items_per_request,
                    fixed_connections=scenario.connections,
                ),
                server,
            )


@contextlib.asynccontextmanager
async def _workdir() -> AsyncIterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _node_default(runner: _Runner, db: BenchDatabase, group: list[Scenario], forwarding: list[Scenario]) -> None:
    plan, tools, say = runner.plan, runner.tools, runner.say
    unavailable = await writes.provision(db.dsn)
    async with idnode_server(
        db.dsn, runner.workdir, cpus=plan.server_cpus, taskset=tools.taskset, extra_env=writes.NODE_ENV
    ) as node:
        say(f"node: {node.url} (pid {node.process.pid}), default cache")
        primer = range(plan.hot_keys, min(plan.records, plan.hot_keys + _PRIMER))
        if len(primer):
            await fill_cache(node.url, primer)
        before = rss_kib(node.worker_pid())
        warm = await fill_cache(node.url, range(plan.hot_keys))
        after = rss_kib(node.worker_pid())
        runner.results.memory = {
            "handles": plan.hot_keys,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_handle": round((after - before) * 1024 / plan.hot_keys, 1),
            "fill_seconds": round(warm.seconds, 2),
            "fill_identifiers_per_second": round(warm.identifiers / warm.seconds) if warm.seconds else None,
            "body_bytes": await _body_bytes(node.url),
        }
        say(
            f"memory: {runner.results.memory['bytes_per_handle']:,.0f} B RSS per cached handle "
            f"({plan.hot_keys:,} handles cached in {warm.seconds:.1f} s)"
        )
        await fill_cache(node.url, absent_hot_numbers(), found=False)
        await fill_cache(node.url, range(dataset.LINKED_BASE, dataset.LINKED_BASE + plan.hot_keys))
        meter = Meter(node, db)
        for scenario in group:
            await runner.wrk_series(meter, scenario, node)
            if scenario.name == "cached":
                await runner.fixed_rate(meter, "cached", f"{node.url}/api/handles/{dataset.handle_of(0)}")
        await _forwarding(runner, db, node, forwarding)
        await runner.writes(meter, node, unavailable)


async def _forwarding(runner: _Runner, db: BenchDatabase, upstream: Server, scenarios: list[Scenario]) -> None:
    """The forwarding targets: a node over its own empty database, homing nothing, that fetches every handle from
    ``upstream`` (the ``node`` target). Pinned to the server core like ``upstream``, which answers on that core
    too: both nodes' work shares one core, as the node and PostgreSQL share it in ``cold``."""
    plan, tools, say = runner.plan, runner.tools, runner.say
    if not scenarios:
        return
    async with db.sibling("fwd") as empty:
        for target in dict.fromkeys(s.target for s in scenarios):
            cold = target == "node-fwd-cold"
            say(f"target {target}: {', '.join(s.name for s in scenarios if s.target == target)}")
            try:
                async with idnode_server(
                    empty.dsn,
                    runner.workdir,
                    cache_max_entries=plan.forward_cold_cache_entries if cold else None,
                    upstream=upstream.url,
                    cpus=plan.server_cpus,
                    taskset=tools.taskset,
                ) as node:
                    say(
                        f"node: {node.url}, homes nothing, upstream {upstream.url}"
                        + (f", cache of {plan.forward_cold_cache_entries:,} entries" if cold else "")
                    )
                    if not cold:  # through the asking node: one forwarded POST /api/resolve per 2,000 handles
                        warm = await fill_cache(node.url, range(plan.hot_keys))
                        say(f"  hot set forwarded and cached in {warm.seconds:.1f} s")
                    meter = Meter(node, empty, upstream=upstream)
                    for scenario in scenarios:
                        if scenario.target == target:
                            await runner.wrk_series(meter, scenario, node)
            except _TARGET_ERRORS as exc:  # keep the node target's write scenarios
                runner.target_failed(target, exc)


async def _body_bytes(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/handles/{dataset.handle_of(0)}") as response:
        return len(await response.read())


async def _run_target(
    runner: _Runner, db: BenchDatabase, target: str, group: list[Scenario], forwarding: list[Scenario]
) -> None:
    plan, tools, say, workdir = runner.plan, runner.tools, runner.say, runner.workdir
    if target == "hello":
        async with hello_server(workdir, cpus=plan.server_cpus, taskset=tools.taskset) as server:
            meter = Meter(server, None)
            for scenario in group:
                await runner.wrk_series(meter, scenario, server)
            await runner.fixed_rate(meter, "hello", server.url + "/hello")
    elif target == "nginx":
        if tools.nginx is None:
            runner._record(Series("nginx", "c64", skipped="not available: nginx is not installed"))
            return
        async with nginx_server(tools.nginx, workdir, cpus=plan.server_cpus, taskset=tools.taskset) as server:
            meter = Meter(server, None)
            for scenario in group:
                await runner.wrk_series(meter, scenario, server)
    elif target == "node":
        await _node_default(runner, db, group, forwarding)
    elif target == "node-cold":
        async with idnode_server(
            db.dsn, workdir, cache_max_entries=plan.cold_cache_entries, cpus=plan.server_cpus, taskset=tools.taskset
        ) as node:
            say(f"node: {node.url}, cache of {plan.cold_cache_entries:,} entries")
            meter = Meter(node, db)
            for scenario in group:
                await runner.wrk_series(meter, scenario, node)
    elif target == "hello-w2":
        async with hello_server(workdir, workers=2) as server:
            meter = Meter(server, None)
            for scenario in group:
                await runner.wrk_series(meter, scenario, server)
    elif target == "node-nolane":
        pinned = {"cpus": plan.server_cpus, "taskset": tools.taskset}
        await _cached_node(runner, db, group, "fast lane off", passes=1, fast_lane=False, **pinned)
    elif target == "node-w2":
        await _cached_node(runner, db, group, f"2 workers, filling both caches ({_W2_PASSES} passes)", workers=2)


async def _cached_node(
    runner: _Runner, db: BenchDatabase, group: list[Scenario], what: str, *, passes: int = _W2_PASSES, **options: Any
) -> None:
    """A node (``idnode_server`` ``options``) with the hot set cached (``passes`` times: each worker its own)."""
    async with idnode_server(db.dsn, runner.workdir, **options) as node:
        runner.say(f"node: {node.url}, {what}")
        await fill_cache(node.url, range(runner.plan.hot_keys), passes=passes)
        meter = Meter(node, db)
        for scenario in group:
            await runner.wrk_series(meter, scenario, node)


async def run_suite(options: Options, say: Say) -> Results:
    """Everything of one harness run; the caller writes and prints the results."""
    plan = options.plan
    tools = find_tools(install=options.install, need_wrk=True)
    for note in tools.notes:
        say(note)
    if tools.wrk is None:
        raise RuntimeError("wrk is required for the timed benchmarks (apt-get install wrk), or use --smoke")
    results = Results(_meta(plan, tools), notes=list(tools.notes))
    server_cpus = plan.server_cpus if tools.taskset else None
    others = busy_others([], window=1.0)
    results.meta["others_busy_at_start"] = [str(b) for b in others]
    if others:
        say("others busy at start: " + ", ".join(str(b) for b in others))
    async with (
        _workdir() as workdir,
        bench_database(options.database_url, say=say, server_cpus=server_cpus, taskset=tools.taskset) as db,
    ):
        results.meta["postgresql"] = await db.server_version()
        results.meta["database"] = "embedded (pinned with the server)" if db.embedded else "given by --database-url"
        say(f"data: generating and COPYing {plan.records:,} records")
        report = await dataset.load(db.dsn, plan.records, linked=plan.hot_keys)
        results.load = {
            "rows": report.rows,
            "generate_seconds": round(report.generate_seconds, 2),
            "copy_seconds": round(report.copy_seconds, 3),
            "rows_per_second": round(report.rows_per_second),
            "rows_per_second_without_triggers": round(report.rows_per_second_without_triggers or 0) or None,
            "stored_bytes_mean": round(report.stored_bytes_mean),
            "method": "asyncpg copy_records_to_table into handles (schema triggers active), one COPY",
        }
        say(f"data: COPY {report.rows_per_second:,.0f} rows/s ({report.copy_seconds:.1f} s)")
        runner = _Runner(options, tools, workdir, results, say)
        scenarios = catalogue(plan)
        forwarding = [s for s in scenarios if s.target in FORWARDING_TARGETS]
        for target in dict.fromkeys(s.target for s in scenarios if s.target not in FORWARDING_TARGETS):
            group = [s for s in scenarios if s.target == target]
            say(f"target {target}: {', '.join(s.name for s in group)}")
            try:
                await _run_target(runner, db, target, group, forwarding)
            except _TARGET_ERRORS as exc:  # keep the other targets' figures
                runner.target_failed(target, exc)
    return results
