"""Demo data for a first ``make serve``: a coherent enterprise on 88.888.1 with a data template and products.

What ``idnode serve --demo`` sets up (idempotently; what exists is left as it is):
- the node's own prefix ``88.888`` homed, and the enterprise ``88.888.1`` onboarded under it the way
  ``idnode enterprise add`` does (registry/enterprises.py): its prefix handle ``0.NA/88.888.1`` (HS_ADMIN, and the
  HS_VLIST at index 200 naming ``300:88.888.1/ADMIN``) and that admin identity;
- the data template ``88.888.1`` version ``TPL-PRODUCT-1``, whose items are the product attributes below;
- three products, each with a URL (index 1), an HS_ADMIN naming ``200:0.NA/88.888.1`` (index 100), the template
  version (index 1001) and the template's attributes from index 2000, as IDIS registrations do
  (research/idis-secondary-node.md), each of which the template check accepts. The pump also has typed links
  (index 1000: product pages in Chinese and English, manuals, data sheet, certificate, service), so its product
  page (``/88.888.1/PUMP-2026-000123?noredirect``, the README's screenshots) shows what a real one would.

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
from resolver.links import Link, render
from resolver.product import LINKS_INDEX
from resolver.records import decode_values, values_to_stored

__all__ = ["DEMO_HANDLES", "DEMO_PREFIX", "DEMO_TEMPLATE", "Demo", "load_demo"]

DEMO_NODE_PREFIX = "88.888"
DEMO_PREFIX = "88.888.1"
DEMO_ENTERPRISE = "Example Demo Works Co., Ltd."
DEMO_TEMPLATE = "TPL-PRODUCT-1"
_ACTOR = Actor("idnode-demo")

# attribute → (index, template item fields beyond idType); the first four are required. ``name`` is the item's IDIS
# name (Chinese), ``labels`` its names for the product page (resolver/template_labels.py).
_ATTRIBUTES: dict[str, tuple[int, dict[str, Any]]] = {
    "productName": (2000, {"name": "产品名称", "required": True, "maxLength": 200}),
    "model": (2001, {"name": "型号", "required": True, "maxLength": 64}),
    "manufacturer": (2002, {"name": "生产企业", "required": True, "maxLength": 200}),
    "productionDate": (2003, {"name": "生产日期", "required": True, "type": "date"}),
    "batchNo": (2004, {"name": "批次号", "maxLength": 64, "labels": {"en": "Batch number"}}),
    "ratedPower": (2005, {"name": "额定功率", "maxLength": 32, "labels": {"en": "Rated power"}}),
    "serialNo": (2006, {"name": "序列号", "maxLength": 64, "labels": {"en": "Serial number"}}),
    "ratedFlow": (2007, {"name": "额定流量", "maxLength": 32, "labels": {"en": "Rated flow"}}),
    "ratedHead": (2008, {"name": "额定扬程", "maxLength": 32, "labels": {"en": "Rated head"}}),
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


def _product(
    suffix: str, url: str, attributes: dict[str, str], typed: tuple[Link, ...] = ()
) -> tuple[str, list[dict[str, object]]]:
    values: list[dict[str, object]] = [{"index": 1, "type": "URL", "data": url}, _ADMIN]
    if typed:
        values.append({"index": LINKS_INDEX, "type": "10320/loc", "data": render(typed)})
    values.append({"index": 1001, "type": "TEMPLATE", "data": DEMO_TEMPLATE})
    values += [{"index": _ATTRIBUTES[kind][0], "type": kind, "data": text} for kind, text in attributes.items()]
    return f"{DEMO_PREFIX}/{suffix}", values


_PUMP_SITE = "https://example.com/products/pump/PUMP-2026-000123"
_PUMP_LINKS = (
    Link("gs1:pip", _PUMP_SITE + "?lang=zh", "产品介绍", "zh", "text/html", default=True),
    Link("gs1:pip", _PUMP_SITE + "?lang=en", "Product page", "en", "text/html"),
    Link("gs1:instructions", "https://example.com/docs/CP-40-manual-zh.pdf", "安装使用说明书", "zh", "application/pdf"),
    Link(
        "gs1:instructions", "https://example.com/docs/CP-40-manual-en.pdf", "Operating manual", "en", "application/pdf"
    ),
    Link("idnode:dataSheet", "https://example.com/docs/CP-40-160-datasheet.pdf", type="application/pdf"),
    Link("idnode:qualityCertificate", "https://example.com/cert/PUMP-2026-000123"),
    Link("gs1:serviceInfo", "https://mes.example.com/maintenance/PUMP-2026-000123", "维保记录与报修", "zh"),
    Link("gs1:serviceInfo", "https://mes.example.com/en/maintenance/PUMP-2026-000123", "Service and repair", "en"),
)
"""The demo pump's typed links (resolver/links.py): what its product page shows as buttons, and what ``?linkType=``
and the linkset serve."""

DEMO_HANDLES = [
    _product(
        "PUMP-2026-000123",
        _PUMP_SITE,
        {
            "productName": "离心泵 Centrifugal pump CP-40",
            "model": "CP-40/160",
            "manufacturer": "Example Pump Works Co., Ltd.",
            "productionDate": "2026-03-14",
            "batchNo": "B-2026-0314-07",
            "ratedPower": "7.5 kW",
            "serialNo": "CP40-260314-0123",
            "ratedFlow": "25 m³/h",
            "ratedHead": "32 m",
        },
        _PUMP_LINKS,
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
