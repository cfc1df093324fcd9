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

Answers are counted by status class here (``NodeMetrics.responses``, for ``idnode_http_responses_total``):
every route's handler is wrapped when it is added, except on the two fast paths, whose handlers count their
answers themselves (one list increment). An aiohttp signal (``on_response_prepare``) or an always-on access log
would count every answer too, but each cost 4-8 % of a cached look-up's throughput (wrk, 2026-12-02): two
coroutines or aiohttp's logging bookkeeping per answer. Not counted: what aiohttp answers before any route runs
(a request line it cannot parse, 400).

aiohttp 3 takes a custom router only through ``Application(router=...)``, which it marks deprecated; the warning
is silenced in ``new_application`` and the dependency is pinned below aiohttp 4.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from aiohttp import hdrs, web

from resolver.errors import MethodNotAllowed
from resolver.responses import Handler, error_response

__all__ = ["HotRouter", "new_application"]

_HOT_METHODS = frozenset({"GET", "HEAD"})


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    """JSON 405 rc 4 with ``Allow``: the methods ``HotRouter.resolve`` found for the path."""
    allow = tuple(request.match_info["allow"].split(","))
    return error_response(MethodNotAllowed(request.method, request.path, allow=allow), request)


def counted(handler: Handler, responses: list[int]) -> Handler:
    """``handler``, counting its answers in ``responses`` by status class (status // 100)."""

    async def counting(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        responses[response.status // 100] += 1
        return response

    return counting


class HotRouter(web.UrlDispatcher):
    """A ``UrlDispatcher`` with two fast paths (:meth:`set_hot`, :meth:`set_fallback`), counting every answer in
    ``responses`` by status class."""

    def __init__(self, responses: list[int]) -> None:
        super().__init__()
        self.responses = responses
        self._hot_prefix = ""
        self._hot_handler: Handler | None = None
        self._hot_route: web.AbstractRoute | None = None
        self._fallback_handler: Handler | None = None
        self._fallback: web.AbstractRoute | None = None
        self._taken: frozenset[str] | None = None  # first path segments of every other route
        self._not_allowed = web.PlainResource("").add_route(hdrs.METH_ANY, counted(_method_not_allowed, responses))

    def set_hot(self, prefix: str, handler: Handler) -> None:
        """GET and HEAD requests whose raw path starts with ``prefix`` go to ``handler``'s GET route (added after
        this call), which reads the path itself (``match_info`` is empty) and counts its answers itself."""
        if not prefix.startswith("/"):
            raise ValueError("router: the hot prefix must be an absolute path")
        self._hot_prefix, self._hot_handler = prefix, handler

    def set_fallback(self, handler: Handler) -> None:
        """GET and HEAD requests whose first path segment no other resource starts with go to ``handler``'s GET
        route (added after this call), which counts its answers itself."""
        self._fallback_handler = handler

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> list[web.AbstractRoute]:
        """Every route added counts its answers, but for the fast paths' own (see the module docstring)."""
        added = []
        for route in routes:
            if isinstance(route, web.RouteDef) and route.handler not in (self._hot_handler, self._fallback_handler):
                route = web.RouteDef(route.method, route.path, counted(route.handler, self.responses), route.kwargs)
            for registered in super().add_routes([route]):
                if registered.method == hdrs.METH_GET and registered.handler == self._hot_handler:
                    self._hot_route = registered
                elif registered.method == hdrs.METH_GET and registered.handler == self._fallback_handler:
                    self._fallback = registered
                added.append(registered)
        return added

    def _first_segments(self) -> frozenset[str]:
        fallback = self._fallback.resource if self._fallback is not None else None
        return frozenset(
            resource.canonical.lstrip("/").split("/", 1)[0].split("{", 1)[0]
            for resource in self.resources()
            if resource is not fallback
        )

    def is_hot(self, raw: str) -> bool:
        """Whether a GET or HEAD of the raw path ``raw`` goes to the hot handler (see :meth:`set_hot`)."""
        return self._hot_route is not None and raw.startswith(self._hot_prefix)

    def is_fallback(self, raw: str) -> bool:
        """Whether a GET or HEAD of the raw path ``raw`` (not a hot one) goes to the fallback handler."""
        if self._fallback is None:
            return False
        if self._taken is None:  # routes are all added by the first request
            self._taken = self._first_segments()
        return raw[1:].split("/", 1)[0].split("?", 1)[0] not in self._taken

    async def resolve(self, request: web.Request) -> web.UrlMappingMatchInfo:  # type: ignore[override]
        if request.method in _HOT_METHODS:
            raw = request.raw_path
            if self.is_hot(raw):
                return web.UrlMappingMatchInfo({}, self._hot_route)  # type: ignore[arg-type]
            if self.is_fallback(raw):
                return web.UrlMappingMatchInfo({}, self._fallback)  # type: ignore[arg-type]
        match = await super().resolve(request)
        error = match.http_exception
        if isinstance(error, web.HTTPMethodNotAllowed):
            return web.UrlMappingMatchInfo({"allow": ",".join(sorted(error.allowed_methods))}, self._not_allowed)
        return match  # type: ignore[return-value]


def new_application(*, client_max_size: int, responses: list[int]) -> tuple[web.Application, HotRouter]:
    """An ``Application`` that routes with a :class:`HotRouter` counting answers in ``responses`` (see the module
    docstring)."""
    router = HotRouter(responses)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(router=router, client_max_size=client_max_size)
    return app, router
