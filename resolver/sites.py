"""Handle site records (``HS_SITE``, ``HS_SITE.PREFIX``): this node's own, and the base URLs a site offers.

A site value is what Handle.Net serializes with ``"format":"site"`` (research/handle9-transcripts.md F6): version,
protocolVersion, serialNumber, primarySite, multiPrimary, attributes, and servers, each with an address, a public
key and interfaces (``query``/``admin`` flags, a ``protocol`` and a ``port``). idnode reaches a site through the
REST API on its HTTP interfaces: ``"protocol":"HTTP"`` means ``http://address:port``, ``"HTTPS"`` means
``https://``. A Handle.Net 9 server serves that API on its HTTP port (research/handle-resolution-model.md §3), so
a site run by Handle.Net software is reached the same way. TCP and UDP interfaces (the binary protocol) are
ignored: idnode does not speak it.

idnode's own site is built from ``advertise_url`` (scheme, host and port; no path, since an interface has none).
It has no public key (idnode signs nothing on the native protocol), so the key is an empty ``base64`` value.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import SplitResult, urlsplit

__all__ = ["SITE_PREFIX_TYPE", "SITE_TYPE", "base_url", "own_site", "site_urls", "web_url"]

SITE_TYPE = "HS_SITE"
SITE_PREFIX_TYPE = "HS_SITE.PREFIX"
_HTTP_PROTOCOLS = {"HTTP": "http", "HTTPS": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_url(text: str) -> tuple[SplitResult, str, int | None]:
    """``text`` split as an http:// or https:// URL with a host: its parts, its scheme (lower case) and its port
    (None when not given); ValueError otherwise."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL with a host")
    return parts, scheme, port


def base_url(text: str) -> str:
    """``scheme://host:port`` of an upstream or advertised URL; raises ValueError for anything else.

    A path other than ``/``, a query, a fragment or user info is refused rather than dropped: a site's
    interface has only an address and a port, so a node behind a path prefix cannot be described by one.
    """
    parts, scheme, port = web_url(text)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r} must be scheme://host[:port] only (a site interface has no path)")
    return f"{scheme}://{_url_host(parts.hostname)}:{port or _DEFAULT_PORTS[scheme]}"


def own_site(advertise_url: str, *, description: str = "idnode") -> dict[str, Any]:
    """The HS_SITE value describing this node, reachable at ``advertise_url`` (a :func:`base_url`)."""
    parts = urlsplit(advertise_url)
    return {
        "version": 1,
        "protocolVersion": "2.10",
        "serialNumber": 1,
        "primarySite": True,
        "multiPrimary": False,
        "attributes": [{"name": "desc", "value": description}],
        "servers": [
            {
                "serverId": 1,
                "address": parts.hostname,
                "publicKey": {"format": "base64", "value": ""},
                "interfaces": [
                    {"query": True, "admin": True, "protocol": parts.scheme.upper(), "port": parts.port},
                ],
            }
        ],
    }


def site_urls(site: Any) -> tuple[str, ...]:
    """Base URLs of the query interfaces a site value offers over HTTP(S), in server order; malformed parts of
    a site (a value written by anyone) are skipped, never raised."""
    if not isinstance(site, dict) or not isinstance(site.get("servers"), list):
        return ()
    urls: list[str] = []
    for server in site["servers"]:
        if not isinstance(server, dict) or not isinstance(server.get("address"), str) or not server["address"]:
            continue
        for interface in server.get("interfaces") or ():
            if not isinstance(interface, dict) or interface.get("query") is False:
                continue
            scheme = _HTTP_PROTOCOLS.get(str(interface.get("protocol", "")).upper())
            port = interface.get("port")
            if scheme is None or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                continue
            url = f"{scheme}://{_url_host(server['address'])}:{port}"
            if url not in urls:
                urls.append(url)
    return tuple(urls)


def _url_host(address: str) -> str:
    """An address as a URL's host: IPv6 literals in brackets."""
    address = address.strip("[]")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a host name
    if ip.version == 6 and ip.ipv4_mapped is not None:  # Handle.Net keeps IPv4 addresses in this form
        return str(ip.ipv4_mapped)
    return f"[{ip}]" if ip.version == 6 else str(ip)
