"""The admin listener: ``GET /metrics`` on a port of its own, so the public port does not publish it.

Settings: ``admin_port`` (none by default: ``/metrics`` stays on the public port, as before) and ``admin_host``
(default ``127.0.0.1``; ``0.0.0.0`` in a container, where the port is published to the Prometheus network only).
With ``admin_port`` set, the public port no longer answers ``/metrics`` (resolver/app.py leaves the route out) and
this listener serves exactly the scrape the public port would have served, node-wide totals included when the
node has several workers (each worker listens on the admin port through SO_REUSEPORT, like the public port).

Example: ``idnode serve --host 0.0.0.0 --admin-port 9100`` and a Prometheus target ``<host>:9100``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from aiohttp import web

from resolver.metrics import PROMETHEUS_REGISTRY, SIBLINGS, scrape

__all__ = ["METRICS_PATH", "serve_admin"]

METRICS_PATH = "/metrics"


def serve_admin(app: web.Application, sock: socket.socket) -> None:
    """Serve ``app``'s ``/metrics`` on the listening ``sock`` for as long as ``app`` runs."""

    async def admin_site(_app: web.Application) -> AsyncIterator[None]:
        admin = web.Application()
        admin[PROMETHEUS_REGISTRY] = app[PROMETHEUS_REGISTRY]
        if SIBLINGS in app:
            admin[SIBLINGS] = app[SIBLINGS]
        admin.router.add_get(METRICS_PATH, scrape)
        runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield
        await runner.cleanup()

    app.cleanup_ctx.append(admin_site)
