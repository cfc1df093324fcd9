"""Handle values and records: the model, Handle.Net's JSON encoding, every input form it accepts, and filters.

Output follows Handle.Net 9's Gson serializer byte for byte (research/handle-rest-api.md §1.2–1.3, transcripts
B1–B18, A23): compact JSON; value keys in the order index, type, data, permissions, ttl, timestamp, references;
``permissions`` left out when it is the default ``1110``; ``timestamp`` always present (pyhandle pops it);
``format`` chosen from the type (HS_ADMIN → admin, HS_VLIST → vlist) and otherwise from the bytes: ``string``
for UTF-8 text without control characters, ``base64`` for anything else. ``hex`` is accepted, never produced.

Input accepts what Handle.Net's parser accepts: ``data`` as a bare JSON primitive (what pyhandle sends) or as
``{format, value}``; admin ``index`` as an int or a numeric string; admin ``permissions`` as a bit string, ``*``,
a boolean, an int or an array; value ``permissions`` as ``*`` or a bit string read from the right.
Records are kept sorted by index so that "the first URL" is the same on every read (research §9.12).

Only what PostgreSQL can store and orjson can encode is accepted (issue 8), with rc 202 before anything is
written: ``data`` is bytes, so text with a NUL (or any control character) is kept as base64, as Handle.Net does;
text that has no byte form (handles named by HS_ADMIN, HS_VLIST and references, and the JSON of ``key``/``site``
data, keys included) may not contain NUL, which jsonb refuses; ``key``/``site`` data nests at most ``MAX_DEPTH``
levels (orjson encodes 254, and the stored record wraps the value in three more); a ``ttl`` time must stay on
the calendar once moved to UTC (``9999-12-31T23:59:59-23:59`` does not).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from resolver.errors import HandleError, InvalidValue, ProtocolError, ValueAlreadyExists
from resolver.identifiers import HARD_MAX_HANDLE_BYTES, ascii_upper, validate_text
from resolver.numbers import ascii_integer

__all__ = [
    "DEFAULT_PERMISSIONS",
    "DEFAULT_TTL",
    "MAX_DEPTH",
    "MAX_INDEX",
    "MAX_VALUES",
    "HandleValue",
    "ValueFilter",
    "decode_values",
    "encode_record",
    "now_timestamp",
    "redact_secrets",
    "values_from_answer",
    "values_from_stored",
    "values_to_stored",
]

DEFAULT_TTL = 86400
DEFAULT_PERMISSIONS = "1110"
"""adminRead adminWrite publicRead publicWrite: everything but public write."""
MAX_INDEX = 2**31 - 1
MAX_VALUES = 2048
"""Handle.Net's ``Common.MAX_HANDLE_VALUES``."""
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects in ``key``/``site`` data (the outermost container is level 1)."""
MAX_TYPE_BYTES = 1024
SECRET_TYPES = frozenset({"HS_SECKEY"})
SECRET_PLACEHOLDER = "(secret key, not shown)"

_ADMIN_BITS = 12
_FORMATS_FOR_TYPE = {"HS_ADMIN": "admin", "HS_VLIST": "vlist"}
_OPAQUE_FORMATS = frozenset({"key", "site"})
_ALLOWED_CONTROLS = frozenset("\t\n\x0b\x0c\r")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BITS = re.compile(r"[01]+")
_MAX_DIGITS = 20
"""An index or TTL given as text has at most this many digits: any 64-bit number is still range-checked."""


def now_timestamp() -> str:
    """The current time as Handle.Net prints a value's timestamp: ISO-8601 UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HandleValue(NamedTuple):
    """One typed value of a handle record; ``value`` is a str for string/base64 data, a dict or list otherwise.

    A named tuple rather than a frozen dataclass: as immutable, and several times cheaper to build, which counts
    when an import decodes millions of values.
    """

    index: int
    type: str
    format: str
    value: Any
    ttl: int | str = DEFAULT_TTL
    timestamp: str = ""
    permissions: str = DEFAULT_PERMISSIONS
    references: tuple[tuple[str, int], ...] = ()

    @property
    def public_read(self) -> bool:
        return self.permissions[2] == "1"

    def to_json(self) -> dict[str, Any]:
        """The value as Handle.Net serializes it; also the stored form."""
        value = self.value
        if self.format == "admin":  # jsonb does not keep key order; Handle.Net's is handle, index, permissions
            value = {"handle": value["handle"], "index": value["index"], "permissions": value["permissions"]}
        elif self.format == "vlist":
            value = [{"handle": ref["handle"], "index": ref["index"]} for ref in value]
        elif self.format == "site":
            value = _site_order(value)
        out: dict[str, Any] = {"index": self.index, "type": self.type, "data": {"format": self.format, "value": value}}
        if self.permissions != DEFAULT_PERMISSIONS:
            out["permissions"] = self.permissions
        out["ttl"] = self.ttl
        out["timestamp"] = self.timestamp
        if self.references:
            out["references"] = [{"handle": h, "index": i} for h, i in self.references]
        return out

    def text(self) -> str:
        """The value as a person reads it: string data as is, structured data as compact JSON."""
        if isinstance(self.value, str):
            return self.value
        return orjson.dumps(self.value).decode()

    def type_key(self) -> str:
        return ascii_upper(self.type)

    def same_content(self, other: HandleValue) -> bool:
        """Equal but for the timestamp: Handle.Net stamps a value when it changes, so a re-sent value is unchanged."""
        return self._replace(timestamp="") == other._replace(timestamp="")


