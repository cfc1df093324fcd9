"""``POST /api/resolve`` (resolver/http.py ``resolve_batch``): many handles, one answer each, in request order.

Each result is exactly what ``GET /api/handles/<h>`` answers for that handle, errors included.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from resolver.app import CACHE
from tests.support import Node, put_record

RECORDS = {
    f"88.TEST/item-{n}": [
        {"index": 1, "type": "URL", "data": f"https://example.org/item/{n}"},
        {"index": 2, "type": "EMAIL", "data": f"item{n}@example.org"},
        {"index": 3, "type": "SECRET", "data": f"hidden-{n}", "permissions": "1100"},
    ]
    for n in range(6)
}


@pytest.fixture
async def items(node: Node) -> Node:
    for handle, values in RECORDS.items():
        await put_record(node.dsn, handle, values)
    return node


async def _post(node: Node, payload: Any) -> tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {"Content-Type": "application/json"}
    async with node.http.post(node.url + "/api/resolve", data=data, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def _get_body(node: Node, path: str) -> Any:
    async with node.http.get(node.raw_url(path)) as response:
        return orjson.loads(await response.read())


async def test_results_come_in_request_order_and_match_get(items: Node) -> None:
    handles = ["88.TEST/item-3", "88.TEST/item-0", "88.TEST/item-5"]
    status, body = await _post(items, {"handles": handles})
    assert status == 200
    assert body["responseCode"] == 1
    assert [result["handle"] for result in body["results"]] == handles
    for handle, result in zip(handles, body["results"], strict=True):
        assert result == await _get_body(items, f"/api/handles/{handle}")


async def test_mix_of_hits_misses_absent_foreign_and_invalid_handles(items: Node) -> None:
    await _get_body(items, "/api/handles/88.TEST/item-1")  # now a cache hit
    handles = ["88.TEST/item-1", "88.TEST/item-2", "88.TEST/nope", "99.NOPE/x", "", "88.TEST/a\nb", "88.test/ITEM-2"]
    status, body = await _post(items, {"handles": handles})
    assert status == 200
    results = body["results"]
    assert len(results) == len(handles)
    assert [r["responseCode"] for r in results] == [1, 1, 100, 301, 102, 102, 1]
    assert [r.get("handle") for r in results] == [*handles[:4], None, *handles[5:]]  # C3: no echo of ""
    assert results[1]["values"][0]["data"]["value"] == "https://example.org/item/2"
    assert results[2] == {"responseCode": 100, "message": "Handle not found", "handle": "88.TEST/nope"}
    assert results[3] == {"responseCode": 301, "message": "That prefix doesn't live here", "handle": "99.NOPE/x"}
    assert results[4] == {"responseCode": 102, "message": "Empty handle invalid"}
    assert results[6]["values"] == results[1]["values"]


async def test_hidden_values_are_left_out_of_every_result(items: Node) -> None:
    _, body = await _post(items, {"handles": list(RECORDS)})
    assert all([v["index"] for v in result["values"]] == [1, 2] for result in body["results"])
    assert b"hidden-" not in orjson.dumps(body)


async def test_non_string_handle_is_rc_102(items: Node) -> None:
    status, body = await _post(items, {"handles": [5, "88.TEST/item-0"]})
    assert status == 200
    assert body["results"][0]["responseCode"] == 102
    assert body["results"][1]["responseCode"] == 1


async def test_bare_array_body_is_accepted(items: Node) -> None:
    status, body = await _post(items, ["88.TEST/item-0", "88.TEST/nope"])
    assert status == 200
    assert [r["responseCode"] for r in body["results"]] == [1, 100]


async def test_empty_list_answers_no_results(items: Node) -> None:
    status, body = await _post(items, {"handles": []})
    assert (status, body) == (200, {"responseCode": 1, "results": []})


async def test_the_same_handle_twice_gets_two_results(items: Node) -> None:
    _, body = await _post(items, ["88.TEST/item-4", "88.TEST/item-4"])
    assert len(body["results"]) == 2
    assert body["results"][0] == body["results"][1]


async def test_max_batch_handles_are_accepted(items: Node) -> None:
    handles = [f"88.TEST/bulk-{n}" for n in range(2000)]
    status, body = await _post(items, {"handles": handles})
    assert status == 200
    assert len(body["results"]) == 2000
    assert {r["responseCode"] for r in body["results"]} == {100}


async def test_more_than_max_batch_handles_is_400_rc_4(items: Node) -> None:
    status, body = await _post(items, {"handles": ["88.TEST/item-0"] * 2001})
    assert status == 400
    assert body["responseCode"] == 4
    assert "2001" in body["message"]


@pytest.mark.parametrize("data", [b"{not json", b"", b'{"handles": ["88.TEST/item-0"]'])
async def test_malformed_json_is_400_rc_4(items: Node, data: bytes) -> None:
    status, body = await _post(items, data)
    assert status == 400
    assert body["responseCode"] == 4


@pytest.mark.parametrize("payload", [{"handle": ["88.TEST/item-0"]}, {"handles": "88.TEST/item-0"}, "88.TEST/x", 5])
async def test_body_without_a_handles_list_is_400_rc_4(items: Node, payload: Any) -> None:
    status, body = await _post(items, payload)
    assert status == 400
    assert body["responseCode"] == 4


async def test_type_filter_applies_to_every_item(items: Node) -> None:
    await _get_body(items, "/api/handles/88.TEST/item-0")  # one hit, the rest misses
    status, body = await _post(items, {"handles": ["88.TEST/item-0", "88.TEST/item-1"], "type": ["EMAIL"]})
    assert status == 200
    for n, result in enumerate(body["results"]):
        assert [v["type"] for v in result["values"]] == ["EMAIL"]
        assert result == await _get_body(items, f"/api/handles/88.TEST/item-{n}?type=EMAIL")


async def test_index_filter_applies_to_every_item(items: Node) -> None:
    _, body = await _post(items, {"handles": ["88.TEST/item-0", "88.TEST/item-1"], "index": 1})
    assert all([v["index"] for v in r["values"]] == [1] for r in body["results"])


async def test_filter_matching_nothing_gives_rc_200_per_item(items: Node) -> None:
    _, body = await _post(items, {"handles": ["88.TEST/item-0"], "type": "NOSUCHTYPE"})
    assert body["results"] == [{"responseCode": 200, "values": [], "handle": "88.TEST/item-0"}]


async def test_non_numeric_index_filter_is_400_rc_4(items: Node) -> None:
    status, body = await _post(items, {"handles": ["88.TEST/item-0"], "index": ["abc"]})
    assert status == 400
    assert body["responseCode"] == 4


async def test_all_misses_of_one_request_are_loaded_in_one_call(items: Node) -> None:
    cache = items.app[CACHE]
    await _get_body(items, "/api/handles/88.TEST/item-0")  # a hit, needs no load
    loads, load_keys = cache.loads, cache.load_keys
    handles = [*RECORDS, "88.TEST/absent-1", "88.TEST/absent-2"]
    _, body = await _post(items, {"handles": handles})
    assert [r["responseCode"] for r in body["results"]] == [1] * 6 + [100, 100]
    assert cache.loads - loads == 1
    assert cache.load_keys - load_keys == 7


async def test_second_batch_is_answered_from_the_cache(items: Node) -> None:
    cache = items.app[CACHE]
    handles = [*RECORDS, "88.TEST/absent-1"]
    first = await _post(items, {"handles": handles})
    loads = cache.loads
    second = await _post(items, {"handles": handles})
    assert second == first
    assert cache.loads == loads
