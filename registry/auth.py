"""Who is asking: identities, hashed secret keys, HTTP Basic as Handle.Net parses it, and failed-login limits.

An identity is ``index:handle`` (``300:88.118.8/ADMIN``): the value at that index of that handle holds an
HS_SECKEY or an HS_PUBKEY. idnode never stores a secret key in the clear: an HS_SECKEY value holds
``pbkdf2-sha1$<iterations>$<salt>$<key>``. PBKDF2-HMAC-SHA1 is the one hashed form Handle's challenge-response
can still verify (research/handle-rest-api.md §4.3: the client derives the same key from the secret and keys an
HMAC with it), so one stored form serves both Basic and ``/api/sessions``.

Basic (research §4.1): base64 of ``<percent-encoded username>:<password bytes>``, split at the first colon; the
username is percent-decoded keeping ``+``; ``index:handle`` is split at its first colon only when the part before
it is all digits, otherwise the index is 0, meaning "any secret key of that handle". A request's credentials only
count on a secure channel (TLS, or a trusted proxy that says ``X-Forwarded-Proto: https``); elsewhere they are
ignored, as Handle.Net does (transcript A8). ``Authorization: Bearer <token>`` carries a token from the SNMS login
(``POST /identity/token``), valid only while its identity's secret keys are those it was issued for
(``registry/snms_tokens.py``); the same secure-channel rule applies.

Verifying a password costs a PBKDF2 run (tens of milliseconds by design), so a successful check is remembered as
a SHA-256 of the password under the stored hash: later requests cost one hash, and changing the key forgets it.
Failed logins are limited so that guessing is slow but nobody can lock the owner out: ``auth_failure_limit`` per
``auth_failure_window`` for one identity from one client address, and ``ADDRESS_FACTOR`` times higher for one
address over all identities (one address may carry many users behind NAT). Past either the answer is 429 with
``Retry-After``, before any PBKDF2 work: these two bound what each address costs the node. An IPv6 client counts
by its /64 (one subscriber's usual allocation), so rotating addresses inside it gains nothing. An attacker who
fails from his own addresses only blocks himself there.

A ceiling ``IDENTITY_FACTOR`` times higher counts one identity's failures from everywhere (a distributed guess).
It does not refuse before verifying, or ten attacking addresses would lock the owner out everywhere (issue 8's
review): the password is still checked, the right one gets in, and a wrong one is answered 429 instead of 401.

A stored hash names its own iteration count, and every login attempt pays it; so a hash is accepted (stored, or
verified) only with ``MIN_ITERATIONS`` to ``MAX_ITERATIONS`` iterations: a tenant cannot make anonymous login
attempts cost the node seconds of CPU each, and ``iterations=0`` is refused, not a crash.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from registry.snms_tokens import Tokens, key_generation
from registry.store import Actor
from resolver.config import RegistrySettings
from resolver.errors import AuthenticationFailed, AuthenticationNeeded, BadCredentials, TooManyFailures
from resolver.identifiers import ascii_upper
from resolver.records import HandleValue

__all__ = [
    "Authenticator",
    "Channel",
    "Identity",
    "actor_of",
    "hash_secret",
    "is_hashed_secret",
    "parse_basic",
    "verify_secret",
]

SECRET_SCHEME = "pbkdf2-sha1"
SECRET_ITERATIONS = 100_000
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 1_000_000
"""A pre-hashed secret may choose its cost within this range: 1M iterations of PBKDF2-HMAC-SHA1 is ~0.15 s of
CPU per guess here, the most one tenant's key may make every login attempt cost the node."""
SECRET_LENGTH = 20
IDENTITY_FACTOR = 10
ADDRESS_FACTOR = 5
_HANDLE_AUTH_FIELD = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_VERIFIED_MAX = 10_000
_LIMITER_MAX_KEYS = 100_000

