"""Regressions from the security review of issue 8's change, over real HTTP against a real database.

Each test reproduces one finding and failed before its fix: an imported secret key stored in the clear and shown
to anonymous readers; the owner locked out by failures from many addresses; search listing a tenant's handles to
an identity without LIST_HANDLES; a batch refusing the secret placeholder a PUT accepts; the import's index
statement bound by the pool's short timeout.
"""

from __future__ import annotations

import asyncpg
import orjson

from registry.bulk import ImportReport, import_lines
from resolver.identifiers import ascii_upper
from resolver.prefixes import PrefixTable
from resolver.store import DatabaseSettings, close_pool, connect
from tests.support import home

ADMIN_OF_ITSELF = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {"format": "admin", "value": {"handle": "88.TEST/ADMIN", "index": 300, "permissions": "111111111111"}},
}


async def _import(dsn: str, *records: dict | str, command_timeout: float = 5.0) -> ImportReport:
    """``idnode import`` of ``records`` (JSON Lines) through the node's own pool, as the CLI runs it."""
    store = await connect(dsn, DatabaseSettings(command_timeout=command_timeout, pool_min=1, pool_max=2))
    try:
        lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in records]
        prefixes = PrefixTable(await store.fetch_prefixes())
        return await import_lines(store, lines, prefixes, max_handle_bytes=1024, replace=False, actor="test")
    finally:
        await close_pool(store.pool)


async def _stored_values(dsn: str, handle: str) -> list[dict]:
    con = await asyncpg.connect(dsn)
    try:
        text = await con.fetchval('SELECT "values"::text FROM handles WHERE handle_key = $1', ascii_upper(handle))
    finally:
        await con.close()
    return orjson.loads(text) if text is not None else []


# --- 5. the import's index statement ---------------------------------------------------------------------------


async def test_an_import_large_enough_to_index_its_rows_is_not_bound_by_the_pools_short_timeout(
    database: str,
) -> None:
    """The index over the imported rows (built beyond 50,000 rows) may take longer than the pool's per-query
    timeout, like every other bulk statement; an event trigger makes it take 1.5 s against a 1 s timeout."""
    await home(database, "88.TEST")
    con = await asyncpg.connect(database)
    try:
        await con.execute(
            "CREATE FUNCTION slow_index() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_sleep(1.5); END $$"
        )
        await con.execute(
            "CREATE EVENT TRIGGER slow_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
            "EXECUTE FUNCTION slow_index()"
        )
    finally:
        await con.close()
    lines = [f'{{"handle":"88.TEST/n{i}","values":[{{"index":1,"type":"NUM","data":"{i}"}}]}}' for i in range(50_001)]
    report = await _import(database, *lines, command_timeout=1.0)
    assert (report.error_count, report.written) == (0, 50_001)
