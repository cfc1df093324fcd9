"""The industry a data template is for, as SNMS classifies it: GB/T 4754-2017 (国民经济行业分类) codes, four levels.

- ``industryCategory`` (门类): one letter ``A``-``T``;
- ``industrySpecific`` (大类): two digits, within its category's range (``C`` manufacturing is ``13``-``43``);
- ``industryTrade`` (中类): three digits extending the division (``34`` → ``344``);
- ``industrySubclass`` (小类): four digits extending the group (``344`` → ``3441``, pumps).

Each level is optional (idnode's own templates have none), but a level needs the one above it: a group without
its division names nothing. The ranges are the 2017 edition's (R culture 86-90, S public administration 91-96,
T international organisations 97); a code of the 2011 edition for those three sections is refused.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEVELS", "industry_problems"]

LEVELS = ("industryCategory", "industrySpecific", "industryTrade", "industrySubclass")
_DIVISIONS = {
    "A": (1, 5),
    "B": (6, 12),
    "C": (13, 43),
    "D": (44, 46),
    "E": (47, 50),
    "F": (51, 52),
    "G": (53, 60),
    "H": (61, 62),
    "I": (63, 65),
    "J": (66, 69),
    "K": (70, 70),
    "L": (71, 72),
    "M": (73, 75),
    "N": (76, 79),
    "O": (80, 82),
    "P": (83, 83),
    "Q": (84, 85),
    "R": (86, 90),
    "S": (91, 96),
    "T": (97, 97),
}
"""Each category's divisions (大类), GB/T 4754-2017."""


def industry_problems(codes: dict[str, Any]) -> list[str]:
    """``field: problem`` for each level of ``codes`` (a template body) that is wrong; absent levels are fine."""
    problems = []
    category = codes.get("industryCategory")
    if category is not None and (not isinstance(category, str) or category not in _DIVISIONS):
        problems.append("industryCategory: must be one letter A-T (GB/T 4754)")
    above = "industryCategory"
    for field, digits in (("industrySpecific", 2), ("industryTrade", 3), ("industrySubclass", 4)):
        code, parent = codes.get(field), codes.get(above)
        if code is None:
            above = field
            continue
        if not isinstance(code, str) or len(code) != digits or not (code.isascii() and code.isdigit()):
            problems.append(f"{field}: must be a string of {digits} digits")
        elif parent is None:
            problems.append(f"{field}: needs {above}")
        elif digits == 2 and category in _DIVISIONS and not _within(int(code), _DIVISIONS[category]):
            low, high = _DIVISIONS[category]
            problems.append(f"{field}: {code} is not a division of category {category} ({low:02d}-{high:02d})")
        elif digits > 2 and isinstance(parent, str) and not code.startswith(parent):
            problems.append(f"{field}: {code} does not extend {above} {parent}")
        above = field
    return problems


def _within(number: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= number <= bounds[1]
