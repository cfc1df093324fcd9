"""resolver/proxy.py: ``GET /{handle}`` redirects and pages over real HTTP against a real database.

Case names (F1–F5) refer to research/handle9-transcripts.md; §5 to research/handle-rest-api.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from resolver.answers import Redirects
from resolver.config import Settings, load_settings
from resolver.errors import ConfigError
from tests.support import TRANSCRIPT_ADMIN, TRANSCRIPT_LANDING, TRANSCRIPT_XYZ, Node, home, put_record, running_node

HTML = "text/html;charset=UTF-8"
LANDING = TRANSCRIPT_LANDING
XYZ = [{**TRANSCRIPT_XYZ[0], "ttl": 3600}, *TRANSCRIPT_XYZ[1:]]
ADMIN = TRANSCRIPT_ADMIN
M_URL = "https://m.example.org/x"
WWW_URL = "https://www.example.org/x"
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


async def test_a_redirect_answered_again_in_a_later_second_gets_a_later_expires(xyz: Node) -> None:
    """The proxy keeps a redirect's headers for the rest of the second: a later second must not reuse them."""
    _, _, first, _ = await _get(xyz, "/88.TEST/xyz")
    await asyncio.sleep(1.1)
    _, body, second, _ = await _get(xyz, "/88.TEST/xyz")
    assert parsedate_to_datetime(second["Expires"]) > parsedate_to_datetime(first["Expires"])
    assert second["Location"] == first["Location"] == LANDING
    assert body.rstrip("\n") == _redirect_body(LANDING)


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


# --- what may be a target: http(s) and the configured schemes (issue 8) --------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "ftp://files.example.org/manual.pdf",
        "//evil.example/",
        "",
    ],
)
async def test_url_that_is_not_http_is_shown_as_text_not_redirected_to(node: Node, url: str) -> None:
    status, body, headers, _ = await _store_and_get(node, "88.TEST/notweb", [{"index": 1, "type": "URL", "data": url}])
    assert status == 200
    assert "Location" not in headers
    assert "Handle Values for: 88.TEST/notweb" in body
    assert "<a href" not in body


async def test_filtered_answer_with_only_a_script_url_shows_the_page(node: Node) -> None:
    status, body, headers, _ = await _store_and_get(
        node, "88.TEST/jsfilter", [{"index": 1, "type": "URL", "data": "javascript:alert(1)"}], "?type=URL"
    )
    assert (status, "Location" in headers) == (200, False)
    assert 'href="javascript' not in body


