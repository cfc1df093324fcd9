"""resolver/product_page.py over real HTTP and PostgreSQL: the demo pump's page in English and Chinese, the language
switch, the technical-details fold, hostile values, images and their CSP, lifecycle pages, and the template names
(resolver/template_labels.py) with their cache.

Plain records (no typed links, status or template attribute) keep Handle.Net's values page: tests/test_proxy.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
import pytest

from registry.demo import DEMO_PREFIX
from registry.templates import check_template
from resolver import links
from resolver.errors import InvalidValue
from resolver.links import Link
from resolver.product_page import page_language, product_page
from resolver.records import decode_values
from resolver.template_labels import ItemLabel, TemplateLabels
from tests.support import TRANSCRIPT_XYZ, Node, home, load_demo_data, put_record, running_node

PUMP = f"{DEMO_PREFIX}/PUMP-2026-000123"
VALVE = f"{DEMO_PREFIX}/VALVE-2026-000042"
EN_PIP = "https://example.com/products/pump/PUMP-2026-000123?lang=en"
ZH_PIP = "https://example.com/products/pump/PUMP-2026-000123?lang=zh"
HOSTILE = '<script>alert("x")</script>\'"><img src=x onerror=alert(1)>'
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture
async def demo(database: str) -> AsyncIterator[Node]:
    """A node over the demo data (``idnode serve --demo``'s) plus the transcripts' plain record ``88.TEST/xyz``."""
    await load_demo_data(database)
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/xyz", TRANSCRIPT_XYZ)
    async with running_node(database) as node:
        yield node


async def _page(node: Node, path: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    async with node.http.get(node.raw_url(path), allow_redirects=False, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


def _outside_fold(page: str) -> str:
    """The page less its technical-details fold (which must be there, closed)."""
    match = re.search(r"<details>.*?</details>", page, re.DOTALL)
    assert match is not None and "<details open" not in page
    return page[: match.start()] + page[match.end() :]


def _hrefs(page: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'<a [^>]*href="([^"]*)"', page)]


# --- the demo pump -----------------------------------------------------------------------------------------------


async def test_the_english_page_shows_name_attributes_and_links_without_handle_internals(demo: Node) -> None:
    status, page, _ = await _page(demo, f"/{PUMP}?noredirect", **{"Accept-Language": "de, en;q=0.8"})
    assert status == 200
    assert '<html lang="en">' in page
    assert '<h1><span lang="zh">离心泵 Centrifugal pump CP-40</span></h1>' in page
    assert '<p class="m">CP-40/160 · Example Pump Works Co., Ltd.</p>' in page
    for label, value in (("Rated power", "7.5 kW"), ("Batch number", "B-2026-0314-07"), ("Production date", "2026")):
        assert re.search(f"<dt>{label}</dt><dd>{value}", page), label
    visible = _outside_fold(page)
    hrefs = _hrefs(visible)
    assert EN_PIP in hrefs and ZH_PIP not in hrefs  # of the product pages, the English one
    assert "https://example.com/docs/CP-40-manual-en.pdf" in hrefs
    assert "https://example.com/docs/CP-40-160-datasheet.pdf" in hrefs  # untagged: shown in every language
    assert ">Technical data sheet<" in visible  # an untitled link: its link type's name
    assert hrefs.index(EN_PIP) < hrefs.index("https://example.com/docs/CP-40-160-datasheet.pdf")
    for internal in ("HS_ADMIN", "#100", "#1001", "10320/loc", "TEMPLATE", "0.NA/"):
        assert internal not in visible, internal
    assert not TIMESTAMP.search(visible)
    assert f'<span class="id">{PUMP}</span>' in visible
    assert re.search(r'<dt>Resolved by</dt><dd><span class="id">127\.0\.0\.1:\d+</span>', visible)
    assert "<script" not in page


async def test_the_fold_keeps_the_handle_values(demo: Node) -> None:
    _, page, _ = await _page(demo, f"/{PUMP}?noredirect")
    fold = re.search(r"<details><summary>Technical details \(Handle values\)</summary>(.*?)</details>", page, re.S)
    assert fold is not None
    assert "HS_ADMIN" in fold.group(1) and "#100" in fold.group(1) and TIMESTAMP.search(fold.group(1))
    assert "handle=0.NA/88.888.1; index=200" in fold.group(1)


@pytest.mark.parametrize(
    ("path", "language"),
    [
        (f"/{PUMP}?noredirect", "zh-CN,zh;q=0.9,en;q=0.8"),
        (f"/{PUMP}?noredirect&lang=zh", "en"),
        (f"/{PUMP}?noredirect&lang=zh-TW", ""),
    ],
    ids=["accept-language", "lang-beats-the-header", "lang-primary-subtag"],
)
async def test_the_chinese_page(demo: Node, path: str, language: str) -> None:
    status, page, _ = await _page(demo, path, **({"Accept-Language": language} if language else {}))
    assert status == 200
    assert '<html lang="zh-CN">' in page
    for label in ("额定功率", "批次号", "生产日期", "额定扬程"):
        assert f"<dt>{label}</dt>" in page
    hrefs = _hrefs(_outside_fold(page))
    assert ZH_PIP in hrefs and EN_PIP not in hrefs
    assert ">安装使用说明书<" in page and "技术详情" in page and ">技术规格书<" in page


async def test_the_language_switch_is_a_plain_link_that_keeps_noredirect(demo: Node) -> None:
    _, english, _ = await _page(demo, f"/{PUMP}?noredirect")
    switch = f'<a href="/{PUMP}?noredirect&amp;lang=zh" hreflang="zh" lang="zh-CN">中文</a>'
    assert switch in english
    _, chinese, _ = await _page(demo, f"/{PUMP}?noredirect&lang=zh")
    assert f'<a href="/{PUMP}?noredirect&amp;lang=en" hreflang="en" lang="en">English</a>' in chinese
    assert '<html lang="zh-CN">' in chinese


async def test_the_page_headers(demo: Node) -> None:
    _, _, headers = await _page(demo, f"/{PUMP}?noredirect")
    assert headers["Content-Type"] == "text/html;charset=UTF-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = headers["Content-Security-Policy"]
    assert re.fullmatch(
        r"default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; form-action 'self'; base-uri 'none'; "
        r"frame-ancestors 'none'",
        policy,
    ), policy
    assert headers["Vary"] == "Accept, Accept-Language, Origin"  # a product record's negotiation headers


async def test_a_template_record_without_links_gets_the_page_on_noredirect_and_still_redirects(demo: Node) -> None:
    status, _, headers = await _page(demo, f"/{VALVE}", **{"Accept-Language": "zh"})
    assert (status, headers["Location"]) == (302, "https://example.com/products/valve/VALVE-2026-000042")
    status, page, headers = await _page(demo, f"/{VALVE}?noredirect")
    assert status == 200 and headers["Vary"] == "Accept-Language"
    assert "<h1>" in page and "Q41F-16C" in page and "Handle Values for" not in page
    assert 'href="https://example.com/products/valve/VALVE-2026-000042"' in _outside_fold(page)  # its URL value


async def test_a_template_record_without_a_url_is_its_page_when_scanned(demo: Node) -> None:
    await put_record(demo.dsn, "88.888.1/BARE", [{"index": 2000, "type": "productName", "data": "裸记录"}])
    status, page, _ = await _page(demo, "/88.888.1/BARE")
    assert status == 200 and '<h1><span lang="zh">裸记录</span></h1>' in page


async def test_a_plain_record_keeps_the_values_page(demo: Node) -> None:
    status, page, headers = await _page(demo, "/88.TEST/xyz?noredirect")
    assert status == 200 and "Handle Values for: 88.TEST/xyz" in page and "Vary" not in headers


# --- hostile values ----------------------------------------------------------------------------------------------


async def test_hostile_values_are_escaped_everywhere_and_script_urls_never_become_links(demo: Node) -> None:
    items = [
        {"idIndex": 2000, "idType": "productName", "name": HOSTILE, "labels": {"en": HOSTILE}},
        {"idIndex": 2001, "idType": "model", "name": HOSTILE},
        {"idIndex": 2002, "idType": "note", "name": HOSTILE, "labels": {"en": HOSTILE, "zh": HOSTILE}},
        {"idIndex": 2003, "idType": "image", "name": HOSTILE},
        {"idIndex": 2004, "idType": "site", "name": HOSTILE},
    ]
    con = await asyncpg.connect(demo.dsn)  # written around the API's checks, as by SQL or another node
    try:
        await con.execute(
            "INSERT INTO templates (prefix_key, prefix, version, items) VALUES ('88.888.1', '88.888.1', 'EVIL', $1)",
            orjson.dumps(items).decode(),
        )
    finally:
        await con.close()
    hostile_link = Link("gs1:pip", "https://example.com/p?a=1&b=\u00e9", HOSTILE, "en", "text/html")
    await put_record(
        demo.dsn,
        "88.888.1/EVIL",
        [
            {"index": 1, "type": "URL", "data": "javascript:alert(1)"},
            {"index": 2, "type": "10320/loc", "data": links.render([hostile_link])},
            {"index": 3, "type": HOSTILE, "data": HOSTILE},
            {"index": 1001, "type": "TEMPLATE", "data": "EVIL"},
            {"index": 2000, "type": "productName", "data": HOSTILE},
            {"index": 2001, "type": "model", "data": HOSTILE},
            {"index": 2002, "type": "note", "data": HOSTILE},
            {"index": 2003, "type": "image", "data": "javascript:alert(1)"},
            {"index": 2004, "type": "site", "data": "javascript:alert(1)"},
        ],
    )
    for query in ("?noredirect", "?noredirect&lang=zh", f"?noredirect&lang={quote(HOSTILE)}"):
        status, page, headers = await _page(demo, "/88.888.1/EVIL" + query, **{"Accept-Language": HOSTILE[:40]})
        assert status == 200, query
        assert "<script" not in page and "<img src=x" not in page and "onerror=alert(1)>" not in page, query
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&quot;&gt;&lt;img src=x" in page, query
        assert not any(href.lower().startswith("javascript") for href in _hrefs(page)), query
        assert "<img" not in page and "img-src" not in headers["Content-Security-Policy"], query
        assert 'href="https://example.com/p?a=1&amp;b=\u00e9"' in page, query
        assert "javascript:alert(1)" in page  # shown, as text


async def test_a_loc_value_with_a_script_link_is_ignored_and_never_linked(demo: Node) -> None:
    loc = '<locations><location href="javascript:alert(1)" rel="gs1:pip"/></locations>'
    values = [{"index": 2, "type": "10320/loc", "data": loc}, {"index": 2000, "type": "productName", "data": "P"}]
    await put_record(demo.dsn, "88.888.1/JS", values)
    status, page, _ = await _page(demo, "/88.888.1/JS")
    assert status == 200
    assert not any(href.lower().startswith("javascript") for href in _hrefs(page))


# --- images ------------------------------------------------------------------------------------------------------


async def test_an_image_link_is_shown_and_only_then_may_the_page_load_images(demo: Node) -> None:
    image = Link("gs1:relatedImage", "https://img.example.com/cp40.jpg?w=600&h=400")
    pip = Link("gs1:pip", "https://example.com/p/1", default=True)
    values = [
        {"index": 2, "type": "10320/loc", "data": links.render([pip, image])},
        {"index": 2000, "type": "productName", "data": "Pump"},
        {"index": 2001, "type": "image", "data": "https://img.example.com/other.png"},
    ]
    await put_record(demo.dsn, "88.888.1/IMG", values)
    status, page, headers = await _page(demo, "/88.888.1/IMG?noredirect")
    assert status == 200
    assert (
        '<img src="https://img.example.com/cp40.jpg?w=600&amp;h=400" alt="">' in page
    )  # the link before the attribute
    assert "other.png" not in _outside_fold(page)
    assert "img-src https: http:; " in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_an_image_attribute_is_the_picture_when_there_is_no_image_link(demo: Node) -> None:
    values = [
        {"index": 2000, "type": "productName", "data": "Valve"},
        {"index": 2001, "type": "imageUrl", "data": "http://img.example.com/valve.png"},
    ]
    await put_record(demo.dsn, "88.888.1/IMG2", values)
    _, page, headers = await _page(demo, "/88.888.1/IMG2")
    assert '<img src="http://img.example.com/valve.png" alt="">' in page
    assert "img-src https: http:" in headers["Content-Security-Policy"]


# --- lifecycle ---------------------------------------------------------------------------------------------------


async def test_a_recall_comes_first_in_the_readers_language(demo: Node) -> None:
    status_value = {
        "state": "recalled",
        "notice": "批次 B-0314 可能泄漏 <立即停用>",
        "link": "https://example.com/recall",
    }
    values = [
        {"index": 3, "type": "IDNODE_STATUS", "data": orjson.dumps(status_value).decode()},
        {"index": 2000, "type": "productName", "data": "Pump"},
    ]
    await put_record(demo.dsn, "88.888.1/RECALLED", values)
    for language, title in (("zh", "已召回"), ("en", "Recalled")):
        status, page, _ = await _page(demo, f"/88.888.1/RECALLED?noredirect&lang={language}")
        assert status == 200
        banner = page.index(f"<b>{title}</b>")
        assert banner < page.index("<h1>")
        assert "可能泄漏 &lt;立即停用&gt;" in page
        assert '<a href="https://example.com/recall" rel="nofollow noopener">' in page


async def test_the_tombstone_is_styled_as_the_page_and_localised(demo: Node) -> None:
    status_value = {"state": "withdrawn", "notice": "由 <CP-40B> 替代", "successor": PUMP}
    await put_record(
        demo.dsn, "88.888.1/OLD", [{"index": 3, "type": "IDNODE_STATUS", "data": orjson.dumps(status_value).decode()}]
    )
    status, page, headers = await _page(demo, "/88.888.1/OLD", **{"Accept-Language": "zh-CN"})
    assert status == 410
    assert '<html lang="zh-CN">' in page and "<b>已停用</b>" in page and "由 &lt;CP-40B&gt; 替代" in page
    assert f'替代标识: <a href="/{PUMP}">' in page
    assert headers["Link"] == f'</{PUMP}>; rel="successor-version"'
    assert headers["X-Content-Type-Options"] == "nosniff" and "img-src" not in headers["Content-Security-Policy"]
    _, english, _ = await _page(demo, "/88.888.1/OLD?lang=en")
    assert '<html lang="en">' in english and "<b>Withdrawn</b>" in english


# --- template names ---------------------------------------------------------------------------------------------


async def test_template_items_take_optional_labels_and_refuse_bad_ones() -> None:
    base = {"idIndex": 2000, "idType": "power", "name": "功率"}
    _, items = check_template({"items": [{**base, "labels": {"en": "Power", "zh-CN": "功率"}}]})
    assert items[0]["labels"] == {"en": "Power", "zh-CN": "功率"}
    _, items = check_template({"items": [base]})
    assert "labels" not in items[0]  # a template without labels is stored as before
    for bad in ({}, {"EN": "x"}, {"en": ""}, {"en": 3}, "Power", {f"l{n:02}": "x" for n in range(9)}):
        with pytest.raises(InvalidValue, match="item 2000: labels must map"):
            check_template({"items": [{**base, "labels": bad}]})


async def test_labels_are_read_once_and_kept_until_their_time_is_up(database: str) -> None:
    now = [0.0]
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        items = [{"idIndex": 2000, "idType": "power", "name": "功率", "labels": {"en": "Power"}}]
        await pool.execute(
            "INSERT INTO templates (prefix_key, prefix, version, items) VALUES ('88.T', '88.t', 'V1', $1)",
            orjson.dumps(items).decode(),
        )
        labels = TemplateLabels(pool, ttl=60.0, clock=lambda: now[0])
        record = decode_values([{"index": 1001, "type": "TEMPLATE", "data": "V1"}])
        assert (await labels.labels("88.t/P1", record))[2000].text("en") == "Power"
        await pool.execute("UPDATE templates SET items = jsonb_set(items, '{0,labels,en}', '\"Rated power\"')")
        now[0] = 59.0
        assert (await labels.labels("88.T/P2", record))[2000].text("en") == "Power"  # kept
        now[0] = 61.0
        assert (await labels.labels("88.T/P2", record))[2000].text("en") == "Rated power"
        ancestor = decode_values([{"index": 1001, "type": "TEMPLATE", "data": "88.t/V1"}])
        assert (await labels.labels("88.T.9/P3", ancestor))[2000].text("zh") == "功率"
        assert (
            await labels.labels("88.T/P4", decode_values([{"index": 1001, "type": "TEMPLATE", "data": "NONE"}])) == {}
        )
        assert await labels.labels("88.T/P5", []) == {}
    finally:
        await pool.close()


def test_label_sources_in_order() -> None:
    assert ItemLabel("ratedPower", "额定功率", {"en": "Rated power"}).text("en") == "Rated power"
    assert ItemLabel("ratedPower", "额定功率", {"en": "Rated power"}).text("zh") == "额定功率"
    assert ItemLabel("ratedPower", "额定功率").text("en") == "Rated power"  # Chinese name: the idType spelt out
    assert ItemLabel("ratedPower", "Power (rated)").text("en") == "Power (rated)"
    assert ItemLabel("productionDate").text("zh") == "生产日期"  # a well-known attribute
    assert ItemLabel("x_y").text("zh") == "x_y"


def test_page_language() -> None:
    assert page_language("", ("de", "zh-cn", "en")) == "zh"
    assert page_language("", ("de", "en-gb", "zh")) == "en"
    assert page_language("", ("fr",)) == "en"
    assert page_language("ZH", ("en",)) == "zh"
    assert page_language("xx", ("zh",)) == "zh"


def test_a_class_records_page_names_the_serial_and_its_class() -> None:
    values = decode_values([{"index": 2000, "type": "productName", "data": "Pump CP-40"}])
    args: dict[str, Any] = {"language": "en", "node": "id.example.cn", "allows": lambda _url: True}
    page = product_page("88.1/CP40-SN9", values, None, {}, class_of="88.1/CP40", serial="SN9", **args).body.decode()
    assert "not registered on its own" in page and '<span class="id">88.1/CP40</span>' in page
    assert '<dt>Serial number</dt><dd><span class="id">SN9</span></dd>' in page
    assert '<dt>Product class</dt><dd><a class="id" href="/88.1/CP40">88.1/CP40</a></dd>' in page
    assert 'href="/88.1/CP40?linkType=linkset"' in page  # the data is the class record's
    assert 'href="/88.1/CP40-SN9?noredirect&amp;lang=zh"' in page  # the switch stays on the serial
