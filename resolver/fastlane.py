"""The fast lane: cached look-ups answered by an asyncio protocol in front of aiohttp, the way uvicorn serves HTTP.

Why: a cached look-up's own work is a dict look-up and a few counters, but aiohttp spends most of a request's CPU
on its request object, handler task and response writer (issue 14: a cached look-up ran at 0.6-0.8x of aiohttp's
hello world, which does nothing at all). This protocol parses request heads with ``httptools`` (llhttp, the parser
uvicorn uses) and answers what the hot paths answer without awaiting (``HandlesEndpoint.ready_answer``: a cached
record or remembered absence at ``/api/handles/<h>``; ``Proxy.ready_answer``: the cached 302 of ``/<h>``) by
writing the bytes aiohttp would have written straight to the transport: same status line, the handler's headers,
then ``Content-Length``, ``Date``, ``Server`` and ``Connection`` as aiohttp adds them. Those calls count and time
the answer exactly as the aiohttp handlers do, so metrics do not depend on the lane.

Everything else goes to aiohttp unchanged, for the rest of the connection: the moment a request is not one of
those (another method or path, a query string, a miss, ``Origin``, a body, ``Expect``, ``Upgrade``, a duplicate
header, anything the parser refuses or that is not plain CRLF-framed ASCII, a head longer than aiohttp's line limit,
TLS), the lane creates aiohttp's own ``RequestHandler`` for the connection (``web.Server.__call__``), makes it the
transport's protocol, and replays every byte it has read since the last answer it wrote. Answers stay in order:
the lane only hands over between requests, after its own answers are written. aiohttp then answers, limits and
4xx included, as if it had read the connection from the start.

The lane keeps to HTTP/1.1's rules: keep-alive, ``Connection: close``, HTTP/1.0 (``Connection: keep-alive`` when
asked), HEAD (headers with the GET's ``Content-Length``, no body), pipelining (several requests per read), partial
heads (held until complete), write flow control (no request is answered while the transport's buffer is above its
high-water mark: reading pauses, and resumes with the answers), and aiohttp's keep-alive timeout for idle
connections. It relies on aiohttp internals checked by ``tests/test_fast_lane.py``: ``web.Server``'s constructor
arguments (``request_handler``, ``request_factory``, ``_loop``, ``_kwargs``), ``RequestHandler``'s
``keepalive_timeout`` keyword and the header order of ``StreamResponse._prepare_headers``; pyproject.toml pins
aiohttp's minor versions accordingly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, cast

import httptools
from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive
from multidict import CIMultiDict

from resolver.responses import GZIP_RECORD_HEADERS, JSON_HEADERS, RECORD_HEADERS, Ready

__all__ = ["MAX_HEAD_BYTES", "Answers", "FastLane", "FastLaneRunner", "FastLaneServer"]

Answers = Callable[[str, Mapping[str, str]], Ready | None]
"""``answers(raw_path, headers)``: a ready answer for a GET or HEAD, counted, or None (aiohttp answers it)."""

MAX_HEAD_BYTES = 8190
"""aiohttp's default ``max_line_size`` and ``max_field_size``: a head no longer than this cannot break either, so
whatever the lane answers aiohttp would have accepted; anything longer is aiohttp's to judge."""
_MAX_FIELDS = 64  # below aiohttp's max_headers (128)
_KEEPALIVE_TIMEOUT = 3630.0  # RequestHandler's default, when the runner is given none (run_app gives 75)
_END = b"\r\n\r\n"
_REFUSED = frozenset({"content-length", "transfer-encoding", "expect", "upgrade", "http2-settings", "origin"})
"""Fields that give a request a body, a protocol switch, an interim answer or CORS: aiohttp's to handle."""
_CONNECTION = frozenset({"keep-alive", "close"})
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_PATH = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%"
"""The bytes of a path the lane answers (RFC 3986 ``pchar`` and ``/``): any other is aiohttp's to judge."""
_HEAD = b"HEAD"
_LANE_METHODS = frozenset({b"GET", _HEAD})


