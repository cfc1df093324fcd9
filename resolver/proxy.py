"""The Handle proxy on ``/{handle}``: redirect to the record's URL, or show its values as a page.

Follows Handle.Net's proxy (research/handle-rest-api.md §5, transcripts F1–F5): ``hdl:``/``doi:``/``info:hdl/``/
``urn:hdl:`` are stripped; the default action is a 302 to the first ``URL`` value (else the first ``URL.*``)
with ``Expires`` from that value's TTL and a tiny HTML body; ``?noredirect`` (or ``action=showvalues``) and
records without a URL show the values page; unknown handles get a 404 page. The ``Location`` header is
percent-encoded (IRI → URI), so a stored value can never split the header. Which URLs are targets, and how
``urlappend`` may extend one, is ``answers.Redirects``' decision. ``GET /?hdl=<handle>`` (the home page's form,
as the Handle proxy's form sends it) answers as ``GET /<handle>`` does. Every HTML answer carries
``pages.HTML_HEADERS`` (nosniff, Content-Security-Policy, Referrer-Policy).

Records with typed links or a lifecycle state (a ``Product``, ``resolver/product.py``) get the product
resolver's decision order (research/product-resolvers.md §2), first match wins:

1. bad syntax 400, unknown 404 (as for every record); withdrawn → 410 tombstone page, ``Link: rel="successor-version"``;
2. ``?noredirect`` (``action=showvalues|showurls``) → the values page, a recall notice first;
3. ``?linkType=linkset`` (or ``all``) or ``Accept: application/linkset+json`` → RFC 9264 linkset, 200;
4. ``?linkType=X`` → 302 to the link of type X (in the wanted language, else the default among them, else the
   first), 404 page when the record has none;
5. ``Accept`` preferring ``application/json`` → the ``/api/handles/<h>`` record; ``application/ld+json`` →
   schema.org JSON-LD (``resolver/negotiation.py`` ranks q-values; a browser's Accept prefers HTML);
6. otherwise 302 to the default redirect (a recall link when recalled), the link of its type in the language of
   ``?lang=`` or ``Accept-Language`` when there is one (``Product.for_languages``).

Their answers carry ``Vary: Accept, Accept-Language, Origin``, ``Link`` to the linkset and to the Handle record,
and, for a request with ``Origin``, CORS headers exposing ``Link`` (``_NEGOTIATED``). CORS only when asked for:
each header costs the hot 302 about 0.5 µs of serialisation, and a scan never sends ``Origin``. The query-driven
steps 3 and 4 answer for every record (a stock Handle client never sends ``linkType``); the header-driven ones only
for product records, so a plain record with ``Accept: application/json`` still gets Handle.Net's 302 (transcript
F4) and the plain 302 stays what it was.
``Link`` targets are relative references (RFC 8288 §3.1: resolved against the request URI) so that the headers
are the same for every request; the linkset's ``anchor`` and JSON-LD's ``@id`` are absolute, built from the
request's origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from time import perf_counter

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict, MultiMapping

from resolver.answers import render, safe_location, select
from resolver.cache import CacheEntry
from resolver.errors import HandleError, HandleNotFound, InvalidHandle
from resolver.identifiers import ascii_upper, decode_path, parse, strip_scheme
from resolver.lookup import Lookup
from resolver.metrics import NodeMetrics
from resolver.negotiation import HTML, JSON, JSON_LD, LINKSET, Negotiator
from resolver.pages import (
    HTML_HEADERS,
    error_page,
    home_page,
    not_found_page,
    notice_banner,
    redirect_page,
    values_page,
)
from resolver.product import LINKSET_TYPE, Product, handle_path, json_ld, link_header, linkset, pick_language
from resolver.product_page import has_face, page_language, product_page, tombstone_page
from resolver.public_url import request_base
from resolver.records import ValueFilter
from resolver.responses import ANY_TAIL, JSON_TYPE, Ready, flag, is_secure
from resolver.scans import LINK_DATA, LINK_DEFAULT, LINK_LINKSET, LINK_PAGE, ScanCounts
from resolver.template_labels import TemplateLabels

__all__ = ["JSON_LD_TYPE", "LINKSET_CONTEXT", "Proxy", "origin"]

_NO_PAGES = frozenset({"favicon.ico", "robots.txt"})
JSON_LD_TYPE = "application/ld+json"
LINKSET_CONTEXT = (
    '<https://ref.gs1.org/standards/resolver/linkset-context>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
)
"""What GS1's linkset validators look for on a linkset answer (research §2)."""
VARY = "Accept, Accept-Language, Origin"
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Link, Content-Length"}
_NEGOTIATED = ({"Vary": VARY}, {"Vary": VARY, **_CORS})
"""A product answer's own headers, indexed by whether the request came with ``Origin`` (CORS)."""
_PRODUCT_HEADERS = tuple({**HTML_HEADERS, **headers} for headers in _NEGOTIATED)
_DATA_HEADERS = tuple({"X-Content-Type-Options": "nosniff", **headers} for headers in _NEGOTIATED)
_REDIRECT_MEMO_SIZE = 4096
"""Redirects whose headers and body are kept for the rest of the second (``Proxy._redirect``)."""


