"""The SNMS-compatible API: login and identifier data as TeleInfo's secondary-node management system serves them.

Enterprise MES/ERP systems written against SNMS (research idis-secondary-node.md §4.1(b)) keep working against
idnode. Every answer is the SNMS envelope over HTTP 200 (``registry/snms_envelope.py``); the records are the same
records the Handle API reads and writes (the mapping: ``registry/snms_records.py``).

- ``POST /identity/token`` ``{username, password}``: ``username`` is an identity handle with a secret key, an
  application identity (``88.118.8/APP-mes``) or the enterprise's ``88.118.8/ADMIN`` (an ``index:`` in front is
  allowed), ``password`` its secret. Answers ``data: {token, expires, identity}``, a bearer token
  (``registry/snms_tokens.py``) for ``Authorization: Bearer`` here and on the Handle API. Failed logins count against
  the authenticator's failure limits, as Basic ones do. Only on a secure channel.
- ``POST /identity/token/v1`` (``password = sha256_hex(sha256_hex(pwd) + "yyyy-MM-dd")``) is refused with status -2:
  verifying it needs the plain secret (or its unsalted SHA-256, as good as the password for a whole day, research
  §4.4), and idnode keeps secret keys only PBKDF2-hashed.
- ``POST /identityv2/data`` registers, ``PUT`` updates (the record's data is replaced; its administrative values,
  HS_ADMIN and keys, stay), ``DELETE`` ``{handle}`` deletes, ``GET /identityv2/data/detail?handle=`` reads (public
  values for anyone, all of them for an identity with READ_VALUE).
- ``POST /identityv2/data/batchCreate``, ``PUT …/batchUpdate`` (arrays of records) and ``DELETE …/batchDelete`` (an
  array of handles), at most ``max_batch`` items: ``data`` lists ``{handle, code, msg}`` per item in order, ``code``
  1 for a written item, else the SNMS status of its error (-2, -3). A retried batchCreate whose records are
  already stored with the same values succeeds again.

Writes go through the Handle batch API's set-based core (``BatchWrites.apply``): the same permission checks, data
template validation, history actor, mirror refusal and cache update. Any other path under ``/identity/`` or
``/identityv2/`` answers status -2 naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from registry.auth import Identity, actor_of
from registry.batch import BatchItem, BatchWrites, Outcome
from registry.permissions import Perm
from registry.snms_envelope import OK, answers_snms, snms_ok, snms_status
from registry.snms_records import record_from_snms, snms_detail
from registry.snms_tokens import Tokens, key_generation
from resolver.errors import (
    AuthenticationNeeded,
    HandleError,
    HandleNotFound,
    InsufficientPermissions,
    InvalidAdmin,
    NotSupported,
    ProtocolError,
)
from resolver.identifiers import Handle, parse
from resolver.records import HandleValue
from resolver.responses import json_body

__all__ = ["SnmsAPI"]

MAX_USERNAME = 50
MAX_PASSWORD = 64
"""SNMS's own limits on the login fields."""


def _text_field(body: dict[str, Any], name: str, limit: int) -> str:
    raw = body.get(name)
    if raw is None or raw == "":
        raise ProtocolError(f"{name}: required")
    if not isinstance(raw, str):
        raise ProtocolError(f"{name}: must be a string")
    if len(raw) > limit:
        raise ProtocolError(f"{name}: at most {limit} characters")
    return raw


def _item_result(outcome: Outcome) -> dict[str, Any]:
    if outcome.error is None:
        return {"handle": outcome.handle, "code": OK, "msg": "unchanged" if outcome.unchanged else "success"}
    error = outcome.error
    return {"handle": outcome.handle, "code": snms_status(error), "msg": error.message or type(error).__name__}


