"""Operation statistics (运营统计): daily look-ups and registrations per prefix, as PostgreSQL keeps them.

One row of the statistics is a :class:`DayStats`: a UTC day, a prefix key (ASCII upper case, as handle keys
are; ``0.NA/P`` counts as ``P``), look-ups by outcome (``resolver/tallies.OUTCOMES``: hit, miss, not_found,
forwarded, stale, error) and registrations by operation (create, update, delete). Look-ups come from
``lookup_stats`` (added to by every worker's recorder, ``registry/recorder.py``); registrations are computed
from the append-only ``handle_history``, so every writer (REST, batch, import, plain SQL) is counted once. A
child node's reported totals live in ``node_stats`` (``registry/nodes.py``) and are read the same way with
``node=``.

Its JSON form (``GET /api/stats``, ``idnode stats --json``, a child's report)::

    {"day": "2026-12-02", "prefix": "88.118", "lookups": {"hit": 3, "miss": 1, "not_found": 2, "forwarded": 0,
     "stale": 0, "error": 0}, "registrations": {"create": 1, "update": 0, "delete": 0}}

A :class:`Scope` says which prefixes a reader may see: all (an operator), or one prefix and those derived from
it (an enterprise). ``MAX_DAYS`` bounds one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from registry.store import like_pattern
from resolver.errors import ProtocolError
from resolver.identifiers import ascii_upper
from resolver.tallies import OUTCOMES

__all__ = [
    "DAYS_FILTER",
    "MAX_DAYS",
    "REGISTRATION_OPS",
    "DayStats",
    "Scope",
    "StatsStore",
    "filter_params",
    "parse_day",
    "parse_range",
]

MAX_DAYS = 366
REGISTRATION_OPS = ("create", "update", "delete")
_NODE_COLUMNS = ("created", "updated", "deleted")
"""``node_stats`` columns of the registrations, in ``REGISTRATION_OPS`` order."""

_ADD_LOOKUPS = (
    f"INSERT INTO lookup_stats (day, prefix_key, {', '.join(OUTCOMES)}) "
    f"SELECT * FROM unnest($1::date[], $2::text[], {', '.join(f'${i + 3}::bigint[]' for i in range(len(OUTCOMES)))}) "
    "ON CONFLICT (day, prefix_key) DO UPDATE SET "
    + ", ".join(f"{name} = lookup_stats.{name} + EXCLUDED.{name}" for name in OUTCOMES)
)
_PUT_NODE = (
    f"INSERT INTO node_stats (node_key, day, prefix_key, {', '.join(OUTCOMES + _NODE_COLUMNS)}) "
    f"SELECT $1, * FROM unnest($2::date[], $3::text[], "
    f"{', '.join(f'${i + 4}::bigint[]' for i in range(len(OUTCOMES) + 3))}) "
    "ON CONFLICT (node_key, day, prefix_key) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in OUTCOMES + _NODE_COLUMNS)
)
_SCOPE = "($4::text IS NULL OR {col} = $4 OR {col} LIKE $5)"
"""The reader's scope: everything when $4 is NULL, else that prefix ($4) and those derived from it ($5)."""
_ONLY = "($3::text IS NULL OR {col} = $3)"
DAYS_FILTER = f"day BETWEEN $1 AND $2 AND {_ONLY.format(col='prefix_key')} AND {_SCOPE.format(col='prefix_key')}"
"""Rows of a table keyed by ``day`` and ``prefix_key`` that a query asks for; its parameters are
:func:`filter_params`' (more may follow from $6)."""
_LOOKUPS = f"SELECT day, prefix_key, {', '.join(OUTCOMES)} FROM lookup_stats WHERE {DAYS_FILTER}"
_REGISTRATIONS = (
    "SELECT day, prefix_key, "
    + ", ".join(f"count(*) FILTER (WHERE op = '{op}')" for op in REGISTRATION_OPS)
    + " FROM (SELECT (at AT TIME ZONE 'UTC')::date AS day, idnode_prefix_of(handle_key) AS prefix_key, op "
    "FROM handle_history WHERE at >= $6 AND at < $7) h "
    f"WHERE {_ONLY.format(col='prefix_key')} AND {_SCOPE.format(col='prefix_key')} "
    "AND day BETWEEN $1 AND $2 GROUP BY day, prefix_key"
)
_NODE_ROWS = (
    f"SELECT day, prefix_key, {', '.join(OUTCOMES + _NODE_COLUMNS)} FROM node_stats "
    f"WHERE node_key = $6 AND day BETWEEN $1 AND $2 AND {_ONLY.format(col='prefix_key')} "
    f"AND {_SCOPE.format(col='prefix_key')}"
)


