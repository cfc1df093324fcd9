"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every endpoint of the node, read and write.

Kept as data next to the code it describes; ``tests/test_openapi.py`` checks that every route the app registers
is described here, so a new route without a description fails the suite.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from resolver import __version__
from resolver.records import MAX_INDEX
from resolver.responses import json_response

__all__ = ["SPEC", "OpenAPI"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_ERRORS: dict[int, dict[str, Any]] = {
    400: {
        "description": "bad input: rc 4 (request), 102 (handle), 202 (value), 301 (prefix not homed here); plain"
        " text when the request line or a header is over 8,190 bytes (aiohttp's parser answers before idnode)",
        "content": {"application/json": {"schema": _ref("Error")}, "text/plain": {"schema": {"type": "string"}}},
    },
    401: _json(_ref("Error"), "rc 402: credentials missing or not verified (on a secure channel)"),
    403: _json(_ref("Error"), "rc 400/401: not permitted; rc 402: authentication over plain HTTP"),
    404: _json(_ref("Error"), "rc 100: no such handle (or template)"),
    409: _json(_ref("Error"), "rc 101/201: the handle or index exists, or the template is published or in use"),
    413: _json(_ref("Error"), "the request body is larger than max_body_bytes"),
    429: {**_json(_ref("Error"), "rc 403: too many failed authentications"), "headers": _RETRY_AFTER},
    503: {**_json(_ref("Error"), "rc 3: the database is unavailable; retry"), "headers": _RETRY_AFTER},
}
"""Every error answer is Handle-style JSON; each operation lists the statuses it can give."""


def _answers(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    """An operation's ``responses``: its successes (``{"200": ...}``) and the listed error statuses."""
    return {**ok, **{str(status): _ERRORS[status] for status in errors}}


_READ_ERRORS = (400, 401, 403, 404, 429, 503)
"""What a look-up can answer besides 200: non-public values (``publicOnly=false``) need an authenticated admin."""
_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 429, 503)
_CREATE_ERRORS = (400, 401, 403, 409, 413, 429, 503)
_DELETE_ERRORS = (400, 401, 403, 404, 409, 429, 503)
_LIST_ERRORS = (400, 401, 403, 429, 503)
"""Listings and search: authenticated reads of many names."""
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


def _bounded(parameter: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    """``parameter`` with its number schema limited to ``low``..``high``."""
    return {**parameter, "schema": {**parameter["schema"], "minimum": low, "maximum": high}}


def _flag(name: str, description: str = "") -> dict[str, Any]:
    """A Handle.Net boolean parameter (``resolver.responses.flag``): present and empty, ``true`` or ``yes`` (any
    case) is true, anything else false; so any text is a valid value."""
    return _query(name, description=f"{description} (flag: empty, true or yes)".lstrip())


_READ_PARAMS = [
    _query("type", description="value types to return (OR-ed, case-insensitive; 'URL.' matches subtypes)", repeat=True),
    _query("index", "integer", "value indexes to return (OR-ed with type)", repeat=True),
    _flag("publicOnly", "false: also non-public values (needs an admin with READ_VALUE)"),
    _flag("auth", "authoritative answer (always, on this node)"),
    _flag("pretty", "indent the JSON"),
    _query(
        "callback",
        description="JSONP: wrap the answer in callback(...); public answers only (with publicOnly=false, 400)",
    ),
]


def _body_parameter(kinds: list[str], description: str) -> dict[str, Any]:
    """A parameter of a JSON body that stands for the query string (``resolver.http``): absent, null, one value
    or a list of values (a repeated parameter)."""
    return {
        "anyOf": [{"type": [*kinds, "null"]}, {"type": "array", "items": {"type": kinds}}],
        "description": description,
    }


_FLAG_VALUE = ["boolean", "string", "number"]
_TYPES_PARAMETER = "value types to return (OR-ed, case-insensitive)"
_INDEXES_PARAMETER = "value indexes to return (OR-ed with type)"
_READ_BODY = {
    "type": "object",
    "properties": {
        "type": _body_parameter(["string", "number"], _TYPES_PARAMETER),
        "index": _body_parameter(["integer", "string"], _INDEXES_PARAMETER),
        "publicOnly": _body_parameter(_FLAG_VALUE, "false: also non-public values"),
        "auth": _body_parameter(_FLAG_VALUE, "authoritative answer"),
        "pretty": _body_parameter(_FLAG_VALUE, "indent the JSON"),
        "callback": _body_parameter(["string"], "JSONP; public answers only"),
    },
    "description": "the query parameters of GET; a number is its text, other keys are ignored",
}
_RESOLVE_BODY = {
    "oneOf": [
        {
            "type": "object",
            "required": ["handles"],
            "properties": {
                "handles": {"type": "array"},
                "type": _body_parameter(["string"], _TYPES_PARAMETER),
                "index": _body_parameter(["integer", "string"], _INDEXES_PARAMETER),
            },
        },
        {"type": "array"},
    ]
}

_INDEX = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_INDEX}, {"type": "string", "pattern": "^[0-9]+$"}]}
_PRIMITIVE = {"type": ["string", "number", "boolean"], "description": "text; a number or boolean is its JSON text"}
_NAMED = {"handle": {"type": "string"}, "index": _INDEX}
"""A handle and index that a value names (HS_ADMIN, HS_VLIST entries, references)."""


