"""Reverse look-up, ``GET /hrls/handles?URL=...&CHECKSUM=...``: which handles hold these values (pyhandle's
``search_handle``; research/handle-rest-api.md §6).

Each parameter other than ``limit``/``page``/``retrieverecords`` names a value type and the value it must have;
several are AND-ed; ``*`` is a wildcard. The answer is a JSON array of handle names, at most ``limit`` (default
1000, at most 10000). Only types listed in ``search_types`` are indexed (``handle_search``, kept by the write
triggers), and only values anonymous readers may see: a secret key is never searchable.

Searching needs an authenticated identity, as the HRLS servlet does; an enterprise identity only finds handles
under its own prefix, a node operator finds any.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.core import Registry
from resolver.errors import ProtocolError
from resolver.identifiers import ascii_upper
from resolver.responses import answers_errors, json_response

__all__ = ["ReverseLookup"]

_RESERVED = frozenset({"limit", "page", "retrieverecords"})
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def like_pattern(value: str) -> str:
    """``*`` → ``%``; literal ``%``, ``_`` and ``\\`` escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class ReverseLookup:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/hrls/ping", self.ping),
            web.get("/hrls/handles", self.search),
            web.get("/hrls/handles/", self.search),
        ]

    async def ping(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    @answers_errors
    async def search(self, request: web.Request) -> web.StreamResponse:
        criteria = [(ascii_upper(k), v) for k, v in request.query.items() if k not in _RESERVED]
        if not criteria:
            raise ProtocolError("Give at least one TYPE=value criterion, e.g. ?URL=https://example.com/*")
        try:
            limit = min(int(request.query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        except ValueError:
            raise ProtocolError("limit must be an integer") from None
        identity = await self.registry.identity(request)
        searchable = {row[0] for row in await self.registry.pool.fetch("SELECT type_key FROM search_types")}
        unknown = sorted({kind for kind, _ in criteria} - searchable)
        if unknown:
            raise ProtocolError(
                f"Not searchable here: {', '.join(unknown)} (searchable: {', '.join(sorted(searchable))})"
            )
        clauses, args = [], []
        for kind, value in criteria:
            op = "LIKE" if "*" in value else "="
            args += [kind, like_pattern(value) if op == "LIKE" else value]
            clauses.append(
                f"h.handle_key IN (SELECT handle_key FROM handle_search WHERE type_key = ${len(args) - 1} "
                f"AND value {op} ${len(args)})"
            )
        if not await self.registry.is_operator(identity):
            own = ascii_upper(identity.handle.split("/", 1)[0])
            args += [own, like_pattern(own) + ".%"]
            clauses.append(f"(h.prefix_key = ${len(args) - 1} OR h.prefix_key LIKE ${len(args)})")
        args.append(max(limit, 0))
        rows = await self.registry.pool.fetch(
            f"SELECT h.handle FROM handles h WHERE {' AND '.join(clauses)} ORDER BY h.handle_key LIMIT ${len(args)}",
            *args,
        )
        return json_response(orjson.dumps([row[0] for row in rows]))
