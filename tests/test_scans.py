"""resolver/scans.py, registry/scan_stats.py, registry/recorder.py, registry/scans_api.py: scan statistics.

Exact counts after a known number of scans of every kind the proxy answers (the cached 302, the first 302 that
loads the record, ``?urlappend``, the values page, the home page's ``?hdl=`` form), none for errors; kept while the
database is away; summed over two worker processes; and each reader sees only its own prefixes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.paging import Page
from registry.recorder import ScanRollup, StatsRecorder
from registry.scan_stats import ScanStore
from registry.statistics import Scope, StatsStore
from resolver import links
from resolver.scans import ScanCounts
from resolver.tallies import PrefixTallies
from tests.support import (
    SECURE,
    behind_trusted_proxy,
    enterprises_and_operator,
    home,
    put_record,
    running_node,
    secure_basic,
    serve_node,
)

URL = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/"}}]
NO_URL = [{"index": 1, "type": "EMAIL", "data": {"format": "string", "value": "ops@example.com"}}]
TODAY = datetime.now(UTC).date()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    yield pool
    await pool.close()


def test_counts_are_bounded_and_overflow_into_per_prefix_buckets() -> None:
    counts = ScanCounts(max_handles=3, max_others=2)
    for key in ("88.A/P1", "88.A/P1", "88.A/P2", "0.NA/88.A"):
        counts.count(key)
    counts.count("88.A/P1", "page")  # a fourth pair: over the bound, into 88.A's bucket
    counts.count("88.A/P3")
    counts.count("88.B/X")  # a third (bucket, link type) pair would exceed max_others: (other)
    counts.count("88.B/Y")
    assert counts.drain() == {
        "88.A/P1": {"default": 2},
        "88.A/P2": {"default": 1},
        "0.NA/88.A": {"default": 1},
        "88.A/(other)": {"page": 1, "default": 1},
        "(other)": {"default": 2},
    }
    assert counts.drain() == {}
    counts.count("88.B/X")  # the bound is per drain
    assert counts.drain() == {"88.B/X": {"default": 1}}


async def _scan_rows(pool: asyncpg.Pool | str) -> dict[tuple[str, str, str], int]:
    con = await asyncpg.connect(pool) if isinstance(pool, str) else pool
    try:
        rows = await con.fetch("SELECT prefix_key, handle_key, link_type, scans FROM scan_stats WHERE day = $1", TODAY)
    finally:
        if isinstance(pool, str):
            await con.close()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


async def test_recorder_keeps_scans_while_the_database_fails_and_adds_them_once(
    database: str, pool: asyncpg.Pool
) -> None:
    broken = await asyncpg.create_pool(database, min_size=0, max_size=1)
    await broken.close()
    counts = ScanCounts()
    rollup = ScanRollup(counts, ScanStore(broken))
    recorder = StatsRecorder(StatsStore(pool), PrefixTallies(), 60, scans=rollup, today=lambda: TODAY)
    counts.count("88.A/P1")
    counts.count("88.A/P1", "page")
    assert await recorder.flush() is False
    counts.count("88.A/P1")
    assert await recorder.flush() is False
    rollup.store = ScanStore(pool)
    assert await recorder.flush() is True
    assert await recorder.flush() is True  # nothing pending: nothing added twice
    second = ScanCounts()  # another worker (or node) adds its own counts to the same rows
    second.count("0.NA/88.A", "page")
    second.count("88.A/P1")
    await StatsRecorder(StatsStore(pool), PrefixTallies(), 60, scans=ScanRollup(second, ScanStore(pool))).flush()
    assert await _scan_rows(pool) == {
        ("88.A", "88.A/P1", "default"): 3,
        ("88.A", "88.A/P1", "page"): 1,
        ("88.A", "0.NA/88.A", "page"): 1,
    }


async def _scans(node: Any, query: str, who: Any) -> tuple[int, Any]:
    status, body, _ = await node.get(f"/api/stats/scans{query}", headers=secure_basic(who.identity, who.secret))
    return status, body


async def _proxy(node: Any, path: str) -> int:
    status, _, _ = await node.get(path)
    return status


async def test_every_kind_of_answer_counts_once_errors_never_and_each_reader_sees_its_own(database: str) -> None:
    who = await enterprises_and_operator(database)
    await put_record(database, "88.A/P1", URL)
    await put_record(database, "88.A/p2", URL)
    await put_record(database, "88.A/MAIL", NO_URL)
    await put_record(database, "88.B/X", URL)
    async with running_node(database, behind_trusted_proxy()) as node:
        statuses = [await _proxy(node, "/88.A/P1") for _ in range(5)]  # a load, then 4 cached 302s
        statuses += [await _proxy(node, "/88.a/p1?noredirect") for _ in range(2)]
        statuses += [await _proxy(node, "/88.A/p2?urlappend=x"), await _proxy(node, "/?hdl=88.A/P2")]
        statuses += [await _proxy(node, "/88.A/MAIL"), await _proxy(node, "/hdl:88.B/X")]
        assert statuses == [302] * 5 + [200] * 2 + [302, 302, 200, 302]
        for path in ("/88.A/absent", "/88.A/%ZZ", "/88.A/absent?noredirect", "/qr/88.A/P1.svg", "/api/handles/88.A/P1"):
            assert await _proxy(node, path) in (200, 400, 404)

        status, body = await _scans(node, "", who["operator"])
        assert status == 200, body
        assert body == {
            "responseCode": 1,
            "from": TODAY.isoformat(),
            "to": TODAY.isoformat(),
            "prefix": None,
            "totals": {"scans": 11, "linkTypes": {"default": 8, "page": 3}},
            "days": [{"day": TODAY.isoformat(), "scans": 11, "linkTypes": {"default": 8, "page": 3}}],
            "handleCount": 4,
            "handles": [
                {"handle": "88.A/P1", "scans": 7, "linkTypes": {"default": 5, "page": 2}},
                {"handle": "88.A/p2", "scans": 2, "linkTypes": {"default": 2}},
                {"handle": "88.A/MAIL", "scans": 1, "linkTypes": {"page": 1}},
                {"handle": "88.B/X", "scans": 1, "linkTypes": {"default": 1}},
            ],
            "page": 0,
            "pageSize": 100,
        }
        status, body = await _scans(node, "", who["A"])
        assert (body["totals"]["scans"], body["handleCount"]) == (10, 3)
        status, body = await _scans(node, "?prefix=88.b", who["B"])
        assert [h["handle"] for h in body["handles"]] == ["88.B/X"]
        status, body = await _scans(node, "?prefix=88.B", who["A"])
        assert (status, body["responseCode"]) == (403, 400) and "88.B" in body["message"]
        status, body = await _scans(node, "?page=1&pageSize=2", who["operator"])
        assert [h["handle"] for h in body["handles"]] == ["88.A/MAIL", "88.B/X"] and body["handleCount"] == 4
        yesterday = TODAY - timedelta(days=1)
        status, body = await _scans(node, f"?from={yesterday}&to={yesterday}", who["operator"])
        assert (status, body["totals"], body["handles"]) == (200, {"scans": 0, "linkTypes": {}}, [])
        for query, word in (
            ("?pageSize=0", "pageSize"),
            ("?pageSize=1001", "pageSize"),
            ("?page=x", "page"),
            ("?page=-1", "page"),
            ("?from=2026-02-30", "from"),
        ):
            status, body = await _scans(node, query, who["operator"])
            assert (status, body["responseCode"]) == (400, 4) and word in body["message"], query
        status, body, _ = await node.get("/api/stats/scans", headers=SECURE)
        assert (status, body["responseCode"]) == (401, 402)
        status, body, _ = await node.get("/api/stats/scans")
        assert (status, body["responseCode"]) == (403, 402)
        await _proxy(node, "/88.A/P1")  # after the last flush: the shutdown's flush keeps it
    assert (await _scan_rows(database))[("88.A", "88.A/P1", "default")] == 6


PRODUCT = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/pump"}},
    {
        "index": 2,
        "type": "10320/loc",
        "data": {
            "format": "string",
            "value": links.render(
                [
                    links.Link("gs1:pip", "https://example.com/pump", default=True),
                    links.Link("gs1:safetyInfo", "https://example.com/sds.pdf"),
                ]
            ),
        },
    },
]


async def test_a_product_records_answers_count_by_what_was_asked(database: str) -> None:
    await home(database, "88.A")
    await put_record(database, "88.A/PUMP", PRODUCT)
    async with running_node(database, behind_trusted_proxy()) as node:
        asked = [
            ("/88.A/PUMP", {}, 302),
            ("/88.A/PUMP", {}, 302),
            ("/88.A/PUMP?linkType=gs1:safetyInfo", {}, 302),
            ("/88.A/PUMP?linkType=linkset", {}, 200),
            ("/88.A/PUMP", {"Accept": "application/json"}, 200),
            ("/88.A/PUMP", {"Accept": "application/ld+json"}, 200),
            ("/88.A/PUMP?linkType=gs1:recallStatus", {}, 404),  # no such link: not a scan
        ]
        for path, headers, expected in asked:
            status, _, _ = await node.get(path, headers=headers)
            assert status == expected, path
    assert await _scan_rows(database) == {
        ("88.A", "88.A/PUMP", "default"): 2,
        ("88.A", "88.A/PUMP", "gs1:safetyInfo"): 1,
        ("88.A", "88.A/PUMP", "linkset"): 1,
        ("88.A", "88.A/PUMP", "data"): 2,
    }


K = 40


async def _fresh_get(url: str) -> tuple[int, str]:
    """One GET over a connection of its own, so SO_REUSEPORT may pick either worker."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


