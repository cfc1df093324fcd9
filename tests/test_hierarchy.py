"""The hierarchy over real nodes on 127.0.0.1, each with its own PostgreSQL database (issue 9).

The four-node topology of the issue: T (top level: homes 88, delegates 88.118 and 88.200 with their derived
prefixes), A (secondary: homes 88.118, upstream T, delegates 88.118.8 to E), E (enterprise node: homes
88.118.8, upstream A) and B (secondary: homes 88.200, upstream T). Every node resolves every node's handles,
single, batch and proxy, with the answer the authoritative node gives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
import pytest
import yarl
from aiohttp import web

from registry.delegations import delegate
from registry.store import Actor, RegistryStore
from resolver.app import FORWARDER, METRICS
from resolver.config import Settings
from resolver.forward_settings import HierarchySettings
from resolver.sites import own_site
from tests.support import (
    add_node_operator,
    behind_trusted_proxy,
    eventually,
    free_port,
    fresh_database,
    home,
    put_record,
    secure_basic,
    start_node,
)

ACTOR = Actor("test")
TTL = 1.0
"""forward_max_ttl of the topology: foreign answers are fetched again after a second."""


def _url_record(url: str, extra: str) -> list[dict[str, Any]]:
    return [
        {"index": 1, "type": "URL", "data": url},
        {"index": 2, "type": "DESC", "data": extra},
        {"index": 3, "type": "SECRET", "data": "not for anonymous readers", "permissions": "1100"},
    ]


RECORDS = {
    "T": ("88", "88/T-1"),
    "A": ("88.118", "88.118/A-1"),
    "E": ("88.118.8", "88.118.8/PUMP-2026-000123"),
    "B": ("88.200", "88.200/B-1"),
}


@dataclass
class Member:
    name: str
    dsn: str
    port: int
    settings: Settings
    runner: web.AppRunner | None = None
    app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner, _, self.app = await start_node(self.dsn, self.settings, port=self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@dataclass
class Topology:
    members: dict[str, Member]
    http: aiohttp.ClientSession
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    async def get(self, member: str, path: str, **kwargs: Any) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.http.get(self[member].url + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.read(), response

    async def post(self, member: str, path: str, body: Any) -> tuple[int, bytes]:
        async with self.http.post(self[member].url + path, json=body) as response:
            return response.status, await response.read()


def _settings(url: str, upstream: str | None) -> Settings:
    hierarchy = HierarchySettings(
        upstream=(upstream,) if upstream else (),
        advertise_url=url,
        forward_timeout=1.0,
        forward_min_ttl=0.1,
        forward_max_ttl=TTL,
        forward_negative_ttl=TTL,
    )
    return replace(Settings(), hierarchy=hierarchy)


async def _delegate(dsn: str, prefix: str, site: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await delegate(RegistryStore(pool), prefix, [site], derived=True, actor=ACTOR)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def topology(server_dsn: str, template: str) -> AsyncIterator[Topology]:
    async with contextlib.AsyncExitStack() as stack:
        ports = {name: free_port() for name in RECORDS}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        upstreams = {"T": None, "A": urls["T"], "E": urls["A"], "B": urls["T"]}
        members: dict[str, Member] = {}
        for name, (prefix, handle) in RECORDS.items():
            dsn = await stack.enter_async_context(fresh_database(server_dsn, template))
            await home(dsn, prefix)
            await put_record(dsn, handle, _url_record(f"https://{name.lower()}.example.cn/product", name))
            members[name] = Member(name, dsn, ports[name], _settings(urls[name], upstreams[name]))
        await _delegate(members["T"].dsn, "88.118", urls["A"])
        await _delegate(members["T"].dsn, "88.200", urls["B"])
        await _delegate(members["A"].dsn, "88.118.8", urls["E"])
        for member in members.values():
            await member.start()
            stack.push_async_callback(member.stop)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Topology(members, http)


@pytest.fixture
async def tree(server_dsn: str, template_database: str) -> AsyncIterator[Topology]:
    async with topology(server_dsn, template_database) as built:
        yield built


def _owner(handle: str) -> str:
    return next(name for name, (_, h) in RECORDS.items() if h == handle)


async def test_every_node_resolves_every_handle_as_its_home_answers_it(tree: Topology) -> None:
    for handle in (h for _, h in RECORDS.values()):
        for query in ("", "?type=URL", "?index=2&index=1", "?pretty"):
            status, expected, _ = await tree.get(_owner(handle), f"/api/handles/{handle}{query}")
            assert status == 200, (handle, expected)
            for member in tree.members:
                got_status, body, _ = await tree.get(member, f"/api/handles/{handle}{query}")
                assert (got_status, body) == (200, expected), (member, handle, query)
    assert b"not for anonymous readers" not in expected


async def test_forwarded_answers_are_counted_then_cached(tree: Topology) -> None:
    handle = RECORDS["E"][1]
    for _ in range(3):
        status, _, _ = await tree.get("B", f"/api/handles/{handle}")
        assert status == 200
    counts = tree["B"].app[METRICS].lookups["rest"]  # type: ignore[index]
    assert (counts.forwarded, counts.hit) == (1, 2)


async def test_batch_is_answered_as_single_look_ups_are(tree: Topology) -> None:
    handles = [h for _, h in RECORDS.values()] + ["88.118.8/NOPE", "88.200/NOPE", "88.999.1/NOPE", "bad"]
    for member in tree.members:
        status, body = await tree.post(member, "/api/resolve", {"handles": handles})
        assert status == 200, body
        results = orjson.loads(body)["results"]
        for handle, result in zip(handles, results, strict=True):
            _, single, _ = await tree.get(member, f"/api/handles/{handle}")
            assert result == orjson.loads(single), (member, handle)


async def test_proxy_redirects_to_the_foreign_record_url(tree: Topology) -> None:
    handle = RECORDS["B"][1]
    for member in tree.members:
        status, _, response = await tree.get(member, f"/{handle}")
        assert status == 302
        assert response.headers["Location"] == "https://b.example.cn/product"
        status, page, _ = await tree.get(member, f"/{handle}?noredirect")
        assert status == 200 and b"https://b.example.cn/product" in page


async def test_unknown_handles_and_prefixes_are_404_everywhere(tree: Topology) -> None:
    for member in tree.members:
        for handle in ("88.118.8/NOPE", "88.200/NOPE", "88.999.1/NOPE"):
            status, body, _ = await tree.get(member, f"/api/handles/{handle}")
            assert status == 404, (member, handle, body)
            assert body == b'{"responseCode":100,"message":"Handle not found","handle":"' + handle.encode() + b'"}'
    for member in "AEB":  # outside the tree: the top level says so, everyone below it answers 404
        status, body, _ = await tree.get(member, "/api/handles/77.5/X")
        assert (status, body[:18]) == (404, b'{"responseCode":10'), (member, body)
    status, body, _ = await tree.get("T", "/api/handles/77.5/X")
    assert status == 400 and b'"responseCode":301' in body


async def test_prefix_handles_refer_down_the_tree(tree: Topology) -> None:
    status, body, _ = await tree.get("T", "/api/handles/0.NA/88.118.8")
    assert status == 300 and b'"responseCode":303' in body and b"HS_SITE.PREFIX" in body
    _, authoritative, _ = await tree.get("A", "/api/handles/0.NA/88.118.8")
    status, body, _ = await tree.get("B", "/api/handles/0.NA/88.118.8")
    assert (status, body) == (200, authoritative)


async def test_a_write_at_the_home_reaches_other_nodes_within_the_ttl(tree: Topology) -> None:
    handle = RECORDS["E"][1]
    status, before, _ = await tree.get("B", f"/api/handles/{handle}")
    assert status == 200 and b"e.example.cn" in before
    await put_record(tree["E"].dsn, handle, _url_record("https://e.example.cn/v2", "E"))

    async def updated() -> bool:
        return b"e.example.cn/v2" in (await tree.get("B", f"/api/handles/{handle}"))[1]

    assert await eventually(updated, timeout=TTL + 2)


async def test_an_unreachable_home_is_served_stale_then_fresh_again(tree: Topology) -> None:
    handle = RECORDS["E"][1]
    _, before, _ = await tree.get("B", f"/api/handles/{handle}")
    await tree["E"].stop()
    await asyncio.sleep(TTL + 0.2)  # the cached answer expires while its home is away
    status, body, _ = await tree.get("B", f"/api/handles/{handle}")
    assert (status, body) == (200, before)
    assert tree["B"].app[METRICS].lookups["rest"].stale == 1  # type: ignore[index]
    status, body, response = await tree.get("B", "/api/handles/88.118.8/NEVER-SEEN")
    assert status == 503 and b"unreachable" in body and "Retry-After" in response.headers, body
    await put_record(tree["E"].dsn, handle, _url_record("https://e.example.cn/back", "E"))
    await tree["E"].start()

    async def fresh() -> bool:
        return b"e.example.cn/back" in (await tree.get("B", f"/api/handles/{handle}"))[1]

    assert await eventually(fresh, timeout=TTL + 3)


# --- misconfigured trees end in errors, never in hangs --------------------------------------------------------


@contextlib.asynccontextmanager
async def pair(server_dsn: str, template: str, *, mutual_upstreams: bool) -> AsyncIterator[Topology]:
    """Two nodes X and Y that home nothing of 99; with ``mutual_upstreams`` each is the other's upstream."""
    async with contextlib.AsyncExitStack() as stack:
        ports = {"X": free_port(), "Y": free_port()}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        members = {}
        for name, other in (("X", "Y"), ("Y", "X")):
            dsn = await stack.enter_async_context(fresh_database(server_dsn, template))
            await home(dsn, f"7{name}")
            upstream = urls[other] if mutual_upstreams else None
            members[name] = Member(name, dsn, ports[name], _settings(urls[name], upstream))
            stack.push_async_callback(members[name].stop)
        yield Topology(members, await stack.enter_async_context(aiohttp.ClientSession()))


