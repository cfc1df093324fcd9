"""``/api/enterprises``: a node operator lists, inspects, changes, suspends, resumes and re-keys enterprises.

- ``GET /api/enterprises[?page=&pageSize=&name=&creditCode=&state=]`` →
  ``{"responseCode": 1, "totalCount": "N", ["page": p, "pageSize": s,] "enterprises": [<enterprise>, ...]}``
  in prefix order; ``name`` matches a substring (any case), ``creditCode`` the exact code, ``state`` is
  ``active`` or ``suspended``; paging as ``/api/prefixes`` (``registry/paging.py``).
- ``GET /api/enterprises/{prefix}`` → ``{"responseCode": 1, "enterprise": <enterprise>}``, where an enterprise is
  ``{"prefix", "name", "creditCode", "contact", "address", "state", "admin", "createdAt", "createdBy"}``.
- ``PATCH /api/enterprises/{prefix}`` with a JSON merge patch of ``name``, ``contact``, ``address``, ``creditCode``
  (null removes all but the name; any other field is 400 rc 4 naming it) → the enterprise as it is now.
- ``POST /api/enterprises/{prefix}/suspend`` and ``/resume`` → the enterprise with its new state.
- ``POST /api/enterprises/{prefix}/rotate-secret`` → ``{"responseCode": 1, "prefix", "identity", "secret"}``, the
  new secret shown this once.

Operators only, like ``/api/prefixes``: 401/403 rc 402 without credentials, 403 rc 401 for anyone else; an unknown
prefix is 404 rc 100. What each operation does and why: ``registry/lifecycle.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from registry.auth import Authenticator, actor_of
from registry.cached import CachedRecords
from registry.lifecycle import STATES, Suspensions, enterprise_json, rotate_secret, set_state, show, update
from registry.paging import paging
from registry.permissions import Operators
from registry.store import Actor, EnterpriseRow, RegistryStore
from resolver.errors import InsufficientPermissions, ProtocolError
from resolver.identifiers import ascii_upper
from resolver.responses import answers_errors, json_body, json_response

__all__ = ["EnterprisesAPI"]


class EnterprisesAPI:
    """``/api/enterprises[/{prefix}[/suspend|/resume|/rotate-secret]]``."""

    def __init__(
        self,
        store: RegistryStore,
        records: CachedRecords,
        auth: Authenticator,
        operators: Operators,
        suspensions: Suspensions,
    ) -> None:
        self.store = store
        self.records = records
        self.auth = auth
        self.operators = operators
        self.suspensions = suspensions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/enterprises", self.list),
            web.get("/api/enterprises/{prefix}", self.get),
            web.patch("/api/enterprises/{prefix}", self.patch),
            web.post("/api/enterprises/{prefix}/suspend", self.suspend),
            web.post("/api/enterprises/{prefix}/resume", self.resume),
            web.post("/api/enterprises/{prefix}/rotate-secret", self.rotate),
        ]

    async def _operator(self, request: web.Request) -> Actor:
        echo = request.match_info.get("prefix")
        identity = await self.auth.require(request, echo)
        if not await self.operators.includes(identity):
            raise InsufficientPermissions("Only a node operator may manage enterprises", handle=echo)
        return actor_of(request, identity)

    @answers_errors
    async def list(self, request: web.Request) -> web.StreamResponse:
        page = paging(request.query)
        state = request.query.get("state")
        if state is not None and state not in STATES:
            raise ProtocolError(f"state must be one of {', '.join(STATES)}")
        name, credit_code = (_text(request.query, key) for key in ("name", "creditCode"))
        await self._operator(request)
        total, rows = await self.store.enterprises(
            name=name,
            credit_code=credit_code,
            status=state,
            limit=None if page is None else page.size,
            offset=0 if page is None else page.offset,
        )
        body: dict[str, Any] = {"responseCode": 1, "totalCount": str(total)}
        if page is not None:
            body.update(page=page.number, pageSize=page.size)
        body["enterprises"] = [enterprise_json(row) for row in rows]
        return json_response(body)

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        await self._operator(request)
        return self._answer(await show(self.store, request.match_info["prefix"]))

    @answers_errors
    async def patch(self, request: web.Request) -> web.StreamResponse:
        actor = await self._operator(request)
        patch = await json_body(request)
        if not isinstance(patch, dict):
            raise ProtocolError('Expected a JSON object such as {"contact": "..."}')
        return self._answer(await update(self.store, request.match_info["prefix"], patch, actor=actor))

    async def _set_state(self, request: web.Request, state: str) -> web.StreamResponse:
        actor = await self._operator(request)
        row = await set_state(self.store, request.match_info["prefix"], state, actor=actor)
        self.suspensions.forget()
        return self._answer(row)

    @answers_errors
    async def suspend(self, request: web.Request) -> web.StreamResponse:
        return await self._set_state(request, "suspended")

    @answers_errors
    async def resume(self, request: web.Request) -> web.StreamResponse:
        return await self._set_state(request, "active")

    @answers_errors
    async def rotate(self, request: web.Request) -> web.StreamResponse:
        actor = await self._operator(request)
        prefix = request.match_info["prefix"]
        credentials = await rotate_secret(self.store, prefix, actor=actor)
        self.records.evict(ascii_upper(credentials.identity.split(":", 1)[1]))  # not waiting for the notification
        return json_response({"responseCode": 1, "prefix": prefix, **credentials.as_json()})

    @staticmethod
    def _answer(row: EnterpriseRow) -> web.StreamResponse:
        return json_response({"responseCode": 1, "enterprise": enterprise_json(row)})


def _text(query: Mapping[str, str], key: str) -> str | None:
    value = query.get(key)
    if value is not None and "\x00" in value:
        raise ProtocolError(f"{key} must not contain NUL characters")
    return value
