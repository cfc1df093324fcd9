"""The SNMS-compatible API (registry/snms_api.py, snms_records.py, snms_tokens.py) driven as an SNMS integration
drives it: a plain HTTP client posting the JSON shapes of the SNMS documentation (research
idis-secondary-node.md §4.1(b)) and reading the ``{status, message, data}`` envelope, never idnode's own code.

A node homing ``88.118`` (operator ``300:88.118/OPERATOR``) with the enterprises ``88.118.8`` (whose MES is the app
``88.118.8/APP-mes``) and ``88.118.7``; requests come through the trusted proxy (a secure channel) unless a test
says otherwise. The Handle API (``/api/...``) is used to set up templates and apps and to check that both APIs see
the same records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from resolver.config import RegistrySettings, Settings
from tests.support import SECURE, add_node_operator, onboard_enterprise, running_node, secure_basic

TOKEN_KEY = "test-token-key-of-at-least-32-characters"
TEMPLATE = {
    "description": "pump",
    "items": [
        {"idIndex": 2000, "idType": "productName", "name": "产品名称", "required": True, "maxLength": 100},
        {"idIndex": 2001, "idType": "batchNo", "name": "批次号", "required": True, "minLength": 1},
    ],
}


def record(handle: str, name: str = "Pump P3", batch: str = "B-7", **extra: Any) -> dict[str, Any]:
    """An SNMS identifier record against the template ``product-1.0``."""
    return {
        "handle": handle,
        "templateVersion": "product-1.0",
        "value": [
            {
                "index": 1,
                "type": "URL",
                "auth": "public",
                "data": {"format": "string", "value": f"https://e.cn/{name}"},
            },
            {"index": 2000, "type": "productName", "data": {"format": "string", "value": name}},
            {"index": 2001, "type": "batchNo", "data": {"format": "string", "value": batch}},
        ],
        **extra,
    }


@dataclass
class Snms:
    """An SNMS client: JSON in, the envelope out (always HTTP 200)."""

    http: aiohttp.ClientSession
    url: str
    token: str | None = None
    secure: bool = True

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> dict[str, Any]:
        headers = dict(SECURE) if self.secure else {}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if body is not None:
            kwargs["data"] = body if isinstance(body, bytes) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.url + path, **kwargs) as response:
            assert response.status == 200, await response.text()
            envelope = await response.json()
        assert set(envelope) == {"status", "message", "data"}, envelope
        return envelope

    async def login(self, username: str, password: str) -> dict[str, Any]:
        envelope = await self.call("POST", "/identity/token", {"username": username, "password": password})
        if envelope["status"] == 1:
            self.token = envelope["data"]["token"]
        return envelope


@dataclass
class Site:
    http: aiohttp.ClientSession
    url: str
    operator: dict[str, str]
    admin: dict[str, str]
    admin_secret: str
    other_admin: dict[str, str]

    def snms(self, token: str | None = None, *, secure: bool = True) -> Snms:
        return Snms(self.http, self.url, token, secure)

    async def handle_api(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def app(self, prefix: str, name: str, *rights: str) -> tuple[str, str]:
        """Create an app through the Handle API; its SNMS username (the bare identity handle) and secret."""
        admin = self.admin if prefix == "88.118.8" else self.other_admin
        status, body = await self.handle_api(
            "POST", f"/api/enterprises/{prefix}/apps", admin, json={"name": name, "rights": list(rights)}
        )
        assert status == 201, body
        return body["identity"].split(":", 1)[1], body["secret"]

    async def logged_in(self, prefix: str = "88.118.8", name: str = "mes") -> Snms:
        username, secret = await self.app(prefix, name, "register", "update", "delete", "read")
        client = self.snms()
        assert (await client.login(username, secret))["status"] == 1
        return client


def site_settings(data_dir: Path, **registry: Any) -> Settings:
    registry = {"trusted_proxies": ("127.0.0.1",), "snms_token_key": TOKEN_KEY, **registry}
    return Settings(data_dir=data_dir, registry=RegistrySettings(**registry))


@pytest.fixture
async def site(database: str, tmp_path: Path) -> AsyncIterator[Site]:
    operator = await add_node_operator(database, "88.118/OPERATOR")
    admin = await onboard_enterprise(database, "88.118.8", name="Beta")
    other = await onboard_enterprise(database, "88.118.7", name="Acme")
    async with running_node(database, site_settings(tmp_path)) as node:
        made = Site(
            node.http,
            node.url,
            secure_basic(operator.identity, operator.secret),
            secure_basic(admin.identity, admin.secret),
            admin.secret,
            secure_basic(other.identity, other.secret),
        )
        for prefix, headers in (("88.118.8", made.admin), ("88.118.7", made.other_admin)):
            status, body = await made.handle_api("PUT", f"/api/templates/{prefix}/product-1.0", headers, json=TEMPLATE)
            assert status in (200, 201), body
        yield made


def _forged(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if alg == "HS256" else b""
    return f"{signing_input}.{b64(signature)}"


# --- login ------------------------------------------------------------------------------------------------------


async def test_an_app_logs_in_with_its_identity_handle_and_secret_and_gets_a_24_hour_token(site: Site) -> None:
    username, secret = await site.app("88.118.8", "mes", "register")
    envelope = await site.snms().login(username, secret)
    assert envelope["status"] == 1, envelope
    data = envelope["data"]
    assert data["token"].count(".") == 2
    assert data["identity"] == "300:88.118.8/APP-mes"
    assert abs(data["expires"] - (time.time() + 86400)) < 60


async def test_the_enterprise_admin_identity_can_log_in_too(site: Site) -> None:
    client = site.snms()
    assert (await client.login("88.118.8/ADMIN", site.admin_secret))["status"] == 1
    envelope = await client.call("POST", "/identityv2/data", record("88.118.8/by-admin"))
    assert envelope["status"] == 1, envelope


async def test_a_wrong_password_is_not_logged_in_and_repeated_failures_are_limited(
    database: str, tmp_path: Path
) -> None:
    admin = await onboard_enterprise(database, "88.118.8")
    async with running_node(database, site_settings(tmp_path, auth_failure_limit=3)) as node:
        client = Snms(node.http, node.url)
        for _ in range(3):
            envelope = await client.login("88.118.8/ADMIN", "wrong")
            assert envelope["status"] == -1, envelope
            assert envelope["data"] is None
        refused = await client.login("88.118.8/ADMIN", admin.secret)
        assert refused["status"] == -1
        assert "too many" in refused["message"].lower()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "x"}, "username: required"),
        ({"username": "88.118.8/ADMIN"}, "password: required"),
        ({"username": "x" * 51, "password": "p"}, "username: at most 50"),
        ({"username": "88.118.8/ADMIN", "password": "p" * 65}, "password: at most 64"),
        ({"username": 7, "password": "p"}, "username: must be a string"),
        ({"username": "no-slash", "password": "p"}, "username: must be an identity handle"),
        (["not", "an", "object"], "body: must be an object"),
    ],
)
async def test_a_malformed_login_is_a_business_error_naming_the_field(site: Site, body: Any, field: str) -> None:
    envelope = await site.snms().call("POST", "/identity/token", body)
    assert envelope["status"] == -2
    assert field in envelope["message"]


async def test_login_over_plain_http_is_refused_and_the_hashed_v1_login_is_unsupported(site: Site) -> None:
    username, secret = await site.app("88.118.8", "mes", "register")
    plain = await site.snms(secure=False).login(username, secret)
    assert plain["status"] == -1
    assert "HTTPS" in plain["message"]
    day = time.strftime("%Y-%m-%d")
    hashed = hashlib.sha256((hashlib.sha256(secret.encode()).hexdigest() + day).encode()).hexdigest()
    v1 = await site.snms().call("POST", "/identity/token/v1", {"username": username, "password": hashed})
    assert v1["status"] == -2
    assert "not supported" in v1["message"]


# --- records ----------------------------------------------------------------------------------------------------


async def test_register_detail_update_delete_and_the_handle_api_sees_the_same_record(site: Site) -> None:
    client = await site.logged_in()
    assert (await client.call("POST", "/identityv2/data", record("88.118.8/P1")))["status"] == 1
    detail = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/P1")
    assert detail["status"] == 1
    assert detail["data"] == {
        "prefix": "88.118.8",
        "handle": "88.118.8/P1",
        "templateVersion": "product-1.0",
        "value": [
            {
                "index": 1,
                "type": "URL",
                "auth": "public",
                "data": {"format": "string", "value": "https://e.cn/Pump P3"},
            },
            {"index": 2000, "type": "productName", "auth": "public", "data": {"format": "string", "value": "Pump P3"}},
            {"index": 2001, "type": "batchNo", "auth": "public", "data": {"format": "string", "value": "B-7"}},
        ],
    }
    status, body = await site.handle_api("GET", "/api/handles/88.118.8/P1", {})
    assert status == 200
    assert [(v["index"], v["type"], v["data"]["value"]) for v in body["values"]] == [
        (1, "URL", "https://e.cn/Pump P3"),
        (1001, "TEMPLATE_VERSION", "product-1.0"),
        (2000, "productName", "Pump P3"),
        (2001, "batchNo", "B-7"),
    ]
    updated = await client.call("PUT", "/identityv2/data", record("88.118.8/P1", name="Pump P4"))
    assert updated["status"] == 1, updated
    status, body = await site.handle_api("GET", "/api/handles/88.118.8/P1?index=2000", {})
    assert body["values"][0]["data"]["value"] == "Pump P4"
    status, body = await site.handle_api("GET", "/api/handles/88.118.8/P1/history", site.admin)
    assert status == 200, body
    assert {entry["actor"] for entry in body["history"]} == {"300:88.118.8/APP-mes"}
    assert (await client.call("DELETE", "/identityv2/data", {"handle": "88.118.8/P1"}))["status"] == 1
    status, _ = await site.handle_api("GET", "/api/handles/88.118.8/P1", {})
    assert status == 404
    gone = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/P1")
    assert gone["status"] == -2
    assert "not found" in gone["message"].lower()


async def test_a_handle_api_write_is_seen_at_once_by_snms_detail_and_update_keeps_its_admin(site: Site) -> None:
    client = await site.logged_in()
    admin = {"handle": "88.118.8/APP-mes", "index": 300, "permissions": "111111111111"}
    values = [
        {"index": 1, "type": "URL", "data": "https://e.cn/x"},
        {"index": 1001, "type": "TEMPLATE_VERSION", "data": "product-1.0"},
        {"index": 2000, "type": "productName", "data": "Valve"},
        {"index": 2001, "type": "batchNo", "data": "V-1"},
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}},
    ]
    status, body = await site.handle_api("PUT", "/api/handles/88.118.8/H1", site.admin, json={"values": values})
    assert status == 201, body
    detail = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/H1")
    assert detail["data"]["templateVersion"] == "product-1.0"
    assert [v["data"]["value"] for v in detail["data"]["value"] if v["index"] == 2000] == ["Valve"]
    assert (await client.call("PUT", "/identityv2/data", record("88.118.8/H1", name="Valve 2")))["status"] == 1
    status, body = await site.handle_api("GET", "/api/handles/88.118.8/H1", {})
    assert {v["index"] for v in body["values"]} == {1, 100, 1001, 2000, 2001}


async def test_a_private_value_is_shown_only_to_an_identity_with_read_value(site: Site) -> None:
    client = await site.logged_in()
    body = record("88.118.8/secret")
    body["value"].append({"index": 5, "type": "PRICE", "auth": "private", "data": {"format": "string", "value": "9"}})
    assert (await client.call("POST", "/identityv2/data", body))["status"] == 1
    mine = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/secret")
    assert {"index": 5, "type": "PRICE", "auth": "private", "data": {"format": "string", "value": "9"}} in mine["data"][
        "value"
    ]
    for outsider in (site.snms(), await site.logged_in("88.118.7", "erp")):
        seen = await outsider.call("GET", "/identityv2/data/detail", handle="88.118.8/secret")
        assert seen["status"] == 1
        assert 5 not in [v["index"] for v in seen["data"]["value"]]


async def test_a_record_the_template_refuses_is_a_business_error_naming_the_item(site: Site) -> None:
    client = await site.logged_in()
    body = record("88.118.8/P2")
    body["value"] = body["value"][:2]  # no batchNo
    envelope = await client.call("POST", "/identityv2/data", body)
    assert envelope["status"] == -2
    assert "batchNo (index 2001): required but missing" in envelope["message"]
    status, _ = await site.handle_api("GET", "/api/handles/88.118.8/P2", {})
    assert status == 404


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("handle"), "handle: required"),
        (lambda r: r.pop("value"), "value: required"),
        (lambda r: r.update(value={}), "value: must be an array"),
        (lambda r: r["value"][2]["data"].pop("value"), "value[2].data.value: required"),
        (lambda r: r["value"][1].pop("index"), "value[1].index: required"),
        (lambda r: r["value"][1].update(index="x"), "value[1].index: must be an integer"),
        (lambda r: r["value"][0].update(type=""), "value[0].type: must be a non-empty string"),
        (lambda r: r["value"][0].update(data="bare"), "value[0].data: must be an object"),
        (lambda r: r["value"][0]["data"].update(format="admin"), "value[0].data.format: must be string"),
        (lambda r: r["value"][0].update(auth="everyone"), "value[0].auth: must be public, private"),
        (lambda r: r["value"][0].update(index=1001), "value[0].index: 1001 is reserved"),
        (lambda r: r["value"][0].update(index=2000), "value[1].index: 2000 is also the index of value[0]"),
        (lambda r: r["value"][0].update(index=-3), "value[0]: Value indexes must be positive"),
        (lambda r: r["value"].append(7), "value[3]: must be an object"),
        (lambda r: r.update(templateVersion=[]), "templateVersion: must be a non-empty string"),
        (lambda r: r.update(handle="88.118.8"), "no '/'"),
        (lambda r: r.update(handle="99.9/elsewhere"), "doesn't live here"),
    ],
)
async def test_a_malformed_record_is_a_business_error_naming_the_field(site: Site, mutate: Any, message: str) -> None:
    client = await site.logged_in()
    body = record("88.118.8/M1")
    mutate(body)
    envelope = await client.call("POST", "/identityv2/data", body)
    assert envelope["status"] == -2, envelope
    assert message.lower() in envelope["message"].lower(), envelope["message"]


async def test_malformed_json_and_unknown_paths_are_business_errors_not_pages(site: Site) -> None:
    client = await site.logged_in()
    broken = await client.call("POST", "/identityv2/data", b"{not json")
    assert broken["status"] == -2
    assert "JSON" in broken["message"]
    for method, path in (("GET", "/identityv2/nothing"), ("GET", "/identityv2/data"), ("PATCH", "/identity/token")):
        envelope = await client.call(method, path)
        assert envelope["status"] == -2
        assert path in envelope["message"]
    missing = await client.call("GET", "/identityv2/data/detail")
    assert (missing["status"], missing["message"]) == (-2, "handle: required")


# --- authentication and permissions -----------------------------------------------------------------------------


async def test_without_a_token_or_with_a_bad_one_a_write_is_not_logged_in(site: Site) -> None:
    for token in (
        None,
        "garbage",
        "a.b.c",
        _forged({"sub": "300:88.118.8/ADMIN"}, b"some other key of 32 bytes!!!!!!"),
    ):
        envelope = await site.snms(token).call("POST", "/identityv2/data", record("88.118.8/N1"))
        assert envelope["status"] == -1, (token, envelope)
    status, _ = await site.handle_api("GET", "/api/handles/88.118.8/N1", {})
    assert status == 404


async def test_an_expired_or_unsigned_token_is_refused(site: Site) -> None:
    client = await site.logged_in()
    payload = client.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    past = int(time.time()) - 3600
    expired = _forged({**claims, "iat": past - 86400, "nbf": past - 86400, "exp": past}, TOKEN_KEY.encode())
    unsigned = _forged(claims, TOKEN_KEY.encode(), alg="none")
    for token, why in ((expired, "expired"), (unsigned, "HS256")):
        envelope = await site.snms(token).call("POST", "/identityv2/data", record("88.118.8/E1"))
        assert envelope["status"] == -1
        assert why in envelope["message"]
    still = _forged(claims, TOKEN_KEY.encode())  # the same claims, signed with the key: accepted
    assert (await site.snms(still).call("POST", "/identityv2/data", record("88.118.8/E1")))["status"] == 1


async def test_a_revoked_apps_token_and_a_rotated_admins_token_stop_working_at_once(site: Site) -> None:
    client = await site.logged_in()
    assert (await client.call("POST", "/identityv2/data", record("88.118.8/R1")))["status"] == 1
    status, _ = await site.handle_api("DELETE", "/api/enterprises/88.118.8/apps/mes", site.admin)
    assert status == 200
    envelope = await client.call("POST", "/identityv2/data", record("88.118.8/R2"))
    assert envelope["status"] == -1
    assert "revoked" in envelope["message"]
    admin = site.snms()
    assert (await admin.login("88.118.8/ADMIN", site.admin_secret))["status"] == 1
    status, _ = await site.handle_api("POST", "/api/enterprises/88.118.8/rotate-secret", site.operator)
    assert status == 200
    assert (await admin.call("POST", "/identityv2/data", record("88.118.8/R3")))["status"] == -1


async def test_a_suspended_enterprises_token_may_not_write(site: Site) -> None:
    client = await site.logged_in()
    status, _ = await site.handle_api("POST", "/api/enterprises/88.118.8/suspend", site.operator)
    assert status == 200
    envelope = await client.call("POST", "/identityv2/data", record("88.118.8/S1"))
    assert envelope["status"] == -3
    assert "suspended" in envelope["message"]


async def test_another_enterprises_records_are_no_permission(site: Site) -> None:
    client = await site.logged_in()
    assert (await client.call("POST", "/identityv2/data", record("88.118.8/mine")))["status"] == 1
    stranger = await site.logged_in("88.118.7", "erp")
    for method, path, body in (
        ("POST", "/identityv2/data", record("88.118.8/theirs")),
        ("PUT", "/identityv2/data", record("88.118.8/mine", name="Hijacked")),
        ("DELETE", "/identityv2/data", {"handle": "88.118.8/mine"}),
    ):
        envelope = await stranger.call(method, path, body)
        assert envelope["status"] == -3, (method, envelope)
    batch = await stranger.call("POST", "/identityv2/data/batchCreate", [record("88.118.8/theirs")])
    assert batch["status"] == 1
    assert batch["data"][0]["code"] == -3
    detail = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/mine")
    assert detail["data"]["value"][1]["data"]["value"] == "Pump P3"


async def test_an_app_without_the_register_right_is_no_permission(site: Site) -> None:
    username, secret = await site.app("88.118.8", "reader", "read")
    client = site.snms()
    assert (await client.login(username, secret))["status"] == 1
    assert (await client.call("POST", "/identityv2/data", record("88.118.8/X1")))["status"] == -3


async def test_a_bearer_token_works_on_the_handle_api_only_on_a_secure_channel(site: Site) -> None:
    client = await site.logged_in()
    bearer = {"Authorization": f"Bearer {client.token}"}
    values = {"values": [{"index": 1, "type": "URL", "data": "https://e.cn/b"}]}
    status, body = await site.handle_api("PUT", "/api/handles/88.118.8/B1", {**SECURE, **bearer}, json=values)
    assert status == 201, body
    status, body = await site.handle_api("PUT", "/api/handles/88.118.8/B2", bearer, json=values)
    assert status in (401, 403), body
    detail = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/B1")
    assert detail["data"]["templateVersion"] is None


async def test_the_generated_token_key_is_shared_by_every_node_process_of_one_data_dir(
    database: str, tmp_path: Path
) -> None:
    admin = await onboard_enterprise(database, "88.118.8")
    settings = site_settings(tmp_path, snms_token_key=None)
    async with running_node(database, settings) as first, running_node(database, settings) as second:
        client = Snms(first.http, first.url)
        assert (await client.login("88.118.8/ADMIN", admin.secret))["status"] == 1
        elsewhere = Snms(second.http, second.url, client.token)
        assert (await elsewhere.call("POST", "/identityv2/data", {"handle": "88.118.8/K1", "value": []}))["status"] == 1
    key_file = tmp_path / "snms-token.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    async with running_node(database, site_settings(tmp_path / "other", snms_token_key=None)) as third:
        foreign = Snms(third.http, third.url, client.token)
        assert (await foreign.call("DELETE", "/identityv2/data", {"handle": "88.118.8/K1"}))["status"] == -1


# --- batches ----------------------------------------------------------------------------------------------------


async def test_batch_create_of_2000_records_succeeds_and_its_retry_succeeds_again(site: Site) -> None:
    client = await site.logged_in()
    records = [record(f"88.118.8/lot-{n:04d}", batch=f"L{n}") for n in range(2000)]
    first = await client.call("POST", "/identityv2/data/batchCreate", records)
    assert first["status"] == 1, first["message"]
    assert len(first["data"]) == 2000
    assert {item["code"] for item in first["data"]} == {1}
    assert first["data"][7] == {"handle": "88.118.8/lot-0007", "code": 1, "msg": "success"}
    retry = await client.call("POST", "/identityv2/data/batchCreate", records)
    assert {(item["code"], item["msg"]) for item in retry["data"]} == {(1, "unchanged")}
    status, body = await site.handle_api("GET", "/api/handles/88.118.8/lot-1999?index=2001", {})
    assert status == 200
    assert body["values"][0]["data"]["value"] == "L1999"
    changed = [record("88.118.8/lot-0000", batch="other")]
    clash = await client.call("POST", "/identityv2/data/batchCreate", changed)
    assert clash["data"][0]["code"] == -2
    too_many = await client.call("POST", "/identityv2/data/batchCreate", records + records[:1])
    assert too_many["status"] == -2
    assert "2000" in too_many["message"]


async def test_batch_update_and_delete_report_each_item_with_its_own_code(site: Site) -> None:
    client = await site.logged_in()
    created = await client.call("POST", "/identityv2/data/batchCreate", [record(f"88.118.8/u{n}") for n in range(3)])
    assert [item["code"] for item in created["data"]] == [1, 1, 1]
    bad = record("88.118.8/u2")
    bad["value"][2]["data"].pop("value")
    updates = [record("88.118.8/u0", name="New 0"), record("88.118.8/never"), bad, {"value": []}]
    updated = await client.call("PUT", "/identityv2/data/batchUpdate", updates)
    assert updated["status"] == 1
    results = updated["data"]
    assert results[0] == {"handle": "88.118.8/u0", "code": 1, "msg": "success"}
    assert results[1]["code"] == -2 and results[1]["handle"] == "88.118.8/never"
    assert results[2] == {"handle": "88.118.8/u2", "code": -2, "msg": "value[2].data.value: required"}
    assert results[3] == {"handle": None, "code": -2, "msg": "handle: required"}
    detail = await client.call("GET", "/identityv2/data/detail", handle="88.118.8/u0")
    assert detail["data"]["value"][1]["data"]["value"] == "New 0"
    deleted = await client.call(
        "DELETE", "/identityv2/data/batchDelete", ["88.118.8/u0", "88.118.8/u1", "88.118.8/none", 5]
    )
    assert [item["code"] for item in deleted["data"]] == [1, 1, -2, -2]
    assert deleted["data"][3] == {"handle": None, "code": -2, "msg": "handle: must be a non-empty string"}
    for handle, expected in (("u0", 404), ("u1", 404), ("u2", 200)):
        status, _ = await site.handle_api("GET", f"/api/handles/88.118.8/{handle}", {})
        assert status == expected
    not_array = await client.call("DELETE", "/identityv2/data/batchDelete", {"handles": []})
    assert (not_array["status"], not_array["message"]) == (-2, "body: must be a JSON array")