async def test_a_delegation_loop_ends_in_an_error_within_the_referral_bound(
    server_dsn: str, template_database: str
) -> None:
    async with pair(server_dsn, template_database, mutual_upstreams=False) as nodes:
        await _delegate(nodes["X"].dsn, "99", nodes["Y"].url)  # X: 99 and 99.* live at Y
        await _delegate(nodes["Y"].dsn, "99", nodes["X"].url)  # Y: 99 and 99.* live at X
        for member in nodes.members.values():
            await member.start()
        started = asyncio.get_running_loop().time()
        for path in ("/api/handles/99/A", "/api/handles/99.5/A"):
            status, body, _ = await nodes.get("X", path)
            assert status == 502 and b'"responseCode":2' in body, (path, body)
        status, body, _ = await nodes.get("X", "/api/handles/0.NA/99.5")  # X holds that part of the tree: it refers
        assert status == 300 and b'"responseCode":303' in body
        assert asyncio.get_running_loop().time() - started < 3  # errors, not timeouts


async def test_two_nodes_forwarding_to_each_other_do_not_loop(server_dsn: str, template_database: str) -> None:
    async with pair(server_dsn, template_database, mutual_upstreams=True) as nodes:
        for member in nodes.members.values():
            await member.start()
        started = asyncio.get_running_loop().time()
        status, body, _ = await nodes.get("X", "/api/handles/55.1/A")
        assert status == 404 and b'"responseCode":100' in body, body
        status, _, _ = await nodes.get("X", "/api/handles/55.1/B", headers={"Idnode-Forwarded": "8"})
        assert status == 400  # forwarded max_referrals times already: answered as a stand-alone node would
        status, _, _ = await nodes.get("X", "/api/handles/55.1/C", headers={"Idnode-Forwarded": "x"})
        assert status == 400
        assert asyncio.get_running_loop().time() - started < 3