def _proxy_lookups(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "idnode_lookups_total" and sample.labels["api"] == "proxy"
    )


async def test_two_workers_count_exactly_in_interval_roll_ups_and_at_shutdown(database: str) -> None:
    await home(database, "88.TEST")
    for n in range(4):
        await put_record(database, f"88.TEST/W{n}", URL)
    with serve_node(database, "--workers", "2", "--stats-interval", "0.3") as node:
        paths = [f"/88.TEST/W{n % 4}" for n in range(K)] + ["/88.TEST/W0?noredirect"] * 4
        statuses = await asyncio.gather(*(_fresh_get(node.url + path) for path in paths))
        assert sorted({status for status, _ in statuses}) == [200, 302]
        per_worker = [_proxy_lookups((await _fresh_get(url))[1]) for url in node.local_urls]
        assert sum(per_worker) == K + 4 and all(per_worker), f"one worker answered every scan: {per_worker}"

        async def rolled_up() -> bool:
            return sum((await _scan_rows(database)).values()) == K + 4

        deadline = asyncio.get_running_loop().time() + 10
        while not await rolled_up():  # each worker's own interval roll-up, while the node runs
            assert asyncio.get_running_loop().time() < deadline, await _scan_rows(database)
            await asyncio.sleep(0.1)
        await asyncio.gather(*(_fresh_get(node.url + "/88.TEST/W1") for _ in range(6)))
    rows = await _scan_rows(database)  # six more, stored by a roll-up or the workers' flush at shutdown
    assert rows == {
        ("88.TEST", "88.TEST/W0", "default"): K // 4,
        ("88.TEST", "88.TEST/W0", "page"): 4,
        ("88.TEST", "88.TEST/W1", "default"): K // 4 + 6,
        ("88.TEST", "88.TEST/W2", "default"): K // 4,
        ("88.TEST", "88.TEST/W3", "default"): K // 4,
    }


