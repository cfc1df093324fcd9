"""The COPY import's write path (registry/bulk.py) against a real database: every imported record gets its history
row, reverse look-up rows, feed entry and cache notification from the schema's triggers, as any other writer's
record does; a record another writer creates while the import runs is skipped, not an error; and a line is never
spared the secret-key checks because of how it spells the type.
"""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from registry.auth import StoredSecret
from tests.support import home, import_records

COUNT = 12_000
"""More than one COPY statement's rows, so that the import writes in several statements."""


def _line(number: int) -> str:
    return orjson.dumps(
        {"handle": f"88.TEST/n{number}", "values": [{"index": 1, "type": "URL", "data": f"https://e.org/{number}"}]}
    ).decode()


async def test_every_imported_record_gets_history_search_rows_feed_entry_and_a_notification(database: str) -> None:
    await home(database, "88.TEST")
    listener = await asyncpg.connect(database)
    payloads: list[str] = []
    await listener.add_listener("idnode_changes", lambda *args: payloads.append(args[3]))
    try:
        report = await import_records(database, *[_line(n) for n in range(COUNT)], actor="importer")
        assert (report.error_count, report.rows, report.written) == (0, COUNT, COUNT)
        con = await asyncpg.connect(database)
        try:
            matching = await con.fetchval(
                "SELECT count(*) FROM handles h JOIN handle_history x ON x.handle_key = h.handle_key "
                "AND x.version = h.version AND x.op = 'create' AND x.actor = 'importer' AND x.\"values\" = h.\"values\""
            )
            assert (matching, await con.fetchval("SELECT count(*) FROM handle_history")) == (COUNT, COUNT)
            searchable = await con.fetchval(
                "SELECT count(*) FROM handle_search s JOIN handles h USING (handle_key) WHERE s.type_key = 'URL' "
                "AND s.value = 'https://e.org/' || substr(h.handle, length('88.TEST/n') + 1)"
            )
            assert searchable == COUNT
            fed = await con.fetchval(
                "SELECT count(*) FROM change_pending p JOIN handle_history x ON x.seq = p.history_seq "
                "WHERE p.kind = 'handle' AND p.op = 'create' AND p.key = x.handle_key AND p.actor = 'importer'"
            )
            assert fed == COUNT
        finally:
            await con.close()
        await asyncio.sleep(0.2)  # notifications of the committed import reach the listener
        named = {payload.split(" ", 1)[1] for payload in payloads if " " in payload}
        # '-' (many created at once: drop remembered absences) covers every create; otherwise each handle is named
        assert "-" in payloads or named >= {f"88.TEST/N{n}" for n in range(COUNT)}
    finally:
        await listener.close()


async def test_a_record_another_writer_creates_during_the_import_is_skipped(database: str) -> None:
    await home(database, "88.TEST")
    other = await asyncpg.connect(database)
    watcher = await asyncpg.connect(database)
    try:
        theirs = '[{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://theirs"}}]'
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO handles (handle_key, handle, prefix_key, \"values\") VALUES ('88.TEST/N5', '88.TEST/n5', "
            "'88.TEST', $1::jsonb)",
            theirs,
        )
        importing = asyncio.create_task(import_records(database, *[_line(n) for n in range(10)], actor="importer"))
        for _ in range(200):  # until the import's COPY waits for the other writer's uncommitted row
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting or importing.done():
                break
            await asyncio.sleep(0.05)
        assert waiting == 1 and not importing.done()
        await transaction.commit()
        report = await importing
        assert (report.error_count, report.rows, report.written, report.skipped) == (0, 10, 9, 1)
        stored = await watcher.fetchval("SELECT \"values\"::text FROM handles WHERE handle_key = '88.TEST/N5'")
        assert orjson.loads(stored) == orjson.loads(theirs)
        history = await watcher.fetch("SELECT actor FROM handle_history WHERE handle_key = '88.TEST/N5'")
        assert len(history) == 1 and history[0]["actor"] != "importer"
        assert await watcher.fetchval("SELECT count(*) FROM handles") == 10
    finally:
        await other.close()
        await watcher.close()


async def test_a_secret_key_type_in_any_spelling_is_hashed_and_private(database: str) -> None:
    await home(database, "88.TEST")
    spellings = ["hs_seckey", "HS_SEC\\u004bEY", "Hs_SecKey"]
    lines = [
        f'{{"handle": "88.TEST/k{n}", "values": [{{"index": 300, "type": "{spelling}", "data": "s3cret-{n}"}}]}}'
        for n, spelling in enumerate(spellings)
    ]
    report = await import_records(database, *lines, actor="importer")
    assert (report.error_count, report.written) == (0, len(spellings))
    con = await asyncpg.connect(database)
    try:
        for n in range(len(spellings)):
            text = await con.fetchval('SELECT "values"::text FROM handles WHERE handle_key = $1', f"88.TEST/K{n}")
            (value,) = orjson.loads(text)
            assert f"s3cret-{n}" not in text
            assert StoredSecret.parse(value["data"]["value"]) is not None
            assert value["permissions"][2:] == "00"
    finally:
        await con.close()
