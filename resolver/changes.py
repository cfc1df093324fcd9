"""Cache coherence: LISTEN on ``idnode_changes`` and drop what other writers changed.

Every node process holds one dedicated connection (outside the pool, whose connections are never reset)
that LISTENs on the channel the triggers of ``schema/0001_init.sql`` notify. Payloads:

- ``'<version> <handle_key>'`` → ``cache.evict(key, version)``
- ``'-'`` → ``cache.evict_absent()`` (a bulk create)
- ``'*'`` → ``cache.flush()`` (a bulk change)
- ``'prefixes'`` → reload the prefix table, then flush
- ``'classes'`` → reload the class patterns (``classes.py``); no cache entry depends on them, so nothing is flushed

Every payload is also handed to ``heard`` (when given) before the cache applies it, and a (re)connection counts as
``'*'`` there: the read replicas' currency rules (``replicas.py``) build on what the node was told.

While the connection is down the node cannot hear about changes. It keeps answering from the cache: a lost
LISTEN connection usually means the database itself is away (crashed, restarting, frozen), and then the cache is
the only thing that can still answer; its entries are at most as stale as the outage (issue 8 measured a flush
here leaving 0.7 % of cached look-ups answered through a crash, ``benchmarks/outage.py`` measures it now). The
node is not ready meanwhile (``/readyz``), and reconnects with exponential backoff between ``backoff_min`` and
``backoff_max`` seconds. A silent network drop is caught by a keep-alive query every ``keepalive`` seconds. Every
(re)connection reconciles by flushing once the LISTEN is in place, since changes may have been missed in between.

Settings: ``ChangesSettings``. Metrics: ``connected`` (0/1), ``reconnects``, ``notifications``,
``connection_losses``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from resolver.cache import Cache
from resolver.store import unavailable

__all__ = ["CHANNEL", "ChangeListener", "ChangesSettings"]

CHANNEL = "idnode_changes"
log = logging.getLogger("idnode.changes")


@dataclass(frozen=True, slots=True)
class ChangesSettings:
    """Reconnection back-off of the LISTEN connection (option ``changes_backoff_max``)."""

    backoff_min: float = 0.1
    backoff_max: float = 10.0


class ChangeListener:
    """Keeps one LISTEN connection alive and applies notifications to the cache."""

    __slots__ = (
        "_cache",
        "_connect",
        "_heard",
        "_keepalive",
        "_lost",
        "_ready",
        "_reload_classes",
        "_reload_prefixes",
        "_settings",
        "_task",
        "connected",
        "connection_losses",
        "notifications",
        "reconnects",
    )

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        cache: Cache,
        reload_prefixes: Callable[[], Awaitable[None]],
        settings: ChangesSettings,
        *,
        keepalive: float = 5.0,
        heard: Callable[[str], None] | None = None,
        reload_classes: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._connect = connect
        self._reload_classes = reload_classes
        self._heard = heard
        self._cache = cache
        self._reload_prefixes = reload_prefixes
        self._settings = settings
        self._keepalive = keepalive
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = 0
        self.reconnects = 0
        self.notifications = 0
        self.connection_losses = 0

    async def start(self, timeout: float) -> None:
        """Start listening and wait until the first LISTEN is in place, so no change before serving is missed."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="idnode-changes")
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if self._task in done:
                self._task.result()
            raise TimeoutError("changes: could not LISTEN within the start-up timeout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = self._settings.backoff_min
        first = True
        while True:
            try:
                con = await self._connect()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("changes: cannot connect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.backoff_max)
                continue
            delay = self._settings.backoff_min
            if not first:
                self.reconnects += 1
            first = False
            try:
                await self._listen(con)
            except Exception as exc:  # e.g. reloading the prefix table on a database that just went away again
                if not unavailable(exc):
                    raise
                log.warning("changes: database unavailable while listening (%r)", exc)
            finally:
                self.connected = 0
                con.terminate()
            self.connection_losses += 1
            log.warning("changes: LISTEN connection lost; serving from the cache until it is back, reconnecting")

    async def _listen(self, con: asyncpg.Connection) -> None:
        self._lost.clear()
        con.add_termination_listener(lambda _con: self._lost.set())
        await con.add_listener(CHANNEL, self._on_notification)
        # Anything may have changed while nobody listened: start from a clean cache and a fresh prefix table.
        if self._heard is not None:
            self._heard("*")  # and read replicas must catch up with the primary's present (resolver/replicas.py)
        self._cache.flush()
        await self._reload_prefixes()
        if self._reload_classes is not None:
            await self._reload_classes()
        self.connected = 1
        self._ready.set()
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._keepalive)
                return
            try:
                await con.fetchval("SELECT 1", timeout=self._keepalive)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                return

    async def _reload_and_flush(self) -> None:
        """Reload the prefix table, then flush again: answers cached while the reload ran (a negative entry under
        a prefix just unhomed, say) were decided by the old table."""
        await self._reload_prefixes()
        self._cache.flush()

    def _on_notification(self, _con: object, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        if self._heard is not None:
            self._heard(payload)
        self.apply(payload)

    def apply(self, payload: str) -> None:
        """Apply one notification payload to the cache (the grammar is in the module docstring)."""
        cache = self._cache
        if payload == "*":
            cache.flush()
        elif payload == "-":
            cache.evict_absent()
        elif payload == "prefixes":
            cache.flush()
            task = asyncio.get_running_loop().create_task(self._reload_and_flush())
            task.add_done_callback(_log_failure)
        elif payload == "classes":
            if self._reload_classes is not None:
                task = asyncio.get_running_loop().create_task(self._reload_classes())
                task.add_done_callback(_log_failure)
        else:
            version, _, key = payload.partition(" ")
            if key and version.isdigit():
                cache.evict(key, int(version))
            else:
                log.warning("changes: ignoring malformed notification %r", payload[:100])


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("changes: reloading failed: %s", task.exception())
