"""What counting costs a cached look-up: ``HandlesEndpoint.get_handle`` timed with and without its metric lines.

::

    python benchmarks/metrics_overhead.py [--database-url DSN] [--iterations 200000] [--rounds 7]

Method. A real app is built by ``resolver.app.create_app`` over a real database (``--database-url`` /
``IDNODE_DATABASE_URL`` names a server, on which a throw-away database is created; otherwise an embedded
PostgreSQL is started in a temporary directory) and started, so its LISTEN connection is up as in production.
One record is cached by a first request. Then the hot handler is called directly in a loop on one request
prepared with ``aiohttp.test_utils.make_mocked_request``; each call is driven with ``coroutine.send(None)``,
which completes at once on a cache hit (the hot path has no await; the script stops if it ever suspends).

"Without metrics" is the same function with its metric lines removed: the sources of ``get_handle`` and of
its hot branch ``_ready`` are read with ``inspect``, every line that calls ``perf_counter()``, bumps
``self._counts`` or calls ``self._observe`` is dropped, and the rest is compiled in ``resolver.http``'s namespace
and bound to a copy of the endpoint. So the two
variants differ by exactly those lines, whatever else the hot path does; the dropped lines are printed, and
both variants must answer the same bytes. Rounds alternate the variants; the minimum and median of the rounds
are printed, with a breakdown of the single operations and the cost of a scrape (one worker, and merged with
one sibling). Budget (research/performance-anchors.md T6): ≤ 2 µs per look-up, scrape ≤ 50 ms. The script
prints figures and never asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import inspect
import os
import re
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import timeit
import types
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resolver.http
from resolver.app import ENDPOINT, PROMETHEUS_REGISTRY, create_app
from resolver.config import Settings
from resolver.embedded import EmbeddedPostgres
from resolver.http import HandlesEndpoint
from resolver.metrics import LATENCY_BUCKETS, LookupCounts, NodeMetrics, PlainHistogram, merge
from resolver.records import decode_values, values_to_stored
from resolver.store import apply_migrations

BUDGET_US = 2.0
SCRAPE_BUDGET_MS = 50.0
PREFIX = "88.BENCH"
HANDLE = "88.BENCH/metrics-overhead"
METRIC_LINE = re.compile(r"perf_counter\(\)|self\._counts\.|self\._observe\(|self\._responses\[")
VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/product/1"}},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "quality@example.org"}},
]

Handler = Callable[[web.Request], object]


def _say(line: str = "") -> None:
    print(line, flush=True)


@contextlib.asynccontextmanager
async def _database(server_dsn: str | None) -> AsyncIterator[str]:
    """A fresh, migrated database on ``server_dsn`` (or on an embedded server), dropped afterwards."""
    root: Path | None = None
    server: EmbeddedPostgres | None = None
    if server_dsn is None:
        root = Path(tempfile.mkdtemp(prefix="idnode-metrics-bench-"))
        server = EmbeddedPostgres(root)
        server_dsn = await asyncio.to_thread(server.start)
    name = f"idnode_metrics_bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(server_dsn)
    dsn = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        await apply_migrations(pool)
        await pool.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if server is not None:
            await asyncio.to_thread(server.stop)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


async def _seed(dsn: str) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.execute("INSERT INTO prefixes (prefix_key, prefix) VALUES ($1, $1)", PREFIX)
        await con.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb)',
            HANDLE.upper(),
            HANDLE,
            PREFIX,
            values_to_stored(decode_values(VALUES)).decode(),
        )
    finally:
        await con.close()


def recompiled(cls: type, name: str, drop: re.Pattern[str], module: types.ModuleType) -> tuple[Any, list[str]]:
    """``cls.name`` compiled again in ``module``'s namespace without the lines ``drop`` matches; and those lines."""
    source = textwrap.dedent(inspect.getsource(getattr(cls, name)))
    kept, dropped = [], []
    for line in source.splitlines():
        (dropped if drop.search(line) else kept).append(line)
    namespace = dict(vars(module))
    exec(compile("\n".join(kept), f"<{name} without {drop.pattern}>", "exec"), namespace)
    return namespace[name], [line.strip() for line in dropped]


def _without_metrics(endpoint: HandlesEndpoint) -> tuple[Handler, list[str]]:
    """``endpoint.get_handle`` compiled again without its metric lines (its own and its ``_ready``'s), bound to a
    copy of ``endpoint`` whose ``_ready`` is stripped the same way; and the lines dropped."""
    handler, dropped = recompiled(HandlesEndpoint, "get_handle", METRIC_LINE, resolver.http)
    ready, dropped_ready = recompiled(HandlesEndpoint, "_ready", METRIC_LINE, resolver.http)
    if len(dropped) < 3 or not any("_counts" in line for line in dropped_ready):
        sys.exit("metrics_overhead: get_handle changed shape; cannot strip its metric lines")
    bare = copy.copy(endpoint)
    bare._ready = types.MethodType(ready, bare)  # type: ignore[method-assign]
    return types.MethodType(handler, bare), dropped + dropped_ready


