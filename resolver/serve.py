"""Running the node: one process, or N worker processes sharing the port through SO_REUSEPORT.

The parent process owns the database (starts the embedded server when needed), applies migrations and binds
the port; then it either serves itself (``workers = 1``) or forks N workers, each with its own SO_REUSEPORT
socket on the port, so the kernel spreads connections over them. Each worker has its own pool, cache and LISTEN
connection; notifications keep their caches coherent. The parent forwards SIGTERM/SIGINT, restarts a worker
that dies (on the same sockets), and stops the embedded database after the last worker exits.

Every port the settings name (``port``, and ``admin_port`` when set) is bound by a plain bind (without
SO_REUSEPORT) before the database starts: a taken port fails at once with a message naming it, instead of after
the embedded PostgreSQL started and migrated, and a second node on the same port never silently shares it.

With ``admin_port`` set, ``/metrics`` is served on that listener instead of the public port (resolver/admin.py).

Metrics with several workers: before forking, the parent also binds one loopback socket per worker
(``127.0.0.1``, an ephemeral port, announced at start). Each worker serves its own registry there at
``/metrics/local`` and answers ``GET /metrics`` on the shared port with the node-wide totals, merged from its own
registry and its siblings' ``/metrics/local`` (resolver/metrics.py describes the merge). So Prometheus scrapes
one target per node, whichever worker answers, and no multiprocess files are written. With one worker nothing
of this exists: ``/metrics`` is the process's registry.

Logs (resolver/logs.py): ``configure_logging`` sets text or JSON lines once, in the parent, before forking; the
per-request log (sampled access lines, slow requests) is handed to aiohttp only when one of them is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from resolver.admin import METRICS_PATH, serve_admin
from resolver.app import PROMETHEUS_REGISTRY, Extension, create_app, node_runner
from resolver.config import Settings
from resolver.database import describe, migrate, open_database
from resolver.errors import ConfigError
from resolver.logs import configure_logging, request_log_options
from resolver.metrics import LOCAL_PATH, SIBLINGS, Siblings, local_scrape

__all__ = ["WORKER_INDEX", "bind", "configure_logging", "listen_url", "serve"]

log = logging.getLogger("idnode.serve")

WORKER_INDEX: web.AppKey[int] = web.AppKey("worker_index")
"""Which worker an app is (0 to ``workers - 1``; absent with one worker): a job that one process of the node must
do alone (publishing to the upstream, watching child nodes) runs where this is 0 or absent."""

_SHUTDOWN_TIMEOUT = 5.0
"""Seconds in-flight requests get to finish at SIGTERM."""

Prepare = Callable[[str, str], Awaitable[None]]
"""Run once before serving, given the database DSN and the public base URL."""


@dataclass(frozen=True, slots=True)
class _Worker:
    """What one worker process is given: its share of the port, and its loopback metrics socket and siblings."""

    index: int
    sock: socket.socket
    local: socket.socket
    admin: socket.socket | None
    siblings: tuple[str, ...]
    """``/metrics/local`` URLs of the other workers."""


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional on platforms without wheels
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def listen_url(host: str, port: int, *, tls: bool) -> str:
    """The base URL of a listener; an IPv6 address goes in brackets (RFC 3986 §3.2.2), so the URL can be pasted."""
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def bind(host: str, port: int, *, reuse_port: bool, setting: str = "port") -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming the address and ``setting`` when it cannot be
    had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"host: cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            flag = "--" + setting.replace("_", "-")
            raise ConfigError(f"{setting}: {host}:{port} is already in use; choose another {flag}") from None
        raise ConfigError(f"{setting}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _request_log(settings: Settings) -> dict[str, Any]:
    return request_log_options(sample=settings.access_log_sample, slow_ms=settings.slow_request_ms)


def _share_metrics(app: web.Application, worker: _Worker) -> None:
    """Serve this worker's registry on its loopback socket, and make ``/metrics`` merge the siblings' in."""
    registry = app[PROMETHEUS_REGISTRY]
    siblings = Siblings(worker.siblings)
    app[SIBLINGS] = siblings

    async def local_site(_app: web.Application) -> AsyncIterator[None]:
        local = web.Application()
        local.router.add_get(LOCAL_PATH, local_scrape(registry))
        runner = web.AppRunner(local, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, worker.local).start()
        yield
        await siblings.close()
        await runner.cleanup()

    app.cleanup_ctx.append(local_site)


async def _worker_app(
    settings: Settings, dsn: str, extensions: Iterable[Extension], admin: socket.socket | None, worker: _Worker | None
) -> web.Application:
    app = await create_app(settings, dsn, extensions=extensions)
    if worker is not None:
        app[WORKER_INDEX] = worker.index
        _share_metrics(app, worker)
    if admin is not None:
        serve_admin(app, admin)
    return app


def _run_worker(
    settings: Settings,
    dsn: str,
    sock: socket.socket,
    admin: socket.socket | None,
    extensions: Iterable[Extension],
    ssl_context: ssl.SSLContext | None,
    worker: _Worker | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, as ``web.run_app`` would with these options, but through ``node_runner`` (the fast
    lane): ``run_app`` cannot be given a runner."""
    _use_uvloop()
    app = _worker_app(settings, dsn, extensions, admin, worker)
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve_app(app, sock, ssl_context, **_request_log(settings)))


