"""Bulk import of handle records from JSON Lines: all lines valid and imported, or nothing imported.

One line holds one record in Handle.Net's JSON form: ``{"handle": "88.888.1/X", "values": [...]}``, plus an
optional ``links`` array stored as a PUT stores it (``resolver/product.py`` ``values_with_links``). Every line is
checked (JSON, handle syntax, a prefix homed here, values as the REST API would accept them, typed links and
lifecycle state as ``TemplateCheck`` checks them (``check_values``), the data template a record names, no handle
twice); errors are reported with their line numbers (the first 100) and nothing is
written. The whole import is one transaction, and it writes while it checks: valid rows go to PostgreSQL with COPY
in chunks of ``_COPY_CHUNK``, each chunk's COPY running while the next chunk is checked (``_Pipeline``: the server
parses and writes one chunk while this process checks the next). Without ``replace`` a chunk is copied straight
into ``handles`` (``_FreshRows``), one statement each: one trigger run per chunk writes the history rows, the search
index rows, the feed entries and the notifications, as for every other writer (schema 0002, 0007). There is no
staging table and no ``INSERT ... SELECT``: the rows are written once, where they stay. With ``replace`` the
chunks go into a temporary table, and ``INSERT ... ON CONFLICT DO UPDATE`` moves them into ``handles`` at the end
(the administrators of the records replaced are checked there first). An interrupted import leaves nothing
behind, and neither does a bad line: copying stops at it, and the rollback takes back what was copied (until the
commit, other sessions do not see the copied records, and one that writes such a handle waits for the import to
end). Records already present are skipped unless ``replace`` is asked for, so re-running an import is always safe.
With ``replace``, a record whose content is what the line says (timestamps aside) is left as it is: no new
version, no history row, no notification (``idnode_untimed``, schema 0004).

Secret keys (HS_SECKEY) go the way of the HTTP write path (``registry/secret_keys.py``): made private, a
pre-hashed key outside the accepted iteration range is a line error, and a plain key is hashed before it is
copied (a PBKDF2 run each, so a record with a plain key is never "unchanged" for ``replace``). Stored in the clear
and readable by anyone was the alternative (security review of issue 8).

An enterprise's own import (``POST /api/enterprises/{prefix}/imports``, ``registry/import_api.py``) passes a
``Scope``: a line whose handle lies outside the enterprise's prefix is a line error naming the prefix it is under.
Unless the importer is a node operator, prefix handles (``0.NA/...``: administrators and delegations) are line
errors too, and ``replace`` asks ``Scope.may_replace`` about every existing record that has HS_ADMIN values of its
own, or would get or change some, as the Handle API's ``Permissions.authorize_change`` does record by record: one
prefix-wide check of the importer's rights cannot stand in for it (an app with the ``update`` right could otherwise
re-key ``P/ADMIN``). Records are grouped by their administrators first, so a million records under pyhandle's
default HS_ADMIN cost one question.

The check stage yields to the event loop every ``_YIELD_EVERY`` lines, and so does the COPY every as many rows
(``_paced``): a node importing over HTTP keeps answering look-ups between them (a line costs ~30 µs of CPU, and
without a pause a chunk would hold the loop for a third of a second).

Progress is reported in two stages through ``stage`` (registry/progress.py shows them): ``check`` counts input
lines as they are read, checked and copied, ``write`` counts rows of the final step: with ``replace`` the move
into ``handles``, in slices of ``_WRITE_SLICE`` rows so that it can report too (a few statements more, each still
one trigger run); without, the rows are in ``handles`` already when the check ends, and it reports them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from registry.secret_keys import hash_secrets, prepare_secrets
from registry.store import Actor, set_actor
from registry.templates import template_reference, validate_record
from resolver.errors import HandleError
from resolver.identifiers import Handle, ascii_upper, governing_prefix, parse, prefix_chain
from resolver.prefixes import PrefixTable
from resolver.product import check_values, values_with_links
from resolver.records import SECRET_TYPES, HandleValue, decode_values, now_timestamp, values_to_stored
from resolver.store import Store

__all__ = ["ImportReport", "LineError", "Scope", "Stage", "import_lines"]

MAX_REPORTED_ERRORS = 100


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    written: int = 0

    @property
    def skipped(self) -> int:
        return self.rows - self.written


_COPY_CHUNK = 10_000
"""Rows per COPY statement: more than the 5,000 above which the write trigger sends one notification for the whole
statement instead of one per handle. Rows reach asyncpg through ``_paced``, which lets the event loop in between:
a plain list of 20,000 rows of 1.1 KB held it for up to 250 ms (a node importing over HTTP stalled its look-ups that
long)."""
_WORK_MEM = "128MB"
"""The import transaction's ``work_mem``: the write trigger's transition tables (a chunk's new rows, and their history
rows) are kept in memory up to it, instead of spilling to temporary files past the default 4 MB."""
_WRITE_SLICE = 50_000
_CHECK_REPORT = 1_000
"""Lines between two progress reports of the check stage (a report costs a call; a line costs ~30 µs)."""
_YIELD_EVERY = 200
"""Lines checked between two pauses for the event loop (about 10 ms of CPU; a pause costs a few µs)."""
_BULK_TIMEOUT = 3600.0
"""Seconds a bulk statement may take; the pool's short per-query timeout is meant for the read path."""
_COLUMNS = ("line", "handle_key", "handle", "prefix_key", "values", "template_version")

