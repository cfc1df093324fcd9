"""The record cache: pre-encoded answers for homed handles, remembered absences, and coalesced misses.

Purpose. A cached look-up must cost little more than aiohttp's hello-world, so a positive entry holds the
answer already encoded (``CacheEntry.answer``: the anonymous, unfiltered JSON for the stored spelling, gzip-
compressed when that saves: ``compression.py``) and the hot path is one dict look-up plus an expiry compare.
Everything else about the record is derived from the entry on demand (``CacheEntry.values``), which keeps a
node holding a million cached product records within 1 GiB of resident set, the whole process
(``benchmarks/node_memory.py``: 956 MiB, 925 B per cached handle, 2026-12-02).

Policy.
- Positive entries live until a change notification evicts them (``changes.py``), or ``safety_ttl`` passes.
  An expired entry is reloaded on its next look-up but kept until the reload answers: if the load fails (the
  database is away), the expired entry answers instead (serve-stale, as RFC 8767 lets DNS resolvers do). It is
  at most as stale as the outage, since notifications that would have evicted it need the database too.
- Entries of other nodes' handles (``forward.py``) live the TTL their values give, within the forwarding
  bounds; after it, ``stale`` lets the forwarder answer with them for ``serve_stale`` seconds while their site is
  unreachable.
- Negative entries (handle absent) live ``negative_ttl`` (a forwarded absence: ``forward_negative_ttl``) or until a
  create notification.
  They have their own bound so that a scan of random identifiers cannot push real records out.
- Bounded by entry count *and* estimated bytes. Eviction is CLOCK (second chance), an O(1) approximation of
  LRU: a hit only sets a flag, so reads never reorder the map. The hand walks a snapshot of the map's keys in
  insertion order (``_ring``), taken when an eviction finds the last one walked; a plain dict keeps the entries
  (an ``OrderedDict``'s linked nodes cost 48 B more per cached handle), and the snapshot's 8 B per key exist only
  while the cache is full.
- Misses of one key share one load (single-flight); misses arriving within one loop tick are loaded together
  by a single call of the loader (one ``= ANY($1)`` query). A load that raced with an invalidation of its key,
  or with a flush, answers its waiters but is not stored, so an old version never outlives its notification.

Settings (``CacheSettings``): ``max_entries``, ``max_bytes``, ``negative_max_entries``, ``safety_ttl``,
``negative_ttl``.

Metrics: the plain integer attributes listed in ``Cache.COUNTERS``, read at scrape time by ``metrics.py``.

Example::

    cache = Cache(CacheSettings(max_entries=10), load=loader)
    entry = cache.get(key) or await cache.fetch(key)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resolver.compression import plain_answer
from resolver.records import DEFAULT_TTL, HandleValue, values_from_answer, values_from_stored
from resolver.tallies import PrefixTallies, Tally

if TYPE_CHECKING:
    from resolver.product import Product

__all__ = ["Cache", "CacheEntry", "CacheSettings", "Loader"]


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Options ``cache_*``; the defaults are a working cache, so tests and tools build one with ``CacheSettings()``."""

    max_entries: int = 1_000_000
    max_bytes: int = 1 << 30
    negative_max_entries: int = 100_000
    safety_ttl: float = 3600.0
    negative_ttl: float = 300.0


Loader = Callable[[Sequence[str]], Awaitable[dict[str, "CacheEntry"]]]
"""Loads the given keys; keys missing from the result are absent from the store."""

_MAX_KEYS_PER_LOAD = 5000
_NOWHERE = Tally()
"""The tally of an entry no cache holds (a cache without ``tallies`` counts into it too, unread)."""
_EXPIRY_GRAIN = 16
"""Expiry times are rounded up to 1/16 s, so that entries stored within one such tick (a bulk load, a busy
second) share one float object: 32 B less per cached handle, for at most 62.5 ms of extra life."""
_ENTRY_OVERHEAD = 220
"""An entry's cost is estimated as ``_ENTRY_OVERHEAD`` plus 110 % of the lengths of its answer (as stored: gzip when
that saved), stored JSON and redirect target and twice its handle's (the entry's spelling and the map's key, one
string when they are equal: then the estimate errs high). The constant is the entry object, the headers of those
strings and bytes, the version number, and the map's slot. Measured by ``benchmarks/cache_size.py`` (2026-12-02,
after the entries lost 96 B), Python's own allocations (tracemalloc) per cached handle were 560 B for a 336 B
answer, 806 B for the 1,249 B product record, 2,182 B for it with a hidden value (stored JSON kept) and 670 B for
an 8.6 KB answer (which compresses well); the estimate (537, 809, 2,269, 659 B) is within 5 % of them, and
tests/test_cache.py keeps it within 20 % of the traced size."""