def _data(formats: list[str], value: dict[str, Any]) -> dict[str, Any]:
    """``data`` as ``{format, value}`` for these formats (``admin`` and ``vlist`` only for HS_ADMIN, HS_VLIST)."""
    return {
        "type": "object",
        "required": ["format", "value"],
        "properties": {"format": {"enum": formats}, "value": value},
    }


def _counts(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(names),
        "properties": {name: {"type": "integer", "minimum": 0} for name in names},
    }


_SCHEMAS: dict[str, Any] = {
    "DayStats": {
        "type": "object",
        "required": ["day", "prefix", "lookups", "registrations"],
        "properties": {
            "day": {"type": "string", "format": "date", "description": "UTC day"},
            "prefix": {"type": "string", "description": "prefix key (upper case); 0.NA/P counts as P"},
            "lookups": _counts("hit", "miss", "not_found", "forwarded", "stale", "error"),
            "registrations": _counts("create", "update", "delete"),
        },
    },
    "Statistics": {
        "type": "object",
        "required": ["responseCode", "from", "to", "days"],
        "properties": {
            "responseCode": {"const": 1},
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "node": {"type": "string", "description": "present with ?node=: the child whose reported totals these are"},
            "days": {"type": "array", "items": _ref("DayStats"), "description": "sorted by day, then prefix"},
        },
    },
    "ScanCounts": {
        "type": "object",
        "required": ["scans", "linkTypes"],
        "properties": {
            "scans": {"type": "integer", "minimum": 0},
            "linkTypes": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "scans by link type: default (the redirect), page (the values page), a typed link's",
            },
        },
    },
    "ScanStatistics": {
        "type": "object",
        "required": ["responseCode", "from", "to", "prefix", "totals", "days", "handleCount", "handles"],
        "properties": {
            "responseCode": {"const": 1},
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "prefix": {"type": ["string", "null"]},
            "totals": _ref("ScanCounts"),
            "days": {
                "type": "array",
                "items": {"allOf": [_ref("ScanCounts"), {"properties": {"day": {"type": "string", "format": "date"}}}]},
                "description": "days with scans, in order",
            },
            "handleCount": {"type": "integer", "minimum": 0, "description": "handles with scans (every page)"},
            "handles": {
                "type": "array",
                "items": {"allOf": [_ref("ScanCounts"), {"properties": {"handle": {"type": "string"}}}]},
                "description": "this page of the handles, most scanned first; P/(other): beyond the per-minute bound",
            },
            "page": {"type": "integer", "minimum": 0},
            "pageSize": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    },
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
            "index": _INDEX,
            "type": {"type": "string"},
            "data": {
                "oneOf": [
                    _PRIMITIVE,
                    _data(["string"], _PRIMITIVE),
                    _data(["base64", "hex"], {"type": "string"}),
                    _data(["admin"], {"type": "object", "required": ["handle", "index"], "properties": _NAMED}),
                    _data(["vlist"], {"type": "array", "items": {"type": "object", "properties": _NAMED}}),
                    _data(["key", "site"], {"description": "any JSON, at most 64 levels deep"}),
                ]
            },
            "permissions": {"type": "string", "pattern": "^[01]{1,4}$|^\\*$"},
            "ttl": {
                "anyOf": [
                    {"type": "integer", "minimum": -(2**31), "maximum": MAX_INDEX},
                    {"type": "string", "pattern": "^-?[0-9]+$"},
                    {"type": "string", "format": "date-time"},
                ]
            },
            "timestamp": {"type": "string", "format": "date-time"},
            "references": {"type": "array", "items": {"type": "object", "properties": _NAMED}},
        },
        "examples": [
            {"index": 1, "type": "URL", "data": "https://example.org/products/PUMP-2026-000123"},
            {
                "index": 100,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {"handle": "88.118.8/ADMIN", "index": 300, "permissions": "011111110011"},
                },
            },
        ],
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
            "labels": {
                "type": "object",
                "description": "the item's name per language tag, for the product page (at most 8)",
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
                "examples": [{"zh": "额定功率", "en": "Rated power"}],
            },
        },
    },
    "SnmsTemplate": {
        "type": "object",
        "description": "SNMS v5 data template; the same table as /api/templates",
        "required": ["prefix", "version", "items"],
        "properties": {
            "prefix": {"type": "string"},
            "version": {"type": "string", "description": "no '/'; what index 1001 of a record names"},
            "description": {"type": ["string", "null"]},
            "industryCategory": {"type": ["string", "null"], "pattern": "^[A-T]$", "description": "GB/T 4754-2017"},
            "industrySpecific": {"type": ["string", "null"], "pattern": "^[0-9]{2}$"},
            "industryTrade": {"type": ["string", "null"], "pattern": "^[0-9]{3}$"},
            "industrySubclass": {"type": ["string", "null"], "pattern": "^[0-9]{4}$"},
            "type": {"enum": [1, 2, None], "description": "1 active identifier carrier, 2 other"},
            "items": {"type": "array", "items": _ref("SnmsTemplateItem")},
        },
    },
    "SnmsTemplateItem": {
        "type": "object",
        "required": ["idIndex", "idType"],
        "properties": {
            "name": {"type": "string"},
            "idType": {"type": "string"},
            "idIndex": {"type": "integer", "minimum": 2000},
            "required": {"type": "boolean"},
            "state": {"enum": [0, 1], "description": "1 enabled (default), 0 disabled"},
            "metadata": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["string", "number", "date"], "description": "v5 clients send string"},
                    "minLength": {"type": "integer"},
                    "maxLength": {"type": "integer"},
                    "numberRange": {"type": "string", "examples": ["[1,10]"]},
                    "dateFormat": {"type": "string", "examples": ["YYYY-MM-DD"]},
                },
            },
        },
    },
}

