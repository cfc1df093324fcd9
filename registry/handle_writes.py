"""The write API on ``/api/handles/{handle}``: PUT and DELETE with Handle.Net's semantics.

Wire behaviour follows research/handle-rest-api.md §3.2–3.4 and transcripts §A, §D, §E. The order of checks is
Handle.Net's: prefix homed (400 rc 301) → media type, JSON, handle in body, values, ``index`` parameters
(400 rc 4 / 202, 409 rc 201) → existence (``overwrite=false`` on an existing handle: 409 rc 101 — before
authentication, transcript A3) → authentication (401; 403 rc 402 on plain HTTP) → permission (403 rc 400/401)
→ the write. DELETE authenticates before it looks (an anonymous DELETE of a missing handle is 401, §3.3).

Status: 201 when a PUT created the handle or added only new indexes, 200 when it replaced anything.
``mintNewSuffix=true`` appends a random lowercase UUIDv4 to the path (retried on collision) and answers with the
minted handle. Listing is ``registry/listing.py``, history ``registry/history.py``. A ``links`` array of link
objects in the body (idnode) is one more value, ``10320/loc`` at index 1000 (``resolver/product.py`` ``with_links``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from aiohttp import web

from registry.auth import Identity, actor_of
from registry.secret_keys import any_secret
from registry.write_stages import WriteStages
from registry.writes import ABSENT, Guard, Seen, Writer, WriteResult
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
from resolver.identifiers import Handle, parse
from resolver.numbers import ascii_integer
from resolver.product import with_links
from resolver.records import HandleValue, decode_values
from resolver.responses import Handler, flag, json_body, json_response

__all__ = ["HandleWrites"]

_MINT_ATTEMPTS = 5
MAX_INDEX_DIGITS = 10
"""An ``index`` parameter longer than this is no index (Python would parse 4,300 digits before refusing)."""


def _indexes(request: web.Request) -> list[str]:
    return request.query.getall("index", [])


def _parse_indexes(raw: Sequence[str]) -> list[int]:
    parsed = []
    for item in raw:
        number = ascii_integer(item, max_digits=MAX_INDEX_DIGITS)
        if number is None:
            raise ProtocolError(f"Invalid index parameter {item[:64]!r}: not an integer")
        parsed.append(number)
    return parsed


class HandleWrites:
    """PUT and DELETE on ``/api/handles/{handle}``."""

    def __init__(self, writer: Writer, stages: WriteStages) -> None:
        self.writer = writer
        self.stages = stages

    def methods(self) -> dict[str, Handler]:
        """The handlers ``HandlesEndpoint`` dispatches these methods to."""
        return {"PUT": self.put, "DELETE": self.delete}

    # --- shared steps ---------------------------------------------------------------------------------------

    def _target(self, request: web.Request) -> Handle:
        text = handle_text(request)
        try:
            handle = parse(text, max_bytes=self.stages.max_handle_bytes)
        except HandleError as exc:
            exc.about(text)
            raise
        if not self.stages.prefixes.holds(handle):
            raise PrefixNotHomed(handle=text)
        return handle

    def _guard(self, request: web.Request, identity: Identity, handle: Handle, *, trial: bool = False) -> Guard:
        """The checks of a write by ``identity``; a ``trial`` guard's template refusals are not counted."""
        check = self.stages.check_template.quietly if trial else self.stages.check_template

        async def authorize(before: Sequence[HandleValue] | None, after: Sequence[HandleValue] | None) -> None:
            await self.stages.permissions.authorize_change(identity, handle, before, after)

        async def validate(after: Sequence[HandleValue]) -> str | None:
            return await check(handle, after)

        return Guard(actor_of(request, identity), authorize, validate)

    # --- PUT ----------------------------------------------------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        await self.stages.replication.refuse_on_mirror()
        with self.stages.metrics.counting("add_values" if _indexes(request) else "create") as tally:
            response, tally.op = await self._put(request, tally.op)
        await self.stages.replication.settle()
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
            values = decode_values(with_links(payload))
        except HandleError as exc:
            exc.about(text)
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
        held = self.stages.records.holds(handle.key)
        result = await self._write_record(request, handle, values, overwrite, held=held)
        return self._written(result, text, held=held), "create" if result.created else "replace"

    async def _write_record(
        self, request: web.Request, handle: Handle, values: list[HandleValue], overwrite: bool, *, held: bool
    ) -> WriteResult:
        """Create or replace the whole record. A record the cache does not hold is not read first to learn whether
        it exists: the create is tried, and its one statement shows the record instead when it does exist."""
        text = handle.text
        identity: Identity | None = None
        seen: Seen | None = None
        if overwrite and not held and not any_secret(values):
            identity = await self.stages.auth.require(request, text)
            tried = await self.writer.try_create(handle, values, self._guard(request, identity, handle, trial=True))
            if isinstance(tried, WriteResult):
                return tried
            seen = tried
        if seen is None:
            entry = await self.stages.records.entry_of(handle.name)
            if entry is not None and not overwrite:
                raise HandleAlreadyExists(handle=text)
            seen = ABSENT if entry is None else (entry.version, entry.values)
        if identity is None:
            identity = await self.stages.auth.require(request, text)
        guard = self._guard(request, identity, handle)
        return await self.writer.put_record(handle, values, overwrite=overwrite, guard=guard, seen=seen)

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
        existing = await self.stages.records.values_of(handle.name)
        if existing is None:
            raise HandleNotFound(handle=text)
        present = {v.index for v in existing}
        clash = next((v.index for v in values if v.index in present), None)
        if clash is not None and not overwrite:
            raise ValueAlreadyExists(f"Index conflict for {clash}", handle=text)
        identity = await self.stages.auth.require(request, text)
        result = await self.writer.add_values(
            handle, values, overwrite=overwrite, guard=self._guard(request, identity, handle)
        )
        return self._written(result, text)

    async def _mint(self, request: web.Request, base: Handle, values: list[HandleValue]) -> web.StreamResponse:
        """``mintNewSuffix=true``: the path is the start of the handle; a lowercase UUIDv4 completes it."""
        identity = await self.stages.auth.require(request, base.text)
        for _ in range(_MINT_ATTEMPTS):
            handle = parse(base.name + str(uuid.uuid4()), max_bytes=self.stages.max_handle_bytes)
            try:
                result = await self.writer.put_record(
                    handle, values, overwrite=False, guard=self._guard(request, identity, handle)
                )
            except HandleAlreadyExists:
                continue
            return self._written(result, handle.text, held=False)
        raise HandleAlreadyExists("Could not mint an unused suffix", handle=base.text)

    def _written(self, result: WriteResult, text: str, *, held: bool = True) -> web.StreamResponse:
        """The answer to a write; ``held``: whether the cache held the record before it (``CachedRecords.written``)."""
        if result.record is not None:
            self.stages.records.written(result.record, result.values, held=held)
        return json_response({"responseCode": 1, "handle": text}, status=201 if result.created else 200)

    # --- DELETE -------------------------------------------------------------------------------------------

    async def delete(self, request: web.Request) -> web.StreamResponse:
        await self.stages.replication.refuse_on_mirror()
        with self.stages.metrics.counting("delete_values" if _indexes(request) else "delete"):
            response = await self._delete(request)
        await self.stages.replication.settle()
        return response

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        handle = self._target(request)
        indexes = _parse_indexes(_indexes(request))
        identity = await self.stages.auth.require(request, handle.text)
        guard = self._guard(request, identity, handle)
        if indexes:
            result = await self.writer.delete_values(handle, indexes, guard=guard)
            if result.record is not None:
                self.stages.records.remember(result.record, result.values)
        else:
            await self.writer.delete_record(handle, guard=guard)
            self.stages.records.forget(handle.key)
        return json_response({"responseCode": 1, "handle": handle.text})
