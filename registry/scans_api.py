"""``GET /api/stats/scans``: how often the proxy answered for each handle, per UTC day and link type.

``GET /api/stats/scans?from=YYYY-MM-DD&to=YYYY-MM-DD[&prefix=P][&page=N&pageSize=M]`` answers::

    {"responseCode": 1, "from": "2026-12-01", "to": "2026-12-02", "prefix": "88.118",
     "totals": {"scans": 12, "linkTypes": {"default": 10, "page": 2}},
     "days": [{"day": "2026-12-02", "scans": 12, "linkTypes": {"default": 10, "page": 2}}],
     "handleCount": 2, "page": 0, "pageSize": 100,
     "handles": [{"handle": "88.118/P1", "scans": 9, "linkTypes": {"default": 8, "page": 1}}, ...]}

- What counts (``resolver/scans.py``): every answer of ``GET /{handle}`` for a record, the redirect as link type
  ``default``, the values page as ``page`` (a typed link selected with ``?linkType=`` as its type). Errors do
  not count. No client address is stored.
- ``from``/``to``: inclusive UTC days, as ``GET /api/stats`` takes them (either defaults to the other, both to
  today; at most 366 days; 400 rc 4 otherwise).
- ``prefix=P`` keeps that prefix only (not those derived from it); without it, every prefix the reader may see.
- ``handles``: the most scanned first (then by handle), one page of them: ``page`` counts from 0 (default 0),
  ``pageSize`` from 1 to ``MAX_PAGE_SIZE`` (default ``PAGE_SIZE``); ``handleCount`` is how many there are.
  Scans beyond the per-minute bound of distinct handles appear under ``P/(other)`` (``resolver/scans.py``).

Who sees what, as ``GET /api/stats``: a node operator every prefix; any other authenticated identity only its own
prefix and those derived from it, a ``prefix`` outside it being 403 rc 400. Anonymous is 401 rc 402, credentials
over plain HTTP 403 rc 402. This process's counts are flushed before the answer is read (other workers' arrive
with their next roll-up, within ``stats_interval``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from registry.auth import Authenticator
from registry.paging import Page, paging
from registry.permissions import Operators
from registry.recorder import StatsRecorder
from registry.scan_stats import ScanStore
from registry.statistics import Scope, parse_range
from resolver.errors import InvalidAdmin, ProtocolError
from resolver.responses import answers_errors, json_response

__all__ = ["MAX_PAGE_SIZE", "PAGE_SIZE", "ScansAPI"]

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _page(query: Any) -> Page:
    """The page of handles asked for: ``paging``'s, with this endpoint's defaults and bound (never "everything")."""
    asked = paging({"page": query.get("page", "0"), "pageSize": query.get("pageSize", str(PAGE_SIZE))})
    if asked is None:
        raise ProtocolError("page must be 0 or more")
    if not 1 <= asked.size <= MAX_PAGE_SIZE:
        raise ProtocolError(f"pageSize must be from 1 to {MAX_PAGE_SIZE}, got {asked.size}")
    return asked


class ScansAPI:
    """``GET /api/stats/scans``."""

    def __init__(self, scans: ScanStore, recorder: StatsRecorder, auth: Authenticator, operators: Operators) -> None:
        self.scans = scans
        self.recorder = recorder
        self.auth = auth
        self.operators = operators

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/stats/scans", self.get)]

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        start, end = parse_range(query.get("from"), query.get("to"), today=datetime.now(UTC).date())
        prefix = query.get("prefix") or None
        page = _page(query)
        identity = await self.auth.require(request)
        scope = Scope()
        if not await self.operators.includes(identity):
            scope = Scope(identity.handle.split("/", 1)[0])
            if prefix is not None and not scope.admits(prefix):
                raise InvalidAdmin(f"{identity} may not read the scan statistics of prefix {prefix}")
        await self.recorder.flush()
        report = await self.scans.report(start, end, scope=scope, prefix=prefix, page=page)
        body: dict[str, Any] = {"responseCode": 1, "from": start.isoformat(), "to": end.isoformat(), "prefix": prefix}
        body.update(report.as_json())
        body["page"], body["pageSize"] = page.number, page.size
        return json_response(body)
