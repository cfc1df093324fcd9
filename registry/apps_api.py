"""``/api/enterprises/{prefix}/apps``: an enterprise creates, lists and revokes the identities of its systems.

- ``POST /api/enterprises/{prefix}/apps`` with ``{"name": "mes-line-3", "rights": ["register", "update", "delete",
  "read"], "publicKey"?: <JWK or PEM>}`` → 201 ``{"responseCode": 1, "prefix", "name", "identity":
  "300:<prefix>/APP-<name>", "secret", "rights"}``, the secret shown this once (none with a publicKey: the app then
  signs session challenges with its private key); 409 rc 101 when the app exists.
- ``GET /api/enterprises/{prefix}/apps`` → ``{"responseCode": 1, "apps": [{"name", "identity", "rights",
  "created"}, ...]}``.
- ``DELETE /api/enterprises/{prefix}/apps/{name}`` → ``{"responseCode": 1}``; the identity stops working at once.

Who may: a node operator, or an identity holding the bits on ``0.NA/<prefix>`` (the enterprise's ``P/ADMIN``):
ADD_ADMIN to create, REMOVE_ADMIN to revoke, READ_VALUE to list (so an app with the read right sees its siblings,
never their secrets). Anyone else is refused as by the Handle API (403 rc 400/401; 401 without credentials; a
suspended enterprise's creates and revokes are refused). What an app is: ``registry/apps.py``.
"""

from __future__ import annotations

from aiohttp import web

from registry.apps import add_app, list_apps, revoke_app
from registry.auth import Authenticator, actor_of
from registry.cached import CachedRecords
from registry.permissions import Perm, Permissions
from registry.store import Actor, RegistryStore
from resolver.errors import ProtocolError
from resolver.identifiers import ascii_upper
from resolver.responses import answers_errors, json_body, json_response

__all__ = ["AppsAPI"]


class AppsAPI:
    """``/api/enterprises/{prefix}/apps[/{name}]``."""

    def __init__(
        self, store: RegistryStore, records: CachedRecords, auth: Authenticator, permissions: Permissions
    ) -> None:
        self.store = store
        self.records = records
        self.auth = auth
        self.permissions = permissions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/enterprises/{prefix}/apps", self.create),
            web.get("/api/enterprises/{prefix}/apps", self.list),
            web.delete("/api/enterprises/{prefix}/apps/{name}", self.revoke),
        ]

    async def _admin(self, request: web.Request, perm: Perm) -> Actor:
        prefix = request.match_info["prefix"]
        identity = await self.auth.require(request, prefix)
        await self.permissions.require_prefix_admin(identity, prefix, perm, echo=prefix)
        return actor_of(request, identity)

    def _evict(self, *handles: str) -> None:
        """Not waiting for the change notification: the grant (or its removal) holds from the next request."""
        for handle in handles:
            self.records.evict(ascii_upper(handle))

    @answers_errors
    async def create(self, request: web.Request) -> web.StreamResponse:
        actor = await self._admin(request, Perm.ADD_ADMIN)
        prefix = request.match_info["prefix"]
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ProtocolError('Expected a JSON object such as {"name": "mes-line-3", "rights": ["register"]}')
        unknown = sorted(set(body) - {"name", "rights", "publicKey"})
        if unknown:
            raise ProtocolError(f"Unknown field(s) {', '.join(unknown)}: give name, rights and optionally publicKey")
        name, rights = body.get("name"), body.get("rights")
        identity, secret = await add_app(
            self.store, prefix, name, rights, actor=actor, public_key=body.get("publicKey")
        )
        self._evict(f"0.NA/{prefix}", identity.split(":", 1)[1])
        answer = {"responseCode": 1, "prefix": prefix, "name": name, "identity": identity}
        if secret is not None:
            answer["secret"] = secret
        return json_response({**answer, "rights": sorted(set(rights))}, status=201)

    @answers_errors
    async def list(self, request: web.Request) -> web.StreamResponse:
        await self._admin(request, Perm.READ_VALUE)
        apps = await list_apps(self.store, self.records.values_of, request.match_info["prefix"])
        return json_response({"responseCode": 1, "apps": [app.as_json() for app in apps]})

    @answers_errors
    async def revoke(self, request: web.Request) -> web.StreamResponse:
        actor = await self._admin(request, Perm.REMOVE_ADMIN)
        prefix = request.match_info["prefix"]
        handle_key = await revoke_app(self.store, prefix, request.match_info["name"], actor=actor)
        self._evict(f"0.NA/{prefix}", handle_key)
        return json_response({"responseCode": 1})
