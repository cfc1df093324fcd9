"""The enterprise lifecycle over HTTP (``registry/enterprise_api.py``, ``registry/lifecycle.py``) and the onboarding
checks and prefix allocation of ``/api/prefixes`` (``registry/enterprises.py``), on a node that homes ``88.118``
(its operator is ``300:88.118/OPERATOR``) with the enterprise ``88.118.7`` onboarded.

The node trusts 127.0.0.1 as a TLS-terminating proxy, so requests with ``SECURE`` headers are on a secure channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from registry.credit_codes import check_character
from resolver.config import RegistrySettings, Settings
from tests.support import (
    SECURE,
    Node,
    add_node_operator,
    eventually,
    onboard_enterprise,
    running_node,
    secure_basic,
)

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]
VALID_CODE = "91350100M000100Y43"
OTHER_CODE = "914403001922038216"


@dataclass
class Site:
    node: Node
    operator: dict[str, str]
    admin: dict[str, str]

    async def op(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.node.call(method, path, headers=self.operator, **kwargs)
        return status, body

    async def write(self, handle: str, headers: dict[str, str]) -> tuple[int, Any]:
        status, body, _ = await self.node.call("PUT", f"/api/handles/{handle}", json={"values": URL}, headers=headers)
        return status, body


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    operator = await add_node_operator(database, "88.118/OPERATOR")
    admin = await onboard_enterprise(database, "88.118.7", name="Acme Manufacturing")
    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        yield Site(node, secure_basic(operator.identity, operator.secret), secure_basic(admin.identity, admin.secret))


# --- reading and changing -----------------------------------------------------------------------------------------


async def test_an_onboarded_enterprise_is_listed_and_shown(site: Site) -> None:
    status, body = await site.op("GET", "/api/enterprises")
    assert status == 200
    assert body["totalCount"] == "1"
    [acme] = body["enterprises"]
    assert acme["prefix"] == "88.118.7"
    assert acme["name"] == "Acme Manufacturing"
    assert acme["state"] == "active"
    assert acme["admin"] == "300:88.118.7/ADMIN"
    status, shown = await site.op("GET", "/api/enterprises/88.118.7")
    assert (status, shown) == (200, {"responseCode": 1, "enterprise": acme})


async def test_the_listing_filters_by_name_credit_code_and_state_and_pages(site: Site) -> None:
    for name, code in (("Beta Steel", VALID_CODE), ("Gamma Steel", OTHER_CODE)):
        status, _ = await site.op("POST", "/api/prefixes", json={"name": name, "creditCode": code})
        assert status == 201
    status, body = await site.op("GET", "/api/enterprises?name=steel")
    assert [e["name"] for e in body["enterprises"]] == ["Beta Steel", "Gamma Steel"]
    _, body = await site.op("GET", f"/api/enterprises?creditCode={OTHER_CODE}")
    assert [e["name"] for e in body["enterprises"]] == ["Gamma Steel"]
    _, body = await site.op("GET", "/api/enterprises?page=1&pageSize=2")
    assert (body["totalCount"], body["page"], body["pageSize"]) == ("3", 1, 2)
    assert [e["prefix"] for e in body["enterprises"]] == ["88.118.7"]
    await site.op("POST", "/api/enterprises/88.118.2/suspend")
    _, body = await site.op("GET", "/api/enterprises?state=suspended")
    assert [e["prefix"] for e in body["enterprises"]] == ["88.118.2"]
    status, body = await site.op("GET", "/api/enterprises?state=asleep")
    assert (status, body["responseCode"]) == (400, 4)


async def test_patch_merges_the_given_fields_and_null_removes_one(site: Site) -> None:
    patch = {"contact": "ops@acme.example", "address": "1 Harbour Rd, Xiamen", "creditCode": VALID_CODE.lower()}
    status, body = await site.op("PATCH", "/api/enterprises/88.118.7", json=patch)
    assert status == 200
    acme = body["enterprise"]
    assert (acme["contact"], acme["address"], acme["creditCode"]) == (patch["contact"], patch["address"], VALID_CODE)
    status, body = await site.op("PATCH", "/api/enterprises/88.118.7", json={"contact": None, "name": " Acme Ltd "})
    assert status == 200
    assert (body["enterprise"]["name"], body["enterprise"]["contact"]) == ("Acme Ltd", None)
    assert body["enterprise"]["address"] == patch["address"]


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"state": "suspended", "website": "x"}, "state, website"),
        ({"creditCode": "91350100M000100Y44"}, "check character"),
        ({"creditCode": "91350100M000100Y4"}, "17 characters"),
        ({"name": None}, "name"),
        ({"contact": 5}, "contact"),
    ],
    ids=["unknown-fields", "bad-check-character", "short-code", "null-name", "number"],
)
async def test_a_bad_patch_is_400_rc_4_naming_the_problem_and_changes_nothing(
    site: Site, patch: dict[str, Any], named: str
) -> None:
    status, body = await site.op("PATCH", "/api/enterprises/88.118.7", json=patch)
    assert (status, body["responseCode"]) == (400, 4)
    assert named in body["message"]
    _, shown = await site.op("GET", "/api/enterprises/88.118.7")
    assert shown["enterprise"]["name"] == "Acme Manufacturing"
    assert shown["enterprise"]["creditCode"] is None


async def test_an_unknown_enterprise_is_404_rc_100(site: Site) -> None:
    for method, path in (
        ("GET", "/api/enterprises/88.118.99"),
        ("PATCH", "/api/enterprises/88.118.99"),
        ("POST", "/api/enterprises/88.118.99/suspend"),
        ("POST", "/api/enterprises/88.118.99/rotate-secret"),
    ):
        status, body = await site.op(method, path, json={})
        assert (status, body["responseCode"]) == (404, 100), (method, path)


# --- suspension -------------------------------------------------------------------------------------------------


async def test_a_suspended_enterprise_cannot_write_but_its_handles_resolve(site: Site) -> None:
    assert (await site.write("88.118.7/before", site.admin))[0] == 201
    status, body = await site.op("POST", "/api/enterprises/88.118.7/suspend")
    assert (status, body["enterprise"]["state"]) == (200, "suspended")

    status, body = await site.write("88.118.7/after", site.admin)
    assert (status, body["responseCode"]) == (403, 401)
    assert "88.118.7 is suspended" in body["message"]
    status, body, _ = await site.node.call("DELETE", "/api/handles/88.118.7/before", headers=site.admin)
    assert status == 403
    assert "suspended" in body["message"]
    items = [{"op": "create", "handle": "88.118.7/batched", "values": URL}]
    status, body, _ = await site.node.call("POST", "/api/handles:batch", json={"items": items}, headers=site.admin)
    assert status == 200
    assert (body["results"][0]["status"], body["results"][0]["responseCode"]) == (403, 401)
    assert "suspended" in body["results"][0]["message"]

    status, record, _ = await site.node.get("/api/handles/88.118.7/before")
    assert (status, record["values"][0]["data"]["value"]) == (200, URL[0]["data"])
    assert (await site.node.get("/api/handles/88.118.7/after"))[0] == 404
    assert (await site.node.get("/api/handles?prefix=88.118.7", headers=site.admin))[0] == 200

    status, body = await site.op("POST", "/api/enterprises/88.118.7/resume")
    assert (status, body["enterprise"]["state"]) == (200, "active")
    assert (await site.write("88.118.7/after", site.admin))[0] == 201


async def test_an_operator_may_still_write_under_a_suspended_enterprise(site: Site) -> None:
    await site.op("POST", "/api/enterprises/88.118.7/suspend")
    assert (await site.write("88.118.7/by-operator", site.operator))[0] == 201


async def test_suspend_resume_and_patch_are_in_the_change_feed_with_their_actor(site: Site) -> None:
    _, before = await site.op("GET", "/api/changes")
    await site.op("PATCH", "/api/enterprises/88.118.7", json={"address": "Xiamen"})
    await site.op("POST", "/api/enterprises/88.118.7/suspend")
    await site.op("POST", "/api/enterprises/88.118.7/resume")
    _, feed = await site.op("GET", f"/api/changes?after={before['next']}")
    entries = [(c["kind"], c["op"], c["key"], c["data"]["status"], c["data"]["address"]) for c in feed["changes"]]
    assert entries == [
        ("enterprise", "update", "88.118.7", "active", "Xiamen"),
        ("enterprise", "update", "88.118.7", "suspended", "Xiamen"),
        ("enterprise", "update", "88.118.7", "active", "Xiamen"),
    ]
    assert {c["actor"] for c in feed["changes"]} == {"300:88.118/OPERATOR"}


# --- secret rotation ----------------------------------------------------------------------------------------------


async def _session(site: Site, headers: dict[str, str]) -> dict[str, str]:
    status, body, _ = await site.node.call("POST", "/api/sessions", headers=headers)
    assert (status, body.get("authenticated")) == (201, True)
    return {**SECURE, "Authorization": f'Handle sessionId="{body["sessionId"]}"'}


async def test_a_rotated_secret_replaces_the_old_one_at_once_and_ends_its_sessions(site: Site) -> None:
    assert (await site.write("88.118.7/warm", site.admin))[0] == 201  # the old secret is in the verified memo
    session = await _session(site, site.admin)
    assert (await site.write("88.118.7/by-session", session))[0] == 201

    status, body = await site.op("POST", "/api/enterprises/88.118.7/rotate-secret")
    assert status == 200
    assert body["identity"] == "300:88.118.7/ADMIN"
    new = secure_basic(body["identity"], body["secret"])

    status, refused = await site.write("88.118.7/old", site.admin)
    assert (status, refused["responseCode"]) == (401, 402)
    status, _ = await site.write("88.118.7/old-session", session)
    assert status == 401
    assert (await site.write("88.118.7/new", new))[0] == 201
    _, record, _ = await site.node.get("/api/handles/88.118.7/ADMIN?publicOnly=false", headers=new)
    assert body["secret"] not in str(record)


# --- onboarding checks and allocation -----------------------------------------------------------------------------


async def test_allocation_numbers_the_next_free_prefix_under_the_node_prefix(site: Site) -> None:
    await site.op("POST", "/api/prefixes/88.118.2")  # homed without an enterprise: taken
    got = []
    for n in range(3):
        status, body = await site.op("POST", "/api/prefixes", json={"name": f"Co {n}"})
        assert status == 201
        assert body["identity"] == f"300:{body['prefix']}/ADMIN"
        got.append(body["prefix"])
    assert got == ["88.118.1", "88.118.3", "88.118.4"]
    status, body = await site.op("POST", "/api/prefixes", json={"name": "Sub", "under": "88.118.7"})
    assert (status, body["responseCode"]) == (409, 101)
    assert "88.118.7" in body["message"]


async def test_an_allocated_enterprise_can_write_at_once(site: Site) -> None:
    status, body = await site.op("POST", "/api/prefixes", json={"name": "Fresh", "under": "88.118"})
    assert (status, body["prefix"]) == (201, "88.118.1")
    headers = secure_basic(body["identity"], body["secret"])
    assert (await site.write("88.118.1/first", headers))[0] == 201


async def test_concurrent_allocations_get_different_prefixes(site: Site) -> None:
    answers = await asyncio.gather(*(site.op("POST", "/api/prefixes", json={"name": f"Rush {n}"}) for n in range(6)))
    assert [status for status, _ in answers] == [201] * 6
    assert sorted(body["prefix"] for _, body in answers) == [f"88.118.{n}" for n in (1, 2, 3, 4, 5, 6)]


async def test_without_under_a_node_homing_two_ranges_asks_for_one(site: Site) -> None:
    await site.op("POST", "/api/prefixes/77.200")
    status, body = await site.op("POST", "/api/prefixes", json={"name": "Where"})
    assert (status, body["responseCode"]) == (400, 4)
    assert "under" in body["message"]
    status, body = await site.op("POST", "/api/prefixes", json={"name": "There", "under": "77.200"})
    assert (status, body["prefix"]) == (201, "77.200.1")


@pytest.mark.parametrize(
    ("prefix", "status", "code", "named"),
    [
        ("66.1", 400, 301, "not under any prefix homed here"),
        ("88.118.7.1", 409, 101, "lies under 88.118.7"),
        ("88.118.7.1.2", 409, 101, "lies under 88.118.7"),
    ],
    ids=["not-homed", "inside-another", "deeper-inside"],
)
async def test_onboarding_refuses_a_prefix_outside_the_node_or_inside_another_tenant(
    site: Site, prefix: str, status: int, code: int, named: str
) -> None:
    got, body = await site.op("POST", f"/api/prefixes/{prefix}", json={"name": "Nested"})
    assert (got, body["responseCode"]) == (status, code)
    assert named in body["message"]


async def test_onboarding_refuses_a_prefix_that_would_contain_another_tenant(site: Site) -> None:
    await site.op("POST", "/api/prefixes/88.118.7.5", json={})  # homing alone is no tenant
    await site.op("POST", "/api/prefixes/88", json={})
    status, body = await site.op("POST", "/api/prefixes/88.118", json={"name": "Umbrella"})
    assert (status, body["responseCode"]) == (409, 101)
    assert "would contain 88.118.7" in body["message"]


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y44",  # wrong check character
        "91350100M000100Y4",  # 17 characters
        "91350100M000100Y433",  # 19
        "91350100M0001O0Y43",  # O is not in the set
        "Z1350100M000100Y43",  # no such registration authority
        "90350100M000100Y43",  # organization kind 0
        "913501A0M000100Y43",  # division code with a letter
        "91350100M000100Y53",  # organization code's own check character wrong
    ],
)
async def test_onboarding_refuses_a_bad_credit_code(site: Site, code: str) -> None:
    status, body = await site.op("POST", "/api/prefixes/88.118.9", json={"name": "Bad", "creditCode": code})
    assert (status, body["responseCode"]) == (400, 4)
    assert "creditCode" in body["message"]
    assert (await site.op("GET", "/api/enterprises/88.118.9"))[0] == 404


async def test_onboarding_accepts_a_constructed_valid_credit_code(site: Site) -> None:
    body = "MA012345"  # an organization code body; both check characters computed here
    org_check = 11 - sum(int(c, 36) * w for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    first17 = "91110108" + body + ("X" if org_check == 10 else str(org_check % 11))
    code = first17 + check_character(first17)
    status, answer = await site.op("POST", "/api/prefixes/88.118.9", json={"name": "Built", "creditCode": code})
    assert status == 201, answer
    _, shown = await site.op("GET", "/api/enterprises/88.118.9")
    assert shown["enterprise"]["creditCode"] == code


# --- who may ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/enterprises"),
        ("GET", "/api/enterprises/88.118.7"),
        ("PATCH", "/api/enterprises/88.118.7"),
        ("POST", "/api/enterprises/88.118.7/suspend"),
        ("POST", "/api/enterprises/88.118.7/resume"),
        ("POST", "/api/enterprises/88.118.7/rotate-secret"),
        ("POST", "/api/prefixes"),
    ],
)
async def test_only_operators_manage_enterprises(site: Site, method: str, path: str) -> None:
    body = {"name": "Sneak"}
    status, answer, _ = await site.node.call(method, path, json=body, headers=site.admin)
    assert (status, answer["responseCode"]) == (403, 401)
    assert "secret" not in answer
    status, answer, _ = await site.node.call(method, path, json=body, headers=SECURE)
    assert (status, answer["responseCode"]) == (401, 402)
    status, answer, _ = await site.node.call(method, path, json=body)
    assert (status, answer["responseCode"]) == (403, 402)
    _, shown = await site.op("GET", "/api/enterprises/88.118.7")
    assert shown["enterprise"]["state"] == "active"
    assert shown["enterprise"]["name"] == "Acme Manufacturing"
    assert await eventually(lambda: _still_one(site))


async def _still_one(site: Site) -> bool:
    _, body = await site.op("GET", "/api/enterprises")
    return body["totalCount"] == "1"


async def test_a_nul_in_a_listing_filter_is_400_rc_4(site: Site) -> None:
    status, body = await site.op("GET", "/api/enterprises?name=a%00b")
    assert (status, body["responseCode"]) == (400, 4)
    assert "name" in body["message"]


async def test_homing_a_prefix_with_a_mistyped_field_is_refused(site: Site) -> None:
    status, body = await site.op("POST", "/api/prefixes/88.118.30", json={"creditCode": 5})
    assert (status, body["responseCode"]) == (400, 4)
    assert "creditCode" in body["message"]


async def test_a_suspended_enterprise_cannot_rewrite_a_handle_with_the_same_values_either(site: Site) -> None:
    assert (await site.write("88.118.7/same", site.admin))[0] == 201
    await site.op("POST", "/api/enterprises/88.118.7/suspend")
    status, body = await site.write("88.118.7/same", site.admin)
    assert (status, body["responseCode"]) == (403, 401)
