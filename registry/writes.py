"""The registry's write transactions, each all-or-nothing, with Handle.Net's semantics for PUT and DELETE.

Every operation runs in one transaction that locks the record (``SELECT ... FOR UPDATE``), decides against the
locked state (exists? index present? may this identity do it?), writes, and commits; the triggers append the
history row and notify every node in that same transaction. So an acknowledged write is durable and a refused or
failed one leaves nothing behind. Two concurrent ``overwrite=false`` creates of one handle: both find no row, both
INSERT, PostgreSQL lets one win and the other's ``ON CONFLICT DO NOTHING`` returns nothing: exactly one 201 and
one 409.

The caller passes a ``Guard``: ``authorize(before, after)``, awaited inside the transaction with the locked record,
raises to refuse; ``validate(after)`` checks the data template. Secret keys are checked before authorization and
hashed after it (``registry/secret_keys.py``), at the last step before storage, whatever path the values came by.
The SQL is ``registry/store.py``'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from registry.secret_keys import hash_secrets, prepare_secrets
from registry.store import Actor, RegistryStore, WriteTransaction
from resolver.errors import HandleAlreadyExists, HandleError, HandleNotFound, ValueAlreadyExists, ValuesNotFound
from resolver.identifiers import Handle
from resolver.records import HandleValue, values_from_stored, values_to_stored
from resolver.store import StoredRecord

__all__ = ["ABSENT", "Authorize", "Guard", "Seen", "Validate", "WriteResult", "Writer", "merge_keeping_stamps"]

Authorize = Callable[[Sequence[HandleValue] | None, Sequence[HandleValue] | None], Awaitable[None]]
"""``authorize(before, after)``: the locked record before (None: absent) and after (None: deleted)."""

Validate = Callable[[Sequence[HandleValue]], Awaitable[str | None]]
"""``validate(after)``: raises for a record its data template refuses; returns the template it names, if any."""


class _Absent:
    """The caller saw no record (a sentinel, distinct from "did not look")."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
Seen = _Absent | tuple[int, Sequence[HandleValue]]


