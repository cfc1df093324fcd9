"""``/api/sessions`` (registry/sessions.py): Handle.Net's challenge-response authentication over real HTTPS with
a self-signed certificate, case by case from the transcripts §G (research/handle9-transcripts.md).

idnode keeps secret keys only hashed (PBKDF2-HMAC-SHA1), so an HS_SECKEY answer must use
``alg="PBKDF2-HMAC-SHA1"`` with the salt and iterations ``POST /api/sessions {"id": ...}`` hands out; the
plain-secret algorithms of transcript G5 (HMAC-SHA256) cannot be verified and are refused. HS_PUBKEY answers are
signatures by the identity's key (an Ed25519 JWK here).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from registry.enterprises import Credentials
from tests.support import Node, basic, onboard_enterprise, running_node, self_signed_context

ADMIN = "300:88.TEST/ADMIN"
DEVICE = "300:88.TEST/device"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _session(session_id: str) -> dict[str, str]:
    return {"Authorization": f'Handle sessionId="{session_id}"'}


def _answer(session_id: str, identity: str, kind: str, alg: str, cnonce: bytes, signature: bytes) -> dict[str, str]:
    return {
        "Authorization": f'Handle version="0", sessionId="{session_id}", id="{identity}", type="{kind}", '
        f'cnonce="{_b64(cnonce)}", alg="{alg}", signature="{_b64(signature)}"'
    }


@dataclass
class Site:
    node: Node
    admin: Credentials

    async def open(self, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.node.call("POST", "/api/sessions", **kwargs)

    async def put_handle(self, handle: str, headers: dict[str, str], query: str = "?overwrite=false") -> int:
        values = [{"index": 1, "type": "URL", "data": f"https://example.org/{handle}"}]
        status, _, _ = await self.node.call(
            "PUT", f"/api/handles/{handle}{query}", json={"values": values}, headers=headers
        )
        return status

    async def answer(
        self, session_id: str, identity: str, kind: str, alg: str, cnonce: bytes, signature: bytes
    ) -> tuple[int, Any, Any]:
        """``PUT /api/sessions/this`` with a challenge answer (see ``_answer``)."""
        headers = _answer(session_id, identity, kind, alg, cnonce, signature)
        return await self.node.call("PUT", "/api/sessions/this", headers=headers)


@pytest.fixture
async def site(database: str, tmp_path: Path) -> AsyncIterator[Site]:
    admin = await onboard_enterprise(database, "88.TEST")
    async with running_node(database, ssl_context=self_signed_context(tmp_path)) as node:
        assert node.url.startswith("https://")
        yield Site(node, admin)


# --- G1–G4, G9–G13: the session resource ---------------------------------------------------------------------


async def test_g1_sessions_over_plain_http_are_403(database: str) -> None:
    await onboard_enterprise(database, "88.TEST")
    async with running_node(database) as plain:
        assert (await plain.get("/api/sessions"))[0] == 403
        assert (await plain.call("POST", "/api/sessions"))[0] == 403


async def test_g2_get_of_the_session_collection_is_405_with_allow_post(site: Site) -> None:
    status, _, response = await site.node.get("/api/sessions")
    assert status == 405
    assert "POST" in response.headers["Allow"]


async def test_g3_g4_post_opens_an_anonymous_session_that_can_be_read_back(site: Site) -> None:
    status, body, response = await site.open()
    assert status == 201
    assert response.headers["Location"] == "/api/sessions/this"
    assert set(body) == {"sessionId", "nonce"}
    assert len(base64.b64decode(body["nonce"])) == 16
    status, again, _ = await site.node.get("/api/sessions/this", headers=_session(body["sessionId"]))
    assert status == 200
    assert again == body


async def test_g11_post_with_basic_credentials_is_authenticated_at_once(site: Site) -> None:
    status, body, _ = await site.open(headers=basic(site.admin.identity, site.admin.secret))
    assert status == 201
    assert body["authenticated"] is True
    assert body["id"] == ADMIN
    assert await site.put_handle("88.TEST/by-basic-session", _session(body["sessionId"])) == 201


async def test_g12_post_with_a_wrong_basic_password_opens_an_unauthenticated_session_with_an_error(site: Site) -> None:
    status, body, _ = await site.open(headers=basic(site.admin.identity, "nope"))
    assert status == 201
    assert body["error"] == "Identity not verified"
    assert "authenticated" not in body
    assert await site.put_handle("88.TEST/refused", _session(body["sessionId"])) == 401


async def test_g9_g10_a_deleted_session_is_gone(site: Site) -> None:
    _, body, _ = await site.open(headers=basic(site.admin.identity, site.admin.secret))
    session = _session(body["sessionId"])
    status, _, _ = await site.node.call("DELETE", "/api/sessions/this", headers=session)
    assert status == 204
    assert (await site.node.get("/api/sessions/this", headers=session))[0] == 403
    assert await site.put_handle("88.TEST/after-logout", session) == 401


async def test_g13_a_session_other_than_this_or_an_unknown_one_is_403(site: Site) -> None:
    _, body, _ = await site.open()
    assert (await site.node.get("/api/sessions/other", headers=_session(body["sessionId"])))[0] == 403
    assert (await site.node.get("/api/sessions/this", headers=_session("no-such-session")))[0] == 403


async def test_an_unauthenticated_session_cannot_write(site: Site) -> None:
    _, body, _ = await site.open()
    status, error, _ = await site.node.call(
        "PUT", "/api/handles/88.TEST/anon?overwrite=false", json={"values": []}, headers=_session(body["sessionId"])
    )
    assert status == 401
    assert error["responseCode"] == 402


# --- HS_PUBKEY challenge-response -----------------------------------------------------------------------------


async def _device(site: Site) -> ed25519.Ed25519PrivateKey:
    """``88.TEST/device``: an Ed25519 public key at index 300, administering itself; created by the enterprise."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
    values = [
        {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": jwk}},
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "88.TEST/device", "index": 300, "permissions": "111111111111"},
            },
        },
    ]
    status, _, _ = await site.node.call(
        "PUT",
        "/api/handles/88.TEST/device",
        json={"values": values},
        headers=basic(site.admin.identity, site.admin.secret),
    )
    assert status == 201
    return key