SessionIdentity = Callable[[str], Awaitable["Identity | None"]]
"""``identify(session_id)``: the identity a session authenticated; raises BadCredentials for an unknown one."""
ValuesOf = Callable[[str], Awaitable[Sequence[HandleValue] | None]]


@dataclass(frozen=True, slots=True)
class Identity:
    """``index:handle``; index 0 means "proved by any secret key of the handle" and matches no HS_ADMIN index."""

    handle: str
    index: int

    @property
    def key(self) -> str:
        return ascii_upper(self.handle)

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``300:88.1/ADMIN`` or a bare handle (index 0); raises ValueError for anything else."""
        head, sep, rest = text.partition(":")
        if sep and head.isdigit():
            index, handle = int(head), rest
        else:
            index, handle = 0, text
        if "/" not in handle or not handle.split("/", 1)[0]:
            raise ValueError(f"identity {text!r} is not index:prefix/suffix")
        return cls(handle, index)


# --- secrets -------------------------------------------------------------------------------------------------


def _derive(secret: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA1(), length=length, salt=salt, iterations=iterations).derive(secret)


def hash_secret(secret: bytes, *, iterations: int = SECRET_ITERATIONS) -> str:
    """The stored form of a secret key (PBKDF2-HMAC-SHA1 with a random salt)."""
    salt = os.urandom(16)
    key = _derive(secret, salt, iterations, SECRET_LENGTH)
    return f"{SECRET_SCHEME}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def is_hashed_secret(text: str) -> bool:
    """Whether ``text`` claims to be a stored hash (``StoredSecret.parse`` decides whether it is a usable one)."""
    return text.startswith(SECRET_SCHEME + "$")


@dataclass(frozen=True, slots=True)
class StoredSecret:
    salt: bytes
    iterations: int
    key: bytes

    @classmethod
    def parse(cls, text: str) -> StoredSecret | None:
        """The hash's parts; None unless it is well-formed, with an iteration count inside the accepted range."""
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != SECRET_SCHEME or not parts[1].isdigit() or len(parts[1]) > 7:
            return None
        iterations = int(parts[1])
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            return None
        try:
            salt, key = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
        except ValueError:
            return None
        if not salt or not 16 <= len(key) <= 64:
            return None
        return cls(salt, iterations, key)


def verify_secret(stored: str, secret: bytes) -> bool:
    """Constant-time check of ``secret`` against a stored hash; False for anything unparsable."""
    parsed = StoredSecret.parse(stored)
    if parsed is None:
        return False
    candidate = _derive(secret, parsed.salt, parsed.iterations, len(parsed.key))
    return hmac.compare_digest(candidate, parsed.key)


# --- Basic ---------------------------------------------------------------------------------------------------


def parse_basic(header: str) -> tuple[Identity, bytes]:
    """Identity and password bytes from ``Authorization: Basic ...``; raises BadCredentials when malformed."""
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1].strip(), validate=True)
    except (IndexError, ValueError):
        raise BadCredentials("Malformed Basic credentials") from None
    username, sep, password = decoded.partition(b":")
    if not sep:
        raise BadCredentials("Malformed Basic credentials")
    try:
        name = unquote_to_bytes(username).decode("utf-8")
        return Identity.parse(name), password
    except (UnicodeDecodeError, ValueError):
        raise BadCredentials() from None


# --- secure channel ------------------------------------------------------------------------------------------


