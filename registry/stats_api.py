"""``GET /api/stats``: the operation statistics (运营统计) per UTC day and prefix.

``GET /api/stats?from=YYYY-MM-DD&to=YYYY-MM-DD[&prefix=P][&node=C]`` answers::

    {"responseCode": 1, "from": "2026-12-01", "to": "2026-12-02",
     "days": [{"day": "2026-12-01", "prefix": "88.118", "lookups": {"hit": 3, "miss": 1, "not_found": 2,
               "forwarded": 0, "stale": 0, "error": 0}, "registrations": {"create": 1, "update": 0, "delete": 0}}]}

- ``from``/``to`` are inclusive UTC days; either defaults to the other, both to today; at most ``MAX_DAYS`` (366)
  days. A bad date, ``from`` after ``to`` or a longer range is 400 rc 4 naming the problem.
- ``days`` holds one item per day and prefix with any count, sorted by day then prefix (a prefix key, upper
  case; look-ups of ``0.NA/P`` count under ``P``); days and prefixes without counts are left out.
- ``prefix=P`` keeps that prefix only (not those derived from it).
- ``node=C`` (operators only) answers the totals the child node of prefix ``C`` reported (``registry/nodes.py``)
  instead of this node's own; the answer then carries ``"node": "C"``.

Who sees what: a node operator every prefix; any other authenticated identity only its own prefix and those
derived from it (the enterprise wall, ``permissions.within_prefix``), a ``prefix`` outside it being 403 rc 400.
Anonymous is 401 rc 402, credentials over plain HTTP 403 rc 402, as on every authenticated endpoint.

This process's drained look-ups are flushed before the answer is read, so a caller sees its own look-ups at once
(other workers' counts arrive with their next roll-up, within ``stats_interval``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from registry.auth import Authenticator
from registry.permissions import Operators
from registry.recorder import StatsRecorder
from registry.statistics import Scope, StatsStore, parse_range
from resolver.errors import InsufficientPermissions, InvalidAdmin
from resolver.responses import answers_errors, json_response

__all__ = ["StatsAPI"]


class StatsAPI:
    """``GET /api/stats``."""

    def __init__(self, stats: StatsStore, recorder: StatsRecorder, auth: Authenticator, operators: Operators) -> None:
        self.stats = stats
        self.recorder = recorder
        self.auth = auth
        self.operators = operators

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/stats", self.get)]

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        start, end = parse_range(query.get("from"), query.get("to"), today=datetime.now(UTC).date())
        prefix, node = query.get("prefix") or None, query.get("node") or None
        identity = await self.auth.require(request)
        scope = Scope()
        if not await self.operators.includes(identity):
            if node is not None:
                raise InsufficientPermissions("Only a node operator may read a child node's statistics")
            scope = Scope(identity.handle.split("/", 1)[0])
            if prefix is not None and not scope.admits(prefix):
                raise InvalidAdmin(f"{identity} may not read the statistics of prefix {prefix}")
        await self.recorder.flush()
        days = await self.stats.days(start, end, scope=scope, prefix=prefix, node=node)
        body: dict[str, Any] = {"responseCode": 1, "from": start.isoformat(), "to": end.isoformat()}
        if node is not None:
            body["node"] = node
        body["days"] = [row.as_json() for row in days]
        return json_response(body)