_SITE_KEYS = ("version", "protocolVersion", "serialNumber", "primarySite", "multiPrimary", "attributes", "servers")
_SERVER_KEYS = ("serverId", "address", "publicKey", "interfaces")
_INTERFACE_KEYS = ("query", "admin", "protocol", "port")


def _ordered(obj: Any, keys: tuple[str, ...]) -> Any:
    """``obj`` with ``keys`` first in that order (jsonb keeps none), any others after them."""
    if not isinstance(obj, dict):
        return obj
    return {**{k: obj[k] for k in keys if k in obj}, **{k: v for k, v in obj.items() if k not in keys}}


def _server_order(server: Any) -> Any:
    server = _ordered(server, _SERVER_KEYS)
    if isinstance(server, dict) and "publicKey" in server:
        server["publicKey"] = _ordered(server["publicKey"], ("format", "value"))
    return server


def _site_order(site: Any) -> Any:
    """A site value in Handle.Net's key order (transcript F6), for servers and their interfaces too."""
    site = _ordered(site, _SITE_KEYS)
    if isinstance(site, dict) and isinstance(site.get("servers"), list):
        site["servers"] = [
            {**server, "interfaces": [_ordered(i, _INTERFACE_KEYS) for i in server["interfaces"]]}
            if isinstance(server, dict) and isinstance(server.get("interfaces"), list)
            else server
            for server in (_server_order(s) for s in site["servers"])
        ]
    return site


def redact_secrets(values: Iterable[HandleValue]) -> list[HandleValue]:
    """``values`` with the data of every HS_SECKEY replaced: a secret key (even hashed) is never shown to anyone."""
    return [
        HandleValue(v.index, v.type, "string", SECRET_PLACEHOLDER, v.ttl, v.timestamp, v.permissions, v.references)
        if v.type_key() in SECRET_TYPES
        else v
        for v in values
    ]


