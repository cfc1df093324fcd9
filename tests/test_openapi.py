"""``GET /api/openapi.json`` (registry/openapi.py): a valid OpenAPI 3.1 document that describes every route the
running node registers, so that a route added without a description fails here.

The mapping from aiohttp's route patterns to the document's paths is written out below on purpose: a new route
is not described until someone adds it to the document and to this mapping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import Node, fresh_database, home, running_node

OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

SPEC_PATH = {
    "/api/handles/{tail}": "/api/handles/{handle}",
    "/api/handles": "/api/handles",
    "/api/handles:batch": "/api/handles:batch",
    "/api/resolve": "/api/resolve",
    "/api/prefixes": "/api/prefixes",
    "/api/prefixes/{prefix}": "/api/prefixes/{prefix}",
    "/api/enterprises": "/api/enterprises",
    "/api/enterprises/{prefix}": "/api/enterprises/{prefix}",
    "/api/enterprises/{prefix}/suspend": "/api/enterprises/{prefix}/suspend",
    "/api/enterprises/{prefix}/resume": "/api/enterprises/{prefix}/resume",
    "/api/enterprises/{prefix}/rotate-secret": "/api/enterprises/{prefix}/rotate-secret",
    "/api/enterprises/{prefix}/apps": "/api/enterprises/{prefix}/apps",
    "/api/enterprises/{prefix}/apps/{name}": "/api/enterprises/{prefix}/apps/{name}",
    "/api/enterprises/{prefix}/imports": "/api/enterprises/{prefix}/imports",
    "/api/enterprises/{prefix}/imports/{id}": "/api/enterprises/{prefix}/imports/{id}",
    "/api/sessions": "/api/sessions",
    "/api/sessions/{which}": "/api/sessions/{which}",
    "/api/templates/{prefix}": "/api/templates/{prefix}",
    "/api/templates/{prefix}/{version}": "/api/templates/{prefix}/{version}",
    "/api/openapi.json": "/api/openapi.json",
    "/snms/api/v5/template": "/snms/api/v5/template",
    "/api/stats": "/api/stats",
    "/api/stats/scans": "/api/stats/scans",
    "/qr/{tail}": "/qr/{label}",
    "/api/nodes": "/api/nodes",
    "/api/nodes/report": "/api/nodes/report",
    "/api/changes": "/api/changes",
    "/api/takeover": "/api/takeover",
    "/hrls/handles": "/hrls/handles",
    "/hrls/handles/": "/hrls/handles",
    "/hrls/ping": "/hrls/ping",
    "/api/site": "/api/site",
    "/.well-known/idnode": "/.well-known/idnode",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/": "/",
    "/{tail}": "/{handle}",
    "/identity/token": "/identity/token",
    "/identity/token/v1": "/identity/token/v1",
    "/identityv2/data": "/identityv2/data",
    "/identityv2/data/detail": "/identityv2/data/detail",
    "/identityv2/data/batchCreate": "/identityv2/data/batchCreate",
    "/identityv2/data/batchUpdate": "/identityv2/data/batchUpdate",
    "/identityv2/data/batchDelete": "/identityv2/data/batchDelete",
}
"""aiohttp canonical path → the path that describes it in the document."""

ANY_METHOD = {
    "/api/handles/{tail}": {"post", "put", "delete", "options"},
    "/api/handles": {"get"},
    "/api/prefixes/{prefix}": set(),
    "/api/sessions": set(),
    "/api/sessions/{which}": {"get", "put", "delete"},
}
"""What a ``*`` route really serves (the others answer 405); empty: only 405s, so any described operation will do."""

NOT_ENDPOINTS = frozenset({("*", "/api"), ("*", "/api/{tail}"), ("*", "/identity/{tail}"), ("*", "/identityv2/{tail}")})
"""Catch-alls that answer 404 "Unknown HTTP API endpoint" for whatever is not an endpoint (transcripts F7, F8), and
SNMS's, which answer the envelope with status -2."""

SERVED_WITHOUT_OWN_ROUTE = frozenset({"/api/handles/{handle}/history"})
"""Paths the handle route answers itself (``GET /api/handles/<h>/history``)."""


@pytest.fixture(scope="module")
async def node(server_dsn: str, template_database: str) -> AsyncIterator[Node]:
    """One full node (read path and registry) for the module; nothing here writes."""
    async with fresh_database(server_dsn, template_database) as database:
        await home(database, "88.TEST")
        async with running_node(database) as node:
            yield node


@pytest.fixture(scope="module")
async def spec(node: Node) -> dict[str, Any]:
    status, body, response = await node.get("/api/openapi.json")
    assert status == 200
    assert response.content_type == "application/json"
    assert isinstance(body, dict)
    return body


def _routes(node: Node) -> list[tuple[str, str]]:
    return [(route.method, route.resource.canonical) for route in node.app.router.routes() if route.resource]


def _described(spec: dict[str, Any], method: str, canonical: str) -> bool:
    path = SPEC_PATH.get(canonical)
    if path is None or path not in spec["paths"]:
        return False
    operations = {name for name in spec["paths"][path] if name in OPERATIONS}
    if method == "*":
        wanted = ANY_METHOD.get(canonical)
        return wanted is not None and (wanted <= operations if wanted else bool(operations))
    return ("get" if method == "HEAD" else method.lower()) in operations


async def test_the_document_is_openapi_3_1_with_info_and_paths(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"]
    assert spec["info"]["version"]
    assert spec["paths"]


async def test_every_operation_has_responses_and_every_path_parameter_is_declared(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        assert path.startswith("/"), path
        templated = {part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")}
        for name, operation in item.items():
            assert name in OPERATIONS, (path, name)
            assert operation["responses"], (path, name)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert templated <= declared, (path, name, templated - declared)
            for parameter in operation.get("parameters", []):
                assert parameter["in"] in ("path", "query", "header", "cookie"), (path, parameter)
                if parameter["in"] == "path":
                    assert parameter["required"] is True, (path, parameter)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_every_reference_resolves_inside_the_document(spec: dict[str, Any]) -> None:
    refs = _refs(spec)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


async def test_every_route_of_the_running_app_is_described(node: Node, spec: dict[str, Any]) -> None:
    routes = _routes(node)
    assert ("PUT", "/api/templates/{prefix}/{version}") in routes  # the registry's routes are there
    undescribed = [route for route in routes if route not in NOT_ENDPOINTS and not _described(spec, *route)]
    assert undescribed == []


async def test_every_described_path_is_served_by_a_route(node: Node, spec: dict[str, Any]) -> None:
    served = {SPEC_PATH.get(canonical) for _, canonical in _routes(node)}
    assert set(spec["paths"]) - served == SERVED_WITHOUT_OWN_ROUTE


async def test_an_unmapped_route_would_be_reported(spec: dict[str, Any]) -> None:
    assert not _described(spec, "GET", "/api/brand-new")
    assert not _described(spec, "PATCH", "/api/handles/{tail}")
    assert not _described(spec, "*", "/api/brand-new/{tail}")
    assert _described(spec, "HEAD", "/healthz")
