"""SNMS's answer envelope: ``{"status", "message", "data"}`` over HTTP 200, as deployed secondary nodes send it.

Enterprise MES/ERP integrations in China were written against the SNMS HTTP API (research
idis-secondary-node.md §4.1(b)); they branch on ``status``, not on the HTTP status, so every SNMS answer is a 200
(a 503 for a database that cannot answer keeps ``Retry-After`` so load balancers and polite clients still back
off). The status codes: 1 ok, -1 not logged in, -2 business error (the message says which), -3 no permission,
-4 internal error. Every idnode error (``HandleError``) maps onto one of them here, so the SNMS endpoints reuse the
write stages and their errors unchanged; ``answers_snms`` is the same trace-proof decorator as the Handle API's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from resolver.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleError,
    InsufficientPermissions,
    InternalError,
    InvalidAdmin,
    ServerTooBusy,
    TooManyFailures,
)
from resolver.responses import answering, json_response, with_cors

__all__ = [
    "BUSINESS_ERROR",
    "INTERNAL_ERROR",
    "NOT_LOGGED_IN",
    "NO_PERMISSION",
    "OK",
    "answers_snms",
    "snms_error",
    "snms_ok",
    "snms_status",
]

OK = 1
NOT_LOGGED_IN = -1
BUSINESS_ERROR = -2
NO_PERMISSION = -3
INTERNAL_ERROR = -4


def snms_status(error: HandleError) -> int:
    """The SNMS status for ``error``: credentials missing or wrong (or too many wrong tries) are "not logged in",
    a refused right is "no permission", the node's own trouble is "internal", everything else is the client's."""
    if isinstance(error, AuthenticationNeeded | TooManyFailures):
        return NOT_LOGGED_IN
    if isinstance(error, InsufficientPermissions | InvalidAdmin | AuthenticationFailed):
        return NO_PERMISSION
    if isinstance(error, InternalError | ServerTooBusy):
        return INTERNAL_ERROR
    return BUSINESS_ERROR


def snms_ok(data: Any = None, message: str = "success") -> web.Response:
    """A successful SNMS answer carrying ``data``."""
    return json_response({"status": OK, "message": message, "data": data})


def snms_error(error: HandleError, request: web.Request | None = None) -> web.Response:
    """``error`` in the SNMS envelope; the message names what was wrong (a field, a handle), never a trace."""
    message = error.message or type(error).__name__
    if error.handle is not None and error.handle not in message:
        message = f"{message}: {error.handle}"
    status = 503 if isinstance(error, ServerTooBusy) else 200
    response = json_response(
        {"status": snms_status(error), "message": message, "data": None}, status=status, headers=error.headers()
    )
    if error.closes_connection:
        response.force_close()
    if request is not None:
        with_cors(request, response)
    return response


answers_snms = answering(snms_error)
"""Decorate SNMS handlers: whatever they raise is answered in the envelope."""
