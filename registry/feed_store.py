"""The change feed's statements (schema ``0007_change_feed.sql``): sequence, read a page, prune.

Kept apart from ``registry/store.py`` because the feed is a unit of its own that the mirror, takeover and escrow
build on. ``sequence`` runs ``idnode_sequence_changes`` (moving committed pending changes into the feed, see the
migration for why that never skips or reorders a committed change) on the write pool; reading a page runs on the
read pool, after the sequencer's transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = ["SEQUENCE_BATCH", "FeedPage", "FeedRow", "FeedStore"]

SEQUENCE_BATCH = 50_000
"""At most this many pending changes are numbered per sequencer run (a large import is numbered over several)."""

_FEED_LOCK = int.from_bytes(b"idnode:f")
"""The sequencer's advisory lock (see the migration): pruning takes it too, so it never races a numbering."""
_STATE = "SELECT last_seq, oldest FROM change_feed_state"
_PAGE = (
    "WITH f AS MATERIALIZED (SELECT * FROM change_feed WHERE seq > $1 ORDER BY seq LIMIT $2) "
    'SELECT f.seq, f.kind, f.op, f.key, h.handle, h.version, h."values"::text, f.data::text, f.actor, f.at '
    'FROM f LEFT JOIN LATERAL (SELECT handle, version, "values" FROM handle_history '
    "WHERE seq = f.history_seq LIMIT 1) h ON true ORDER BY f.seq"
)
"""The page first, then each entry's history row by primary key (``LIMIT 1`` keeps the planner from flattening the
look-up into a hash join over all of history, which it chose on a freshly imported, not yet analyzed feed)."""
_PRUNE = """
WITH cut AS (
    SELECT coalesce((SELECT min(seq) FROM change_feed WHERE at >= now() - $1::float8 * interval '1 day'),
                    (SELECT last_seq + 1 FROM change_feed_state)) AS keep_from
), gone AS (
    DELETE FROM change_feed WHERE seq < (SELECT keep_from FROM cut) RETURNING 1
)
UPDATE change_feed_state SET oldest = greatest(oldest, (SELECT keep_from FROM cut))
RETURNING (SELECT count(*) FROM gone), oldest
"""


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One feed entry; ``handle``/``version``/``values`` for handles, ``data`` (the row as JSON) otherwise."""

    seq: int
    kind: str
    op: str
    key: str
    handle: str | None
    version: int | None
    values: str | None
    data: str | None
    actor: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Entries after a number, and the feed's bounds when they were read: ``oldest`` kept, ``newest`` given."""

    rows: list[FeedRow]
    oldest: int
    newest: int


class FeedStore:
    """The feed over a read pool and a write pool (``registry/store.py`` explains the two)."""

    __slots__ = ("read", "write")

    def __init__(self, read: asyncpg.Pool, write: asyncpg.Pool | None = None) -> None:
        self.read = read
        self.write = write if write is not None else read

    async def sequence(self, batch: int = SEQUENCE_BATCH) -> int:
        """Number the committed pending changes (at most ``batch``); how many. Cheap when there are none."""
        return await self.write.fetchval("SELECT idnode_sequence_changes($1)", batch)

    async def newest(self) -> int:
        """The last number given (on the write pool: right after ``sequence``)."""
        return await self.write.fetchval("SELECT last_seq FROM change_feed_state")

    async def page(self, after: int, limit: int) -> FeedPage:
        """Up to ``limit`` entries numbered above ``after``, with the bounds read before them."""
        async with self.read.acquire() as con, con.transaction(isolation="repeatable_read", readonly=True):
            newest, oldest = await con.fetchrow(_STATE)
            rows = await con.fetch(_PAGE, after, limit)
        return FeedPage([FeedRow(*row) for row in rows], oldest, newest)

    async def prune(self, days: float) -> tuple[int, int]:
        """Drop entries older than ``days`` (and any numbered before them); ``(entries dropped, oldest kept)``."""
        async with self.write.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _FEED_LOCK)
            dropped, oldest = await con.fetchrow(_PRUNE, days)
        return dropped, oldest
