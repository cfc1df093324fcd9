"""Read replicas and failover (issue 11) against a real primary and a real streaming standby on loopback.

What must hold: cache loads go to the replica; a lagging replica never makes the node answer an older version than
a notification told it of (an update, a create, a delete, a bulk change); loads return to the replica once it caught
up; losing the replica costs nothing but load on the primary; and when the primary dies and the standby is
promoted, cached reads go on, the rest answers 503 rc 3 meanwhile, writes come back within seconds, and no
acknowledged write is missing (synchronous replication: see ``benchmarks/replicated.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from benchmarks.pgproxy import PgProxy
from benchmarks.replicas import create_database, failover
from benchmarks.replicated import Replicated, missing, replicated_postgres
from resolver.app import LISTENER, STORE
from resolver.changes import ChangesSettings
from resolver.config import RegistrySettings, Settings
from resolver.replicas import CHECK_INTERVAL, Replicas
from resolver.store import DatabaseSettings
from tests.support import Node, delete_record, eventually, onboard_enterprise, put_record, running_node, secure_basic

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no streaming replication here: {missing()}")

MAX_LAG = 4.0


def _url(target: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": target}]


async def _caught_up(cluster: Replicated) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    primary = await asyncpg.connect(cluster.primary.dsn())
    standby = await asyncpg.connect(cluster.standby.dsn())
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")

        async def replayed() -> bool:
            return await standby.fetchval("SELECT pg_last_wal_replay_lsn()") >= target

        assert await eventually(replayed, timeout=10.0)
    finally:
        await primary.close()
        await standby.close()


async def _on_standby(cluster: Replicated, sql: str) -> Any:
    con = await asyncpg.connect(cluster.standby.dsn("idnode"))
    try:
        return await con.fetchval(sql)
    finally:
        await con.close()


def _replicas(node: Node) -> Replicas:
    replicas = node.app[STORE].replicas
    assert replicas is not None
    return replicas


async def _replica_usable(node: Node) -> None:
    replicas = _replicas(node)

    async def usable() -> bool:
        return bool(replicas._usable(time.monotonic()))

    assert await eventually(usable, timeout=10.0)


async def _target(node: Node, handle: str) -> tuple[int, str | None]:
    status, body, _ = await node.get(f"/api/handles/{handle}")
    if status != 200:
        return status, None
    return status, body["values"][0]["data"]["value"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Replicated]:
    """A primary and an asynchronous standby shared by the tests that keep them both (or restore them)."""
    with replicated_postgres() as started:
        yield started


@pytest.fixture
async def replicated(cluster: Replicated) -> AsyncIterator[tuple[Node, Replicated]]:
    """A node over the cluster's primary, reading from its standby, with a fresh database ``idnode``."""
    dsn = await create_database(cluster)
    await put_record(dsn, "88.TEST/seed", _url("https://example.org/seed"))
    await _home(dsn)
    await _caught_up(cluster)
    async with running_node(dsn, _reading_from(cluster)) as node:
        await _replica_usable(node)
        yield node, cluster


def _reading_from(cluster: Replicated) -> Settings:
    """A node's settings with the cluster's standby as its replica (and a trusted proxy, for writes)."""
    return Settings(
        database=DatabaseSettings(
            replica_urls=(cluster.standby.dsn("idnode"),), replica_max_lag=MAX_LAG, command_timeout=1.0
        ),
        registry=RegistrySettings(trusted_proxies=("127.0.0.1",)),
    )


async def _home(dsn: str) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            "INSERT INTO prefixes (prefix_key, prefix) VALUES ('88.TEST', '88.TEST') ON CONFLICT DO NOTHING"
        )
    finally:
        await con.close()


