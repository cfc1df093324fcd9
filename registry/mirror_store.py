"""The mirror's statements (schema ``0008_mirror.sql``): its state, applying a page of the primary's feed, takeover.

A page is applied by ``idnode_mirror_apply`` in one statement and transaction: it locks the ``mirror_state`` row,
checks that the watermark is the one the page was asked after and that no takeover happened meanwhile, writes
every entry in feed order and moves the watermark. The page goes to PostgreSQL as received, so values reach
``jsonb`` exactly as the primary stored them (no float or big-integer round trip through Python). Handles keep the
source's spelling, values (timestamps included, so a read answers the primary's bytes) and actor; the version,
history row, search index and notification are this node's own, from its triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = ["MirrorState", "MirrorStore", "NotAMirror", "NotEmpty"]

_SERIALS = ("enterprises",)
"""Tables whose serial ids are copied from the primary: a takeover moves their sequences past them."""
_STATE = "SELECT source, watermark, applied_at, taken_over_at FROM mirror_state"


class NotEmpty(ValueError):
    """A mirror's first start over a database that already holds handles it did not copy."""


class NotAMirror(Exception):
    """The database holds no mirror state (takeover of a node that never followed anything)."""


@dataclass(frozen=True, slots=True)
class MirrorState:
    source: str
    watermark: int
    applied_at: datetime | None
    taken_over_at: datetime | None


class MirrorStore:
    """The mirror's data layer over the write pool (every statement here changes data or must see the latest)."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def state(self) -> MirrorState | None:
        row = await self.pool.fetchrow(_STATE)
        return None if row is None else MirrorState(*row)

    async def begin(self, source: str) -> MirrorState:
        """The state, created at watermark 0 for ``source`` the first time; refused over data it did not copy."""
        async with self.pool.acquire() as con, con.transaction():
            row = await con.fetchrow(_STATE)
            if row is not None:
                return MirrorState(*row)
            if await con.fetchval("SELECT EXISTS (SELECT 1 FROM handles)"):
                raise NotEmpty("mirror: this database already holds handles; a mirror starts from an empty one")
            await con.execute("INSERT INTO mirror_state (source) VALUES ($1)", source)
        return MirrorState(source, 0, None, None)

    async def apply(self, after: int, page: str) -> bool:
        """Apply the ``changes`` of ``page`` (a feed answer as received, to ``after``) and move the watermark to its
        last entry, in one transaction (``idnode_mirror_apply``); False, with nothing applied, when the watermark is
        no longer ``after`` or the node was taken over."""
        return await self.pool.fetchval("SELECT idnode_mirror_apply($1, $2::jsonb -> 'changes')", after, page)

    async def takeover(self) -> MirrorState:
        """Stop following for good and make this node a primary: the state's time of takeover is set (an apply
        in flight is waited for by the row lock, and any later one refused), and sequences of copied ids are moved
        past them so new rows get fresh ones."""
        async with self.pool.acquire() as con, con.transaction():
            row = await con.fetchrow(
                "UPDATE mirror_state SET taken_over_at = coalesce(taken_over_at, now()) "
                "RETURNING source, watermark, applied_at, taken_over_at"
            )
            if row is None:
                raise NotAMirror("this node is not a mirror: it never followed a primary")
            for table in _SERIALS:
                await con.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"greatest((SELECT max(id) FROM {table}), 1), (SELECT max(id) FROM {table}) IS NOT NULL)"
                )
        return MirrorState(*row)
