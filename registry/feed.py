"""``GET /api/changes``: the change feed, every change to homed data in commit order, for operators (and mirrors).

``GET /api/changes?after=SEQ&limit=N&wait=SECONDS`` (all optional: ``after`` 0, ``limit`` 1000 at most
``MAX_LIMIT``, ``wait`` 0 at most ``MAX_WAIT``) answers::

    {"responseCode": 1, "changes": [<entry>, ...], "next": 18, "oldest": 1, "newest": 18}

Entries, numbered 1, 2, 3, ... without gaps (``seq``), in the order their transactions committed::

    {"seq": 17, "kind": "handle", "op": "update", "key": "88.118/X", "handle": "88.118/x", "version": 42,
     "values": [<Handle.Net value JSON>, ...], "actor": "300:88.118/ADMIN", "at": "2026-12-02T05:00:00.123+00:00"}
    {"seq": 18, "kind": "prefix", "op": "create", "key": "88.119", "data": {<the row>}, "actor": ..., "at": ...}

``kind`` is ``handle``, ``prefix``, ``enterprise``, ``template`` (key ``<prefix key> <version>``), ``operator``
or ``node``; ``op`` is ``create``, ``update`` or ``delete``. A handle entry carries its version (the global
version sequence, growing across delete and re-create, so a follower can apply entries idempotently) and its
full values as stored, secret keys (hashed) included: the feed is for operators only. A delete has ``"values":
null`` (``"data": null``). ``data`` is the table row as stored (column names as in ``resolver/schema``).

``next`` is the number to pass as ``after`` next time (the last entry's, or ``after`` when there is none).
``oldest`` is the first number still kept, ``newest`` the last one given. With ``wait``, an empty answer is held
until a change commits or ``wait`` seconds pass (woken by ``NOTIFY idnode_feed`` on a LISTEN connection of this
process, and re-checking every ``RECHECK`` seconds anyway; while that connection is down every
``POLL_FALLBACK`` seconds). ``after`` below ``oldest - 1`` (the changes after it were pruned: ``idnode feed
prune``) answers 410 rc 4; ``after`` beyond ``newest`` (a follower of another history) 409 rc 4; a malformed
parameter 400 rc 4. Authentication as every operator endpoint: over a secure channel, 401/403 rc 402 without
credentials, 403 rc 401 for a non-operator.

The ``after`` of each request is noted as what its identity holds (``registry/replication.py``: a primary with
``sync_mirrors`` waits for that). Each request first runs the sequencer (``FeedStore.sequence``), which numbers
the changes committed since the last run; why that order never skips or reorders a committed change is explained
in ``schema/0007_change_feed.sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from registry.auth import Authenticator
from registry.feed_store import FeedPage, FeedRow, FeedStore
from registry.periodic import Background
from registry.permissions import Operators
from registry.replication import MirrorAcks
from resolver.errors import HandleError, InsufficientPermissions, ProtocolError
from resolver.responses import answers_errors, json_response

__all__ = ["CHANNEL", "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_WAIT", "ChangeFeed", "FeedAhead", "FeedGone", "FeedWakeup"]

log = logging.getLogger("idnode.feed")

CHANNEL = "idnode_feed"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_WAIT = 30.0
POLL_FALLBACK = 0.2
"""Seconds between re-checks of a waiting request while the LISTEN connection is down."""
RECHECK = 1.0
"""Seconds between re-checks while listening: a notification lost to a silently dropped connection costs this."""
_RETRY = 1.0
"""Seconds before the LISTEN connection is opened again after a failure."""


class FeedGone(HandleError):
    """``after`` lies before what is kept, or beyond what exists: the follower must start over from a copy."""

    response_code, http_status = 4, 410


class FeedAhead(FeedGone):
    http_status = 409


def _number(query: Mapping[str, str], name: str, default: float, *, low: float, top: float, integer: bool) -> Any:
    raw = query.get(name)
    if raw is None:
        return default
    kind = "an integer" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ProtocolError(f"{name} must be {kind} from {low:g} to {top:g}, not {raw[:40]!r}") from None
    if not low <= value <= top:
        raise ProtocolError(f"{name} must be {kind} from {low:g} to {top:g}, not {raw[:40]!r}")
    return value


def _entry(row: FeedRow) -> dict[str, Any]:
    entry: dict[str, Any] = {"seq": row.seq, "kind": row.kind, "op": row.op, "key": row.key}
    if row.kind == "handle":
        entry["handle"] = row.handle
        entry["version"] = row.version
        entry["values"] = None if row.values is None else orjson.Fragment(row.values)
    else:
        entry["data"] = None if row.data is None else orjson.Fragment(row.data)
    entry["actor"] = row.actor
    entry["at"] = row.at.astimezone(UTC).isoformat()
    return entry


class FeedWakeup:
    """One LISTEN connection per process on ``idnode_feed``, opened by the first request that waits (a node nobody
    follows holds no extra connection); waiting requests wake when a change commits."""

    __slots__ = ("_connect", "_event", "_job", "connected")

    def __init__(self, dsn: str, timeout: float) -> None:
        self._connect = functools.partial(
            asyncpg.connect, dsn, timeout=timeout, server_settings={"application_name": "idnode-feed"}
        )
        self._event = asyncio.Event()
        self._job = Background("idnode-feed-listen", self._run)
        self.connected = False

    def moment(self) -> asyncio.Event:
        """The event the next notification sets: take it *before* reading, so a change in between is not missed."""
        return self._event

    def _notified(self, *_args: object) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, moment: asyncio.Event, timeout: float) -> None:
        """Until ``moment`` is set or ``timeout`` passes (at most ``RECHECK``, or ``POLL_FALLBACK`` while not
        listening)."""
        timeout = min(timeout, RECHECK if self.connected else POLL_FALLBACK)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(moment.wait(), timeout)

    async def _run(self) -> None:
        while True:
            try:
                con = await self._connect()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("feed: cannot LISTEN (%r); waiting requests poll every %.1fs", exc, POLL_FALLBACK)
                await asyncio.sleep(_RETRY)
                continue
            lost = asyncio.Event()
            try:
                con.add_termination_listener(lambda _con, lost=lost: lost.set())
                await con.add_listener(CHANNEL, self._notified)
                self.connected = True
                self._notified()  # anything committed while nobody listened: let waiters look again
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("feed: LISTEN connection failed (%r)", exc)
            finally:
                self.connected = False
                con.terminate()
            await asyncio.sleep(_RETRY)

    def start(self) -> None:
        """Listen from now on (idempotent); a waiter that came first is covered by the wake-up on connecting."""
        self._job.start()

    async def stop(self, _app: web.Application | None = None) -> None:
        await self._job.stop()


class ChangeFeed:
    """``GET /api/changes``."""

    def __init__(
        self, feed: FeedStore, wakeup: FeedWakeup, auth: Authenticator, operators: Operators, acks: MirrorAcks
    ) -> None:
        self.feed = feed
        self.acks = acks
        self.wakeup = wakeup
        self.auth = auth
        self.operators = operators

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/changes", self.changes)]

    async def _read(self, after: int, limit: int) -> FeedPage:
        await self.feed.sequence()
        page = await self.feed.page(after, limit)
        if after < page.oldest - 1:
            raise FeedGone(f"Changes after {after} are no longer kept: the oldest kept is {page.oldest}")
        if after > page.newest:
            raise FeedAhead(f"after {after} is beyond the newest change {page.newest} of this node")
        return page

    @answers_errors
    async def changes(self, request: web.Request) -> web.StreamResponse:
        after = _number(request.query, "after", 0, low=0, top=2**62, integer=True)
        limit = _number(request.query, "limit", DEFAULT_LIMIT, low=1, top=MAX_LIMIT, integer=True)
        wait = _number(request.query, "wait", 0.0, low=0, top=MAX_WAIT, integer=False)
        identity = await self.auth.require(request)
        if not await self.operators.includes(identity):
            raise InsufficientPermissions("Only a node operator may read the change feed")
        if wait:
            self.wakeup.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            moment = self.wakeup.moment()
            page = await self._read(after, limit)
            self.acks.report(identity.key, after)  # holds everything up to after (checked by _read): replication.py
            remaining = deadline - loop.time()
            if page.rows or remaining <= 0:
                break
            await self.wakeup.wait(moment, remaining)
        body = {
            "responseCode": 1,
            "changes": [_entry(row) for row in page.rows],
            "next": page.rows[-1].seq if page.rows else after,
            "oldest": page.oldest,
            "newest": page.newest,
        }
        return json_response(orjson.dumps(body))
