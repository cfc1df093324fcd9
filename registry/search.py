"""Reverse look-up, ``GET /hrls/handles?URL=...&CHECKSUM=...``: which handles hold these values (pyhandle's
``search_handle``; research/handle-rest-api.md §6).

Each parameter other than ``limit``/``page``/``retrieverecords`` names a value type and the value it must have;
several are AND-ed; ``*`` is a wildcard. The answer is a JSON array of handle names, at most ``limit`` (default
1000, at most 10000). Only types listed in ``search_types`` are indexed (``handle_search``, kept by the write
triggers), and only values anonymous readers may see: a secret key is never searchable.

Searching needs an authenticated identity, as the HRLS servlet does; a node operator finds any handle, any other
identity only the handles it could list: under its own prefix and the prefixes derived from it, less those of
another enterprise, and only where it holds LIST_HANDLES (``GET /api/handles?prefix=`` needs the same; a
restricted sub-identity of a tenant, or a tenant, never learns handle names it may not list). At most
``MAX_CRITERIA`` criteria: PostgreSQL's planning time grows steeply with them (150 took 4.9 s). Values may not
contain NUL (nothing stored can).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiohttp import web

from registry.auth import Authenticator, Identity
from registry.permissions import Perm, Permissions
from registry.store import RegistryStore
from resolver.errors import InsufficientPermissions, InvalidAdmin, ProtocolError
from resolver.identifiers import ascii_upper
from resolver.numbers import ascii_integer
from resolver.responses import answers_errors, json_response

__all__ = ["ReverseLookup"]

_RESERVED = frozenset({"limit", "page", "retrieverecords"})
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_CRITERIA = 16
_LIMIT_DIGITS = 12


class ReverseLookup:
    """``/hrls/handles`` and ``/hrls/ping``."""

    def __init__(self, store: RegistryStore, auth: Authenticator, permissions: Permissions) -> None:
        self.store = store
        self.auth = auth
        self.permissions = permissions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/hrls/ping", self.ping),
            web.get("/hrls/handles", self.search),
            web.get("/hrls/handles/", self.search),
        ]

    async def ping(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    @answers_errors
    async def search(self, request: web.Request) -> web.StreamResponse:
        criteria = [(ascii_upper(k), v) for k, v in request.query.items() if k not in _RESERVED]
        if not criteria:
            raise ProtocolError("Give at least one TYPE=value criterion, e.g. ?URL=https://example.com/*")
        if len(criteria) > MAX_CRITERIA:
            raise ProtocolError(f"At most {MAX_CRITERIA} search criteria, got {len(criteria)}")
        if any("\x00" in kind or "\x00" in value for kind, value in criteria):
            raise ProtocolError("Search criteria must not contain NUL characters")
        asked = ascii_integer(request.query.get("limit", str(DEFAULT_LIMIT)).strip(), max_digits=_LIMIT_DIGITS)
        if asked is None:
            raise ProtocolError("limit must be an integer")
        limit = max(min(asked, MAX_LIMIT), 0)
        identity = await self.auth.require(request)
        searchable = await self.store.searchable_types()
        unknown = sorted({kind for kind, _ in criteria} - searchable)
        if unknown:
            raise ProtocolError(
                f"Not searchable here: {', '.join(unknown)[:200]} (searchable: {', '.join(sorted(searchable))})"
            )
        if await self.permissions.is_operator(identity):
            names = await self.store.search(criteria, within=None, limit=limit)
        else:
            own = identity.handle.split("/", 1)[0]
            await self.permissions.require_prefix_admin(identity, own, Perm.LIST_HANDLES, echo=None)
            names = await self._listable(identity, criteria, ascii_upper(own), limit)
        return json_response(orjson.dumps(names))

    async def _listable(
        self, identity: Identity, criteria: Sequence[tuple[str, str]], own: str, limit: int
    ) -> list[str]:
        """Up to ``limit`` matches under ``own`` that ``identity`` may list. A derived prefix with admins of its own
        may refuse it: such prefixes are left out in the query and it is asked again, so refusals never shorten the
        answer below ``limit``; each round finds a new refused prefix, so it ends."""
        checked = {own}  # the caller checked it
        refused: list[str] = []
        while True:
            names = await self.store.search(criteria, within=own, limit=limit, besides=refused)
            fresh = {ascii_upper(name.split("/", 1)[0]) for name in names} - checked
            checked |= fresh
            newly = [prefix for prefix in fresh if not await self._may_list(identity, prefix)]
            if not newly:
                return names
            refused += newly

    async def _may_list(self, identity: Identity, prefix: str) -> bool:
        """A refusal (rc 400, 401) is "no"; a database that cannot answer is still a 503, not a shorter answer."""
        try:
            await self.permissions.require_prefix_admin(identity, prefix, Perm.LIST_HANDLES, echo=None)
        except (InvalidAdmin, InsufficientPermissions):
            return False
        return True
