"""``GET /qr/{handle}.svg`` and ``GET /qr/{handle}.png``: a QR code of the handle's proxy URL (``registry/qr.py``).

``?ecc=L|M|Q|H`` (default M), ``?scale=1..32`` (default 4: pixels, or SVG units, a module), ``?border=0..16``
(default 4 modules of quiet zone); a PNG is at most ``MAX_PNG_SIDE`` pixels a side. Anything else is 400 rc 4
naming the parameter. The handle is written as the proxy takes it (percent-encoded, ``hdl:`` and the other
prefixes stripped) and resolved through the same ``Lookup`` as the proxy, so a cached record costs no query: an
unknown handle is 404 rc 100 (never a code of nothing), a malformed one 400 rc 102, an unreachable database 503.
``/qr/`` claims the first path segment ``qr``: a handle of a prefix named ``qr`` cannot be resolved at
``/qr/...`` (prefixes are numbers in IDIS and Handle.Net).

Which URL: ``<public_url>/<handle>`` when ``public_url`` is set, as it should be on a node whose codes get printed.
Without it, the request's own origin: ``https`` only over a secure channel (TLS, or ``X-Forwarded-Proto: https``
from a ``trusted_proxies`` address: the rule every authenticated endpoint follows), and the ``Host`` header only
when it is a plain host name or address with an optional port (else 400: a path, user or script in a header must
never reach a printed code). ``X-Forwarded-Host`` is not believed from anyone: a shared cache does not key on it, so
honouring it would let one client plant codes pointing elsewhere in the answers other clients get. Such answers
depend on the request, so they are ``Cache-Control: private``; with ``public_url`` they are ``public`` for an hour
(a deleted handle's code lingers at most that long in a cache).
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiMapping

from registry.qr import (
    BORDER,
    ECC_LEVELS,
    FORMATS,
    MAX_BORDER,
    MAX_PNG_SIDE,
    MAX_SCALE,
    SCALE,
    proxy_url,
    qr_code,
    render,
    side,
)
from resolver.config import Settings
from resolver.errors import ProtocolError
from resolver.identifiers import decode_path, parse, strip_scheme
from resolver.lookup import Lookup
from resolver.metrics import InternalCounts
from resolver.numbers import ascii_integer
from resolver.public_url import public_base, request_base
from resolver.responses import ANY_TAIL, answers_errors, is_secure

__all__ = ["QR_PATH", "QRLabels"]

QR_PATH = "/qr/"
MAX_AGE = 3600


def _bounded(query: MultiMapping[str], name: str, default: int, high: int, low: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    value = ascii_integer(raw, max_digits=3)
    if value is None or not low <= value <= high:
        raise ProtocolError(f"{name} must be an integer from {low} to {high}, got {raw[:20]!r}")
    return value


class QRLabels:
    """``GET /qr/{handle}.svg|png``."""

    def __init__(self, lookup: Lookup, settings: Settings) -> None:
        self.lookup = lookup
        self.base = None if settings.public_url is None else public_base(settings.public_url)
        self.max_handle_bytes = settings.max_handle_bytes
        self._counts = InternalCounts()

    def routes(self) -> list[web.RouteDef]:
        return [web.get(QR_PATH + ANY_TAIL, self.get)]

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        name, dot, kind = request.raw_path.split("?", 1)[0][len(QR_PATH) :].rpartition(".")
        if not dot or kind not in FORMATS:
            raise ProtocolError("A QR label is /qr/{handle}.svg or /qr/{handle}.png")
        query = request.query
        ecc = query.get("ecc", "M").upper()
        if ecc not in ECC_LEVELS:
            raise ProtocolError(f"ecc must be one of {', '.join(ECC_LEVELS)}, got {ecc[:20]!r}")
        scale = _bounded(query, "scale", SCALE, MAX_SCALE, 1)
        border = _bounded(query, "border", BORDER, MAX_BORDER, 0)
        handle = parse(strip_scheme(decode_path(name)), max_bytes=self.max_handle_bytes)
        base = self.base or request_base(is_secure(request), request.host)
        if base is None:
            raise ProtocolError(
                f"The Host header {request.host[:80]!r} is not a host name: this node's public_url is not set"
            )
        await self.lookup.resolve(handle, self._counts)  # an unknown handle raises HandleNotFound: 404
        code = qr_code(proxy_url(base, handle.text), ecc)
        if kind == "png" and side(code, scale, border) > MAX_PNG_SIDE:
            raise ProtocolError(
                f"A PNG is at most {MAX_PNG_SIDE} pixels a side; this code at scale {scale} with border {border} "
                f"is {side(code, scale, border)}"
            )
        headers = {
            "Content-Type": FORMATS[kind],
            "Cache-Control": f"{'public' if self.base else 'private'}, max-age={MAX_AGE}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        }
        return web.Response(body=render(code, kind, scale=scale, border=border, title=handle.text), headers=headers)
