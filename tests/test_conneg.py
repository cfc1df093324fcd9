"""resolver/proxy.py's product decision order (research/product-resolvers.md §2) over real HTTP and PostgreSQL.

One test per branch, with exact status, ``Vary``, ``Link`` and ``Content-Type``; the linkset checked against RFC
9264 §4.2's structure; the JSON-LD expanded by a JSON-LD processor (pyld); plain records still answered as
Handle.Net answers them (transcripts F1, F4); typed links and status values checked on write; and
``/.well-known/idnode``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from pyld import jsonld

from resolver import links
from resolver.links import Link
from resolver.pages import HTML_HEADERS
from tests.support import (
    TRANSCRIPT_LANDING,
    TRANSCRIPT_XYZ,
    Node,
    behind_trusted_proxy,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)

HTML = "text/html;charset=UTF-8"
VARY = "Accept, Accept-Language, Origin"
PIP_ZH = Link("gs1:pip", "https://factory.example/p/123", "产品页", "zh", "text/html", True)
PIP_EN = Link("gs1:pip", "https://factory.example/en/p/123", "Product page", "en", "text/html")
SDS = Link("gs1:safetyInfo", "https://factory.example/sds/123.pdf", "SDS", type="application/pdf")
CERT = Link("idnode:qualityCertificate", "https://factory.example/cert/123")
URL_VALUE = "https://factory.example/legacy/123"
PUMP = "88.TEST/PUMP-123"
PUMP_VALUES: list[dict[str, Any]] = [
    {"index": 1, "type": "URL", "data": URL_VALUE},
    {"index": 2, "type": "10320/loc", "data": links.render([PIP_ZH, PIP_EN, SDS, CERT])},
    {"index": 2000, "type": "productName", "data": "离心泵 Centrifugal pump CP-40"},
    {"index": 2001, "type": "model", "data": "CP-40/160"},
    {"index": 2002, "type": "manufacturer", "data": "Example Pump Works"},
    {"index": 2003, "type": "productionDate", "data": "2026-03-14"},
    {"index": 2004, "type": "batchNo", "data": "B-0314"},
    {"index": 2005, "type": "serialNo", "data": "SN-0001"},
]
LINK = (
    f'</{PUMP}?linkType=linkset>; rel="linkset"; type="application/linkset+json", '
    f'</api/handles/{PUMP}>; rel="describedby"; type="application/json"'
)
RECALL = "https://factory.example/recall/2026-07"
NOTICE = "Batch B-0314 may leak: stop using it <now>."


@pytest.fixture
async def pump(node: Node) -> Node:
    await put_record(node.dsn, PUMP, PUMP_VALUES)
    await put_record(node.dsn, "88.TEST/xyz", TRANSCRIPT_XYZ)
    return node


async def _get(node: Node, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    async with node.http.get(node.raw_url(path), allow_redirects=False, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def _negotiated(headers: dict[str, str]) -> None:
    assert headers["Vary"] == VARY
    assert headers["Link"] == LINK
    assert "Access-Control-Allow-Origin" not in headers


async def _cors(node: Node, path: str, **headers: str) -> None:
    """The answer to ``path`` from a script on another origin: the same, plus CORS headers exposing ``Link``."""
    status, _, plain = await _get(node, path, **headers)
    again, _, cors = await _get(node, path, Origin="https://app.example", **headers)
    assert again == status
    assert cors["Access-Control-Allow-Origin"] == "*"
    assert cors["Access-Control-Expose-Headers"] == "Link, Content-Length"
    assert {k: v for k, v in cors.items() if not k.startswith("Access-Control-")} | {"Date": ""} == plain | {"Date": ""}


# --- step 1: syntax, absence, withdrawal ---------------------------------------------------------------------


async def test_bad_syntax_is_a_400_page(pump: Node) -> None:
    status, body, headers = await _get(pump, "/88.TEST%00x", Accept="application/linkset+json")
    assert (status, headers["Content-Type"]) == (400, HTML)
    assert b"Invalid handle" in body


async def test_unknown_handle_is_a_404_page_whatever_is_accepted(pump: Node) -> None:
    status, body, headers = await _get(pump, "/88.TEST/NOPE?linkType=linkset", Accept="application/json")
    assert (status, headers["Content-Type"]) == (404, HTML)
    assert b"cannot be found" in body


async def test_withdrawn_record_is_gone_with_a_tombstone_linking_its_successor(pump: Node) -> None:
    status_value = '{"state": "withdrawn", "notice": "Replaced by <CP-40B>.", "successor": "88.TEST/PUMP-124"}'
    await put_record(
        pump.dsn, "88.TEST/OLD", [*PUMP_VALUES[:2], {"index": 3, "type": "IDNODE_STATUS", "data": status_value}]
    )
    for query, accept in (("", "*/*"), ("?linkType=linkset", "*/*"), ("", "application/json"), ("?noredirect", "*/*")):
        status, body, headers = await _get(pump, "/88.TEST/OLD" + query, Accept=accept)
        assert (status, headers["Content-Type"]) == (410, HTML), query
        assert headers["Link"] == '</88.TEST/PUMP-124>; rel="successor-version"'
        assert "Location" not in headers
        text = body.decode()
        assert "Replaced by &lt;CP-40B&gt;." in text and '<a href="/88.TEST/PUMP-124">' in text


async def test_withdrawn_record_with_a_web_successor_links_it(pump: Node) -> None:
    status_value = '{"state": "withdrawn", "successor": "https://factory.example/新泵"}'
    await put_record(pump.dsn, "88.TEST/OLD2", [{"index": 3, "type": "IDNODE_STATUS", "data": status_value}])
    status, _, headers = await _get(pump, "/88.TEST/OLD2")
    assert (status, headers["Link"]) == (410, '<https://factory.example/%E6%96%B0%E6%B3%B5>; rel="successor-version"')


async def test_the_handle_api_still_serves_a_withdrawn_record(pump: Node) -> None:
    status_value = '{"state": "withdrawn"}'
    await put_record(pump.dsn, "88.TEST/OLD3", [{"index": 3, "type": "IDNODE_STATUS", "data": status_value}])
    status, body, _ = await pump.get("/api/handles/88.TEST/OLD3")
    assert (status, body["values"][0]["data"]["value"]) == (200, status_value)


# --- step 2: the page ------------------------------------------------------------------------------------------


async def test_noredirect_is_the_page_with_the_negotiation_headers(pump: Node) -> None:
    status, body, headers = await _get(pump, f"/{PUMP}?noredirect", Accept="application/json")
    assert (status, headers["Content-Type"]) == (200, HTML)
    _negotiated(headers)
    assert '<h1><span lang="zh">离心泵 Centrifugal pump CP-40</span></h1>' in body.decode()  # the product page


async def test_recalled_page_shows_the_notice_first(pump: Node) -> None:
    status_value = orjson.dumps({"state": "recalled", "notice": NOTICE, "link": RECALL}).decode()
    await put_record(pump.dsn, PUMP, [*PUMP_VALUES, {"index": 3, "type": "IDNODE_STATUS", "data": status_value}])
    status, body, _ = await _get(pump, f"/{PUMP}?noredirect")
    text = body.decode()
    assert status == 200
    notice = text.index("stop using it &lt;now&gt;.")
    assert notice < text.index("<h1>")
    assert f'<a href="{RECALL}" rel="nofollow noopener">' in text


# --- step 3: the linkset ---------------------------------------------------------------------------------------


def _check_rfc9264(document: Any) -> dict[str, Any]:
    """RFC 9264 §4.2: a ``linkset`` array of context objects, each with an ``anchor`` and relation types as keys
    whose values are arrays of target objects with ``href`` and the optional target attributes (``type`` and
    ``title`` strings, ``hreflang`` an array of strings). Returns the one context object."""
    assert set(document) == {"linkset"}
    assert isinstance(document["linkset"], list) and len(document["linkset"]) == 1
    context = document["linkset"][0]
    assert urlsplit(context["anchor"]).scheme in ("http", "https") and urlsplit(context["anchor"]).netloc
    for relation, targets in context.items():
        if relation == "anchor":
            continue
        assert re.fullmatch(r"[a-z][a-z0-9.-]*", relation) or urlsplit(relation).scheme == "https", relation
        assert isinstance(targets, list) and targets
        for target in targets:
            assert isinstance(target["href"], str) and urlsplit(target["href"]).scheme in ("http", "https")
            assert set(target) <= {"href", "type", "title", "hreflang"}
            assert all(isinstance(target.get(name, ""), str) for name in ("type", "title"))
            assert isinstance(target.get("hreflang", []), list)
            assert all(isinstance(tag, str) for tag in target.get("hreflang", []))
    return context


EXPECTED_LINKSET = {
    "anchor": f"{{origin}}/{PUMP}",
    "https://ref.gs1.org/voc/defaultLink": [
        {"href": PIP_ZH.href, "title": "产品页", "type": "text/html", "hreflang": ["zh"]}
    ],
    "https://ref.gs1.org/voc/pip": [
        {"href": PIP_ZH.href, "title": "产品页", "type": "text/html", "hreflang": ["zh"]},
        {"href": PIP_EN.href, "title": "Product page", "type": "text/html", "hreflang": ["en"]},
    ],
    "https://ref.gs1.org/voc/safetyInfo": [{"href": SDS.href, "title": "SDS", "type": "application/pdf"}],
    links.IDNODE_VOCABULARY + "qualityCertificate": [{"href": CERT.href}],
    "describedby": [{"href": f"{{origin}}/api/handles/{PUMP}", "type": "application/json", "title": "Handle record"}],
}


@pytest.mark.parametrize(
    ("query", "accept"),
    [("?linkType=linkset", "*/*"), ("", "application/linkset+json"), ("?linkType=all", "text/html")],
)
async def test_linkset_is_an_rfc9264_document(pump: Node, query: str, accept: str) -> None:
    status, body, headers = await _get(pump, f"/{PUMP}{query}", Accept=accept)
    assert (status, headers["Content-Type"]) == (200, "application/linkset+json")
    assert headers["Vary"] == VARY
    assert headers["Link"].startswith(LINK + ", <https://ref.gs1.org/standards/resolver/linkset-context>")
    context = _check_rfc9264(orjson.loads(body))
    expected = orjson.loads(orjson.dumps(EXPECTED_LINKSET).replace(b"{origin}", pump.url.encode()))
    assert context == expected


async def test_linkset_of_a_plain_record_has_its_url_as_the_default_link(pump: Node) -> None:
    status, body, _ = await _get(pump, "/88.TEST/xyz?linkType=linkset")
    context = _check_rfc9264(orjson.loads(body))
    assert status == 200
    assert context["https://ref.gs1.org/voc/defaultLink"] == [{"href": TRANSCRIPT_LANDING}]


# --- step 4: ?linkType=X ---------------------------------------------------------------------------------------


async def test_link_type_redirects_to_that_link(pump: Node) -> None:
    status, _, headers = await _get(pump, f"/{PUMP}?linkType=gs1:safetyInfo")
    assert (status, headers["Location"]) == (302, SDS.href)
    _negotiated(headers)


async def test_link_type_as_a_uri_and_in_a_language(pump: Node) -> None:
    status, _, headers = await _get(pump, f"/{PUMP}?linkType=https://ref.gs1.org/voc/pip&lang=en-GB")
    assert (status, headers["Location"]) == (302, PIP_EN.href)


async def test_missing_link_type_is_a_404_page(pump: Node) -> None:
    status, body, headers = await _get(pump, f"/{PUMP}?linkType=gs1:epcis")
    assert (status, headers["Content-Type"]) == (404, HTML)
    assert b"No link of type gs1:epcis" in body
    _negotiated(headers)


# --- step 5: data for machines ---------------------------------------------------------------------------------


async def test_json_accept_gets_the_handle_record(pump: Node) -> None:
    status, body, headers = await _get(pump, f"/{PUMP}", Accept="application/json")
    assert (status, headers["Content-Type"]) == (200, "application/json;charset=UTF-8")
    _negotiated(headers)
    _, record, _ = await pump.get(f"/api/handles/{PUMP}")
    assert orjson.loads(body) == record


async def test_json_ld_accept_gets_a_schema_org_product(pump: Node) -> None:
    accept = 'application/ld+json; profile="https://schema.org/", text/html;q=0.5'
    status, body, headers = await _get(pump, f"/{PUMP}", Accept=accept)
    assert (status, headers["Content-Type"]) == (200, "application/ld+json")
    _negotiated(headers)
    document = orjson.loads(body)
    assert document["@context"] == {"@vocab": "https://schema.org/", "url": {"@type": "@id"}}
    [expanded] = jsonld.expand(document)
    schema = "https://schema.org/"
    assert expanded["@id"] == f"{pump.url}/{PUMP}"
    assert expanded["@type"] == [schema + "IndividualProduct"]
    assert expanded[schema + "name"] == [{"@value": "离心泵 Centrifugal pump CP-40"}]
    assert expanded[schema + "model"] == [{"@value": "CP-40/160"}]
    assert expanded[schema + "productionDate"] == [{"@value": "2026-03-14"}]
    assert expanded[schema + "serialNumber"] == [{"@value": "SN-0001"}]
    assert expanded[schema + "identifier"] == [{"@value": PUMP}]
    assert expanded[schema + "url"] == [{"@id": PIP_ZH.href}]
    [maker] = expanded[schema + "manufacturer"]
    assert (maker["@type"], maker[schema + "name"]) == ([schema + "Organization"], [{"@value": "Example Pump Works"}])
    [batch] = expanded[schema + "additionalProperty"]
    assert batch[schema + "propertyID"] == [{"@value": "batchNo"}]
    assert batch[schema + "value"] == [{"@value": "B-0314"}]


# --- step 6: the redirect, by language -------------------------------------------------------------------------

FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    ("path", "language", "target"),
    [
        (f"/{PUMP}", "", PIP_ZH.href),
        (f"/{PUMP}", "en-US,en;q=0.9", PIP_EN.href),
        (f"/{PUMP}", "zh-CN,zh;q=0.9,en;q=0.8", PIP_ZH.href),
        (f"/{PUMP}", "fr", PIP_ZH.href),
        (f"/{PUMP}?lang=en", "zh-CN", PIP_EN.href),
        (f"/{PUMP.lower()}", "en", PIP_EN.href),
    ],
)
async def test_browser_is_redirected_to_the_default_link_in_its_language(
    pump: Node, path: str, language: str, target: str
) -> None:
    status, body, headers = await _get(
        pump, path, Accept=FIREFOX, **({"Accept-Language": language} if language else {})
    )
    assert (status, headers["Location"], headers["Content-Type"]) == (302, target, HTML)
    assert (
        body.decode()
        == f'<html><head><title>Handle Redirect</title></head>\n<body><a href="{target}">{target}</a></body></html>'
    )
    _negotiated(headers)
    assert headers["Expires"].endswith(" GMT")


async def test_head_carries_the_link_header(pump: Node) -> None:
    async with pump.http.head(pump.raw_url(f"/{PUMP}"), allow_redirects=False) as response:
        assert (response.status, response.headers["Link"]) == (302, LINK)
        assert await response.read() == b""


async def test_recalled_record_redirects_to_the_recall_link(pump: Node) -> None:
    status_value = orjson.dumps({"state": "recalled", "notice": NOTICE, "link": RECALL}).decode()
    await put_record(pump.dsn, PUMP, [*PUMP_VALUES, {"index": 3, "type": "IDNODE_STATUS", "data": status_value}])
    status, _, headers = await _get(pump, f"/{PUMP}", **{"Accept-Language": "en"})
    assert (status, headers["Location"]) == (302, RECALL)
    _, body, _ = await _get(pump, f"/{PUMP}?linkType=linkset")
    context = _check_rfc9264(orjson.loads(body))
    assert context["https://ref.gs1.org/voc/recallStatus"] == [{"href": RECALL, "title": NOTICE}]


async def test_record_without_a_default_link_keeps_its_url_target(pump: Node) -> None:
    untyped = links.render([Link("gs1:pip", "https://factory.example/other")])
    await put_record(
        pump.dsn,
        "88.TEST/NODEF",
        [{"index": 1, "type": "URL", "data": URL_VALUE}, {"index": 2, "type": "10320/LOC", "data": untyped}],
    )
    status, _, headers = await _get(pump, "/88.TEST/NODEF")
    assert (status, headers["Location"], headers["Vary"]) == (302, URL_VALUE, VARY)


# --- stock Handle clients: a record without typed links is answered as before ------------------------------------


@pytest.mark.parametrize("accept", ["*/*", "application/json", "application/ld+json", "application/linkset+json"])
async def test_plain_record_answers_as_handle_net_whatever_is_accepted(pump: Node, accept: str) -> None:
    status, _, headers = await _get(pump, "/88.TEST/xyz", Accept=accept, **{"Accept-Language": "zh"})
    assert (status, headers["Location"]) == (302, TRANSCRIPT_LANDING)
    assert set(headers) == {*HTML_HEADERS, "Location", "Expires", "Content-Length", "Date", "Server"}


async def test_unparseable_links_leave_a_record_plain(pump: Node) -> None:
    values = [{"index": 1, "type": "URL", "data": URL_VALUE}, {"index": 2, "type": "10320/loc", "data": "<oops"}]
    await put_record(pump.dsn, "88.TEST/BADLOC", values)
    status, _, headers = await _get(pump, "/88.TEST/BADLOC", Accept="application/json")
    assert (status, headers["Location"], "Vary" in headers) == (302, URL_VALUE, False)


# --- the description -------------------------------------------------------------------------------------------


async def test_well_known_describes_the_resolver(pump: Node) -> None:
    status, body, response = await pump.get("/.well-known/idnode")
    assert (status, response.headers["Access-Control-Allow-Origin"]) == (200, "*")
    assert body["resolverRoot"] == pump.url
    assert body["homedPrefixes"] == ["88.TEST"]
    assert body["activeLinkTypes"]["zh"]["gs1:pip"] == {"title": "产品信息页", "uri": "https://ref.gs1.org/voc/pip"}
    assert body["activeLinkTypes"]["en"]["idnode:qualityCertificate"]["title"] == "Certificate of conformity (factory)"
    assert body["supportedLinkType"][0] == {"prefix": "gs1:", "namespace": "https://ref.gs1.org/voc/"}
    assert body["languages"] == ["zh", "en"]
    assert body["lifecycleStates"] == ["active", "recalled", "withdrawn"]
    assert (body["api"], body["openapi"]) == (pump.url + "/api/handles/", pump.url + "/api/openapi.json")
    assert body["upstream"] == []


# --- the write path checks both value types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            {"type": "10320/loc", "data": '<locations><location href="javascript:alert(1)"/></locations>'},
            "http or https",
        ),
        ({"type": "10320/loc", "data": "<!DOCTYPE x><locations/>"}, "DOCTYPE"),
        ({"type": "IDNODE_STATUS", "data": '{"state": "recalled"}'}, "needs a link"),
        ({"type": "idnode_status", "data": {"format": "base64", "value": "AAEC"}}, "must be text"),
    ],
)
async def test_writes_of_values_the_proxy_cannot_serve_are_refused(
    database: str, value: dict[str, Any], problem: str
) -> None:
    enterprise = await onboard_enterprise(database, "88.A")
    headers = {**secure_basic(enterprise.identity, enterprise.secret), "Content-Type": "application/json"}
    async with running_node(database, behind_trusted_proxy()) as node:
        body = orjson.dumps({"values": [{"index": 1, "type": "URL", "data": URL_VALUE}, {"index": 2, **value}]})
        status, answer, _ = await node.call("PUT", "/api/handles/88.A/X", data=body, headers=headers)
        assert (status, answer["responseCode"]) == (400, 202)
        assert problem in answer["message"]
        good = orjson.dumps({"values": PUMP_VALUES[:2]})
        status, answer, _ = await node.call("PUT", "/api/handles/88.A/X", data=good, headers=headers)
        assert status == 201, answer
        status, _, response = await node.get("/88.A/X")
        assert (status, response.headers["Location"]) == (302, PIP_ZH.href)


async def test_a_links_array_in_a_put_body_becomes_the_10320_loc_value(database: str) -> None:
    enterprise = await onboard_enterprise(database, "88.A")
    headers = {**secure_basic(enterprise.identity, enterprise.secret), "Content-Type": "application/json"}
    given = [link.to_json() for link in (PIP_ZH, PIP_EN, SDS)]
    async with running_node(database, behind_trusted_proxy()) as node:
        body = orjson.dumps({"values": [{"index": 1, "type": "URL", "data": URL_VALUE}], "links": given})
        status, answer, _ = await node.call("PUT", "/api/handles/88.A/L", data=body, headers=headers)
        assert status == 201, answer
        _, record, _ = await node.get("/api/handles/88.A/L")
        [value] = [v for v in record["values"] if v["index"] == 1000]
        assert (value["type"], value["data"]["value"]) == ("10320/loc", links.render([PIP_ZH, PIP_EN, SDS]))
        _, linkset, _ = await node.get("/88.A/L?linkType=linkset")
        pips = orjson.loads(linkset)["linkset"][0]["https://ref.gs1.org/voc/pip"]
        assert [p["href"] for p in pips] == [PIP_ZH.href, PIP_EN.href]
        bad = orjson.dumps({"values": [], "links": [{"rel": "gs1:pip", "href": "javascript:alert(1)"}]})
        status, answer, _ = await node.call("PUT", "/api/handles/88.A/L", data=bad, headers=headers)
        assert (status, answer["responseCode"]) == (400, 202)
        assert answer["message"].startswith("links: link href")


@pytest.mark.parametrize(
    ("query", "accept"),
    [("", "*/*"), ("?linkType=linkset", "*/*"), ("", "application/json"), ("?noredirect", "*/*"), ("", FIREFOX)],
)
async def test_a_script_on_another_origin_may_read_the_link_header(pump: Node, query: str, accept: str) -> None:
    await _cors(pump, f"/{PUMP}{query}", Accept=accept)


async def test_language_choices_are_remembered_per_header_not_mixed_up(pump: Node) -> None:
    sequence = [("en", PIP_EN), ("zh-CN", PIP_ZH), ("en", PIP_EN), ("de, en;q=0.5", PIP_EN), ("de", PIP_ZH)]
    for language, link in sequence * 2:
        _, _, headers = await _get(pump, f"/{PUMP}", **{"Accept-Language": language})
        assert headers["Location"] == link.href, language
