"""Regressions from the review of issue 8's change (robustness), over real HTTP against a real database.

Each test reproduces one finding and failed before its fix: a 500 on bad POST parameters, a race that let two
tenants nest, a prefix removal that left its derived enterprises behind, a 402 without a message, and a
read-only node that advertised methods it does not have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from registry.enterprises import Credentials
from resolver.errors import AuthenticationNeeded
from tests.support import (
    SECURE,
    Node,
    behind_trusted_proxy,
    enterprises_and_operator,
    eventually,
    home,
    put_record,
    running_node,
    secure_basic,
)

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]


@pytest.fixture
async def doc(node: Node) -> Node:
    await put_record(node.dsn, "88.TEST/doc", URL)
    return node


# --- bad parameters of the read API's POST forms --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"callback": True},
        {"callback": 1},
        {"callback": ["f", {}]},
        {"type": True},
        {"type": [None]},
        {"type": {"a": 1}},
        {"index": True},
        {"index": [[1]]},
        {"pretty": {}},
    ],
    ids=repr,
)
async def test_post_as_get_with_a_parameter_of_the_wrong_json_type_is_400_rc_4(doc: Node, body: Any) -> None:
    status, answer, _ = await doc.call("POST", "/api/handles/88.TEST/doc", json=body)
    assert (status, answer["responseCode"]) == (400, 4), answer
    assert next(iter(body)) in answer["message"]


async def test_post_as_get_takes_flags_as_booleans_numbers_as_text_and_ignores_unknown_keys(doc: Node) -> None:
    body = {"pretty": True, "publicOnly": True, "index": 1, "type": ["URL"], "unknown": {"x": [True]}}
    async with doc.http.post(doc.url + "/api/handles/88.TEST/doc", json=body) as response:
        assert response.status == 200
        text = await response.read()
    assert text.startswith(b'{\n  "responseCode": 1')
    assert [value["index"] for value in orjson.loads(text)["values"]] == [1]


@pytest.mark.parametrize("types", [[1], True, [{"a": 1}], ["URL", None]], ids=repr)
async def test_batch_resolve_with_a_type_that_is_not_a_string_is_400_rc_4(doc: Node, types: Any) -> None:
    status, answer, _ = await doc.call("POST", "/api/resolve", json={"handles": ["88.TEST/doc"], "type": types})
    assert (status, answer["responseCode"]) == (400, 4), answer
    assert "type" in answer["message"]


# --- tenancy: onboarding and removal --------------------------------------------------------------------------


@dataclass
class Site:
    node: Node
    credentials: dict[str, Credentials]

    def operator(self) -> dict[str, str]:
        found = self.credentials["operator"]
        return secure_basic(found.identity, found.secret)


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    """Enterprises A and B, the operator, and ``88.118`` homed (with no enterprise) for new tenants."""
    credentials = await enterprises_and_operator(database)
    await home(database, "88.118")
    async with running_node(database, behind_trusted_proxy()) as node:
        yield Site(node, credentials)


async def _waiting_on_locks(dsn: str) -> int:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await con.close()


async def test_concurrent_onboardings_of_nested_prefixes_let_exactly_one_tenant_in(site: Site) -> None:
    """Both onboardings are held where they first write (an outside transaction locks ``prefixes`` against
    inserts) until both have started, the interleaving that let both pass the nesting check."""
    blocker = await asyncpg.connect(site.node.dsn)
    try:
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("LOCK TABLE prefixes IN SHARE MODE")
        onboardings = asyncio.gather(
            *(
                site.node.call("POST", f"/api/prefixes/{prefix}", json={"name": name}, headers=site.operator())
                for prefix, name in (("88.118.8", "First Pump Works"), ("88.118.8.1", "Second Valve Works"))
            )
        )
        assert await eventually(lambda: _ready(site.node.dsn), timeout=10)
        await blocking.rollback()
        answers = await onboardings
    finally:
        await blocker.close()
    assert sorted(status for status, _, _ in answers) == [201, 409], answers
    refused = next(body for status, body, _ in answers if status == 409)
    assert refused["responseCode"] == 101
    assert "another enterprise" in refused["message"]


async def _ready(dsn: str) -> bool:
    return await _waiting_on_locks(dsn) == 2


async def test_removing_a_prefix_removes_the_enterprises_templates_and_prefix_handles_derived_from_it(
    site: Site,
) -> None:
    node, operator = site.node, site.operator()
    status, created, _ = await node.call(
        "POST", "/api/prefixes/88.118.8", json={"name": "Pump Works"}, headers=operator
    )
    assert status == 201
    tenant = secure_basic(created["identity"], created["secret"])
    template = {"items": [{"idIndex": 2000, "idType": "NAME", "required": True}]}
    assert (await node.call("PUT", "/api/templates/88.118.8/v1", json=template, headers=tenant))[0] == 201

    status, removed, _ = await node.call("DELETE", "/api/prefixes/88.118?force=true", headers=operator)
    assert status == 200, removed
    con = await asyncpg.connect(node.dsn)
    try:
        left = {
            table: await con.fetchval(f"SELECT count(*) FROM {table} WHERE {where}")
            for table, where in (
                ("enterprises", "prefix_key LIKE '88.118%'"),
                ("templates", "prefix_key LIKE '88.118%'"),
                ("handles", "handle_key LIKE '0.NA/88.118%' OR prefix_key LIKE '88.118%'"),
                ("prefixes", "prefix_key LIKE '88.118%'"),
            )
        }
    finally:
        await con.close()
    assert left == {"enterprises": 0, "templates": 0, "handles": 0, "prefixes": 0}

    assert (await node.call("POST", "/api/prefixes/88.118", headers=operator))[0] == 201
    status, again, _ = await node.call("POST", "/api/prefixes/88.118.8", json={"name": "New Works"}, headers=operator)
    assert status == 201, again


# --- authentication needed on the read path -------------------------------------------------------------------


async def test_public_only_false_without_credentials_says_what_is_needed_in_the_registrys_words(
    database: str,
) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/doc", URL)
    async with running_node(database, behind_trusted_proxy()) as node:
        status, read, _ = await node.get("/api/handles/88.TEST/doc?publicOnly=false")
        assert (status, read["responseCode"]) == (403, 402)
        status, write, _ = await node.call("PUT", "/api/handles/88.TEST/doc", json={"values": URL})
        assert (status, write["responseCode"]) == (403, 402)
        assert read["message"] == write["message"]
        assert "HTTPS" in read["message"] and "trusted_proxies" in read["message"]

        status, secure_read, _ = await node.get("/api/handles/88.TEST/doc?publicOnly=false", headers=SECURE)
        assert (status, secure_read["responseCode"]) == (401, 402)
        assert secure_read["message"] == AuthenticationNeeded().message
        assert "credentials" in secure_read["message"]


# --- a read-only node -----------------------------------------------------------------------------------------


@pytest.fixture
async def read_only(database: str) -> AsyncIterator[Node]:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/doc", URL)
    async with running_node(database, extensions=()) as node:
        yield node


async def test_a_read_only_node_allows_only_the_methods_it_has(read_only: Node) -> None:
    for path in ("/api/handles/88.TEST/doc", "/api/handles"):
        status, _, response = await read_only.call("OPTIONS", path)
        assert status == 200
        assert response.headers["Allow"] == "GET, HEAD, POST, OPTIONS"
        status, answer, response = await read_only.call("PUT", path, json={"values": URL})
        assert (status, answer["responseCode"]) == (405, 4)
        assert response.headers["Allow"] == "GET, HEAD, POST, OPTIONS"
    preflight = {"Origin": "http://e.org", "Access-Control-Request-Method": "GET"}
    _, _, response = await read_only.call("OPTIONS", "/api/handles/88.TEST/doc", headers=preflight)
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST,HEAD"


async def test_a_node_with_the_registry_allows_its_write_methods(doc: Node) -> None:
    _, _, response = await doc.call("OPTIONS", "/api/handles/88.TEST/doc")
    assert response.headers["Allow"] == "GET, HEAD, POST, PUT, DELETE, OPTIONS"
    status, _, response = await doc.call("PATCH", "/api/handles/88.TEST/doc")
    assert status == 405
    assert response.headers["Allow"] == "GET, HEAD, POST, PUT, DELETE, OPTIONS"
