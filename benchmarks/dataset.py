"""The benchmark data set: product identifiers of realistic shape, and their bulk load with COPY.

Shape. Each record is what an IDIS secondary node registers for a product (like ``registry/demo.py``): a URL
(index 1), an HS_ADMIN naming the prefix's admin group (100), the template version (1001) and 4–6 template
attributes from index 2000, about 1.1 KB of stored JSON. Record ``n`` is ``88.999.1/PRD-2026-<n, 9 digits>``,
so a Lua script can name any record from its number without a key file (``KEY_FORMAT`` is shared with
``lua.py``). Numbers ``0 .. count-1`` exist; numbers from ``ABSENT_BASE`` up never do (the 404 scenarios).
Numbers from ``LINKED_BASE`` (``load``'s ``linked`` of them) are the same records with typed links besides: a
``10320/loc`` value of three links, a default one (``resolver/links.py``), so the proxy answers them with its
product decision order (``proxy_links``, next to the plain ``proxy``).

Loading. Rows are built first (``values_to_stored(decode_values(...))``, the stored form the node itself
writes), then written with one ``copy_records_to_table`` into ``handles`` after the prefix is homed by plain
SQL. Only the COPY is timed, so ``rows_per_second`` is the import rate, not the generator's. The COPY goes
through the schema's triggers (a version per row, one history row per record), as any import does. A second
COPY of the same rows into a trigger-less copy of the table shows what those triggers cost. The linked records
are written by a second, untimed COPY.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import asyncpg

from resolver import links
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored

__all__ = [
    "ABSENT_BASE",
    "KEY_FORMAT",
    "LINKED_BASE",
    "PREFIX",
    "LoadReport",
    "handle_of",
    "load",
    "record_values",
]

PREFIX = "88.999.1"
KEY_FORMAT = "PRD-2026-%09d"
"""Suffix of record ``n``; also used verbatim by the Lua scripts (``string.format``)."""
ABSENT_BASE = 900_000_000
"""Record numbers from here up are never loaded: look-ups of them answer 404."""
LINKED_BASE = 800_000_000
"""Record numbers from here (below ``ABSENT_BASE``) carry typed links."""
TIMESTAMP = "2026-11-29T00:00:00Z"

_KINDS = ("pump", "valve", "motor", "bearing", "sensor")
_NAMES = {
    "pump": "离心泵 Centrifugal pump CP-40",
    "valve": "球阀 Ball valve DN50",
    "motor": "三相异步电动机 Induction motor 7.5 kW",
    "bearing": "深沟球轴承 Deep groove ball bearing 6205",
    "sensor": "压力变送器 Pressure transmitter PT-100",
}
_ADMIN = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {"format": "admin", "value": {"handle": f"0.NA/{PREFIX}", "index": 200, "permissions": "011111110011"}},
}
_COLUMNS = ["handle_key", "handle", "prefix_key", "values"]


def handle_of(number: int) -> str:
    """The handle of record ``number`` (existing below ``count``, absent from ``ABSENT_BASE``)."""
    return f"{PREFIX}/{KEY_FORMAT % number}"


def record_values(number: int) -> list[dict[str, object]]:
    """The values of record ``number`` in Handle.Net's input form: 7–9 values, 4–6 of them template attributes."""
    kind = _KINDS[number % len(_KINDS)]
    suffix = KEY_FORMAT % number
    attributes = [
        ("productName", _NAMES[kind]),
        ("model", f"{kind[:2].upper()}-{number % 97:02d}/{number % 1000:03d}"),
        ("manufacturer", f"Example {kind.title()} Works Co., Ltd."),
        ("productionDate", f"2026-{number % 12 + 1:02d}-{number % 28 + 1:02d}"),
        ("batchNo", f"B-2026-{number % 10000:04d}"),
        ("serialNo", f"SN{number:012d}"),
    ][: 4 + number % 3]
    values: list[dict[str, object]] = [
        {"index": 1, "type": "URL", "data": f"https://example.com/products/{kind}/{suffix}"},
        _ADMIN,
        {"index": 1001, "type": "TEMPLATE", "data": f"{PREFIX}/TPL-PRODUCT/1"},
    ]
    values += [{"index": 2000 + i, "type": name, "data": text} for i, (name, text) in enumerate(attributes)]
    if number >= LINKED_BASE:
        values.append({"index": 2, "type": "10320/loc", "data": _locations(kind, suffix)})
    return values


def _locations(kind: str, suffix: str) -> str:
    page = f"https://example.com/products/{kind}/{suffix}"
    return links.render(
        [
            links.Link("gs1:pip", page, "产品页", "zh", "text/html", default=True),
            links.Link("gs1:pip", page + "?lang=en", "Product page", "en", "text/html"),
            links.Link("gs1:safetyInfo", f"https://example.com/sds/{kind}.pdf", "SDS", type="application/pdf"),
        ]
    )


def rows(numbers: Iterable[int]) -> Iterator[tuple[str, str, str, str]]:
    """``(handle_key, handle, prefix_key, values_json)`` for records ``numbers``."""
    prefix_key = ascii_upper(PREFIX)
    for number in numbers:
        handle = handle_of(number)
        stored = values_to_stored(decode_values(record_values(number), timestamp=TIMESTAMP)).decode()
        yield ascii_upper(handle), handle, prefix_key, stored


@dataclass(frozen=True, slots=True)
class LoadReport:
    rows: int
    generate_seconds: float
    copy_seconds: float
    copy_without_triggers_seconds: float | None
    stored_bytes_mean: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.copy_seconds if self.copy_seconds else 0.0

    @property
    def rows_per_second_without_triggers(self) -> float | None:
        seconds = self.copy_without_triggers_seconds
        return self.rows / seconds if seconds else None


async def load(dsn: str, count: int, *, linked: int = 0, compare_without_triggers: bool = True) -> LoadReport:
    """Home ``PREFIX`` and COPY ``count`` records into ``handles``, then ``linked`` records with typed links
    (untimed); returns the timings."""
    started = time.perf_counter()
    data = list(rows(range(count)))
    generated = time.perf_counter() - started
    mean = sum(len(r[3]) for r in data) / max(1, len(data))
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            "INSERT INTO prefixes (prefix_key, prefix) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            ascii_upper(PREFIX),
            PREFIX,
        )
        started = time.perf_counter()
        await con.copy_records_to_table("handles", records=data, columns=_COLUMNS)
        copied = time.perf_counter() - started
        plain = None
        if compare_without_triggers:
            await con.execute("CREATE TABLE bench_copy_plain (LIKE handles INCLUDING DEFAULTS INCLUDING INDEXES)")
            try:
                started = time.perf_counter()
                await con.copy_records_to_table("bench_copy_plain", records=data, columns=_COLUMNS)
                plain = time.perf_counter() - started
            finally:
                await con.execute("DROP TABLE bench_copy_plain")
        if linked:
            extra = list(rows(range(LINKED_BASE, LINKED_BASE + linked)))
            await con.copy_records_to_table("handles", records=extra, columns=_COLUMNS)
        await con.execute("ANALYZE handles")
    finally:
        await con.close()
    return LoadReport(count, generated, copied, plain, mean)
