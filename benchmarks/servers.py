"""The servers under test, each started as its own process tree and always stopped: idnode, hello-world, nginx.

Every server is a context manager: on the way out (normal end, error or Ctrl-C) it sends SIGTERM to the
process it started (idnode's and hello's parents pass it on to their workers; nginx's master stops its worker),
waits, then SIGKILLs by pid whatever of that tree is left. Children also get ``PR_SET_PDEATHSIG`` so that a
harness killed with SIGKILL does not leave them serving. The embedded PostgreSQL is not here: ``postgres.py``
owns it.

Servers run pinned to ``server_cpus`` (taskset) unless the scenario runs several workers, which need both
cores. Output goes to a log file in the run's work directory, shown when a server fails to come up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.procfs import descendants

__all__ = ["Server", "free_port", "hello_server", "idnode_server", "nginx_server"]

_START_TIMEOUT = 120.0
_STOP_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1
STATIC_BODY_BYTES = 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(slots=True)
class Server:
    """A running server: its base URL, its root process, and the log it writes."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """The root process and all its live descendants (the workers); summed for CPU per request."""
        return descendants(self.process.pid)

    def check_alive(self) -> None:
        """Raise, with the tail of its log, when the server has exited (crashed, or killed by someone else)."""
        code = self.process.poll()
        if code is not None:
            how = f"signal {-code}" if code < 0 else f"status {code}"
            raise RuntimeError(f"{self.name} exited unexpectedly ({how}); log tail: {self.log_tail()}")

    def log_tail(self, size: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:].strip() or "(empty)"
        except OSError:
            return "(no log)"

    def worker_pid(self) -> int:
        """The process that serves when there is one worker (its RSS is the cache's memory)."""
        return self.process.pid


def _command(argv: list[str], cpus: str | None, taskset: str | None) -> list[str]:
    return [taskset, "-c", cpus, *argv] if cpus is not None and taskset is not None else argv


async def _wait_ready(server: Server, path: str) -> None:
    deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.process.returncode} while starting:\n{server.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with http.get(server.url + path, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{server.name} not ready at {server.url}{path} after {_START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.1)


async def _stop(server: Server) -> None:
    tree = server.pids()
    with contextlib.suppress(ProcessLookupError):
        server.process.send_signal(signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + _STOP_TIMEOUT
    while server.process.poll() is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    for pid in tree:  # anything of the tree still alive, by pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if server.process.poll() is None:
        server.process.wait()


@contextlib.asynccontextmanager
async def _run(
    name: str, argv: list[str], *, port: int, ready_path: str, log: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Server]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            preexec_fn=_die_with_parent,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    try:
        await _wait_ready(server, ready_path)
        yield server
    finally:
        await _stop(server)


def _idnode_argv() -> list[str]:
    script = Path(sys.executable).with_name("idnode")
    return [str(script)] if script.exists() else [sys.executable, "-m", "registry.cli"]


@contextlib.asynccontextmanager
async def idnode_server(
    dsn: str,
    workdir: Path,
    *,
    workers: int = 1,
    cache_max_entries: int | None = None,
    cpus: str | None = None,
    taskset: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    upstream: str | None = None,
    fast_lane: bool = True,
    executable: str | None = None,
) -> AsyncIterator[Server]:
    """``idnode serve`` on a free port over ``dsn``; ready when ``/readyz`` answers 200. With ``upstream`` (a
    node's base URL) it forwards every handle it does not home there (issue 9); without ``fast_lane`` every request
    goes through aiohttp (resolver/fastlane.py). ``executable`` is another tree's ``idnode`` command, for an A/B
    (default: this checkout's)."""
    port = free_port()
    command = [executable] if executable is not None else _idnode_argv()
    argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    argv += ["--database-url", dsn, "--data-dir", str(workdir / "node-data")]
    env = {**os.environ, "IDNODE_LOG_LEVEL": "WARNING", **(extra_env or {})}
    if cache_max_entries is not None:
        env["IDNODE_CACHE_MAX_ENTRIES"] = str(cache_max_entries)
    if upstream is not None:
        env["IDNODE_UPSTREAM"] = upstream
    env["IDNODE_FAST_LANE"] = "1" if fast_lane else "0"
    tag = (
        f"idnode-w{workers}"
        + (f"-cache{cache_max_entries}" if cache_max_entries is not None else "")
        + ("-fwd" if upstream is not None else "")
        + ("" if fast_lane else "-nolane")
    )
    async with _run(
        tag, _command(argv, cpus, taskset), port=port, ready_path="/readyz", log=workdir / f"{tag}.log", env=env
    ) as server:
        yield server


@contextlib.asynccontextmanager
async def hello_server(
    workdir: Path, *, workers: int = 1, cpus: str | None = None, taskset: str | None = None
) -> AsyncIterator[Server]:
    """The aiohttp hello-world baseline (``benchmarks/hello.py``) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.hello", "--port", str(port), "--workers", str(workers)]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    async with _run(
        f"hello-w{workers}",
        _command(argv, cpus, taskset),
        port=port,
        ready_path="/hello",
        log=workdir / f"hello-w{workers}.log",
        env=env,
    ) as server:
        yield server


_NGINX_CONF = """\
daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location = /static.json {{ default_type application/json; }}
    }}
}}
"""


def static_body() -> bytes:
    """A Handle answer of about ``STATIC_BODY_BYTES`` bytes: a URL value and an HS_ADMIN value, like §2a's."""
    body = (
        b'{"responseCode":1,"handle":"88.999.1/PRD-2026-000000001","values":[{"index":1,"type":"URL",'
        b'"data":{"format":"string","value":"https://example.com/products/pump/PRD-2026-000000001"},'
        b'"ttl":86400,"timestamp":"2026-11-29T00:00:00Z"},{"index":100,"type":"HS_ADMIN","data":{"format":"admin",'
        b'"value":{"handle":"0.NA/88.999.1","index":200,"permissions":"011111110011"}},"ttl":86400,'
        b'"timestamp":"2026-11-29T00:00:00Z"}]}'
    )
    return body + b" " * max(0, STATIC_BODY_BYTES - len(body))


@contextlib.asynccontextmanager
async def nginx_server(
    nginx: str, workdir: Path, *, cpus: str | None = None, taskset: str | None = None
) -> AsyncIterator[Server]:
    """Debian's nginx with one worker serving ``/static.json`` (``static_body()``) on a free port."""
    root = workdir / "nginx"
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "www" / "static.json").write_bytes(static_body())
    for path in (workdir, root, root / "www"):
        path.chmod(0o755)  # nginx's worker runs as an unprivileged user when started by root
    (root / "www" / "static.json").chmod(0o644)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(workers=1, root=root, port=port))
    argv = [nginx, "-c", str(conf), "-p", str(root), "-e", str(root / "nginx-error.log")]
    async with _run(
        "nginx", _command(argv, cpus, taskset), port=port, ready_path="/static.json", log=workdir / "nginx.log"
    ) as server:
        yield server