class Channel:
    """What a request's connection tells: whether it is secure, and which client address it comes from.

    Both trust ``X-Forwarded-*`` headers only from ``trusted_proxies``: behind a TLS-terminating proxy every
    connection comes from the proxy, so the failure limits key on the forwarded client address instead.
    """

    __slots__ = ("_networks",)

    def __init__(self, settings: RegistrySettings) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)

    def _trusted(self, address: str | None) -> bool:
        try:
            parsed = ipaddress.ip_address(address) if address else None
        except ValueError:
            return False
        return parsed is not None and any(parsed in net for net in self._networks)

    def is_secure(self, request: web.Request) -> bool:
        """Secure over TLS, or from a trusted proxy that forwarded an HTTPS request."""
        if request.secure:
            return True
        if not self._networks or request.headers.get("X-Forwarded-Proto", "").lower() != "https":
            return False
        return self._trusted(request.remote)

    def client_address(self, request: web.Request) -> str:
        """The nearest address in ``X-Forwarded-For`` that is not a trusted proxy (the peer when there is none)."""
        peer = request.remote or "?"
        forwarded = request.headers.get("X-Forwarded-For")
        if not forwarded or not self._trusted(peer):
            return peer
        for hop in reversed(forwarded.split(",")):
            hop = hop.strip()
            if hop and not self._trusted(hop):
                return hop[:64]
        return peer


# --- failure limits ------------------------------------------------------------------------------------------


