"""Writes to records this node's cache does not hold, over real HTTP against a real database.

A PUT of such a record tries the create first (``Writer.try_create``): its one statement shows the record when it
exists, and the write goes on as a replace; when the create is refused (the writer may still administer the
existing record) the ordinary path decides. A batch drops what it wrote from the cache instead of rebuilding it.
These tests pin that every such write answers what a write of a cached record answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from resolver.app import CACHE
from resolver.identifiers import ascii_upper
from tests.support import onboard_enterprise, put_record, running_node, secure_basic
from tests.test_templates import TEMPLATE, VALID
from tests.test_writes import PLAIN_VALUES, TRUSTING, XYZ, Site, _without_stamps

ALICE_SECRET = "alice-secret-0123"
FAILURES = "idnode_template_validation_failures_total"


def _admin(handle: str) -> dict[str, Any]:
    return {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": handle, "index": 300, "permissions": "111111111111"}},
    }


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    admin = await onboard_enterprise(database, "88.TEST")
    other = await onboard_enterprise(database, "88.OTHER")
    await put_record(database, "88.TEST/plain", [{"index": 1, "type": "URL", "data": "https://example.org/old"}])
    await put_record(
        database,
        "88.TEST/owned",
        [{"index": 1, "type": "URL", "data": "https://example.org/owned"}, _admin("88.TEST/alice")],
    )
    async with running_node(database, TRUSTING) as node:
        yield Site(node, admin, other)


def _cached(site: Site, handle: str) -> bool:
    return ascii_upper(handle) in site.node.app[CACHE].keys()  # noqa: SIM118 (a Cache, not a dict)


async def test_a_put_over_an_existing_record_the_cache_does_not_hold_replaces_it_with_200(site: Site) -> None:
    assert not _cached(site, "88.TEST/plain")
    status, body, _ = await site.put("88.TEST/plain", XYZ)
    assert (status, body["responseCode"]) == (200, 1)
    status, body, _ = await site.get("88.TEST/plain")
    assert status == 200
    assert _without_stamps(body["values"]) == _without_stamps(
        [{"ttl": 86400, "timestamp": "", **v} for v in XYZ["values"]]
    )
    status, body, _ = await site.get("88.TEST/plain/history", headers=site.auth)
    assert status == 200
    assert [entry["op"] for entry in body["history"]] == ["create", "update"]
    assert body["history"][1]["actor"] == "300:88.TEST/ADMIN"


async def test_a_put_with_overwrite_false_over_an_uncached_record_is_still_409(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/plain?overwrite=false", XYZ)
    assert (status, body["responseCode"]) == (409, 101)
    assert (await site.get("88.TEST/plain"))[1]["values"][0]["data"]["value"] == "https://example.org/old"


async def test_a_handle_admin_who_may_not_create_under_the_prefix_replaces_an_uncached_record(site: Site) -> None:
    alice = [{"index": 300, "type": "HS_SECKEY", "data": ALICE_SECRET}, _admin("88.TEST/alice")]
    assert (await site.put("88.TEST/alice", {"values": alice}))[0] == 201
    as_alice = secure_basic("300:88.TEST/alice", ALICE_SECRET)
    status, body, _ = await site.put("88.TEST/alice-new", {"values": PLAIN_VALUES}, headers=as_alice)
    assert (status, body["responseCode"]) == (403, 400)  # no create under the prefix for her
    assert not _cached(site, "88.TEST/owned")
    values = [{"index": 1, "type": "URL", "data": "https://example.org/by-alice"}, _admin("88.TEST/alice")]
    status, body, _ = await site.put("88.TEST/owned", {"values": values}, headers=as_alice)
    assert (status, body["responseCode"]) == (200, 1)
    status, body, _ = await site.get("88.TEST/owned")
    assert body["values"][0]["data"]["value"] == "https://example.org/by-alice"


async def test_a_created_record_is_not_built_into_the_cache_yet_is_read_back_right_after(site: Site) -> None:
    status, _, _ = await site.put("88.TEST/fresh", XYZ)
    assert status == 201
    assert not _cached(site, "88.TEST/fresh")
    status, body, _ = await site.get("88.TEST/fresh")
    assert status == 200
    assert [v["index"] for v in body["values"]] == [1, 2, 3, 100]
    assert _cached(site, "88.TEST/fresh")


async def test_a_put_of_a_cached_record_refreshes_it_in_the_cache(site: Site) -> None:
    assert (await site.get("88.TEST/plain"))[0] == 200
    status, _, _ = await site.put("88.TEST/plain", XYZ)
    assert status == 200
    entry = site.node.app[CACHE].get(ascii_upper("88.TEST/plain"))
    assert entry is not None
    assert [v.index for v in entry.values] == [1, 2, 3, 100]


async def test_a_batch_replace_of_a_cached_record_is_read_back_new_right_after(site: Site) -> None:
    assert (await site.get("88.TEST/plain"))[0] == 200
    assert _cached(site, "88.TEST/plain")
    items = [
        {
            "op": "replace",
            "handle": "88.TEST/plain",
            "values": [{"index": 1, "type": "URL", "data": "https://example.org/new"}],
        }
    ]
    status, body, _ = await site.node.call("POST", "/api/handles:batch", json={"items": items}, headers=site.auth)
    assert (status, [r["status"] for r in body["results"]]) == (200, [200])
    status, body, _ = await site.get("88.TEST/plain")
    assert body["values"][0]["data"]["value"] == "https://example.org/new"


async def test_a_registration_its_template_refuses_counts_one_template_failure(site: Site) -> None:
    status, _, _ = await site.node.call("PUT", "/api/templates/88.TEST/v1", json=TEMPLATE, headers=site.auth)
    assert status == 201
    missing_weight = [v for v in VALID if v["index"] != 2001]
    status, body, _ = await site.put("88.TEST/pump-1", {"values": missing_weight})
    assert (status, body["responseCode"]) == (400, 202)
    assert (await site.get("88.TEST/pump-1"))[0] == 404
    status, text, _ = await site.node.call("GET", "/metrics")
    assert status == 200
    counted = [line for line in text.splitlines() if line.startswith(FAILURES)]
    assert counted == [f"{FAILURES} 1.0"]
