"""resolver/identifiers.py: parsing, validating, decoding and keying handles (pure units, no database).

Case names (B13, C8, ...) refer to research/handle9-transcripts.md; §5 to research/handle-rest-api.md.
"""

from __future__ import annotations

import random
from urllib.parse import quote

import pytest

from resolver.errors import InvalidHandle
from resolver.identifiers import (
    DEFAULT_MAX_HANDLE_BYTES,
    Handle,
    ascii_upper,
    decode_path,
    governing_prefix,
    handle_key,
    parse,
    prefix_chain,
    strip_scheme,
    validate_text,
)

# --- parse ---------------------------------------------------------------------------------------------------


def test_parse_splits_prefix_and_suffix_at_the_first_slash() -> None:
    handle = parse("88.TEST/a/b")
    assert handle == Handle(text="88.TEST/a/b", key="88.TEST/A/B", prefix="88.TEST", suffix="a/b")


def test_parse_keeps_the_requested_spelling_and_keys_by_ascii_upper_case() -> None:
    handle = parse("88.test/Xyz")
    assert handle.text == "88.test/Xyz"
    assert handle.key == "88.TEST/XYZ"
    assert handle.prefix_key == "88.TEST"


def test_parse_of_bare_text_means_the_prefix_handle_and_echoes_the_original() -> None:
    handle = parse("88.test")
    assert handle.text == "88.test"
    assert handle.key == "0.NA/88.TEST"
    assert (handle.prefix, handle.suffix) == ("0.NA", "88.test")


def test_parse_of_bare_text_raises_when_bare_text_is_not_a_prefix() -> None:
    with pytest.raises(InvalidHandle) as raised:
        parse("noslash", bare_is_prefix=False)
    assert raised.value.response_code == 102
    assert raised.value.handle == "noslash"


def test_parse_keeps_an_empty_suffix_and_a_double_slash() -> None:  # C7, C12
    assert parse("88.TEST/").suffix == ""
    assert parse("88.TEST//double").suffix == "/double"


def test_parse_refuses_an_empty_prefix() -> None:
    with pytest.raises(InvalidHandle) as raised:
        parse("/suffix")
    assert raised.value.response_code == 102


def test_parse_applies_the_byte_limit() -> None:
    parse("88.TEST/" + "x" * 20, max_bytes=28)
    with pytest.raises(InvalidHandle):
        parse("88.TEST/" + "x" * 21, max_bytes=28)


# --- strip_scheme ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hdl:88.TEST/xyz", "88.TEST/xyz"),
        ("HDL:88.TEST/xyz", "88.TEST/xyz"),
        ("doi:10.1000/182", "10.1000/182"),
        ("DoI:10.1000/182", "10.1000/182"),
        ("info:hdl/88.TEST/xyz", "88.TEST/xyz"),
        ("INFO:HDL/88.TEST/xyz", "88.TEST/xyz"),
        ("info:doi/10.1000/182", "10.1000/182"),
        ("urn:hdl:88.TEST:xyz", "88.TEST/xyz"),
        ("URN:HDL:88.TEST:xyz", "88.TEST/xyz"),
        ("urn:hdl:88.TEST:a:b", "88.TEST/a:b"),
        ("urn:hdl:88.TEST/a:b", "88.TEST/a:b"),
        ("88.TEST/xyz", "88.TEST/xyz"),
        ("88.TEST/hdl:x", "88.TEST/hdl:x"),
    ],
)
def test_strip_scheme_removes_the_schemes_the_proxy_accepts(text: str, expected: str) -> None:
    assert strip_scheme(text) == expected


# --- validate_text -------------------------------------------------------------------------------------------


def test_validate_text_refuses_an_empty_handle() -> None:
    with pytest.raises(InvalidHandle) as raised:
        validate_text("")
    assert raised.value.response_code == 102
    assert raised.value.message == "Empty handle invalid"


def test_validate_text_counts_utf8_bytes_not_characters() -> None:
    text = "88.TEST/" + "é" * 4  # 8 + 8 bytes, 12 characters
    assert validate_text(text, max_bytes=16) == text
    with pytest.raises(InvalidHandle) as raised:
        validate_text(text, max_bytes=15)
    assert "16 bytes" in (raised.value.message or "")


def test_validate_text_default_limit_is_255_bytes() -> None:
    assert DEFAULT_MAX_HANDLE_BYTES == 255
    validate_text("8/" + "x" * 253)
    with pytest.raises(InvalidHandle):
        validate_text("8/" + "x" * 254)


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x1b", "\t", "\x7f", "\x85", "\x9f"])
def test_validate_text_refuses_control_characters(char: str) -> None:
    with pytest.raises(InvalidHandle) as raised:
        validate_text(f"88.TEST/a{char}b")
    assert raised.value.response_code == 102


