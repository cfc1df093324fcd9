"""The mirror (DR node): follow a primary's change feed into this node's own PostgreSQL, and take over from it.

Settings (``settings.mirror``): ``mirror_of`` (the primary's https base URL), ``mirror_identity`` and
``mirror_secret`` (an operator identity of the primary, e.g. from its ``idnode operator add``), ``mirror_ca`` (PEM
file trusted for the primary's certificate; without it the system's CAs).

**Following.** One process of the node (the primary worker) asks ``GET /api/changes?after=W&limit=PAGE&wait=WAIT``
(long poll) and applies each answer in one transaction with its watermark ``W`` (``registry/mirror_store.py``):
a SIGKILL between two pages loses nothing and applies nothing twice, and a restart resumes from the stored
watermark. An unreachable or refusing primary is retried with back-off (``FIRST_RETRY`` doubling to
``MAX_RETRY``); meanwhile the node serves what it holds. The ``after`` of every request is also what tells a
primary with ``sync_mirrors`` that this mirror holds everything up to it (``registry/replication.py``).

**Lag.** ``lag_changes`` is the primary's newest number at its last answer minus the watermark; ``lag_seconds`` is
0 while the mirror is caught up (its last answer held everything, and a long poll in flight is answered as soon as
anything commits), otherwise the time since it last was: since the request that was answered with a backlog, or
that failed (a primary that is away makes the lag grow, which is what the alert ``IdnodeMirrorLagging`` reads).
Both are metrics (``idnode_mirror_*``, 0 on a node that is no mirror) and part of ``/readyz``.

**Takeover.** ``idnode takeover`` (the database directly, running node or not) or ``POST /api/takeover``
(operators): ``MirrorStore.takeover`` records it; the follower's next page is refused by the database, so it stops
(a running node's follower also stops at once after the endpoint), writes are accepted from then on
(``registry/replication.py`` reads the state), and a restart does not follow again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from registry.auth import Authenticator
from registry.mirror_store import MirrorState, MirrorStore, NotAMirror, NotEmpty
from registry.periodic import Background
from registry.permissions import Operators
from registry.replication import Replication
from resolver.errors import HandleError, InsufficientPermissions
from resolver.mirror_settings import MirrorSettings
from resolver.responses import answers_errors, json_response

__all__ = ["Follower", "TakeoverAPI", "mirror_metrics"]

log = logging.getLogger("idnode.mirror")

PAGE = 1000
WAIT = 10.0
"""Seconds the primary holds a request while nothing is new."""
FIRST_RETRY = 0.5
MAX_RETRY = 10.0


class SourceRefused(Exception):
    """The primary answered something else than a page of its feed."""


class Follower:
    """This node as a mirror of ``settings.mirror_of`` (see the module docstring)."""

    def __init__(
        self, settings: MirrorSettings, store: MirrorStore, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if settings.mirror_of is None or settings.mirror_identity is None or settings.mirror_secret is None:
            raise ValueError("mirror: needs mirror_of, mirror_identity and mirror_secret")
        self.settings = settings
        self.source = settings.mirror_of
        self.store = store
        self.clock = clock
        self.following = False
        self.stopped = False
        """Set when this mirror cannot follow at all (a database holding data it did not copy)."""
        self.watermark = 0
        self.newest = 0
        self.behind_since: float | None = None
        token = f"{quote(settings.mirror_identity, safe='')}:{settings.mirror_secret}".encode()
        self._authorization = "Basic " + base64.b64encode(token).decode()
        self._ssl: ssl.SSLContext | bool = (
            True if settings.mirror_ca is None else ssl.create_default_context(cafile=str(settings.mirror_ca))
        )
        self._job = Background("idnode-mirror", self.run)

    # --- state --------------------------------------------------------------------------------------------

    @property
    def lag_changes(self) -> int:
        return max(0, self.newest - self.watermark)

    @property
    def lag_seconds(self) -> float:
        return 0.0 if self.behind_since is None else self.clock() - self.behind_since

    def detail(self) -> dict[str, Any]:
        """The ``/readyz`` detail: whom this node follows, how far, and how far behind."""
        return {
            "of": self.source,
            "following": self.following,
            "watermark": self.watermark,
            "lag_changes": self.lag_changes,
            "lag_seconds": round(self.lag_seconds, 3),
        }

    def _behind(self, since: float) -> None:
        if self.behind_since is None:
            self.behind_since = since

    # --- following ----------------------------------------------------------------------------------------

    async def _fetch(self, session: aiohttp.ClientSession, after: int) -> str:
        url = f"{self.source}/api/changes?after={after}&limit={PAGE}&wait={WAIT:g}"
        async with session.get(url, headers={"Authorization": self._authorization}, ssl=self._ssl) as response:
            body = await response.text()
            if response.status != 200:
                raise SourceRefused(f"{response.status} {body[:200]}")
            return body

    async def _begin(self) -> MirrorState | None:
        """The stored state (created the first time), waiting for the database; None over data not copied here."""
        delay = FIRST_RETRY
        while True:
            try:
                return await self.store.begin(self.source)
            except NotEmpty as exc:
                log.error("%s; not following %s", exc, self.source)
                self.stopped = True
                return None
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("mirror: cannot read its state (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)

    async def run(self) -> None:
        state = await self._begin()
        if state is None:
            return
        if state.taken_over_at is not None:
            log.warning("mirror: taken over at %s; not following %s any more", state.taken_over_at, self.source)
            return
        self.watermark = self.newest = state.watermark
        self.following = True
        delay = FIRST_RETRY
        timeout = aiohttp.ClientTimeout(total=WAIT + 15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self.following:
                asked = self.clock()
                try:
                    body = await self._fetch(session, self.watermark)
                    page = orjson.loads(body)
                    upto, newest = int(page["next"]), int(page["newest"])
                    applied = await self.store.apply(self.watermark, body)
                except (
                    ValueError,  # not a feed answer (orjson's error is one)
                    KeyError,
                    TypeError,
                    aiohttp.ClientError,
                    TimeoutError,
                    SourceRefused,
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    self._behind(asked)
                    log.warning("mirror: %s: %r; retrying in %.1fs", self.source, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY)
                    with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        await self._reload()  # a takeover while the primary is away (idnode takeover) ends it too
                    continue
                delay = FIRST_RETRY
                if not applied:
                    await self._reload()
                    continue
                self.watermark, self.newest = upto, newest
                if self.watermark >= self.newest:
                    self.behind_since = None
                else:
                    self._behind(asked)

    async def _reload(self) -> None:
        """After a refused page or a failed request: taken over, or another process moved the watermark?"""
        state = await self.store.state()
        if state is None or state.taken_over_at is not None:
            log.warning("mirror: taken over; no longer following %s", self.source)
            self.following = False
        else:
            self.watermark = state.watermark

    def start(self) -> None:
        self._job.start()

    async def stop(self, _app: web.Application | None = None) -> None:
        await self._job.stop()
        self.following = False
        self.behind_since = None


def mirror_metrics(follower: Follower | None) -> Iterator[Metric]:
    """``idnode_mirror_*``, also on a node that is no mirror (all 0), so the alert always has a series to read."""
    following = follower is not None and follower.following
    values = {
        "following": (1 if following else 0, "1 while this node follows a primary as its mirror"),
        "watermark": (follower.watermark if follower else 0, "Feed number of the primary's last change applied here"),
        "lag_changes": (follower.lag_changes if following else 0, "Changes of the primary not yet applied here"),
        "lag_seconds": (follower.lag_seconds if following else 0.0, "Seconds since this mirror was last caught up"),
        "stopped": (1 if follower is not None and follower.stopped else 0, "1 when this mirror cannot follow at all"),
    }
    for name, (value, text) in values.items():
        yield GaugeMetricFamily(f"idnode_mirror_{name}", text, value=value)


class TakeoverAPI:
    """``POST /api/takeover`` (operators): this mirror becomes the primary for its data."""

    def __init__(
        self,
        store: MirrorStore,
        follower: Follower | None,
        replication: Replication,
        auth: Authenticator,
        operators: Operators,
    ) -> None:
        self.store = store
        self.follower = follower
        self.replication = replication
        self.auth = auth
        self.operators = operators

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/takeover", self.takeover)]

    @answers_errors
    async def takeover(self, request: web.Request) -> web.StreamResponse:
        identity = await self.auth.require(request)
        if not await self.operators.includes(identity):
            raise InsufficientPermissions("Only a node operator may take over")
        try:
            state = await self.store.takeover()
        except NotAMirror as exc:
            raise NotMirroring(str(exc)) from None
        if self.follower is not None:
            await self.follower.stop()
        self.replication.taken_over()
        body = {
            "responseCode": 1,
            "source": state.source,
            "watermark": state.watermark,
            "takenOver": state.taken_over_at.isoformat() if state.taken_over_at else None,
        }
        return json_response(orjson.dumps(body))


class NotMirroring(HandleError):
    response_code, http_status = 4, 409
