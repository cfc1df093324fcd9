"""resolver/proxy.py: ``GET /{handle}`` redirects and pages over real HTTP against a real database.

Case names (F1–F5) refer to research/handle9-transcripts.md; §5 to research/handle-rest-api.md.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.support import TRANSCRIPT_ADMIN, TRANSCRIPT_LANDING, TRANSCRIPT_XYZ, Node, put_record

HTML = "text/html;charset=UTF-8"
LANDING = TRANSCRIPT_LANDING
XYZ = [{**TRANSCRIPT_XYZ[0], "ttl": 3600}, *TRANSCRIPT_XYZ[1:]]
ADMIN = TRANSCRIPT_ADMIN
HIDDEN_URL = {"index": 1, "type": "URL", "data": "https://intranet.example.org/secret", "permissions": "1100"}
"""A URL value only the record's admin may read."""


@pytest.fixture
async def xyz(node: Node) -> Node:
    await put_record(node.dsn, "88.TEST/xyz", XYZ)
    await put_record(node.dsn, "88.TEST/ADMIN", ADMIN)
    return node


async def _get(node: Node, path: str, **kwargs: Any) -> tuple[int, str, dict[str, str], list[bytes]]:
    """Status, body text, headers, and the raw header names exactly as received."""
    async with node.http.get(node.raw_url(path), allow_redirects=False, **kwargs) as response:
        body = (await response.read()).decode("utf-8")
        names = [name for name, _ in response.raw_headers]
        return response.status, body, dict(response.headers), names


def _redirect_body(target: str) -> str:
    return f'<html><head><title>Handle Redirect</title></head>\n<body><a href="{target}">{target}</a></body></html>'


async def _store_and_get(
    node: Node, handle: str, values: list[dict[str, Any]], query: str = ""
) -> tuple[int, str, dict[str, str], list[bytes]]:
    """Store ``values`` as ``handle`` and GET it through the proxy, ``query`` appended; as ``_get``."""
    await put_record(node.dsn, handle, values)
    return await _get(node, f"/{handle}{query}")


# --- redirects ----------------------------------------------------------------------------------------------