def encode_record(handle: str, values: Sequence[HandleValue], *, pretty: bool = False) -> bytes:
    """The body of a successful resolution; rc 200 with ``values: []`` when nothing is left (transcript B8)."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    if not values:
        return orjson.dumps({"responseCode": 200, "values": [], "handle": handle}, option=option)
    return orjson.dumps({"responseCode": 1, "handle": handle, "values": [v.to_json() for v in values]}, option=option)


def values_to_stored(values: Iterable[HandleValue]) -> bytes:
    """The jsonb document stored for a record: the values in their output form."""
    return orjson.dumps([v.to_json() for v in values])


def values_from_stored(document: str | bytes) -> tuple[HandleValue, ...]:
    """Rebuild values from their stored form, trusting it (it was validated when written)."""
    return tuple(_value_from_output(item) for item in orjson.loads(document))


def values_from_answer(body: bytes) -> tuple[HandleValue, ...]:
    """Rebuild values from an encoded answer (see ``encode_record``)."""
    return tuple(_value_from_output(item) for item in orjson.loads(body)["values"])


def _value_from_output(item: dict[str, Any]) -> HandleValue:
    data = item["data"]
    refs = item.get("references") or ()
    return HandleValue(
        index=item["index"],
        type=item["type"],
        format=data["format"],
        value=data["value"],
        ttl=item.get("ttl", DEFAULT_TTL),
        timestamp=item.get("timestamp", ""),
        permissions=item.get("permissions", DEFAULT_PERMISSIONS),
        references=tuple((r["handle"], int(r["index"])) for r in refs),
    )


# --- input -------------------------------------------------------------------------------------------------


def decode_values(payload: Any, *, timestamp: str | None = None) -> list[HandleValue]:
    """Validate a PUT body (``{"values": [...]}``, a bare array, or one value object) into sorted values.

    Raises :class:`ProtocolError` (rc 4) for shapes Handle.Net cannot parse, :class:`InvalidValue` (rc 202) for
    values it refuses and :class:`ValueAlreadyExists` (rc 201) for an index given twice. Input timestamps are
    ignored: the server stamps values when it stores them (research §1.3).
    """
    if isinstance(payload, dict):
        items = payload["values"] if "values" in payload else [payload] if _looks_like_value(payload) else None
    else:
        items = payload
    if not isinstance(items, list):
        raise ProtocolError("Expected a JSON object with a 'values' array, an array of values, or one value")
    if len(items) > MAX_VALUES:
        raise InvalidValue(f"A record holds at most {MAX_VALUES} values, got {len(items)}")
    stamp = timestamp or now_timestamp()
    values = [_decode_value(item, stamp) for item in items]
    seen: set[int] = set()
    for v in values:
        if v.index in seen:
            raise ValueAlreadyExists(f"Index conflict for {v.index}")
        seen.add(v.index)
    values.sort(key=lambda v: v.index)
    return values


def _looks_like_value(obj: dict[str, Any]) -> bool:
    return "index" in obj and "type" in obj and "data" in obj


def _decode_value(item: Any, stamp: str) -> HandleValue:
    """One input value. Bulk imports decode millions of these, so the common shapes (int index, plain type,
    string data, default ttl and permissions) take the short branches."""
    if not isinstance(item, dict):
        raise ProtocolError("Each value must be a JSON object")
    index = item.get("index")
    if type(index) is not int or not 0 < index <= MAX_INDEX:
        index = _decode_index(index, what="Value index")
    type_ = item.get("type")
    if type(type_) is not str:
        raise ProtocolError(f"Value {index}: 'type' must be a string")
    if (len(type_) * 4 > MAX_TYPE_BYTES and len(type_.encode("utf-8", "surrogatepass")) > MAX_TYPE_BYTES) or (
        _CONTROL.search(type_)
    ):
        raise InvalidValue(f"Value {index}: invalid type {type_[:64]!r}")
    if "data" not in item:
        raise ProtocolError(f"Value {index}: missing 'data'")
    data = item["data"]
    if type(data) is str and ascii_upper(type_) not in _FORMATS_FOR_TYPE:
        fmt, value = ("string", data) if not _CONTROL.search(data) else _classify_bytes(data.encode("utf-8"))
    else:
        fmt, value = _decode_data(index, type_, data)
    ttl, permissions, references = item.get("ttl"), item.get("permissions"), item.get("references")
    return HandleValue(
        index,
        type_,
        fmt,
        value,
        DEFAULT_TTL if ttl is None else _decode_ttl(index, ttl),
        stamp,
        DEFAULT_PERMISSIONS if permissions is None else _decode_value_permissions(index, permissions),
        () if not references else _decode_references(index, references),
    )


def _decode_index(raw: Any, *, what: str) -> int:
    if isinstance(raw, bool):
        raise ProtocolError(f"{what} must be an integer")
    if isinstance(raw, str) and (number := ascii_integer(raw.strip(), max_digits=_MAX_DIGITS)) is not None:
        raw = number
    if not isinstance(raw, int):
        raise ProtocolError(f"{what} must be an integer, got {_describe(raw)}")
    if raw <= 0:
        raise InvalidValue("Value indexes must be positive")
    if raw > MAX_INDEX:
        raise InvalidValue(f"{what} {raw} is larger than {MAX_INDEX}")
    return raw


def _decode_ttl(index: int, raw: Any) -> int | str:
    if raw is None:
        return DEFAULT_TTL
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not -(2**31) <= raw <= MAX_INDEX:
            raise InvalidValue(f"Value {index}: ttl {raw} out of range")
        return raw
    if isinstance(raw, str):
        if (number := ascii_integer(raw.strip(), max_digits=_MAX_DIGITS)) is not None:
            return _decode_ttl(index, number)
        return _decode_ttl_time(index, raw)
    raise InvalidValue(f"Value {index}: ttl must be seconds or an ISO-8601 time")


def _decode_ttl_time(index: int, raw: str) -> str:
    """An expiry time in UTC as Handle.Net prints one; a time without an offset is UTC, not the server's zone.

    ``datetime`` raises OverflowError when the offset moves a time off its calendar (year 0 or 10000).
    """
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except ValueError:
        raise InvalidValue(f"Value {index}: ttl must be seconds or an ISO-8601 time") from None
    except OverflowError:
        raise InvalidValue(f"Value {index}: ttl {raw[:64]!r} is outside years 1 to 9999 in UTC") from None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _decode_value_permissions(index: int, raw: Any) -> str:
    if raw is None:
        return DEFAULT_PERMISSIONS
    if raw == "*":
        return "1111"
    if isinstance(raw, str) and _BITS.fullmatch(raw) and len(raw) <= 4:
        return raw.rjust(4, "0")
    raise InvalidValue(f"Value {index}: permissions must be a bit string like '1110' or '*'")


def _decode_references(index: int, raw: Any) -> tuple[tuple[str, int], ...]:
    if not raw:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, dict) and isinstance(r.get("handle"), str) for r in raw):
        raise InvalidValue(f"Value {index}: references must be a list of {{handle, index}}")
    return tuple(
        (_named_handle(index, r["handle"], "reference"), _decode_index(r.get("index"), what="Reference index"))
        for r in raw
    )


def _named_handle(index: int, handle: str, what: str) -> str:
    """A handle that a value names (admin, vlist entry, reference): one this node could hold, so no NUL or
    other control character, which jsonb or every page and log showing it would choke on."""
    try:
        return validate_text(handle, max_bytes=HARD_MAX_HANDLE_BYTES)
    except HandleError as exc:
        raise InvalidValue(f"Value {index}: {what} handle: {exc.message}") from None


def _decode_data(index: int, type_: str, data: Any) -> tuple[str, Any]:
    required = _FORMATS_FOR_TYPE.get(ascii_upper(type_))
    if isinstance(data, dict):
        fmt = data.get("format")
        if not isinstance(fmt, str) or "value" not in data:
            raise ProtocolError(f"Value {index}: data needs 'format' and 'value'")
        fmt = fmt.lower()
        raw = data["value"]
    elif isinstance(data, str | int | float | bool):
        fmt, raw = "string", data
    else:
        raise ProtocolError(f"Value {index}: data must be a string or a {{format, value}} object")
    if required and fmt != required:
        raise InvalidValue(f"Value {index}: {type_} data must use the '{required}' format")
    if fmt == "admin":
        if required != "admin":
            raise InvalidValue(f"Value {index}: the 'admin' format is only for HS_ADMIN values")
        return "admin", _decode_admin(index, raw)
    if fmt == "vlist":
        if required != "vlist":
            raise InvalidValue(f"Value {index}: the 'vlist' format is only for HS_VLIST values")
        return "vlist", _decode_vlist(index, raw)
    if fmt in _OPAQUE_FORMATS:
        _check_opaque(index, raw)
        return fmt, raw
    return _classify_bytes(_data_bytes(index, fmt, raw))


def _check_opaque(index: int, raw: Any) -> None:
    """Refuse ``key``/``site`` data that cannot be stored: NUL in a string or a key, or nesting beyond
    ``MAX_DEPTH``. Iterative: a value nested as deep as orjson parses (1,024 levels) costs no Python recursion."""
    pending: list[tuple[Any, int]] = [(raw, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise InvalidValue(f"Value {index}: data must not contain NUL characters")
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise InvalidValue(f"Value {index}: data nests deeper than {MAX_DEPTH} levels")
        children = node if isinstance(node, list) else [*node, *node.values()]
        pending.extend((child, depth + 1) for child in children)


def _text_parameter(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ProtocolError(f"Invalid {name} parameter {_describe(raw)}: not a string")
    return raw


def _describe(raw: Any) -> str:
    """A short description of a JSON value for an error message: never the whole of a large or deep one."""
    if isinstance(raw, list | dict):
        return "an array" if isinstance(raw, list) else "an object"
    return repr(raw[:64] if isinstance(raw, str) else raw)


def _data_bytes(index: int, fmt: str, raw: Any) -> bytes:
    if fmt not in ("string", "base64", "hex"):
        raise ProtocolError(f"Value {index}: unknown data format {fmt[:64]!r}")
    if fmt == "string":
        if isinstance(raw, str):
            return raw.encode("utf-8", "surrogatepass")
        if raw is None or isinstance(raw, dict | list):
            raise InvalidValue(f"Value {index}: string data must be a JSON string")
        return orjson.dumps(raw)
    if not isinstance(raw, str):
        raise InvalidValue(f"Value {index}: {fmt} data must be a JSON string")
    try:
        return base64.b64decode(raw, validate=True) if fmt == "base64" else bytes.fromhex(raw)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"Value {index}: data is not valid {fmt}") from None


def _classify_bytes(raw: bytes) -> tuple[str, str]:
    """Handle.Net's choice for untyped bytes: text when it is clean UTF-8, base64 otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode("ascii")
    if _CONTROL.search(text):
        return "base64", base64.b64encode(raw).decode("ascii")
    return "string", text