class CacheEntry:
    """One cached record: the stored spelling, its version, the anonymous answer, and what the proxy needs.

    ``stored`` is the record's stored JSON, kept only when some value is hidden from anonymous readers; for
    every other record the body already holds all values, so nothing is kept twice. ``product`` is the record's
    typed links and lifecycle state (``resolver/product.py``), None for the records that have neither.

    Most records have neither, so those two live in a subclass (``_ProductEntry``) that the constructor picks when
    either is given: the common entry saves their two slots (16 B of a 96 B object, per cached handle), and
    reading ``entry.stored`` or ``entry.product`` of a common entry finds the class's None.
    """

    __slots__ = ("answer", "expires_at", "handle", "location", "min_ttl", "referenced", "tally", "version")

    stored: str | bytes | None = None
    product: Product | None = None

    def __new__(
        cls, *args: object, stored: str | bytes | None = None, product: Product | None = None, **kwargs: object
    ) -> CacheEntry:
        if cls is CacheEntry and (stored is not None or product is not None):
            cls = _ProductEntry
        return object.__new__(cls)

    def __init__(
        self,
        handle: str,
        version: int,
        answer: bytes,
        *,
        location: str | None = None,
        min_ttl: int = DEFAULT_TTL,
        stored: str | bytes | None = None,
        product: Product | None = None,
    ) -> None:
        self.handle = handle
        self.version = version
        self.answer = answer
        self.location = location
        self.min_ttl = min_ttl
        if stored is not None or product is not None:
            self.stored = stored
            self.product = product
        self.expires_at = 0.0
        """Monotonic time the entry expires; once expired and kept for serve-stale, minus that time. Entries
        stored within one ``_EXPIRY_GRAIN`` share one float object (``Cache.put``)."""
        self.referenced = False
        self.tally = _NOWHERE

    @property
    def size(self) -> int:
        """The estimated memory this entry holds (see ``_ENTRY_OVERHEAD``); computed, not stored, since an int per
        entry would cost another 32 B, and the fields it reads never change."""
        held = (
            len(self.answer)
            + 2 * len(self.handle)
            + (len(self.location) if self.location is not None else 0)
            + (len(self.stored) if self.stored is not None else 0)
            + (self.product.size if self.product is not None else 0)
        )
        return _ENTRY_OVERHEAD + held + held // 10

    @property
    def body(self) -> bytes:
        """The anonymous answer as JSON (``answer``, decompressed when it is gzip)."""
        return plain_answer(self.answer)

    @property
    def values(self) -> tuple[HandleValue, ...]:
        """Every value of the record, hidden ones included, decoded afresh (callers filter or re-encode them)."""
        if self.stored is not None:
            return values_from_stored(self.stored)
        return values_from_answer(self.body)

    def __repr__(self) -> str:
        return f"CacheEntry({self.handle!r}, version={self.version}, size={self.size})"


class _ProductEntry(CacheEntry):
    """An entry with hidden values (``stored``) or a product view (``product``): see ``CacheEntry``."""

    __slots__ = ("product", "stored")


