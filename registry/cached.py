"""Records as the write path sees them: read through the read path's cache, and written back to it.

Authorization and the existence checks of PUT read the same few records (identities, prefix handles, admin
groups) on every write, so they go through the cache like any look-up. After a commit, ``remember``/``forget``
give this node's cache the new state before the client hears 2xx (read-your-writes): ``written`` refreshes a
record the cache holds and drops any other, for the next look-up to load. Other nodes hear of every write from the
change notification.
"""

from __future__ import annotations

from collections.abc import Sequence

from resolver.answers import build_entry
from resolver.cache import CacheEntry
from resolver.errors import DatabaseUnavailable, HandleError
from resolver.identifiers import parse
from resolver.lookup import Lookup
from resolver.metrics import InternalCounts
from resolver.records import HandleValue
from resolver.store import StoredRecord

__all__ = ["CachedRecords"]

_DECODED_MAX = 10_000


class CachedRecords:
    """Current records by handle name, through the cache."""

    __slots__ = ("_counts", "_decoded", "_lookup")

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._counts = InternalCounts()
        self._decoded: dict[tuple[str, int], tuple[HandleValue, ...]] = {}

    async def entry_of(self, text: str) -> CacheEntry | None:
        """A handle's cache entry, loaded if needed (None when absent or not held here: authorization never trusts
        another node's records); raises DatabaseUnavailable
        when the store cannot say, since deciding who may do what on a record taken for absent would be wrong."""
        try:
            return await self._lookup.resolve(parse(text), self._counts, hops=None)
        except DatabaseUnavailable:
            raise
        except HandleError:
            return None

    async def values_of(self, text: str) -> Sequence[HandleValue] | None:
        """All values of a handle (None when absent or not homed).

        Decoded values are remembered per cached version: the cache itself keeps only encoded answers, and the
        same identities and prefix handles are decoded on every write otherwise.
        """
        entry = await self.entry_of(text)
        if entry is None:
            return None
        memo = (entry.handle, entry.version)
        values = self._decoded.get(memo)
        if values is None:
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            values = self._decoded[memo] = entry.values
        return values

    def holds(self, key: str) -> bool:
        """Whether this node's cache has an entry for the handle (live, or kept to serve stale); counts nothing."""
        return key in self._lookup.cache.keys()  # noqa: SIM118 (a Cache, not a dict)

    def written(self, record: StoredRecord, values: Sequence[HandleValue] | None = None, *, held: bool) -> None:
        """A committed write, before the client hears 2xx. A record the cache ``held`` when the write began (someone
        reads it) gets its new version; any other is only dropped, with its remembered absence, and the next look-up
        loads it. Building and compressing the answer of every created record would cost a single PUT more than its
        own statement, and a batch more than its writes, and fill the cache with records nobody has asked for.
        (``held`` is asked before the write: its change notification may have evicted the entry by now.)"""
        if held:
            self.remember(record, values)
        else:
            self.evict(record.key)

    def remember(self, record: StoredRecord, values: Sequence[HandleValue] | None = None) -> None:
        """This node's cache holds the committed version before the client hears 2xx."""
        self._lookup.cache.put(record.key, build_entry(record, values or None, redirects=self._lookup.redirects))

    def forget(self, key: str) -> None:
        """A deleted handle: gone from the cache, and remembered as absent."""
        self._lookup.cache.evict(key)
        self._lookup.cache.put_absent(key)

    def evict(self, key: str) -> None:
        """A handle changed by a write that did not build its new record here: the next look-up loads it."""
        self._lookup.cache.evict(key)
