"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test, and a node on 127.0.0.1.

The server is ``IDNODE_TEST_DATABASE_URL`` when set (CI points it at PostgreSQL 15), otherwise an embedded
PostgreSQL 18 started once for the whole run in a temporary directory. Each test that needs a database gets
its own, cloned from a migrated template database, and dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from resolver.embedded import EmbeddedPostgres
from resolver.store import apply_migrations
from tests.support import Node, fresh_database, home, start_node, with_database


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """The PostgreSQL server of this test run (its maintenance database)."""
    url = os.environ.get("IDNODE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="idnode-test-pg-"))
    server = EmbeddedPostgres(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_database(server_dsn: str) -> AsyncIterator[str]:
    """A migrated database that every test database is cloned from."""
    name = f"idnode_tpl_{os.getpid()}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await asyncpg.create_pool(with_database(server_dsn, name), min_size=1, max_size=1)
        await apply_migrations(pool)
        await pool.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated, empty database for one test; yields its DSN."""
    async with fresh_database(server_dsn, template_database) as dsn:
        yield dsn


@pytest.fixture
async def node(database: str) -> AsyncIterator[Node]:
    """A node over a fresh database that homes 88.TEST (records are added by each test)."""
    await home(database, "88.TEST")
    runner, url, app = await start_node(database)
    async with aiohttp.ClientSession() as http:
        yield Node(url, app, database, http)
    await runner.cleanup()
