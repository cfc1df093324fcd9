"""``GET /api/handles?prefix=P[&page=N&pageSize=M]``: the handles of a prefix (transcripts D1–D12).

Needs LIST_HANDLES on ``0.NA/<P>``; ``P`` may be given as ``0.NA/P``. ``totalCount`` is a string and ``page`` /
``pageSize`` are echoed as numbers only when both are given, as Handle.Net does. The read API dispatches the
collection ``GET /api/handles`` here when it carries ``prefix`` (``HandleHooks.collection``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.auth import Authenticator
from registry.paging import paging
from registry.permissions import Perm, Permissions
from registry.store import RegistryStore
from resolver.errors import PrefixNotHomed
from resolver.identifiers import ascii_upper
from resolver.prefixes import PrefixTable
from resolver.responses import json_response

__all__ = ["HandleListing"]


class HandleListing:
    """The collection handler of ``/api/handles``."""

    def __init__(
        self, store: RegistryStore, prefixes: PrefixTable, auth: Authenticator, permissions: Permissions
    ) -> None:
        self.store = store
        self.prefixes = prefixes
        self.auth = auth
        self.permissions = permissions

    def wants(self, request: web.Request) -> bool:
        """Whether this request is a listing (the others on ``/api/handles`` are the read API's to answer)."""
        return request.method in ("GET", "HEAD") and "prefix" in request.query

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        given = request.query.get("prefix", "")
        prefix = given[5:] if given.upper().startswith("0.NA/") else given
        page = paging(request.query)
        if not prefix or not self.prefixes.homes(prefix):
            raise PrefixNotHomed(handle=given)
        identity = await self.auth.require(request, given)
        await self.permissions.require_prefix_admin(identity, prefix, Perm.LIST_HANDLES, echo=given)
        key = ascii_upper(prefix)
        body: dict[str, Any] = {
            "responseCode": 1,
            "prefix": given,
            "totalCount": str(await self.store.count_handles(key)),
        }
        if page is None:
            body["handles"] = await self.store.list_handles(key)
        else:
            body.update(page=page.number, pageSize=page.size)
            body["handles"] = await self.store.list_handles(key, limit=page.size, offset=page.offset)
        return json_response(body)
