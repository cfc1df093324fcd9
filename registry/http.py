"""The write API on ``/api/handles``: PUT and DELETE with Handle.Net's semantics, listing, and history.

Wire behaviour follows research/handle-rest-api.md §3.2–3.4 and transcripts §A, §D, §E. The order of checks is
Handle.Net's: prefix homed (400 rc 301) → media type, JSON, handle in body, values, ``index`` parameters
(400 rc 4 / 202, 409 rc 201) → existence (``overwrite=false`` on an existing handle: 409 rc 101 — before
authentication, transcript A3) → authentication (401; 403 rc 402 on plain HTTP) → permission (403 rc 400/401)
→ the write. DELETE authenticates before it looks (an anonymous DELETE of a missing handle is 401, §3.3).

Status: 201 when a PUT created the handle or added only new indexes, 200 when it replaced anything.
``mintNewSuffix=true`` appends a random lowercase UUIDv4 to the path (retried on collision) and answers with the
minted handle. idnode extension: ``GET /api/handles/{handle}/history`` lists every version (admins only).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from registry.auth import Identity
from registry.core import Registry, request_id
from registry.permissions import Perm, admin_permissions
from registry.templates import Templates
from registry.writes import ABSENT, Guard, Seen, WriteResult
from resolver.errors import (
    HandleAlreadyExists,
    HandleError,
    HandleNotFound,
    InvalidHandle,
    InvalidValue,
    PrefixNotHomed,
    ProtocolError,
    ValueAlreadyExists,
)
from resolver.http import handle_text
from resolver.identifiers import Handle, governing_prefix, parse
from resolver.records import HandleValue, decode_values, redact_secrets, values_from_stored
from resolver.responses import flag, json_body, json_response

__all__ = ["HandleWrites"]

_MINT_ATTEMPTS = 5


def _indexes(request: web.Request) -> list[str]:
    return request.query.getall("index", [])


def _parse_indexes(raw: Sequence[str]) -> list[int]:
    try:
        return [int(item) for item in raw]
    except ValueError:
        bad = next(item for item in raw if not item.lstrip("-").isdigit())
        raise ProtocolError(f'Invalid index parameter "{bad[:64]}": not an integer') from None


class HandleWrites:
    """PUT/DELETE ``/api/handles/{handle}``, ``GET /api/handles?prefix=``, and handle history."""

    def __init__(self, registry: Registry, templates: Templates) -> None:
        self.registry = registry
        self.templates = templates

    def methods(self) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
        """Handlers the read API's ``HandlesEndpoint`` dispatches to (``LIST``: the collection with ``prefix``)."""
        return {"PUT": self.put, "DELETE": self.delete, "LIST": self.list_handles}

    # --- shared steps ---------------------------------------------------------------------------------------

    def _target(self, request: web.Request) -> Handle:
        text = handle_text(request)
        try:
            handle = parse(text, max_bytes=self.registry.max_handle_bytes)
        except HandleError as exc:
            exc.handle = exc.handle or text
            raise
        if not self.registry.lookup.prefixes.homes(governing_prefix(handle)):
            raise PrefixNotHomed(handle=text)
        return handle

    def _guard(self, request: web.Request, identity: Identity, handle: Handle) -> Guard:
        async def authorize(before: Sequence[HandleValue] | None, after: Sequence[HandleValue] | None) -> None:
            await self.registry.authorize_change(identity, handle, before, after)

        async def validate(after: Sequence[HandleValue]) -> str | None:
            return await self.templates.check(handle.prefix, after)

        return Guard(str(identity), request_id(request), authorize, validate)

    async def _existing(self, handle: Handle) -> Sequence[HandleValue] | None:
        return await self.registry.values_of(handle.name)

    # --- PUT ----------------------------------------------------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        op = "add_values" if _indexes(request) else "create"
        try:
            response, op = await self._put(request, op)
        except BaseException as exc:
            self.registry.count(op, exc)
            raise
        self.registry.count(op, None)
        return response

    async def _put(self, request: web.Request, op: str) -> tuple[web.StreamResponse, str]:
        handle = self._target(request)
        text = handle.text
        payload = await json_body(request, require_json_type=True)
        if isinstance(payload, dict) and "handle" in payload and payload["handle"] != text:
            same = isinstance(payload["handle"], str) and parse(payload["handle"]).key == handle.key
            if not same:
                raise ProtocolError("Mismatched handle in PUT request")
        try:
            values = decode_values(payload)
        except HandleError as exc:
            exc.handle = exc.handle or (text if exc.response_code != 4 else None)
            raise
        overwrite = flag(request.query, "overwrite") if "overwrite" in request.query else True
        index_params = _indexes(request)
        if index_params:
            return await self._add_values(request, handle, values, index_params, overwrite), op
        if flag(request.query, "mintNewSuffix"):
            if "/" not in text:
                raise InvalidHandle("mintNewSuffix needs the start of a handle, e.g. 88.118.8/ or 88.118.8/batch-")
            return await self._mint(request, handle, values), "create"
        if not handle.suffix:
            raise InvalidHandle("Handle has an empty suffix", handle=text)
        entry = await self.registry.entry_of(handle.name)
        if entry is not None and not overwrite:
            raise HandleAlreadyExists(handle=text)
        identity = await self.registry.identity(request, text)
        seen: Seen = ABSENT if entry is None else (entry.version, entry.values)
        result = await self.registry.writer.put_record(
            handle, values, overwrite=overwrite, guard=self._guard(request, identity, handle), seen=seen
        )
        return self._written(result, text), "create" if result.created else "replace"

    async def _add_values(
        self,
        request: web.Request,
        handle: Handle,
        values: list[HandleValue],
        index_params: list[str],
        overwrite: bool,
    ) -> web.StreamResponse:
        text = handle.text
        if not values:
            raise InvalidValue("No values given", handle=text)
        if "various" not in index_params and set(_parse_indexes(index_params)) != {v.index for v in values}:
            raise ProtocolError("Mismatched indexes in PUT request")
        existing = await self._existing(handle)
        if existing is None:
            raise HandleNotFound(handle=text)
        present = {v.index for v in existing}
        clash = next((v.index for v in values if v.index in present), None)
        if clash is not None and not overwrite:
            raise ValueAlreadyExists(f"Index conflict for {clash}", handle=text)
        identity = await self.registry.identity(request, text)
        result = await self.registry.writer.add_values(
            handle, values, overwrite=overwrite, guard=self._guard(request, identity, handle)
        )
        return self._written(result, text)

    async def _mint(self, request: web.Request, base: Handle, values: list[HandleValue]) -> web.StreamResponse:
        """``mintNewSuffix=true``: the path is the start of the handle; a lowercase UUIDv4 completes it."""
        identity = await self.registry.identity(request, base.text)
        for _ in range(_MINT_ATTEMPTS):
            handle = parse(base.name + str(uuid.uuid4()), max_bytes=self.registry.max_handle_bytes)
            try:
                result = await self.registry.writer.put_record(
                    handle, values, overwrite=False, guard=self._guard(request, identity, handle)
                )
            except HandleAlreadyExists:
                continue
            return self._written(result, handle.text)
        raise HandleAlreadyExists("Could not mint an unused suffix", handle=base.text)

    def _written(self, result: WriteResult, text: str) -> web.StreamResponse:
        if result.record is not None:
            self.registry.remember(result.record, result.values)
        return json_response({"responseCode": 1, "handle": text}, status=201 if result.created else 200)

    # --- DELETE -------------------------------------------------------------------------------------------

    async def delete(self, request: web.Request) -> web.StreamResponse:
        op = "delete_values" if _indexes(request) else "delete"
        try:
            response = await self._delete(request)
        except BaseException as exc:
            self.registry.count(op, exc)
            raise
        self.registry.count(op, None)
        return response

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        handle = self._target(request)
        indexes = _parse_indexes(_indexes(request))
        identity = await self.registry.identity(request, handle.text)
        guard = self._guard(request, identity, handle)
        if indexes:
            result = await self.registry.writer.delete_values(handle, indexes, guard=guard)
            if result.record is not None:
                self.registry.remember(result.record, result.values)
        else:
            await self.registry.writer.delete_record(handle, guard=guard)
            self.registry.forget(handle.key)
        return json_response({"responseCode": 1, "handle": handle.text})

    # --- listing ------------------------------------------------------------------------------------------

    async def list_handles(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/handles?prefix=P[&page=N&pageSize=M]`` (transcripts D1–D12); needs LIST_HANDLES on P."""
        given = request.query.get("prefix", "")
        prefix = given[5:] if given.upper().startswith("0.NA/") else given
        page_raw, size_raw = request.query.get("page"), request.query.get("pageSize")
        page, size = _paging(page_raw), _paging(size_raw)
        if not prefix or not self.registry.lookup.prefixes.homes(prefix):
            raise PrefixNotHomed(handle=given)
        identity = await self.registry.identity(request, given)
        await self.registry.require_prefix_admin(identity, prefix, Perm.LIST_HANDLES, echo=given)
        key = parse(f"{prefix}/x").prefix_key
        total = await self.registry.pool.fetchval("SELECT count(*) FROM handles WHERE prefix_key = $1", key)
        body: dict[str, Any] = {"responseCode": 1, "prefix": given, "totalCount": str(total)}
        if page is not None and size is not None and page >= 0 and size >= 0:
            body.update(page=page, pageSize=size)
            rows = await self.registry.pool.fetch(
                "SELECT handle FROM handles WHERE prefix_key = $1 ORDER BY handle_key LIMIT $2 OFFSET $3",
                key,
                size,
                page * size,
            )
        else:
            rows = await self.registry.pool.fetch(
                "SELECT handle FROM handles WHERE prefix_key = $1 ORDER BY handle_key", key
            )
        body["handles"] = [row[0] for row in rows]
        return json_response(body)

    # --- history ------------------------------------------------------------------------------------------

    async def history(self, request: web.Request, text: str) -> web.StreamResponse:
        """Every version of ``text`` with actor, time and values (secret keys redacted); READ_VALUE admins only."""
        handle = parse(text, max_bytes=self.registry.max_handle_bytes, bare_is_prefix=False)
        identity = await self.registry.identity(request, text)
        rows = await self.registry.pool.fetch(
            'SELECT seq, version, op, actor, at, request_id, "values"::text FROM handle_history '
            "WHERE handle_key = $1 ORDER BY seq",
            handle.key,
        )
        if not rows:
            raise HandleNotFound(handle=text)
        last = next((values_from_stored(r[6]) for r in reversed(rows) if r[6] is not None), ())
        await self.registry.permissions.require(
            identity,
            handle.prefix,
            admin_permissions(last) or await self.registry.permissions.prefix_admins(handle.prefix),
            {Perm.READ_VALUE},
            handle=text,
        )
        history = [
            {
                "seq": row[0],
                "version": row[1],
                "op": row[2],
                "actor": row[3],
                "at": row[4].isoformat(),
                "requestId": row[5],
                "values": None if row[6] is None else [v.to_json() for v in redact_secrets(values_from_stored(row[6]))],
            }
            for row in rows
        ]
        return json_response({"responseCode": 1, "handle": text, "history": history})


def _paging(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f'Invalid paging parameter "{raw[:64]}": not an integer') from None
