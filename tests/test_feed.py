"""registry/feed.py and schema 0007: the change feed over real HTTP and PostgreSQL.

Covers what a follower (the mirror to come) relies on: every kind of change with actor and time, paging, long
polls that return as soon as a change commits, precise errors, operator-only access, pruning, and above all that
no committed change is skipped or misordered: a transaction that commits after a later-numbered one was served
(the out-of-order test), and many writers on overlapping handles in several connections and processes, whose
final state a follower must reproduce record by record.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from registry.enterprises import Credentials
from resolver.identifiers import ascii_upper
from tests.support import (
    REPO,
    Node,
    add_node_operator,
    basic,
    behind_trusted_proxy,
    home,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)
from tests.test_cli import idnode

URL = [{"index": 1, "type": "URL", "data": "https://example.org/a"}]
URL2 = [{"index": 1, "type": "URL", "data": "https://example.org/b"}]
STORED = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/x"}}]


@dataclass
class Feed:
    node: Node
    operator: dict[str, str]
    admin: Credentials

    async def get(self, query: str = "", headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, body, _ = await self.node.get(
            "/api/changes" + query, headers=self.operator if headers is None else headers
        )
        return status, body

    async def all_after(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Every entry after ``after``, page by page."""
        out: list[dict[str, Any]] = []
        while True:
            status, body = await self.get(f"?after={after}&limit={limit}")
            assert status == 200, body
            out += body["changes"]
            if not body["changes"]:
                return out
            after = body["next"]

    async def put(self, handle: str, values: list[dict[str, Any]]) -> int:
        headers = secure_basic(self.admin.identity, self.admin.secret)
        status, _, _ = await self.node.call("PUT", f"/api/handles/{handle}", json={"values": values}, headers=headers)
        return status

    async def delete(self, handle: str) -> int:
        headers = secure_basic(self.admin.identity, self.admin.secret)
        status, _, _ = await self.node.call("DELETE", f"/api/handles/{handle}", headers=headers)
        return status


@pytest.fixture
async def feed(database: str) -> AsyncIterator[Feed]:
    operator = await add_node_operator(database, "99.OPS/OPERATOR")
    admin = await onboard_enterprise(database, "88.A")
    async with running_node(database, behind_trusted_proxy()) as node:
        yield Feed(node, secure_basic(operator.identity, operator.secret), admin)


def _handles(entries: list[dict[str, Any]], key: str) -> list[tuple[str, int, Any]]:
    return [(e["op"], e["version"], e["values"]) for e in entries if e["kind"] == "handle" and e["key"] == key]


async def test_every_kind_of_change_with_actor_and_time(feed: Feed) -> None:
    start = (await feed.get())[1]["newest"]
    assert await feed.put("88.A/x", URL) == 201
    assert await feed.put("88.A/x", URL2) == 200
    assert await feed.delete("88.A/x") == 200
    assert await feed.put("88.A/x", URL) == 201
    template = {"items": [{"idIndex": 2000, "idType": "NAME", "required": False}]}
    headers = secure_basic(feed.admin.identity, feed.admin.secret)
    status, _, _ = await feed.node.call("PUT", "/api/templates/88.A/v1", json=template, headers=headers)
    assert status == 201
    await home(feed.node.dsn, "77")
    status, body, _ = await feed.node.call("POST", "/api/prefixes/77.B", json={"name": "B Co"}, headers=feed.operator)
    assert status == 201, body
    entries = await feed.all_after(start)

    assert [e["seq"] for e in entries] == list(range(start + 1, start + 1 + len(entries)))  # numbered without gaps
    x = _handles(entries, "88.A/X")
    assert [op for op, _, _ in x] == ["create", "update", "delete", "create"]
    assert [v[0]["data"]["value"] for _, _, v in x if v] == [
        "https://example.org/a",
        "https://example.org/b",
        "https://example.org/a",
    ]
    assert x[2][2] is None
    versions = [version for _, version, _ in x]
    assert versions == sorted(versions) and len(set(versions)) == 4  # re-create does not reuse a version
    mine = [e for e in entries if e["kind"] == "handle" and e["key"] == "88.A/X"]
    assert {e["actor"] for e in mine} == {"300:88.A/ADMIN"} and all(e["handle"] == "88.A/x" for e in mine)
    assert all(e["at"].endswith("+00:00") for e in entries)

    (tpl,) = [e for e in entries if e["kind"] == "template"]
    assert tpl["op"] == "create" and tpl["key"] == "88.A v1" and tpl["data"]["version"] == "v1"
    assert tpl["actor"].startswith("300:88.A/ADMIN ")  # a template's created_by: identity and request id
    kinds = [(e["kind"], e["op"], e["key"]) for e in entries if e["kind"] in ("prefix", "enterprise")]
    assert kinds == [("prefix", "create", "77"), ("prefix", "create", "77.B"), ("enterprise", "create", "77.B")]
    assert ("handle", "create", "77.B/ADMIN") in [(e["kind"], e["op"], e["key"]) for e in entries]
    assert all(e["actor"] == "300:99.OPS/OPERATOR" for e in entries if e["key"].startswith("77.B"))

    status, body, _ = await feed.node.call("DELETE", "/api/prefixes/77.B?force=true", headers=feed.operator)
    assert status == 200, body
    gone = await feed.all_after(entries[-1]["seq"])
    assert {(e["kind"], e["op"], e["key"]) for e in gone} >= {
        ("prefix", "delete", "77.B"),
        ("enterprise", "delete", "77.B"),
        ("handle", "delete", "77.B/ADMIN"),
    }
    assert all(e.get("values", e.get("data")) is None for e in gone)


