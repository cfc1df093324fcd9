"""Prometheus metrics of the node, counted as plain integers on the hot path and gathered at scrape time.

Why this shape: ``Counter.labels(...).inc()`` costs about 4 µs and a pre-bound child 0.5 µs plus a lock
(research/performance-anchors.md §2e), against a cached look-up of about 40 µs. So the stages count on
themselves (``Cache`` attributes, ``LookupCounts`` per API, ``LatencyHistogram``) with integer increments and no
lock — one event loop per process — and ``NodeCollector`` turns those numbers into metric families when
Prometheus scrapes ``/metrics``. Each app has its own ``CollectorRegistry`` (never the global one), so two nodes in
one test process do not clash.

Metrics (all prefixed ``idnode_``; labels are bounded sets, never a handle or prefix):

- ``lookups_total{outcome,api}``: one per identifier looked up. outcome: hit, negative_hit, miss, not_found,
  forwarded, stale, error; api: rest, proxy, batch.
- ``lookup_duration_seconds{api}``: histogram of handler time per request (50 µs – 1 s buckets).
- ``batch_size``: histogram of identifiers per ``POST /api/resolve``.
- ``cache_entries{kind}``, ``cache_bytes``: positive/negative entries, estimated bytes of positive entries.
- ``cache_evictions_total{kind}``, ``cache_expirations_total``, ``cache_invalidations_total``,
  ``cache_flushes_total``, ``cache_single_flight_joins_total``, ``cache_loads_total``, ``cache_load_keys_total``,
  ``cache_discarded_loads_total``, ``cache_load_errors_total``.
- ``db_query_duration_seconds``: histogram of the read path's load queries.
- ``db_pool_connections{state}`` (idle, in_use), ``db_pool_max_connections``.
- ``listen_connected``, ``listen_reconnects_total``, ``listen_connection_losses_total``, ``listen_notifications_total``.
- ``build_info{version}``; and the standard ``process_*`` metrics of this process.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from resolver import __version__

__all__ = [
    "APIS",
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "LatencyHistogram",
    "LookupCounts",
    "NodeCollector",
    "NodeMetrics",
    "new_registry",
]

APIS = ("rest", "proxy", "batch")
OUTCOMES = ("hit", "negative_hit", "miss", "not_found", "forwarded", "stale", "error")
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class LookupCounts:
    """Look-ups of one API by outcome; stages add to the attributes directly."""

    __slots__ = OUTCOMES

    def __init__(self) -> None:
        for name in OUTCOMES:
            setattr(self, name, 0)


class LatencyHistogram:
    """A histogram as a list of bucket counts: ``observe`` is one bisect and two additions, no lock."""

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

    __slots__ = ("batch_sizes", "db_query", "latency", "lookups")

    def __init__(self) -> None:
        self.lookups = {api: LookupCounts() for api in APIS}
        self.latency = {api: LatencyHistogram(LATENCY_BUCKETS) for api in APIS}
        self.batch_sizes = LatencyHistogram(BATCH_BUCKETS)
        self.db_query = LatencyHistogram(LATENCY_BUCKETS)


Source = Callable[[], Iterable[Metric]]


def _histogram(name: str, doc: str, histogram: LatencyHistogram, labels: dict[str, str] | None = None) -> Metric:
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
    ) -> None:
        self.metrics = metrics
        self.cache_stats = cache_stats
        self.listener = listener
        self.pool = pool
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        yield from self._lookups()
        yield from self._cache()
        yield from self._database()
        yield from self._listener()
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
            ("expirations", "Entries dropped because their TTL passed"),
            ("invalidations", "Change notifications applied to the cache"),
            ("flushes", "Whole-cache flushes (LISTEN loss, bulk changes, prefix changes)"),
            ("single_flight_joins", "Misses that joined a load already under way"),
            ("loads", "Load queries issued for misses"),
            ("load_keys", "Keys asked for by load queries"),
            ("load_errors", "Load queries that failed"),
            ("discarded_loads", "Loaded results not stored because the key changed meanwhile"),
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
            "idnode_listen_connected", "1 while the LISTEN connection is up", value=listener.connected
        )  # type: ignore[attr-defined]
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
