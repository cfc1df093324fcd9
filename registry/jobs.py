"""The registry's background jobs: when they run, in which process, and in which order they stop.

- the statistics recorder (``registry/recorder.py``) in every worker: each rolls up its own tallies;
- in the primary worker only (``resolver.serve.WORKER_INDEX`` 0, or a single process): the child-health count
  (``registry/nodes.ChildWatch``) and, with ``upstream`` and ``upstream_identity`` set, the publisher and reporter
  to the parent (``registry/upstream.py``); several workers doing that would publish and report several times;
  and, with ``mirror_of`` set, the mirror's follower (``registry/mirror.py``): one process applies the feed.

They stop before the registry's write pool closes, the recorder last, so its final flush still has a database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiohttp import web

from registry.mirror import Follower
from registry.nodes import ChildWatch
from registry.recorder import StatsRecorder
from registry.statistics import DayStats, StatsStore
from registry.upstream import Upstream
from resolver.app import LISTENER, READY_TIMEOUT, Core
from resolver.serve import WORKER_INDEX

__all__ = ["Jobs"]


class Jobs:
    """The registry's background jobs, started with the app and stopped (recorder flushed) before its pools close."""

    def __init__(
        self, core: Core, recorder: StatsRecorder, stats: StatsStore, watch: ChildWatch, follower: Follower | None
    ) -> None:
        self.core = core
        self.follower = follower
        self.recorder = recorder
        self.stats = stats
        self.watch = watch
        self.upstream: Upstream | None = None

    async def start(self, app: web.Application) -> None:
        self.recorder.start()
        if app.get(WORKER_INDEX, 0) != 0:
            return
        await self.watch.start()
        if self.follower is not None:
            self.follower.start()
        hierarchy = self.core.settings.hierarchy
        if hierarchy.upstream and hierarchy.upstream_identity is not None:
            listener = app[LISTENER]

            async def ready() -> dict[str, bool]:
                try:
                    async with asyncio.timeout(READY_TIMEOUT):
                        database = bool(await self.core.store.schema_version())
                except Exception:
                    database = False
                return {"database": database, "listening": bool(listener.connected)}

            self.upstream = Upstream(hierarchy, homed=self.core.lookup.prefixes.homed, ready=ready, totals=self.totals)
            self.upstream.start()

    async def totals(self) -> list[DayStats]:
        """This node's statistics of yesterday and today (UTC), this process's latest counts included."""
        await self.recorder.flush()
        today = datetime.now(UTC).date()
        return await self.stats.days(today - timedelta(days=1), today)

    async def stop(self, _app: web.Application) -> None:
        if self.follower is not None:
            await self.follower.stop()
        if self.upstream is not None:
            await self.upstream.close()
        await self.watch.stop()
        await self.recorder.stop()
