"""HTML pages of the proxy: what a person sees after scanning a product's QR code.

Every piece of handle data is escaped (``html.escape`` with quotes), links are made only for ``http(s)`` URLs and
e-mail addresses, and the pages are small, readable on a phone (viewport meta, one column, no external
assets) and carry no script.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from resolver.identifiers import ascii_upper
from resolver.records import HandleValue

__all__ = ["error_page", "home_page", "not_found_page", "redirect_page", "safe_location", "values_page"]

_LOCATION_SAFE = ":/?#[]@!$&'()*+,;=%~"


def safe_location(url: str) -> str:
    """``url`` as a header-safe URI: non-ASCII, spaces, quotes, angle brackets and controls percent-encoded, so a
    stored value can never split the ``Location`` header (IRI → URI, as the Handle proxy does)."""
    return quote(url, safe=_LOCATION_SAFE)


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
)


def _page(title: str, content: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{content}<footer>idnode identifier resolver</footer></main></body></html>\n"
    ).encode()


def redirect_page(location: str) -> bytes:
    """The tiny body sent with a 302, as Handle.Net sends one (transcript F1)."""
    target = escape(location, quote=True)
    return (
        f'<html><head><title>Handle Redirect</title></head>\n<body><a href="{target}">{target}</a></body></html>'
    ).encode()


def _data_html(value: HandleValue) -> str:
    kind = ascii_upper(value.type)
    if value.format == "admin":
        admin = value.value
        bits = str(admin.get("permissions", ""))
        granted = [name for bit, name in zip(bits, _ADMIN_NAMES, strict=False) if bit == "1"]
        return escape(f"handle={admin.get('handle')}; index={admin.get('index')}; [{', '.join(granted)}]")
    text = value.text()
    if value.format == "string" and (kind == "URL" or kind.startswith("URL.")):
        lowered = text.lower()
        if lowered.startswith(("http://", "https://")):
            return f'<a href="{escape(text, quote=True)}" rel="nofollow noopener">{escape(text)}</a>'
    if value.format == "string" and kind == "EMAIL" and "@" in text and ":" not in text:
        return f'<a href="mailto:{quote(text, safe="@.+-_")}">{escape(text)}</a>'
    return escape(text)


def values_page(handle: str, values: Sequence[HandleValue]) -> bytes:
    """All (public) values of a handle, one card each (the proxy's ``?noredirect`` view, transcript F2)."""
    cards = "".join(
        f'<div class="v"><div><span class="t">{escape(v.type)}</span> '
        f'<span class="i">#{v.index} · {escape(v.timestamp.replace("T", " "))}</span></div>'
        f'<div class="d">{_data_html(v)}</div></div>'
        for v in values
    )
    if not values:
        cards = "<p>This identifier has no public values.</p>"
    return _page(f"Handle {handle}", f"<h1>Handle Values for: {escape(handle)}</h1>{cards}")


def not_found_page(handle: str) -> bytes:
    return _page(
        "Not Found",
        f"<h1>Error - Not Found</h1><p>The handle you requested -- <b><i>{escape(handle)}</i></b> "
        "-- cannot be found.</p>",
    )


def error_page(title: str, message: str, handle: str | None = None) -> bytes:
    detail = f"<p><b><i>{escape(handle)}</i></b></p>" if handle else ""
    return _page(title, f"<h1>Error - {escape(title)}</h1>{detail}<p>{escape(message)}</p>")


def home_page() -> bytes:
    return _page(
        "idnode",
        "<h1>Identifier resolver</h1><p>Enter an identifier such as <code>88.888.1/PUMP-2026-000123</code>.</p>"
        "<p>Or open <code>/&lt;identifier&gt;?noredirect</code> to see its values, and "
        "<code>/api/handles/&lt;identifier&gt;</code> for JSON.</p>",
    )
