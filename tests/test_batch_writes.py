"""``POST /api/handles:batch`` (registry/batch.py): many creates, replaces and deletes in one request, each
answered on its own, in request order, over real HTTP against a real database.

Enterprise ``88.TEST`` writes; ``88.OTHER`` is another enterprise's prefix. Requests go through a trusted proxy
(``X-Forwarded-Proto: https``), so credentials count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from resolver import links
from resolver.config import RegistrySettings, Settings
from resolver.links import Link
from tests.support import SECURE, Node, onboard_enterprise, put_record, running_node, secure_basic

BATCH = "/api/handles:batch"
PIP = Link("gs1:pip", "https://factory.example/p/9", "Product page", "en", "text/html", True)
SDS = Link("gs1:safetyInfo", "https://factory.example/sds/9.pdf", "SDS", type="application/pdf")


def _url(target: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": target}]


def _admin(handle: str, index: int) -> dict[str, Any]:
    return {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": handle, "index": index, "permissions": "111111111111"}},
    }


@dataclass
class Site:
    node: Node
    auth: dict[str, str]

    async def batch(self, items: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, body, _ = await self.node.call(
            "POST", BATCH, json=items, headers=self.auth if headers is None else headers
        )
        return status, body

    async def url_of(self, handle: str) -> Any:
        status, body, _ = await self.node.get(f"/api/handles/{handle}?index=1")
        return body["values"][0]["data"]["value"] if status == 200 and body["values"] else status


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    admin = await onboard_enterprise(database, "88.TEST")
    await onboard_enterprise(database, "88.OTHER")
    for suffix in ("existing", "existing2", "gone"):
        await put_record(database, f"88.TEST/{suffix}", _url(f"https://example.org/{suffix}"))
    await put_record(database, "88.TEST/locked", [*_url("https://example.org/locked"), _admin("88.TEST/KEEPER", 300)])
    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        yield Site(node, secure_basic(admin.identity, admin.secret))


async def test_a_mixed_batch_reports_each_item_in_order_and_writes_only_the_good_ones(site: Site) -> None:
    items = [
        {"op": "create", "handle": "88.TEST/b1", "values": _url("https://example.org/b1")},
        {"op": "create", "handle": "88.TEST/bad-index", "values": [{"index": 0, "type": "URL", "data": "x"}]},
        {"op": "create", "handle": "88.TEST/bad-data", "values": [{"index": 1, "type": "URL"}]},
        {"op": "create", "handle": "99.NOPE/x", "values": _url("https://example.org/nope")},
        {"op": "create", "handle": "88.OTHER/x", "values": _url("https://example.org/foreign")},
        {"op": "replace", "handle": "88.TEST/locked", "values": _url("https://example.org/taken")},
        {"op": "create", "handle": "88.TEST/existing", "values": _url("https://example.org/different")},
        {"op": "replace", "handle": "88.TEST/existing2", "values": _url("https://example.org/replaced")},
        {"op": "delete", "handle": "88.TEST/gone"},
        {"op": "delete", "handle": "88.TEST/never-was"},
        {"op": "rename", "handle": "88.TEST/b9"},
        {"op": "create", "handle": "88.TEST/b2", "values": _url("https://example.org/b2")},
    ]
    status, body = await site.batch({"items": items})
    assert status == 200
    assert body["responseCode"] == 1
    results = body["results"]
    assert len(results) == len(items)
    outcome = [(r.get("handle"), r["status"], r["responseCode"]) for r in results]
    assert outcome == [
        ("88.TEST/b1", 201, 1),
        ("88.TEST/bad-index", 400, 202),
        ("88.TEST/bad-data", 400, 4),
        ("99.NOPE/x", 400, 301),
        ("88.OTHER/x", 403, 400),
        ("88.TEST/locked", 403, 400),
        ("88.TEST/existing", 409, 101),
        ("88.TEST/existing2", 200, 1),
        ("88.TEST/gone", 200, 1),
        ("88.TEST/never-was", 404, 100),
        ("88.TEST/b9", 400, 4),
        ("88.TEST/b2", 201, 1),
    ]
    assert all("message" in r for r in results if r["responseCode"] != 1)

    assert await site.url_of("88.TEST/b1") == "https://example.org/b1"
    assert await site.url_of("88.TEST/b2") == "https://example.org/b2"
    assert await site.url_of("88.TEST/existing2") == "https://example.org/replaced"
    assert await site.url_of("88.TEST/gone") == 404
    assert await site.url_of("88.TEST/bad-index") == 404
    assert await site.url_of("88.OTHER/x") == 404
    assert await site.url_of("88.TEST/locked") == "https://example.org/locked"
    assert await site.url_of("88.TEST/existing") == "https://example.org/existing"


async def _versions(site: Site) -> dict[str, int]:
    con = await asyncpg.connect(site.node.dsn)
    try:
        return {row[0]: row[1] for row in await con.fetch("SELECT handle_key, version FROM handles")}
    finally:
        await con.close()


async def test_retrying_a_batch_of_identical_creates_succeeds_again_and_changes_nothing(site: Site) -> None:
    items = [
        {"op": "create", "handle": f"88.TEST/retry-{n}", "values": _url(f"https://example.org/retry/{n}")}
        for n in range(5)
    ]
    status, first = await site.batch(items)
    assert status == 200
    assert [r["status"] for r in first["results"]] == [201] * 5
    versions = await _versions(site)

    status, again = await site.batch(items)
    assert status == 200
    assert [(r["status"], r["responseCode"], r.get("unchanged")) for r in again["results"]] == [(200, 1, True)] * 5
    assert await _versions(site) == versions
    assert await site.url_of("88.TEST/retry-3") == "https://example.org/retry/3"


async def test_a_batch_of_more_than_2000_items_is_refused_whole_with_400_rc_4(site: Site) -> None:
    items = [{"op": "create", "handle": f"88.TEST/many-{n}", "values": _url("https://e.org")} for n in range(2001)]
    status, body = await site.batch({"items": items})
    assert status == 400
    assert body["responseCode"] == 4
    assert await site.url_of("88.TEST/many-0") == 404


async def test_a_batch_of_exactly_2000_items_is_accepted(site: Site) -> None:
    items = [{"op": "create", "handle": f"88.TEST/many-{n}", "values": _url("https://e.org")} for n in range(2000)]
    status, body = await site.batch(items)
    assert status == 200
    assert {r["status"] for r in body["results"]} == {201}
    assert await site.url_of("88.TEST/many-1999") == "https://e.org"


async def test_a_handle_named_twice_in_one_batch_is_written_once_and_the_repeat_reported(site: Site) -> None:
    items = [
        {"op": "create", "handle": "88.TEST/twice", "values": _url("https://example.org/first")},
        {"op": "create", "handle": "88.test/TWICE", "values": _url("https://example.org/second")},
    ]
    status, body = await site.batch(items)
    assert status == 200
    first, second = body["results"]
    assert (first["status"], first["responseCode"]) == (201, 1)
    assert second["status"] == 400
    assert second["responseCode"] == 4
    assert second["handle"] == "88.test/TWICE"
    assert await site.url_of("88.TEST/twice") == "https://example.org/first"


async def test_a_batch_of_deletes_removes_every_handle(site: Site) -> None:
    items = [{"op": "delete", "handle": f"88.TEST/{suffix}"} for suffix in ("existing", "existing2", "gone")]
    status, body = await site.batch({"items": items})
    assert status == 200
    assert [(r["status"], r["responseCode"]) for r in body["results"]] == [(200, 1)] * 3
    for suffix in ("existing", "existing2", "gone"):
        assert await site.url_of(f"88.TEST/{suffix}") == 404


@pytest.mark.parametrize(("headers", "status"), [({}, 403), (SECURE, 401)], ids=["plain-http", "secure-channel"])
async def test_an_anonymous_batch_is_refused_and_writes_nothing(
    site: Site, headers: dict[str, str], status: int
) -> None:
    items = [{"op": "create", "handle": "88.TEST/anon", "values": _url("https://example.org/anon")}]
    got, body = await site.batch(items, headers=headers)
    assert got == status
    assert body["responseCode"] == 402
    assert await site.url_of("88.TEST/anon") == 404


async def test_a_batch_that_is_not_json_is_400_rc_4(site: Site) -> None:
    status, body, _ = await site.node.call(
        "POST", BATCH, data=b"[{", headers={**site.auth, "Content-Type": "application/json"}
    )
    assert status == 400
    assert body["responseCode"] == 4


async def test_retrying_a_batch_create_that_holds_a_secret_key_succeeds_again_unchanged(site: Site) -> None:
    values = [*_url("https://example.org/device"), {"index": 300, "type": "HS_SECKEY", "data": "device-secret"}]
    items = [{"op": "create", "handle": "88.TEST/device", "values": values}]
    status, first = await site.batch(items)
    assert [(r["status"], r["responseCode"]) for r in first["results"]] == [(201, 1)]
    versions = await _versions(site)
    status, again = await site.batch(items)
    assert status == 200
    assert [(r["status"], r["responseCode"], r.get("unchanged")) for r in again["results"]] == [(200, 1, True)]
    assert await _versions(site) == versions


async def test_a_create_of_another_enterprises_existing_handle_is_refused_even_when_the_values_match(
    site: Site, database: str
) -> None:
    private = {"index": 2, "type": "PIN", "data": "4711", "permissions": "1100"}
    await put_record(database, "88.OTHER/vault", [*_url("https://example.org/vault"), private])
    guessed = [{"op": "create", "handle": "88.OTHER/vault", "values": [*_url("https://example.org/vault"), private]}]
    status, body = await site.batch(guessed)
    assert status == 200
    result = body["results"][0]
    # 88.TEST may not write under 88.OTHER, and must not learn that its guess of a non-public value was right
    assert (result["status"], result["responseCode"]) == (403, 400), result


async def test_a_links_array_in_a_batch_item_is_stored_as_a_put_stores_it(site: Site) -> None:
    given = [PIP.to_json(), SDS.to_json()]
    items = [
        {"op": "create", "handle": "88.TEST/linked", "values": _url("https://example.org/linked"), "links": given},
        {"op": "replace", "handle": "88.TEST/existing", "links": given},
    ]
    status, body = await site.batch(items)
    assert status == 200
    assert [(r["status"], r["responseCode"]) for r in body["results"]] == [(201, 1), (200, 1)], body
    for handle in ("88.TEST/linked", "88.TEST/existing"):
        _, record, _ = await site.node.get(f"/api/handles/{handle}?index=1000")
        [value] = record["values"]
        assert (value["type"], value["data"]["value"]) == ("10320/loc", links.render([PIP, SDS]))
    status, _, response = await site.node.get("/88.TEST/linked?linkType=gs1:safetyInfo")
    assert (status, response.headers["Location"]) == (302, SDS.href)
    hrefs = await site.node.linkset_hrefs("88.TEST/linked")
    assert (hrefs[links.expand(PIP.rel)], hrefs[links.expand(SDS.rel)]) == ([PIP.href], [SDS.href])


async def test_a_batch_item_with_a_bad_link_is_refused_alone_as_a_put_would_be(site: Site) -> None:
    clash = {"index": 1000, "type": "URL", "data": "https://example.org/clash"}
    items = [
        {"op": "create", "handle": "88.TEST/js", "links": [{"rel": "gs1:pip", "href": "javascript:alert(1)"}]},
        {"op": "create", "handle": "88.TEST/no-href", "links": [{"rel": "gs1:pip"}]},
        {"op": "create", "handle": "88.TEST/clash", "values": [clash], "links": [PIP.to_json()]},
        {"op": "create", "handle": "88.TEST/fine", "links": [PIP.to_json()]},
    ]
    status, body = await site.batch(items)
    assert status == 200
    results = body["results"]
    assert [(r["handle"], r["status"], r["responseCode"]) for r in results] == [
        ("88.TEST/js", 400, 202),
        ("88.TEST/no-href", 400, 202),
        ("88.TEST/clash", 409, 201),
        ("88.TEST/fine", 201, 1),
    ]
    assert results[0]["message"].startswith("links: link href")
    assert results[1]["message"].startswith("links: ")
    assert results[2]["message"] == "Index conflict for 1000"
    for handle in ("88.TEST/js", "88.TEST/no-href", "88.TEST/clash"):
        assert await site.url_of(handle) == 404
    status, _, response = await site.node.get("/88.TEST/fine")
    assert (status, response.headers["Location"]) == (302, PIP.href)
