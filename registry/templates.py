"""Data templates (标识数据模板): versioned item lists an enterprise registers product identifiers against.

A template is ``{prefix, version, description?, items: [...]}``; each item is
``{idIndex ≥ 2000, idType, name, required, type: string|number|date, minLength?, maxLength?, numberRange?,
dateFormat?, state: enabled|disabled, labels?}`` (research/idis-secondary-node.md §4.3). ``labels`` is idnode's
optional addition: the item's name per language for the product page (``{"zh": "额定功率", "en": "Rated power"}``,
language tags as keys, at most ``MAX_LABELS``); IDIS and SNMS know only ``name`` (in practice Chinese), which the
page uses when a language has no label (``resolver/template_labels.py``). A template without labels is stored and
served exactly as before. Here a published version is
immutable: ``PUT`` of an existing version succeeds only when it is identical (a safe retry), ``DELETE`` is refused
while a handle still names the version. SNMS's ``PUT /snms/api/v5/template`` (``registry/snms_templates.py``) may
revise a version, within the rules of ``registry/template_versions.py``, which both APIs share.

A record names its template by a value at index 1001 (reserved: it can only be set this way) whose data is the
version, or ``<prefix>/<version>`` for a template of an ancestor prefix (a secondary node's industry template,
shared down its tree). A template of any other prefix is refused: otherwise one tenant could name another's
template and so stop its owner from ever deleting it ("used by 1 handle"). Such a record is validated: every
enabled required item present at its ``idIndex`` with its ``idType``, values of the right type, lengths and
ranges, no value at an index ≥ 2000 that the template does not list. All problems are reported at once (400 rc
202). Versions are names without ``/`` (a ``/`` could never be referenced at index 1001).

Routes: ``PUT/GET/DELETE /api/templates/{prefix}/{version}`` and ``GET /api/templates/{prefix}``. Writing needs
ADD_HANDLE on ``0.NA/<prefix>`` (the right to register under that prefix); reading is public.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from registry.metrics import RegistryMetrics
from registry.permissions import Perm
from registry.store import RegistryStore
from registry.template_versions import TemplateContent, TemplateVersions
from resolver.classes import CLASS_PATTERN_TYPE, parse_pattern
from resolver.errors import (
    HandleAlreadyExists,
    InvalidValue,
    ProtocolError,
    ValueAlreadyExists,
)
from resolver.identifiers import Handle, ascii_upper, prefix_chain
from resolver.product import check_values
from resolver.records import HandleValue
from resolver.responses import answers_errors, json_body, json_response
from resolver.template_labels import TEMPLATE_INDEX, split_reference

__all__ = [
    "TEMPLATE_INDEX",
    "ItemProblem",
    "TemplateCheck",
    "TemplatesAPI",
    "check_items",
    "check_template",
    "description_problem",
    "validate_record",
]

FIRST_ITEM_INDEX = 2000
_TYPES = frozenset({"string", "number", "date"})
_STATES = frozenset({"enabled", "disabled"})
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
"""Decimal numbers only: ``float`` alone would also take nan, inf and 1_0."""
_BOUND = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*([\[(])\s*({_BOUND})?\s*,\s*({_BOUND})?\s*([\])])\s*$")
"""``[1,10]``, ``(0,)``, ``[,5.5]``: each bound a decimal number or empty; ``[.,5]`` is not a range."""
_DATE_TOKENS = (("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))
MAX_ITEMS = 500
MAX_LABELS = 8
MAX_LABEL_CHARS = 200
_LABEL_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*")
MAX_LENGTH_BOUND = 1 << 20
_SHOWN = 64
"""Characters of a client's text repeated in an error message, at most."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")


def _text_problem(raw: Any, *, required: bool) -> str | None:
    """What is wrong with a text field of an item (None: fine). PostgreSQL cannot store NUL in jsonb."""
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or (required and not raw):
        return "must be a non-empty string" if required else "must be a string"
    if "\x00" in raw:
        return "must not contain NUL characters"
    return None


def _strftime_pattern(date_format: str) -> str:
    out = date_format
    for token, directive in _DATE_TOKENS:
        out = out.replace(token, directive)
    return out


@dataclass(frozen=True, slots=True)
class ItemProblem:
    """What is wrong with one item of a template body: where (its position in the list, its ``idIndex`` when that
    was readable), which field (idnode's name; empty for the item as a whole) and what. Each API words the place
    its own way (``item 2001: …`` here, ``items[1].metadata.maxLength: …`` in SNMS's form)."""

    position: int
    index: int | None
    field: str
    problem: str


