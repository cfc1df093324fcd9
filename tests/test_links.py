"""resolver/links.py, lifecycle.py and negotiation.py: the typed-link codec, the status value and header parsing.

Pure functions, no node: hostile ``10320/loc`` values (entity bombs, external entities, oversized, non-web hrefs)
are refused with a ``LinkError`` naming the problem; what is accepted round-trips through ``render``.
"""

from __future__ import annotations

import pytest

from resolver import lifecycle, links, negotiation
from resolver.lifecycle import StatusError
from resolver.links import Link, LinkError

PIP_ZH = Link("gs1:pip", "https://factory.example/p/123", "产品页", "zh", "text/html", True)
PIP_EN = Link("gs1:pip", "https://factory.example/en/p/123", "Product page", "en", "text/html")
SDS = Link("gs1:safetyInfo", "https://factory.example/sds/123.pdf", "SDS", "", "application/pdf")
HANDLE_NET_LOC = (
    '<locations chooseby="locatt,weighted">\n'
    '  <location id="0" href="https://a.example/x" weight="1" ctype="text/html"/>\n'
    '  <location id="1" href="https://b.example/x" weight="0" language="de"/>\n'
    "</locations>"
)


# --- codec ----------------------------------------------------------------------------------------------------


def test_rendered_links_parse_back_to_the_same_links() -> None:
    assert links.parse(links.render([PIP_ZH, PIP_EN, SDS])) == [PIP_ZH, PIP_EN, SDS]


def test_render_uses_handle_net_attribute_names_and_weights_the_default() -> None:
    text = links.render([PIP_ZH, SDS])
    assert text == (
        '<locations><location href="https://factory.example/p/123" rel="gs1:pip" title="产品页" language="zh" '
        'ctype="text/html" default="true" weight="1"/>'
        '<location href="https://factory.example/sds/123.pdf" rel="gs1:safetyInfo" title="SDS" '
        'ctype="application/pdf" weight="0"/></locations>'
    )


def test_render_without_a_default_sets_no_weights() -> None:
    assert "weight" not in links.render([PIP_EN, SDS])


def test_render_escapes_markup_in_attributes() -> None:
    link = Link("gs1:pip", "https://e.example/?a=1&b=2", "say \"<hi>\" & 'bye'")
    assert links.parse(links.render([link])) == [link]
    assert "&amp;b=2" in links.render([link])


def test_a_stock_handle_net_value_parses_as_untyped_locations() -> None:
    parsed = links.parse(HANDLE_NET_LOC)
    assert parsed == [
        Link(links.UNTYPED, "https://a.example/x", type="text/html"),
        Link(links.UNTYPED, "https://b.example/x", lang="de"),
    ]


def test_unknown_elements_are_skipped() -> None:
    text = '<locations><links><link href="x"/></links><location href="https://a.example/" rel="gs1:pip"/></locations>'
    assert links.parse(text) == [Link("gs1:pip", "https://a.example/")]


def test_links_from_json_is_the_write_api_sugar() -> None:
    raw = [{"rel": "gs1:pip", "href": "https://factory.example/p/123", "title": "产品页", "lang": "zh",
            "type": "text/html", "default": True}]  # fmt: skip
    assert links.links_from_json(raw) == [PIP_ZH]
    assert [link.to_json() for link in links.links_from_json(raw)] == raw


@pytest.mark.parametrize(
    ("rel", "uri"),
    [
        ("gs1:pip", "https://ref.gs1.org/voc/pip"),
        ("gs1:certificationInfo", "https://ref.gs1.org/voc/certificationInfo"),
        ("idnode:qualityCertificate", links.IDNODE_VOCABULARY + "qualityCertificate"),
        ("describedby", "describedby"),
        ("https://example.org/rel/x", "https://example.org/rel/x"),
    ],
)
def test_link_types_expand_to_uris(rel: str, uri: str) -> None:
    assert links.expand(rel) == uri


def test_by_rel_matches_curie_and_uri_alike() -> None:
    both = [PIP_ZH, SDS]
    assert links.by_rel(both, "https://ref.gs1.org/voc/pip") == [PIP_ZH]
    assert links.by_rel(both, "gs1:safetyInfo") == [SDS]
    assert links.by_rel(both, "gs1:epcis") == []


def test_every_listed_type_has_english_and_chinese_titles() -> None:
    types = links.link_types()
    assert types["gs1:pip"] == {
        "uri": "https://ref.gs1.org/voc/pip",
        "en": "Product information page",
        "zh": "产品信息页",
    }
    assert all(entry["en"] and entry["zh"] for entry in types.values())


