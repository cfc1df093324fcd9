"""The Handle proxy on ``/{handle}``: redirect to the record's URL, or show its values as a page.

Follows Handle.Net's proxy (research/handle-rest-api.md §5, transcripts F1–F5): ``hdl:``/``doi:``/``info:hdl/``/
``urn:hdl:`` are stripped; the default action is a 302 to the first ``URL`` value (else the first ``URL.*``)
with ``Expires`` from that value's TTL and a tiny HTML body; ``?noredirect`` (or ``action=showvalues``) and
records without a URL show the values page; unknown handles get a 404 page. The ``Location`` header is
percent-encoded (IRI → URI), so a stored value can never split the header. Which URLs are targets, and how
``urlappend`` may extend one, is ``answers.Redirects``' decision. ``GET /?hdl=<handle>`` (the home page's form,
as the Handle proxy's form sends it) answers as ``GET /<handle>`` does. Every answer carries
``pages.HTML_HEADERS`` (nosniff, Content-Security-Policy, Referrer-Policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from time import perf_counter

from aiohttp import web
from multidict import MultiMapping

from resolver.answers import select
from resolver.errors import HandleError, HandleNotFound, InvalidHandle
from resolver.identifiers import ascii_upper, decode_path, parse, strip_scheme
from resolver.lookup import Lookup
from resolver.metrics import NodeMetrics
from resolver.pages import HTML_HEADERS, error_page, home_page, not_found_page, redirect_page, values_page
from resolver.records import ValueFilter
from resolver.responses import ANY_TAIL, flag
from resolver.scans import LINK_DEFAULT, LINK_PAGE, ScanCounts

__all__ = ["Proxy"]

_NO_PAGES = frozenset({"favicon.ico", "robots.txt"})


class Proxy:
    """``GET /{handle}`` and ``GET /``."""

    def __init__(
        self,
        lookup: Lookup,
        metrics: NodeMetrics,
        *,
        max_handle_bytes: int,
        scans: ScanCounts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lookup = lookup
        self.redirects = lookup.redirects
        self.max_handle_bytes = max_handle_bytes
        self._cache_get = lookup.cache.get
        self._expires_second = -1
        self._expires_text: dict[int, str] = {}
        self._counts = metrics.lookups["proxy"]
        self._observe = metrics.latency["proxy"].observe
        self._responses = metrics.responses  # resolve counts its own answers (router.py)
        self._clock = clock
        self._scan = (scans or ScanCounts()).count  # scan statistics: resolver/scans.py

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.home), web.get("/" + ANY_TAIL, self.resolve)]

    async def home(self, request: web.Request) -> web.StreamResponse:
        """The home page, or the answer for the handle its form sends (``?hdl=``; already decoded)."""
        text = request.query.get("hdl", "").strip()
        if not text:
            return _html(home_page())
        started = perf_counter()
        response = await self._answer(text, request.query)
        self._observe(perf_counter() - started)
        return response

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        """HOT PATH for QR-code scans: a cached record with a URL becomes a 302 from what the entry holds (its
        target already percent-encoded) and an ``Expires`` formatted once per second; no parsing, no JSON."""
        started = perf_counter()
        raw = request.raw_path
        if "?" not in raw and "%" not in raw and ":" not in raw:
            text = raw[1:]
            key = text.upper() if text.isascii() else ascii_upper(text)
            entry = self._cache_get(key)
            if entry is not None and entry.location is not None:
                self._counts.hit += 1
                entry.tally.hit += 1
                self._scan(key, LINK_DEFAULT)
                self._responses[3] += 1
                response = self._redirect(entry.location, entry.min_ttl)
                self._observe(perf_counter() - started)
                return response
        response = await self._answer(raw.split("?", 1)[0][1:], request.query, encoded=True)
        self._responses[response.status // 100] += 1
        self._observe(perf_counter() - started)
        return response

    async def _answer(self, text: str, query: MultiMapping[str], *, encoded: bool = False) -> web.StreamResponse:
        """The redirect or page for handle ``text`` (percent-decoded first when ``encoded``) and ``query``."""
        try:
            try:
                text = strip_scheme(decode_path(text) if encoded else text)
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
        except HandleError as exc:  # DatabaseUnavailable included: 503 with Retry-After
            page = error_page(type(exc).__name__, exc.message or "", exc.handle)
            return _html(page, status=exc.http_status, headers=exc.headers())
        if not query and entry.location is not None:
            self._scan(handle.key, LINK_DEFAULT)
            return self._redirect(entry.location, entry.min_ttl)
        value_filter = ValueFilter.from_query(query.getall("type", ()), query.getall("index", ()))
        show = flag(query, "noredirect") or query.get("action") in ("showvalues", "showurls")
        values = select(entry, value_filter)
        if not show:
            target = self.redirects.target(values)
            if target is not None:
                location = self.redirects.location(target.value, query.get("urlappend", ""))
                self._scan(handle.key, LINK_DEFAULT)
                return self._redirect(location, entry.min_ttl)
        self._scan(handle.key, LINK_PAGE)
        return _html(values_page(text, values, self.redirects.allows))

    def _redirect(self, location: str, ttl: int) -> web.StreamResponse:
        """A 302 to ``location`` (already header-safe, see ``answers.safe_location``)."""
        headers = {**HTML_HEADERS, "Location": location, "Expires": self._expires(ttl)}
        return web.Response(status=302, body=redirect_page(location), headers=headers)

    def _expires(self, ttl: int) -> str:
        """``Expires`` for a TTL, formatted once per second per TTL (``formatdate`` costs microseconds)."""
        now = int(self._clock())
        if now != self._expires_second:
            self._expires_second, self._expires_text = now, {}
        text = self._expires_text.get(ttl)
        if text is None:
            text = self._expires_text[ttl] = formatdate(now + ttl, usegmt=True)
        return text


def _html(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """An HTML answer with the page headers (nosniff, CSP, Referrer-Policy) plus an error's own (``Retry-After``)."""
    return web.Response(body=body, status=status, headers={**HTML_HEADERS, **headers} if headers else HTML_HEADERS)