def check_items(raw_items: list[Any]) -> tuple[list[dict[str, Any]], list[ItemProblem]]:
    """Normalise a template's items (sorted by ``idIndex``, defaults filled in); the problems found, all of them."""
    if len(raw_items) > MAX_ITEMS:
        raise InvalidValue(f"A template holds at most {MAX_ITEMS} items")
    items: list[dict[str, Any]] = []
    problems: list[ItemProblem] = []
    seen: set[int] = set()
    for position, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            problems.append(ItemProblem(position, None, "", "not an object"))
            continue
        index = raw.get("idIndex")
        if not isinstance(index, int) or isinstance(index, bool) or not FIRST_ITEM_INDEX <= index < 1 << 31:
            problems.append(
                ItemProblem(position, None, "idIndex", f"must be an integer from {FIRST_ITEM_INDEX} to {(1 << 31) - 1}")
            )
            continue
        found = _item_field_problems(raw)
        if index in seen:
            found.insert(0, ("idIndex", "used twice"))
        seen.add(index)
        problems += [ItemProblem(position, index, field, problem) for field, problem in found]
        if problems:
            continue
        kind = raw.get("type", "string")
        items.append(
            {
                "idIndex": index,
                "idType": raw["idType"],
                "name": raw.get("name", raw["idType"]),
                "required": raw.get("required", False),
                "type": kind,
                "state": raw.get("state", "enabled"),
                **{k: raw[k] for k in ("minLength", "maxLength", "numberRange", "labels") if k in raw},
                **({"dateFormat": raw.get("dateFormat", "YYYY-MM-DD")} if kind == "date" else {}),
            }
        )
    return sorted(items, key=lambda i: i["idIndex"]), problems


def _item_field_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each field of one item (its ``idIndex`` already checked) that is wrong."""
    found = []
    for name, required in (("idType", True), ("name", False), ("dateFormat", False)):
        problem = _text_problem(raw.get(name), required=required)
        if problem:
            found.append((name, problem))
    if not isinstance(raw.get("required", False), bool):
        found.append(("required", "must be true or false"))
    kind = raw.get("type", "string")
    if not isinstance(kind, str) or kind not in _TYPES:
        found.append(("type", "must be one of string, number, date"))
    state = raw.get("state", "enabled")
    if not isinstance(state, str) or state not in _STATES:
        found.append(("state", "must be enabled or disabled"))
    for bound in ("minLength", "maxLength"):
        value = raw.get(bound, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LENGTH_BOUND:
            found.append((bound, f"must be an integer from 0 to {MAX_LENGTH_BOUND}"))
    if "numberRange" in raw and (not isinstance(raw["numberRange"], str) or not _RANGE.match(raw["numberRange"])):
        found.append(("numberRange", "must look like [1,10] or (0,)"))
    if "labels" in raw and not _labels_ok(raw["labels"]):
        found.append(
            ("labels", f'must map at most {MAX_LABELS} language tags to names, such as {{"zh": "型号", "en": "Model"}}')
        )
    return found


def _labels_ok(labels: Any) -> bool:
    """An item's ``labels``: language tag (lower-case primary subtag) → non-empty name without NUL."""
    return (
        isinstance(labels, dict)
        and 0 < len(labels) <= MAX_LABELS
        and all(
            _LABEL_LANGUAGE.fullmatch(tag)
            and isinstance(name, str)
            and 0 < len(name) <= MAX_LABEL_CHARS
            and "\x00" not in name
            for tag, name in labels.items()
        )
    )


def description_problem(description: Any) -> str | None:
    """What is wrong with a template's description (None: fine; it is optional)."""
    return _text_problem(description, required=False)


