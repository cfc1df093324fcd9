"""The product view of a record: its typed links and lifecycle state, and the documents machines ask for.

Built once per cached record (``answers.build_entry``) from its public values, and only for records that have
one: a ``10320/loc`` value with at least one location (``resolver/links.py``) or an ``IDNODE_STATUS`` value
(``resolver/lifecycle.py``). Every other record has no product view, and the proxy answers it exactly as
Handle.Net's does (transcripts F1–F5). A value that does not parse (written by SQL before the write path checked
it, or by another node) is ignored, as Handle.Net ignores what it cannot read.

The default redirect (:attr:`Product.location`): none for a withdrawn record (410); a recalled record's recall
link; else the link marked default; else the record's first URL value (Handle.Net's target, ``answers.Redirects``);
else the first link.

Documents (slow path, built per request: they name the node's own origin):
- :func:`linkset`: RFC 9264 §4.2 JSON. One context object whose ``anchor`` is the absolute proxy URL; link types
  as URIs (``links.expand``); each target ``{"href", "title"?, "type"?, "hreflang"?: [..]}``; the default link
  also under ``https://ref.gs1.org/voc/defaultLink`` (GS1 Resolver 1.2, research §2); a recall link under
  ``gs1:recallStatus``; ``describedby`` → ``/api/handles/<h>``.
- :func:`json_ld`: a schema.org ``Product`` (``IndividualProduct`` when the record has a serial number) from the
  template attributes (values at index ``ATTRIBUTE_INDEX`` and up, as IDIS templates place them), mapped by
  ``idType`` as ``SCHEMA_PROPERTIES`` lists; every other attribute becomes an ``additionalProperty``
  ``PropertyValue``. The context is inline (``@vocab`` schema.org), so a JSON-LD processor expands it offline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import quote

from resolver import lifecycle, links
from resolver.classes import CLASS_PATTERN_INDEX, CLASS_PATTERN_TYPE, Membership, PatternError, parse_pattern
from resolver.errors import InvalidValue
from resolver.lifecycle import RECALLED, STATUS_TYPE, Status, StatusError
from resolver.links import LOC_TYPE, Link, LinkError
from resolver.records import HandleValue

__all__ = [
    "ATTRIBUTE_INDEX",
    "JSON_LD_CONTEXT",
    "LINKSET_TYPE",
    "SCHEMA_PROPERTIES",
    "Product",
    "by_media",
    "check_values",
    "class_link_header",
    "handle_path",
    "json_ld",
    "link_header",
    "linkset",
    "narrow",
    "product_of",
    "values_with_links",
    "with_links",
]

LINKS_INDEX = 1000
"""Where the ``links`` sugar puts its ``10320/loc`` value (the DOI Handbook's example index; 1001 is the template's)."""
ATTRIBUTE_INDEX = 2000
"""Template attributes start here (registry/templates.py ``FIRST_ITEM_INDEX``)."""
DEFAULT_LINK = links.GS1_VOCABULARY + "defaultLink"
RECALL_STATUS = links.GS1_VOCABULARY + "recallStatus"
LINKSET_TYPE = "application/linkset+json"
JSON_LD_CONTEXT: dict[str, Any] = {"@vocab": "https://schema.org/", "url": {"@type": "@id"}}

SCHEMA_PROPERTIES: dict[str, str] = {
    "name": "name",
    "productname": "name",
    "model": "model",
    "modelnumber": "model",
    "manufacturer": "manufacturer",
    "maker": "manufacturer",
    "producer": "manufacturer",
    "brand": "brand",
    "productiondate": "productionDate",
    "manufacturedate": "productionDate",
    "madeon": "productionDate",
    "serialno": "serialNumber",
    "serialnumber": "serialNumber",
    "serial": "serialNumber",
    "gtin": "gtin",
    "sku": "sku",
    "mpn": "mpn",
    "color": "color",
    "colour": "color",
    "description": "description",
    "category": "category",
    "origin": "countryOfOrigin",
    "countryoforigin": "countryOfOrigin",
}
"""Template ``idType`` (lower-cased, without ``_``, ``-`` and blanks) → schema.org property. ``manufacturer`` and
``brand`` become an ``Organization``/``Brand`` with that name."""
_NESTED = {"manufacturer": "Organization", "brand": "Brand", "countryOfOrigin": "Country"}
_SEPARATORS = re.compile(r"[\s_-]+")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_CHOSEN_SIZE = 16
_TYPE_LENGTHS = frozenset({len(LOC_TYPE), len(STATUS_TYPE)})
_CHECKED_LENGTHS = _TYPE_LENGTHS | {len(CLASS_PATTERN_TYPE)}


def handle_path(handle: str) -> str:
    """``/<handle>`` as a URL path: ``?``, ``#``, ``%``, blanks and non-ASCII percent-encoded."""
    return "/" + quote(handle, safe=_PATH_SAFE)


