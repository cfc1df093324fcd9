"""The benchmark's own database, and what PostgreSQL tells about the node's use of it.

Database. ``bench_database`` creates a fresh database ``idnode_bench_<pid>`` on the server given by
``--database-url``, or on an embedded PostgreSQL started in a temporary directory (``resolver.embedded``),
migrates it with the node's own migrations, and drops it (and stops the embedded server) on the way out,
whatever happened. The node is then started with ``--database-url`` pointing at that database, so the harness,
not the node, owns the server's lifetime. An embedded server's processes are pinned to the server core, so
that in the cold scenarios the node and its database share one core and the load generator has the other.
``BenchDatabase.sibling`` adds another fresh, empty database on the same server, for the forwarding targets'
node, which homes nothing.

Counting the node's queries (pg_stat_statements is not available). Two sources, both read from a separate
connection to the server's ``postgres`` database so the probe's own queries never count:

- ``pg_stat_activity.query_start`` of the node's backends (``application_name = 'idnode'``) is live shared
  memory: if no node backend started a query after a moment ``t``, the node issued no query since ``t``. This
  is exact and immediate, and it is what the zero-queries checks use.
- ``pg_stat_database.xact_commit`` / ``tup_returned`` of the node's database give counts, but since
  PostgreSQL 15 a backend flushes them at most once a second while busy and up to 10 s after going idle, so a
  delta over a window can include activity from just before it. They are recorded per run as approximate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks.procfs import descendants
from resolver.embedded import EmbeddedPostgres
from resolver.store import apply_migrations

__all__ = ["BenchDatabase", "DbCounters", "bench_database", "migrated"]

NODE_APPLICATION = "idnode"


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` (TCP and unix-socket DSNs alike)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class DbCounters:
    """Cumulative counters of one database from ``pg_stat_database`` (see the module docstring for their lag)."""

    xact_commit: int
    tup_returned: int
    tup_fetched: int

    def minus(self, before: DbCounters) -> DbCounters:
        return DbCounters(
            self.xact_commit - before.xact_commit,
            self.tup_returned - before.tup_returned,
            self.tup_fetched - before.tup_fetched,
        )


class BenchDatabase:
    """The benchmark database: its DSN, a probe connection, and the processes that serve it."""

    def __init__(self, server_dsn: str, name: str, probe: asyncpg.Connection, postmaster: int | None) -> None:
        self.server_dsn = server_dsn
        self.name = name
        self.dsn = with_database(server_dsn, name)
        self.postmaster = postmaster
        self._probe = probe

    @property
    def embedded(self) -> bool:
        return self.postmaster is not None

    async def server_version(self) -> str:
        return str(await self._probe.fetchval("SHOW server_version"))

    async def now(self) -> datetime:
        """The server's clock; compare with :meth:`last_node_query_start`."""
        return await self._probe.fetchval("SELECT clock_timestamp()")

    async def last_node_query_start(self) -> datetime | None:
        """When the node's most recent query started (over all its backends), or None before any."""
        return await self._probe.fetchval(
            "SELECT max(query_start) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            self.name,
            NODE_APPLICATION,
        )

    async def counters(self) -> DbCounters:
        row = await self._probe.fetchrow(
            "SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = $1", self.name
        )
        return DbCounters(int(row[0]), int(row[1]), int(row[2]))

    @contextlib.asynccontextmanager
    async def sibling(self, suffix: str) -> AsyncIterator[BenchDatabase]:
        """Another fresh, migrated and empty database ``<name>_<suffix>`` on the same server (for a node that homes
        nothing: the forwarding targets), dropped on the way out."""
        async with migrated(self._probe, self.server_dsn, f"{self.name}_{suffix}") as name:
            yield BenchDatabase(self.server_dsn, name, self._probe, self.postmaster)

    async def backend_pids(self) -> list[int]:
        """PIDs of every backend connected to the benchmark database (the node's pool and LISTEN connections).

        Their CPU is readable from /proc only when the server runs on this machine; the caller checks.
        """
        rows = await self._probe.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name
        )
        return [int(r[0]) for r in rows]


@contextlib.asynccontextmanager
async def migrated(admin: asyncpg.Connection, server_dsn: str, name: str) -> AsyncIterator[str]:
    """A fresh database ``name`` with the node's migrations applied, dropped on the way out."""
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(server_dsn, name), min_size=1, max_size=1)
        try:
            await apply_migrations(pool)
        finally:
            await pool.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pin(pids: list[int], cpus: str, taskset: str | None) -> bool:
    """Set the CPU affinity of ``pids`` (all their threads); children forked later inherit it."""
    if taskset is None:
        return False
    ok = True
    for pid in pids:
        done = subprocess.run([taskset, "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)
        ok = ok and done.returncode == 0
    return ok


@contextlib.asynccontextmanager
async def bench_database(
    url: str | None, *, say: Callable[[str], None], server_cpus: str | None = None, taskset: str | None = None
) -> AsyncIterator[BenchDatabase]:
    """A fresh migrated database for one harness run; everything it started is stopped on exit."""
    root: Path | None = None
    server: EmbeddedPostgres | None = None
    postmaster = None
    try:
        if url is None:
            root = Path(tempfile.mkdtemp(prefix="idnode-bench-pg-"))
            server = EmbeddedPostgres(root)
            say(f"database: starting an embedded PostgreSQL in {root}")
            server_dsn = await asyncio.to_thread(server.start)
            postmaster = _postmaster_pid(server.pgdata)
            if (
                postmaster is not None
                and server_cpus is not None
                and pin(descendants(postmaster), server_cpus, taskset)
            ):
                say(f"database: embedded PostgreSQL (pid {postmaster}) pinned to CPU {server_cpus}")
        else:
            server_dsn = url
            say("database: using the server given by --database-url (not pinned, not stopped)")
        admin = await asyncpg.connect(with_database(server_dsn, "postgres"))
        try:
            async with migrated(admin, server_dsn, f"idnode_bench_{os.getpid()}") as name:
                yield BenchDatabase(server_dsn, name, admin, postmaster)
        finally:
            await admin.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
            say("database: embedded PostgreSQL stopped")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