def _address_key(peer: str) -> str:
    """What the per-address limits count for client address ``peer``: an IPv6 address's /64 (an IPv4-mapped one
    as IPv4), anything else as it is."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return peer


class FailureLimiter:
    """Sliding-window count of failures per key; bounded in keys so a flood of names cannot grow it."""

    __slots__ = ("_clock", "_failures", "limit", "window")

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        times = self._failures.get(key)
        if not times:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def fail(self, key: str) -> None:
        times = self._failures.pop(key, None) or deque()
        times.append(self._clock())
        if len(times) > self.limit:
            times.popleft()
        self._failures[key] = times
        if len(self._failures) > _LIMITER_MAX_KEYS:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


# --- the authenticator ---------------------------------------------------------------------------------------


class Authenticator:
    """Turns a request's credentials into an :class:`Identity` (or None for an anonymous request)."""

    def __init__(
        self,
        settings: RegistrySettings,
        channel: Channel,
        values_of: ValuesOf,
        session_identity: SessionIdentity,
        *,
        tokens: Tokens | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.is_secure = channel.is_secure
        self.client_address = channel.client_address
        self._values_of = values_of
        self._session_identity = session_identity
        self.tokens = tokens
        limit, window = settings.auth_failure_limit, settings.auth_failure_window
        self._pair_limiter = FailureLimiter(limit, window, clock)
        self._identity_limiter = FailureLimiter(limit * IDENTITY_FACTOR, window, clock)
        self._address_limiter = FailureLimiter(limit * ADDRESS_FACTOR, window, clock)
        self._verified: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self.failures: dict[str, int] = {
            "bad_secret": 0,
            "unknown_identity": 0,
            "malformed": 0,
            "rate_limited": 0,
            "bad_token": 0,
        }

    async def identify(self, request: web.Request) -> Identity | None:
        """The authenticated identity, None when the request carries no usable credentials.

        Raises BadCredentials (401) for credentials that do not verify, TooManyFailures (429) past the limit.
        """
        header = request.headers.get("Authorization")
        if not header or not self.is_secure(request):
            return None
        scheme = header.split(" ", 1)[0].lower()
        if scheme == "basic":
            identity, password = self._parse(header)
            await self.verify_password(identity, password, self.client_address(request))
            return identity
        if scheme == "handle":
            return await self._session_identity(parse_handle_authorization(header).get("sessionId", ""))
        if scheme == "bearer" and self.tokens is not None:
            return await self._bearer(self.tokens, header.split(" ", 1)[-1].strip())
        return None

    async def _bearer(self, tokens: Tokens, token: str) -> Identity:
        """The identity of a valid token whose secret keys are still those it was issued for (revoked, rotated or
        removed keys end it: ``registry/snms_tokens.py``)."""
        try:
            claims = tokens.verify(token)
            identity = Identity.parse(claims.subject)
        except BadCredentials:
            self.failures["bad_token"] += 1
            raise
        if key_generation(await self.key_values(identity, "HS_SECKEY")) != claims.generation:
            self.failures["bad_token"] += 1
            raise BadCredentials("Bearer token revoked: its identity's key was changed or removed")
        return identity

    async def require(self, request: web.Request, handle: str | None = None) -> Identity:
        """The authenticated identity; AuthenticationNeeded (401, 403 on plain HTTP) when there is none."""
        try:
            identity = await self.identify(request)
        except AuthenticationNeeded as exc:
            exc.about(handle)
            raise
        if identity is None:
            raise AuthenticationNeeded.on_channel(self.is_secure(request), handle=handle)
        return identity

    def _parse(self, header: str) -> tuple[Identity, bytes]:
        try:
            return parse_basic(header)
        except BadCredentials:
            self.failures["malformed"] += 1
            raise

    async def key_values(self, identity: Identity, kind: str) -> list[HandleValue]:
        """The ``kind`` (HS_SECKEY or HS_PUBKEY) values that can prove ``identity`` (index 0: any of them)."""
        values = await self._values_of(identity.handle)
        return [v for v in values or () if v.type_key() == kind and identity.index in (0, v.index)]

    async def verify_password(self, identity: Identity, password: bytes, peer: str) -> Identity:
        """Raise unless ``password`` is a secret key of ``identity``; counts and limits failures. Returns the
        identity at the index of the key that matched (``identity`` itself when it names one)."""
        wait = self.blocked_for(identity, peer)
        if wait > 0:
            self.failures["rate_limited"] += 1
            raise TooManyFailures(wait)
        ceiling = self._identity_limiter.retry_after(identity.key)
        values = await self.key_values(identity, "HS_SECKEY")
        if not values:
            self.failures["unknown_identity"] += 1
        else:
            for value in values:
                if await self._check(identity, value, password):
                    self.succeed(identity, peer)
                    return Identity(identity.handle, value.index)
            self.failures["bad_secret"] += 1
        self.fail(identity, peer)
        if ceiling > 0:
            raise TooManyFailures(ceiling)
        raise BadCredentials()

    def blocked_for(self, identity: Identity, peer: str) -> float:
        """Seconds until ``identity`` may try again from ``peer`` (0: now): its (identity, address) pair's limit and
        the address's; the identity's ceiling never blocks a try (see the module docstring)."""
        address = _address_key(peer)
        return max(
            self._pair_limiter.retry_after(f"{identity.key} {address}"),
            self._address_limiter.retry_after(address),
        )

    def fail(self, identity: Identity, peer: str) -> None:
        address = _address_key(peer)
        self._pair_limiter.fail(f"{identity.key} {address}")
        self._identity_limiter.fail(identity.key)
        self._address_limiter.fail(address)

    def succeed(self, identity: Identity, peer: str) -> None:
        """The owner proved itself from ``peer``: its own earlier slips there are forgiven."""
        self._pair_limiter.clear(f"{identity.key} {_address_key(peer)}")

    async def _check(self, identity: Identity, value: HandleValue, password: bytes) -> bool:
        if value.format != "string":
            return False
        stored = str(value.value)
        memo = (identity.key, value.index, stored)
        digest = hashlib.sha256(password).digest()
        known = self._verified.get(memo)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        # PBKDF2 is slow on purpose; keep it off the event loop.
        if not await asyncio.to_thread(verify_secret, stored, password):
            return False
        self._verified[memo] = digest
        if len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)
        return True


def parse_handle_authorization(header: str) -> dict[str, str]:
    """``Authorization: Handle k="v", ...`` as a dict (values percent-decoded, as Handle.Net does for ``id``)."""
    fields = {key: value for key, value in _HANDLE_AUTH_FIELD.findall(header)}
    if "id" in fields:
        try:
            fields["id"] = unquote_to_bytes(fields["id"]).decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid id in Handle authorization") from None
    return fields


def actor_of(request: web.Request, identity: Identity | str) -> Actor:
    """Who history records for a write: the identity, and the client's ``X-Request-Id`` (trimmed) or a fresh id."""
    return Actor(str(identity), request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex)
