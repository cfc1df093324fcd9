"""registry/nodes.py and registry/upstream.py: a parent onboards a child node, the child publishes its site and
reports to the parent, and the parent lists it with its health and shows its totals."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web

from registry import enterprises
from registry.app import extensions as registry_extensions
from registry.enterprises import Credentials
from registry.nodes import NODE_PERMISSIONS, add_node, health_of
from registry.store import Actor, RegistryStore
from registry.tls import ensure_self_signed
from resolver.app import create_app
from resolver.config import RegistrySettings, Settings
from resolver.errors import HandleAlreadyExists, PrefixNotHomed
from resolver.forward_settings import HierarchySettings
from resolver.identifiers import ascii_upper
from resolver.sites import site_urls
from tests.support import (
    Node,
    add_node_operator,
    basic,
    eventually,
    free_port,
    fresh_database,
    home,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
    self_signed_context,
    serve_node,
    start_node,
)
from tests.test_cli import idnode

ADVERTISED = "http://127.0.0.1:8099"
URL = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/"}}]
TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture
async def child_database(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    async with fresh_database(server_dsn, template_database) as dsn:
        yield dsn


async def _add_node(dsn: str, prefix: str) -> Credentials:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await add_node(RegistryStore(pool), prefix, name=f"Node {prefix}", actor=Actor("test"))
    finally:
        await pool.close()


async def _values(dsn: str, handle: str) -> dict[int, dict[str, Any]]:
    con = await asyncpg.connect(dsn)
    try:
        stored = await con.fetchval('SELECT "values" FROM handles WHERE handle_key = $1', ascii_upper(handle))
    finally:
        await con.close()
    return {} if stored is None else {value["index"]: value for value in orjson.loads(stored)}


async def _parent_and_child(database: str, child_database: str) -> Credentials:
    """The parent homes 88 and onboards the child node 88.118 (``node add``); the child homes 88.118."""
    await home(database, "88")
    credentials = await _add_node(database, "88.118")
    await home(child_database, "88.118")
    return credentials


def _tls_parent(database: str, directory: Path) -> AbstractAsyncContextManager[Node]:
    """The parent over HTTPS with a self-signed pair in ``directory`` (the child trusts it as ``upstream_ca``)."""
    return running_node(database, ssl_context=self_signed_context(directory))


def _child_settings(parent: str, credentials: Credentials, ca: Path, **hierarchy: Any) -> Settings:
    return Settings(
        hierarchy=HierarchySettings(
            upstream=(parent,),
            upstream_identity=credentials.identity,
            upstream_secret=credentials.secret,
            upstream_ca=ca,
            **{"advertise_url": ADVERTISED, "report_interval": 0.2, **hierarchy},
        )
    )


async def test_node_add_creates_the_prefix_handle_with_a_narrow_admin_and_checks_the_range(database: str) -> None:
    await home(database, "88")
    credentials = await _add_node(database, "88.118")
    assert credentials.identity == "300:0.NA/88.118"
    values = await _values(database, "0.NA/88.118")
    assert values[100]["data"]["value"] == {"handle": "0.NA/88.118", "index": 300, "permissions": NODE_PERMISSIONS}
    assert NODE_PERMISSIONS == "000001110000"
    assert values[300]["type"] == "HS_SECKEY" and values[300]["data"]["value"].startswith("pbkdf2-sha1$")
    with pytest.raises(HandleAlreadyExists, match=r"0\.NA/88\.118 already exists"):
        await _add_node(database, "88.118")
    with pytest.raises(PrefixNotHomed, match="not under any prefix homed here"):
        await _add_node(database, "77.1")
    with pytest.raises(HandleAlreadyExists, match="is homed here"):
        await _add_node(database, "88")
    await onboard_enterprise(database, "88.7")
    with pytest.raises(HandleAlreadyExists, match=r"overlaps enterprise prefix 88\.7"):
        await _add_node(database, "88.7.1")


async def test_a_child_joins_publishes_its_site_and_reports_to_its_parent(
    database: str, child_database: str, tmp_path: Path
) -> None:
    await home(database, "88")
    operator = await add_node_operator(database, "88/OPERATOR")
    result = idnode(database, tmp_path, "node", "add", "--prefix", "88.118", "--name", "Secondary A", "--json")
    assert result.returncode == 0, result.stderr
    credentials = Credentials(**orjson.loads(result.stdout))
    assert credentials.identity == "300:0.NA/88.118"

    await home(child_database, "88.118")
    await put_record(child_database, "88.118/P1", URL)
    cert, _ = ensure_self_signed(tmp_path)
    parent_settings = Settings(hierarchy=HierarchySettings(report_interval=0.2))
    async with running_node(database, parent_settings, ssl_context=self_signed_context(tmp_path)) as parent:
        async with running_node(child_database, _child_settings(parent.url, credentials, cert)):

            async def published() -> dict[int, dict[str, Any]] | None:
                values = await _values(database, "0.NA/88.118")
                return values if {1, 2} <= set(values) else None

            values = await eventually(published, timeout=10)
            assert values[1]["type"] == "HS_SITE" and values[2]["type"] == "HS_SITE.PREFIX"
            assert site_urls(values[1]["data"]["value"]) == (ADVERTISED,)
            assert site_urls(values[2]["data"]["value"]) == (ADVERTISED,)
            assert values[100]["type"] == "HS_ADMIN" and values[300]["type"] == "HS_SECKEY"  # not clobbered

            op = basic(operator.identity, operator.secret)

            async def listed() -> dict[str, Any] | None:
                status, body, _ = await parent.get("/api/nodes", headers=op)
                assert status == 200, body
                node = body["nodes"][0]
                return node if node["health"] == "ok" and node["uptime"] >= 1.0 else None  # several reports in

            node = await eventually(listed, timeout=10)
            assert {k: node[k] for k in ("prefix", "name", "identity", "ready", "prefixes")} == {
                "prefix": "88.118",
                "name": "Secondary A",
                "identity": "300:0.NA/88.118",
                "ready": {"database": True, "listening": True},
                "prefixes": ["88.118"],
            }
            assert node["version"] and node["uptime"] >= 0 and node["secondsSince"] < 10

            status, body, _ = await parent.get("/api/stats?node=88.118", headers=op)
            assert status == 200, body
            assert body["node"] == "88.118"  # reported again and again, counted once: totals are absolute
            assert body["days"] == [
                {
                    "day": TODAY,
                    "prefix": "88.118",
                    "lookups": {"hit": 0, "miss": 0, "not_found": 0, "forwarded": 0, "stale": 0, "error": 0},
                    "registrations": {"create": 1, "update": 0, "delete": 0},
                }
            ]
            status, body, _ = await parent.get("/api/stats?prefix=88.118", headers=op)  # the parent's own: apart
            assert body["days"][0]["registrations"]["create"] == 1  # node add created 0.NA/88.118 here
            assert body["days"][0]["registrations"]["update"] >= 1  # which the child's publishing updated

        status, body, _ = await parent.call("POST", "/api/nodes/report", json={"version": "x", "uptime": 1}, headers=op)
        assert (status, body["responseCode"]) == (403, 400)
        assert body["message"] == "300:88/OPERATOR is not the identity of a child node of this node (idnode node add)"
        status, body, _ = await parent.call(
            "POST", "/api/nodes/report", json={"uptime": 1}, headers=basic(credentials.identity, credentials.secret)
        )
        assert (status, body) == (
            400,
            {"responseCode": 4, "message": "version must be a string of at most 100 characters"},
        )
        child = basic(credentials.identity, credentials.secret)
        status, body, _ = await parent.get("/api/nodes", headers=child)
        assert (status, body["responseCode"]) == (403, 401)
        site = {"values": [{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {}}}]}
        await _add_node(database, "88.200")
        for handle in ("0.NA/88.200?index=1", "88/X"):  # another child's prefix handle; one of the parent's own
            status, body, _ = await parent.call("PUT", f"/api/handles/{handle}", json=site, headers=child)
            assert (status, body["responseCode"]) == (403, 400), (handle, body)
        status, body, _ = await parent.call("PUT", "/api/handles/88.118/X", json=site, headers=child)
        assert (status, body["responseCode"]) == (400, 301)  # delegated to the child now: not the parent's to write


async def test_upstream_register_publishes_once_and_fails_clearly(
    database: str, child_database: str, tmp_path: Path
) -> None:
    credentials = await _parent_and_child(database, child_database)
    cert, _ = ensure_self_signed(tmp_path)
    async with _tls_parent(database, tmp_path) as parent:
        env = {
            "--upstream": parent.url,
            "--upstream-identity": credentials.identity,
            "--upstream-secret": credentials.secret,
            "--upstream-ca": str(cert),
            "--advertise-url": ADVERTISED,
        }
        flags = [part for pair in env.items() for part in pair]
        register = functools.partial(idnode, child_database, tmp_path, "upstream", "register")
        result = await asyncio.to_thread(register, *flags)  # the parent answers on this test's loop
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (
            f"published 0.NA/88.118 at {parent.url}: HS_SITE (index 1) and HS_SITE.PREFIX (index 2), site {ADVERTISED}"
        )
        assert site_urls((await _values(database, "0.NA/88.118"))[1]["data"]["value"]) == (ADVERTISED,)

        wrong = [*flags[:-6], "--upstream-secret", "wrong", *flags[-4:]]
        result = await asyncio.to_thread(register, *wrong)
        assert result.returncode == 1
        assert f"upstream {parent.url} refused PUT /api/handles/0.NA/88.118?index=1&index=2: HTTP 401" in result.stderr

    result = idnode(child_database, tmp_path, "upstream", "register", *flags)
    assert result.returncode == 1
    assert result.stderr.startswith(f"idnode: upstream unreachable: {parent.url}: ClientConnectorError")
    result = idnode(child_database, tmp_path, "upstream", "register", *flags[:-2])
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "idnode: upstream register: set advertise_url, the base URL this node's site announces",
    )


def test_health_is_never_ok_or_silent_after_three_intervals() -> None:
    assert health_of(None, 60) == "never"
    assert health_of(179.9, 60) == "ok"
    assert health_of(180.1, 60) == "silent"


async def test_children_are_listed_and_counted_by_health(database: str) -> None:
    await home(database, "88")
    operator = await add_node_operator(database, "88/OPERATOR")
    await _add_node(database, "88.118")
    await _add_node(database, "88.200")
    con = await asyncpg.connect(database)
    try:
        await con.execute("UPDATE nodes SET last_seen = now() - interval '10 seconds' WHERE prefix_key = '88.200'")
    finally:
        await con.close()
    settings = Settings(
        registry=RegistrySettings(trusted_proxies=("127.0.0.1",)), hierarchy=HierarchySettings(report_interval=0.2)
    )
    async with running_node(database, settings) as node:
        status, body, _ = await node.get("/api/nodes", headers=secure_basic(operator.identity, operator.secret))
        assert status == 200, body
        assert [(n["prefix"], n["health"], n["lastSeen"] is None) for n in body["nodes"]] == [
            ("88.118", "never", True),
            ("88.200", "silent", False),
        ]
        assert body["nodes"][1]["secondsSince"] >= 10

        _, text, _ = await node.get("/metrics")
        for health, count in (("ok", 0), ("silent", 1), ("never", 1)):
            assert f'idnode_child_nodes{{health="{health}"}} {count}.0' in text


async def test_only_one_worker_of_a_child_publishes_and_reports(
    database: str, child_database: str, tmp_path: Path
) -> None:
    credentials = await _parent_and_child(database, child_database)
    cert, _ = ensure_self_signed(tmp_path)
    async with _tls_parent(database, tmp_path) as parent:
        flags = ["--workers", "2", "--upstream", parent.url, "--upstream-identity", credentials.identity]
        flags += ["--upstream-secret", credentials.secret, "--upstream-ca", str(cert), "--advertise-url", ADVERTISED]
        flags += ["--upstream-report-interval", "0.2"]
        with serve_node(child_database, *flags):

            async def reported_for_a_while() -> bool:
                con = await asyncpg.connect(database)
                try:
                    report = await con.fetchval("SELECT report FROM nodes WHERE prefix_key = '88.118'")
                finally:
                    await con.close()
                return report is not None and orjson.loads(report)["uptime"] >= 1.0

            assert await eventually(reported_for_a_while, timeout=20)
        con = await asyncpg.connect(database)
        try:
            publishes = await con.fetchval(
                "SELECT count(*) FROM handle_history WHERE handle_key = '0.NA/88.118' AND op = 'update'"
            )
        finally:
            await con.close()
    assert publishes == 1  # two workers, one publisher: the homed set did not change, so once


async def test_a_child_starts_while_its_parent_is_down_and_publishes_once_it_is_up(
    database: str, child_database: str, tmp_path: Path
) -> None:
    credentials = await _parent_and_child(database, child_database)
    cert, _ = ensure_self_signed(tmp_path)
    port = free_port()
    settings = _child_settings(f"https://127.0.0.1:{port}", credentials, cert)
    async with running_node(child_database, settings) as child:
        status, _, _ = await child.get("/readyz")  # start-up did not wait for the parent
        assert status == 200
        parent_app = await create_app(Settings(), database, extensions=registry_extensions())
        runner = web.AppRunner(parent_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=self_signed_context(tmp_path)).start()

            async def published() -> bool:
                return 1 in await _values(database, "0.NA/88.118")

            assert await eventually(published, timeout=10)  # the retries reached it
        finally:
            await runner.cleanup()


async def test_once_a_child_has_joined_its_parent_resolves_the_childs_handles(
    database: str, child_database: str, tmp_path: Path
) -> None:
    """The issue's join: ``node add`` at T, the child publishes its site with ``upstream register``, and T (which
    answered 404 for the child's prefix until then, as for any prefix of its own without a site) resolves it."""
    credentials = await _parent_and_child(database, child_database)
    await put_record(child_database, "88.118/P1", URL)
    cert, _ = ensure_self_signed(tmp_path)
    port = free_port()
    async with running_node(database, ssl_context=self_signed_context(tmp_path)) as parent:
        status, _, _ = await parent.get("/api/handles/88.118/P1")
        assert status == 404
        advertised = f"http://127.0.0.1:{port}"  # no identity: the node itself publishes nothing
        settings = Settings(hierarchy=HierarchySettings(upstream=(parent.url,), advertise_url=advertised))
        runner, _, _ = await start_node(child_database, settings, port=port)
        try:
            flags = {
                "--upstream": parent.url,
                "--upstream-identity": credentials.identity,
                "--upstream-secret": credentials.secret,
                "--upstream-ca": str(cert),
                "--advertise-url": advertised,
            }
            args = [part for pair in flags.items() for part in pair]
            result = await asyncio.to_thread(idnode, child_database, tmp_path, "upstream", "register", *args)
            assert result.returncode == 0, result.stderr

            async def resolved() -> bool:
                status, body, _ = await parent.get("/api/handles/88.118/P1")
                return status == 200 and body["values"][0]["data"]["value"] == "https://example.com/"

            assert await eventually(resolved, timeout=5)
            status, _, response = await parent.get("/88.118/P1")
            assert (status, response.headers["Location"]) == (302, "https://example.com/")
        finally:
            await runner.cleanup()


async def test_secrets_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret given as ``--upstream-secret S`` must not read as a flag (it made a child fail to start, 1 in 64)."""
    drawn = iter(["-looks-like-a-flag", "_fine"])
    monkeypatch.setattr(enterprises.secrets, "token_urlsafe", lambda _n: next(drawn))
    secret, _ = await enterprises.new_secret()
    assert secret == "_fine"
