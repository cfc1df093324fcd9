"""The error families of idnode, and how each becomes a Handle.Net-style answer.

::

    Exception
    ├── HandleError                 a Handle.Net ``responseCode`` with its HTTP status (research §2)
    │   ├── ProtocolError           rc 4   → 400 (bad JSON, wrong media type, bad parameter)
    │   ├── UnknownEndpoint         rc 4   → 404
    │   ├── MethodNotAllowed        rc 4   → 405
    │   ├── NotSupported            rc 5   → 501
    │   ├── HandleNotFound          rc 100 → 404
    │   ├── HandleAlreadyExists     rc 101 → 409
    │   ├── InvalidHandle           rc 102 → 400
    │   ├── ValuesNotFound          rc 200 → 400 (200 on resolution, which answers it itself)
    │   ├── ValueAlreadyExists      rc 201 → 409
    │   ├── InvalidValue            rc 202 → 400
    │   ├── PrefixNotHomed          rc 301 → 400 ("That prefix doesn't live here")
    │   ├── AuthenticationNeeded    rc 402 → 401 (403 on an insecure channel)
    │   │   └── BadCredentials      rc 402 → 401, "Identity not verified" (transcript A7)
    │   ├── InvalidAdmin            rc 400 → 403
    │   ├── InsufficientPermissions rc 401 → 403
    │   ├── AuthenticationFailed    rc 403 → 403
    │   │   └── TooManyFailures     rc 403 → 429, with Retry-After
    │   ├── ServerTooBusy           rc 3   → 503
    │   └── InternalError           rc 2   → 500 (never carries a trace to the client)
    └── ConfigError (ValueError)    a bad setting, reported at start naming the setting

Anything else raised while answering is a bug: the HTTP layer logs it with the request id and answers
``InternalError``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "AuthenticationNeeded",
    "BadCredentials",
    "ConfigError",
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
    "PrefixNotHomed",
    "ProtocolError",
    "ServerTooBusy",
    "TooManyFailures",
    "UnknownEndpoint",
    "ValueAlreadyExists",
    "ValuesNotFound",
]


class ConfigError(ValueError):
    """A setting has a value idnode cannot use; the message names the setting, the value and what was expected."""


class HandleError(Exception):
    """A failure the client caused or must be told about, answered as ``{"responseCode":N,...}``."""

    response_code: int = 2
    http_status: int = 500
    default_message: str | None = None

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


class ProtocolError(HandleError):
    response_code, http_status = 4, 400


class UnknownEndpoint(HandleError):
    response_code, http_status = 4, 404


class MethodNotAllowed(HandleError):
    response_code, http_status = 4, 405

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


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
    response_code, http_status = 402, 401


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


class ServerTooBusy(HandleError):
    response_code, http_status = 3, 503
    default_message = "Server too busy"


class InternalError(HandleError):
    response_code, http_status = 2, 500
    default_message = "Internal error"
