"""Read replicas: cache loads, listing and search spread over streaming standbys, never older than the node was told.

Which reads go where. Cache loads (``Store.fetch_records``) and the registry's listing and search
(``ReplicaReads``) may go to a replica; everything else stays on the primary: writes, sessions, LISTEN, and the
reads that decide who may do what (operators, suspensions, templates). Identity records (secrets, HS_ADMIN) are
handles, read through the cache like any record, so they follow the version-floor rule below: a rotated secret is
refused as soon as the node hears of the change, exactly as without replicas.

Spreading and failing over. Replicas are taken in turn (round robin) among the usable ones; a replica whose call
errors or times out is skipped for ``BACKOFF`` seconds and the load tries the next, then the primary. A health
check every ``CHECK_INTERVAL`` seconds samples the primary's ``pg_current_wal_lsn()`` and each replica's
``pg_last_wal_replay_lsn()``. From the samples it knows, per replica, the latest moment ``caught_up_to`` whose
primary state the replica has replayed in full; a replica with ``caught_up_to`` older than ``max_lag`` seconds is
not used. While the primary does not answer the checks, ``caught_up_to`` stops advancing, so replicas fall out of
use after ``max_lag`` too: without the primary the node cannot know what it has missed.

Never older than told (the rules, with why each is enough):

1. A per-key notification ``'<version> <key>'`` (updates, creates and deletes; a delete's carries a fresh version
   above the row's last one) leaves a floor ``key → (version, heard at)``. A replica load that returns the key
   below its floor, or not at all, is retried on the primary for those keys (``retried``); a replica row at or
   above the floor confirms it, and the floor is dropped. Floors older than ``max_lag`` are dropped too: the change
   was committed before it was heard, and every replica still in use has replayed all that the primary held
   ``max_lag`` ago (rule of use above). So the floors are bounded by the notifications of ``max_lag`` seconds.
2. A bulk notification (``'-'``, ``'*'``, ``'prefixes'``) and every (re)connection of the LISTEN connection name
   no key. Then the primary's ``pg_current_wal_lsn()`` is fetched as a barrier; until it is known, loads go to
   the primary; afterwards a replica load is accepted only if the replica's replay position, returned in the same
   round trip as the rows, is at or past the barrier (otherwise the whole load is retried on the primary).
3. Listing and search name no key either: they use a replica only if its ``caught_up_to`` is later than the last
   notification heard, i.e. the replica holds every change the node knows of; otherwise the primary. Under a steady
   write load they therefore stay on the primary; a read-mostly node sends them to replicas.

The cache's hot path is untouched: only misses reach this module.

Metrics (``collect``): loads by where they were answered (``replica``, ``primary``, ``retried``), per-replica reads,
usability (summed over workers: how many may read it) and replay lag (the largest of the workers'), the floors held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resolver.store import close_pool, unavailable

__all__ = ["BACKOFF", "CHECK_INTERVAL", "ReplicaReads", "Replicas"]

log = logging.getLogger("idnode.replicas")

T = TypeVar("T")

BACKOFF = 5.0
"""Seconds a replica that failed a call is left out (the health check brings it back sooner once it answers)."""
CHECK_INTERVAL = 1.0
"""Seconds between health checks (replay positions against the primary's)."""

_FETCH = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
    'h.handle_key, h.handle, h.version, h."values"::text '
    "FROM (SELECT 1) AS one LEFT JOIN handles h ON h.handle_key = ANY($1::text[])"
)
"""The rows of ``Store.fetch_records`` plus the server's replay position, in one round trip (a promoted standby,
no longer in recovery, reports its own position)."""
_REPLAYED = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END "
    "FROM (SELECT EXISTS (SELECT FROM handles)) AS readable"
)
"""The health check's question; it reads ``handles`` too, so a replica that can answer it can answer loads (one
without idnode's schema, or whose role may not read it, fails here and stays out)."""
_PRIMARY_LSN = "SELECT pg_current_wal_lsn()"

Rows = list[tuple[str, str, int, str]]


class Replica:
    """One replica's pool and what the node knows of it."""

    __slots__ = ("caught_up_to", "down_until", "failing", "index", "lag", "loads", "pool")

    def __init__(self, index: int, pool: Any) -> None:
        self.index = index
        self.pool = pool
        self.caught_up_to = -1e18
        """Monotonic time of the latest primary state this replica is known to hold in full."""
        self.down_until = 0.0
        self.failing = False
        """Whether its last call failed (so a replica that stays down is logged once, not every second)."""
        self.lag: float | None = None
        self.loads = 0


