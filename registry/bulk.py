"""Bulk import of handle records from JSON Lines: all lines valid and imported, or nothing imported.

One line holds one record in Handle.Net's JSON form: ``{"handle": "88.888.1/X", "values": [...]}``. Every line
is checked first (JSON, handle syntax, a prefix homed here, values as the REST API would accept them, no handle
twice); any error is reported with its line number and nothing is written. Valid files are written in a single
transaction, so an interrupted import leaves nothing behind either. Records already present are skipped unless
``replace`` is asked for, so a re-run after a partial failure elsewhere is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from resolver.errors import HandleError
from resolver.identifiers import governing_prefix, parse
from resolver.prefixes import PrefixTable
from resolver.records import decode_values, values_to_stored
from resolver.store import Store

__all__ = ["ImportReport", "LineError", "import_lines", "validate_lines"]

MAX_REPORTED_ERRORS = 100


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    written: int = 0

    @property
    def skipped(self) -> int:
        return len(self.rows) - self.written


def _records(lines: Iterable[bytes | str]) -> Iterator[tuple[int, bytes | str]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line


def validate_lines(lines: Iterable[bytes | str], prefixes: PrefixTable, *, max_handle_bytes: int) -> ImportReport:
    """Check every line; the report holds the rows to write or the (first 100) errors with line numbers."""
    report = ImportReport()
    seen: dict[str, int] = {}
    for number, line in _records(lines):
        try:
            row = _row(line, prefixes, max_handle_bytes)
        except (HandleError, ValueError) as exc:
            _error(report, number, getattr(exc, "message", None) or str(exc))
            continue
        first = seen.setdefault(row[0], number)
        if first != number:
            _error(report, number, f"handle {row[1]} already appears on line {first}")
            continue
        report.rows.append(row)
    return report


def _error(report: ImportReport, number: int, message: str) -> None:
    report.error_count += 1
    if len(report.errors) < MAX_REPORTED_ERRORS:
        report.errors.append(LineError(number, message))


def _row(line: bytes | str, prefixes: PrefixTable, max_handle_bytes: int) -> tuple[str, str, str, str]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("handle"), str):
        raise ValueError('expected {"handle": "prefix/suffix", "values": [...]}')
    handle = parse(record["handle"], max_bytes=max_handle_bytes, bare_is_prefix=False)
    prefix = governing_prefix(handle)
    if not prefixes.homes(prefix):
        raise ValueError(f"prefix {prefix} is not homed here (run: idnode prefix add {prefix})")
    values = decode_values(record.get("values", []))
    return handle.key, handle.text, handle.prefix_key, values_to_stored(values).decode()


async def import_lines(
    store: Store,
    lines: Iterable[bytes | str],
    prefixes: PrefixTable,
    *,
    max_handle_bytes: int,
    replace: bool,
    actor: str,
) -> ImportReport:
    """Validate, then write everything in one transaction (or nothing, when any line is bad)."""
    report = validate_lines(lines, prefixes, max_handle_bytes=max_handle_bytes)
    if report.error_count == 0 and report.rows:
        report.written = await store.write_records(report.rows, actor=actor, replace=replace)
    return report
