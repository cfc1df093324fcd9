"""Child nodes (接入申请 / 运行监测, parent side): onboarding a child, its reports, and its health.

``idnode node add --prefix 88.118 --name N`` (:func:`add_node`) creates, in one transaction:
- ``0.NA/88.118`` with an HS_ADMIN at 100 naming ``300:0.NA/88.118`` with ``NODE_PERMISSIONS`` (add, modify and
  remove values of that handle, nothing else), and the HS_SECKEY at 300, stored hashed
  (``enterprises.identity_values``), so the child can publish its HS_SITE / HS_SITE.PREFIX there itself;
- a ``nodes`` row (prefix, name, identity). The secret is returned once.

The prefix must lie strictly under a prefix homed here (a parent delegates from its own range), must not be
homed here itself, and must neither be nor contain nor lie under an enterprise's prefix.

``POST /api/nodes/report`` (authenticated as a child's identity; any other identity is 403 rc 400) takes::

    {"version": "0.9.0", "uptime": 3600.5, "prefixes": ["88.118"],
     "ready": {"database": true, "listening": true}, "stats": [<DayStats JSON>, ...]}

``stats`` holds the child's absolute daily totals (``registry/statistics.py``; at most ``MAX_REPORT_ROWS``),
stored in ``node_stats`` apart from this node's own counts and replacing what the child reported before, so a
resent report is harmless; ``GET /api/stats?node=88.118`` reads them. The rest is kept as the node's last report,
with ``last_seen``. Answer: ``{"responseCode":1,"node":"88.118","days":N}``.

``GET /api/nodes`` (operators) answers ``{"responseCode":1,"nodes":[{"prefix","name","identity","created",
"lastSeen","secondsSince","health","version","uptime","ready","prefixes"}]}``; ``health`` is ``never`` (no
report yet), ``silent`` (none for ``SILENT_AFTER`` report intervals: this node's ``upstream_report_interval``,
which its children are expected to share) or ``ok``.

Metric (primary worker only, refreshed every report interval): ``idnode_child_nodes{health}``, the number of
children in each health state; ``deploy/prometheus/alerts.yml`` alerts on ``silent``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from registry.auth import Authenticator
from registry.enterprises import Credentials, identity_values, insert_handle, new_secret, validate_prefix
from registry.periodic import Background
from registry.permissions import Operators, Perm
from registry.statistics import DayStats, StatsStore
from registry.store import Actor, RegistryStore
from resolver.errors import HandleAlreadyExists, InsufficientPermissions, InvalidAdmin, PrefixNotHomed, ProtocolError
from resolver.identifiers import ascii_upper, prefix_chain
from resolver.responses import answers_errors, json_body, json_response

__all__ = ["HEALTH", "MAX_REPORT_ROWS", "NODE_PERMISSIONS", "ChildWatch", "NodesAPI", "add_node", "health_of"]

log = logging.getLogger("idnode.nodes")

NODE_PERMISSIONS = "".join(
    "1" if bit in (Perm.ADD_VALUE, Perm.MODIFY_VALUE, Perm.REMOVE_VALUE) else "0" for bit in reversed(range(12))
)
"""``000001110000``: a child may add, modify and remove values of its own ``0.NA/<prefix>``, not its admins."""
SILENT_AFTER = 3
HEALTH = ("ok", "silent", "never")
MAX_REPORT_ROWS = 20_000


def health_of(seconds_since: float | None, report_interval: float) -> str:
    """``never``, ``silent`` or ``ok`` for a child last heard from ``seconds_since`` seconds ago."""
    if seconds_since is None:
        return "never"
    return "silent" if seconds_since > SILENT_AFTER * report_interval else "ok"


async def add_node(store: RegistryStore, prefix: str, *, name: str, actor: Actor) -> Credentials:
    """Create the child node of ``prefix`` as described in the module docstring."""
    validate_prefix(prefix)
    if not name.strip() or "\x00" in name:
        raise ProtocolError("name must be a non-empty string without NUL characters")
    key = ascii_upper(prefix)
    handle = f"0.NA/{prefix}"
    identity = f"300:{handle}"
    secret, hashed = await new_secret()
    chain = prefix_chain(key)
    async with store.transaction(actor) as tx:
        await tx.lock_tenancy()
        homed = await tx.homed_among(chain)
        if key in homed:
            raise HandleAlreadyExists(f"Prefix {prefix} is homed here; a child node needs a prefix of its own")
        if not homed:
            raise PrefixNotHomed(
                f"Prefix {prefix} is not under any prefix homed here; a child node's prefix comes from this node's"
                " range",
                handle=prefix,
            )
        taken = await tx.enterprise_prefixes(chain) or await tx.enterprises_under(key)
        if taken:
            raise HandleAlreadyExists(f"Prefix {prefix} overlaps enterprise prefix {taken[0]}", handle=prefix)
        await insert_handle(tx, handle, identity_values(handle, hashed, permissions=NODE_PERMISSIONS))
        await tx.add_node(key, prefix, name.strip(), identity, actor.name)
    return Credentials(identity, secret)


def _report(payload: Any) -> tuple[dict[str, Any], list[DayStats]]:
    """A report's status part and its daily totals; ProtocolError naming the first field that is wrong."""
    if not isinstance(payload, dict):
        raise ProtocolError('Expected {"version", "uptime", "prefixes", "ready", "stats"}')
    version, uptime, prefixes = payload.get("version"), payload.get("uptime"), payload.get("prefixes", [])
    ready, stats = payload.get("ready", {}), payload.get("stats", [])
    if not isinstance(version, str) or len(version) > 100 or "\x00" in version:
        raise ProtocolError("version must be a string of at most 100 characters")
    if not isinstance(uptime, int | float) or isinstance(uptime, bool) or uptime < 0:
        raise ProtocolError("uptime must be a non-negative number of seconds")
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and "\x00" not in p for p in prefixes):
        raise ProtocolError("prefixes must be a list of strings")
    if not isinstance(ready, dict) or not all(isinstance(v, bool) for v in ready.values()):
        raise ProtocolError('ready must be an object of booleans, e.g. {"database": true, "listening": true}')
    if not isinstance(stats, list) or len(stats) > MAX_REPORT_ROWS:
        raise ProtocolError(f"stats must be a list of at most {MAX_REPORT_ROWS} items")
    status = {"version": version, "uptime": uptime, "prefixes": prefixes[:10_000], "ready": ready}
    return status, [DayStats.from_json(item) for item in stats]


