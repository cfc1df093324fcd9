"""Data templates (registry/templates.py): publishing versions, and registrations checked against the version
they name at index 1001, over real HTTP against a real database.

Enterprise ``88.TEST`` publishes and registers; enterprise ``88.OTHER`` is a stranger to it. Requests go through
a trusted proxy (``X-Forwarded-Proto: https``), so credentials count.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import SECURE, Tenants, tenants

TEMPLATE = {
    "description": "Pump, model line 3",
    "items": [
        {"idIndex": 2000, "idType": "NAME", "name": "Product name", "required": True, "minLength": 2, "maxLength": 10},
        {"idIndex": 2001, "idType": "WEIGHT", "required": True, "type": "number", "numberRange": "[1,100]"},
        {"idIndex": 2002, "idType": "MADE_ON", "required": True, "type": "date", "dateFormat": "YYYY-MM-DD"},
        {"idIndex": 2003, "idType": "BATCH", "required": False, "type": "string"},
        {"idIndex": 2004, "idType": "SERIAL", "required": True, "type": "string", "minLength": 4},
        {"idIndex": 2005, "idType": "COLOR", "required": True, "type": "string"},
        {"idIndex": 2006, "idType": "ORIGIN", "required": False, "type": "string"},
    ],
}
VALID = [
    {"index": 1, "type": "URL", "data": "https://example.org/pump/1"},
    {"index": 1001, "type": "TEMPLATE_VERSION", "data": "v1"},
    {"index": 2000, "type": "NAME", "data": "Pump P3"},
    {"index": 2001, "type": "WEIGHT", "data": "42.5"},
    {"index": 2002, "type": "MADE_ON", "data": "2024-03-01"},
    {"index": 2003, "type": "BATCH", "data": "B-7"},
    {"index": 2004, "type": "SERIAL", "data": "SN-0001"},
    {"index": 2005, "type": "COLOR", "data": "red"},
    {"index": 2006, "type": "ORIGIN", "data": "Suzhou"},
]


def _changed(changes: dict[int, Any]) -> list[dict[str, Any]]:
    """VALID with the values at some indexes replaced (None: removed)."""
    out = []
    for value in VALID:
        if value["index"] in changes:
            if changes[value["index"]] is not None:
                out.append({**value, **changes[value["index"]]})
        else:
            out.append(value)
    return out


class Site(Tenants):
    async def publish(self, version: str, body: Any, headers: dict[str, str] | None = None, prefix: str = "88.TEST"):
        return await self.node.call(
            "PUT", f"/api/templates/{prefix}/{version}", json=body, headers=self.owner if headers is None else headers
        )

    async def register(self, handle: str, values: list[dict[str, Any]], query: str = ""):
        return await self.node.call("PUT", f"/api/handles/{handle}{query}", json={"values": values}, headers=self.owner)


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    async with tenants(database, "88.TEST", Site) as site:
        yield site


@pytest.fixture
async def published(site: Site) -> Site:
    status, body, _ = await site.publish("v1", TEMPLATE)
    assert status == 201, body
    return site


# --- publishing -----------------------------------------------------------------------------------------------


async def test_publishing_a_new_version_is_201_and_it_can_be_read_back(site: Site) -> None:
    status, body, _ = await site.publish("v1", TEMPLATE)
    assert status == 201
    assert body == {"responseCode": 1, "prefix": "88.TEST", "version": "v1"}
    status, body, _ = await site.node.get("/api/templates/88.TEST/v1")
    assert status == 200
    assert body["description"] == TEMPLATE["description"]
    assert [item["idIndex"] for item in body["items"]] == [2000, 2001, 2002, 2003, 2004, 2005, 2006]
    assert body["items"][1]["numberRange"] == "[1,100]"
    status, body, _ = await site.node.get("/api/templates/88.TEST")
    assert body["versions"] == ["v1"]


async def test_republishing_an_identical_version_is_a_safe_200(published: Site) -> None:
    status, body, _ = await published.publish("v1", copy.deepcopy(TEMPLATE))
    assert status == 200
    assert body["responseCode"] == 1


async def test_republishing_a_version_with_a_different_body_is_409_and_changes_nothing(published: Site) -> None:
    changed = copy.deepcopy(TEMPLATE)
    changed["items"][0]["maxLength"] = 99
    status, body, _ = await published.publish("v1", changed)
    assert status == 409
    assert body["responseCode"] == 101
    _, stored, _ = await published.node.get("/api/templates/88.TEST/v1")
    assert stored["items"][0]["maxLength"] == 10


@pytest.mark.parametrize(
    "item",
    [
        {"idIndex": 1999, "idType": "LOW"},
        {"idIndex": "2000", "idType": "TEXT_INDEX"},
        {"idIndex": 2000, "idType": "FLAG", "type": "boolean"},
        {"idIndex": 2000, "idType": ""},
        {"idIndex": 2000, "idType": "RANGE", "type": "number", "numberRange": "one to ten"},
        {"idIndex": 2000, "idType": "LEN", "minLength": -1},
        {"idIndex": 2000, "idType": "STATE", "state": "sometimes"},
    ],
    ids=["index-below-2000", "index-not-integer", "bad-type", "empty-id-type", "bad-range", "negative-length", "state"],
)
async def test_an_invalid_template_is_400_rc_202_and_is_not_stored(site: Site, item: dict[str, Any]) -> None:
    status, body, _ = await site.publish("bad", {"items": [item]})
    assert status == 400
    assert body["responseCode"] == 202
    assert (await site.node.get("/api/templates/88.TEST/bad"))[0] == 404


async def test_an_enterprise_cannot_publish_under_another_enterprises_prefix(site: Site) -> None:
    status, body, _ = await site.publish("v1", TEMPLATE, headers=site.stranger)
    assert (status, body["responseCode"]) == (403, 400)
    assert (await site.node.get("/api/templates/88.TEST/v1"))[0] == 404


async def test_publishing_without_credentials_is_401(site: Site) -> None:
    status, body, _ = await site.publish("v1", TEMPLATE, headers=SECURE)
    assert (status, body["responseCode"]) == (401, 402)


# --- registrations checked against their template -------------------------------------------------------------


async def test_a_registration_that_matches_its_template_is_created(published: Site) -> None:
    status, body, _ = await published.register("88.TEST/pump-1", VALID, "?overwrite=false")
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/pump-1"}
    status, record, _ = await published.node.get("/api/handles/88.TEST/pump-1?index=2001")
    assert record["values"][0]["data"]["value"] == "42.5"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({2005: None}, "COLOR"),
        ({2003: {"type": "LOT"}}, "BATCH"),
        ({2000: {"data": "A much too long product name"}}, "NAME"),
        ({2000: {"data": "P"}}, "NAME"),
        ({2001: {"data": "heavy"}}, "WEIGHT"),
        ({2001: {"data": "NaN"}}, "WEIGHT"),
        ({2001: {"data": "100.5"}}, "WEIGHT"),
        ({2001: {"data": "0"}}, "WEIGHT"),
        ({2002: {"data": "2024-02-30"}}, "MADE_ON"),
        ({2002: {"data": "01/03/2024"}}, "MADE_ON"),
        ({2002: {"data": "2024-3-1"}}, "MADE_ON"),
        ({2002: {"data": {"format": "hex", "value": "FF00"}}}, "MADE_ON"),
    ],
    ids=[
        "missing-required",
        "wrong-type",
        "too-long",
        "too-short",
        "not-a-number",
        "nan-is-not-a-number",
        "above-range",
        "below-range",
        "no-such-day",
        "wrong-date-format",
        "date-without-leading-zeros",
        "not-a-string",
    ],
)
async def test_a_registration_breaking_one_template_rule_is_400_rc_202_naming_the_item(
    published: Site, changes: dict[int, Any], named: str
) -> None:
    status, body, _ = await published.register("88.TEST/pump-bad", _changed(changes), "?overwrite=false")
    assert status == 400
    assert body["responseCode"] == 202
    assert named in body["message"]
    assert (await published.node.get("/api/handles/88.TEST/pump-bad"))[0] == 404


async def test_every_offending_item_is_named_in_one_answer(published: Site) -> None:
    broken = {
        2000: {"data": "A much too long product name"},
        2001: {"data": "500"},
        2002: {"data": "2024-13-45"},
        2003: {"type": "LOT"},
        2004: {"data": "S1"},
        2005: None,
    }
    values = [*_changed(broken), {"index": 2100, "type": "EXTRA", "data": "not in the template"}]
    status, body, _ = await published.register("88.TEST/pump-bad", values, "?overwrite=false")
    assert status == 400
    assert body["responseCode"] == 202
    message = body["message"]
    for named in ("NAME", "WEIGHT", "MADE_ON", "BATCH", "SERIAL", "COLOR", "2100"):
        assert named in message, (named, message)
    assert "ORIGIN" not in message
    assert "URL" not in message


async def test_a_registration_naming_a_template_that_does_not_exist_is_400_rc_202(published: Site) -> None:
    values = _changed({1001: {"data": "v404"}})
    status, body, _ = await published.register("88.TEST/pump-orphan", values, "?overwrite=false")
    assert status == 400
    assert body["responseCode"] == 202
    assert (await published.node.get("/api/handles/88.TEST/pump-orphan"))[0] == 404


async def test_a_later_change_to_a_templated_record_is_checked_too(published: Site) -> None:
    assert (await published.register("88.TEST/pump-1", VALID))[0] == 201
    status, body, _ = await published.register(
        "88.TEST/pump-1", [{"index": 2001, "type": "WEIGHT", "data": "1000"}], "?index=2001"
    )
    assert status == 400
    assert body["responseCode"] == 202
    assert "WEIGHT" in body["message"]
    _, record, _ = await published.node.get("/api/handles/88.TEST/pump-1?index=2001")
    assert record["values"][0]["data"]["value"] == "42.5"
    status, _, _ = await published.register(
        "88.TEST/pump-1", [{"index": 2001, "type": "WEIGHT", "data": "77"}], "?index=2001"
    )
    assert status == 200


async def test_a_record_without_index_1001_is_not_checked_against_any_template(published: Site) -> None:
    values = [
        {"index": 1, "type": "URL", "data": "https://example.org/free"},
        {"index": 2100, "type": "ANY", "data": "x"},
    ]
    status, _, _ = await published.register("88.TEST/free", values, "?overwrite=false")
    assert status == 201


# --- withdrawing ----------------------------------------------------------------------------------------------


async def test_a_template_in_use_cannot_be_deleted_until_its_records_are_gone(published: Site) -> None:
    assert (await published.register("88.TEST/pump-1", VALID))[0] == 201
    status, body, _ = await published.node.call("DELETE", "/api/templates/88.TEST/v1", headers=published.owner)
    assert status == 409
    assert (await published.node.get("/api/templates/88.TEST/v1"))[0] == 200

    status, _, _ = await published.node.call("DELETE", "/api/handles/88.TEST/pump-1", headers=published.owner)
    assert status == 200
    status, body, _ = await published.node.call("DELETE", "/api/templates/88.TEST/v1", headers=published.owner)
    assert status == 200
    assert body["responseCode"] == 1
    assert (await published.node.get("/api/templates/88.TEST/v1"))[0] == 404


async def test_a_template_in_use_by_a_handle_spelled_in_lower_case_cannot_be_deleted(published: Site) -> None:
    assert (await published.register("88.test/pump-lower", VALID))[0] == 201
    status, body, _ = await published.node.call("DELETE", "/api/templates/88.TEST/v1", headers=published.owner)
    assert status == 409, body
    assert (await published.node.get("/api/templates/88.TEST/v1"))[0] == 200


async def test_a_stranger_cannot_delete_a_template(published: Site) -> None:
    status, _, _ = await published.node.call("DELETE", "/api/templates/88.TEST/v1", headers=published.stranger)
    assert status == 403
    assert (await published.node.get("/api/templates/88.TEST/v1"))[0] == 200
