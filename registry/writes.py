"""The registry's write transactions, each all-or-nothing, with Handle.Net's semantics for PUT and DELETE.

Every operation runs in one transaction that locks the record (``SELECT ... FOR UPDATE``), decides against the
locked state (exists? index present? may this identity do it?), writes, and commits; the triggers append the
history row and notify every node in that same transaction. So an acknowledged write is durable and a refused or
failed one leaves nothing behind. Two concurrent ``overwrite=false`` creates of one handle: both find no row, both
INSERT, PostgreSQL lets one win and the other's ``ON CONFLICT DO NOTHING`` returns nothing: exactly one 201 and
one 409.

The caller passes ``authorize(before, after)``, awaited inside the transaction with the locked record, which raises
to refuse. Secret keys are hashed here, at the last step before storage, whatever path the values came by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from registry.auth import hash_secret, is_hashed_secret
from resolver.errors import HandleAlreadyExists, HandleNotFound, InvalidValue, ValueAlreadyExists, ValuesNotFound
from resolver.identifiers import Handle
from resolver.records import SECRET_PLACEHOLDER, SECRET_TYPES, HandleValue, values_from_stored, values_to_stored
from resolver.store import StoredRecord

__all__ = ["ABSENT", "Authorize", "Guard", "Seen", "Validate", "WriteResult", "Writer", "protect_secrets"]

Authorize = Callable[[Sequence[HandleValue] | None, Sequence[HandleValue] | None], Awaitable[None]]
"""``authorize(before, after)``: the locked record before (None: absent) and after (None: deleted)."""

Validate = Callable[[Sequence[HandleValue]], Awaitable[str | None]]
"""``validate(after)``: raises for a record its data template refuses; returns the template it names, if any."""

_LOCK = 'SELECT handle, "values"::text FROM handles WHERE handle_key = $1 FOR UPDATE'
_INSERT = (
    'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (handle_key) DO NOTHING RETURNING version"
)
# One statement each: its implicit transaction carries the actor (set in the CTE) to the triggers.
_INSERT_ALONE = (
    "WITH actor AS (SELECT set_config('idnode.actor', $6, true), set_config('idnode.request_id', $7, true)) "
    'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "SELECT $1, $2, $3, $4::jsonb, $5 FROM actor ON CONFLICT (handle_key) DO NOTHING RETURNING version"
)
_UPDATE_IF = (
    "WITH actor AS (SELECT set_config('idnode.actor', $5, true), set_config('idnode.request_id', $6, true)) "
    'UPDATE handles SET "values" = $2::jsonb, template_version = $3 FROM actor '
    "WHERE handle_key = $1 AND version = $4 RETURNING handle, version"
)
_UPDATE = (
    'UPDATE handles SET "values" = $2::jsonb, template_version = $3 WHERE handle_key = $1 RETURNING handle, version'
)


class _Absent:
    """The caller saw no record (a sentinel, distinct from "did not look")."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
Seen = _Absent | tuple[int, Sequence[HandleValue]]


