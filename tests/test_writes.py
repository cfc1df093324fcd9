"""PUT and DELETE on /api/handles over real HTTP against a real database, case by case from the Handle.Net 9
transcripts (research/handle9-transcripts.md §A and §E), plus read-your-writes, concurrent creates, history and
the rule that a secret key never comes back out.

Requests go through a trusted proxy (``X-Forwarded-Proto: https`` from 127.0.0.1), which idnode counts as a
secure channel like TLS; requests without that header are plain HTTP. idnode adds a ``message`` to error bodies
and echoes the handle in more of them, so the tests check status, responseCode and the handle echo, not texts.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from registry.enterprises import Credentials
from resolver.config import RegistrySettings, Settings
from tests.support import SECURE, Node, basic, onboard_enterprise, running_node, secure_basic

TRUSTING = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
HS_ADMIN = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {"format": "admin", "value": {"handle": "88.TEST/ADMIN", "index": 300, "permissions": "011111110011"}},
}
PLAIN_VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/landing/xyz"}},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "curator@example.org"}},
    {"index": 3, "type": "88.TEST/CUSTOM", "data": {"format": "string", "value": "custom payload"}},
]
XYZ = {"values": [*PLAIN_VALUES, HS_ADMIN]}
JSON = {"Content-Type": "application/json"}
UUID_SUFFIX = re.compile(r"^88\.TEST/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Site:
    """The node and the credentials the tests use."""

    def __init__(self, node: Node, admin: Credentials, other: Credentials) -> None:
        self.node = node
        self.admin = admin
        self.other = other
        self.auth = secure_basic(admin.identity, admin.secret)

    async def put(self, path: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        given = self.auth if headers is None else headers
        return await self.node.call("PUT", "/api/handles/" + path, json=body, headers=given, **kwargs)

    async def delete(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return await self.node.call("DELETE", "/api/handles/" + path, headers=self.auth if headers is None else headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return await self.node.get("/api/handles/" + path, headers=headers or {})


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    admin = await onboard_enterprise(database, "88.TEST")
    other = await onboard_enterprise(database, "88.OTHER")
    async with running_node(database, TRUSTING) as node:
        yield Site(node, admin, other)


async def _with_xyz(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/xyz", XYZ)
    assert (status, body["responseCode"]) == (201, 1)


def _indexes(body: dict[str, Any]) -> list[int]:
    return [value["index"] for value in body["values"]]


def _without_stamps(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in value.items() if k != "timestamp"} for value in values]


# --- §A: PUT --------------------------------------------------------------------------------------------------


async def test_a1_put_of_a_new_handle_creates_it_with_201(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/xyz", XYZ)
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    status, record, _ = await site.get("88.TEST/xyz")
    assert status == 200
    assert _indexes(record) == [1, 2, 3, 100]


async def test_a2_put_of_an_existing_handle_replaces_it_with_200(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.put("88.TEST/xyz", {"values": [PLAIN_VALUES[0], HS_ADMIN]})
    assert status == 200
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    _, record, _ = await site.get("88.TEST/xyz")
    assert _indexes(record) == [1, 100]


async def test_a3_put_with_overwrite_false_on_an_existing_handle_is_409_rc_101(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.put("88.TEST/xyz?overwrite=false", XYZ)
    assert status == 409
    assert body["responseCode"] == 101
    assert body["handle"] == "88.TEST/xyz"


@pytest.mark.parametrize("headers", [SECURE, {}], ids=["secure-channel", "plain-http"])
async def test_a3_anonymous_overwrite_false_on_an_existing_handle_is_409_before_authentication(
    site: Site, headers: dict[str, str]
) -> None:
    await _with_xyz(site)
    status, body, _ = await site.put("88.TEST/xyz?overwrite=false", XYZ, headers=headers)
    assert status == 409
    assert body["responseCode"] == 101
    assert body["handle"] == "88.TEST/xyz"


async def test_a4_body_without_hs_admin_is_accepted_and_none_is_added(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/abc?overwrite=false", {"values": PLAIN_VALUES})
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/abc"}
    status, record, _ = await site.get("88.TEST/abc")
    assert status == 200
    assert _without_stamps(record["values"]) == [{**value, "ttl": 86400} for value in PLAIN_VALUES]


async def test_a5_put_without_credentials_on_a_secure_channel_is_401_rc_402_with_a_basic_challenge(
    site: Site,
) -> None:
    status, body, response = await site.put("88.TEST/noauth", XYZ, headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST/noauth"
    assert 'Basic realm="handle"' in response.headers.getall("WWW-Authenticate")
    assert (await site.get("88.TEST/noauth"))[0] == 404


async def test_a6_put_without_credentials_over_plain_http_is_403_rc_402(site: Site) -> None:
    status, body, response = await site.put("88.TEST/noauth", XYZ, headers={})
    assert status == 403
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST/noauth"
    assert "WWW-Authenticate" not in response.headers


async def test_a7_put_with_a_wrong_password_is_401(site: Site) -> None:
    status, _, response = await site.put(
        "88.TEST/wrongpw", XYZ, headers=secure_basic(site.admin.identity, "wrong-password")
    )
    assert status == 401
    assert 'Basic realm="handle"' in response.headers.getall("WWW-Authenticate")
    assert (await site.get("88.TEST/wrongpw"))[0] == 404


async def test_a8_correct_credentials_over_plain_http_are_ignored_and_the_put_is_403_rc_402(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/plainhttp", XYZ, headers=basic(site.admin.identity, site.admin.secret))
    assert status == 403
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST/plainhttp"
    assert (await site.get("88.TEST/plainhttp"))[0] == 404


@pytest.mark.parametrize("trusted", [(), ("10.0.0.0/8",)], ids=["no-trusted-proxy", "another-proxy"])
async def test_forwarded_proto_from_an_untrusted_address_does_not_make_the_channel_secure(
    database: str, trusted: tuple[str, ...]
) -> None:
    admin = await onboard_enterprise(database, "88.TEST")
    async with running_node(database, Settings(registry=RegistrySettings(trusted_proxies=trusted))) as node:
        status, body, _ = await node.call(
            "PUT", "/api/handles/88.TEST/spoofed", json=XYZ, headers=secure_basic(admin.identity, admin.secret)
        )
    assert status == 403
    assert body["responseCode"] == 402


async def test_a9_a_raw_unencoded_username_splits_at_its_first_colon_and_fails(site: Site) -> None:
    token = base64.b64encode(f"{site.admin.identity}:{site.admin.secret}".encode()).decode()
    status, _, _ = await site.put("88.TEST/rawuser", XYZ, headers={**SECURE, "Authorization": f"Basic {token}"})
    assert status == 401
    assert (await site.get("88.TEST/rawuser"))[0] == 404


async def test_a10_a_username_without_index_is_not_the_admin_and_gets_403_rc_400(site: Site) -> None:
    headers = secure_basic("88.TEST/ADMIN", site.admin.secret)
    status, body, _ = await site.put("88.TEST/noindexuser?overwrite=false", {"values": PLAIN_VALUES}, headers=headers)
    assert status == 403
    assert body["responseCode"] == 400
    assert body["handle"] == "88.TEST/noindexuser"


async def test_a11_put_with_content_type_text_plain_is_400_rc_4(site: Site) -> None:
    status, body, _ = await site.node.call(
        "PUT", "/api/handles/88.TEST/badct", data=b'{"values": []}', headers={**site.auth, "Content-Type": "text/plain"}
    )
    assert status == 400
    assert body["responseCode"] == 4


async def test_a12_put_with_malformed_json_is_400_rc_4(site: Site) -> None:
    status, body, _ = await site.node.call(
        "PUT", "/api/handles/88.TEST/badjson", data=b'{"values": [', headers={**site.auth, **JSON}
    )
    assert status == 400
    assert body["responseCode"] == 4


async def test_a13_put_whose_body_names_another_handle_is_400_rc_4(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/mismatch", {"handle": "88.TEST/other", **XYZ})
    assert status == 400
    assert body["responseCode"] == 4
    assert (await site.get("88.TEST/mismatch"))[0] == 404


async def test_a14_put_of_a_bare_array_of_values_creates_the_handle(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/arr?overwrite=false", PLAIN_VALUES)
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/arr"}
    _, record, _ = await site.get("88.TEST/arr")
    assert _indexes(record) == [1, 2, 3]


async def test_a15_put_with_a_new_index_adds_that_value_with_201(site: Site) -> None:
    await _with_xyz(site)
    desc = {"index": 4, "type": "DESC", "data": {"format": "string", "value": "added value"}}
    status, body, _ = await site.put("88.TEST/xyz?index=4", {"values": [desc]})
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    _, record, _ = await site.get("88.TEST/xyz")
    assert _indexes(record) == [1, 2, 3, 4, 100]


async def test_a16_put_with_an_existing_index_modifies_that_value_with_200(site: Site) -> None:
    await _with_xyz(site)
    url = {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/landing/xyz-v2"}}
    status, body, _ = await site.put("88.TEST/xyz?index=1", {"values": [url]})
    assert status == 200
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    _, record, _ = await site.get("88.TEST/xyz")
    assert record["values"][0]["data"]["value"] == "https://example.org/landing/xyz-v2"
    assert _indexes(record) == [1, 2, 3, 100]


async def test_a17_adding_an_existing_index_with_overwrite_false_is_409_rc_201(site: Site) -> None:
    await _with_xyz(site)
    dup = {"index": 2, "type": "DESC", "data": {"format": "string", "value": "dup"}}
    status, body, _ = await site.put("88.TEST/xyz?index=2&overwrite=false", {"values": [dup]})
    assert status == 409
    assert body["responseCode"] == 201
    assert body["handle"] == "88.TEST/xyz"
    _, record, _ = await site.get("88.TEST/xyz")
    assert record["values"][1]["type"] == "EMAIL"


async def test_a18_index_parameters_that_differ_from_the_body_are_400_rc_4(site: Site) -> None:
    await _with_xyz(site)
    six = {"index": 6, "type": "DESC", "data": {"format": "string", "value": "x"}}
    status, body, _ = await site.put("88.TEST/xyz?index=5", {"values": [six]})
    assert status == 400
    assert body["responseCode"] == 4


async def test_a19_a_value_with_index_0_is_400_rc_202(site: Site) -> None:
    zero = {"index": 0, "type": "URL", "data": {"format": "string", "value": "https://example.org/"}}
    status, body, _ = await site.put("88.TEST/idx0?overwrite=false", {"values": [zero]})
    assert status == 400
    assert body["responseCode"] == 202
    assert body["handle"] == "88.TEST/idx0"


async def test_a20_duplicate_indexes_in_one_body_are_409_rc_201(site: Site) -> None:
    values = [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "a"}},
        {"index": 1, "type": "EMAIL", "data": {"format": "string", "value": "b"}},
    ]
    status, body, _ = await site.put("88.TEST/dupidx?overwrite=false", {"values": values})
    assert status == 409
    assert body["responseCode"] == 201
    assert body["handle"] == "88.TEST/dupidx"
    assert (await site.get("88.TEST/dupidx"))[0] == 404


async def test_a21_mint_new_suffix_creates_a_lowercase_uuid_handle_that_resolves(site: Site) -> None:
    status, body, _ = await site.put("88.TEST/?mintNewSuffix=true", {"values": PLAIN_VALUES})
    assert status == 201
    assert body["responseCode"] == 1
    minted = body["handle"]
    assert UUID_SUFFIX.match(minted), minted
    status, record, _ = await site.get(minted)
    assert status == 200
    assert record["handle"] == minted
    assert record["values"][0]["data"]["value"] == "https://example.org/landing/xyz"


async def test_a22_put_under_a_prefix_not_homed_here_is_400_rc_301(site: Site) -> None:
    status, body, _ = await site.put("99.NOPE/x", XYZ)
    assert status == 400
    assert body["responseCode"] == 301
    assert body["handle"] == "99.NOPE/x"


FORMATS = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/f"}, "ttl": 3600},
    {"index": 2, "type": "PRIV", "data": {"format": "string", "value": "admin-only"}, "permissions": "1100"},
    {"index": 3, "type": "HEXDATA", "data": {"format": "hex", "value": "DEADBEEF"}},
    {"index": 4, "type": "B64DATA", "data": {"format": "base64", "value": "aGVsbG8="}},
    {"index": 5, "type": "PLAIN", "data": "plain string data"},
]
FORMATS_PUBLIC = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/f"}, "ttl": 3600},
    {"index": 3, "type": "HEXDATA", "data": {"format": "base64", "value": "3q2+7w=="}, "ttl": 86400},
    {"index": 4, "type": "B64DATA", "data": {"format": "string", "value": "hello"}, "ttl": 86400},
    {"index": 5, "type": "PLAIN", "data": {"format": "string", "value": "plain string data"}, "ttl": 86400},
]
FORMATS_PRIVATE = {
    "index": 2,
    "type": "PRIV",
    "data": {"format": "string", "value": "admin-only"},
    "permissions": "1100",
    "ttl": 86400,
}


async def test_a23_ttl_permissions_hex_and_base64_values_are_stored_and_shown_as_handle_net_shows_them(
    site: Site,
) -> None:
    status, body, _ = await site.put("88.TEST/formats?overwrite=false", {"values": FORMATS})
    assert status == 201
    assert body == {"responseCode": 1, "handle": "88.TEST/formats"}
    status, public, _ = await site.get("88.TEST/formats")
    assert status == 200
    assert _without_stamps(public["values"]) == FORMATS_PUBLIC
    status, private, _ = await site.get("88.TEST/formats?publicOnly=false", headers=site.auth)
    assert status == 200
    assert _without_stamps(private["values"]) == [FORMATS_PUBLIC[0], FORMATS_PRIVATE, *FORMATS_PUBLIC[1:]]


async def test_a23b_a_non_public_value_needs_an_authenticated_admin_to_be_read(site: Site) -> None:
    await site.put("88.TEST/formats?overwrite=false", {"values": FORMATS})
    status, body, _ = await site.get("88.TEST/formats?publicOnly=false", headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402


# --- §E: DELETE -----------------------------------------------------------------------------------------------


async def test_e1_delete_with_an_index_removes_that_value(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.delete("88.TEST/xyz?index=2")
    assert status == 200
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    _, record, _ = await site.get("88.TEST/xyz")
    assert _indexes(record) == [1, 3, 100]


async def test_e2_delete_of_an_absent_index_is_400_rc_200_and_removes_nothing(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.delete("88.TEST/xyz?index=1&index=77")
    assert status == 400
    assert body["responseCode"] == 200
    assert body["handle"] == "88.TEST/xyz"
    _, record, _ = await site.get("88.TEST/xyz")
    assert _indexes(record) == [1, 2, 3, 100]


async def test_e3_anonymous_delete_on_a_secure_channel_is_401_rc_402(site: Site) -> None:
    await _with_xyz(site)
    status, body, response = await site.delete("88.TEST/xyz", headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST/xyz"
    assert 'Basic realm="handle"' in response.headers.getall("WWW-Authenticate")
    assert (await site.get("88.TEST/xyz"))[0] == 200


async def test_e4_anonymous_delete_over_plain_http_is_403_rc_402(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.delete("88.TEST/xyz", headers={})
    assert status == 403
    assert body["responseCode"] == 402
    assert body["handle"] == "88.TEST/xyz"
    assert (await site.get("88.TEST/xyz"))[0] == 200


async def test_anonymous_delete_of_a_missing_handle_is_refused_before_it_is_looked_up(site: Site) -> None:
    status, body, _ = await site.delete("88.TEST/never", headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402


async def test_e5_delete_with_a_wrong_password_is_401(site: Site) -> None:
    await _with_xyz(site)
    status, _, _ = await site.delete("88.TEST/xyz", headers=secure_basic(site.admin.identity, "nope"))
    assert status == 401
    assert (await site.get("88.TEST/xyz"))[0] == 200


async def test_e6_to_e8_delete_removes_the_handle_then_a_second_delete_and_a_get_are_404_rc_100(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.delete("88.TEST/xyz")
    assert status == 200
    assert body == {"responseCode": 1, "handle": "88.TEST/xyz"}
    status, body, _ = await site.delete("88.TEST/xyz")
    assert status == 404
    assert body["responseCode"] == 100
    assert body["handle"] == "88.TEST/xyz"
    status, body, _ = await site.get("88.TEST/xyz")
    assert status == 404
    assert body["responseCode"] == 100
    assert body["handle"] == "88.TEST/xyz"


# --- read-your-writes and concurrency -------------------------------------------------------------------------


async def test_a_get_right_after_each_acknowledged_write_returns_what_was_written(site: Site) -> None:
    await _with_xyz(site)
    assert (await site.get("88.TEST/xyz"))[0] == 200  # cached now
    for round_ in range(5):
        target = f"https://example.org/v{round_}"
        url = {"index": 1, "type": "URL", "data": target}
        status, _, _ = await site.put("88.TEST/xyz?index=1", {"values": [url]})
        assert status == 200
        _, record, _ = await site.get("88.TEST/xyz")
        assert record["values"][0]["data"]["value"] == target
    status, _, _ = await site.put("88.TEST/xyz", {"values": [PLAIN_VALUES[1], HS_ADMIN]})
    assert status == 200
    _, record, _ = await site.get("88.TEST/xyz")
    assert _indexes(record) == [2, 100]
    await site.delete("88.TEST/xyz")
    assert (await site.get("88.TEST/xyz"))[0] == 404


async def test_two_concurrent_creates_of_one_handle_give_exactly_one_201_and_one_409(site: Site) -> None:
    first = {"values": [{"index": 1, "type": "URL", "data": "https://example.org/first"}]}
    second = {"values": [{"index": 1, "type": "URL", "data": "https://example.org/second"}]}
    outcomes = await asyncio.gather(
        site.put("88.TEST/race?overwrite=false", first), site.put("88.TEST/race?overwrite=false", second)
    )
    assert sorted(status for status, _, _ in outcomes) == [201, 409]
    loser = next(body for status, body, _ in outcomes if status == 409)
    assert loser["responseCode"] == 101
    winner = next(i for i, (status, _, _) in enumerate(outcomes) if status == 201)
    _, record, _ = await site.get("88.TEST/race")
    assert record["values"][0]["data"]["value"] == ["https://example.org/first", "https://example.org/second"][winner]


# --- history --------------------------------------------------------------------------------------------------


async def test_history_lists_create_update_and_delete_with_actor_and_values(site: Site) -> None:
    await _with_xyz(site)
    url = {"index": 1, "type": "URL", "data": "https://example.org/v2"}
    await site.put("88.TEST/xyz?index=1", {"values": [url]})
    await site.delete("88.TEST/xyz")
    status, body, _ = await site.get("88.TEST/xyz/history", headers=site.auth)
    assert status == 200
    history = body["history"]
    assert [entry["op"] for entry in history] == ["create", "update", "delete"]
    assert {entry["actor"] for entry in history} == {"300:88.TEST/ADMIN"}
    assert history[0]["values"][0]["data"]["value"] == "https://example.org/landing/xyz"
    assert history[1]["values"][0]["data"]["value"] == "https://example.org/v2"
    assert history[2]["values"] is None
    assert history[0]["version"] < history[1]["version"] < history[2]["version"]


async def test_history_is_refused_to_an_identity_that_is_not_an_admin_of_the_handle(site: Site) -> None:
    await _with_xyz(site)
    status, body, _ = await site.get(
        "88.TEST/xyz/history", headers=secure_basic(site.other.identity, site.other.secret)
    )
    assert status == 403
    assert body["responseCode"] == 400
    status, body, _ = await site.get("88.TEST/xyz/history", headers=SECURE)
    assert status == 401
    assert body["responseCode"] == 402


# --- secret keys never come back out -------------------------------------------------------------------------

PLAIN_SECRET = "plain-text-secret-0xC0FFEE"


async def _responses_of_every_read(site: Site) -> list[str]:
    texts = []
    for path, headers in [
        ("/api/handles/88.TEST/keyholder", {}),
        ("/api/handles/88.TEST/keyholder?publicOnly=false", site.auth),
        ("/api/handles/88.TEST/keyholder/history", site.auth),
        ("/api/handles/88.TEST/ADMIN", {}),
        ("/api/handles/88.TEST/ADMIN?publicOnly=false", site.auth),
        ("/api/handles/88.TEST/ADMIN/history", site.auth),
        ("/api/handles?prefix=88.TEST", site.auth),
        ("/hrls/handles?URL=*", site.auth),
        ("/hrls/handles?EMAIL=*", site.auth),
        ("/88.TEST/keyholder?noredirect", {}),
    ]:
        async with site.node.http.get(site.node.raw_url(path), headers=headers, allow_redirects=False) as response:
            assert response.status in (200, 302), (path, response.status)
            texts.append(await response.text())
    return texts


async def test_a_secret_key_never_appears_in_any_read_listing_search_or_history(site: Site) -> None:
    values = [
        {"index": 1, "type": "URL", "data": "https://example.org/keyholder"},
        {"index": 2, "type": "EMAIL", "data": "keys@example.org"},
        {"index": 300, "type": "HS_SECKEY", "data": PLAIN_SECRET, "permissions": "1110"},
        HS_ADMIN,
    ]
    status, _, _ = await site.put("88.TEST/keyholder", {"values": values})
    assert status == 201
    texts = await _responses_of_every_read(site)
    private = texts[1]
    assert '"HS_SECKEY"' in private  # the value is listed to its admin ...
    for text in texts:
        assert PLAIN_SECRET not in text  # ... but never its key, plain
        assert site.admin.secret not in text
        assert "pbkdf2" not in text.lower()  # or hashed
    status, body, _ = await site.get("88.TEST/keyholder")
    assert 300 not in _indexes(body)
    status, body, _ = await site.node.get(f"/hrls/handles?HS_SECKEY={PLAIN_SECRET}", headers=site.auth)
    assert status == 400
    assert body["responseCode"] == 4


async def test_a_secret_key_is_stored_hashed_in_the_record_its_history_and_the_search_index(site: Site) -> None:
    values = [{"index": 300, "type": "HS_SECKEY", "data": PLAIN_SECRET}, HS_ADMIN]
    assert (await site.put("88.TEST/keyholder", {"values": values}))[0] == 201
    con = await asyncpg.connect(site.node.dsn)
    try:
        stored = [row[0] for row in await con.fetch('SELECT "values"::text FROM handles')]
        stored += [
            row[0] for row in await con.fetch('SELECT "values"::text FROM handle_history WHERE "values" IS NOT NULL')
        ]
        stored += [row[0] for row in await con.fetch("SELECT value FROM handle_search")]
        keyholder = await con.fetchval(
            "SELECT v->'data'->>'value' FROM handles, jsonb_array_elements(\"values\") v "
            "WHERE handle_key = '88.TEST/KEYHOLDER' AND v->>'type' = 'HS_SECKEY'"
        )
    finally:
        await con.close()
    assert stored
    assert not [text for text in stored if PLAIN_SECRET in text or site.admin.secret in text]
    assert keyholder.startswith("pbkdf2-sha1$")


async def test_an_admin_may_send_the_placeholder_back_and_the_stored_secret_key_still_works(site: Site) -> None:
    own_admin = {
        "index": 101,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": "88.TEST/keyholder", "index": 300, "permissions": "111111111111"},
        },
    }
    values = [{"index": 300, "type": "HS_SECKEY", "data": PLAIN_SECRET}, HS_ADMIN, own_admin]
    assert (await site.put("88.TEST/keyholder", {"values": values}))[0] == 201
    _, private, _ = await site.get("88.TEST/keyholder?publicOnly=false", headers=site.auth)
    assert [v["index"] for v in private["values"] if v["type"] == "HS_SECKEY"] == [300]
    status, _, _ = await site.put("88.TEST/keyholder", {"values": private["values"]})
    assert status == 200
    keyholder = secure_basic("300:88.TEST/keyholder", PLAIN_SECRET)
    status, body, _ = await site.get("88.TEST/keyholder?publicOnly=false", headers=keyholder)
    assert status == 200
    assert body["handle"] == "88.TEST/keyholder"


async def test_more_concurrent_writes_than_pool_connections_all_complete(database: str) -> None:
    """Pool exhaustion: each write holds a connection while authorizing, and authorizing loads records through
    the cache. With one shared pool of 2, twenty writes whose authorization misses the cache deadlocked."""
    from resolver.app import CACHE
    from resolver.store import DatabaseSettings

    admin = await onboard_enterprise(database, "88.TEST")
    settings = Settings(registry=TRUSTING.registry, database=DatabaseSettings(pool_min=1, pool_max=2))
    async with running_node(database, settings) as node:
        headers = {**secure_basic(admin.identity, admin.secret), "Content-Type": "application/json"}

        async def put(n: int) -> int:
            node.app[CACHE].flush()  # authorization must load 0.NA/88.TEST and its admin group again
            url = node.url + f"/api/handles/88.TEST/pool-{n}?overwrite=false"
            async with node.http.put(url, json={"values": [PLAIN_VALUES[0], HS_ADMIN]}, headers=headers) as r:
                return r.status

        statuses = await asyncio.wait_for(asyncio.gather(*(put(n) for n in range(20))), timeout=60)
        assert statuses == [201] * 20
