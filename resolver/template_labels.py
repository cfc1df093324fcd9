"""What the product page calls a record's attributes: its data template's item names, in Chinese and English.

A record names its template by the value at index ``TEMPLATE_INDEX`` (1001): ``<version>`` of the handle's own
prefix, or ``<prefix>/<version>`` of an ancestor prefix (``registry/templates.py``, which checks the reference on
every write; here it is only read). An item names its attribute three ways: ``idType`` (a machine name such as
``ratedPower``), ``name`` (IDIS's and SNMS's one name, in practice Chinese) and idnode's optional ``labels``
(``{"zh": "额定功率", "en": "Rated power"}``). :meth:`ItemLabel.text` picks, for Chinese: ``labels.zh``, the
``name``, a built-in name of a well-known ``idType``, the ``idType``; for English: ``labels.en``, the ``name`` when
it has no Chinese characters, the built-in English name, the ``idType`` spelt out (``ratedPower`` → "Rated power").
A record without a template (or whose template is gone, or on another node) gets the built-in and spelt-out names.

Slow path only: the page of a scan without a redirect target, ``?noredirect``. Templates change rarely (a version
published through ``/api/templates`` never changes; SNMS may rename items), so :class:`TemplateLabels` keeps each
version's items for ``ttl`` seconds (a rename shows within a minute) and at most ``max_templates`` versions. When
the database cannot answer, the page is still served, with the fallback names, and nothing is remembered.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from resolver.identifiers import ascii_upper
from resolver.product import SCHEMA_PROPERTIES
from resolver.records import HandleValue
from resolver.store import unavailable

__all__ = ["TEMPLATE_INDEX", "ItemLabel", "TemplateLabels", "fallback_label", "property_of", "split_reference"]

TEMPLATE_INDEX = 1001
_ITEMS = "SELECT items::text FROM templates WHERE prefix_key = $1 AND version = $2"
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SEPARATORS = re.compile(r"[\s_-]+")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

PROPERTIES: dict[str, str] = {
    **SCHEMA_PROPERTIES,
    "batchno": "batch",
    "batchnumber": "batch",
    "lot": "batch",
    "image": "image",
    "imageurl": "image",
    "picture": "image",
    "photo": "image",
}
"""``idType`` (lower-cased, without ``_``, ``-`` and blanks) → the property it is (schema.org's name, ``batch``
aside): ``resolver/product.py``'s JSON-LD mapping plus the batch and an image, for the page's headline, image and
built-in names."""

_NAMES: dict[str, tuple[str, str]] = {
    "name": ("Product name", "产品名称"),
    "model": ("Model", "型号"),
    "manufacturer": ("Manufacturer", "生产企业"),
    "brand": ("Brand", "品牌"),
    "productionDate": ("Production date", "生产日期"),
    "serialNumber": ("Serial number", "序列号"),
    "batch": ("Batch number", "批次号"),
    "gtin": ("GTIN", "GTIN"),
    "sku": ("SKU", "SKU"),
    "mpn": ("Manufacturer part number", "制造商零件号"),
    "color": ("Colour", "颜色"),
    "description": ("Description", "描述"),
    "category": ("Category", "类别"),
    "countryOfOrigin": ("Country of origin", "原产地"),
    "image": ("Image", "图片"),
}


def property_of(id_type: str) -> str | None:
    """The well-known property an attribute type is (``PROPERTIES``), or None."""
    return PROPERTIES.get(_SEPARATORS.sub("", id_type.lower()))


def has_han(text: str) -> bool:
    """Whether ``text`` holds Chinese characters (CJK ideographs)."""
    return _HAN.search(text) is not None


def fallback_label(id_type: str, language: str) -> str:
    """The name of an attribute without a template item: built-in for well-known types, else the ``idType``
    spelt out in English (``ratedPower`` → "Rated power"), or as it is in Chinese."""
    known = _NAMES.get(property_of(id_type) or "")
    if known is not None:
        return known[1] if language == "zh" else known[0]
    if language == "zh":
        return id_type
    words = _WORDS.findall(id_type)
    if not words:
        return id_type
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[0].upper() + text[1:]


@dataclass(frozen=True, slots=True)
class ItemLabel:
    """One template item's names (``registry/templates.py``)."""

    id_type: str
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def text(self, language: str) -> str:
        """The item's name in ``language`` (``zh`` or ``en``), as the module docstring orders the sources."""
        own = self.labels.get(language)
        if own:
            return own
        if self.name and (language == "zh" or not has_han(self.name)):
            return self.name
        return fallback_label(self.id_type, language)


def split_reference(handle_prefix: str, text: str) -> tuple[str, str]:
    """``(prefix, version)`` of a template reference (index 1001's data): ``version`` alone means the handle's
    own prefix."""
    prefix, sep, version = text.strip().rpartition("/")
    if not (sep and prefix):
        return handle_prefix, text.strip()
    return prefix, version


def _reference(handle: str, values: Sequence[HandleValue]) -> tuple[str, str] | None:
    for value in values:
        if value.index == TEMPLATE_INDEX and value.format == "string" and str(value.value).strip():
            prefix, version = split_reference(handle.split("/", 1)[0], str(value.value))
            return ascii_upper(prefix), version
    return None


def _items(document: str) -> dict[int, ItemLabel]:
    found = {}
    items = orjson.loads(document)
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("idIndex"), int):
            continue
        labels = item.get("labels")
        labels = {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}
        name = item.get("name")
        found[item["idIndex"]] = ItemLabel(str(item.get("idType", "")), name if isinstance(name, str) else "", labels)
    return found


class TemplateLabels:
    """Template items by ``(prefix_key, version)``, read from PostgreSQL and kept ``ttl`` seconds (see the module
    docstring); ``clock`` is replaceable for tests."""

    __slots__ = ("_clock", "_kept", "_max", "_pool", "_ttl")

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 60.0,
        max_templates: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_templates
        self._clock = clock
        self._kept: dict[tuple[str, str], tuple[float, dict[int, ItemLabel]]] = {}

    async def labels(self, handle: str, values: Sequence[HandleValue]) -> dict[int, ItemLabel]:
        """The items of the template ``values`` name, by ``idIndex`` (empty: no template, an unknown one, or the
        database unavailable)."""
        reference = _reference(handle, values)
        if reference is None:
            return {}
        now = self._clock()
        kept = self._kept.get(reference)
        if kept is not None and kept[0] > now:
            return kept[1]
        try:
            document = await self._pool.fetchval(_ITEMS, *reference)
        except Exception as exc:
            if unavailable(exc):
                return {}
            raise
        items = {} if document is None else _items(document)
        if len(self._kept) >= self._max:
            self._kept.clear()
        self._kept[reference] = (now + self._ttl, items)
        return items