class NodesAPI:
    """``POST /api/nodes/report`` and ``GET /api/nodes``."""

    def __init__(
        self,
        store: StatsStore,
        writes: StatsStore,
        auth: Authenticator,
        operators: Operators,
        *,
        report_interval: float,
    ) -> None:
        self.store = store
        self.writes = writes
        self.auth = auth
        self.operators = operators
        self.report_interval = report_interval

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/nodes/report", self.report), web.get("/api/nodes", self.list)]

    @answers_errors
    async def report(self, request: web.Request) -> web.StreamResponse:
        identity = await self.auth.require(request)
        prefix = await self.store.node_of(ascii_upper(str(identity)))
        if prefix is None:
            raise InvalidAdmin(f"{identity} is not the identity of a child node of this node (idnode node add)")
        status, days = _report(await json_body(request))
        await self.writes.record_report(prefix, orjson.dumps(status).decode(), days)
        return json_response({"responseCode": 1, "node": prefix, "days": len(days)})

    @answers_errors
    async def list(self, request: web.Request) -> web.StreamResponse:
        identity = await self.auth.require(request)
        if not await self.operators.includes(identity):
            raise InsufficientPermissions("Only a node operator may list child nodes")
        nodes = []
        for prefix, name, ident, created, last_seen, since, report in await self.store.nodes():
            status = orjson.loads(report) if report else {}
            seconds = None if since is None else round(float(since), 3)
            nodes.append(
                {
                    "prefix": prefix,
                    "name": name,
                    "identity": ident,
                    "created": created.astimezone(UTC).isoformat(),
                    "lastSeen": None if last_seen is None else last_seen.astimezone(UTC).isoformat(),
                    "secondsSince": seconds,
                    "health": health_of(seconds, self.report_interval),
                    "version": status.get("version"),
                    "uptime": status.get("uptime"),
                    "ready": status.get("ready"),
                    "prefixes": status.get("prefixes"),
                }
            )
        return json_response({"responseCode": 1, "nodes": nodes})


class ChildWatch:
    """Counts the children by health every ``interval`` seconds, for ``idnode_child_nodes{health}``."""

    __slots__ = ("_job", "counts", "interval", "store")

    def __init__(self, store: StatsStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.counts: dict[str, int] | None = None
        """None until the first count (and on a node that does not watch: no metric at all)."""
        self._job = Background("idnode-child-watch", self._run)

    async def refresh(self) -> None:
        never, ok, silent = await self.store.node_health(SILENT_AFTER * self.interval)
        self.counts = {"ok": ok, "silent": silent, "never": never}

    async def _refresh_or_keep(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the last counts stay; the next round tries again
            log.warning("nodes: could not count child nodes by health: %r", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._refresh_or_keep()

    async def start(self) -> None:
        """Count once (so the first scrape has the metric), then every ``interval`` in the background."""
        await self._refresh_or_keep()
        self._job.start()

    async def stop(self) -> None:
        await self._job.stop()

    def collect(self) -> Iterator[Metric]:
        if self.counts is None:
            return
        gauge = GaugeMetricFamily("idnode_child_nodes", "Child nodes by health (ok, silent, never)", labels=["health"])
        for health in HEALTH:
            gauge.add_metric([health], self.counts[health])
        yield gauge
