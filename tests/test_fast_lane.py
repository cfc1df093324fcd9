"""The fast lane (resolver/fastlane.py) against aiohttp's own answers, over raw sockets (issue 14 item 2).

Two nodes over one database, one with the lane and one without, are sent the same bytes; what comes back must be
the same bytes, ``Date`` and ``Expires`` aside (the two answers may straddle a second). Both in this process (on
asyncio's loop) and as ``idnode serve`` processes (on uvloop). The rest of the read-path suite runs through both
paths too: CI runs the whole suite once with ``IDNODE_FAST_LANE=0`` (.ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import version

import aiohttp
import httptools
import pytest
from aiohttp import web

from resolver.fastlane import MAX_HEAD_BYTES, FastLane, FastLaneServer
from tests.support import home, put_record, spawn_node, start_node

HOME = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/products/P-1"}}]
BIG = [
    *HOME,
    *(
        {"index": 2000 + n, "type": f"attribute{n}", "data": {"format": "string", "value": f"离心泵 pump {n}"}}
        for n in range(8)
    ),
]
SHORT = [{"index": 100, "type": "EMAIL", "data": {"format": "string", "value": "a@b.example"}}]
_CLOCK = re.compile(rb"\r\n(Date|Expires): [^\r]*")


@dataclass
class Pair:
    """The same database served with the lane (``fast``) and without it (``normal``); the runners when in this
    process."""

    fast: str
    normal: str
    fast_runner: web.AppRunner | None = None

    async def both(self, data: bytes | list[bytes], *, delay: float = 0.0) -> tuple[bytes, bytes]:
        """What each node sends back for ``data`` (chunks written ``delay`` apart), until it closes."""
        chunks = [data] if isinstance(data, bytes) else data
        return await exchange(self.fast, chunks, delay), await exchange(self.normal, chunks, delay)

    async def same(self, data: bytes | list[bytes], *, delay: float = 0.0) -> bytes:
        """Both nodes' answers, asserted equal but for ``Date`` and ``Expires``; the fast one's."""
        fast, normal = await self.both(data, delay=delay)
        assert _CLOCK.sub(rb"\r\n\1: -", fast) == _CLOCK.sub(rb"\r\n\1: -", normal)
        return fast


async def exchange(url: str, chunks: list[bytes], delay: float) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        received = b""
        while chunk := await _read(reader):
            received += chunk
        return received
    finally:
        writer.close()


async def _read(reader: asyncio.StreamReader) -> bytes:
    """The next bytes, or none at the end of the stream or after a second of silence (CONNECT keeps it open)."""
    try:
        return await asyncio.wait_for(reader.read(65536), 1.0)
    except TimeoutError:
        return b""


def request(path: str, *lines: str, method: str = "GET", version: str = "1.1") -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *lines, "", ""]).encode()


def closing(path: str, *lines: str, method: str = "GET") -> bytes:
    return request(path, *lines, "Connection: close", method=method)


async def _cache_on(urls: tuple[str, ...]) -> None:
    """Cache both records and remember an absence on each node."""
    async with aiohttp.ClientSession() as http:
        for url in urls:
            for path in ("/api/handles/88.TEST/BIG", "/api/handles/88.TEST/SHORT", "/api/handles/88.TEST/NONE"):
                async with http.get(url + path) as response:
                    await response.read()


async def _records(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/BIG", BIG)
    await put_record(database, "88.TEST/SHORT", SHORT)
    await put_record(database, "88.TEST/MISS", SHORT)


@contextlib.asynccontextmanager
async def _in_process(database: str) -> AsyncIterator[Pair]:
    await _records(database)
    fast_runner, fast, _ = await start_node(database, fast_lane=True)
    normal_runner, normal, _ = await start_node(database, fast_lane=False)
    try:
        await _cache_on((fast, normal))
        yield Pair(fast, normal, fast_runner)
    finally:
        await fast_runner.cleanup()
        await normal_runner.cleanup()


@pytest.fixture
async def local(database: str) -> AsyncIterator[Pair]:
    """Both nodes in this process, on the test's event loop (asyncio's)."""
    async with _in_process(database) as pair:
        yield pair


@pytest.fixture(params=["asyncio", "uvloop"])
async def pair(request: pytest.FixtureRequest, database: str) -> AsyncIterator[Pair]:
    """Both nodes in this process (asyncio), or as ``idnode serve`` processes (uvloop, as in production)."""
    if request.param == "asyncio":
        async with _in_process(database) as local_pair:
            yield local_pair
        return
    await _records(database)
    lane_on, lane_off = {"IDNODE_FAST_LANE": "1"}, {"IDNODE_FAST_LANE": "0"}
    with spawn_node(database, env=lane_on) as (fast, _), spawn_node(database, env=lane_off) as (normal, _):
        await _cache_on((fast, normal))
        yield Pair(fast, normal)


def lane_server(runner: web.AppRunner | None) -> FastLaneServer:
    assert runner is not None
    server = runner.server
    assert isinstance(server, FastLaneServer)
    return server


async def test_cached_answers_are_byte_for_byte_aiohttps(pair: Pair) -> None:
    cases = [
        closing("/api/handles/88.TEST/BIG"),
        closing("/api/handles/88.TEST/BIG", "Accept-Encoding: gzip, deflate"),
        closing("/api/handles/88.TEST/BIG", "accept-encoding: gzip;q=0"),
        closing("/api/handles/88.TEST/BIG", "Accept-Encoding: gzip", method="HEAD"),
        closing("/api/handles/88.TEST/BIG", method="HEAD"),
        closing("/api/handles/88.TEST/SHORT", "Accept-Encoding: gzip"),
        closing("/api/handles/88.TEST/NONE"),  # the remembered absence: 404 rc 100
        closing("/88.TEST/BIG"),  # the proxy's 302
        closing("/88.TEST/BIG", method="HEAD"),
        request("/api/handles/88.TEST/BIG", version="1.0"),
        request("/api/handles/88.TEST/BIG", "Connection: keep-alive", version="1.0")
        + request("/88.TEST/BIG", version="1.0"),
        closing("/api/handles/88.test/big"),  # another spelling: the slow path, through aiohttp
        closing("/api/handles/88.TEST/BIG", "Origin: https://example.org"),
        closing("/api/handles/88.TEST/BIG?type=URL"),
        closing("/api/handles/88.TEST/BIG", "Expect: 100-continue"),
        closing("/api/handles/88.TEST/BIG", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
        closing("/api/handles/88.TEST/BIG", "Content-Length: 0"),
        closing("/api/handles/88.TEST/BIG", "Accept: */*", "Accept: text/html"),
        closing("/api/handles/88.TEST/BIG", "Upgrade: websocket", "Connection: Upgrade"),
        closing("/api/handles/88.TEST/{BIG}"),
        closing("/api/handles/88.TEST/BIG#here"),
        b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    answers = [await pair.same(case) for case in cases]
    assert answers[0].startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\n")
    assert b"\r\nContent-Encoding: gzip\r\n" in answers[1] and b"Content-Encoding" not in answers[2]
    assert answers[3].endswith(b"\r\n\r\n") and b"\r\nContent-Length: " in answers[3]
    assert answers[6].startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert answers[7].startswith(b"HTTP/1.1 302 Found\r\n") and b"\r\nLocation: https://example.com/" in answers[7]
    assert answers[9].startswith(b"HTTP/1.0 200 OK\r\n") and b"Connection:" not in answers[9]
    assert answers[10].count(b"Connection: keep-alive") == 1 and answers[10].count(b"HTTP/1.0 ") == 2


async def test_the_lane_answers_hits_itself_and_hands_the_rest_to_aiohttp(local: Pair) -> None:
    """The equality above would hold if the lane handed everything over: here aiohttp's own connection registry
    shows which connections it was given."""
    server = lane_server(local.fast_runner)
    host, port = local.fast.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(3):
            writer.write(request("/api/handles/88.TEST/BIG") + request("/88.TEST/BIG"))
            await reader.readuntil(b"</html>")
        assert server.connections == [] and len(server.lanes) == 1
        writer.write(request("/api/site"))
        await reader.readuntil(b"}")
        assert len(server.connections) == 1 and not server.lanes
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(pair: Pair) -> None:
    post = "POST /api/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n"
    batch = (post + '{"handles":["88.TEST/BIG"]}'[:26]).encode()
    data = (
        request("/api/handles/88.TEST/BIG", "Accept-Encoding: gzip")
        + request("/88.TEST/BIG")
        + request("/api/handles/88.TEST/MISS")  # not cached yet: aiohttp from here on
        + request("/api/handles/88.TEST/BIG")
        + batch
        + closing("/api/handles/88.TEST/SHORT")
    )
    answers = await pair.same(data)
    assert re.findall(rb"HTTP/1\.1 (\d+) ", answers) == [
        b"200",
        b"302",
        b"200",
        b"200",
        b"400",  # the body was cut short of valid JSON on purpose: a precise 4xx, and the request after it
        b"200",
    ]


async def test_a_client_sending_a_byte_at_a_time_gets_the_same_answers(pair: Pair) -> None:
    data = request("/api/handles/88.TEST/BIG") + request("/88.TEST/BIG", method="HEAD") + closing("/api/site")
    answers = await pair.same([data[i : i + 1] for i in range(len(data))], delay=0.001)
    assert answers.count(b"HTTP/1.1 ") == 3


async def test_oversized_and_malformed_heads_get_aiohttps_4xx(pair: Pair) -> None:
    big = "X-Big: " + "a" * (MAX_HEAD_BYTES + 10)
    long_path = "/api/handles/88.TEST/" + "B" * (MAX_HEAD_BYTES + 10)
    for data in (
        closing("/api/handles/88.TEST/BIG", big),
        closing(long_path),
        b"GET /api/handles/88.TEST/BIG HTTP/1.1\nHost: x\n\n",
        b"GET /api/handles/88.TEST/BIG HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
        b"GET /api/handles/88.TEST/BIG HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /api/handles/88.TEST/BIG HTTP/1.1\r\nBad Header: x\r\n\r\n",
        closing("/api/handles/88.TEST/BIG", "Host: again"),
    ):
        answer = await pair.same(data)
        assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n"), answer[:80]
    # after an answered request: aiohttp answers a read holding a valid request and a refused head with the 400
    # alone, the lane answers the first before handing over (module docstring), so the two go in separate reads
    answer = await pair.same([request("/api/handles/88.TEST/BIG"), closing("/api/handles/88.TEST/BIG", big)], delay=0.1)
    assert re.findall(rb"HTTP/1\.. (\d+) ", answer) == [b"200", b"400"]


async def test_many_pipelined_answers_survive_write_flow_control(pair: Pair) -> None:
    """2,000 answers of about 1.3 KB in one write, read only once all are sent: the transport's buffer passes its
    high-water mark, the lane stops reading, and resumes as the client reads."""
    count = 2000
    data = request("/api/handles/88.TEST/BIG") * (count - 1) + closing("/api/handles/88.TEST/BIG")
    host, port = pair.fast.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(0.2)
        answers = await asyncio.wait_for(reader.read(-1), 20)
    finally:
        writer.close()
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == count
    assert answers.endswith(b"}")


async def test_a_client_that_leaves_mid_stream_does_not_disturb_the_next(pair: Pair) -> None:
    host, port = pair.fast.removeprefix("http://").split(":")
    for cut in (10, len(request("/api/handles/88.TEST/BIG")) + 5):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write((request("/api/handles/88.TEST/BIG") * 50)[:cut])
        await writer.drain()
        writer.close()
    await asyncio.sleep(0.05)
    assert (await pair.same(closing("/api/handles/88.TEST/BIG"))).startswith(b"HTTP/1.1 200 OK")
    if pair.fast_runner is not None:
        assert not lane_server(pair.fast_runner).lanes


async def test_metrics_count_the_same_through_both_paths(local: Pair) -> None:
    data = (
        request("/api/handles/88.TEST/BIG")
        + request("/api/handles/88.TEST/NONE")
        + request("/88.TEST/BIG")
        + closing("/api/handles/88.TEST/SHORT", method="HEAD")
    )
    await local.same(data)
    async with aiohttp.ClientSession() as http:
        scraped = []
        for url in (local.fast, local.normal):
            async with http.get(url + "/metrics") as response:
                scraped.append(_counted(await response.text()))
    assert scraped[0] == scraped[1]
    assert any("idnode_lookups_total" in line and 'outcome="hit"' in line for line in scraped[0])


def _counted(text: str) -> list[str]:
    """The lines of a scrape that count requests (not times, which differ)."""
    wanted = ("idnode_lookups_total", "idnode_http_responses_total", "idnode_lookup_duration_seconds_count")
    return sorted(line for line in text.splitlines() if line.startswith(wanted))


def test_the_private_aiohttp_and_httptools_interfaces_the_lane_uses_are_still_there() -> None:
    """Fails loudly when an aiohttp or httptools release changes what resolver/fastlane.py relies on; the byte
    equality tests above check the header order of ``StreamResponse._prepare_headers``."""
    major, minor = (int(part) for part in version("aiohttp").split(".")[:2])
    assert (major, minor) == (3, 14), "check resolver/fastlane.py against this aiohttp, then the pin in pyproject.toml"
    parameters = inspect.signature(web.Server.__init__).parameters
    assert {"handler", "request_factory", "handler_cancellation", "loop", "kwargs"} <= set(parameters)
    server = web.Server(lambda request: None, loop=asyncio.new_event_loop(), keepalive_timeout=5)  # type: ignore
    try:
        assert server._kwargs == {"keepalive_timeout": 5} and server._loop is not None
        assert server.request_handler is not None and server.request_factory is not None
        assert isinstance(server(), web.RequestHandler)
    finally:
        server._loop.close()
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    assert {"keepalive_timeout", "tcp_keepalive", "max_line_size", "max_field_size"} <= set(
        inspect.signature(web.RequestHandler.__init__).parameters
    )
    assert inspect.signature(web.RequestHandler.__init__).parameters["max_line_size"].default == MAX_HEAD_BYTES
    for name in ("connection_made", "data_received", "eof_received", "connection_lost"):
        assert callable(getattr(web.RequestHandler, name))
    parser = httptools.HttpRequestParser(FastLane.__new__(FastLane))
    for name in ("feed_data", "get_method", "get_http_version", "should_keep_alive"):
        assert callable(getattr(parser, name))
    assert issubclass(httptools.HttpParserUpgrade, Exception) and issubclass(httptools.HttpParserError, Exception)
