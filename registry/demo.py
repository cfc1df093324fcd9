"""Demo data for a first ``make serve``: a coherent enterprise on 88.888.1 with a data template and products.

What ``idnode serve --demo`` sets up (idempotently; what exists is left as it is):
- the node's own prefix ``88.888`` homed, and the enterprise ``88.888.1`` onboarded under it the way
  ``idnode enterprise add`` does (registry/enterprises.py): its prefix handle ``0.NA/88.888.1`` (HS_ADMIN, and the
  HS_VLIST at index 200 naming ``300:88.888.1/ADMIN``) and that admin identity;
- the data template ``88.888.1`` version ``TPL-PRODUCT-1``, whose items are the product attributes below;
- three products, each with a URL (index 1), an HS_ADMIN naming ``200:0.NA/88.888.1`` (index 100), the template
  version (index 1001) and the template's attributes from index 2000, as IDIS registrations do
  (research/idis-secondary-node.md), each of which the template check accepts.

The admin identity gets a new secret at every start (registry/enterprises.py ``renew_secret``): secrets are stored
hashed, so printing working credentials means making new ones. A demo is a playground: never serve it publicly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from registry.enterprises import ADMIN_SUFFIX, Credentials, home_prefix, onboard, renew_secret
from registry.store import Actor, RegistryStore
from registry.templates import check_template
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored

__all__ = ["DEMO_HANDLES", "DEMO_PREFIX", "DEMO_TEMPLATE", "Demo", "load_demo"]

DEMO_NODE_PREFIX = "88.888"
DEMO_PREFIX = "88.888.1"
DEMO_ENTERPRISE = "Example Demo Works Co., Ltd."
DEMO_TEMPLATE = "TPL-PRODUCT-1"
_ACTOR = Actor("idnode-demo")

# attribute → (index, template item fields beyond idType); the first four are required
_ATTRIBUTES: dict[str, tuple[int, dict[str, Any]]] = {
    "productName": (2000, {"name": "产品名称 product name", "required": True, "maxLength": 200}),
    "model": (2001, {"name": "型号 model", "required": True, "maxLength": 64}),
    "manufacturer": (2002, {"name": "生产企业 manufacturer", "required": True, "maxLength": 200}),
    "productionDate": (2003, {"name": "生产日期 production date", "required": True, "type": "date"}),
    "batchNo": (2004, {"name": "批次号 batch number", "maxLength": 64}),
    "ratedPower": (2005, {"name": "额定功率 rated power", "maxLength": 32}),
    "serialNo": (2006, {"name": "序列号 serial number", "maxLength": 64}),
}
_TEMPLATE: dict[str, Any] = {
    "description": "Demo product template (产品标识数据模板)",
    "items": [{"idIndex": index, "idType": kind, **item} for kind, (index, item) in _ATTRIBUTES.items()],
}

_ADMIN = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {
        "format": "admin",
        "value": {"handle": f"0.NA/{DEMO_PREFIX}", "index": 200, "permissions": "011111110011"},
    },
}


def _product(suffix: str, url: str, attributes: dict[str, str]) -> tuple[str, list[dict[str, object]]]:
    values: list[dict[str, object]] = [{"index": 1, "type": "URL", "data": url}, _ADMIN]
    values.append({"index": 1001, "type": "TEMPLATE", "data": DEMO_TEMPLATE})
    values += [{"index": _ATTRIBUTES[kind][0], "type": kind, "data": text} for kind, text in attributes.items()]
    return f"{DEMO_PREFIX}/{suffix}", values


DEMO_HANDLES = [
    _product(
        "PUMP-2026-000123",
        "https://example.com/products/pump/PUMP-2026-000123",
        {
            "productName": "离心泵 Centrifugal pump CP-40",
            "model": "CP-40/160",
            "manufacturer": "Example Pump Works Co., Ltd.",
            "productionDate": "2026-03-14",
            "batchNo": "B-2026-0314-07",
        },
    ),
    _product(
        "VALVE-2026-000042",
        "https://example.com/products/valve/VALVE-2026-000042",
        {
            "productName": "球阀 Ball valve DN50",
            "model": "Q41F-16C",
            "manufacturer": "Example Valve Co., Ltd.",
            "productionDate": "2026-05-02",
        },
    ),
    _product(
        "MOTOR-2026-000007",
        "https://example.com/products/motor/MOTOR-2026-000007",
        {
            "productName": "三相异步电动机 Induction motor 7.5 kW",
            "model": "YE3-132M-4",
            "manufacturer": "Example Motor Works",
            "productionDate": "2026-07-21",
            "ratedPower": "7.5 kW",
            "serialNo": "M2607210007",
        },
    ),
]


@dataclass(frozen=True, slots=True)
class Demo:
    """What a demo start produced: how many products were new, and the admin's credentials (new every start)."""

    added: int
    admin: Credentials


async def load_demo(store: RegistryStore) -> Demo:
    """Set up the demo as the module docstring describes; safe to run at every start."""
    key = ascii_upper(DEMO_PREFIX)
    await home_prefix(store, DEMO_NODE_PREFIX)
    async with store.transaction(_ACTOR) as tx:
        exists = await tx.has_enterprise(key)
    if exists:
        admin = await renew_secret(store, f"{DEMO_PREFIX}/{ADMIN_SUFFIX}", actor=_ACTOR)
    else:
        admin = await onboard(store, DEMO_PREFIX, name=DEMO_ENTERPRISE, credit_code=None, contact=None, actor=_ACTOR)
    description, items = check_template(_TEMPLATE)
    await store.publish_template(
        key, DEMO_PREFIX, DEMO_TEMPLATE, description, orjson.dumps(items).decode(), _ACTOR.name
    )
    rows = [
        (ascii_upper(handle), handle, key, values_to_stored(decode_values(values)).decode(), f"{key}/{DEMO_TEMPLATE}")
        for handle, values in DEMO_HANDLES
    ]
    return Demo(await store.create_missing(rows, _ACTOR), admin)
