"""GET /api/handles/... over real HTTP against a real database, case by case from the Handle.Net 9 transcripts.

Section and case names (B1, C7, ...) refer to research/handle9-transcripts.md.
"""

from __future__ import annotations

import re

import orjson
import pytest

from tests.support import (
    TRANSCRIPT_ADMIN,
    TRANSCRIPT_XYZ,
    Node,
    behind_trusted_proxy,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)

DESC = {"index": 4, "type": "DESC", "data": {"format": "string", "value": "added value"}}
XYZ = sorted([*TRANSCRIPT_XYZ, DESC], key=lambda value: value["index"])
ADMIN = TRANSCRIPT_ADMIN
STAMP = re.compile(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"')


@pytest.fixture
async def xyz(node: Node) -> Node:
    await put_record(node.dsn, "88.TEST/xyz", XYZ)
    await put_record(node.dsn, "88.TEST/ADMIN", ADMIN)
    return node


def _expected_b1(handle: str = "88.TEST/xyz", indexes: tuple[int, ...] = (1, 2, 3, 4, 100)) -> bytes:
    values = []
    for value in XYZ:
        if value["index"] in indexes:
            values.append({**value, "ttl": 86400, "timestamp": "T"})
    body = orjson.dumps({"responseCode": 1, "handle": handle, "values": values})
    return body.replace(b'"timestamp":"T"', b'"timestamp":"STAMP"')


async def _raw(node: Node, path: str) -> tuple[int, bytes, dict[str, str]]:
    async with node.http.get(node.raw_url(path), allow_redirects=False) as response:
        return response.status, await response.read(), dict(response.headers)


def _stamped(body: bytes) -> bytes:
    return STAMP.sub(b'"timestamp":"STAMP"', body)


async def test_b1_existing_handle_is_answered_byte_for_byte_like_handle_net(xyz: Node) -> None:
    status, body, headers = await _raw(xyz, "/api/handles/88.TEST/xyz")
    assert status == 200
    assert headers["Content-Type"] == "application/json;charset=UTF-8"
    assert _stamped(body) == _expected_b1()


async def test_second_read_is_served_from_the_cache_with_the_same_bytes(xyz: Node) -> None:
    first = await _raw(xyz, "/api/handles/88.TEST/xyz")
    second = await _raw(xyz, "/api/handles/88.TEST/xyz")
    assert first[1] == second[1]
    from resolver.app import CACHE

    assert xyz.app[CACHE].hits >= 1


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        ("type=URL", (1,)),  # B3
        ("type=URL&type=EMAIL", (1, 2)),  # B4
        ("index=1", (1,)),  # B5
        ("index=1&index=3", (1, 3)),  # B6
        ("type=URL&index=2", (1, 2)),  # B7: type OR index
        ("type=88.TEST/CUSTOM", (3,)),  # B10
        ("type=url", (1,)),  # B10b: case-insensitive type
        ("type=URL.", (1,)),  # parent type matches itself and subtypes
        ("auth=true&type=URL", (1,)),  # B19
        ("cert=true&type=URL", (1,)),  # B20
    ],
)
async def test_filters_select_values_like_handle_net(xyz: Node, query: str, indexes: tuple[int, ...]) -> None:
    status, body, _ = await _raw(xyz, f"/api/handles/88.TEST/xyz?{query}")
    assert status == 200
    assert _stamped(body) == _expected_b1(indexes=indexes)


@pytest.mark.parametrize("query", ["index=99", "type=NOSUCHTYPE"])  # B8, B9
async def test_filter_matching_nothing_answers_rc_200_with_empty_values(xyz: Node, query: str) -> None:
    status, body, _ = await _raw(xyz, f"/api/handles/88.TEST/xyz?{query}")
    assert status == 200
    assert body == b'{"responseCode":200,"values":[],"handle":"88.TEST/xyz"}'