def parse_day(text: str, name: str) -> date:
    """A ``YYYY-MM-DD`` query parameter; ProtocolError (400 rc 4) naming ``name`` otherwise."""
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"{name} must be a date as YYYY-MM-DD, got {text[:40]!r}") from None


def parse_range(first: str | None, last: str | None, *, today: date) -> tuple[date, date]:
    """``from``/``to`` (inclusive UTC days; each defaults to the other, both to today), at most ``MAX_DAYS``."""
    start = parse_day(first, "from") if first is not None else None
    end = parse_day(last, "to") if last is not None else None
    start, end = start or end or today, end or start or today
    if start > end:
        raise ProtocolError(f"from ({start}) is after to ({end})")
    if (end - start).days + 1 > MAX_DAYS:
        raise ProtocolError(f"At most {MAX_DAYS} days per query; {start} to {end} is {(end - start).days + 1}")
    return start, end


@dataclass(frozen=True, slots=True)
class Scope:
    """Which prefixes a reader may see: every one (``own`` None) or ``own`` and the prefixes derived from it."""

    own: str | None = None

    def admits(self, prefix: str) -> bool:
        if self.own is None:
            return True
        key, own = ascii_upper(prefix), ascii_upper(self.own)
        return key == own or key.startswith(own + ".")

    def _args(self) -> tuple[str | None, str | None]:
        if self.own is None:
            return None, None
        key = ascii_upper(self.own)
        return key, like_pattern(key) + ".%"


def filter_params(start: date, end: date, scope: Scope, prefix: str | None) -> tuple[Any, ...]:
    """The parameters of ``DAYS_FILTER``: days ``start``..``end`` (inclusive), ``prefix`` only when given, within
    ``scope``."""
    return (start, end, None if prefix is None else ascii_upper(prefix), *scope._args())


@dataclass(slots=True)
class DayStats:
    """One day of one prefix (see the module docstring)."""

    day: date
    prefix: str
    lookups: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    registrations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGISTRATION_OPS, 0))

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "prefix": self.prefix,
            "lookups": dict(self.lookups),
            "registrations": dict(self.registrations),
        }

    @classmethod
    def from_json(cls, item: Any) -> DayStats:
        """A reported row; ProtocolError naming the first thing wrong with it."""
        if not isinstance(item, dict):
            raise ProtocolError("each stats item must be an object with day, prefix, lookups, registrations")
        day = parse_day(item.get("day") if isinstance(item.get("day"), str) else "", "stats day")
        prefix = item.get("prefix")
        if not isinstance(prefix, str) or not prefix or "\x00" in prefix or len(prefix) > 255:
            raise ProtocolError("stats prefix must be a non-empty string")
        return cls(
            day,
            ascii_upper(prefix),
            _counts(item.get("lookups", {}), OUTCOMES, "lookups"),
            _counts(item.get("registrations", {}), REGISTRATION_OPS, "registrations"),
        )


def _counts(given: Any, names: Sequence[str], what: str) -> dict[str, int]:
    if not isinstance(given, dict):
        raise ProtocolError(f"stats {what} must be an object")
    counts = {}
    for name in names:
        value = given.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ProtocolError(f"stats {what}.{name} must be a non-negative integer")
        counts[name] = value
    return counts


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


