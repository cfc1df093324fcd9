"""Regressions from the round-2 security review and new users' reports, on the registry (write path), over real
HTTP against a real database.

Enterprises A (``88.A``) and B (``88.B``) and the node operator (``300:99.OPS/OPERATOR``) exist; requests come
through a trusted proxy on 127.0.0.1 (``X-Forwarded-Proto: https``) unless a test says otherwise. Each test
reproduces one finding: it failed (500, a wrong status or a wrong message) before the fix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from registry.auth import MAX_ITERATIONS
from registry.enterprises import Credentials
from registry.search import MAX_CRITERIA
from registry.secret_keys import MAX_SECRETS
from tests.support import (
    Node,
    basic,
    behind_trusted_proxy,
    enterprises_and_operator,
    put_record,
    running_node,
    secure_basic,
)

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]
TEMPLATE = {"items": [{"idIndex": 2000, "idType": "NAME", "required": True}]}


@dataclass
class World:
    node: Node
    credentials: dict[str, Credentials]

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        found = self.credentials[role]
        return {**secure_basic(found.identity, found.secret), **extra}

    async def put(self, role: str, path: str, body: Any, **extra: str) -> tuple[int, Any]:
        status, answer, _ = await self.node.call("PUT", path, json=body, headers=self.headers(role, **extra))
        return status, answer


@pytest.fixture
async def world(database: str) -> AsyncIterator[World]:
    credentials = await enterprises_and_operator(database)
    await put_record(database, "88.A/doc", URL)
    async with running_node(database, behind_trusted_proxy(auth_failure_limit=3)) as node:
        yield World(node, credentials)


def _secrets(count: int) -> list[dict[str, Any]]:
    return [{"index": 300 + i, "type": "HS_SECKEY", "data": f"secret-number-{i}"} for i in range(count)]


# --- PBKDF2 cost ----------------------------------------------------------------------------------------------


async def test_more_secret_keys_than_the_cap_in_one_put_is_400(world: World) -> None:
    status, body = await world.put("A", "/api/handles/88.A/keys", {"values": URL + _secrets(MAX_SECRETS + 1)})
    assert (status, body["responseCode"]) == (400, 202)
    assert f"At most {MAX_SECRETS} secret keys" in body["message"]
    status, body = await world.put("A", "/api/handles/88.A/keys", {"values": URL + _secrets(MAX_SECRETS)})
    assert status == 201


async def test_the_secret_cap_counts_every_item_of_a_batch_together(world: World) -> None:
    items = [{"op": "create", "handle": f"88.A/k{i}", "values": URL + _secrets(MAX_SECRETS // 2 + 1)} for i in range(2)]
    status, body, _ = await world.node.call(
        "POST", "/api/handles:batch", json={"items": items}, headers=world.headers("A")
    )
    assert status == 400
    assert f"{MAX_SECRETS} secret keys" in body["message"]
    assert (await world.node.get("/api/handles/88.A/k0"))[0] == 404


async def test_a_write_on_a_foreign_prefix_is_refused_before_templates_and_secrets_are_looked_at(world: World) -> None:
    """Authorization comes first: B's PUT on A's prefix naming a missing template is 403, not the template's 400;
    the same PUT by A reaches the template check (and would only then hash its secrets)."""
    values = URL + _secrets(MAX_SECRETS) + [{"index": 1001, "type": "TEMPLATE_VERSION", "data": "missing"}]
    status, body = await world.put("B", "/api/handles/88.A/doc", {"values": values})
    assert (status, body["responseCode"]) == (403, 400)
    status, body = await world.put("A", "/api/handles/88.A/doc", {"values": values})
    assert (status, body["responseCode"]) == (400, 202)
    assert "does not exist" in body["message"]


@pytest.mark.parametrize("iterations", [0, 999, MAX_ITERATIONS + 1])
async def test_a_pre_hashed_secret_outside_the_iteration_range_is_refused(world: World, iterations: int) -> None:
    stored = f"pbkdf2-sha1${iterations}$c2FsdHNhbHQ=${'QUFB' * 8}"
    status, body = await world.put(
        "A", "/api/handles/88.A/id", {"values": [{"index": 300, "type": "HS_SECKEY", "data": stored}]}
    )
    assert (status, body["responseCode"]) == (400, 202)
    assert "iterations" in body["message"]


async def test_a_stored_secret_with_zero_iterations_makes_login_401_not_500(world: World, database: str) -> None:
    """Data stored before the bound (or by SQL) must not break logins for that identity."""
    stored = f"pbkdf2-sha1$0$c2FsdHNhbHQ=${'QUFB' * 8}"
    await put_record(database, "88.A/legacy", [{"index": 300, "type": "HS_SECKEY", "data": stored}])
    status, body, _ = await world.node.call(
        "PUT", "/api/handles/88.A/x", json={"values": URL}, headers=secure_basic("300:88.A/legacy", "guess")
    )
    assert (status, body["responseCode"]) == (401, 402)


# --- bounds on parameters ---------------------------------------------------------------------------------------


async def test_a_delete_index_with_thousands_of_digits_is_400(world: World) -> None:
    status, body, _ = await world.node.call(
        "DELETE", "/api/handles/88.A/doc?index=" + "9" * 5000, headers=world.headers("A")
    )
    assert (status, body["responseCode"]) == (400, 4)
    assert len(body["message"]) < 200


@pytest.mark.parametrize("query", ["page=18446744073709551616&pageSize=1", "page=0&pageSize=" + "9" * 5000])
async def test_paging_beyond_64_bits_is_400(world: World, query: str) -> None:
    status, body, _ = await world.node.get(f"/api/handles?prefix=88.A&{query}", headers=world.headers("A"))
    assert (status, body["responseCode"]) == (400, 4)
    status, body, _ = await world.node.get(f"/api/prefixes?{query}", headers=world.headers("operator"))
    assert (status, body["responseCode"]) == (400, 4)


async def test_search_criteria_beyond_the_cap_are_400(world: World) -> None:
    query = "&".join(f"URL=https://e{i}.example/*" for i in range(MAX_CRITERIA + 1))
    status, body, _ = await world.node.get(f"/hrls/handles?{query}", headers=world.headers("operator"))
    assert (status, body["responseCode"]) == (400, 4)
    assert str(MAX_CRITERIA) in body["message"]
    status, body, _ = await world.node.get("/hrls/handles?URL=x%00y", headers=world.headers("A"))
    assert (status, body["responseCode"]) == (400, 4)


# --- tenant walls ---------------------------------------------------------------------------------------------


async def test_search_does_not_reach_into_another_tenant_below_ones_own_prefix(world: World, database: str) -> None:
    """A tenant nested under A's prefix (legacy data: onboarding refuses it now) stays invisible to A's search,
    as it is to A's listing."""
    con = await asyncpg.connect(database)
    try:
        await con.execute("INSERT INTO prefixes (prefix_key, prefix) VALUES ('88.A.NESTED', '88.A.NESTED')")
        await con.execute("INSERT INTO enterprises (prefix_key, name, created_by) VALUES ('88.A.NESTED', 'N', 't')")
    finally:
        await con.close()
    shared = [{"index": 1, "type": "URL", "data": "https://wall.example/item"}]
    await put_record(database, "88.A.NESTED/secret-name", shared)
    await put_record(database, "88.A.OWN/mine", shared)
    await put_record(database, "88.A/mine", shared)
    status, body, _ = await world.node.get("/hrls/handles?URL=https://wall.example/item", headers=world.headers("A"))
    assert status == 200
    assert sorted(body) == ["88.A.OWN/mine", "88.A/mine"]
    status, body, _ = await world.node.get(
        "/hrls/handles?URL=https://wall.example/item", headers=world.headers("operator")
    )
    assert "88.A.NESTED/secret-name" in body


