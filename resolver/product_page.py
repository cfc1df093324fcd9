"""The product page: what a person sees after scanning a product's QR code (issue 13 item 3).

Served for a record with a product face, one that has typed links, a lifecycle state or template attributes
(values at ``ATTRIBUTE_INDEX`` and up), on ``?noredirect`` and when it has nothing to redirect to; a plain record
keeps Handle.Net's values page (``resolver/pages.py``). What it shows, top down:

- a lifecycle banner (a recall's notice and link) before everything else;
- the product: an image (the first ``gs1:relatedImage`` link, else an image attribute holding an ``http(s)``
  URL), the headline (name, model, maker: the attributes ``template_labels.property_of`` calls so), the other
  attributes labelled by their template item names (``resolver/template_labels.py``), in Chinese or English;
- the typed links as large buttons (their titles; untitled ones by their link type's name, ``links.link_types``),
  of each link type the ones in the page's language when there are such, the default link first; without typed
  links, the record's ``URL`` values;
- the identifier (and, for a class record shown for an unregistered serial, the serial and the class), the node;
- a ``<details>`` fold, "technical details", with the Handle values as the values page shows them (HS_ADMIN, index
  numbers, timestamps): closed, so an anonymous visitor sees none of it unless they ask.

Language: ``?lang=`` else ``Accept-Language``, the first of them that is Chinese or English; English otherwise
(:func:`page_language`). ``<html lang>`` is ``zh-CN`` or ``en``; in an English page a value with Chinese characters
is marked ``lang="zh"`` (so a browser picks a Chinese font for it), and a link title carries its link's language.
A switch links the other language (``?noredirect&lang=…``: plain links, no script).

Safety, as ``pages.py``: every value escaped (``html.escape`` with quotes); links and images only ``http(s)``
(anything else is shown as text, never as a link); no script; ``page_headers``: nosniff, a Content-Security-Policy
allowing only this page's stylesheet (by hash) and, only when the page shows an image, ``img-src https: http:``.
Layout: one column on a phone, buttons two abreast from 40 rem; normal words never break inside (no
``word-break``), only identifiers and URLs may wrap anywhere (``overflow-wrap:anywhere`` on them alone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import NamedTuple
from urllib.parse import urlsplit

from resolver import links
from resolver.lifecycle import Status
from resolver.links import Link
from resolver.pages import document, page_headers, value_cards
from resolver.product import ATTRIBUTE_INDEX, Product, handle_path
from resolver.records import HandleValue
from resolver.template_labels import ItemLabel, fallback_label, has_han, property_of

__all__ = ["IMAGE_TYPE", "ProductPage", "has_face", "page_language", "product_page", "tombstone_page"]

IMAGE_TYPE = "gs1:relatedImage"
"""The link type of a product's picture (GS1 Web Vocabulary)."""
_WEB_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)
_HEADLINE = ("name", "model", "manufacturer")
_STYLE = (
    "*{box-sizing:border-box}"
    "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC','Noto Sans SC',"
    "'PingFang SC','Microsoft YaHei',sans-serif;color:#1b1f24;background:#f3f5f8;line-height:1.5;"
    "overflow-wrap:break-word}"
    "main{max-width:46rem;margin:0 auto;padding:.75rem 1rem 1.5rem}"
    "nav{display:flex;justify-content:space-between;align-items:center;gap:1rem;font-size:.9rem;color:#57606a}"
    "nav a,nav b{display:inline-block;padding:.55rem .35rem;min-height:2.75rem;line-height:1.7}"
    "a{color:#0969da}"
    ".c{background:#fff;border:1px solid #d0d7de;border-radius:12px;padding:1rem 1.1rem;margin:.75rem 0}"
    "img{display:block;max-width:100%;max-height:16rem;margin:0 auto .75rem;object-fit:contain}"
    "h1{font-size:1.45rem;line-height:1.3;margin:.1rem 0 .35rem}"
    ".m{color:#424a53;margin:0 0 .25rem;font-size:1.05rem}"
    "dl{margin:.5rem 0 0;display:grid;grid-template-columns:minmax(0,1fr);gap:0 1rem}"
    "dt{color:#57606a;font-size:.85rem;margin-top:.6rem}dd{margin:0;font-size:1.05rem}"
    "@media(min-width:40rem){dl{grid-template-columns:minmax(8rem,max-content) minmax(0,1fr)}"
    "dt{margin-top:.45rem;font-size:.95rem}dd{margin-top:.45rem}"
    ".bs{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.7rem}.bs .b{margin:0}}"
    ".c>dl:first-child{margin-top:0}.c>dl:first-child>:nth-child(-n+2){margin-top:0}"
    ".b{display:flex;flex-direction:column;justify-content:center;min-height:3.5rem;padding:.75rem 1rem;"
    "margin:.6rem 0;border-radius:10px;background:#0969da;color:#fff;text-decoration:none;font-weight:600;"
    "font-size:1.05rem}"
    ".b small{font-weight:400;font-size:.85rem;opacity:.9}"
    ".u,.d,.id{overflow-wrap:anywhere}"
    ".id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.95rem}"
    ".n{background:#fff1f0;border:2px solid #cf222e;border-radius:12px;padding:.9rem 1.1rem;margin:.75rem 0}"
    ".n b{font-size:1.15rem;color:#a40e26}.n p{margin:.35rem 0}"
    ".n a{display:flex;align-items:center;min-height:3rem;padding:.6rem 1rem;margin-top:.5rem;border-radius:10px;"
    "background:#cf222e;color:#fff;font-weight:600;text-decoration:none;overflow-wrap:anywhere}"
    ".k{background:#ddf4ff;border:1px solid #54aeff;border-radius:12px;padding:.7rem 1rem;margin:.75rem 0}"
    "details{margin:.75rem 0}summary{cursor:pointer;padding:.6rem 0;min-height:2.75rem;color:#424a53}"
    ".v{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.6rem .8rem;margin:.5rem 0;"
    "font-size:.9rem}.t{font-weight:600}.i{color:#57606a;font-size:.8rem}"
    "footer{color:#57606a;font-size:.8rem;margin-top:1.25rem}"
)
_HEADERS = page_headers(_STYLE)
_IMAGE_HEADERS = page_headers(_STYLE, images=True)

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "html": "en",
        "switch": "中文",
        "switch_lang": "zh",
        "title": "Product",
        "links": "Information and documents",
        "web": "Web page",
        "identifier": "Identifier",
        "serial": "Serial number",
        "class": "Product class",
        "class_note": "This serial number is not registered on its own: shown is what its product class {cls} says.",
        "node": "Resolved by",
        "details": "Technical details (Handle values)",
        "data": "Data",
        "recalled": "Recalled",
        "recall_default": "This product has been recalled.",
        "recall_link": "Read the recall notice",
        "withdrawn": "Withdrawn",
        "withdrawn_default": "This identifier has been withdrawn.",
        "successor": "Successor",
        "none": "This identifier has no public product information.",
        "footer": "idnode identifier resolver",
    },
    "zh": {
        "html": "zh-CN",
        "switch": "English",
        "switch_lang": "en",
        "title": "产品",
        "links": "资料与文档",
        "web": "网页",
        "identifier": "标识",
        "serial": "序列号",
        "class": "产品类别",
        "class_note": "该序列号未单独注册：以下为其产品类别 {cls} 的信息。",
        "node": "解析节点",
        "details": "技术详情（Handle 值）",
        "data": "数据",
        "recalled": "已召回",
        "recall_default": "该产品已被召回。",
        "recall_link": "查看召回公告",
        "withdrawn": "已停用",
        "withdrawn_default": "该标识已停用。",
        "successor": "替代标识",
        "none": "该标识没有公开的产品信息。",
        "footer": "idnode 标识解析节点",
    },
}