Row = tuple[int, str, str, str, str, str | None]
Templates = dict[tuple[str, str], list[dict[str, Any]]]
Stage = Callable[[str, int | None, str], AbstractContextManager[Callable[[int], None]]]
"""``stage(title, total, unit)`` shows one stage's progress and yields ``update(count)``."""


Admins = list[tuple[str, int, str]]
"""HS_ADMIN entries ``(admin handle, admin index, mask)``, as ``registry/permissions.py`` reads them."""
MayReplace = Callable[[Admins | None, bool], Awaitable[str | None]]
"""``may_replace(own admins or None, admins change)``: why the importer may not replace such records, or None."""


@dataclass(frozen=True, slots=True)
class Scope:
    """An enterprise importing into its own prefix (see the module docstring); ``may_replace`` is None for a node
    operator, who may import prefix handles and replace any record."""

    prefix: str
    may_replace: MayReplace | None

    def refusal(self, handle: Handle) -> str | None:
        """Why ``handle`` may not be imported here, None when it may."""
        prefix = governing_prefix(handle)
        if ascii_upper(self.prefix) not in prefix_chain(ascii_upper(prefix)):
            return f"handle {handle.name} is under prefix {prefix}, not {self.prefix}"
        if self.may_replace is not None and handle.prefix.upper() == "0.NA":
            return f"prefix handle {handle.name}: change it with PUT /api/handles/{handle.name}, not an import"
        return None


def _silent(_title: str, _total: int | None, _unit: str) -> AbstractContextManager[Callable[[int], None]]:
    return contextlib.nullcontext(lambda _count: None)


def _error(report: ImportReport, number: int, message: str) -> None:
    report.error_count += 1
    if len(report.errors) < MAX_REPORTED_ERRORS:
        report.errors.append(LineError(number, message))


_SECRET_NAMES = tuple(name.lower() for name in SECRET_TYPES)
_SECRET_BYTES = tuple(name.encode() for name in _SECRET_NAMES)


def _may_hold_secrets(line: bytes | str) -> bool:
    """Whether ``line`` may hold a secret key value, by one search of its raw text: most lines hold none, and they
    are spared ``prepare_secrets`` and ``hash_secrets`` (two more passes over their values). A value type is
    compared by ASCII upper case, and JSON can spell it only verbatim or with ``\\u`` escapes (no other escape
    makes a letter or ``_``), so a line that has no escape and no secret type name in any case has no secret key."""
    if isinstance(line, str):
        lowered = line.lower()
        return "\\u" in line or any(name in lowered for name in _SECRET_NAMES)
    lowered_bytes = line.lower()
    return b"\\u" in line or any(name in lowered_bytes for name in _SECRET_BYTES)