async def test_cache_loads_go_to_the_replica(replicated: tuple[Node, Replicated]) -> None:
    node, cluster = replicated
    for n in range(10):
        await put_record(node.dsn, f"88.TEST/r{n}", _url(f"https://example.org/{n}"))
    await _caught_up(cluster)
    replicas = _replicas(node)
    before = (replicas.replica_loads, replicas.primary_loads, replicas.retried)
    for n in range(10):
        assert await _target(node, f"88.TEST/r{n}") == (200, f"https://example.org/{n}")
    assert await _target(node, "88.TEST/absent") == (404, None)
    after = (replicas.replica_loads, replicas.primary_loads, replicas.retried)
    assert after[0] - before[0] >= 11 and after[1:] == before[1:]
    connected = await _on_standby(
        cluster, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idnode' AND datname = 'idnode'"
    )
    assert connected >= 1
    _, text, _ = await node.get("/metrics")
    assert 'idnode_db_loads_total{source="replica"}' in text and 'idnode_db_replica_usable{replica="0"} 1.0' in text


async def test_listing_goes_to_a_replica_only_when_it_holds_every_change_heard(
    replicated: tuple[Node, Replicated],
) -> None:
    node, cluster = replicated
    admin = await onboard_enterprise(node.dsn, "88.LIST")
    auth = {"headers": secure_basic(admin.identity, admin.secret)}
    for n in range(3):
        await put_record(node.dsn, f"88.LIST/item-{n}", _url("https://example.org/item"))
    await _caught_up(cluster)
    await asyncio.sleep(2 * CHECK_INTERVAL)  # a health check saw the replica hold those changes
    replicas = _replicas(node)
    replica = replicas.replicas[0]

    def scans() -> int:
        """Reads the replica answered that were not cache loads (authorizing a listing loads records too)."""
        return replica.loads - replicas.replica_loads

    async def listed() -> list[str]:
        status, body, _ = await node.get("/api/handles?prefix=88.LIST", **auth)
        assert status == 200
        return body["handles"]

    reads = scans()
    assert {f"88.LIST/item-{n}" for n in range(3)} <= set(await listed())
    assert scans() == reads + 2  # the count and the page
    await _on_standby(cluster, "SELECT pg_wal_replay_pause()")
    try:
        await put_record(node.dsn, "88.LIST/item-new", _url("https://example.org/item"))
        await asyncio.sleep(0.2)  # the notification arrives
        assert "88.LIST/item-new" in await listed()  # from the primary: the replica has not replayed it
        assert scans() == reads + 2
    finally:
        await _on_standby(cluster, "SELECT pg_wal_replay_resume()")


async def test_a_lagging_replica_never_answers_older_than_a_notification(replicated: tuple[Node, Replicated]) -> None:
    node, cluster = replicated
    for name in ("changed", "doomed", "bulk"):
        await put_record(node.dsn, f"88.TEST/{name}", _url(f"https://example.org/{name}-1"))
    await _caught_up(cluster)
    for name in ("changed", "doomed", "bulk"):
        assert await _target(node, f"88.TEST/{name}") == (200, f"https://example.org/{name}-1")  # cached
    replicas = _replicas(node)
    await _on_standby(cluster, "SELECT pg_wal_replay_pause()")
    try:
        retried = replicas.retried
        await put_record(node.dsn, "88.TEST/changed", _url("https://example.org/changed-2"))
        await put_record(node.dsn, "88.TEST/born", _url("https://example.org/born"))
        await delete_record(node.dsn, "88.TEST/doomed")
        await asyncio.sleep(0.2)  # the notifications arrive
        assert await _target(node, "88.TEST/changed") == (200, "https://example.org/changed-2")
        assert await _target(node, "88.TEST/born") == (200, "https://example.org/born")
        assert await _target(node, "88.TEST/doomed") == (404, None)
        assert replicas.retried >= retried + 3  # the replica answered first, each time too old
        _, text, _ = await node.get("/metrics")
        assert "idnode_db_version_floors 0.0" not in text
        assert await _on_standby(cluster, "SELECT count(*) FROM handles WHERE handle_key = '88.TEST/DOOMED'") == 1

        # A bulk change names no key: the node flushes, and a replica behind the primary's position is not used.
        primary = await asyncpg.connect(node.dsn)
        try:
            async with primary.transaction():
                await primary.execute("SET LOCAL session_replication_role = replica")  # no per-key notification
                await primary.execute(
                    """UPDATE handles SET "values" = $1::jsonb WHERE handle_key = '88.TEST/BULK'""",
                    '[{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/bulk-2"}}]',
                )
            await primary.execute("NOTIFY idnode_changes, '*'")
        finally:
            await primary.close()
        await asyncio.sleep(0.2)
        assert await _target(node, "88.TEST/bulk") == (200, "https://example.org/bulk-2")
    finally:
        await _on_standby(cluster, "SELECT pg_wal_replay_resume()")
    await _caught_up(cluster)
    await _replica_usable(node)
    await asyncio.sleep(1.5)  # a health check after the catch-up
    loads, retried = replicas.replica_loads, replicas.retried
    assert await _target(node, "88.TEST/seed") == (200, "https://example.org/seed")
    assert (replicas.replica_loads, replicas.retried) == (loads + 1, retried)

    async def floors_gone() -> bool:  # bounded: nothing reloaded those keys, so they age out after max_lag
        _, text, _ = await node.get("/metrics")
        return "idnode_db_version_floors 0.0" in text

    assert await eventually(floors_gone, timeout=MAX_LAG + 2, interval=0.5)


