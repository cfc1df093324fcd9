"""Recursive resolution: answering handles whose prefix another node serves, through the hierarchy (issue 9).

How a prefix's site is found (research/handle-resolution-model.md), iteratively as a Handle client does it:
1. Ask for the prefix handle ``0.NA/<P>``: this node's own store when it holds that part of the tree
   (``PrefixTable.holds``: it homes or delegates an ancestor), otherwise the ``upstream`` node.
2. A referral (HTTP 300, rc 303, the ``HS_SITE.PREFIX`` of a delegating ancestor) names the servers to ask next;
   referrals are counted (at most ``max_referrals``) and a site named twice is a loop: both end in
   ``ReferralFailed`` at once, never in a hang.
3. An answer with ``HS_SITE`` values names the site explicitly. An answer without one, or a 404 for the prefix
   handle, means the server that answered serves the prefix itself (an idnode homing ``88.118`` serves
   ``88.118.7`` without a prefix handle of its own); a 400 rc 301 means the prefix lives nowhere: 404 rc 100.
Site information is cached per prefix for the TTL of the values that gave it (clamped to
``[forward_min_ttl, forward_max_ttl]``), one walk per prefix at a time (single-flight).

The handle is then asked of the site (``GET /api/handles/<h>``, unfiltered, anonymous) and its answer cached in
the node's one cache like a local record: the TTL comes from the values (Handle's default 86400), clamped; a 404
is remembered as absent for ``forward_negative_ttl``; other errors are passed on as the site gave them
(``UpstreamError``), and a 400 rc 301 from a site named by an HS_SITE is a misconfigured delegation
(``ReferralFailed``). The requested filters are applied here, to the cached record, so every parameter of the
REST API works and the answer equals the authoritative one. When the site cannot be reached (or answers 5xx), an
expired answer younger than ``serve_stale`` answers instead (counted ``stale``); with none, 503 rc 3 names the
site. A batch is split by site: one ``POST /api/resolve`` per site, and single look-ups for a site without it
(Handle.Net has no ``/api/resolve``).

Only public values travel: the site is asked anonymously, so ``publicOnly=false`` cannot reveal a foreign
record's private values through this node.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from resolver.answers import Redirects, build_entry
from resolver.cache import Cache, CacheEntry
from resolver.errors import (
    HandleError,
    HandleNotFound,
    PrefixNotHomed,
    ReferralFailed,
    SiteUnreachable,
    UpstreamError,
)
from resolver.forward_settings import HierarchySettings
from resolver.identifiers import Handle, governing_prefix, parse
from resolver.records import DEFAULT_TTL, HandleValue, decode_values, values_to_stored
from resolver.sites import SITE_PREFIX_TYPE, SITE_TYPE, site_urls
from resolver.sites_client import SitesClient
from resolver.store import StoredRecord

__all__ = ["Forwarder", "PrefixAnswer", "Site"]

_SITE_TYPES = frozenset({SITE_TYPE, SITE_TYPE + ".6"})
_NOT_HERE = 301
_MAX_SITES = 100_000
"""Prefixes whose site is remembered; each costs a few hundred bytes."""
_REFERRAL = 303


@dataclass(frozen=True, slots=True)
class Site:
    """The servers that serve a prefix; ``named`` when an HS_SITE named them (so refusing it is a misconfiguration)
    rather than implied by who answered for the prefix handle."""

    servers: tuple[str, ...]
    named: bool

    def __str__(self) -> str:
        return " ".join(self.servers)


@dataclass(frozen=True, slots=True)
class PrefixAnswer:
    """What a server says of a prefix handle: its values, a referral's values, nothing (it has no such prefix
    handle), or ``nowhere`` (rc 301: that part of the tree is not its own, so the prefix is unknown)."""

    values: tuple[HandleValue, ...] = ()
    referral: bool = False
    nowhere: bool = False


LocalPrefix = Callable[[Handle], Awaitable[PrefixAnswer]]
"""This node's own answer for a prefix handle it holds (``Lookup.prefix_answer``)."""


