"""The error families of idnode, and how each becomes a Handle.Net-style answer.

::

    Exception
    ├── HandleError                 a Handle.Net ``responseCode`` with its HTTP status (research §2)
    │   ├── ProtocolError           rc 4   → 400 (bad JSON, wrong media type, bad parameter)
    │   │   ├── PayloadTooLarge     rc 4   → 413, naming the limit (``max_body_bytes``)
    │   │   └── BodyTimeout         rc 4   → 408, the body did not arrive within ``body_timeout``
    │   ├── UnknownEndpoint         rc 4   → 404
    │   ├── MethodNotAllowed        rc 4   → 405, with Allow
    │   ├── NotSupported            rc 5   → 501
    │   ├── HandleNotFound          rc 100 → 404
    │   ├── HandleAlreadyExists     rc 101 → 409
    │   ├── InvalidHandle           rc 102 → 400
    │   ├── ValuesNotFound          rc 200 → 400 (200 on resolution, which answers it itself)
    │   ├── ValueAlreadyExists      rc 201 → 409
    │   ├── InvalidValue            rc 202 → 400
    │   ├── PrefixNotHomed          rc 301 → 400 ("That prefix doesn't live here")
    │   ├── PrefixReferral          rc 303 → 300, with the delegating site values (forward.py)
    │   ├── ReferralFailed          rc 2   → 502 (a referral loop or limit, a misconfigured site)
    │   ├── UpstreamError           the authoritative site's own status and rc, passed on
    │   ├── AuthenticationNeeded    rc 402 → 401 (403 on an insecure channel)
    │   │   └── BadCredentials      rc 402 → 401, "Identity not verified" (transcript A7)
    │   ├── InvalidAdmin            rc 400 → 403
    │   ├── InsufficientPermissions rc 401 → 403
    │   ├── AuthenticationFailed    rc 403 → 403
    │   │   └── TooManyFailures     rc 403 → 429, with Retry-After
    │   ├── ServerTooBusy           rc 3   → 503
    │   │   ├── DatabaseUnavailable rc 3   → 503, with Retry-After
    │   │   └── SiteUnreachable     rc 3   → 503, naming the site, with Retry-After
    │   └── InternalError           rc 2   → 500 (never carries a trace to the client)
    └── ConfigError (ValueError)    a bad setting, reported at start naming the setting

A database that cannot answer (refused, starting up, shutting down, connection lost, no answer within
``database_timeout``; ``resolver/store.py`` ``unavailable`` decides) is ``DatabaseUnavailable``. Anything else
raised while answering is a bug, ``asyncpg.InterfaceError`` (the driver used wrongly) included: the HTTP layer
logs it with the request id and answers ``InternalError``.

A refusal the database's triggers raise for the client (a ``unique_violation`` on a constraint named
``idnode_*``, e.g. ``schema/0014``'s class pattern held by another class) is ``ValueAlreadyExists`` carrying the
trigger's message (``refusal_of``): every write path answers it as a 409 rc 201, not as a bug.

Extra headers an answer needs (``Allow``, ``Retry-After``) come from ``HandleError.headers()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "AuthenticationNeeded",
    "BadCredentials",
    "BodyTimeout",
    "ConfigError",
    "DatabaseUnavailable",
    "HandleAlreadyExists",
    "HandleError",
    "HandleNotFound",
    "InsufficientPermissions",
    "InternalError",
    "InvalidAdmin",
    "InvalidHandle",
    "InvalidValue",
    "MethodNotAllowed",
    "NotSupported",
    "PayloadTooLarge",
    "PrefixNotHomed",
    "PrefixReferral",
    "ProtocolError",
    "ReferralFailed",
    "ServerTooBusy",
    "SiteUnreachable",
    "TooManyFailures",
    "UnknownEndpoint",
    "UpstreamError",
    "ValueAlreadyExists",
    "ValuesNotFound",
    "refusal_of",
]

_UNIQUE_VIOLATION = "23505"


class ConfigError(ValueError):
    """A setting has a value idnode cannot use; the message names the setting, the value and what was expected."""


class HandleError(Exception):
    """A failure the client caused or must be told about, answered as ``{"responseCode":N,...}``."""

    response_code: int = 2
    http_status: int = 500
    default_message: str | None = None
    closes_connection: bool = False
    """Whether the connection must be closed after the answer (the rest of the request cannot be trusted)."""

    def __init__(self, message: str | None = None, *, handle: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        self.handle = handle
        super().__init__(self.message or self.__class__.__name__)

    def body(self) -> dict[str, object]:
        """The JSON error body in Handle.Net's key order: responseCode, message, handle (transcript C2)."""
        out: dict[str, object] = {"responseCode": self.response_code}
        if self.message is not None:
            out["message"] = self.message
        if self.handle is not None:
            out["handle"] = self.handle
        return out

    def headers(self) -> dict[str, str]:
        """HTTP headers this answer needs besides the body (``Allow``, ``Retry-After``); none by default."""
        return {}

    def about(self, text: object) -> HandleError:
        """Name the requested handle ``text`` in this error, unless it names one already; protocol errors (rc 4)
        name none, as Handle.Net's do not (transcript C10). Returns the error."""
        if self.handle is None and isinstance(text, str) and text and self.response_code != 4:
            self.handle = text
        return self


class ProtocolError(HandleError):
    response_code, http_status = 4, 400