async def test_reads_continue_from_the_primary_when_the_replica_is_lost(replicated: tuple[Node, Replicated]) -> None:
    node, cluster = replicated
    for n in range(5):
        await put_record(node.dsn, f"88.TEST/l{n}", _url(f"https://example.org/l{n}"))
    await _caught_up(cluster)
    await asyncio.to_thread(cluster.stop_server, cluster.standby, "fast")
    try:
        replicas = _replicas(node)
        primary_loads = replicas.primary_loads
        started = time.monotonic()
        for n in range(5):
            assert await _target(node, f"88.TEST/l{n}") == (200, f"https://example.org/l{n}")
        assert time.monotonic() - started < 2.0  # one failed attempt, then the replica is left out
        assert replicas.primary_loads >= primary_loads + 5
    finally:
        await asyncio.to_thread(cluster.start_server, cluster.standby)
    await _replica_usable(node)


async def test_a_write_through_one_node_is_read_through_another_despite_a_lagging_replica(
    replicated: tuple[Node, Replicated],
) -> None:
    """Read-your-writes across nodes: once node 1 acknowledged a write, node 2 answers it as soon as the change
    notification reached it (milliseconds), and never the older version afterwards, though its replica lags."""
    first, cluster = replicated
    admin = await onboard_enterprise(first.dsn, "88.RYW")
    auth = {"headers": secure_basic(admin.identity, admin.secret)}
    await put_record(first.dsn, "88.RYW/item", _url("https://example.org/v1"))
    await _caught_up(cluster)
    async with running_node(first.dsn, _reading_from(cluster)) as second:
        await _replica_usable(second)
        assert await _target(second, "88.RYW/item") == (200, "https://example.org/v1")  # cached by node 2
        await _on_standby(cluster, "SELECT pg_wal_replay_pause()")
        try:
            for handle, target in (("88.RYW/item", "https://example.org/v2"), ("88.RYW/new", "https://example.org/n")):
                status, _, _ = await first.call("PUT", f"/api/handles/{handle}", json=_url(target), **auth)
                assert status in (200, 201)
                acknowledged = time.monotonic()

                async def seen(handle: str = handle, target: str = target) -> bool:
                    return await _target(second, handle) == (200, target)

                assert await eventually(seen, timeout=2.0, interval=0.005)
                print(
                    f"\n{handle}: seen through node 2 {1000 * (time.monotonic() - acknowledged):.1f} ms after the 2xx"
                )
                for _ in range(20):
                    assert await _target(second, handle) == (200, target)
        finally:
            await _on_standby(cluster, "SELECT pg_wal_replay_resume()")


