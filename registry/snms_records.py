"""SNMS identifier records and Handle values, one into the other (the bodies of ``/identityv2/data``).

An SNMS record is ``{handle, templateVersion, value: [{index, type, auth, data: {format, value}}]}`` (research
idis-secondary-node.md §4.1(b)); each ``value[i]`` is the Handle value at ``index`` with that ``type`` and data, so
an SNMS write and a Handle API write of the same record store the same thing:

- ``data.format``: ``string`` as SNMS clients send it (``base64`` and ``hex`` too, as Handle.Net takes them);
- ``auth``: ``"public"`` (or absent) is Handle.Net's default permissions ``1110`` (anyone reads it), ``"private"``
  is ``1100`` (only an identity with READ_VALUE on the record reads it); a four-bit Handle.Net permissions string
  (``"1110"``) is taken as it is. The detail answer says ``public``/``private`` for those two, the bits otherwise;
- ``templateVersion``: the value at index 1001 (type ``TEMPLATE_VERSION``), which the record is then validated
  against (``registry/templates.py``); an SNMS client may not send index 1001 itself. Absent or null: no template.

Every problem is reported as ``<field path>: <what is wrong>`` (``value[3].data.value: required``), raised as
ProtocolError or InvalidValue, which the SNMS envelope answers with status -2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from registry.templates import TEMPLATE_INDEX
from resolver.errors import HandleError, InvalidValue, ProtocolError
from resolver.records import DEFAULT_PERMISSIONS, MAX_VALUES, HandleValue, decode_values

__all__ = ["TEMPLATE_TYPE", "record_from_snms", "snms_detail"]

TEMPLATE_TYPE = "TEMPLATE_VERSION"
_AUTH = {"public": DEFAULT_PERMISSIONS, "private": "1100"}
_AUTH_NAMES = {bits: name for name, bits in _AUTH.items()}
_MAX_TEMPLATE_VERSION = 128


def _permissions(path: str, raw: Any) -> str:
    if raw is None:
        return _AUTH["public"]
    if isinstance(raw, str) and raw.lower() in _AUTH:
        return _AUTH[raw.lower()]
    if isinstance(raw, str) and len(raw) == 4 and set(raw) <= {"0", "1"}:
        return raw
    raise ProtocolError(f"{path}.auth: must be public, private or Handle.Net permission bits such as 1110")


def _value(path: str, raw: Any) -> dict[str, Any]:
    """``value[i]`` as a Handle.Net value object, string data as a bare string (as pyhandle sends it: the fast
    path of ``decode_values``, to the same value); the checks name the field at fault."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"{path}: must be an object {{index, type, auth, data}}")
    for name in ("index", "type", "data"):
        if raw.get(name) is None:
            raise ProtocolError(f"{path}.{name}: required")
    index, type_, data = raw["index"], raw["type"], raw["data"]
    if type(index) is not int:
        raise ProtocolError(f"{path}.index: must be an integer")
    if index == TEMPLATE_INDEX:
        raise InvalidValue(f"{path}.index: {TEMPLATE_INDEX} is reserved; give the template as templateVersion")
    if not isinstance(type_, str) or not type_:
        raise ProtocolError(f"{path}.type: must be a non-empty string")
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}.data: must be an object {{format, value}}")
    if data.get("value") is None:
        raise ProtocolError(f"{path}.data.value: required")
    fmt = data.get("format", "string")
    if not isinstance(fmt, str) or fmt.lower() not in ("string", "base64", "hex"):
        raise ProtocolError(f"{path}.data.format: must be string, base64 or hex")
    value = data["value"]
    out = {"index": index, "type": type_, "data": value if isinstance(value, str) and fmt.lower() == "string"
           else {"format": fmt.lower(), "value": value}}  # fmt: skip
    permissions = _permissions(path, raw.get("auth"))
    if permissions != DEFAULT_PERMISSIONS:  # the default takes decode_values' short branch
        out["permissions"] = permissions
    return out


def record_from_snms(body: Any) -> tuple[str, list[HandleValue]]:
    """The handle and values of an SNMS record; raises naming the first field at fault."""
    if not isinstance(body, dict):
        raise ProtocolError("body: must be an object {handle, templateVersion, value}")
    handle, version, raw_values = body.get("handle"), body.get("templateVersion"), body.get("value")
    if not isinstance(handle, str) or not handle:
        raise ProtocolError("handle: required" if handle is None else "handle: must be a non-empty string")
    if raw_values is None:
        raise ProtocolError("value: required")
    if not isinstance(raw_values, list):
        raise ProtocolError("value: must be an array")
    if len(raw_values) > MAX_VALUES - 1:
        raise InvalidValue(f"value: at most {MAX_VALUES - 1} values, got {len(raw_values)}")
    paths = [f"value[{i}]" for i in range(len(raw_values))]
    objects = [_value(path, raw) for path, raw in zip(paths, raw_values, strict=True)]
    if version is not None:
        if not isinstance(version, str | int) or isinstance(version, bool) or not str(version).strip():
            raise ProtocolError("templateVersion: must be a non-empty string")
        if len(str(version)) > _MAX_TEMPLATE_VERSION:
            raise InvalidValue(f"templateVersion: at most {_MAX_TEMPLATE_VERSION} characters")
        objects.append({"index": TEMPLATE_INDEX, "type": TEMPLATE_TYPE, "data": str(version)})
        paths.append("templateVersion")
    seen: dict[int, str] = {}
    for path, item in zip(paths, objects, strict=True):
        if item["index"] in seen:
            raise InvalidValue(f"{path}.index: {item['index']} is also the index of {seen[item['index']]}")
        seen[item["index"]] = path
    try:
        return handle, decode_values(objects)
    except HandleError:
        _name_the_value(paths, objects)
        raise


def _name_the_value(paths: list[str], objects: list[dict[str, Any]]) -> None:
    """Decode the values one by one to raise the first error with its field path (the fast path decodes the
    record at once, as the Handle API does, and learns only that some value is wrong)."""
    for path, item in zip(paths, objects, strict=True):
        try:
            decode_values([item])
        except HandleError as exc:
            exc.message = f"{path}: {exc.message}"
            raise


def snms_detail(handle: str, prefix: str, values: Sequence[HandleValue]) -> dict[str, Any]:
    """The ``data`` of ``GET /identityv2/data/detail``: the record's values with the template version apart."""
    version = None
    shown = []
    for value in values:
        if value.index == TEMPLATE_INDEX:
            version = value.text()
            continue
        shown.append(
            {
                "index": value.index,
                "type": value.type,
                "auth": _AUTH_NAMES.get(value.permissions, value.permissions),
                "data": {"format": value.format, "value": value.value},
            }
        )
    return {"prefix": prefix, "handle": handle, "templateVersion": version, "value": shown}
