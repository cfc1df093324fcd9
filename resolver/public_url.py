"""The node's public base URL (``public_url``): what a printed QR code (``registry/qr.py``) points at.

Set, it is ``scheme://host[:port][/path]``: the scheme and host lower case, the default port and a trailing ``/``
dropped, so that the printed URL is as short as it can be. Unset, the request's own origin stands in for it, built
only from what can be trusted (:func:`request_base`).
"""

from __future__ import annotations

import re

from resolver.sites import web_url

__all__ = ["public_base", "request_base"]

_HOST = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def public_base(text: str) -> str:
    """``public_url`` as a base for proxy URLs: ``scheme://host[:port][/path]``, the scheme and host in lower case,
    the default port and a trailing ``/`` dropped; ValueError for anything that is not such an http(s) URL."""
    parts, scheme, port = web_url(text)
    if not _HOST.fullmatch(parts.netloc):
        raise ValueError(f"{text!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r} must be scheme://host[:port][/path] (no query, fragment or user)")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def request_base(secure: bool, host: str) -> str | None:
    """The base of a request's own origin: ``https`` when it came over a secure channel (TLS, or a trusted proxy's
    ``X-Forwarded-Proto``), and its ``Host`` header when that is a host name or address with an optional port;
    None otherwise (a header that would put anything else into a printed URL)."""
    if not _HOST.fullmatch(host):
        return None
    try:
        return public_base(f"{'https' if secure else 'http'}://{host}")
    except ValueError:
        return None