def _checked(
    line: bytes | str, prefixes: PrefixTable, templates: Templates, max_handle_bytes: int, stamp: str
) -> tuple[Handle, list[HandleValue], str | None, bool]:
    """The line's handle, its values (secret keys prepared, not yet hashed), the template it names, and whether
    it may hold secret keys (``_may_hold_secrets``)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("handle"), str):
        raise ValueError('expected {"handle": "prefix/suffix", "values": [...]}')
    handle = parse(record["handle"], max_bytes=max_handle_bytes, bare_is_prefix=False)
    prefix = governing_prefix(handle)
    if not prefixes.homes(prefix):
        raise ValueError(f"prefix {prefix} is not homed here (run: idnode prefix add {prefix})")
    values = decode_values(values_with_links(record), timestamp=stamp)
    secrets = _may_hold_secrets(line)
    if secrets:
        values = prepare_secrets(values)
    check_values(values)
    template = None
    reference = template_reference(handle.prefix, values)
    if reference is not None:
        key = (ascii_upper(reference[0]), reference[1])
        if key not in templates:
            raise ValueError(f"data template {reference[0]}/{reference[1]} does not exist")
        problems = validate_record(templates[key], values)
        if problems:
            raise ValueError(f"does not match data template {reference[1]}: " + "; ".join(problems))
        template = f"{key[0]}/{key[1]}"
    return handle, values, template, secrets


class _Invalid(Exception):
    """Raised inside the import transaction to roll it back when any line was bad."""


async def import_lines(
    store: Store,
    lines: Iterable[bytes | str],
    prefixes: PrefixTable,
    *,
    max_handle_bytes: int,
    replace: bool,
    actor: str | Actor,
    total_lines: int | None = None,
    stage: Stage = _silent,
    scope: Scope | None = None,
) -> ImportReport:
    """Check and import ``lines`` in one transaction (see the module docstring), showing progress through ``stage``."""
    report = ImportReport()
    stamp = now_timestamp()
    try:
        async with store.pool.acquire() as con, con.transaction():
            await set_actor(con, actor if isinstance(actor, Actor) else Actor(actor))
            templates = {
                (row[0], row[1]): orjson.loads(row[2])
                for row in await con.fetch("SELECT prefix_key, version, items::text FROM templates")
            }
            await con.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
            if replace:
                await con.execute(
                    "CREATE TEMP TABLE idnode_import (n bigint GENERATED ALWAYS AS IDENTITY, line bigint, "
                    'handle_key text, handle text, prefix_key text, "values" jsonb, template_version text) '
                    "ON COMMIT DROP"
                )
            copied = _Pipeline(functools.partial(_stage_rows, con) if replace else _FreshRows(con))
            with stage("check", total_lines, "lines") as checked:
                try:
                    await _check_and_copy(
                        copied, lines, prefixes, templates, max_handle_bytes, stamp, report, checked, scope
                    )
                except BaseException:
                    await copied.stop()
                    raise
            if replace and scope is not None and scope.may_replace is not None and not report.error_count:
                await _check_administrators(con, scope.may_replace, report)
            if report.error_count:
                raise _Invalid
            with stage("write", report.rows, "rows") as written:
                if replace:
                    report.written = await _write(con, report.rows, written)
                else:  # already in handles: the COPY wrote them while later lines were checked
                    report.written = copied.done
                    written(report.rows)
    except _Invalid:
        report.written = 0
    return report


async def _check_and_copy(
    copied: _Pipeline,
    lines: Iterable[bytes | str],
    prefixes: PrefixTable,
    templates: Templates,
    max_handle_bytes: int,
    stamp: str,
    report: ImportReport,
    checked: Callable[[int], None],
    scope: Scope | None,
) -> None:
    """Check every line into ``report``; while none is bad, hand the rows to ``copied`` chunk by chunk."""
    seen: dict[str, int] = {}
    chunk: list[Row] = []
    number = last = 0
    for number, line in enumerate(lines, start=1):
        if number - last >= _CHECK_REPORT:
            checked(number - last)
            last = number
        if number % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if not line.strip():
            continue
        try:
            handle, values, template, secrets = _checked(line, prefixes, templates, max_handle_bytes, stamp)
        except (HandleError, ValueError) as exc:
            _error(report, number, getattr(exc, "message", None) or str(exc))
            continue
        refusal = scope.refusal(handle) if scope is not None else None
        if refusal is not None:
            _error(report, number, refusal)
            continue
        first = seen.setdefault(handle.key, number)
        if first != number:
            _error(report, number, f"handle {handle.name} already appears on line {first}")
            continue
        report.rows += 1
        if report.error_count == 0:  # once a line is bad nothing is written: no PBKDF2 run for it either
            stored = values_to_stored(await hash_secrets(values) if secrets else values).decode()
            chunk.append((number, handle.key, handle.name, handle.prefix_key, stored, template))
            if len(chunk) >= _COPY_CHUNK:
                await copied.put(chunk)
                chunk = []
    if chunk and report.error_count == 0:
        await copied.put(chunk)
    await copied.wait()
    checked(number - last)


class _Pipeline:
    """Runs ``copy`` of one chunk of checked rows in the background while the next chunk is checked, so that the
    server parses and writes rows while this process checks lines (one connection: one COPY at a time). ``done``
    adds up what the copies returned."""

    __slots__ = ("_copy", "_task", "done")

    def __init__(self, copy: Callable[[list[Row]], Awaitable[int]]) -> None:
        self._copy = copy
        self._task: asyncio.Task[int] | None = None
        self.done = 0

    async def put(self, rows: list[Row]) -> None:
        """Start copying ``rows`` once the copy before has ended."""
        await self.wait()
        self._task = asyncio.create_task(self._copy(rows))

    async def wait(self) -> None:
        """Wait for the copy under way, if any (its error is raised here)."""
        task, self._task = self._task, None
        if task is not None:
            self.done += await task

    async def stop(self) -> None:
        """Stop the copy under way, if any, its end ignored: the import failed already and is being rolled back."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


