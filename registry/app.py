"""The registry's additions to the node application: the one place its parts are built and connected.

``resolver.app.create_app`` hands the read path's stages (``Core``) to ``install``, which, in order:
1. decides what a secure channel is (TLS, or a trusted proxy's ``X-Forwarded-Proto: https``);
2. opens a second pool for writes and builds the data layer over both (why two: ``registry/store.py``);
3. builds the shared parts once: records through the cache, operators, permissions, the authenticator (with
   session look-up and SNMS bearer tokens), the template check, the writer, and the counters;
4. gives each endpoint only what it uses, and returns the ``/api/handles`` hooks (PUT/DELETE, the private-value
   reader, listing, history) so the read API's endpoint is built complete, with its hot GET route untouched;
5. returns its own routes (prefixes, enterprises, sessions, templates, batch, the SNMS-compatible API and its
   templates, reverse look-up, statistics and scan statistics, QR labels, child nodes, change feed, OpenAPI) and
   metric sources;
6. runs the background jobs (``registry/jobs.py``): the statistics recorder in every worker; the child-health count and,
   with ``upstream_identity``, the publisher/reporter to the parent, and with ``mirror_of`` the mirror's follower,
   in the primary worker only. Replication (``registry/replication.py``) brackets every handle write: refused on a
   mirror, held for ``sync_mirrors`` on a primary.
"""

from __future__ import annotations

from aiohttp import web

from registry.apps_api import AppsAPI
from registry.auth import Authenticator, Channel, Identity
from registry.batch import BatchWrites
from registry.cached import CachedRecords
from registry.enterprise_api import EnterprisesAPI
from registry.feed import ChangeFeed, FeedWakeup
from registry.feed_store import FeedStore
from registry.handle_writes import HandleWrites
from registry.history import HandleHistory
from registry.import_api import ImportsAPI
from registry.jobs import Jobs
from registry.lifecycle import Suspensions
from registry.listing import HandleListing
from registry.metrics import RegistryMetrics
from registry.mirror import Follower, TakeoverAPI, mirror_metrics
from registry.mirror_store import MirrorStore
from registry.nodes import ChildWatch, NodesAPI
from registry.openapi import OpenAPI
from registry.permissions import Operators, Perm, Permissions
from registry.prefix_api import PrefixesAPI
from registry.qr_api import QRLabels
from registry.recorder import ScanRollup, StatsRecorder
from registry.replication import MirrorAcks, Replication
from registry.scan_stats import ScanStore
from registry.scans_api import ScansAPI
from registry.search import ReverseLookup
from registry.sessions import Sessions, session_identity
from registry.snms_api import SnmsAPI
from registry.snms_envelope import answers_snms
from registry.snms_templates import SnmsTemplatesAPI
from registry.snms_tokens import Tokens, load_token_key
from registry.statistics import StatsStore
from registry.stats_api import StatsAPI
from registry.store import RegistryStore
from registry.template_versions import TemplateVersions
from registry.templates import TemplateCheck, TemplatesAPI
from registry.write_stages import WriteStages
from registry.writes import Writer
from resolver.app import Additions, Core, Extension
from resolver.errors import HandleError
from resolver.http import HandleHooks, Reader
from resolver.identifiers import parse
from resolver.store import close_pool, connect

__all__ = ["extensions", "install"]


def _private_reader(auth: Authenticator, records: CachedRecords, permissions: Permissions) -> Reader:
    async def read(request: web.Request, handle: str) -> Identity | None:
        """Who may see ``handle``'s non-public values: an admin of it with READ_VALUE."""
        identity = await auth.identify(request)
        if identity is None:
            return None
        values = await records.values_of(handle)
        if values is not None:
            try:
                await permissions.require_on_handle(identity, parse(handle), values, Perm.READ_VALUE, echo=None)
            except HandleError as exc:
                exc.handle = None
                raise
        return identity

    return read


