"""PostgreSQL access: the connection pool, the schema migrations, and the queries of the read path.

Settings: a DSN (``IDNODE_DATABASE_URL`` or the embedded server's), pool bounds and ``database_timeout``
(``DatabaseSettings``).

Deadlines (``DeadlinePool``). A database that is down must cost a client a quick 503, never a hung request: every
statement, every wait for a pooled connection (opening one included) and every one-statement call
(``pool.fetch`` and friends: wait, statement and release together) ends within ``database_timeout``. A
connection whose statement ran out of time is terminated instead of returned: asyncpg would otherwise wait for
the server to acknowledge the cancellation, which a frozen server never does. ``unavailable(exc)`` tells such
failures (answered 503 rc 3) from bugs (500 rc 2).

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg.pool import PoolAcquireContext

from resolver.classes import ClassRow

if TYPE_CHECKING:
    from resolver.replicas import Replicas

__all__ = [
    "DatabaseSettings",
    "DeadlinePool",
    "MigrationResult",
    "PrefixRow",
    "Store",
    "StoredRecord",
    "apply_migrations",
    "connect",
    "unavailable",
]

log = logging.getLogger("idnode.store")

_MIGRATION_LOCK = 0x1D0DE  # pg_advisory_xact_lock key shared by every idnode process

_FETCH = 'SELECT handle_key, handle, version, "values"::text FROM handles WHERE handle_key = ANY($1::text[])'
_PREFIXES = "SELECT prefix_key, prefix, kind, delegate_url FROM prefixes"
_CLASS_PATTERNS = "SELECT class_key, class_handle, prefix_key, pattern FROM class_patterns"


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Options ``database_*``: where the database is, the pool's bounds, and the deadline of every call."""

    url: str | None = None
    replica_urls: tuple[str, ...] = ()
    """Streaming standbys for cache loads, listing and search (``resolver/replicas.py``)."""
    replica_max_lag: float = 10.0
    """Seconds of replay lag past which a replica is not read (and how long a change notification's floor lives)."""
    pool_min: int = 2
    pool_max: int = 16
    command_timeout: float = 5.0


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


T = TypeVar("T")

_UNAVAILABLE = (
    OSError,  # refused, unreachable, reset
    TimeoutError,  # no answer within database_timeout
    asyncpg.PostgresConnectionError,  # connection lost or rejected
    asyncpg.OperatorInterventionError,  # starting up, shutting down, crashed, statement cancelled
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,  # a write reached a standby: a failover is under way (see _on_standby)
    asyncpg.TargetServerAttributeNotMatched,  # a multi-host database_url found no primary (yet)
)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not answer now (retry later), rather than a bug.

    An ``asyncpg.InterfaceError`` is the driver used wrongly, a bug, unless it was raised while unwinding from an
    outage: a transaction whose connection was lost or timed out fails again when it tries to roll back, and
    asyncpg reports that second failure (``exc.__context__`` holds the first).
    """
    if isinstance(exc, _UNAVAILABLE):
        return True
    context = exc.__context__
    return isinstance(exc, asyncpg.InterfaceError) and context is not None and unavailable(context)


def _timed_out(exc: BaseException | None) -> bool:
    """A statement ran out of time (or its task was cancelled), directly or while a transaction unwound."""
    while exc is not None:
        if isinstance(exc, TimeoutError | asyncio.CancelledError):
            return True
        exc = exc.__context__ if isinstance(exc, asyncpg.InterfaceError) else None
    return False


def _on_standby(exc: BaseException | None) -> bool:
    """A statement was refused because its connection's server is (now) a read-only standby."""
    while exc is not None:
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            return True
        exc = exc.__context__ if isinstance(exc, asyncpg.InterfaceError) else None
    return False


class _TerminateOnTimeout(PoolAcquireContext):
    """``pool.acquire()`` whose connection is terminated, not handed back, when its work timed out, or when its server
    turned out to be a standby: after a failover a pooled connection may still point at the old primary come back as
    a standby, and a new connection (``target_session_attrs=read-write``) finds the new primary."""

    __slots__ = ()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.connection is not None and (_timed_out(exc) or _on_standby(exc)):
            self.connection.terminate()
        await super().__aexit__(exc_type, exc, tb)


