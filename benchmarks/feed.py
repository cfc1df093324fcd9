"""Change feed throughput (issue 10): what the feed costs a bulk import, and how fast a follower drains it.

In a fresh database: home a prefix, add an operator, then import ``--records`` handles the way ``idnode import``
writes them (COPY into a temporary table, one ``INSERT ... SELECT`` into ``handles``), once with the feed's
trigger switched off (the baseline; those rows are then deleted again) and once with it on. A node (in this
process, on 127.0.0.1 behind a trusted proxy) then serves ``GET /api/changes?limit=--page`` to a follower that
reads from the first imported change to the last. Numbering (the sequencer, in batches of ``SEQUENCE_BATCH``) is
timed on its own first, so the follower's figure is serving alone.

Run from the repository root::

    .venv/bin/python -m benchmarks.feed --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import aiohttp
import asyncpg
import orjson

from registry.enterprises import add_operator
from registry.feed_store import SEQUENCE_BATCH
from registry.store import Actor, RegistryStore
from resolver.store import apply_migrations
from tests.support import behind_trusted_proxy, secure_basic, start_node, with_database


async def copy_import(con: asyncpg.Connection, records: int, tag: str) -> float:
    """Seconds to import ``records`` handles under 88.BENCH as ``idnode import`` does."""
    rows = [
        (
            f"88.BENCH/{tag}-{i}",
            f"88.BENCH/{tag}-{i}",
            "88.BENCH",
            orjson.dumps(
                [{"index": 1, "type": "URL", "data": {"format": "string", "value": f"https://example.org/{i}"}}]
            ).decode(),
        )
        for i in range(records)
    ]
    started = time.perf_counter()
    async with con.transaction():
        await con.execute("CREATE TEMP TABLE incoming (k text, h text, p text, v text) ON COMMIT DROP")
        await con.copy_records_to_table("incoming", records=rows)
        await con.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") SELECT k, h, p, v::jsonb FROM incoming'
        )
    return time.perf_counter() - started


async def _follow(url: str, headers: dict[str, str], after: int, until: int, page: int) -> tuple[int, float]:
    """Changes read from ``after`` to ``until`` and the seconds it took."""
    read = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while after < until:
            async with http.get(f"{url}/api/changes?after={after}&limit={page}", headers=headers) as response:
                body = orjson.loads(await response.read())
            if response.status != 200:
                raise RuntimeError(f"feed answered {response.status}: {body}")
            read += len(body["changes"])
            after = body["next"]
    return read, time.perf_counter() - started


async def _run(args: argparse.Namespace) -> None:
    name = f"idnode_feedbench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(args.database_url, name)
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        await apply_migrations(pool)
        async with pool.acquire() as con:
            await con.execute("INSERT INTO prefixes (prefix_key, prefix) VALUES ('88.BENCH', '88.BENCH'), ('99', '99')")
            await con.execute("ALTER TABLE handle_history DISABLE TRIGGER handle_history_feed")
            without = await copy_import(con, args.records, "off")
            await con.execute("DELETE FROM handles WHERE prefix_key = '88.BENCH'")
            await con.execute("ALTER TABLE handle_history ENABLE TRIGGER handle_history_feed")
            await con.execute("DELETE FROM change_pending")
            await con.execute("VACUUM ANALYZE handles")
            operator = await add_operator(RegistryStore(pool), "99/OPERATOR", actor=Actor("bench"))
            await con.execute("SELECT idnode_sequence_changes(1000000)")
            start = await con.fetchval("SELECT last_seq FROM change_feed_state")
            with_feed = await copy_import(con, args.records, "on")
            pending = await con.fetchval("SELECT count(*) FROM change_pending")
            started = time.perf_counter()
            while await con.fetchval("SELECT idnode_sequence_changes($1)", SEQUENCE_BATCH):
                pass
            numbering = time.perf_counter() - started
        await pool.close()
        runner, url, _app = await start_node(dsn, behind_trusted_proxy())
        try:
            headers = secure_basic(operator.identity, operator.secret)
            read, seconds = await _follow(url, headers, start, start + pending, args.page)
        finally:
            await runner.cleanup()
        print(f"import of {args.records:,} handles: {without:.2f} s without the feed, {with_feed:.2f} s with it")
        print(f"numbering (the sequencer): {pending / numbering:,.0f} changes/s")
        print(f"follower: {read:,} changes in {seconds:.2f} s = {read / seconds:,.0f} changes/s (pages of {args.page})")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feed", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (a scratch database is made)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=10_000, help="limit per feed request")
    return parser


if __name__ == "__main__":
    asyncio.run(_run(_parser().parse_args()))
