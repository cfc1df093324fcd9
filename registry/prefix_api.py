"""``/api/prefixes``: the node operator homes prefixes and onboards enterprises (transcripts D13–D16).

- ``GET /api/prefixes[?page=&pageSize=]`` → ``{"responseCode":1,"totalCount":"N","prefixes":["0.NA/P",...]}``.
- ``POST /api/prefixes/{prefix}`` with ``{"name", "creditCode", "contact"}`` onboards an enterprise
  (``registry/enterprises.py``) and answers 201 with its identity and secret, shown this once; without a name it
  only homes the prefix, as Handle.Net's does.
- ``POST /api/prefixes`` with ``{"name", "creditCode", "contact", "address", "under"}`` onboards an enterprise on
  the next free number under ``under`` (default: the node prefix), ``88.118.1``, ``88.118.2``, …
  (``enterprises.onboard_next``), and answers 201 with the prefix it got, its identity and secret.
- ``DELETE /api/prefixes/{prefix}[?force=true]`` unhomes it (409 while it has handles, unless forced),
  and with it the prefixes, enterprises, templates and handles under it (history stays).
- ``GET /api/prefixes/{prefix}`` is 405, as in Handle.Net.

Every call needs a node-operator identity.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.auth import Authenticator, actor_of
from registry.enterprises import Enterprise, home_prefix, onboard, onboard_next, remove_prefix, validate_prefix
from registry.paging import paging
from registry.permissions import Operators
from registry.store import Actor, RegistryStore
from resolver.errors import InsufficientPermissions, MethodNotAllowed, ProtocolError
from resolver.responses import answers_errors, flag, json_body, json_response
from resolver.store import Store

__all__ = ["PrefixesAPI"]

_ITEM_ALLOW = ("POST", "DELETE", "OPTIONS")


class PrefixesAPI:
    """``/api/prefixes[/{prefix}]``."""

    def __init__(self, store: RegistryStore, read_store: Store, auth: Authenticator, operators: Operators) -> None:
        self.store = store
        self.read_store = read_store
        self.auth = auth
        self.operators = operators

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/prefixes", self.list),
            web.post("/api/prefixes", self.allocate),
            web.post("/api/prefixes/{prefix}", self.create),
            web.delete("/api/prefixes/{prefix}", self.delete),
            web.route("*", "/api/prefixes/{prefix}", self.not_allowed),
        ]

    async def _operator(self, request: web.Request, echo: str | None) -> Actor:
        identity = await self.auth.require(request, echo)
        if not await self.operators.includes(identity):
            raise InsufficientPermissions("Only a node operator may manage prefixes", handle=echo)
        return actor_of(request, identity)

    @answers_errors
    async def list(self, request: web.Request) -> web.StreamResponse:
        page = paging(request.query)
        await self._operator(request, None)
        rows = await self.read_store.fetch_prefixes()
        names = sorted(f"0.NA/{row.prefix}" for row in rows if row.kind == "homed")
        body: dict[str, Any] = {"responseCode": 1, "totalCount": str(len(names))}
        if page is not None:
            body.update(page=page.number, pageSize=page.size)
            names = page.cut(names)
        body["prefixes"] = names
        return json_response(body)

    @answers_errors
    async def create(self, request: web.Request) -> web.StreamResponse:
        prefix = validate_prefix(request.match_info["prefix"])
        actor = await self._operator(request, prefix)
        payload: dict[str, Any] = {}
        if request.body_exists:
            payload = await json_body(request)
            if not isinstance(payload, dict):
                raise ProtocolError('Expected {"name": ..., "creditCode": ..., "contact": ...}')
        name = payload.get("name")
        if name is None:
            for field in _FIELDS:  # typed even when only homing, as the document types them
                _optional(payload, field)
            added = await home_prefix(self.store, prefix)
            return json_response({"responseCode": 1, "prefix": prefix}, status=201 if added else 200)
        enterprise = _enterprise(payload)
        credentials = await onboard(
            self.store,
            prefix,
            name=enterprise.name,
            credit_code=enterprise.credit_code,
            contact=enterprise.contact,
            address=enterprise.address,
            actor=actor,
        )
        return json_response({"responseCode": 1, "prefix": prefix, **credentials.as_json()}, status=201)

    @answers_errors
    async def allocate(self, request: web.Request) -> web.StreamResponse:
        actor = await self._operator(request, None)
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise ProtocolError('Expected {"name": ..., "under": ...}')
        under = _optional(payload, "under")
        prefix, credentials = await onboard_next(self.store, _enterprise(payload), under=under, actor=actor)
        return json_response({"responseCode": 1, "prefix": prefix, **credentials.as_json()}, status=201)

    @answers_errors
    async def delete(self, request: web.Request) -> web.StreamResponse:
        prefix = validate_prefix(request.match_info["prefix"])
        actor = await self._operator(request, prefix)
        deleted = await remove_prefix(self.store, prefix, force=flag(request.query, "force"), actor=actor)
        return json_response({"responseCode": 1, "prefix": prefix, "deletedHandles": deleted})

    @answers_errors
    async def not_allowed(self, request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed(request.method, request.path, allow=_ITEM_ALLOW)


_FIELDS = ("creditCode", "contact", "address")
"""The optional fields of an enterprise, in ``Enterprise``'s order."""


def _enterprise(payload: dict[str, Any]) -> Enterprise:
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProtocolError("name must be a non-empty string")
    return Enterprise(name, *(_optional(payload, field) for field in _FIELDS))


def _optional(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise ProtocolError(f"{key} must be a string without NUL characters")
    return value
