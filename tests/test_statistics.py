"""registry/statistics.py, registry/recorder.py, registry/stats_api.py: exact daily counts per prefix, kept in
PostgreSQL across restarts, each reader seeing only what it may."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from registry.app import install
from registry.recorder import StatsRecorder
from registry.statistics import StatsStore
from resolver.app import Core
from resolver.tallies import PrefixTallies
from tests.support import (
    SECURE,
    behind_trusted_proxy,
    delete_record,
    enterprises_and_operator,
    put_record,
    running_node,
    secure_basic,
)
from tests.test_cli import idnode

URL = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/"}}]
TODAY = datetime.now(UTC).date()
OTHER_URL = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/"}}]
ZERO_LOOKUPS = {"hit": 0, "miss": 0, "not_found": 0, "forwarded": 0, "stale": 0, "error": 0}


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    yield pool
    await pool.close()


def _capturing(cores: list[Core]) -> Any:
    """The registry extension, remembering the ``Core`` it was given (its tallies stand in for look-ups)."""

    async def extend(core: Core) -> Any:
        cores.append(core)
        return await install(core)

    return [extend]


async def test_recorder_adds_drained_counts_and_keeps_them_while_the_database_fails(
    database: str, pool: asyncpg.Pool
) -> None:
    tallies = PrefixTallies()
    broken = await asyncpg.create_pool(database, min_size=0, max_size=1)
    await broken.close()
    recorder = StatsRecorder(StatsStore(broken), tallies, 60, today=lambda: date(2026, 1, 2))
    tallies.of("88.118/A").hit += 3
    tallies.of("0.NA/88.118").not_found += 1
    assert await recorder.flush() is False
    tallies.of("88.118/B").hit += 2
    assert await recorder.flush() is False

    recorder.store = StatsStore(pool)
    assert await recorder.flush() is True
    assert await recorder.flush() is True  # nothing pending: nothing added twice
    days = await StatsStore(pool).days(date(2026, 1, 1), date(2026, 1, 3))
    assert [(d.day, d.prefix, d.lookups) for d in days] == [
        (date(2026, 1, 2), "88.118", {**ZERO_LOOKUPS, "hit": 5, "not_found": 1})
    ]

    second = StatsRecorder(StatsStore(pool), PrefixTallies(), 60, today=lambda: date(2026, 1, 2))
    second.tallies.of("88.118/C").miss += 4
    await second.flush()  # another worker (or node) adds its own counts to the same row
    days = await StatsStore(pool).days(date(2026, 1, 2), date(2026, 1, 2))
    assert days[0].lookups == {**ZERO_LOOKUPS, "hit": 5, "miss": 4, "not_found": 1}


async def _stats(node: Any, query: str, who: Any) -> tuple[int, Any]:
    status, body, _ = await node.get(f"/api/stats{query}", headers=secure_basic(who.identity, who.secret))
    return status, body


async def test_stats_show_exact_counts_survive_a_restart_and_respect_the_enterprise_wall(database: str) -> None:
    who = await enterprises_and_operator(database)
    settings = behind_trusted_proxy()
    cores: list[Core] = []
    async with running_node(database, settings, extensions=_capturing(cores)) as node:
        headers = {**secure_basic(who["A"].identity, who["A"].secret), "Content-Type": "application/json"}
        for n in range(3):
            status, _, _ = await node.call("PUT", f"/api/handles/88.A/P{n}", json={"values": URL}, headers=headers)
            assert status == 201
        status, _, _ = await node.call("PUT", "/api/handles/88.A/P0", json={"values": OTHER_URL}, headers=headers)
        assert status == 200
        status, _, _ = await node.call("DELETE", "/api/handles/88.A/P2", headers=headers)
        assert status == 200
        await put_record(database, "88.B/X", URL)  # plain SQL counts too: history is written by triggers
        await delete_record(database, "88.B/X")
        tallies = cores[0].tallies
        tallies.of("88.A/P0").hit += 7
        tallies.of("88.A/NOPE").not_found += 2
        tallies.of("88.B/X").miss += 1

        status, body = await _stats(node, "", who["operator"])
        assert status == 200, body
        assert body == {
            "responseCode": 1,
            "from": TODAY.isoformat(),
            "to": TODAY.isoformat(),
            "days": [
                {
                    "day": TODAY.isoformat(),
                    "prefix": "88.A",  # 0.NA/88.A and 88.A/ADMIN (onboarding) count here: 2 + 3 creates
                    "lookups": {**ZERO_LOOKUPS, "hit": 7, "not_found": 2},
                    "registrations": {"create": 5, "update": 1, "delete": 1},
                },
                {
                    "day": TODAY.isoformat(),
                    "prefix": "88.B",
                    "lookups": {**ZERO_LOOKUPS, "miss": 1},
                    "registrations": {"create": 3, "update": 0, "delete": 1},
                },
                {
                    "day": TODAY.isoformat(),
                    "prefix": "99.OPS",
                    "lookups": ZERO_LOOKUPS,
                    "registrations": {"create": 1, "update": 0, "delete": 0},
                },
            ],
        }
        tallies.of("88.A/P1").hit += 1  # counted after the last flush: the cleanup's flush stores it
        first = body

    async with running_node(database, settings) as node:
        status, body = await _stats(node, f"?from={TODAY - timedelta(days=3)}&to={TODAY}", who["operator"])
        assert status == 200
        assert body["days"][0]["lookups"]["hit"] == 8
        assert body["days"][1:] == first["days"][1:]

        status, body = await _stats(node, "", who["A"])
        assert [row["prefix"] for row in body["days"]] == ["88.A"]
        status, body = await _stats(node, "?prefix=88.b", who["operator"])
        assert [row["prefix"] for row in body["days"]] == ["88.B"]
        status, body = await _stats(node, "?prefix=88.B", who["A"])
        assert (status, body["responseCode"]) == (403, 400)
        assert "88.B" in body["message"]
        status, body = await _stats(node, "?node=88.118", who["A"])
        assert (status, body["responseCode"]) == (403, 401)

        status, body, _ = await node.get("/api/stats", headers=SECURE)  # anonymous on a secure channel
        assert (status, body["responseCode"]) == (401, 402)
        status, body, _ = await node.get("/api/stats")  # and on plain HTTP
        assert (status, body["responseCode"]) == (403, 402)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?from=2026-13-01", "from must be a date as YYYY-MM-DD, got '2026-13-01'"),
        ("?to=yesterday", "to must be a date as YYYY-MM-DD, got 'yesterday'"),
        ("?from=2026-02-02&to=2026-02-01", "from (2026-02-02) is after to (2026-02-01)"),
        ("?from=2025-01-01&to=2026-01-02", "At most 366 days per query; 2025-01-01 to 2026-01-02 is 367"),
    ],
)
async def test_bad_ranges_are_refused_precisely(database: str, query: str, message: str) -> None:
    who = await enterprises_and_operator(database)
    async with running_node(database, behind_trusted_proxy()) as node:
        status, body = await _stats(node, query, who["operator"])
    assert (status, body) == (400, {"responseCode": 4, "message": message})


async def test_a_range_of_366_days_is_answered(database: str) -> None:
    who = await enterprises_and_operator(database)
    async with running_node(database, behind_trusted_proxy()) as node:
        status, body = await _stats(node, "?from=2025-01-01&to=2026-01-01", who["operator"])
    assert (status, body) == (200, {"responseCode": 1, "from": "2025-01-01", "to": "2026-01-01", "days": []})


async def test_idnode_stats_reads_the_database(database: str, tmp_path: Path) -> None:
    await enterprises_and_operator(database)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        await StatsStore(pool).add_lookups(TODAY, {"88.A": {**ZERO_LOOKUPS, "hit": 4}})
    finally:
        await pool.close()
    result = idnode(database, tmp_path, "stats", "--prefix", "88.A", "--json")
    assert result.returncode == 0, result.stderr
    assert '"lookups":{"hit":4,' in result.stdout
    assert '"registrations":{"create":2,"update":0,"delete":0}' in result.stdout
    table = idnode(database, tmp_path, "stats", "--from", "2026-02-30")
    assert (table.returncode, table.stderr.strip()) == (
        2,
        "idnode: from must be a date as YYYY-MM-DD, got '2026-02-30'",
    )
    table = idnode(database, tmp_path, "stats")
    assert table.stdout.splitlines()[0].split("\t")[:3] == ["day", "prefix", "hit"]
    assert f"{TODAY}\t88.A\t4\t0\t0\t0\t0\t0\t2\t0\t0" in table.stdout.splitlines()


async def test_lookups_over_http_are_counted_exactly(database: str) -> None:
    who = await enterprises_and_operator(database)
    await put_record(database, "88.A/CACHED", URL)
    async with running_node(database, behind_trusted_proxy()) as node:
        for _ in range(5):
            status, _, _ = await node.get("/api/handles/88.A/CACHED")
            assert status == 200
        for n in range(3):
            status, _, _ = await node.get(f"/api/handles/88.A/UNKNOWN-{n}")
            assert status == 404
        status, body = await _stats(node, "?prefix=88.A", who["operator"])
    assert body["days"][0]["lookups"] == {**ZERO_LOOKUPS, "hit": 4, "miss": 1, "not_found": 3}