async def _serve_app(
    app: Awaitable[web.Application], sock: socket.socket, ssl_context: ssl.SSLContext | None, **options: Any
) -> None:
    """``web.run_app``'s ``_run_app`` for one socket: the signal handlers raise ``GracefulExit``, which stops the
    loop; ``asyncio.run`` then cancels this task, whose ``finally`` shuts the runner down."""
    runner = node_runner(
        await app, handle_signals=True, shutdown_timeout=_SHUTDOWN_TIMEOUT, keepalive_timeout=75.0, **options
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(
    settings: Settings,
    *,
    extensions: Iterable[Extension] = (),
    prepare: Prepare | None = None,
    announce: Callable[[str], None] = print,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. ``prepare`` runs once against the migrated database before serving.

    With ``ssl_context`` the shared port speaks HTTPS; the per-worker metrics sockets stay plain HTTP on loopback.
    """
    extensions = tuple(extensions)
    first = bind(settings.host, settings.port, reuse_port=False)  # before the database: see the module docstring
    admin = None
    try:
        if settings.admin_port is not None:
            admin = bind(settings.admin_host, settings.admin_port, reuse_port=False, setting="admin_port")
        with open_database(settings, serving=True) as dsn:
            result = asyncio.run(migrate(dsn))
            if result.applied:
                log.info("applied migrations: %s", ", ".join(result.applied))
            port = first.getsockname()[1]
            url = listen_url(settings.host, port, tls=ssl_context is not None)
            if prepare is not None:
                asyncio.run(prepare(dsn, url))
            announce(f"idnode serving on {url} with {settings.workers} worker(s); data: {describe(settings)}")
            if admin is not None:
                admin_url = listen_url(settings.admin_host, admin.getsockname()[1], tls=False)
                announce(f"idnode metrics on {admin_url}{METRICS_PATH} (admin listener)")
            if settings.workers == 1:
                _run_worker(settings, dsn, first, admin, extensions, ssl_context)
                return
            first.close()  # the workers bind the port with SO_REUSEPORT, which a plain socket on it would refuse
            _serve_workers(settings, dsn, port, admin, extensions, ssl_context, announce)
    finally:
        first.close()
        if admin is not None:
            admin.close()


def _serve_workers(
    settings: Settings,
    dsn: str,
    port: int,
    admin: socket.socket | None,
    extensions: tuple[Extension, ...],
    ssl_context: ssl.SSLContext | None,
    announce: Callable[[str], None],
) -> None:
    """Bind each worker's share of the public (and admin) port and its loopback metrics socket, then supervise."""
    count = settings.workers
    sockets = [bind(settings.host, port, reuse_port=True) for _ in range(count)]
    admins: list[socket.socket | None] = [None] * count
    if admin is not None:
        admin_port = admin.getsockname()[1]
        admin.close()
        admins = [bind(settings.admin_host, admin_port, reuse_port=True, setting="admin_port") for _ in range(count)]
    locals_ = [bind("127.0.0.1", 0, reuse_port=False) for _ in range(count)]
    urls = [f"http://127.0.0.1:{sock.getsockname()[1]}{LOCAL_PATH}" for sock in locals_]
    announce(f"idnode per-worker metrics: {' '.join(urls)}")
    workers = [
        _Worker(index, sock, local, admins[index], tuple(u for i, u in enumerate(urls) if i != index))
        for index, (sock, local) in enumerate(zip(sockets, locals_, strict=True))
    ]
    _supervise(settings, dsn, workers, extensions, ssl_context)


def _supervise(
    settings: Settings,
    dsn: str,
    workers: list[_Worker],
    extensions: tuple[Extension, ...],
    ssl_context: ssl.SSLContext | None,
) -> None:
    """Fork one worker per socket, restart any that dies, and pass termination signals on."""
    children: dict[int, _Worker] = {}
    stopping = False

    def spawn(worker: _Worker) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for other in workers:  # the siblings' sockets are theirs to serve
                    if other is not worker:
                        _close(other)
                _run_worker(settings, dsn, worker.sock, worker.admin, extensions, ssl_context, worker)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children[pid] = worker

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        spawn(worker)
    last_restart = 0.0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        worker = children.pop(pid, None)
        if worker is None or stopping:
            continue
        log.error("worker %d exited (status %d); restarting it", pid, status)
        if time.monotonic() - last_restart < 1.0:
            time.sleep(1.0)  # a worker that dies at once must not become a fork loop
        last_restart = time.monotonic()
        spawn(worker)
    for worker in workers:
        _close(worker)


def _close(worker: _Worker) -> None:
    worker.sock.close()
    worker.local.close()
    if worker.admin is not None:
        worker.admin.close()
