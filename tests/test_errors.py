"""resolver/errors.py and the error paths of the HTTP layer: every failure is a Handle-style JSON answer.

Request bodies too large (413) or too slow (408), the driver misused (500 rc 2, never "database unavailable"),
and the headers an error carries come from the error itself (``HandleError.headers()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from resolver.app import STORE
from resolver.config import RegistrySettings, Settings
from resolver.errors import DatabaseUnavailable, HandleNotFound, MethodNotAllowed, ProtocolError, TooManyFailures
from resolver.store import unavailable
from tests.support import SECURE, Node, enterprises_and_operator, put_record, running_node, secure_basic

LIMIT = 2048


@dataclass
class Site:
    node: Node
    owner: dict[str, str]
    operator: dict[str, str]


@pytest.fixture
async def small_bodies(database: str) -> AsyncIterator[Site]:
    """A node accepting bodies of at most ``LIMIT`` bytes, with enterprise ``88.A`` and a node operator."""
    people = await enterprises_and_operator(database)
    settings = Settings(max_body_bytes=LIMIT, registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        yield Site(
            node,
            secure_basic(people["A"].identity, people["A"].secret),
            secure_basic(people["operator"].identity, people["operator"].secret),
        )


def _json_endpoints(site: Site) -> list[tuple[str, str, dict[str, str]]]:
    """Every endpoint that reads a JSON body, with what it needs to get as far as reading it."""
    return [
        ("POST", "/api/resolve", {}),
        ("POST", "/api/handles/88.A/x", {}),
        ("PUT", "/api/handles/88.A/x", site.owner),
        ("POST", "/api/handles:batch", site.owner),
        ("PUT", "/api/templates/88.A/v1", site.owner),
        ("POST", "/api/prefixes/88.C", site.operator),
        ("POST", "/api/sessions", SECURE),
    ]


_TOO_BIG = b'{"handles": ["' + b"x" * (2 * LIMIT) + b'"]}'


async def test_a_body_over_max_body_bytes_is_413_naming_the_limit_on_every_json_endpoint(small_bodies: Site) -> None:
    for method, path, headers in _json_endpoints(small_bodies):
        status, body, response = await small_bodies.node.call(
            method, path, data=_TOO_BIG, headers={**headers, "Content-Type": "application/json"}
        )
        assert (status, response.content_type) == (413, "application/json"), (method, path, status, body)
        assert body["responseCode"] == 4 and str(LIMIT) in body["message"], (method, path, body)


async def test_a_chunked_body_over_max_body_bytes_is_413_too(small_bodies: Site) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(_TOO_BIG), 512):
            yield _TOO_BIG[start : start + 512]

    for method, path, headers in _json_endpoints(small_bodies):
        status, body, _ = await small_bodies.node.call(
            method, path, data=chunks(), headers={**headers, "Content-Type": "application/json"}
        )
        assert (status, body["responseCode"]) == (413, 4), (method, path, status, body)


async def test_a_realistic_batch_of_2000_records_fits_the_default_body_limit(database: str) -> None:
    owner = (await enterprises_and_operator(database))["A"]
    items = [
        {
            "op": "create",
            "handle": f"88.A/PUMP-2026-{n:06d}",
            "values": [
                {"index": 1, "type": "URL", "data": f"https://products.example.com/pumps/PUMP-2026-{n:06d}"},
                {"index": 2000, "type": "88.A/SERIAL", "data": f"SN-{n:012d}"},
                {"index": 2001, "type": "88.A/MODEL", "data": "Centrifugal pump CP-40, 4 kW, stainless steel"},
            ],
        }
        for n in range(2000)
    ]
    body = orjson.dumps({"items": items})
    assert len(body) > 256 * 1024  # the old default limit
    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        headers = {**secure_basic(owner.identity, owner.secret), "Content-Type": "application/json"}
        status, answer, _ = await node.call("POST", "/api/handles:batch", data=body, headers=headers)
    assert status == 200, answer
    assert {r["responseCode"] for r in answer["results"]} == {1}


async def test_a_body_sent_too_slowly_is_answered_408_and_the_connection_closed(database: str) -> None:
    async with running_node(database, Settings(body_timeout=0.5)) as node:
        host, port = node.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"handles"'
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=2)  # until the node closes the connection
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert orjson.loads(body)["responseCode"] == 4


async def test_a_misused_driver_is_a_logged_500_not_database_unavailable(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/x", [{"index": 1, "type": "URL", "data": "https://example.org/"}])
    await node.app[STORE].pool.close()  # a bug: the pool used after it was closed (asyncpg.InterfaceError)
    status, body, _ = await node.get("/api/handles/88.TEST/x")
    assert (status, body["responseCode"]) == (500, 2)
    assert "request id" in body["message"]


def test_unavailable_tells_outages_from_bugs() -> None:
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    rollback_after_loss = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the connection is closed")
    rollback_after_loss.__context__ = lost
    for outage in (
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        lost,
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        rollback_after_loss,
    ):
        assert unavailable(outage), outage
    for bug in (asyncpg.InterfaceError("pool is closed"), asyncpg.UniqueViolationError("duplicate"), KeyError("x")):
        assert not unavailable(bug), bug


def test_errors_carry_their_own_headers() -> None:
    assert MethodNotAllowed("TRACE", "/api/x", allow=("GET", "HEAD")).headers() == {"Allow": "GET, HEAD"}
    assert TooManyFailures(12.4).headers() == {"Retry-After": "12"}
    assert int(DatabaseUnavailable().headers()["Retry-After"]) > 0
    assert HandleNotFound().headers() == {}


def test_an_error_names_the_requested_handle_unless_it_is_a_protocol_error() -> None:
    named: Any = HandleNotFound().about("88.TEST/x")
    assert named.body() == {"responseCode": 100, "message": "Handle not found", "handle": "88.TEST/x"}
    assert HandleNotFound(handle="88.TEST/first").about("88.TEST/x").handle == "88.TEST/first"
    assert ProtocolError("Malformed JSON body").about("88.TEST/x").handle is None


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/88.TEST/x", "GET, HEAD"),
        ("TRACE", "/88.TEST/x", "GET, HEAD"),
        ("PATCH", "/", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("GET", "/api/resolve", "POST"),
        ("TRACE", "/api/handles/88.TEST/x", "GET, HEAD, POST, PUT, DELETE, OPTIONS"),
        ("POST", "/api/templates/88.TEST/v1", "DELETE, GET, HEAD, PUT"),
        ("TRACE", "/api/sessions/this", "GET, PUT, POST, DELETE"),
    ],
)
async def test_a_method_the_path_does_not_have_is_a_json_405_with_allow(
    node: Node, method: str, path: str, allow: str
) -> None:
    status, body, response = await node.call(method, path)
    assert (status, response.content_type, response.headers["Allow"]) == (405, "application/json", allow)
    assert body == {"responseCode": 4, "message": f"Unknown HTTP API endpoint {method} {path}"}