async def test_listing_another_tenants_prefix_says_may_not_list(world: World) -> None:
    status, body, _ = await world.node.get("/api/handles?prefix=88.A", headers=world.headers("B"))
    assert (status, body["responseCode"]) == (403, 400)
    assert "may not list handles under prefix 88.A" in body["message"]
    assert "change" not in body["message"]


async def test_a_record_may_not_name_another_tenants_template(world: World) -> None:
    status, _ = await world.put("B", "/api/templates/88.B/v1", TEMPLATE)
    assert status == 201
    values = [
        *URL,
        {"index": 1001, "type": "TEMPLATE_VERSION", "data": "88.B/v1"},
        {"index": 2000, "type": "NAME", "data": "Pump"},
    ]
    status, body = await world.put("A", "/api/handles/88.A/borrowed", {"values": values})
    assert (status, body["responseCode"]) == (400, 202)
    assert "belongs to another prefix" in body["message"]
    status, body, _ = await world.node.call("DELETE", "/api/templates/88.B/v1", headers=world.headers("B"))
    assert status == 200, body


async def test_a_template_reference_that_does_not_exist_is_not_echoed_in_full(world: World) -> None:
    version = "v" * 5000
    values = [*URL, {"index": 1001, "type": "TEMPLATE_VERSION", "data": version}]
    status, body = await world.put("A", "/api/handles/88.A/t", {"values": values})
    assert (status, body["responseCode"]) == (400, 202)
    assert "does not exist" in body["message"]
    assert len(body["message"]) < 300


