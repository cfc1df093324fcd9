"""SNMS's template API (registry/snms_templates.py, template_versions.py, industry_codes.py) over real HTTP against a
real database, driven by a client written from SNMS's shapes alone: plain JSON bodies, query parameters, and the
``{"status", "message", "data"}`` envelope over HTTP 200 (research idis-secondary-node.md §4.1(b), §4.3).

Enterprise ``88.118.8`` (the research's example prefix) owns the templates; enterprise ``88.OTHER`` is a stranger.
Requests go through a trusted proxy (``X-Forwarded-Proto: https``), so Basic credentials count.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import SECURE, Tenants, tenants

PREFIX = "88.118.8"
PATH = "/snms/api/v5/template"
EXAMPLE: dict[str, Any] = orjson.loads(  # research §4.3, verbatim
    """{"prefix":"88.118.8","version":"product-1.0","industryCategory":"C","industrySpecific":"34",
 "industryTrade":"344","industrySubclass":"3441","type":1,"description":"pump",
 "items":[{"name":"产品名称","idType":"productName","idIndex":2000,"required":true,"metadata":{"type":"string","minLength":1,"maxLength":100}},
  {"name":"批次号","idType":"batchNo","idIndex":2001,"required":true,"metadata":{"type":"string","minLength":1,"maxLength":64}},
  {"name":"生产日期","idType":"productionDate","idIndex":2002,"required":true,"metadata":{"type":"string","minLength":10,"maxLength":10}},
  {"name":"生产企业","idType":"manufacturer","idIndex":2003,"required":true,"metadata":{"type":"string","minLength":1,"maxLength":200}}]}"""
)
VALUES = [
    {"index": 1001, "type": "TEMPLATE_VERSION", "data": "product-1.0"},
    {"index": 2000, "type": "productName", "data": "Pump P3"},
    {"index": 2001, "type": "batchNo", "data": "B-7"},
    {"index": 2002, "type": "productionDate", "data": "2026-03-01"},
    {"index": 2003, "type": "manufacturer", "data": "Suzhou Pumps"},
]


def example(**changes: Any) -> dict[str, Any]:
    """The example template with top-level fields replaced."""
    return {**copy.deepcopy(EXAMPLE), **changes}


def with_item(position: int, **changes: Any) -> dict[str, Any]:
    """The example template with one item's fields replaced."""
    body = copy.deepcopy(EXAMPLE)
    body["items"][position].update(changes)
    return body


def as_read(body: dict[str, Any]) -> dict[str, Any]:
    """What a GET answers for a template posted as ``body``: every item's state spelled out (absent means 1)."""
    out = copy.deepcopy(body)
    for item in out["items"]:
        item.setdefault("state", 1)
    return out


