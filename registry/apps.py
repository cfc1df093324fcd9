"""Application identities: an enterprise's systems (MES, ERP) each get an identity of their own, with chosen rights.

An app ``name`` of the enterprise ``P`` is the identity handle ``P/APP-<name>``: an HS_ADMIN at 100 naming the
enterprise's admin group ``200:0.NA/P`` (so the app cannot change its own key) and at 300 either a hashed HS_SECKEY
(``enterprises.new_secret``, the secret shown once) or the HS_PUBKEY the enterprise gave (a JWK or PEM, checked as
``registry/sessions.py`` reads it). Its rights are granted the Handle-native way, by an extra HS_ADMIN value
on the enterprise prefix handle ``0.NA/P`` naming ``300:P/APP-<name>`` with exactly the bits of its rights
(``RIGHTS``). The existing checks (``registry/permissions.py``) then apply unchanged: creates look at the prefix
handle's HS_ADMIN values, and so do changes, deletes and non-public reads of records that carry no HS_ADMIN of
their own. A record whose own HS_ADMIN names only ``200:0.NA/P`` (pyhandle's default) is not the app's to change.

The apps are listed from those HS_ADMIN values (their timestamp is when the app was created), so there is no table
to keep in step. Revoking removes the grant and the identity handle in one transaction and closes the app's
sessions, as ``lifecycle.rotate_secret`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from registry.enterprises import ALL_PERMISSIONS, insert_handle, new_secret
from registry.lifecycle import show
from registry.permissions import Fetch, Perm, admin_permissions, has_bit
from registry.sessions import public_key
from registry.store import Actor, RegistryStore, WriteTransaction
from resolver.errors import HandleAlreadyExists, HandleError, HandleNotFound, ProtocolError
from resolver.identifiers import ascii_upper
from resolver.records import HandleValue, decode_values, values_from_stored, values_to_stored

__all__ = ["APP_PREFIX", "RIGHTS", "AppRow", "add_app", "app_handle", "list_apps", "mask_of", "revoke_app"]

APP_PREFIX = "APP-"
RIGHTS: dict[str, tuple[Perm, ...]] = {
    "register": (Perm.ADD_HANDLE,),
    "update": (Perm.MODIFY_VALUE, Perm.ADD_VALUE, Perm.REMOVE_VALUE),
    "delete": (Perm.DELETE_HANDLE,),
    "read": (Perm.READ_VALUE,),
}
"""Each right and the HS_ADMIN bits it grants."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GRANT_INDEX = 101
"""The first index tried for a grant on the prefix handle (100 is the enterprise admins' HS_ADMIN)."""


@dataclass(frozen=True, slots=True)
class AppRow:
    name: str
    identity: str
    rights: list[str]
    created: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "identity": self.identity, "rights": self.rights, "created": self.created}


