"""SNMS's template API, ``/snms/api/v5/template``, over idnode's data templates (research §4.1(b), §4.3).

Integrations written against a TeleInfo secondary node manage their data templates with
``GET/POST/PUT/DELETE /snms/api/v5/template`` (GET and DELETE take ``prefix`` and ``version`` as query parameters,
POST and PUT the template) and read ``{"status", "message", "data"}`` over HTTP 200 (``registry/snms_envelope.py``).
The template is SNMS's v5 form::

    {"prefix": "88.118.8", "version": "product-1.0", "description": "pump",
     "industryCategory": "C", "industrySpecific": "34", "industryTrade": "344", "industrySubclass": "3441",
     "type": 1, "items": [{"name": "产品名称", "idType": "productName", "idIndex": 2000, "required": true,
                           "state": 1, "metadata": {"type": "string", "minLength": 1, "maxLength": 100}}]}

It is the same table as ``/api/templates`` (``registry/templates.py``): a version created here is read there and
checks records naming it at index 1001, and an idnode template reads here in SNMS's form. The mapping: ``state``
1/0 is enabled/disabled (absent: 1); ``metadata.type``, ``minLength`` and ``maxLength`` are the item's own fields.
SNMS v5 only has ``"string"``; ``"number"`` (with ``metadata.numberRange``, ``"[1,10]"``) and ``"date"`` (with
``metadata.dateFormat``, default ``YYYY-MM-DD``) are idnode's item types, accepted so that a template read here can
be written back unchanged; a v5 client never sends them. The industry codes (``registry/industry_codes.py``) and
``type`` (1 active identifier carrier, 2 other) are optional and kept as the version's classification.

POST publishes (a retry of the identical template is a success; a different one for an existing version is -2);
PUT revises a published version within the rules of ``registry/template_versions.py`` (items are disabled, never
removed; a version records use may only loosen); DELETE is refused while records use the version. Rights, actor
attribution and refusal on a mirror are those of ``/api/templates``. Every malformed field is named: ``items[2].idIndex:
must be an integer from 2000 to 2147483647``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from registry.industry_codes import LEVELS, industry_problems
from registry.permissions import Perm
from registry.snms_envelope import answers_snms, snms_ok
from registry.template_versions import ITEM_RULES, TemplateContent, TemplateVersions
from registry.templates import check_items, description_problem
from resolver.errors import HandleAlreadyExists, InvalidValue
from resolver.responses import json_body

__all__ = ["PATH", "SnmsTemplate", "SnmsTemplatesAPI", "parse_template", "snms_form"]

PATH = "/snms/api/v5/template"
_CARRIER_TYPES = (1, 2)


@dataclass(frozen=True, slots=True)
class SnmsTemplate:
    """A checked SNMS template body in idnode's terms (items normalised as ``/api/templates`` stores them)."""

    prefix: str
    version: str
    content: TemplateContent


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _from_snms_item(position: int, raw: Any) -> tuple[Any, list[str]]:
    """An SNMS item as idnode's item fields, and what is wrong with its SNMS-only fields (``state``, ``metadata``)."""
    if not isinstance(raw, dict):
        return raw, []  # check_items names it
    item = {field: raw[field] for field in ("idIndex", "idType", "name", "required") if field in raw}
    problems = []
    state = raw.get("state", 1)
    if not _is_int(state) or state not in (0, 1):
        problems.append(f"items[{position}].state: must be 0 (disabled) or 1 (enabled)")
    else:
        item["state"] = "enabled" if state == 1 else "disabled"
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"items[{position}].metadata: must be an object")
    else:
        item.update({rule: metadata[rule] for rule in ITEM_RULES if rule in metadata})
    return item, problems


def _snms_field(field: str) -> str:
    return f"metadata.{field}" if field in ITEM_RULES else field


