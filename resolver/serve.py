"""Running the node: one process, or N worker processes sharing the port through SO_REUSEPORT.

The parent process owns the database (starts the embedded server when needed), applies migrations and binds
the port; then it either serves itself (``workers = 1``) or forks N workers, each with its own SO_REUSEPORT
socket on the port, so the kernel spreads connections over them. Each worker has its own pool, cache and LISTEN
connection; notifications keep their caches coherent. The parent forwards SIGTERM/SIGINT, restarts a worker
that dies, and stops the embedded database after the last worker exits.

A port that is already taken is found by a plain bind (without SO_REUSEPORT) before the workers bind, so a
second node on the same port fails with a clear message instead of silently sharing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from resolver.app import Extension, create_app
from resolver.config import Settings
from resolver.database import describe, migrate, open_database
from resolver.errors import ConfigError

__all__ = ["bind", "configure_logging", "serve"]

log = logging.getLogger("idnode.serve")

Prepare = Callable[[str], Awaitable[None]]


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional on platforms without wheels
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming the address when it cannot be had."""
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
            raise ConfigError(f"port: {host}:{port} is already in use; choose another --port") from None
        raise ConfigError(f"host/port: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _run_worker(settings: Settings, dsn: str, sock: socket.socket, extensions: Iterable[Extension]) -> None:
    _use_uvloop()
    web.run_app(
        create_app(settings, dsn, extensions=extensions),
        sock=sock,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        handle_signals=True,
    )


def serve(
    settings: Settings,
    *,
    extensions: Iterable[Extension] = (),
    prepare: Prepare | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until SIGTERM/SIGINT. ``prepare`` runs once against the migrated database before serving."""
    extensions = tuple(extensions)
    with open_database(settings, serving=True) as dsn:
        result = asyncio.run(migrate(dsn))
        if result.applied:
            log.info("applied migrations: %s", ", ".join(result.applied))
        if prepare is not None:
            asyncio.run(prepare(dsn))
        first = bind(settings.host, settings.port, reuse_port=False)
        port = first.getsockname()[1]
        url = f"http://{settings.host}:{port}"
        announce(f"idnode serving on {url} with {settings.workers} worker(s); data: {describe(settings)}")
        if settings.workers == 1:
            _run_worker(settings, dsn, first, extensions)
            return
        first.close()
        sockets = [bind(settings.host, port, reuse_port=True) for _ in range(settings.workers)]
        _supervise(settings, dsn, sockets, extensions)


def _supervise(settings: Settings, dsn: str, sockets: list[socket.socket], extensions: tuple[Extension, ...]) -> None:
    """Fork one worker per socket, restart any that dies, and pass termination signals on."""
    children: dict[int, socket.socket] = {}
    stopping = False

    def spawn(sock: socket.socket) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _run_worker(settings, dsn, sock, extensions)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children[pid] = sock

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for sock in sockets:
        spawn(sock)
    last_restart = 0.0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        sock = children.pop(pid, None)
        if sock is None or stopping:
            continue
        log.error("worker %d exited (status %d); restarting it", pid, status)
        if time.monotonic() - last_restart < 1.0:
            time.sleep(1.0)  # a worker that dies at once must not become a fork loop
        last_restart = time.monotonic()
        spawn(sock)
    for sock in sockets:
        sock.close()
