"""The unified social credit code (统一社会信用代码) an enterprise is onboarded with, checked as GB 32100-2015 says.

Eighteen characters from the 31-character set ``0-9 A-H J-N P-R T-U W-Y`` (no I, O, Z, S, V):

- 1: the registration authority (1 institutions, 2 foreign affairs, 3 justice, 4 culture, 5 civil affairs,
  6 tourism, 7 religion, 8 trade unions, 9 market regulation, A military, N agriculture, Y other);
- 2: the kind of organization under that authority (a digit 1-9);
- 3-8: the registering office's administrative division code (GB/T 2260, six digits);
- 9-17: the organization code (GB 11714: eight characters and its own check character, ``0-9`` or ``X``,
  weights 3 7 9 10 5 8 4 2, check ``11 - sum mod 11`` with 10 → X and 11 → 0);
- 18: the check character: weights ``3^i mod 31`` over positions 1-17, check ``31 - sum mod 31`` (31 → 0),
  written in the same character set.

A real node refuses a code that fails these checks at onboarding (research/idis-secondary-node.md §2).
"""

from __future__ import annotations

from resolver.errors import ProtocolError

__all__ = ["CHARSET", "check_character", "validate_credit_code"]

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {char: n for n, char in enumerate(CHARSET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_AUTHORITIES = frozenset("123456789ANY")
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def check_character(first17: str) -> str:
    """The 18th character of a code whose first 17 characters are ``first17`` (all from ``CHARSET``)."""
    total = sum(_VALUE[char] * weight for char, weight in zip(first17, _WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def _organization_check(body: str) -> str:
    """GB 11714's check character of an eight-character organization code body (letters count 10-35)."""
    total = sum(int(char, 36) * weight for char, weight in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else str(check % 11)


def _problem(code: str) -> str | None:
    if len(code) != 18:
        return f"{len(code)} characters, 18 expected"
    wrong = sorted({char for char in code if char not in _VALUE})
    if wrong:
        return f"{''.join(wrong)!r} outside 0-9 and A-Y less I, O, S, V, Z"
    if code[0] not in _AUTHORITIES:
        return f"registration authority {code[0]!r} is none of 1-9, A, N, Y"
    if not "1" <= code[1] <= "9":
        return f"organization kind {code[1]!r} is not a digit 1-9"
    if not code[2:8].isdigit():
        return f"division code {code[2:8]!r} is not six digits"
    if code[16] != _organization_check(code[8:16]):
        return f"organization code {code[8:17]} fails its check character (GB 11714)"
    if code[17] != check_character(code[:17]):
        return "wrong check character"
    return None


def validate_credit_code(code: str) -> str:
    """``code`` upper-cased when it is a valid unified social credit code; 400 rc 4 naming what is wrong."""
    upper = code.strip().upper()
    problem = _problem(upper)
    if problem is not None:
        raise ProtocolError(f"creditCode {code[:32]!r} is not a unified social credit code (GB 32100): {problem}")
    return upper
