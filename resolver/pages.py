"""HTML pages of the proxy: what a person sees after scanning a product's QR code.

Every piece of handle data is escaped (``html.escape`` with quotes), links are made only for URLs the proxy may
redirect to (``answers.Redirects``) and e-mail addresses, and the pages are small, readable on a phone (viewport
meta, one column, no external assets) and carry no script. ``HTML_HEADERS`` go with every page: the
Content-Security-Policy allows nothing but the pages' own stylesheet (by its hash) and a form that submits to
this node, so even markup that escaped escaping could neither run script nor load or send anything.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from html import escape
from urllib.parse import quote

from resolver.identifiers import ascii_upper
from resolver.records import HandleValue

__all__ = [
    "HTML_HEADERS",
    "document",
    "error_page",
    "home_page",
    "not_found_page",
    "notice_banner",
    "page_headers",
    "redirect_page",
    "value_cards",
    "values_page",
]

_ADMIN_NAMES = (
    "list handles",
    "read values",
    "add admin",
    "remove admin",
    "modify admin",
    "add value",
    "remove value",
    "modify value",
    "delete derived prefix",
    "add derived prefix",
    "delete handle",
    "create handle",
)

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans SC',sans-serif;margin:0;"
    "padding:1rem;color:#1b1f24;background:#f6f8fa;line-height:1.45}"
    "main{max-width:46rem;margin:0 auto}h1{font-size:1.15rem;word-break:break-all;margin:.2rem 0 1rem}"
    ".v{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.7rem .9rem;margin:.6rem 0}"
    ".t{font-weight:600}.i{color:#57606a;font-size:.85rem}.d{word-break:break-all;margin-top:.25rem}"
    "a{color:#0969da}footer{color:#57606a;font-size:.8rem;margin-top:1.5rem}"
    "form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}"
    "input[type=text]{flex:1 1 16rem;font:inherit;padding:.45rem .6rem;border:1px solid #d0d7de;border-radius:6px}"
    "button{font:inherit;padding:.45rem 1rem;border:0;border-radius:6px;background:#0969da;color:#fff}"
    ".n{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:.7rem .9rem;margin:.6rem 0}"
)


def style_hash(style: str) -> str:
    """The CSP source of an inline stylesheet: ``'sha256-…'``."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'"


def page_headers(style: str, *, images: bool = False) -> dict[str, str]:
    """The headers of a page styled by ``style`` (its hash the only style allowed); ``images``: it may also show
    ``http(s)`` images (a product's picture), nothing else."""
    image_source = "img-src https: http:; " if images else ""
    return {
        "Content-Type": "text/html;charset=UTF-8",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash(style)}; {image_source}form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
    }


HTML_HEADERS = page_headers(_STYLE)
"""Headers of every HTML answer (pages and the 302's body). ``no-referrer``: the product site a scan lands on
is not told which page linked the identifier, and a values page's URL (the identifier) is not sent on."""


def document(title: str, content: str, *, style: str = _STYLE, lang: str = "en", footer: str = "") -> bytes:
    """A whole page: ``content`` (markup, already escaped) in ``main``, styled by ``style``, in language ``lang``."""
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{style}</style></head>"
        f"<body><main>{content}<footer>{footer or 'idnode identifier resolver'}</footer></main></body></html>\n"
    ).encode()


def redirect_page(location: str) -> bytes:
    """The tiny body sent with a 302, as Handle.Net sends one (transcript F1)."""
    target = escape(location, quote=True)
    return (
        f'<html><head><title>Handle Redirect</title></head>\n<body><a href="{target}">{target}</a></body></html>'
    ).encode()


def _data_html(value: HandleValue, links: Callable[[str], bool]) -> str:
    kind = ascii_upper(value.type)
    if value.format == "admin":
        admin = value.value
        bits = str(admin.get("permissions", ""))
        granted = [name for bit, name in zip(bits, _ADMIN_NAMES, strict=False) if bit == "1"]
        return escape(f"handle={admin.get('handle')}; index={admin.get('index')}; [{', '.join(granted)}]")
    text = value.text()
    if value.format == "string" and (kind == "URL" or kind.startswith("URL.")) and links(text):
        return f'<a href="{escape(text, quote=True)}" rel="nofollow noopener">{escape(text)}</a>'
    if value.format == "string" and kind == "EMAIL" and "@" in text and ":" not in text:
        return f'<a href="mailto:{quote(text, safe="@.+-_")}">{escape(text)}</a>'
    return escape(text)


def notice_banner(title: str, notice: str, link: str = "") -> str:
    """A lifecycle notice (recall, withdrawal) shown above everything else; ``link`` (http(s), checked by
    ``resolver/lifecycle.py``) becomes a link to the notice's page."""
    more = f' <a href="{escape(link, quote=True)}" rel="nofollow noopener">{escape(link)}</a>' if link else ""
    return f'<div class="n" role="alert"><b>{escape(title)}</b><p>{escape(notice)}</p>{more}</div>'


def value_cards(values: Sequence[HandleValue], links: Callable[[str], bool]) -> str:
    """One card per value: its type, index and timestamp, its data (``links``: as ``values_page``)."""
    return "".join(
        f'<div class="v"><div><span class="t">{escape(v.type)}</span> '
        f'<span class="i">#{v.index} · {escape(v.timestamp.replace("T", " "))}</span></div>'
        f'<div class="d">{_data_html(v, links)}</div></div>'
        for v in values
    )


def values_page(handle: str, values: Sequence[HandleValue], links: Callable[[str], bool], *, banner: str = "") -> bytes:
    """All (public) values of a handle, one card each (the proxy's ``?noredirect`` view, transcript F2); URL
    values for which ``links`` is true are links, the others text. ``banner`` (``notice_banner``'s markup) goes
    first."""
    cards = value_cards(values, links)
    if not values:
        cards = "<p>This identifier has no public values.</p>"
    return document(f"Handle {handle}", f"{banner}<h1>Handle Values for: {escape(handle)}</h1>{cards}")


def not_found_page(handle: str) -> bytes:
    return document(
        "Not Found",
        f"<h1>Error - Not Found</h1><p>The handle you requested -- <b><i>{escape(handle)}</i></b> "
        "-- cannot be found.</p>",
    )


def error_page(title: str, message: str, handle: str | None = None) -> bytes:
    detail = f"<p><b><i>{escape(handle)}</i></b></p>" if handle else ""
    return document(title, f"<h1>Error - {escape(title)}</h1>{detail}<p>{escape(message)}</p>")


def home_page() -> bytes:
    """A form that resolves an identifier with a plain GET (``/?hdl=...``, as the Handle proxy's form sends it),
    so it works without script and under ``HTML_HEADERS``' policy."""
    return document(
        "idnode",
        '<h1>Identifier resolver</h1><form action="/" method="get">'
        '<input type="text" name="hdl" required aria-label="Identifier" placeholder="88.888.1/PUMP-2026-000123">'
        '<button type="submit">Resolve</button>'
        '<label><input type="checkbox" name="noredirect" value="true"> show the values, do not redirect</label>'
        "</form><p>Or open <code>/&lt;identifier&gt;?noredirect</code> to see its values, and "
        "<code>/api/handles/&lt;identifier&gt;</code> for JSON.</p>",
    )
