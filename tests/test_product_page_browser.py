"""The product page (resolver/product_page.py) as headless Chromium lays it out, on a 390-px phone and a 1366-px
desktop, in English and Chinese (tests/chromium.py drives the browser over the DevTools protocol).

Checked in the browser: no horizontal scroll (``scrollingElement.scrollWidth <= innerWidth``), even with a long
identifier and URL; no normal word broken across lines (each Latin word's ``Range.getClientRects()`` on one line;
identifiers and URLs, ``.id``/``.u``, and runs of more than 30 characters without a blank may wrap anywhere, and
Chinese may break between characters, as it does);
every button and the language switch visible, inside the viewport, at least 44 px tall and in a legible size (no
zooming needed); the technical details closed; no script in the page, no ``javascript:`` link, even from hostile
values. Without Chromium the tests fail and say how to install it (``tests.chromium.chromium_path``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from registry.demo import DEMO_PREFIX
from resolver import links
from resolver.links import Link
from tests.chromium import Browser, launch
from tests.support import Node, fresh_database, load_demo_data, put_record, running_node

PUMP = f"{DEMO_PREFIX}/PUMP-2026-000123"
LONG = f"{DEMO_PREFIX}/LONG-" + "X" * 120
HOSTILE = "<script>document.title='owned'</script>\"><b onmouseover=alert(1)>"

_MEASURE = """(() => {
  const words = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('.id, .u, details, title, style')) continue;
    for (const token of node.data.matchAll(/(?<!\\S)\\S{1,30}(?!\\S)/g)) {
      for (const match of token[0].matchAll(/[A-Za-z0-9]+/g)) {
        const range = document.createRange();
        range.setStart(node, token.index + match.index);
        range.setEnd(node, token.index + match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) words.push(match[0]);
      }
    }
  }
  const targets = [...document.querySelectorAll('a.b, nav a, .n a')].map(a => {
    const r = a.getBoundingClientRect();
    return {text: a.textContent.trim(), left: r.left, right: r.right, height: r.height, width: r.width,
            font: parseFloat(getComputedStyle(a).fontSize), visible: getComputedStyle(a).visibility === 'visible'};
  });
  return {
    scrollWidth: document.scrollingElement.scrollWidth, innerWidth: innerWidth, broken: words,
    targets: targets, buttons: document.querySelectorAll('a.b').length,
    lang: document.documentElement.lang, foldOpen: document.querySelector('details')?.open,
    scripts: document.querySelectorAll('script').length,
    scriptLinks: [...document.querySelectorAll('a')].filter(a => /^\\s*javascript:/i.test(a.href)).length,
    title: document.title,
    bodyFont: parseFloat(getComputedStyle(document.querySelector('dd') || document.body).fontSize),
  };
})()"""


@pytest.fixture(scope="module")
async def demo(server_dsn: str, template_database: str) -> AsyncIterator[Node]:
    """The demo node, plus a record with a long identifier and URL and one full of hostile values."""
    async with fresh_database(server_dsn, template_database) as dsn:
        await load_demo_data(dsn)
        long_link = Link("gs1:pip", "https://example.com/" + "very-long-path-segment/" * 12 + "end", "Product page")
        await put_record(
            dsn,
            LONG,
            [
                {"index": 2, "type": "10320/loc", "data": links.render([long_link])},
                {"index": 2000, "type": "productName", "data": "Pump with an identifier of 120 characters"},
                {"index": 2001, "type": "serialNo", "data": "SN" + "0123456789" * 10},
                {"index": 2002, "type": "site", "data": "https://example.com/" + "x" * 200},
            ],
        )
        await put_record(dsn, "88.888.1/PLAIN", [{"index": 3, "type": "NOTE", "data": "Centrifugal pumps " * 12}])
        hostile = Link("gs1:pip", "https://example.com/p", HOSTILE, "en")
        await put_record(
            dsn,
            f"{DEMO_PREFIX}/EVIL",
            [
                {"index": 1, "type": "URL", "data": "javascript:alert(1)"},
                {"index": 2, "type": "10320/loc", "data": links.render([hostile])},
                {"index": 2000, "type": "productName", "data": HOSTILE},
                {"index": 2001, "type": HOSTILE, "data": HOSTILE},
                {"index": 2002, "type": "site", "data": "javascript:alert(1)"},
            ],
        )
        async with running_node(dsn) as node:
            yield node


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch() as running:
        yield running


async def _measure(browser: Browser, url: str, width: int, language: str | None = None) -> dict[str, Any]:
    async with browser.tab() as tab:
        await tab.open(url, width, language=language)
        return await tab.evaluate(_MEASURE)


def _check_layout(found: dict[str, Any], width: int) -> None:
    assert found["innerWidth"] == width
    assert found["scrollWidth"] <= found["innerWidth"], found
    assert found["broken"] == [], found["broken"]
    assert found["targets"], found
    for target in found["targets"]:
        assert target["visible"] and target["width"] > 0, target
        assert target["left"] >= 0 and target["right"] <= width, target
        assert target["height"] >= 44, target
        assert target["font"] >= 14, target
    assert found["bodyFont"] >= 16
    assert found["foldOpen"] is False
    assert (found["scripts"], found["scriptLinks"]) == (0, 0)


@pytest.mark.parametrize("width", [390, 1366])
@pytest.mark.parametrize(
    ("query", "header", "lang"), [("", "en-GB", "en"), ("", "zh-CN,zh", "zh-CN"), ("&lang=zh", "en", "zh-CN")]
)
async def test_the_demo_page_lays_out(
    demo: Node, browser: Browser, width: int, query: str, header: str, lang: str
) -> None:
    found = await _measure(browser, f"{demo.url}/{PUMP}?noredirect{query}", width, header)
    assert found["lang"] == lang
    _check_layout(found, width)
    assert found["buttons"] == 5  # product page, manual, data sheet, certificate, service, in the page's language


@pytest.mark.parametrize("width", [390, 1366])
async def test_long_identifiers_and_urls_wrap_without_a_horizontal_scroll(
    demo: Node, browser: Browser, width: int
) -> None:
    _check_layout(await _measure(browser, f"{demo.url}/{LONG}?noredirect", width), width)


@pytest.mark.parametrize("width", [390, 1366])
async def test_hostile_values_stay_text_in_the_browser(demo: Node, browser: Browser, width: int) -> None:
    found = await _measure(browser, f"{demo.url}/{DEMO_PREFIX}/EVIL?noredirect", width)
    _check_layout(found, width)
    assert found["title"] == HOSTILE  # the escaped text, shown as text: the script never ran


async def test_the_word_check_sees_the_breaks_of_the_old_values_page(demo: Node, browser: Browser) -> None:
    """The check can fail: Handle.Net's values page (a plain record's, kept as it was) breaks words anywhere."""
    found = await _measure(browser, f"{demo.url}/88.888.1/PLAIN?noredirect", 390)
    assert found["broken"], found