@pytest.mark.parametrize("text", ["88.TEST/离心泵", "88.TEST/a b", "88.TEST/Straße", "88.TEST/a\u00a0b", "88.TEST/😀"])
def test_validate_text_accepts_valid_non_ascii_and_spaces(text: str) -> None:
    assert validate_text(text) == text


def test_validate_text_refuses_a_lone_surrogate() -> None:
    with pytest.raises(InvalidHandle):
        validate_text("88.TEST/\ud800")


# --- decode_path ---------------------------------------------------------------------------------------------


def test_decode_path_decodes_once() -> None:
    assert decode_path("88.TEST/a%2541") == "88.TEST/a%41"


def test_decode_path_keeps_plus() -> None:
    assert decode_path("88.TEST/a+b") == "88.TEST/a+b"
    assert decode_path("88.TEST/a+b%20c") == "88.TEST/a+b c"


def test_decode_path_turns_an_encoded_slash_into_a_slash() -> None:  # B14
    assert decode_path("88.TEST%2Fxyz") == "88.TEST/xyz"
    assert decode_path("88.TEST%2fxyz") == "88.TEST/xyz"


def test_decode_path_decodes_utf8() -> None:  # C11
    assert decode_path("88.TEST/a%20b%C3%A9") == "88.TEST/a bé"


@pytest.mark.parametrize("raw", ["88.TEST/%ZZ", "88.TEST/%", "88.TEST/%4", "88.TEST/a%g0", "88.TEST/%%41"])
def test_decode_path_refuses_a_malformed_escape_with_rc_102(raw: str) -> None:  # C8
    with pytest.raises(InvalidHandle) as raised:
        decode_path(raw)
    assert raised.value.response_code == 102


@pytest.mark.parametrize("raw", ["88.TEST/%C3%28", "88.TEST/%FF", "88.TEST/%C3", "88.TEST/%ED%A0%80"])
def test_decode_path_refuses_invalid_utf8_with_rc_102(raw: str) -> None:  # C9
    with pytest.raises(InvalidHandle) as raised:
        decode_path(raw)
    assert raised.value.response_code == 102


# --- ascii_upper / handle_key --------------------------------------------------------------------------------


def test_ascii_upper_folds_only_a_to_z() -> None:
    assert ascii_upper("88.test/abc-xyz") == "88.TEST/ABC-XYZ"
    assert ascii_upper("straße") == "STRAßE"
    assert ascii_upper("é") == "é"
    assert ascii_upper("ﬁx") == "ﬁX"  # str.upper would give "FIX"
    assert ascii_upper("ǆ") == "ǆ"


def test_handle_key_is_ascii_upper() -> None:
    assert handle_key("88.test/é-x") == "88.TEST/é-X"


# --- governing_prefix / prefix_chain ------------------------------------------------------------------------


def test_governing_prefix_is_the_handles_own_prefix() -> None:
    assert governing_prefix(parse("88.118.8/PUMP-1")) == "88.118.8"


def test_governing_prefix_of_a_prefix_handle_is_the_prefix_it_names() -> None:
    assert governing_prefix(parse("0.NA/88.118.8")) == "88.118.8"
    assert governing_prefix(parse("0.na/88.118.8")) == "88.118.8"
    assert governing_prefix(parse("88.118.8")) == "88.118.8"


def test_governing_prefix_of_an_empty_prefix_handle_is_0_na() -> None:
    assert governing_prefix(parse("0.NA/")) == "0.NA"


def test_prefix_chain_lists_the_prefix_and_its_ancestors_most_specific_first() -> None:
    assert prefix_chain("88.118.8") == ["88.118.8", "88.118", "88"]
    assert prefix_chain("88") == ["88"]
    assert prefix_chain("0.NA") == ["0.NA", "0"]


# --- properties over random strings -------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ./+%-_~:?#&=éßøçñ离心泵😀İıſK"


def _random_strings(count: int = 500, seed: int = 20261129) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def test_ascii_upper_is_idempotent_and_preserves_length() -> None:
    for text in _random_strings():
        once = ascii_upper(text)
        assert ascii_upper(once) == once
        assert len(once) == len(text)


def test_ascii_upper_changes_nothing_but_ascii_lower_case_letters() -> None:
    for text in _random_strings():
        for before, after in zip(text, ascii_upper(text), strict=True):
            if "a" <= before <= "z":
                assert after == chr(ord(before) - 32)
            else:
                assert after == before


def test_decode_path_inverts_quote_for_printable_text() -> None:
    for text in _random_strings():
        assert decode_path(quote(text)) == text
        assert decode_path(quote(text, safe="")) == text


def test_validate_then_parse_keeps_the_text_and_keys_it_by_ascii_upper() -> None:
    for text in _random_strings():
        candidate = "88.TEST/" + text
        handle = parse(validate_text(candidate))
        assert handle.text == candidate
        assert handle.key == ascii_upper(candidate)
