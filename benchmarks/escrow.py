"""Escrow deposit rate (issue 10, item 4): FULL and DIFF deposits of a large prefix, exported and imported.

In two scratch databases: the source homes 88.BENCH and gets ``--records`` handles by COPY (as ``idnode import``
writes them, ``benchmarks/feed.py``), then a FULL deposit is exported and imported into the empty target. Then a
tenth of the records are updated and a hundredth deleted, and that DIFF is exported and applied on top. Each step
runs ``registry/escrow.py`` in this process on one connection and is timed alone (the feed is numbered before
each export, so the export's time is the deposit's own). Records/s counts deletes and contents.

Run from the repository root::

    .venv/bin/python -m benchmarks.escrow --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from benchmarks.feed import copy_import
from registry.escrow import Deposit, export_deposit, import_deposit
from registry.feed_store import SEQUENCE_BATCH
from resolver.database import migrate
from tests.support import with_database


async def _timed(label: str, step: Callable[[], Awaitable[Deposit]]) -> Deposit:
    started = time.perf_counter()
    deposit = await step()
    seconds = time.perf_counter() - started
    print(
        f"{label}: {deposit.records:,} records ({deposit.deletes:,} deletes) in {seconds:.2f} s "
        f"= {deposit.records / seconds:,.0f} records/s"
    )
    return deposit


async def _scratch(admin: asyncpg.Connection, server: str) -> str:
    name = f"idnode_escrowbench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(server, name)
    await migrate(dsn)
    return dsn


async def _number(con: asyncpg.Connection) -> None:
    while await con.fetchval("SELECT idnode_sequence_changes($1)", SEQUENCE_BATCH):
        pass


async def _run(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.database_url)
    made: list[str] = []
    try:
        source_dsn = await _scratch(admin, args.database_url)
        made.append(source_dsn)
        target_dsn = await _scratch(admin, args.database_url)
        made.append(target_dsn)
        source = await asyncpg.connect(source_dsn)
        target = await asyncpg.connect(target_dsn)
        with tempfile.TemporaryDirectory(prefix="idnode-escrow-") as directory:
            full_path, diff_path = Path(directory) / "full.jsonl", Path(directory) / "diff.jsonl"
            await source.execute("INSERT INTO prefixes (prefix_key, prefix) VALUES ('88.BENCH', '88.BENCH')")
            imported = await copy_import(source, args.records, "r")
            print(f"source: {args.records:,} handles by COPY in {imported:.2f} s")
            await _number(source)
            full = await _timed("export FULL", lambda: export_deposit(source, full_path, since=None))
            size = full_path.stat().st_size
            print(f"  file: {size / 1e6:,.1f} MB ({size / full.records:,.0f} bytes/record)")
            await _timed("import FULL", lambda: import_deposit(target, full_path))
            await source.execute(
                """UPDATE handles SET "values" = "values" || '[{"index": 2, "type": "EMAIL", """
                """"data": {"format": "string", "value": "ops@example.org"}}]'::jsonb """
                "WHERE prefix_key = '88.BENCH' AND right(handle_key, 1) = '7'"
            )
            await source.execute("DELETE FROM handles WHERE prefix_key = '88.BENCH' AND right(handle_key, 2) = '33'")
            await _number(source)
            since = full.header.watermark
            await _timed("export DIFF", lambda: export_deposit(source, diff_path, since=since))
            await _timed("import DIFF", lambda: import_deposit(target, diff_path))
        await source.close()
        await target.close()
    finally:
        for dsn in made:
            name = urlsplit(dsn).path.lstrip("/")  # a unix-socket DSN ends in ?host=/dir
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.escrow", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (scratch databases are made)")
    parser.add_argument("--records", type=int, default=200_000)
    return parser


if __name__ == "__main__":
    asyncio.run(_run(_parser().parse_args()))