async def test_configured_scheme_is_a_redirect_target_and_a_link(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/ftp", [{"index": 1, "type": "URL", "data": "ftp://files.example.org/m.pdf"}])
    async with running_node(database, Settings(redirect_schemes=("ftp",))) as node:
        status, _, headers, _ = await _get(node, "/88.TEST/ftp")
        assert (status, headers["Location"]) == (302, "ftp://files.example.org/m.pdf")
        _, body, _, _ = await _get(node, "/88.TEST/ftp?noredirect")
        assert '<a href="ftp://files.example.org/m.pdf"' in body


@pytest.mark.parametrize("scheme", ["javascript", "DATA", "vbscript", "file", "not a scheme"])
def test_script_schemes_cannot_be_configured_as_redirect_targets(scheme: str) -> None:
    with pytest.raises(
        ConfigError, match=r"REDIRECT_SCHEMES=.* is invalid; expected comma-separated URL schemes, never javascript"
    ):
        load_settings(environ={"IDNODE_REDIRECT_SCHEMES": f"ftp,{scheme}"})
    with pytest.raises(ValueError, match="redirects"):
        Redirects([scheme])


def test_redirect_schemes_setting_is_a_lower_cased_list() -> None:
    settings = load_settings(environ={"IDNODE_REDIRECT_SCHEMES": "FTP, gopher"})
    assert settings.redirect_schemes == ("ftp", "gopher")


# --- urlappend stays on the target's scheme and host (issue 8) -------------------------------------------------


HOSTILE_APPENDS = [
    "//evil.example/",
    "%2F%2Fevil.example%2F",
    "@evil.example/",
    ".evil.example/",
    ":8443@evil.example/",
    "%5C%5Cevil.example/",
    "%40evil.example",
    "%0D%0ALocation:%20https://evil.example/",
]


@pytest.mark.parametrize("urlappend", HOSTILE_APPENDS)
@pytest.mark.parametrize("target", ["https://www.example.org", "https://www.example.org/p?q=1"])
async def test_urlappend_never_leaves_the_targets_scheme_and_host(node: Node, target: str, urlappend: str) -> None:
    await put_record(node.dsn, "88.TEST/bare", [{"index": 1, "type": "URL", "data": target}])
    status, _, headers, _ = await _get(node, f"/88.TEST/bare?urlappend={urlappend}")
    assert status == 302
    assert headers["Location"].startswith(target)
    assert urlsplit(headers["Location"])[:2] == ("https", "www.example.org")


@pytest.mark.parametrize("urlappend", ["@evil.example/", ".evil.example/", "%5C%5Cevil.example/"])
async def test_urlappend_that_would_change_the_host_is_ignored(node: Node, urlappend: str) -> None:
    await put_record(node.dsn, "88.TEST/bare", [{"index": 1, "type": "URL", "data": "https://www.example.org"}])
    status, _, headers, _ = await _get(node, f"/88.TEST/bare?urlappend={urlappend}")
    assert (status, headers["Location"]) == (302, "https://www.example.org")


async def test_urlappend_on_a_handle_with_an_empty_url_redirects_nowhere(node: Node) -> None:
    status, _, headers, _ = await _store_and_get(
        node, "88.TEST/empty", [{"index": 1, "type": "URL", "data": ""}], "?urlappend=//evil.example/"
    )
    assert status == 200
    assert "Location" not in headers


@pytest.mark.parametrize(
    ("urlappend", "location"),
    [("/manual.pdf", "/manual.pdf"), ("%3Flang%3Dzh", "?lang=zh"), ("%23specs", "#specs")],
)
async def test_urlappend_on_the_same_host_is_kept(node: Node, urlappend: str, location: str) -> None:
    await put_record(node.dsn, "88.TEST/bare", [{"index": 1, "type": "URL", "data": "https://www.example.org"}])
    status, _, headers, _ = await _get(node, f"/88.TEST/bare?urlappend={urlappend}")
    assert (status, headers["Location"]) == (302, "https://www.example.org" + location)


def _url(index: int, kind: str, url: str) -> dict[str, Any]:
    return {"index": index, "type": kind, "data": url}


@pytest.mark.parametrize(
    ("values", "target"),
    [
        pytest.param(
            [_url(1, "EMAIL", "a@example.org"), _url(2, "URL.mobile", M_URL), _url(3, "URL.print", "https://p.org/x")],
            M_URL,
            id="url-subtype-when-there-is-no-url",
        ),
        pytest.param([_url(1, "URL.mobile", M_URL), _url(2, "url", WWW_URL)], WWW_URL, id="url-wins-over-subtype"),
        pytest.param(
            [_url(1, "URL", "javascript:alert(1)"), _url(2, "URL", WWW_URL)], WWW_URL, id="first-web-url-wins"
        ),
        pytest.param(
            [_url(1, "URL", "data:text/html,x"), _url(2, "URL.mobile", M_URL)], M_URL, id="web-subtype-over-data-url"
        ),
    ],
)
async def test_target_is_the_first_web_url_else_the_first_web_url_subtype(
    node: Node, values: list[dict[str, Any]], target: str
) -> None:
    status, _, headers, _ = await _store_and_get(node, "88.TEST/target", values)
    assert (status, headers["Location"]) == (302, target)


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


# --- the home page's form (issue 8) ----------------------------------------------------------------------------


async def test_home_page_has_a_form_that_resolves_with_a_plain_get(xyz: Node) -> None:
    _, body, _, _ = await _get(xyz, "/")
    form = re.search(r"<form[^>]*>.*?</form>", body, re.S)
    assert form is not None
    assert 'action="/"' in form.group() and 'method="get"' in form.group()
    assert 'name="hdl"' in form.group() and 'name="noredirect"' in form.group()


@pytest.mark.parametrize("hdl", ["88.TEST/xyz", "88.test%2Fxyz", "hdl%3A88.TEST%2Fxyz", "+88.TEST/xyz+"])
async def test_form_submission_redirects_like_the_handles_own_path(xyz: Node, hdl: str) -> None:
    status, _, headers, _ = await _get(xyz, f"/?hdl={hdl}")
    assert (status, headers["Location"]) == (302, LANDING)


@pytest.mark.parametrize(
    ("query", "status", "shown"),
    [
        ("hdl=88.TEST/xyz&noredirect=true", 200, "Handle Values for: 88.TEST/xyz"),
        ("hdl=88.TEST/nope", 404, "88.TEST/nope"),
        ("hdl=+", 200, "<form"),
    ],
    ids=["noredirect-shows-values", "unknown-handle-404-page", "empty-shows-the-form"],
)
async def test_form_submission_shows_the_page_the_handles_path_would(
    xyz: Node, query: str, status: int, shown: str
) -> None:
    got, body, headers, _ = await _get(xyz, f"/?{query}")
    assert (got, headers["Content-Type"]) == (status, HTML)
    assert shown in body


# --- security headers on every HTML answer (issue 8) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/88.TEST/xyz", 302),
        ("/88.test/xyz?urlappend=/x", 302),
        ("/88.TEST/xyz?noredirect", 200),
        ("/88.TEST/nope", 404),
        ("/99.NOPE/x", 400),
        ("/88.TEST/%ZZ", 400),
        ("/?hdl=88.TEST/xyz", 302),
    ],
)
async def test_every_html_answer_forbids_sniffing_scripts_and_referrers(xyz: Node, path: str, status: int) -> None:
    got, body, headers, _ = await _get(xyz, path)
    assert got == status
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "script-src" not in policy and "unsafe-inline" not in policy["style-src"]
    for style in re.findall(r"<style>(.*?)</style>", body, re.S):
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert policy["style-src"] == f"'sha256-{digest}'"