async def test_a_stand_alone_node_is_unchanged(node: Any) -> None:
    status, body, _ = await node.get("/api/handles/77.1/X")
    assert (status, body["responseCode"]) == (400, 301)
    status, body, _ = await node.get("/api/handles/0.NA/77.1")
    assert (status, body["responseCode"]) == (400, 301)


# --- site information and delegation through the API --------------------------------------------------------


async def test_api_site_describes_the_node_as_handle_net_does(tree: Topology) -> None:
    status, body, response = await tree.get("A", "/api/site")
    assert status == 200 and response.content_type == "application/json"
    site = orjson.loads(body)
    assert site["responseCode"] == 1
    assert list(site["site"]) == [
        "version",
        "protocolVersion",
        "serialNumber",
        "primarySite",
        "multiPrimary",
        "attributes",
        "servers",
    ]
    server = site["site"]["servers"][0]
    assert (server["address"], server["interfaces"][0]["protocol"], server["interfaces"][0]["port"]) == (
        "127.0.0.1",
        "HTTP",
        tree["A"].port,
    )
    status, body, _ = await tree.get("A", "/api/site", params={"x": "1"})
    assert status == 200
    async with tree.http.delete(tree["A"].url + "/api/site") as response:
        assert (response.status, response.headers["Allow"]) == (405, "GET, HEAD")  # as Handle.Net (transcript F9)
        assert await response.json() == {"responseCode": 4, "message": "Unknown HTTP API endpoint DELETE /api/site"}


async def test_an_operator_put_of_a_prefix_handle_delegates(server_dsn: str, template_database: str) -> None:
    async with pair(server_dsn, template_database, mutual_upstreams=False) as nodes:
        parent, child = nodes["X"], nodes["Y"]
        operator = await add_node_operator(parent.dsn, "7X/OPS")
        parent.settings = replace(parent.settings, registry=behind_trusted_proxy().registry)
        await home(child.dsn, "7X.1")
        await put_record(child.dsn, "7X.1/PART", _url_record("https://y.example.cn/part", "Y"))
        for member in nodes.members.values():
            await member.start()
        status, _, _ = await nodes.get("X", "/api/handles/7X.1/PART")
        assert status == 404  # 7X.1 lies under 7X, homed at X: X answers for it until it delegates
        site = {"format": "site", "value": own_site(child.url)}
        values = [{"index": 1, "type": "HS_SITE", "data": site}]
        async with nodes.http.put(
            parent.url + "/api/handles/0.NA/7X.1",
            json={"values": values},
            headers=secure_basic(operator.identity, operator.secret),
        ) as response:
            assert response.status == 201, await response.text()

        async def forwarded() -> bool:
            status, body, _ = await nodes.get("X", "/api/handles/7X.1/PART")
            return status == 200 and b"y.example.cn/part" in body

        assert await eventually(forwarded, timeout=3)
        async with nodes.http.delete(
            parent.url + "/api/handles/0.NA/7X.1", headers=secure_basic(operator.identity, operator.secret)
        ) as response:
            assert response.status == 200

        async def answered_here_again() -> bool:
            return (await nodes.get("X", "/api/handles/7X.1/PART"))[0] == 404

        assert await eventually(answered_here_again, timeout=3)


