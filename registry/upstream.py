"""The child's side of joining a parent (接入申请): publishing this node's site there, and reporting to it.

Settings (``settings.hierarchy``): ``upstream`` (the parent's base URLs, tried in order), ``upstream_identity``
and ``upstream_secret`` (what the parent's ``idnode node add`` printed), ``upstream_ca`` (a PEM file trusted for
the parent's HTTPS, e.g. its self-signed certificate; without it the system's CAs), ``advertise_url`` (this
node's public base URL) and ``upstream_report_interval`` (default 60 s). Without an identity nothing here runs.

**Publishing.** For every prefix ``P`` homed here, ``PUT /api/handles/0.NA/P?index=1&index=2`` at the parent,
authenticated with HTTP Basic as the child identity, writes two values built from ``advertise_url``
(``resolver/sites.own_site``): HS_SITE at index 1 (who serves handles under ``P``) and HS_SITE.PREFIX at index 2
(who serves the prefixes derived from ``P``), both ``{"format":"site","value":...}``. The ``index`` parameters
make it an add-or-replace of those two values only, so the identity's own HS_ADMIN and HS_SECKEY stay. Without
``advertise_url`` nothing is published (a warning says so); reports still go.

**Reporting.** ``POST /api/nodes/report`` (``registry/nodes.py`` gives the format): version, uptime, homed
prefixes, readiness (database answers, change listener connected) and this node's statistics of yesterday and
today (UTC) as absolute totals, so a resent report changes nothing at the parent.

**When.** :meth:`Upstream.run` (one process per node: the primary worker) publishes at start and whenever the
homed set differs from what was last published, checked every report interval, then reports. While the parent
is unreachable or refuses, it retries with back-off (1 s, doubling, at most one report interval); start-up
never waits for it. ``idnode upstream register`` publishes once by hand (:meth:`Upstream.publish`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from registry.periodic import Background
from registry.statistics import DayStats
from resolver import __version__
from resolver.forward_settings import HierarchySettings
from resolver.sites import SITE_PREFIX_TYPE, SITE_TYPE, own_site

__all__ = ["Published", "Upstream", "UpstreamError"]

log = logging.getLogger("idnode.upstream")

REQUEST_TIMEOUT = 10.0
FIRST_RETRY = 1.0


class UpstreamError(Exception):
    """The parent could not be reached, or refused; the message says which and why. ``published`` lists what
    did get published before (a publish goes on through every prefix)."""

    def __init__(self, message: str, published: Sequence[Published] = ()) -> None:
        super().__init__(message)
        self.published = list(published)


@dataclass(frozen=True, slots=True)
class Published:
    """One prefix handle written at the parent."""

    prefix: str
    parent: str
    site: dict[str, Any]

    def describe(self) -> str:
        return f"0.NA/{self.prefix} at {self.parent}: HS_SITE (index 1) and HS_SITE.PREFIX (index 2)"


def _site_values(site: dict[str, Any]) -> dict[str, Any]:
    data = {"format": "site", "value": site}
    return {
        "values": [
            {"index": 1, "type": SITE_TYPE, "data": data},
            {"index": 2, "type": SITE_PREFIX_TYPE, "data": data},
        ]
    }


class Upstream:
    """This node as a child of ``settings.upstream`` (see the module docstring)."""

    def __init__(
        self,
        settings: HierarchySettings,
        *,
        homed: Callable[[], Sequence[str]],
        ready: Callable[[], Awaitable[dict[str, bool]]] | None = None,
        totals: Callable[[], Awaitable[list[DayStats]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.upstream or settings.upstream_identity is None or settings.upstream_secret is None:
            raise ValueError("upstream: needs upstream, upstream_identity and upstream_secret")
        # ready/totals are only needed for reporting: ``idnode upstream register`` publishes without them
        self.settings = settings
        self.homed = homed
        self.ready = ready
        self.totals = totals
        self.clock = clock
        self.started = clock()
        self.published: frozenset[str] | None = None
        """The homed set last published (None: not yet), so a change of it is noticed."""
        token = f"{quote(settings.upstream_identity, safe='')}:{settings.upstream_secret}".encode()
        self._authorization = "Basic " + base64.b64encode(token).decode()
        """HTTP Basic as Handle.Net parses it: the ``index:handle`` username percent-encoded (``registry/auth.py``)."""
        self._session: aiohttp.ClientSession | None = None
        self._job = Background("idnode-upstream", self.run)

    # --- one exchange with the parent ---------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        ca = self.settings.upstream_ca
        return True if ca is None else ssl.create_default_context(cafile=str(ca))

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> tuple[str, Any]:
        """``method path`` at the first parent URL that answers; ``(that URL, its JSON)`` on a 2xx answer."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl())
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        failures = []
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "Authorization": self._authorization}
        for base in self.settings.upstream:
            try:
                async with self._session.request(method, base + path, data=data, headers=headers) as response:
                    raw = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures.append(f"{base}: {type(exc).__name__} {exc}".strip())
                continue
            try:
                answer = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                answer = None
            if 200 <= response.status < 300:
                return base, answer
            detail = answer.get("message") if isinstance(answer, dict) else None
            code = answer.get("responseCode") if isinstance(answer, dict) else None
            raise UpstreamError(
                f"upstream {base} refused {method} {path}: HTTP {response.status}"
                + (f" rc {code}" if code is not None else "")
                + (f": {detail}" if detail else "")
            )
        raise UpstreamError(f"upstream unreachable: {'; '.join(failures)}")

    async def publish(self, prefixes: Sequence[str] | None = None) -> list[Published]:
        """Write this node's site on ``0.NA/<P>`` at the parent for each homed prefix (or those given)."""
        advertise = self.settings.advertise_url
        if advertise is None:
            raise UpstreamError("upstream: advertise_url is not set, so there is no site to publish")
        site = own_site(advertise)
        done, failures = [], []
        for prefix in prefixes if prefixes is not None else self.homed():
            path = f"/api/handles/0.NA/{quote(prefix, safe='')}?index=1&index=2"
            try:
                parent, _ = await self._send("PUT", path, _site_values(site))
            except UpstreamError as exc:
                failures.append(str(exc))
                continue
            done.append(Published(prefix, parent, site))
        if failures:
            raise UpstreamError("; ".join(failures), done)
        return done

    async def report(self) -> None:
        """Send the heartbeat and this node's totals of yesterday and today (needs ``ready`` and ``totals``)."""
        if self.ready is None or self.totals is None:
            raise ValueError("upstream: reporting needs the ready and totals callables")
        body = {
            "version": __version__,
            "uptime": round(self.clock() - self.started, 3),
            "prefixes": list(self.homed()),
            "ready": await self.ready(),
            "stats": [day.as_json() for day in await self.totals()],
        }
        await self._send("POST", "/api/nodes/report", body)

    # --- the background job ---------------------------------------------------------------------------------

    async def _publish_if_changed(self) -> None:
        homed = frozenset(self.homed())
        if homed == self.published:
            return
        if self.settings.advertise_url is None:
            log.warning("upstream: advertise_url is not set; this node's site is not published at the parent")
        else:
            for done in await self.publish(sorted(homed)):
                log.info("upstream: published %s", done.describe())
        self.published = homed

    async def run(self) -> None:
        """Publish (when the homed set changed) and report every report interval; after a failure of either,
        try again with back-off (never raises, so a parent that is down never stops this node)."""
        interval = self.settings.report_interval
        delay = FIRST_RETRY
        while True:
            failed = False
            for step in (self._publish_if_changed, self.report):
                try:
                    await step()
                except UpstreamError as exc:
                    log.warning("upstream: %s", exc)
                    failed = True
                except Exception:  # a bug must not end the job silently
                    log.exception("upstream: unexpected failure")
                    failed = True
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, interval)
            else:
                delay = FIRST_RETRY
                await asyncio.sleep(interval)

    def start(self) -> None:
        self._job.start()

    async def close(self) -> None:
        await self._job.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
