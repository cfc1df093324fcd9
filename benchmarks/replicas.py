"""Read replicas and failover, measured (issue 11): cold look-ups with loads on a replica vs on the primary, in the
same run, then a failover of the primary under a read-and-write load.

A primary and a synchronous streaming standby are started on loopback (``benchmarks/replicated.py``), the data set
of the harness (``benchmarks/dataset.py``) is COPYed into the primary and replayed by the standby. Then:

1. **Cold look-ups.** Two ``idnode serve`` processes over the primary, one with ``IDNODE_DATABASE_REPLICA_URLS`` =
   the standby, one without, each with a 100-entry cache, driven in turn by wrk (uniform over all records, so
   nearly every look-up is a load) for ``--repeats`` × ``--duration`` s; the best req/s of each, and the share of
   the replica node's loads that the replica answered (``idnode_db_loads_total``).
2. **Failover.** The replica node is driven by a writer (PUTs of new handles, one after another, each 2xx recorded)
   and a reader (a cached handle and an uncached one in turn); the primary is stopped with ``pg_ctl stop -m
   immediate``, and ``--outage`` s later the standby is promoted. Reported: answers by status during the switch,
   seconds from the promotion until writes succeed and until ``/readyz`` answers 200, and the acknowledged writes
   missing from the new primary (0 is the requirement: replication is synchronous).

Everything runs on this machine's two cores: wrk, the node and both servers share them, so the req/s are relative
(replica vs primary in the same run), not a capacity figure. Run from the repository root::

    .venv/bin/python -m benchmarks.replicas              # 20,000 records, 3 × 5 s per node: about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.dataset import PREFIX, handle_of, load
from benchmarks.lua import Keys, get_script
from benchmarks.replicated import Replicated, missing, replicated_postgres
from benchmarks.servers import idnode_server
from benchmarks.tools import find_tools
from benchmarks.wrk import run_wrk
from registry.enterprises import onboard
from registry.store import Actor, RegistryStore
from resolver.store import apply_migrations

__all__ = ["Switch", "create_database", "failover", "main"]

_SETTLE = 1.0
_BACK_WAIT = 15.0


async def create_database(cluster: Replicated) -> str:
    """A fresh, migrated database ``idnode`` on the primary (the standby replays it); its DSN there."""
    admin = await asyncpg.connect(cluster.primary.dsn())
    try:
        await admin.execute("DROP DATABASE IF EXISTS idnode WITH (FORCE)")
        await admin.execute("CREATE DATABASE idnode")
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(cluster.primary.dsn("idnode"), min_size=1, max_size=1)
    try:
        await apply_migrations(pool)
    finally:
        await pool.close()
    return cluster.primary.dsn("idnode")


@dataclass
class Switch:
    """What a writer and a reader saw while the primary died and the standby was promoted."""

    acknowledged: list[str] = field(default_factory=list)
    write_statuses: Counter[int] = field(default_factory=Counter)
    miss_statuses: Counter[int] = field(default_factory=Counter)
    cached_failures: int = 0
    malformed_503: int = 0
    """503 answers without rc 3 and a ``Retry-After``."""
    writes_back_after: float | None = None
    ready_after: float | None = None
    missing: list[str] = field(default_factory=list)

    def line(self) -> str:
        writes = ", ".join(f"{status}: {count}" for status, count in sorted(self.write_statuses.items()))
        misses = ", ".join(f"{status}: {count}" for status, count in sorted(self.miss_statuses.items()))
        return (
            f"writes {writes} | uncached reads {misses} | cached reads failed {self.cached_failures} | "
            f"writes back {self.writes_back_after} s and ready {self.ready_after} s after the promotion | "
            f"acknowledged {len(self.acknowledged)}, missing afterwards {len(self.missing)}"
        )


async def _status(http: aiohttp.ClientSession, method: str, url: str, switch: Switch, **kwargs: object) -> int:
    async with http.request(method, url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        body = await response.json(content_type=None) if response.status == 503 else None
        if body is not None and not (body.get("responseCode") == 3 and int(response.headers["Retry-After"]) > 0):
            switch.malformed_503 += 1
        return response.status


async def failover(
    url: str,
    cluster: Replicated,
    headers: Mapping[str, str],
    *,
    prefix: str,
    cached: Sequence[str],
    outage: float = 1.0,
) -> Switch:
    """Drive the node at ``url`` while its primary dies and the standby is promoted (see the module docstring).
    ``headers`` authorize PUTs under ``prefix``; ``cached`` are handles the node holds in its cache."""
    switch = Switch()
    promoted_at: float | None = None
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:

        async def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                handle = f"{prefix}/failover-{n}"
                body = [{"index": 1, "type": "URL", "data": f"https://example.org/{n}"}]
                status = await _status(http, "PUT", f"{url}/api/handles/{handle}", switch, json=body, headers=headers)
                switch.write_statuses[status] += 1
                if status in (200, 201):
                    switch.acknowledged.append(handle)
                    if promoted_at is not None and switch.writes_back_after is None:
                        switch.writes_back_after = round(time.monotonic() - promoted_at, 2)
                else:
                    await asyncio.sleep(0.05)

        async def read() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                status = await _status(http, "GET", f"{url}/api/handles/{cached[n % len(cached)]}", switch)
                switch.cached_failures += status != 200
                status = await _status(http, "GET", f"{url}/api/handles/{prefix}/never-{n}", switch)
                switch.miss_statuses[status] += 1
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(write()), asyncio.create_task(read())]
        try:
            await asyncio.sleep(_SETTLE)
            await asyncio.to_thread(cluster.stop_server, cluster.primary, "immediate")
            await asyncio.sleep(outage)
            await asyncio.to_thread(cluster.promote)
            promoted_at = time.monotonic()
            while time.monotonic() - promoted_at < _BACK_WAIT:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200 and switch.ready_after is None:
                        switch.ready_after = round(time.monotonic() - promoted_at, 2)
                if switch.ready_after is not None and switch.writes_back_after is not None:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(_SETTLE)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    switch.missing = await _absent(cluster.standby.dsn("idnode"), switch.acknowledged)
    return switch


async def _absent(dsn: str, handles: Sequence[str]) -> list[str]:
    """The ``handles`` the database at ``dsn`` does not hold."""
    con = await asyncpg.connect(dsn)
    try:
        stored = {row[0] for row in await con.fetch("SELECT handle FROM handles WHERE handle = ANY($1)", handles)}
    finally:
        await con.close()
    return [h for h in handles if h not in stored]


async def _credentials(dsn: str) -> dict[str, str]:
    """Basic credentials of the data set prefix's enterprise, sent as through a TLS-terminating proxy."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        admin = await onboard(
            RegistryStore(pool), PREFIX, name="Benchmark", credit_code=None, contact=None, actor=Actor("bench")
        )
    finally:
        await pool.close()
    token = base64.b64encode(f"{quote(admin.identity, safe='')}:{admin.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "X-Forwarded-Proto": "https"}


async def _loads(url: str) -> dict[str, float]:
    """The node's ``idnode_db_loads_total`` by source."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "idnode_db_loads"
        for sample in family.samples
        if sample.name == "idnode_db_loads_total"
    }


async def _cold(wrk: str, url: str, script: Path, seconds: float) -> float:
    result = await run_wrk(wrk, url, script, connections=32, threads=1, seconds=seconds, cpus=None, taskset=None)
    return result.requests / result.seconds


async def _run(args: argparse.Namespace) -> int:
    reason = missing()
    if reason is not None:
        print(f"replicas: cannot run: {reason}", file=sys.stderr)
        return 1
    wrk = find_tools(install=False, need_wrk=True).wrk
    if wrk is None:
        print("replicas: cannot run: wrk is not installed", file=sys.stderr)
        return 1
    with (
        tempfile.TemporaryDirectory(prefix="idnode-bench-repl-") as tmp,
        replicated_postgres(synchronous=True) as cluster,
    ):
        workdir = Path(tmp)
        (workdir / "primary-only").mkdir()
        dsn = await create_database(cluster)
        await load(dsn, args.records, compare_without_triggers=False)
        headers = await _credentials(dsn)
        script = workdir / "cold.lua"
        script.write_text(get_script("/api/handles/", Keys.uniform(0, args.records)))
        both = f"postgresql://postgres@127.0.0.1:{cluster.primary.port},127.0.0.1:{cluster.standby.port}/idnode"
        common = {
            "IDNODE_CACHE_MAX_ENTRIES": "100",
            "IDNODE_TRUSTED_PROXIES": "127.0.0.1/32",
            "IDNODE_DATABASE_TIMEOUT": "1",
            "IDNODE_CHANGES_BACKOFF_MAX": "0.5",
        }
        replica_env = {**common, "IDNODE_DATABASE_REPLICA_URLS": cluster.standby.dsn("idnode")}
        best = {"replica": 0.0, "primary": 0.0}
        async with (
            idnode_server(both + "?target_session_attrs=read-write", workdir, extra_env=replica_env) as on_replica,
            idnode_server(dsn, workdir / "primary-only", extra_env=common) as on_primary,
        ):
            await asyncio.sleep(2 * _SETTLE)  # the replica node's health check has seen the replica
            before = await _loads(on_replica.url)
            pair = [("replica", on_replica), ("primary", on_primary)]
            for repeat in range(args.repeats):
                for name, server in pair if repeat % 2 == 0 else pair[::-1]:  # neither always runs first
                    best[name] = max(best[name], await _cold(wrk, server.url, script, args.duration))
            after = await _loads(on_replica.url)
            loads = {source: after[source] - before.get(source, 0.0) for source in after}
            total = sum(loads.values()) or 1.0
            loads.setdefault("retried", 0.0)
            print(
                f"cold look-ups ({args.records:,} records, uniform, 32 connections, best of {args.repeats} × "
                f"{args.duration:g} s): loads on the replica {best['replica']:,.0f} req/s, "
                f"on the primary {best['primary']:,.0f} req/s; replica node's loads: "
                f"{100 * loads['replica'] / total:.1f} % replica, {100 * loads['primary'] / total:.1f} % primary, "
                f"{100 * loads['retried'] / total:.1f} % retried on the primary"
            )
            cached = await _warm(on_replica.url, args.records)
            switch = await failover(on_replica.url, cluster, headers, prefix=PREFIX, cached=cached, outage=args.outage)
            print(f"failover ({args.outage:g} s without a primary, synchronous replication): {switch.line()}")
    return 0 if not switch.missing and switch.malformed_503 == 0 else 1


async def _warm(url: str, records: int) -> list[str]:
    """A few handles the node then holds in its cache (its cache keeps 100)."""
    handles = [handle_of(n) for n in range(0, records, max(1, records // 20))][:20]
    async with aiohttp.ClientSession() as http:
        for handle in handles:
            async with http.get(f"{url}/api/handles/{handle}") as response:
                await response.read()
    return handles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--outage", type=float, default=1.0, help="seconds between the primary's stop and promotion")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
