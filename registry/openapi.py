"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every endpoint of the node, read and write.

Kept as data next to the code it describes; ``tests/test_openapi.py`` checks that every route the app registers
is described here, so a new route without a description fails the suite.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from resolver import __version__
from resolver.responses import json_response

__all__ = ["SPEC", "OpenAPI"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "Handle-style error: responseCode, message, handle")
_HANDLE = {
    "name": "handle",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "prefix/suffix",
}
_PREFIX = {"name": "prefix", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, kind: str = "string", description: str = "", *, repeat: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if repeat:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "schema": schema, "description": description}


_READ_PARAMS = [
    _query("type", description="value types to return (OR-ed, case-insensitive; 'URL.' matches subtypes)", repeat=True),
    _query("index", "integer", "value indexes to return (OR-ed with type)", repeat=True),
    _query("publicOnly", "boolean", "false: also non-public values (needs an admin with READ_VALUE)"),
    _query("auth", "boolean", "authoritative answer (always, on this node)"),
    _query("pretty", "boolean", "indent the JSON"),
    _query("callback", description="JSONP: wrap the answer in callback(...)"),
]

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["responseCode"],
        "properties": {
            "responseCode": {"type": "integer"},
            "message": {"type": "string"},
            "handle": {"type": "string"},
        },
    },
    "HandleValue": {
        "type": "object",
        "required": ["index", "type", "data"],
        "properties": {
            "index": {"type": "integer", "minimum": 1},
            "type": {"type": "string"},
            "data": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["format", "value"],
                        "properties": {
                            "format": {"enum": ["string", "base64", "hex", "admin", "vlist", "key", "site"]},
                            "value": {},
                        },
                    },
                ]
            },
            "permissions": {"type": "string", "pattern": "^[01]{1,4}$|^\\*$"},
            "ttl": {"oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]},
            "timestamp": {"type": "string", "format": "date-time"},
            "references": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Record": {
        "type": "object",
        "required": ["responseCode", "handle", "values"],
        "properties": {
            "responseCode": {"enum": [1, 200]},
            "handle": {"type": "string"},
            "values": {"type": "array", "items": _ref("HandleValue")},
        },
    },
    "RecordInput": {
        "oneOf": [
            {
                "type": "object",
                "properties": {"handle": {"type": "string"}, "values": {"type": "array", "items": _ref("HandleValue")}},
            },
            {"type": "array", "items": _ref("HandleValue")},
            _ref("HandleValue"),
        ]
    },
    "Success": {"type": "object", "properties": {"responseCode": {"const": 1}, "handle": {"type": "string"}}},
    "TemplateItem": {
        "type": "object",
        "required": ["idIndex", "idType"],
        "properties": {
            "idIndex": {"type": "integer", "minimum": 2000},
            "idType": {"type": "string"},
            "name": {"type": "string"},
            "required": {"type": "boolean"},
            "type": {"enum": ["string", "number", "date"]},
            "minLength": {"type": "integer"},
            "maxLength": {"type": "integer"},
            "numberRange": {"type": "string", "examples": ["[1,10]"]},
            "dateFormat": {"type": "string", "examples": ["YYYY-MM-DD"]},
            "state": {"enum": ["enabled", "disabled"]},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/handles/{handle}": {
        "get": {
            "summary": "Resolve a handle (Handle.Net-compatible)",
            "parameters": [_HANDLE, *_READ_PARAMS],
            "responses": {
                "200": _json(_ref("Record"), "the record (rc 1), or rc 200 with no values"),
                "404": _ERROR,
                "400": _ERROR,
            },
        },
        "post": {
            "summary": "Resolve, with the query parameters given as a JSON object",
            "parameters": [_HANDLE],
            "requestBody": _json({"type": "object"}, 'e.g. {"type": "URL"}'),
            "responses": {"200": _json(_ref("Record"), "as GET"), "404": _ERROR},
        },
        "put": {
            "summary": "Create or replace a record, or (with index) add/replace values",
            "parameters": [
                _HANDLE,
                _query("overwrite", "boolean", "default true; false refuses an existing handle (409 rc 101)"),
                _query("index", description="add/replace exactly these indexes ('various': any)", repeat=True),
                _query("mintNewSuffix", "boolean", "append a random lowercase UUID to the path"),
            ],
            "requestBody": _json(_ref("RecordInput"), "the values"),
            "responses": {
                "201": _json(_ref("Success"), "created"),
                "200": _json(_ref("Success"), "replaced"),
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
            },
        },
        "delete": {
            "summary": "Delete a handle, or (with index) some of its values",
            "parameters": [_HANDLE, _query("index", "integer", "remove these indexes", repeat=True)],
            "responses": {
                "200": _json(_ref("Success"), "deleted"),
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "404": _ERROR,
            },
        },
        "options": {
            "summary": "Allowed methods; CORS preflight",
            "parameters": [_HANDLE],
            "responses": {"200": {"description": "Allow"}},
        },
    },
    "/api/handles/{handle}/history": {
        "get": {
            "summary": "Every version of a handle (admins with READ_VALUE)",
            "parameters": [_HANDLE],
            "responses": {
                "200": _json({"type": "object"}, "history entries: seq, version, op, actor, at, values"),
                "403": _ERROR,
            },
        }
    },
    "/api/handles": {
        "get": {
            "summary": "List the handles of a prefix (LIST_HANDLES); totalCount is a string, as in Handle.Net",
            "parameters": [
                _query("prefix", description="88.118.8 or 0.NA/88.118.8"),
                _query("page", "integer", "zero-based page (with pageSize)"),
                _query("pageSize", "integer", "0 answers only the count"),
            ],
            "responses": {
                "200": _json({"type": "object"}, "prefix, totalCount, handles"),
                "400": _ERROR,
                "403": _ERROR,
            },
        }
    },
    "/api/handles:batch": {
        "post": {
            "summary": "Create, replace or delete up to 2000 handles; one result per item; retries are safe",
            "requestBody": _json(
                {"type": "object", "properties": {"items": {"type": "array"}}}, "items: {op, handle, values}"
            ),
            "responses": {"200": _json({"type": "object"}, "results in request order"), "400": _ERROR, "401": _ERROR},
        }
    },
    "/api/resolve": {
        "post": {
            "summary": "Resolve up to 2000 handles in one request; each result as GET would answer it",
            "requestBody": _json(
                {"type": "object", "properties": {"handles": {"type": "array", "items": {"type": "string"}}}}, "handles"
            ),
            "responses": {"200": _json({"type": "object"}, "results in request order"), "400": _ERROR},
        }
    },
    "/api/prefixes": {
        "get": {
            "summary": "Prefixes homed here (node operators)",
            "parameters": [_query("page", "integer"), _query("pageSize", "integer")],
            "responses": {"200": _json({"type": "object"}, "totalCount, prefixes"), "403": _ERROR},
        }
    },
    "/api/prefixes/{prefix}": {
        "post": {
            "summary": "Home a prefix; with a name, onboard an enterprise (identity and secret returned once)",
            "parameters": [_PREFIX],
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "creditCode": {"type": "string"},
                        "contact": {"type": "string"},
                    },
                },
                "enterprise",
            ),
            "responses": {"201": _json({"type": "object"}, "prefix, identity, secret"), "403": _ERROR, "409": _ERROR},
        },
        "delete": {
            "summary": "Unhome a prefix (refused while it has handles unless force=true)",
            "parameters": [_PREFIX, _query("force", "boolean")],
            "responses": {"200": _json({"type": "object"}, "deletedHandles"), "403": _ERROR, "409": _ERROR},
        },
    },
    "/api/templates/{prefix}": {
        "get": {
            "summary": "Data template versions of a prefix",
            "parameters": [_PREFIX],
            "responses": {"200": _json({"type": "object"}, "versions")},
        }
    },
    "/api/templates/{prefix}/{version}": {
        "get": {
            "summary": "A data template",
            "parameters": [_PREFIX, _VERSION],
            "responses": {"200": _json({"type": "object"}, "template"), "404": _ERROR},
        },
        "put": {
            "summary": "Publish a data template version (immutable once published)",
            "parameters": [_PREFIX, _VERSION],
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {
                        "description": {"type": "string"},
                        "items": {"type": "array", "items": _ref("TemplateItem")},
                    },
                },
                "template",
            ),
            "responses": {
                "201": _json({"type": "object"}, "published"),
                "200": _json({"type": "object"}, "identical re-publish"),
                "409": _ERROR,
            },
        },
        "delete": {
            "summary": "Withdraw an unused version",
            "parameters": [_PREFIX, _VERSION],
            "responses": {"200": _json({"type": "object"}, "deleted"), "409": _ERROR},
        },
    },
    "/api/sessions": {
        "post": {
            "summary": "Open a challenge-response session (HTTPS only)",
            "requestBody": _json(
                {"type": "object", "properties": {"id": {"type": "string"}}},
                "optional: identity, to get PBKDF2 parameters",
            ),
            "responses": {"201": _json({"type": "object"}, "sessionId, nonce"), "403": _ERROR},
        }
    },
    "/api/sessions/{which}": {
        "get": {
            "summary": "The current session",
            "parameters": [{"name": "which", "in": "path", "required": True, "schema": {"const": "this"}}],
            "responses": {"200": _json({"type": "object"}, "session"), "403": _ERROR},
        },
        "put": {
            "summary": "Answer the challenge",
            "parameters": [{"name": "which", "in": "path", "required": True, "schema": {"const": "this"}}],
            "responses": {
                "200": _json({"type": "object"}, "authenticated"),
                "401": _json({"type": "object"}, "not verified"),
            },
        },
        "delete": {
            "summary": "End the session",
            "parameters": [{"name": "which", "in": "path", "required": True, "schema": {"const": "this"}}],
            "responses": {"204": {"description": "ended"}},
        },
    },
    "/hrls/handles": {
        "get": {
            "summary": "Reverse look-up: handles whose values match (TYPE=value, '*' wildcard, AND-ed)",
            "parameters": [_query("URL"), _query("CHECKSUM"), _query("limit", "integer")],
            "responses": {
                "200": _json({"type": "array", "items": {"type": "string"}}, "handle names"),
                "400": _ERROR,
                "401": _ERROR,
            },
        }
    },
    "/hrls/ping": {"get": {"summary": "Reverse look-up liveness", "responses": {"200": {"description": "OK"}}}},
    "/{handle}": {
        "get": {
            "summary": "Proxy: 302 to the record's URL; ?noredirect shows its values as a page",
            "parameters": [_HANDLE, _query("noredirect", "boolean"), _query("urlappend")],
            "responses": {
                "302": {"description": "redirect"},
                "200": {"description": "HTML page"},
                "404": {"description": "HTML page"},
            },
        }
    },
    "/": {"get": {"summary": "Home page", "responses": {"200": {"description": "HTML"}}}},
    "/healthz": {"get": {"summary": "Process is up", "responses": {"200": {"description": "ok"}}}},
    "/readyz": {
        "get": {
            "summary": "Database reachable, schema migrated, LISTEN connected",
            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
        }
    },
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition"}}}},
    "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "idnode",
        "version": __version__,
        "description": "Industrial-internet identifier resolution node; wire-compatible with the Handle.Net REST API.",
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic", "description": "username index:handle"}},
    },
}


class OpenAPI:
    def __init__(self) -> None:
        self._body = orjson.dumps(SPEC)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/openapi.json", self.serve)]

    async def serve(self, _request: web.Request) -> web.StreamResponse:
        return json_response(self._body)
