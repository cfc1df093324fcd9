"""The read API: ``GET /api/handles/{handle}``, its POST form, batch ``POST /api/resolve``, and ``/api`` errors.

Wire behaviour follows the Handle.Net 9 transcripts (research/handle9-transcripts.md §B, §C, §F7–F9):
the answer echoes the handle as requested (after percent-decoding the raw path once, ``+`` kept), filters
that match nothing answer 200 rc 200 with ``values: []``, unknown handles 404 rc 100, foreign prefixes 400
rc 301, an empty handle 400 rc 102, unknown ``/api/`` endpoints 404 rc 4 and wrong methods 405 rc 4.
Anonymous readers never see values without public-read permission; ``publicOnly=false`` needs an
authenticated reader (the registry provides authentication; without it the answer is rc 402), and is refused
with ``callback`` (400 rc 4): a JSONP answer is a script any page can load with the reader's cached
credentials, so JSONP is only ever served for public answers (issue 8).

The registry extends ``/api/handles`` through ``HandleHooks``, given when the endpoint is built: its methods
(PUT, DELETE) on the same resources, so that every ``/api/handles/...`` request is routed once; the reader that
may see non-public values; the collection handler (listing with ``?prefix=``); and a fallback that may claim a
handle the store does not have (the history of ``<h>`` at ``<h>/history``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import orjson
from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping

from resolver.answers import render
from resolver.cache import CacheEntry
from resolver.compression import PlainCopies, accepts_gzip, is_gzip
from resolver.errors import (
    AuthenticationNeeded,
    HandleError,
    HandleNotFound,
    InvalidHandle,
    MethodNotAllowed,
    ProtocolError,
    UnknownEndpoint,
)
from resolver.identifiers import Handle, ascii_upper, decode_path, parse
from resolver.lookup import Lookup
from resolver.metrics import NodeMetrics
from resolver.records import ValueFilter
from resolver.responses import (
    ANY_TAIL,
    GZIP_RECORD_HEADERS,
    JSON_HEADERS,
    RECORD_HEADERS,
    Handler,
    Ready,
    answers_errors,
    error_response,
    flag,
    is_secure,
    json_body,
    json_response,
    with_cors,
)
from resolver.sites_client import hops_of

__all__ = [
    "HANDLES_PREFIX",
    "Collection",
    "Fallback",
    "HandleHooks",
    "HandlesEndpoint",
    "Reader",
    "api_not_found",
]

HANDLES_PREFIX = _PREFIX = "/api/handles/"
_SKIP = len(_PREFIX)
_CORS_HEADERS = "X-Requested-With,Authorization,Origin,Accept,Content-Type"
_NO_PARAMS: MultiMapping[Any] = MultiDictProxy(MultiDict())
_NOT_FOUND_HEAD = b'{"responseCode":100,"message":"Handle not found","handle":'
"""The start of ``HandleNotFound().body()`` encoded; ``test_http_read`` checks the two agree."""
_OWN_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
_FLAGS = frozenset({"publicOnly", "auth", "pretty"})
_READ_PARAMETERS = _FLAGS | {"type", "index", "callback"}

Reader = Callable[[web.Request, str], Awaitable[Any]]
"""``reader(request, handle)``: the identity allowed to read ``handle``'s non-public values, or None (anonymous);
raises for bad credentials or an identity without that right."""


async def _anonymous(_request: web.Request, _handle: str) -> None:
    return None


class Collection(Protocol):
    """A handler for ``/api/handles`` without a handle (the registry's listing)."""

    def wants(self, request: web.Request) -> bool: ...

    async def __call__(self, request: web.Request) -> web.StreamResponse: ...


class Fallback(Protocol):
    """Answers for some handle texts the store does not have (the registry's ``<h>/history``)."""

    def claims(self, text: str) -> bool: ...

    async def answer(self, request: web.Request, text: str) -> web.StreamResponse: ...


class _NoFallback:
    def claims(self, text: str) -> bool:
        return False

    async def answer(self, request: web.Request, text: str) -> web.StreamResponse:
        raise HandleNotFound(handle=text)


@dataclass(frozen=True, slots=True)
class HandleHooks:
    """What a write path adds to ``/api/handles``; the default is the plain read-only API."""

    methods: Mapping[str, Handler] = field(default_factory=dict)
    reader: Reader = _anonymous
    collection: Collection | None = None
    fallback: Fallback = field(default_factory=_NoFallback)


def handle_text(request: web.Request) -> str:
    """The handle named by ``/api/handles/<handle>``: the raw path, decoded once; raises rc 102 when empty."""
    raw = request.raw_path.split("?", 1)[0]
    if not raw.startswith(_PREFIX):  # absolute-form request target, or /api/handles without a slash
        raw = request.rel_url.raw_path
    text = decode_path(raw[_SKIP:]) if raw.startswith(_PREFIX) else ""
    if not text:
        raise InvalidHandle("Empty handle invalid")
    return text


class HandlesEndpoint:
    """``/api/handles/{handle}`` for every method, plus ``POST /api/resolve``."""

    def __init__(
        self,
        lookup: Lookup,
        metrics: NodeMetrics,
        *,
        max_handle_bytes: int,
        max_batch: int,
        hooks: HandleHooks = HandleHooks(),
    ) -> None:
        self.lookup = lookup
        self.metrics = metrics
        self.max_handle_bytes = max_handle_bytes
        self.max_batch = max_batch
        self.authenticate = hooks.reader
        self.methods: dict[str, Handler] = {**hooks.methods, "POST": self.post_handle, "OPTIONS": self.options}
        # Allow and CORS preflights offer the methods this node has: a read-only one has no PUT or DELETE.
        added = tuple(method for method in hooks.methods if method not in _OWN_METHODS)
        self.allow = ("GET", "HEAD", "POST", *added, "OPTIONS")
        self._allow_header = ", ".join(self.allow)
        self._cors_methods = ",".join(("GET", "POST", "HEAD", *added))  # Handle.Net's order (transcript B23)
        self.collection = hooks.collection
        self.fallback = hooks.fallback
        self._claimed = hooks.fallback.claims
        self._cache_get = lookup.cache.get
        self._is_absent = lookup.cache.is_absent
        self._counts = metrics.lookups["rest"]
        self._tallies = lookup.tallies
        self._observe = metrics.latency["rest"].observe
        self._observe_batch = metrics.latency["batch"].observe
        self._responses = metrics.responses  # get_handle counts its own answers (router.py)
        self._plain_copy = PlainCopies().of  # for clients without gzip (resolver/compression.py)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(_PREFIX + ANY_TAIL, self.get_handle),
            web.route("*", _PREFIX + ANY_TAIL, self.dispatch),
            web.route("*", "/api/handles", self.dispatch_collection),
            web.post("/api/resolve", self.resolve_batch),
        ]

    async def get_handle(self, request: web.Request) -> web.StreamResponse:
        """HOT PATH: every look-up lands here. A cached record asked for anonymously, unfiltered and in its stored
        spelling is answered with the bytes encoded when it was cached: no await, no JSON, no logging."""
        started = perf_counter()
        raw = request.raw_path
        if "?" not in raw and "%" not in raw:
            text = raw[_SKIP:]
            key = text.upper() if text.isascii() else ascii_upper(text)
            entry = self._cache_get(key)
            ready = self._ready(text, key, entry, request.headers)
            if ready is not None:
                status, headers, body = ready
                response = web.Response(body=body, status=status, headers=headers)
            else:
                response = await self._get(request, _NO_PARAMS, entry)
        else:
            response = await self._get(request, request.query, None)
        self._responses[response.status // 100] += 1
        self._observe(perf_counter() - started)
        return response

    def ready_answer(self, raw: str, headers: Mapping[str, str]) -> Ready | None:
        """For the fast lane (resolver/fastlane.py): what ``get_handle`` answers for the raw path ``raw`` without
        awaiting anything, counted and timed exactly as ``get_handle`` counts it; None when it would await (the
        request then goes through aiohttp and ``get_handle`` as usual, uncounted here)."""
        started = perf_counter()
        if "?" in raw or "%" in raw:
            return None
        text = raw[_SKIP:]
        key = text.upper() if text.isascii() else ascii_upper(text)
        ready = self._ready(text, key, self._cache_get(key), headers)
        if ready is not None:
            self._responses[ready[0] // 100] += 1
            self._observe(perf_counter() - started)
        return ready

    def _ready(self, text: str, key: str, entry: CacheEntry | None, headers: Mapping[str, str]) -> Ready | None:
        """The hot path's answer, counted: a cached record in its stored spelling, or a remembered absence; None
        leaves the request to ``_get``."""
        plain = "Origin" not in headers
        if entry is not None and entry.handle == text and plain:
            self._counts.hit += 1
            entry.tally.hit += 1
            answer = entry.answer
            if not is_gzip(answer):
                return 200, RECORD_HEADERS, answer
            if accepts_gzip(headers.get("Accept-Encoding", "")):
                return 200, GZIP_RECORD_HEADERS, answer
            return 200, RECORD_HEADERS, self._plain_copy(answer)
        if entry is None and plain and text and self._is_absent(key) and self._plain_absence(key, text):
            # A remembered absence: the text was validated when it was first looked up.
            self._counts.negative_hit += 1
            self._tallies.of(key).not_found += 1
            return 404, JSON_HEADERS, _NOT_FOUND_HEAD + orjson.dumps(text) + b"}"
        return None

    def _plain_absence(self, key: str, text: str) -> bool:
        """Whether a remembered absence answers 404 as it is: not for a prefix handle (the look-up may refer the
        client to the site of an ancestor) nor for a text a fallback claims (a history)."""
        return not key.startswith("0.NA/") and not self._claimed(text)

    @answers_errors
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.methods.get(request.method)
        if handler is None:
            raise MethodNotAllowed(request.method, request.path, allow=self.allow)
        return await handler(request)

    @answers_errors
    async def dispatch_collection(self, request: web.Request) -> web.StreamResponse:
        """``/api/handles`` without a handle: the collection hook's (listing) or rc 102 (transcript C4)."""
        if self.collection is not None and self.collection.wants(request):
            return await self.collection(request)
        if request.method in ("GET", "HEAD", "POST"):
            raise InvalidHandle("Empty handle invalid")
        if request.method == "OPTIONS":
            return await self.options(request)
        raise MethodNotAllowed(request.method, request.path, allow=self.allow)

    async def options(self, request: web.Request) -> web.StreamResponse:
        """``Allow`` for plain OPTIONS (B22), CORS preflight answers when ``Origin`` is sent (B23)."""
        response = web.Response(status=200, headers={"Allow": self._allow_header})
        if request.headers.get("Origin"):
            with_cors(request, response)
            response.headers["Access-Control-Max-Age"] = "86400"
            response.headers["Access-Control-Allow-Methods"] = self._cors_methods
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        return response

    @answers_errors
    async def _get(
        self, request: web.Request, params: MultiMapping[Any], entry: CacheEntry | None
    ) -> web.StreamResponse:
        text = ""
        try:
            text = handle_text(request)
            handle = parse(text, max_bytes=self.max_handle_bytes)
            value_filter = ValueFilter.from_query(params.getall("type", ()), params.getall("index", ()))
            public_only = not _wants_private(params)
            if not public_only and params.get("callback"):
                raise ProtocolError("callback (JSONP) is only served for public answers, not with publicOnly=false")
            if not public_only and await self.authenticate(request, handle.name) is None:
                raise AuthenticationNeeded.on_channel(is_secure(request), handle=text)
        except HandleError as exc:
            self._counts.invalid += 1  # the client's mistake (malformed, too long, needs authentication)
            exc.about(text)
            raise
        if entry is None:
            try:
                entry = await self.lookup.resolve(handle, self._counts, hops=hops_of(request))
            except HandleNotFound:
                if self.fallback.claims(text):
                    return await self.fallback.answer(request, text)
                raise
        else:
            self._counts.hit += 1  # found by the hot path, which left the answer to this slower one
            entry.tally.hit += 1
        body = render(entry, text, value_filter, public_only=public_only, pretty=flag(params, "pretty"))
        response = json_response(body, callback=params.get("callback"))
        response.headers["Vary"] = "Accept-Encoding"
        return with_cors(request, response)

    async def post_handle(self, request: web.Request) -> web.StreamResponse:
        """POST to a handle is a GET whose parameters come in a JSON body (transcript B24)."""
        params = await _json_params(request)
        return await self._get(request, params, None)

    @answers_errors
    async def resolve_batch(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/resolve``: up to ``max_batch`` handles, one result each, in request order.

        Body ``{"handles": [...], "type": [...], "index": [...]}`` (or a bare array of handles). Each result is
        exactly what ``GET /api/handles/<h>`` would answer, error or not; cached answers are spliced in as
        their pre-encoded bytes. Misses of one request are loaded together in one query (foreign ones: one request per
        site). The whole request is one ``lookup_duration_seconds{api="batch"}`` observation, whatever it answers.
        """
        started = perf_counter()
        try:
            return await self._resolve_batch(request)
        finally:
            self._observe_batch(perf_counter() - started)

    async def _resolve_batch(self, request: web.Request) -> web.StreamResponse:
        payload = await json_body(request)
        if isinstance(payload, list):
            payload = {"handles": payload}
        if not isinstance(payload, dict) or not isinstance(payload.get("handles"), list):
            raise ProtocolError('Expected {"handles": ["prefix/suffix", ...]}')
        texts = payload["handles"]
        if len(texts) > self.max_batch:
            raise ProtocolError(f"At most {self.max_batch} handles per request, got {len(texts)}")
        value_filter = ValueFilter.from_query(_as_list(payload.get("type")), map(str, _as_list(payload.get("index"))))
        counts = self.metrics.lookups["batch"]
        self.metrics.batch_sizes.observe(len(texts))
        parts: list[bytes | None] = [None] * len(texts)
        waiting: list[tuple[int, str, Handle]] = []
        hops = hops_of(request)
        for position, text in enumerate(texts):
            try:
                if not isinstance(text, str):
                    raise InvalidHandle("Each handle must be a string")
                handle = parse(text, max_bytes=self.max_handle_bytes)
            except HandleError as exc:
                counts.invalid += 1
                parts[position] = _error_part(exc, text)
                continue
            try:
                entry = self.lookup.cached(handle, counts, hops=hops)
            except HandleError as exc:
                parts[position] = _error_part(exc, text)
                continue
            if entry is None:
                waiting.append((position, text, handle))
            else:
                parts[position] = render(entry, text, value_filter)
        if waiting:  # together: the cache loads local ones in one query, foreign ones go one request per site
            outcomes = await self.lookup.resolve_all([handle for _, _, handle in waiting], counts, hops=hops)
            for (position, text, _), outcome in zip(waiting, outcomes, strict=True):
                if isinstance(outcome, HandleError):
                    parts[position] = _error_part(outcome, text)
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    parts[position] = render(outcome, text, value_filter)
        body = b'{"responseCode":1,"results":[' + b",".join(p for p in parts if p is not None) + b"]}"
        return with_cors(request, json_response(body))


def _error_part(error: HandleError, text: object) -> bytes:
    return orjson.dumps(error.about(text).body())


def _wants_private(params: MultiMapping[Any]) -> bool:
    raw = params.get("publicOnly")
    return raw is not None and not flag(params, "publicOnly")


def _as_list(raw: Any) -> list[Any]:
    if raw is None:
        return []
    return raw if isinstance(raw, list) else [raw]


async def _json_params(request: web.Request) -> MultiMapping[Any]:
    """The JSON body of a POST-as-GET as the query string's multi-mapping: a list is a repeated parameter and a
    number its text (``"index": 1``). Only the flags may be booleans and ``callback`` must be text: anything else
    reaches its reader as it came, which refuses it (``ValueFilter.from_query``: 400 rc 4), where a ``true``
    callback or type used to meet string code and answer 500 (issue 8 review). Keys the read API does not
    read are ignored, as unknown query parameters are."""
    out: MultiDict[Any] = MultiDict(request.query)
    if not request.body_exists:
        return out
    payload = await json_body(request)
    if not isinstance(payload, dict):
        raise ProtocolError("POST parameters must be a JSON object")
    for key, value in payload.items():
        if key in _READ_PARAMETERS:
            for item in _as_list(value):
                out.add(key, _parameter(key, item))
    return out


def _parameter(key: str, item: Any) -> Any:
    if isinstance(item, str) or (isinstance(item, bool) and key in _FLAGS):
        return item
    number = isinstance(item, int | float) and not isinstance(item, bool)
    if key == "callback" or (key in _FLAGS and not number):
        raise ProtocolError(f"POST parameter {key} must be {'text' if key == 'callback' else 'a boolean or text'}")
    return str(item) if number else item


async def api_not_found(request: web.Request) -> web.StreamResponse:
    """Any other ``/api`` path: 404 rc 4 "Unknown HTTP API endpoint" (transcripts F7, F8), or 405 rc 4 with
    ``Allow`` when an ``/api`` route has the path but not the method (``GET /api/resolve``)."""
    allow = await _methods_before(request)
    if allow:
        error: HandleError = MethodNotAllowed(request.method, request.path, allow=allow)
    else:
        error = UnknownEndpoint(f"Unknown HTTP API endpoint {request.method} {request.path}")
    return error_response(error, request)


async def _methods_before(request: web.Request) -> tuple[str, ...]:
    """The methods of the routes registered before the catch-all that matched, which have the request's path: the
    routes it answers for when the method is wrong. Only on this error path, so a walk is fine."""
    allowed: set[str] = set()
    catch_all = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is catch_all:
            break
        _, methods = await resource.resolve(request)
        allowed |= methods
    allowed.discard("*")
    return tuple(sorted(allowed))
