"""``POST /api/handles:batch``: up to ``max_batch`` creates, replaces and deletes with one result each.

Body ``{"items": [{"op": "create"|"replace"|"delete", "handle": "...", "values": [...]}, ...]}`` (or the bare
array); a create or replace may carry a ``links`` array, stored as a PUT stores it (``resolver/product.py``
``values_with_links``). The answer is 200 ``{"responseCode": 1, "results": [...]}`` with, per item in request order,
``{"handle", "responseCode", "status"[, "message"]}``: the code and HTTP status the single-handle API would have
given. Items that fail (bad values, no permission, an existing handle for ``create``) are reported and skipped;
the others are written. Retrying a batch is safe: a ``create`` whose handle already holds exactly those values
(timestamps aside) succeeds again with ``"unchanged": true``.

The set-based write itself is ``BatchWrites.apply``, shared with the SNMS batch endpoints (``registry/snms_api.py``),
which also use its ``update`` op: a replace of an existing record (absent: 404 rc 100) that keeps the record's
administrative values (types ``HS_*``) the item does not name.

All valid items are written in one transaction with one statement per kind of change, which is what makes the
batch API fast (the single-handle API pays a transaction per handle); the records are locked first, so the
decisions hold until commit. Secret keys are hashed only for items already authorized and validated, and a batch
may ask for at most ``MAX_SECRETS`` of them in all (``registry/secret_keys.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from registry.auth import Identity, actor_of, verify_secret
from registry.permissions import Permissions
from registry.secret_keys import MAX_SECRETS, hash_secrets, prepare_secrets, secrets_to_hash
from registry.store import Actor, RegistryStore
from registry.templates import TemplateCheck
from registry.write_stages import WriteStages
from registry.writes import merge_keeping_stamps
from resolver.errors import (
    HandleAlreadyExists,
    HandleError,
    HandleNotFound,
    InvalidValue,
    PrefixNotHomed,
    ProtocolError,
)
from resolver.identifiers import Handle, parse
from resolver.product import values_with_links
from resolver.records import (
    SECRET_TYPES,
    HandleValue,
    decode_values,
    now_timestamp,
    values_from_stored,
    values_to_stored,
)
from resolver.responses import answers_errors, json_body, json_response
from resolver.store import StoredRecord

__all__ = ["BatchItem", "BatchWrites", "Outcome"]

_OPS = frozenset({"create", "replace", "delete"})


@dataclass(slots=True)
class BatchItem:
    """One parsed item: ``op`` on ``handle`` with the ``given`` values (as sent); the rest is filled in on the way."""

    op: str
    handle: Handle
    given: list[HandleValue] = field(default_factory=list)
    position: int = -1
    values: list[HandleValue] = field(default_factory=list)
    template: str | None = None
    stored: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's result: written (``status`` 201 when created), left ``unchanged`` (a retried create), or refused
    with ``error``, the HandleError the single-handle API would have raised."""

    handle: str | None
    error: HandleError | None = None
    status: int = 200
    unchanged: bool = False

    def as_json(self) -> dict[str, Any]:
        """The item's result as the Handle batch API answers it."""
        error = self.error
        if error is None:
            out: dict[str, Any] = {"handle": self.handle, "responseCode": 1, "status": self.status}
            return out | {"unchanged": True} if self.unchanged else out
        out = {"handle": self.handle, "responseCode": error.response_code, "status": error.http_status}
        if error.message:
            out["message"] = error.message
        return out


async def _same_record(stored: Sequence[HandleValue], given: Sequence[HandleValue]) -> bool:
    """Whether ``given`` (as sent, secrets in the clear) is what ``stored`` holds, timestamps aside.

    A secret key is stored hashed with a fresh salt, so it is compared by verifying the given secret against the
    stored hash (PBKDF2, off the event loop), not by comparing values.
    """
    if [v.index for v in stored] != [v.index for v in given]:
        return False
    for old, new in zip(stored, given, strict=True):
        if new.type_key() in SECRET_TYPES and old.type_key() in SECRET_TYPES:
            same_meta = (old.type, old.ttl, old.permissions) == (new.type, new.ttl, new.permissions[:2] + "00")
            if not same_meta or not await asyncio.to_thread(verify_secret, str(old.value), str(new.value).encode()):
                return False
        elif not old.same_content(new):
            return False
    return True


