"""Typed links, stored Handle-natively as one ``10320/loc`` value: the codec and the link-type vocabulary.

Why ``10320/loc``: it is the Handle System's own multi-location type, and a stock Handle.Net 9 proxy already
chooses among its ``<location>`` entries by attribute (research/product-resolvers.md §0, §2): ``language``
(Accept-Language), ``ctype`` (Accept), ``weight`` (random weighted pick) and ``?locatt=<attr>:<value>`` on any
attribute, so ``?locatt=rel:gs1:pip`` works there too. The stored form is::

    <locations>
      <location href="https://factory.example/p/123" rel="gs1:pip" language="zh" ctype="text/html"
                title="产品页" default="true" weight="1"/>
      <location href="https://factory.example/sds/123.pdf" rel="gs1:safetyInfo" ctype="application/pdf"
                weight="0"/>
    </locations>

A link object (the sugar the write APIs and the linkset speak) is ``{"rel", "href", "title", "lang", "type",
"default"}``; only ``rel`` and ``href`` are required and ``href`` must be ``http``/``https``. ``lang`` is stored
as ``language`` and ``type`` as ``ctype`` (Handle.Net's names). When one link is the default, :func:`render`
gives it ``weight="1"`` and every other ``weight="0"``, so a stock proxy, which picks by weight, sends a browser
to the default as idnode does *(inferred from Handle.Net's Location.java, research §2)*.

Link types (``rel``): a GS1 CURIE from ``GS1_LINK_TYPES`` (``gs1:pip`` → ``https://ref.gs1.org/voc/pip``), an
``idnode:`` CURIE from ``IDNODE_LINK_TYPES`` (expanded under ``IDNODE_VOCABULARY``), an absolute ``http(s)`` URI,
or a registered IANA relation name (``describedby``, ``license``: lower-case tokens). A stored location without
``rel`` (a plain Handle.Net ``10320/loc``) is the untyped ``idnode:location``.

Parsing is defensive, since the value is client-written text: at most ``MAX_LOC_BYTES`` and ``MAX_LINKS``
locations, attribute values at most ``MAX_ATTRIBUTE_CHARS``; expat with every DOCTYPE and entity declaration
refused (no entity expansion, no external fetch: the billion-laughs and XXE shapes fail before any expansion);
the root element must be ``locations``. Everything wrong raises :class:`LinkError` naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

__all__ = [
    "GS1_LINK_TYPES",
    "GS1_VOCABULARY",
    "IDNODE_LINK_TYPES",
    "IDNODE_VOCABULARY",
    "LOC_TYPE",
    "MAX_LINKS",
    "MAX_LOC_BYTES",
    "UNTYPED",
    "Link",
    "LinkError",
    "by_rel",
    "expand",
    "link_types",
    "links_from_json",
    "parse",
    "render",
]

LOC_TYPE = "10320/LOC"
"""The Handle value type holding the links (compared ASCII-upper-cased; stored as written, e.g. ``10320/loc``)."""
MAX_LOC_BYTES = 64 * 1024
MAX_LINKS = 200
MAX_ATTRIBUTE_CHARS = 2048
MAX_ELEMENTS = 1000
"""Elements of any name in one value; unknown ones (Handle.Net's ``<links>``) are skipped but counted."""

GS1_VOCABULARY = "https://ref.gs1.org/voc/"
IDNODE_VOCABULARY = "https://w3id.org/idnode/voc/"
"""Base URI of idnode's own link types. A w3id.org permanent identifier is to be registered for it (a pull request
to perma-id/w3id.org redirecting to the README's link-type table); until then it names, it does not resolve."""

UNTYPED = "idnode:location"

GS1_LINK_TYPES: dict[str, tuple[str, str]] = {
    "pip": ("Product information page", "产品信息页"),
    "certificationInfo": ("Certification information", "认证信息"),
    "safetyInfo": ("Safety information (SDS)", "安全信息（安全技术说明书）"),
    "instructions": ("Instructions", "使用说明"),
    "serviceInfo": ("Service information", "维修保养信息"),
    "productPassport": ("Digital product passport", "数字产品护照"),
    "recallStatus": ("Recall status", "召回状态"),
    "masterData": ("Master data", "主数据"),
    "epcis": ("EPCIS event repository", "EPCIS 事件库"),
    "repairInfo": ("Repair information", "维修信息"),
    "traceability": ("Traceability information", "追溯信息"),
    "sustainabilityInfo": ("Sustainability information", "可持续性信息"),
    "recyclingInfo": ("Recycling information", "回收信息"),
    "quickStartGuide": ("Quick start guide", "快速入门"),
    "support": ("Support", "技术支持"),
    "faqs": ("FAQs", "常见问题"),
    "registerProduct": ("Register the product", "产品注册"),
    "relatedImage": ("Product image", "产品图片"),
    "relatedVideo": ("Related video", "相关视频"),
    "smartLabel": ("SmartLabel", "智能标签"),
    "whatsInTheBox": ("What's in the box", "包装清单"),
    "userAgreement": ("User agreement", "用户协议"),
    "defaultLink": ("Default link", "默认链接"),
}
"""GS1 Web Vocabulary link types accepted as ``gs1:<name>`` (a subset of the 55 in GS1's description file,
research §1): an unknown name is refused rather than stored as a typo. Titles: English, Chinese."""

IDNODE_LINK_TYPES: dict[str, tuple[str, str]] = {
    "dataSheet": ("Technical data sheet", "技术规格书"),
    "qualityCertificate": ("Certificate of conformity (factory)", "产品合格证"),
    "maintenanceRecord": ("Maintenance record", "维保记录"),
    "enterpriseInfo": ("Enterprise information", "企业信息"),
    "identityRecord": ("Identifier record (IDIS secondary node)", "标识注册信息（二级节点）"),
    "location": ("Location (untyped)", "位置（未分类）"),
}
"""Link types IDIS registrations need that GS1's vocabulary lacks, as ``idnode:<name>``: the factory's own
certificate of conformity (GS1's ``certificationInfo`` is third-party certification), the data sheet, the
maintenance record an MES keeps, the enterprise, and the record as the secondary node serves it."""

_CURIES = {"gs1": (GS1_VOCABULARY, GS1_LINK_TYPES), "idnode": (IDNODE_VOCABULARY, IDNODE_LINK_TYPES)}
_IANA_NAME = re.compile(r"[a-z][a-z0-9.-]*")
"""RFC 8288 §2.1.1 registered relation types: lower-case tokens."""
_WEB_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
"""BCP 47's shape (RFC 5646 §2.1), not its registry."""
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_FIELDS = ("rel", "href", "title", "lang", "type", "default")
_TRUE = frozenset({"true", "1", "yes"})


class LinkError(ValueError):
    """A ``10320/loc`` value or link object that idnode cannot serve; the message names the problem."""


class Link(NamedTuple):
    """One typed link. ``rel`` is as written (a CURIE, URI or IANA name); :func:`expand` gives its URI."""

    rel: str
    href: str
    title: str = ""
    lang: str = ""
    type: str = ""
    default: bool = False

    def to_json(self) -> dict[str, Any]:
        """The link object of the write APIs, optional members left out when empty."""
        out: dict[str, Any] = {"rel": self.rel, "href": self.href}
        for name in ("title", "lang", "type"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.default:
            out["default"] = True
        return out


def expand(rel: str) -> str:
    """The URI of link type ``rel``: CURIEs expanded, URIs and IANA names as they are."""
    prefix, sep, name = rel.partition(":")
    if sep and prefix in _CURIES:
        return _CURIES[prefix][0] + name
    return rel


def link_types() -> dict[str, dict[str, str]]:
    """Every CURIE idnode accepts, with its URI and English and Chinese titles (``/.well-known/idnode``)."""
    return {
        f"{prefix}:{name}": {"uri": base + name, "en": en, "zh": zh}
        for prefix, (base, names) in _CURIES.items()
        for name, (en, zh) in names.items()
    }


def _check_rel(rel: str) -> str:
    prefix, sep, name = rel.partition(":")
    if sep and prefix in _CURIES:
        if name not in _CURIES[prefix][1]:
            raise LinkError(f"unknown link type {rel[:64]!r}; see /.well-known/idnode for the supported ones")
        return rel
    if _WEB_URL.fullmatch(rel) or _IANA_NAME.fullmatch(rel):
        return rel
    raise LinkError(f"link type {rel[:64]!r} is neither gs1:/idnode: CURIE, http(s) URI nor IANA relation name")


def _check_href(href: str) -> str:
    if not _WEB_URL.fullmatch(href):
        raise LinkError(f"link href {href[:64]!r} must be an http or https URL without blanks or quotes")
    return href


def _link(attributes: dict[str, Any], *, untyped: str | None = None) -> Link:
    """A link from its fields, each checked; ``untyped`` is the ``rel`` of a link without one (else required)."""
    for name in _FIELDS:
        raw = attributes.get(name)
        if raw is None or name == "default":
            continue
        if not isinstance(raw, str):
            raise LinkError(f"link {name} must be a string")
        if len(raw) > MAX_ATTRIBUTE_CHARS:
            raise LinkError(f"link {name} is longer than {MAX_ATTRIBUTE_CHARS} characters")
        if "\x00" in raw:
            raise LinkError(f"link {name} must not contain NUL characters")
    rel = attributes.get("rel") or untyped
    if not rel:
        raise LinkError("a link needs a rel (its link type)")
    href = attributes.get("href")
    if not href:
        raise LinkError("a link needs an href")
    lang = attributes.get("lang") or ""
    if lang and not _LANGUAGE_TAG.fullmatch(lang):
        raise LinkError(f"link lang {lang[:64]!r} is not a language tag such as zh or zh-CN")
    media = attributes.get("type") or ""
    if media and not _MEDIA_TYPE.fullmatch(media):
        raise LinkError(f"link type {media[:64]!r} is not a media type such as text/html")
    default = attributes.get("default", False)
    if isinstance(default, str):
        default = default.strip().lower() in _TRUE
    elif not isinstance(default, bool):
        raise LinkError("link default must be a boolean")
    return Link(_check_rel(rel), _check_href(href), attributes.get("title") or "", lang, media, default)


def links_from_json(raw: Any) -> list[Link]:
    """Link objects (the ``links`` array of the write APIs) as links; at most one may be the default."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise LinkError("links must be an array of {rel, href, title?, lang?, type?, default?} objects")
    if len(raw) > MAX_LINKS:
        raise LinkError(f"at most {MAX_LINKS} links per record, got {len(raw)}")
    for item in raw:
        unknown = set(item) - set(_FIELDS)
        if unknown:
            raise LinkError(f"unknown link member {sorted(unknown)[0][:64]!r}")
    return _one_default([_link(item) for item in raw])


def _one_default(links: list[Link]) -> list[Link]:
    if sum(link.default for link in links) > 1:
        raise LinkError("at most one link may be the default")
    return links


def render(links: Sequence[Link]) -> str:
    """The ``10320/loc`` value for ``links`` (see the module docstring for the attributes and weights)."""
    weighted = any(link.default for link in links)
    lines = []
    for link in links:
        attributes = [("href", link.href), ("rel", link.rel)]
        attributes += [(name, value) for name, value in (("title", link.title), ("language", link.lang)) if value]
        if link.type:
            attributes.append(("ctype", link.type))
        if link.default:
            attributes.append(("default", "true"))
        if weighted:
            attributes.append(("weight", "1" if link.default else "0"))
        lines.append("<location " + " ".join(f"{name}={quoteattr(value)}" for name, value in attributes) + "/>")
    return "<locations>" + "".join(lines) + "</locations>"


class _Collector:
    """expat handlers: the ``location`` elements directly under the ``locations`` root, as attribute maps."""

    __slots__ = ("depth", "elements", "locations")

    def __init__(self) -> None:
        self.depth = 0
        self.elements = 0
        self.locations: list[dict[str, str]] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise LinkError(f"10320/loc has more than {MAX_ELEMENTS} elements")
        if self.depth == 0 and name != "locations":
            raise LinkError(f"10320/loc root element must be <locations>, not <{name[:64]}>")
        if self.depth == 1 and name == "location":
            if len(self.locations) >= MAX_LINKS:
                raise LinkError(f"10320/loc has more than {MAX_LINKS} locations")
            self.locations.append(attributes)
        self.depth += 1

    def end(self, _name: str) -> None:
        self.depth -= 1


def _refuse(*_args: Any) -> None:
    raise LinkError("10320/loc must not declare a DOCTYPE or entities")


def parse(text: str | bytes) -> list[Link]:
    """The links of a ``10320/loc`` value; raises :class:`LinkError` for anything idnode would not serve."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) > MAX_LOC_BYTES:
        raise LinkError(f"10320/loc is larger than {MAX_LOC_BYTES} bytes")
    collector = _Collector()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise LinkError(f"10320/loc is not well-formed XML: {expat.ErrorString(exc.code)}") from None
    links = []
    for position, attributes in enumerate(collector.locations, 1):
        fields = {
            "rel": attributes.get("rel"),
            "href": attributes.get("href"),
            "title": attributes.get("title"),
            "lang": attributes.get("language"),
            "type": attributes.get("ctype") or attributes.get("media-type"),
            "default": attributes.get("default", False),
        }
        try:
            links.append(_link(fields, untyped=UNTYPED))
        except LinkError as exc:
            raise LinkError(f"10320/loc location {position}: {exc}") from None
    return _one_default(links)


def by_rel(links: Iterable[Link], rel: str) -> list[Link]:
    """The links of type ``rel``, matched by expanded URI (``gs1:pip`` equals ``https://ref.gs1.org/voc/pip``)."""
    wanted = expand(rel)
    return [link for link in links if expand(link.rel) == wanted]
