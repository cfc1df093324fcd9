"""Resolving one parsed handle to a cache entry, or to the Handle.Net error that answers it.

Order, and why: the cache first (a hit needs nothing else, whether the record is ours or another node's), then
the prefix table: a handle this node holds is loaded from the store (remembered absences first, one coalesced
load through the cache); any other goes to the forwarder (``forward.py``) when the prefix is delegated from here
or an upstream is configured, and is rc 301 without a database round trip otherwise. ``hops`` is how many nodes
already forwarded the request (the ``Idnode-Forwarded`` header): a request is forwarded on only while that is
below ``max_referrals``, so nodes misconfigured to forward to each other stop after that many hops; ``None`` means
this node's own records only (what authorization reads).

A prefix handle ``0.NA/<P>`` this node holds the tree for but not the record of is answered with a referral
(HTTP 300 rc 303) when the nearest prefix above ``P`` with a row is delegated with an ``HS_SITE.PREFIX``: the
site that serves the prefixes derived from it knows ``P``.

Outcomes are counted per API (``counts``) and, unless ``counts`` is an ``InternalCounts``, per prefix
(``tallies``): a cached answer is a hit, a local load a miss, an answer fetched from another site ``forwarded``,
an expired one served while its site is away ``stale``.

``redirects`` is where the node's answers may send a browser (``answers.Redirects``); it travels with the
look-up so that every builder of cache entries (the loader, the forwarder, and a writer remembering its record)
and the proxy use the same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NoReturn

from resolver.answers import HTTP_ONLY, Redirects
from resolver.cache import Cache, CacheEntry
from resolver.errors import HandleError, HandleNotFound, PrefixNotHomed, PrefixReferral
from resolver.forward import Forwarder, PrefixAnswer
from resolver.identifiers import Handle, governing_prefix, parse
from resolver.metrics import InternalCounts, LookupCounts
from resolver.prefixes import PrefixTable, Route
from resolver.sites import SITE_PREFIX_TYPE
from resolver.tallies import PrefixTallies

__all__ = ["Lookup"]

_INTERNAL = InternalCounts()


def _is_prefix_handle(handle: Handle) -> bool:
    return handle.key.startswith("0.NA/")


class Lookup:
    """Cache → prefix table → store or forwarder."""

    __slots__ = ("cache", "forwarder", "prefixes", "redirects", "tallies")

    def __init__(
        self,
        cache: Cache,
        prefixes: PrefixTable,
        redirects: Redirects = HTTP_ONLY,
        tallies: PrefixTallies | None = None,
    ) -> None:
        self.cache = cache
        self.prefixes = prefixes
        self.redirects = redirects
        self.tallies = tallies if tallies is not None else PrefixTallies()
        self.forwarder: Forwarder | None = None

    def forward_with(self, forwarder: Forwarder) -> None:
        """Resolve foreign handles through ``forwarder`` (built after this look-up, since it reads prefix handles
        through it: the two depend on each other)."""
        self.forwarder = forwarder

    def cached(self, handle: Handle, counts: LookupCounts, *, hops: int | None = 0) -> CacheEntry | None:
        """The answer without waiting, when there is one; raises for a prefix this node cannot answer or a
        remembered absence. Counts the outcome it decides; a None result is counted by :meth:`resolve`."""
        entry = self.cache.get(handle.key)
        if entry is not None:
            counts.hit += 1
            if counts.per_prefix:
                entry.tally.hit += 1
            return entry
        if self.prefixes.holds(handle):
            if not _is_prefix_handle(handle) and self.cache.is_absent(handle.key):
                self._not_found(handle, counts, negative=True)
            return None
        if not self._forwards(handle, hops):
            counts.invalid += 1  # asked the wrong node: the client's mistake, not a failure of this one
            raise PrefixNotHomed(handle=handle.text)
        if self.cache.is_absent(handle.key):
            self._not_found(handle, counts, negative=True)
        return None

    def _forwards(self, handle: Handle, hops: int | None) -> bool:
        """A delegated prefix is always followed, any other foreign one only through an upstream; and neither once
        the request has been forwarded ``max_referrals`` times."""
        if self.forwarder is None or hops is None or hops >= self.forwarder.settings.max_referrals:
            return False
        return self.forwarder.has_upstream or self.prefixes.route(governing_prefix(handle)) is Route.DELEGATED

    async def resolve(self, handle: Handle, counts: LookupCounts, *, hops: int | None = 0) -> CacheEntry:
        """The entry for ``handle``; raises the Handle error that answers it; counts the outcome."""
        entry = self.cached(handle, counts, hops=hops)
        if entry is not None:
            return entry
        if self.prefixes.holds(handle):
            return await self._load(handle, counts)
        assert self.forwarder is not None and hops is not None  # cached() raised otherwise
        try:
            entry, stale = await self.forwarder.resolve(handle, hops)
        except HandleNotFound:
            self._not_found(handle, counts)
        except BaseException:
            self._count(handle, counts, "error")
            raise
        self._count(handle, counts, "stale" if stale else "forwarded")
        return entry

    async def resolve_all(
        self, handles: Sequence[Handle], counts: LookupCounts, *, hops: int = 0
    ) -> list[CacheEntry | BaseException]:
        """Entries or errors for handles that :meth:`cached` did not answer, in order. Local ones start together
        (so the cache loads them in one query); foreign ones are asked one request per site."""
        local = [h for h in handles if self.prefixes.holds(h)]
        foreign = [h for h in handles if not self.prefixes.holds(h)]
        loads = asyncio.gather(*(self.resolve(h, counts) for h in local), return_exceptions=True)
        outcomes: dict[int, CacheEntry | BaseException] = dict(zip(map(id, local), await loads, strict=True))
        if foreign:
            assert self.forwarder is not None
            for handle, outcome in zip(foreign, await self.forwarder.resolve_many(foreign, hops), strict=True):
                if isinstance(outcome, HandleNotFound):
                    self._count(handle, counts, "not_found")
                elif isinstance(outcome, HandleError):
                    self._count(handle, counts, "error")
                else:
                    self._count(handle, counts, "forwarded")
                outcomes[id(handle)] = outcome
        return [outcomes[id(h)] for h in handles]

    async def prefix_answer(self, handle: Handle) -> PrefixAnswer:
        """This node's answer for a prefix handle it holds (the first step of a site walk, ``forward.py``)."""
        try:
            entry = await self.resolve(handle, _INTERNAL, hops=None)
        except PrefixReferral as referral:
            return PrefixAnswer(tuple(referral.site_values), referral=True)
        except HandleNotFound:
            return PrefixAnswer()
        return PrefixAnswer(tuple(v for v in entry.values if v.public_read))

    async def _load(self, handle: Handle, counts: LookupCounts) -> CacheEntry:
        """A handle this node holds, from the store; a missing prefix handle may be a referral."""
        prefix_handle = _is_prefix_handle(handle)
        if not (prefix_handle and self.cache.is_absent(handle.key)):
            try:
                entry = await self.cache.fetch(handle.key)
            except BaseException:
                self._count(handle, counts, "error")
                raise
            if entry is not None:
                self._count(handle, counts, "miss")
                return entry
        if prefix_handle:
            await self._refer(handle)
        self._not_found(handle, counts)

    async def _refer(self, handle: Handle) -> None:
        """Raise ``PrefixReferral`` when the nearest row above the prefix is a delegation with HS_SITE.PREFIX."""
        prefix = governing_prefix(handle)
        nearest = self.prefixes.nearest(prefix)
        if nearest is None or nearest == prefix.upper() or self.prefixes.route(nearest) is not Route.DELEGATED:
            return
        delegation = parse("0.NA/" + nearest)
        entry = self.cache.get(delegation.key) or await self.cache.fetch(delegation.key)
        if entry is None:
            return
        values = [v for v in entry.values if v.public_read and v.type_key() == SITE_PREFIX_TYPE]
        if values:
            raise PrefixReferral(values, handle=handle.text)

    def _not_found(self, handle: Handle, counts: LookupCounts, *, negative: bool = False) -> NoReturn:
        if negative:
            counts.negative_hit += 1
            if counts.per_prefix:
                self.tallies.of(handle.key).not_found += 1
        else:
            self._count(handle, counts, "not_found")
        raise HandleNotFound(handle=handle.text)

    def _count(self, handle: Handle, counts: LookupCounts, outcome: str) -> None:
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        if counts.per_prefix:
            tally = self.tallies.of(handle.key)
            setattr(tally, outcome, getattr(tally, outcome) + 1)
