"""resolver/classes.py and the proxy's class fallback (issue 13 item 4) over real HTTP and PostgreSQL.

An unregistered serial matching a class record's ``IDNODE_CLASS_PATTERN`` is answered by the proxy from the class
(302, page, linkset, JSON-LD), marked class-level; the Handle API keeps answering 404 rc 100 for it. Patterns are
checked on every write path (PUT, batch, import) and indexed by the triggers of schema 0014, whatever wrote them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
import pytest
from pyld import jsonld

from resolver import links
from resolver.classes import ClassIndex, ClassRow, PatternError, parse_pattern
from resolver.links import Link
from tests.support import (
    Node,
    behind_trusted_proxy,
    delete_record,
    eventually,
    home,
    import_records,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)

CLASS = "88.TEST/PUMP-CP40"
SERIAL = "88.TEST/PUMP-CP40-000123"
PIP = Link("gs1:pip", "https://factory.example/cp40", "Product page", "en", "text/html", True)
SDS = Link("gs1:safetyInfo", "https://factory.example/cp40/sds.pdf", "SDS", type="application/pdf")
CLASS_VALUES: list[dict[str, Any]] = [
    {"index": 1, "type": "URL", "data": "https://factory.example/legacy/cp40"},
    {"index": 2, "type": "10320/loc", "data": links.render([PIP, SDS])},
    {"index": 3, "type": "IDNODE_CLASS_PATTERN", "data": "PUMP-CP40-{serial:digits:6}"},
    {"index": 2000, "type": "productName", "data": "Centrifugal pump CP-40"},
    {"index": 2001, "type": "manufacturer", "data": "Example Pump Works"},
]
CLASS_LINK = (
    f'</{SERIAL}?linkType=linkset>; rel="linkset"; type="application/linkset+json", </{CLASS}>; rel="collection"'
)


@pytest.fixture
async def pumps(node: Node) -> Node:
    await put_record(node.dsn, CLASS, CLASS_VALUES)
    await eventually(lambda: _matches(node, SERIAL))
    return node


async def _matches(node: Node, path: str) -> bool:
    status, _, _ = await node.get("/" + path)
    return status == 302


async def _get(node: Node, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    async with node.http.get(node.raw_url(path), allow_redirects=False, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def test_a_pattern_holds_one_placeholder_with_optional_charset_and_length() -> None:
    pattern = parse_pattern("88.test/pump-{serial:alnum:4-8}.A", "88.TEST")
    assert (pattern.head, pattern.tail, pattern.charset) == ("PUMP-", ".A", "alnum")
    assert (pattern.min_length, pattern.max_length) == (4, 8)
    assert pattern.serial("Pump-ab12.a") == "ab12"
    assert pattern.serial("PUMP-ab1.A") is None  # too short
    assert pattern.serial("PUMP-ab-12.A") is None  # not alphanumeric
    assert parse_pattern("X{serial:digits:6}", "88.TEST").serial("X12345") is None
    for bad in (
        "PUMP",
        "PUMP-{serial}{serial}",
        "{serial}",
        "P-{lot}",
        "P-{serial:hex}",
        "P-{serial:0}",
        "P-{serial}/x",
    ):
        with pytest.raises(PatternError):
            parse_pattern(bad, "88.TEST")
    with pytest.raises(PatternError, match="own prefix"):
        parse_pattern("88.OTHER/PUMP-{serial}", "88.TEST")


def test_the_longest_literal_head_wins_then_the_longest_tail() -> None:
    index = ClassIndex(
        [
            ClassRow("88.T/PUMP", "88.T/Pump", "88.T", "PUMP-{serial}"),
            ClassRow("88.T/CP40", "88.T/CP40", "88.T", "PUMP-CP40-{serial}"),
            ClassRow("88.T/CP40A", "88.T/CP40A", "88.T", "PUMP-CP40-{serial}.A"),
            ClassRow("88.T/BAD", "88.T/BAD", "88.T", "no placeholder"),
        ]
    )
    assert index.size == 3
    found = index.find("88.T/PUMP-CP40-7", "pump-cp40-7")
    assert found is not None and (found.class_handle, found.serial) == ("88.T/CP40", "7")
    found = index.find("88.T/PUMP-CP40-7.A", "PUMP-CP40-7.a")
    assert found is not None and (found.class_handle, found.serial) == ("88.T/CP40A", "7")
    found = index.find("88.T/PUMP-X", "PUMP-X")
    assert found is not None and found.class_handle == "88.T/Pump"
    assert index.find("88.T/PUMP-", "PUMP-") is None  # an empty serial is no serial
    assert index.find("88.U/PUMP-CP40-7", "PUMP-CP40-7") is None


async def test_an_unregistered_serial_redirects_to_its_class_default_link(pumps: Node) -> None:
    status, body, headers = await _get(pumps, "/" + SERIAL)
    assert status == 302
    assert headers["Location"] == PIP.href
    assert headers["Link"] == CLASS_LINK
    assert headers["Vary"] == "Accept, Accept-Language, Origin"
    assert b"factory.example/cp40" in body
    status, _, headers = await _get(pumps, f"/{SERIAL}?linkType=gs1:safetyInfo")
    assert (status, headers["Location"], headers["Link"]) == (302, SDS.href, CLASS_LINK)
    status, _, headers = await _get(pumps, f"/{SERIAL}?linkType=gs1:recallStatus")
    assert status == 404


async def test_the_fallback_page_shows_the_class_values_marked_class_level(pumps: Node) -> None:
    status, body, headers = await _get(pumps, f"/{SERIAL}?noredirect")
    assert status == 200
    assert headers["Content-Type"] == "text/html;charset=UTF-8"
    assert headers["Link"] == CLASS_LINK
    page = body.decode()
    assert "This serial number is not registered on its own" in page
    assert f'<span class="id">{CLASS}</span>' in page  # in the note, before the class's name
    assert page.index("not registered on its own") < page.index("<h1>Centrifugal pump CP-40</h1>")
    assert '<span class="id">000123</span>' in page
    assert f'<a class="id" href="/{CLASS}">{CLASS}</a>' in page
    assert f'href="/api/handles/{SERIAL}"' not in page  # the data links are the class's


async def test_the_fallback_linkset_is_the_class_links_anchored_at_the_serial(pumps: Node) -> None:
    status, body, headers = await _get(pumps, f"/{SERIAL}?linkType=linkset")
    assert status == 200
    assert headers["Content-Type"] == "application/linkset+json"
    assert headers["Link"].startswith(CLASS_LINK + ", ")
    (context,) = orjson.loads(body)["linkset"]
    assert context["anchor"] == pumps.url + "/" + SERIAL
    assert context["collection"] == [{"href": pumps.url + "/" + CLASS, "title": "Product class"}]
    assert "describedby" not in context  # the serial has no Handle record
    assert [t["href"] for t in context[links.expand("gs1:safetyInfo")]] == [SDS.href]
    status, again, _ = await _get(pumps, "/" + SERIAL, Accept="application/linkset+json")
    assert (status, again) == (200, body)


async def test_the_fallback_json_ld_is_an_individual_product_variant_of_its_class(pumps: Node) -> None:
    status, body, headers = await _get(pumps, "/" + SERIAL, Accept="application/ld+json")
    assert status == 200
    assert headers["Content-Type"] == "application/ld+json"
    document = orjson.loads(body)
    assert document["@type"] == "IndividualProduct"
    assert (document["identifier"], document["serialNumber"]) == (SERIAL, "000123")
    assert document["isVariantOf"] == {
        "@type": "ProductModel",
        "@id": pumps.url + "/" + CLASS,
        "identifier": CLASS,
    }
    assert document["name"] == "Centrifugal pump CP-40"
    (expanded,) = jsonld.expand(document)
    assert expanded["https://schema.org/isVariantOf"][0]["@id"] == pumps.url + "/" + CLASS


async def test_machine_clients_get_404_rc_100_for_the_unregistered_serial(pumps: Node) -> None:
    status, body, _ = await pumps.get("/api/handles/" + SERIAL)
    assert (status, body["responseCode"]) == (404, 100)
    async with pumps.http.post(pumps.url + "/api/resolve", json={"handles": [SERIAL, CLASS]}) as response:
        results = orjson.loads(await response.read())
    assert [r["responseCode"] for r in results["results"]] == [100, 1]
    status, _, headers = await _get(pumps, "/" + SERIAL, Accept="application/json")
    assert status == 404
    assert headers["Link"] == CLASS_LINK
    status, _, _ = await _get(pumps, "/88.TEST/PUMP-CP40-12345")  # five digits: not the pattern's six
    assert status == 404


async def test_a_registered_serial_wins_over_its_class(pumps: Node) -> None:
    own = "https://factory.example/units/000123"
    await put_record(pumps.dsn, SERIAL, [{"index": 1, "type": "URL", "data": own}])

    async def own_record() -> bool:
        status, _, headers = await _get(pumps, "/" + SERIAL)
        return status == 302 and headers["Location"] == own and "Link" not in headers

    assert await eventually(own_record)
    status, body, _ = await pumps.get("/api/handles/" + SERIAL)
    assert (status, body["responseCode"]) == (200, 1)


async def test_a_removed_pattern_gives_404_again(pumps: Node) -> None:
    await put_record(pumps.dsn, CLASS, [v for v in CLASS_VALUES if v["index"] != 3])

    async def gone() -> bool:
        status, _, _ = await _get(pumps, "/" + SERIAL)
        return status == 404

    assert await eventually(gone)
    await put_record(pumps.dsn, CLASS, CLASS_VALUES)
    assert await eventually(lambda: _matches(pumps, SERIAL))
    await delete_record(pumps.dsn, CLASS)
    assert await eventually(gone)


async def test_hostile_serials_are_escaped_on_the_page(node: Node) -> None:
    await put_record(
        node.dsn, CLASS, [*CLASS_VALUES[:2], {"index": 3, "type": "IDNODE_CLASS_PATTERN", "data": "X-{serial}"}]
    )
    hostile = "\"><img src=x onerror=alert(1)>'"
    path = "/88.TEST/X-" + quote(hostile, safe="") + "?noredirect"

    async def page() -> bool:
        status, _, _ = await _get(node, path)
        return status == 200

    assert await eventually(page)
    _, body, headers = await _get(node, path)
    text = body.decode()
    assert "<img" not in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&#x27;" in text
    assert "script-src" not in headers["Content-Security-Policy"]  # still no script allowed (default-src 'none')


@pytest.mark.parametrize(
    ("pattern", "status", "code", "problem"),
    [
        ("PUMP-CP40-{serial", 400, 202, "exactly one {serial}"),
        ("88.OTHER/PUMP-{serial}", 400, 202, "own prefix"),
        ("PUMP-{serial:digits}", 409, 201, "already belongs to 88.A/PUMP-CP40"),
    ],
)
async def test_bad_and_conflicting_patterns_are_refused_on_every_write_path(
    database: str, pattern: str, status: int, code: int, problem: str
) -> None:
    enterprise = await onboard_enterprise(database, "88.A")
    headers = {**secure_basic(enterprise.identity, enterprise.secret), "Content-Type": "application/json"}
    async with running_node(database, behind_trusted_proxy()) as node:
        first = orjson.dumps({"values": CLASS_VALUES[:2], "classPattern": "PUMP-{serial}"})
        answer = await node.call("PUT", "/api/handles/88.A/PUMP-CP40", data=first, headers=headers)
        assert answer[0] == 201, answer[1]
        body = orjson.dumps({"values": CLASS_VALUES[:2], "classPattern": pattern})
        got, answer, _ = await node.call("PUT", "/api/handles/88.A/OTHER", data=body, headers=headers)
        assert (got, answer["responseCode"]) == (status, code)
        assert problem in answer["message"]
        items = [
            {"op": "create", "handle": "88.A/OTHER", "classPattern": pattern},
            {"op": "create", "handle": "88.A/FINE", "values": CLASS_VALUES[:1]},
        ]
        got, answer, _ = await node.call(
            "POST", "/api/handles:batch", data=orjson.dumps({"items": items}), headers=headers
        )
        assert got == 200, answer
        refused, written = answer["results"]
        assert (refused["responseCode"], written["responseCode"]) == (code, 1)
        assert problem in refused["message"]
        got, answer, _ = await node.get("/api/handles/88.A/OTHER")
        assert got == 404
    line = {"handle": "88.A/OTHER", "values": CLASS_VALUES[:1], "classPattern": pattern}
    report = await import_records(database, line)
    assert report.written == 0
    assert problem in str(report.errors[0])


async def test_a_class_may_use_its_own_pattern_again_and_the_sugar_stores_a_value(database: str) -> None:
    enterprise = await onboard_enterprise(database, "88.A")
    headers = {**secure_basic(enterprise.identity, enterprise.secret), "Content-Type": "application/json"}
    async with running_node(database, behind_trusted_proxy()) as node:
        for expected in (201, 200):
            body = orjson.dumps({"values": CLASS_VALUES[:2], "classPattern": "88.A/PUMP-CP40-{serial}"})
            got, answer, _ = await node.call("PUT", "/api/handles/88.A/PUMP-CP40", data=body, headers=headers)
            assert got == expected, answer
        _, record, _ = await node.get("/api/handles/88.A/PUMP-CP40?type=IDNODE_CLASS_PATTERN")
        assert [(v["index"], v["data"]["value"]) for v in record["values"]] == [(1002, "88.A/PUMP-CP40-{serial}")]
        assert await eventually(lambda: _matches(node, "88.A/pump-cp40-Z9"))


async def test_two_classes_racing_for_one_pattern_are_refused_by_the_trigger(database: str) -> None:
    enterprise = await onboard_enterprise(database, "88.A")
    headers = {**secure_basic(enterprise.identity, enterprise.secret), "Content-Type": "application/json"}
    items = [{"op": "create", "handle": f"88.A/C{n}", "classPattern": "LOT-{serial}"} for n in (1, 2)]
    async with running_node(database, behind_trusted_proxy()) as node:
        got, answer, _ = await node.call(
            "POST", "/api/handles:batch", data=orjson.dumps({"items": items}), headers=headers
        )
        assert (got, answer["responseCode"]) == (409, 201)
        assert "Class pattern LOT-{serial} already belongs to 88.A/C" in answer["message"]
        got, _, _ = await node.get("/api/handles/88.A/C1")
        assert got == 404  # the batch is one transaction: nothing was written


async def test_fallback_scans_are_counted_under_the_class(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, CLASS, CLASS_VALUES)
    async with running_node(database, behind_trusted_proxy()) as node:
        asked = [
            (f"/{SERIAL}", {}, 302),
            ("/88.TEST/PUMP-CP40-000124", {}, 302),
            (f"/{SERIAL}?noredirect", {}, 200),
            (f"/{SERIAL}?linkType=gs1:safetyInfo", {}, 302),
            (f"/{SERIAL}", {"Accept": "application/ld+json"}, 200),
            (f"/{SERIAL}", {"Accept": "application/json"}, 404),  # not a scan
            (f"/{CLASS}", {}, 302),
        ]
        for path, headers, expected in asked:
            status, _, _ = await node.get(path, headers=headers)
            assert status == expected, path
    con = await asyncpg.connect(database)
    try:
        rows = await con.fetch("SELECT handle_key, link_type, scans FROM scan_stats")
    finally:
        await con.close()
    assert {(r[0], r[1]): r[2] for r in rows} == {
        (CLASS, "default"): 3,
        (CLASS, "page"): 1,
        (CLASS, "gs1:safetyInfo"): 1,
        (CLASS, "data"): 1,
    }
