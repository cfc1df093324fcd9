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

Import. The file is verified first (``verify``: header, structure, counts, SHA-256), so a truncated or altered
deposit is refused before anything is written. It is then applied in slices of ``IMPORT_SLICE`` lines, one
transaction each: the slice is copied into a temporary table and applied (a FULL's first slice empties the six
tables; a DIFF deletes its deletes and the rows its contents replace), the contents keeping their own versions
(the node's version sequence is moved past them) and ids. Each slice records in the same transaction how many
lines have been applied (``escrow_progress``), so an import that is killed continues after the last slice that
committed when it is run again, and no line is applied twice; meanwhile any other deposit is refused. The last
slice checks that the file read is the file verified and records the deposit in ``escrow_imports``. A DIFF is
accepted only when its previous deposit is the last one applied, and a deposit already applied is refused.
While a deposit is partly applied the node holds part of it (the escrow node is an archive, not a server of
these prefixes; a deposit smaller than a slice is applied at once). Writes go through the node's triggers
(history, search index, feed, cache notifications) and are attributed to ``escrow:<deposit id>``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
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

__all__ = ["IMPORT_SLICE", "Deposit", "EscrowError", "export_deposit", "import_deposit"]

_RAW_LINES = {"format": "csv", "delimiter": "\x02", "quote": "\x01"}
"""COPY options that pass a line of JSON through unchanged: CSV whose quote and delimiter never occur in JSON text
(PostgreSQL escapes control characters in JSON), so nothing is quoted or escaped either way."""
_COPY_CHUNK = 1 << 20
IMPORT_SLICE = 100_000
"""Lines applied per transaction: a killed import continues after the last slice that committed."""

log = logging.getLogger("idnode.escrow")


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
    try:
        out = part.open("wb", buffering=_COPY_CHUNK)
    except OSError as exc:
        raise EscrowError(f"cannot write {part}: {exc.strerror}") from None
    try:
        with out:
            deposit = await _write(con, _Sink(out), since)
            out.write(trailer_line(deposit.deletes, deposit.contents, deposit.sha256))
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    await _record(con, "escrow_exports", deposit)
    return deposit


async def _write(con: asyncpg.Connection, sink: _Sink, since: int | None) -> Deposit:
    """The header, deletes and contents, read in one snapshot (the trailer is the caller's)."""
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
    return Deposit(header, deletes, sink.lines - deletes, sink.digest.hexdigest())


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


async def import_deposit(con: asyncpg.Connection, path: Path, *, slice_records: int = IMPORT_SLICE) -> Deposit:
    """Verify the deposit at ``path`` and apply it, ``slice_records`` lines per transaction, continuing after the
    last slice applied if it was partly applied before; raises ``EscrowError`` if it is refused."""
    if slice_records < 1:
        raise EscrowError(f"--slice {slice_records}: must be 1 or more")
    deposit = verify(path)
    header = deposit.header
    done = await _start(con, deposit)
    if done:
        log.info("escrow: deposit %s was applied up to line %d of %d; continuing", header.id, done, deposit.records)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        first = stream.readline()
        digest.update(first)
        lines = _hashed(body_lines(stream), digest.update)
        for _ in itertools.islice(lines, done):
            pass
        while True:
            async with con.transaction():
                recorded = "SELECT lines_done FROM escrow_progress WHERE id = $1 FOR UPDATE"
                if await con.fetchval(recorded, header.id) != done:
                    raise EscrowError(f"another import of deposit {header.id} is applying it")
                await con.execute("SELECT set_config('idnode.actor', $1, true)", f"escrow:{header.id}")
                await con.execute("CREATE TEMP TABLE escrow_lines (line jsonb NOT NULL) ON COMMIT DROP")
                status = await con.copy_to_table(
                    "escrow_lines", source=_chunks(itertools.islice(lines, slice_records)), **_RAW_LINES
                )
                await con.execute("ANALYZE escrow_lines")
                await _apply(con, wipe=header.type == "FULL" and done == 0, replace=header.type == "DIFF")
                copied = int(status.rsplit(" ", 1)[1])
                done += copied
                if done < deposit.records and copied:
                    await con.execute("UPDATE escrow_progress SET lines_done = $1", done)
                    continue
                if done != deposit.records or digest.hexdigest() != deposit.sha256:
                    raise EscrowError("the deposit changed while it was being imported; its last part was not applied")
                await _finish(con, deposit)
                return deposit


async def _start(con: asyncpg.Connection, deposit: Deposit) -> int:
    """The lines of ``deposit`` already applied here (0 for a new one, recorded in ``escrow_progress``). Refuses a
    deposit already applied, a DIFF not on top of the last deposit applied, and any other deposit while one is
    partly applied."""
    header = deposit.header
    async with con.transaction():
        await con.execute("LOCK TABLE escrow_imports IN EXCLUSIVE MODE")
        partial = await con.fetchrow("SELECT id, sha256, lines_done, records FROM escrow_progress")
        if partial is not None:
            if partial["id"] != header.id:
                raise EscrowError(
                    f"deposit {partial['id']} is partly applied ({partial['lines_done']} of {partial['records']} "
                    "records); import it again to finish it first; nothing was applied"
                )
            if partial["sha256"] != deposit.sha256:
                raise EscrowError(f"deposit {header.id} is partly applied from a different file; nothing was applied")
            return partial["lines_done"]
        await _check_order(con, header)
        await con.execute(
            "INSERT INTO escrow_progress (id, sha256, records, lines_done) VALUES ($1, $2, $3, 0)",
            header.id,
            deposit.sha256,
            deposit.records,
        )
        return 0


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


async def _finish(con: asyncpg.Connection, deposit: Deposit) -> None:
    """The last slice's bookkeeping: the deposit is applied, nothing is in progress."""
    await con.execute("DELETE FROM escrow_progress")
    await _record(con, "escrow_imports", deposit)


def _hashed(lines: Iterable[bytes], hash_line: Callable[[bytes], None]) -> Iterator[bytes]:
    for line in lines:
        hash_line(line)
        yield line


async def _chunks(lines: Iterable[bytes]) -> AsyncIterator[bytes]:
    """``lines`` joined into COPY-sized chunks."""
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= _COPY_CHUNK:
            yield b"".join(buffer)
            buffer.clear()
            size = 0
    if buffer:
        yield b"".join(buffer)


async def _apply(con: asyncpg.Connection, *, wipe: bool, replace: bool) -> None:
    """One slice: deletes first (``wipe``: every row, a FULL's first slice), then the rows its contents replace
    (``replace``, a DIFF's: a FULL's rows are all new once the tables were wiped), then the contents."""
    if wipe:
        for kind in reversed(CONTENT_KINDS):
            await con.execute(f"DELETE FROM {_TABLES[kind].table}")
    if replace:
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


async def _record(con: asyncpg.Connection, table: str, deposit: Deposit) -> None:
    """Note a deposit this node wrote (``escrow_exports``) or applied (``escrow_imports``)."""
    header = deposit.header
    await con.execute(
        f"INSERT INTO {table} (id, type, previous, watermark, records, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
        header.id,
        header.type,
        header.previous,
        header.watermark,
        deposit.records,
        deposit.sha256,
    )
