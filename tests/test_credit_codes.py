"""registry/credit_codes.py: GB 32100-2015's checks of a unified social credit code, against published codes of
well-known companies (each verified by the algorithm itself, both check characters), codes built with
``check_character``, and malformed ones."""

from __future__ import annotations

import pytest

from registry.credit_codes import CHARSET, check_character, validate_credit_code
from resolver.errors import ProtocolError

PUBLISHED = [
    "91350100M000100Y43",  # the example printed in GB 32100-2015 guidance
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91440300708461136T",  # Shenzhen Tencent Computer Systems Co., Ltd.
    "91330100799655058B",  # Alibaba (China) Co., Ltd.
]


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert validate_credit_code(code) == code
    assert check_character(code[:17]) == code[17]


def test_the_character_set_has_31_characters_without_i_o_s_v_z() -> None:
    assert len(CHARSET) == 31
    assert not set("IOSVZ") & set(CHARSET)


def _organization_code(body: str) -> str:
    """GB 11714: eight characters and their check character (written here apart from the module under test)."""
    total = sum(int(char, 36) * weight for char, weight in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    check = (11 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))


def _built(head: str, body: str) -> str:
    first17 = head + _organization_code(body)
    return first17 + check_character(first17)


@pytest.mark.parametrize(
    ("head", "body"),
    [("91110108", "MA012345"), ("52100000", "50002167"), ("Y1310115", "MA1K3YJ1"), ("A1100000", "00000000")],
)
def test_codes_built_with_both_check_characters_are_valid_in_any_case(head: str, body: str) -> None:
    code = _built(head, body)
    assert validate_credit_code(code.lower()) == code


def test_a_check_of_31_is_written_0() -> None:
    codes = (_built("91350100", f"M{n:07d}") for n in range(10_000))
    code = next(code for code in codes if code.endswith("0"))
    assert validate_credit_code(code) == code
    with pytest.raises(ProtocolError):
        validate_credit_code(code[:17] + "Y")


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("91350100M000100Y44", "wrong check character"),
        ("91350100M000100Y4", "17 characters"),
        ("91350100M000100Y433", "19 characters"),
        ("91350100M0001O0Y43", "'O'"),
        ("91350100S000100Y43", "'S'"),
        ("Z1350100M000100Y43", "outside"),
        ("B1350100M000100Y43", "registration authority"),
        ("90350100M000100Y43", "organization kind"),
        ("913501A0M000100Y43", "division code"),
        ("91350100M000100Y53", "GB 11714"),
        ("", "0 characters"),
    ],
)
def test_malformed_codes_are_refused_naming_the_problem(code: str, problem: str) -> None:
    with pytest.raises(ProtocolError, match="creditCode") as raised:
        validate_credit_code(code)
    assert problem in raised.value.message
