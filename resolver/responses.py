"""Building HTTP answers: JSON bodies as Handle.Net sends them, error conversion, CORS, request parameters.

Shared by the read path and the registry. The hot path uses only ``JSON_HEADERS``; everything else here is
for the slower paths.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from resolver.errors import (
    AuthenticationNeeded,
    BadCredentials,
    BodyTimeout,
    DatabaseUnavailable,
    HandleError,
    InternalError,
    PayloadTooLarge,
    ProtocolError,
)
from resolver.store import unavailable

__all__ = [
    "ANY_TAIL",
    "BODY_TIMEOUT",
    "GZIP_RECORD_HEADERS",
    "JSON_HEADERS",
    "JSON_TYPE",
    "RECORD_HEADERS",
    "ErrorRenderer",
    "Handler",
    "Ready",
    "answering",
    "answers_errors",
    "error_response",
    "flag",
    "is_secure",
    "json_body",
    "json_response",
    "read_body",
    "with_cors",
]

log = logging.getLogger("idnode.http")

JSON_TYPE = "application/json;charset=UTF-8"
JSON_HEADERS = {"Content-Type": JSON_TYPE, "X-Content-Type-Options": "nosniff"}
"""Handle.Net's exact Content-Type (transcript B1), and ``nosniff`` so that a browser never reads an answer (which
echoes client-chosen text) as HTML or script."""

RECORD_HEADERS = {**JSON_HEADERS, "Vary": "Accept-Encoding"}
"""A record's JSON answer, which gzip-accepting clients get compressed (``compression.py``); Handle.Net sends the same
``Vary`` on every JSON answer (transcript B21b)."""
GZIP_RECORD_HEADERS = {**RECORD_HEADERS, "Content-Encoding": "gzip"}

_JSONP_HEADERS = {"Content-Type": "application/javascript;charset=UTF-8", "X-Content-Type-Options": "nosniff"}
_CALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9_$.]")
_TRUE_WORDS = frozenset({"", "true", "yes"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Ready = tuple[int, Mapping[str, str], bytes]
"""An answer a hot path gives without awaiting: status, headers (without Content-Length, Date and Server, which
the server adds) and body; the fast lane (``fastlane.py``) writes it itself, the hot handlers as a ``Response``."""

ANY_TAIL = "{tail:[\\s\\S]*}"
"""Route pattern for "the rest of the path". aiohttp matches the *decoded* path, where ``.*`` would stop at a
decoded newline and answer aiohttp's own plain 404; the handler must see such a handle to refuse it with rc 102."""


def flag(params: Mapping[str, Any], name: str) -> bool:
    """Handle.Net's boolean parameters: absent → false; present and empty, ``true`` or ``yes`` (any case) → true."""
    raw = params.get(name)
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in _TRUE_WORDS


