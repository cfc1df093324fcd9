"""What an identity may do: HS_ADMIN values, HS_VLIST groups, node operators, and the enterprise wall.

Handle.Net's model (research/handle-rest-api.md §1.4, §4.4): an HS_ADMIN value names an admin ``(H, I)`` and a
12-bit permission mask. An identity ``(h, i)`` holds those permissions when ``(h, i) == (H, I)`` (``I = 0``
admits any index of ``H``), or when the value at ``(H, I)`` is an HS_VLIST that contains ``(h, i)``, recursively
(at most ``MAX_VLIST_DEPTH`` levels, so a cycle cannot loop). An identity authenticated with index 0 matches only
``I = 0`` references (transcript A10: ``88.TEST/ADMIN`` without an index is not the admin ``300:88.TEST/ADMIN``).

Whose HS_ADMIN values count: for creating a handle, those of ``0.NA/<prefix>`` (the nearest existing prefix handle
up the chain); for changing an existing handle, its own, or the prefix's when it has none.

On top of that, an enterprise identity (anyone but a node operator) can only ever write under its own prefix: the
prefix of its identity handle, or a prefix derived from it. Whatever HS_ADMIN values a request carries, it cannot
reach another enterprise's handles. Node operators (configured, or listed in the ``operators`` table) may do
anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import IntEnum

from registry.auth import Identity
from resolver.errors import InsufficientPermissions, InvalidAdmin
from resolver.identifiers import ascii_upper, prefix_chain
from resolver.records import HandleValue

__all__ = ["MAX_VLIST_DEPTH", "Perm", "Permissions", "admin_permissions", "within_prefix"]

MAX_VLIST_DEPTH = 5

Fetch = Callable[[str], Awaitable[Sequence[HandleValue] | None]]
"""Values of a handle by name (None when absent); the caller decides whether it reads the cache or the database."""


class Perm(IntEnum):
    """Bit numbers of the HS_ADMIN mask; the mask string's leftmost character is bit 11."""

    ADD_HANDLE = 0
    DELETE_HANDLE = 1
    ADD_DERIVED_PREFIX = 2
    DELETE_DERIVED_PREFIX = 3
    MODIFY_VALUE = 4
    REMOVE_VALUE = 5
    ADD_VALUE = 6
    MODIFY_ADMIN = 7
    REMOVE_ADMIN = 8
    ADD_ADMIN = 9
    READ_VALUE = 10
    LIST_HANDLES = 11


def has_bit(mask: str, perm: Perm) -> bool:
    position = len(mask) - 1 - perm
    return 0 <= position < len(mask) and mask[position] == "1"


def admin_permissions(values: Iterable[HandleValue]) -> list[tuple[str, int, str]]:
    """``(admin handle, admin index, mask)`` of every HS_ADMIN value."""
    out = []
    for value in values:
        if value.format == "admin" and value.type_key() == "HS_ADMIN":
            admin = value.value
            out.append((str(admin["handle"]), int(admin["index"]), str(admin["permissions"])))
    return out


def within_prefix(identity: Identity, prefix: str) -> bool:
    """Whether ``prefix`` is the identity's own prefix or derived from it (the enterprise wall)."""
    own = ascii_upper(identity.handle.split("/", 1)[0])
    target = ascii_upper(prefix)
    return target == own or target.startswith(own + ".")


class Permissions:
    """Answers "may this identity do that" from HS_ADMIN/HS_VLIST values fetched through ``fetch``."""

    def __init__(self, fetch: Fetch, is_operator: Callable[[Identity], Awaitable[bool]]) -> None:
        self.fetch = fetch
        self.is_operator = is_operator

    async def prefix_admins(self, prefix: str) -> list[tuple[str, int, str]]:
        """HS_ADMIN entries of the nearest existing ``0.NA/<prefix>`` up the chain."""
        for candidate in prefix_chain(prefix):
            values = await self.fetch(f"0.NA/{candidate}")
            if values is not None:
                return admin_permissions(values)
        return []

    async def require(
        self,
        identity: Identity,
        prefix: str,
        admins: Sequence[tuple[str, int, str]],
        needed: Iterable[Perm],
        *,
        handle: str | None = None,
    ) -> None:
        """Raise InvalidAdmin (rc 400) or InsufficientPermissions (rc 401) unless ``identity`` holds every bit."""
        if await self.is_operator(identity):
            return
        if not within_prefix(identity, prefix):
            raise InvalidAdmin(f"{identity} may not change handles under prefix {prefix}", handle=handle)
        granted = await self._granted(identity, admins)
        if granted is None:
            raise InvalidAdmin(handle=handle)
        missing = [p.name for p in needed if not has_bit(granted, p)]
        if missing:
            raise InsufficientPermissions(f"{identity} lacks {', '.join(missing)}", handle=handle)

    async def _granted(self, identity: Identity, admins: Sequence[tuple[str, int, str]]) -> str | None:
        """The union of the masks of every HS_ADMIN entry the identity belongs to; None when it is in none."""
        union = 0
        member = False
        for admin_handle, admin_index, mask in admins:
            if await self._is_member(identity, admin_handle, admin_index, depth=0):
                member = True
                union |= int(mask, 2) if mask else 0
        return format(union, "012b") if member else None

    async def _is_member(self, identity: Identity, handle: str, index: int, *, depth: int) -> bool:
        if ascii_upper(handle) == identity.key and (index == 0 or index == identity.index):
            return True
        if depth >= MAX_VLIST_DEPTH:
            return False
        values = await self.fetch(handle)
        if not values:
            return False
        for value in values:
            if value.type_key() == "HS_VLIST" and (index == 0 or value.index == index):
                for ref in value.value:
                    if await self._is_member(identity, str(ref["handle"]), int(ref["index"]), depth=depth + 1):
                        return True
        return False
