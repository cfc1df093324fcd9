"""Which prefixes this node answers for, and which it delegates: the in-memory copy of the ``prefixes`` table.

A handle's prefix is decided by the most specific row of its prefix chain (``88.118.8`` → ``88.118`` → ``88``):
- ``homed``: answered here, from the store. A secondary node that homes ``88.118`` answers authoritatively (404
  for unknown handles) under ``88.118.8`` as well, unless ``88.118.8`` (or something between) is delegated;
- ``delegated``: another node serves it (its prefix handle ``0.NA/<P>`` here carries an HS_SITE; the triggers of
  ``schema/0005_delegations.sql`` keep these rows), so a look-up is forwarded (``forward.py``);
- no row at all: a foreign prefix, forwarded through the upstream when there is one, else rc 301 without touching
  the database.

Prefix handles ``0.NA/<P>`` are the one exception: they are answered here whenever any prefix of ``P``'s chain has
a row, homed or delegated, since this node then holds the delegation records of that part of the tree (the
parent holds ``0.NA/88.118`` while ``88.118`` itself is served by the child). The table is small, loaded at start
and reloaded when a ``prefixes`` change notification arrives (``changes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from resolver.identifiers import Handle, ascii_upper, governing_prefix, prefix_chain
from resolver.store import PrefixRow

__all__ = ["PrefixTable", "Route"]

_MAX_REMEMBERED = 10_000


class Route(Enum):
    HOMED = "homed"
    DELEGATED = "delegated"
    FOREIGN = "foreign"


class PrefixTable:
    """Homed and delegated prefixes by ASCII-upper-cased key."""

    __slots__ = ("_kinds", "_routes", "_spellings")

    def __init__(self, rows: Iterable[PrefixRow] = ()) -> None:
        self._kinds: dict[str, str] = {}
        self._spellings: dict[str, str] = {}
        self._routes: dict[str, Route] = {}
        self.replace(rows)

    def replace(self, rows: Iterable[PrefixRow]) -> None:
        rows = list(rows)
        self._kinds = {row.key: row.kind for row in rows}
        self._spellings = {row.key: row.prefix for row in rows}
        self._routes = {}

    def homed(self) -> list[str]:
        """The prefixes homed here, as spelled when they were added, sorted."""
        return sorted(self._spellings[key] for key, kind in self._kinds.items() if kind == "homed")

    def route(self, prefix: str) -> Route:
        """How handles under ``prefix`` are answered (remembered until the table changes)."""
        route = self._routes.get(prefix)
        if route is None:
            nearest = self.nearest(prefix)
            route = Route.FOREIGN if nearest is None else Route(self._kinds[nearest])
            if len(self._routes) >= _MAX_REMEMBERED:
                self._routes.clear()
            self._routes[prefix] = route
        return route

    def nearest(self, prefix: str) -> str | None:
        """The key of the most specific row in ``prefix``'s chain, or None."""
        return next((p for p in prefix_chain(ascii_upper(prefix)) if p in self._kinds), None)

    def homes(self, prefix: str) -> bool:
        """True when ``prefix`` is answered here: it or an ancestor is homed, and nothing between is delegated."""
        return self.route(prefix) is Route.HOMED

    def holds(self, handle: Handle) -> bool:
        """Whether ``handle`` is answered from this node's store: a handle under a homed prefix, or a prefix handle
        in a part of the tree this node homes or delegates."""
        prefix = governing_prefix(handle)
        if handle.key.startswith("0.NA/"):
            return self.route(prefix) is not Route.FOREIGN
        return self.homes(prefix)
