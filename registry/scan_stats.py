"""Scan statistics as PostgreSQL keeps them (``scan_stats``, schema 0013): proxy answers per UTC day, handle and
link type, added to by every worker's recorder (``registry/recorder.py``) from its ``resolver/scans.ScanCounts``.

A :class:`ScanReport` answers ``GET /api/stats/scans`` for a range of days within a reader's ``Scope``: totals per
link type, one row per day, and a page of the most scanned handles (most scans first, then by key), each with its
counts per link type. A handle is named as it was registered when it still exists (the key otherwise: a deleted
handle keeps its counts); the overflow buckets ``P/(other)`` and ``(other)`` (``resolver/scans.py``) are named so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import orjson

from registry.paging import Page
from registry.statistics import DAYS_FILTER, Scope, filter_params
from resolver.tallies import prefix_of_key

__all__ = ["ScanReport", "ScanStore"]

_ADD = (
    "INSERT INTO scan_stats (prefix_key, day, handle_key, link_type, scans) "
    "SELECT p, $1, h, t, n FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(p, h, t, n) "
    "ON CONFLICT (prefix_key, day, handle_key, link_type) DO UPDATE SET scans = scan_stats.scans + EXCLUDED.scans"
)
_TOTALS = f"SELECT link_type, sum(scans)::bigint FROM scan_stats WHERE {DAYS_FILTER} GROUP BY link_type"
_DAYS = (
    f"SELECT day, link_type, sum(scans)::bigint FROM scan_stats WHERE {DAYS_FILTER} "
    "GROUP BY day, link_type ORDER BY day, link_type"
)
_HANDLE_COUNT = f"SELECT count(DISTINCT handle_key) FROM scan_stats WHERE {DAYS_FILTER}"
_TOP = (
    "WITH per AS ("
    f" SELECT handle_key, link_type, sum(scans) AS n FROM scan_stats WHERE {DAYS_FILTER} GROUP BY 1, 2"
    "), top AS ("
    " SELECT handle_key, sum(n)::bigint AS total, jsonb_object_agg(link_type, n)::text AS types FROM per"
    " GROUP BY handle_key ORDER BY total DESC, handle_key LIMIT $6 OFFSET $7"
    ") SELECT coalesce(h.handle, top.handle_key), top.total, top.types FROM top"
    " LEFT JOIN handles h ON h.handle_key = top.handle_key ORDER BY top.total DESC, top.handle_key"
)


@dataclass(frozen=True, slots=True)
class ScanReport:
    """Scans of a range of days (see the module docstring); ``handles`` is one page of ``handle_count``."""

    totals: dict[str, int]
    days: list[dict[str, Any]]
    handles: list[dict[str, Any]]
    handle_count: int

    def as_json(self) -> dict[str, Any]:
        return {
            "totals": {"scans": sum(self.totals.values()), "linkTypes": self.totals},
            "days": self.days,
            "handleCount": self.handle_count,
            "handles": self.handles,
        }


class ScanStore:
    """The statements of ``scan_stats`` over a pool (adding: the registry's write pool)."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection) -> None:
        self.pool = pool

    async def add(self, day: date, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Add ``counts`` (by handle key, then link type) to ``day``'s totals, in one statement."""
        prefixes, keys, types, scans = [], [], [], []
        for key, by_type in counts.items():
            for link_type, n in by_type.items():
                prefixes.append(prefix_of_key(key))
                keys.append(key)
                types.append(link_type)
                scans.append(n)
        await self.pool.execute(_ADD, day, prefixes, keys, types, scans)

    async def report(self, start: date, end: date, *, scope: Scope, prefix: str | None, page: Page) -> ScanReport:
        """Scans of days ``start``..``end`` (inclusive), of ``prefix`` only when given, within ``scope``."""
        params = filter_params(start, end, scope, prefix)
        totals = {row[0]: row[1] for row in await self.pool.fetch(_TOTALS, *params)}
        days: dict[date, dict[str, int]] = {}
        for day, link_type, n in await self.pool.fetch(_DAYS, *params):
            days.setdefault(day, {})[link_type] = n
        handles = [
            {"handle": name, "scans": total, "linkTypes": orjson.loads(types)}
            for name, total, types in await self.pool.fetch(_TOP, *params, page.size, page.offset)
        ]
        count = await self.pool.fetchval(_HANDLE_COUNT, *params)
        return ScanReport(
            totals,
            [{"day": day.isoformat(), "scans": sum(by.values()), "linkTypes": by} for day, by in days.items()],
            handles,
            count,
        )
