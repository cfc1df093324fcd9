"""Wiring: the one place where the read path's stages are built and connected, in this order.

1. ``Store``: the pool; everything below that needs the database receives it or a function over it. With
   ``database_replica_urls`` it also holds the replicas' pools and their router (``replicas.py``), which the change
   listener tells what it hears.
2. ``PrefixTable``: loaded before serving, so the first request already knows what is homed here.
3. ``Cache`` with a loader over the store (``answers.build_entry`` turns rows into entries); the cache
   itself knows nothing about PostgreSQL. ``Lookup`` over cache and prefix table, and the ``Forwarder`` that
   answers other nodes' prefixes through the hierarchy (it reads this node's prefix handles through the look-up,
   and the look-up forwards through it, so the second is handed to the first once both exist).
4. ``ChangeListener``: must be LISTENing before the first request is answered, or a change committed
   between a miss and the LISTEN could be missed; it is started in ``on_startup`` and awaited.
5. Extensions (the registry): each is handed the stages above as a ``Core`` and returns its ``Additions``
   (hooks into ``/api/handles``, routes, start/stop steps, metric sources, ``/readyz`` details), so the
   endpoint below is built complete and nothing is patched afterwards.
6. Routes: the API (its hot GET route first), health, ``/api/site``, ``/.well-known/idnode``, then the
   extensions' routes, then ``/api`` errors, and last the proxy's catch-all ``/{handle}``.

No middleware is installed: each one would run on every cached look-up (research/performance-anchors.md §2a).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client.core import Metric

from resolver.answers import Redirects, build_entry
from resolver.cache import Cache, CacheEntry, Loader
from resolver.changes import ChangeListener
from resolver.config import Settings
from resolver.description import Description
from resolver.errors import DatabaseUnavailable
from resolver.fastlane import Answers, FastLaneRunner
from resolver.forward import Forwarder
from resolver.http import HANDLES_PREFIX, HandleHooks, HandlesEndpoint, api_not_found
from resolver.lookup import Lookup
from resolver.metrics import PROMETHEUS_REGISTRY, NodeCollector, NodeMetrics, new_registry, scrape
from resolver.prefixes import PrefixTable
from resolver.proxy import Proxy
from resolver.replicas import ReplicaReads, Replicas
from resolver.responses import ANY_TAIL, BODY_TIMEOUT, SECURE_CHECK, Ready, json_response
from resolver.router import new_application
from resolver.scans import ScanCounts
from resolver.site_info import SiteInfo
from resolver.sites_client import ForwardMetrics, SitesClient
from resolver.store import DatabaseSettings, Store, connect, open_pool, unavailable
from resolver.tallies import PrefixTallies
from resolver.template_labels import TemplateLabels

__all__ = [
    "CACHE",
    "ENDPOINT",
    "FORWARDER",
    "LISTENER",
    "LOOKUP",
    "PREFIXES",
    "SETTINGS",
    "STORE",
    "Additions",
    "Core",
    "Extension",
    "create_app",
    "node_runner",
]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DSN: web.AppKey[str] = web.AppKey("dsn")
STORE: web.AppKey[Store] = web.AppKey("store")
CACHE: web.AppKey[Cache] = web.AppKey("cache")
PREFIXES: web.AppKey[PrefixTable] = web.AppKey("prefixes")
LOOKUP: web.AppKey[Lookup] = web.AppKey("lookup")
LISTENER: web.AppKey[ChangeListener] = web.AppKey("listener")
ENDPOINT: web.AppKey[HandlesEndpoint] = web.AppKey("endpoint")
METRICS: web.AppKey[NodeMetrics] = web.AppKey("metrics")
COLLECTOR: web.AppKey[NodeCollector] = web.AppKey("collector")
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder")
READY_DETAILS: web.AppKey[list[Callable[[], dict[str, object]]]] = web.AppKey("ready_details")
FAST_ANSWERS: web.AppKey[Answers] = web.AppKey("fast_answers")
"""What the fast lane may answer itself (resolver/fastlane.py): the hot paths' ready answers, routed as the router
would route the request."""

AppHook = Callable[[web.Application], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Core:
    """The read path's stages, as an extension builds on them."""

    settings: Settings
    dsn: str
    store: Store
    lookup: Lookup
    tallies: PrefixTallies
    """Per-prefix look-up counts since the last roll-up (the statistics recorder drains them)."""
    scans: ScanCounts
    """Proxy answers per handle and link type since the last roll-up (the statistics recorder drains them)."""


