"""Bearer tokens for SNMS clients: JWTs (RFC 7519) signed HS256 with the node's token key, checked on every request.

``POST /identity/token`` (``registry/snms_api.py``) issues one after a password login; afterwards ``Authorization:
Bearer <token>`` authenticates on the SNMS endpoints and on the Handle API alike (``Authenticator.identify``), on a
secure channel only, as Basic. Claims: ``iss`` ("idnode"), ``sub`` (the identity, ``300:88.118.8/APP-mes``),
``iat``, ``nbf``, ``exp`` (``snms_token_lifetime`` later, 24 h by default, as SNMS), ``jti`` (random) and ``gen``, a
digest of the identity's stored secret keys at login. The token is checked against the identity's current keys on
every use, so it dies at once when the key is rotated (the stored hash has a fresh salt) or the app is revoked (its
identity handle is gone); a suspended enterprise's writes are refused by ``Permissions.require`` as for any
credentials. Nothing is stored per token: every worker and every node sharing the key can check it.

Verification is deliberately narrow (the usual JWT pitfalls): the header must say exactly ``{"alg": "HS256"}`` (so
``none`` and public-key confusion are refused), the HMAC is compared in constant time before the payload is even
parsed, ``exp`` and ``nbf`` are required and enforced (``LEEWAY`` seconds of clock skew), and a token longer than
``MAX_TOKEN_BYTES`` is refused unread. Written here rather than with PyJWT: HS256 alone is these few lines over
``hmac``, and one dependency fewer to keep patched.

The key: ``snms_token_key`` (at least 32 characters) when configured, else 32 random bytes generated once into
``<data_dir>/snms-token.key`` (mode 0600) and read by every worker of the node; several nodes behind one balancer
must be given the same ``snms_token_key``, or a token from one is refused by the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from resolver.errors import BadCredentials, ConfigError
from resolver.records import HandleValue

__all__ = ["KEY_FILE", "MIN_KEY_BYTES", "TokenClaims", "Tokens", "key_generation", "load_token_key"]

KEY_FILE = "snms-token.key"
MIN_KEY_BYTES = 32
MAX_TOKEN_BYTES = 2048
LEEWAY = 30
"""Seconds of clock difference between nodes tolerated on ``nbf`` and ``exp``."""
ISSUER = "idnode"
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_token_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, or the one kept in ``data_dir`` (created by the first worker that asks, atomically:
    written to a private temporary file and linked into place, so a second worker reads the winner's key)."""
    if configured is not None:
        key = configured.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"config: snms_token_key must be at least {MIN_KEY_BYTES} bytes")
        return key
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(_b64(os.urandom(MIN_KEY_BYTES)) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    key = path.read_text().strip().encode("ascii")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"snms_token_key: {path} holds fewer than {MIN_KEY_BYTES} bytes")
    return key


def key_generation(values: Iterable[HandleValue]) -> str:
    """A digest of an identity's stored secret keys: any rotation (fresh salt) or removal changes it."""
    digest = hashlib.sha256()
    for value in sorted(values, key=lambda v: v.index):
        digest.update(f"{value.index}\x00{value.value}\x00".encode())
    return _b64(digest.digest()[:16])


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    subject: str
    generation: str
    expires: int


class Tokens:
    """Issues and verifies the node's bearer tokens; the key is loaded at first use (``load``)."""

    __slots__ = ("_clock", "_key", "_load", "lifetime")

    def __init__(self, load: Callable[[], bytes], *, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self._load = load
        self._key: bytes | None = None
        self.lifetime = lifetime
        self._clock = clock

    def _sign(self, message: bytes) -> bytes:
        if self._key is None:
            self._key = self._load()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, subject: str, generation: str) -> tuple[str, int]:
        """A token for ``subject`` and the moment (Unix seconds) it expires."""
        now = int(self._clock())
        expires = now + int(self.lifetime)
        claims = {"iss": ISSUER, "sub": subject, "iat": now, "nbf": now, "exp": expires,
                  "jti": secrets.token_urlsafe(12), "gen": generation}  # fmt: skip
        signing_input = f"{_b64(orjson.dumps(_HEADER))}.{_b64(orjson.dumps(claims))}"
        return f"{signing_input}.{_b64(self._sign(signing_input.encode('ascii')))}", expires

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid, current token; BadCredentials naming what is wrong otherwise."""
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise BadCredentials("Malformed bearer token")
        header_part, payload_part, signature_part = token.split(".")
        try:
            header = orjson.loads(_unb64(header_part))
        except (ValueError, orjson.JSONDecodeError):
            raise BadCredentials("Malformed bearer token") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or set(header) - {"alg", "typ"}:
            raise BadCredentials("Bearer token: only HS256 tokens of this node are accepted")
        expected = _b64(self._sign(f"{header_part}.{payload_part}".encode("ascii", "replace")))
        if not hmac.compare_digest(expected.encode("ascii"), signature_part.encode("ascii", "replace")):
            raise BadCredentials("Bearer token: invalid signature")
        claims = orjson.loads(_unb64(payload_part))  # signed by us: well-formed
        now = self._clock()
        if claims.get("iss") != ISSUER or not all(isinstance(claims.get(k), int) for k in ("exp", "nbf")):
            raise BadCredentials("Bearer token: not a token of this node")
        if now > claims["exp"] + LEEWAY:
            raise BadCredentials("Bearer token expired")
        if now < claims["nbf"] - LEEWAY:
            raise BadCredentials("Bearer token not yet valid")
        return TokenClaims(str(claims["sub"]), str(claims["gen"]), claims["exp"])