_RECORD = {
    "description": "the record (rc 1), or rc 200 with no values; JSONP with callback",
    "content": {
        "application/json": {"schema": _ref("Record")},
        "application/javascript": {"schema": {"type": "string"}},
    },
}
_OBJECT = {"type": "object"}
_DAY_RANGE = [
    _query("from", description="first UTC day, YYYY-MM-DD (default: to, or today)"),
    _query("to", description="last UTC day, YYYY-MM-DD (default: from, or today); at most 366 days"),
    _query("prefix", description="only this prefix (not those derived from it)"),
]
"""The statistics' parameters: a range of days, and one prefix."""
_SESSION_PATH = {"name": "which", "in": "path", "required": True, "schema": {"const": "this"}}

_ANSWER_CHALLENGE: dict[str, Any] = {
    "summary": "Answer the challenge",
    "parameters": [_SESSION_PATH],
    "responses": _answers(
        {"200": _json(_OBJECT, "authenticated"), "401": _json(_OBJECT, "not verified")}, 400, 403, 413, 429, 503
    ),
}

# --- enterprises (registry/enterprise_api.py) -------------------------------------------------------------------
_ENTERPRISE_FIELDS = {
    "creditCode": {"type": ["string", "null"], "description": "unified social credit code (GB 32100)"},
    "contact": {"type": ["string", "null"]},
    "address": {"type": ["string", "null"]},
}
_ENTERPRISE_ERRORS = (400, 401, 403, 404, 429, 503)
_ENTERPRISE_ANSWER = _json(_OBJECT, "enterprise: prefix, name, creditCode, contact, address, state, admin, createdAt")


def _state_change(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_PREFIX],
            "responses": _answers({"200": _ENTERPRISE_ANSWER}, *_ENTERPRISE_ERRORS),
        }
    }


