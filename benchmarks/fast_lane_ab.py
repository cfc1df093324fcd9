"""The fast lane's A/B: cached look-ups and 302s with the lane on and off, against aiohttp's hello-worlds, alternating.

::

    python -m benchmarks.fast_lane_ab [--database-url DSN] [--rounds 3] [--duration 5] [--connections 64]

Method. One data set (``--records``, hot set cached on each node), four servers pinned to the server core as the
harness pins them: aiohttp's hello (``/hello`` and ``/hello1k``, the same 1.1 KB body size as a cached answer),
``idnode serve`` with the lane and ``idnode serve`` with ``IDNODE_FAST_LANE=0``, all up at once and loaded one at a
time by wrk on the client core. Each round runs every series once, in an order that alternates between rounds, so
sibling load on this shared machine falls on both sides alike; the best req/s and its p99 per series are printed,
the median server CPU µs per request (``/proc``, the harness's figure that stands up to a busy machine best),
and the ratios of both. It complements the harness's ``cached_vs_cached_nolane`` row, which runs each
side once. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from pathlib import Path

from benchmarks import dataset
from benchmarks.client import fill_cache
from benchmarks.lua import Keys, get_script, static_script
from benchmarks.postgres import bench_database
from benchmarks.procfs import sample_cpu
from benchmarks.servers import hello_server, idnode_server
from benchmarks.tools import find_tools
from benchmarks.wrk import LoadResult, run_wrk

SERVER_CPUS, CLIENT_CPUS = "1", "0"


async def _run(options: argparse.Namespace) -> None:
    tools = find_tools(install=False, need_wrk=True)
    if tools.wrk is None:
        raise SystemExit("fast_lane_ab: wrk is required")
    pin = {"cpus": SERVER_CPUS, "taskset": tools.taskset}
    hot = Keys.zipf(0, options.hot_keys, 1.0)
    with tempfile.TemporaryDirectory(prefix="idnode-lane-ab-") as name:
        workdir = Path(name)
        scripts = {
            "api": get_script("/api/handles/", hot),
            "proxy": get_script("/", hot),
            "static": static_script(),
        }
        for kind, text in scripts.items():
            (workdir / f"{kind}.lua").write_text(text)
        async with (
            bench_database(options.database_url, say=print, server_cpus=SERVER_CPUS, taskset=tools.taskset) as db,
        ):
            await dataset.load(db.dsn, options.records, compare_without_triggers=False)
            async with contextlib.AsyncExitStack() as stack:
                hello = await stack.enter_async_context(hello_server(workdir, **pin))
                lane = await stack.enter_async_context(idnode_server(db.dsn, workdir, **pin))
                plain = await stack.enter_async_context(idnode_server(db.dsn, workdir, fast_lane=False, **pin))
                for node in (lane, plain):
                    await fill_cache(node.url, range(options.hot_keys))
                series = {
                    "hello": (hello, "/hello", "static"),
                    "hello_1k": (hello, "/hello1k", "static"),
                    "cached lane": (lane, "/", "api"),
                    "cached no lane": (plain, "/", "api"),
                    "proxy lane": (lane, "/", "proxy"),
                    "proxy no lane": (plain, "/", "proxy"),
                }
                best: dict[str, LoadResult] = {}
                cpu: dict[str, list[float]] = {label: [] for label in series}
                for round_number in range(options.rounds):
                    order = list(series.items())
                    for label, (server, path, kind) in order if round_number % 2 == 0 else reversed(order):
                        before = sample_cpu(server.pids())
                        result = await run_wrk(
                            tools.wrk,
                            server.url + path,
                            workdir / f"{kind}.lua",
                            connections=options.connections,
                            threads=1,
                            seconds=options.duration,
                            cpus=CLIENT_CPUS,
                            taskset=tools.taskset,
                        )
                        spent = sample_cpu(server.pids()).spent_since(before)
                        cpu[label].append(spent * 1e6 / max(result.requests, 1))
                        p99 = result.latency_us.get("p99", 0) / 1000
                        print(
                            f"round {round_number + 1} {label:15} {result.per_second:>9,.0f} req/s  p99 {p99:.2f} ms"
                            f"  CPU {cpu[label][-1]:.1f} µs/req"
                        )
                        if label not in best or result.per_second > best[label].per_second:
                            best[label] = result
    median = {label: statistics.median(values) for label, values in cpu.items()}
    print(f"\nbest of {options.rounds} rounds, c{options.connections} (CPU: median server µs per request):")
    for label, result in best.items():
        p99 = result.latency_us.get("p99", 0) / 1000
        print(f"  {label:15} {result.per_second:>9,.0f} req/s  p99 {p99:.2f} ms  CPU {median[label]:.1f} µs/req")
    for a, b in (
        ("cached lane", "cached no lane"),
        ("cached lane", "hello"),
        ("cached lane", "hello_1k"),
        ("cached no lane", "hello"),
        ("cached no lane", "hello_1k"),
        ("proxy lane", "proxy no lane"),
        ("proxy lane", "hello"),
    ):
        by_cpu = median[b] / median[a]
        print(f"  {a} / {b}: {best[a].per_second / best[b].per_second:.2f}x by req/s, {by_cpu:.2f}x by CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--hot-keys", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
