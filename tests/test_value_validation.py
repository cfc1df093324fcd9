"""Hostile values in a record (resolver/records.py) answer a clean 400 before anything reaches PostgreSQL, over
real HTTP against a real database: NUL characters where the value is text and not bytes, times off the calendar,
and JSON nested deeper than the node can encode. What is accepted comes back unchanged from a look-up.

Enterprise A (``88.A``) writes through a trusted proxy on 127.0.0.1 (``X-Forwarded-Proto: https``). Each test
reproduces a finding of the round-2 security review (issue 8): these answered 500 before the fix.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from resolver.records import MAX_DEPTH
from tests.support import Node, behind_trusted_proxy, onboard_enterprise, running_node, secure_basic

URL = {"index": 1, "type": "URL", "data": "https://example.org/x"}


@dataclass
class Tenant:
    node: Node
    headers: dict[str, str]

    async def put(self, handle: str, values: list[dict[str, Any]] | bytes) -> tuple[int, Any]:
        """PUT ``values``, or a body already encoded (see ``_deep_body``)."""
        body = values if isinstance(values, bytes) else orjson.dumps({"values": values})
        headers = {**self.headers, "Content-Type": "application/json"}
        status, answer, _ = await self.node.call("PUT", f"/api/handles/{handle}", data=body, headers=headers)
        return status, answer

    async def batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        status, body, _ = await self.node.call(
            "POST", "/api/handles:batch", json={"items": items}, headers=self.headers
        )
        return status, body

    async def values(self, handle: str) -> list[dict[str, Any]]:
        status, body, _ = await self.node.get(f"/api/handles/{handle}")
        assert status == 200, body
        return body["values"]


@pytest.fixture
async def tenant(database: str) -> AsyncIterator[Tenant]:
    a = await onboard_enterprise(database, "88.A")
    async with running_node(database, behind_trusted_proxy()) as node:
        yield Tenant(node, secure_basic(a.identity, a.secret))


def _admin(handle: str) -> dict[str, Any]:
    admin = {"handle": handle, "index": 300, "permissions": "011111110011"}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}}


def _nested(depth: int) -> Any:
    """A JSON value with ``depth`` levels of arrays around a string."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def _deep_body(value: dict[str, Any], depth: int) -> bytes:
    """A PUT body of ``URL`` and ``value`` whose ``"HOLE"`` is ``depth`` nested arrays, written as bytes: the
    client's JSON encoders stop long before the node's parser (orjson reads 1,024 levels, writes 254)."""
    body = orjson.dumps({"values": [URL, value]})
    return body.replace(b'"HOLE"', b"[" * depth + b"]" * depth)