_IMPORT_MEDIA = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_IMPORT_JOB = {
    "type": "object",
    "required": ["responseCode", "job"],
    "properties": {
        "responseCode": {"const": 1},
        "job": {
            "type": "object",
            "description": "id, prefix, actor, replace, state (queued, checking, writing, done, failed), bytes, total"
            " (lines), checked (lines), rows and moved (valid records, and those through the final step), written and"
            " skipped (when done), errorCount and errors ([{line, message}], the first 100), message, created,"
            " started, finished",
            "properties": {"state": {"enum": ["queued", "checking", "writing", "done", "failed"]}},
        },
    },
}
_ENTERPRISE_PATHS: dict[str, Any] = {
    "/api/enterprises": {
        "get": {
            "summary": "Enterprises onboarded here (node operators), in prefix order",
            "parameters": [
                _query("page", "integer"),
                _query("pageSize", "integer"),
                _query("name", description="a substring of the name, any case"),
                _query("creditCode", description="the exact credit code"),
                {"name": "state", "in": "query", "schema": {"enum": ["active", "suspended"]}},
            ],
            "responses": _answers({"200": _json(_OBJECT, "totalCount, enterprises")}, *_LIST_ERRORS),
        }
    },
    "/api/enterprises/{prefix}": {
        "get": {
            "summary": "One enterprise",
            "parameters": [_PREFIX],
            "responses": _answers({"200": _ENTERPRISE_ANSWER}, *_ENTERPRISE_ERRORS),
        },
        "patch": {
            "summary": "Change name, contact, address or credit code (JSON merge patch; null removes)",
            "parameters": [_PREFIX],
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, **_ENTERPRISE_FIELDS},
                    "additionalProperties": False,
                },
                "changes",
            ),
            "responses": _answers({"200": _ENTERPRISE_ANSWER}, *_ENTERPRISE_ERRORS),
        },
    },
    "/api/enterprises/{prefix}/suspend": _state_change("Suspend: its writes are refused, its handles resolve"),
    "/api/enterprises/{prefix}/resume": _state_change("Resume a suspended enterprise"),
    "/api/enterprises/{prefix}/rotate-secret": {
        "post": {
            "summary": "A new secret for the enterprise's admin identity (shown once); the old one and its sessions"
            " stop working",
            "parameters": [_PREFIX],
            "responses": _answers({"200": _json(_OBJECT, "prefix, identity, secret")}, *_ENTERPRISE_ERRORS),
        }
    },
    "/api/enterprises/{prefix}/apps": {
        "post": {
            "summary": "Create an application identity <prefix>/APP-<name> (its admin or an operator); the secret is"
            " shown once",
            "parameters": [_PREFIX],
            "requestBody": _json(
                {
                    "type": "object",
                    "required": ["name", "rights"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                        "rights": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"enum": ["register", "update", "delete", "read"]},
                        },
                        "publicKey": {
                            "type": ["object", "string"],
                            "description": "an HS_PUBKEY (JWK or PEM) instead of a generated secret",
                        },
                    },
                    "additionalProperties": False,
                },
                "the app",
            ),
            "responses": _answers(
                {"201": _json(_OBJECT, "prefix, name, identity, secret, rights")}, *_ENTERPRISE_ERRORS, 409
            ),
        },
        "get": {
            "summary": "The enterprise's application identities: name, identity, rights, created",
            "parameters": [_PREFIX],
            "responses": _answers({"200": _json(_OBJECT, "apps")}, *_ENTERPRISE_ERRORS),
        },
    },
    "/api/enterprises/{prefix}/apps/{name}": {
        "delete": {
            "summary": "Revoke an application identity: its grant, identity handle and sessions end at once",
            "parameters": [_PREFIX, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _answers({"200": _json(_OBJECT, "responseCode")}, *_ENTERPRISE_ERRORS),
        }
    },
    "/api/enterprises/{prefix}/imports": {
        "post": {
            "summary": "Upload JSON Lines (one Handle.Net record per line, all under the prefix) to import in the"
            " background, all or nothing, as idnode import does; answers the job to poll (Location)",
            "parameters": [
                _PREFIX,
                _flag("replace", "overwrite records that exist (needs the update right); unchanged ones are kept"),
            ],
            "requestBody": {
                "required": True,
                "description": "JSON Lines, streamed; Content-Encoding gzip accepted; at most max_import_bytes",
                "content": {media: {"schema": {}} for media in _IMPORT_MEDIA},  # any text: lines are checked one by one
            },
            "responses": _answers(
                {
                    "202": {
                        **_json(_IMPORT_JOB, "accepted: the job, queued"),
                        "headers": {"Location": {"description": "the job", "schema": {"type": "string"}}},
                    },
                    "408": _json(_ref("Error"), "rc 4: no part of the upload arrived for body_timeout seconds"),
                    "413": _json(_ref("Error"), "rc 4: the upload is larger than max_import_bytes"),
                    "415": _json(_ref("Error"), "rc 4: the body is not sent as JSON Lines"),
                },
                *_ENTERPRISE_ERRORS,
            ),
        },
        "get": {
            "summary": "The enterprise's import jobs, newest first (the newest 100 without paging)",
            "parameters": [_PREFIX, _query("page", "integer"), _query("pageSize", "integer")],
            "responses": _answers({"200": _json(_OBJECT, "totalCount, imports: jobs")}, *_ENTERPRISE_ERRORS),
        },
    },
    "/api/enterprises/{prefix}/imports/{id}": {
        "get": {
            "summary": "One import job: state, progress (checked of total lines, moved of rows), line errors",
            "parameters": [_PREFIX, {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _answers({"200": _json(_IMPORT_JOB, "the job")}, *_ENTERPRISE_ERRORS),
        }
    },
}
# --- end of enterprises -------------------------------------------------------------------------------------------

_PATHS: dict[str, Any] = {
    "/api/handles/{handle}": {
        "get": {
            "summary": "Resolve a handle (Handle.Net-compatible)",
            "parameters": [_HANDLE, *_READ_PARAMS],
            "responses": _answers({"200": _RECORD}, *_READ_ERRORS),
        },
        "post": {
            "summary": "Resolve, with the query parameters given as a JSON object",
            "parameters": [_HANDLE],
            "requestBody": _json(_READ_BODY, 'e.g. {"type": "URL"}'),
            "responses": _answers({"200": _RECORD}, *_READ_ERRORS, 413),
        },
        "put": {
            "summary": "Create or replace a record, or (with index) add/replace values",
            "parameters": [
                _HANDLE,
                _flag("overwrite", "default true; false refuses an existing handle (409 rc 101)"),
                _query("index", description="add/replace exactly these indexes ('various': any)", repeat=True),
                _flag("mintNewSuffix", "append a random lowercase UUID to the path"),
            ],
            "requestBody": _json(_ref("RecordInput"), "the values"),
            "responses": _answers(
                {"201": _json(_ref("Success"), "created"), "200": _json(_ref("Success"), "replaced")}, *_WRITE_ERRORS
            ),
        },
        "delete": {
            "summary": "Delete a handle, or (with index) some of its values",
            "parameters": [_HANDLE, _query("index", "integer", "remove these indexes", repeat=True)],
            "responses": _answers({"200": _json(_ref("Success"), "deleted")}, *_WRITE_ERRORS),
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
            "responses": _answers(
                {"200": _json(_OBJECT, "history entries: seq, version, op, actor, at, values")}, *_READ_ERRORS
            ),
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
            "responses": _answers({"200": _json(_OBJECT, "prefix, totalCount, handles")}, *_LIST_ERRORS),
        }
    },
    "/api/handles:batch": {
        "post": {
            "summary": "Create, replace or delete up to 2000 handles; one result per item; retries are safe",
            "requestBody": _json(
                {"oneOf": [{"type": "object", "properties": {"items": {"type": "array"}}}, {"type": "array"}]},
                "{items: [{op, handle, values}, ...]} or the bare array",
            ),
            "responses": _answers({"200": _json(_OBJECT, "results in request order")}, 400, 401, 403, 413, 429, 503),
        }
    },
    "/api/resolve": {
        "post": {
            "summary": "Resolve up to 2000 handles in one request; each result as GET would answer it",
            "requestBody": _json(
                _RESOLVE_BODY,
                "the names to resolve, as {handles: [...]} or a bare array; an item that is not a string gets its"
                " own rc 102 result",
            ),
            "responses": _answers({"200": _json(_OBJECT, "results in request order")}, 400, 413, 503),
        }
    },
    "/api/prefixes": {
        "get": {
            "summary": "Prefixes homed here (node operators)",
            "parameters": [_query("page", "integer"), _query("pageSize", "integer")],
            "responses": _answers({"200": _json(_OBJECT, "totalCount, prefixes")}, *_LIST_ERRORS),
        },
        "post": {
            "summary": "Onboard an enterprise on the next free prefix under `under` (default: the node prefix)",
            "requestBody": _json(
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "under": {"type": ["string", "null"], "description": "e.g. 88.118: allocates 88.118.N"},
                        **_ENTERPRISE_FIELDS,
                    },
                },
                "enterprise",
            ),
            "responses": _answers({"201": _json(_OBJECT, "prefix, identity, secret")}, *_CREATE_ERRORS),
        },
    },
    "/api/prefixes/{prefix}": {
        "post": {
            "summary": "Home a prefix; with a name, onboard an enterprise (identity and secret returned once)",
            "parameters": [_PREFIX],
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": ["string", "null"], "description": "absent or null: only home the prefix"},
                        **_ENTERPRISE_FIELDS,
                    },
                },
                "enterprise",
            ),
            "responses": _answers(
                {"201": _json(_OBJECT, "prefix, identity, secret"), "200": _json(_OBJECT, "already homed")},
                *_CREATE_ERRORS,
            ),
        },
        "delete": {
            "summary": "Unhome a prefix and those derived from it, with their enterprises and templates (refused while"
            " they have handles unless force=true)",
            "parameters": [_PREFIX, _flag("force")],
            "responses": _answers({"200": _json(_OBJECT, "deletedHandles")}, *_DELETE_ERRORS),
        },
    },
    "/api/templates/{prefix}": {
        "get": {
            "summary": "Data template versions of a prefix",
            "parameters": [_PREFIX],
            "responses": _answers({"200": _json(_OBJECT, "versions")}, 400, 503),
        }
    },
    "/api/templates/{prefix}/{version}": {
        "get": {
            "summary": "A data template",
            "parameters": [_PREFIX, _VERSION],
            "responses": _answers({"200": _json(_OBJECT, "template")}, 400, 404, 503),
        },
        "put": {
            "summary": "Publish a data template version (immutable here once published; SNMS's PUT"
            " /snms/api/v5/template may revise it within its rules)",
            "parameters": [_PREFIX, _VERSION],
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {
                        "description": {"type": ["string", "null"]},
                        "items": {"type": "array", "items": _ref("TemplateItem")},
                    },
                },
                "template",
            ),
            "responses": _answers(
                {"201": _json(_OBJECT, "published"), "200": _json(_OBJECT, "identical re-publish")},
                *_CREATE_ERRORS,
            ),
        },
        "delete": {
            "summary": "Withdraw an unused version",
            "parameters": [_PREFIX, _VERSION],
            "responses": _answers({"200": _json(_OBJECT, "deleted")}, *_DELETE_ERRORS),
        },
    },
    "/api/sessions": {
        "post": {
            "summary": "Open a challenge-response session (HTTPS only)",
            "requestBody": _json(
                {
                    "type": "object",
                    "properties": {"id": {"description": "index:handle; another JSON value is read as its text"}},
                },
                "optional: identity, to get PBKDF2 parameters",
            ),
            "responses": _answers({"201": _json(_OBJECT, "sessionId, nonce")}, 400, 401, 403, 413, 429, 503),
        }
    },
    "/api/sessions/{which}": {
        "get": {
            "summary": "The current session",
            "parameters": [_SESSION_PATH],
            "responses": _answers({"200": _json(_OBJECT, "session")}, 401, 403, 503),
        },
        "put": _ANSWER_CHALLENGE,
        "post": {**_ANSWER_CHALLENGE, "summary": "Answer the challenge (as PUT; Handle.Net accepts both)"},
        "delete": {
            "summary": "End the session",
            "parameters": [_SESSION_PATH],
            "responses": _answers({"204": {"description": "ended"}}, 401, 403, 503),
        },
    },
    "/api/stats": {
        "get": {
            "summary": "Operation statistics per UTC day and prefix: look-ups by outcome and registrations by"
            " operation (operators: every prefix; an enterprise: its own and derived prefixes)",
            "parameters": [
                *_DAY_RANGE,
                _query("node", description="operators: the totals the child node of this prefix reported"),
            ],
            "responses": _answers({"200": _json(_ref("Statistics"), "from, to, [node,] days")}, *_LIST_ERRORS),
        }
    },
    "/api/stats/scans": {
        "get": {
            "summary": "Scan statistics: proxy answers (GET /{handle}) per UTC day, handle and link type, most"
            " scanned handles first (operators: every prefix; an enterprise: its own and derived prefixes)",
            "parameters": [
                *_DAY_RANGE,
                _bounded(_query("page", "integer", "page of handles, from 0 (default 0)"), 0, 2**31 - 1),
                _bounded(_query("pageSize", "integer", "handles a page (default 100)"), 1, 1000),
            ],
            "responses": _answers({"200": _json(_ref("ScanStatistics"), "totals, days, handles")}, *_LIST_ERRORS),
        }
    },
    "/api/nodes": {
        "get": {
            "summary": "Child nodes (operators): prefix, name, identity, lastSeen, secondsSince, health"
            " (ok, silent, never), and the version, uptime, readiness and prefixes of their last report",
            "responses": _answers({"200": _json(_OBJECT, "nodes")}, *_LIST_ERRORS),
        }
    },
    "/api/changes": {
        "get": {
            "summary": "The change feed (operators): every change to homed data (handles, prefixes, enterprises,"
            " templates, operators, child nodes) in commit order, numbered without gaps; entries seq, kind, op, key,"
            " handle, version, values (handles) or data (the row), actor, at; next, oldest, newest",
            "parameters": [
                _bounded(_query("after", "integer", "return entries numbered above this (default 0)"), 0, 2**62),
                _bounded(_query("limit", "integer", "at most this many entries (default 1000)"), 1, 10_000),
                _bounded(_query("wait", "number", "when nothing is new, hold the answer this long (seconds)"), 0, 30),
            ],
            "responses": _answers(
                {
                    "200": _json(_OBJECT, "changes, next, oldest, newest"),
                    "409": _json(_ref("Error"), "rc 4: after is beyond the newest change of this node"),
                    "410": _json(_ref("Error"), "rc 4: the changes after after were pruned (idnode feed prune)"),
                },
                *_LIST_ERRORS,
            ),
        }
    },
    "/api/takeover": {
        "post": {
            "summary": "Take over (operators, on a mirror): stop following the primary for good and accept writes;"
            " answers source, watermark (the primary's last change held here) and takenOver",
            "responses": _answers(
                {
                    "200": _json(_OBJECT, "source, watermark, takenOver"),
                    "409": _json(_ref("Error"), "rc 4: this node is not a mirror"),
                },
                *_LIST_ERRORS,
            ),
        }
    },
    "/api/nodes/report": {
        "post": {
            "summary": "A child node's heartbeat and daily totals (authenticated as the identity of node add)",
            "requestBody": _json(
                {
                    "type": "object",
                    "required": ["version", "uptime"],
                    "properties": {
                        "version": {"type": "string"},
                        "uptime": {"type": "number", "minimum": 0},
                        "prefixes": {"type": "array", "items": {"type": "string"}},
                        "ready": {"type": "object", "additionalProperties": {"type": "boolean"}},
                        "stats": {"type": "array", "items": _ref("DayStats"), "maxItems": 20000},
                    },
                },
                "report (absolute totals per day: a resend replaces, never adds)",
            ),
            "responses": _answers({"200": _json(_OBJECT, "node, days")}, 400, 401, 403, 413, 429, 503),
        }
    },
    "/hrls/handles": {
        "get": {
            "summary": "Reverse look-up: handles whose values match (TYPE=value, '*' wildcard, AND-ed)",
            "parameters": [_query("URL"), _query("CHECKSUM"), _query("limit", "integer")],
            "responses": _answers(
                {"200": _json({"type": "array", "items": {"type": "string"}}, "handle names")}, *_LIST_ERRORS
            ),
        }
    },
    "/hrls/ping": {"get": {"summary": "Reverse look-up liveness", "responses": {"200": {"description": "OK"}}}},
    "/{handle}": {
        "get": {
            "summary": "Proxy: 302 to the record's URL; ?noredirect shows its values as a page",
            "description": "Records with typed links (10320/loc) or a lifecycle state (IDNODE_STATUS) negotiate: "
            "?linkType=linkset or Accept: application/linkset+json gives the RFC 9264 linkset, ?linkType=X a 302 "
            "to that link (404 when absent), Accept: application/json the Handle record, application/ld+json "
            "schema.org JSON-LD; ?lang= or Accept-Language picks the language; a withdrawn record is 410. "
            "See the README's 'Product resolution'.",
            "parameters": [_HANDLE, _flag("noredirect"), _query("urlappend"), _query("linkType"), _query("lang")],
            "responses": {
                "302": {"description": "redirect"},
                "200": {"description": "HTML page, or a linkset, Handle record or JSON-LD (negotiated)"},
                "400": {"description": "HTML page: not a handle"},
                "404": {"description": "HTML page: no such handle, or no link of the asked type"},
                "410": {"description": "HTML page: the identifier is withdrawn (Link: rel=successor-version)"},
                "503": {"description": "the database is unavailable; retry", "headers": _RETRY_AFTER},
            },
        }
    },
    "/qr/{label}": {
        "get": {
            "summary": "QR code of the handle's proxy URL (under public_url, else this request's origin)",
            "parameters": [
                {
                    "name": "label",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "\\.(svg|png)$"},
                    "description": "the handle, percent-encoded as on the proxy, then .svg or .png",
                },
                {"name": "ecc", "in": "query", "schema": {"enum": ["L", "M", "Q", "H", "l", "m", "q", "h"]}},
                _bounded(_query("scale", "integer", "pixels (SVG units) a module (default 4)"), 1, 32),
                _bounded(_query("border", "integer", "quiet zone in modules (default 4)"), 0, 16),
            ],
            "responses": _answers(
                {
                    "200": {
                        "description": "the code",
                        "content": {"image/svg+xml": {"schema": {"type": "string"}}, "image/png": {}},
                    }
                },
                400,
                404,
                503,
            ),
        }
    },
    "/.well-known/idnode": {
        "get": {
            "summary": "This resolver's description: homed prefixes, link types (zh/en), languages, media types",
            "responses": {"200": {"description": "JSON"}},
        }
    },
    "/": {
        "get": {
            "summary": "Home page; its form sends ?hdl=H, answered as GET /H",
            "parameters": [_query("hdl"), _flag("noredirect")],
            "responses": {
                "200": {"description": "HTML page"},
                "302": {"description": "redirect"},
                "400": {"description": "HTML page: not a handle"},
                "404": {"description": "HTML page"},
                "503": {"description": "the database is unavailable; retry", "headers": _RETRY_AFTER},
            },
        }
    },
    "/api/site": {
        "get": {
            "summary": "This node's site record (HS_SITE), as Handle.Net's GET /api/site answers it",
            "description": "Built from advertise_url; the value a child node publishes on 0.NA/<prefix> at its "
            "parent. Without advertise_url, the site as this request reached the node.",
            "responses": {"200": {"description": '{"responseCode":1,"site":{...}}'}},
        }
    },
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