async def test_metrics_show_forwarding_by_site_and_outcome(tree: Topology) -> None:
    for _ in range(2):
        await tree.get("B", f"/api/handles/{RECORDS['E'][1]}")
    await tree.get("B", "/api/handles/88.118.8/NOPE")
    _, text, _ = await tree.get("B", "/metrics")
    exposition = text.decode()
    site_e = tree["E"].url
    assert f'idnode_forward_requests_total{{outcome="200",site="{site_e}"}} 1.0' in exposition
    assert f'idnode_forward_requests_total{{outcome="404",site="{site_e}"}} 1.0' in exposition
    assert 'idnode_lookups_total{api="rest",outcome="forwarded"} 1.0' in exposition
    assert 'idnode_lookups_total{api="rest",outcome="hit"} 1.0' in exposition
    assert "idnode_referrals_total 1.0" in exposition  # T referred 0.NA/88.118.8 to A once; the site is cached
    assert "idnode_site_cache_entries 1.0" in exposition
    assert "idnode_forward_duration_seconds_count" in exposition


async def test_a_batch_asks_each_site_once(tree: Topology) -> None:
    handles = [RECORDS["E"][1], "88.118.8/NOPE", "88.118.8/NOPE-2", RECORDS["A"][1], "0.NA/88.118.8", "88.118.8"]
    status, body = await tree.post("B", "/api/resolve", {"handles": handles})
    assert status == 200
    results = orjson.loads(body)["results"]
    assert [r["responseCode"] for r in results] == [1, 100, 100, 1, 1, 1]
    assert results[5]["handle"] == "88.118.8" and results[4]["values"] == results[5]["values"]
    requests = tree["B"].app[FORWARDER].metrics.requests  # type: ignore[index]
    assert sum(n for (site, _), n in requests.items() if site == tree["E"].url) == 1  # one POST /api/resolve


async def test_a_site_whose_first_server_is_down_is_reached_through_the_next(
    server_dsn: str, template_database: str
) -> None:
    async with pair(server_dsn, template_database, mutual_upstreams=False) as nodes:
        await put_record(nodes["Y"].dsn, "7Y/PART", _url_record("https://y.example.cn/part", "Y"))
        pool = await asyncpg.create_pool(nodes["X"].dsn, min_size=1, max_size=1)
        try:
            dead = f"http://127.0.0.1:{free_port()}"
            await delegate(RegistryStore(pool), "7Y", [dead, nodes["Y"].url], derived=False, actor=ACTOR)
        finally:
            await pool.close()
        for member in nodes.members.values():
            await member.start()
        status, body, _ = await nodes.get("X", "/api/handles/7Y/PART")
        assert status == 200 and b"y.example.cn/part" in body, body
        requests = nodes["X"].app[FORWARDER].metrics.requests  # type: ignore[index]
        site = f"{dead} {nodes['Y'].url}"
        assert (requests[(site, "unreachable")], requests[(site, "200")]) == (1, 1)


async def test_handles_with_any_characters_travel_intact(tree: Topology) -> None:
    handle = "88.118.8/泵 A?b#c%d+e/f"
    await put_record(tree["E"].dsn, handle, _url_record("https://e.example.cn/odd", "E"))
    path = "/api/handles/" + quote(handle, safe="/")
    _, expected, _ = await tree.get("E", path)
    assert b"e.example.cn/odd" in expected
    async with tree.http.get(yarl.URL(tree["B"].url + path, encoded=True)) as response:
        assert (response.status, await response.read()) == (200, expected)


async def test_concurrent_misses_share_one_walk_and_one_fetch(tree: Topology) -> None:
    handle = RECORDS["E"][1]
    answers = await asyncio.gather(*(tree.get("B", f"/api/handles/{handle}") for _ in range(20)))
    assert {status for status, _, _ in answers} == {200}
    requests = tree["B"].app[FORWARDER].metrics.requests  # type: ignore[index]
    assert sum(n for (site, _), n in requests.items() if site == tree["E"].url) == 1
    assert tree["B"].app[FORWARDER].metrics.referrals == 1  # type: ignore[index]