async def test_b11_pretty_prints_with_two_space_indent(xyz: Node) -> None:
    status, body, _ = await _raw(xyz, "/api/handles/88.TEST/xyz?pretty")
    assert status == 200
    assert body.startswith(b'{\n  "responseCode": 1,\n  "handle": "88.TEST/xyz",\n  "values": [\n    {\n')
    assert orjson.loads(body)["values"][0]["index"] == 1


async def test_b12_callback_wraps_json_as_javascript(xyz: Node) -> None:
    status, body, headers = await _raw(xyz, "/api/handles/88.TEST/xyz?callback=cb&type=URL")
    assert status == 200
    assert headers["Content-Type"] == "application/javascript;charset=UTF-8"
    assert _stamped(body) == b"cb(" + _expected_b1(indexes=(1,)) + b");"


async def test_callback_name_is_sanitised(xyz: Node) -> None:
    _, body, _ = await _raw(xyz, "/api/handles/88.TEST/xyz?callback=alert(1)%3C/script%3E&type=URL")
    assert body.startswith(b"alert_1___script_(")


# --- JSONP only for public answers; nosniff on every JSON answer (issue 8) ---------------------------------------

PRIVATE = {"index": 2, "type": "PRIV", "data": "admin-only", "permissions": "1100"}


@pytest.mark.parametrize("callback", ["callback=steal", "callback=steal&publicOnly=false&type=PRIV"])
async def test_jsonp_with_public_only_false_is_refused_without_asking_for_credentials(xyz: Node, callback: str) -> None:
    status, body, headers = await _raw(xyz, f"/api/handles/88.TEST/ADMIN?publicOnly=false&{callback}")
    assert status == 400
    assert headers["Content-Type"] == "application/json;charset=UTF-8"
    assert orjson.loads(body)["responseCode"] == 4
    assert b"steal(" not in body


async def test_jsonp_never_wraps_non_public_values_even_for_their_admin(database: str) -> None:
    admin = await onboard_enterprise(database, "88.TEST")
    auth = secure_basic(admin.identity, admin.secret)
    async with running_node(database, behind_trusted_proxy()) as node:
        status, _, _ = await node.call("PUT", "/api/handles/88.TEST/priv", json=[DESC, PRIVATE], headers=auth)
        assert status == 201
        status, body, _ = await node.get("/api/handles/88.TEST/priv?publicOnly=false", headers=auth)
        assert (status, "admin-only" in str(body)) == (200, True)  # the credentials may read it as JSON
        for request in (
            node.get("/api/handles/88.TEST/priv?publicOnly=false&callback=steal", headers=auth),
            node.call("POST", "/api/handles/88.TEST/priv", json={"publicOnly": "false", "callback": "f"}, headers=auth),
        ):
            status, body, response = await request
            assert (status, body["responseCode"]) == (400, 4)
            assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
        status, body, response = await node.get("/api/handles/88.TEST/priv?callback=steal", headers=auth)
        assert (status, response.content_type) == (200, "application/javascript")
        assert body.startswith("steal(") and "added value" in body and "admin-only" not in body


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/handles/88.TEST/xyz", 200),
        ("GET", "/api/handles/88.TEST/xyz?type=URL", 200),
        ("GET", "/api/handles/88.TEST/xyz?callback=cb", 200),
        ("GET", "/api/handles/88.TEST/nope", 404),
        ("GET", "/api/handles/99.NOPE/x", 400),
        ("GET", "/api/unknown", 404),
        ("POST", "/api/resolve", 200),
        ("DELETE", "/api/handles/88.TEST/xyz", 403),
    ],
)
async def test_every_json_answer_forbids_content_sniffing(xyz: Node, method: str, path: str, status: int) -> None:
    for _ in range(2):  # the second look-up is answered by the hot path, from the (negative) cache
        got, _, response = await xyz.call(method, path, json=["88.TEST/xyz"] if method == "POST" else None)
        assert got == status
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_b13_other_case_resolves_and_echoes_the_request(xyz: Node) -> None:
    status, body, _ = await _raw(xyz, "/api/handles/88.test/XYZ")
    assert status == 200
    assert _stamped(body) == _expected_b1(handle="88.test/XYZ")


