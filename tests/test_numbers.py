"""``resolver/numbers.py``: the one reading of integers given as text."""

from __future__ import annotations

import pytest

from resolver.numbers import ascii_integer


@pytest.mark.parametrize(("text", "number"), [("0", 0), ("42", 42), ("-7", -7), ("0010", 10), ("-" + "9" * 5, -99999)])
def test_an_optional_minus_and_ascii_digits_are_an_integer(text: str, number: int) -> None:
    assert ascii_integer(text, max_digits=5) == number


@pytest.mark.parametrize("text", ["", "-", "+1", " 1", "1 ", "1_000", "²", "١٢", "１", "1.0", "--1", "0x10", "1e3"])
def test_anything_else_is_not_an_integer(text: str) -> None:
    assert ascii_integer(text, max_digits=5) is None


def test_more_digits_than_allowed_are_refused_before_they_are_parsed() -> None:
    assert ascii_integer("9" * 5, max_digits=5) == 99999
    assert ascii_integer("1" * 6, max_digits=5) is None
    assert ascii_integer("-" + "1" * 6, max_digits=5) is None
    assert ascii_integer("1" * 5000, max_digits=20) is None  # int() would raise past 4,300 digits
