"""Listing a prefix's handles (``GET /api/handles?prefix=``) and managing prefixes (``/api/prefixes``), case by
case from the Handle.Net 9 transcripts §D (research/handle9-transcripts.md) plus idnode's onboarding.

The node trusts 127.0.0.1 as a TLS-terminating proxy: requests with ``X-Forwarded-Proto: https`` are on a secure
channel, requests without it are plain HTTP. Handle.Net lists upper-cased storage names; idnode keeps the
spelling each handle was created with (sorted case-insensitively).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from registry.enterprises import Credentials
from resolver.config import RegistrySettings, Settings
from tests.support import (
    SECURE,
    Node,
    add_node_operator,
    eventually,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]
LISTED = ["88.TEST/abc", "88.TEST/ADMIN", "88.TEST/arr", "88.TEST/formats", "88.TEST/xyz"]


@dataclass
class Site:
    node: Node
    admin: dict[str, str]
    operator: dict[str, str]

    async def list(self, query: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        return await self.node.get("/api/handles?" + query, headers=self.admin if headers is None else headers)


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    admin: Credentials = await onboard_enterprise(database, "88.TEST")
    operator = await add_node_operator(database, "99.OPS/OPERATOR")
    for suffix in ("xyz", "abc", "arr", "formats"):
        await put_record(database, f"88.TEST/{suffix}", URL)
    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        yield Site(node, secure_basic(admin.identity, admin.secret), secure_basic(operator.identity, operator.secret))


# --- §D: listing ----------------------------------------------------------------------------------------------


async def test_d1_listing_over_plain_http_is_403_rc_402(site: Site) -> None:
    status, body, _ = await site.list("prefix=88.TEST", headers={})
    assert status == 403
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST"


async def test_d2_anonymous_listing_on_a_secure_channel_is_401_rc_402(site: Site) -> None:
    status, body, response = await site.list("prefix=88.TEST", headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402
    assert 'Basic realm="handle"' in response.headers.getall("WWW-Authenticate")


async def test_d3_listing_names_every_handle_of_the_prefix_with_total_count_as_a_string(site: Site) -> None:
    status, body, _ = await site.list("prefix=88.TEST")
    assert status == 200
    assert body == {"responseCode": 1, "prefix": "88.TEST", "totalCount": "5", "handles": LISTED}


async def test_d4_the_prefix_may_be_given_as_its_prefix_handle(site: Site) -> None:
    status, body, _ = await site.list("prefix=0.NA/88.TEST")
    assert status == 200
    assert body == {"responseCode": 1, "prefix": "0.NA/88.TEST", "totalCount": "5", "handles": LISTED}


@pytest.mark.parametrize(
    ("page", "handles"),
    [(0, LISTED[:2]), (1, LISTED[2:4]), (2, LISTED[4:]), (99, [])],
    ids=["d5-first-page", "d6-second-page", "last-page", "d7-past-the-end"],
)
async def test_d5_to_d7_page_and_page_size_together_select_one_page(site: Site, page: int, handles: list[str]) -> None:
    status, body, _ = await site.list(f"prefix=88.TEST&page={page}&pageSize=2")
    assert status == 200
    assert body == {
        "responseCode": 1,
        "prefix": "88.TEST",
        "totalCount": "5",
        "page": page,
        "pageSize": 2,
        "handles": handles,
    }


@pytest.mark.parametrize("query", ["pageSize=2", "page=0"], ids=["d8-page-size-only", "d9-page-only"])
async def test_d8_d9_paging_needs_both_parameters_or_everything_is_listed(site: Site, query: str) -> None:
    status, body, _ = await site.list(f"prefix=88.TEST&{query}")
    assert status == 200
    assert body == {"responseCode": 1, "prefix": "88.TEST", "totalCount": "5", "handles": LISTED}


async def test_d10_page_size_0_answers_only_the_count(site: Site) -> None:
    status, body, _ = await site.list("prefix=88.TEST&page=0&pageSize=0")
    assert status == 200
    assert body == {"responseCode": 1, "prefix": "88.TEST", "totalCount": "5", "page": 0, "pageSize": 0, "handles": []}


async def test_d11_a_page_that_is_not_a_number_is_400_rc_4(site: Site) -> None:
    status, body, _ = await site.list("prefix=88.TEST&page=abc")
    assert status == 400
    assert body["responseCode"] == 4


async def test_d12_listing_a_prefix_not_homed_here_is_400_rc_301(site: Site) -> None:
    status, body, _ = await site.list("prefix=99.NOPE")
    assert status == 400
    assert body["responseCode"] == 301
    assert body["handle"] == "99.NOPE"


# --- /api/prefixes --------------------------------------------------------------------------------------------


async def test_d13_prefixes_over_plain_http_are_403_rc_402(site: Site) -> None:
    status, body, _ = await site.node.get("/api/prefixes")
    assert status == 403
    assert body["responseCode"] == 402


async def test_prefixes_are_refused_to_anonymous_and_enterprise_callers_on_a_secure_channel(site: Site) -> None:
    status, body, _ = await site.node.get("/api/prefixes", headers=SECURE)
    assert (status, body["responseCode"]) == (401, 402)
    status, body, _ = await site.node.get("/api/prefixes", headers=site.admin)
    assert (status, body["responseCode"]) == (403, 401)


async def test_d14_an_operator_lists_the_prefixes_homed_here(site: Site) -> None:
    status, body, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert status == 200
    assert body == {"responseCode": 1, "totalCount": "2", "prefixes": ["0.NA/88.TEST", "0.NA/99.OPS"]}


async def test_d15_prefixes_are_paged_when_page_and_page_size_are_given(site: Site) -> None:
    status, body, _ = await site.node.get("/api/prefixes?page=1&pageSize=1", headers=site.operator)
    assert status == 200
    assert body == {"responseCode": 1, "totalCount": "2", "page": 1, "pageSize": 1, "prefixes": ["0.NA/99.OPS"]}


async def test_d16_get_of_one_prefix_is_405_with_allow(site: Site) -> None:
    status, body, response = await site.node.get("/api/prefixes/88.TEST", headers=site.operator)
    assert status == 405
    assert body["responseCode"] == 4
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"POST", "DELETE"} <= allowed
    assert "GET" not in allowed


async def _home(site: Site, prefix: str) -> None:
    status, _, _ = await site.node.call("POST", f"/api/prefixes/{prefix}", headers=site.operator)
    assert status == 201


async def test_onboarding_returns_an_identity_and_a_secret_once_and_the_secret_works_for_basic(site: Site) -> None:
    await _home(site, "88")
    status, body, _ = await site.node.call(
        "POST",
        "/api/prefixes/88.NEW",
        json={"name": "New Co", "creditCode": "91350100M000100Y43"},
        headers=site.operator,
    )
    assert status == 201
    assert body["responseCode"] == 1
    assert body["identity"] == "300:88.NEW/ADMIN"
    secret = body["secret"]
    assert secret
    assert await eventually(lambda: _homed(site, "88.NEW"))
    headers = secure_basic(body["identity"], secret)
    status, created, _ = await site.node.call(
        "PUT", "/api/handles/88.NEW/first?overwrite=false", json={"values": URL}, headers=headers
    )
    assert (status, created) == (201, {"responseCode": 1, "handle": "88.NEW/first"})
    status, listed, _ = await site.list("prefix=88.NEW", headers=headers)
    assert listed["handles"] == ["88.NEW/ADMIN", "88.NEW/first"]

    status, again, _ = await site.node.call(
        "POST", "/api/prefixes/88.NEW", json={"name": "New Co"}, headers=site.operator
    )
    assert status == 409
    assert "secret" not in again
    _, record, _ = await site.node.get("/api/handles/88.NEW/ADMIN?publicOnly=false", headers=headers)
    assert secret not in str(record)


async def test_onboarding_is_for_operators_only(site: Site) -> None:
    status, body, _ = await site.node.call("POST", "/api/prefixes/88.SNEAK", json={"name": "Sneak"}, headers=site.admin)
    assert status == 403
    assert "secret" not in body
    status, _, _ = await site.node.call("POST", "/api/prefixes/88.SNEAK", json={"name": "Sneak"})
    assert status == 403
    _, listed, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert "0.NA/88.SNEAK" not in listed["prefixes"]


async def _homed(site: Site, prefix: str) -> bool:
    status, _, _ = await site.node.get(f"/api/handles/{prefix}/probe")
    return status == 404


async def _not_homed(site: Site, prefix: str) -> bool:
    status, body, _ = await site.node.get(f"/api/handles/{prefix}/probe")
    return status == 400 and body["responseCode"] == 301


async def test_post_without_a_body_only_homes_the_prefix(site: Site) -> None:
    status, body, _ = await site.node.call("POST", "/api/prefixes/88.BARE", headers=site.operator)
    assert status == 201
    assert body == {"responseCode": 1, "prefix": "88.BARE"}
    assert await eventually(lambda: _homed(site, "88.BARE"))
    _, listed, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert "0.NA/88.BARE" in listed["prefixes"]
    assert (await site.node.get("/api/handles/88.BARE/ADMIN"))[0] == 404
    status, _, _ = await site.node.call(
        "PUT", "/api/handles/88.BARE/by-operator", json={"values": URL}, headers=site.operator
    )
    assert status == 201
    status, body, _ = await site.node.call("POST", "/api/prefixes/88.BARE", headers=site.operator)
    assert status == 200


async def test_deleting_a_prefix_with_handles_is_refused_until_forced(site: Site) -> None:
    status, body, _ = await site.node.call("DELETE", "/api/prefixes/88.TEST", headers=site.operator)
    assert status == 409
    assert body["responseCode"] == 101
    assert (await site.node.get("/api/handles/88.TEST/xyz"))[0] == 200

    status, body, _ = await site.node.call("DELETE", "/api/prefixes/88.TEST?force=true", headers=site.operator)
    assert status == 200
    assert body["responseCode"] == 1
    assert body["deletedHandles"] >= 4
    assert await eventually(lambda: _not_homed(site, "88.TEST"))
    _, listed, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert listed["prefixes"] == ["0.NA/99.OPS"]


async def test_a_freshly_onboarded_prefix_without_handles_is_deleted_without_force(site: Site) -> None:
    await _home(site, "77")
    status, _, _ = await site.node.call("POST", "/api/prefixes/77.EMPTY", json={"name": "Empty"}, headers=site.operator)
    assert status == 201
    status, body, _ = await site.node.call("DELETE", "/api/prefixes/77.EMPTY", headers=site.operator)
    assert status == 200
    assert body["responseCode"] == 1
    _, listed, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert "0.NA/77.EMPTY" not in listed["prefixes"]
    assert "0.NA/77" in listed["prefixes"]


async def test_onboarding_a_prefix_not_under_any_homed_prefix_is_refused(site: Site) -> None:
    stray = {"name": "Stray"}
    status, body, _ = await site.node.call("POST", "/api/prefixes/66.STRAY", json=stray, headers=site.operator)
    assert (status, body["responseCode"]) == (400, 301)
    assert "not under any prefix homed here" in body["message"]
    _, listed, _ = await site.node.get("/api/prefixes", headers=site.operator)
    assert "0.NA/66.STRAY" not in listed["prefixes"]


async def test_an_enterprise_prefix_cannot_be_nested_inside_or_above_another_tenant(site: Site) -> None:
    status, body, _ = await site.node.call(
        "POST", "/api/prefixes/88.TEST.1", json={"name": "Second Co"}, headers=site.operator
    )
    assert (status, body["responseCode"]) == (409, 101)
    assert "lies under 88.TEST" in body["message"]
    await _home(site, "88")
    status, body, _ = await site.node.call("POST", "/api/prefixes/88", json={"name": "Umbrella"}, headers=site.operator)
    assert (status, body["responseCode"]) == (409, 101)
    assert "would contain 88.TEST" in body["message"]
    status, _, _ = await site.node.call("PUT", "/api/handles/88.TEST.1/x", json={"values": URL}, headers=site.admin)
    assert status == 201


async def test_an_enterprise_cannot_delete_its_own_prefix(site: Site) -> None:
    status, _, _ = await site.node.call("DELETE", "/api/prefixes/88.TEST?force=true", headers=site.admin)
    assert status == 403
    assert (await site.node.get("/api/handles/88.TEST/xyz"))[0] == 200