async def test_b14_percent_encoded_slash_names_the_same_handle(xyz: Node) -> None:
    status, body, _ = await _raw(xyz, "/api/handles/88.TEST%2Fxyz?type=URL")
    assert status == 200
    assert _stamped(body) == _expected_b1(indexes=(1,))


async def test_b15_head_gives_length_and_no_body(xyz: Node) -> None:
    async with xyz.http.head(xyz.url + "/api/handles/88.TEST/xyz") as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(_expected_b1()) - len("STAMP") * 5 + 20 * 5
        assert await response.read() == b""


async def test_b16_public_only_false_without_auth_over_http_is_403_rc_402(xyz: Node) -> None:
    status, body, _ = await _raw(xyz, "/api/handles/88.TEST/ADMIN?publicOnly=false")
    assert status == 403
    assert orjson.loads(body)["responseCode"] == 402
    assert orjson.loads(body)["handle"] == "88.TEST/ADMIN"


async def test_anonymous_read_never_shows_a_secret(xyz: Node) -> None:
    for path in ("/api/handles/88.TEST/ADMIN", "/api/handles/88.test/admin", "/api/handles/88.TEST/ADMIN?index=300"):
        _, body, _ = await _raw(xyz, path)
        assert b"hdl-test-secret" not in body
        assert b"HS_SECKEY" not in body