class Replicas:
    """Routes the read path's replica-able reads (see the module docstring); one per node process."""

    __slots__ = (
        "_barrier",
        "_barrier_task",
        "_bulk_seq",
        "_clock",
        "_floors",
        "_last_heard",
        "_samples",
        "_seq",
        "_task",
        "_turn",
        "max_lag",
        "primary",
        "primary_loads",
        "replica_loads",
        "replicas",
        "retried",
    )

    def __init__(
        self,
        primary: Any,
        replicas: Sequence[Any],
        *,
        max_lag: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_lag > 2 * CHECK_INTERVAL:
            raise ValueError(f"replicas: max_lag must exceed {2 * CHECK_INTERVAL:g} s (two health checks)")
        self.primary = primary
        self.replicas = [Replica(n, pool) for n, pool in enumerate(replicas)]
        self.max_lag = max_lag
        self._clock = clock
        self._turn = itertools.count()
        self._floors: dict[str, tuple[int, float]] = {}
        self._samples: deque[tuple[float, int]] = deque()  # (asked at, primary position), oldest first
        self._seq = 0  # notifications heard
        self._bulk_seq = 0  # the notification count at the last bulk one
        self._barrier = (0, 0)  # (notifications heard when it was asked, the primary's position)
        self._barrier_task: asyncio.Task[None] | None = None
        self._last_heard = -1e18
        self._task: asyncio.Task[None] | None = None
        self.replica_loads = 0
        self.primary_loads = 0
        self.retried = 0

    # --- notifications (changes.py) ----------------------------------------------------------------------------

    def heard(self, payload: str) -> None:
        """Note a change notification (before the cache applies it); ``'*'`` also stands for a LISTEN reconnection."""
        now = self._clock()
        self._seq += 1
        self._last_heard = now
        version, _, key = payload.partition(" ")
        if key and version.isdigit():
            old = self._floors.pop(key, None)  # re-inserted at the end: the map stays in the order heard
            self._floors[key] = (max(int(version), old[0] if old else 0), now)
            return
        self._bulk_seq = self._seq
        self._ask_barrier()

    def _ask_barrier(self) -> None:
        if self._barrier_task is None or self._barrier_task.done():
            self._barrier_task = asyncio.get_running_loop().create_task(self._fetch_barrier())

    async def _fetch_barrier(self) -> None:
        """The primary's position, asked after the last bulk notification; loads go to the primary until it is known
        (a failure leaves it unknown: the next load asks again)."""
        seq = self._seq
        try:
            position = await self.primary.fetchval(_PRIMARY_LSN)
        except Exception as exc:
            log.info("replicas: cannot read the primary's WAL position (%r); loads stay on the primary", exc)
            return
        if seq >= self._barrier[0]:
            self._barrier = (seq, position)

    def _bulk_barrier(self) -> int | None:
        """The position a replica must have replayed for a load, or None while it is not known yet."""
        if self._barrier[0] < self._bulk_seq:
            self._ask_barrier()
            return None
        return self._barrier[1]

    # --- choosing -------------------------------------------------------------------------------------------------

    def _usable(self, now: float) -> list[Replica]:
        oldest = now - self.max_lag
        return [r for r in self.replicas if r.down_until <= now and r.caught_up_to >= oldest]

    def _in_turn(self, now: float) -> list[Replica]:
        """Usable replicas, starting with the next in the round."""
        usable = self._usable(now)
        if not usable:
            return []
        start = next(self._turn) % len(usable)
        return usable[start:] + usable[:start]

    def _failed(self, replica: Replica, exc: BaseException, pause: float = BACKOFF) -> None:
        """Leave ``replica`` out for ``pause`` seconds; an error that is not an outage (a replica without idnode's
        schema, a role without rights) is logged as the misconfiguration it is."""
        replica.down_until = self._clock() + pause
        replica.lag = None
        if not replica.failing:
            level = logging.WARNING if unavailable(exc) else logging.ERROR
            log.log(level, "replicas: replica %d failed (%r); reading elsewhere until it answers", replica.index, exc)
        replica.failing = True

    async def _on_replicas(self, replicas: list[Replica], call: Callable[[Any], Awaitable[T]]) -> tuple[Replica, T]:
        """``call`` on the first of ``replicas`` that answers; raises LookupError when none does."""
        for replica in replicas:
            try:
                return replica, await call(replica.pool)
            except Exception as exc:  # whatever a replica does wrong, the primary still answers
                self._failed(replica, exc)
        raise LookupError("no replica answered")

    # --- cache loads ----------------------------------------------------------------------------------------------

    async def fetch_records(self, keys: Sequence[str], on_primary: Callable[[Sequence[str]], Awaitable[Rows]]) -> Rows:
        """Rows of ``keys`` from a replica when one is usable and current enough (rules 1 and 2), else from the
        primary through ``on_primary``."""
        now = self._clock()
        self._drop_old_floors(now)
        barrier = self._bulk_barrier()
        replicas = self._in_turn(now) if barrier is not None else []
        try:
            replica, rows = await self._on_replicas(replicas, lambda pool: pool.fetch(_FETCH, list(keys)))
        except LookupError:
            self.primary_loads += 1
            return await on_primary(keys)
        position = rows[0][0]
        if position is None or position < barrier:  # type: ignore[operator]
            self.retried += 1
            return await on_primary(keys)
        replica.loads += 1
        self.replica_loads += 1
        found = [(r[1], r[2], r[3], r[4]) for r in rows if r[1] is not None]
        return await self._with_floors(keys, found, on_primary)

    async def _with_floors(
        self, keys: Sequence[str], found: Rows, on_primary: Callable[[Sequence[str]], Awaitable[Rows]]
    ) -> Rows:
        """Rule 1: keep the replica's rows that meet their floors, ask the primary for the others."""
        floors = self._floors
        if not floors:
            return found
        versions = {row[0]: row[2] for row in found}
        behind = []
        for key in keys:
            floor = floors.get(key)
            if floor is None:
                continue
            version = versions.get(key)
            if version is not None and version >= floor[0]:
                del floors[key]  # the replica has it: confirmed
            else:
                behind.append(key)
        if not behind:
            return found
        self.retried += 1
        fresh = await on_primary(behind)
        stale = set(behind)
        return [row for row in found if row[0] not in stale] + list(fresh)

    def _drop_old_floors(self, now: float) -> None:
        """Floors heard more than ``max_lag`` ago: every replica in use holds their changes (module docstring)."""
        oldest = now - self.max_lag
        floors = self._floors
        while floors:
            key, (_, heard) = next(iter(floors.items()))
            if heard >= oldest:
                break
            del floors[key]

    # --- listing and search ----------------------------------------------------------------------------------------

    async def read(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(pool)`` on a replica that holds every change the node has heard of (rule 3), else the primary."""
        now = self._clock()
        current = [r for r in self._in_turn(now) if r.caught_up_to > self._last_heard]
        try:
            replica, result = await self._on_replicas(current, call)
        except LookupError:
            return await call(self.primary)
        replica.loads += 1
        return result

    # --- health -----------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._check_forever(), name="idnode-replicas")

    async def close(self, timeout: float) -> None:
        """Stop the health check and the barrier fetch, and close the replicas' pools."""
        for task in (self._task, self._barrier_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(*(close_pool(replica.pool, timeout) for replica in self.replicas))

    async def _check_forever(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(CHECK_INTERVAL)

    async def check(self) -> None:
        """Sample the primary's position, then each replica's replay position; update ``caught_up_to`` and lag."""
        asked = self._clock()
        self._drop_old_floors(asked)
        try:
            self._samples.append((asked, await self.primary.fetchval(_PRIMARY_LSN)))
        except Exception as exc:  # away, or (a database_url reaching a standby) not a primary: no sample
            log.log(logging.INFO if unavailable(exc) else logging.ERROR, "replicas: no primary position (%r)", exc)
        while len(self._samples) > 1 and self._samples[0][0] < asked - 2 * self.max_lag:
            self._samples.popleft()
        await asyncio.gather(*(self._check_replica(replica) for replica in self.replicas))

    async def _check_replica(self, replica: Replica) -> None:
        try:
            replayed = await replica.pool.fetchval(_REPLAYED)
        except Exception as exc:
            self._failed(replica, exc, CHECK_INTERVAL)
            return
        replica.down_until = 0.0
        if replica.failing:
            log.info("replicas: replica %d answers again", replica.index)
            replica.failing = False
        held = [at for at, position in self._samples if replayed is not None and position <= replayed]
        if held:
            replica.caught_up_to = max(replica.caught_up_to, held[-1])
        replica.lag = self._clock() - replica.caught_up_to if held else None

    # --- metrics ----------------------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        loads = CounterMetricFamily(
            "idnode_db_loads",
            "Cache loads by where they were answered: a replica, the primary (no replica usable or current), or a "
            "replica's answer retried on the primary because it was older than a change notification",
            labels=["source"],
        )
        loads.add_metric(["replica"], self.replica_loads)
        loads.add_metric(["primary"], self.primary_loads)
        loads.add_metric(["retried"], self.retried)
        yield loads
        per_replica = CounterMetricFamily(
            "idnode_db_replica_reads", "Reads answered by each replica (loads, listing, search)", labels=["replica"]
        )
        usable = GaugeMetricFamily("idnode_db_replica_usable", "1 when the replica may be read now", labels=["replica"])
        lag = GaugeMetricFamily(
            "idnode_db_replica_lag_seconds", "Age of the newest primary state the replica holds", labels=["replica"]
        )
        now = self._clock()
        in_use = self._usable(now)
        for replica in self.replicas:
            name = str(replica.index)
            per_replica.add_metric([name], replica.loads)
            usable.add_metric([name], 1 if replica in in_use else 0)
            if replica.lag is not None:
                lag.add_metric([name], replica.lag)
        yield per_replica
        yield usable
        yield lag
        yield GaugeMetricFamily("idnode_db_version_floors", "Notified keys awaiting a replica", value=len(self._floors))


class ReplicaReads:
    """A pool-like facade (``fetch``, ``fetchval``) whose calls go through ``Replicas.read``, for the registry's
    listing and search (``registry/store.py``)."""

    __slots__ = ("_replicas",)

    def __init__(self, replicas: Replicas) -> None:
        self._replicas = replicas

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await self._replicas.read(lambda pool: pool.fetch(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._replicas.read(lambda pool: pool.fetchval(query, *args))
