"""Import rate over HTTP (issue 12, item 4): an upload to ``POST /api/enterprises/{prefix}/imports`` polled until
its job is done, against ``idnode import`` of the same file, in the same run.

Two scratch databases get the same enterprise, ``88.118.7`` under ``88.118``. One file of ``--records`` lines is
written once: each a data set record (``benchmarks/dataset.py``, about 1.1 KB stored) less its TEMPLATE reference,
as the write scenarios send them. Then, ``--repeats`` times each, alternating over fresh databases:

- **cli**: ``idnode import FILE`` as its own process (Python's start-up included, about 0.5 s), wall time;
- **http**: an ``idnode serve`` process (started before the clock, so not timed) receives the file streamed from
  disk as the enterprise's admin (through the trusted proxy), and the client polls the job every 0.1 s until
  ``done``; from the first byte sent to the poll that saw ``done``. Meanwhile another client resolves a cached
  handle every 10 ms, one request at a time: the import runs in the node's event loop, so these latencies show
  what look-ups served by that process wait for while it imports (``registry/bulk.py`` pauses every 200 lines).

Rows/s is lines / seconds. Run from the repository root::

    .venv/bin/python -m benchmarks.imports --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from benchmarks.postgres import migrated, with_database
from benchmarks.writes import write_values
from tests.support import REPO, onboard_enterprise, secure_basic, spawn_node

PREFIX = "88.118.7"
_POLL = 0.1


def _write_file(path: Path, records: int) -> None:
    with path.open("wb") as out:
        for number in range(records):
            handle = f"{PREFIX}/PRD-2026-{number:09d}"
            out.write(orjson.dumps({"handle": handle, "values": write_values(number)}) + b"\n")


async def _scratch(stack: contextlib.AsyncExitStack, admin: asyncpg.Connection, server: str) -> tuple[str, str]:
    """A fresh migrated database with the enterprise, dropped when ``stack`` closes; its DSN and the admin's secret."""
    name = await stack.enter_async_context(migrated(admin, server, f"idnode_importbench_{uuid.uuid4().hex[:8]}"))
    dsn = with_database(server, name)
    credentials = await onboard_enterprise(dsn, PREFIX)
    return dsn, credentials.secret


def _cli(dsn: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "registry.cli", "import", str(path)],
        cwd=REPO,
        env={**os.environ, "IDNODE_DATABASE_URL": dsn},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


async def _streamed(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as data:
        while block := data.read(1 << 16):
            yield block


async def _look_ups(http: aiohttp.ClientSession, url: str, latencies: list[float]) -> None:
    while True:
        started = time.perf_counter()
        async with http.get(f"{url}/api/handles/{PREFIX}/ADMIN") as r:
            await r.read()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)


async def _http(dsn: str, secret: str, path: Path, data_dir: Path) -> float:
    env = {"IDNODE_TRUSTED_PROXIES": "127.0.0.1/32", "IDNODE_DATA_DIR": str(data_dir)}
    with spawn_node(dsn, env=env) as (url, _):
        headers = {**secure_basic(f"300:{PREFIX}/ADMIN", secret), "Content-Type": "application/x-ndjson"}
        async with aiohttp.ClientSession() as http, aiohttp.ClientSession() as reader:
            latencies: list[float] = []
            looking = asyncio.create_task(_look_ups(reader, url, latencies))
            started = time.perf_counter()
            async with http.post(f"{url}/api/enterprises/{PREFIX}/imports", data=_streamed(path), headers=headers) as r:
                answer = await r.json()
                assert r.status == 202, answer
                location = r.headers["Location"]
            while True:
                async with http.get(url + location, headers=headers) as r:
                    job = (await r.json())["job"]
                if job["state"] in ("done", "failed"):
                    seconds = time.perf_counter() - started
                    looking.cancel()
                    assert job["state"] == "done", job
                    cuts = statistics.quantiles(latencies, n=100)
                    print(
                        f"  look-ups meanwhile: {len(latencies)}, p50 {cuts[49] * 1e3:.1f} ms, "
                        f"p99 {cuts[98] * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms"
                    )
                    return seconds
                await asyncio.sleep(_POLL)


async def _run(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.database_url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idnode-imports-")))
            path = directory / "products.jsonl"
            _write_file(path, args.records)
            print(f"file: {args.records:,} lines, {path.stat().st_size / 1e6:,.1f} MB")
            times: dict[str, list[float]] = {"cli": [], "http": []}
            for _ in range(args.repeats):
                for way in ("cli", "http"):
                    dsn, secret = await _scratch(stack, admin, args.database_url)
                    seconds = _cli(dsn, path) if way == "cli" else await _http(dsn, secret, path, directory)
                    times[way].append(seconds)
                    print(f"{way}: {seconds:.2f} s = {args.records / seconds:,.0f} rows/s")
            cli, http = (statistics.median(times[way]) for way in ("cli", "http"))
            print(
                f"median: idnode import {args.records / cli:,.0f} rows/s, HTTP upload + job "
                f"{args.records / http:,.0f} rows/s ({cli / http:.2f}x)"
            )
    finally:
        await admin.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imports", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (scratch databases are made)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


if __name__ == "__main__":
    asyncio.run(_run(_parser().parse_args()))