async def test_days_without_scans_are_left_out_and_link_types_are_open(pool: asyncpg.Pool) -> None:
    await ScanStore(pool).add(date(2026, 1, 2), {"88.A/P1": {"default": 2}})
    await ScanStore(pool).add(date(2026, 1, 4), {"88.A/P1": {"gs1:pip": 1}})
    report = await ScanStore(pool).report(
        date(2026, 1, 1), date(2026, 1, 5), scope=Scope("88.A"), prefix=None, page=Page(0, 10)
    )
    assert [d["day"] for d in report.days] == ["2026-01-02", "2026-01-04"]
    assert report.totals == {"default": 2, "gs1:pip": 1}
    assert report.handles == [{"handle": "88.A/P1", "scans": 3, "linkTypes": {"default": 2, "gs1:pip": 1}}]


def test_scans_past_the_table_bound_are_counted_exactly_in_overflow_buckets() -> None:
    scans = ScanCounts(max_handles=2, max_others=1)
    for key in ["88.A/1", "88.A/2", "88.A/1", "88.A/3", "88.A/4", "88.A/3", "88.B/1"]:
        scans.count(key)
    scans.count("88.A/1", "gs1:pip")
    assert scans.drain() == {  # a new (handle, link type) pair takes a bucket too: gs1:pip's goes to (other)
        "88.A/1": {"default": 2},
        "88.A/2": {"default": 1},
        "88.A/(other)": {"default": 3},
        "(other)": {"default": 1, "gs1:pip": 1},
    }
    scans.count("88.A/4")
    assert scans.drain() == {"88.A/4": {"default": 1}}