async def install(core: Core) -> Additions:
    """The registry over ``core``: see the module docstring for the order."""
    settings = core.settings
    channel = Channel(settings.registry)
    write_pool = (await connect(core.dsn, settings.database)).pool
    store = RegistryStore(core.store.pool, write_pool, core.store.scans)
    prefixes = core.lookup.prefixes
    records = CachedRecords(core.lookup)
    operators = Operators(store, settings.registry.operators)
    suspensions = Suspensions(store)
    permissions = Permissions(records.values_of, operators.includes, suspensions.covering)
    tokens = Tokens(
        lambda: load_token_key(settings.registry.snms_token_key, settings.data_dir),
        lifetime=settings.registry.snms_token_lifetime,
    )
    auth = Authenticator(settings.registry, channel, records.values_of, session_identity(store), tokens=tokens)
    metrics = RegistryMetrics(lambda: auth.failures)
    check_template = TemplateCheck(store, metrics)
    writer = Writer(store)
    feed = FeedStore(core.store.pool, write_pool)
    acks = MirrorAcks()
    mirror_store = MirrorStore(write_pool)
    replication = Replication(settings.mirror, mirror_store, feed, acks)
    follower = Follower(settings.mirror, mirror_store) if settings.mirror.mirror_of is not None else None
    stages = WriteStages(
        prefixes,
        records,
        auth,
        permissions,
        check_template,
        metrics,
        max_handle_bytes=settings.max_handle_bytes,
        replication=replication,
    )
    writes = HandleWrites(writer, stages)
    hooks = HandleHooks(
        methods=writes.methods(),
        reader=_private_reader(auth, records, permissions),
        collection=HandleListing(store, prefixes, auth, permissions),
        fallback=HandleHistory(store, auth, permissions, max_handle_bytes=settings.max_handle_bytes),
    )
    batch = BatchWrites(store, stages, max_batch=settings.max_batch)
    stats = StatsStore(core.store.pool)
    scans = ScanRollup(core.scans, ScanStore(write_pool))
    recorder = StatsRecorder(StatsStore(write_pool), core.tallies, settings.stats_interval, scans=scans)
    watch = ChildWatch(stats, settings.hierarchy.report_interval)
    jobs = Jobs(core, recorder, stats, watch, follower)
    wakeup = FeedWakeup(core.dsn, settings.database.command_timeout)
    template_versions = TemplateVersions(store, prefixes, auth, permissions)
    mirrored = [  # what a mirror copies from its primary: written there, not here
        *PrefixesAPI(store, core.store, auth, operators).routes(),
        *EnterprisesAPI(store, records, auth, operators, suspensions).routes(),
        *AppsAPI(store, records, auth, permissions).routes(),
        *ImportsAPI(core, store, auth, permissions).routes(),
        *TemplatesAPI(template_versions, check_template).routes(),
    ]
    mirrored_snms = SnmsTemplatesAPI(template_versions).routes()  # the same, refused in SNMS's envelope
    routes = [
        *replication.guard_routes(mirrored),
        *replication.guard_routes(mirrored_snms, answers_snms),
        *Sessions(store, auth).routes(),
        *batch.routes(),
        *SnmsAPI(batch, tokens).routes(),
        *ReverseLookup(store, auth, permissions).routes(),
        *StatsAPI(stats, recorder, auth, operators).routes(),
        *ScansAPI(ScanStore(core.store.pool), recorder, auth, operators).routes(),
        *QRLabels(core.lookup, settings).routes(),
        *NodesAPI(
            stats, StatsStore(write_pool), auth, operators, report_interval=settings.hierarchy.report_interval
        ).routes(),
        *ChangeFeed(feed, wakeup, auth, operators, acks).routes(),
        *TakeoverAPI(mirror_store, follower, replication, auth, operators).routes(),
        *OpenAPI().routes(),
    ]

    async def close_writes(_app: web.Application) -> None:
        await close_pool(write_pool)

    return Additions(
        handles=hooks,
        routes=routes,
        secure_check=channel.is_secure,
        on_startup=(jobs.start,),
        on_cleanup=(jobs.stop, wakeup.stop, close_writes),
        metrics=(metrics.collect, watch.collect, lambda: mirror_metrics(follower)),
        ready_details=() if follower is None else (lambda: {"mirror": follower.detail()},),
    )


def extensions() -> list[Extension]:
    """Everything the registry adds to a node."""
    return [install]
