"""PostgreSQL access: the connection pool, the schema migrations, and the queries of the read path.

Settings: a DSN (``IDNODE_DATABASE_URL`` or the embedded server's) and pool bounds (``DatabaseSettings``).

The pool is created with a no-op ``reset``: asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL`` on every release, a second round trip that doubled PostgreSQL's CPU per cold look-up
(research/performance-anchors.md §2d). It is safe because idnode keeps no session state on pooled connections:
writes set their actor with ``set_config(..., true)`` (transaction-local), the migration lock is a transaction
lock, and LISTEN lives on a connection of its own (``changes.py``). asyncpg still rolls back a transaction that
was left open.

The write path's statements are ``registry/store.py``'s. Writes go through plain INSERT/UPDATE/DELETE; the
triggers of ``schema/0001_init.sql`` stamp versions, append history and notify every node, so a write by plain
SQL is seen by the caches too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from resolver.config import DatabaseSettings

__all__ = ["MigrationResult", "PrefixRow", "Store", "StoredRecord", "apply_migrations", "connect"]

log = logging.getLogger("idnode.store")

_MIGRATION_LOCK = 0x1D0DE  # pg_advisory_xact_lock key shared by every idnode process

_FETCH = 'SELECT handle_key, handle, version, "values"::text FROM handles WHERE handle_key = ANY($1::text[])'
_PREFIXES = "SELECT prefix_key, prefix, kind, delegate_url FROM prefixes"


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of ``handles`` as the read path needs it; ``values`` is the stored JSON text."""

    key: str
    handle: str
    version: int
    values: str


@dataclass(frozen=True, slots=True)
class PrefixRow:
    key: str
    prefix: str
    kind: str
    delegate_url: str | None


@dataclass(frozen=True, slots=True)
class MigrationResult:
    applied: tuple[str, ...]
    current: int


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's per-release reset query; see the module docstring for why this is safe."""


async def connect(dsn: str, settings: DatabaseSettings) -> Store:
    """Open the pool; raises ``OSError``/``asyncpg`` errors the caller turns into a start-up message."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        reset=_no_reset,
        command_timeout=settings.command_timeout,
        server_settings={"application_name": "idnode"},
    )
    return Store(pool)


class Store:
    """The database as the node sees it. Holds the pool; every method is one round trip unless it says otherwise."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def close(self, timeout: float = 10.0) -> None:
        """Close gracefully, but never hang a shutdown on a connection that is not coming back."""
        await close_pool(self.pool, timeout)

    async def fetch_records(self, keys: Sequence[str]) -> list[StoredRecord]:
        """The stored records among ``keys`` (absent keys are simply missing from the result)."""
        rows = await self.pool.fetch(_FETCH, list(keys))
        return [StoredRecord(r[0], r[1], r[2], r[3]) for r in rows]

    async def fetch_prefixes(self) -> list[PrefixRow]:
        rows = await self.pool.fetch(_PREFIXES)
        return [PrefixRow(r[0], r[1], r[2], r[3]) for r in rows]

    async def schema_version(self) -> int:
        """The highest applied migration, 0 when none; raises if the database is unreachable."""
        exists = await self.pool.fetchval("SELECT to_regclass('idnode_migrations') IS NOT NULL")
        if not exists:
            return 0
        return await self.pool.fetchval("SELECT coalesce(max(version), 0) FROM idnode_migrations")


async def close_pool(pool: asyncpg.Pool, timeout: float = 10.0) -> None:
    """``pool.close()`` bounded by ``timeout``, then ``terminate()`` for whatever is still held."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        log.warning("store: connections still busy after %.0fs; terminating them", timeout)
        pool.terminate()


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("resolver.schema").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def apply_migrations(pool: asyncpg.Pool) -> MigrationResult:
    """Apply the numbered SQL files not yet recorded, each in its own transaction, under a shared lock.

    Idempotent and safe to run from several processes at once: the advisory transaction lock serialises them,
    and each re-reads the applied set after taking it.
    """
    applied: list[str] = []
    async with pool.acquire() as con:
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if not await con.fetchval("SELECT to_regclass('idnode_migrations') IS NOT NULL"):  # a runtime role
                await con.execute(  # without CREATE rights can then still find that nothing is to be done
                    "CREATE TABLE idnode_migrations ("
                    " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
        for version, name, sql in _migrations():
            async with con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                done = await con.fetchval("SELECT 1 FROM idnode_migrations WHERE version = $1", version)
                if done:
                    continue
                log.info("applying migration %s", name)
                await con.execute(sql)
                await con.execute("INSERT INTO idnode_migrations (version, name) VALUES ($1, $2)", version, name)
                applied.append(name)
        current = await con.fetchval("SELECT coalesce(max(version), 0) FROM idnode_migrations")
    return MigrationResult(tuple(applied), int(current))