class Proxy:
    """``GET /{handle}`` and ``GET /``."""

    def __init__(
        self,
        lookup: Lookup,
        metrics: NodeMetrics,
        *,
        max_handle_bytes: int,
        scans: ScanCounts | None = None,
        labels: TemplateLabels | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lookup = lookup
        self.redirects = lookup.redirects
        self.max_handle_bytes = max_handle_bytes
        self._cache_get = lookup.cache.get
        self._expires_second = -1
        self._expires_text: dict[int, str] = {}
        self._redirect_memo: dict[tuple[str, int, Product | None, bool], tuple[CIMultiDict[str], bytes]] = {}
        self._counts = metrics.lookups["proxy"]
        self._observe = metrics.latency["proxy"].observe
        self._responses = metrics.responses  # resolve counts its own answers (router.py)
        self._clock = clock
        self._scan = (scans or ScanCounts()).count  # scan statistics: resolver/scans.py
        self._negotiator = Negotiator()
        self._labels = labels  # the product page's attribute names (slow path only)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.home), web.get("/" + ANY_TAIL, self.resolve)]

    async def home(self, request: web.Request) -> web.StreamResponse:
        """The home page, or the answer for the handle its form sends (``?hdl=``; already decoded)."""
        text = request.query.get("hdl", "").strip()
        if not text:
            return _html(home_page())
        started = perf_counter()
        response = await self._answer(request, text, request.query)
        self._observe(perf_counter() - started)
        return response

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        """HOT PATH for QR-code scans: a cached record with a URL becomes a 302 from what the entry holds (its
        target already percent-encoded) and an ``Expires`` formatted once per second; no parsing, no JSON. A
        cached product record a browser asks for is a 302 too, after two memoised header look-ups."""
        started = perf_counter()
        raw = request.raw_path
        ready = self._ready(raw, request.headers)
        if ready is not None:
            status, headers, body = ready
            response = web.Response(status=status, body=body, headers=headers)
        else:
            response = await self._answer(request, raw.split("?", 1)[0][1:], request.query, encoded=True)
            self._responses[response.status // 100] += 1
        self._observe(perf_counter() - started)
        return response

    def ready_answer(self, raw: str, headers: Mapping[str, str]) -> Ready | None:
        """For the fast lane (resolver/fastlane.py): the hot 302 ``resolve`` gives for the raw path ``raw``,
        counted and timed as ``resolve`` counts it; None when ``resolve`` would await."""
        started = perf_counter()
        ready = self._ready(raw, headers)
        if ready is not None:
            self._observe(perf_counter() - started)
        return ready

    def _ready(self, raw: str, headers: Mapping[str, str]) -> Ready | None:
        """The hot 302 of a cached record, counted (look-up, tally, scan, answer); None: ``_answer`` decides."""
        if "?" in raw or "%" in raw or ":" in raw:
            return None
        text = raw[1:]
        key = text.upper() if text.isascii() else ascii_upper(text)
        entry = self._cache_get(key)
        if entry is None:
            return None
        product = entry.product
        if product is None:
            location, cors = entry.location, False
        else:  # None when withdrawn (410) or when the request does not ask for HTML
            location, cors = self._browser_location(product, headers), hdrs.ORIGIN in headers
        if location is None:
            return None
        self._counts.hit += 1
        entry.tally.hit += 1
        self._scan(key, LINK_DEFAULT)
        self._responses[3] += 1
        return self._redirect_parts(location, entry.min_ttl, product, cors)

    def _browser_location(self, product: Product, headers: Mapping[str, str]) -> str | None:
        """Where a request whose ``Accept`` prefers HTML is redirected (None: another variant, or no target)."""
        if self._negotiator.variant(headers.get(hdrs.ACCEPT, "*/*")) != HTML:
            return None
        wanted = headers.get(hdrs.ACCEPT_LANGUAGE)
        return product.location if wanted is None else product.for_languages(self._negotiator.languages(wanted))

    async def _answer(
        self, request: web.Request, text: str, query: MultiMapping[str], *, encoded: bool = False
    ) -> web.StreamResponse:
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
        product = entry.product
        if product is None and not query and entry.location is not None:
            self._scan(handle.key, LINK_DEFAULT)
            return self._redirect(entry.location, entry.min_ttl)
        if product is not None and product.withdrawn:
            return _tombstone(text, product, self._language(request), _node(request))
        show = flag(query, "noredirect") or query.get("action") in ("showvalues", "showurls")
        if not show:
            answer = self._negotiated(request, text, handle.key, entry, query)
            if answer is not None:
                return answer
        value_filter = ValueFilter.from_query(query.getall("type", ()), query.getall("index", ()))
        values = select(entry, value_filter)
        if not show:
            target = self.redirects.target(values)
            if target is not None:
                location = self.redirects.location(target.value, query.get("urlappend", ""))
                self._scan(handle.key, LINK_DEFAULT)
                return self._redirect(location, entry.min_ttl)
        self._scan(handle.key, LINK_PAGE)
        if not value_filter and has_face(values, product):
            return await self.product_answer(request, text, entry)
        page = values_page(text, values, self.redirects.allows, banner=_banner(product))
        return _html(page, product=product, cors="Origin" in request.headers)

    async def product_answer(
        self, request: web.Request, text: str, entry: CacheEntry, *, class_of: str | None = None, serial: str = ""
    ) -> web.Response:
        """The product page (``resolver/product_page.py``) of ``text`` from ``entry``'s public values. For an
        unregistered serial number answered by its class record: ``text`` the serial's identifier, ``entry`` the
        class record's, ``class_of`` the class handle and ``serial`` the serial number, shown as class-level
        information."""
        values = select(entry, ValueFilter())
        labels = await self._labels.labels(class_of or text, values) if self._labels is not None else {}
        product = entry.product
        page = product_page(
            text,
            values,
            product,
            labels,
            language=self._language(request),
            node=_node(request),
            allows=self.redirects.allows,
            class_of=class_of,
            serial=serial,
        )
        headers = dict(page.headers) if product is not None else {**page.headers, "Vary": "Accept-Language"}
        return _html(page.body, headers=headers, product=product, cors="Origin" in request.headers)

    def _language(self, request: web.Request) -> str:
        """The product page's language: ``?lang=``, else ``Accept-Language`` (``page_language``)."""
        accepted = self._negotiator.languages(request.headers.get("Accept-Language", ""))
        return page_language(request.query.get("lang", ""), accepted)

    def _negotiated(
        self, request: web.Request, text: str, key: str, entry: CacheEntry, query: MultiMapping[str]
    ) -> web.StreamResponse | None:
        """Steps 3–6 of the decision order (module docstring); None: the Handle.Net answer (a plain record, or a
        ``type``/``index`` filtered look-up of a product record, which redirects to the filtered values' URL)."""
        product = entry.product
        cors = "Origin" in request.headers
        link_type = query.get("linkType", "")
        wanted = self._negotiator.variant(request.headers.get("Accept", "*/*")) if product is not None else HTML
        if link_type in ("linkset", "all") or wanted == LINKSET:
            document = linkset(text, product, entry.location, origin(request))
            link = link_header(text) + ", " + LINKSET_CONTEXT
            headers = {**_DATA_HEADERS[cors], "Content-Type": LINKSET_TYPE, "Link": link}
            self._scan(key, LINK_LINKSET)
            return web.Response(body=orjson.dumps(document), headers=headers)
        languages = self._negotiator.languages(query.get("lang") or request.headers.get("Accept-Language", ""))
        if link_type:
            candidates = product.by_rel(link_type) if product is not None else []
            chosen = pick_language(candidates, languages) or next((c for c in candidates if c.default), None)
            if chosen is None and candidates:
                chosen = candidates[0]
            if chosen is None:
                page = error_page("Link type not found", f"No link of type {link_type} for this identifier.", text)
                return _html(page, status=404, product=product, cors=cors)
            location = self.redirects.location(safe_location(chosen.href), query.get("urlappend", ""))
            self._scan(key, link_type)
            return self._redirect(location, entry.min_ttl, product, cors)
        if product is None or "type" in query or "index" in query:
            return None
        link = link_header(text)
        if wanted in (JSON, JSON_LD):
            self._scan(key, LINK_DATA)
        if wanted == JSON:
            body = render(entry, text, ValueFilter())
            return web.Response(body=body, headers={**_DATA_HEADERS[cors], "Content-Type": JSON_TYPE, "Link": link})
        if wanted == JSON_LD:
            document = json_ld(text, entry.values, product, origin(request))
            headers = {**_DATA_HEADERS[cors], "Content-Type": JSON_LD_TYPE, "Link": link}
            return web.Response(body=orjson.dumps(document), headers=headers)
        location = product.for_languages(languages)
        if location is None:
            return None
        location = self.redirects.location(location, query.get("urlappend", ""))
        self._scan(key, LINK_DEFAULT)
        return self._redirect(location, entry.min_ttl, product, cors)

    def _redirect(
        self, location: str, ttl: int, product: Product | None = None, cors: bool = False
    ) -> web.StreamResponse:
        """A 302 to ``location`` (already header-safe, see ``answers.safe_location``); a product record's with the
        negotiation headers (CORS ones when ``cors``: the request came with ``Origin``)."""
        status, headers, body = self._redirect_parts(location, ttl, product, cors)
        return web.Response(status=status, body=body, headers=headers)

    def _redirect_parts(self, location: str, ttl: int, product: Product | None, cors: bool) -> Ready:
        """HOT: the headers, as the ``CIMultiDict`` aiohttp copies them from, and the body are built once per second
        per redirect and kept until the ``Expires`` second changes (at most ``_REDIRECT_MEMO_SIZE`` of them): a
        copy costs ~0.1 µs where building them costs ~1.1 µs, ~0.4 µs more for a product record's three extra
        headers (2026-12-02, one core).
        """
        expires = self._expires(ttl)
        memo_key = (location, ttl, product, cors)
        found = self._redirect_memo.get(memo_key)
        if found is None:
            if product is None:
                headers = {**HTML_HEADERS, "Location": location, "Expires": expires}
            else:
                headers = {**_PRODUCT_HEADERS[cors], "Location": location, "Expires": expires, "Link": product.link}
            if len(self._redirect_memo) >= _REDIRECT_MEMO_SIZE:
                self._redirect_memo.clear()
            found = self._redirect_memo[memo_key] = (CIMultiDict(headers), redirect_page(location))
        return 302, found[0], found[1]

    def _expires(self, ttl: int) -> str:
        """``Expires`` for a TTL, formatted once per second per TTL (``formatdate`` costs microseconds); the
        redirects kept for the second before are forgotten with it."""
        now = int(self._clock())
        if now != self._expires_second:
            self._expires_second, self._expires_text = now, {}
            self._redirect_memo.clear()
        text = self._expires_text.get(ttl)
        if text is None:
            text = self._expires_text[ttl] = formatdate(now + ttl, usegmt=True)
        return text


def _html(
    body: bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    product: Product | None = None,
    cors: bool = False,
) -> web.Response:
    """An HTML answer with the page headers (nosniff, CSP, Referrer-Policy) plus an error's own (``Retry-After``);
    for a product record, with the negotiation headers (``cors``: as ``Proxy._redirect``)."""
    if product is not None:
        headers = {**_NEGOTIATED[cors], "Link": product.link, **(headers or {})}
    return web.Response(body=body, status=status, headers={**HTML_HEADERS, **headers} if headers else HTML_HEADERS)


def origin(request: web.Request) -> str:
    """``scheme://host`` of this node as the client reached it (TLS, or a trusted proxy's word for it)."""
    return f"{'https' if is_secure(request) else 'http'}://{safe_location(request.host)}"


def _banner(product: Product | None) -> str:
    if product is None or not product.recalled or product.status is None:
        return ""
    return notice_banner("Recalled", product.status.notice or "This product has been recalled.", product.status.link)


def _node(request: web.Request) -> str:
    """This node as the client reached it (``host[:port]``), for the product page; empty for a ``Host`` header
    that is no host name (``public_url.request_base``)."""
    base = request_base(is_secure(request), request.host)
    return "" if base is None else base.split("://", 1)[1]


def _tombstone(text: str, product: Product, language: str, node: str) -> web.Response:
    """410 Gone for a withdrawn record, linking its successor (a handle: this node's ``/<handle>``), in the
    product page's style and ``language``."""
    status = product.status
    assert status is not None
    successor = ""
    headers = {}
    if status.successor:
        successor = handle_path(status.successor) if status.successor_is_handle else safe_location(status.successor)
        headers["Link"] = f'<{successor}>; rel="successor-version"'
    page = tombstone_page(text, status, successor, language=language, node=node)
    return _html(page.body, status=410, headers={**page.headers, **headers, "Vary": "Accept-Language"})
