"""Turning stored records into cache entries, and cache entries into the answer one request asked for.

The cache entry's body is the answer to the common request (anonymous, unfiltered, stored spelling). Every
other request is answered here from the entry's values, still without a database round trip: another
spelling of the handle (the answer echoes the request, research §9.1), ``type``/``index`` filters,
``publicOnly=false`` for an authenticated reader, ``pretty``.
"""

from __future__ import annotations

from collections.abc import Sequence

from resolver.cache import CacheEntry
from resolver.identifiers import ascii_upper
from resolver.pages import safe_location
from resolver.records import (
    DEFAULT_TTL,
    HandleValue,
    ValueFilter,
    encode_record,
    redact_secrets,
    values_from_stored,
)
from resolver.store import StoredRecord

__all__ = ["build_entry", "redirect_target", "render"]


def build_entry(record: StoredRecord, values: Sequence[HandleValue] | None = None) -> CacheEntry:
    """A cache entry for a stored record: pre-encoded anonymous answer, proxy target, and hidden values if any.

    ``values`` are the record's values already decoded (a writer has them), saving a decode of ``record.values``.
    """
    if values is None:
        values = values_from_stored(record.values)
    public = [v for v in values if v.public_read]
    target = redirect_target(public)
    return CacheEntry(
        record.handle,
        record.version,
        encode_record(record.handle, public),
        location=safe_location(target.value) if target is not None else None,
        min_ttl=_seconds(target.ttl) if target is not None else DEFAULT_TTL,
        stored=None if len(public) == len(values) else record.values,
    )


def redirect_target(values: Sequence[HandleValue]) -> HandleValue | None:
    """The value the proxy redirects to: the first ``URL`` value, else the first ``URL.*`` subtype (research §5)."""
    subtype = None
    for value in values:
        if value.format != "string":
            continue
        kind = ascii_upper(value.type)
        if kind == "URL":
            return value
        if subtype is None and kind.startswith("URL."):
            subtype = value
    return subtype


def _seconds(ttl: int | str) -> int:
    return ttl if isinstance(ttl, int) and ttl >= 0 else DEFAULT_TTL


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
        return entry.body
    return encode_record(requested, select(entry, value_filter, public_only=public_only), pretty=pretty)


def select(entry: CacheEntry, value_filter: ValueFilter, *, public_only: bool = True) -> list[HandleValue]:
    """The entry's values a reader may see, narrowed by the filter, in index order; secret keys never show."""
    values: Sequence[HandleValue] = entry.values
    values = [v for v in values if v.public_read] if public_only else redact_secrets(values)
    return value_filter.apply(values)