def _snms(summary: str, data: dict[str, Any], body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An SNMS operation: always HTTP 200 with the envelope, ``status`` telling the outcome."""
    operation: dict[str, Any] = {"summary": summary, **extra}
    if body is not None:
        operation["requestBody"] = _json(body, "JSON")
    answer = {"anyOf": [data, {"type": "null"}], "description": "null unless status is 1"}
    envelope = {**_SNMS_ENVELOPE, "properties": {**_SNMS_ENVELOPE["properties"], "data": answer}}
    operation["responses"] = {
        "200": _json(envelope, "status 1 ok, -1 not logged in, -2 business error, -3 no permission, -4 internal"),
        "503": {"description": "the database is unavailable (envelope, status -4); retry", "headers": _RETRY_AFTER},
    }
    return operation


_SNMS_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["status", "message", "data"],
    "properties": {"status": {"enum": [1, -1, -2, -3, -4]}, "message": {"type": "string"}, "data": {}},
}
_SNMS_VALUE = {
    "type": "object",
    "required": ["index", "type", "data"],
    "properties": {
        "index": {"type": "integer", "minimum": 1, "not": {"const": 1001}},
        "type": {"type": "string"},
        "auth": {"type": "string", "description": "public (default, 1110), private (1100) or Handle.Net bits"},
        "data": {
            "type": "object",
            "required": ["value"],
            "properties": {"format": {"enum": ["string", "base64", "hex"]}, "value": {"type": "string"}},
        },
    },
}
_SNMS_RECORD = {
    "type": "object",
    "required": ["handle", "value"],
    "properties": {
        "handle": {"type": "string"},
        "templateVersion": {"type": ["string", "null"], "description": "stored at index 1001"},
        "value": {"type": "array", "items": _SNMS_VALUE},
    },
}
_SNMS_DETAIL = {
    "type": "object",
    "required": ["prefix", "handle", "templateVersion", "value"],
    "properties": {
        "prefix": {"type": "string"},
        "handle": {"type": "string"},
        "templateVersion": {"type": ["string", "null"]},
        "value": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "type": {"type": "string"},
                    "auth": {"type": "string"},
                    "data": {"type": "object", "properties": {"format": {"type": "string"}, "value": {}}},
                },
            },
            "description": "every value but index 1001, in Handle.Net's data formats (admin values as objects)",
        },
    },
}
_SNMS_ITEMS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "handle": {"type": ["string", "null"]},
            "code": {"type": "integer", "description": "1 written, else the item's SNMS status (-2, -3)"},
            "msg": {"type": "string"},
        },
    },
}
_SNMS_BEARER = [{"bearer": []}]
_SNMS_TEMPLATE_WRITER = [{"basic": []}, *_SNMS_BEARER]
"""``/snms/api/v5/template`` writes take what ``/api/templates`` does (Basic, sessions) and SNMS's token."""
_SNMS_TEMPLATE_NAMES = [
    {**_query("prefix", description="the template's prefix"), "required": True},
    {**_query("version", description="the template's version"), "required": True},
]


def _snms_batch(summary: str, item: dict[str, Any]) -> dict[str, Any]:
    """An SNMS batch: an array of at most max_batch items in, one ``{handle, code, msg}`` per item out."""
    body = {"type": "array", "items": item, "maxItems": 2000}
    return _snms(f"{summary} (at most max_batch items)", _SNMS_ITEMS, body, security=_SNMS_BEARER)


_SNMS_PATHS: dict[str, Any] = {
    "/identity/token": {
        "post": _snms(
            "SNMS login: an identity handle (88.118.8/APP-mes) and its secret → a bearer token (24 h)",
            {
                "type": "object",
                "properties": {
                    "token": {"type": "string"},
                    "expires": {"type": "integer"},
                    "identity": {"type": "string"},
                },
            },
            {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {"type": "string", "maxLength": 50},
                    "password": {"type": "string", "maxLength": 64},
                },
            },
        )
    },
    "/identity/token/v1": {
        "post": _snms("SNMS date-salted hash login: not supported (always status -2; see the README)", {"type": "null"})
    },
    "/identityv2/data": {
        "post": _snms("SNMS register", _OBJECT, _SNMS_RECORD, security=_SNMS_BEARER),
        "put": _snms(
            "SNMS update: the record's data replaced, its HS_* values kept",
            _OBJECT,
            _SNMS_RECORD,
            security=_SNMS_BEARER,
        ),
        "delete": _snms(
            "SNMS delete",
            _OBJECT,
            {"type": "object", "required": ["handle"], "properties": {"handle": {"type": "string"}}},
            security=_SNMS_BEARER,
        ),
    },
    "/identityv2/data/detail": {
        "get": _snms(
            "SNMS resolve: public values, or all of them for an identity with READ_VALUE",
            _SNMS_DETAIL,
            parameters=[{**_query("handle"), "required": True}],
        )
    },
    "/identityv2/data/batchCreate": {
        "post": _snms_batch("SNMS batch register; a retry of stored records succeeds", _SNMS_RECORD)
    },
    "/identityv2/data/batchUpdate": {"put": _snms_batch("SNMS batch update", _SNMS_RECORD)},
    "/identityv2/data/batchDelete": {"delete": _snms_batch("SNMS batch delete of handles", {"type": "string"})},
    "/snms/api/v5/template": {
        "get": _snms(
            "SNMS: a data template in SNMS's v5 form (any template, also one published by /api/templates)",
            _ref("SnmsTemplate"),
            parameters=_SNMS_TEMPLATE_NAMES,
        ),
        "post": _snms(
            "SNMS: publish a data template version (the identical template again is a success)",
            _ref("SnmsTemplate"),
            _ref("SnmsTemplate"),
            security=_SNMS_TEMPLATE_WRITER,
        ),
        "put": _snms(
            "SNMS: revise a version; items are disabled (state 0), never removed; a version that records use may"
            " only loosen (disable, make optional, rename, add optional items)",
            _ref("SnmsTemplate"),
            _ref("SnmsTemplate"),
            security=_SNMS_TEMPLATE_WRITER,
        ),
        "delete": _snms(
            "SNMS: delete a version no record uses",
            {"type": "object", "properties": {"prefix": {"type": "string"}, "version": {"type": "string"}}},
            parameters=_SNMS_TEMPLATE_NAMES,
            security=_SNMS_TEMPLATE_WRITER,
        ),
    },
}
"""The SNMS-compatible API (``registry/snms_api.py``); the envelope's ``status`` tells the outcome, HTTP is 200."""

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "idnode",
        "version": __version__,
        "description": "Industrial-internet identifier resolution node; wire-compatible with the Handle.Net REST API.",
    },
    "paths": _PATHS | _ENTERPRISE_PATHS | _SNMS_PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic", "description": "username index:handle"},
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "POST /identity/token",
            },
        },
    },
}


class OpenAPI:
    def __init__(self) -> None:
        self._body = orjson.dumps(SPEC)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/openapi.json", self.serve)]

    async def serve(self, _request: web.Request) -> web.StreamResponse:
        return json_response(self._body)
