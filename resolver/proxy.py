"""The Handle proxy on ``/{handle}``: redirect to the record's URL, or show its values as a page.

Follows Handle.Net's proxy (research/handle-rest-api.md §5, transcripts F1–F5): ``hdl:``/``doi:``/``info:hdl/``/
``urn:hdl:`` are stripped; the default action is a 302 to the first ``URL`` value (else the first ``URL.*``)
with ``Expires`` from that value's TTL and a tiny HTML body; ``?noredirect`` (or ``action=showvalues``) and
records without a URL show the values page; unknown handles get a 404 page. The ``Location`` header is
percent-encoded (IRI → URI), so a stored value can never split the header.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from time import perf_counter
from urllib.parse import quote

from aiohttp import web

from resolver.answers import redirect_target, select
from resolver.errors import HandleError, HandleNotFound, InvalidHandle
from resolver.identifiers import decode_path, parse, strip_scheme
from resolver.lookup import Lookup
from resolver.metrics import NodeMetrics
from resolver.pages import error_page, home_page, not_found_page, redirect_page, values_page
from resolver.records import ValueFilter
from resolver.responses import ANY_TAIL, flag

__all__ = ["Proxy", "safe_location"]

_HTML = "text/html;charset=UTF-8"
_LOCATION_SAFE = ":/?#[]@!$&'()*+,;=%~"
_NO_PAGES = frozenset({"favicon.ico", "robots.txt"})


def safe_location(url: str) -> str:
    """``url`` as a header-safe URI: non-ASCII, spaces, quotes, angle brackets and controls percent-encoded."""
    return quote(url, safe=_LOCATION_SAFE)


class Proxy:
    """``GET /{handle}`` and ``GET /``."""

    def __init__(
        self,
        lookup: Lookup,
        metrics: NodeMetrics,
        *,
        max_handle_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lookup = lookup
        self.max_handle_bytes = max_handle_bytes
        self._counts = metrics.lookups["proxy"]
        self._observe = metrics.latency["proxy"].observe
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.home), web.get("/" + ANY_TAIL, self.resolve)]

    async def home(self, _request: web.Request) -> web.StreamResponse:
        return _html(home_page())

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        """HOT PATH for QR-code scans: a cached record with a URL becomes a 302 without any encoding work."""
        started = perf_counter()
        response = await self._answer(request)
        self._observe(perf_counter() - started)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        text = request.raw_path.split("?", 1)[0][1:]
        try:
            try:
                text = strip_scheme(decode_path(text))
                if text in _NO_PAGES:
                    raise HandleNotFound(handle=text)
                handle = parse(text, max_bytes=self.max_handle_bytes)
            except HandleError:
                self._counts.invalid += 1
                raise
            entry = await self.lookup.resolve(handle, self._counts)
        except HandleNotFound:
            return _html(not_found_page(text), status=404)
        except InvalidHandle as exc:
            return _html(error_page("Invalid handle", exc.message or "", None), status=400)
        except HandleError as exc:
            return _html(error_page(type(exc).__name__, exc.message or "", exc.handle), status=exc.http_status)
        query = request.query
        if not query and entry.location is not None:
            return self._redirect(entry.location, entry.min_ttl)
        value_filter = ValueFilter.from_query(query.getall("type", ()), query.getall("index", ()))
        show = flag(query, "noredirect") or query.get("action") in ("showvalues", "showurls")
        values = select(entry, value_filter)
        if not show:
            target = redirect_target(values)
            if target is not None:
                return self._redirect(target.value + query.get("urlappend", ""), entry.min_ttl)
        return _html(values_page(text, values))

    def _redirect(self, location: str, ttl: int) -> web.StreamResponse:
        target = safe_location(location)
        return web.Response(
            status=302,
            body=redirect_page(target),
            headers={
                "Location": target,
                "Expires": formatdate(self._clock() + ttl, usegmt=True),
                "Content-Type": _HTML,
            },
        )


def _html(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": _HTML})