async def test_b21_origin_is_reflected_for_cors(xyz: Node) -> None:
    async with xyz.http.get(xyz.url + "/api/handles/88.TEST/xyz?type=URL", headers={"Origin": "http://e.org"}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "http://e.org"
    async with xyz.http.get(xyz.url + "/api/handles/88.TEST/xyz", headers={"Origin": "http://e.org"}) as r:
        assert r.headers["Access-Control-Allow-Origin"] == "http://e.org"


async def test_b22_options_lists_allowed_methods(xyz: Node) -> None:
    async with xyz.http.options(xyz.url + "/api/handles/88.TEST/xyz") as response:
        assert response.status == 200
        assert "GET" in response.headers["Allow"] and "PUT" in response.headers["Allow"]


async def test_b23_cors_preflight(xyz: Node) -> None:
    headers = {"Origin": "http://e.org", "Access-Control-Request-Method": "PUT"}
    async with xyz.http.options(xyz.url + "/api/handles/88.TEST/xyz", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Methods"] == "GET,POST,HEAD,PUT,DELETE"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_b24_post_is_get_with_parameters_in_the_body(xyz: Node) -> None:
    async with xyz.http.post(xyz.url + "/api/handles/88.TEST/xyz", json={"type": "EMAIL"}) as response:
        assert response.status == 200
        assert _stamped(await response.read()) == _expected_b1(indexes=(2,))


async def test_c1_missing_handle_under_a_homed_prefix_is_404_rc_100(xyz: Node) -> None:
    status, body, _ = await xyz.get("/api/handles/88.TEST/doesnotexist")
    assert status == 404
    assert body["responseCode"] == 100
    assert body["handle"] == "88.TEST/doesnotexist"


@pytest.mark.parametrize("handle", ["99.NOPE/x", "noslash", "0.NA/99.NOPE"])  # C2, C5
async def test_foreign_prefix_is_400_rc_301(xyz: Node, handle: str) -> None:
    status, body, _ = await xyz.get(f"/api/handles/{handle}")
    assert status == 400
    assert body == {"responseCode": 301, "message": "That prefix doesn't live here", "handle": handle}


@pytest.mark.parametrize("path", ["/api/handles/", "/api/handles"])  # C3, C4
async def test_empty_handle_is_400_rc_102(xyz: Node, path: str) -> None:
    status, body, _ = await xyz.get(path)
    assert status == 400
    assert body == {"responseCode": 102, "message": "Empty handle invalid"}


@pytest.mark.parametrize(
    ("path", "echo"),
    [
        ("/api/handles/88.TEST/", "88.TEST/"),  # C7
        ("/api/handles/88.TEST/a%20b%C3%A9", "88.TEST/a bé"),  # C11
        ("/api/handles/88.TEST//double", "88.TEST//double"),  # C12
        ("/api/handles/88.TEST/a+b", "88.TEST/a+b"),  # '+' is not a space
    ],
)
async def test_odd_but_valid_handles_are_looked_up_as_spelled(xyz: Node, path: str, echo: str) -> None:
    status, body, _ = await xyz.get(path)
    assert status == 404
    assert body["responseCode"] == 100
    assert body["handle"] == echo


@pytest.mark.parametrize("path", ["/api/handles/88.TEST/%ZZ", "/api/handles/88.TEST/%C3%28"])  # C8, C9
async def test_undecodable_handles_are_400_rc_102(xyz: Node, path: str) -> None:
    status, body, _ = await xyz.get(path)
    assert status == 400
    assert body["responseCode"] == 102


async def test_c10_non_numeric_index_is_400_rc_4(xyz: Node) -> None:
    status, body, _ = await xyz.get("/api/handles/88.TEST/xyz?index=abc")
    assert status == 400
    assert body["responseCode"] == 4
    assert "abc" in body["message"]


async def test_overlong_handle_is_400_rc_102(xyz: Node) -> None:
    status, body, _ = await xyz.get("/api/handles/88.TEST/" + "x" * 300)
    assert status == 400
    assert body["responseCode"] == 102


async def test_control_character_in_handle_is_400_rc_102(xyz: Node) -> None:
    status, body, _ = await xyz.get("/api/handles/88.TEST/a%0D%0Ab")
    assert status == 400
    assert body["responseCode"] == 102


@pytest.mark.parametrize("path", ["/api/unknownthing", "/api", "/api/site/x"])  # F7, F8
async def test_unknown_api_endpoint_is_404_rc_4(xyz: Node, path: str) -> None:
    status, body, _ = await xyz.get(path)
    assert status == 404
    assert body == {"responseCode": 4, "message": f"Unknown HTTP API endpoint GET {path}"}


async def test_unsupported_method_on_handles_is_405_rc_4(xyz: Node) -> None:
    async with xyz.http.patch(xyz.url + "/api/handles/88.TEST/xyz") as response:
        assert response.status == 405
        assert (await response.json(content_type=None))["responseCode"] == 4
        assert "GET" in response.headers["Allow"]


async def test_prefix_handle_of_a_homed_prefix_is_served_here(xyz: Node) -> None:
    status, body, _ = await xyz.get("/api/handles/0.NA/88.TEST")
    assert status == 404  # homed here, but no 0.NA record was created in this test
    assert body["responseCode"] == 100


async def test_health_and_readiness(xyz: Node) -> None:
    status, body, _ = await xyz.get("/healthz")
    assert (status, body["status"]) == (200, "ok")
    status, body, _ = await xyz.get("/readyz")
    assert status == 200
    assert body["status"] == "ready" and body["listening"] is True and body["schema_version"] >= 1


async def test_negative_cache_hit_answers_exactly_like_the_first_404(xyz: Node) -> None:
    from resolver.app import CACHE
    from resolver.errors import HandleNotFound

    for path, handle in (("88.TEST/absent-1", "88.TEST/absent-1"), ("88.TEST/absent-%C3%A9", "88.TEST/absent-é")):
        first = await _raw(xyz, f"/api/handles/{path}")
        before = xyz.app[CACHE].negative_hits
        second = await _raw(xyz, f"/api/handles/{path}")
        assert xyz.app[CACHE].negative_hits == before + 1
        assert first[:2] == second[:2] == (404, orjson.dumps(HandleNotFound(handle=handle).body()))
        assert second[2]["Content-Type"] == "application/json;charset=UTF-8"
