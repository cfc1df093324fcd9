"""Cached answers kept gzip-compressed: the codec (units) and what clients get over real HTTP (issue 14 item 1)."""

from __future__ import annotations

import gzip

import aiohttp
import orjson
import pytest

from resolver.compression import PlainCopies, accepts_gzip, compress_answer, is_gzip, plain_answer
from tests.support import Node, put_record

PRODUCT = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/products/pump/P-1"}},
    *(
        {"index": 2000 + n, "type": f"attribute{n}", "data": {"format": "string", "value": f"离心泵 pump {n}"}}
        for n in range(8)
    ),
]


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0.5", True),
        ("gzip; q=1.0, identity", True),
        ("", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("*, gzip;q=0", False),  # gzip named: its own weight wins over the wildcard
        ("*;q=0", False),
        ("gzip;q=nan", False),
        ("gzip;q=2", False),
        ("gzip;q=x", False),
        ("gzipped", False),
    ],
)
def test_accept_encoding_is_read_with_its_q_values(header: str, allowed: bool) -> None:
    assert accepts_gzip(header) is allowed
    assert accepts_gzip(header) is allowed  # and again, from the memo


def test_an_answer_is_stored_gzipped_when_that_saves_and_comes_back_byte_for_byte() -> None:
    body = orjson.dumps({"responseCode": 1, "handle": "88.TEST/P-1", "values": PRODUCT})
    stored = compress_answer(body)
    assert is_gzip(stored) and len(stored) < len(body) * 0.9
    assert gzip.decompress(stored) == body  # a standard gzip stream: what Content-Encoding: gzip promises
    assert plain_answer(stored) == body


def test_a_short_answer_stays_plain() -> None:
    body = b'{"responseCode":1,"handle":"88.TEST/x","values":[]}'
    assert compress_answer(body) is body
    assert not is_gzip(body) and plain_answer(body) is body


async def _get(node: Node, path: str, encoding: str | None, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    headers = {} if encoding is None else {"Accept-Encoding": encoding}
    async with (
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Accept-Encoding",)) as http,
        http.request(method, node.url + path, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


async def test_gzip_clients_get_the_cached_bytes_compressed_and_others_the_same_json(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/P-1", PRODUCT)
    path = "/api/handles/88.TEST/P-1"
    status, plain, headers = await _get(node, path, None)  # the first look-up fills the cache
    assert status == 200 and "Content-Encoding" not in headers
    assert headers["Vary"] == "Accept-Encoding"
    assert orjson.loads(plain)["values"][0]["data"]["value"] == "https://example.com/products/pump/P-1"
    for _ in range(2):  # cached now: the hot path answers both kinds of client
        status, packed, headers = await _get(node, path, "gzip, deflate")
        assert status == 200
        assert headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
        assert int(headers["Content-Length"]) == len(packed) < len(plain)
        assert gzip.decompress(packed) == plain
        status, again, headers = await _get(node, path, "identity")
        assert (status, again) == (200, plain) and "Content-Encoding" not in headers
        status, refused, headers = await _get(node, path, "gzip;q=0")
        assert (status, refused) == (200, plain) and "Content-Encoding" not in headers


async def test_head_tells_the_length_of_what_a_get_would_send(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/P-1", PRODUCT)
    path = "/api/handles/88.TEST/P-1"
    _, plain, _ = await _get(node, path, None)
    _, packed, _ = await _get(node, path, "gzip")
    status, body, headers = await _get(node, path, "gzip", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(packed)))
    status, body, headers = await _get(node, path, None, method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(plain)))


async def test_filtered_and_respelled_answers_are_plain_json_with_vary(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/P-1", PRODUCT)
    await _get(node, "/api/handles/88.TEST/P-1", None)
    for path in ("/api/handles/88.TEST/P-1?index=1", "/api/handles/88.test/p-1"):
        status, body, headers = await _get(node, path, "gzip")
        assert status == 200 and "Content-Encoding" not in headers, path
        assert headers["Vary"] == "Accept-Encoding", path
        assert orjson.loads(body)["responseCode"] == 1, path


def test_plain_copies_serve_the_same_json_and_stay_within_their_bound() -> None:
    bodies = [orjson.dumps({"responseCode": 1, "handle": f"88.TEST/P-{n}", "values": PRODUCT}) for n in range(40)]
    answers = [compress_answer(body) for body in bodies]
    cost = len(answers[0]) + len(bodies[0])
    copies = PlainCopies(max_bytes=10 * cost)
    for answer, body in zip(answers, bodies, strict=True):
        assert copies.of(answer) == body
        assert copies.of(answer) is copies.of(answer)  # kept: the second call decompresses nothing
    assert copies._bytes <= 10 * cost and len(copies._copies) <= 10
    assert copies.of(answers[0]) == bodies[0]  # evicted long ago: decompressed again, still right
    renewed = compress_answer(bodies[-1])  # a record's new version is a new answer object
    assert renewed is not answers[-1] and copies.of(renewed) == bodies[-1]
