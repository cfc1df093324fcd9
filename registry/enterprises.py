"""Onboarding an enterprise: its prefix homed here, its prefix handle, and its first admin identity.

For prefix ``P`` one transaction creates:
- the ``prefixes`` row (homed) and the ``enterprises`` row (name, unified social credit code, contact);
- ``0.NA/P``: HS_ADMIN at 100 granting every permission to the group ``200:0.NA/P``, and at index 200 an
  HS_VLIST listing ``300:P/ADMIN`` — the shape pyhandle's default HS_ADMIN (``200:0.NA/<prefix>``) points at;
- ``P/ADMIN``: a public HS_ADMIN (so an anonymous GET answers 200 rc 1, which pyhandle needs to start) and the
  HS_SECKEY at index 300, stored hashed; the secret is returned once and never again.

Node operators are identities the same way (``idnode operator add``), recorded in the ``operators`` table.

An enterprise prefix must lie under a prefix this node homes (a secondary node allocates from its own range),
and tenants never nest: no enterprise may sit on a prefix derived from another's (``88.118.8.1`` while
``88.118.8`` belongs to someone else), nor above one, since the enterprise wall (``permissions.within_prefix``)
lets an identity act on the prefixes derived from its own. The unified social credit code, when given, must pass
GB 32100's checks (``registry/credit_codes.py``).

``onboard_next`` numbers the prefix itself: the smallest ``n >= 1`` for which ``<under>.n`` is free (neither homed,
delegated nor an enterprise's, with nothing derived from it taken either), so ``88.118.1``, ``88.118.2``, …
``under`` defaults to the node prefix: the one homed prefix that is neither an enterprise's nor under another
homed prefix (400 when there are none or several). Numbering happens under the tenancy lock, so two concurrent
allocations get different numbers.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from registry.auth import hash_secret
from registry.credit_codes import validate_credit_code
from registry.store import Actor, RegistryStore, WriteTransaction
from resolver.errors import HandleAlreadyExists, HandleNotFound, InvalidHandle, PrefixNotHomed, ProtocolError
from resolver.identifiers import ascii_upper, parse, prefix_chain, validate_text
from resolver.records import decode_values, values_to_stored

__all__ = [
    "ADMIN_SUFFIX",
    "Credentials",
    "add_operator",
    "home_prefix",
    "identity_values",
    "insert_handle",
    "new_secret",
    "onboard",
    "onboard_next",
    "remove_prefix",
    "renew_secret",
    "validate_prefix",
]

ALL_PERMISSIONS = "111111111111"
ADMIN_SUFFIX = "ADMIN"


@dataclass(frozen=True, slots=True)
class Credentials:
    identity: str
    secret: str

    def as_json(self) -> dict[str, str]:
        return {"identity": self.identity, "secret": self.secret}


def validate_prefix(prefix: str) -> str:
    """A prefix: valid handle text without ``/``, dot-separated non-empty segments."""
    validate_text(prefix, max_bytes=64)
    if "/" in prefix or any(not part for part in prefix.split(".")):
        raise InvalidHandle(f"Invalid prefix {prefix!r}: use dot-separated segments such as 88.118.8", handle=prefix)
    return prefix


def identity_values(handle: str, hashed: str, *, permissions: str = ALL_PERMISSIONS) -> str:
    """The stored values of an identity handle: an HS_ADMIN at 100 naming its own key at 300 with ``permissions``,
    and that key (the HS_SECKEY, hashed, readable by its admins only)."""
    return values_to_stored(
        decode_values(
            [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": handle, "index": 300, "permissions": permissions},
                    },
                },
                {"index": 300, "type": "HS_SECKEY", "data": hashed, "permissions": "1100"},
            ]
        )
    ).decode()


async def insert_handle(tx: WriteTransaction, handle: str, stored: str) -> None:
    """Create ``handle`` inside ``tx``; 409 rc 101 when it exists."""
    parsed = parse(handle, bare_is_prefix=False)
    if await tx.insert(parsed.key, handle, parsed.prefix_key, stored, None) is None:
        raise HandleAlreadyExists(f"{handle} already exists", handle=handle)


async def new_secret() -> tuple[str, str]:
    """A fresh secret and its stored (hashed) form, hashed off the event loop. Never starting with ``-``: given
    as ``--upstream-secret S`` (or to any command line), such a secret would read as a flag."""
    secret = secrets.token_urlsafe(24)
    while secret.startswith("-"):
        secret = secrets.token_urlsafe(24)
    return secret, await asyncio.to_thread(hash_secret, secret.encode())


def _prefix_handle_values(prefix: str, admin: str) -> str:
    return values_to_stored(
        decode_values(
            [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": f"0.NA/{prefix}", "index": 200, "permissions": ALL_PERMISSIONS},
                    },
                },
                {
                    "index": 200,
                    "type": "HS_VLIST",
                    "data": {"format": "vlist", "value": [{"handle": admin, "index": 300}]},
                },
            ]
        )
    ).decode()


async def _check_tenancy(tx: WriteTransaction, prefix: str, key: str) -> None:
    """Refuse a prefix outside what this node homes, or nested in (or above) another enterprise's; run under
    ``lock_tenancy``, or two concurrent onboardings could each pass before the other committed."""
    chain = prefix_chain(key)
    if not await tx.homed_among(chain):
        raise PrefixNotHomed(
            f"Prefix {prefix} is not under any prefix homed here; home its parent first (idnode prefix add)",
            handle=prefix,
        )
    taken = await tx.enterprise_prefixes(chain)
    if key in taken:
        raise HandleAlreadyExists(f"Prefix {prefix} already belongs to an enterprise", handle=prefix)
    if taken:
        raise HandleAlreadyExists(
            f"Prefix {prefix} lies under {taken[0]}, which belongs to another enterprise", handle=prefix
        )
    below = await tx.enterprises_under(key)
    if below:
        raise HandleAlreadyExists(
            f"Prefix {prefix} would contain {below[0]}, which belongs to another enterprise", handle=prefix
        )


@dataclass(frozen=True, slots=True)
class Enterprise:
    """What onboarding records about an enterprise besides its prefix."""

    name: str
    credit_code: str | None = None
    contact: str | None = None
    address: str | None = None

    def checked(self) -> Enterprise:
        """This enterprise with its name trimmed and credit code validated; 400 rc 4 otherwise."""
        if not self.name.strip() or "\x00" in self.name:
            raise ProtocolError("name must be a non-empty string without NUL characters")
        code = None if self.credit_code is None else validate_credit_code(self.credit_code)
        return Enterprise(self.name.strip(), code, self.contact, self.address)


async def _create(tx: WriteTransaction, prefix: str, enterprise: Enterprise, actor: Actor) -> Credentials:
    """Onboard ``prefix`` inside ``tx``, which holds the tenancy lock."""
    key = ascii_upper(prefix)
    admin = f"{prefix}/{ADMIN_SUFFIX}"
    secret, hashed = await new_secret()
    await _check_tenancy(tx, prefix, key)
    await tx.add_prefix(prefix, key, next(iter(prefix_chain(key)[1:]), None))
    await tx.add_enterprise(key, enterprise, actor.name)
    await insert_handle(tx, f"0.NA/{prefix}", _prefix_handle_values(prefix, admin))
    await insert_handle(tx, admin, identity_values(admin, hashed))
    return Credentials(f"300:{admin}", secret)


async def onboard(
    store: RegistryStore,
    prefix: str,
    *,
    name: str,
    credit_code: str | None,
    contact: str | None,
    actor: Actor,
    address: str | None = None,
) -> Credentials:
    """Create the enterprise of ``prefix`` as described in the module docstring; 409 when it exists."""
    validate_prefix(prefix)
    enterprise = Enterprise(name, credit_code, contact, address).checked()
    async with store.transaction(actor) as tx:
        await tx.lock_tenancy()
        return await _create(tx, prefix, enterprise, actor)


async def onboard_next(
    store: RegistryStore, enterprise: Enterprise, *, under: str | None, actor: Actor
) -> tuple[str, Credentials]:
    """Onboard ``enterprise`` on the next free number under ``under`` (see the module docstring); its prefix and
    credentials."""
    enterprise = enterprise.checked()
    async with store.transaction(actor) as tx:
        await tx.lock_tenancy()
        if under is None:
            under = await _node_prefix(tx)
        validate_prefix(under)
        taken = await tx.numbered_under(ascii_upper(under))
        number = next(n for n in range(1, len(taken) + 2) if n not in taken)
        prefix = f"{under}.{number}"
        return prefix, await _create(tx, prefix, enterprise, actor)


async def _node_prefix(tx: WriteTransaction) -> str:
    """The one homed prefix that is not an enterprise's and lies under no other homed prefix."""
    tops = await tx.node_prefixes()
    if len(tops) != 1:
        found = ", ".join(tops) or "none"
        raise ProtocolError(f"under: give the prefix to number under (this node homes several or none: {found})")
    return tops[0]