def link_header(handle: str) -> str:
    """The ``Link`` header of the proxy's answers for a product record: its linkset and its Handle record, as
    relative references (RFC 8288 §3.1), so the header is the same whatever host the client used."""
    path = handle_path(handle)
    return (
        f'<{path}?linkType=linkset>; rel="linkset"; type="{LINKSET_TYPE}", '
        f'</api/handles{path}>; rel="describedby"; type="application/json"'
    )


def class_link_header(handle: str, class_handle: str) -> str:
    """The ``Link`` header of a class fallback's answers for the unregistered ``handle``: its linkset (the class's
    links, anchored at ``handle``) and its class, ``rel="collection"`` (RFC 6573: the context, the serial, is an
    item of the target). No ``describedby``: the serial has no Handle record, and the class's is not its record."""
    return (
        f'<{handle_path(handle)}?linkType=linkset>; rel="linkset"; type="{LINKSET_TYPE}", '
        f'<{handle_path(class_handle)}>; rel="collection"'
    )


class Product:
    """What the proxy needs about a record with typed links or a status, computed once when it is cached.

    Locations are kept header-safe (``locate``: ``answers.safe_location``), as the cache entry's own target is;
    ``target`` is that target, already safe.
    """

    __slots__ = ("_chosen", "candidates", "default", "link", "links", "location", "safe", "size", "status")

    def __init__(
        self,
        handle: str,
        links_: tuple[Link, ...],
        status: Status | None,
        target: str | None,
        locate: Callable[[str], str],
    ) -> None:
        self.links = links_
        self.status = status
        self.link = link_header(handle)
        self.safe = {link.href: locate(link.href) for link in links_}
        self.default = next((link for link in links_ if link.default), None)
        if status is not None and status.state == lifecycle.WITHDRAWN:
            self.location: str | None = None  # answered 410, never redirected
        elif status is not None and status.state == RECALLED:
            self.location = locate(status.link)
        elif self.default is not None:
            self.location = self.safe[self.default.href]
        else:
            self.location = target or (self.safe[links_[0].href] if links_ else None)
        first = self.default or (links_[0] if links_ else None)
        tagged = first is not None and (status is None or status.state == lifecycle.ACTIVE)
        self.candidates = tuple(c for c in links.by_rel(links_, first.rel) if c.lang) if tagged else ()
        """The language-tagged links of the default link's type: what ``Accept-Language`` chooses among (none for a
        recalled record, which goes to the recall link whatever the language, nor for a withdrawn one)."""
        self._chosen: dict[tuple[str, ...], str | None] | None = None
        self.size = 200 + len(self.link) + sum(150 + 2 * len(link.href) + len(link.title) for link in links_)
        """Estimated bytes held (``CacheEntry.size`` adds it): the links, their safe copies and the objects."""

    @property
    def withdrawn(self) -> bool:
        return self.status is not None and self.status.state == lifecycle.WITHDRAWN

    @property
    def recalled(self) -> bool:
        return self.status is not None and self.status.state == RECALLED

    def by_rel(self, rel: str) -> list[Link]:
        return links.by_rel(self.links, rel)

    def for_languages(self, languages: tuple[str, ...]) -> str | None:
        """The default redirect for a reader of ``languages`` (lower-cased tags, most wanted first): among the
        language-tagged links of the default link's type (the first link's when none is marked), the first in a
        wanted language (exact tag, then primary subtag: ``zh-cn`` takes ``zh``); none matching, or no languages,
        the default redirect. HOT for browsers (they all send Accept-Language): remembered per ``languages``
        (``Negotiator`` hands out one tuple per header string), at most ``_CHOSEN_SIZE`` of them."""
        if not languages or not self.candidates:
            return self.location
        chosen = self._chosen
        if chosen is None:
            chosen = self._chosen = {}
        if languages in chosen:
            return chosen[languages]
        if len(chosen) >= _CHOSEN_SIZE:
            chosen.clear()
        link = pick_language(self.candidates, languages)
        location = chosen[languages] = self.safe[link.href] if link is not None else self.location
        return location