class PayloadTooLarge(ProtocolError):
    """The request body is larger than the node accepts; the message names the limit so a client can split."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than {limit} bytes (max_body_bytes)")
        self.limit = limit


class BodyTimeout(ProtocolError):
    """The declared body did not arrive in time: a slow or stalled client must not hold a connection forever."""

    http_status = 408
    closes_connection = True

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Request body not received within {seconds:g} s (body_timeout)")


class UnknownEndpoint(HandleError):
    response_code, http_status = 4, 404


class MethodNotAllowed(HandleError):
    """A method the resource does not have; the message is Handle.Net's "Unknown HTTP API endpoint" (F9)."""

    response_code, http_status = 4, 405

    def __init__(self, method: str, path: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(f"Unknown HTTP API endpoint {method} {path}")
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class NotSupported(HandleError):
    response_code, http_status = 5, 501


class HandleNotFound(HandleError):
    response_code, http_status = 100, 404
    default_message = "Handle not found"


class HandleAlreadyExists(HandleError):
    response_code, http_status = 101, 409
    default_message = "Handle already exists"


class InvalidHandle(HandleError):
    response_code, http_status = 102, 400


class ValuesNotFound(HandleError):
    response_code, http_status = 200, 400
    default_message = "Values not found"


class ValueAlreadyExists(HandleError):
    response_code, http_status = 201, 409


class InvalidValue(HandleError):
    response_code, http_status = 202, 400


class PrefixNotHomed(HandleError):
    response_code, http_status = 301, 400
    default_message = "That prefix doesn't live here"


class AuthenticationNeeded(HandleError):
    """No usable credentials: the message says what to send, or, on a plain-HTTP channel (where credentials are
    ignored), that a secure one is needed. Read and write paths answer with the same words (``on_channel``)."""

    response_code, http_status = 402, 401
    default_message = "Authentication needed: send HTTP Basic credentials (index:handle) or a session"
    insecure_message = (
        "Authentication needs a secure channel: use HTTPS (idnode serve --tls), or a TLS-terminating proxy listed in "
        "trusted_proxies; credentials sent over plain HTTP are ignored"
    )

    @classmethod
    def on_channel(cls, secure: bool, *, handle: str | None = None) -> AuthenticationNeeded:
        """The error for a request on a ``secure`` channel or not, naming ``handle``."""
        return cls(None if secure else cls.insecure_message, handle=handle)


class BadCredentials(AuthenticationNeeded):
    default_message = "Identity not verified"


class InvalidAdmin(HandleError):
    response_code, http_status = 400, 403
    default_message = "Not an admin of this handle"


class InsufficientPermissions(HandleError):
    response_code, http_status = 401, 403
    default_message = "Insufficient permissions"


class AuthenticationFailed(HandleError):
    response_code, http_status = 403, 403
    default_message = "Authentication failed"


class TooManyFailures(AuthenticationFailed):
    http_status = 429
    default_message = "Too many failed authentication attempts"

    def __init__(self, retry_after: float, *, handle: str | None = None) -> None:
        super().__init__(f"Too many failed authentication attempts; retry in {retry_after:.0f} s", handle=handle)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class ServerTooBusy(HandleError):
    response_code, http_status = 3, 503
    default_message = "Server too busy"


class DatabaseUnavailable(ServerTooBusy):
    """The database did not answer (see the module docstring); the client should retry after a short pause."""

    default_message = "Database unavailable; try again shortly"
    retry_after = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class SiteUnreachable(ServerTooBusy):
    """No server of the site that serves a foreign prefix answered within ``forward_timeout`` (forward.py)."""

    retry_after = 5

    def __init__(self, site: str, *, handle: str | None = None) -> None:
        super().__init__(f"The site serving this prefix ({site}) is unreachable; try again shortly", handle=handle)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ReferralFailed(HandleError):
    """The hierarchy could not say where a prefix lives: a referral loop, too many referrals, a site that refuses
    the prefix it was named for, or an answer that is not the Handle API. The node above or beside is
    misconfigured, not the client, hence 502."""

    response_code, http_status = 2, 502
    default_message = "Could not follow the hierarchy to this prefix's site"


class PrefixReferral(HandleError):
    """A prefix handle this node does not hold, under an ancestor it delegates with HS_SITE.PREFIX: HTTP 300 with
    rc 303 and the ancestor's site values, as a Handle server refers a client (handle-resolution-model.md §2)."""

    response_code, http_status = 303, 300

    def __init__(self, site_values: Sequence[Any], *, handle: str | None = None) -> None:
        super().__init__(None, handle=handle)
        self.site_values = site_values
        """``records.HandleValue`` objects (not imported here: records builds on this module)."""

    def body(self) -> dict[str, object]:
        return {**super().body(), "values": [value.to_json() for value in self.site_values]}


class UpstreamError(HandleError):
    """An error the authoritative site answered for a foreign handle, passed on as it was (status, code, message)."""

    def __init__(self, status: int, response_code: int, message: str | None, *, handle: str | None = None) -> None:
        super().__init__(message, handle=handle)
        self.http_status, self.response_code = status, response_code


class InternalError(HandleError):
    response_code, http_status = 2, 500
    default_message = "Internal error"


def refusal_of(exc: BaseException) -> HandleError | None:
    """The Handle error for a refusal raised by one of idnode's triggers (module docstring), else None."""
    constraint = getattr(exc, "constraint_name", None) or ""
    if getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION and constraint.startswith("idnode_"):
        message = getattr(exc, "message", None) or str(exc)
        if message.startswith("duplicate key"):  # the unique index itself: two writers raced past the trigger
            message = "That value is already held by another record"
        return ValueAlreadyExists(message)
    return None
