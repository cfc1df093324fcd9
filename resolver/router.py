"""Routing that sends look-ups straight to their handler, without walking aiohttp's route table.

aiohttp's ``UrlDispatcher.resolve`` walks the path backwards part by part, then matches a regex, for every
request: measured on a cached look-up (benchmarks, 2026-11-29) that walk cost about 7 µs of the 43 µs a request
took, more than everything idnode's own hot handler does. ``HotRouter`` checks the two routes that matter first
with string tests on the raw path — GET/HEAD under ``/api/handles/`` (the API look-up), and GET/HEAD of a path
whose first segment no other route uses (the proxy, ``/{handle}``) — and hands everything else to the ordinary
table, so 404/405 handling and every other route behave exactly as before.

A method a route does not have (TRACE, or a POST to the proxy's ``/{handle}``) is answered like every other
error, as JSON 405 rc 4 with ``Allow``, instead of aiohttp's text/plain page: ``resolve`` turns aiohttp's
method-not-allowed match into a route that raises ``MethodNotAllowed``.

aiohttp 3 takes a custom router only through ``Application(router=...)``, which it marks deprecated; the warning
is silenced in ``new_application`` and the dependency is pinned below aiohttp 4.
"""

from __future__ import annotations

import warnings

from aiohttp import hdrs, web

from resolver.errors import MethodNotAllowed
from resolver.responses import error_response

__all__ = ["HotRouter", "new_application"]

_HOT_METHODS = frozenset({"GET", "HEAD"})


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    """JSON 405 rc 4 with ``Allow``: the methods ``HotRouter.resolve`` found for the path."""
    allow = tuple(request.match_info["allow"].split(","))
    return error_response(MethodNotAllowed(request.method, request.path, allow=allow), request)


_NOT_ALLOWED_ROUTE = web.PlainResource("").add_route(hdrs.METH_ANY, _method_not_allowed)


class HotRouter(web.UrlDispatcher):
    """A ``UrlDispatcher`` with one fast path: a route claimed by :meth:`set_hot` for a raw-path prefix."""

    def __init__(self) -> None:
        super().__init__()
        self._hot_prefix = ""
        self._hot_route: web.AbstractRoute | None = None
        self._fallback: web.AbstractRoute | None = None
        self._taken: frozenset[str] | None = None  # first path segments of every other route

    def set_hot(self, prefix: str, route: web.AbstractRoute) -> None:
        """GET and HEAD requests whose raw path starts with ``prefix`` go to ``route`` (its handler reads the path
        itself; ``match_info`` is empty)."""
        if not prefix.startswith("/") or route.method != "GET":
            raise ValueError("router: the hot route must be a GET route under an absolute path prefix")
        self._hot_prefix, self._hot_route = prefix, route

    def set_fallback(self, route: web.AbstractRoute) -> None:
        """GET and HEAD requests whose first path segment no other resource starts with go to ``route``."""
        if route.method != "GET":
            raise ValueError("router: the fallback route must be a GET route")
        self._fallback = route

    def _first_segments(self) -> frozenset[str]:
        fallback = self._fallback.resource if self._fallback is not None else None
        return frozenset(
            resource.canonical.lstrip("/").split("/", 1)[0].split("{", 1)[0]
            for resource in self.resources()
            if resource is not fallback
        )

    async def resolve(self, request: web.Request) -> web.UrlMappingMatchInfo:  # type: ignore[override]
        if request.method in _HOT_METHODS:
            raw = request.raw_path
            if self._hot_route is not None and raw.startswith(self._hot_prefix):
                return web.UrlMappingMatchInfo({}, self._hot_route)
            if self._fallback is not None:
                if self._taken is None:  # routes are all added by the first request
                    self._taken = self._first_segments()
                if raw[1:].split("/", 1)[0].split("?", 1)[0] not in self._taken:
                    return web.UrlMappingMatchInfo({}, self._fallback)
        match = await super().resolve(request)
        error = match.http_exception
        if isinstance(error, web.HTTPMethodNotAllowed):
            return web.UrlMappingMatchInfo({"allow": ",".join(sorted(error.allowed_methods))}, _NOT_ALLOWED_ROUTE)
        return match  # type: ignore[return-value]


def new_application(*, client_max_size: int) -> tuple[web.Application, HotRouter]:
    """An ``Application`` that routes with a :class:`HotRouter` (see the module docstring)."""
    router = HotRouter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(router=router, client_max_size=client_max_size)
    return app, router