class BatchWrites:
    """``POST /api/handles:batch``, and the set-based write under it (``apply``) that the SNMS batch endpoints
    (``registry/snms_api.py``) share."""

    def __init__(self, store: RegistryStore, stages: WriteStages, *, max_batch: int) -> None:
        self.store = store
        self.stages = stages
        self.max_batch = max_batch

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/handles:batch", self.batch)]

    @answers_errors
    async def batch(self, request: web.Request) -> web.StreamResponse:
        await self.stages.replication.refuse_on_mirror()
        payload = await json_body(request, require_json_type=True)
        raw_items = payload.get("items") if isinstance(payload, dict) else payload
        if not isinstance(raw_items, list):
            raise ProtocolError('Expected {"items": [{"op": ..., "handle": ..., "values": [...]}, ...]}')
        self.check_size(len(raw_items))
        identity = await self.stages.auth.require(request)
        entries: list[BatchItem | Outcome] = []
        stamp = now_timestamp()  # one clock reading for the request, as a PUT stamps all its values alike
        for raw in raw_items:
            try:
                entries.append(self._parse(raw, stamp))
            except HandleError as exc:
                entries.append(Outcome(_text_of(raw), exc))
        outcomes = await self.apply(actor_of(request, identity), identity, entries)
        return json_response({"responseCode": 1, "results": [outcome.as_json() for outcome in outcomes]})

    def check_size(self, count: int) -> None:
        """400 rc 4 for a batch of more than ``max_batch`` items."""
        if count > self.max_batch:
            raise ProtocolError(f"At most {self.max_batch} items per batch, got {count}")

    def item(self, op: str, text: str, given: list[HandleValue]) -> BatchItem:
        """``op`` (``create``, ``replace``, ``update``: replace an existing record, ``delete``) on the handle
        ``text``; raises for a handle that is malformed or not homed here."""
        handle = parse(text, max_bytes=self.stages.max_handle_bytes, bare_is_prefix=False)
        if not self.stages.prefixes.holds(handle):
            raise PrefixNotHomed(handle=handle.text)
        return BatchItem(op, handle, given)

    def _parse(self, raw: Any, stamp: str) -> BatchItem:
        if not isinstance(raw, dict) or raw.get("op") not in _OPS or not isinstance(raw.get("handle"), str):
            raise ProtocolError('Each item needs "op" (create, replace or delete) and "handle"')
        given = decode_values(values_with_links(raw), timestamp=stamp) if raw["op"] != "delete" else []
        return self.item(raw["op"], raw["handle"], given)

    async def apply(
        self, actor: Actor, identity: Identity, entries: Sequence[BatchItem | Outcome], *, op: str = "batch"
    ) -> list[Outcome]:
        """Write every item of ``entries`` that can be written, in one transaction; one outcome per entry, in order
        (an ``Outcome`` given, an item that failed to parse, is passed through). Raises for the whole batch only
        when it asks for more than ``MAX_SECRETS`` secret keys; ``op`` is the metric the writes count under."""
        outcomes: list[Outcome | None] = [None] * len(entries)
        items = []
        seen: set[str] = set()
        secrets = 0
        for position, entry in enumerate(entries):
            if isinstance(entry, Outcome):
                outcomes[position] = entry
            elif entry.handle.key in seen:
                error = ProtocolError("This handle appears more than once in the batch")
                outcomes[position] = Outcome(entry.handle.text, error)
            else:
                entry.position = position
                secrets += secrets_to_hash(entry.given)
                seen.add(entry.handle.key)
                items.append(entry)
        if secrets > MAX_SECRETS:
            raise InvalidValue(f"At most {MAX_SECRETS} secret keys can be set in one request, got {secrets}")
        with self.stages.metrics.counting(op):
            await self._write(actor, identity, items, outcomes)
        self.stages.metrics.batch_items += len(entries)
        done = [outcome for outcome in outcomes if outcome is not None]
        if any(outcome.error is None for outcome in done):
            await self.stages.replication.settle()  # "unchanged" too: a retry after a 503 waits for the mirrors
        return done

    async def _decide(
        self, checks: _Checks, identity: Identity, item: BatchItem, before: Sequence[HandleValue] | None
    ) -> str:
        """What to do with one item against its locked record: ``create``, ``update``, ``delete`` or ``same``.

        Raises the HandleError the single-handle API would answer; templates are checked and secret keys hashed
        only once the item is authorized.
        """
        text = item.handle.text
        if before is None and item.op in ("delete", "update"):
            raise HandleNotFound(handle=text)
        if item.op == "delete":
            await checks.permissions.authorize_change(identity, item.handle, before, None)
            return "delete"
        if before is not None and item.op == "create":
            # Only the handle's admins may learn whether a retry matches what is stored.
            await checks.permissions.authorize_change(identity, item.handle, before, before)
            if not await _same_record(before, item.given):
                raise HandleAlreadyExists(handle=text)
            return "same"
        given = item.given if item.op != "update" else _keeping_administration(before or (), item.given)
        # Like a PUT: secret keys checked against the locked record, so a placeholder sent back keeps its key.
        item.values = prepare_secrets(given, before or ())
        if before is not None:
            item.values = merge_keeping_stamps(before, item.values)
        await checks.permissions.authorize_change(identity, item.handle, before, item.values)
        item.template = await checks.template(item.handle, item.values)
        item.values = await hash_secrets(item.values)
        item.stored = values_to_stored(item.values).decode()
        return "create" if before is None else "update"

    async def _write(
        self, actor: Actor, identity: Identity, items: list[BatchItem], outcomes: list[Outcome | None]
    ) -> None:
        chosen: dict[str, list[BatchItem]] = {"create": [], "update": [], "delete": []}
        checks = _Checks(self.stages.permissions.memoized(), self.stages.check_template.memoized())
        held = {item.handle.key for item in items if self.stages.records.holds(item.handle.key)}
        async with self.store.transaction(actor) as tx:
            existing = await tx.lock_many([item.handle.key for item in items])
            for item in items:
                stored = existing.get(item.handle.key)
                before = None if stored is None else values_from_stored(stored)
                try:
                    action = await self._decide(checks, identity, item, before)
                except HandleError as exc:
                    outcomes[item.position] = Outcome(item.handle.text, exc)
                    continue
                if action == "same":
                    outcomes[item.position] = Outcome(item.handle.text, unchanged=True)
                else:
                    chosen[action].append(item)
            creates, updates, deletes = chosen["create"], chosen["update"], chosen["delete"]
            versions = await tx.insert_many(
                [(i.handle.key, i.handle.name, i.handle.prefix_key, i.stored, i.template) for i in creates]
            )
            versions |= await tx.update_many([(i.handle.key, i.stored, i.template) for i in updates])
            await tx.delete_many([i.handle.key for i in deletes])
        created = {item.position for item in creates}
        for item in creates + updates:
            text = item.handle.text
            if item.handle.key not in versions:  # a concurrent create took the handle between our lock and our insert
                outcomes[item.position] = Outcome(text, HandleAlreadyExists(handle=text))
                continue
            record = StoredRecord(item.handle.key, item.handle.name, versions[item.handle.key], item.stored)
            self.stages.records.written(record, item.values, held=item.handle.key in held)
            outcomes[item.position] = Outcome(text, status=201 if item.position in created else 200)
        for item in deletes:
            self.stages.records.forget(item.handle.key)
            outcomes[item.position] = Outcome(item.handle.text)


@dataclass(frozen=True, slots=True)
class _Checks:
    """The permission and template checks of one batch, each reading a record or template once per batch."""

    permissions: Permissions
    template: TemplateCheck


def _keeping_administration(before: Sequence[HandleValue], given: list[HandleValue]) -> list[HandleValue]:
    """``given`` plus the administrative values (types ``HS_*``: admins, keys, groups) of ``before`` at indexes
    ``given`` does not use: an ``update`` replaces a record's data, not who administers it."""
    used = {value.index for value in given}
    kept = [v for v in before if v.type_key().startswith("HS_") and v.index not in used]
    return sorted([*given, *kept], key=lambda v: v.index)


def _text_of(raw: Any) -> str | None:
    return raw.get("handle") if isinstance(raw, dict) and isinstance(raw.get("handle"), str) else None
