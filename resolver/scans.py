"""Scan counts (issue 13 item 7): how often each handle's proxy answer was given, by link type, as plain integers.

The proxy calls :meth:`ScanCounts.count` once for every answer it gives for a handle: ``default`` for the redirect
to the record's URL, ``page`` for its values page, and a typed link's type when ``?linkType=`` selects one. Only
answers count: a 400, 404 or 503 names no scan of a record. The hot 302 pays one method call, one dict look-up by
link type and one integer increment in a dict keyed by the handle key it already computed.

The statistics recorder (``registry/recorder.py``) drains the counts every ``stats_interval`` and adds them to
``scan_stats`` by UTC day (``registry/scan_stats.py``). Nothing about the client is kept: no address, no time finer
than the day, no header.

Memory is bounded: at most ``MAX_HANDLES`` distinct (handle, link type) pairs are told apart between two drains
(a minute); scans of further handles are counted under their prefix's ``P/(other)`` bucket (at most
``MAX_OTHERS`` such bucket and link type pairs), and beyond that under ``(other)``. The buckets are lower case,
which no handle key (ASCII upper case) can be, so they never mix with a real handle's counts. Link types come from
the proxy's own names and the records' link types, a small set.
"""

from __future__ import annotations

from resolver.tallies import prefix_of_key

__all__ = [
    "LINK_DATA",
    "LINK_DEFAULT",
    "LINK_LINKSET",
    "LINK_PAGE",
    "MAX_HANDLES",
    "MAX_OTHERS",
    "OTHER",
    "ScanCounts",
    "other_bucket",
]

LINK_DEFAULT = "default"
"""The redirect to the record's default (first) URL: today's 302."""
LINK_PAGE = "page"
"""The values page (``?noredirect``, or a record without a URL)."""
LINK_LINKSET = "linkset"
"""A product record's RFC 9264 linkset (``?linkType=linkset`` or ``Accept: application/linkset+json``)."""
LINK_DATA = "data"
"""A product record asked for as data (``Accept: application/json`` or ``application/ld+json``)."""
MAX_HANDLES = 100_000
MAX_OTHERS = 10_000
OTHER = "(other)"


def other_bucket(key: str) -> str:
    """The overflow bucket of handle key ``key``: ``P/(other)`` for its prefix ``P``."""
    return f"{prefix_of_key(key)}/{OTHER}"


class ScanCounts:
    """Scans per link type and handle key since the last drain."""

    __slots__ = ("_by_type", "_others", "_size", "max_handles", "max_others")

    def __init__(self, *, max_handles: int = MAX_HANDLES, max_others: int = MAX_OTHERS) -> None:
        self.max_handles = max_handles
        self.max_others = max_others
        self._by_type: dict[str, dict[str, int]] = {}
        self._size = 0
        self._others = 0

    def count(self, key: str, link_type: str = LINK_DEFAULT) -> None:
        """One scan of handle key ``key`` (ASCII upper case) answered as ``link_type``."""
        counts = self._by_type.get(link_type)
        if counts is None:
            counts = self._by_type[link_type] = {}
        seen = counts.get(key)
        if seen is not None:
            counts[key] = seen + 1
        else:  # not a raised KeyError: once the table is full, every scan of an unseen handle comes here
            self._first(counts, key)

    def _first(self, counts: dict[str, int], key: str) -> None:
        """The first scan of ``key`` since the drain: a new counter while there is room, else an overflow bucket."""
        if self._size < self.max_handles:
            self._size += 1
            counts[key] = 1
            return
        bucket = other_bucket(key)
        if bucket not in counts:
            if self._others >= self.max_others:
                bucket = OTHER
            else:
                self._others += 1
        counts[bucket] = counts.get(bucket, 0) + 1

    def drain(self) -> dict[str, dict[str, int]]:
        """Every count by handle key, then link type, starting afresh (no await in between: nothing is lost)."""
        by_type, self._by_type, self._size, self._others = self._by_type, {}, 0, 0
        drained: dict[str, dict[str, int]] = {}
        for link_type, counts in by_type.items():
            for key, scans in counts.items():
                drained.setdefault(key, {})[link_type] = scans
        return drained
