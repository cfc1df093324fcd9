"""Where the node's database comes from: the configured URL, or the embedded server of the data directory.

``open_database`` is the one entry point for the node and for operator commands:
- with ``database_url`` set it only yields that URL;
- otherwise it starts (or finds running) the embedded server. A serving node takes the data directory's lock
  for its lifetime and stops the server when it exits. An operator command stops the server afterwards only if
  it started it itself and no node holds the lock, so it never pulls the database from under a running node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from resolver.config import Settings
from resolver.embedded import DataDirLock, EmbeddedPostgres
from resolver.errors import ConfigError
from resolver.store import MigrationResult, apply_migrations

__all__ = ["describe", "migrate", "open_database"]


@contextmanager
def open_database(settings: Settings, *, serving: bool) -> Iterator[str]:
    """Yield a DSN for the node's database, starting and stopping the embedded server as described above."""
    if settings.database.url:
        yield settings.database.url
        return
    server = EmbeddedPostgres(settings.data_dir)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(settings.data_dir)
    if serving and not lock.acquire():
        raise ConfigError(
            f"data_dir: another idnode node is already serving from {settings.data_dir}; "
            "stop it or choose another --data-dir"
        )
    try:
        dsn = server.start()
        yield dsn
    finally:
        if serving:
            server.stop()
            lock.release()
        elif server.started_here and lock.is_free():
            server.stop()


def describe(settings: Settings) -> str:
    """Where the data lives, for start-up messages (never prints a password)."""
    if settings.database.url:
        return "PostgreSQL at " + _redact(settings.database.url)
    return f"embedded PostgreSQL in {settings.data_dir / 'pgdata'}"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url


async def migrate(dsn: str, *, timeout: float = 30.0) -> MigrationResult:
    """Connect once and bring the schema up to date; ConfigError with a clear message when unreachable."""
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"database_url: cannot connect to {_redact(dsn)}: {exc}") from None
    try:
        return await apply_migrations(pool)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ConfigError(
            f"database_url: the role of {_redact(dsn)} may not change the schema ({exc}); "
            "run idnode migrate with the schema owner's URL first"
        ) from None
    finally:
        await pool.close()