async def test_operators_and_their_identities_and_earlier_setup_are_in_the_feed(feed: Feed) -> None:
    entries = await feed.all_after(0)
    keys = [(e["kind"], e["op"], e["key"]) for e in entries]
    assert ("operator", "create", "300:99.OPS/OPERATOR") in keys
    assert ("handle", "create", "99.OPS/OPERATOR") in keys  # the identity's record, with its (hashed) secret
    assert keys.index(("prefix", "create", "88.A")) < keys.index(("enterprise", "create", "88.A"))


async def test_paging_with_limit_and_next(feed: Feed) -> None:
    for i in range(7):
        assert await feed.put(f"88.A/p{i}", URL) == 201
    whole = await feed.all_after(0, limit=1000)
    paged = await feed.all_after(0, limit=3)
    assert paged == whole
    status, body = await feed.get("?after=2&limit=3")
    assert status == 200 and [e["seq"] for e in body["changes"]] == [3, 4, 5] and body["next"] == 5
    assert body["oldest"] == 1 and body["newest"] == whole[-1]["seq"]
    status, body = await feed.get(f"?after={whole[-1]['seq']}")
    assert body["changes"] == [] and body["next"] == whole[-1]["seq"]


async def test_a_long_poll_returns_as_soon_as_a_change_commits(feed: Feed, database: str) -> None:
    newest = (await feed.get())[1]["newest"]
    waiting = asyncio.create_task(feed.get(f"?after={newest}&wait=20"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await put_record(database, "88.A/late", STORED)
    committed = time.monotonic()
    status, body = await asyncio.wait_for(waiting, 10)
    elapsed = time.monotonic() - committed
    assert status == 200 and [e["key"] for e in body["changes"]] == ["88.A/LATE"]
    assert elapsed < 0.5, elapsed  # woken by the commit's NOTIFY, not by the 1 s re-check or the 20 s limit

    started = time.monotonic()
    status, body = await feed.get(f"?after={body['next']}&wait=0.6")
    elapsed = time.monotonic() - started
    assert status == 200 and body["changes"] == [] and 0.55 <= elapsed < 3.0, elapsed


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?after=-1", "after must be an integer from 0"),
        ("?after=x", "after must be an integer from 0"),
        ("?limit=0", "limit must be an integer from 1 to 10000"),
        ("?limit=10001", "limit must be an integer from 1 to 10000"),
        ("?wait=31", "wait must be a number from 0 to 30"),
        ("?wait=soon", "wait must be a number from 0 to 30"),
        ("?wait=nan", "wait must be a number from 0 to 30"),
    ],
)
async def test_bad_parameters_are_400_rc_4_naming_them(feed: Feed, query: str, message: str) -> None:
    status, body = await feed.get(query)
    assert status == 400 and body["responseCode"] == 4 and message in body["message"]