@dataclass(frozen=True, slots=True)
class Additions:
    """What an extension adds to the node; every part is optional."""

    handles: HandleHooks | None = None
    routes: Sequence[web.RouteDef] = ()
    secure_check: Callable[[web.Request], bool] | None = None
    """What counts as a secure channel (the default: TLS only)."""
    on_startup: Sequence[AppHook] = ()
    on_cleanup: Sequence[AppHook] = ()
    metrics: Sequence[Callable[[], Iterator[Metric]]] = ()
    ready_details: Sequence[Callable[[], dict[str, object]]] = ()
    """Parts added to every ``/readyz`` answer (information: they do not decide readiness), e.g. a mirror's lag."""


Extension = Callable[[Core], Awaitable[Additions]]
"""Builds its part of the node over the core stages (the registry is one)."""

LISTEN_START_TIMEOUT = 30.0
READY_TIMEOUT = 2.0
"""``/readyz`` answers within this many seconds: a probe that hangs on a frozen database tells nobody anything."""


def _loader(store: Store, metrics: NodeMetrics, redirects: Redirects) -> Loader:
    observe = metrics.db_query.observe

    async def load(keys: Sequence[str]) -> dict[str, CacheEntry]:
        """Rows to entries; a database that cannot answer becomes ``DatabaseUnavailable``, so every reader of the
        cache (API, batch items, proxy) answers it as the Handle error it is."""
        started = perf_counter()
        try:
            records = await store.fetch_records(keys)
        except Exception as exc:
            if unavailable(exc):
                raise DatabaseUnavailable() from exc
            raise
        observe(perf_counter() - started)
        return {record.key: build_entry(record, redirects=redirects) for record in records}

    return load


async def _open_store(dsn: str, settings: DatabaseSettings) -> Store:
    """The primary's pool, and the replicas' when ``replica_urls`` names some (their pools open no connection before
    the first read, so a replica that is down does not stop the node from starting)."""
    store = await connect(dsn, settings)
    if not settings.replica_urls:
        return store
    pools = [await open_pool(url, settings, min_size=0) for url in settings.replica_urls]
    replicas = Replicas(store.pool, pools, max_lag=settings.replica_max_lag)
    return Store(store.pool, replicas, ReplicaReads(replicas))