# --- hostile input ---------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
    '<locations><location href="https://a.example/&lol2;" rel="gs1:pip"/></locations>'
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<locations><location href="https://a.example/" title="&x;" rel="gs1:pip"/></locations>'
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(BILLION_LAUGHS, "DOCTYPE", id="entity-bomb"),
        pytest.param(XXE, "DOCTYPE", id="external-entity"),
        pytest.param('<locations><location href="https://a.example/&x;"/></locations>', "well-formed", id="undeclared"),
        pytest.param("<locations><location href=", "well-formed", id="truncated"),
        pytest.param("not xml at all", "well-formed", id="text"),
        pytest.param("", "well-formed", id="empty"),
        pytest.param('<html><location href="https://a.example/"/></html>', "root element", id="wrong-root"),
        pytest.param('<locations><location href="javascript:alert(1)"/></locations>', "http or https", id="js"),
        pytest.param('<locations><location href="data:text/html,x"/></locations>', "http or https", id="data"),
        pytest.param('<locations><location href="https://a.example/ x"/></locations>', "http or https", id="blank"),
        pytest.param('<locations><location rel="gs1:pip"/></locations>', "needs an href", id="no-href"),
        pytest.param('<locations><location href="https://a/" rel="gs1:nonsense"/></locations>', "unknown", id="typo"),
        pytest.param('<locations><location href="https://a/" rel="Not A Rel"/></locations>', "neither", id="bad-rel"),
        pytest.param('<locations><location href="https://a/" language="zh_CN!"/></locations>', "language", id="lang"),
        pytest.param('<locations><location href="https://a/" ctype="html"/></locations>', "media type", id="ctype"),
        pytest.param(
            '<locations><location href="https://a/" default="true"/><location href="https://b/" default="true"/>'
            "</locations>",
            "at most one",
            id="two-defaults",
        ),
        pytest.param("<locations>" + "<x/>" * (links.MAX_ELEMENTS + 1) + "</locations>", "elements", id="elements"),
        pytest.param(
            "<locations>" + '<location href="https://a/"/>' * (links.MAX_LINKS + 1) + "</locations>",
            "locations",
            id="too-many",
        ),
        pytest.param("<locations>" + " " * links.MAX_LOC_BYTES + "</locations>", "larger", id="too-large"),
        pytest.param(
            f'<locations><location href="https://a/" title="{"t" * 3000}"/></locations>', "longer", id="long-title"
        ),
    ],
)
def test_hostile_values_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(LinkError, match=problem):
        links.parse(text)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"rel": "gs1:pip"}, "needs an href"),
        ({"href": "https://a.example/"}, "needs a rel"),
        ({"rel": "gs1:pip", "href": "https://a.example/", "colour": "red"}, "unknown link member"),
        ({"rel": "gs1:pip", "href": "https://a.example/", "default": "maybe"}, None),
        ({"rel": "gs1:pip", "href": "https://a.example/", "default": 1}, "boolean"),
        ({"rel": "gs1:pip", "href": 5}, "must be a string"),
        ({"rel": "gs1:pip", "href": "https://a.example/", "title": "a\x00b"}, "NUL"),
    ],
)
def test_link_objects_are_checked(raw: dict[str, object], problem: str | None) -> None:
    if problem is None:
        assert links.links_from_json([raw])[0].default is False
        return
    with pytest.raises(LinkError, match=problem):
        links.links_from_json([raw])


def test_links_must_be_an_array_of_objects() -> None:
    with pytest.raises(LinkError, match="array"):
        links.links_from_json({"rel": "gs1:pip"})


# --- lifecycle -------------------------------------------------------------------------------------------------


def test_status_values_parse() -> None:
    recalled = lifecycle.parse('{"state": "recalled", "notice": "Stop", "link": "https://m.example/recall"}')
    assert (recalled.state, recalled.notice, recalled.link) == ("recalled", "Stop", "https://m.example/recall")
    withdrawn = lifecycle.parse('{"state": "withdrawn", "successor": "88.TEST/NEW"}')
    assert withdrawn.successor_is_handle
    assert not lifecycle.parse('{"state": "withdrawn", "successor": "https://e.example/x"}').successor_is_handle


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("recalled", "JSON object"),
        ("[1]", "JSON object"),
        ('{"state": "lost"}', "state must be one of"),
        ('{"state": "recalled"}', "needs a link"),
        ('{"state": "recalled", "link": "javascript:alert(1)"}', "http or https"),
        ('{"state": "active", "successor": "88.TEST/X"}', "only a withdrawn"),
        ('{"state": "withdrawn", "successor": "no slash"}', "successor must be"),
        ('{"state": "active", "why": 1}', "unknown member"),
        ('{"state": "active", "notice": 5}', "must be a string"),
        ('{"state": "active", "notice": "' + "n" * 9000 + '"}', "longer than"),
    ],
)
def test_bad_status_values_are_refused(text: str, problem: str) -> None:
    with pytest.raises(StatusError, match=problem):
        lifecycle.parse(text)


# --- negotiation -----------------------------------------------------------------------------------------------

FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (FIREFOX, negotiation.HTML),
        (CHROME, negotiation.HTML),
        ("*/*", negotiation.HTML),
        ("", negotiation.HTML),
        ("image/png", negotiation.HTML),
        ("application/json", negotiation.JSON),
        ("application/linkset+json", negotiation.LINKSET),
        ('application/ld+json; profile="https://schema.org/"', negotiation.JSON_LD),
        ("application/json;q=0.5, text/html;q=0.4", negotiation.JSON),
        ("text/html;q=0, application/json;q=0.1", negotiation.JSON),
        ("application/json, */*;q=0.1", negotiation.JSON),
        ("text/*;q=0.2, application/ld+json;q=0.3", negotiation.JSON_LD),
        ("application/json;q=oops", negotiation.HTML),
        ("application/json;q=2", negotiation.HTML),
        ("*/*;q=0.5, application/json;q=0.4", negotiation.HTML),
    ],
)
def test_accept_picks_the_highest_quality_variant(accept: str, wanted: str) -> None:
    assert negotiation.variant(accept) == wanted
    assert negotiation.Negotiator().variant(accept) == wanted


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", ("zh-cn", "zh", "en")),
        ("en;q=0.5, de", ("de", "en")),
        ("en;q=0, fr", ("fr",)),
        ("", ()),
        ("*", ("*",)),
    ],
)
def test_accept_language_ranks_tags(header: str, tags: tuple[str, ...]) -> None:
    assert negotiation.languages(header) == tags


def test_memo_is_bounded() -> None:
    negotiator = negotiation.Negotiator()
    for number in range(negotiation.MEMO_SIZE * 2):
        negotiator.variant(f"application/x-{number}")
    assert len(negotiator._variants) <= negotiation.MEMO_SIZE