def in_language(candidates: Sequence[Link], languages: Sequence[str]) -> list[Link]:
    """The ``candidates`` in the most wanted of ``languages`` that any of them has (exact tag, then primary subtag:
    ``zh-cn`` takes ``zh``), in their order; none: an empty list."""
    for tag in languages:
        if tag == "*":
            continue
        found = [link for link in candidates if link.lang.lower() == tag]
        if not found:
            primary = tag.split("-", 1)[0]
            found = [link for link in candidates if link.lang and link.lang.lower().split("-", 1)[0] == primary]
        if found:
            return found
    return []


def pick_language(candidates: Sequence[Link], languages: Sequence[str]) -> Link | None:
    """The first of ``candidates`` in the most wanted of ``languages`` (``in_language``), or None."""
    found = in_language(candidates, languages)
    return found[0] if found else None


def narrow(candidates: Sequence[Link], languages: Sequence[str]) -> list[Link]:
    """The links among ``candidates`` a request should choose from (research §2 step 5): those in the most wanted
    language any of them has (``in_language``; none: all of them, a soft filter), and among those the default
    alone when one is marked. One left: redirect to it; several: 300 Multiple Choices."""
    pool = in_language(candidates, languages) or list(candidates)
    return [link for link in pool if link.default][:1] or pool


def by_media(links_: Sequence[Link], ranges: Sequence[str]) -> list[Link]:
    """The links whose ``type`` the most wanted of ``ranges`` (``negotiation.media_ranges``: ``type/subtype`` or
    ``type/*``) matches, parameters ignored; none: an empty list."""
    for media in ranges:
        group = media[:-1] if media.endswith("/*") else None
        found = [
            link
            for link in links_
            if link.type
            and (
                link.type.split(";", 1)[0].strip().lower() == media
                or (group is not None and link.type.lower().startswith(group))
            )
        ]
        if found:
            return found
    return []


def product_of(
    handle: str, values: Sequence[HandleValue], target: str | None, locate: Callable[[str], str]
) -> Product | None:
    """The product view of a record's public ``values`` (``target``: its Handle.Net redirect target, header-safe;
    ``locate``: how a URL is made header-safe), or None when the record has no links and no status."""
    found_links: tuple[Link, ...] = ()
    status = None
    seen_links = seen_status = False
    for value in values:
        if len(value.type) not in _TYPE_LENGTHS or value.format != "string":
            continue  # cheap first test: every cold load passes each value of the record through here
        kind = value.type_key()
        if kind == LOC_TYPE and not seen_links:
            seen_links = True
            with suppress(LinkError):
                found_links = tuple(links.parse(value.value))
        elif kind == STATUS_TYPE and not seen_status:
            seen_status = True
            with suppress(StatusError):
                status = lifecycle.parse(value.value)
    if not found_links and (status is None or status.state == lifecycle.ACTIVE):
        return None
    return Product(handle, found_links, status, target, locate)


def check_values(values: Sequence[HandleValue], prefix: str) -> None:
    """Refuse (rc 202) a record under ``prefix`` whose ``10320/loc``, ``IDNODE_STATUS`` or ``IDNODE_CLASS_PATTERN``
    value the proxy could not act on (a class pattern must also be of ``prefix``: ``classes.parse_pattern``).

    Every write path runs it: ``registry/templates.py`` ``TemplateCheck`` (PUT, batch) and each import line
    (``registry/bulk.py``), so the length test comes first, as in ``product_of``."""
    for value in values:
        if len(value.type) not in _CHECKED_LENGTHS:
            continue
        kind = value.type_key()
        if kind not in (LOC_TYPE, STATUS_TYPE, CLASS_PATTERN_TYPE):
            continue
        if value.format != "string":
            raise InvalidValue(f"Value {value.index}: {value.type} data must be text")
        try:
            if kind == LOC_TYPE:
                links.parse(value.value)
            elif kind == STATUS_TYPE:
                lifecycle.parse(value.value)
            else:
                parse_pattern(value.value, prefix)
        except (LinkError, StatusError, PatternError) as exc:
            raise InvalidValue(f"Value {value.index}: {exc}") from None