async def create_app(settings: Settings, dsn: str, *, extensions: Iterable[Extension] = ()) -> web.Application:
    """A ready-to-serve application over the database at ``dsn`` (already migrated)."""
    store = await _open_store(dsn, settings.database)
    prefixes = PrefixTable(await store.fetch_prefixes())
    metrics = NodeMetrics()
    redirects = Redirects(settings.redirect_schemes)
    tallies = PrefixTallies()
    cache = Cache(settings.cache, _loader(store, metrics, redirects), tallies=tallies)
    lookup = Lookup(cache, prefixes, redirects, tallies)
    hierarchy = settings.hierarchy
    sites = SitesClient(
        timeout=hierarchy.forward_timeout,
        max_bytes=settings.max_body_bytes,
        ca_file=hierarchy.upstream_ca,
        metrics=ForwardMetrics(),
    )
    forwarder = Forwarder(
        hierarchy, cache, sites, holds=prefixes.holds, local_prefix=lookup.prefix_answer, redirects=redirects
    )
    lookup.forward_with(forwarder)

    async def reload_prefixes() -> None:
        prefixes.replace(await store.fetch_prefixes())
        forwarder.forget_sites()  # a delegation may have moved

    timeout = settings.database.command_timeout
    replicas = store.replicas
    listener = ChangeListener(
        lambda: asyncpg.connect(dsn, timeout=timeout),
        cache,
        reload_prefixes,
        settings.changes,
        keepalive=timeout,
        heard=None if replicas is None else replicas.heard,
    )
    scans = ScanCounts()
    core = Core(settings, dsn, store, lookup, tallies, scans)
    additions = [await extend(core) for extend in extensions]
    hooks = [a.handles for a in additions if a.handles is not None]
    if len(hooks) > 1:
        raise ValueError("app: only one extension may hook into /api/handles")
    endpoint = HandlesEndpoint(
        lookup,
        metrics,
        max_handle_bytes=settings.max_handle_bytes,
        max_batch=settings.max_batch,
        hooks=hooks[0] if hooks else HandleHooks(),
    )
    sources = [sites.metrics.collect, *(source for added in additions for source in added.metrics)]
    if replicas is not None:
        sources.append(replicas.collect)
    collector = NodeCollector(metrics, cache.stats, listener, store.pool, sources, workers=settings.workers)

    app, router = new_application(client_max_size=settings.max_body_bytes, responses=metrics.responses)
    app[SETTINGS], app[DSN], app[STORE], app[CACHE], app[PREFIXES] = settings, dsn, store, cache, prefixes
    app[LOOKUP], app[LISTENER], app[ENDPOINT] = lookup, listener, endpoint
    app[METRICS], app[COLLECTOR], app[PROMETHEUS_REGISTRY] = metrics, collector, new_registry(collector)
    app[FORWARDER] = forwarder
    app[READY_DETAILS] = [detail for added in additions for detail in added.ready_details]
    app[BODY_TIMEOUT] = settings.body_timeout

    router.set_hot(HANDLES_PREFIX, endpoint.get_handle)
    app.add_routes(endpoint.routes())
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    app.add_routes(SiteInfo(hierarchy.advertise_url).routes())
    app.add_routes(Description(prefixes, hierarchy.upstream).routes())
    if settings.admin_port is None:  # otherwise only the admin listener publishes it (resolver/admin.py)
        app.add_routes([web.get("/metrics", scrape)])
    for added in additions:
        app.add_routes(added.routes)
        if added.secure_check is not None:
            app[SECURE_CHECK] = added.secure_check
        app.on_startup.extend(added.on_startup)
        app.on_cleanup.extend(added.on_cleanup)
    app.add_routes([web.route("*", "/api", api_not_found), web.route("*", "/api/" + ANY_TAIL, api_not_found)])
    labels = TemplateLabels(store.pool)
    proxy = Proxy(lookup, metrics, max_handle_bytes=settings.max_handle_bytes, scans=scans, labels=labels)
    router.set_fallback(proxy.resolve)  # GET /{handle}: every path no other route claims
    app.add_routes(proxy.routes())

    def fast_answers(raw: str, headers: Mapping[str, str]) -> Ready | None:
        if router.is_hot(raw):
            return endpoint.ready_answer(raw, headers)
        if router.is_fallback(raw):
            return proxy.ready_answer(raw, headers)
        return None

    app[FAST_ANSWERS] = fast_answers

    async def start_listening(_app: web.Application) -> None:
        if replicas is not None:
            replicas.start()
        await listener.start(timeout=LISTEN_START_TIMEOUT)

    async def shut_down(_app: web.Application) -> None:
        await listener.stop()
        await sites.close()
        await cache.close()
        await store.close()

    app.on_startup.append(start_listening)
    app.on_cleanup.append(shut_down)
    return app


def node_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner that serves a node's ``app`` (``kwargs`` as ``web.AppRunner``'s): with the fast lane when the
    settings ask for it and no request log is on, since the lane's answers never reach aiohttp's access logger."""
    if app[SETTINGS].fast_lane and "access_log" in kwargs and kwargs["access_log"] is None:
        return FastLaneRunner(app, app[FAST_ANSWERS], **kwargs)
    return web.AppRunner(app, **kwargs)


async def healthz(_request: web.Request) -> web.StreamResponse:
    """The process is up and its loop answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the database answers (within ``READY_TIMEOUT``), the schema is migrated and the change listener
    is connected; otherwise 503 rc 3 with Retry-After. Extensions' details (a mirror's lag) are added without
    deciding readiness: a mirror that lags still serves what it holds. A node that lost its LISTEN connection still
    answers from its cache, but is not ready: it cannot hear about changes until it reconnects."""
    checks: dict[str, object] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            checks["schema_version"] = await request.app[STORE].schema_version()
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = f"no answer within {READY_TIMEOUT:g} s"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["listening"] = bool(request.app[LISTENER].connected)
    for detail in request.app[READY_DETAILS]:
        checks.update(detail())
    if checks["database"] == "ok" and bool(checks.get("schema_version")) and checks["listening"]:
        return json_response({"status": "ready", **checks})
    body = {"responseCode": DatabaseUnavailable.response_code, "status": "not ready", **checks}
    return json_response(body, status=503, headers=DatabaseUnavailable().headers())
