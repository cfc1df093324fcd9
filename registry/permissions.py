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

A suspended enterprise (``registry/lifecycle.py``) may not change anything under its prefix: every write, single
or batch, handle or template, passes through ``Permissions.require``, which refuses it there (403 rc 401) before
looking at HS_ADMIN values. Reading and listing are not changes and stay allowed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from enum import IntEnum

from registry.auth import Identity
from registry.store import RegistryStore
from resolver.errors import InsufficientPermissions, InvalidAdmin
from resolver.identifiers import Handle, ascii_upper, governing_prefix, prefix_chain
from resolver.records import HandleValue
from resolver.tallies import prefix_of_key

__all__ = [
    "MAX_VLIST_DEPTH",
    "Operators",
    "Perm",
    "Permissions",
    "admin_permissions",
    "needed_for_change",
    "within_prefix",
]

MAX_VLIST_DEPTH = 5
OPERATORS_TTL = 5.0
"""Seconds the ``operators`` table is trusted before it is read again (a new operator works within that)."""

Suspended = Callable[[str], Awaitable[str | None]]
"""The suspended enterprise prefix a prefix is or lies under, None when there is none (``Suspensions.covering``)."""
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


def needed_for_change(before: Sequence[HandleValue], after: Sequence[HandleValue]) -> set[Perm]:
    """The HS_ADMIN bits a change from ``before`` to ``after`` needs: add/remove/modify, value or admin."""
    old = {v.index: v for v in before}
    new = {v.index: v for v in after}
    needed: set[Perm] = set()

    def note(value: HandleValue, value_perm: Perm, admin_perm: Perm) -> None:
        needed.add(admin_perm if value.type_key() == "HS_ADMIN" else value_perm)

    for index, value in new.items():
        if index not in old:
            note(value, Perm.ADD_VALUE, Perm.ADD_ADMIN)
        elif not old[index].same_content(value):
            note(value, Perm.MODIFY_VALUE, Perm.MODIFY_ADMIN)
            if old[index].type_key() == "HS_ADMIN" and value.type_key() != "HS_ADMIN":
                needed.add(Perm.REMOVE_ADMIN)
    for index, value in old.items():
        if index not in new:
            note(value, Perm.REMOVE_VALUE, Perm.REMOVE_ADMIN)
    return needed


_VERBS = {Perm.LIST_HANDLES: "list handles", Perm.READ_VALUE: "read values"}
_READS = frozenset(_VERBS)


def _refusal(identity: Identity, prefix: str, needed: Iterable[Perm]) -> str:
    """Why the enterprise wall refused, in the words of what was asked (listing is not changing)."""
    verbs = {_VERBS.get(perm, "change handles") for perm in needed} or {"change handles"}
    return f"{identity} may not {' or '.join(sorted(verbs))} under prefix {prefix}"


class Operators:
    """Node operators: configured identities, and those in the ``operators`` table (re-read every few seconds)."""

    __slots__ = ("_clock", "_configured", "_loaded_at", "_store", "_table")

    def __init__(
        self, store: RegistryStore, configured: Iterable[str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._configured = {ascii_upper(op) for op in configured}
        self._table: set[str] = set()
        self._loaded_at = float("-inf")
        self._clock = clock

    async def includes(self, identity: Identity) -> bool:
        name = ascii_upper(str(identity))
        if name in self._configured:
            return True
        now = self._clock()
        if now - self._loaded_at > OPERATORS_TTL:
            self._table = await self._store.operator_keys()
            self._loaded_at = now
        return name in self._table


def within_prefix(identity: Identity, prefix: str) -> bool:
    """Whether ``prefix`` is the identity's own prefix or derived from it (the enterprise wall). An identity that is
    a prefix handle (``300:0.NA/88.118``, a child node's) owns the prefix it names, not all of ``0.NA``."""
    own = ascii_upper(prefix_of_key(ascii_upper(identity.handle)))
    target = ascii_upper(prefix)
    return target == own or target.startswith(own + ".")


class Permissions:
    """Answers "may this identity do that" from HS_ADMIN/HS_VLIST values fetched through ``fetch``."""

    __slots__ = ("_creates", "fetch", "is_operator", "suspended")

    def __init__(
        self,
        fetch: Fetch,
        is_operator: Callable[[Identity], Awaitable[bool]],
        suspended: Suspended,
        *,
        creates: set[tuple[Identity, str, str]] | None = None,
    ) -> None:
        self.fetch = fetch
        self.is_operator = is_operator
        self.suspended = suspended
        self._creates = creates
        """``memoized``: the (identity, prefix, governing prefix) creates already allowed, None when not kept."""

    def memoized(self) -> Permissions:
        """These permissions with every record read remembered for the view's life: a batch decides all its items
        before it writes any, against the records as they were, so each prefix handle and admin group needs reading
        once per batch, not once per item. Allowing a create depends on the identity and the prefix only, so a
        create allowed once is allowed again without another look."""
        memo: dict[str, Sequence[HandleValue] | None] = {}

        async def fetch(text: str) -> Sequence[HandleValue] | None:
            if text not in memo:
                memo[text] = await self.fetch(text)
            return memo[text]

        return Permissions(fetch, self.is_operator, self.suspended, creates=set())

    async def authorize_change(
        self,
        identity: Identity,
        handle: Handle,
        before: Sequence[HandleValue] | None,
        after: Sequence[HandleValue] | None,
    ) -> None:
        """Raise unless ``identity`` may turn ``before`` into ``after`` (None: absent / deleted)."""
        if before is None:
            allowed = (identity, handle.prefix, governing_prefix(handle))
            if self._creates is not None and allowed in self._creates:
                return
            admins = await self.prefix_admins(handle.prefix)
            await self.require(identity, allowed[2], admins, {Perm.ADD_HANDLE}, handle=handle.text)
            if self._creates is not None:
                self._creates.add(allowed)
            return
        admins = admin_permissions(before) or await self.prefix_admins(handle.prefix)
        needed = {Perm.DELETE_HANDLE} if after is None else needed_for_change(before, after)
        await self.require(identity, governing_prefix(handle), admins, needed, handle=handle.text)

    async def require_on_handle(
        self, identity: Identity, handle: Handle, values: Sequence[HandleValue], perm: Perm, *, echo: str | None
    ) -> None:
        """Raise unless ``identity`` holds ``perm`` by the handle's own HS_ADMIN values (else its prefix's)."""
        admins = admin_permissions(values) or await self.prefix_admins(handle.prefix)
        await self.require(identity, governing_prefix(handle), admins, {perm}, handle=echo)

    async def require_prefix_admin(self, identity: Identity, prefix: str, perm: Perm, *, echo: str) -> None:
        """Raise unless ``identity`` holds ``perm`` on ``0.NA/<prefix>`` (or is an operator)."""
        await self.require(identity, prefix, await self.prefix_admins(prefix), {perm}, handle=echo)

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
        needed: Collection[Perm],
        *,
        handle: str | None = None,
    ) -> None:
        """Raise InvalidAdmin (rc 400) or InsufficientPermissions (rc 401) unless ``identity`` holds every bit."""
        if await self.is_operator(identity):
            return
        if not within_prefix(identity, prefix):
            raise InvalidAdmin(_refusal(identity, prefix, needed), handle=handle)
        if not (needed and _READS.issuperset(needed)):  # a write, even one that changes nothing
            suspended = await self.suspended(prefix)
            if suspended is not None:
                raise InsufficientPermissions(
                    f"Enterprise {suspended} is suspended: its handles cannot be changed until an operator resumes it",
                    handle=handle,
                )
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
