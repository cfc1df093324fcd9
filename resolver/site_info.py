"""``GET /api/site``: this node's site record, as Handle.Net answers it (transcript F6).

The site is built from ``advertise_url`` (``sites.own_site``), the same value the node publishes on its prefix
handles at the parent. A node without ``advertise_url`` describes itself as the client reached it (the request's
host and scheme), which is right for a client on the same network and says so in the site's description.
Other methods answer 405 rc 4 "Unknown HTTP API endpoint" with ``Allow`` (the ``/api`` catch-all), as Handle.Net
does (transcript F9).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from resolver.responses import is_secure, json_response
from resolver.sites import base_url, own_site

__all__ = ["SiteInfo"]


class SiteInfo:
    def __init__(self, advertise_url: str | None) -> None:
        self._advertised = orjson.dumps({"responseCode": 1, "site": own_site(advertise_url)}) if advertise_url else None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/site", self.site)]

    async def site(self, request: web.Request) -> web.StreamResponse:
        if self._advertised is not None:
            return json_response(self._advertised)
        scheme = "https" if is_secure(request) else "http"
        try:
            url = base_url(f"{scheme}://{request.host}")
        except ValueError:
            url = base_url(f"{scheme}://127.0.0.1:{request.url.port or 80}")
        site = own_site(url, description="idnode (no advertise_url: as reached by this request)")
        return json_response({"responseCode": 1, "site": site})
