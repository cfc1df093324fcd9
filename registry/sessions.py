"""``/api/sessions``: Handle.Net's challenge-response authentication (research §4.3, transcripts G1–G16).

``POST /api/sessions`` opens a session and answers 201 ``{sessionId, nonce}`` with ``Location:
/api/sessions/this`` (with Basic credentials it is authenticated at once, G11; wrong ones add
``"error":"Identity not verified"``, G12). The client answers the challenge with ``PUT /api/sessions/this`` and
``Authorization: Handle sessionId="…", id="300:…", type="HS_PUBKEY"|"HS_SECKEY", cnonce="…", alg="…",
signature="…"`` over ``nonce ‖ cnonce``:

- HS_PUBKEY: an RSA PKCS#1 v1.5 signature with SHA-256 (``SHA256``, ``SHA-256``, ``SHA2``) or SHA-1, or an Ed25519
  signature. The key is the identity's HS_PUBKEY value: a JWK (``format: key``) or a PEM string.
- HS_SECKEY: ``alg="PBKDF2-HMAC-SHA1"``, the HMAC-SHA1 keyed with PBKDF2-HMAC-SHA1(secret, salt, iterations). idnode
  stores secret keys only hashed, so the plain-secret algorithms (HMAC-SHA256 of transcript G5, SHA1, MD5) cannot
  be verified and are refused. idnode extension: ``POST /api/sessions`` with ``{"id": "300:…"}`` returns the
  ``salt``, ``iterations`` and ``length`` the client needs for that identity.

Afterwards ``Authorization: Handle sessionId="…"`` authenticates requests; ``DELETE /api/sessions/this`` ends it
(204). Sessions live in PostgreSQL, so every worker and replica knows them, and expire after ``SESSION_TTL``.
Everything here is refused on an insecure channel (403, G1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from registry.auth import Authenticator, Identity, SessionIdentity, StoredSecret, parse_handle_authorization
from registry.store import RegistryStore
from resolver.errors import (
    AuthenticationFailed,
    BadCredentials,
    DatabaseUnavailable,
    HandleError,
    MethodNotAllowed,
    ProtocolError,
)
from resolver.records import HandleValue
from resolver.responses import answers_errors, json_body, json_response, read_body

__all__ = ["Sessions", "session_identity"]

SESSION_TTL = timedelta(minutes=30)
_RSA_HASHES = {"SHA256": hashes.SHA256, "SHA-256": hashes.SHA256, "SHA2": hashes.SHA256, "SHA-2": hashes.SHA256,
               "SHA1": hashes.SHA1, "SHA-1": hashes.SHA1, "SHA": hashes.SHA1}  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"))


def public_key(value: HandleValue) -> Any:
    """The key of an HS_PUBKEY value: a JWK (RSA or Ed25519) or a PEM string."""
    if value.format == "key" and isinstance(value.value, dict):
        jwk = value.value
        if jwk.get("kty") == "RSA":
            n, e = int.from_bytes(_unb64(jwk["n"]), "big"), int.from_bytes(_unb64(jwk["e"]), "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
        raise ValueError(f"unsupported key type {jwk.get('kty')}")
    return serialization.load_pem_public_key(str(value.value).encode())


def verify_signature(value: HandleValue, alg: str, message: bytes, signature: bytes) -> bool:
    try:
        key = public_key(value)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if isinstance(key, rsa.RSAPublicKey) and alg.upper() in _RSA_HASHES:
            key.verify(signature, message, padding.PKCS1v15(), _RSA_HASHES[alg.upper()]())
            return True
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return False


def verify_keyed(value: HandleValue, alg: str, message: bytes, signature: bytes) -> bool:
    stored = StoredSecret.parse(str(value.value)) if value.format == "string" else None
    if stored is None or alg.upper() != "PBKDF2-HMAC-SHA1":
        return False
    expected = hmac.new(stored.key, message, hashlib.sha1).digest()
    return hmac.compare_digest(expected, signature)


def session_identity(store: RegistryStore) -> SessionIdentity:
    """How the authenticator reads ``Authorization: Handle sessionId="…"``: the identity the session proved."""

    async def identify(session_id: str) -> Identity | None:
        row = await store.session(session_id)
        if row is None:
            raise BadCredentials("Unknown or expired session")
        return Identity.parse(row[2]) if row[2] else None

    return identify


class Sessions:
    """The ``/api/sessions`` endpoints."""

    def __init__(self, store: RegistryStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/sessions", self.open),
            web.route("*", "/api/sessions", self.collection_other),
            web.route("*", "/api/sessions/{which}", self.this),
        ]

    def _secure(self, request: web.Request) -> None:
        if not self.auth.is_secure(request):
            raise AuthenticationFailed("Sessions are only available over HTTPS")

    @staticmethod
    def _info(row_id: str, nonce: bytes, identity: str | None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"sessionId": row_id, "nonce": _b64(nonce)}
        if identity:
            body.update(authenticated=True, id=identity)
        return body | extra

    @answers_errors
    async def open(self, request: web.Request) -> web.StreamResponse:
        self._secure(request)
        session_id, nonce = secrets.token_urlsafe(18), os.urandom(16)
        identity, extra = None, {}
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                found = await self.auth.identify(request)
                identity = str(found) if found else None
            except DatabaseUnavailable:
                raise
            except HandleError:
                extra["error"] = "Identity not verified"
        if request.body_exists and request.content_type == "application/json":
            extra |= await self._key_parameters(request)
        await self.store.open_session(session_id, nonce, identity, datetime.now(UTC) + SESSION_TTL)
        return json_response(
            self._info(session_id, nonce, identity, **extra), status=201, headers={"Location": "/api/sessions/this"}
        )

    async def _key_parameters(self, request: web.Request) -> dict[str, Any]:
        """PBKDF2 parameters of the named identity's secret key (idnode extension, see the module docstring)."""
        try:
            payload = orjson.loads(await read_body(request))
            identity = Identity.parse(str(payload["id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ProtocolError('Expected {"id": "index:handle"}') from None
        for value in await self.auth.key_values(identity, "HS_SECKEY"):
            stored = StoredSecret.parse(str(value.value))
            if stored is not None:
                return {
                    "alg": "PBKDF2-HMAC-SHA1",
                    "salt": _b64(stored.salt),
                    "iterations": stored.iterations,
                    "length": len(stored.key),
                }
        return {}

    @answers_errors
    async def collection_other(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # answered on any channel (transcript G14)
            return web.Response(headers={"Allow": "POST, OPTIONS"})
        self._secure(request)
        raise MethodNotAllowed(request.method, request.path, allow=("POST", "OPTIONS"))

    @answers_errors
    async def this(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "PUT", "POST", "DELETE"):  # before the session: TRACE is 405, not 401
            raise MethodNotAllowed(request.method, request.path, allow=("GET", "PUT", "POST", "DELETE"))
        self._secure(request)
        fields = parse_handle_authorization(request.headers.get("Authorization", ""))
        row = await self.store.session(fields.get("sessionId", "")) if request.match_info["which"] == "this" else None
        if row is None:
            raise AuthenticationFailed("Unknown or expired session")
        if request.method == "GET":
            return json_response(self._info(row[0], row[1], row[2]))
        if request.method == "DELETE":
            await self.store.close_session(row[0])
            return web.Response(status=204)
        if "signature" not in fields and request.body_exists:
            body = await json_body(request)
            fields |= {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        identity = await self._verify(request, row[1], fields)
        if identity is None:
            body = self._info(row[0], row[1], row[2], error="Identity not verified")
            challenge = f'Handle sessionId="{row[0]}", nonce="{_b64(row[1])}", error="Identity not verified"'
            return json_response(body, status=401, headers={"WWW-Authenticate": challenge})
        await self.store.bind_session(row[0], str(identity))
        return json_response(self._info(row[0], row[1], str(identity)))

    async def _verify(self, request: web.Request, nonce: bytes, fields: dict[str, str]) -> Identity | None:
        try:
            identity = Identity.parse(fields["id"])
            cnonce, signature = _unb64(fields["cnonce"]), _unb64(fields["signature"])
        except (KeyError, ValueError):
            raise ProtocolError("The answer needs id, cnonce and signature") from None
        if fields.get("version", "0") != "0":
            raise ProtocolError("Unsupported version of the Handle authorization scheme")
        auth = self.auth
        peer = auth.client_address(request)
        if auth.blocked_for(identity, peer) > 0:
            auth.failures["rate_limited"] += 1
            return None
        kind, alg, message = fields.get("type", "HS_PUBKEY").upper(), fields.get("alg", "SHA256"), nonce + cnonce
        check = verify_keyed if kind == "HS_SECKEY" else verify_signature
        if any(check(value, alg, message, signature) for value in await auth.key_values(identity, kind)):
            auth.succeed(identity, peer)
            return identity
        auth.failures["bad_secret"] += 1
        auth.fail(identity, peer)
        return None
