"""resolver/schema/: handle history is append-only, for the owner by trigger and for a runtime role by rights.

Runs against the test server: the first tests on a migrated test database (connected as its superuser, whom only
the trigger can stop), the last one on a database migrated by an owner role and used by a runtime role set up as
README "Database roles" describes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from resolver.store import apply_migrations
from tests.support import as_role, home, put_record, with_database

RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/h"}}]


async def _with_history(dsn: str) -> asyncpg.Connection:
    await home(dsn, "88.TEST")
    await put_record(dsn, "88.TEST/h", RECORD)
    return await asyncpg.connect(dsn)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE handle_history SET actor = 'someone else'",
        "DELETE FROM handle_history",
        "DELETE FROM handle_history WHERE false",
        "TRUNCATE handle_history",
    ],
)
async def test_history_cannot_be_changed_even_by_a_superuser(database: str, statement: str) -> None:
    con = await _with_history(database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await con.execute(statement)
        assert await con.fetchval("SELECT count(*) FROM handle_history") == 1
    finally:
        await con.close()


async def test_deleting_a_handle_still_appends_its_history(database: str) -> None:
    con = await _with_history(database)
    try:
        await con.execute("DELETE FROM handles WHERE handle_key = '88.TEST/H'")
        assert [r[0] for r in await con.fetch("SELECT op FROM handle_history ORDER BY seq")] == ["create", "delete"]
    finally:
        await con.close()


@pytest.fixture
async def owner_and_runtime(server_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A database owned by a fresh owner role, with a runtime role given table rights by default privileges."""
    tag = uuid.uuid4().hex[:10]
    owner, runtime, name = f"idnode_owner_{tag}", f"idnode_runtime_{tag}", f"idnode_roles_{tag}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE ROLE {owner} LOGIN; CREATE ROLE {runtime} LOGIN")
        await admin.execute(f"CREATE DATABASE {name} OWNER {owner}")
        setup = await asyncpg.connect(with_database(server_dsn, name))
        try:
            await setup.execute(
                f"ALTER SCHEMA public OWNER TO {owner}; REVOKE ALL ON SCHEMA public FROM PUBLIC; "
                f"GRANT USAGE ON SCHEMA public TO {runtime}; "
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {runtime}; "
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                f"GRANT USAGE, SELECT ON SEQUENCES TO {runtime}"
            )
        finally:
            await setup.close()
        dsn = with_database(server_dsn, name)
        yield as_role(dsn, owner), as_role(dsn, runtime)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {runtime}; DROP ROLE IF EXISTS {owner}")
        await admin.close()


async def test_a_runtime_role_writes_handles_but_has_no_right_to_change_history(
    owner_and_runtime: tuple[str, str],
) -> None:
    owner_dsn, runtime_dsn = owner_and_runtime
    for dsn in (owner_dsn, runtime_dsn):  # the owner migrates; the runtime role finds nothing left to apply
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            result = await apply_migrations(pool)
        finally:
            await pool.close()
    assert result.applied == ()
    await home(runtime_dsn, "88.TEST")
    await put_record(runtime_dsn, "88.TEST/h", RECORD)
    con = await asyncpg.connect(runtime_dsn)
    try:
        for statement in ("UPDATE handle_history SET actor = 'x'", "DELETE FROM handle_history"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await con.execute(statement)
        assert await con.fetchval("SELECT count(*) FROM handle_history") == 1
    finally:
        await con.close()