def json_response(
    body: bytes | dict[str, Any],
    *,
    status: int = 200,
    callback: str | None = None,
    pretty: bool = False,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON (or JSONP, when ``callback`` is given) answer.

    JSONP is for public answers only: a script a foreign page loads runs with the user's cached credentials, so
    callers must not pass ``callback`` for an answer with non-public values (``http.py`` refuses such requests).
    """
    if isinstance(body, dict):
        body = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    fixed = JSON_HEADERS
    if callback:
        name = _CALLBACK_UNSAFE.sub("_", callback)[:128]
        body = name.encode() + b"(" + body + b");"
        fixed = _JSONP_HEADERS
    if headers:
        out_headers: CIMultiDict[str] = CIMultiDict(headers)
        out_headers.update(fixed)
        return web.Response(body=body, status=status, headers=out_headers)
    return web.Response(body=body, status=status, headers=fixed)


BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout")
"""Seconds a client may take to send a request body (``body_timeout``); without it, 30."""


async def read_body(request: web.Request) -> bytes:
    """The whole request body: 413 rc 4 naming the limit when it is larger than ``max_body_bytes``, 408 rc 4 (and
    the connection closed) when it does not arrive within ``body_timeout``, so a client that declares a body and
    trickles it cannot hold a connection and a buffer for as long as it likes."""
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    seconds = request.app.get(BODY_TIMEOUT, 30.0)
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None
    except TimeoutError:
        raise BodyTimeout(seconds) from None


async def json_body(request: web.Request, *, require_json_type: bool = False) -> Any:
    """The request body parsed as JSON; rc 4 for malformed JSON, and (when required, as for Handle.Net's PUT,
    transcript A11) for a media type other than ``application/json``."""
    if require_json_type and request.content_type != "application/json":
        raise ProtocolError(f"Unsupported media type {request.content_type}")
    try:
        return orjson.loads(await read_body(request))
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"Malformed JSON body: {exc}") from None


def error_response(error: HandleError, request: web.Request | None = None) -> web.Response:
    """The JSON answer for ``error``; rc 402 is 401 only on a secure channel, 403 otherwise (research §4)."""
    status = error.http_status
    headers: CIMultiDict[str] = CIMultiDict(error.headers())
    if isinstance(error, AuthenticationNeeded):
        if request is not None and is_secure(request):
            headers.add("WWW-Authenticate", 'Basic realm="handle"')
            if isinstance(error, BadCredentials):
                headers.add("WWW-Authenticate", 'Handle error="Identity not verified"')
        else:
            status = 403
    response = json_response(error.body(), status=status, headers=headers)
    if error.closes_connection:
        response.force_close()  # no keep-alive; answers_errors also cuts the rest of the body short
    if request is not None:
        with_cors(request, response)
    return response


def is_secure(request: web.Request) -> bool:
    """Whether the request came over TLS (the registry widens this to trusted proxies)."""
    checker = request.app.get(SECURE_CHECK)
    return checker(request) if checker is not None else request.secure


SECURE_CHECK: web.AppKey[Callable[[web.Request], bool]] = web.AppKey("secure_check")


def with_cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Reflect ``Origin`` as Handle.Net does (transcript B21); credentials are never allowed cross-origin."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Content-Length"
        response.headers["Vary"] = "Origin"
    return response


ErrorRenderer = Callable[[HandleError, web.Request], web.Response]
_AnyHandler = Callable[..., Awaitable[web.StreamResponse]]
"""A handler function or method (``self`` first)."""


def answering(render: ErrorRenderer) -> Callable[[_AnyHandler], _AnyHandler]:
    """A decorator that turns whatever a handler raises into ``render``'s answer, never a trace.

    A database that cannot answer (``store.unavailable``) is ``DatabaseUnavailable`` (rc 3, Retry-After); anything
    unexpected, a misused driver (``asyncpg.InterfaceError``) included, is logged with a request id and rendered as
    ``InternalError`` naming that id. One decorator for every dialect (Handle.Net here, SNMS's envelope in
    ``registry/snms_envelope.py``) so that none of them can leak a trace the others would catch.
    """

    def decorate(handler: _AnyHandler) -> _AnyHandler:
        @functools.wraps(handler)
        async def wrapped(*args: Any) -> web.StreamResponse:
            try:
                return await handler(*args)
            except HandleError as exc:
                request = _request_of(args)
                response = render(exc, request)
                if exc.closes_connection:
                    await _send_and_close(request, response)
                return response
            except web.HTTPException:
                raise
            except Exception as exc:
                request = _request_of(args)
                if unavailable(exc):
                    log.warning("database unavailable for %s %s: %r", request.method, request.path, exc)
                    return render(DatabaseUnavailable(), request)
                request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
                log.exception(
                    "internal error, request id %s: %s %s",
                    request_id,
                    request.method,
                    request.path,
                    extra={"request_id": request_id},
                )
                return render(InternalError(f"Internal error (request id {request_id})"), request)

        return wrapped

    return decorate


answers_errors = answering(error_response)
"""Handle.Net-style answers (``{"responseCode", "message", "handle"}`` with the error's HTTP status)."""


async def _send_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` now and close the connection, instead of aiohttp's lingering read of the rest of the
    body (up to 10 s more of a client that is trickling it)."""
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()


def _request_of(args: tuple[Any, ...]) -> web.Request:
    """The request among a handler's arguments (plain functions and methods alike)."""
    return next(arg for arg in args if isinstance(arg, web.BaseRequest))
