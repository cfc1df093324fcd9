"""Escrow deposits: ``idnode escrow export --full|--since SEQ FILE`` and ``idnode escrow import FILE``.

The guidelines require a secondary node's core data to be escrowed to the top-level disaster-recovery node
(issue 10, item 4); the file format is ``registry/escrow_format.py``. A deposit carries everything the change
feed carries (schema 0007): prefixes, enterprises, templates, operators, child nodes (their configuration, not
their live reports) and handles, each row as stored (spelling, values, versions, times, actors).

Export. A FULL deposit is every row; a DIFF from feed number SEQ holds the rows whose key changed in the feed
after SEQ, as they are now, and a delete for each of those keys that is gone. The export first numbers every
committed change (the feed's sequencer), then reads in one REPEATABLE READ snapshot: the watermark is the last
feed number visible in it, so every change up to the watermark is in the deposit. A change committed but not
numbered yet may be in it too, at its newer state; it is numbered above the watermark, so the next DIFF carries
it again (applying a row twice gives the same row). Rows go from PostgreSQL to the file through COPY, in
constant memory, into ``FILE.part``, renamed to FILE once complete. A DIFF names the deposit it applies on: the
last one this node exported that ended at SEQ (``escrow_exports``); a SEQ no deposit ended at is refused.

Import. The file is verified first (``verify``: header, structure, counts, SHA-256); then, in one transaction,
its lines are copied into a temporary table (hashed again on the way, and the transaction is abandoned if the
file changed in between) and applied: a FULL replaces every row of the six tables, a DIFF deletes its deletes and
the rows its contents replace, then inserts the contents with their own versions (so the node's version sequence
is moved past them) and ids. The deposit is recorded in ``escrow_imports`` in the same transaction. A DIFF is
accepted only when its previous deposit is the last one applied, and a deposit already applied is refused, so
nothing is applied twice. Resumable in the simplest way: a killed import leaves nothing behind (its transaction
never commits) and running it again applies it whole. Writes are attributed to ``escrow:<deposit id>``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import asyncpg

from registry.escrow_format import (
    CONTENT_KINDS,
    Deposit,
    EscrowError,
    Header,
    body_lines,
    header_line,
    trailer_line,
    verify,
)
from registry.feed_store import SEQUENCE_BATCH, FeedStore

__all__ = ["Deposit", "EscrowError", "export_deposit", "import_deposit"]

_RAW_LINES = {"format": "csv", "delimiter": "\x02", "quote": "\x01"}
"""COPY options that pass a line of JSON through unchanged: CSV whose quote and delimiter never occur in JSON text
(PostgreSQL escapes control characters in JSON), so nothing is quoted or escaped either way."""
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class _Table:
    """One kind of record: its table, its feed key as an SQL expression over a row alias, columns left out."""

    kind: str
    table: str
    key: str
    leave_out: tuple[str, ...] = ()

    def key_of(self, alias: str) -> str:
        return self.key.format(alias)

    def row_json(self, alias: str) -> str:
        return f"to_jsonb({alias})" + "".join(f" - '{column}'" for column in self.leave_out)


_TABLES = {
    table.kind: table
    for table in (
        _Table("prefix", "prefixes", "{0}.prefix_key"),
        _Table("enterprise", "enterprises", "{0}.prefix_key"),
        _Table("template", "templates", "{0}.prefix_key || ' ' || {0}.version"),
        _Table("operator", "operators", "{0}.identity_key"),
        _Table("node", "nodes", "{0}.prefix_key", ("last_seen", "report")),
        _Table("handle", "handles", "{0}.handle_key"),
    )
}
assert tuple(_TABLES) == CONTENT_KINDS

_CHANGED = "SELECT DISTINCT key FROM change_feed WHERE kind = '{kind}' AND seq > $1 AND seq <= $2"


def _full_contents(table: _Table) -> str:
    return f"""SELECT '{{"{table.kind}":' || ({table.row_json("t")})::text || '}}' FROM {table.table} t"""


def _diff_deletes(table: _Table) -> str:
    return (
        f"""SELECT '{{"delete":"{table.kind}","key":' || to_jsonb(c.key)::text || '}}' """
        f"FROM ({_CHANGED.format(kind=table.kind)}) c "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.table} t WHERE {table.key_of('t')} = c.key)"
    )


def _diff_contents(table: _Table) -> str:
    return f"{_full_contents(table)} WHERE {table.key_of('t')} IN ({_CHANGED.format(kind=table.kind)})"


async def _number_pending_changes(con: asyncpg.Connection) -> None:
    """Number what has committed, batch by batch, until a batch is not full (under a steady write load there is
    always more; what is numbered later is the next DIFF's)."""
    feed = FeedStore(con)  # type: ignore[arg-type]  # a connection answers fetchval like a pool
    while await feed.sequence() == SEQUENCE_BATCH:
        pass


class _Sink:
    """Where COPY's output goes: the file, the checksum, and a count of the lines (one record each)."""

    __slots__ = ("digest", "lines", "out")

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.lines = 0

    def put(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)

    async def copy(self, chunk: bytes) -> None:
        self.put(chunk)
        self.lines += chunk.count(b"\n")


async def export_deposit(con: asyncpg.Connection, path: Path, *, since: int | None) -> Deposit:
    """Write a FULL deposit (``since`` None) or a DIFF from feed number ``since`` to ``path``; what was written."""
    await _number_pending_changes(con)
    part = path.with_name(path.name + ".part")
    with part.open("wb", buffering=_COPY_CHUNK) as out:
        sink = _Sink(out)
        async with con.transaction(isolation="repeatable_read", readonly=True):
            header = await _export_header(con, since)
            sink.put(header_line(header))
            if since is not None:
                for kind in reversed(CONTENT_KINDS):
                    query = _diff_deletes(_TABLES[kind])
                    await con.copy_from_query(query, since, header.watermark, output=sink.copy, **_RAW_LINES)
            deletes = sink.lines
            for kind in CONTENT_KINDS:
                if since is None:
                    await con.copy_from_query(_full_contents(_TABLES[kind]), output=sink.copy, **_RAW_LINES)
                else:
                    query = _diff_contents(_TABLES[kind])
                    await con.copy_from_query(query, since, header.watermark, output=sink.copy, **_RAW_LINES)
        deposit = Deposit(header, deletes, sink.lines - deletes, sink.digest.hexdigest())
        out.write(trailer_line(deposit.deletes, deposit.contents, deposit.sha256))
    part.replace(path)
    await con.execute(
        "INSERT INTO escrow_exports (id, type, previous, watermark, records, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
        header.id,
        header.type,
        header.previous,
        header.watermark,
        deposit.records,
        deposit.sha256,
    )
    return deposit


async def _export_header(con: asyncpg.Connection, since: int | None) -> Header:
    """The deposit's header, read in the export's snapshot; refuses a SEQ the feed or the deposits cannot start at."""
    watermark, oldest = await con.fetchrow("SELECT last_seq, oldest FROM change_feed_state")
    previous = None
    if since is not None:
        if not 0 <= since <= watermark:
            raise EscrowError(f"--since {since}: the feed ends at number {watermark}")
        if since + 1 < oldest:
            raise EscrowError(f"--since {since}: the feed was pruned up to number {oldest - 1}; export --full")
        previous = await con.fetchval(
            "SELECT id FROM escrow_exports WHERE watermark = $1 ORDER BY created_at DESC LIMIT 1", since
        )
        if previous is None:
            raise EscrowError(f"--since {since}: no deposit of this node ends at feed number {since}; export --full")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return Header("DIFF" if since is not None else "FULL", str(uuid.uuid4()), previous, watermark, created)


async def import_deposit(con: asyncpg.Connection, path: Path) -> Deposit:
    """Verify the deposit at ``path`` and apply it in one transaction; raises ``EscrowError`` if it is refused."""
    deposit = verify(path)
    header = deposit.header
    async with con.transaction():
        await con.execute("LOCK TABLE escrow_imports IN EXCLUSIVE MODE")
        await _check_order(con, header)
        await con.execute("SELECT set_config('idnode.actor', $1, true)", f"escrow:{header.id}")
        await con.execute("CREATE TEMP TABLE escrow_lines (line jsonb NOT NULL) ON COMMIT DROP")
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            first = stream.readline()
            digest.update(first)
            await con.copy_to_table("escrow_lines", source=_chunks(body_lines(stream), digest.update), **_RAW_LINES)
        if digest.hexdigest() != deposit.sha256:
            raise EscrowError("the deposit changed while it was being imported; nothing was applied")
        await con.execute("ANALYZE escrow_lines")
        await _apply(con, header.type)
        await con.execute(
            "INSERT INTO escrow_imports (id, type, previous, watermark, records, sha256) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            header.id,
            header.type,
            header.previous,
            header.watermark,
            deposit.records,
            deposit.sha256,
        )
    return deposit


async def _check_order(con: asyncpg.Connection, header: Header) -> None:
    """Refuse a deposit already applied, and a DIFF that does not apply on the last deposit applied here."""
    if await con.fetchval("SELECT 1 FROM escrow_imports WHERE id = $1", header.id):
        raise EscrowError(f"deposit {header.id} was already applied here; nothing was applied")
    if header.type == "DIFF":
        last = await con.fetchval("SELECT id FROM escrow_imports ORDER BY n DESC LIMIT 1")
        if last != header.previous:
            raise EscrowError(
                f"DIFF {header.id} applies on deposit {header.previous}, but the last applied here is "
                f"{last or 'none'}; nothing was applied"
            )


async def _chunks(lines: Iterable[bytes], hash_line: Callable[[bytes], None]) -> AsyncIterator[bytes]:
    """``lines`` joined into COPY-sized chunks, each line hashed on the way."""
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        hash_line(line)
        buffer.append(line)
        size += len(line)
        if size >= _COPY_CHUNK:
            yield b"".join(buffer)
            buffer.clear()
            size = 0
    if buffer:
        yield b"".join(buffer)


async def _apply(con: asyncpg.Connection, deposit_type: str) -> None:
    """Deletes first (for a FULL: every row), then the rows the contents replace, then the contents."""
    if deposit_type == "FULL":
        for kind in reversed(CONTENT_KINDS):
            await con.execute(f"DELETE FROM {_TABLES[kind].table}")
    else:
        for kind in reversed(CONTENT_KINDS):
            table = _TABLES[kind]
            await con.execute(
                f"DELETE FROM {table.table} t USING escrow_lines l "
                f"WHERE l.line ->> 'delete' = '{kind}' AND {table.key_of('t')} = l.line ->> 'key'"
            )
            await con.execute(
                f"DELETE FROM {table.table} t USING escrow_lines l, "
                f"jsonb_populate_record(NULL::{table.table}, l.line -> '{kind}') r "
                f"WHERE l.line ? '{kind}' AND {table.key_of('t')} = {table.key_of('r')}"
            )
    for kind in CONTENT_KINDS:
        table = _TABLES[kind]
        await con.execute(
            f"INSERT INTO {table.table} SELECT r.* FROM escrow_lines l, "
            f"jsonb_populate_record(NULL::{table.table}, l.line -> '{kind}') r WHERE l.line ? '{kind}'"
        )
    await con.execute(
        "SELECT setval('idnode_version_seq', greatest(max((line -> 'handle' ->> 'version')::bigint), "
        "(SELECT last_value FROM idnode_version_seq))) FROM escrow_lines WHERE line ? 'handle' HAVING count(*) > 0"
    )
    await con.execute(
        "SELECT setval(pg_get_serial_sequence('enterprises', 'id'), greatest(max(e.id), (SELECT last_value "
        "FROM enterprises_id_seq))) FROM enterprises e HAVING count(*) > 0"
    )
