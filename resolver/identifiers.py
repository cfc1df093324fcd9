"""Handle syntax: parsing a requested identifier, validating it, its case-insensitive key and its prefix chain.

A handle is ``PREFIX/SUFFIX`` (RFC 3650 §2). Handle.Net compares handles ASCII-case-insensitively by default
(``case_sensitive = no``; research/handle-rest-api.md §9.2): its storage key is the handle with a–z upper-cased
and nothing else folded. idnode keeps the spelling a client registered, and keys every look-up by that ASCII
upper-casing, computed here and never with PostgreSQL's locale-aware ``upper()``.

Prefix handles ``0.NA/<prefix>`` are governed by the prefix they name, so a node that homes ``88.118.8`` also
answers for ``0.NA/88.118.8`` (Handle.Net itself sends those to the global registry, transcript B25).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from resolver.errors import InvalidHandle

__all__ = [
    "DEFAULT_MAX_HANDLE_BYTES",
    "HARD_MAX_HANDLE_BYTES",
    "Handle",
    "ascii_upper",
    "decode_path",
    "governing_prefix",
    "handle_key",
    "parse",
    "prefix_chain",
    "strip_scheme",
    "validate_text",
]

DEFAULT_MAX_HANDLE_BYTES = 255
"""IDIS identifiers are at most 255 bytes (research/idis-secondary-node.md)."""

HARD_MAX_HANDLE_BYTES = 2048
"""Handle.Net's ``Common.MAX_HANDLE_LENGTH``; a configured limit may not exceed it."""

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEMES = ("hdl:", "doi:", "info:hdl/", "info:doi/")
_PREFIX_HANDLE_PREFIX = "0.NA/"


def ascii_upper(text: str) -> str:
    """Upper-case a–z only, as Handle.Net's ``Util.upperCase`` does; ``str.upper`` would fold ``ß`` to ``SS``."""
    if text.isascii():
        return text.upper()
    return text.translate(_ASCII_UPPER)


handle_key = ascii_upper
"""The case-insensitive identity of a handle: its ASCII upper-casing."""


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0


def validate_text(handle: str, *, max_bytes: int = DEFAULT_MAX_HANDLE_BYTES) -> str:
    """Return ``handle`` if it is a syntactically acceptable identifier, else raise :class:`InvalidHandle`.

    Control characters are refused because a handle is echoed into HTTP headers (``Location``), HTML pages and
    logs; Handle.Net accepts them, but no IDIS identifier contains one.
    """
    if not handle:
        raise InvalidHandle("Empty handle invalid")
    try:
        size = len(handle) if handle.isascii() else len(handle.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidHandle("Invalid UTF8 encoding") from None
    if size > max_bytes:
        raise InvalidHandle(f"Handle is {size} bytes long; the limit is {max_bytes}", handle=handle)
    if not handle.isprintable() and any(_is_control(ch) for ch in handle):
        raise InvalidHandle("Handle contains a control character", handle=handle)
    return handle


def decode_path(raw: str) -> str:
    """Percent-decode a raw URL path segment once, as UTF-8, keeping ``+`` (Handle.Net's ``decodeURLIgnorePlus``).

    Unlike ``urllib.parse.unquote`` this refuses what it cannot decode instead of guessing: a malformed escape
    or invalid UTF-8 answers rc 102, where Handle.Net would answer 404 for a handle nobody can have registered.
    """
    if "%" not in raw:
        return raw
    pos = 0
    while True:
        pos = raw.find("%", pos)
        if pos < 0:
            break
        escape = raw[pos + 1 : pos + 3]
        if len(escape) != 2 or any(c not in "0123456789abcdefABCDEF" for c in escape):
            raise InvalidHandle(f"Invalid percent-escape {raw[pos : pos + 3]!r} in handle")
        pos += 3
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHandle("Invalid UTF8 encoding") from None


def strip_scheme(text: str) -> str:
    """Remove a leading ``hdl:``, ``doi:``, ``info:hdl/``, ``info:doi/`` or ``urn:hdl:`` as the Handle proxy does.

    In ``urn:hdl:88.1:X`` the first colon after the scheme stands for the slash (research §5).
    """
    lowered = text[:10].lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            return text[len(scheme) :]
    if lowered.startswith("urn:hdl:"):
        rest = text[8:]
        if "/" not in rest and ":" in rest:
            rest = rest.replace(":", "/", 1)
        return rest
    return text


@dataclass(frozen=True, slots=True)
class Handle:
    """A parsed handle: the spelling as requested, its key, and the prefix it belongs to."""

    text: str
    key: str
    prefix: str
    suffix: str

    @property
    def prefix_key(self) -> str:
        return ascii_upper(self.prefix)

    @property
    def name(self) -> str:
        """The full handle looked up: ``text``, or ``0.NA/<text>`` for a bare prefix."""
        return f"{self.prefix}/{self.suffix}"


def parse(text: str, *, max_bytes: int = DEFAULT_MAX_HANDLE_BYTES, bare_is_prefix: bool = True) -> Handle:
    """Parse ``PREFIX/SUFFIX``; with ``bare_is_prefix`` a text without ``/`` means the prefix handle ``0.NA/<text>``.

    The returned ``text`` is what the client asked for (echoed in answers); ``key``, ``prefix`` and ``suffix``
    describe the handle actually looked up.
    """
    validate_text(text, max_bytes=max_bytes)
    slash = text.find("/")
    if slash < 0:
        if not bare_is_prefix:
            raise InvalidHandle("Handle has no '/' between prefix and suffix", handle=text)
        name = _PREFIX_HANDLE_PREFIX + text
        return Handle(text, ascii_upper(name), "0.NA", text)
    prefix = text[:slash]
    if not prefix:
        raise InvalidHandle("Handle has an empty prefix", handle=text)
    return Handle(text, ascii_upper(text), prefix, text[slash + 1 :])


def governing_prefix(handle: Handle) -> str:
    """The prefix whose home answers for ``handle``: its own prefix, or for ``0.NA/P`` the prefix ``P``."""
    if handle.prefix.upper() == "0.NA" and handle.suffix:
        return handle.suffix
    return handle.prefix


def prefix_chain(prefix: str) -> list[str]:
    """The prefix and its ancestors, most specific first: ``88.118.8`` → ``[88.118.8, 88.118, 88]``.

    Used to find the longest homed (or delegated) prefix that answers for a handle.
    """
    parts = prefix.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
