"""``POST /api/handles:batch``: up to ``max_batch`` creates, replaces and deletes with one result each.

Body ``{"items": [{"op": "create"|"replace"|"delete", "handle": "...", "values": [...]}, ...]}`` (or the bare
array). The answer is 200 ``{"responseCode": 1, "results": [...]}`` with, per item in request order,
``{"handle", "responseCode", "status"[, "message"]}``: the code and HTTP status the single-handle API would have
given. Items that fail (bad values, no permission, an existing handle for ``create``) are reported and skipped;
the others are written. Retrying a batch is safe: a ``create`` whose handle already holds exactly those values
(timestamps aside) succeeds again with ``"unchanged": true``.

All valid items are written in one transaction with one statement per kind of change, which is what makes the
batch API fast (the single-handle API pays a transaction per handle); the records are locked first, so the
decisions hold until commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from registry.auth import Identity, verify_secret
from registry.core import Registry, request_id
from registry.templates import Templates
from registry.writes import merge_keeping_stamps, protect_secrets
from resolver.errors import HandleAlreadyExists, HandleError, HandleNotFound, PrefixNotHomed, ProtocolError
from resolver.identifiers import Handle, governing_prefix, parse
from resolver.records import SECRET_TYPES, HandleValue, decode_values, values_from_stored, values_to_stored
from resolver.responses import answers_errors, json_body, json_response
from resolver.store import StoredRecord

__all__ = ["BatchWrites"]

_OPS = frozenset({"create", "replace", "delete"})


@dataclass(slots=True)
class _Item:
    position: int
    op: str
    handle: Handle
    values: list[HandleValue] = field(default_factory=list)
    given: list[HandleValue] = field(default_factory=list)
    template: str | None = None
    stored: str = ""


def _result(text: str, error: HandleError | None = None, **extra: Any) -> dict[str, Any]:
    if error is None:
        return {"handle": text, "responseCode": 1, "status": extra.pop("status", 200), **extra}
    out: dict[str, Any] = {"handle": text, "responseCode": error.response_code, "status": error.http_status}
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
        elif old.to_json() | {"timestamp": ""} != new.to_json() | {"timestamp": ""}:
            return False
    return True


class BatchWrites:
    def __init__(self, registry: Registry, templates: Templates) -> None:
        self.registry = registry
        self.templates = templates

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/handles:batch", self.batch)]

    @answers_errors
    async def batch(self, request: web.Request) -> web.StreamResponse:
        payload = await json_body(request, require_json_type=True)
        raw_items = payload.get("items") if isinstance(payload, dict) else payload
        if not isinstance(raw_items, list):
            raise ProtocolError('Expected {"items": [{"op": ..., "handle": ..., "values": [...]}, ...]}')
        if len(raw_items) > self.registry.max_batch:
            raise ProtocolError(f"At most {self.registry.max_batch} items per batch, got {len(raw_items)}")
        identity = await self.registry.identity(request)
        results: list[dict[str, Any] | None] = [None] * len(raw_items)
        items = []
        seen: set[str] = set()
        for position, raw in enumerate(raw_items):
            try:
                item = await self._parse(position, raw)
                if item.handle.key in seen:
                    raise ProtocolError("This handle appears more than once in the batch")
            except HandleError as exc:
                results[position] = _result(_text_of(raw), exc)
                continue
            seen.add(item.handle.key)
            items.append(item)
        try:
            await self._write(request, identity, items, results)
        except BaseException as exc:
            self.registry.count("batch", exc)
            raise
        self.registry.count("batch", None)
        self.registry.counts.batch_items += len(raw_items)
        return json_response({"responseCode": 1, "results": results})

    async def _parse(self, position: int, raw: Any) -> _Item:
        if not isinstance(raw, dict) or raw.get("op") not in _OPS or not isinstance(raw.get("handle"), str):
            raise ProtocolError('Each item needs "op" (create, replace or delete) and "handle"')
        handle = parse(raw["handle"], max_bytes=self.registry.max_handle_bytes, bare_is_prefix=False)
        if not self.registry.lookup.prefixes.homes(governing_prefix(handle)):
            raise PrefixNotHomed(handle=handle.text)
        item = _Item(position, raw["op"], handle)
        if item.op != "delete":
            item.given = decode_values(raw.get("values", []))
            item.values = await protect_secrets(item.given)
            item.template = await self.templates.check(handle.prefix, item.values)
        return item

    async def _write(
        self, request: web.Request, identity: Identity, items: list[_Item], results: list[dict[str, Any] | None]
    ) -> None:
        registry = self.registry
        creates: list[_Item] = []
        updates: list[_Item] = []
        deletes: list[_Item] = []
        async with registry.writer.pool.acquire() as con, con.transaction():
            await con.execute(
                "SELECT set_config('idnode.actor', $1, true), set_config('idnode.request_id', $2, true)",
                str(identity),
                request_id(request),
            )
            rows = await con.fetch(
                'SELECT handle_key, handle, "values"::text FROM handles WHERE handle_key = ANY($1::text[]) FOR UPDATE',
                [item.handle.key for item in items],
            )
            existing = {row[0]: values_from_stored(row[2]) for row in rows}
            for item in items:
                text = item.handle.text
                before = existing.get(item.handle.key)
                try:
                    if item.op == "delete":
                        if before is None:
                            raise HandleNotFound(handle=text)
                        await registry.authorize_change(identity, item.handle, before, None)
                        deletes.append(item)
                    elif before is None:
                        await registry.authorize_change(identity, item.handle, None, item.values)
                        creates.append(item)
                    elif item.op == "create":
                        # Only the handle's admins may learn whether a retry matches what is stored.
                        await registry.authorize_change(identity, item.handle, before, before)
                        if not await _same_record(before, item.given):
                            raise HandleAlreadyExists(handle=text)
                        results[item.position] = _result(text, unchanged=True)
                        continue
                    else:
                        item.values = merge_keeping_stamps(before, item.values)
                        await registry.authorize_change(identity, item.handle, before, item.values)
                        updates.append(item)
                except HandleError as exc:
                    results[item.position] = _result(text, exc)
                    continue
                item.stored = values_to_stored(item.values).decode()
            versions = await _apply(con, creates, updates, deletes)
        created = {item.position for item in creates}
        for item in creates + updates:
            version = versions.get(item.handle.key)
            if version is None:  # a concurrent create took the handle between our lock and our insert
                results[item.position] = _result(item.handle.text, HandleAlreadyExists(handle=item.handle.text))
                continue
            registry.remember(StoredRecord(item.handle.key, item.handle.name, version, item.stored), item.values)
            results[item.position] = _result(item.handle.text, status=201 if item.position in created else 200)
        for item in deletes:
            registry.forget(item.handle.key)
            results[item.position] = _result(item.handle.text)


async def _apply(con: Any, creates: list[_Item], updates: list[_Item], deletes: list[_Item]) -> dict[str, int]:
    """One statement per kind of change; returns the new version of every created or updated key."""
    versions: dict[str, int] = {}
    if creates:
        rows = await con.fetch(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
            "SELECT k, h, p, v::jsonb, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "AS u(k, h, p, v, t) ON CONFLICT (handle_key) DO NOTHING RETURNING handle_key, version",
            [i.handle.key for i in creates],
            [i.handle.name for i in creates],
            [i.handle.prefix_key for i in creates],
            [i.stored for i in creates],
            [i.template for i in creates],
        )
        versions.update((row[0], row[1]) for row in rows)
    if updates:
        rows = await con.fetch(
            'UPDATE handles h SET "values" = u.v::jsonb, template_version = u.t '
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, v, t) "
            "WHERE h.handle_key = u.k RETURNING h.handle_key, h.version",
            [i.handle.key for i in updates],
            [i.stored for i in updates],
            [i.template for i in updates],
        )
        versions.update((row[0], row[1]) for row in rows)
    if deletes:
        await con.execute("DELETE FROM handles WHERE handle_key = ANY($1::text[])", [i.handle.key for i in deletes])
    return versions


def _text_of(raw: Any) -> str | None:
    return raw.get("handle") if isinstance(raw, dict) and isinstance(raw.get("handle"), str) else None
