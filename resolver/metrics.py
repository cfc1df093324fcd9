"""Prometheus metrics of the node, counted as plain integers on the hot path and gathered at scrape time.

Why this shape: ``Counter.labels(...).inc()`` costs about 4 µs and a pre-bound child 0.5 µs plus a lock
(research/performance-anchors.md §2e), against a cached look-up of about 40 µs. So the stages count on
themselves (``Cache`` attributes, ``LookupCounts`` per API, ``PlainHistogram``) with integer increments and no
lock — one event loop per process — and ``NodeCollector`` turns those numbers into metric families when
Prometheus scrapes ``/metrics``. Each app has its own ``CollectorRegistry`` (never the global one), so two nodes in
one test process do not clash. ``benchmarks/metrics_overhead.py`` measures what the counting costs a look-up.

Metrics (all prefixed ``idnode_``; labels are bounded sets, never a handle or prefix):

- ``lookups_total{outcome,api}``: one per identifier looked up. outcome: hit, negative_hit, miss, not_found,
  forwarded, stale, invalid (the client named no handle this node can answer: malformed, too long, foreign
  prefix), error (the node failed); api: rest, proxy, batch.
- ``lookup_duration_seconds{api}``: histogram of handler time per request (50 µs – 1 s buckets); a batch
  request is one observation.
- ``http_responses_total{class}``: every HTTP answer of the node by status class (``1xx`` … ``5xx``), aiohttp's
  own 404/405/500 included: what the error-ratio alert divides. Counted into ``NodeMetrics.responses``, one list
  slot per class (the status divided by 100), so no label is looked up: by the router's wrapper of every route,
  and by the two hot handlers themselves (``router.py`` says why).
- ``batch_size``: histogram of identifiers per ``POST /api/resolve``.
- ``cache_entries{kind}``, ``cache_bytes``: positive/negative entries, estimated bytes of positive entries.
- ``cache_evictions_total{kind}``, ``cache_expirations_total``, ``cache_invalidations_total``,
  ``cache_flushes_total``, ``cache_single_flight_joins_total``, ``cache_loads_total``, ``cache_load_keys_total``,
  ``cache_discarded_loads_total``, ``cache_load_errors_total``, ``cache_stale_answers_total`` (misses answered by an
  expired entry because its reload failed: the database is away).
- ``db_query_duration_seconds``: histogram of the read path's load queries.
- The hierarchy (``sites_client.ForwardMetrics``): ``forward_requests_total{site,outcome}`` (requests to other
  nodes' sites; outcome is the HTTP status, ``5xx`` or ``unreachable``; site is the servers asked),
  ``forward_duration_seconds`` (one request to a site), ``referrals_total``, ``upstream_errors_total``,
  ``site_cache_entries``. A look-up answered by another node counts as ``forwarded``, one answered by an expired
  foreign answer while its site is away as ``stale``; a foreign answer from the cache is a ``hit``.
- ``db_pool_connections{state}`` (idle, in_use), ``db_pool_max_connections``.
- ``listen_connected``, ``listen_reconnects_total``, ``listen_connection_losses_total``, ``listen_notifications_total``.
- ``workers``: processes serving this node (``--workers``); ``workers_unreachable``: siblings that did not answer
  the scrape (always 0 with one worker).
- ``build_info{version,python}``; and the standard ``process_*`` metrics of this process.

Several workers (``idnode serve --workers N``, resolver/serve.py). Each worker counts in its own process, but
``GET /metrics`` on the shared port must describe the node whichever worker the kernel hands the scrape to. So
each worker also serves its own registry at ``/metrics/local`` on a loopback socket of its own (serve.py binds
them before forking), and a worker answering ``/metrics`` fetches its siblings' ``/metrics/local`` concurrently
(``SIBLING_TIMEOUT`` each) and merges them with its own families (``merge``): per metric name and label set,
counters, histogram buckets, sums and counts, and gauges are summed (``idnode_listen_connected`` then counts the
workers listening, ``process_resident_memory_bytes`` is the node's RSS); ``process_start_time_seconds`` and
``*_created`` take the minimum; ``idnode_build_info``, ``idnode_workers`` and ``process_max_fds`` the maximum.
A sibling that does not answer in time is left out and counted in ``idnode_workers_unreachable``. A restarted
worker starts its counters from zero, which Prometheus' ``rate()`` treats as a counter reset. No
``prometheus_client`` multiprocess files are involved. With one worker ``/metrics`` is this process's registry.

Example::

    metrics = NodeMetrics()
    registry = new_registry(NodeCollector(metrics, cache.stats, listener, store.pool, workers=2))
    app[PROMETHEUS_REGISTRY] = registry
    app.router.add_get("/metrics", scrape)
"""

