"""Class fallback (issue 13 item 4): an unregistered serial resolves, on the proxy only, to its class record.

A manufacturer registers one class record (``88.118.8/PUMP-CP40``, an ordinary handle with typed links and
template attributes) holding an ``IDNODE_CLASS_PATTERN`` value, e.g. ``PUMP-CP40-{serial}``. A scan of the
unregistered ``88.118.8/PUMP-CP40-000123`` is then answered by the proxy from the class's record, marked as
class-level and naming the serial ``000123``, as GS1's qualifier walk-up answers a serialised GTIN from the GTIN
(research/product-resolvers.md §1, "qualifiers / walk-up"). The Handle API (``/api/handles``, ``/api/resolve``)
never falls back: the serial has no record, and it keeps answering 404 rc 100, so no machine client mistakes the
class's values for the serial's.

Pattern syntax (a value of type ``IDNODE_CLASS_PATTERN``, text)::

    [PREFIX "/"] HEAD "{serial" [":" CHARSET] [":" MIN ["-" MAX]] "}" TAIL

- ``HEAD`` (not empty) and ``TAIL`` are literal suffix text, matched ASCII-case-insensitively as handles are; no
  ``{``/``}`` in them, so there is exactly one placeholder.
- ``CHARSET``: ``any`` (the default: any characters but ``/``), ``digits`` (ASCII 0-9) or ``alnum`` (ASCII letters
  and digits). Length: ``MIN`` to ``MAX`` characters (``MIN`` alone: exactly that many); by default 1 to
  ``MAX_SERIAL``.
- A pattern is a suffix pattern under the class record's own prefix. It may be written with that prefix
  (``88.118.8/PUMP-CP40-{serial}``: a ``/`` before the placeholder starts a handle pattern); another prefix is
  refused (400 rc 202), as is bad syntax. Examples: ``PUMP-CP40-{serial:digits:6}``, ``LOT{serial:alnum:4-12}.A``.

Storage and index. The value stays Handle-native (any Handle client reads and writes it). The triggers of
``schema/0014_class_patterns.sql`` keep the ``class_patterns`` table equal to what the records say, whatever wrote
them, and refuse a pattern whose ``(prefix, HEAD, TAIL)`` another class already holds (409 rc 201 on every write
path: ``errors.refusal_of``). Every node keeps all patterns in memory (``ClassIndex``, loaded at start and reloaded
on the ``classes`` notification, ``changes.py``); a 404 of the proxy costs one dict look-up per distinct HEAD length
of its prefix, never a query. The longest HEAD wins, then the longest TAIL: ``PUMP-CP40-{serial}`` beats
``PUMP-{serial}`` for ``PUMP-CP40-1``.

What a fallback answer is and how it is marked: ``resolver/proxy.py`` (its module docstring).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from resolver.identifiers import ascii_upper

__all__ = [
    "CLASS_PATTERN_INDEX",
    "CLASS_PATTERN_TYPE",
    "MAX_SERIAL",
    "ClassIndex",
    "ClassPattern",
    "ClassRow",
    "Membership",
    "PatternError",
    "parse_pattern",
]

CLASS_PATTERN_TYPE = "IDNODE_CLASS_PATTERN"
CLASS_PATTERN_INDEX = 1002
"""Where the ``classPattern`` sugar of the write APIs puts its value (1000 holds the links, 1001 the template)."""
MAX_SERIAL = 128
_PLACEHOLDER = re.compile(r"\{serial(?::(any|digits|alnum))?(?::(\d{1,3})(?:-(\d{1,3}))?)?\}")
_CHARSETS = {
    "any": re.compile(r"[^/]+"),
    "digits": re.compile(r"[0-9]+"),
    "alnum": re.compile(r"[0-9A-Za-z]+"),
}


class PatternError(ValueError):
    """A class pattern the proxy could not act on; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ClassPattern:
    """One parsed pattern: literal ``head`` and ``tail`` (ASCII upper case) around the serial's placeholder."""

    text: str
    head: str
    tail: str
    charset: str = "any"
    min_length: int = 1
    max_length: int = MAX_SERIAL

    def serial(self, suffix: str) -> str | None:
        """The serial in handle suffix ``suffix`` (as spelled) when the suffix matches the pattern, else None."""
        end = len(suffix) - len(self.tail)
        serial = suffix[len(self.head) : end]
        if not self.min_length <= len(serial) <= self.max_length:
            return None
        if ascii_upper(suffix[: len(self.head)]) != self.head or ascii_upper(suffix[end:]) != self.tail:
            return None
        return serial if _CHARSETS[self.charset].fullmatch(serial) else None