def _decode_admin(index: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("handle"), str):
        raise InvalidValue(f"Value {index}: admin data needs 'handle', 'index' and 'permissions'")
    try:
        admin_index = _decode_index(raw.get("index"), what="Admin index")
    except InvalidValue:
        raise InvalidValue(f"Value {index}: admin index must be a positive integer") from None
    return {
        "handle": _named_handle(index, raw["handle"], "admin"),
        "index": admin_index,
        "permissions": _decode_admin_bits(index, raw.get("permissions")),
    }


def _decode_admin_bits(index: int, raw: Any) -> str:
    """AdminRecordGsonTypeAdapter: bit string (read from the right), ``*``, boolean, an int taken as its binary
    form, or an array whose element ``i`` is bit ``i`` (so element 0 is the rightmost character)."""
    if raw == "*" or raw is True:
        return "1" * _ADMIN_BITS
    if raw is False:
        return "0" * _ADMIN_BITS
    if isinstance(raw, int):
        raw = format(raw, "b") if 0 <= raw < 2**_ADMIN_BITS else "x"
    if isinstance(raw, list):
        raw = "".join("1" if bit else "0" for bit in reversed(raw))
    if isinstance(raw, str) and _BITS.fullmatch(raw) and len(raw) <= _ADMIN_BITS:
        return raw.rjust(_ADMIN_BITS, "0")
    raise InvalidValue(f"Value {index}: admin permissions must be a bit string of at most 12 bits")