class ProductPage(NamedTuple):
    """A rendered page and the headers it must go with (its Content-Security-Policy allows images or not)."""

    body: bytes
    headers: Mapping[str, str]


def page_language(lang: str, accepted: Sequence[str]) -> str:
    """``zh`` or ``en``: ``lang`` (``?lang=``) when it names one of them, else the first of ``accepted``
    (``Accept-Language``, lower-cased, most wanted first) that does, else ``en``."""
    for tag in (lang.lower(), *accepted):
        primary = tag.split("-", 1)[0]
        if primary in _TEXT:
            return primary
    return "en"


def has_face(values: Sequence[HandleValue], product: Product | None) -> bool:
    """Whether the record gets the product page rather than the values page: it has typed links or a status, or
    a template attribute."""
    return product is not None or any(v.index >= ATTRIBUTE_INDEX for v in values)


def _is_web(url: str) -> bool:
    return _WEB_URL.fullmatch(url) is not None


def _text(text: str, language: str) -> str:
    """Escaped ``text``, marked Chinese when the page is English and the text has Chinese characters."""
    if language == "en" and has_han(text):
        return f'<span lang="zh">{escape(text)}</span>'
    return escape(text)


def _value(text: str, language: str) -> str:
    if _is_web(text):
        return f'<a class="u" href="{escape(text, quote=True)}" rel="nofollow noopener">{escape(text)}</a>'
    return _text(text, language)


