"""The real pyhandle 1.5.0 client against a live node over HTTPS: the 19 compatibility cases of
research/handle-rest-api.md §8, with the expectations observed against Handle.Net 9 (transcripts §H).

The node runs in-process with a self-signed certificate (pyhandle is told ``HTTPS_verify=False``); enterprise
``88.TEST`` is onboarded and its identity ``300:88.TEST/ADMIN`` with its secret is pyhandle's user. pyhandle is
synchronous (requests), so its calls run in a thread while the node serves on the test's event loop. Every
response the node prepares is logged (method, path and query, whether it carried credentials, status), which is
how "no PUT was sent" and "the server answered 201" are checked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from aiohttp import web
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import (
    GenericHandleError,
    HandleAlreadyExistsException,
    HandleAuthenticationError,
    HandleNotFoundException,
    IllegalOperationException,
)

from registry.app import extensions as registry_extensions
from resolver.app import create_app
from resolver.config import Settings
from tests.support import basic, free_port, onboard_enterprise, self_signed_context

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

P = "88.TEST"
U = "300:88.TEST/ADMIN"
TC1 = P + "/TC-1"
T = TypeVar("T")


@dataclass(frozen=True)
class Seen:
    """One response the node sent."""

    method: str
    target: str
    authorized: bool
    status: int


@dataclass
class Compat:
    base: str
    secret: str
    log: list[Seen] = field(default_factory=list)
    client: RESTHandleClient | None = None

    def seen(self, method: str) -> list[Seen]:
        return [entry for entry in self.log if entry.method == method]

    @property
    def c(self) -> RESTHandleClient:
        assert self.client is not None
        return self.client


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking pyhandle/requests call off the event loop the node serves on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _connect(base: str, username: str, password: str) -> RESTHandleClient:
    return RESTHandleClient.instantiate_with_username_and_password(base, username, password, HTTPS_verify=False)


@pytest.fixture
async def site(database: str, tmp_path: Path) -> AsyncIterator[Compat]:
    credentials = await onboard_enterprise(database, P)
    app = await create_app(Settings(), database, extensions=registry_extensions())
    port = free_port()
    compat = Compat(f"https://127.0.0.1:{port}", credentials.secret)

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen = Seen(request.method, request.path_qs, "Authorization" in request.headers, response.status)
        compat.log.append(seen)

    app.on_response_prepare.append(record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=self_signed_context(tmp_path)).start()
    try:
        assert credentials.identity == U
        compat.client = await call(_connect, compat.base, U, credentials.secret)
        yield compat
    finally:
        await runner.cleanup()


@pytest.fixture
async def tc1(site: Compat) -> Compat:
    """TC-1 registered by pyhandle (URL https://e.com/2, pyhandle's HS_ADMIN), and a clean request log."""
    assert await call(site.c.register_handle, TC1, "https://e.com/2") == TC1
    site.log.clear()
    return site


# 1 ----------------------------------------------------------------------------------------------------------


async def test_01_construct_reads_the_username_handle_once_without_credentials(site: Compat) -> None:
    site.log.clear()
    await call(_connect, site.base, U, site.secret)
    assert site.log == [Seen("GET", "/api/handles/88.TEST/ADMIN", False, 200)]


# 2 ----------------------------------------------------------------------------------------------------------


async def test_02_an_unknown_identity_handle_raises_handle_not_found(site: Compat) -> None:
    with pytest.raises(HandleNotFoundException):
        await call(_connect, site.base, "300:88.TEST/NOUSER", "x")


# 3, 4, 5 ----------------------------------------------------------------------------------------------------


async def test_03_register_puts_with_overwrite_false_and_the_node_answers_201(site: Compat) -> None:
    site.log.clear()
    assert await call(site.c.register_handle, TC1, "https://e.com/1", checksum="abc") == TC1
    assert site.seen("PUT") == [Seen("PUT", "/api/handles/88.TEST/TC-1?overwrite=false", True, 201)]
    assert site.seen("GET") == [Seen("GET", "/api/handles/88.TEST/TC-1", False, 404)]


async def test_04_registering_an_existing_handle_raises_already_exists_and_sends_no_put(tc1: Compat) -> None:
    with pytest.raises(HandleAlreadyExistsException):
        await call(tc1.c.register_handle, TC1, "https://e.com/1", checksum="abc")
    assert tc1.seen("PUT") == []


async def test_05_overwrite_replaces_the_whole_record_with_200(site: Compat) -> None:
    await call(site.c.register_handle, TC1, "https://e.com/1", checksum="abc")
    site.log.clear()
    assert await call(site.c.register_handle, TC1, "https://e.com/2", overwrite=True) == TC1
    assert site.seen("PUT") == [Seen("PUT", "/api/handles/88.TEST/TC-1?overwrite=true", True, 200)]
    assert await call(site.c.get_value_from_handle, TC1, "CHECKSUM") is None
    assert await call(site.c.get_value_from_handle, TC1, "URL") == "https://e.com/2"


# 6, 7, 8 ----------------------------------------------------------------------------------------------------


async def test_06_the_record_has_handle_net_shape_and_an_int_hs_admin_index(tc1: Compat) -> None:
    record = await call(tc1.c.retrieve_handle_record_json, TC1)
    assert record["responseCode"] == 1
    assert record["handle"] == TC1
    for value in record["values"]:
        assert {"index", "type", "data", "ttl", "timestamp"} <= set(value), value
        assert {"format", "value"} == set(value["data"]), value
    admin = next(v for v in record["values"] if v["type"] == "HS_ADMIN")
    assert admin["data"]["value"] == {"handle": "0.NA/88.TEST", "index": 200, "permissions": "011111110011"}
    assert isinstance(admin["data"]["value"]["index"], int)


async def test_07_reads_of_values_and_of_missing_handles(tc1: Compat) -> None:
    assert await call(tc1.c.get_value_from_handle, TC1, "URL") == "https://e.com/2"
    assert await call(tc1.c.get_value_from_handle, TC1, "NOPE") is None
    assert await call(tc1.c.retrieve_handle_record_json, P + "/NOPE") is None
    with pytest.raises(HandleNotFoundException):
        await call(tc1.c.get_value_from_handle, P + "/NOPE", "URL")


async def test_08_reads_are_case_insensitive_and_echo_the_requested_spelling(tc1: Compat) -> None:
    assert await call(tc1.c.get_value_from_handle, "88.test/tc-1", "URL") == "https://e.com/2"
    record = await call(tc1.c.retrieve_handle_record_json, "88.test/tc-1")
    assert record["handle"] == "88.test/tc-1"


# 9, 10, 11, 12 ----------------------------------------------------------------------------------------------


async def test_09_modify_changes_one_value_and_keeps_the_others_with_their_timestamps(tc1: Compat) -> None:
    before = await call(tc1.c.retrieve_handle_record_json, TC1)
    assert await call(tc1.c.modify_handle_value, TC1, URL="https://e.com/3") == TC1
    assert await call(tc1.c.get_value_from_handle, TC1, "URL") == "https://e.com/3"
    after = await call(tc1.c.retrieve_handle_record_json, TC1)
    assert [v["index"] for v in after["values"]] == [v["index"] for v in before["values"]]
    assert all(v["timestamp"] for v in after["values"])
    admin_before = next(v for v in before["values"] if v["type"] == "HS_ADMIN")
    admin_after = next(v for v in after["values"] if v["type"] == "HS_ADMIN")
    assert admin_after == admin_before
    assert [(e.method, e.status) for e in tc1.log if e.method == "PUT"] == [("PUT", 200)]


async def test_10_adding_through_modify_takes_index_2(tc1: Compat) -> None:
    assert await call(tc1.c.modify_handle_value, TC1, COLOR="red") == TC1
    record = await call(tc1.c.retrieve_handle_record_json, TC1)
    color = [v for v in record["values"] if v["type"] == "COLOR"]
    assert [(v["index"], v["data"]["value"]) for v in color] == [(2, "red")]
    assert tc1.seen("PUT") == [Seen("PUT", "/api/handles/88.TEST/TC-1?index=2&overwrite=true", True, 201)]


async def test_11_adding_an_existing_type_is_a_409_rc_201_and_a_new_one_is_201(tc1: Compat) -> None:
    with pytest.raises(GenericHandleError) as raised:
        await call(tc1.c.add_handle_value, TC1, URL="x")
    assert raised.value.response.status_code == 409
    assert raised.value.response.json()["responseCode"] == 201
    assert await call(tc1.c.get_value_from_handle, TC1, "URL") == "https://e.com/2"
    tc1.log.clear()
    assert await call(tc1.c.add_handle_value, TC1, SIZE="L") == TC1
    assert [e.status for e in tc1.seen("PUT")] == [201]
    assert await call(tc1.c.get_value_from_handle, TC1, "SIZE") == "L"


async def test_12_modifying_hs_admin_is_refused_by_the_client_and_sends_no_put(tc1: Compat) -> None:
    with pytest.raises(IllegalOperationException):
        await call(tc1.c.modify_handle_value, TC1, HS_ADMIN="x")
    assert tc1.seen("PUT") == []


# 13, 14 -----------------------------------------------------------------------------------------------------


async def test_13_deleting_values(tc1: Compat) -> None:
    await call(tc1.c.modify_handle_value, TC1, COLOR="red")
    assert await call(tc1.c.delete_handle_value, TC1, "COLOR") == TC1
    assert await call(tc1.c.get_value_from_handle, TC1, "COLOR") is None
    tc1.log.clear()
    assert await call(tc1.c.delete_handle_value, TC1, "NOPE") is None
    assert tc1.seen("DELETE") == []
    response = await call(
        requests.delete,
        f"{tc1.base}/api/handles/{TC1}?index=999",
        headers=basic(U, tc1.secret),
        verify=False,
    )
    assert response.status_code == 400
    assert response.json()["responseCode"] == 200


async def test_14_type_and_index_filters(tc1: Compat) -> None:
    empty = await call(tc1.c.retrieve_handle_record_json, TC1, type=["NOPE"])
    assert empty == {"responseCode": 200, "handle": TC1, "values": []}
    first = await call(tc1.c.retrieve_handle_record_json, TC1, indices=[1])
    assert [v["index"] for v in first["values"]] == [1]
    url = await call(tc1.c.retrieve_handle_record_json, TC1, type=["url"])
    assert [(v["type"], v["data"]["value"]) for v in url["values"]] == [("URL", "https://e.com/2")]


# 15, 16 -----------------------------------------------------------------------------------------------------


async def test_15_delete_handle_then_it_is_gone_and_a_second_delete_is_not_found(tc1: Compat) -> None:
    assert await call(tc1.c.delete_handle, TC1) == TC1
    assert await call(tc1.c.retrieve_handle_record_json, TC1) is None
    with pytest.raises(HandleNotFoundException):
        await call(tc1.c.delete_handle, TC1)


async def test_16_a_wrong_password_fails_at_the_first_write_with_401(site: Compat) -> None:
    wrong = await call(_connect, site.base, U, "wrong")
    site.log.clear()
    with pytest.raises(HandleAuthenticationError):
        await call(wrong.register_handle, P + "/TC-2", "https://e")
    assert [(e.method, e.status) for e in site.seen("PUT")] == [("PUT", 401)]
    assert await call(site.c.retrieve_handle_record_json, P + "/TC-2") is None


# 17, 18 -----------------------------------------------------------------------------------------------------


async def _generated(site: Compat) -> str:
    handle = await call(site.c.generate_and_register_handle, P, "https://e.com/g")
    assert re.fullmatch(r"88\.TEST/[0-9a-f-]{36}", handle), handle
    return handle


async def test_17_a_generated_suffix_is_a_lowercase_uuid_that_resolves(site: Compat) -> None:
    handle = await _generated(site)
    assert await call(site.c.get_value_from_handle, handle, "URL") == "https://e.com/g"


async def test_18_search_finds_the_handle_by_exact_url_and_by_wildcard(site: Compat) -> None:
    handle = await _generated(site)
    assert await call(site.c.search_handle, URL="https://e.com/g") == [handle]
    assert handle in await call(site.c.search_handle, URL="https://e.com/*")


# 19 ---------------------------------------------------------------------------------------------------------


async def test_19_raw_protocol_checks(site: Compat) -> None:
    handle = await _generated(site)
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e.com/raw"}]}
    anonymous = await call(requests.put, f"{site.base}/api/handles/{P}/raw", json=body, verify=False)
    assert anonymous.status_code == 401
    assert anonymous.json()["responseCode"] == 402
    assert "WWW-Authenticate" in anonymous.headers

    text = await call(
        requests.put,
        f"{site.base}/api/handles/{P}/raw",
        data=b'{"values": []}',
        headers={**basic(U, site.secret), "Content-Type": "text/plain"},
        verify=False,
    )
    assert text.status_code == 400
    assert text.json()["responseCode"] == 4

    listing = await call(
        requests.get,
        f"{site.base}/api/handles?prefix={P}&page=0&pageSize=1",
        headers=basic(U, site.secret),
        verify=False,
    )
    assert listing.status_code == 200
    assert isinstance(listing.json()["totalCount"], str)
    assert len(listing.json()["handles"]) <= 1

    proxied = await call(requests.get, f"{site.base}/{handle}", allow_redirects=False, verify=False)
    assert proxied.status_code == 302
    assert proxied.headers["Location"] == "https://e.com/g"
    page = await call(requests.get, f"{site.base}/{handle}?noredirect", allow_redirects=False, verify=False)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
