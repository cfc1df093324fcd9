"""Reverse look-up, ``GET /hrls/handles?TYPE=value`` (registry/search.py), as pyhandle's ``search_handle`` uses
it (research/handle-rest-api.md §6), over real HTTP against a real database.

Enterprises A (``88.A``) and B (``88.B``) and a node operator are set up; requests go through a trusted proxy
(``X-Forwarded-Proto: https``), so credentials count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

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

SHARED = "https://shared.example/item"


def _values(url: str, checksum: str | None = None, **extra: Any) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = [{"index": 1, "type": "URL", "data": url}]
    if checksum is not None:
        values.append({"index": 2, "type": "CHECKSUM", "data": checksum})
    for index, (kind, data) in enumerate(extra.items(), start=3):
        values.append({"index": index, "type": kind, "data": data})
    return values


RECORDS = {
    "88.A/one": _values("https://a.example/1", "md5:1"),
    "88.A/two": _values("https://a.example/2", "md5:2"),
    "88.A/three": _values("https://a.example/3", "md5:1"),
    "88.A/under_score": _values("https://a.example/a_b"),
    "88.A/no-underscore": _values("https://a.example/aXb"),
    "88.A/shared": _values(SHARED),
    "88.B/shared": _values(SHARED),
    "88.A/private": [
        {"index": 1, "type": "URL", "data": "https://a.example/hidden", "permissions": "1100"},
        {"index": 2, "type": "EMAIL", "data": "hidden@a.example", "permissions": "1100"},
    ],
}


@dataclass
class Site:
    node: Node
    headers: dict[str, dict[str, str]]

    async def search(self, query: str, who: str = "A", path: str = "/hrls/handles") -> tuple[int, Any]:
        status, body, _ = await self.node.get(f"{path}?{query}", headers=self.headers[who])
        return status, body


@pytest.fixture(scope="module")
async def site(server_dsn: str, template_database: str) -> AsyncIterator[Site]:
    """One node for the module: the searches only read, and the one test that writes uses its own handle."""
    async with fresh_database(server_dsn, template_database) as database:
        credentials = await enterprises_and_operator(database)
        for handle, values in RECORDS.items():
            await put_record(database, handle, values)
        headers = {role: secure_basic(found.identity, found.secret) for role, found in credentials.items()}
        async with running_node(database, behind_trusted_proxy()) as node:
            yield Site(node, {**headers, "anonymous": dict(SECURE), "plain": {}})


async def test_ping_answers_ok(site: Site) -> None:
    async with site.node.http.get(site.node.url + "/hrls/ping") as response:
        assert response.status == 200
        assert await response.text() == "OK"


async def test_an_exact_url_finds_the_handles_holding_it(site: Site) -> None:
    assert await site.search("URL=https://a.example/2") == (200, ["88.A/two"])


async def test_the_trailing_slash_path_pyhandle_uses_answers_the_same(site: Site) -> None:
    assert await site.search("URL=https://a.example/2", path="/hrls/handles/") == (200, ["88.A/two"])


async def test_a_star_is_a_wildcard(site: Site) -> None:
    status, found = await site.search("URL=https://a.example/*")
    assert status == 200
    assert sorted(found) == sorted(["88.A/one", "88.A/two", "88.A/three", "88.A/under_score", "88.A/no-underscore"])
    assert await site.search("URL=*/3") == (200, ["88.A/three"])


async def test_an_underscore_or_percent_is_matched_literally(site: Site) -> None:
    assert await site.search("URL=https://a.example/a_b") == (200, ["88.A/under_score"])
    assert await site.search("URL=https://a.example/a_*") == (200, ["88.A/under_score"])
    assert await site.search("URL=https://a.example/%25*") == (200, [])


async def test_several_types_are_and_ed(site: Site) -> None:
    assert await site.search("CHECKSUM=md5:1") == (200, ["88.A/one", "88.A/three"])
    assert await site.search("URL=https://a.example/*&CHECKSUM=md5:1") == (200, ["88.A/one", "88.A/three"])
    assert await site.search("URL=https://a.example/3&CHECKSUM=md5:2") == (200, [])


async def test_limit_caps_the_number_of_handles(site: Site) -> None:
    status, found = await site.search("URL=https://a.example/*&limit=2")
    assert status == 200
    assert len(found) == 2
    status, everything = await site.search("URL=https://a.example/*")
    assert set(found) < set(everything)


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("plain", 403)])
async def test_searching_needs_an_authenticated_identity(site: Site, who: str, status: int) -> None:
    got, body = await site.search("URL=*", who=who)
    assert got == status
    assert body["responseCode"] == 402


async def test_an_unknown_type_is_400_rc_4(site: Site) -> None:
    status, body = await site.search("COLOR=red")
    assert status == 400
    assert body["responseCode"] == 4


async def test_an_enterprise_finds_only_its_own_handles_and_an_operator_finds_all(site: Site) -> None:
    assert await site.search(f"URL={SHARED}", who="A") == (200, ["88.A/shared"])
    assert await site.search(f"URL={SHARED}", who="B") == (200, ["88.B/shared"])
    assert await site.search(f"URL={SHARED}", who="operator") == (200, ["88.A/shared", "88.B/shared"])
    assert await site.search("URL=https://a.example/*", who="B") == (200, [])


async def test_non_public_values_are_never_found(site: Site) -> None:
    assert await site.search("URL=https://a.example/hidden") == (200, [])
    assert await site.search("EMAIL=hidden@a.example", who="operator") == (200, [])
    assert "88.A/private" not in (await site.search("URL=*", who="operator"))[1]


async def test_secret_keys_are_not_searchable(site: Site) -> None:
    status, body = await site.search("HS_SECKEY=*", who="operator")
    assert status == 400
    assert body["responseCode"] == 4


async def test_a_write_through_the_api_is_found_by_the_next_search(site: Site) -> None:
    status, _, _ = await site.node.call(
        "PUT", "/api/handles/88.A/fresh", json={"values": _values("https://fresh.example/")}, headers=site.headers["A"]
    )
    assert status == 201
    assert await site.search("URL=https://fresh.example/") == (200, ["88.A/fresh"])
    await site.node.call("DELETE", "/api/handles/88.A/fresh", headers=site.headers["A"])
    assert await site.search("URL=https://fresh.example/") == (200, [])