def _switch(handle: str, language: str) -> str:
    text = _TEXT[language]
    other = text["switch_lang"]
    href = escape(f"{handle_path(handle)}?noredirect&lang={other}", quote=True)
    return (
        f'<nav><span>idnode</span><a href="{href}" hreflang="{other}" lang="{_TEXT[other]["html"]}">'
        f"{text['switch']}</a></nav>"
    )


def _attributes(
    values: Sequence[HandleValue], labels: Mapping[int, ItemLabel], language: str
) -> tuple[dict[str, str], list[tuple[str, str]], str]:
    """The headline properties found (name, model, maker), the other attributes as (label, value) and the first
    image attribute's URL."""
    headline: dict[str, str] = {}
    rows = []
    image = ""
    for value in values:
        if value.index < ATTRIBUTE_INDEX or value.format != "string" or not str(value.value).strip():
            continue
        text = str(value.value)
        kind = property_of(value.type)
        if kind in _HEADLINE and kind not in headline:
            headline[kind] = text
            continue
        if kind == "image" and not image and _is_web(text):
            image = text
            continue
        item = labels.get(value.index)
        label = item.text(language) if item is not None else fallback_label(value.type, language)
        rows.append((label, text))
    return headline, rows, image


_LINK_NAMES = links.link_types()


def _link_label(link: Link, language: str) -> str:
    """A link type's name in ``language`` (``gs1:``/``idnode:`` CURIEs), else the type as written."""
    known = _LINK_NAMES.get(link.rel)
    return known[language] if known is not None else link.rel


def _primary(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def _buttons(product: Product | None, values: Sequence[HandleValue], language: str) -> str:
    shown = [link for link in (product.links if product is not None else ()) if link.rel != IMAGE_TYPE]
    shown.sort(key=lambda link: not link.default)
    in_language = {link.rel for link in shown if _primary(link.lang) == language}
    # of a link type with a link in the page's language, the other languages' links are left out
    chosen = [link for link in shown if not (link.rel in in_language and link.lang and _primary(link.lang) != language)]
    buttons = []
    for link in chosen:
        if not _is_web(link.href):
            continue
        kind = _link_label(link, language)
        title = link.title or kind
        title_lang = f' lang="{escape(link.lang, quote=True)}"' if link.lang else ""
        notes = [kind] if link.title and link.title != kind else []
        if link.type.lower() == "application/pdf":
            notes.append("PDF")
        note = f"<small>{escape(' · '.join(notes))}</small>" if notes else ""
        hreflang = f' hreflang="{escape(link.lang, quote=True)}"' if link.lang else ""
        buttons.append(
            f'<a class="b" href="{escape(link.href, quote=True)}" rel="nofollow noopener"{hreflang}>'
            f"<span{title_lang}>{escape(title)}</span>{note}</a>"
        )
    hrefs: set[str] = set()
    for value in () if buttons else values:  # no typed link: the record's URL values (Handle.Net's targets)
        url = value.text() if value.format == "string" else ""
        if value.type.upper() == "URL" and _is_web(url) and url not in hrefs:
            hrefs.add(url)
            host = escape(urlsplit(url).hostname or "")
            buttons.append(
                f'<a class="b" href="{escape(url, quote=True)}" rel="nofollow noopener">'
                f'<span>{_TEXT[language]["web"]}</span><small class="u">{host}</small></a>'
            )
    if not buttons:
        return ""
    heading = f"<h2 hidden>{_TEXT[language]['links']}</h2>"
    return f'<section class="c">{heading}<div class="bs">{"".join(buttons)}</div></section>'


def _recall(status: Status | None, language: str) -> str:
    if status is None:
        return ""
    text = _TEXT[language]
    link = ""
    if status.link and _is_web(status.link):
        link = f'<a href="{escape(status.link, quote=True)}" rel="nofollow noopener">{text["recall_link"]}</a>'
    notice = _text(status.notice or text["recall_default"], language)
    return f'<div class="n" role="alert"><b>{text["recalled"]}</b><p>{notice}</p>{link}</div>'


def _identity(handle: str, node: str, language: str, *, class_of: str | None, serial: str | None, data: bool) -> str:
    """The identifier (a serial and its class), the node, and (``data``) links to the record as data."""
    text = _TEXT[language]
    rows = [(text["identifier"], f'<span class="id">{escape(handle)}</span>')]
    if serial:
        rows.append((text["serial"], f'<span class="id">{escape(serial)}</span>'))
    if class_of:
        path = escape(handle_path(class_of), quote=True)
        rows.append((text["class"], f'<a class="id" href="{path}">{escape(class_of)}</a>'))
    if node:
        rows.append((text["node"], f'<span class="id">{escape(node)}</span>'))
    if data:
        path = escape(handle_path(handle if class_of is None else class_of), quote=True)
        rows.append(
            (text["data"], f'<a href="{path}?linkType=linkset">linkset</a> · <a href="/api/handles{path}">JSON</a>')
        )
    return "<dl>" + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows) + "</dl>"


