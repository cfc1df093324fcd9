"""What scan counting costs the proxy's hot 302: ``Proxy.resolve`` timed with and without its counting line.

::

    python -m benchmarks.scan_overhead [--database-url DSN] [--iterations 200000] [--rounds 7] [--handles 10000]

Method, as ``metrics_overhead.py`` (whose database, seeding and timing helpers it uses): a real app over a real
database, the record cached by a first request, then ``Proxy.resolve`` driven directly on one mocked request (each
call completes at once on a cache hit). "Without counting" is ``Proxy.resolve`` of a copy of the proxy whose hot
branch (``Proxy._ready``) is compiled again with the ``self._scan(...)`` line dropped, so the variants differ by
exactly that line; both must answer the same Location. Rounds alternate the variants, each on one handle and cycling
over ``--handles`` distinct cached handles; the counts are drained before every round, so each handle's first scan in
a round makes its counter, as after every ``stats_interval``'s roll-up. Then the memory a counted handle takes
(tracemalloc, ``MAX_HANDLES`` distinct handles) and the time to drain them. Prints figures; asserts no timing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import re
import statistics
import sys
import time
import tracemalloc
import types

import asyncpg
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import resolver.proxy
from benchmarks.metrics_overhead import HANDLE, PREFIX, VALUES, _database, _say, _seed, recompiled, run
from resolver.app import LOOKUP, METRICS, create_app
from resolver.config import Settings
from resolver.proxy import Proxy
from resolver.records import decode_values, values_to_stored
from resolver.scans import MAX_HANDLES, ScanCounts

Handler = object


def _without_counting(proxy: Proxy) -> Handler:
    """``proxy.resolve`` of a copy of ``proxy`` whose ``_ready`` (the hot 302) is compiled again without its
    ``self._scan(...)`` line."""
    ready, dropped = recompiled(Proxy, "_ready", re.compile(r"self\._scan\("), resolver.proxy)
    if len(dropped) != 1:
        sys.exit("scan_overhead: Proxy._ready changed shape; cannot strip its counting line")
    bare = copy.copy(proxy)
    bare._ready = types.MethodType(ready, bare)  # type: ignore[method-assign]
    return bare.resolve


def _once(handler: Handler, request: web.Request) -> web.Response:
    coroutine = handler(request)  # type: ignore[operator]
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    sys.exit("scan_overhead: the hot path suspended: the look-up was not a cache hit")


def _memory(handles: int) -> tuple[float, float]:
    """Bytes a counted handle takes, and milliseconds to drain ``handles`` of them."""
    counts = ScanCounts()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(handles):
        counts.count(f"88.999.1/PRD-2026-{n:09d}")  # the key string is kept by the counter, as the proxy's is
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    started = time.perf_counter()
    counts.drain()
    return used / handles, (time.perf_counter() - started) * 1e3


async def _seed_many(dsn: str, count: int) -> list[str]:
    """``count`` more records under the benchmark's prefix (as ``_seed``'s); their names."""
    names = [f"{PREFIX}/SCAN-{n:06d}" for n in range(count)]
    stored = values_to_stored(decode_values(VALUES)).decode()
    con = await asyncpg.connect(dsn)
    try:
        await con.executemany(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb)',
            [(name.upper(), name, PREFIX, stored) for name in names],
        )
    finally:
        await con.close()
    return names


def _cycle_us(handler: Handler, requests: list[web.Request], iterations: int) -> float:
    """µs per answer of ``handler`` over ``requests`` in turn (every one a cache hit)."""
    count = len(requests)
    started = time.perf_counter()
    for n in range(iterations):
        coroutine = handler(requests[n % count])  # type: ignore[operator]
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:
            sys.exit("scan_overhead: the hot path suspended during timing")
    return (time.perf_counter() - started) / iterations * 1e6


async def _measure(dsn: str, iterations: int, rounds: int, distinct: int) -> None:
    await _seed(dsn)
    names = await _seed_many(dsn, distinct)
    app = await create_app(Settings(), dsn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        scans = ScanCounts()
        proxy = Proxy(app[LOOKUP], app[METRICS], max_handle_bytes=255, scans=scans)
        one = [make_mocked_request("GET", "/" + HANDLE, app=app)]
        many = [make_mocked_request("GET", "/" + name, app=app) for name in names]
        for request in one + many:
            await proxy.resolve(request)  # a miss: loads the record and caches it
        counting, plain = proxy.resolve, _without_counting(proxy)
        a, b = _once(counting, one[0]), _once(plain, one[0])
        if not (a.status == b.status == 302 and a.headers["Location"] == b.headers["Location"]):
            sys.exit("scan_overhead: the two variants answer differently")
        _say(f"hot path: Proxy.resolve, a cached record's 302 ({a.headers['Location']})")
        variants = {
            "counting, 1 handle": (counting, one),
            "not counting, 1 handle": (plain, one),
            f"counting, {distinct:,} handles": (counting, many),
            f"not counting, {distinct:,} handles": (plain, many),
        }
        for handler, requests in variants.values():  # warm-up
            _cycle_us(handler, requests, iterations // 10)
        timings: dict[str, list[float]] = {label: [] for label in variants}
        gc.disable()
        try:
            for round_number in range(rounds):
                order = list(variants.items())
                for label, (handler, requests) in order if round_number % 2 == 0 else reversed(order):
                    scans.drain()  # every round starts as a stats_interval does: no counter yet
                    timings[label].append(_cycle_us(handler, requests, iterations))
        finally:
            gc.enable()
        _say()
        _say(f"{rounds} rounds × {iterations:,} cached 302s, alternating (µs per answer):")
        _say(f"{'variant':<32}{'min':>9}{'median':>9}")
        for label, values in timings.items():
            _say(f"{label:<32}{min(values):>9.3f}{statistics.median(values):>9.3f}")
        labels = list(timings)
        for on_label, off_label in ((labels[0], labels[1]), (labels[2], labels[3])):
            on, off = statistics.median(timings[on_label]), statistics.median(timings[off_label])
            what = on_label.split(", ")[1]
            _say(f"cost of counting ({what}): {on - off:.3f} µs a 302, {(on - off) / off * 100:.1f} % (medians)")
        per_handle, drain_ms = _memory(MAX_HANDLES)
        _say()
        _say(f"memory: {per_handle:.0f} B per counted handle (tracemalloc, {MAX_HANDLES:,} handles, key strings")
        _say(f"        included); at the bound: {per_handle * MAX_HANDLES / 2**20:.1f} MiB per worker")
        _say(f"drain of {MAX_HANDLES:,} handles: {drain_ms:.1f} ms (once per stats_interval, off the hot path)")
    finally:
        await runner.cleanup()


async def _main(args: argparse.Namespace) -> None:
    async with _database(args.database_url) as dsn:
        await _measure(dsn, args.iterations, args.rounds, args.handles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("IDNODE_DATABASE_URL"), help="PostgreSQL server")
    parser.add_argument("--iterations", type=int, default=200_000, help="answers per round and variant")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (the variants alternate)")
    parser.add_argument("--handles", type=int, default=10_000, help="distinct handles cycled over")
    run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
