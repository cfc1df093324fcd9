"""resolver/records.py: every input form Handle.Net accepts, its rejections, and its output byte for byte.

Case names (A23, B7, ...) refer to research/handle9-transcripts.md; §1 to research/handle-rest-api.md. Input forms
follow Handle.Net's GsonUtility (HandleValueGsonTypeAdapter, AdminRecordGsonTypeAdapter, deserializeData).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from resolver.errors import HandleError, InvalidValue, ProtocolError, ValueAlreadyExists
from resolver.records import (
    DEFAULT_PERMISSIONS,
    DEFAULT_TTL,
    MAX_VALUES,
    HandleValue,
    ValueFilter,
    decode_values,
    encode_record,
    values_from_answer,
    values_from_stored,
    values_to_stored,
)

STAMP = "2026-11-29T04:41:44Z"


def _one(item: dict[str, Any]) -> HandleValue:
    (value,) = decode_values([item], timestamp=STAMP)
    return value


def _admin(permissions: Any, index: Any = 200) -> dict[str, Any]:
    return {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": "0.NA/88.TEST", "index": index, "permissions": permissions}},
    }


def _raises(payload: Any, error: type[HandleError], code: int) -> HandleError:
    with pytest.raises(error) as raised:
        decode_values(payload, timestamp=STAMP)
    assert raised.value.response_code == code
    return raised.value


# --- input: data -----------------------------------------------------------------------------------------------


def test_bare_string_data_is_string_format() -> None:  # what pyhandle sends
    value = _one({"index": 1, "type": "URL", "data": "https://example.org/x"})
    assert (value.format, value.value) == ("string", "https://example.org/x")


@pytest.mark.parametrize(("data", "text"), [(5, "5"), (1.5, "1.5"), (True, "true"), (False, "false")])
def test_bare_primitive_data_is_its_json_text(data: Any, text: str) -> None:
    value = _one({"index": 1, "type": "NUM", "data": data})
    assert (value.format, value.value) == ("string", text)


def test_string_format_object_is_string_data() -> None:
    value = _one({"index": 1, "type": "URL", "data": {"format": "string", "value": "https://e.org/é"}})
    assert (value.format, value.value) == ("string", "https://e.org/é")


def test_format_names_are_case_insensitive() -> None:
    assert _one({"index": 1, "type": "T", "data": {"format": "BASE64", "value": "aGVsbG8="}}).value == "hello"
    assert _one({"index": 1, "type": "T", "data": {"format": "String", "value": "x"}}).value == "x"


def test_base64_data_that_is_text_comes_back_as_string() -> None:  # A23b
    value = _one({"index": 4, "type": "B64DATA", "data": {"format": "base64", "value": "aGVsbG8="}})
    assert (value.format, value.value) == ("string", "hello")


def test_hex_data_that_is_not_text_comes_back_as_base64() -> None:  # A23b
    value = _one({"index": 3, "type": "HEXDATA", "data": {"format": "hex", "value": "DEADBEEF"}})
    assert (value.format, value.value) == ("base64", "3q2+7w==")


def test_hex_data_that_is_text_comes_back_as_string() -> None:
    value = _one({"index": 3, "type": "HEXDATA", "data": {"format": "hex", "value": "68656c6c6f"}})
    assert (value.format, value.value) == ("string", "hello")


def test_text_with_a_control_character_is_base64() -> None:
    value = _one({"index": 1, "type": "T", "data": "a\x01b"})
    assert (value.format, value.value) == ("base64", "YQFi")


def test_text_with_tabs_and_newlines_stays_string() -> None:  # 0x09–0x0D count as whitespace (§1.3)
    value = _one({"index": 1, "type": "T", "data": "a\tb\r\nc\x0bd\x0ce"})
    assert (value.format, value.value) == ("string", "a\tb\r\nc\x0bd\x0ce")


def test_admin_data_is_kept_structured_with_an_int_index() -> None:
    value = _one(_admin("011111110011", index="200"))  # pyhandle sends the index as a string
    assert value.format == "admin"
    assert value.value == {"handle": "0.NA/88.TEST", "index": 200, "permissions": "011111110011"}


def test_vlist_data_is_kept_structured_with_int_indexes() -> None:
    refs = [{"handle": "88.TEST/ADMIN", "index": "300"}, {"handle": "88.TEST/OTHER", "index": 301}]
    value = _one({"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": refs}})
    assert value.format == "vlist"
    assert value.value == [{"handle": "88.TEST/ADMIN", "index": 300}, {"handle": "88.TEST/OTHER", "index": 301}]


def test_admin_type_is_matched_ascii_case_insensitively() -> None:
    value = _one({**_admin("1"), "type": "hs_admin"})
    assert value.format == "admin"


# --- input: admin permissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permissions", "bits"),
    [
        ("011111110011", "011111110011"),
        ("11", "000000000011"),  # a short bit string is read from the right (§1.4)
        ("1", "000000000001"),
        ("*", "111111111111"),
        (True, "111111111111"),
        (False, "000000000000"),
    ],
)
def test_admin_permissions_accept_bit_strings_star_and_booleans(permissions: Any, bits: str) -> None:
    assert _one(_admin(permissions)).value["permissions"] == bits


@pytest.mark.parametrize(
    ("permissions", "bits"),
    [(0, "000000000000"), (3, "000000000011"), (11, "000000001011"), (4095, "111111111111"), (2048, "100000000000")],
)
def test_admin_permissions_given_as_an_int_are_its_binary_digits(permissions: int, bits: str) -> None:
    # AdminRecordGsonTypeAdapter: permsStringToArray(Integer.toBinaryString(perms.getAsInt()))
    assert _one(_admin(permissions)).value["permissions"] == bits


@pytest.mark.parametrize(
    ("permissions", "bits"),
    [
        ([True, True], "000000000011"),
        ([True, False], "000000000001"),
        ([1, 1, 0], "000000000011"),
        ([False, True, False, False], "000000000010"),
        ([True] * 12, "111111111111"),
    ],
)
def test_admin_permissions_array_element_n_is_bit_n(permissions: list[Any], bits: str) -> None:
    # AdminRecordGsonTypeAdapter.permsArrayToArray: res[i] = isTruthy(perms.get(i)); bit 0 is the rightmost char
    assert _one(_admin(permissions)).value["permissions"] == bits


@pytest.mark.parametrize("permissions", ["abc", "1" * 13, "12"])
def test_admin_permissions_that_are_not_bits_are_rc_202(permissions: Any) -> None:
    _raises([_admin(permissions)], InvalidValue, 202)


@pytest.mark.parametrize("index", [0, -1, "0"])
def test_admin_index_must_be_positive(index: Any) -> None:
    _raises([_admin("1", index=index)], InvalidValue, 202)


# --- input: value permissions and ttl --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permissions", "stored"), [(None, "1110"), ("*", "1111"), ("1100", "1100"), ("1111", "1111"), ("0110", "0110")]
)
def test_value_permissions_accept_star_and_bit_strings(permissions: Any, stored: str) -> None:
    item: dict[str, Any] = {"index": 1, "type": "T", "data": "x"}
    if permissions is not None:
        item["permissions"] = permissions
    assert _one(item).permissions == stored


@pytest.mark.parametrize("permissions", ["abc", "11111", "2", 7])
def test_value_permissions_that_are_not_bits_are_rc_202(permissions: Any) -> None:
    _raises([{"index": 1, "type": "T", "data": "x", "permissions": permissions}], InvalidValue, 202)


def test_public_read_follows_the_third_permission_bit() -> None:
    assert _one({"index": 1, "type": "T", "data": "x"}).public_read
    assert not _one({"index": 1, "type": "T", "data": "x", "permissions": "1100"}).public_read


@pytest.mark.parametrize(
    ("ttl", "stored"),
    [
        (None, DEFAULT_TTL),
        (3600, 3600),
        (0, 0),
        ("3600", 3600),
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
        ("2030-01-01T08:00:00+08:00", "2030-01-01T00:00:00Z"),
    ],
)
def test_ttl_may_be_missing_seconds_or_an_iso_time(ttl: Any, stored: int | str) -> None:
    item: dict[str, Any] = {"index": 1, "type": "T", "data": "x"}
    if ttl is not None:
        item["ttl"] = ttl
    assert _one(item).ttl == stored


@pytest.mark.parametrize("ttl", ["soon", True, [1], 2**31])
def test_ttl_that_is_neither_seconds_nor_a_time_is_rc_202(ttl: Any) -> None:
    _raises([{"index": 1, "type": "T", "data": "x", "ttl": ttl}], InvalidValue, 202)


def test_input_timestamps_are_ignored_and_the_server_stamps_values() -> None:
    value = _one({"index": 1, "type": "T", "data": "x", "timestamp": "1999-01-01T00:00:00Z"})
    assert value.timestamp == STAMP


def test_values_are_stamped_now_when_no_stamp_is_given() -> None:
    (value,) = decode_values([{"index": 1, "type": "T", "data": "x"}])
    assert len(value.timestamp) == 20
    assert value.timestamp.endswith("Z")
    assert value.timestamp[4] == "-" and value.timestamp[10] == "T"


# --- input: envelopes ---------------------------------------------------------------------------------------------


def test_values_object_bare_array_and_single_value_decode_alike() -> None:
    item = {"index": 1, "type": "URL", "data": "https://e.org"}
    expected = [_one(item)]
    assert decode_values({"values": [item]}, timestamp=STAMP) == expected
    assert decode_values({"handle": "88.TEST/x", "values": [item]}, timestamp=STAMP) == expected
    assert decode_values([item], timestamp=STAMP) == expected
    assert decode_values(item, timestamp=STAMP) == expected


def test_an_empty_values_array_is_an_empty_record() -> None:
    assert decode_values({"values": []}, timestamp=STAMP) == []


def test_values_come_out_sorted_by_index() -> None:
    items = [{"index": i, "type": "T", "data": str(i)} for i in (300, 2, 100, 1)]
    assert [v.index for v in decode_values(items, timestamp=STAMP)] == [1, 2, 100, 300]


def test_string_value_indexes_are_accepted() -> None:
    assert _one({"index": "7", "type": "T", "data": "x"}).index == 7


# --- rejections ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, -1, "-5", "0"])
def test_index_zero_or_negative_is_rc_202(index: Any) -> None:  # A19
    error = _raises([{"index": index, "type": "T", "data": "x"}], InvalidValue, 202)
    assert error.message == "Value indexes must be positive"


@pytest.mark.parametrize("index", [None, True, "abc", 1.5, [1]])
def test_index_that_is_not_an_integer_is_rc_4(index: Any) -> None:
    _raises([{"index": index, "type": "T", "data": "x"}], ProtocolError, 4)


def test_index_above_int32_is_rc_202() -> None:
    _raises([{"index": 2**31, "type": "T", "data": "x"}], InvalidValue, 202)


def test_duplicate_index_is_rc_201_index_conflict() -> None:  # A20
    items = [{"index": 2, "type": "A", "data": "x"}, {"index": 1, "type": "B", "data": "y"}]
    items.append({"index": 2, "type": "C", "data": "z"})
    error = _raises(items, ValueAlreadyExists, 201)
    assert error.message == "Index conflict for 2"
    assert error.http_status == 409


@pytest.mark.parametrize("value", ["x", 5, {"a": 1}])
def test_unknown_data_format_is_rc_4_whatever_the_value(value: Any) -> None:
    # deserializeData: any other format throws ParseException("Unexpected type ...") before reading the value
    _raises([{"index": 1, "type": "T", "data": {"format": "weird", "value": value}}], ProtocolError, 4)


@pytest.mark.parametrize(
    "data", [{"format": "string"}, {"value": "x"}, {"format": 5, "value": "x"}, None, ["x"]], ids=repr
)
def test_data_without_a_format_and_value_is_rc_4(data: Any) -> None:
    _raises([{"index": 1, "type": "T", "data": data}], ProtocolError, 4)


def test_missing_data_is_rc_4() -> None:
    _raises([{"index": 1, "type": "T"}], ProtocolError, 4)


@pytest.mark.parametrize("type_", [None, 5, ["URL"]])
def test_type_that_is_not_a_string_is_rc_4(type_: Any) -> None:
    _raises([{"index": 1, "type": type_, "data": "x"}], ProtocolError, 4)


@pytest.mark.parametrize("type_", ["UR\x00L", "A\x1fB", "T" * 1025])
def test_type_with_control_characters_or_over_1024_bytes_is_rc_202(type_: str) -> None:
    _raises([{"index": 1, "type": type_, "data": "x"}], InvalidValue, 202)


@pytest.mark.parametrize(
    "payload", ["text", 5, None, {"values": "x"}, {"values": {"index": 1}}, {"handle": "88.TEST/x"}], ids=repr
)
def test_payload_that_is_not_a_list_of_values_is_rc_4(payload: Any) -> None:
    _raises(payload, ProtocolError, 4)


def test_value_that_is_not_an_object_is_rc_4() -> None:
    _raises([{"index": 1, "type": "T", "data": "x"}, "oops"], ProtocolError, 4)


def test_more_than_max_values_is_rc_202() -> None:
    items = [{"index": i, "type": "T", "data": "x"} for i in range(1, MAX_VALUES + 2)]
    _raises(items, InvalidValue, 202)


@pytest.mark.parametrize("data", ["0.NA/88.TEST", {"format": "string", "value": "x"}, {"format": "hex", "value": "00"}])
def test_hs_admin_without_admin_format_is_rc_202(data: Any) -> None:
    _raises([{"index": 100, "type": "HS_ADMIN", "data": data}], InvalidValue, 202)


def test_admin_format_on_another_type_is_rc_202() -> None:
    _raises([{**_admin("1"), "type": "URL"}], InvalidValue, 202)


def test_vlist_format_on_another_type_is_rc_202() -> None:
    data = {"format": "vlist", "value": [{"handle": "88.TEST/A", "index": 300}]}
    _raises([{"index": 1, "type": "URL", "data": data}], InvalidValue, 202)


@pytest.mark.parametrize("value", [{"handle": "x"}, "0.NA/88.TEST", {"index": 200, "permissions": "1"}], ids=repr)
def test_admin_data_without_handle_or_index_is_rejected(value: Any) -> None:
    item = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": value}}
    with pytest.raises((InvalidValue, ProtocolError)):
        decode_values([item], timestamp=STAMP)


@pytest.mark.parametrize("value", ["@@@@", "aGVsbG8", "aGVs bG8="])
def test_bad_base64_is_rc_202(value: str) -> None:
    _raises([{"index": 1, "type": "T", "data": {"format": "base64", "value": value}}], InvalidValue, 202)


@pytest.mark.parametrize("value", ["XYZ", "ABC", "0x00"])
def test_bad_hex_is_rc_202(value: str) -> None:
    _raises([{"index": 1, "type": "T", "data": {"format": "hex", "value": value}}], InvalidValue, 202)


@pytest.mark.parametrize("value", [None, {"a": 1}, [1]])
def test_string_format_with_a_non_string_value_is_rc_202(value: Any) -> None:
    _raises([{"index": 1, "type": "T", "data": {"format": "string", "value": value}}], InvalidValue, 202)


# --- output ----------------------------------------------------------------------------------------------------

A23_VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/f"}, "ttl": 3600},
    {"index": 2, "type": "PRIV", "data": {"format": "string", "value": "admin-only"}, "permissions": "1100"},
    {"index": 3, "type": "HEXDATA", "data": {"format": "hex", "value": "DEADBEEF"}},
    {"index": 4, "type": "B64DATA", "data": {"format": "base64", "value": "aGVsbG8="}},
    {"index": 5, "type": "PLAIN", "data": "plain string data"},
]
A23B = (
    b'{"responseCode":1,"handle":"88.TEST/formats","values":[{"index":1,"type":"URL","data":{"format":"string",'
    b'"value":"https://example.org/f"},"ttl":3600,"timestamp":"2026-11-29T04:41:44Z"},{"index":3,"type":"HEXDATA",'
    b'"data":{"format":"base64","value":"3q2+7w=="},"ttl":86400,"timestamp":"2026-11-29T04:41:44Z"},{"index":4,'
    b'"type":"B64DATA","data":{"format":"string","value":"hello"},"ttl":86400,"timestamp":"2026-11-29T04:41:44Z"},'
    b'{"index":5,"type":"PLAIN","data":{"format":"string","value":"plain string data"},"ttl":86400,'
    b'"timestamp":"2026-11-29T04:41:44Z"}]}'
)
A23C = (
    b'{"responseCode":1,"handle":"88.TEST/formats","values":[{"index":1,"type":"URL","data":{"format":"string",'
    b'"value":"https://example.org/f"},"ttl":3600,"timestamp":"2026-11-29T04:41:44Z"},{"index":2,"type":"PRIV",'
    b'"data":{"format":"string","value":"admin-only"},"permissions":"1100","ttl":86400,'
    b'"timestamp":"2026-11-29T04:41:44Z"},{"index":3,"type":"HEXDATA","data":{"format":"base64","value":"3q2+7w=="},'
    b'"ttl":86400,"timestamp":"2026-11-29T04:41:44Z"},{"index":4,"type":"B64DATA","data":{"format":"string",'
    b'"value":"hello"},"ttl":86400,"timestamp":"2026-11-29T04:41:44Z"},{"index":5,"type":"PLAIN","data":'
    b'{"format":"string","value":"plain string data"},"ttl":86400,"timestamp":"2026-11-29T04:41:44Z"}]}'
)


def test_public_view_of_a23_is_byte_for_byte_a23b() -> None:
    values = decode_values({"values": A23_VALUES}, timestamp=STAMP)
    assert encode_record("88.TEST/formats", [v for v in values if v.public_read]) == A23B


def test_full_view_of_a23_is_byte_for_byte_a23c() -> None:
    assert encode_record("88.TEST/formats", decode_values({"values": A23_VALUES}, timestamp=STAMP)) == A23C


def test_default_permissions_are_omitted_and_others_are_present() -> None:
    default = _one({"index": 1, "type": "T", "data": "x", "permissions": "1110"}).to_json()
    assert "permissions" not in default
    for bits in ("1111", "1100", "0110", "0000"):
        assert _one({"index": 1, "type": "T", "data": "x", "permissions": bits}).to_json()["permissions"] == bits


def test_value_keys_are_in_handle_net_order() -> None:
    value = _one({"ttl": 5, "permissions": "1100", "data": "x", "type": "T", "index": 1})
    assert list(value.to_json()) == ["index", "type", "data", "permissions", "ttl", "timestamp"]
    refs = HandleValue(1, "T", "string", "x", references=(("88.TEST/R", 2),))
    assert list(refs.to_json()) == ["index", "type", "data", "ttl", "timestamp", "references"]
    assert refs.to_json()["references"] == [{"handle": "88.TEST/R", "index": 2}]


def test_admin_value_keys_are_handle_index_permissions_whatever_the_input_order() -> None:
    item = {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"permissions": "011111110011", "index": 200, "handle": "0.NA/88.TEST"}},
    }
    encoded = encode_record("88.TEST/x", decode_values([item], timestamp=STAMP))
    assert (
        b'"data":{"format":"admin","value":{"handle":"0.NA/88.TEST","index":200,"permissions":"011111110011"}}'
        in encoded
    )


def test_admin_value_keys_are_in_order_after_jsonb_reordered_them() -> None:
    # jsonb stores object keys shortest first: index, handle, permissions
    stored = (
        '[{"ttl": 86400, "data": {"value": {"index": 200, "handle": "0.NA/88.TEST", "permissions": "011111110011"},'
        ' "format": "admin"}, "type": "HS_ADMIN", "index": 100, "timestamp": "2026-11-29T04:41:44Z"}]'
    )
    assert encode_record("88.TEST/x", values_from_stored(stored)) == (
        b'{"responseCode":1,"handle":"88.TEST/x","values":[{"index":100,"type":"HS_ADMIN","data":{"format":"admin",'
        b'"value":{"handle":"0.NA/88.TEST","index":200,"permissions":"011111110011"}},"ttl":86400,'
        b'"timestamp":"2026-11-29T04:41:44Z"}]}'
    )


def test_encoded_records_are_compact_json_with_non_ascii_kept() -> None:
    body = encode_record("88.TEST/泵", [_one({"index": 1, "type": "NAME", "data": "离心泵 a/b"})])
    assert b" " not in body.replace("离心泵 a/b".encode(), b"")
    assert "离心泵".encode() in body
    assert b"\\u" not in body
    assert b"\\/" not in body


def test_empty_record_is_rc_200_with_empty_values_exactly() -> None:  # B8
    assert encode_record("88.TEST/xyz", []) == b'{"responseCode":200,"values":[],"handle":"88.TEST/xyz"}'


def test_encode_record_echoes_the_handle_given() -> None:
    body = encode_record("88.test/XYZ", [_one({"index": 1, "type": "T", "data": "x"})])
    assert body.startswith(b'{"responseCode":1,"handle":"88.test/XYZ","values":[')


def test_pretty_output_uses_two_space_indent() -> None:
    body = encode_record("88.TEST/x", [_one({"index": 1, "type": "T", "data": "x"})], pretty=True)
    assert body.startswith(b'{\n  "responseCode": 1,\n  "handle": "88.TEST/x",\n  "values": [\n    {\n')


def test_text_shows_strings_as_is_and_structures_as_compact_json() -> None:
    assert _one({"index": 1, "type": "T", "data": "plain"}).text() == "plain"
    assert _one(_admin("1")).text() == '{"handle":"0.NA/88.TEST","index":200,"permissions":"000000000001"}'


# --- round trip ----------------------------------------------------------------------------------------------

ALL_FORMS = [
    {"index": 1, "type": "URL", "data": "https://example.org/é?a=1&b=2", "ttl": 3600},
    {"index": 2, "type": "PRIV", "data": {"format": "string", "value": "secret"}, "permissions": "1100"},
    {"index": 3, "type": "HEX", "data": {"format": "hex", "value": "DEADBEEF"}},
    {"index": 4, "type": "B64", "data": {"format": "base64", "value": "aGVsbG8="}},
    {"index": 5, "type": "ABS", "data": "x", "ttl": "2030-01-01T00:00:00Z", "permissions": "*"},
    {"index": 6, "type": "REF", "data": "y", "references": [{"handle": "88.TEST/R", "index": "2"}]},
    _admin("011111110011", index="200"),
    {
        "index": 200,
        "type": "HS_VLIST",
        "data": {"format": "vlist", "value": [{"handle": "88.TEST/ADMIN", "index": 300}]},
    },
]


def test_decoded_values_survive_storage_unchanged() -> None:
    values = decode_values(ALL_FORMS, timestamp=STAMP)
    assert values_from_stored(values_to_stored(values)) == tuple(values)
    assert values_from_stored(values_to_stored(values).decode()) == tuple(values)


def test_decoded_values_survive_an_encoded_answer_unchanged() -> None:
    values = decode_values(ALL_FORMS, timestamp=STAMP)
    assert values_from_answer(encode_record("88.TEST/x", values)) == tuple(values)


def test_stored_values_decode_again_to_the_same_values() -> None:
    values = decode_values(ALL_FORMS, timestamp=STAMP)
    again = decode_values(orjson.loads(values_to_stored(values)), timestamp=STAMP)
    assert again == values


def test_stored_form_is_the_output_form() -> None:
    values = decode_values(ALL_FORMS, timestamp=STAMP)
    assert orjson.loads(values_to_stored(values)) == [v.to_json() for v in values]
    assert all(v.permissions == DEFAULT_PERMISSIONS or "permissions" in v.to_json() for v in values)


# --- ValueFilter ---------------------------------------------------------------------------------------------

FILTERED = decode_values(
    [
        {"index": 1, "type": "URL", "data": "a"},
        {"index": 2, "type": "EMAIL", "data": "b"},
        {"index": 3, "type": "URL.mobile", "data": "c"},
        {"index": 4, "type": "URLX", "data": "d"},
        {"index": 5, "type": "88.TEST/CUSTOM", "data": "e"},
    ],
    timestamp=STAMP,
)


def _indexes(types: list[str], indexes: list[str]) -> list[int]:
    return [v.index for v in ValueFilter.from_query(types, indexes).apply(FILTERED)]


def test_empty_filter_keeps_everything_and_is_falsy() -> None:
    value_filter = ValueFilter.from_query([], [])
    assert not value_filter
    assert value_filter.apply(FILTERED) == list(FILTERED)


def test_type_filter_matches_whole_types_only() -> None:
    assert _indexes(["URL"], []) == [1]


def test_type_filter_is_ascii_case_insensitive() -> None:  # B10b
    assert _indexes(["url"], []) == [1]
    assert _indexes(["88.test/custom"], []) == [5]


def test_type_filter_ending_in_a_dot_matches_the_type_and_its_subtypes() -> None:
    assert _indexes(["URL."], []) == [1, 3]
    assert _indexes(["url."], []) == [1, 3]


def test_type_and_index_filters_are_or_ed() -> None:  # B7
    assert _indexes(["URL"], ["2"]) == [1, 2]
    assert _indexes(["EMAIL", "URLX"], ["5", "99"]) == [2, 4, 5]


def test_index_filter_matches_indexes() -> None:  # B5, B6
    assert _indexes([], ["1", "3"]) == [1, 3]


def test_filter_matching_nothing_is_empty() -> None:  # B8, B9
    assert _indexes(["NOSUCHTYPE"], ["99"]) == []


def test_empty_type_parameters_are_ignored() -> None:
    assert not ValueFilter.from_query([""], [])


@pytest.mark.parametrize("raw", ["abc", "1.5", ""])
def test_non_numeric_index_filter_is_rc_4_naming_it(raw: str) -> None:  # C10
    with pytest.raises(ProtocolError) as raised:
        ValueFilter.from_query([], [raw])
    assert raised.value.response_code == 4
    assert f'"{raw}"' in (raised.value.message or "")
