"""resolver/changes.py: caches stay coherent with writes made by plain SQL, across processes and connection loss.

Every write here goes straight to PostgreSQL (as another node, an operator or a migration would); the node only
learns of it through the triggers' notifications. "Within 1 s" is the coherence promise, checked by polling.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import asyncpg
import orjson

from resolver.app import CACHE, LISTENER
from resolver.cache import Cache, CacheSettings
from resolver.changes import ChangeListener, ChangesSettings
from resolver.config import Settings
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored
from tests.support import Node, delete_record, eventually, home, node_process, put_record, start_node


def _values(url: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": url}, {"index": 2, "type": "DESC", "data": "coherence test"}]


async def _read(http: aiohttp.ClientSession, base: str, handle: str) -> tuple[int, str | None]:
    """Status and first value of ``GET /api/handles/<handle>`` (None when there is no record)."""
    async with http.get(f"{base}/api/handles/{handle}") as response:
        body = orjson.loads(await response.read())
        values = body.get("values") or [{"data": {"value": None}}]
        return response.status, values[0]["data"]["value"]


async def _reads_as(http: aiohttp.ClientSession, base: str, handle: str, expected: tuple[int, str | None]) -> bool:
    async def check() -> bool:
        return await _read(http, base, handle) == expected

    return bool(await eventually(check, timeout=1.0))


async def _kill_listener(dsn: str) -> int:
    """Terminate the node's LISTEN backend (the only connection outside its pool, which is named ``idnode``)."""
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND (query LIKE 'LISTEN%' OR application_name IS DISTINCT FROM 'idnode')"
        )
    finally:
        await con.close()


# --- one node --------------------------------------------------------------------------------------------------


async def test_create_by_sql_replaces_a_remembered_absence_within_a_second(node: Node) -> None:
    cache = node.app[CACHE]
    assert await _read(node.http, node.url, "88.TEST/new") == (404, None)
    negative_hits = cache.negative_hits
    assert await _read(node.http, node.url, "88.TEST/new") == (404, None)
    assert cache.negative_hits == negative_hits + 1  # the absence is cached
    await put_record(node.dsn, "88.TEST/new", _values("https://example.org/new"))
    assert await _reads_as(node.http, node.url, "88.TEST/new", (200, "https://example.org/new"))