def check_template(payload: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """Validate a template body; returns (description, normalised items) or raises InvalidValue listing problems."""
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise ProtocolError('Expected {"items": [...], "description": "..."}')
    items, problems = check_items(payload["items"])
    if problems:
        raise InvalidValue(
            "Invalid template: "
            + "; ".join(
                f"item {p.position if p.index is None else p.index}: {p.field + ' ' if p.field else ''}{p.problem}"
                for p in problems
            )
        )
    description = payload.get("description")
    problem = description_problem(description)
    if problem:
        raise InvalidValue(f"Invalid template: description {problem}")
    return description, items


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
    """``(prefix, version)`` named at index 1001, or None when the record names no template.

    Raises InvalidValue for a template of a prefix that is neither the handle's nor an ancestor of it.
    """
    for value in values:
        if value.index == TEMPLATE_INDEX:
            if value.format != "string" or not str(value.value).strip():
                raise InvalidValue(f"Value {TEMPLATE_INDEX} must name a data template version")
            text = str(value.value).strip()
            prefix, version = split_reference(handle_prefix, text)
            if "/" in text and ascii_upper(prefix) not in prefix_chain(ascii_upper(handle_prefix)):
                raise InvalidValue(
                    f"Value {TEMPLATE_INDEX}: data template {_shown(text)} belongs to another prefix; a record may "
                    f"name templates of {handle_prefix} or of a prefix above it"
                )
            return prefix, version
    return None


class TemplateCheck:
    """The check every registration goes through: the record against the template it names, and its typed links
    and lifecycle state (``10320/loc``, ``IDNODE_STATUS``) against what the proxy can serve
    (``resolver/product.py`` ``check_values``)."""

    __slots__ = ("_memo", "_metrics", "_store")

    def __init__(
        self, store: RegistryStore, metrics: RegistryMetrics, memo: dict[tuple[str, str], Any] | None = None
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._memo = memo

    def memoized(self) -> TemplateCheck:
        """This check with each template read once for the check's life (a batch): a batch of records naming one
        template would otherwise read and parse it once per record."""
        return TemplateCheck(self._store, self._metrics, {})

    async def items(self, prefix: str, version: str) -> list[dict[str, Any]] | None:
        key = (ascii_upper(prefix), version)
        if self._memo is not None and key in self._memo:
            return self._memo[key]
        document = await self._store.template_items(*key)
        items = None if document is None else orjson.loads(document)
        if self._memo is not None:
            self._memo[key] = items
        return items

    async def __call__(self, handle: Handle, values: Sequence[HandleValue]) -> str | None:
        """Validate ``values`` of ``handle`` against the template they name; returns ``PREFIX/version`` or None.

        A class pattern another class holds is refused here (409 rc 201) so that a batch answers it per item; the
        trigger of ``schema/0014`` still refuses what two writers race to claim."""
        await self._check_links_and_patterns(handle, values)
        try:
            return await self._against_template(handle.prefix, values)
        except InvalidValue:
            self._metrics.template_failures += 1
            raise

    async def quietly(self, handle: Handle, values: Sequence[HandleValue]) -> str | None:
        """The same check, a refusal not counted: for a trial whose refusal the caller then checks for real."""
        await self._check_links_and_patterns(handle, values)
        return await self._against_template(handle.prefix, values)

    async def _check_links_and_patterns(self, handle: Handle, values: Sequence[HandleValue]) -> None:
        check_values(values, handle.prefix)
        for value in values:
            if value.type_key() == CLASS_PATTERN_TYPE:
                pattern = parse_pattern(value.value, handle.prefix)
                holder = await self._store.class_pattern_holder(
                    handle.prefix_key, pattern.head, pattern.tail, handle.key
                )
                if holder is not None:
                    raise ValueAlreadyExists(f"Class pattern {value.value[:200]} already belongs to {holder}")

    async def _against_template(self, handle_prefix: str, values: Sequence[HandleValue]) -> str | None:
        reference = template_reference(handle_prefix, values)
        if reference is None:
            return None
        items = await self.items(*reference)
        if items is None:
            raise InvalidValue(f"Data template {_shown(reference[0] + '/' + reference[1])} does not exist")
        problems = validate_record(items, values)
        if problems:
            raise InvalidValue(f"Does not match data template {_shown(reference[1])}: " + "; ".join(problems))
        return f"{ascii_upper(reference[0])}/{reference[1]}"


class TemplatesAPI:
    """``/api/templates/{prefix}[/{version}]``."""

    def __init__(self, versions: TemplateVersions, check: TemplateCheck) -> None:
        self.versions = versions
        self.check = check

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/templates/{prefix}", self.list_versions),
            web.get("/api/templates/{prefix}/{version}", self.get),
            web.put("/api/templates/{prefix}/{version}", self.put),
            web.delete("/api/templates/{prefix}/{version}", self.delete),
        ]

    def _names(self, request: web.Request) -> tuple[str, str]:
        return self.versions.names(request.match_info["prefix"], request.match_info.get("version", ""))

    @answers_errors
    async def list_versions(self, request: web.Request) -> web.StreamResponse:
        prefix, _ = self._names(request)
        versions = await self.versions.store.template_versions(ascii_upper(prefix))
        return json_response({"responseCode": 1, "prefix": prefix, "versions": versions})

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        """The version, with its SNMS classification (null for one published here without it)."""
        prefix, version = self._names(request)
        row = await self.versions.read(prefix, version)
        content = TemplateContent.of(row)
        return json_response(
            {
                "responseCode": 1,
                "prefix": prefix,
                "version": version,
                "description": content.description,
                "items": content.items,
                "classification": content.classification,
                "createdAt": row.created_at.isoformat(),
            }
        )

    @answers_errors
    async def put(self, request: web.Request) -> web.StreamResponse:
        """Publish a version; an identical re-publish is a success (200), a different one a conflict (409)."""
        prefix, version = self._names(request)
        payload = await json_body(request, require_json_type=True)
        description, items = check_template(payload)
        actor = await self.versions.authorise(request, prefix, version, Perm.ADD_HANDLE)
        existing = await self.versions.publish(actor, prefix, version, TemplateContent(description, items))
        if existing is None:
            return json_response({"responseCode": 1, "prefix": prefix, "version": version}, status=201)
        if orjson.loads(existing.items) != items:
            raise HandleAlreadyExists(f"Template {prefix}/{version} is published and immutable", handle=version)
        return json_response({"responseCode": 1, "prefix": prefix, "version": version})

    @answers_errors
    async def delete(self, request: web.Request) -> web.StreamResponse:
        prefix, version = self._names(request)
        actor = await self.versions.authorise(request, prefix, version, Perm.DELETE_HANDLE)
        await self.versions.delete(actor, prefix, version)
        return json_response({"responseCode": 1, "prefix": prefix, "version": version})