async def test_writes_reaching_a_standby_are_503_and_drop_their_connection(cluster: Replicated) -> None:
    """A database_url that lands on a standby (a virtual IP or proxy not yet moved after a failover): writes answer
    503 rc 3, not 500, and each refused connection is discarded, so writes succeed as soon as new connections reach
    the primary again."""
    dsn = await create_database(cluster)
    admin = await onboard_enterprise(dsn, "88.TEST")
    auth = {"headers": secure_basic(admin.identity, admin.secret)}
    await _caught_up(cluster)
    proxy = PgProxy(dsn)
    await proxy.start()
    settings = Settings(
        database=DatabaseSettings(command_timeout=1.0), registry=RegistrySettings(trusted_proxies=("127.0.0.1",))
    )
    try:
        async with running_node(proxy.dsn, settings) as node:
            status, _, _ = await node.call("PUT", "/api/handles/88.TEST/a", json=_url("https://x.org/a"), **auth)
            assert status == 201
            await proxy.crash()
            proxy.upstream = cluster.standby.dsn("idnode")
            await proxy.restore()
            for n in range(5):
                status, body, response = await node.call(
                    "PUT", f"/api/handles/88.TEST/b{n}", json=_url("https://x.org/b"), **auth
                )
                assert (status, body["responseCode"]) == (503, 3) and int(response.headers["Retry-After"]) > 0
            proxy.upstream = dsn  # new connections reach the primary again; the pooled ones still reach the standby
            statuses = []
            for n in range(2 * settings.database.pool_max):
                status, _, _ = await node.call(
                    "PUT", f"/api/handles/88.TEST/c{n}", json=_url("https://x.org/c"), **auth
                )
                statuses.append(status)
                if status == 201:
                    break
            assert statuses[-1] == 201 and set(statuses) <= {201, 503}
    finally:
        await proxy.close()


async def test_failover_loses_no_acknowledged_write() -> None:
    """Synchronous replication; the primary is killed under a read-and-write load and the standby promoted."""
    with replicated_postgres(synchronous=True) as cluster:
        dsn = await create_database(cluster)
        admin = await onboard_enterprise(dsn, "88.TEST")
        cached = [f"88.TEST/cached-{n}" for n in range(20)]
        for handle in cached:
            await put_record(dsn, handle, _url("https://example.org/cached"))
        await _caught_up(cluster)
        both = f"postgresql://postgres@127.0.0.1:{cluster.primary.port},127.0.0.1:{cluster.standby.port}/idnode"
        settings = Settings(
            database=DatabaseSettings(
                replica_urls=(cluster.standby.dsn("idnode"),), replica_max_lag=MAX_LAG, command_timeout=1.0
            ),
            changes=ChangesSettings(backoff_max=0.5),
            registry=RegistrySettings(trusted_proxies=("127.0.0.1",)),
        )
        async with running_node(both + "?target_session_attrs=read-write", settings) as node:
            for handle in cached:
                assert (await node.get(f"/api/handles/{handle}"))[0] == 200
            headers = secure_basic(admin.identity, admin.secret)
            switch = await failover(node.url, cluster, headers, prefix="88.TEST", cached=cached)
            print(f"\nfailover: {switch.line()}")
            for handle in switch.acknowledged[-5:]:  # and the node answers them
                assert (await _target(node, handle))[0] == 200
            reconnects = node.app[LISTENER].reconnects
    assert switch.missing == [], "acknowledged writes lost"
    assert switch.cached_failures == 0, "a cached read failed during the switch"
    assert switch.write_statuses.keys() <= {200, 201, 503} and switch.miss_statuses.keys() <= {404, 503}
    assert switch.malformed_503 == 0 and switch.write_statuses[503] > 0  # there was a time without a primary
    assert switch.writes_back_after is not None and switch.writes_back_after < 5.0
    assert switch.ready_after is not None and switch.ready_after < 5.0
    assert reconnects >= 1
