"""Turning stored records into cache entries, and cache entries into the answer one request asked for.

The cache entry's body is the answer to the common request (anonymous, unfiltered, stored spelling). Every
other request is answered here from the entry's values, still without a database round trip: another
spelling of the handle (the answer echoes the request, research §9.1), ``type``/``index`` filters,
``publicOnly=false`` for an authenticated reader, ``pretty``.

Where the proxy may send a browser is decided here too, once (``Redirects``), both for the target held in the
cache entry and for the slower paths: only ``http``/``https`` URLs and the schemes of the ``redirect_schemes``
setting (e.g. ``ftp``) are redirect targets or links; a ``javascript:``/``data:`` value is shown as text (issue 8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlsplit

from resolver.cache import CacheEntry
from resolver.compression import compress_answer
from resolver.identifiers import ascii_upper
from resolver.records import (
    DEFAULT_TTL,
    SECRET_TYPES,
    HandleValue,
    ValueFilter,
    encode_record,
    redact_secrets,
    values_from_stored,
)
from resolver.store import StoredRecord

__all__ = ["HTTP_ONLY", "SCRIPT_SCHEMES", "WEB_SCHEMES", "Redirects", "build_entry", "render", "safe_location"]

WEB_SCHEMES = frozenset({"http", "https"})
"""Always redirect targets."""
SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "data", "blob", "file"})
"""Never redirect targets, whatever ``redirect_schemes`` says: they run script or read local files."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
"""RFC 3986 §3.1, anchored at the first character: a value with leading blanks or controls has no scheme."""
_LOCATION_SAFE = ":/?#[]@!$&'()*+,;=%~"


def safe_location(url: str) -> str:
    """``url`` as a header-safe URI: non-ASCII, spaces, quotes, angle brackets and controls percent-encoded, so a
    stored value can never split the ``Location`` header (IRI → URI, as the Handle proxy does)."""
    return quote(url, safe=_LOCATION_SAFE)


class Redirects:
    """Which URL values the proxy redirects to and links: ``http``, ``https`` and the configured extra schemes.

    Handle.Net redirects to whatever the first URL value says (research/handle-rest-api.md §5); a node answering
    QR-code scans must not send a browser to ``javascript:`` or ``data:``, so those values are shown as text.
    """

    __slots__ = ("schemes",)

    def __init__(self, extra_schemes: Iterable[str] = ()) -> None:
        extra = frozenset(scheme.lower() for scheme in extra_schemes)
        for scheme in sorted(extra):
            if not _SCHEME.fullmatch(scheme + ":"):
                raise ValueError(f"redirects: {scheme!r} is not a URL scheme")
            if scheme in SCRIPT_SCHEMES:
                raise ValueError(f"redirects: {scheme}: URLs are never redirect targets")
        self.schemes = WEB_SCHEMES | extra

    def allows(self, url: str) -> bool:
        """Whether ``url`` may be a redirect target or a link: it starts with an allowed scheme."""
        match = _SCHEME.match(url)
        return match is not None and match.group(1).lower() in self.schemes

    def target(self, values: Sequence[HandleValue]) -> HandleValue | None:
        """The value to redirect to: the first allowed ``URL`` value, else the first allowed ``URL.*`` subtype
        (research §5, less the values that are not allowed targets)."""
        subtype = None
        for value in values:
            if value.format != "string":
                continue
            kind = ascii_upper(value.type)
            if kind == "URL" or (subtype is None and kind.startswith("URL.")):
                if not self.allows(value.text()):
                    continue
                if kind == "URL":
                    return value
                subtype = value
        return subtype

    def location(self, url: str, urlappend: str = "") -> str:
        """The ``Location`` for target ``url`` with the proxy's ``urlappend`` parameter appended, as Handle.Net
        does, as long as the result stays on the target's scheme and host; otherwise ``urlappend`` is ignored.

        Appending ``//evil.example/`` or ``@evil.example`` to ``https://a.example`` would move the browser to
        another host (an open redirect). ``urlsplit``'s authority ends at ``/``, ``?`` or ``#``; a browser's
        ends there or earlier (at ``\\``), so an unchanged ``urlsplit`` authority means an unchanged host.
        """
        if urlappend:
            joined = url + urlappend
            if _origin(joined) == _origin(url):
                url = joined
        return safe_location(url)