from __future__ import annotations

import asyncio
import logging
import platform
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from resolver import __version__

__all__ = [
    "APIS",
    "LATENCY_BUCKETS",
    "LOCAL_PATH",
    "OUTCOMES",
    "PROMETHEUS_REGISTRY",
    "SIBLINGS",
    "SIBLING_TIMEOUT",
    "STATUS_CLASSES",
    "InternalCounts",
    "LookupCounts",
    "NodeCollector",
    "NodeMetrics",
    "PlainHistogram",
    "Siblings",
    "local_scrape",
    "merge",
    "new_registry",
    "scrape",
]

log = logging.getLogger("idnode.metrics")

APIS = ("rest", "proxy", "batch")
OUTCOMES = ("hit", "negative_hit", "miss", "not_found", "forwarded", "stale", "invalid", "error")
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
"""Exposed classes; ``STATUS_CLASSES[i - 1]`` counts in ``NodeMetrics.responses[i]``."""

LOCAL_PATH = "/metrics/local"
SIBLING_TIMEOUT = 1.0
"""Seconds a worker waits for a sibling's ``/metrics/local``: well inside Prometheus' default 10 s scrape timeout,
and long enough for a busy worker's loop to come round to the request."""


class LookupCounts:
    """Look-ups of one API by outcome; stages add to the attributes directly."""

    __slots__ = OUTCOMES
    per_prefix = True
    """Whether these look-ups also count in the per-prefix operation statistics (``resolver/tallies.py``)."""

    def __init__(self) -> None:
        for name in OUTCOMES:
            setattr(self, name, 0)


class InternalCounts(LookupCounts):
    """Look-ups the node makes for itself (identities and prefix handles a write or a site walk reads): kept out
    of the metrics and of the operation statistics."""

    __slots__ = ()
    per_prefix = False


class PlainHistogram:
    """A histogram of any value (seconds, batch sizes) as a list of bucket counts: ``observe`` is one bisect and two
    additions, no lock.

    ``bisect_left`` puts a value equal to a bound into that bound's bucket, as Prometheus' ``le`` (less or equal)
    requires.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs as Prometheus exposes them, ending with ``+Inf``."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class NodeMetrics:
    """The read path's own counters, held by the app and bumped by the endpoints."""

    __slots__ = ("batch_sizes", "db_query", "latency", "lookups", "responses")

    def __init__(self) -> None:
        self.lookups = {api: LookupCounts() for api in APIS}
        self.latency = {api: PlainHistogram(LATENCY_BUCKETS) for api in APIS}
        self.batch_sizes = PlainHistogram(BATCH_BUCKETS)
        self.db_query = PlainHistogram(LATENCY_BUCKETS)
        self.responses = [0] * 10  # by status // 100; aiohttp allows statuses up to 999


Source = Callable[[], Iterable[Metric]]


def _histogram(name: str, doc: str, histogram: PlainHistogram, labels: dict[str, str] | None = None) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], histogram.buckets(), histogram.sum)
    return family


