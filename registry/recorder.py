"""The statistics recorder: rolls this process's look-up tallies up into PostgreSQL every ``stats_interval``.

The hot path only increments integers (``resolver/tallies.py``); every ``stats_interval`` seconds (default 60)
the recorder drains them and adds them to ``lookup_stats`` with one upsert (``registry/statistics.py``). Each
worker and each node on the database adds its own counts, so the stored totals are their sum. The scan counts of
the proxy (``resolver/scans.py``, by handle and link type) are rolled up the same way, in the same flush, into
``scan_stats`` (``registry/scan_stats.py``); each kind keeps its own pending counts, so one failing keeps only
its own for later.

Nothing is lost and nothing is counted twice: drained counts wait in ``pending`` until an upsert succeeds; a
database error leaves them there for the next flush (and logs a warning); flushes take turns under a lock, so
one drained count is never sent by two of them. A last flush runs at cleanup, so a node stopped cleanly keeps
everything it counted. Counts are credited to the UTC day of the flush that drains them, so a look-up in the
last ``stats_interval`` of a day may be counted on the next; ``GET /api/stats`` flushes first, so a caller sees
its own look-ups at once. The one double count possible is an upsert that committed but whose answer was lost
(the connection broke during the reply): the recorder cannot tell it from one that failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime

from registry.periodic import Background
from registry.scan_stats import ScanStore
from registry.statistics import StatsStore
from resolver.scans import ScanCounts
from resolver.tallies import PrefixTallies

__all__ = ["ScanRollup", "StatsRecorder"]

log = logging.getLogger("idnode.stats")


def _today() -> date:
    return datetime.now(UTC).date()


Pending = dict[date, dict[str, dict[str, int]]]
"""Drained counts not yet stored: by day, then key (a prefix, a handle), then name (an outcome, a link type)."""


def _merge(pending: Pending, day: date, drained: Mapping[str, Mapping[str, int]]) -> None:
    if not drained:
        return
    into_day = pending.setdefault(day, {})
    for key, counts in drained.items():
        into = into_day.setdefault(key, {})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value


async def _store(
    pending: Pending, add: Callable[[date, dict[str, dict[str, int]]], Awaitable[None]], what: str
) -> bool:
    """Store ``pending`` day by day, oldest first, with ``add``; False (the rest kept) on a database error."""
    while pending:
        day = min(pending)
        try:
            await add(day, pending[day])
        except Exception as exc:  # kept for the next flush: the database may be back by then
            log.warning("stats: could not store the %s of %s (kept for later): %r", what, day, exc)
            return False
        del pending[day]
    return True


class ScanRollup:
    """The scan counts' part of the recorder: where they are counted, where they go, what waits to go there."""

    __slots__ = ("counts", "pending", "store")

    def __init__(self, counts: ScanCounts, store: ScanStore) -> None:
        self.counts = counts
        self.store = store
        self.pending: Pending = {}


class StatsRecorder:
    """Drains ``tallies`` into ``store`` (and ``scans`` into theirs) every ``interval`` seconds (``start``/``stop``),
    or on ``flush``."""

    __slots__ = ("_job", "_lock", "interval", "pending", "scans", "store", "tallies", "today")

    def __init__(
        self,
        store: StatsStore,
        tallies: PrefixTallies,
        interval: float,
        *,
        scans: ScanRollup | None = None,
        today: Callable[[], date] = _today,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"stats: interval must be positive, got {interval}")
        self.store = store
        self.tallies = tallies
        self.interval = interval
        self.today = today
        self.scans = scans
        self.pending: Pending = {}
        """Drained look-up counts not yet stored, by day and prefix key."""
        self._lock = asyncio.Lock()
        self._job = Background("idnode-stats", self._run)

    async def flush(self) -> bool:
        """Drain the counts and store everything pending; False (counts kept for next time) on a database error."""
        async with self._lock:
            today = self.today()
            _merge(self.pending, today, self.tallies.drain())
            stored = await _store(self.pending, self.store.add_lookups, "look-up counts")
            if self.scans is not None:
                _merge(self.scans.pending, today, self.scans.counts.drain())
                stored = await _store(self.scans.pending, self.scans.store.add, "scan counts") and stored
            return stored

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        """Stop the periodic flushes, then flush a last time."""
        await self._job.stop()
        await self.flush()