def values_with_links(item: dict[str, Any]) -> Any:
    """The ``values`` of a write item (a PUT body, a batch item, an import line; none: an empty array) with its
    ``links`` array of link objects appended as one ``10320/loc`` value at ``LINKS_INDEX`` (``links.links_from_json``,
    ``links.render``), and its ``classPattern`` text as an ``IDNODE_CLASS_PATTERN`` value at ``CLASS_PATTERN_INDEX``
    (checked with the other values by ``check_values``). 400 rc 202 for a bad link or a pattern that is no text; a
    ``values`` array that already uses either index is refused by the decoder (409 rc 201), and one that is no
    array is left for the decoder to refuse."""
    values = item.get("values", [])
    added = []
    if "links" in item:
        try:
            data = links.render(links.links_from_json(item["links"]))
        except LinkError as exc:
            raise InvalidValue(f"links: {exc}") from None
        added.append({"index": LINKS_INDEX, "type": "10320/loc", "data": data})
    if "classPattern" in item:
        if not isinstance(item["classPattern"], str):
            raise InvalidValue('classPattern: expected text such as "PUMP-CP40-{serial}"')
        added.append({"index": CLASS_PATTERN_INDEX, "type": CLASS_PATTERN_TYPE, "data": item["classPattern"]})
    return [*values, *added] if added and isinstance(values, list) else values


def with_links(payload: Any) -> Any:
    """A PUT body with its ``links`` array or ``classPattern`` turned into values (``values_with_links``); any
    other body as it is."""
    if not isinstance(payload, dict) or ("links" not in payload and "classPattern" not in payload):
        return payload
    return {"values": values_with_links(payload)}


def _target(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"href": link.href}
    if link.title:
        out["title"] = link.title
    if link.type:
        out["type"] = link.type
    if link.lang:
        out["hreflang"] = [link.lang]
    return out


def linkset(
    handle: str, product: Product | None, location: str | None, origin: str, *, member: Membership | None = None
) -> dict[str, Any]:
    """The RFC 9264 linkset of a record (see the module docstring); ``location``: a plain record's redirect
    target, ``origin``: this node's ``scheme://host``. With ``member`` (a class fallback), the class record's links
    anchored at the serial's ``handle``, a ``collection`` link to the class instead of ``describedby``."""
    context: dict[str, Any] = {"anchor": origin + handle_path(handle)}
    default = product.location if product is not None else location
    if default is not None:
        chosen = product.default if product is not None and product.default is not None else None
        context[DEFAULT_LINK] = [_target(chosen) if chosen is not None else {"href": default}]
    if product is not None:
        for link in product.links:
            context.setdefault(links.expand(link.rel), []).append(_target(link))
        if product.recalled and product.status is not None:
            recall = {"href": product.status.link, "title": product.status.notice or "Recall"}
            if recall["href"] not in {t["href"] for t in context.get(RECALL_STATUS, [])}:
                context.setdefault(RECALL_STATUS, []).append(recall)
    if member is not None:
        context["collection"] = [{"href": origin + handle_path(member.class_handle), "title": "Product class"}]
        return {"linkset": [context]}
    record = origin + "/api/handles" + handle_path(handle)
    context["describedby"] = [{"href": record, "type": "application/json", "title": "Handle record"}]
    return {"linkset": [context]}


def json_ld(
    handle: str,
    values: Sequence[HandleValue],
    product: Product | None,
    origin: str,
    *,
    member: Membership | None = None,
) -> dict[str, Any]:
    """A schema.org ``Product`` for the record (see the module docstring). With ``member`` (a class fallback,
    ``values`` being the class's): an ``IndividualProduct`` with the serial as ``serialNumber`` whose
    ``isVariantOf`` is the class as a ``ProductModel``: its attributes are the class's, said at class level."""
    anchor = origin + handle_path(handle)
    document: dict[str, Any] = {"@context": JSON_LD_CONTEXT, "@type": "Product", "@id": anchor, "identifier": handle}
    extra = []
    for value in values:
        if value.index < ATTRIBUTE_INDEX or value.format != "string" or not value.value:
            continue
        name = SCHEMA_PROPERTIES.get(_SEPARATORS.sub("", value.type.lower()))
        if name is None or name in document:
            extra.append({"@type": "PropertyValue", "propertyID": value.type, "value": value.value})
        elif name in _NESTED:
            document[name] = {"@type": _NESTED[name], "name": value.value}
        else:
            document[name] = value.value
    if member is not None:
        document["serialNumber"] = member.serial
        class_id = origin + handle_path(member.class_handle)
        document["isVariantOf"] = {"@type": "ProductModel", "@id": class_id, "identifier": member.class_handle}
    if "serialNumber" in document:
        document["@type"] = "IndividualProduct"
    if extra:
        document["additionalProperty"] = extra
    if product is not None and product.location is not None:
        document["url"] = product.location
    return document