def product_page(
    handle: str,
    values: Sequence[HandleValue],
    product: Product | None,
    labels: Mapping[int, ItemLabel],
    *,
    language: str,
    node: str,
    allows: Callable[[str], bool],
    class_of: str | None = None,
    serial: str | None = None,
) -> ProductPage:
    """The page of ``handle`` from its public ``values`` (see the module docstring). ``labels``: its template's
    items (``TemplateLabels.labels``); ``language``: ``zh`` or ``en`` (``page_language``); ``node``: this node's
    name as the client reached it (empty: not shown); ``allows``: which URL values the technical fold links
    (``answers.Redirects.allows``). ``class_of``: the class record whose ``values`` these are, shown for the
    unregistered ``handle`` (``serial``: its serial number), marked as class-level information."""
    text = _TEXT[language]
    headline, rows, image = _attributes(values, labels, language)
    picture = next((link.href for link in product.links if link.rel == IMAGE_TYPE), "") if product else ""
    picture = picture if _is_web(picture) else image
    banner = _recall(product.status, language) if product is not None and product.recalled else ""
    name = headline.get("name") or handle
    parts = [_switch(handle, language), banner]
    if class_of:
        note = escape(text["class_note"]).replace("{cls}", f'<span class="id">{escape(class_of)}</span>')
        parts.append(f'<p class="k">{note}</p>')
    card = [f'<img src="{escape(picture, quote=True)}" alt="">' if picture else ""]
    card.append(f"<h1>{_text(name, language)}</h1>")
    sub = [_text(headline[k], language) for k in ("model", "manufacturer") if k in headline]
    if sub:
        card.append(f'<p class="m">{" · ".join(sub)}</p>')
    if rows:
        card.append(
            "<dl>"
            + "".join(f"<dt>{_text(label, language)}</dt><dd>{_value(v, language)}</dd>" for label, v in rows)
            + "</dl>"
        )
    elif not headline and not picture:
        card.append(f"<p>{text['none']}</p>")
    parts.append(f'<section class="c">{"".join(card)}</section>')
    parts.append(_buttons(product, values, language))
    parts.append(
        f'<section class="c">{_identity(handle, node, language, class_of=class_of, serial=serial, data=True)}</section>'
    )
    parts.append(f"<details><summary>{text['details']}</summary>{value_cards(values, allows)}</details>")
    body = document(name, "".join(parts), style=_STYLE, lang=text["html"], footer=text["footer"])
    return ProductPage(body, _IMAGE_HEADERS if picture else _HEADERS)


def tombstone_page(handle: str, status: Status, successor: str, *, language: str, node: str) -> ProductPage:
    """The 410 page of a withdrawn identifier, styled as the product page; ``successor`` (a header-safe URL or
    path) is linked."""
    text = _TEXT[language]
    notice = _text(status.notice or text["withdrawn_default"], language)
    more = ""
    if successor:
        more = f'<p>{text["successor"]}: <a href="{escape(successor, quote=True)}">{escape(successor)}</a></p>'
    banner = f'<div class="n" role="alert"><b>{text["withdrawn"]}</b><p>{notice}</p>{more}</div>'
    identity = _identity(handle, node, language, class_of=None, serial=None, data=False)
    title = f'<h1 class="id">{escape(handle)}</h1>'
    content = f'{_switch(handle, language)}{banner}{title}<section class="c">{identity}</section>'
    return ProductPage(document(handle, content, style=_STYLE, lang=text["html"], footer=text["footer"]), _HEADERS)
