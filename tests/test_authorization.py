"""Who may write what (registry/permissions.py, registry/auth.py): node operators, enterprises behind their wall,
HS_ADMIN through nested HS_VLIST groups, and the failed-login limit.

Two enterprises are onboarded, A (``88.A``) and B (``88.B``), plus a node operator (``300:99.OPS/OPERATOR``).
Every request goes through a trusted proxy (``X-Forwarded-Proto: https``), so credentials count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from registry.enterprises import Credentials
from tests.support import (
    SECURE,
    Node,
    behind_trusted_proxy,
    enterprises_and_operator,
    fresh_database,
    put_record,
    running_node,
    secure_basic,
)

ROLES = ("operator", "A", "B", "anonymous")
ACTIONS = ("create", "modify", "delete", "list")
OWNERS = {"A": "88.A", "B": "88.B"}


def _pyhandle_admin(prefix: str, index: int = 100) -> dict[str, Any]:
    """The HS_ADMIN pyhandle writes: the group ``200:0.NA/<prefix>``."""
    return {
        "index": index,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": f"0.NA/{prefix}", "index": 200, "permissions": "011111110011"}},
    }


def _admin_of(handle: str, index: int, *, at: int = 100) -> dict[str, Any]:
    return {
        "index": at,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": handle, "index": index, "permissions": "111111111111"}},
    }


def _url(target: str) -> dict[str, Any]:
    return {"index": 1, "type": "URL", "data": target}


@dataclass
class World:
    node: Node
    credentials: dict[str, Credentials]

    def headers(self, role: str) -> dict[str, str]:
        if role == "anonymous":
            return dict(SECURE)
        found = self.credentials[role]
        return secure_basic(found.identity, found.secret)

    async def put(self, role: str, handle: str, values: list[dict[str, Any]], query: str = "") -> Any:
        return await self.node.call(
            "PUT", f"/api/handles/{handle}{query}", json={"values": values}, headers=self.headers(role)
        )

    async def value(self, handle: str) -> Any:
        status, body, _ = await self.node.get(f"/api/handles/{handle}?index=1")
        return body["values"][0]["data"]["value"] if status == 200 and body["values"] else status


@pytest.fixture
async def world(database: str) -> AsyncIterator[World]:
    credentials = await enterprises_and_operator(database)
    async with running_node(database, behind_trusted_proxy()) as node:
        yield World(node, credentials)


@pytest.fixture(scope="module")
async def shared(server_dsn: str, template_database: str) -> AsyncIterator[World]:
    """One node for the whole matrix; every case works on handles of its own, seeded here."""
    async with fresh_database(server_dsn, template_database) as database:
        credentials = await enterprises_and_operator(database)
        for prefix in OWNERS.values():
            for role in ROLES:
                for action in ("modify", "delete"):
                    values = [_url("https://example.org/seeded"), _pyhandle_admin(prefix)]
                    await put_record(database, f"{prefix}/seeded-{role}-{action}", values)
        async with running_node(database, behind_trusted_proxy()) as node:
            yield World(node, credentials)


def _allowed(role: str, owner: str) -> bool:
    return role == "operator" or role == owner


def _target(role: str, action: str, prefix: str) -> str:
    return f"{prefix}/new-{role}" if action == "create" else f"{prefix}/seeded-{role}-{action}"


async def _act(world: World, role: str, action: str, prefix: str) -> tuple[int, Any]:
    headers = world.headers(role)
    handle = _target(role, action, prefix)
    if action == "create":
        status, body, _ = await world.put(role, handle, [_url("https://example.org/new")], "?overwrite=false")
    elif action == "modify":
        status, body, _ = await world.put(role, handle, [_url("https://example.org/changed")], "?index=1")
    elif action == "delete":
        status, body, _ = await world.node.call("DELETE", f"/api/handles/{handle}", headers=headers)
    else:
        status, body, _ = await world.node.get(f"/api/handles?prefix={prefix}", headers=headers)
    return status, body


SUCCESS = {"create": 201, "modify": 200, "delete": 200, "list": 200}
EFFECT = {"create": "https://example.org/new", "modify": "https://example.org/changed", "delete": 404}
UNCHANGED = {"create": 404, "modify": "https://example.org/seeded", "delete": "https://example.org/seeded"}


@pytest.mark.parametrize("owner", ["A", "B"], ids=["under-A", "under-B"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ROLES)
async def test_each_role_may_act_exactly_where_the_authorization_matrix_says(
    shared: World, role: str, action: str, owner: str
) -> None:
    prefix = OWNERS[owner]
    status, body = await _act(shared, role, action, prefix)
    if _allowed(role, owner):
        assert status == SUCCESS[action], body
        assert body["responseCode"] == 1
        expected = EFFECT.get(action)
    elif role == "anonymous":
        assert status == 401, body
        assert body["responseCode"] == 402
        expected = UNCHANGED.get(action)
    else:
        assert status == 403, body
        assert body["responseCode"] == 400
        expected = UNCHANGED.get(action)
    if action == "list":
        assert ("handles" in body) == _allowed(role, owner)
        if _allowed(role, owner):
            assert f"{prefix}/seeded-{role}-modify" in body["handles"]
    else:
        assert await shared.value(_target(role, action, prefix)) == expected


async def test_an_enterprise_named_in_another_enterprises_hs_admin_still_cannot_write_there(world: World) -> None:
    granted = [_url("https://example.org/b-granted"), _admin_of("88.A/ADMIN", 300)]
    status, _, _ = await world.put("B", "88.B/granted", granted)
    assert status == 201
    status, body, _ = await world.put("A", "88.B/granted", [_url("https://example.org/taken")], "?index=1")
    assert (status, body["responseCode"]) == (403, 400)
    status, _, _ = await world.node.call("DELETE", "/api/handles/88.B/granted", headers=world.headers("A"))
    assert status == 403
    assert await world.value("88.B/granted") == "https://example.org/b-granted"


async def test_an_enterprise_cannot_create_under_another_prefix_by_naming_itself_admin(world: World) -> None:
    values = [_url("https://example.org/squat"), _admin_of("88.A/ADMIN", 300)]
    status, body, _ = await world.put("A", "88.B/squat", values, "?overwrite=false")
    assert (status, body["responseCode"]) == (403, 400)
    assert await world.value("88.B/squat") == 404


async def test_an_enterprise_cannot_take_over_another_enterprises_prefix_handle(world: World) -> None:
    values = [_admin_of("88.A/ADMIN", 300)]
    status, body, _ = await world.put("A", "0.NA/88.B", values)
    assert (status, body["responseCode"]) == (403, 400)
    status, body, _ = await world.put("B", "88.B/still-mine", [_url("https://example.org/b")], "?overwrite=false")
    assert status == 201


# --- HS_VLIST groups ------------------------------------------------------------------------------------------


def _vlist(*members: tuple[str, int]) -> dict[str, Any]:
    refs = [{"handle": handle, "index": index} for handle, index in members]
    return {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": refs}}


def _identity(secret: str) -> list[dict[str, Any]]:
    return [{"index": 300, "type": "HS_SECKEY", "data": secret}, _admin_of("88.A/ADMIN", 300)]


async def _seed_people(world: World) -> None:
    for name in ("alice", "bob"):
        status, _, _ = await world.put("A", f"88.A/{name}", _identity(f"{name}-secret"))
        assert status == 201


def _person(name: str) -> dict[str, str]:
    return secure_basic(f"300:88.A/{name}", f"{name}-secret")


async def _modify_as(world: World, name: str, handle: str, target: str) -> tuple[int, Any]:
    status, body, _ = await world.node.call(
        "PUT", f"/api/handles/{handle}?index=1", json={"values": [_url(target)]}, headers=_person(name)
    )
    return status, body


async def test_an_identity_listed_through_nested_vlists_holds_the_rights_of_the_outer_group(world: World) -> None:
    await _seed_people(world)
    assert (await world.put("A", "88.A/group-inner", [_vlist(("88.A/alice", 300))]))[0] == 201
    assert (await world.put("A", "88.A/group-outer", [_vlist(("88.A/group-inner", 200))]))[0] == 201
    doc = [_url("https://example.org/doc"), _admin_of("88.A/group-outer", 200)]
    assert (await world.put("A", "88.A/doc", doc))[0] == 201
    assert (await world.put("A", "88.A/doc-admin-only", [_url("https://example.org/x"), _admin_of("88.A/ADMIN", 300)]))[
        0
    ] == 201

    assert await _modify_as(world, "alice", "88.A/doc", "https://example.org/by-alice") == (
        200,
        {"responseCode": 1, "handle": "88.A/doc"},
    )
    assert await world.value("88.A/doc") == "https://example.org/by-alice"
    status, body = await _modify_as(world, "bob", "88.A/doc", "https://example.org/by-bob")
    assert (status, body["responseCode"]) == (403, 400)
    status, body = await _modify_as(world, "alice", "88.A/doc-admin-only", "https://example.org/by-alice")
    assert (status, body["responseCode"]) == (403, 400)


async def test_a_vlist_cycle_is_refused_promptly_instead_of_hanging(world: World) -> None:
    await _seed_people(world)
    assert (await world.put("A", "88.A/loop-x", [_vlist(("88.A/loop-y", 200))]))[0] == 201
    assert (await world.put("A", "88.A/loop-y", [_vlist(("88.A/loop-x", 200), ("88.A/alice", 300))]))[0] == 201
    doc = [_url("https://example.org/doc"), _admin_of("88.A/loop-x", 200)]
    assert (await world.put("A", "88.A/doc", doc))[0] == 201
    async with asyncio.timeout(60):  # a guard against a hang, not a timing assertion
        bob = await _modify_as(world, "bob", "88.A/doc", "https://example.org/by-bob")
        alice = await _modify_as(world, "alice", "88.A/doc", "https://example.org/by-alice")
    assert (bob[0], bob[1]["responseCode"]) == (403, 400)
    assert alice[0] == 200
    assert await world.value("88.A/doc") == "https://example.org/by-alice"


# --- failed-login limit ---------------------------------------------------------------------------------------


@pytest.fixture
async def strict(database: str) -> AsyncIterator[World]:
    credentials = await enterprises_and_operator(database)
    async with running_node(database, behind_trusted_proxy(auth_failure_limit=3)) as node:
        yield World(node, credentials)


async def test_after_the_failure_limit_even_the_right_password_gets_429_with_retry_after(strict: World) -> None:
    a = strict.credentials["A"]
    wrong = secure_basic(a.identity, "wrong")
    for _ in range(3):
        status, body, _ = await strict.node.call(
            "PUT", "/api/handles/88.A/limited", json={"values": [_url("https://e.org")]}, headers=wrong
        )
        assert status == 401
    status, body, response = await strict.put("A", "88.A/limited", [_url("https://e.org")])
    assert status == 429
    assert body["responseCode"] == 403
    assert int(response.headers["Retry-After"]) >= 1
    assert await strict.value("88.A/limited") == 404


async def test_below_the_failure_limit_the_right_password_still_works(strict: World) -> None:
    a = strict.credentials["A"]
    for _ in range(2):
        status, _, _ = await strict.node.call(
            "PUT",
            "/api/handles/88.A/limited",
            json={"values": [_url("https://e.org")]},
            headers=secure_basic(a.identity, "x"),
        )
        assert status == 401
    status, _, _ = await strict.put("A", "88.A/limited", [_url("https://e.org")])
    assert status == 201