class FastLane(asyncio.Protocol):
    """One connection: answered here while its requests are ready answers, then handed to aiohttp for good."""

    __slots__ = (
        "_bad",
        "_buffer",
        "_complete",
        "_fields",
        "_idle_timer",
        "_keep_alive",
        "_last_active",
        "_loop",
        "_method",
        "_parser",
        "_server",
        "_url",
        "_version",
        "_writing_paused",
        "transport",
    )

    def __init__(self, server: FastLaneServer) -> None:
        self._server = server
        self._loop = server.loop
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields: CIMultiDict[str] = CIMultiDict()
        self._bad = self._complete = self._writing_paused = self._keep_alive = False
        self._method = b""
        self._version = ""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_active = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is one without subclassing it
        self.transport = transport
        if transport.get_extra_info("sslcontext") is not None:  # TLS stays aiohttp's alone
            self._hand_over(b"")
            return
        if self._server.tcp_keepalive:
            tcp_keepalive(transport)
        self._server.lanes.add(self)
        self._last_active = self._loop.time()
        self._idle_timer = self._loop.call_later(self._server.keepalive_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._last_active = self._loop.time()
        if not self._writing_paused and self.transport is not None and not self.transport.is_closing():
            self._serve()

    def eof_received(self) -> bool | None:
        if self._buffer:  # an unfinished request: aiohttp answers it (or drops it) as it would
            handler = self._hand_over(self._buffer)
            return handler.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            self._serve()

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        try:
            key = name.decode("ascii")
            text = value.decode("ascii")
        except UnicodeDecodeError:
            self._bad = True
            return
        lowered = key.lower()
        odd_connection = lowered == "connection" and text.lower() not in _CONNECTION
        if lowered in _REFUSED or odd_connection or key in fields or len(fields) >= _MAX_FIELDS:
            self._bad = True
        fields.add(key, text)

    def on_headers_complete(self) -> None:
        """Read what the parser knows of the request now: llhttp resets it for the next one at the message's end."""
        parser = self._parser
        self._method, self._version, self._keep_alive = (
            parser.get_method(),
            parser.get_http_version(),
            parser.should_keep_alive(),
        )

    def on_message_complete(self) -> None:
        self._complete = True

    # the lane

    def _serve(self) -> None:
        """Answer every complete head in the buffer that has a ready answer; hand over at the first that has not."""
        buffer = self._buffer
        start = 0
        transport = self.transport
        assert transport is not None
        while True:
            end = buffer.find(_END, start)
            if end < 0 and start == len(buffer):
                self._buffer = b""
                return
            if end < 0 or end + 4 - start > MAX_HEAD_BYTES:
                rest = buffer[start:]
                if end >= 0 or len(rest) > MAX_HEAD_BYTES or _bare_line_ends(rest):
                    self._hand_over(rest)  # too long, or framed in a way only aiohttp's parser should judge
                else:
                    self._buffer = rest  # wait for the rest of the head
                return
            end += 4
            head = buffer[start:end]
            answer = self._answer(head)
            if answer is None:
                self._hand_over(buffer[start:])
                return
            transport.write(answer)
            start = end
            if not self._keep_alive:
                self._buffer = b""
                self._forget()
                transport.close()
                return
            if self._writing_paused:
                self._buffer = buffer[start:]
                transport.pause_reading()
                return

    def _answer(self, head: bytes) -> bytes | None:
        """The whole answer (head and body) to one request head, or None."""
        if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n") or head[0] < 65:
            return None  # a bare LF or CR, or a leading empty line: aiohttp's parser decides what they mean
        self._url, self._fields, self._bad, self._complete, self._method = b"", CIMultiDict(), False, False, b""
        try:
            self._parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # an upgrade or CONNECT: aiohttp's
            return None
        url = self._url
        method = self._method
        if (
            self._bad
            or not self._complete
            or method not in _LANE_METHODS
            or url[:1] != b"/"
            or url.translate(None, _PATH)
        ):
            return None  # not a GET or HEAD of an origin-form path of RFC 3986 characters (no query, no fragment)
        version = self._version
        if version not in ("1.1", "1.0"):
            return None
        ready = self._server.answers(url.decode("ascii"), self._fields)
        if ready is None:
            return None
        status, headers, body = ready
        tail = _tail(version, self._keep_alive)
        head = b"%sContent-Length: %d\r\n%s" % (_head(version, status, headers), len(body), tail)
        return head if method == _HEAD else head + body

    def _hand_over(self, replay: bytes) -> web.RequestHandler:
        """Make aiohttp's own protocol this connection's, and give it the bytes read since the last answer."""
        transport = self.transport
        assert transport is not None
        self._forget()
        self._buffer = b""
        handler = self._server.request_handler_for_lane()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        if replay:
            handler.data_received(replay)
        return handler

    def _check_idle(self) -> None:
        """Close a connection idle for aiohttp's keep-alive timeout, as aiohttp does; look again later otherwise."""
        self._idle_timer = None
        transport = self.transport
        if transport is None or transport.get_protocol() is not self:
            return
        idle = self._loop.time() - self._last_active
        timeout = self._server.keepalive_timeout
        if idle >= timeout and not self._buffer:
            self._forget()
            transport.close()
        else:
            self._idle_timer = self._loop.call_later(max(timeout - idle, 0.1), self._check_idle)

    def close(self) -> None:
        """Close the connection (server shutdown): no request is in progress here, answers are written at once."""
        self._forget()
        if self.transport is not None:
            self.transport.close()

    def _forget(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._server.lanes.discard(self)


class FastLaneServer(web.Server):
    """aiohttp's low-level ``Server`` whose connections start in a :class:`FastLane` over ``answers``."""

    def __init__(self, server: web.Server, answers: Answers) -> None:
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.loop = server._loop
        self.answers = answers
        self.lanes: set[FastLane] = set()
        self.keepalive_timeout = float(self._kwargs.get("keepalive_timeout", _KEEPALIVE_TIMEOUT))
        self.tcp_keepalive = bool(self._kwargs.get("tcp_keepalive", True))

    def __call__(self) -> FastLane:  # type: ignore[override]
        return FastLane(self)

    def request_handler_for_lane(self) -> web.RequestHandler:
        """aiohttp's protocol for one connection, as ``web.Server`` makes it."""
        return super().__call__()

    def pre_shutdown(self) -> None:
        for lane in list(self.lanes):
            lane.close()
        super().pre_shutdown()


class FastLaneRunner(web.AppRunner):
    """An ``AppRunner`` whose server answers ready look-ups in the fast lane (``answers``, from the application)."""

    __slots__ = ("_answers",)

    def __init__(self, app: web.Application, answers: Answers, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._answers = answers

    async def _make_server(self) -> web.Server:
        return FastLaneServer(await super()._make_server(), self._answers)


_fixed_heads: dict[tuple[str, int, int], bytes] = {}
_FIXED_HEADERS = {id(headers): headers for headers in (JSON_HEADERS, RECORD_HEADERS, GZIP_RECORD_HEADERS)}
"""The hot paths' constant header sets: their status lines and fields are encoded once, not per answer."""
_tails: dict[tuple[str, bool], bytes] = {}
_tails_date = ""


def _head(version: str, status: int, headers: Mapping[str, str]) -> bytes:
    """The status line and the handler's own fields, as aiohttp serialises them (``_serialize_headers``)."""
    fixed = id(headers) in _FIXED_HEADERS
    if fixed:
        known = _fixed_heads.get((version, status, id(headers)))
        if known is not None:
            return known
    lines = [f"HTTP/{version} {status} {_REASONS[status]}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    encoded = "".join(lines).encode()
    if fixed:
        _fixed_heads[(version, status, id(headers))] = encoded
    return encoded


def _tail(version: str, keep_alive: bool) -> bytes:
    """The fields aiohttp adds after ``Content-Length`` (``StreamResponse._prepare_headers``), and the blank line;
    made once per second, as aiohttp's ``Date``."""
    global _tails_date
    date = rfc822_formatted_time()
    if date != _tails_date:
        _tails.clear()
        _tails_date = date
    known = _tails.get((version, keep_alive))
    if known is None:
        connection = ""
        if keep_alive and version == "1.0":
            connection = "Connection: keep-alive\r\n"
        elif not keep_alive and version == "1.1":
            connection = "Connection: close\r\n"
        known = f"Date: {date}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}\r\n".encode()
        _tails[(version, keep_alive)] = known
    return known


def _bare_line_ends(partial: bytes) -> bool:
    """Whether an unfinished head has a LF or CR that is not part of a CRLF (a trailing CR may be one yet)."""
    pairs = partial.count(b"\r\n")
    return partial.count(b"\n") != pairs or partial.count(b"\r") - partial.endswith(b"\r") != pairs
