"""Data templates (标识数据模板): versioned item lists an enterprise registers product identifiers against.

A template is ``{prefix, version, description?, items: [...]}``; each item is
``{idIndex ≥ 2000, idType, name, required, type: string|number|date, minLength?, maxLength?, numberRange?,
dateFormat?, state: enabled|disabled}`` (research/idis-secondary-node.md §4.3). Published versions are immutable:
``PUT`` of an existing version succeeds only when it is identical (a safe retry), ``DELETE`` is refused while a
handle still names the version.

A record names its template by a value at index 1001 (reserved: it can only be set this way) whose data is the
version, or ``<prefix>/<version>`` for a template of another prefix. Such a record is validated: every enabled
required item present at its ``idIndex`` with its ``idType``, values of the right type, lengths and ranges, no
value at an index ≥ 2000 that the template does not list. All problems are reported at once (400 rc 202).

Routes: ``PUT/GET/DELETE /api/templates/{prefix}/{version}`` and ``GET /api/templates/{prefix}``. Writing needs
ADD_HANDLE on ``0.NA/<prefix>`` (the right to register under that prefix); reading is public.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from registry.core import Registry, request_id
from registry.permissions import Perm
from resolver.errors import HandleAlreadyExists, HandleNotFound, InvalidValue, PrefixNotHomed, ProtocolError
from resolver.identifiers import ascii_upper, validate_text
from resolver.records import HandleValue
from resolver.responses import answers_errors, json_body, json_response

__all__ = ["TEMPLATE_INDEX", "Templates", "check_template", "validate_record"]

TEMPLATE_INDEX = 1001
FIRST_ITEM_INDEX = 2000
_TYPES = frozenset({"string", "number", "date"})
_STATES = frozenset({"enabled", "disabled"})
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
"""Decimal numbers only: ``float`` alone would also take nan, inf and 1_0."""
_RANGE = re.compile(r"^\s*([\[(])\s*(-?[\d.]*)\s*,\s*(-?[\d.]*)\s*([\])])\s*$")
_DATE_TOKENS = (("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))
MAX_ITEMS = 500


def _strftime_pattern(date_format: str) -> str:
    out = date_format
    for token, directive in _DATE_TOKENS:
        out = out.replace(token, directive)
    return out


def check_template(payload: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """Validate a template body; returns (description, normalised items) or raises InvalidValue listing problems."""
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise ProtocolError('Expected {"items": [...], "description": "..."}')
    items, problems, seen = [], [], set()
    if len(payload["items"]) > MAX_ITEMS:
        raise InvalidValue(f"A template holds at most {MAX_ITEMS} items")
    for position, raw in enumerate(payload["items"]):
        where = f"item {position}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: not an object")
            continue
        index = raw.get("idIndex")
        if not isinstance(index, int) or isinstance(index, bool) or index < FIRST_ITEM_INDEX:
            problems.append(f"{where}: idIndex must be an integer ≥ {FIRST_ITEM_INDEX}")
            continue
        where = f"item {index}"
        if index in seen:
            problems.append(f"{where}: idIndex used twice")
        seen.add(index)
        kind = raw.get("type", "string")
        state = raw.get("state", "enabled")
        if not isinstance(raw.get("idType"), str) or not raw["idType"]:
            problems.append(f"{where}: idType must be a non-empty string")
        if kind not in _TYPES:
            problems.append(f"{where}: type must be one of string, number, date")
        if state not in _STATES:
            problems.append(f"{where}: state must be enabled or disabled")
        for bound in ("minLength", "maxLength"):
            if bound in raw and (not isinstance(raw[bound], int) or isinstance(raw[bound], bool) or raw[bound] < 0):
                problems.append(f"{where}: {bound} must be a non-negative integer")
        if "numberRange" in raw and (not isinstance(raw["numberRange"], str) or not _RANGE.match(raw["numberRange"])):
            problems.append(f"{where}: numberRange must look like [1,10] or (0,)")
        if kind == "date" and not isinstance(raw.get("dateFormat", "YYYY-MM-DD"), str):
            problems.append(f"{where}: dateFormat must be a string like YYYY-MM-DD")
        items.append(
            {
                "idIndex": index,
                "idType": raw.get("idType"),
                "name": str(raw.get("name", raw.get("idType", ""))),
                "required": bool(raw.get("required", False)),
                "type": kind,
                "state": state,
                **{k: raw[k] for k in ("minLength", "maxLength", "numberRange") if k in raw},
                **({"dateFormat": raw.get("dateFormat", "YYYY-MM-DD")} if kind == "date" else {}),
            }
        )
    if problems:
        raise InvalidValue("Invalid template: " + "; ".join(problems))
    description = payload.get("description")
    return (str(description) if description is not None else None), sorted(items, key=lambda i: i["idIndex"])


def _in_range(number: float, spec: str) -> bool:
    match = _RANGE.match(spec)
    if match is None:
        return True
    low_open, low, high, high_close = match.groups()
    if low and (number < float(low) or (low_open == "(" and number == float(low))):
        return False
    return not (high and (number > float(high) or (high_close == ")" and number == float(high))))


def _item_problem(item: dict[str, Any], value: HandleValue) -> str | None:
    if ascii_upper(value.type) != ascii_upper(str(item["idType"])):
        return f"type must be {item['idType']}, not {value.type}"
    if value.format != "string":
        return "data must be a string"
    text = str(value.value)
    if "minLength" in item and len(text) < item["minLength"]:
        return f"shorter than {item['minLength']} characters"
    if "maxLength" in item and len(text) > item["maxLength"]:
        return f"longer than {item['maxLength']} characters"
    if item["type"] == "number":
        if not _NUMBER.fullmatch(text):
            return f"{text[:40]!r} is not a number"
        number = float(text)
        if "numberRange" in item and not _in_range(number, item["numberRange"]):
            return f"{text} is outside {item['numberRange']}"
    if item["type"] == "date":
        pattern = item.get("dateFormat", "YYYY-MM-DD")
        directive = _strftime_pattern(pattern)
        try:
            exact = datetime.strptime(text, directive).strftime(directive) == text  # strptime takes "3" for MM
        except ValueError:
            exact = False
        if not exact:
            return f"{text[:40]!r} is not a date in the format {pattern}"
    return None


def validate_record(items: Sequence[dict[str, Any]], values: Sequence[HandleValue]) -> list[str]:
    """Every way ``values`` break the template ``items``, one message per offending item (empty: valid)."""
    by_index = {v.index: v for v in values}
    listed = {item["idIndex"] for item in items}
    problems = []
    for item in items:
        if item["state"] != "enabled":
            continue
        value = by_index.get(item["idIndex"])
        label = f"{item['idType']} (index {item['idIndex']})"
        if value is None:
            if item["required"]:
                problems.append(f"{label}: required but missing")
            continue
        problem = _item_problem(item, value)
        if problem:
            problems.append(f"{label}: {problem}")
    for value in values:
        if value.index >= FIRST_ITEM_INDEX and value.index not in listed:
            problems.append(f"index {value.index} ({value.type}): not an item of the template")
    return problems


def template_reference(handle_prefix: str, values: Sequence[HandleValue]) -> tuple[str, str] | None:
    """``(prefix, version)`` named at index 1001, or None when the record names no template."""
    for value in values:
        if value.index == TEMPLATE_INDEX:
            if value.format != "string" or not str(value.value).strip():
                raise InvalidValue(f"Value {TEMPLATE_INDEX} must name a data template version")
            text = str(value.value).strip()
            prefix, sep, version = text.rpartition("/")
            return (prefix, version) if sep and prefix else (handle_prefix, text)
    return None


class Templates:
    """The template endpoints, and the check every registration goes through."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/templates/{prefix}", self.list_versions),
            web.get("/api/templates/{prefix}/{version}", self.get),
            web.put("/api/templates/{prefix}/{version}", self.put),
            web.delete("/api/templates/{prefix}/{version}", self.delete),
        ]

    async def items(self, prefix: str, version: str) -> list[dict[str, Any]] | None:
        row = await self.registry.pool.fetchval(
            "SELECT items::text FROM templates WHERE prefix_key = $1 AND version = $2", ascii_upper(prefix), version
        )
        return None if row is None else orjson.loads(row)

    async def check(self, handle_prefix: str, values: Sequence[HandleValue]) -> str | None:
        """Validate ``values`` against the template they name; returns ``prefix/version`` or None."""
        reference = template_reference(handle_prefix, values)
        if reference is None:
            return None
        items = await self.items(*reference)
        if items is None:
            self.registry.counts.template_failures += 1
            raise InvalidValue(f"Data template {reference[0]}/{reference[1]} does not exist")
        problems = validate_record(items, values)
        if problems:
            self.registry.counts.template_failures += 1
            raise InvalidValue(f"Does not match data template {reference[1]}: " + "; ".join(problems))
        return f"{ascii_upper(reference[0])}/{reference[1]}"

    def _names(self, request: web.Request) -> tuple[str, str]:
        prefix = validate_text(request.match_info["prefix"])
        version = request.match_info.get("version", "")
        if version:
            validate_text(version, max_bytes=128)
        if not self.registry.lookup.prefixes.homes(prefix):
            raise PrefixNotHomed(handle=prefix)
        return prefix, version

    @answers_errors
    async def list_versions(self, request: web.Request) -> web.StreamResponse:
        prefix, _ = self._names(request)
        rows = await self.registry.pool.fetch(
            "SELECT version FROM templates WHERE prefix_key = $1 ORDER BY created_at, version", ascii_upper(prefix)
        )
        return json_response({"responseCode": 1, "prefix": prefix, "versions": [r[0] for r in rows]})

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        prefix, version = self._names(request)
        row = await self.registry.pool.fetchrow(
            "SELECT description, items::text, created_at FROM templates WHERE prefix_key = $1 AND version = $2",
            ascii_upper(prefix),
            version,
        )
        if row is None:
            raise HandleNotFound(f"No data template {prefix}/{version}", handle=f"{prefix}/{version}")
        return json_response(
            {
                "responseCode": 1,
                "prefix": prefix,
                "version": version,
                "description": row[0],
                "items": orjson.loads(row[1]),
                "createdAt": row[2].isoformat(),
            }
        )

    @answers_errors
    async def put(self, request: web.Request) -> web.StreamResponse:
        """Publish a version; an identical re-publish is a success (200), a different one a conflict (409)."""
        prefix, version = self._names(request)
        payload = await json_body(request, require_json_type=True)
        description, items = check_template(payload)
        identity = await self.registry.identity(request, f"{prefix}/{version}")
        await self.registry.require_prefix_admin(identity, prefix, Perm.ADD_HANDLE, echo=f"{prefix}/{version}")
        document = orjson.dumps(items).decode()
        status = await self.registry.pool.execute(
            "INSERT INTO templates (prefix_key, prefix, version, description, items, created_by) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT DO NOTHING",
            ascii_upper(prefix),
            prefix,
            version,
            description,
            document,
            f"{identity} {request_id(request)}",
        )
        if status.endswith(" 1"):
            return json_response({"responseCode": 1, "prefix": prefix, "version": version}, status=201)
        existing = await self.items(prefix, version)
        if existing != items:
            raise HandleAlreadyExists(f"Template {prefix}/{version} is published and immutable", handle=version)
        return json_response({"responseCode": 1, "prefix": prefix, "version": version})

    @answers_errors
    async def delete(self, request: web.Request) -> web.StreamResponse:
        prefix, version = self._names(request)
        identity = await self.registry.identity(request, f"{prefix}/{version}")
        await self.registry.require_prefix_admin(identity, prefix, Perm.DELETE_HANDLE, echo=f"{prefix}/{version}")
        async with self.registry.pool.acquire() as con, con.transaction():
            in_use = await con.fetchval(
                "SELECT count(*) FROM handles WHERE template_version = $1", f"{ascii_upper(prefix)}/{version}"
            )
            if in_use:
                raise HandleAlreadyExists(f"Template {prefix}/{version} is used by {in_use} handle(s)", handle=version)
            status = await con.execute(
                "DELETE FROM templates WHERE prefix_key = $1 AND version = $2", ascii_upper(prefix), version
            )
        if status.endswith(" 0"):
            raise HandleNotFound(f"No data template {prefix}/{version}", handle=f"{prefix}/{version}")
        return json_response({"responseCode": 1, "prefix": prefix, "version": version})