_NODE_OF = "SELECT prefix FROM nodes WHERE upper(identity) = $1"
_RECORD = "UPDATE nodes SET last_seen = now(), report = $2::jsonb WHERE prefix_key = $1"
_LIST = (
    "SELECT prefix, name, identity, created_at, last_seen, extract(epoch FROM now() - last_seen), report "
    "FROM nodes ORDER BY prefix_key"
)
_HEALTH = (
    "SELECT count(*) FILTER (WHERE last_seen IS NULL), "
    "count(*) FILTER (WHERE last_seen >= now() - make_interval(secs => $1)), "
    "count(*) FILTER (WHERE last_seen < now() - make_interval(secs => $1)) FROM nodes"
)


class StatsStore:
    """The statements of the statistics and of the child nodes' run status (``nodes``, ``node_stats``), over a
    pool (writes: the registry's write pool). Onboarding a child writes its ``nodes`` row in the registry's own
    write transaction (``registry/store.py``), with its prefix handle."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection) -> None:
        self.pool = pool

    async def add_lookups(self, day: date, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Add ``counts`` (by prefix key, then outcome) to ``day``'s totals, in one statement."""
        prefixes = list(counts)
        columns = [[counts[p][name] for p in prefixes] for name in OUTCOMES]
        await self.pool.execute(_ADD_LOOKUPS, [day] * len(prefixes), prefixes, *columns)

    async def days(
        self, start: date, end: date, *, scope: Scope = Scope(), prefix: str | None = None, node: str | None = None
    ) -> list[DayStats]:
        """Rows of ``start``..``end`` (inclusive) sorted by day and prefix: this node's own, or with ``node``
        (a child's prefix key) what that child reported."""
        args = filter_params(start, end, scope, prefix)
        rows: dict[tuple[date, str], DayStats] = {}

        def row(day: date, key: str) -> DayStats:
            found = rows.get((day, key))
            if found is None:
                found = rows[(day, key)] = DayStats(day, key)
            return found

        if node is not None:
            for record in await self.pool.fetch(_NODE_ROWS, *args, ascii_upper(node)):
                stats = row(record[0], record[1])
                stats.lookups = {name: record[2 + i] for i, name in enumerate(OUTCOMES)}
                base = 2 + len(OUTCOMES)
                stats.registrations = {op: record[base + i] for i, op in enumerate(REGISTRATION_OPS)}
        else:
            for record in await self.pool.fetch(_LOOKUPS, *args):
                row(record[0], record[1]).lookups = {name: record[2 + i] for i, name in enumerate(OUTCOMES)}
            window = (_utc_midnight(start), _utc_midnight(end + timedelta(days=1)))
            for record in await self.pool.fetch(_REGISTRATIONS, *args, *window):
                row(record[0], record[1]).registrations = {op: record[2 + i] for i, op in enumerate(REGISTRATION_OPS)}
        return [rows[key] for key in sorted(rows)]

    async def record_report(self, node: str, status: str, days: Iterable[DayStats]) -> None:
        """In one transaction: a child's report (``status`` JSON) and its last-seen time, and its reported totals
        of those days, replacing what it reported before (absolute, so a resent report changes nothing)."""
        days = list(days)
        columns = [[d.lookups[name] for d in days] for name in OUTCOMES]
        columns += [[d.registrations[op] for d in days] for op in REGISTRATION_OPS]
        key = ascii_upper(node)
        async with self.pool.acquire() as con, con.transaction():
            if days:
                await con.execute(_PUT_NODE, key, [d.day for d in days], [d.prefix for d in days], *columns)
            await con.execute(_RECORD, key, status)

    async def node_of(self, identity_key: str) -> str | None:
        """The prefix of the child node whose identity this is, or None."""
        return await self.pool.fetchval(_NODE_OF, identity_key)

    async def nodes(self) -> list[asyncpg.Record]:
        """Every child: prefix, name, identity, created, last seen, seconds since, last report (JSON text)."""
        return await self.pool.fetch(_LIST)

    async def node_health(self, silent_after: float) -> tuple[int, int, int]:
        """How many children were never heard from, heard from within ``silent_after`` seconds, and not since."""
        never, ok, silent = await self.pool.fetchrow(_HEALTH, silent_after)
        return never, ok, silent
