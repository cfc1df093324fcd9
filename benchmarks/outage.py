"""What a node answers while its PostgreSQL is away: cached look-ups answered, and how misses fail (issue 8).

A node (``idnode serve``, its own process) talks to PostgreSQL through ``benchmarks/pgproxy.py``. After its cache
holds a hot set, the proxy freezes the database (connections open, nothing answered) or crashes it (connections
cut, new ones refused) for ``--outage`` seconds while clients keep asking:

- **cached**: 200 look-ups a second of the hot set (``GET /api/handles/H``), sent on schedule whether earlier ones
  were answered or not; one counts as answered when its 200 arrives within 1 s (a cached answer takes well under
  a millisecond, so anything slower waited for the database);
- **misses**: 5 look-ups a second of records that are not cached; their statuses and latencies are reported (a
  503 within the database timeout is the goal; a request hanging until the outage ends is the failure).

Afterwards the proxy is restored and the time until ``/readyz`` answers 200 again is reported. With
``--baseline DIR`` (a checkout of another version, e.g. ``/work/main``) the same runs are made against that
code first, in the same run, for comparison.

Run from the repository root::

    .venv/bin/python -m benchmarks.outage --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --baseline ../main
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.client import fill_cache
from benchmarks.dataset import handle_of, load
from benchmarks.pgproxy import PgProxy
from benchmarks.postgres import bench_database
from benchmarks.servers import idnode_server

__all__ = ["Outcome", "main"]

_CACHED_RATE = 200.0
_MISS_RATE = 5.0
_CACHED_DEADLINE = 1.0
_MISS_DEADLINE = 60.0
_SETTLE = 1.0
_READY_WAIT = 90.0


@dataclass
class Outcome:
    """What the clients saw during one outage."""

    tree: str
    fault: str
    cached_sent: int = 0
    cached_answered: int = 0
    miss_statuses: dict[str, int] = field(default_factory=dict)
    miss_seconds: list[float] = field(default_factory=list)
    ready_after: float | None = None

    @property
    def cached_share(self) -> float:
        return 100.0 * self.cached_answered / self.cached_sent if self.cached_sent else 0.0

    def line(self) -> str:
        misses = ", ".join(f"{status}: {count}" for status, count in sorted(self.miss_statuses.items()))
        latency = (
            f"p50 {statistics.median(self.miss_seconds):.2f} s, max {max(self.miss_seconds):.2f} s"
            if self.miss_seconds
            else "none finished"
        )
        ready = f"{self.ready_after:.1f} s" if self.ready_after is not None else f"not within {_READY_WAIT:.0f} s"
        return (
            f"{self.tree:<10} {self.fault:<7} cached answered {self.cached_share:6.2f} % of {self.cached_sent:>6}"
            f" | misses {misses or '-'} ({latency}) | ready again after {ready}"
        )


async def _ask(http: aiohttp.ClientSession, url: str, deadline: float, outcome: Outcome, *, cached: bool) -> None:
    """One look-up, recorded in ``outcome`` (cached: answered or not; miss: status and seconds)."""
    started = time.monotonic()
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=deadline)) as response:
            await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = type(exc).__name__
    if cached:
        outcome.cached_answered += status == "200"
    else:
        outcome.miss_seconds.append(time.monotonic() - started)
        outcome.miss_statuses[status] = outcome.miss_statuses.get(status, 0) + 1


async def _offer(
    url: str, handles: list[str], rate: float, seconds: float, outcome: Outcome, *, cached: bool
) -> list[asyncio.Task[None]]:
    """Open loop: start a look-up every ``1 / rate`` seconds for ``seconds``, whether earlier ones were answered or
    not (a closed loop would let fast answers hide hung ones); returns the look-ups still under way."""
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    deadline = _CACHED_DEADLINE if cached else _MISS_DEADLINE
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        handle = random.choice(handles) if cached else handles[n % len(handles)]
        tasks.append(asyncio.ensure_future(_ask(http, f"{url}/api/handles/{handle}", deadline, outcome, cached=cached)))
        outcome.cached_sent += cached
    closing = asyncio.ensure_future(_close_after(http, tasks))
    return [*tasks, closing]


async def _close_after(http: aiohttp.ClientSession, tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)
    await http.close()


async def _ready_after(url: str, since: float) -> float | None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() - since < _READY_WAIT:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url + "/readyz") as response:
                    if response.status == 200:
                        return time.monotonic() - since
            await asyncio.sleep(0.1)
    return None


async def _outage(
    url: str, hot: list[str], cold: list[str], outcome: Outcome, seconds: float
) -> list[asyncio.Task[None]]:
    """Offer cached look-ups and misses for ``seconds`` of an outage already started; returns the look-ups still
    waiting (misses the outage hung): the caller ends the outage, then awaits them."""
    cached, misses = await asyncio.gather(
        _offer(url, hot, _CACHED_RATE, seconds, outcome, cached=True),
        _offer(url, cold, _MISS_RATE, seconds, outcome, cached=False),
    )
    await asyncio.gather(*cached)
    return misses


async def _measure(args: argparse.Namespace, proxy: PgProxy, tree: str, env: dict[str, str], fault: str) -> Outcome:
    outcome = Outcome(tree, fault)
    hot_numbers = list(range(args.hot))
    hot = [handle_of(n) for n in hot_numbers]
    cold = [handle_of(n) for n in range(args.hot, args.records)]
    random.shuffle(cold)
    with tempfile.TemporaryDirectory(prefix="idnode-outage-") as work:
        async with idnode_server(proxy.dsn, Path(work), extra_env=env) as server:
            await fill_cache(server.url, hot_numbers)
            await asyncio.sleep(_SETTLE)

            if fault == "freeze":
                proxy.freeze()
            else:
                await proxy.crash()
            misses = await _outage(server.url, hot, cold, outcome, args.outage)
            await proxy.restore()
            ended = time.monotonic()
            await asyncio.gather(*misses)
            outcome.ready_after = await _ready_after(server.url, ended)
    return outcome


async def _run(args: argparse.Namespace) -> list[Outcome]:
    trees: list[tuple[str, dict[str, str]]] = []
    if args.baseline is not None:
        trees.append(("baseline", {"PYTHONPATH": str(Path(args.baseline).resolve())}))
    trees.append(("this tree", {}))
    outcomes = []
    async with bench_database(args.database_url, say=print) as database:
        report = await load(database.dsn, args.records, compare_without_triggers=False)
        print(f"data: {report.rows} records loaded")
        proxy = PgProxy(database.dsn)
        await proxy.start()
        try:
            for tree, env in trees:
                for fault in ("freeze", "crash"):
                    outcome = await _measure(args, proxy, tree, env, fault)
                    print(outcome.line(), flush=True)
                    outcomes.append(outcome)
        finally:
            await proxy.close()
    return outcomes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outage", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server to use (default: an embedded one)")
    parser.add_argument("--baseline", help="a checkout of another version of idnode to measure first, for comparison")
    parser.add_argument("--records", type=int, default=5000, help="records in the database (default 5000)")
    parser.add_argument("--hot", type=int, default=1000, help="records cached before the outage (default 1000)")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds each outage lasts (default 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.hot < args.records:
        print("--hot must be between 0 and --records", file=sys.stderr)
        return 2
    print("tree       fault   (cached: answered 200 within 1 s; misses: statuses and latency; then /readyz)")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
