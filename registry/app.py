"""The registry's additions to the node application, as one app extension.

``resolver.app.create_app`` calls each extension after the read routes and before its catch-all routes. The
registry extension, in order:
1. decides what a secure channel is (TLS, or a trusted proxy's ``X-Forwarded-Proto: https``);
2. builds the authenticator and the shared ``Registry`` over the read path's lookup, cache and pool, and opens
   a second pool for write transactions at start (why: ``Registry.open_writes``);
3. plugs PUT/DELETE/listing/history into the read API's ``/api/handles`` endpoint (one route per path, so the
   hot GET route stays first and untouched) and lets authenticated readers ask for ``publicOnly=false``;
4. adds its own routes (prefixes, sessions, templates, batch, reverse look-up, OpenAPI);
5. hands its counters to the app's metrics collector.
"""

from __future__ import annotations

from aiohttp import web

from registry.auth import Authenticator, Identity, secure_check
from registry.batch import BatchWrites
from registry.core import Registry
from registry.http import HandleWrites
from registry.openapi import OpenAPI
from registry.permissions import Perm, admin_permissions
from registry.prefixes import PrefixesAPI
from registry.search import ReverseLookup
from registry.sessions import Sessions
from registry.templates import Templates
from resolver.app import COLLECTOR, DSN, ENDPOINT, LOOKUP, SETTINGS, STORE, Extension
from resolver.errors import HandleError
from resolver.identifiers import parse
from resolver.responses import SECURE_CHECK
from resolver.store import close_pool, connect

__all__ = ["REGISTRY", "extensions"]

REGISTRY: web.AppKey[Registry] = web.AppKey("registry")


def _install(app: web.Application) -> None:
    settings = app[SETTINGS]
    is_secure = secure_check(settings.registry)
    app[SECURE_CHECK] = is_secure
    lookup = app[LOOKUP]
    authenticator = Authenticator(settings.registry, is_secure)
    registry = Registry(
        lookup=lookup,
        pool=app[STORE].pool,
        authenticator=authenticator,
        configured_operators=settings.registry.operators,
        max_handle_bytes=settings.max_handle_bytes,
        max_batch=settings.max_batch,
    )
    app[REGISTRY] = registry
    authenticator.values_of = registry.values_of

    async def open_writes(_app: web.Application) -> None:
        registry.open_writes((await connect(app[DSN], settings.database)).pool)

    async def close_writes(_app: web.Application) -> None:
        await close_pool(registry.writer.pool)

    app.on_startup.append(open_writes)
    app.on_cleanup.append(close_writes)
    sessions = Sessions(registry)
    authenticator.sessions = sessions.identify
    templates = Templates(registry)
    writes = HandleWrites(registry, templates)

    endpoint = app[ENDPOINT]
    endpoint.methods.update(writes.methods())
    endpoint.history = writes.history

    async def private_reader(request: web.Request, handle: str) -> Identity | None:
        """Who may see ``handle``'s non-public values: an admin of it with READ_VALUE."""
        identity = await authenticator.identify(request)
        if identity is None:
            return None
        values = await registry.values_of(handle)
        if values is not None:
            prefix = parse(handle).prefix
            admins = admin_permissions(values) or await registry.permissions.prefix_admins(prefix)
            try:
                await registry.permissions.require(identity, prefix, admins, {Perm.READ_VALUE}, handle=handle)
            except HandleError as exc:
                exc.handle = None
                raise
        return identity

    endpoint.authenticate = private_reader
    for component in (
        PrefixesAPI(registry),
        sessions,
        templates,
        BatchWrites(registry, templates),
        ReverseLookup(registry),
    ):
        app.add_routes(component.routes())
    app.add_routes(OpenAPI().routes())
    app[COLLECTOR].sources.append(registry.collect)


def extensions() -> list[Extension]:
    """Everything the registry adds to a node."""
    return [_install]
