"""``GET /.well-known/idnode``: what this resolver serves, for clients that discover instead of reading docs.

Modelled on GS1's resolver description file (``/.well-known/gs1resolver``: ``resolverRoot``, ``supportedLinkType``,
``activeLinkTypes`` per language; research/product-resolvers.md §2, §5 #7), with idnode's own facts: the prefixes
homed here (read from the prefix table at each request, so a newly homed prefix shows at once), the link types
accepted in ``10320/loc`` with English and Chinese titles, the types that hold links and lifecycle states, the
media types ``/{handle}`` negotiates, the Handle API and OpenAPI locations, and the upstream node if any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from resolver import links
from resolver.lifecycle import STATES, STATUS_TYPE
from resolver.prefixes import PrefixTable
from resolver.product import LINKSET_TYPE
from resolver.proxy import JSON_LD_TYPE, origin
from resolver.responses import json_response

__all__ = ["LANGUAGES", "PATH", "Description"]

PATH = "/.well-known/idnode"
LANGUAGES = ("zh", "en")
"""Languages of the link-type titles and of the pages."""


class Description:
    """The description document of one node."""

    __slots__ = ("_fixed", "_prefixes")

    def __init__(self, prefixes: PrefixTable, upstream: Sequence[str] = ()) -> None:
        self._prefixes = prefixes
        types = links.link_types()
        self._fixed: dict[str, Any] = {
            "supportedLinkType": [
                {"prefix": "gs1:", "namespace": links.GS1_VOCABULARY},
                {"prefix": "idnode:", "namespace": links.IDNODE_VOCABULARY},
            ],
            "activeLinkTypes": {
                language: {curie: {"title": entry[language], "uri": entry["uri"]} for curie, entry in types.items()}
                for language in LANGUAGES
            },
            "languages": list(LANGUAGES),
            "supportsLanguageVariants": True,
            "mediaTypes": ["text/html", LINKSET_TYPE, "application/json", JSON_LD_TYPE],
            "defaultRedirectStatus": 302,
            "linksValueType": links.LOC_TYPE.lower(),
            "statusValueType": STATUS_TYPE,
            "lifecycleStates": list(STATES),
            "upstream": list(upstream),
        }

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, self.serve)]

    async def serve(self, request: web.Request) -> web.StreamResponse:
        root = origin(request)
        document = {
            "name": "idnode identifier resolver",
            "resolverRoot": root,
            "homedPrefixes": self._prefixes.homed(),
            **self._fixed,
            "api": root + "/api/handles/",
            "openapi": root + "/api/openapi.json",
        }
        return json_response(document, headers={"Access-Control-Allow-Origin": "*"})
