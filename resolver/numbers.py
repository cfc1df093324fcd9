"""Integers given as text (query parameters, value indexes, TTLs): one reading for every parser of them.

Only an optional ``-`` and ASCII digits count: ``str.isdigit`` admits ``²``, which ``int`` refuses, and ``int``
also takes ``+``, ``_`` and other scripts' digits. The number of digits is bounded by each caller, so that a
value of thousands of digits is refused at once instead of parsed (Python parses 4,300 before it refuses) and
any range check after it is cheap. Callers keep their own error, message and range.
"""

from __future__ import annotations

__all__ = ["ascii_integer"]


def ascii_integer(text: str, *, max_digits: int) -> int | None:
    """``text`` as an integer when it is an optional ``-`` and 1 to ``max_digits`` ASCII digits, else None."""
    digits = text[1:] if text.startswith("-") else text
    if 0 < len(digits) <= max_digits and digits.isascii() and digits.isdigit():
        return int(text)
    return None
