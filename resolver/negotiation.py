"""Reading ``Accept`` and ``Accept-Language`` (RFC 9110 §12.5.1, §12.5.4) for the proxy's product records.

The proxy offers four variants of a record with typed links, in this order of preference on ties: the HTML
answer (the redirect or the page; also what ``*/*`` and every unknown type get, so a browser's or curl's Accept
always lands on it), the RFC 9264 linkset (``application/linkset+json``), the Handle.Net record
(``application/json``) and JSON-LD (``application/ld+json``, any ``profile``). Each offer's quality is that of the
most specific range matching it (``type/subtype`` over ``type/*`` over ``*/*``); the highest wins. Parameters
other than ``q`` are ignored; a malformed ``q`` drops its range, as RFC 9110 lets a recipient do.

A media type (or ``type/*`` range) none of the variants is (``application/pdf``, ``image/*``) that ``Accept``
prefers over all of them makes the :func:`preference` ``OTHER`` (the :func:`variant` is still HTML): the proxy
then looks for a typed link of that ``type`` (``media_ranges`` gives the ranges in order of preference) and
answers 303 to it, else as for HTML (research §2 step 3).

Browsers send a handful of distinct header strings, so the results are memoised per string (``Negotiator``, one
per proxy, at most ``MEMO_SIZE`` strings each, forgotten all at once when full): the hot path pays one dict
look-up per header.
"""

from __future__ import annotations

__all__ = [
    "HTML",
    "JSON",
    "JSON_LD",
    "LINKSET",
    "MEMO_SIZE",
    "OTHER",
    "Negotiator",
    "languages",
    "media_ranges",
    "preference",
    "variant",
]

HTML, LINKSET, JSON, JSON_LD, OTHER = "html", "linkset", "json", "json-ld", "other"
MEMO_SIZE = 512
MAX_RANGES = 64
_OFFERS = (
    ("text", "html", HTML),
    ("application", "xhtml+xml", HTML),
    ("application", "linkset+json", LINKSET),
    ("application", "json", JSON),
    ("application", "ld+json", JSON_LD),
)
_ORDER = (HTML, LINKSET, JSON, JSON_LD)


def _quality(parameters: list[str]) -> float | None:
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(raw.strip())
            except ValueError:
                return None
            return q if 0 <= q <= 1 else None
    return 1.0


def variant(accept: str) -> str:
    """The variant ``accept`` prefers (see the module docstring); HTML when nothing offered is acceptable."""
    found = preference(accept)
    return HTML if found == OTHER else found


def preference(accept: str) -> str:
    """Like :func:`variant`, except ``OTHER`` for a media type no variant is, preferred over all of them."""
    best: dict[int, tuple[int, float]] = {}  # offer → (specificity, q) of its most specific range
    other = 0.0  # the best q of a type (or type/*) that matches no offer
    for item in accept.split(",")[:MAX_RANGES]:
        media, *parameters = item.split(";")
        kind, _, subtype = media.strip().lower().partition("/")
        q = _quality(parameters)
        if q is None or not kind or not subtype:
            continue
        if kind != "*" and not any(kind == k and subtype in (t, "*") for k, t, _ in _OFFERS):
            other = max(other, q)
        for offer, (offer_kind, offer_subtype, _) in enumerate(_OFFERS):
            if kind == "*" and subtype == "*":
                specificity = 0
            elif kind != offer_kind:
                continue
            elif subtype == "*":
                specificity = 1
            elif subtype == offer_subtype:
                specificity = 2
            else:
                continue
            if offer not in best or specificity > best[offer][0]:
                best[offer] = (specificity, q)
    scores = dict.fromkeys(_ORDER, 0.0)
    for offer, (_, q) in best.items():
        name = _OFFERS[offer][2]
        scores[name] = max(scores[name], q)
    top = max(scores.values())
    if other > top:
        return OTHER
    if top <= 0:
        return HTML
    return next(name for name in _ORDER if scores[name] == top)


def media_ranges(accept: str) -> list[str]:
    """The ``type/subtype`` and ``type/*`` ranges of ``accept``, lower-cased, most wanted first, without ``*/*``
    and ``q=0`` ones (slow path: read only when the variant is ``OTHER``)."""
    ranked = []
    for position, item in enumerate(accept.split(",")[:MAX_RANGES]):
        media, *parameters = item.split(";")
        media = media.strip().lower()
        q = _quality(parameters)
        if q and "/" in media and media != "*/*":
            ranked.append((-q, position, media))
    return [media for _, _, media in sorted(ranked)]


def languages(header: str) -> tuple[str, ...]:
    """Language ranges of an ``Accept-Language`` header, lower-cased, most wanted first, without ``q=0`` ones."""
    ranked = []
    for position, item in enumerate(header.split(",")[:MAX_RANGES]):
        tag, *parameters = item.split(";")
        tag = tag.strip().lower()
        q = _quality(parameters)
        if tag and q:
            ranked.append((-q, position, tag))
    return tuple(tag for _, _, tag in sorted(ranked))


class Negotiator:
    """:func:`preference`, :func:`variant` and :func:`languages`, memoised per header string (module docstring)."""

    __slots__ = ("_languages", "_variants")

    def __init__(self) -> None:
        self._variants: dict[str, str] = {}
        self._languages: dict[str, tuple[str, ...]] = {}

    def variant(self, accept: str) -> str:
        found = self.preference(accept)
        return HTML if found == OTHER else found

    def preference(self, accept: str) -> str:
        """:func:`preference`, memoised: what the proxy's hot path asks (one dict look-up)."""
        found = self._variants.get(accept)
        if found is None:
            if len(self._variants) >= MEMO_SIZE:
                self._variants.clear()
            found = self._variants[accept] = preference(accept)
        return found

    def languages(self, header: str) -> tuple[str, ...]:
        found = self._languages.get(header)
        if found is None:
            if len(self._languages) >= MEMO_SIZE:
                self._languages.clear()
            found = self._languages[header] = languages(header)
        return found