@dataclass(frozen=True, slots=True)
class Guard:
    """Who writes (for history) and the checks a write must pass inside its transaction."""

    actor: Actor
    authorize: Authorize
    validate: Validate


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write left in the store; ``created`` decides 201 against 200 (research §2)."""

    record: StoredRecord | None
    created: bool
    values: Sequence[HandleValue] = ()


def merge_keeping_stamps(before: Sequence[HandleValue], after: Sequence[HandleValue]) -> list[HandleValue]:
    """``after``, with each value that did not change keeping its old timestamp (Handle.Net stamps on change)."""
    old = {v.index: v for v in before}
    return [old[v.index] if v.index in old and old[v.index].same_content(v) else v for v in after]


async def _checked(
    guard: Guard, before: Sequence[HandleValue] | None, after: Sequence[HandleValue]
) -> tuple[list[HandleValue], str | None, str]:
    """Authorize, validate against the template, then (only then) hash secret keys: values, template, JSON."""
    await guard.authorize(before, after)
    template = await guard.validate(after)
    stored = await hash_secrets(after)
    return stored, template, values_to_stored(stored).decode()


class Writer:
    """Write transactions over the registry store."""

    __slots__ = ("_store",)

    def __init__(self, store: RegistryStore) -> None:
        self._store = store

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
            result = await self._update_if(handle, version, before, values, guard)
            if result is not None:
                return result
        async with self._store.transaction(guard.actor) as tx:
            row = await tx.lock(handle.key)
            if row is None:
                after, template, stored = await _checked(guard, None, prepare_secrets(values))
                version = await tx.insert(handle.key, handle.name, handle.prefix_key, stored, template)
                if version is not None:
                    return WriteResult(StoredRecord(handle.key, handle.name, version, stored), True, after)
                if not overwrite:  # a concurrent create committed first
                    raise HandleAlreadyExists(handle=handle.text)
                row = await tx.lock(handle.key)
            if not overwrite:
                raise HandleAlreadyExists(handle=handle.text)
            before = values_from_stored(row[1])
            after = merge_keeping_stamps(before, prepare_secrets(values, before))
            return await _update(tx, handle, before, after, guard, created=False)

    async def try_create(
        self, handle: Handle, values: Sequence[HandleValue], trial: Guard
    ) -> WriteResult | tuple[int, Sequence[HandleValue]] | None:
        """Create the record in one statement when nobody has looked whether it exists: the statement itself
        tells, which saves the read a PUT would otherwise make first.

        ``trial`` holds the checks of a create, whose refusal says nothing yet (the record may exist, and its own
        admins decide then), so they must not count or answer anything: None means "decide the ordinary way",
        as it does when the record appeared after this statement began. When the record exists its
        ``(version, values)`` come back, to carry on as ``put_record`` does with what a read has seen. ``values``
        must hold no secret keys: a create would hash them for nothing when the record exists.
        """
        try:
            after, template, stored = await _checked(trial, None, list(values))
        except HandleError:
            return None
        row = await self._store.insert_or_show(
            handle.key, handle.name, handle.prefix_key, stored, template, trial.actor
        )
        if row is None:
            return None
        version, existing = row
        if existing is not None:
            return version, values_from_stored(existing)
        return WriteResult(StoredRecord(handle.key, handle.name, version, stored), True, after)

    async def _insert(self, handle: Handle, values: Sequence[HandleValue], guard: Guard) -> WriteResult | None:
        """One-statement create; None when the handle exists."""
        after, template, stored = await _checked(guard, None, prepare_secrets(values))
        version = await self._store.insert_alone(
            handle.key, handle.name, handle.prefix_key, stored, template, guard.actor
        )
        if version is None:
            return None
        return WriteResult(StoredRecord(handle.key, handle.name, version, stored), True, after)

    async def _update_if(
        self,
        handle: Handle,
        version: int,
        before: Sequence[HandleValue],
        values: Sequence[HandleValue],
        guard: Guard,
    ) -> WriteResult | None:
        """One-statement replace, applied only if the record is still at ``version``; None otherwise."""
        after = merge_keeping_stamps(before, prepare_secrets(values, before))
        after, template, stored = await _checked(guard, before, after)
        row = await self._store.update_if(handle.key, stored, template, version, guard.actor)
        if row is None:
            return None
        return WriteResult(StoredRecord(handle.key, row[0], row[1], stored), False, after)

    async def add_values(
        self, handle: Handle, values: Sequence[HandleValue], *, overwrite: bool, guard: Guard
    ) -> WriteResult:
        """Add or replace the given values (PUT with ``index``); ``created`` when no existing index was replaced."""
        async with self._store.transaction(guard.actor) as tx:
            before = await _locked(tx, handle)
            merged = {v.index: v for v in before}
            replaced = False
            for value in prepare_secrets(values, before):
                if value.index in merged:
                    if not overwrite:
                        raise ValueAlreadyExists(f"Index conflict for {value.index}", handle=handle.text)
                    replaced = True
                merged[value.index] = value
            after = merge_keeping_stamps(before, sorted(merged.values(), key=lambda v: v.index))
            return await _update(tx, handle, before, after, guard, created=not replaced)

    async def delete_values(self, handle: Handle, indexes: Iterable[int], *, guard: Guard) -> WriteResult:
        """Remove the given indexes; if any is absent nothing is removed (400 rc 200, transcript E2)."""
        wanted = set(indexes)
        async with self._store.transaction(guard.actor) as tx:
            before = await _locked(tx, handle)
            if not wanted <= {v.index for v in before}:
                raise ValuesNotFound(handle=handle.text)
            after = [v for v in before if v.index not in wanted]
            return await _update(tx, handle, before, after, guard, created=False)

    async def delete_record(self, handle: Handle, *, guard: Guard) -> None:
        """Delete the whole record (DELETE without ``index``)."""
        async with self._store.transaction(guard.actor) as tx:
            await guard.authorize(await _locked(tx, handle), None)
            await tx.delete(handle.key)


async def _locked(tx: WriteTransaction, handle: Handle) -> tuple[HandleValue, ...]:
    row = await tx.lock(handle.key)
    if row is None:
        raise HandleNotFound(handle=handle.text)
    return values_from_stored(row[1])


async def _update(
    tx: WriteTransaction,
    handle: Handle,
    before: Sequence[HandleValue],
    after: Sequence[HandleValue],
    guard: Guard,
    *,
    created: bool,
) -> WriteResult:
    after, template, stored = await _checked(guard, before, after)
    name, version = await tx.update(handle.key, stored, template)
    return WriteResult(StoredRecord(handle.key, name, version, stored), created, after)
