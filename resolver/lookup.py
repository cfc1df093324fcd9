"""Resolving one parsed handle to a cache entry, or to the Handle.Net error that answers it.

Order, and why: the cache first (a hit needs nothing else; only homed records are ever cached), then the
prefix table (a foreign prefix is rc 301 without a database round trip), then remembered absences (a negative
hit), then one coalesced load through the cache.

``redirects`` is where the node's answers may send a browser (``answers.Redirects``); it travels with the
look-up so that every builder of cache entries (the loader, and a writer remembering its record) and the proxy
use the same one.
"""

from __future__ import annotations

from resolver.answers import HTTP_ONLY, Redirects
from resolver.cache import Cache, CacheEntry
from resolver.errors import HandleNotFound, PrefixNotHomed
from resolver.identifiers import Handle, governing_prefix
from resolver.metrics import LookupCounts
from resolver.prefixes import PrefixTable

__all__ = ["Lookup"]


class Lookup:
    """Cache → prefix table → negative entries → load."""

    __slots__ = ("cache", "prefixes", "redirects")

    def __init__(self, cache: Cache, prefixes: PrefixTable, redirects: Redirects = HTTP_ONLY) -> None:
        self.cache = cache
        self.prefixes = prefixes
        self.redirects = redirects

    def cached(self, handle: Handle, counts: LookupCounts) -> CacheEntry | None:
        """The answer without waiting, when there is one; raises for a foreign prefix or a remembered absence.

        Counts the outcome it decides in ``counts``; a None result is counted by :meth:`resolve`.
        """
        entry = self.cache.get(handle.key)
        if entry is not None:
            counts.hit += 1
            return entry
        if not self.prefixes.homes(governing_prefix(handle)):
            counts.invalid += 1  # asked the wrong node: the client's mistake, not a failure of this one
            raise PrefixNotHomed(handle=handle.text)
        if self.cache.is_absent(handle.key):
            counts.negative_hit += 1
            raise HandleNotFound(handle=handle.text)
        return None

    async def resolve(self, handle: Handle, counts: LookupCounts) -> CacheEntry:
        """The entry for ``handle``; raises PrefixNotHomed or HandleNotFound; counts the outcome."""
        entry = self.cached(handle, counts)
        if entry is None:
            try:
                entry = await self.cache.fetch(handle.key)
            except BaseException:
                counts.error += 1
                raise
            if entry is None:
                counts.not_found += 1
                raise HandleNotFound(handle=handle.text)
            counts.miss += 1
        return entry
