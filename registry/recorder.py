"""The statistics recorder: rolls this process's look-up tallies up into PostgreSQL every ``stats_interval``.

The hot path only increments integers (``resolver/tallies.py``); every ``stats_interval`` seconds (default 60)
the recorder drains them and adds them to ``lookup_stats`` with one upsert (``registry/statistics.py``). Each
worker and each node on the database adds its own counts, so the stored totals are their sum.

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
from collections.abc import Callable
from datetime import UTC, date, datetime

from registry.periodic import Background
from registry.statistics import StatsStore
from resolver.tallies import OUTCOMES, PrefixTallies

__all__ = ["StatsRecorder"]

log = logging.getLogger("idnode.stats")


def _today() -> date:
    return datetime.now(UTC).date()


class StatsRecorder:
    """Drains ``tallies`` into ``store`` every ``interval`` seconds (``start``/``stop``), or on ``flush``."""

    __slots__ = ("_job", "_lock", "interval", "pending", "store", "tallies", "today")

    def __init__(
        self, store: StatsStore, tallies: PrefixTallies, interval: float, *, today: Callable[[], date] = _today
    ) -> None:
        if not interval > 0:
            raise ValueError(f"stats: interval must be positive, got {interval}")
        self.store = store
        self.tallies = tallies
        self.interval = interval
        self.today = today
        self.pending: dict[date, dict[str, dict[str, int]]] = {}
        """Drained counts not yet stored, by day and prefix key."""
        self._lock = asyncio.Lock()
        self._job = Background("idnode-stats", self._run)

    async def flush(self) -> bool:
        """Drain the tallies and store everything pending; False (counts kept for next time) on a database error."""
        async with self._lock:
            drained = self.tallies.drain()
            if drained:
                day = self.pending.setdefault(self.today(), {})
                for prefix, counts in drained.items():
                    into = day.setdefault(prefix, dict.fromkeys(OUTCOMES, 0))
                    for name, value in counts.items():
                        into[name] += value
            while self.pending:
                day = min(self.pending)
                try:
                    await self.store.add_lookups(day, self.pending[day])
                except Exception as exc:  # kept for the next flush: the database may be back by then
                    log.warning("stats: could not store the look-up counts of %s (kept for later): %r", day, exc)
                    return False
                del self.pending[day]
            return True

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
