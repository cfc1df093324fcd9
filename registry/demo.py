"""Demo data for a first ``make serve``: the prefix 88.888.1 and a few product identifiers of realistic shape.

Each product carries a URL (index 1), an HS_ADMIN naming the prefix's admin group (index 100), the data
template version (index 1001) and template attributes from index 2000, as IDIS registrations do
(research/idis-secondary-node.md). Loading is idempotent: records already present are left as they are.
"""

from __future__ import annotations

from registry.store import Actor, RegistryStore
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored

__all__ = ["DEMO_HANDLES", "DEMO_PREFIX", "load_demo"]

DEMO_PREFIX = "88.888.1"

_ADMIN = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {
        "format": "admin",
        "value": {"handle": f"0.NA/{DEMO_PREFIX}", "index": 200, "permissions": "011111110011"},
    },
}


def _product(suffix: str, url: str, attributes: list[tuple[str, str]]) -> tuple[str, list[dict[str, object]]]:
    values: list[dict[str, object]] = [{"index": 1, "type": "URL", "data": url}, _ADMIN]
    values.append({"index": 1001, "type": "TEMPLATE", "data": f"{DEMO_PREFIX}/TPL-PRODUCT/1"})
    values += [{"index": 2000 + n, "type": kind, "data": text} for n, (kind, text) in enumerate(attributes)]
    return f"{DEMO_PREFIX}/{suffix}", values


DEMO_HANDLES = [
    _product(
        "PUMP-2026-000123",
        "https://example.com/products/pump/PUMP-2026-000123",
        [
            ("productName", "离心泵 Centrifugal pump CP-40"),
            ("model", "CP-40/160"),
            ("manufacturer", "Example Pump Works Co., Ltd."),
            ("productionDate", "2026-03-14"),
            ("batchNo", "B-2026-0314-07"),
        ],
    ),
    _product(
        "VALVE-2026-000042",
        "https://example.com/products/valve/VALVE-2026-000042",
        [
            ("productName", "球阀 Ball valve DN50"),
            ("model", "Q41F-16C"),
            ("manufacturer", "Example Valve Co., Ltd."),
            ("productionDate", "2026-05-02"),
        ],
    ),
    _product(
        "MOTOR-2026-000007",
        "https://example.com/products/motor/MOTOR-2026-000007",
        [
            ("productName", "三相异步电动机 Induction motor 7.5 kW"),
            ("model", "YE3-132M-4"),
            ("manufacturer", "Example Motor Works"),
            ("productionDate", "2026-07-21"),
            ("ratedPower", "7.5 kW"),
            ("serialNo", "M2607210007"),
        ],
    ),
]


async def load_demo(store: RegistryStore) -> int:
    """Home the demo prefix and register the demo products; returns how many records were new."""
    await store.add_prefix(DEMO_PREFIX, ascii_upper(DEMO_PREFIX))
    rows = [
        (
            ascii_upper(handle),
            handle,
            ascii_upper(DEMO_PREFIX),
            values_to_stored(decode_values(values)).decode(),
        )
        for handle, values in DEMO_HANDLES
    ]
    return await store.create_missing(rows, Actor("idnode-demo"))
