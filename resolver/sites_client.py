"""HTTP to other nodes' sites: one keep-alive connection pool per server, a deadline per request, failover.

A site lists one or more servers (``sites.site_urls``); a request goes to the first, and on to the next when a
server cannot be reached, does not answer within ``forward_timeout``, or answers 5xx (it is up but cannot serve,
e.g. its database is away). The last 5xx is returned when every server answered one; ``SiteUnreachable`` is raised
when none answered at all. Every request says how many nodes have forwarded it so far (``HOP_HEADER``, one more
than the request it serves carried): a node forwards a request on only below ``max_referrals`` hops, so two nodes
configured to forward to each other stop after that many.

Answers are read up to ``max_bytes`` (a larger one is a failed request, as an unreachable server is) and parsed as
JSON; anything else is a ``ReferralFailed`` (the other side is not the Handle API). The HTTP itself is
``http_client.Connections``, keep-alive connections per server. Metrics: requests by site and outcome, latency,
errors (``ForwardMetrics``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from resolver import __version__
from resolver.errors import ReferralFailed, SiteUnreachable
from resolver.http_client import Connections
from resolver.metrics import LATENCY_BUCKETS, PlainHistogram

__all__ = ["HOP_HEADER", "ForwardMetrics", "Reply", "SitesClient", "hops_of"]

HOP_HEADER = "Idnode-Forwarded"
_HEADERS = {"Accept": "application/json", "User-Agent": f"idnode/{__version__}"}
_MANY_HOPS = 1 << 20


def hops_of(request: web.Request) -> int:
    """How many nodes forwarded ``request`` (0 from a client); a value that is not a small number counts as many."""
    raw = request.headers.get(HOP_HEADER)
    if raw is None:
        return 0
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 4 else _MANY_HOPS


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer: HTTP status and parsed JSON body."""

    status: int
    body: Any
    server: str


class ForwardMetrics:
    """Counters of the hierarchy, read at scrape time (labels: site = the servers asked, outcome)."""

    __slots__ = ("latency", "referrals", "requests", "site_entries", "upstream_errors")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency = PlainHistogram((*LATENCY_BUCKETS, 2.5, 5.0))
        self.referrals = 0
        self.upstream_errors = 0
        self.site_entries = 0

    def count(self, site: str, outcome: str) -> None:
        key = (site, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "idnode_forward_requests", "Requests to other nodes' sites by site and outcome", labels=["site", "outcome"]
        )
        for (site, outcome), count in sorted(self.requests.items()):
            requests.add_metric([site, outcome], count)
        yield requests
        latency = HistogramMetricFamily("idnode_forward_duration_seconds", "Time one request to another site took")
        latency.add_metric([], self.latency.buckets(), self.latency.sum)
        yield latency
        yield CounterMetricFamily(
            "idnode_referrals", "Referrals followed to find a prefix's site", value=self.referrals
        )
        yield CounterMetricFamily(
            "idnode_upstream_errors",
            "Requests to another site that failed: unreachable, timed out, 5xx or not the Handle API",
            value=self.upstream_errors,
        )
        yield GaugeMetricFamily("idnode_site_cache_entries", "Prefixes whose site is cached", value=self.site_entries)


class SitesClient:
    """Requests to sites over keep-alive connections per server (``http_client.Connections``)."""

    def __init__(self, *, timeout: float, max_bytes: int, ca_file: Path | None, metrics: ForwardMetrics) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._connections = Connections(ssl_context=context, max_bytes=max_bytes)
        self.metrics = metrics

    async def close(self) -> None:
        await self._connections.close()

    async def get(self, servers: Sequence[str], path: str, *, hops: int) -> Reply:
        return await self.request(servers, "GET", path, hops=hops)

    async def request(self, servers: Sequence[str], method: str, path: str, payload: Any = None, *, hops: int) -> Reply:
        """Ask the servers of one site in turn (see the module docstring); ``path`` is already percent-encoded;
        ``hops`` is the number the request says it has made (this one included)."""
        site = " ".join(servers)
        last: Reply | None = None
        for server in servers:
            started = perf_counter()
            try:
                reply = await self._send(server, method, path, payload, hops)
            except (TimeoutError, OSError):
                self.metrics.upstream_errors += 1
                self.metrics.count(site, "unreachable")
                continue
            finally:
                self.metrics.latency.observe(perf_counter() - started)
            if reply.status >= 500:
                self.metrics.upstream_errors += 1
                self.metrics.count(site, "5xx")
                last = reply
                continue
            self.metrics.count(site, str(reply.status))
            return reply
        if last is not None:
            return last
        raise SiteUnreachable(site)

    async def _send(self, server: str, method: str, path: str, payload: Any, hops: int) -> Reply:
        data = orjson.dumps(payload) if payload is not None else None
        headers = {**_HEADERS, HOP_HEADER: str(hops)}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with asyncio.timeout(self._timeout):
            status, body = await self._connections.request(server, method, path, headers, data)
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            if status >= 500:
                return Reply(status, None, server)
            self.metrics.upstream_errors += 1
            raise ReferralFailed(f"{server} did not answer with the Handle JSON API (HTTP {status})") from None
        return Reply(status, parsed, server)