class DeadlinePool(asyncpg.Pool):
    """An asyncpg pool that never waits longer than ``deadline`` seconds (see the module docstring)."""

    __slots__ = ("deadline",)

    def __init__(self, dsn: str, *, deadline: float, **kwargs: Any) -> None:
        if not deadline > 0:
            raise ValueError("store: deadline must be a positive number of seconds")
        super().__init__(dsn, connection_class=asyncpg.Connection, record_class=asyncpg.Record, loop=None, **kwargs)
        self.deadline = deadline

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        """Like ``Pool.acquire``, waiting at most ``deadline`` (or ``timeout``) for a connection and its release."""
        return _TerminateOnTimeout(self, self.deadline if timeout is None else timeout)

    async def _once(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with asyncio.timeout(self.deadline), self.acquire() as con:
            return await call(con)

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None) -> list[Any]:
        """Like ``Pool.fetch``; waiting, the statement and the release together end within ``deadline``."""
        return await self._once(lambda con: con.fetch(query, *args, timeout=timeout, record_class=record_class))

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None) -> Any:
        """Like ``Pool.fetchrow``, within ``deadline`` (see :meth:`fetch`)."""
        return await self._once(lambda con: con.fetchrow(query, *args, timeout=timeout, record_class=record_class))

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        """Like ``Pool.fetchval``, within ``deadline`` (see :meth:`fetch`)."""
        return await self._once(lambda con: con.fetchval(query, *args, column=column, timeout=timeout))

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Like ``Pool.execute``, within ``deadline`` (see :meth:`fetch`)."""
        return await self._once(lambda con: con.execute(query, *args, timeout=timeout))


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's per-release reset query; see the module docstring for why this is safe."""


async def connect(dsn: str, settings: DatabaseSettings) -> Store:
    """Open the pool; raises ``OSError``/``asyncpg`` errors the caller turns into a start-up message."""
    return Store(await open_pool(dsn, settings))


async def open_pool(dsn: str, settings: DatabaseSettings, *, min_size: int | None = None) -> DeadlinePool:
    """A ``DeadlinePool`` over ``dsn`` with the settings' bounds; ``min_size=0`` opens no connection before the first
    call (a replica that is down at start-up does not stop the node)."""
    pool = DeadlinePool(
        dsn,
        deadline=settings.command_timeout,
        min_size=settings.pool_min if min_size is None else min_size,
        max_size=settings.pool_max,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        reset=_no_reset,
        command_timeout=settings.command_timeout,
        timeout=settings.command_timeout,
        server_settings={"application_name": "idnode"},
    )
    await pool
    return pool


class Store:
    """The database as the node sees it. Holds the pool; every method is one round trip unless it says otherwise.

    ``replicas``, when given, serves cache loads (``fetch_records``) and ``scans`` (the registry's listing and
    search) from read replicas under its currency rules; ``pool`` is always the primary.
    """

    __slots__ = ("pool", "replicas", "scans")

    def __init__(self, pool: asyncpg.Pool, replicas: Replicas | None = None, scans: Any = None) -> None:
        self.pool = pool
        self.replicas = replicas
        self.scans = pool if scans is None else scans

    async def close(self, timeout: float = 10.0) -> None:
        """Close gracefully, but never hang a shutdown on a connection that is not coming back."""
        if self.replicas is not None:
            await self.replicas.close(timeout)
        await close_pool(self.pool, timeout)

    async def fetch_records(self, keys: Sequence[str]) -> list[StoredRecord]:
        """The stored records among ``keys`` (absent keys are simply missing from the result)."""
        if self.replicas is None:
            rows = await self._primary_rows(keys)
        else:
            rows = await self.replicas.fetch_records(keys, self._primary_rows)
        return [StoredRecord(r[0], r[1], r[2], r[3]) for r in rows]

    async def _primary_rows(self, keys: Sequence[str]) -> list[Any]:
        return await self.pool.fetch(_FETCH, list(keys))

    async def fetch_prefixes(self) -> list[PrefixRow]:
        rows = await self.pool.fetch(_PREFIXES)
        return [PrefixRow(r[0], r[1], r[2], r[3]) for r in rows]

    async def fetch_class_patterns(self) -> list[ClassRow]:
        """Every class pattern (``resolver/classes.py``), as the triggers of ``schema/0014`` keep them."""
        return [ClassRow(r[0], r[1], r[2], r[3]) for r in await self.pool.fetch(_CLASS_PATTERNS)]

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