NUL_VALUES = {
    "key data": {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": "AAAA\u0000"}},
    "site data": {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": ["a\u0000b"]}}},
    "a site field name": {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": {"na\u0000me": 1}}},
    "an HS_ADMIN handle": _admin("88.A/ad\u0000min"),
    "an HS_VLIST handle": {
        "index": 200,
        "type": "HS_VLIST",
        "data": {"format": "vlist", "value": [{"handle": "88.A/gr\u0000oup", "index": 300}]},
    },
    "a reference": {**URL, "references": [{"handle": "88.A/ot\u0000her", "index": 1}]},
}


# --- NUL characters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", NUL_VALUES.values(), ids=NUL_VALUES.keys())
async def test_a_nul_character_in_text_that_is_not_bytes_is_400_rc_202(tenant: Tenant, value: dict[str, Any]) -> None:
    status, body = await tenant.put("88.A/nul", [URL, value] if value["index"] != 1 else [value])
    assert (status, body["responseCode"]) == (400, 202), body
    assert "NUL" in body["message"] or "control character" in body["message"]
    assert (await tenant.node.get("/api/handles/88.A/nul"))[0] == 404


async def test_one_batch_item_with_a_nul_character_fails_alone(tenant: Tenant) -> None:
    items = [
        {"op": "create", "handle": "88.A/good", "values": [URL]},
        {"op": "create", "handle": "88.A/bad", "values": [URL, NUL_VALUES["an HS_ADMIN handle"]]},
    ]
    status, body = await tenant.batch(items)
    assert status == 200, body
    good, bad = body["results"]
    assert (good["status"], good["responseCode"]) == (201, 1)
    assert (bad["status"], bad["responseCode"]) == (400, 202), bad
    assert (await tenant.node.get("/api/handles/88.A/good"))[0] == 200


async def test_plain_string_data_with_a_nul_character_is_kept_as_base64_bytes(tenant: Tenant) -> None:
    """Handle.Net's data is bytes: text with a control character (NUL included) is stored and shown as base64,
    so nothing is lost and PostgreSQL never sees the NUL."""
    status, body = await tenant.put("88.A/bytes", [URL, {"index": 2, "type": "NOTE", "data": "a\u0000b"}])
    assert status == 201, body
    note = (await tenant.values("88.A/bytes"))[1]
    assert note["data"] == {"format": "base64", "value": base64.b64encode(b"a\x00b").decode()}


# --- ttl at the calendar's edge -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
async def test_a_ttl_time_that_leaves_the_calendar_in_utc_is_400(tenant: Tenant, ttl: str) -> None:
    status, body = await tenant.put("88.A/ttl", [{**URL, "ttl": ttl}])
    assert (status, body["responseCode"]) == (400, 202), body
    assert "ttl" in body["message"]


@pytest.mark.parametrize(
    ("ttl", "shown"),
    [
        ("9999-12-31T23:59:59+23:59", "9999-12-31T00:00:59Z"),
        ("0001-01-01T23:59:00+23:59", "0001-01-01T00:00:00Z"),
    ],
)
async def test_a_ttl_time_inside_the_calendar_is_shown_in_utc_with_four_digit_years(
    tenant: Tenant, ttl: str, shown: str
) -> None:
    status, body = await tenant.put("88.A/ttl", [{**URL, "ttl": ttl}])
    assert status == 201, body
    assert (await tenant.values("88.A/ttl"))[0]["ttl"] == shown


async def test_a_ttl_time_without_offset_is_utc_whatever_the_servers_zone(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in the server's local zone, the same request meant another moment on a node set to UTC+8."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        status, body = await tenant.put("88.A/ttl", [{**URL, "ttl": "2030-06-01T12:00:00"}])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert status == 201, body
    assert (await tenant.values("88.A/ttl"))[0]["ttl"] == "2030-06-01T12:00:00Z"


# --- nesting depth --------------------------------------------------------------------------------------------------


async def test_site_data_nested_deeper_than_the_limit_is_400_and_nothing_is_stored(tenant: Tenant) -> None:
    deep = {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": "HOLE"}}
    status, body = await tenant.put("88.A/deep", _deep_body(deep, 300))
    assert (status, body["responseCode"]) == (400, 202), body
    assert str(MAX_DEPTH) in body["message"]
    too_deep = {"format": "key", "value": _nested(MAX_DEPTH + 1)}
    status, body = await tenant.put("88.A/deep", [URL, {**deep, "data": too_deep}])
    assert (status, body["responseCode"]) == (400, 202), body
    assert (await tenant.node.get("/api/handles/88.A/deep"))[0] == 404


async def test_site_data_at_the_depth_limit_round_trips_through_storage_and_look_up(tenant: Tenant) -> None:
    value = {"servers": _nested(MAX_DEPTH - 1)}
    site = {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": value}}
    status, body = await tenant.put("88.A/site", [URL, site])
    assert status == 201, body
    assert (await tenant.values("88.A/site"))[1]["data"] == {"format": "site", "value": value}
    status, body = await tenant.put("88.A/site", [URL, {**site, "data": {"format": "site", "value": {"x": value}}}])
    assert (status, body["responseCode"]) == (400, 202), body


@pytest.mark.parametrize("field", ["index", "ttl", "permissions", "type", "data", "references"])
async def test_a_deeply_nested_field_of_a_value_is_a_4xx_with_a_short_message(tenant: Tenant, field: str) -> None:
    """Error messages describe a bad field without printing it whole (a repr of 1,000 levels raised)."""
    status, body = await tenant.put("88.A/deep", _deep_body({**URL, "index": 2, field: "HOLE"}, 1000))
    assert status == 400, body
    assert body["responseCode"] in (4, 202)
    assert len(body["message"]) < 300


@pytest.mark.parametrize("text", ["²", "--5", "9" * 5000], ids=["superscript two", "two minus signs", "5000 digits"])
@pytest.mark.parametrize("field", ["index", "ttl"])
async def test_an_index_or_ttl_that_only_looks_numeric_is_a_400(tenant: Tenant, field: str, text: str) -> None:
    """``str.isdigit`` accepts ``²`` and thousands of digits; ``int`` then raised ValueError (a 500)."""
    status, body = await tenant.put("88.A/num", [{**URL, field: text}])
    assert status == 400, body
    assert body["responseCode"] in (4, 202)
    assert len(body["message"]) < 300


# --- search values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["URL=x%00y", "U%00RL=x", "URL=x&limit=%C2%B2", "URL=x&limit=--5"],
    ids=["NUL in a value", "NUL in a type", "superscript limit", "two minus signs"],
)
async def test_a_search_criterion_or_limit_that_cannot_be_used_is_400_rc_4(tenant: Tenant, query: str) -> None:
    status, body, _ = await tenant.node.get(f"/hrls/handles?{query}", headers=tenant.headers)
    assert (status, body["responseCode"]) == (400, 4), body
