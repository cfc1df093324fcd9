"""``page`` and ``pageSize`` as Handle.Net's listing endpoints take them (transcripts D1–D12, D13–D16).

Both given and non-negative: that page (``page`` counts from 0); either absent or negative: everything. A value
that is not an integer, or is beyond ``MAX_PAGING`` (the store multiplies the two into a 64-bit offset), is 400
rc 4 rather than a database error.
"""

from __future__ import annotations

from collections.abc import Mapping

from resolver.errors import ProtocolError
from resolver.numbers import ascii_integer

__all__ = ["MAX_PAGING", "Page", "paging"]

MAX_PAGING = (1 << 31) - 1


class Page:
    """One page of a listing: ``limit`` items after skipping ``offset``."""

    __slots__ = ("number", "offset", "size")

    def __init__(self, number: int, size: int) -> None:
        self.number = number
        self.size = size
        self.offset = number * size

    def cut(self, items: list[str]) -> list[str]:
        """This page of an in-memory list."""
        return items[self.offset : self.offset + self.size]


def _number(raw: str, name: str) -> int:
    number = ascii_integer(raw.strip(), max_digits=len(str(MAX_PAGING)))
    if number is None or abs(number) > MAX_PAGING:
        raise ProtocolError(f"Invalid paging parameter {name}={raw[:64]!r}: an integer up to {MAX_PAGING} expected")
    return number


def paging(query: Mapping[str, str]) -> Page | None:
    """The page asked for, or None for the whole listing."""
    page, size = query.get("page"), query.get("pageSize")
    number = _number(page, "page") if page is not None else None
    count = _number(size, "pageSize") if size is not None else None
    if number is None or count is None or number < 0 or count < 0:
        return None
    return Page(number, count)