HTTP_ONLY = Redirects()
"""The default: only ``http`` and ``https`` URLs are redirect targets."""


def _origin(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the authority
        return ("", url)
    return parts.scheme.lower(), parts.netloc


def build_entry(
    record: StoredRecord, values: Sequence[HandleValue] | None = None, *, redirects: Redirects = HTTP_ONLY
) -> CacheEntry:
    """A cache entry for a stored record: pre-encoded anonymous answer, proxy target, and hidden values if any.

    ``values`` are the record's values already decoded (a writer has them), saving a decode of ``record.values``.
    """
    if values is None:
        values = values_from_stored(record.values)
    public = _public(values)
    target = redirects.target(public)
    # One string for the spelling and the cache's key when they are equal (upper case, as most product identifiers
    # are): the entry keeps the spelling beside the map's key, and sharing saves ~80 B per cached handle.
    spelling = record.key if record.handle == record.key else record.handle
    return CacheEntry(
        spelling,
        record.version,
        _exact(compress_answer(encode_record(spelling, public))),
        location=safe_location(target.value) if target is not None else None,
        min_ttl=_seconds(target.ttl) if target is not None else DEFAULT_TTL,
        stored=None if len(public) == len(values) else record.values.encode(),
    )


def _exact(body: bytes) -> bytes:
    """``body`` in a bytes object of its own size.

    ``orjson.dumps`` hands back its whole working buffer (at least 4 KiB, 64 KiB for an 8 KB answer) with only
    the length shortened, so a cached 335 B answer held 4 KiB (benchmarks/cache_size.py, 2026-12-01). The stored
    JSON is kept as UTF-8 bytes for the same reason: a ``str`` that ``orjson.loads`` has read keeps a UTF-8 copy
    of itself besides its own (for non-ASCII text, up to three times its length).
    """
    return bytes(memoryview(body))


def _seconds(ttl: int | str) -> int:
    """A target's TTL as whole seconds; the usual one as the shared ``DEFAULT_TTL`` object, not a 32-byte int of its
    own per cached entry (ints above 256 are not shared by Python)."""
    if not isinstance(ttl, int) or ttl < 0 or ttl == DEFAULT_TTL:
        return DEFAULT_TTL
    return ttl


def render(
    entry: CacheEntry,
    requested: str,
    value_filter: ValueFilter,
    *,
    public_only: bool = True,
    pretty: bool = False,
) -> bytes:
    """The answer for ``requested`` (echoed as given) with filters applied; the cached body when it is that."""
    if requested == entry.handle and not value_filter and public_only and not pretty:
        return entry.body  # the cached answer, decompressed if need be
    return encode_record(requested, select(entry, value_filter, public_only=public_only), pretty=pretty)


def select(entry: CacheEntry, value_filter: ValueFilter, *, public_only: bool = True) -> list[HandleValue]:
    """The entry's values a reader may see, narrowed by the filter, in index order; secret keys never show."""
    values: Sequence[HandleValue] = entry.values
    values = _public(values) if public_only else redact_secrets(values)
    return value_filter.apply(values)


def _public(values: Iterable[HandleValue]) -> list[HandleValue]:
    """The values an anonymous reader sees: the publicly readable ones, less any secret key.

    The write paths store a secret key private and hashed, but a record written by SQL or by an import from before
    issue 8's review may hold one readable by all, even in the clear: it stays out of every public answer.
    """
    return [v for v in values if v.public_read and v.type_key() not in SECRET_TYPES]
