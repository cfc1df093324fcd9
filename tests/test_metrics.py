"""resolver/metrics.py: what GET /metrics exposes, that look-ups are counted exactly, and the node-wide merge.

Scrapes go over real HTTP to a node over a real database (the ``node`` fixture). The merge is driven with real
expositions, and siblings are real aiohttp servers on 127.0.0.1: one that answers and one that never does.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resolver.app import PROMETHEUS_REGISTRY, STORE
from resolver.metrics import (
    APIS,
    LATENCY_BUCKETS,
    LOCAL_PATH,
    OUTCOMES,
    STATUS_CLASSES,
    PlainHistogram,
    Siblings,
    local_scrape,
    merge,
)
from tests.support import Node, free_port, put_record

RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/m"}}]
ALLOWED_LABELS = {"outcome", "api", "kind", "state", "version", "python", "le", "op", "reason", "class", "health"}
"""Every label the node may use: each has a small fixed set of values (never a handle, prefix or client)."""


async def _scrape_text(node: Node) -> str:
    async with node.http.get(node.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_every_family_is_prefixed_documented_and_labelled_from_bounded_sets(node: Node) -> None:
    families = list(text_string_to_metric_families(await _scrape_text(node)))
    assert families
    for family in families:
        assert family.name.startswith(("idnode_", "process_")), family.name
        assert family.documentation.strip(), f"{family.name} has no help text"
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)


async def test_counters_end_in_total_and_durations_are_histograms_in_seconds(node: Node) -> None:
    types = {}
    for line in (await _scrape_text(node)).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
    for name, kind in types.items():
        assert (kind == "counter") == name.endswith("_total"), f"{name} is a {kind}"
        if "duration" in name:
            assert kind == "histogram" and name.endswith("_seconds"), name
    assert types["idnode_lookups_total"] == "counter"
    assert types["idnode_lookup_duration_seconds"] == "histogram"
    assert types["idnode_db_query_duration_seconds"] == "histogram"
    assert types["idnode_workers"] == "gauge"


async def test_every_outcome_of_every_api_is_exposed_at_zero_before_any_traffic(node: Node) -> None:
    samples = _samples(await _scrape_text(node))
    for api in APIS:
        for outcome in OUTCOMES:
            assert _value(samples, "idnode_lookups_total", outcome=outcome, api=api) == 0


async def test_a_cached_lookup_adds_exactly_one_hit_and_one_latency_observation(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/m1", RECORD)
    status, _, _ = await node.get("/api/handles/88.TEST/m1")  # a miss loads and caches it
    assert status == 200
    before = _samples(await _scrape_text(node))
    status, _, _ = await node.get("/api/handles/88.TEST/m1")
    assert status == 200
    after = _samples(await _scrape_text(node))

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert _value(before, "idnode_lookups_total", outcome="miss", api="rest") == 1
    assert _value(before, "idnode_db_query_duration_seconds_count") >= 1
    assert delta("idnode_lookups_total", outcome="hit", api="rest") == 1
    assert delta("idnode_lookups_total", outcome="miss", api="rest") == 0
    assert delta("idnode_lookup_duration_seconds_count", api="rest") == 1
    assert delta("idnode_lookup_duration_seconds_bucket", api="rest", le="+Inf") == 1
    assert delta("idnode_lookup_duration_seconds_sum", api="rest") > 0
    assert delta("idnode_db_query_duration_seconds_count") == 0


@pytest.mark.parametrize(
    "body",
    [{"handles": ["88.TEST/m1", "88.TEST/none", "99.OTHER/x"]}, {"handles": "not a list"}],
    ids=["answered", "refused"],
)
async def test_every_batch_request_is_one_batch_latency_observation(node: Node, body: object) -> None:
    await put_record(node.dsn, "88.TEST/m1", RECORD)
    for _ in range(2):
        async with node.http.post(node.url + "/api/resolve", json=body) as response:
            await response.read()
    samples = _samples(await _scrape_text(node))
    assert _value(samples, "idnode_lookup_duration_seconds_count", api="batch") == 2
    assert _value(samples, "idnode_lookup_duration_seconds_bucket", api="batch", le="+Inf") == 2
    assert _value(samples, "idnode_lookup_duration_seconds_sum", api="batch") > 0


async def test_every_http_answer_is_counted_by_status_class(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/m1", RECORD)
    before = _samples(await _scrape_text(node))
    assert {c for (name, labels) in before if name == "idnode_http_responses_total" for _, c in labels} == set(
        STATUS_CLASSES
    )
    requests = [
        ("GET", "/api/handles/88.TEST/m1", 200),
        ("GET", "/api/handles/88.TEST/m1", 200),  # the hot path
        ("HEAD", "/api/handles/88.TEST/m1", 200),
        ("GET", "/88.TEST/m1", 302),
        ("GET", "/api/handles/88.TEST/none", 404),
        ("GET", "/88.TEST/none", 404),
        ("GET", "/api/handles/99.OTHER/x", 400),
        ("PATCH", "/healthz", 405),  # aiohttp's own answer, no handler of ours runs
    ]
    for method, path, status in requests:
        got, _, _ = await node.call(method, path)
        assert got == status, (method, path)
    await node.app[STORE].pool.close()  # the database is gone for this node: a miss cannot be answered
    got, _, _ = await node.call("GET", "/api/handles/88.TEST/other")
    assert got >= 500
    after = _samples(await _scrape_text(node))

    def delta(status_class: str) -> float:
        name = "idnode_http_responses_total"
        return _value(after, name, **{"class": status_class}) - _value(before, name, **{"class": status_class})

    assert [delta(c) for c in STATUS_CLASSES] == [0, 3 + 1, 1, 4, 1]  # 2xx: and the first scrape


async def test_client_mistakes_count_as_invalid_and_never_as_errors(node: Node) -> None:
    """outcome="error" drives the error-ratio alert, so bad input from clients must not look like a failing node."""
    for path in ("/api/handles/88.TEST/%ZZ", "/api/handles/99.OTHER/x", "/api/handles/.x", "/99.OTHER/x"):
        status, _, _ = await node.get(path)
        assert 400 <= status < 500, path
    async with node.http.post(node.url + "/api/resolve", json={"handles": ["99.OTHER/y", 7, ""]}) as r:
        assert r.status == 200
    samples = _samples(await _scrape_text(node))
    assert _value(samples, "idnode_lookups_total", outcome="invalid", api="rest") == 3
    assert _value(samples, "idnode_lookups_total", outcome="invalid", api="proxy") == 1
    assert _value(samples, "idnode_lookups_total", outcome="invalid", api="batch") == 3
    for api in APIS:
        assert _value(samples, "idnode_lookups_total", outcome="error", api=api) == 0, api


async def test_a_single_worker_node_reports_one_worker_and_no_unreachable_sibling(node: Node) -> None:
    samples = _samples(await _scrape_text(node))
    assert _value(samples, "idnode_workers") == 1
    assert _value(samples, "idnode_workers_unreachable") == 0
    assert _value(samples, "idnode_listen_connected") == 1


def test_histogram_buckets_are_cumulative_and_a_value_on_a_bound_counts_in_that_bucket() -> None:
    histogram = PlainHistogram(LATENCY_BUCKETS)
    for value in (0.00005, 0.00006, 0.001, 2.0):
        histogram.observe(value)
    buckets = dict(histogram.buckets())
    assert buckets["5e-05"] == 1  # le is "less or equal"
    assert buckets["0.0001"] == 2
    assert buckets["0.001"] == 3
    assert buckets["1.0"] == 3
    assert buckets["+Inf"] == 4
    assert list(buckets.values()) == sorted(buckets.values())
    assert histogram.sum == pytest.approx(2.00111)


def _worker_exposition(
    lookups: str, fast: float, latency_count: float, latency_sum: float, cached: float, started: float, imported: float
) -> str:
    """One worker's exposition of the families ``merge`` combines; ``lookups`` are its ``idnode_lookups_total``
    sample lines, the other figures fill in the latency histogram, the gauges and ``idnode_imports_created``."""
    return f"""# HELP idnode_lookups_total Look-ups
