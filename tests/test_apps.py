"""Application identities (``registry/apps.py``, ``registry/apps_api.py``, ``idnode enterprise app``): what each
right lets an app do through the Handle API, who may manage apps, and revocation taking effect at once.

A node homing ``88.118`` (operator ``300:88.118/OPERATOR``) with the enterprises ``88.118.7`` and ``88.118.8``;
requests go through the trusted proxy (a secure channel) unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from resolver.config import RegistrySettings, Settings
from tests.support import (
    SECURE,
    Node,
    add_node_operator,
    eventually,
    onboard_enterprise,
    running_node,
    secure_basic,
)
from tests.test_cli import idnode

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]
OTHER_URL = [{"index": 1, "type": "URL", "data": "https://example.org/y"}]
APPS = "/api/enterprises/88.118.7/apps"
S = TypeVar("S", bound="Site")


@dataclass
class Site:
    node: Node
    operator: dict[str, str]
    acme: dict[str, str]
    beta: dict[str, str]

    async def call(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.node.call(method, path, headers=headers, **kwargs)
        return status, body

    async def app(self, name: str, *rights: str) -> dict[str, str]:
        """Create the app ``name`` of 88.118.7 as its admin; its credentials as headers."""
        status, body = await self.call("POST", APPS, self.acme, json={"name": name, "rights": list(rights)})
        assert status == 201, body
        assert body["identity"] == f"300:88.118.7/APP-{name}"
        return secure_basic(body["identity"], body["secret"])


async def serve_site(database: str, settings: Settings, kind: type[S]) -> AsyncIterator[S]:
    """The operator and the enterprises 88.118.7 (Acme) and 88.118.8 (Beta) on ``database``, served with
    ``settings``, as a ``kind`` of ``Site``."""
    operator = await add_node_operator(database, "88.118/OPERATOR")
    acme = await onboard_enterprise(database, "88.118.7", name="Acme")
    beta = await onboard_enterprise(database, "88.118.8", name="Beta")
    async with running_node(database, settings) as node:
        yield kind(
            node,
            secure_basic(operator.identity, operator.secret),
            secure_basic(acme.identity, acme.secret),
            secure_basic(beta.identity, beta.secret),
        )


@pytest.fixture
async def site(database: str) -> AsyncIterator[Site]:
    async for site in serve_site(database, Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",))), Site):
        yield site


async def test_an_app_with_register_and_update_writes_under_its_prefix_only(site: Site) -> None:
    mes = await site.app("mes-line-3", "register", "update")
    status, body = await site.call("PUT", "/api/handles/88.118.7/P1", mes, json={"values": URL})
    assert status == 201, body
    status, body = await site.call("PUT", "/api/handles/88.118.7/P1", mes, json={"values": OTHER_URL})
    assert status == 200, body
    status, body = await site.call("GET", "/api/handles/88.118.7/P1", {})
    assert body["values"][0]["data"]["value"] == "https://example.org/y"

    status, body = await site.call("DELETE", "/api/handles/88.118.7/P1", mes)
    assert (status, body["responseCode"]) == (403, 401)
    status, body = await site.call("PUT", "/api/handles/88.118.8/P1", mes, json={"values": URL})
    assert (status, body["responseCode"]) == (403, 400)


async def test_an_app_without_register_cannot_create_and_one_with_delete_can_delete(site: Site) -> None:
    status, _ = await site.call("PUT", "/api/handles/88.118.7/P2", site.acme, json={"values": URL})
    assert status == 201
    erp = await site.app("erp", "delete")
    status, body = await site.call("PUT", "/api/handles/88.118.7/P3", erp, json={"values": URL})
    assert (status, body["responseCode"]) == (403, 401)
    status, body = await site.call("DELETE", "/api/handles/88.118.7/P2", erp)
    assert status == 200, body


async def test_only_an_app_with_read_sees_non_public_values(site: Site) -> None:
    hidden = [*URL, {"index": 2, "type": "BATCH", "data": "lot 42", "permissions": "1100"}]
    status, _ = await site.call("PUT", "/api/handles/88.118.7/P4", site.acme, json={"values": hidden})
    assert status == 201
    reader = await site.app("reader", "read")
    writer = await site.app("writer", "register")

    status, body = await site.call("GET", "/api/handles/88.118.7/P4?publicOnly=false", reader)
    assert status == 200, body
    assert [v["index"] for v in body["values"]] == [1, 2]
    status, body = await site.call("GET", "/api/handles/88.118.7/P4?publicOnly=false", writer)
    assert (status, body["responseCode"]) == (403, 401)


async def test_apps_are_listed_and_a_revoked_app_is_refused_at_once(site: Site) -> None:
    mes = await site.app("mes", "register", "update", "delete", "read")
    await site.app("scanner", "read")
    status, body = await site.call("PUT", "/api/handles/88.118.7/P5", mes, json={"values": URL})
    assert status == 201

    status, body = await site.call("GET", APPS, site.acme)
    assert status == 200
    assert [(a["name"], a["identity"], a["rights"]) for a in body["apps"]] == [
        ("mes", "300:88.118.7/APP-mes", ["register", "update", "delete", "read"]),
        ("scanner", "300:88.118.7/APP-scanner", ["read"]),
    ]
    assert all(a["created"] for a in body["apps"])
    status, body = await site.call("POST", APPS, site.acme, json={"name": "mes", "rights": ["read"]})
    assert (status, body["responseCode"]) == (409, 101)

    status, body = await site.call("DELETE", f"{APPS}/mes", site.acme)
    assert (status, body) == (200, {"responseCode": 1})
    status, body = await site.call("PUT", "/api/handles/88.118.7/P5", mes, json={"values": OTHER_URL})
    assert status == 401, body
    status, body = await site.call("GET", APPS, site.operator)
    assert [a["name"] for a in body["apps"]] == ["scanner"]
    status, body = await site.call("DELETE", f"{APPS}/mes", site.acme)
    assert (status, body["responseCode"]) == (404, 100)


async def test_an_app_with_a_public_key_opens_a_session_by_signing_the_challenge(site: Site) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
    request = {"name": "signer", "rights": ["register"], "publicKey": jwk}
    status, body = await site.call("POST", APPS, site.acme, json=request)
    assert status == 201, body
    assert "secret" not in body

    status, opened = await site.call("POST", "/api/sessions", SECURE)
    cnonce = os.urandom(16)
    signature = key.sign(base64.b64decode(opened["nonce"]) + cnonce)
    session = {**SECURE, "Authorization": f'Handle sessionId="{opened["sessionId"]}"'}
    answer = {
        **SECURE,
        "Authorization": f'Handle version="0", sessionId="{opened["sessionId"]}", id="300:88.118.7/APP-signer", '
        f'type="HS_PUBKEY", cnonce="{base64.b64encode(cnonce).decode()}", alg="Ed25519", '
        f'signature="{base64.b64encode(signature).decode()}"',
    }
    status, body = await site.call("PUT", "/api/sessions/this", answer)
    assert (status, body["authenticated"]) == (200, True), body
    status, body = await site.call("PUT", "/api/handles/88.118.7/S1", session, json={"values": URL})
    assert status == 201, body

    status, _ = await site.call("DELETE", f"{APPS}/signer", site.acme)
    assert status == 200
    status, _ = await site.call("PUT", "/api/handles/88.118.7/S2", session, json={"values": URL})
    assert status in (401, 403)  # the session was closed with the app


@pytest.mark.parametrize(
    "body",
    [
        {"name": "bad name", "rights": ["read"]},
        {"name": "x", "rights": []},
        {"name": "x", "rights": ["fly"]},
        {"name": "x", "rights": ["read"], "publicKey": "k"},
        ["x"],
    ],
)
async def test_malformed_app_requests_are_400(site: Site, body: Any) -> None:
    status, answer = await site.call("POST", APPS, site.acme, json=body)
    assert (status, answer["responseCode"]) == (400, 4)


async def test_other_enterprises_apps_anonymous_and_plain_http_cannot_manage_apps(site: Site) -> None:
    await site.app("mes", "register")
    reader = await site.app("reader", "read")
    for method, path, body in (("POST", APPS, {"name": "x", "rights": ["read"]}), ("GET", APPS, None)):
        status, answer = await site.call(method, path, site.beta, json=body)
        assert (status, answer["responseCode"]) == (403, 400)
    status, answer = await site.call("DELETE", f"{APPS}/mes", site.beta)
    assert (status, answer["responseCode"]) == (403, 400)
    status, answer = await site.call("POST", APPS, reader, json={"name": "x", "rights": ["read"]})
    assert (status, answer["responseCode"]) == (403, 401)
    status, _ = await site.call("GET", APPS, SECURE)
    assert status == 401
    plain = {"Authorization": site.acme["Authorization"]}  # without the proxy's header: plain HTTP
    status, _ = await site.call("GET", APPS, plain)
    assert status == 403
    status, answer = await site.call("GET", APPS, site.operator)
    assert [a["name"] for a in answer["apps"]] == ["mes", "reader"]


async def test_the_cli_adds_lists_and_revokes_apps(database: str, tmp_path: Path) -> None:
    await onboard_enterprise(database, "88.118.7", name="Acme")

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(idnode, database, tmp_path, "enterprise", "app", *args)

    added = await run("add", "88.118.7", "mes", "--rights", "register,update", "--json")
    assert added.returncode == 0, added.stderr
    credentials = orjson.loads(added.stdout)
    assert credentials["identity"] == "300:88.118.7/APP-mes"
    listed = await run("list", "88.118.7")
    assert listed.stdout.splitlines() == ["mes\t300:88.118.7/APP-mes\tregister,update"]

    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(database, settings) as node:
        mes = secure_basic(credentials["identity"], credentials["secret"])
        status, body, _ = await node.call("PUT", "/api/handles/88.118.7/C1", json={"values": URL}, headers=mes)
        assert status == 201, body
        revoked = await run("revoke", "88.118.7", "mes")
        assert revoked.returncode == 0, revoked.stderr

        async def refused() -> bool:
            status, _, _ = await node.call("PUT", "/api/handles/88.118.7/C2", json={"values": URL}, headers=mes)
            return status == 401

        assert await eventually(refused)  # the change notification evicts the identity from the node's cache
    missing = await run("revoke", "88.118.7", "mes")
    assert missing.returncode == 1
    bad = await run("add", "88.118.7", "x", "--rights", "fly")
    assert bad.returncode == 2