class Site(Tenants):
    async def snms(
        self,
        method: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One SNMS call; SNMS answers every outcome with HTTP 200 and the envelope."""
        query = "" if params is None else "?" + "&".join(f"{k}={v}" for k, v in params.items())
        status, answer, _ = await self.node.call(
            method, PATH + query, json=body, headers=self.owner if headers is None else headers
        )
        assert status == 200, answer
        assert set(answer) == {"status", "message", "data"}, answer
        return answer

    async def read(self, version: str = "product-1.0") -> dict[str, Any]:
        return await self.snms("GET", params={"prefix": PREFIX, "version": version}, headers=SECURE)

    async def register(self, handle: str, values: list[dict[str, Any]]) -> tuple[int, Any]:
        status, body, _ = await self.node.call(
            "PUT", f"/api/handles/{PREFIX}/{handle}", json={"values": values}, headers=self.owner
        )
        return status, body


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    async with tenants(database, PREFIX, Site) as site:
        yield site


@pytest.fixture
async def created(site: Site) -> Site:
    answer = await site.snms("POST", EXAMPLE)
    assert answer["status"] == 1, answer
    return site


@pytest.fixture
async def used(created: Site) -> Site:
    status, body = await created.register("P1", VALUES)
    assert status == 201, body
    return created


# --- creating and reading -----------------------------------------------------------------------------------


async def test_the_research_example_is_created_and_reads_back_in_snms_form(site: Site) -> None:
    answer = await site.snms("POST", EXAMPLE)
    assert (answer["status"], answer["data"]) == (1, as_read(EXAMPLE))
    answer = await site.read()
    assert answer == {"status": 1, "message": "success", "data": as_read(EXAMPLE)}


async def test_an_snms_template_is_an_idnode_template_with_its_classification(created: Site) -> None:
    status, body, _ = await created.node.get(f"/api/templates/{PREFIX}/product-1.0")
    assert status == 200
    assert body["description"] == "pump"
    assert body["classification"] == {
        "industryCategory": "C",
        "industrySpecific": "34",
        "industryTrade": "344",
        "industrySubclass": "3441",
        "type": 1,
    }
    assert body["items"][1] == {
        "idIndex": 2001,
        "idType": "batchNo",
        "name": "批次号",
        "required": True,
        "type": "string",
        "state": "enabled",
        "minLength": 1,
        "maxLength": 64,
    }
    status, body, _ = await created.node.get(f"/api/templates/{PREFIX}")
    assert body["versions"] == ["product-1.0"]


async def test_posting_the_same_template_again_succeeds_and_a_different_one_is_refused(created: Site) -> None:
    assert (await created.snms("POST", EXAMPLE))["status"] == 1
    answer = await created.snms("POST", example(description="valve"))
    assert answer["status"] == -2
    assert "exists" in answer["message"]
    assert (await created.read())["data"]["description"] == "pump"


async def test_an_idnode_template_reads_in_snms_form_and_writes_back_unchanged(site: Site) -> None:
    native = {
        "description": "Pump, model line 3",
        "items": [
            {"idIndex": 2000, "idType": "NAME", "required": True, "minLength": 2, "maxLength": 10},
            {"idIndex": 2001, "idType": "WEIGHT", "required": True, "type": "number", "numberRange": "[1,100]"},
            {"idIndex": 2002, "idType": "MADE_ON", "type": "date", "state": "disabled"},
        ],
    }
    status, body, _ = await site.node.call("PUT", f"/api/templates/{PREFIX}/native", json=native, headers=site.owner)
    assert status == 201, body
    answer = await site.read("native")
    assert answer["status"] == 1
    form = answer["data"]
    assert form == {
        "prefix": PREFIX,
        "version": "native",
        "description": "Pump, model line 3",
        "industryCategory": None,
        "industrySpecific": None,
        "industryTrade": None,
        "industrySubclass": None,
        "type": None,
        "items": [
            {
                "name": "NAME",
                "idType": "NAME",
                "idIndex": 2000,
                "required": True,
                "state": 1,
                "metadata": {"type": "string", "minLength": 2, "maxLength": 10},
            },
            {
                "name": "WEIGHT",
                "idType": "WEIGHT",
                "idIndex": 2001,
                "required": True,
                "state": 1,
                "metadata": {"type": "number", "numberRange": "[1,100]"},
            },
            {
                "name": "MADE_ON",
                "idType": "MADE_ON",
                "idIndex": 2002,
                "required": False,
                "state": 0,
                "metadata": {"type": "date", "dateFormat": "YYYY-MM-DD"},
            },
        ],
    }
    assert (await site.snms("PUT", form))["status"] == 1
    assert (await site.read("native"))["data"] == form
    _, after, _ = await site.node.get(f"/api/templates/{PREFIX}/native")
    assert after["items"][1]["numberRange"] == "[1,100]"


# --- revising ------------------------------------------------------------------------------------------------


async def test_an_unused_version_may_change_freely(created: Site) -> None:
    body = with_item(1, metadata={"type": "string", "minLength": 3, "maxLength": 8})
    body["items"][3]["required"] = False
    body["items"].append({"name": "颜色", "idType": "color", "idIndex": 2004, "required": True})
    body["industrySubclass"] = "3442"
    answer = await created.snms("PUT", body)
    assert answer["status"] == 1, answer
    read = (await created.read())["data"]
    assert read["items"][1]["metadata"] == {"type": "string", "minLength": 3, "maxLength": 8}
    assert read["items"][3]["required"] is False
    assert read["items"][4]["idType"] == "color"
    assert read["industrySubclass"] == "3442"


async def test_putting_a_version_that_does_not_exist_is_a_business_error(site: Site) -> None:
    answer = await site.snms("PUT", EXAMPLE)
    assert answer["status"] == -2
    assert "No data template" in answer["message"]


async def test_records_registered_against_an_snms_template_are_checked_by_it(created: Site) -> None:
    status, body = await created.register("P1", VALUES)
    assert status == 201, body
    status, body = await created.register("P2", [v for v in VALUES if v["index"] != 2001])
    assert (status, body["responseCode"]) == (400, 202)
    assert "batchNo" in body["message"]
    status, body = await created.register("P3", [{**v, "data": "x" * 65} if v["index"] == 2001 else v for v in VALUES])
    assert (status, body["responseCode"]) == (400, 202)


async def test_a_used_version_refuses_a_new_required_item_and_stays_as_it_was(used: Site) -> None:
    body = copy.deepcopy(EXAMPLE)
    body["items"].append({"name": "颜色", "idType": "color", "idIndex": 2004, "required": True})
    answer = await used.snms("PUT", body)
    assert answer["status"] == -2
    assert "item 2004 (color)" in answer["message"]
    assert "used by 1 handle" in answer["message"]
    assert (await used.read())["data"] == as_read(EXAMPLE)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (with_item(1, metadata={"type": "string", "minLength": 1, "maxLength": 8}), "item 2001 (batchNo): maxLength"),
        (with_item(1, metadata={"type": "number"}), "item 2001 (batchNo): type"),
        (with_item(0, required=False, state=1), None),
    ],
    ids=["narrower-length", "other-type", "made-optional"],
)
async def test_a_used_version_may_only_loosen(used: Site, body: dict[str, Any], named: str | None) -> None:
    answer = await used.snms("PUT", body)
    if named is None:
        assert answer["status"] == 1, answer
        return
    assert answer["status"] == -2
    assert named in answer["message"]


async def test_disabling_an_item_of_a_used_version_stops_requiring_it_and_cannot_be_undone(used: Site) -> None:
    without_batch = [v for v in VALUES if v["index"] != 2001]
    assert (await used.register("P2", without_batch))[0] == 400
    answer = await used.snms("PUT", with_item(1, state=0))
    assert answer["status"] == 1, answer
    assert (await used.read())["data"]["items"][1]["state"] == 0
    status, body = await used.register("P2", without_batch)
    assert status == 201, body
    answer = await used.snms("PUT", with_item(1, state=1))
    assert answer["status"] == -2
    assert "item 2001 (batchNo): cannot be enabled again" in answer["message"]


async def test_a_revision_is_recorded_in_the_change_feed_with_its_actor(created: Site, database: str) -> None:
    assert (await created.snms("PUT", with_item(1, state=0), headers={**created.owner, "X-Request-Id": "rev-1"}))[
        "status"
    ] == 1
    con = await asyncpg.connect(database)
    try:
        actors = await con.fetch(
            "SELECT actor FROM change_pending WHERE kind = 'template' AND op = 'update' "
            "UNION ALL SELECT actor FROM change_feed WHERE kind = 'template' AND op = 'update'"
        )
    finally:
        await con.close()
    assert [row[0] for row in actors] == [f"300:{PREFIX}/ADMIN"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({**EXAMPLE, "items": EXAMPLE["items"][:1] + EXAMPLE["items"][2:]}, "item 2001 (batchNo): missing"),
        (with_item(1, idType="lotNo"), "item 2001 (batchNo): idType cannot change"),
        (with_item(1, idIndex=2009), "item 2001 (batchNo): missing"),
    ],
    ids=["omitted", "id-type-changed", "id-index-changed"],
)
async def test_items_are_never_removed_or_renamed_even_while_unused(
    created: Site, body: dict[str, Any], named: str
) -> None:
    answer = await created.snms("PUT", body)
    assert answer["status"] == -2
    assert named in answer["message"]
    assert (await created.read())["data"] == as_read(EXAMPLE)


# --- deleting ------------------------------------------------------------------------------------------------


async def test_delete_is_refused_while_records_use_the_version_and_accepted_after(used: Site) -> None:
    params = {"prefix": PREFIX, "version": "product-1.0"}
    answer = await used.snms("DELETE", params=params)
    assert answer["status"] == -2
    assert "used by 1 handle" in answer["message"]
    status, _, _ = await used.node.call("DELETE", f"/api/handles/{PREFIX}/P1", headers=used.owner)
    assert status == 200
    answer = await used.snms("DELETE", params=params)
    assert answer["status"] == 1, answer
    answer = await used.read()
    assert (answer["status"], answer["data"]) == (-2, None)
    assert "No data template" in answer["message"]


# --- who may -------------------------------------------------------------------------------------------------


async def test_another_enterprise_has_no_permission(created: Site) -> None:
    other = example(description="hijacked")
    for method, body, params in (
        ("POST", example(version="product-2.0"), None),
        ("PUT", other, None),
        ("DELETE", None, {"prefix": PREFIX, "version": "product-1.0"}),
    ):
        answer = await created.snms(method, body, params=params, headers=created.stranger)
        assert answer["status"] == -3, (method, answer)
    assert (await created.read())["data"] == as_read(EXAMPLE)
    assert (await created.read("product-2.0"))["status"] == -2


async def test_without_credentials_writes_are_not_logged_in_and_reads_are_public(created: Site) -> None:
    for method, body, params in (
        ("POST", example(version="product-2.0"), None),
        ("PUT", example(description="anonymous"), None),
        ("DELETE", None, {"prefix": PREFIX, "version": "product-1.0"}),
    ):
        answer = await created.snms(method, body, params=params, headers=SECURE)
        assert answer["status"] == -1, (method, answer)
    assert (await created.read())["data"] == as_read(EXAMPLE)


async def test_an_snms_login_token_writes_templates(site: Site) -> None:
    status, login, _ = await site.node.call(
        "POST", "/identity/token", json={"username": f"{PREFIX}/ADMIN", "password": site.owner_secret}, headers=SECURE
    )
    assert (status, login["status"]) == (200, 1), login
    bearer = {**SECURE, "Authorization": f"Bearer {login['data']['token']}"}
    assert (await site.snms("POST", EXAMPLE, headers=bearer))["status"] == 1
    assert (await site.snms("PUT", with_item(1, state=0), headers=bearer))["status"] == 1
    forged = {**SECURE, "Authorization": "Bearer " + login["data"]["token"][:-4] + "AAAA"}
    assert (await site.snms("PUT", EXAMPLE, headers=forged))["status"] in (-1, -3)
    assert (await site.read())["data"]["items"][1]["state"] == 0


# --- malformed -----------------------------------------------------------------------------------------------


def _without(field: str) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    del body[field]
    return body


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (with_item(2, idIndex=1999), "items[2].idIndex: must be an integer from 2000"),
        (with_item(1, idIndex="2001"), "items[1].idIndex: must be an integer from 2000"),
        (with_item(1, idIndex=2000), "items[1].idIndex: used twice"),
        (with_item(0, idType=""), "items[0].idType: must be a non-empty string"),
        (with_item(0, state=2), "items[0].state: must be 0 (disabled) or 1 (enabled)"),
        (with_item(0, required="yes"), "items[0].required: must be true or false"),
        (with_item(0, metadata=[]), "items[0].metadata: must be an object"),
        (with_item(3, metadata={"type": "boolean"}), "items[3].metadata.type: must be one of string, number, date"),
        (with_item(1, metadata={"maxLength": -1}), "items[1].metadata.maxLength: must be an integer from 0"),
        (example(items=["productName"]), "items[0]: not an object"),
        (example(items={"name": "x"}), "items: must be a list"),
        (_without("version"), "version: must be a non-empty string"),
        (example(prefix=88), "prefix: must be a non-empty string"),
        (example(description=7), "description: must be a string"),
        (example(type=3), "type: must be 1 (active identifier carrier) or 2 (other)"),
        (example(industryCategory="Z"), "industryCategory: must be one letter A-T"),
        (example(industrySpecific="01"), "industrySpecific: 01 is not a division of category C (13-43)"),
        (example(industrySpecific=34), "industrySpecific: must be a string of 2 digits"),
        (example(industryTrade="354"), "industryTrade: 354 does not extend industrySpecific 34"),
        (example(industrySubclass="3451"), "industrySubclass: 3451 does not extend industryTrade 344"),
        ({**_without("industryTrade")}, "industrySubclass: needs industryTrade"),
        (example(version="a/b"), "must not contain '/'"),
        (example(prefix="88.NOT.HOMED"), "88.NOT.HOMED"),
        ([EXAMPLE], "Expected a template object"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_a_malformed_template_is_a_business_error_naming_the_field(site: Site, body: Any, named: str) -> None:
    answer = await site.snms("POST", body)
    assert (answer["status"], answer["data"]) == (-2, None)
    assert named in answer["message"], answer["message"]
    assert (await site.read())["status"] == -2


async def test_every_malformed_field_is_named_in_one_answer(site: Site) -> None:
    body = with_item(0, idIndex=12, state=5)
    body["industryCategory"] = "c"
    message = (await site.snms("POST", body))["message"]
    for named in ("items[0].idIndex", "items[0].state", "industryCategory"):
        assert named in message, message


async def test_an_unparsable_body_or_missing_query_is_a_business_error(site: Site) -> None:
    status, answer, _ = await site.node.call(
        "POST", PATH, data=b"{not json", headers={**site.owner, "Content-Type": "application/json"}
    )
    assert (status, answer["status"]) == (200, -2)
    answer = await site.snms("GET", params={"prefix": PREFIX}, headers=SECURE)
    assert answer["status"] == -2
    assert "version: required query parameter" in answer["message"]
    answer = await site.snms("DELETE", params={"version": "product-1.0"})
    assert answer["status"] == -2
    assert "prefix: required query parameter" in answer["message"]