class Cache:
    """Positive and negative entries with single-flight, tick-batched loading. Not thread-safe: one per loop."""

    COUNTERS = (
        "hits",
        "negative_hits",
        "misses",
        "loads",
        "load_keys",
        "load_errors",
        "single_flight_joins",
        "evictions",
        "negative_evictions",
        "expirations",
        "invalidations",
        "flushes",
        "discarded_loads",
        "stale_answers",
    )

    __slots__ = (
        "_batch",
        "_bytes",
        "_clock",
        "_entries",
        "_expiry",
        "_floors",
        "_hand",
        "_inflight",
        "_load",
        "_negative",
        "_ring",
        "_tallies",
        "_tasks",
        "discarded_loads",
        "evictions",
        "expirations",
        "flushes",
        "hits",
        "invalidations",
        "load_errors",
        "load_keys",
        "loads",
        "misses",
        "negative_evictions",
        "negative_hits",
        "settings",
        "single_flight_joins",
        "stale_answers",
    )

    def __init__(
        self,
        settings: CacheSettings,
        load: Loader,
        *,
        clock: Callable[[], float] = time.monotonic,
        tallies: PrefixTallies | None = None,
    ):
        if settings.max_entries < 0 or settings.max_bytes < 0 or settings.negative_max_entries < 0:
            raise ValueError("cache: bounds must not be negative")
        self.settings = settings
        self._load = load
        self._clock = clock
        self._tallies = tallies
        self._entries: dict[str, CacheEntry] = {}
        self._ring: list[str] = []  # CLOCK: the keys the hand walks (a snapshot of _entries), and its position
        self._hand = 0
        self._expiry = 0.0  # the expiry time last given, shared by the entries stored in its tick
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[CacheEntry | None]] = {}
        self._batch: list[tuple[str, asyncio.Future[CacheEntry | None]]] = []
        self._floors: dict[str, int] = {}  # evicted in-flight key → the version its load must reach to be stored
        self._tasks: set[asyncio.Task[None]] = set()
        for name in self.COUNTERS:
            setattr(self, name, 0)

    # --- hot path: called for every look-up; no allocation, no await -------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The live positive entry for ``key``, or None (then ask :meth:`is_absent`, then :meth:`fetch`)."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires_at > self._clock():
                entry.referenced = True
                self.hits += 1
                return entry
            if entry.expires_at > 0:  # kept for serve-stale until a reload replaces it
                entry.expires_at = -entry.expires_at
                self.expirations += 1
        return None

    def is_absent(self, key: str) -> bool:
        """True when ``key`` is remembered as absent from the store (a negative hit)."""
        expires_at = self._negative.get(key)
        if expires_at is None:
            return False
        if expires_at > self._clock():
            self.negative_hits += 1
            return True
        del self._negative[key]
        self.expirations += 1
        return False

    def stale(self, key: str, max_age: float) -> CacheEntry | None:
        """The entry for ``key`` if it expired less than ``max_age`` seconds ago (serve-stale), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - abs(entry.expires_at)
        if not 0 <= age <= max_age:
            return None
        self.stale_answers += 1
        return entry

    # --- misses -----------------------------------------------------------------------------------------------

    async def fetch(self, key: str) -> CacheEntry | None:
        """Load ``key`` (sharing a load already under way), store the outcome, and return the entry or None."""
        self.misses += 1
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            if not self._batch:
                asyncio.get_running_loop().call_soon(self._start_loads)
            self._batch.append((key, future))
        else:
            self.single_flight_joins += 1
        return await asyncio.shield(future)

    def _start_loads(self) -> None:
        """Load this tick's misses. Every waiting future is loaded, even one an eviction or flush unregistered
        before the load started (its waiters still need an answer; ``_run_load`` will not store it)."""
        batch, self._batch = self._batch, []
        for start in range(0, len(batch), _MAX_KEYS_PER_LOAD):
            task = asyncio.get_running_loop().create_task(self._run_load(batch[start : start + _MAX_KEYS_PER_LOAD]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_load(self, futures: Sequence[tuple[str, asyncio.Future[CacheEntry | None]]]) -> None:
        """Load the keys of ``futures`` (pairs: one key may appear twice if a flush came between two misses of it),
        answer every waiter, and store what is still current.

        A key whose future is no longer the registered load (an eviction or flush came meanwhile) is answered
        but not stored, and never unregisters a newer load of the same key.
        """
        keys = list(dict.fromkeys(key for key, _ in futures))
        self.loads += 1
        self.load_keys += len(keys)
        try:
            found = await self._load(keys)
        except BaseException as exc:
            self.load_errors += 1
            for key, future in futures:
                if self._inflight.get(key) is future:
                    del self._inflight[key]
                if future.done():
                    continue
                stale = self._entries.get(key)
                if stale is not None and stale.expires_at < 0 and not isinstance(exc, asyncio.CancelledError):
                    self.stale_answers += 1
                    future.set_result(stale)
                else:
                    future.set_exception(exc)
                    future.exception()  # waiters may all be gone; do not log "never retrieved"
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, future in futures:
            entry = found.get(key)
            if self._inflight.get(key) is future:
                del self._inflight[key]
                if entry is None:
                    self.put_absent(key)
                else:
                    self.put(key, entry)
            else:
                floor = self._floors.pop(key, None)
                if floor is not None and entry is not None and entry.version >= floor and key not in self._inflight:
                    self.put(key, entry)  # loaded after the change it was evicted for: still current
                else:
                    self.discarded_loads += 1
            if not future.done():
                future.set_result(entry)

    # --- filling ----------------------------------------------------------------------------------------------

    def put(self, key: str, entry: CacheEntry, ttl: float | None = None) -> None:
        """Store ``entry`` for ``ttl`` seconds (default ``safety_ttl``), replacing any older one and any negative
        entry, then evict down to the bounds."""
        if self.settings.max_entries == 0:
            return
        self._negative.pop(key, None)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        entry.tally = self._tallies.of(key) if self._tallies is not None else _NOWHERE
        entry.expires_at = self._shared_expiry(self._clock() + (self.settings.safety_ttl if ttl is None else ttl))
        self._entries[key] = entry
        self._bytes += entry.size
        self._evict_to_bounds(key)

    def _shared_expiry(self, expires_at: float) -> float:
        """``expires_at`` rounded up to ``_EXPIRY_GRAIN``, as the object already given for that time if any."""
        rounded = math.ceil(expires_at * _EXPIRY_GRAIN) / _EXPIRY_GRAIN
        if rounded != self._expiry:
            self._expiry = rounded
        return self._expiry

    def put_absent(self, key: str, ttl: float | None = None) -> None:
        """Remember for ``ttl`` seconds (default ``negative_ttl``) that ``key`` does not exist."""
        self._remove(key)  # an expired entry kept for serve-stale
        if self.settings.negative_max_entries == 0:
            return
        self._negative.pop(key, None)
        self._negative[key] = self._clock() + (self.settings.negative_ttl if ttl is None else ttl)
        while len(self._negative) > self.settings.negative_max_entries:
            self._negative.popitem(last=False)
            self.negative_evictions += 1

    def _evict_to_bounds(self, newest: str) -> None:
        """CLOCK over the older entries: ``newest``, just stored, is never its own victim while others remain.

        A key of the snapshot that has left the map meanwhile is stepped over; one stored again since keeps its old
        place on the ring until the next snapshot (CLOCK's approximation of LRU, as a hit keeps its place too).
        """
        entries = self._entries
        max_entries, max_bytes = self.settings.max_entries, self.settings.max_bytes
        while entries and (len(entries) > max_entries or self._bytes > max_bytes):
            if self._hand >= len(self._ring):
                self._ring = list(entries)
                self._hand = 0
            key = self._ring[self._hand]
            self._hand += 1
            entry = entries.get(key)
            if entry is None:
                continue
            if len(entries) > 1 and (entry.referenced or key == newest):
                entry.referenced = False  # second chance: the hand passes it this time
                continue
            del entries[key]
            self._bytes -= entry.size
            self.evictions += 1

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    # --- invalidation (changes.py) ---------------------------------------------------------------------------

    def evict(self, key: str, version: int | None = None) -> None:
        """Drop what is cached for ``key`` unless it is already at ``version`` or newer (read-your-writes).

        A load of ``key`` under way is forgotten: later misses do not join it, and its waiters still get its answer,
        which is stored only if it is at least ``version`` (it was read after the change).
        """
        self.invalidations += 1
        entry = self._entries.get(key)
        if entry is not None and (version is None or entry.version < version):
            self._remove(key)
        self._negative.pop(key, None)
        if self._inflight.pop(key, None) is not None:  # a load under way may predate the change
            if version is None:
                self._floors.pop(key, None)
            else:
                self._floors[key] = max(version, self._floors.get(key, 0))

    def evict_absent(self) -> None:
        """Forget every negative entry (many handles were created at once)."""
        self.invalidations += 1
        self._negative.clear()
        self._inflight.clear()
        self._floors.clear()

    def flush(self) -> None:
        """Forget everything; loads under way answer their waiters but store nothing (their data may predate it)."""
        self.flushes += 1
        self._entries.clear()
        self._ring = []
        self._hand = 0
        self._negative.clear()
        self._inflight.clear()
        self._floors.clear()
        self._bytes = 0

    # --- introspection ----------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes and counters, for metrics and tests."""
        out = {name: getattr(self, name) for name in self.COUNTERS}
        out.update(entries=len(self._entries), bytes=self._bytes, negative_entries=len(self._negative))
        return out

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
