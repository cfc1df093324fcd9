"""The hello-world baseline: the least an aiohttp server on uvloop can do per request, run like the node.

``python -m benchmarks.hello --port P [--workers N]`` serves ``GET /hello`` → "Hello, World!" and
``GET /hello1k`` → a fixed JSON body the size of the benchmark's cached answer (``BODY_1K_BYTES``, what a cached
look-up sends a client without gzip), with ``access_log=None`` and no middleware, on uvloop when it is installed
(the node's loop policy, see ``resolver/serve.py``). With ``--workers N`` it forks N processes with one
SO_REUSEPORT socket each, as ``idnode serve --workers N`` does, so the two-worker ratio compares like with like.
Every throughput target of the node is a ratio to this server measured in the same run
(research/performance-anchors.md §3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys

from aiohttp import web

__all__ = ["BODY_1K_BYTES", "main"]

_BODY = b"Hello, World!"
BODY_1K_BYTES = 1249
"""The data set's record answer (resolver/compression.py: 1,249 B), so the cached row and this one send as much."""
_BODY_1K = b'{"responseCode":1,"padding":"' + b"x" * (BODY_1K_BYTES - 31) + b'"}'


async def hello(_request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="text/plain")


async def hello_1k(_request: web.Request) -> web.Response:
    return web.Response(body=_BODY_1K, content_type="application/json")


def _socket(port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def _serve(sock: socket.socket) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/hello1k", hello_1k)
    web.run_app(app, sock=sock, access_log=None, print=None, handle_signals=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hello")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers == 1:
        _serve(_socket(args.port, reuse_port=False))
        return 0
    sockets = [_socket(args.port, reuse_port=True) for _ in range(args.workers)]
    children = []
    for sock in sockets:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _serve(sock)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def stop(_signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