def _answer(handler: Handler, request: web.Request) -> web.Response:
    coroutine = handler(request)
    try:
        coroutine.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    coroutine.close()  # type: ignore[attr-defined]
    sys.exit("metrics_overhead: the hot path suspended: the look-up was not a cache hit")


def _per_call_us(handler: Handler, request: web.Request, iterations: int) -> float:
    started = time.perf_counter()
    for _ in range(iterations):
        coroutine = handler(request)
        try:
            coroutine.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            pass
        else:
            sys.exit("metrics_overhead: the hot path suspended during timing")
    return (time.perf_counter() - started) / iterations * 1e6


def _breakdown() -> list[tuple[str, float]]:
    counts, histogram = LookupCounts(), PlainHistogram(LATENCY_BUCKETS)
    perf_counter = time.perf_counter
    responses = NodeMetrics().responses
    status = web.Response().status
    cases = {
        "perf_counter()": lambda: perf_counter(),
        "counts.hit += 1": lambda: setattr(counts, "hit", counts.hit + 1),
        "histogram.observe(42 µs)": lambda: histogram.observe(0.000042),
        "answer counted by class": lambda: responses.__setitem__(status // 100, responses[status // 100] + 1),
        "empty lambda (call overhead)": lambda: None,
    }
    out = []
    for label, case in cases.items():
        best = min(timeit.repeat(case, number=200_000, repeat=5)) / 200_000 * 1e9
        out.append((label, best))
    return out


def _scrape_ms(app: web.Application) -> tuple[float, float]:
    registry = app[PROMETHEUS_REGISTRY]
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        text = generate_latest(registry)
    single = (time.perf_counter() - started) / runs * 1e3
    sibling = text.decode()
    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        merged = merge([registry.collect(), text_string_to_metric_families(sibling)])
        generate_latest(_Families(merged))  # type: ignore[arg-type]
    return single, (time.perf_counter() - started) / runs * 1e3


class _Families:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


async def _measure(dsn: str, iterations: int, rounds: int) -> None:
    await _seed(dsn)
    app = await create_app(Settings(), dsn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # runs on_startup: the LISTEN connection is up, as in a serving node
    try:
        endpoint = app[ENDPOINT]
        request = make_mocked_request("GET", "/api/handles/" + HANDLE, app=app)
        first = await endpoint.get_handle(request)  # a miss: loads the record and caches it
        with_metrics: Handler = endpoint.get_handle
        without_metrics, dropped = _without_metrics(endpoint)
        a, b = _answer(with_metrics, request), _answer(without_metrics, request)
        if not (a.body == b.body == first.body and a.status == b.status == 200):
            sys.exit("metrics_overhead: the two variants answer differently")
        _say(f"hot path: HandlesEndpoint.get_handle on a cached record ({len(a.body)} bytes)")
        _say("lines dropped for 'without metrics':")
        for line in dropped:
            _say(f"    {line}")
        _per_call_us(with_metrics, request, iterations // 10)  # warm-up
        _per_call_us(without_metrics, request, iterations // 10)
        timings: dict[str, list[float]] = {"with": [], "without": []}
        gc.disable()
        try:
            for round_number in range(rounds):
                order = [("with", with_metrics), ("without", without_metrics)]
                for label, handler in order if round_number % 2 == 0 else reversed(order):
                    timings[label].append(_per_call_us(handler, request, iterations))
        finally:
            gc.enable()
        _say()
        _say(f"{rounds} rounds × {iterations} look-ups, alternating (µs per look-up):")
        _say(f"{'variant':<18}{'min':>9}{'median':>9}")
        for label in ("with", "without"):
            _say(f"{label + ' metrics':<18}{min(timings[label]):>9.3f}{statistics.median(timings[label]):>9.3f}")
        diff_min = min(timings["with"]) - min(timings["without"])
        diff_median = statistics.median(timings["with"]) - statistics.median(timings["without"])
        _say(f"{'difference':<18}{diff_min:>9.3f}{diff_median:>9.3f}   budget {BUDGET_US:.1f} µs")
        share = diff_median / statistics.median(timings["with"]) * 100
        _say(f"metrics share of the handler's own time: {share:.1f} % (a whole HTTP look-up costs ~40 µs, §2a)")
        _say()
        _say("single operations (best of 5 × 200,000, ns):")
        for label, ns in _breakdown():
            _say(f"    {label:<38}{ns:>8.0f}")
        single, merged = _scrape_ms(app)
        _say()
        _say(f"scrape: one worker {single:.2f} ms; merged with one sibling's exposition {merged:.2f} ms")
        _say(f"        budget {SCRAPE_BUDGET_MS:.0f} ms")
    finally:
        await runner.cleanup()


async def _main(args: argparse.Namespace) -> None:
    async with _database(args.database_url) as dsn:
        await _measure(dsn, args.iterations, args.rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("IDNODE_DATABASE_URL"), help="PostgreSQL server")
    parser.add_argument("--iterations", type=int, default=200_000, help="look-ups per round and variant")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (the variants alternate)")
    run(_main(parser.parse_args(argv)))
    return 0


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (as a node runs), else on asyncio's loop."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(main)


if __name__ == "__main__":
    sys.exit(main())
