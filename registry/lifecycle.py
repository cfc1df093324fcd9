"""An enterprise after onboarding: shown, changed, suspended, resumed and re-keyed by a node operator.

Shared by ``/api/enterprises`` (``registry/enterprise_api.py``) and ``idnode enterprise`` (``registry/cli.py``), so
both check the same things and write the same history: every change is an UPDATE of the ``enterprises`` row (or of
the ``P/ADMIN`` handle), which the change feed records with its actor (``schema/0007_change_feed.sql``).

- Suspension (``status = 'suspended'``) refuses the enterprise's writes in one place, ``Permissions.require``
  (403 rc 401 "enterprise … is suspended"); reads, and resolution of its handles, go on. ``Suspensions`` keeps the
  set of suspended prefixes for ``SUSPENSIONS_TTL`` seconds; the worker that suspends drops it at once, other
  workers (and a running node after ``idnode enterprise suspend``) see the change within that time.
- Re-keying gives ``P/ADMIN`` a new secret (``enterprises.renew_secret``) and ends the sessions that identity had
  opened: the old secret stops working at once, because the authenticator's memo of checked secrets is keyed by the
  stored hash, which changed, and the record cache follows the write's change notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from registry.credit_codes import validate_credit_code
from registry.enterprises import ADMIN_SUFFIX, Credentials, renew_secret, validate_prefix
from registry.store import Actor, EnterpriseRow, RegistryStore
from resolver.errors import HandleNotFound, ProtocolError
from resolver.identifiers import ascii_upper, prefix_chain

__all__ = [
    "PATCHABLE",
    "STATES",
    "SUSPENSIONS_TTL",
    "Suspensions",
    "enterprise_json",
    "rotate_secret",
    "set_state",
    "show",
    "update",
]

SUSPENSIONS_TTL = 1.0
STATES = ("active", "suspended")
PATCHABLE = {"name": "name", "contact": "contact", "address": "address", "creditCode": "credit_code"}
"""The JSON fields a PATCH may change, and their columns."""


def enterprise_json(row: EnterpriseRow) -> dict[str, Any]:
    """How the API (and ``idnode enterprise show``) shows an enterprise."""
    return {
        "prefix": row.prefix,
        "name": row.name,
        "creditCode": row.credit_code,
        "contact": row.contact,
        "address": row.address,
        "state": row.status,
        "admin": f"300:{row.prefix}/{ADMIN_SUFFIX}",
        "createdAt": row.created_at.isoformat(),
        "createdBy": row.created_by,
    }


async def show(store: RegistryStore, prefix: str) -> EnterpriseRow:
    """The enterprise of ``prefix``; 404 rc 100 when there is none."""
    row = await store.enterprise(ascii_upper(validate_prefix(prefix)))
    if row is None:
        raise HandleNotFound(f"No enterprise has prefix {prefix}", handle=prefix)
    return row


def _changes(patch: Mapping[str, Any]) -> dict[str, str | None]:
    """A JSON merge patch (RFC 7396) of the patchable fields as column changes; 400 rc 4 naming what is wrong."""
    unknown = sorted(set(patch) - set(PATCHABLE))
    if unknown:
        raise ProtocolError(f"Unknown field(s) {', '.join(unknown)}: only {', '.join(PATCHABLE)} can be changed")
    changes: dict[str, str | None] = {}
    for field, value in patch.items():
        if value is not None and (not isinstance(value, str) or "\x00" in value):
            raise ProtocolError(f"{field} must be a string without NUL characters, or null")
        if field == "name" and (value is None or not value.strip()):
            raise ProtocolError("name cannot be removed or blank")
        if field == "name":
            value = value.strip()
        elif field == "creditCode" and value is not None:
            value = validate_credit_code(value)
        changes[PATCHABLE[field]] = value
    return changes


async def update(store: RegistryStore, prefix: str, patch: Mapping[str, Any], *, actor: Actor) -> EnterpriseRow:
    """Apply ``patch`` to the enterprise of ``prefix``; the enterprise as it is now."""
    changes = _changes(patch)
    if not await store.update_enterprise(ascii_upper(validate_prefix(prefix)), changes, actor):
        raise HandleNotFound(f"No enterprise has prefix {prefix}", handle=prefix)
    return await show(store, prefix)


async def set_state(store: RegistryStore, prefix: str, state: str, *, actor: Actor) -> EnterpriseRow:
    """Suspend (``suspended``) or resume (``active``) the enterprise of ``prefix``."""
    if state not in STATES:
        raise ProtocolError(f"state must be one of {', '.join(STATES)}")
    if not await store.update_enterprise(ascii_upper(validate_prefix(prefix)), {"status": state}, actor):
        raise HandleNotFound(f"No enterprise has prefix {prefix}", handle=prefix)
    return await show(store, prefix)


async def rotate_secret(store: RegistryStore, prefix: str, *, actor: Actor) -> Credentials:
    """A new secret for the enterprise's ``P/ADMIN`` (shown once); its sessions are closed."""
    row = await show(store, prefix)
    admin = f"{row.prefix}/{ADMIN_SUFFIX}"
    credentials = await renew_secret(store, admin, actor=actor)
    await store.close_sessions_of(ascii_upper(admin))
    return credentials


class Suspensions:
    """Which enterprise prefixes are suspended, re-read at most every ``SUSPENSIONS_TTL`` seconds."""

    __slots__ = ("_clock", "_loaded_at", "_store", "_suspended")

    def __init__(self, store: RegistryStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._suspended: set[str] = set()
        self._loaded_at = float("-inf")

    def forget(self) -> None:
        """Read the table again at the next question (this worker just changed it)."""
        self._loaded_at = float("-inf")

    async def covering(self, prefix: str) -> str | None:
        """The suspended enterprise prefix ``prefix`` is (or lies under), None when there is none."""
        now = self._clock()
        if now - self._loaded_at > SUSPENSIONS_TTL:
            self._suspended = await self._store.suspended_prefixes()
            self._loaded_at = now
        if not self._suspended:
            return None
        return next((key for key in prefix_chain(ascii_upper(prefix)) if key in self._suspended), None)