# TYPE idnode_lookups_total counter
{lookups}
# HELP idnode_lookup_duration_seconds Time
# TYPE idnode_lookup_duration_seconds histogram
idnode_lookup_duration_seconds_bucket{{api="rest",le="0.001"}} {fast}
idnode_lookup_duration_seconds_bucket{{api="rest",le="+Inf"}} {latency_count}
idnode_lookup_duration_seconds_count{{api="rest"}} {latency_count}
idnode_lookup_duration_seconds_sum{{api="rest"}} {latency_sum}
# HELP idnode_cache_entries Entries
# TYPE idnode_cache_entries gauge
idnode_cache_entries{{kind="positive"}} {cached}
# HELP idnode_workers Workers
# TYPE idnode_workers gauge
idnode_workers 2.0
# HELP idnode_build_info Build
# TYPE idnode_build_info gauge
idnode_build_info{{python="3.11.7",version="0.1.0"}} 1.0
# HELP process_start_time_seconds Start
# TYPE process_start_time_seconds gauge
process_start_time_seconds {started}
# HELP idnode_imports_created Created
# TYPE idnode_imports_created gauge
idnode_imports_created {imported}
"""


WORKER_A = _worker_exposition(
    'idnode_lookups_total{api="rest",outcome="hit"} 5.0\nidnode_lookups_total{api="rest",outcome="miss"} 1.0',
    fast=4.0,
    latency_count=6.0,
    latency_sum=0.5,
    cached=10.0,
    started=1000.0,
    imported=500.0,
)
WORKER_B = _worker_exposition(
    'idnode_lookups_total{api="rest",outcome="hit"} 7.0\nidnode_lookups_total{api="proxy",outcome="hit"} 2.0',
    fast=1.0,
    latency_count=7.0,
    latency_sum=0.25,
    cached=3.0,
    started=900.0,
    imported=700.0,
)


def test_merging_workers_sums_counts_and_keeps_the_earliest_start_and_one_build() -> None:
    merged = merge([text_string_to_metric_families(WORKER_A), text_string_to_metric_families(WORKER_B)])
    text = generate_latest(_Registry(merged)).decode()
    samples = _samples(text)  # the merged exposition parses back
    assert _value(samples, "idnode_lookups_total", api="rest", outcome="hit") == 12
    assert _value(samples, "idnode_lookups_total", api="rest", outcome="miss") == 1  # only in A
    assert _value(samples, "idnode_lookups_total", api="proxy", outcome="hit") == 2  # only in B
    assert _value(samples, "idnode_lookup_duration_seconds_bucket", api="rest", le="0.001") == 5
    assert _value(samples, "idnode_lookup_duration_seconds_bucket", api="rest", le="+Inf") == 13
    assert _value(samples, "idnode_lookup_duration_seconds_count", api="rest") == 13
    assert _value(samples, "idnode_lookup_duration_seconds_sum", api="rest") == 0.75
    assert _value(samples, "idnode_cache_entries", kind="positive") == 13
    assert _value(samples, "idnode_workers") == 2
    assert _value(samples, "idnode_build_info", python="3.11.7", version="0.1.0") == 1
    assert _value(samples, "process_start_time_seconds") == 900
    assert _value(samples, "idnode_imports_created") == 500
    assert "# TYPE idnode_lookups_total counter" in text
    assert "# TYPE idnode_lookup_duration_seconds histogram" in text


async def test_merging_a_real_scrape_alone_reproduces_it(node: Node) -> None:
    await put_record(node.dsn, "88.TEST/m2", RECORD)
    await node.get("/api/handles/88.TEST/m2")
    await node.get("/api/handles/88.TEST/nothing")
    text = generate_latest(node.app[PROMETHEUS_REGISTRY]).decode()
    again = generate_latest(_Registry(merge([text_string_to_metric_families(text)]))).decode()
    volatile = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes")
    original = {k: v for k, v in _samples(text).items() if k[0] not in volatile}
    assert {k: v for k, v in _samples(again).items() if k[0] not in volatile} == original


@pytest.fixture
async def sibling(node: Node) -> AsyncIterator[str]:
    """A second worker's /metrics/local: the node's own registry served on another port of 127.0.0.1."""
    local = web.Application()
    local.router.add_get(LOCAL_PATH, local_scrape(node.app[PROMETHEUS_REGISTRY]))
    runner = web.AppRunner(local, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}{LOCAL_PATH}"
    await runner.cleanup()


@pytest.fixture
def silent_sibling() -> Iterator[str]:
    """A worker that accepts connections (the kernel does, from the backlog) but never answers: a stopped one."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}{LOCAL_PATH}"
    sock.close()