class SnmsAPI:
    """``/identity/token`` and ``/identityv2/data…``."""

    def __init__(self, batch: BatchWrites, tokens: Tokens) -> None:
        self.batch = batch
        self.stages = batch.stages
        self.tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/identity/token", self.login),
            web.post("/identity/token/v1", self.legacy_login),
            web.get("/identityv2/data/detail", self.detail),
            web.post("/identityv2/data", self.register),
            web.put("/identityv2/data", self.update),
            web.delete("/identityv2/data", self.delete),
            web.post("/identityv2/data/batchCreate", self.batch_create),
            web.put("/identityv2/data/batchUpdate", self.batch_update),
            web.delete("/identityv2/data/batchDelete", self.batch_delete),
            web.route("*", "/identity/{tail:.*}", self.unknown),
            web.route("*", "/identityv2/{tail:.*}", self.unknown),
        ]

    # --- login ----------------------------------------------------------------------------------------------

    @answers_snms
    async def login(self, request: web.Request) -> web.StreamResponse:
        auth = self.stages.auth
        if not auth.is_secure(request):
            raise AuthenticationNeeded(AuthenticationNeeded.insecure_message)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ProtocolError("body: must be an object {username, password}")
        username = _text_field(body, "username", MAX_USERNAME)
        password = _text_field(body, "password", MAX_PASSWORD)
        try:
            identity = Identity.parse(username)
        except ValueError:
            raise ProtocolError("username: must be an identity handle such as 88.118.8/APP-mes") from None
        proved = await auth.verify_password(identity, password.encode(), auth.client_address(request))
        generation = key_generation(await auth.key_values(proved, "HS_SECKEY"))
        token, expires = self.tokens.issue(str(proved), generation)
        return snms_ok({"token": token, "expires": expires, "identity": str(proved)})

    @answers_snms
    async def legacy_login(self, request: web.Request) -> web.StreamResponse:
        raise NotSupported(
            "/identity/token/v1 is not supported: its date-salted SHA-256 password can only be checked against a "
            "secret kept in the clear (and is replayable for a whole day); idnode stores secret keys hashed. "
            "Log in with POST /identity/token over HTTPS"
        )

    @answers_snms
    async def unknown(self, request: web.Request) -> web.StreamResponse:
        raise ProtocolError(f"{request.method} {request.path} is not an SNMS endpoint of this node")

    # --- one record -----------------------------------------------------------------------------------------

    @answers_snms
    async def detail(self, request: web.Request) -> web.StreamResponse:
        text = request.query.get("handle")
        if not text:
            raise ProtocolError("handle: required")
        handle = parse(text, max_bytes=self.stages.max_handle_bytes, bare_is_prefix=False)
        identity = await self.stages.auth.identify(request)
        values = await self.stages.records.values_of(handle.name)
        if values is None:
            raise HandleNotFound(handle=text)
        if not all(value.public_read for value in values) and not await self._may_read(identity, handle, values):
            values = [value for value in values if value.public_read]
        return snms_ok(snms_detail(handle.text, handle.prefix, values))

    async def _may_read(self, identity: Identity | None, handle: Handle, values: Sequence[HandleValue]) -> bool:
        if identity is None:
            return False
        try:
            await self.stages.permissions.require_on_handle(identity, handle, values, Perm.READ_VALUE, echo=None)
        except (InvalidAdmin, InsufficientPermissions):
            return False
        return True

    async def _one(self, request: web.Request, op: str, metric: str) -> web.StreamResponse:
        await self.stages.replication.refuse_on_mirror()
        body = await json_body(request)
        if op == "delete":
            if not isinstance(body, dict) or not isinstance(body.get("handle"), str) or not body["handle"]:
                raise ProtocolError("handle: required")
            text, values = body["handle"], []
        else:
            text, values = record_from_snms(body)
        item = self.batch.item(op, text, values)
        identity = await self.stages.auth.require(request)
        [outcome] = await self.batch.apply(actor_of(request, identity), identity, [item], op=metric)
        if outcome.error is not None:
            raise outcome.error
        return snms_ok({"handle": outcome.handle})

    @answers_snms
    async def register(self, request: web.Request) -> web.StreamResponse:
        return await self._one(request, "create", "create")

    @answers_snms
    async def update(self, request: web.Request) -> web.StreamResponse:
        return await self._one(request, "update", "replace")

    @answers_snms
    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._one(request, "delete", "delete")

    # --- batches --------------------------------------------------------------------------------------------

    async def _many(self, request: web.Request, op: str) -> web.StreamResponse:
        await self.stages.replication.refuse_on_mirror()
        body = await json_body(request)
        if not isinstance(body, list):
            raise ProtocolError("body: must be a JSON array")
        self.batch.check_size(len(body))
        identity = await self.stages.auth.require(request)
        entries = [self._entry(op, raw) for raw in body]
        outcomes = await self.batch.apply(actor_of(request, identity), identity, entries)
        return snms_ok([_item_result(outcome) for outcome in outcomes])

    def _entry(self, op: str, raw: Any) -> BatchItem | Outcome:
        text = raw if op == "delete" else raw.get("handle") if isinstance(raw, dict) else None
        try:
            if op == "delete":
                if not isinstance(raw, str) or not raw:
                    raise ProtocolError("handle: must be a non-empty string")
                return self.batch.item(op, raw, [])
            text, values = record_from_snms(raw)
            return self.batch.item(op, text, values)
        except HandleError as exc:
            return Outcome(text if isinstance(text, str) else None, exc)

    @answers_snms
    async def batch_create(self, request: web.Request) -> web.StreamResponse:
        return await self._many(request, "create")

    @answers_snms
    async def batch_update(self, request: web.Request) -> web.StreamResponse:
        return await self._many(request, "update")

    @answers_snms
    async def batch_delete(self, request: web.Request) -> web.StreamResponse:
        return await self._many(request, "delete")
