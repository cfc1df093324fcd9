"""The node's logs: plain text or one JSON object per line, and an optional per-request log (sampled, slow).

Settings (``resolver/config.py``):

==================  =========  ==========================================================================
option              default    meaning
==================  =========  ==========================================================================
log_level           INFO       threshold of every logger except the request log
log_format          text       ``text`` (``time level logger: message``) or ``json`` (one object per line)
access_log_sample   0          fraction of requests written to ``idnode.access`` at INFO (0 = off, 1 = all)
slow_request_ms     0          requests slower than this go to ``idnode.slow`` at WARNING (0 = off)
==================  =========  ==========================================================================

A JSON line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, ``pid`` (several
workers share one stream), then whatever the call passed in ``extra`` (``request_id`` when known: the request's
``X-Request-Id``, or the id an internal error was answered with), and ``exception`` with the traceback as one
string, so a line never breaks.

The request log costs nothing when it is off: ``request_log_options`` then gives aiohttp ``access_log=None``,
so aiohttp's ``RequestHandler`` makes no call at all per request (aiohttp/web_protocol.py ``log_access``). When
on, aiohttp calls ``RequestLog.log`` once per finished request with its duration: a comparison with the slow
threshold, and one random number when sampling. Request lines carry ``method``, ``path`` (the raw target, at most
``MAX_PATH`` characters), ``status``, ``duration_ms``, ``bytes``, ``remote`` and ``request_id``.

Example::

    configure_logging("INFO", "json")
    web.run_app(app, **request_log_options(sample=0.01, slow_ms=250))
"""

from __future__ import annotations

import logging
import math
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "SLOW_LOGGER",
    "JsonFormatter",
    "RequestLog",
    "configure_logging",
    "request_log_class",
    "request_log_options",
]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "idnode.access"
SLOW_LOGGER = "idnode.slow"
MAX_PATH = 512

# Attributes every LogRecord has; anything else on a record came from ``extra`` and goes into the JSON object.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (the fields are in the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class _NodeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs; marked by its class so a second call replaces it."""


def configure_logging(level: str, log_format: str = "text", *, stream: IO[str] | None = None) -> None:
    """Send every logger at ``level`` or above to ``stream`` (stderr) as ``log_format`` lines."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"logs: log_format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _NodeHandler)]:
        root.removeHandler(handler)
    handler = _NodeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class RequestLog(AbstractAccessLogger):
    """aiohttp's per-request hook: slow requests to ``idnode.slow``, a sample of the rest to ``idnode.access``.

    Configured by class attributes because aiohttp builds it itself, as ``cls(logger, format)``; use
    :func:`request_log_class` to make a configured subclass.
    """

    sample = 0.0
    slow_seconds = math.inf
    random: Callable[[], float] = random.random
    slow_logger = logging.getLogger(SLOW_LOGGER)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if time >= self.slow_seconds:
            self._write(self.slow_logger, logging.WARNING, "slow request", request, response, time)
        elif self.sample and self.random() < self.sample:
            self._write(self.logger, logging.INFO, "request", request, response, time)

    @staticmethod
    def _write(
        logger: logging.Logger,
        level: int,
        what: str,
        request: web.BaseRequest,
        response: web.StreamResponse,
        time: float,
    ) -> None:
        path = request.raw_path[:MAX_PATH]
        duration_ms = round(time * 1000.0, 3)
        fields: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "status": response.status,
            "duration_ms": duration_ms,
            "bytes": response.body_length,
            "remote": request.remote,
        }
        request_id = request.headers.get("X-Request-Id")
        if request_id:
            fields["request_id"] = request_id[:128]
        logger.log(level, "%s %s %s %d %.3fms", what, request.method, path, response.status, duration_ms, extra=fields)


def request_log_class(
    *, sample: float, slow_ms: float, random: Callable[[], float] = random.random
) -> type[RequestLog]:
    """A :class:`RequestLog` subclass with these settings (``random`` is replaceable for tests)."""
    if not 0.0 <= sample <= 1.0:
        raise ValueError(f"logs: access_log_sample must be between 0 and 1, got {sample}")
    if slow_ms < 0:
        raise ValueError(f"logs: slow_request_ms must not be negative, got {slow_ms}")
    attributes = {
        "sample": float(sample),
        "slow_seconds": slow_ms / 1000.0 if slow_ms > 0 else math.inf,
        "random": staticmethod(random),
    }
    return type("ConfiguredRequestLog", (RequestLog,), attributes)


def request_log_options(
    *, sample: float, slow_ms: float, random: Callable[[], float] = random.random
) -> dict[str, Any]:
    """Keyword arguments for ``web.run_app``/``web.AppRunner``: ``access_log=None`` when both logs are off.

    When the access log is sampled, ``idnode.access`` is set to INFO: asking for a sample is explicit, so a
    ``log_level`` of WARNING must not hide it.
    """
    cls = request_log_class(sample=sample, slow_ms=slow_ms, random=random)
    if not sample and not slow_ms:
        return {"access_log": None}
    access = logging.getLogger(ACCESS_LOGGER)
    if sample:
        access.setLevel(logging.INFO)
    return {"access_log": access, "access_log_class": cls}
