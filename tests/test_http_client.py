"""resolver/http_client.py against real servers on 127.0.0.1 that answer in every framing HTTP/1.1 allows."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry.tls import ensure_self_signed
from resolver.http_client import Connections, HttpFailure
from tests.support import self_signed_context

Answer = Callable[[bytes], bytes | None]
"""What the server sends for a request head (None: close the connection without answering)."""


@contextlib.asynccontextmanager
async def server(
    answer: Answer, *, close_after: bool = False, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers each request on a connection with ``answer(head)``; yields its base URL and a list
    with one entry per connection it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
                )
                await reader.readexactly(length)
                out = answer(head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", accepted
    finally:
        listening.close()
        await listening.wait_closed()


def fixed(response: bytes) -> Answer:
    return lambda _head: response


async def test_content_length_answers_reuse_one_connection() -> None:
    async with server(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")) as (url, accepted):
        client = Connections(ssl_context=None, max_bytes=1000)
        for _ in range(3):
            assert await client.request(url, "GET", "/a", {}) == (200, b"hello")
        assert len(accepted) == 1
        await client.close()


async def test_chunked_answers_with_extensions_and_trailers() -> None:
    body = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nhand\r\n3\r\nle!\r\n0\r\nT: 1\r\n\r\n"
    async with server(fixed(body)) as (url, accepted):
        client = Connections(ssl_context=None, max_bytes=1000)
        assert await client.request(url, "POST", "/b", {"X": "1"}, b"{}") == (404, b"handle!")
        assert await client.request(url, "GET", "/b", {}) == (404, b"handle!")
        assert len(accepted) == 1
        await client.close()


async def test_an_answer_without_length_is_read_to_the_end_and_the_connection_not_reused() -> None:
    async with server(fixed(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), close_after=True) as (url, accepted):
        client = Connections(ssl_context=None, max_bytes=1000)
        assert await client.request(url, "GET", "/c", {}) == (200, b"until close")
        assert await client.request(url, "GET", "/c", {}) == (200, b"until close")
        assert len(accepted) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_connection_close_and_http_1_0_are_not_reused(answer: bytes) -> None:
    async with server(fixed(answer), close_after=True) as (url, accepted):
        client = Connections(ssl_context=None, max_bytes=1000)
        for _ in range(2):
            assert await client.request(url, "GET", "/d", {}) == (200, b"ok")
        assert len(accepted) == 2


async def test_a_pooled_connection_the_server_closed_is_replaced_without_failing_the_request() -> None:
    answers = iter(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", None, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"]
    )
    async with server(lambda _head: next(answers)) as (url, accepted):
        client = Connections(ssl_context=None, max_bytes=1000)
        assert await client.request(url, "GET", "/e", {}) == (200, b"1")
        assert await client.request(url, "GET", "/e", {}) == (200, b"2")  # the first connection said nothing
        assert len(accepted) == 2
        await client.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ],
)
async def test_too_large_or_malformed_answers_fail_as_os_errors(answer: bytes) -> None:
    async with server(fixed(answer), close_after=True) as (url, _):
        client = Connections(ssl_context=None, max_bytes=1000)
        with pytest.raises(HttpFailure):
            await client.request(url, "GET", "/f", {})


async def test_a_refused_connection_is_an_os_error() -> None:
    async with server(fixed(b"")) as (url, _):
        pass  # closed again: nothing listens there now
    with pytest.raises(OSError):
        await Connections(ssl_context=None, max_bytes=1000).request(url, "GET", "/g", {})


async def test_the_request_is_sent_as_given() -> None:
    seen: list[bytes] = []

    def record(head: bytes) -> bytes:
        seen.append(head)
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    async with server(record) as (url, _):
        client = Connections(ssl_context=None, max_bytes=1000)
        assert await client.request(url, "POST", "/api/resolve?x=%20", {"Idnode-Forwarded": "2"}, b"[]") == (204, b"")
        await client.close()
    port = url.rsplit(":", 1)[1]
    assert (
        seen[0]
        == (
            f"POST /api/resolve?x=%20 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nIdnode-Forwarded: 2\r\n"
            "Content-Length: 2\r\n\r\n"
        ).encode()
    )


async def test_https_with_a_trusted_self_signed_certificate(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path)
    answer = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    async with server(answer, tls=self_signed_context(tmp_path)) as (url, accepted):
        trusting = Connections(ssl_context=ssl.create_default_context(cafile=str(cert)), max_bytes=1000)
        assert await trusting.request(url, "GET", "/h", {}) == (200, b"ok")
        assert await trusting.request(url, "GET", "/h", {}) == (200, b"ok")
        assert len(accepted) == 1
        await trusting.close()
        with pytest.raises(ssl.SSLError):  # the system's CAs do not know it
            await Connections(ssl_context=None, max_bytes=1000).request(url, "GET", "/h", {})


async def test_a_burst_opens_at_most_the_per_server_bound_of_connections() -> None:
    in_flight = peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.02)
                in_flight -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    listening = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    client = Connections(ssl_context=None, max_bytes=1000)
    answers = await asyncio.gather(*(client.request(url, "GET", "/i", {}) for _ in range(200)))
    assert set(answers) == {(200, b"ok")}
    assert 1 < peak <= 64
    await client.close()
    listening.close()
    await listening.wait_closed()
