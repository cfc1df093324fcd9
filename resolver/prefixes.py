"""Which prefixes this node answers for: the in-memory copy of the ``prefixes`` table.

A handle is answered here when its governing prefix or one of that prefix's ancestors is homed: a secondary
node that homes ``88.118`` answers authoritatively (404 for unknown handles) under ``88.118.8`` as well. Any other
handle gets rc 301 "That prefix doesn't live here" without touching the database. The table is small, loaded at
start and reloaded when a ``prefixes`` change notification arrives (``changes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from resolver.identifiers import ascii_upper, prefix_chain
from resolver.store import PrefixRow

__all__ = ["PrefixTable"]

_MAX_REMEMBERED = 10_000


class PrefixTable:
    """Homed (and, later, delegated) prefixes by ASCII-upper-cased key."""

    __slots__ = ("_answers", "_kinds", "_spellings")

    def __init__(self, rows: Iterable[PrefixRow] = ()) -> None:
        self._kinds: dict[str, str] = {}
        self._spellings: dict[str, str] = {}
        self._answers: dict[str, bool] = {}
        self.replace(rows)

    def replace(self, rows: Iterable[PrefixRow]) -> None:
        rows = list(rows)
        self._kinds = {row.key: row.kind for row in rows}
        self._spellings = {row.key: row.prefix for row in rows}
        self._answers = {}

    def homed(self) -> list[str]:
        """The prefixes homed here, as spelled when they were added, sorted."""
        return sorted(self._spellings[key] for key, kind in self._kinds.items() if kind == "homed")

    def homes(self, prefix: str) -> bool:
        """True when ``prefix`` or an ancestor of it is homed here (answers remembered until the table changes)."""
        answer = self._answers.get(prefix)
        if answer is None:
            kinds = self._kinds
            answer = any(kinds.get(p) == "homed" for p in prefix_chain(ascii_upper(prefix)))
            if len(self._answers) >= _MAX_REMEMBERED:
                self._answers.clear()
            self._answers[prefix] = answer
        return answer