async def test_only_operators_over_a_secure_channel(feed: Feed) -> None:
    status, body = await feed.get(headers={"X-Forwarded-Proto": "https"})
    assert status == 401 and body["responseCode"] == 402
    operator = feed.operator["Authorization"]
    status, body = await feed.get(headers={"Authorization": operator})  # plain HTTP
    assert status == 403 and body["responseCode"] == 402
    status, body = await feed.get(headers=secure_basic(feed.admin.identity, feed.admin.secret))
    assert status == 403 and body["responseCode"] == 401 and "operator" in body["message"]
    status, body = await feed.get(headers=basic("x", "y"))
    assert status == 403


async def test_after_beyond_the_newest_is_409(feed: Feed) -> None:
    newest = (await feed.get())[1]["newest"]
    status, body = await feed.get(f"?after={newest + 1}")
    assert status == 409 and body["responseCode"] == 4 and f"beyond the newest change {newest}" in body["message"]


async def test_pruned_changes_are_410_and_later_ones_still_served(feed: Feed, database: str, tmp_path: Path) -> None:
    assert await feed.put("88.A/old", URL) == 201
    newest = (await feed.get())[1]["newest"]
    result = idnode(database, tmp_path, "feed", "prune", "--older-than", "0")
    assert result.returncode == 0, result.stderr
    assert f"the oldest kept is number {newest + 1}" in result.stdout
    status, body = await feed.get("?after=0")
    assert status == 410 and body["responseCode"] == 4 and f"oldest kept is {newest + 1}" in body["message"]
    assert await feed.put("88.A/new", URL) == 201
    status, body = await feed.get(f"?after={newest}")
    assert status == 200 and [e["key"] for e in body["changes"]] == ["88.A/NEW"] and body["oldest"] == newest + 1
    assert idnode(database, tmp_path, "feed", "prune", "--older-than", "-1").returncode == 2


async def _insert(con: asyncpg.Connection, handle: str) -> None:
    await con.execute(
        'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb)',
        ascii_upper(handle),
        handle,
        ascii_upper(handle.split("/")[0]),
        orjson.dumps(STORED).decode(),
    )


async def test_a_change_committed_after_a_later_numbered_one_is_not_skipped(feed: Feed, database: str) -> None:
    after = (await feed.get())[1]["newest"]
    a = await asyncpg.connect(database)
    b = await asyncpg.connect(database)
    try:
        tx = a.transaction()
        await tx.start()
        await _insert(a, "88.A/first")  # takes the lower history number and stays open
        await _insert(b, "88.A/second")  # commits at once, with a higher number
        first_seq = await a.fetchval("SELECT seq FROM handle_history WHERE handle_key = '88.A/FIRST'")
        second_seq = await b.fetchval("SELECT seq FROM handle_history WHERE handle_key = '88.A/SECOND'")
        assert first_seq < second_seq  # so a follower of "history seq > after" would have moved past 'first'

        status, body = await feed.get(f"?after={after}")
        assert status == 200 and [e["key"] for e in body["changes"]] == ["88.A/SECOND"]
        after = body["next"]
        await tx.commit()
        status, body = await feed.get(f"?after={after}&wait=5")
        assert status == 200 and [e["key"] for e in body["changes"]] == ["88.A/FIRST"]
        assert body["changes"][0]["seq"] == after + 1
    finally:
        await a.close()
        await b.close()


async def test_two_changes_of_one_record_keep_the_order_their_row_lock_gave(feed: Feed, database: str) -> None:
    await put_record(database, "88.A/contested", STORED)
    after = (await feed.get())[1]["newest"]
    a = await asyncpg.connect(database)
    b = await asyncpg.connect(database)
    update = """UPDATE handles SET "values" = jsonb_set("values", '{0,data,value}', to_jsonb($1::text))
                WHERE handle_key = '88.A/CONTESTED'"""
    try:
        tx = a.transaction()
        await tx.start()
        await a.execute(update, "by-a")
        blocked = asyncio.create_task(b.execute(update, "by-b"))  # waits for a's row lock
        await asyncio.sleep(0.2)
        assert not blocked.done()
        await tx.commit()
        await blocked
        entries = await feed.all_after(after)
        assert [e["values"][0]["data"]["value"] for e in entries] == ["by-a", "by-b"]
    finally:
        await a.close()
        await b.close()