def parse_template(payload: Any) -> SnmsTemplate:
    """Check an SNMS template body; InvalidValue naming every malformed field (``items[1].metadata.maxLength: …``)."""
    if not isinstance(payload, dict):
        raise InvalidValue('Expected a template object {"prefix", "version", "items": [...], ...}')
    problems = [
        f"{field}: must be a non-empty string"
        for field in ("prefix", "version")
        if not isinstance(payload.get(field), str) or not payload[field]
    ]
    problem = description_problem(payload.get("description"))
    if problem:
        problems.append(f"description: {problem}")
    problems += industry_problems(payload)
    kind = payload.get("type")
    if kind is not None and (not _is_int(kind) or kind not in _CARRIER_TYPES):
        problems.append("type: must be 1 (active identifier carrier) or 2 (other)")
    items: list[dict[str, Any]] = []
    if not isinstance(payload.get("items"), list):
        problems.append("items: must be a list")
    else:
        converted = []
        for position, raw in enumerate(payload["items"]):
            item, found = _from_snms_item(position, raw)
            converted.append(item)
            problems += found
        items, item_problems = check_items(converted)
        problems += [
            f"items[{p.position}]{'.' + _snms_field(p.field) if p.field else ''}: {p.problem}" for p in item_problems
        ]
    if problems:
        raise InvalidValue("Invalid template: " + "; ".join(problems))
    classification = {field: payload[field] for field in (*LEVELS, "type") if payload.get(field) is not None}
    content = TemplateContent(payload.get("description"), items, classification or None)
    return SnmsTemplate(payload["prefix"], payload["version"], content)


def _snms_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item["name"],
        "idType": item["idType"],
        "idIndex": item["idIndex"],
        "required": item["required"],
        "state": 1 if item["state"] == "enabled" else 0,
        "metadata": {rule: item[rule] for rule in ITEM_RULES if rule in item},
    }


def snms_form(prefix: str, version: str, content: TemplateContent) -> dict[str, Any]:
    """A template version in SNMS's v5 form (absent classification fields are null)."""
    known = content.classification or {}
    return {
        "prefix": prefix,
        "version": version,
        "description": content.description,
        **{field: known.get(field) for field in (*LEVELS, "type")},
        "items": [_snms_item(item) for item in content.items],
    }


class SnmsTemplatesAPI:
    """``GET/POST/PUT/DELETE /snms/api/v5/template``."""

    __slots__ = ("versions",)

    def __init__(self, versions: TemplateVersions) -> None:
        self.versions = versions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PATH, self.get),
            web.post(PATH, self.post),
            web.put(PATH, self.put),
            web.delete(PATH, self.delete),
        ]

    def _queried(self, request: web.Request) -> tuple[str, str]:
        missing = [name for name in ("prefix", "version") if not request.query.get(name)]
        if missing:
            raise InvalidValue("; ".join(f"{name}: required query parameter" for name in missing))
        return self.versions.names(request.query["prefix"], request.query["version"])

    async def _body(self, request: web.Request) -> SnmsTemplate:
        template = parse_template(await json_body(request))
        self.versions.names(template.prefix, template.version)
        return template

    @answers_snms
    async def get(self, request: web.Request) -> web.StreamResponse:
        prefix, version = self._queried(request)
        return snms_ok(snms_form(prefix, version, TemplateContent.of(await self.versions.read(prefix, version))))

    @answers_snms
    async def post(self, request: web.Request) -> web.StreamResponse:
        """Publish a version; the identical template again is a success (a retry), another one is -2."""
        t = await self._body(request)
        actor = await self.versions.authorise(request, t.prefix, t.version, Perm.ADD_HANDLE)
        existing = await self.versions.publish(actor, t.prefix, t.version, t.content)
        if existing is not None and TemplateContent.of(existing) != t.content:
            raise HandleAlreadyExists(
                f"Template {t.prefix}/{t.version} exists; PUT {PATH} changes it", handle=f"{t.prefix}/{t.version}"
            )
        return snms_ok(snms_form(t.prefix, t.version, t.content))

    @answers_snms
    async def put(self, request: web.Request) -> web.StreamResponse:
        t = await self._body(request)
        actor = await self.versions.authorise(request, t.prefix, t.version, Perm.ADD_HANDLE)
        await self.versions.revise(actor, t.prefix, t.version, t.content)
        return snms_ok(snms_form(t.prefix, t.version, t.content))

    @answers_snms
    async def delete(self, request: web.Request) -> web.StreamResponse:
        prefix, version = self._queried(request)
        actor = await self.versions.authorise(request, prefix, version, Perm.DELETE_HANDLE)
        await self.versions.delete(actor, prefix, version)
        return snms_ok({"prefix": prefix, "version": version})
