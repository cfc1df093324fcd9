"""Writes on a node that replicates: refused on a mirror, held until ``sync_mirrors`` mirrors have them on a primary.

**On a mirror** (``mirror_of`` set) every handle write (PUT, DELETE, batch), and every write of prefixes,
enterprises and templates over the API (``guard_routes``), answers 403 rc 401 naming the primary,
until a takeover (``mirror_state.taken_over_at``, read from the database, since ``idnode takeover`` may set it
while the node runs, and another worker may have taken over); from then on writes pass, and the check costs
nothing more.

**On a primary with** ``sync_mirrors = N``: a mirror confirms that it holds every change up to ``after`` by asking
the feed for what follows it (``GET /api/changes?after=``, noted per identity by ``MirrorAcks``; any operator
identity reading the feed counts as a mirror). After a write has committed, ``settle`` numbers the committed
changes (the feed's sequencer) and takes the last number as the write's own (its change is committed, so it is
numbered at or below it), then waits until N identities have asked after at least that number, or
``sync_mirror_timeout`` passes: then the write answers 503 rc 3 and is not acknowledged. As with PostgreSQL's
``synchronous_commit``, the change is already committed here and is not undone: it may be visible on this node,
reach the mirrors later, or be lost with this node; a client that got the 503 must read the handle back (or
simply repeat the write, which is idempotent for a PUT) to learn its fate. Every acknowledged write is held by N
mirrors. The confirmations are kept in the process that serves the feed, hence ``workers = 1`` (config.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiohttp import web

from registry.feed_store import SEQUENCE_BATCH, FeedStore
from registry.mirror_store import MirrorStore
from resolver.errors import InsufficientPermissions, ServerTooBusy
from resolver.mirror_settings import MirrorSettings
from resolver.responses import Handler, answers_errors

__all__ = ["MirrorAcks", "MirrorWriteRefused", "MirrorsUnconfirmed", "Replication"]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class MirrorWriteRefused(InsufficientPermissions):
    """A write sent to a mirror: it belongs at the primary."""


class MirrorsUnconfirmed(ServerTooBusy):
    """Fewer than ``sync_mirrors`` mirrors confirmed a write in time: committed here, not acknowledged."""


class MirrorAcks:
    """The highest feed number each identity asked after (held in this process), and waiting for enough of them."""

    __slots__ = ("_changed", "held")

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self._changed = asyncio.Event()

    def report(self, identity: str, after: int) -> None:
        """``identity`` holds every change up to ``after``."""
        if after > self.held.get(identity, -1):
            self.held[identity] = after
            self._changed.set()
            self._changed = asyncio.Event()

    def count(self, number: int) -> int:
        return sum(1 for held in self.held.values() if held >= number)

    async def wait(self, number: int, mirrors: int, timeout: float) -> bool:
        """Whether ``mirrors`` identities held ``number`` within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.count(number) < mirrors:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True


class Replication:
    """The two hooks of every handle write: ``refuse_on_mirror`` before it, ``settle`` after its commit."""

    __slots__ = ("acks", "feed", "mirror", "mirroring", "settings")

    def __init__(self, settings: MirrorSettings, mirror: MirrorStore, feed: FeedStore, acks: MirrorAcks) -> None:
        self.settings = settings
        self.mirror = mirror
        self.feed = feed
        self.acks = acks
        self.mirroring = settings.mirror_of is not None

    def taken_over(self) -> None:
        self.mirroring = False

    def guard_routes(
        self, routes: Sequence[web.RouteDef], answers: Callable[[Handler], Handler] = answers_errors
    ) -> list[web.RouteDef]:
        """``routes`` whose writes (any method but GET, HEAD and OPTIONS) are refused on a mirror first, as handle
        writes are: prefixes, enterprises and templates are mirrored too, and a change made here would be
        overwritten by the primary's next one, or silently differ from it. ``answers`` renders the refusal in the
        routes' own dialect (``answers_snms`` for SNMS's envelope)."""
        return [
            web.route(route.method, route.path, self._guarded(route.handler, answers), **route.kwargs)
            for route in routes
        ]

    def _guarded(self, handler: Handler, answers: Callable[[Handler], Handler]) -> Handler:
        @answers
        async def guarded(request: web.Request) -> web.StreamResponse:
            if request.method not in _READS:
                await self.refuse_on_mirror()
            return await handler(request)

        return guarded

    async def refuse_on_mirror(self) -> None:
        """403 rc 401 naming the primary while this node is a mirror that was not taken over."""
        if not self.mirroring:
            return
        state = await self.mirror.state()
        if state is not None and state.taken_over_at is not None:
            self.mirroring = False
            return
        raise MirrorWriteRefused(
            f"This node is a read-only mirror of {self.settings.mirror_of}: write there "
            "(or take this node over: idnode takeover, POST /api/takeover)"
        )

    async def settle(self) -> None:
        """Return once ``sync_mirrors`` mirrors hold what this request committed; 503 rc 3 after the timeout."""
        wanted = self.settings.sync_mirrors
        if not wanted:
            return
        while await self.feed.sequence() >= SEQUENCE_BATCH:
            pass
        number = await self.feed.newest()
        if not await self.acks.wait(number, wanted, self.settings.sync_mirror_timeout):
            raise MirrorsUnconfirmed(
                f"Committed here, but fewer than {wanted} mirror(s) confirmed it within "
                f"{self.settings.sync_mirror_timeout:g} s: not acknowledged (read the handle back to learn its state)"
            )