@dataclass(frozen=True, slots=True)
class Guard:
    """Who writes (for history) and the checks a write must pass inside its transaction."""

    actor: str
    request_id: str
    authorize: Authorize
    validate: Validate


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write left in the store; ``created`` decides 201 against 200 (research §2)."""

    record: StoredRecord | None
    created: bool
    values: Sequence[HandleValue] = ()


async def protect_secrets(values: Iterable[HandleValue], before: Sequence[HandleValue] = ()) -> list[HandleValue]:
    """Hash HS_SECKEY data that is not hashed yet and make the value unreadable to the public (``1100``-style).

    A value sent back with the placeholder an authenticated read shows keeps the key stored at that index.
    """
    old = {v.index: v for v in before if v.type_key() in SECRET_TYPES}
    out = []
    for value in values:
        if value.type_key() in SECRET_TYPES:
            secret = str(value.value)
            if secret == SECRET_PLACEHOLDER:
                if value.index not in old:
                    raise InvalidValue(f"Value {value.index}: give the secret key itself, not the placeholder")
                secret = str(old[value.index].value)
            if is_hashed_secret(secret):
                stored = secret
            else:  # PBKDF2 is slow on purpose; keep it off the event loop
                stored = await asyncio.to_thread(hash_secret, secret.encode("utf-8"))
            private = value.permissions[:2] + "00"
            value = HandleValue(
                value.index, value.type, "string", stored, value.ttl, value.timestamp, private, value.references
            )
        out.append(value)
    return out


def _same_content(a: HandleValue, b: HandleValue) -> bool:
    return (a.type, a.format, a.value, a.ttl, a.permissions, a.references) == (
        b.type,
        b.format,
        b.value,
        b.ttl,
        b.permissions,
        b.references,
    )


def merge_keeping_stamps(before: Sequence[HandleValue], after: Sequence[HandleValue]) -> list[HandleValue]:
    """``after``, with each value that did not change keeping its old timestamp (Handle.Net stamps on change)."""
    old = {v.index: v for v in before}
    return [old[v.index] if v.index in old and _same_content(old[v.index], v) else v for v in after]


async def _set_actor(con: asyncpg.Connection, guard: Guard) -> None:
    await con.execute(
        "SELECT set_config('idnode.actor', $1, true), set_config('idnode.request_id', $2, true)",
        guard.actor,
        guard.request_id,
    )


class Writer:
    """Write transactions over the pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put_record(
        self,
        handle: Handle,
        values: Sequence[HandleValue],
        *,
        overwrite: bool,
        guard: Guard,
        seen: Seen | None = None,
    ) -> WriteResult:
        """Create, or with ``overwrite`` replace, the whole record (PUT without ``index``).

        ``seen`` is what the caller's cache showed: ``ABSENT``, or ``(version, values)`` of the record. Then the
        write is first tried as one statement (no transaction to open, no lock round trip): an INSERT that
        yields to an existing row, or an UPDATE that only applies if the version is still the one authorized
        against. If the store moved on, the locked transaction below decides.
        """
        if seen is ABSENT:
            result = await self._insert(handle, values, guard)
            if result is not None:
                return result
            if not overwrite:
                raise HandleAlreadyExists(handle=handle.text)
        elif seen is not None and overwrite:
            version, before = seen
            after = merge_keeping_stamps(before, await protect_secrets(values, before))
            result = await self._update_if(handle, version, before, after, guard)
            if result is not None:
                return result
        async with self.pool.acquire() as con, con.transaction():
            await _set_actor(con, guard)
            row = await con.fetchrow(_LOCK, handle.key)
            if row is None:
                after = await protect_secrets(values)
                await guard.authorize(None, after)
                template = await guard.validate(after)
                stored = values_to_stored(after).decode()
                version = await con.fetchval(_INSERT, handle.key, handle.name, handle.prefix_key, stored, template)
                if version is not None:
                    return WriteResult(StoredRecord(handle.key, handle.name, version, stored), True, after)
                if not overwrite:  # a concurrent create committed first
                    raise HandleAlreadyExists(handle=handle.text)
                row = await con.fetchrow(_LOCK, handle.key)
            if not overwrite:
                raise HandleAlreadyExists(handle=handle.text)
            before = values_from_stored(row[1])
            after = merge_keeping_stamps(before, await protect_secrets(values, before))
            return await _update(con, handle, before, after, guard, created=False)

    async def _insert(self, handle: Handle, values: Sequence[HandleValue], guard: Guard) -> WriteResult | None:
        """One-statement create; None when the handle exists."""
        after = await protect_secrets(values)
        await guard.authorize(None, after)
        template = await guard.validate(after)
        stored = values_to_stored(after).decode()
        version = await self.pool.fetchval(
            _INSERT_ALONE, handle.key, handle.name, handle.prefix_key, stored, template, guard.actor, guard.request_id
        )
        if version is None:
            return None
        return WriteResult(StoredRecord(handle.key, handle.name, version, stored), True, after)

    async def _update_if(
        self,
        handle: Handle,
        version: int,
        before: Sequence[HandleValue],
        after: Sequence[HandleValue],
        guard: Guard,
    ) -> WriteResult | None:
        """One-statement replace, applied only if the record is still at ``version``; None otherwise."""
        await guard.authorize(before, after)
        template = await guard.validate(after)
        stored = values_to_stored(after).decode()
        row = await self.pool.fetchrow(_UPDATE_IF, handle.key, stored, template, version, guard.actor, guard.request_id)
        if row is None:
            return None
        return WriteResult(StoredRecord(handle.key, row[0], row[1], stored), False, after)

    async def add_values(
        self, handle: Handle, values: Sequence[HandleValue], *, overwrite: bool, guard: Guard
    ) -> WriteResult:
        """Add or replace the given values (PUT with ``index``); ``created`` when no existing index was replaced."""
        async with self.pool.acquire() as con, con.transaction():
            await _set_actor(con, guard)
            before = await _locked(con, handle)
            merged = {v.index: v for v in before}
            replaced = False
            for value in await protect_secrets(values, before):
                if value.index in merged:
                    if not overwrite:
                        raise ValueAlreadyExists(f"Index conflict for {value.index}", handle=handle.text)
                    replaced = True
                merged[value.index] = value
            after = merge_keeping_stamps(before, sorted(merged.values(), key=lambda v: v.index))
            return await _update(con, handle, before, after, guard, created=not replaced)

    async def delete_values(self, handle: Handle, indexes: Iterable[int], *, guard: Guard) -> WriteResult:
        """Remove the given indexes; if any is absent nothing is removed (400 rc 200, transcript E2)."""
        wanted = set(indexes)
        async with self.pool.acquire() as con, con.transaction():
            await _set_actor(con, guard)
            before = await _locked(con, handle)
            if not wanted <= {v.index for v in before}:
                raise ValuesNotFound(handle=handle.text)
            after = [v for v in before if v.index not in wanted]
            return await _update(con, handle, before, after, guard, created=False)

    async def delete_record(self, handle: Handle, *, guard: Guard) -> None:
        """Delete the whole record (DELETE without ``index``)."""
        async with self.pool.acquire() as con, con.transaction():
            await _set_actor(con, guard)
            await guard.authorize(await _locked(con, handle), None)
            await con.execute("DELETE FROM handles WHERE handle_key = $1", handle.key)


async def _locked(con: asyncpg.Connection, handle: Handle) -> tuple[HandleValue, ...]:
    row = await con.fetchrow(_LOCK, handle.key)
    if row is None:
        raise HandleNotFound(handle=handle.text)
    return values_from_stored(row[1])


async def _update(
    con: asyncpg.Connection,
    handle: Handle,
    before: Sequence[HandleValue],
    after: Sequence[HandleValue],
    guard: Guard,
    *,
    created: bool,
) -> WriteResult:
    await guard.authorize(before, after)
    template = await guard.validate(after)
    stored = values_to_stored(after).decode()
    updated = await con.fetchrow(_UPDATE, handle.key, stored, template)
    return WriteResult(StoredRecord(handle.key, updated[0], updated[1], stored), created, after)