async def test_f1_handle_with_a_url_redirects_to_it_with_a_tiny_page(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/88.TEST/xyz")
    assert status == 302
    assert headers["Location"] == LANDING
    assert headers["Content-Type"] == HTML
    assert body.rstrip("\n") == _redirect_body(LANDING)


async def test_f1_expires_is_now_plus_the_url_values_ttl(xyz: Node) -> None:
    _, _, headers, _ = await _get(xyz, "/88.TEST/xyz")
    expires = parsedate_to_datetime(headers["Expires"]).timestamp()
    assert abs(expires - (time.time() + 3600)) < 120
    assert headers["Expires"].endswith(" GMT")


async def test_f4_json_accept_header_still_redirects(xyz: Node) -> None:
    status, _, headers, _ = await _get(xyz, "/88.TEST/xyz", headers={"Accept": "application/json"})
    assert status == 302
    assert headers["Location"] == LANDING


async def test_other_spelling_redirects_too(xyz: Node) -> None:
    status, _, headers, _ = await _get(xyz, "/88.test/XYZ")
    assert (status, headers["Location"]) == (302, LANDING)


@pytest.mark.parametrize(
    "path",
    [
        "/hdl:88.TEST/xyz",
        "/HDL:88.TEST/xyz",
        "/doi:88.TEST/xyz",
        "/info:hdl/88.TEST/xyz",
        "/info:doi/88.TEST/xyz",
        "/urn:hdl:88.TEST:xyz",
        "/URN:HDL:88.TEST:xyz",
        "/hdl%3A88.TEST%2Fxyz",
    ],
)
async def test_scheme_prefixes_are_stripped_before_resolving(xyz: Node, path: str) -> None:
    status, _, headers, _ = await _get(xyz, path)
    assert (status, headers.get("Location")) == (302, LANDING)


async def test_urlappend_is_appended_to_the_target(xyz: Node) -> None:
    status, _, headers, _ = await _get(xyz, "/88.TEST/xyz?urlappend=/manual.pdf")
    assert (status, headers["Location"]) == (302, LANDING + "/manual.pdf")


async def test_url_subtype_is_the_target_when_there_is_no_url(node: Node) -> None:
    status, _, headers, _ = await _store_and_get(
        node,
        "88.TEST/mobile",
        [
            {"index": 1, "type": "EMAIL", "data": "a@example.org"},
            {"index": 2, "type": "URL.mobile", "data": "https://m.example.org/x"},
            {"index": 3, "type": "URL.print", "data": "https://print.example.org/x"},
        ],
    )
    assert (status, headers["Location"]) == (302, "https://m.example.org/x")


async def test_plain_url_wins_over_an_earlier_url_subtype(node: Node) -> None:
    status, _, headers, _ = await _store_and_get(
        node,
        "88.TEST/both",
        [
            {"index": 1, "type": "URL.mobile", "data": "https://m.example.org/x"},
            {"index": 2, "type": "url", "data": "https://www.example.org/x"},
        ],
    )
    assert (status, headers["Location"]) == (302, "https://www.example.org/x")


async def test_redirect_page_escapes_the_target(node: Node) -> None:
    status, body, headers, _ = await _store_and_get(
        node, "88.TEST/amp", [{"index": 1, "type": "URL", "data": "https://e.org/p?a=1&b=2"}]
    )
    assert (status, headers["Location"]) == (302, "https://e.org/p?a=1&b=2")
    assert 'href="https://e.org/p?a=1&amp;b=2"' in body


# --- Location is always a safe header -------------------------------------------------------------------------


async def test_crlf_in_a_url_value_is_percent_encoded_and_adds_no_header(node: Node) -> None:
    evil = "https://example.org/a b\r\nSet-Cookie: stolen=1\r\nX-Injected: yes"
    status, body, headers, names = await _store_and_get(
        node, "88.TEST/crlf", [{"index": 1, "type": "URL", "data": evil}]
    )
    assert status == 302
    assert headers["Location"] == "https://example.org/a%20b%0D%0ASet-Cookie:%20stolen=1%0D%0AX-Injected:%20yes"
    lowered = [name.lower() for name in names]
    assert b"set-cookie" not in lowered and b"x-injected" not in lowered
    assert "\r" not in body and "\nSet-Cookie" not in body


async def test_non_ascii_spaces_and_quotes_in_a_url_are_percent_encoded(node: Node) -> None:
    url = 'https://example.org/产品/é x"<y>'
    status, body, headers, _ = await _store_and_get(node, "88.TEST/iri", [{"index": 1, "type": "URL", "data": url}])
    assert status == 302
    assert headers["Location"] == "https://example.org/%E4%BA%A7%E5%93%81/%C3%A9%20x%22%3Cy%3E"
    assert "<y>" not in body


# --- pages ----------------------------------------------------------------------------------------------------


async def test_f2_noredirect_shows_the_values_as_a_page(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/88.TEST/xyz?noredirect")
    assert status == 200
    assert headers["Content-Type"] == HTML
    assert "Location" not in headers
    assert "Handle Values for: 88.TEST/xyz" in body
    assert f'<a href="{LANDING}"' in body
    assert 'href="mailto:curator@example.org"' in body
    assert "custom payload" in body and "88.TEST/CUSTOM" in body
    assert "handle=88.TEST/ADMIN; index=300" in body


@pytest.mark.parametrize("query", ["noredirect=true", "action=showvalues", "noredirect=yes"])
async def test_other_ways_of_asking_for_the_page_show_it(xyz: Node, query: str) -> None:
    status, body, _, _ = await _get(xyz, f"/88.TEST/xyz?{query}")
    assert status == 200
    assert "Handle Values for: 88.TEST/xyz" in body


async def test_type_filter_without_a_url_shows_the_page_of_matching_values(xyz: Node) -> None:
    status, body, _, _ = await _get(xyz, "/88.TEST/xyz?type=EMAIL")
    assert status == 200
    assert "curator@example.org" in body
    assert LANDING not in body


async def test_page_escapes_markup_in_values(node: Node) -> None:
    status, body, _, _ = await _store_and_get(
        node,
        "88.TEST/xss",
        [
            {"index": 1, "type": "DESC", "data": "<script>alert(1)</script>"},
            {"index": 2, "type": "<b>TYPE</b>", "data": "x"},
            {"index": 3, "type": "URL", "data": 'https://e.org/"><script>alert(2)</script>'},
        ],
        "?noredirect",
    )
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;b&gt;TYPE&lt;/b&gt;" in body
    assert "<script" not in body
    assert "<b>TYPE" not in body


async def test_page_links_only_http_urls(node: Node) -> None:
    status, body, _, _ = await _store_and_get(
        node, "88.TEST/js", [{"index": 1, "type": "URL", "data": "javascript:alert(1)"}], "?noredirect"
    )
    assert status == 200
    assert "javascript:alert(1)" in body
    assert 'href="javascript:' not in body


async def test_f5_handle_without_a_url_shows_its_page(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/88.TEST/ADMIN")
    assert status == 200
    assert headers["Content-Type"] == HTML
    assert "Handle Values for: 88.TEST/ADMIN" in body
    assert "HS_ADMIN" in body


async def test_hidden_values_never_appear_on_the_page(xyz: Node) -> None:
    for path in (
        "/88.TEST/ADMIN",
        "/88.TEST/ADMIN?noredirect",
        "/88.test/admin?index=300",
        "/88.TEST/ADMIN?type=HS_SECKEY",
    ):
        status, body, _, _ = await _get(xyz, path)
        assert status == 200
        assert "hdl-test-secret" not in body
        assert "HS_SECKEY" not in body


async def test_hidden_url_is_never_the_redirect_target(node: Node) -> None:
    status, body, headers, _ = await _store_and_get(
        node, "88.TEST/hidden", [HIDDEN_URL, {"index": 2, "type": "URL", "data": "https://www.example.org/public"}]
    )
    assert (status, headers["Location"]) == (302, "https://www.example.org/public")
    _, body, _, _ = await _get(node, "/88.TEST/hidden?noredirect")
    assert "intranet" not in body


async def test_record_whose_only_url_is_hidden_shows_a_page_without_it(node: Node) -> None:
    status, body, headers, _ = await _store_and_get(
        node, "88.TEST/onlyhidden", [HIDDEN_URL, {"index": 2, "type": "DESC", "data": "public description"}]
    )
    assert status == 200
    assert "Location" not in headers
    assert "public description" in body
    assert "intranet" not in body


async def test_f3_missing_handle_is_a_404_page(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/88.TEST/doesnotexist")
    assert status == 404
    assert headers["Content-Type"] == HTML
    assert "Not Found" in body and "88.TEST/doesnotexist" in body


async def test_missing_handle_with_a_scheme_is_a_404_page(xyz: Node) -> None:
    status, body, _, _ = await _get(xyz, "/hdl:88.TEST/doesnotexist")
    assert status == 404
    assert "88.TEST/doesnotexist" in body


async def test_not_found_page_escapes_the_handle(xyz: Node) -> None:
    status, body, _, _ = await _get(xyz, "/88.TEST/%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script" not in body


async def test_foreign_prefix_is_an_html_error_page(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/99.NOPE/x")
    assert status == 400
    assert headers["Content-Type"] == HTML
    assert "doesn" in body and "live here" in body


@pytest.mark.parametrize("path", ["/88.TEST/%ZZ", "/88.TEST/%C3%28", "/88.TEST/a%0D%0Ab"])
async def test_invalid_handle_is_a_400_page(xyz: Node, path: str) -> None:
    status, body, headers, _ = await _get(xyz, path)
    assert status == 400
    assert headers["Content-Type"] == HTML
    assert "Invalid handle" in body


async def test_favicon_is_not_looked_up(xyz: Node) -> None:
    status, _, _, _ = await _get(xyz, "/favicon.ico")
    assert status == 404


async def test_home_page_is_html(xyz: Node) -> None:
    status, body, headers, _ = await _get(xyz, "/")
    assert status == 200
    assert headers["Content-Type"] == HTML
    assert body.startswith("<!DOCTYPE html>")
    assert "<script" not in body