async def test_node_wide_scrape_adds_siblings_and_counts_a_silent_one_unreachable(
    node: Node, sibling: str, silent_sibling: str
) -> None:
    await put_record(node.dsn, "88.TEST/m3", RECORD)
    for _ in range(3):
        await node.get("/api/handles/88.TEST/m3")
    own = _samples(generate_latest(node.app[PROMETHEUS_REGISTRY]).decode())
    siblings = Siblings([sibling, silent_sibling], timeout=0.3)
    try:
        started = time.monotonic()
        merged = _samples((await siblings.node_wide(node.app[PROMETHEUS_REGISTRY])).decode())
        elapsed = time.monotonic() - started
    finally:
        await siblings.close()
    assert elapsed < 2.0, "a silent sibling must cost at most its timeout"
    for outcome in ("hit", "miss"):
        key = ("idnode_lookups_total", (("api", "rest"), ("outcome", outcome)))
        assert merged[key] == 2 * own[key] > 0
    assert _value(merged, "idnode_workers_unreachable") == 1
    assert _value(merged, "idnode_workers") == 1
    assert _value(merged, "idnode_build_info", python=_python(own), version=_version(own)) == 1


async def test_concurrent_node_wide_scrapes_agree(node: Node, sibling: str) -> None:
    await put_record(node.dsn, "88.TEST/m4", RECORD)
    await node.get("/api/handles/88.TEST/m4")
    siblings = Siblings([sibling])
    try:
        bodies = await asyncio.gather(*(siblings.node_wide(node.app[PROMETHEUS_REGISTRY]) for _ in range(5)))
    finally:
        await siblings.close()
    totals = {_value(_samples(body.decode()), "idnode_lookups_total", api="rest", outcome="miss") for body in bodies}
    assert totals == {2}


def _python(samples: dict) -> str:
    return next(dict(labels)["python"] for name, labels in samples if name == "idnode_build_info")


def _version(samples: dict) -> str:
    return next(dict(labels)["version"] for name, labels in samples if name == "idnode_build_info")


class _Registry:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families
