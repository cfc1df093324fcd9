"""A TCP proxy between a node and PostgreSQL that can freeze, crash, or play a server that is starting up.

Fault tests and ``benchmarks/outage.py`` put it in front of a real PostgreSQL, as asyncpg's own test suite does
(``asyncpg/_testbase/fuzzer.py``), and cause the outages a review found answered with 500s or hung requests:

- ``freeze()``: connections stay open, nothing more is forwarded in either direction (a stopped or overloaded
  server: SIGSTOP, a saturated disk, a network partition without resets); ``thaw()`` resumes.
- ``crash()``: every connection is cut and new ones are refused (the server process died); ``restore()`` listens
  again on the same port.
- ``starting_up()``: every connection is cut, and new ones are answered the way PostgreSQL answers while it
  recovers: ``FATAL 57P03 the database system is starting up``; ``restore()`` ends it.

Example::

    proxy = PgProxy("postgresql://postgres@127.0.0.1:5432/idnode")  # or a unix-socket DSN (?host=/dir)
    await proxy.start()
    dsn = proxy.dsn  # the same database, through the proxy
    proxy.freeze(); ...; proxy.thaw()
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["PgProxy"]

_CHUNK = 65536
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _error_response(sqlstate: str, message: str) -> bytes:
    """A PostgreSQL ``ErrorResponse`` message (protocol v3), FATAL severity."""
    fields = b"".join(
        code + text.encode() + b"\0"
        for code, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


class PgProxy:
    """Forwards ``127.0.0.1:<port>`` to the server of ``upstream`` (a DSN); see the module docstring for the faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._starting_up = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen (on a free port the first time, on the same port after ``restore``); returns the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def dsn(self) -> str:
        """``upstream`` with its host and port replaced by the proxy's."""
        parts = urlsplit(self.upstream)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the upstream server: TCP, or its unix socket when the DSN names a directory."""
        parts = urlsplit(self.upstream)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "127.0.0.1"
        port = int(query.get("port") or parts.port or 5432)
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def crash(self) -> None:
        """Cut every connection and stop listening: new connections are refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._cut()

    def starting_up(self) -> None:
        """Cut every connection; new ones get ``57P03 the database system is starting up``."""
        self._starting_up = True
        self._cut()

    async def restore(self) -> None:
        """Back to normal: listening, forwarding, no fault."""
        self._starting_up = False
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self._starting_up:
                await self._refuse_starting_up(reader, writer)
                return
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(source, sink, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *ends: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in ends:
                end.transport.abort()
                self._writers.discard(end)

    @staticmethod
    async def _refuse_starting_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the start-up packet (after declining TLS when asked), answer 57P03, close: PostgreSQL's answer
        to a client while it recovers."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            first = await reader.readexactly(8)
            if first == _SSL_REQUEST:
                writer.write(b"N")
                first = await reader.readexactly(4)
            length = struct.unpack("!i", first[:4])[0]
            await reader.readexactly(length - len(first))
            writer.write(_error_response("57P03", "the database system is starting up"))
            await writer.drain()
        writer.close()