class Forwarder:
    """Finds sites and fetches foreign handles into the cache."""

    def __init__(
        self,
        settings: HierarchySettings,
        cache: Cache,
        client: SitesClient,
        *,
        holds: Callable[[Handle], bool],
        local_prefix: LocalPrefix,
        redirects: Redirects,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.client = client
        self.metrics = client.metrics
        self._holds = holds
        self._local_prefix = local_prefix
        self._redirects = redirects
        self._clock = clock
        self._sites: dict[str, tuple[float, Site | ReferralFailed | None]] = {}
        # In-flight work by key and hop count: a request that comes back round a misconfigured loop (more hops)
        # must not wait for the one that sent it, or both would wait until their deadlines.
        self._site_walks: dict[tuple[str, int], asyncio.Task[Site | ReferralFailed | None]] = {}
        self._fetches: dict[tuple[str, int], asyncio.Task[CacheEntry]] = {}

    @property
    def has_upstream(self) -> bool:
        return bool(self.settings.upstream)

    # --- handles ------------------------------------------------------------------------------------------------

    async def resolve(self, handle: Handle, hops: int) -> tuple[CacheEntry, bool]:
        """The entry for a foreign ``handle`` and whether it is stale; raises the Handle error that answers it.
        ``hops``: how many nodes forwarded the request this serves.

        One fetch per key at a time: concurrent misses of one handle share it.
        """
        future = _shared(self._fetches, (handle.key, hops), lambda: self._fetch(handle, hops))
        try:
            return (await future), False
        except HandleError as exc:
            if exc.http_status >= 500 and not isinstance(exc, ReferralFailed):  # the site is away or failing
                stale = self.cache.stale(handle.key, self.settings.serve_stale)
                if stale is not None:
                    return stale, True
            raise _echoing(exc, handle.text) from None

    async def _fetch(self, handle: Handle, hops: int) -> CacheEntry:
        if handle.key.startswith("0.NA/"):
            return await self._fetch_prefix_handle(handle, hops)
        site = await self.site_of(handle, hops)
        reply = await self.client.get(site.servers, "/api/handles/" + quote(handle.name, safe="/"), hops=hops + 1)
        body = reply.body if isinstance(reply.body, dict) else {}
        code = body.get("responseCode")
        if reply.status == 200 and code in (1, 200):
            values = self._values(body.get("values"), site)
            entry = build_entry(_record(handle, values), values, redirects=self._redirects)
            self._remember(handle, entry, self._ttl(values))
            return entry
        if reply.status == 404 and code == 100:
            self._remember(handle, None, self.settings.forward_negative_ttl)
            raise HandleNotFound(handle=handle.text)
        if code == _NOT_HERE:
            if site.named:
                raise ReferralFailed(f"The site named for this prefix ({site}) does not serve it", handle=handle.text)
            self._remember(handle, None, self.settings.forward_negative_ttl)
            raise HandleNotFound(handle=handle.text)
        raise _passed_on(reply.status, body, handle.text, site)

    async def _fetch_prefix_handle(self, handle: Handle, hops: int) -> CacheEntry:
        """A foreign prefix handle is what the walk to its prefix last heard of it (from the node holding that
        part of the tree), not something the prefix's own site holds."""
        _, answer, ttl = await self._walk(governing_prefix(handle), hops)
        if not answer.values:
            self._remember(handle, None, self.settings.forward_negative_ttl)
            raise HandleNotFound(handle=handle.text)
        values = list(answer.values)
        entry = build_entry(_record(handle, values), values, redirects=self._redirects)
        self._remember(handle, entry, ttl)
        return entry

    def _remember(self, handle: Handle, entry: CacheEntry | None, ttl: float) -> None:
        """Cache a foreign answer (None: an absence) for ``ttl`` seconds, unless the handle became this node's
        own while it was fetched (a delegation taken back): another node's copy must never stand in for a local
        record, which authorization reads through the same cache."""
        if self._holds(handle):
            return
        if entry is None:
            self.cache.put_absent(handle.key, ttl)
        else:
            self.cache.put(handle.key, entry, ttl)

    def _values(self, raw: Any, site: Site) -> list[HandleValue]:
        """The values of a site's answer, validated as any input is (a site is not trusted), with the site's
        timestamps kept (input parsing would stamp them now)."""
        if not isinstance(raw, list):
            raise ReferralFailed(f"{site} answered a record without a values array")
        try:
            values = decode_values(raw)
        except HandleError as exc:
            raise ReferralFailed(f"{site} answered values idnode cannot read: {exc.message}") from None
        stamps = {item.get("index"): item.get("timestamp") for item in raw if isinstance(item, dict)}
        return [v._replace(timestamp=s) if isinstance(s := stamps.get(v.index), str) else v for v in values]

    def _ttl(self, values: Iterable[HandleValue]) -> float:
        """The record's TTL (its shortest value TTL; Handle's default for none), within the forwarding bounds."""
        now = time.time()
        ttls = [_seconds(v.ttl, now) for v in values]
        ttl = min(ttls) if ttls else DEFAULT_TTL
        return min(max(ttl, self.settings.forward_min_ttl), self.settings.forward_max_ttl)

    # --- batches ------------------------------------------------------------------------------------------------

    async def resolve_many(self, handles: Sequence[Handle], hops: int) -> list[CacheEntry | HandleError]:
        """Entries (or errors) for foreign ``handles``, in order: one ``POST /api/resolve`` per site. Prefix handles
        are each looked up on their own (their records live where the tree is held, not at the prefix's site)."""
        out: list[CacheEntry | HandleError | None] = [None] * len(handles)
        singles = [p for p, handle in enumerate(handles) if handle.key.startswith("0.NA/")]
        batched = [p for p, handle in enumerate(handles) if not handle.key.startswith("0.NA/")]
        sites = await asyncio.gather(*(self._site_or_error(handles[p], hops) for p in batched))
        by_site: dict[Site, list[int]] = {}
        for position, site in zip(batched, sites, strict=True):
            if isinstance(site, HandleError):
                out[position] = site
            else:
                by_site.setdefault(site, []).append(position)
        await asyncio.gather(
            self._batch(None, handles, singles, out, hops),
            *(self._batch(site, handles, ps, out, hops) for site, ps in by_site.items()),
        )
        return [item or ReferralFailed(handle=h.text) for item, h in zip(out, handles, strict=True)]

    async def _site_or_error(self, handle: Handle, hops: int) -> Site | HandleError:
        try:
            return await self.site_of(handle, hops)
        except HandleError as exc:
            return exc.about(handle.text)

    async def _batch(
        self,
        site: Site | None,
        handles: Sequence[Handle],
        positions: list[int],
        out: list[CacheEntry | HandleError | None],
        hops: int,
    ) -> None:
        """Ask ``site`` for the handles at ``positions`` in one request, or singly when it has no batch API (or
        when there is no one site to ask: ``None``)."""
        if site is not None and len(positions) > 1:
            names = [handles[p].name for p in positions]
            try:
                reply = await self.client.request(
                    site.servers, "POST", "/api/resolve", {"handles": names}, hops=hops + 1
                )
            except HandleError:
                reply = None
            results = reply.body.get("results") if reply is not None and isinstance(reply.body, dict) else None
            if reply is not None and reply.status == 200 and isinstance(results, list) and len(results) == len(names):
                for position, result in zip(positions, results, strict=True):
                    out[position] = self._batch_item(site, handles[position], result)
                return
        for position, outcome in zip(
            positions, await asyncio.gather(*(self._single(handles[p], hops) for p in positions)), strict=True
        ):
            out[position] = outcome

    async def _single(self, handle: Handle, hops: int) -> CacheEntry | HandleError:
        try:
            return (await self.resolve(handle, hops))[0]
        except HandleError as exc:
            return exc.about(handle.text)

    def _batch_item(self, site: Site, handle: Handle, result: Any) -> CacheEntry | HandleError:
        code = result.get("responseCode") if isinstance(result, dict) else None
        try:
            if code in (1, 200):
                values = self._values(result.get("values"), site)
                entry = build_entry(_record(handle, values), values, redirects=self._redirects)
                self._remember(handle, entry, self._ttl(values))
                return entry
            if code == 100 or (code == _NOT_HERE and not site.named):
                self._remember(handle, None, self.settings.forward_negative_ttl)
                return HandleNotFound(handle=handle.text)
            if code == _NOT_HERE:
                return ReferralFailed(f"The site named for this prefix ({site}) does not serve it", handle=handle.text)
            return _passed_on(400, result if isinstance(result, dict) else {}, handle.text, site)
        except HandleError as exc:
            return exc.about(handle.text)

    # --- sites --------------------------------------------------------------------------------------------------

    async def site_of(self, handle: Handle, hops: int) -> Site:
        """The site serving ``handle``'s prefix (cached); raises HandleNotFound when the prefix lives nowhere."""
        prefix = governing_prefix(handle)
        key = prefix.upper()
        known = self._sites.get(key)
        if known is not None and known[0] > self._clock():
            site = known[1]
        else:
            site = await _shared(self._site_walks, (key, hops), lambda: self._find(prefix, key, hops))
        if isinstance(site, ReferralFailed):
            raise ReferralFailed(site.message, handle=handle.text)
        if site is None:
            raise HandleNotFound(handle=handle.text)
        return site

    async def _find(self, prefix: str, key: str, hops: int) -> Site | ReferralFailed | None:
        """Walk to ``prefix``'s site and remember the outcome; a misconfigured tree is remembered for
        ``forward_negative_ttl`` too, so requests for it do not each follow the referrals again."""
        try:
            site, _, ttl = await self._walk(prefix, hops)
        except ReferralFailed as failure:
            self._remember_site(key, failure, self.settings.forward_negative_ttl)
            return failure
        self._remember_site(key, site, ttl)
        return site

    def _remember_site(self, key: str, site: Site | ReferralFailed | None, ttl: float) -> None:
        if len(self._sites) >= _MAX_SITES:  # expired ones first; if all are live (a scan of prefixes), all
            now = self._clock()
            self._sites = {k: v for k, v in self._sites.items() if v[0] > now}
            if len(self._sites) >= _MAX_SITES:
                self._sites.clear()
        self._sites[key] = (self._clock() + ttl, site)
        self.metrics.site_entries = len(self._sites)

    def forget_sites(self) -> None:
        """Drop every cached site (the prefix table changed: a delegation may have moved)."""
        self._sites.clear()
        self.metrics.site_entries = 0

    async def _walk(self, prefix: str, hops: int) -> tuple[Site | None, PrefixAnswer, float]:
        """Follow the tree from here or from the upstream to ``prefix``'s site (see the module docstring); also
        the last answer for the prefix handle itself, and the TTL of both."""
        name = parse("0.NA/" + prefix)
        servers: tuple[str, ...] | None = None
        if self._holds(name):
            answer = await self._local_prefix(name)
        elif self.has_upstream:
            servers = self.settings.upstream
            answer = await self._ask_prefix(servers, name, hops)
        else:
            raise PrefixNotHomed(handle=prefix)
        seen: set[tuple[str, ...]] = set() if servers is None else {servers}
        referrals = 0
        while answer.referral:
            referrals += 1
            self.metrics.referrals += 1
            if referrals > self.settings.max_referrals:
                raise ReferralFailed(f"More than {self.settings.max_referrals} referrals for prefix {prefix}")
            named = _urls(answer.values, {SITE_PREFIX_TYPE, *_SITE_TYPES})
            if not named:
                raise ReferralFailed(f"A referral for prefix {prefix} names no HTTP interface")
            if named == servers:  # a site that refers to itself serves the prefix itself
                return Site(named, named=False), PrefixAnswer(), self._ttl(answer.values)
            if named in seen:
                raise ReferralFailed(f"Referral loop for prefix {prefix}: {' '.join(named)} named twice")
            seen.add(named)
            servers = named
            answer = await self._ask_prefix(servers, name, hops)
        if answer.nowhere:
            return None, answer, self.settings.forward_negative_ttl
        ttl = self._ttl(answer.values) if answer.values else self.settings.forward_negative_ttl
        named = _urls(answer.values, _SITE_TYPES)
        if named:
            return Site(named, named=True), answer, ttl
        if servers is None:  # this node holds that part of the tree, and nothing names a site for the prefix
            return None, answer, ttl
        return Site(servers, named=False), answer, ttl  # the server that answered for the prefix handle serves it

    async def _ask_prefix(self, servers: tuple[str, ...], name: Handle, hops: int) -> PrefixAnswer:
        reply = await self.client.get(servers, "/api/handles/" + quote(name.name, safe="/"), hops=hops + 1)
        body = reply.body if isinstance(reply.body, dict) else {}
        code = body.get("responseCode")
        site = Site(servers, named=False)
        if reply.status == 200 and code in (1, 200):
            return PrefixAnswer(tuple(self._values(body.get("values"), site)))
        if reply.status == 300 and code == _REFERRAL:
            return PrefixAnswer(tuple(self._values(body.get("values"), site)), referral=True)
        if reply.status == 404 and code == 100:
            return PrefixAnswer()
        if code == _NOT_HERE:
            return PrefixAnswer(nowhere=True)
        raise _passed_on(reply.status, body, name.text, site)


def _echoing(error: HandleError, text: str) -> HandleError:
    """A shared fetch's error as this request's: naming the handle as this request spelled it."""
    if error.handle is None or error.handle == text:
        return error
    own = copy.copy(error)
    own.handle = text
    return own


K = TypeVar("K")
T = TypeVar("T")


def _shared(flights: dict[K, asyncio.Task[T]], key: K, work: Callable[[], Coroutine[Any, Any, T]]) -> Awaitable[T]:
    """Single flight: the task already working on ``key``, or a new one. A task of its own, so that a waiter that
    gives up (its client went away) cancels only its own wait, not the work the others are waiting for."""
    task = flights.get(key)
    if task is None:
        task = asyncio.get_running_loop().create_task(work())
        flights[key] = task
        task.add_done_callback(lambda done: flights.pop(key) if flights.get(key) is done else None)
    return asyncio.shield(task)


def _urls(values: Iterable[HandleValue], types: set[str] | frozenset[str]) -> tuple[str, ...]:
    urls: list[str] = []
    for value in values:
        if value.type_key() in types and value.format == "site":
            urls.extend(url for url in site_urls(value.value) if url not in urls)
    return tuple(urls)


def _record(handle: Handle, values: Sequence[HandleValue]) -> StoredRecord:
    """A foreign record in the shape the cache builds entries from; version 0 (no change notification ever names
    it: it expires by its TTL)."""
    return StoredRecord(handle.key, handle.name, 0, values_to_stored(values).decode())


def _seconds(ttl: int | str, now: float) -> float:
    """A value's TTL in seconds: a relative number, or the time left until an absolute ISO time."""
    if isinstance(ttl, int):
        return float(max(ttl, 0))
    try:
        return max(datetime.fromisoformat(ttl.replace("Z", "+00:00")).timestamp() - now, 0.0)
    except ValueError:
        return float(DEFAULT_TTL)


def _passed_on(status: int, body: dict[str, Any], text: str, site: Site) -> HandleError:
    """A site's error answer as this node's: its status and code; a body that is not Handle JSON is a
    ``ReferralFailed`` naming the site."""
    code, message = body.get("responseCode"), body.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or not 300 <= status <= 599:
        return ReferralFailed(f"{site} answered HTTP {status} without a Handle responseCode", handle=text)
    if status >= 500 and code == 3:
        return SiteUnreachable(str(site), handle=text)
    return UpstreamError(status, code, message if isinstance(message, str) else None, handle=text)