async def test_update_by_sql_is_visible_within_a_second(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/upd", _values("https://example.org/v1"))
    assert await _read(node.http, node.url, "88.TEST/upd") == (200, "https://example.org/v1")
    hits = node.app[CACHE].hits
    assert await _read(node.http, node.url, "88.TEST/upd") == (200, "https://example.org/v1")
    assert node.app[CACHE].hits > hits  # the record is cached
    await put_record(node.dsn, "88.TEST/upd", _values("https://example.org/v2"))
    assert await _reads_as(node.http, node.url, "88.TEST/upd", (200, "https://example.org/v2"))
    assert await _reads_as(node.http, node.url, "88.test/UPD", (200, "https://example.org/v2"))


async def test_update_by_sql_reaches_the_proxy_redirect_within_a_second(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/qr", _values("https://example.org/v1"))

    async def location() -> str | None:
        async with node.http.get(node.url + "/88.TEST/qr", allow_redirects=False) as response:
            return response.headers.get("Location")

    assert await location() == "https://example.org/v1"
    await put_record(node.dsn, "88.TEST/qr", _values("https://example.org/v2"))

    async def moved() -> bool:
        return await location() == "https://example.org/v2"

    assert await eventually(moved)


async def test_delete_by_sql_is_404_within_a_second(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/del", _values("https://example.org/del"))
    assert await _read(node.http, node.url, "88.TEST/del") == (200, "https://example.org/del")
    await delete_record(node.dsn, "88.TEST/del")
    assert await _reads_as(node.http, node.url, "88.TEST/del", (404, None))


async def test_delete_then_recreate_by_sql_is_seen(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/again", _values("https://example.org/one"))
    assert await _read(node.http, node.url, "88.TEST/again") == (200, "https://example.org/one")
    await delete_record(node.dsn, "88.TEST/again")
    assert await _reads_as(node.http, node.url, "88.TEST/again", (404, None))
    await put_record(node.dsn, "88.TEST/again", _values("https://example.org/two"))
    assert await _reads_as(node.http, node.url, "88.TEST/again", (200, "https://example.org/two"))


async def _bulk_insert(dsn: str, count: int, url: str) -> None:
    stored = values_to_stored(decode_values(_values(url))).decode()
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") '
            "SELECT '88.TEST/BULK-' || n, '88.TEST/bulk-' || n, '88.TEST', $2::jsonb FROM generate_series(1, $1) n "
            'ON CONFLICT (handle_key) DO UPDATE SET "values" = EXCLUDED."values"',
            count,
            stored,
        )
    finally:
        await con.close()


async def test_bulk_create_by_sql_replaces_remembered_absences(node: Node) -> None:
    assert await _read(node.http, node.url, "88.TEST/bulk-500") == (404, None)
    await _bulk_insert(node.dsn, 1001, "https://example.org/bulk")  # one '-' notification, not 1001
    assert await _reads_as(node.http, node.url, "88.TEST/bulk-500", (200, "https://example.org/bulk"))


async def test_bulk_update_by_sql_replaces_cached_records(node: Node) -> None:
    await _bulk_insert(node.dsn, 1001, "https://example.org/old")
    assert await _read(node.http, node.url, "88.TEST/bulk-7") == (200, "https://example.org/old")
    await _bulk_insert(node.dsn, 1001, "https://example.org/new")  # one '*' notification
    assert await _reads_as(node.http, node.url, "88.TEST/bulk-7", (200, "https://example.org/new"))


async def test_homing_a_prefix_by_sql_is_seen_within_a_second(node: Node) -> None:
    async with node.http.get(node.url + "/api/handles/77.NEW/x") as response:
        assert (response.status, (await response.json())["responseCode"]) == (400, 301)
    await home(node.dsn, "77.NEW")

    async def homed() -> bool:
        async with node.http.get(node.url + "/api/handles/77.NEW/x") as response:
            return response.status == 404

    assert await eventually(homed)


# --- two node processes on one database --------------------------------------------------------------------


async def test_two_node_processes_stay_coherent_with_writes_by_sql(database: str) -> None:
    await home(database, "88.TEST")
    handle = "88.TEST/shared"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(node_process(database))
        second = stack.enter_context(node_process(database))
        async with aiohttp.ClientSession() as http:
            for base in (first, second):
                assert await _read(http, base, handle) == (404, None)  # now remembered as absent by both
            await put_record(database, handle, _values("https://example.org/v1"))
            for base in (first, second):
                assert await _reads_as(http, base, handle, (200, "https://example.org/v1"))
                assert await _read(http, base, handle) == (200, "https://example.org/v1")  # cached
            await put_record(database, handle, _values("https://example.org/v2"))
            for base in (first, second):
                assert await _reads_as(http, base, handle, (200, "https://example.org/v2"))
            await delete_record(database, handle)
            for base in (first, second):
                assert await _reads_as(http, base, handle, (404, None))


# --- faults ---------------------------------------------------------------------------------------------------


async def test_lost_listen_connection_reconnects_and_reconciles_with_one_flush(node: Node) -> None:
    cache, listener = node.app[CACHE], node.app[LISTENER]
    await put_record(node.dsn, "88.TEST/lost", _values("https://example.org/before"))
    assert await _read(node.http, node.url, "88.TEST/lost") == (200, "https://example.org/before")
    assert cache.stats()["entries"] == 1
    flushes, reconnects = cache.flushes, listener.reconnects

    assert await _kill_listener(node.dsn) == 1

    async def back() -> bool:
        return listener.reconnects > reconnects and listener.connected == 1

    assert await eventually(back, timeout=10.0)
    assert cache.flushes == flushes + 1  # once, when LISTEN is back: changes may have been missed meanwhile
    assert cache.stats()["entries"] == 0
    assert await _read(node.http, node.url, "88.TEST/lost") == (200, "https://example.org/before")
    await put_record(node.dsn, "88.TEST/lost", _values("https://example.org/after"))
    assert await _reads_as(node.http, node.url, "88.TEST/lost", (200, "https://example.org/after"))
    async with node.http.get(node.url + "/readyz") as response:
        assert response.status == 200


# --- bounded cache -------------------------------------------------------------------------------------------


async def test_small_cache_evicts_but_every_answer_stays_correct(database: str) -> None:
    await home(database, "88.TEST")
    handles = [f"88.TEST/small-{n}" for n in range(10)]
    for handle in handles:
        await put_record(database, handle, _values(f"https://example.org/{handle}"))
    runner, url, app = await start_node(database, Settings(cache=CacheSettings(max_entries=3)))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                for handle in handles:
                    assert await _read(http, url, handle) == (200, f"https://example.org/{handle}")
        stats = app[CACHE].stats()
        assert stats["entries"] <= 3
        assert stats["evictions"] >= 7
        assert set(app[CACHE].keys()) <= {ascii_upper(h) for h in handles}
    finally:
        await runner.cleanup()


async def test_listener_that_cannot_reload_the_prefix_table_retries_instead_of_dying(database: str) -> None:
    """Regression: a database failure while reloading prefixes (it went away again right after LISTEN) ended the
    listener's task, leaving the node not ready for good."""
    failures = [TimeoutError("no answer within database_timeout")]

    async def reload_prefixes() -> None:
        if failures:
            raise failures.pop()

    async def load(_keys: object) -> dict[str, Any]:
        return {}

    listener = ChangeListener(
        lambda: asyncpg.connect(database), Cache(CacheSettings(), load), reload_prefixes, ChangesSettings()
    )
    await listener.start(timeout=10.0)
    try:
        assert (listener.connected, listener.connection_losses, listener.reconnects) == (1, 1, 1)
    finally:
        await listener.stop()