def parse_pattern(text: str, prefix: str) -> ClassPattern:
    """The pattern of an ``IDNODE_CLASS_PATTERN`` value of a record under ``prefix`` (module docstring's syntax)."""
    if ascii_upper(prefix) == "0.NA":
        raise PatternError("prefix handles (0.NA/...) hold no class patterns")
    placeholders = list(_PLACEHOLDER.finditer(text))
    if text.count("{") != 1 or text.count("}") != 1 or len(placeholders) != 1:
        raise PatternError(
            f"class pattern {text[:80]!r} must hold exactly one {{serial}} placeholder "
            "({serial}, {serial:digits}, {serial:alnum:6}, {serial:any:4-20})"
        )
    found = placeholders[0]
    head, tail = text[: found.start()], text[found.end() :]
    if "/" in head:
        named, _, head = head.partition("/")
        if ascii_upper(named) != ascii_upper(prefix):
            raise PatternError(
                f"class pattern {text[:80]!r} names prefix {named[:40]!r}; a class record under "
                f"{prefix} may only hold patterns of its own prefix"
            )
    if not head:
        raise PatternError(f"class pattern {text[:80]!r} needs literal text before {{serial}}")
    if "/" in tail:
        raise PatternError(f"class pattern {text[:80]!r}: no '/' after the placeholder")
    low = int(found.group(2) or 1)
    high = int(found.group(3) or (found.group(2) or MAX_SERIAL))
    if not 1 <= low <= high <= MAX_SERIAL:
        raise PatternError(f"class pattern {text[:80]!r}: serial length must be within 1-{MAX_SERIAL}, MIN ≤ MAX")
    return ClassPattern(text, ascii_upper(head), ascii_upper(tail), found.group(1) or "any", low, high)


@dataclass(frozen=True, slots=True)
class ClassRow:
    """A row of ``class_patterns``: the class record and one of its patterns (suffix form, prefix dropped)."""

    class_key: str
    class_handle: str
    prefix_key: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Membership:
    """What a fallback answer needs: the class record's handle (as spelled) and the serial (as requested)."""

    class_handle: str
    serial: str


class _PrefixPatterns:
    """The patterns of one prefix: by HEAD, with the distinct HEAD lengths longest first."""

    __slots__ = ("by_head", "lengths")

    def __init__(self) -> None:
        self.by_head: dict[str, list[tuple[ClassPattern, str]]] = {}
        self.lengths: tuple[int, ...] = ()


class ClassIndex:
    """Every class pattern this node's records hold, by prefix key (see the module docstring)."""

    __slots__ = ("_prefixes", "size")

    def __init__(self, rows: Iterable[ClassRow] = ()) -> None:
        self._prefixes: dict[str, _PrefixPatterns] = {}
        self.size = 0
        self.replace(rows)

    def replace(self, rows: Iterable[ClassRow]) -> None:
        """Start over from ``rows``; a row whose pattern does not parse (written by SQL) is left out."""
        prefixes: dict[str, _PrefixPatterns] = {}
        size = 0
        for row in rows:
            try:
                pattern = parse_pattern(row.pattern, row.prefix_key)
            except PatternError:
                continue
            patterns = prefixes.setdefault(row.prefix_key, _PrefixPatterns())
            patterns.by_head.setdefault(pattern.head, []).append((pattern, row.class_handle))
            size += 1
        for patterns in prefixes.values():
            for found in patterns.by_head.values():
                found.sort(key=lambda item: -len(item[0].tail))
            patterns.lengths = tuple(sorted({len(head) for head in patterns.by_head}, reverse=True))
        self._prefixes, self.size = prefixes, size

    def find(self, key: str, suffix: str) -> Membership | None:
        """The class of the handle with key ``key`` and suffix ``suffix`` (as spelled), or None."""
        slash = key.find("/")
        patterns = self._prefixes.get(key[:slash]) if slash > 0 else None
        if patterns is None:
            return None
        wanted = key[slash + 1 :]
        for length in patterns.lengths:
            if length >= len(wanted):
                continue
            for pattern, class_handle in patterns.by_head.get(wanted[:length], ()):
                serial = pattern.serial(suffix)
                if serial is not None:
                    return Membership(class_handle, serial)
        return None
