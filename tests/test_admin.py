"""resolver/admin.py: with ``admin_port`` set, ``/metrics`` is served on the admin listener and not publicly.

The node runs as ``idnode serve`` processes over the test database, with one worker and with two (whose admin
listeners share the port like the public one and answer node-wide totals).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, home, put_record, serve_node

RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/a"}}]


async def _get(url: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url, allow_redirects=False) as response,
    ):
        return response.status, response.content_type, await response.text()


def _rest_lookups(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "idnode_lookups_total" and sample.labels["api"] == "rest"
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_metrics_move_to_the_admin_port_and_leave_the_public_one(database: str, workers: int) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/a", RECORD)
    admin_port = free_port()
    with serve_node(database, "--admin-port", str(admin_port), "--workers", str(workers)) as node:
        await asyncio.gather(*(_get(node.url + "/api/handles/88.TEST/a") for _ in range(10)))
        status, _, text = await _get(node.url + "/metrics")
        assert status != 200 and "idnode_" not in text  # not published on the public port
        for _ in range(4):  # whichever worker answers, the totals are the node's
            status, kind, text = await _get(f"http://127.0.0.1:{admin_port}/metrics")
            assert (status, kind) == (200, "text/plain")
            assert _rest_lookups(text) == 10
        assert f"idnode metrics on http://127.0.0.1:{admin_port}/metrics" in node.text()


async def test_without_an_admin_port_metrics_stay_on_the_public_port(database: str) -> None:
    with serve_node(database) as node:
        status, kind, text = await _get(node.url + "/metrics")
        assert (status, kind) == (200, "text/plain")
        assert "idnode_lookups_total" in text