_WRITER = """
import asyncio, random, sys, asyncpg, orjson
async def main(dsn, seed, seconds):
    rnd = random.Random(seed)
    con = await asyncpg.connect(dsn)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        key = f"88.A/K{rnd.randrange(12)}"
        values = orjson.dumps([{"index": 1, "type": "URL",
                                "data": {"format": "string", "value": f"v{seed}-{rnd.random()}"}}]).decode()
        tx = con.transaction()
        await tx.start()
        try:
            for _ in range(rnd.randint(1, 3)):
                if rnd.random() < 0.3:
                    await con.execute("DELETE FROM handles WHERE handle_key = $1", key)
                else:
                    await con.execute(
                        'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $1, $2, $3::jsonb) '
                        'ON CONFLICT (handle_key) DO UPDATE SET "values" = EXCLUDED."values"', key, "88.A", values)
                key = f"88.A/K{rnd.randrange(12)}"
            await asyncio.sleep(rnd.random() * 0.01)  # commit later than others that started after
        except asyncpg.DeadlockDetectedError:  # keys are taken in random order: PostgreSQL aborts one of two
            await tx.rollback()
            continue
        if rnd.random() < 0.1:
            await tx.rollback()
        else:
            await tx.commit()
    await con.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


async def test_a_follower_under_concurrent_writers_ends_with_the_exact_state(feed: Feed, database: str) -> None:
    seconds = 3.0
    processes = [
        subprocess.Popen([sys.executable, "-c", _WRITER, database, str(seed), str(seconds)], cwd=REPO)
        for seed in (101, 102)
    ]
    state: dict[str, tuple[Any, int]] = {}
    applied = 0
    reads_while_writing = 0  # answers with changes received before the writers were done

    async def follow(until: asyncio.Event) -> None:
        nonlocal applied, reads_while_writing
        after = 0
        while True:
            status, body = await feed.get(f"?after={after}&limit=50&wait=0.5")
            assert status == 200, body
            for e in body["changes"]:
                assert e["seq"] == after + 1  # nothing skipped, nothing repeated
                after = e["seq"]
                if e["kind"] != "handle":
                    continue
                if e["key"] in state:  # versions grow along the feed for one key
                    assert e["version"] > state[e["key"]][1], e
                if e["op"] == "delete":
                    state.pop(e["key"], None)
                else:
                    state[e["key"]] = (e["values"], e["version"])
                applied += 1
            reads_while_writing += bool(body["changes"]) and not until.is_set()
            if until.is_set() and not body["changes"]:
                return

    async def write_in_connection(seed: int) -> None:
        ns: dict[str, Any] = {}
        exec(_WRITER.rsplit("asyncio.run", 1)[0], ns)  # the same writer, in this process
        await ns["main"](database, seed, seconds)

    done = asyncio.Event()
    follower = asyncio.create_task(follow(done))
    await asyncio.gather(*(write_in_connection(seed) for seed in range(4)))
    for process in processes:
        assert await asyncio.to_thread(process.wait, 60) == 0
    done.set()
    await asyncio.wait_for(follower, 60)

    con = await asyncpg.connect(database)
    try:
        rows = await con.fetch("SELECT handle_key, \"values\"::text, version FROM handles WHERE prefix_key = '88.A'")
    finally:
        await con.close()
    source = {r[0]: (orjson.loads(r[1]), r[2]) for r in rows}
    mirrored = {k: v for k, v in state.items() if k.startswith("88.A/K")}
    assert {k: v for k, v in source.items() if k.startswith("88.A/K")} == mirrored
    assert applied > 50 and reads_while_writing >= 5, (applied, reads_while_writing)  # really concurrent
