"""QR labels (issue 13 item 6): the proxy URL of a handle, as a QR code in SVG or PNG, and a printable sheet of them.

What a code holds: the node's public proxy URL of the handle, ``<public_url>/<handle>``, the handle
percent-encoded as the proxy decodes it (``resolver/identifiers.decode_path``): every byte but ``A-Z a-z 0-9 - .
_ ~`` and the ``/`` between prefix and suffix is escaped, so ``?``, ``#``, ``%``, spaces and non-ASCII text
survive the trip. Scheme, host and handle are written in upper case when that turns the whole URL into QR
alphanumeric characters (``0-9 A-Z $%*+-./:`` and space): that mode packs 5.5 bits a character where byte mode
needs 8, e.g. ``https://id.example.cn/88.118.8/PUMP-CP40-0001`` is version 4-M in byte mode, version 3-M (29
instead of 33 modules a side) in upper case. It resolves the same: host names are case-insensitive, and so are
handles (``resolver/identifiers.ascii_upper``). A path in ``public_url`` (a node behind ``/hdl/``) is kept as
written, since a reverse proxy may match it case-sensitively.

``segno`` makes the code (pure Python, maintained, standard-conformant; ISO/IEC 18004). The error-correction
level is the one asked for (``boost_error`` off): L 7 %, M 15 % (default), Q 25 %, H 30 % of the code may be
damaged. ``scale`` (pixels, or SVG user units, a module) and ``border`` (the quiet zone in modules; 4 is the
standard's) are bounded, and so is a PNG's side, so no request can make the node draw an image of any size.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

import segno

__all__ = [
    "BORDER",
    "ECC_LEVELS",
    "FORMATS",
    "MAX_BORDER",
    "MAX_PNG_SIDE",
    "MAX_SCALE",
    "SCALE",
    "Label",
    "label_sheet",
    "proxy_url",
    "qr_code",
    "render",
    "side",
]

ECC_LEVELS = ("L", "M", "Q", "H")
FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
SCALE, MAX_SCALE = 4, 32
BORDER, MAX_BORDER = 4, 16
MAX_PNG_SIDE = 2048
"""Largest PNG side in pixels (drawn in pure Python: about 25 ms for a 1640-pixel code)."""

_ALPHANUMERIC = re.compile(r"[0-9A-Z $%*+\-./:]*")


def proxy_url(base: str, handle: str) -> str:
    """The proxy URL of ``handle`` under ``base`` (``resolver.public_url.public_base``), in upper case when that
    makes it all QR alphanumeric (see the module docstring)."""
    encoded = quote(handle, safe="/")
    scheme, _, rest = base.partition("://")
    host, slash, path = rest.partition("/")
    upper = f"{scheme.upper()}://{host.upper()}{slash}{path}/{encoded.upper()}"
    return upper if _ALPHANUMERIC.fullmatch(upper) else f"{base}/{encoded}"


def qr_code(url: str, ecc: str = "M") -> segno.QRCode:
    """The QR code of ``url`` at error-correction level ``ecc`` (one of ``ECC_LEVELS``), never boosted."""
    return segno.make_qr(url, error=ecc, boost_error=False)


def side(code: segno.QRCode, scale: int, border: int) -> int:
    """Pixels a side of ``code`` drawn at ``scale`` with ``border``."""
    return code.symbol_size(scale=scale, border=border)[0]


def render(
    code: segno.QRCode, kind: str, *, scale: int = SCALE, border: int = BORDER, title: str = "", sized: bool = True
) -> bytes:
    """``code`` as SVG (no XML declaration: it may be inlined in HTML; ``title`` is its tooltip; not ``sized``: a
    ``viewBox`` only, so that CSS sizes it) or PNG."""
    out = io.BytesIO()
    if kind == "svg":
        code.save(out, kind="svg", scale=scale, border=border, xmldecl=False, title=title or None, omitsize=not sized)
    else:
        code.save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Label:
    """One label of a sheet: the handle printed under its code, and the code's SVG."""

    handle: str
    svg: bytes


_SHEET_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>QR labels {title}</title>
<style>
@page {{ size: A4; margin: 10mm; }}
body {{ margin: 0; font-family: "DejaVu Sans Mono", monospace; }}
.sheet {{ display: grid; grid-template-columns: repeat(3, 60mm); gap: 4mm 5mm; }}
.label {{ width: 60mm; height: 68mm; break-inside: avoid; text-align: center; }}
.label svg {{ width: 56mm; height: 56mm; }}
.label p {{ margin: 1mm 0 0; font-size: 3mm; overflow-wrap: anywhere; }}
</style></head><body><div class="sheet">
"""


def label_sheet(title: str, labels: Iterable[Label]) -> str:
    """A printable A4 HTML page of labels, three a row, 56 mm codes, each handle written under its code."""
    parts = [_SHEET_HEAD.format(title=html.escape(title))]
    for label in labels:
        parts.append(f'<div class="label">{label.svg.decode()}<p>{html.escape(label.handle)}</p></div>\n')
    parts.append("</div></body></html>\n")
    return "".join(parts)
