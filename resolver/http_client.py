"""A small HTTP/1.1 client for the forwarder's requests: keep-alive connections per server, nothing else.

Why not aiohttp's client: a forwarded miss is one small JSON request and answer, and ``ClientSession.request``
spent about half of the asking node's CPU on it (py-spy, issue 9), on machinery the forwarder never uses
(cookies, redirects, tracing, proxies, multipart, compression). Here a request is one ``write`` of ready bytes
and a parse of the status line, a few headers and a ``Content-Length`` or chunked body, on a connection kept
open for the next request: about a fifth of the cost, measured side by side.

What it supports, which is what the Handle REST API needs: GET and POST with a body; answers with
``Content-Length``, ``Transfer-Encoding: chunked`` (Handle.Net 9 chunks some answers, transcript F6) or neither
(read to the end, then the connection is not reused); ``Connection: close``; HTTPS with a given SSL context.
A connection that was idle in the pool may have been closed by the server meanwhile: a request that finds it so
before any answer byte is sent again once on a fresh connection (both of the forwarder's requests are
idempotent). Every failure is an ``OSError`` (``HttpFailure``), a timeout a ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["Connections", "HttpFailure"]

_MAX_HEAD = 64 * 1024
_IDLE_PER_SERVER = 32
_OPEN_PER_SERVER = 64
"""Requests in flight to one server at a time (others wait their turn): a burst of misses must not open a
connection each, on either side."""


class HttpFailure(OSError):
    """The server's answer was not HTTP/1.x we can read, or it was too large."""


class _Server:
    __slots__ = ("authority", "host", "idle", "port", "tls", "turns")

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.encode("idna")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.turns = asyncio.Semaphore(_OPEN_PER_SERVER)


class Connections:
    """Keep-alive connections to the servers asked, at most ``_IDLE_PER_SERVER`` idle ones each."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None, max_bytes: int) -> None:
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._max_bytes = max_bytes
        self._servers: dict[str, _Server] = {}

    async def close(self) -> None:
        for server in self._servers.values():
            for _, writer in server.idle:
                writer.close()
            server.idle.clear()

    async def request(
        self, base: str, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)`` of ``method target`` at server ``base`` (``scheme://host:port``); ``target`` is
        the path and query, already percent-encoded."""
        server = self._servers.get(base)
        if server is None:
            server = self._servers[base] = _Server(base)
        async with server.turns:
            return await self._request(server, _message(server, method, target, headers, body))

    async def _request(self, server: _Server, message: bytes) -> tuple[int, bytes]:
        while server.idle:
            reader, writer = server.idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                return await self._exchange(server, reader, writer, message)
            except _Stale:
                continue  # closed by the server while idle: try the next, then a new connection
        reader, writer = await self._open(server)
        try:
            return await self._exchange(server, reader, writer, message)
        except _Stale as exc:
            raise HttpFailure(f"{server.host}:{server.port} closed the connection without answering") from exc.__cause__

    async def _open(self, server: _Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if server.tls:
            return await asyncio.open_connection(
                server.host, server.port, ssl=self._ssl, server_hostname=server.host, limit=_MAX_HEAD
            )
        return await asyncio.open_connection(server.host, server.port, limit=_MAX_HEAD)

    async def _exchange(
        self, server: _Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> tuple[int, bytes]:
        reusable = False
        try:
            try:
                writer.write(message)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Stale() from exc
                raise
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise _Stale() from exc
            status, length, chunked, keep_alive = _parse_head(head)
            if chunked:
                payload = await self._chunked(reader)
            elif length is not None:
                if length > self._max_bytes:
                    raise HttpFailure(f"answer of {length} bytes is over the limit of {self._max_bytes}")
                payload = await reader.readexactly(length)
            else:
                payload = await self._to_the_end(reader)
                keep_alive = False
            reusable = keep_alive
            return status, payload
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise HttpFailure(f"unreadable HTTP answer: {type(exc).__name__}") from exc
        finally:
            if reusable and len(server.idle) < _IDLE_PER_SERVER:
                server.idle.append((reader, writer))
            else:
                writer.close()

    async def _to_the_end(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while chunk := await reader.read(65536):
            total += len(chunk)
            if total > self._max_bytes:
                raise HttpFailure(f"answer over the limit of {self._max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return b"".join(parts)
            total += size
            if total > self._max_bytes:
                raise HttpFailure(f"answer over the limit of {self._max_bytes} bytes")
            chunk = await reader.readexactly(size + 2)
            if chunk[-2:] != b"\r\n":
                raise HttpFailure("malformed chunk")
            parts.append(chunk[:-2])


class _Stale(Exception):
    """A pooled connection the server had closed: nothing was answered, so the request may be sent again."""


def _message(server: _Server, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("ascii"), b"Host: " + server.authority]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """``(status, content length or None, chunked, keep-alive)`` of a response head; ValueError if malformed."""
    status_line, *header_lines = head[:-4].split(b"\r\n")
    version, code, *_ = status_line.split(b" ", 2)
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not HTTP/1.x")
    status = int(code)
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
            if length < 0:
                raise ValueError("negative Content-Length")
        elif name == b"transfer-encoding":
            chunked = value.strip().lower().endswith(b"chunked")
        elif name == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, length, chunked, keep_alive