# --- templates: bad input is a 400, before authentication --------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {"idIndex": 2000, "idType": "NAME", "type": ["string"]},
        {"idIndex": 2000, "idType": "NAME", "state": {"x": 1}},
        {"idIndex": 2000, "idType": "NAME", "type": "number", "numberRange": "[.,5]"},
        {"idIndex": 2000, "idType": "NA\u0000ME"},
        {"idIndex": 2000, "idType": "NAME", "name": "bad\u0000name"},
        {"idIndex": 1 << 40, "idType": "NAME"},
        {"idIndex": 2000, "idType": "NAME", "maxLength": 1 << 40},
    ],
)
async def test_a_malformed_template_item_is_400_even_over_plain_http(world: World, item: dict[str, Any]) -> None:
    status, body, _ = await world.node.call("PUT", "/api/templates/88.A/v1", json={"items": [item]})
    assert status == 400, body
    assert body["responseCode"] in (4, 202)
    status, body = await world.put("A", "/api/templates/88.A/v1", {"items": [item]})
    assert status == 400, body


async def test_a_template_version_with_a_slash_is_400(world: World) -> None:
    status, body = await world.put("A", "/api/templates/88.A/v1%2Fsub", TEMPLATE)
    assert status == 400
    assert "/" in body["message"]


# --- authentication --------------------------------------------------------------------------------------------


async def test_a_put_over_plain_http_says_writes_need_https_or_a_trusted_proxy(world: World) -> None:
    a = world.credentials["A"]
    status, body, _ = await world.node.call(
        "PUT", "/api/handles/88.A/plain", json={"values": URL}, headers=basic(a.identity, a.secret)
    )
    assert (status, body["responseCode"]) == (403, 402)
    assert "HTTPS" in body["message"] and "trusted_proxies" in body["message"]


async def test_an_attacker_failing_from_one_address_does_not_lock_the_owner_out_elsewhere(world: World) -> None:
    a = world.credentials["A"]
    attacker = {**secure_basic(a.identity, "wrong"), "X-Forwarded-For": "203.0.113.66"}
    for _ in range(5):
        status, _, _ = await world.node.call("PUT", "/api/handles/88.A/x", json={"values": URL}, headers=attacker)
    assert status == 429
    status, _ = await world.put("A", "/api/handles/88.A/x", {"values": URL}, **{"X-Forwarded-For": "198.51.100.7"})
    assert status == 201


async def test_failures_from_many_addresses_hit_the_per_identity_ceiling(world: World) -> None:
    """Past the ceiling a wrong guess from a fresh address is answered 429 (the owner still gets in with the right
    secret: tests/test_security_review.py)."""
    a = world.credentials["A"]
    ceiling = 3 * 10
    for i in range(ceiling):
        headers = {**secure_basic(a.identity, "wrong"), "X-Forwarded-For": f"203.0.113.{i}"}
        await world.node.call("PUT", "/api/handles/88.A/x", json={"values": URL}, headers=headers)
    guess = {**secure_basic(a.identity, "wrong"), "X-Forwarded-For": "198.51.100.7"}
    status, body, _ = await world.node.call("PUT", "/api/handles/88.A/x", json={"values": URL}, headers=guess)
    assert (status, body["responseCode"]) == (429, 403)