class NodeCollector(Collector):
    """Reads the stages' integers at scrape time; ``sources`` lets other packages (the registry) add families."""

    def __init__(
        self,
        metrics: NodeMetrics,
        cache_stats: Callable[[], dict[str, int]],
        listener: object,
        pool: object,
        sources: Sequence[Source] = (),
        *,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"metrics: workers must be at least 1, got {workers}")
        self.metrics = metrics
        self.cache_stats = cache_stats
        self.listener = listener
        self.pool = pool
        self.sources = list(sources)
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        yield from self._lookups()
        yield from self._cache()
        yield from self._database()
        yield from self._listener()
        yield GaugeMetricFamily("idnode_workers", "Worker processes serving this node", value=self.workers)
        yield GaugeMetricFamily(
            "idnode_workers_unreachable", "Workers that did not answer this scrape in time", value=0
        )
        info = GaugeMetricFamily("idnode_build_info", "idnode version", labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        for source in self.sources:
            yield from source()

    def _lookups(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "idnode_lookups", "Identifiers looked up, by outcome and API", labels=["outcome", "api"]
        )
        for api, counts in self.metrics.lookups.items():
            for outcome in OUTCOMES:
                total.add_metric([outcome, api], getattr(counts, outcome))
        yield total
        latency = HistogramMetricFamily(
            "idnode_lookup_duration_seconds", "Time to answer a look-up request, by API", labels=["api"]
        )
        for api, histogram in self.metrics.latency.items():
            latency.add_metric([api], histogram.buckets(), histogram.sum)
        yield latency
        yield _histogram("idnode_batch_size", "Identifiers per batch resolve request", self.metrics.batch_sizes)
        responses = CounterMetricFamily("idnode_http_responses", "HTTP answers sent, by status class", labels=["class"])
        for index, status_class in enumerate(STATUS_CLASSES, start=1):
            responses.add_metric([status_class], self.metrics.responses[index])
        yield responses

    def _cache(self) -> Iterator[Metric]:
        stats = self.cache_stats()
        entries = GaugeMetricFamily("idnode_cache_entries", "Entries in the record cache", labels=["kind"])
        entries.add_metric(["positive"], stats["entries"])
        entries.add_metric(["negative"], stats["negative_entries"])
        yield entries
        yield GaugeMetricFamily("idnode_cache_bytes", "Estimated bytes of positive cache entries", value=stats["bytes"])
        evictions = CounterMetricFamily("idnode_cache_evictions", "Entries evicted to stay in bounds", labels=["kind"])
        evictions.add_metric(["positive"], stats["evictions"])
        evictions.add_metric(["negative"], stats["negative_evictions"])
        yield evictions
        for key, doc in (
            ("expirations", "Entries whose TTL passed (a positive one is kept until its reload answers)"),
            ("invalidations", "Change notifications applied to the cache"),
            ("flushes", "Whole-cache flushes (LISTEN loss, bulk changes, prefix changes)"),
            ("single_flight_joins", "Misses that joined a load already under way"),
            ("loads", "Load queries issued for misses"),
            ("load_keys", "Keys asked for by load queries"),
            ("load_errors", "Load queries that failed"),
            ("discarded_loads", "Loaded results not stored because the key changed meanwhile"),
            ("stale_answers", "Misses answered from an expired entry because its reload failed (serve-stale)"),
        ):
            yield CounterMetricFamily(f"idnode_cache_{key}", doc, value=stats[key])

    def _database(self) -> Iterator[Metric]:
        yield _histogram("idnode_db_query_duration_seconds", "Read-path load query time", self.metrics.db_query)
        pool = self.pool
        size, idle = pool.get_size(), pool.get_idle_size()  # type: ignore[attr-defined]
        connections = GaugeMetricFamily("idnode_db_pool_connections", "Pool connections", labels=["state"])
        connections.add_metric(["idle"], idle)
        connections.add_metric(["in_use"], size - idle)
        yield connections
        yield GaugeMetricFamily(
            "idnode_db_pool_max_connections",
            "Pool size limit",
            value=pool.get_max_size(),  # type: ignore[attr-defined]
        )

    def _listener(self) -> Iterator[Metric]:
        listener = self.listener
        yield GaugeMetricFamily(
            "idnode_listen_connected",
            "1 while the LISTEN connection is up",
            value=listener.connected,  # type: ignore[attr-defined]
        )
        for key, doc in (
            ("reconnects", "LISTEN reconnections"),
            ("connection_losses", "LISTEN connections lost"),
            ("notifications", "Change notifications received"),
        ):
            yield CounterMetricFamily(f"idnode_listen_{key}", doc, value=getattr(listener, key))


def new_registry(collector: NodeCollector) -> CollectorRegistry:
    """A registry of this app only: the node's collector plus this process's ``process_*`` metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


# --- node-wide totals over several workers -------------------------------------------------------------------

_MINIMUM = frozenset({"process_start_time_seconds"})
_MAXIMUM = frozenset({"idnode_build_info", "idnode_workers", "process_max_fds", "idnode_db_replica_lag_seconds"})
_MAXIMUM_TYPES = frozenset({"info", "stateset"})


def _combiner(family: Metric) -> Callable[[float, float], float]:
    if family.name in _MINIMUM or family.name.endswith("_created"):
        return min
    if family.name in _MAXIMUM or family.type in _MAXIMUM_TYPES:
        return max
    return _add


def _add(a: float, b: float) -> float:
    return a + b


class _Families:
    """A ready list of families in the shape ``generate_latest`` reads (a registry's ``collect``)."""

    __slots__ = ("families",)

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def merge(groups: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One list of families holding the node-wide value of every (sample name, label set) across ``groups``.

    How each family combines is in the module docstring. Order follows the first group that has each family and
    sample, so the worker answering the scrape decides the layout.
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list]] = {}
    for group in groups:
        for family in group:
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            combine = _combiner(family)
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen = samples.get(key)
                if seen is None:
                    samples[key] = [sample.name, dict(sample.labels), sample.value]
                else:
                    seen[2] = combine(seen[2], sample.value)
    for name, merged in families.items():
        for sample_name, labels, value in values[name].values():
            merged.add_sample(sample_name, labels, value)
    return list(families.values())


class Siblings:
    """The other workers of this node, reached over loopback for node-wide scrapes (see the module docstring)."""

    __slots__ = ("_session", "timeout", "urls")

    def __init__(self, urls: Sequence[str], *, timeout: float = SIBLING_TIMEOUT) -> None:
        if timeout <= 0:
            raise ValueError(f"metrics: sibling timeout must be positive, got {timeout}")
        self.urls = tuple(urls)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> tuple[list[str], int]:
        """The siblings' expositions that arrived in time, and how many did not."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        outcomes = await asyncio.gather(*(self._fetch_one(url) for url in self.urls))
        texts = [text for text in outcomes if text is not None]
        return texts, len(outcomes) - len(texts)

    async def _fetch_one(self, url: str) -> str | None:
        assert self._session is not None
        try:
            async with self._session.get(url) as response:
                if response.status == 200:
                    return await response.text()
                log.warning("metrics: sibling %s answered %d", url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("metrics: sibling %s did not answer: %s", url, type(exc).__name__)
        return None

    async def node_wide(self, registry: CollectorRegistry) -> bytes:
        """This worker's registry merged with every sibling that answers, as one exposition."""
        texts, unreachable = await self.fetch()
        groups: list[Iterable[Metric]] = [registry.collect()]
        groups += [text_string_to_metric_families(text) for text in texts]
        groups.append(
            [GaugeMetricFamily("idnode_workers_unreachable", "Workers that did not answer", value=unreachable)]
        )
        return generate_latest(_Families(merge(groups)))  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


PROMETHEUS_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("prometheus_registry")
SIBLINGS: web.AppKey[Siblings] = web.AppKey("siblings")


async def scrape(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: the node's totals: this process's registry, merged with its siblings' when it has any."""
    app = request.app
    siblings = app.get(SIBLINGS)
    if siblings is None:
        body = generate_latest(app[PROMETHEUS_REGISTRY])
    else:
        body = await siblings.node_wide(app[PROMETHEUS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def local_scrape(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The ``/metrics/local`` handler of one worker: its own registry only, never merged."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler
