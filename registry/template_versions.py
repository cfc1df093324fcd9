"""Data-template versions as both template APIs change them: who may, and what may change once records use one.

``/api/templates`` (``registry/templates.py``) and SNMS's ``/snms/api/v5/template`` (``registry/snms_templates.py``)
write the same ``templates`` table, so a version published through one is read, checked at index 1001 and deleted
through the other. They share this module: the names (a homed prefix, a version without ``/``), the rights
(ADD_HANDLE on ``0.NA/<prefix>`` to publish or revise, DELETE_HANDLE to delete; an operator may do either), the
attribution of every change to its actor (the change feed records it), and the rules below.

Revising a published version (SNMS's PUT; idnode's own PUT only publishes). SNMS's rule is that items are disabled,
never deleted: every stored item must still be listed, at the same ``idIndex`` with the same ``idType``. While no
handle names the version, anything else may change. Once records name it, a change may only loosen what they were
checked against, so that every stored record stays valid: an item may be disabled, made optional or renamed, the
description and classification may change, and items may be added that are optional or disabled (no stored record
holds a value at an index the template did not list, since such a record was refused). Enabling an item, making it
required, changing its value rules (type, lengths, range, date format) or adding a required item is refused, naming
the item. The use count is read with the version's row locked, so a revision and a deletion take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from registry.auth import Authenticator, actor_of
from registry.permissions import Perm, Permissions
from registry.store import Actor, RegistryStore, TemplateRow
from resolver.errors import HandleAlreadyExists, HandleNotFound, InvalidHandle, InvalidValue, PrefixNotHomed
from resolver.identifiers import ascii_upper, validate_text
from resolver.prefixes import PrefixTable

__all__ = ["ITEM_RULES", "TemplateContent", "TemplateVersions", "revision_problems"]

ITEM_RULES = ("type", "minLength", "maxLength", "numberRange", "dateFormat")
"""An item's value rules: what a record's value at its index is checked against (``registry/templates.py``)."""


def _label(item: dict[str, Any]) -> str:
    return f"item {item['idIndex']} ({item['idType']})"


def revision_problems(stored: Sequence[dict[str, Any]], revised: Sequence[dict[str, Any]], *, used: bool) -> list[str]:
    """Why ``revised`` items may not replace ``stored`` ones (empty: they may); ``used``: records name the version."""
    by_index = {item["idIndex"]: item for item in revised}
    problems = []
    for old in stored:
        new = by_index.get(old["idIndex"])
        if new is None:
            problems.append(f"{_label(old)}: missing; items are never removed, only disabled (state 0)")
        elif new["idType"] != old["idType"]:
            problems.append(f"{_label(old)}: idType cannot change (to {new['idType']!r})")
        elif used:
            if new["state"] == "enabled" and old["state"] != "enabled":
                problems.append(f"{_label(old)}: cannot be enabled again while records use the version")
            if new["required"] and not old["required"] and new["state"] == "enabled":
                problems.append(f"{_label(old)}: cannot become required while records use the version")
            changed = [rule for rule in ITEM_RULES if new.get(rule) != old.get(rule)]
            if changed and new["state"] == "enabled":
                problems.append(f"{_label(old)}: {', '.join(changed)} cannot change while records use the version")
    if used:
        known = {item["idIndex"] for item in stored}
        for new in revised:
            if new["idIndex"] not in known and new["required"] and new["state"] == "enabled":
                problems.append(f"{_label(new)}: a required item cannot be added while records use the version")
    return problems


@dataclass(frozen=True, slots=True)
class TemplateContent:
    """What a version holds besides its names: equal contents are the same template (a publish retried)."""

    description: str | None
    items: list[dict[str, Any]]
    classification: dict[str, Any] | None = None
    """SNMS's industry codes and carrier type (``registry/industry_codes.py``); None for idnode's own templates."""

    @classmethod
    def of(cls, row: TemplateRow) -> TemplateContent:
        classification = None if row.classification is None else orjson.loads(row.classification)
        return cls(row.description, orjson.loads(row.items), classification)

    def stored(self) -> tuple[str | None, str, str | None]:
        """``(description, items, classification)`` as the store takes them (JSON text)."""
        classification = None if self.classification is None else orjson.dumps(self.classification).decode()
        return self.description, orjson.dumps(self.items).decode(), classification


@dataclass(frozen=True, slots=True)
class TemplateVersions:
    """Reading, publishing, revising and deleting template versions, with the rights and rules of the module."""

    store: RegistryStore
    prefixes: PrefixTable
    auth: Authenticator
    permissions: Permissions

    def names(self, prefix: str, version: str) -> tuple[str, str]:
        """``(prefix, version)`` checked: a homed prefix, and a version (when given) that index 1001 can name."""
        validate_text(prefix)
        if version:
            validate_text(version, max_bytes=128)
            if "/" in version:
                raise InvalidHandle("A template version must not contain '/'", handle=version)
        if not self.prefixes.homes(prefix):
            raise PrefixNotHomed(handle=prefix)
        return prefix, version

    async def read(self, prefix: str, version: str) -> TemplateRow:
        row = await self.store.template(ascii_upper(prefix), version)
        if row is None:
            raise HandleNotFound(f"No data template {prefix}/{version}", handle=f"{prefix}/{version}")
        return row

    async def authorise(self, request: web.Request, prefix: str, version: str, perm: Perm) -> Actor:
        """Who is changing ``prefix/version``, once they proved holding ``perm`` on ``0.NA/<prefix>``."""
        echo = f"{prefix}/{version}"
        identity = await self.auth.require(request, echo)
        await self.permissions.require_prefix_admin(identity, prefix, perm, echo=echo)
        return actor_of(request, identity)

    async def publish(self, actor: Actor, prefix: str, version: str, content: TemplateContent) -> TemplateRow | None:
        """Store a new version; None when stored, else the version already there (the caller judges a retry)."""
        description, items, classification = content.stored()
        published = await self.store.publish_template(
            ascii_upper(prefix),
            prefix,
            version,
            description,
            items,
            f"{actor.name} {actor.request_id}",
            classification,
        )
        return None if published else await self.read(prefix, version)

    async def revise(self, actor: Actor, prefix: str, version: str, content: TemplateContent) -> None:
        """Replace a published version's content, if the module's rules allow it (InvalidValue naming each item
        they refuse)."""
        key = ascii_upper(prefix)
        async with self.store.transaction(actor) as tx:
            row = await tx.lock_template(key, version)
            if row is None:
                raise HandleNotFound(f"No data template {prefix}/{version}", handle=f"{prefix}/{version}")
            used = await tx.template_use_count(f"{key}/{version}")
            problems = revision_problems(orjson.loads(row.items), content.items, used=bool(used))
            if problems:
                use = f" (used by {used} handle(s))" if used else ""
                raise InvalidValue(f"Template {prefix}/{version}{use} cannot change so: " + "; ".join(problems))
            await tx.revise_template(key, version, *content.stored())

    async def delete(self, actor: Actor, prefix: str, version: str) -> None:
        """Delete a version no handle names."""
        key = ascii_upper(prefix)
        async with self.store.transaction(actor) as tx:
            if await tx.lock_template(key, version) is None:
                raise HandleNotFound(f"No data template {prefix}/{version}", handle=f"{prefix}/{version}")
            in_use = await tx.template_use_count(f"{key}/{version}")
            if in_use:
                raise HandleAlreadyExists(f"Template {prefix}/{version} is used by {in_use} handle(s)", handle=version)
            await tx.delete_template(key, version)