async def home_prefix(store: RegistryStore, prefix: str) -> bool:
    """Home ``prefix`` on this node (no enterprise); False when it was homed already."""
    validate_prefix(prefix)
    return await store.add_prefix(prefix, ascii_upper(prefix))


async def add_operator(store: RegistryStore, handle: str, *, actor: Actor) -> Credentials:
    """Create an operator identity handle (its prefix must be homed) and record it as a node operator."""
    parsed = parse(handle, bare_is_prefix=False)
    secret, hashed = await new_secret()
    identity = f"300:{handle}"
    async with store.transaction(actor) as tx:
        if not await tx.homed_among(prefix_chain(parsed.prefix_key)):
            raise HandleNotFound(
                f"Prefix {parsed.prefix} is not homed here; run idnode prefix add first", handle=handle
            )
        await insert_handle(tx, handle, identity_values(handle, hashed))
        await tx.add_operator(ascii_upper(identity), identity)
    return Credentials(identity, secret)


async def renew_secret(store: RegistryStore, handle: str, *, actor: Actor) -> Credentials:
    """Give the identity ``handle`` (an enterprise's ``P/ADMIN`` or an operator) a new secret; the old one stops
    working. Secrets are stored hashed, so a lost one cannot be shown again, only replaced (the demo does this
    at every start to print working credentials)."""
    parsed = parse(handle, bare_is_prefix=False)
    secret, hashed = await new_secret()
    async with store.transaction(actor) as tx:
        if await tx.lock(parsed.key) is None:
            raise HandleNotFound(f"{handle} does not exist", handle=handle)
        await tx.update(parsed.key, identity_values(handle, hashed), None)
    return Credentials(f"300:{handle}", secret)


async def remove_prefix(store: RegistryStore, prefix: str, *, force: bool, actor: Actor) -> int:
    """Unhome ``prefix`` and the prefixes derived from it, with their enterprises; refuses (409) while they have
    handles unless ``force``.

    Returns how many handles were deleted. The enterprise's own ``0.NA/P`` and ``P/ADMIN`` do not count as
    "handles of the prefix" for the refusal.
    """
    key = ascii_upper(prefix)
    own = [f"0.NA/{key}", f"{key}/{ADMIN_SUFFIX}"]
    async with store.transaction(actor) as tx:
        await tx.lock_tenancy()
        if not await tx.homed_among([key]):
            raise HandleNotFound(f"Prefix {prefix} is not homed here", handle=prefix)
        count = await tx.count_under(key, besides=own)
        if count and not force:
            raise HandleAlreadyExists(
                f"Prefix {prefix} still has {count} handle(s); add ?force=true to delete them with it", handle=prefix
            )
        return await tx.remove_prefix(key)