def app_handle(prefix: str, name: str) -> str:
    """``P/APP-<name>``; 400 rc 4 for a name that is not 1-64 letters, digits, ``.``, ``_`` or ``-``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProtocolError("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return f"{prefix}/{APP_PREFIX}{name}"


def mask_of(rights: Any) -> str:
    """The HS_ADMIN mask of a non-empty list of rights; 400 rc 4 naming an unknown one."""
    if not isinstance(rights, list) or not rights or not all(isinstance(r, str) for r in rights):
        raise ProtocolError(f"rights must be a non-empty list of {', '.join(RIGHTS)}")
    unknown = sorted(set(rights) - set(RIGHTS))
    if unknown:
        raise ProtocolError(f"Unknown right(s) {', '.join(unknown)}: use {', '.join(RIGHTS)}")
    bits = sum(1 << perm for right in set(rights) for perm in RIGHTS[right])
    return format(bits, "012b")


def _rights(mask: str) -> list[str]:
    return [right for right, perms in RIGHTS.items() if all(has_bit(mask, perm) for perm in perms)]


def _is_app(prefix_key: str, admin_handle: str) -> bool:
    return ascii_upper(admin_handle).startswith(f"{prefix_key}/{APP_PREFIX}")


def _identity_values(prefix: str, key: dict[str, Any]) -> str:
    """The app's identity handle: the enterprise admins administer it; ``key`` is its value at 300."""
    admin = {"handle": f"0.NA/{prefix}", "index": 200, "permissions": ALL_PERMISSIONS}
    return values_to_stored(
        decode_values([{"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}}, key])
    ).decode()


def _public_key(given: Any) -> dict[str, Any]:
    """The HS_PUBKEY value at 300 for a JWK (RSA or Ed25519) or a PEM string; 400 rc 4 when it is no such key."""
    data = {"format": "key", "value": given} if isinstance(given, dict) else given
    try:
        [value] = decode_values([{"index": 300, "type": "HS_PUBKEY", "data": data}])
        public_key(value)
    except (HandleError, ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        raise ProtocolError("publicKey must be an RSA or Ed25519 public key, as a JWK or a PEM string") from exc
    return {"index": 300, "type": "HS_PUBKEY", "data": data}


async def _prefix_values(tx: WriteTransaction, prefix: str) -> tuple[str, list[HandleValue]]:
    key = f"0.NA/{ascii_upper(prefix)}"
    locked = await tx.lock(key)
    if locked is None:
        raise HandleNotFound(f"0.NA/{prefix} does not exist", handle=prefix)
    return key, list(values_from_stored(locked[1]))


async def add_app(
    store: RegistryStore, prefix: str, name: str, rights: Any, *, actor: Actor, public_key: Any = None
) -> tuple[str, str | None]:
    """Create the app ``name`` of the enterprise ``prefix`` with ``rights``: its identity, and its secret (shown
    once), or None when it authenticates with ``public_key`` instead. 404 when there is no such enterprise, 409 when
    the app exists."""
    row = await show(store, prefix)
    handle = app_handle(row.prefix, name)
    mask = mask_of(rights)
    secret: str | None = None
    if public_key is None:
        secret, hashed = await new_secret()
        credential = {"index": 300, "type": "HS_SECKEY", "data": hashed, "permissions": "1100"}
    else:
        credential = _public_key(public_key)
    async with store.transaction(actor) as tx:
        key, values = await _prefix_values(tx, row.prefix)
        if any(ascii_upper(h) == ascii_upper(handle) for h, _, _ in admin_permissions(values)):
            raise HandleAlreadyExists(f"App {name} of {row.prefix} exists", handle=handle)
        used = {value.index for value in values}
        index = next(i for i in range(_GRANT_INDEX, _GRANT_INDEX + len(used) + 1) if i not in used)
        [grant] = decode_values(
            [
                {
                    "index": index,
                    "type": "HS_ADMIN",
                    "data": {"format": "admin", "value": {"handle": handle, "index": 300, "permissions": mask}},
                }
            ]
        )
        await tx.update(key, values_to_stored([*values, grant]).decode(), None)
        await insert_handle(tx, handle, _identity_values(row.prefix, credential))
    return f"300:{handle}", secret


async def list_apps(store: RegistryStore, fetch: Fetch, prefix: str) -> list[AppRow]:
    """The apps of the enterprise ``prefix``, in index order; ``fetch`` reads its prefix handle."""
    row = await show(store, prefix)
    values = await fetch(f"0.NA/{row.prefix}") or ()
    apps = []
    for value in values:
        if value.type_key() == "HS_ADMIN" and value.format == "admin" and _is_app(row.prefix, value.value["handle"]):
            handle = str(value.value["handle"])
            name = handle.split("/", 1)[1][len(APP_PREFIX) :]
            apps.append(AppRow(name, f"300:{handle}", _rights(str(value.value["permissions"])), value.timestamp))
    return apps


async def revoke_app(store: RegistryStore, prefix: str, name: str, *, actor: Actor) -> str:
    """Remove the app's grant and identity handle and close its sessions; the identity's handle key.
    404 when there is no such app."""
    row = await show(store, prefix)
    handle = app_handle(row.prefix, name)
    handle_key = ascii_upper(handle)
    async with store.transaction(actor) as tx:
        key, values = await _prefix_values(tx, row.prefix)
        kept = [v for v in values if not (v.type_key() == "HS_ADMIN" and ascii_upper(v.value["handle"]) == handle_key)]
        if len(kept) == len(values):
            raise HandleNotFound(f"{row.prefix} has no app {name}", handle=handle)
        await tx.update(key, values_to_stored(kept).decode(), None)
        if await tx.lock(handle_key) is not None:
            await tx.delete(handle_key)
    await store.close_sessions_of(handle_key)
    return handle_key
