"""``idnode serve --workers 2`` (resolver/serve.py): GET /metrics reports node-wide totals whichever worker answers.

The node runs as a real process tree over the test database. Look-ups go over fresh connections, so the kernel's
SO_REUSEPORT hashing spreads them over both workers; each worker's own ``/metrics/local`` (announced at start)
shows that both got some. Faults are real: a worker is stopped with SIGSTOP, or killed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ServedNode, home, put_record, serve_node

K = 60
RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/w"}}]


def serve_workers(dsn: str, workers: int = 2) -> contextlib.AbstractContextManager[ServedNode]:
    return serve_node(dsn, "--workers", str(workers))


_GAUGES = ("idnode_workers", "idnode_workers_unreachable", "idnode_listen_connected", "idnode_build_info")


def _totals(text: str) -> dict[str, float]:
    """Node-wide figures this file checks, from one exposition."""
    out = {"rest_lookups": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "idnode_lookups_total" and sample.labels["api"] == "rest":
                out["rest_lookups"] += sample.value
            elif sample.name == "idnode_lookup_duration_seconds_count" and sample.labels["api"] == "rest":
                out["rest_latency_count"] = sample.value
            elif sample.name in _GAUGES:
                out[sample.name] = sample.value
    return out


async def _fresh_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """One GET over a connection of its own, so SO_REUSEPORT may pick either worker."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as response,
    ):
        return response.status, await response.text()


async def _seeded(dsn: str) -> None:
    await home(dsn, "88.TEST")
    for n in range(5):
        await put_record(dsn, f"88.TEST/w{n}", RECORD)


async def _send_lookups(url: str) -> None:
    """Exactly K REST look-ups: hits and misses, absent handles, and malformed ones (each counts once)."""
    paths = [f"/api/handles/88.TEST/w{n % 5}" for n in range(K - 10)]
    paths += [f"/api/handles/88.TEST/absent{n % 3}" for n in range(6)]
    paths += ["/api/handles/88.TEST/%ZZ", "/api/handles/99.OTHER/x", "/api/handles/88.TEST/a%0Ab", "/api/handles/.x"]
    assert len(paths) == K
    statuses = await asyncio.gather(*(_fresh_get(url + path) for path in paths))
    assert {status for status, _ in statuses} <= {200, 400, 404}


async def test_metrics_report_node_wide_lookups_whichever_worker_answers(database: str) -> None:
    await _seeded(database)
    with serve_workers(database) as node:
        assert len(node.local_urls) == 2
        await _send_lookups(node.url)
        per_worker = [_totals((await _fresh_get(url))[1])["rest_lookups"] for url in node.local_urls]
        assert sum(per_worker) == K
        assert all(count > 0 for count in per_worker), f"one worker got every look-up: {per_worker}"
        for _ in range(8):
            status, text = await _fresh_get(node.url + "/metrics")
            assert status == 200
            totals = _totals(text)
            assert totals["rest_lookups"] == K, totals
            assert totals["rest_latency_count"] == K, totals
            assert totals["idnode_workers"] == 2
            assert totals["idnode_workers_unreachable"] == 0
            assert totals["idnode_listen_connected"] == 2
            assert totals["idnode_build_info"] == 1


async def test_a_stopped_worker_is_reported_unreachable_without_stalling_the_scrape(database: str) -> None:
    await _seeded(database)
    with serve_workers(database) as node:
        await _send_lookups(node.url)
        stopped = node.worker_pids()[0]
        os.kill(stopped, signal.SIGSTOP)
        try:
            answers: list[tuple[float, dict[str, float]]] = []
            for _ in range(20):  # connections the kernel hands to the stopped worker time out; the others answer
                started = time.monotonic()
                try:
                    status, text = await _fresh_get(node.url + "/metrics", timeout=2.5)
                except TimeoutError:
                    continue
                assert status == 200
                answers.append((time.monotonic() - started, _totals(text)))
                if len(answers) == 3:
                    break
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert len(answers) == 3, "the running worker never answered /metrics"
        for elapsed, totals in answers:
            assert totals["idnode_workers_unreachable"] == 1
            assert totals["idnode_workers"] == 2
            assert 0 < totals["rest_lookups"] < K  # only the running worker's share
            assert elapsed < 2.5  # the sibling timeout is 1 s
        _, text = await _fresh_get(node.url + "/metrics")
        assert _totals(text)["idnode_workers_unreachable"] == 0
        assert _totals(text)["rest_lookups"] == K


async def test_a_killed_worker_is_restarted_and_serves_its_metrics_again(database: str) -> None:
    await _seeded(database)
    with serve_workers(database) as node:
        victim = node.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = node.worker_pids()
            if len(pids) == 2 and victim not in pids:
                break
            await asyncio.sleep(0.1)
        assert victim not in node.worker_pids() and len(node.worker_pids()) == 2
        for url in node.local_urls:  # the restarted worker serves its loopback socket again
            totals: dict[str, float] = {}
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    status, text = await _fresh_get(url, timeout=2.0)
                    if status == 200:
                        totals = _totals(text)
                        break
                await asyncio.sleep(0.2)
            assert totals.get("idnode_workers") == 2, url
        await _send_lookups(node.url)
        _, text = await _fresh_get(node.url + "/metrics")
        assert _totals(text)["rest_lookups"] == K
        assert _totals(text)["idnode_workers_unreachable"] == 0
