"""Database outages (issue 8): a node between clients and a PostgreSQL that freezes, crashes or is starting up.

A TCP proxy (``benchmarks/pgproxy.py``) sits between the node and a real PostgreSQL and causes each fault. What
must hold through every one: cached look-ups are still answered (API and proxy), everything that needs the
database answers 503 rc 3 with ``Retry-After`` (never a 500, never a hung request: within ``database_timeout``),
``/readyz`` says not ready within about 2 s, and after the fault the node reconciles its cache once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.pgproxy import PgProxy
from resolver.app import CACHE, LISTENER, READY_TIMEOUT
from resolver.cache import CacheSettings
from resolver.config import RegistrySettings, Settings
from resolver.store import DatabaseSettings
from tests.support import SECURE, Node, eventually, home, onboard_enterprise, put_record, running_node, secure_basic

TIMEOUT = 1.0
"""``database_timeout`` of the node under test: each fault must be answered within it (plus a margin)."""
MARGIN = 0.75
CACHED = [f"88.TEST/cached-{n}" for n in range(20)]


def _url(target: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": target}]


@dataclass
class Outage:
    node: Node
    proxy: PgProxy
    database: str
    auth: dict[str, str]
    stranger: dict[str, str]
    """Credentials of an enterprise (88.B) whose records the node has not cached."""

    async def timed(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, str], float]:
        """Status, body, headers and seconds taken by one request."""
        started = time.monotonic()
        status, body, response = await self.node.call(method, path, **kwargs)
        return status, body, dict(response.headers), time.monotonic() - started

    async def cached_answers(self) -> list[int]:
        """Statuses of an API look-up and a proxy redirect of every cached handle."""
        statuses = []
        for handle in CACHED:
            statuses.append((await self.node.get(f"/api/handles/{handle}"))[0])
            statuses.append((await self.node.get(f"/{handle}"))[0])
        return statuses

    async def listener_lost(self) -> None:
        listener = self.node.app[LISTENER]

        async def lost() -> bool:
            return listener.connected == 0

        assert await eventually(lost, timeout=4 * TIMEOUT)

    async def ready_again(self) -> None:
        async def ready() -> bool:
            return (await self.node.get("/readyz"))[0] == 200

        assert await eventually(ready, timeout=15.0)


def _unavailable(status: int, body: Any, headers: dict[str, str]) -> bool:
    return status == 503 and body["responseCode"] == 3 and int(headers["Retry-After"]) > 0


@pytest.fixture
async def outage(database: str) -> AsyncIterator[Outage]:
    """A node whose database connections go through a proxy, with ``CACHED`` in its cache."""
    admin = await onboard_enterprise(database, "88.TEST")
    stranger = await onboard_enterprise(database, "88.B")
    for n, handle in enumerate(CACHED):
        await put_record(database, handle, _url(f"https://example.org/{n}"))
    await put_record(database, "88.TEST/uncached", _url("https://example.org/uncached"))
    proxy = PgProxy(database)
    await proxy.start()
    settings = Settings(
        database=DatabaseSettings(command_timeout=TIMEOUT),
        registry=RegistrySettings(trusted_proxies=("127.0.0.1",)),
    )
    try:
        async with running_node(proxy.dsn, settings) as node:
            site = Outage(
                node,
                proxy,
                database,
                secure_basic(admin.identity, admin.secret),
                secure_basic(stranger.identity, stranger.secret),
            )
            assert set(await site.cached_answers()) == {200, 302}
            status, _, _ = await node.call(
                "PUT", "/api/handles/88.TEST/warm-up", json=_url("https://x.org/"), **_h(site)
            )
            assert status == 201  # the identity's records are cached now, so writes reach the database step
            try:
                yield site
            finally:
                await proxy.restore()
    finally:
        await proxy.close()


def _h(site: Outage) -> dict[str, Any]:
    return {"headers": site.auth}


async def test_cached_lookups_are_answered_through_a_freeze_and_the_rest_is_503_within_the_timeout(
    outage: Outage,
) -> None:
    outage.proxy.freeze()
    await outage.listener_lost()
    assert set(await outage.cached_answers()) == {200, 302}  # the lost LISTEN connection flushed nothing

    status, body, headers, took = await outage.timed("GET", "/api/handles/88.TEST/uncached")
    assert _unavailable(status, body, headers) and took < TIMEOUT + MARGIN
    status, body, headers, took = await outage.timed("GET", "/88.TEST/uncached")
    assert (status, headers["Content-Type"].split(";")[0], took < TIMEOUT + MARGIN) == (503, "text/html", True)
    assert int(headers["Retry-After"]) > 0
    status, body, headers, took = await outage.timed(
        "POST", "/api/resolve", json={"handles": [CACHED[0], "88.TEST/uncached"]}
    )
    assert status == 200 and [r["responseCode"] for r in body["results"]] == [1, 3]
    assert took < TIMEOUT + MARGIN
    for method, path, kwargs in [
        ("PUT", "/api/handles/88.TEST/new", {"json": _url("https://example.org/new"), **_h(outage)}),
        ("POST", "/api/handles:batch", {"json": {"items": [{"op": "delete", "handle": CACHED[1]}]}, **_h(outage)}),
        ("GET", "/api/handles?prefix=88.TEST", _h(outage)),
        ("POST", "/api/sessions", {"headers": SECURE}),
    ]:
        status, body, headers, took = await outage.timed(method, path, **kwargs)
        assert _unavailable(status, body, headers), (method, path, status, body)
        assert took < 2 * TIMEOUT + MARGIN, (method, path, took)
    status, body, headers, took = await outage.timed("GET", "/readyz")
    assert (status, body["responseCode"], took < READY_TIMEOUT + MARGIN) == (503, 3, True)

    outage.proxy.thaw()
    await outage.ready_again()
    assert set(await outage.cached_answers()) == {200, 302}
    assert (await outage.node.get("/api/handles/88.TEST/uncached"))[0] == 200


async def test_readyz_answers_503_within_two_seconds_while_the_database_is_frozen(database: str) -> None:
    await home(database, "88.TEST")
    proxy = PgProxy(database)
    await proxy.start()
    try:
        async with running_node(proxy.dsn, Settings(database=DatabaseSettings(command_timeout=30.0))) as node:
            proxy.freeze()
            started = time.monotonic()
            status, body, response = await node.get("/readyz")
            assert (status, body["responseCode"], "Retry-After" in response.headers) == (503, 3, True)
            assert time.monotonic() - started < READY_TIMEOUT + MARGIN
            await proxy.restore()
    finally:
        await proxy.close()


async def test_cached_lookups_are_answered_through_a_crash_and_the_cache_reconciles_after_it(
    outage: Outage,
) -> None:
    cache = outage.node.app[CACHE]
    await outage.proxy.crash()
    await outage.listener_lost()
    flushes = cache.flushes
    assert set(await outage.cached_answers()) == {200, 302}
    status, body, headers, took = await outage.timed("GET", "/api/handles/88.TEST/uncached")
    assert _unavailable(status, body, headers) and took < TIMEOUT + MARGIN
    status, body, headers, _ = await outage.timed("GET", "/readyz")
    assert (status, body["responseCode"]) == (503, 3)
    await put_record(outage.database, CACHED[0], _url("https://example.org/changed-while-away"))  # unheard

    await outage.proxy.restore()
    await outage.ready_again()
    assert cache.flushes == flushes + 1  # reconciled once, when LISTEN was back
    status, body, _ = await outage.node.get(f"/api/handles/{CACHED[0]}")
    assert (status, body["values"][0]["data"]["value"]) == (200, "https://example.org/changed-while-away")


async def test_a_database_that_is_starting_up_answers_503_not_500(outage: Outage) -> None:
    outage.proxy.starting_up()
    await outage.listener_lost()
    assert set(await outage.cached_answers()) == {200, 302}
    for method, path, kwargs in [
        ("GET", "/api/handles/88.TEST/uncached", {}),
        ("PUT", "/api/handles/88.TEST/new", {"json": _url("https://example.org/new"), **_h(outage)}),
        ("POST", "/api/sessions", {"headers": SECURE}),
    ]:
        status, body, headers, _ = await outage.timed(method, path, **kwargs)
        assert _unavailable(status, body, headers), (method, path, status, body)
    await outage.proxy.restore()
    await outage.ready_again()


async def test_an_identity_the_cache_does_not_hold_is_503_during_an_outage_not_refused(outage: Outage) -> None:
    """Regression: the registry took "the database cannot say" for "no such identity" and answered 401."""
    outage.proxy.starting_up()
    await outage.listener_lost()
    for method, path, kwargs in [
        ("PUT", "/api/handles/88.B/new", {"json": _url("https://example.org/new")}),
        ("GET", f"/api/handles/{CACHED[0]}?publicOnly=false", {}),
        ("POST", "/api/sessions", {}),
    ]:
        status, body, headers, _ = await outage.timed(method, path, headers=outage.stranger, **kwargs)
        assert _unavailable(status, body, headers), (method, path, status, body)
    await outage.proxy.restore()
    await outage.ready_again()
    status, _, _ = await outage.node.call(
        "PUT", "/api/handles/88.B/new", json=_url("https://x.org/"), headers=outage.stranger
    )
    assert status == 201  # no failed login was counted against the identity


async def test_an_entry_whose_safety_ttl_runs_out_during_an_outage_is_still_answered(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, CACHED[0], _url("https://example.org/0"))
    proxy = PgProxy(database)
    await proxy.start()
    settings = Settings(database=DatabaseSettings(command_timeout=TIMEOUT), cache=CacheSettings(safety_ttl=0.5))
    try:
        async with running_node(proxy.dsn, settings) as node:
            assert (await node.get(f"/api/handles/{CACHED[0]}"))[0] == 200
            await proxy.crash()
            await asyncio.sleep(0.6)  # past the entry's safety TTL, with the database away
            statuses = [(await node.get(f"/api/handles/{CACHED[0]}"))[0], (await node.get(f"/{CACHED[0]}"))[0]]
            assert statuses == [200, 302]
            assert node.app[CACHE].stale_answers == 2
    finally:
        await proxy.close()