def _decode_vlist(index: int, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise InvalidValue(f"Value {index}: vlist data must be an array of {{handle, index}}")
    out = []
    for ref in raw:
        if not isinstance(ref, dict) or not isinstance(ref.get("handle"), str):
            raise InvalidValue(f"Value {index}: vlist entries need 'handle' and 'index'")
        handle = _named_handle(index, ref["handle"], "vlist")
        out.append({"handle": handle, "index": _decode_index(ref.get("index"), what="Vlist index")})
    return out


# --- filters -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueFilter:
    """``type``/``index`` query filters; all given filters are OR-ed (transcript B7).

    Types compare ASCII-case-insensitively, and a type ending in ``.`` also matches its subtypes
    (``URL.`` matches ``URL`` and ``URL.foo``; Handle.Net ``Util.isParentTypeInArray``).
    """

    types: tuple[str, ...] = ()
    indexes: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.types or self.indexes)

    @classmethod
    def from_query(cls, types: Iterable[Any], indexes: Iterable[Any]) -> ValueFilter:
        """The filter of ``type`` and ``index`` parameters; 400 rc 4 for a parameter that is not text (a JSON body
        gives any value: ``POST /api/resolve`` passes its ``type`` array as it came) or an index that is no
        integer."""
        parsed: set[int] = set()
        for raw in indexes:
            try:
                parsed.add(int(_text_parameter("index", raw)))
            except ValueError:
                raise ProtocolError(f'Invalid index parameter "{raw[:64]}": not an integer') from None
        return cls(tuple(ascii_upper(t) for t in types if _text_parameter("type", t)), frozenset(parsed))

    def matches(self, value: HandleValue) -> bool:
        if value.index in self.indexes:
            return True
        vtype = value.type_key()
        for wanted in self.types:
            if vtype == wanted:
                return True
            if wanted.endswith(".") and (vtype == wanted[:-1] or vtype.startswith(wanted)):
                return True
        return False

    def apply(self, values: Sequence[HandleValue]) -> list[HandleValue]:
        if not self:
            return list(values)
        return [v for v in values if self.matches(v)]