async def _paced(rows: list[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    """``rows`` for asyncpg's COPY, which encodes a plain list in one go: a pause every ``_YIELD_EVERY`` rows lets
    look-ups in (10,000 rows of 1.1 KB held the event loop for over 100 ms)."""
    for number, row in enumerate(rows):
        if number % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        yield row


async def _stage_rows(con: Any, rows: list[Row]) -> int:
    """COPY ``rows`` into the temporary table (``replace``: moved into ``handles`` by ``_write``)."""
    await con.copy_records_to_table("idnode_import", records=_paced(rows), columns=_COLUMNS, timeout=_BULK_TIMEOUT)
    return len(rows)


_PRESENT = "SELECT coalesce(array_agg(handle_key), '{}') FROM handles WHERE handle_key = ANY($1::text[])"
_HANDLE_COLUMNS = ("handle_key", "handle", "prefix_key", "values", "template_version")
_ATTEMPTS = 3
"""Tries of one chunk that looked up the keys present first (a record created by another writer meanwhile makes
one fail)."""


class _FreshRows:
    """COPY of the rows whose handle does not exist yet straight into ``handles`` (one statement a chunk: one
    trigger run for history, search index, feed and notifications); a call returns how many were copied.

    Without ``replace`` a present record is skipped, as ``ON CONFLICT DO NOTHING`` would skip it, but COPY has no
    such clause: a chunk is copied under a savepoint, and a present record fails it, which is rolled back to the
    savepoint and copied again without the keys then present. The keys are not looked up before the first
    conflict (an import of new records never pays for it: a look-up of 10,000 keys costs about a tenth of their
    COPY), and always after it (a re-run finds every record present)."""

    __slots__ = ("con", "look_first")

    def __init__(self, con: Any) -> None:
        self.con = con
        self.look_first = False

    async def __call__(self, rows: list[Row]) -> int:
        tries = 0
        while True:
            try:
                return await self._copy(rows)
            except asyncpg.UniqueViolationError:
                tries += self.look_first
                if tries >= _ATTEMPTS:
                    raise
                self.look_first = True

    async def _copy(self, rows: list[Row]) -> int:
        async with self.con.transaction():
            if self.look_first:
                present = set(await self.con.fetchval(_PRESENT, [row[1] for row in rows], timeout=_BULK_TIMEOUT))
                fresh = [row[1:] for row in rows if row[1] not in present]
            else:
                fresh = [row[1:] for row in rows]
            if fresh:
                await self.con.copy_records_to_table(
                    "handles", records=_paced(fresh), columns=_HANDLE_COLUMNS, timeout=_BULK_TIMEOUT
                )
            return len(fresh)


_ADMINS = (
    "(SELECT jsonb_agg(v -> 'data' -> 'value' ORDER BY (v ->> 'index')::int) FROM jsonb_array_elements({0}) v "
    "WHERE upper(v ->> 'type') = 'HS_ADMIN')"
)
_ADMINISTERED = (  # the checked rows that replace existing records with administrators of their own, or changes them
    "SELECT i.line, h.handle, a.old::text AS old, a.old IS DISTINCT FROM a.new AS changes "
    "FROM idnode_import i JOIN handles h USING (handle_key), "
    "LATERAL (SELECT " + _ADMINS.format('h."values"') + " AS old, " + _ADMINS.format('i."values"') + " AS new) a "
    "WHERE a.old IS NOT NULL OR a.new IS NOT NULL"
)
_ADMIN_GROUPS = f"SELECT DISTINCT old, changes FROM ({_ADMINISTERED}) r"
_ADMIN_LINES = (
    f"SELECT line, handle FROM ({_ADMINISTERED}) r WHERE old IS NOT DISTINCT FROM $1 AND changes = $2 ORDER BY line"
)


async def _check_administrators(con: Any, may_replace: MayReplace, report: ImportReport) -> None:
    """A line error for every existing record the importer may not replace, by its administrators (module docstring)."""
    for old, changes in await con.fetch(_ADMIN_GROUPS, timeout=_BULK_TIMEOUT):
        admins = None if old is None else [(a["handle"], int(a["index"]), a["permissions"]) for a in orjson.loads(old)]
        refusal = await may_replace(admins, changes)
        if refusal is not None:
            for line, name in await con.fetch(_ADMIN_LINES, old, changes, timeout=_BULK_TIMEOUT):
                _error(report, line, f"{name}: {refusal}")


_CHANGED = (  # with replace: a record whose content did not change keeps its version and gets no history row
    'DO UPDATE SET "values" = EXCLUDED."values", template_version = EXCLUDED.template_version '
    "WHERE handles.template_version IS DISTINCT FROM EXCLUDED.template_version "
    'OR idnode_untimed(handles."values") <> idnode_untimed(EXCLUDED."values")'
)


async def _write(con: Any, rows: int, written: Callable[[int], None]) -> int:
    """``replace``: move the checked rows into ``handles`` slice by slice; how many were created or changed."""
    statement = (
        'WITH ins AS (INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
        'SELECT handle_key, handle, prefix_key, "values", template_version FROM idnode_import '
        f"WHERE n > $1 AND n <= $2 ON CONFLICT (handle_key) {_CHANGED} RETURNING 1) "
        "SELECT count(*) FROM ins"
    )
    if rows > _WRITE_SLICE:
        await con.execute("CREATE INDEX ON idnode_import (n)", timeout=_BULK_TIMEOUT)
    total = 0
    for start in range(0, rows, _WRITE_SLICE):
        total += await con.fetchval(statement, start, start + _WRITE_SLICE, timeout=_BULK_TIMEOUT)
        written(min(_WRITE_SLICE, rows - start))
    return total