async def _answer_with_key(
    site: Site, key: ed25519.Ed25519PrivateKey, nonce: str, session_id: str
) -> tuple[int, Any, Any]:
    """Answer the challenge of session ``session_id`` as ``DEVICE``, signing ``nonce`` and a fresh cnonce."""
    cnonce = os.urandom(16)
    signature = key.sign(base64.b64decode(nonce) + cnonce)
    return await site.answer(session_id, DEVICE, "HS_PUBKEY", "Ed25519", cnonce, signature)


async def test_an_hs_pubkey_signature_of_nonce_and_cnonce_authenticates_the_session(site: Site) -> None:
    key = await _device(site)
    _, opened, _ = await site.open()
    status, body, _ = await _answer_with_key(site, key, opened["nonce"], opened["sessionId"])
    assert status == 200
    assert body["authenticated"] is True
    assert body["id"] == DEVICE
    session = _session(opened["sessionId"])
    status, info, _ = await site.node.get("/api/sessions/this", headers=session)
    assert (info["authenticated"], info["id"]) == (True, DEVICE)

    assert await site.put_handle("88.TEST/device", session, "?index=1") == 201
    _, record, _ = await site.node.get("/api/handles/88.TEST/device?index=1")
    assert record["values"][0]["data"]["value"] == "https://example.org/88.TEST/device"
    # the session carries the device's identity, not the enterprise admin's: it may not create under the prefix
    assert await site.put_handle("88.TEST/by-device", session) == 403


async def test_a_wrong_hs_pubkey_signature_is_401_and_leaves_the_session_anonymous(site: Site) -> None:
    await _device(site)
    stranger = ed25519.Ed25519PrivateKey.generate()
    _, opened, _ = await site.open()
    status, body, response = await _answer_with_key(site, stranger, opened["nonce"], opened["sessionId"])
    assert status == 401
    assert body["error"] == "Identity not verified"
    assert "Handle" in response.headers["WWW-Authenticate"]
    _, info, _ = await site.node.get("/api/sessions/this", headers=_session(opened["sessionId"]))
    assert "authenticated" not in info
    assert await site.put_handle("88.TEST/device", _session(opened["sessionId"]), "?index=1") == 401


async def test_a_signature_over_another_nonce_is_refused(site: Site) -> None:
    key = await _device(site)
    _, first, _ = await site.open()
    _, second, _ = await site.open()
    status, _, _ = await _answer_with_key(site, key, first["nonce"], second["sessionId"])
    assert status == 401


# --- HS_SECKEY challenge-response -----------------------------------------------------------------------------


def _pbkdf2(opened: dict[str, Any], secret: bytes) -> bytes:
    """``secret`` derived with the PBKDF2-HMAC-SHA1 parameters (salt, iterations, length) a session announced."""
    return PBKDF2HMAC(
        algorithm=hashes.SHA1(),
        length=opened["length"],
        salt=base64.b64decode(opened["salt"]),
        iterations=opened["iterations"],
    ).derive(secret)


async def _answer_with_hmac(
    site: Site, opened: dict[str, Any], key: bytes, digest: Any, alg: str
) -> tuple[int, Any, Any]:
    """Answer the challenge of the session ``opened`` as ``ADMIN`` with an HMAC (``key``, ``digest``) of its
    nonce and a fresh cnonce, announced as ``alg``."""
    cnonce = os.urandom(16)
    signature = hmac.new(key, base64.b64decode(opened["nonce"]) + cnonce, digest).digest()
    return await site.answer(opened["sessionId"], ADMIN, "HS_SECKEY", alg, cnonce, signature)


async def test_an_hs_seckey_answer_with_pbkdf2_hmac_sha1_authenticates_and_the_session_can_write(site: Site) -> None:
    status, opened, _ = await site.open(json={"id": ADMIN})
    assert status == 201
    assert opened["alg"] == "PBKDF2-HMAC-SHA1"
    derived = _pbkdf2(opened, site.admin.secret.encode())
    status, body, _ = await _answer_with_hmac(site, opened, derived, hashlib.sha1, "PBKDF2-HMAC-SHA1")
    assert status == 200
    assert (body["authenticated"], body["id"]) == (True, ADMIN)
    assert await site.put_handle("88.TEST/sessioncreated", _session(opened["sessionId"])) == 201
    status, _, _ = await site.node.get("/api/handles/88.TEST/sessioncreated")
    assert status == 200


async def test_an_hs_seckey_answer_with_hmac_sha256_of_the_plain_secret_is_401(site: Site) -> None:
    _, opened, _ = await site.open()
    status, body, _ = await _answer_with_hmac(site, opened, site.admin.secret.encode(), hashlib.sha256, "HMAC-SHA256")
    assert status == 401
    assert body["error"] == "Identity not verified"
    assert await site.put_handle("88.TEST/refused", _session(opened["sessionId"])) == 401


async def test_a_pbkdf2_answer_derived_from_a_wrong_secret_is_401(site: Site) -> None:
    _, opened, _ = await site.open(json={"id": ADMIN})
    derived = _pbkdf2(opened, b"not-the-secret")
    status, _, _ = await _answer_with_hmac(site, opened, derived, hashlib.sha1, "PBKDF2-HMAC-SHA1")
    assert status == 401
