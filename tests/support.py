"""Helpers for tests: seeding a database by plain SQL, running a node in-process or as a process, polling."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import yarl
from aiohttp import web

from registry.app import extensions as registry_extensions
from registry.bulk import ImportReport, import_lines
from registry.demo import load_demo
from registry.enterprises import Credentials, add_operator, onboard
from registry.store import Actor, RegistryStore
from registry.tls import ensure_self_signed
from resolver.app import Extension, create_app, node_runner
from resolver.config import RegistrySettings, Settings
from resolver.identifiers import ascii_upper
from resolver.prefixes import PrefixTable
from resolver.records import decode_values, values_to_stored
from resolver.store import DatabaseSettings, close_pool, connect

REPO = Path(__file__).resolve().parent.parent


# --- the records of research/handle9-transcripts.md ------------------------------------------------------------

TRANSCRIPT_LANDING = "https://example.org/landing/xyz-v2"
TRANSCRIPT_XYZ: list[dict[str, Any]] = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": TRANSCRIPT_LANDING}},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "curator@example.org"}},
    {"index": 3, "type": "88.TEST/CUSTOM", "data": {"format": "string", "value": "custom payload"}},
    {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": "88.TEST/ADMIN", "index": 300, "permissions": "011111110011"}},
    },
]
"""``88.TEST/xyz`` of the transcripts: a URL, an e-mail address, a custom type and its HS_ADMIN."""
TRANSCRIPT_ADMIN: list[dict[str, Any]] = [
    {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": "88.TEST/ADMIN", "index": 300, "permissions": "111111111111"}},
    },
    {"index": 300, "type": "HS_SECKEY", "data": "hdl-test-secret", "permissions": "1100"},
]
"""``88.TEST/ADMIN`` of the transcripts: its HS_ADMIN and a secret key that no read may show."""


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` (works for TCP and unix-socket DSNs alike)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def as_role(dsn: str, role: str) -> str:
    """``dsn`` connecting as ``role`` (no password: the test server trusts local connections)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


async def home(dsn: str, *prefixes: str) -> None:
    """Home ``prefixes`` with plain SQL, as an operator's ``idnode prefix add`` does."""
    con = await asyncpg.connect(dsn)
    try:
        for prefix in prefixes:
            await con.execute(
                "INSERT INTO prefixes (prefix_key, prefix) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                ascii_upper(prefix),
                prefix,
            )
    finally:
        await con.close()


async def put_record(dsn: str, handle: str, values: list[dict[str, Any]]) -> None:
    """Create or replace a record by plain SQL (the triggers notify every node)."""
    stored = values_to_stored(decode_values(values)).decode()
    prefix = handle.split("/", 1)[0]
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb) '
            'ON CONFLICT (handle_key) DO UPDATE SET handle = EXCLUDED.handle, "values" = EXCLUDED."values"',
            ascii_upper(handle),
            handle,
            ascii_upper(prefix),
            stored,
        )
    finally:
        await con.close()


async def delete_record(dsn: str, handle: str) -> None:
    """Delete a record by plain SQL (the triggers notify every node)."""
    con = await asyncpg.connect(dsn)
    try:
        await con.execute("DELETE FROM handles WHERE handle_key = $1", ascii_upper(handle))
    finally:
        await con.close()


_TEST_PORTS = range(20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999 by default), from which the kernel takes ``bind(0)`` ports and the
local ports of outgoing connections: a port handed out here cannot be taken by a connection before the node that
asked for it binds it, nor by the other test run CI starts beside this one (it draws its own random ports)."""
_ports = random.Random()  # seeded from os.urandom: each process draws its own sequence
_handed_out: set[int] = set()


async def import_records(
    dsn: str, *records: dict[str, Any] | str, command_timeout: float = 5.0, replace: bool = False, actor: str = "test"
) -> ImportReport:
    """``idnode import`` of ``records`` (JSON Lines, or objects dumped to them) through the node's own pool, as the
    CLI runs it."""
    store = await connect(dsn, DatabaseSettings(command_timeout=command_timeout, pool_min=1, pool_max=2))
    try:
        lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in records]
        prefixes = PrefixTable(await store.fetch_prefixes())
        return await import_lines(store, lines, prefixes, max_handle_bytes=1024, replace=replace, actor=actor)
    finally:
        await close_pool(store.pool)


def free_port() -> int:
    """A port of 127.0.0.1 free now and not handed out before by this process."""
    for _ in range(1000):
        port = _ports.choice(_TEST_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


@dataclass
class Node:
    """A node serving over real HTTP on 127.0.0.1, and a client session for it."""

    url: str
    app: web.Application
    dsn: str
    http: aiohttp.ClientSession

    def raw_url(self, path: str) -> yarl.URL:
        """The URL of ``path`` sent exactly as written (no re-encoding of ``%`` escapes)."""
        return yarl.URL(self.url + path, encoded=True)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(self.raw_url(path), allow_redirects=False, **kwargs) as response:
            body = await response.read()
            return response.status, _decode(response, body), response

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Any method on ``path`` (sent as written); returns status, decoded body and the response."""
        async with self.http.request(method, self.raw_url(path), allow_redirects=False, **kwargs) as response:
            body = await response.read()
            return response.status, _decode(response, body), response

    async def linkset_hrefs(self, handle: str) -> dict[str, list[str]]:
        """The targets of each link type (its URI) in ``handle``'s linkset (``?linkType=linkset``)."""
        status, body, _ = await self.get(f"/{handle}?linkType=linkset")
        assert status == 200, body
        [context] = orjson.loads(body)["linkset"]
        return {rel: [t["href"] for t in targets] for rel, targets in context.items() if rel != "anchor"}


def _decode(response: aiohttp.ClientResponse, body: bytes) -> Any:
    if response.content_type == "application/json" and body:
        return orjson.loads(body)
    return body.decode("utf-8", "replace")


def with_test_fast_lane(settings: Settings) -> Settings:
    """``settings`` with the fast lane as ``IDNODE_FAST_LANE`` says, when it is set: CI runs the suite once with the
    lane and once without (.ci/run), so every read-path test goes through both."""
    raw = os.environ.get("IDNODE_FAST_LANE")
    if raw is None:
        return settings
    return dataclasses.replace(settings, fast_lane=raw.strip().lower() in {"1", "true", "yes", "on"})


async def start_node(
    dsn: str,
    settings: Settings | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    extensions: Iterable[Extension] | None = None,
    port: int | None = None,
    fast_lane: bool | None = None,
) -> tuple[web.AppRunner, str, web.Application]:
    """A full node (read path and registry, unless other ``extensions`` are given) on ``port`` of 127.0.0.1 (a
    free one by default); HTTPS when ``ssl_context`` is given. ``fast_lane`` overrides ``IDNODE_FAST_LANE``."""
    settings = with_test_fast_lane(settings or Settings())
    if fast_lane is not None:
        settings = dataclasses.replace(settings, fast_lane=fast_lane)
    app = await create_app(settings, dsn, extensions=registry_extensions() if extensions is None else extensions)
    runner = node_runner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://127.0.0.1:{port}", app


@contextlib.contextmanager
def spawn_node(
    dsn: str, *args: str, env: dict[str, str] | None = None, output: IO[bytes] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``idnode serve ARGS`` as a separate OS process on a free port over ``dsn``; yields its base URL and the
    process once it answers, and stops it afterwards. Its output goes to ``output`` when given, else to a pipe."""
    port = free_port()
    command = [sys.executable, "-m", "registry.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    full_env = {**os.environ, "IDNODE_DATABASE_URL": dsn, "IDNODE_LOG_LEVEL": "WARNING", **(env or {})}
    stdout = subprocess.PIPE if output is None else output
    process = subprocess.Popen(command, cwd=REPO, env=full_env, stdout=stdout, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, output=output)
        yield url, process
    finally:
        stop_process(process)


@contextlib.contextmanager
def node_process(dsn: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``idnode serve`` as a separate OS process on a free port; yields its base URL once it answers."""
    with spawn_node(dsn, *args, env=env) as (url, _):
        yield url


@dataclass
class ServedNode:
    """``idnode serve`` running as a process tree; its output (stdout and stderr) goes to a file."""

    url: str
    pid: int
    output: IO[bytes]

    def text(self) -> str:
        """Everything the node has written so far."""
        self.output.seek(0)
        return self.output.read().decode()

    @property
    def local_urls(self) -> list[str]:
        """Each worker's own ``/metrics/local``, from the start-up announcement."""
        line = next(line for line in self.text().splitlines() if line.startswith("idnode per-worker metrics:"))
        return line.split(":", 1)[1].split()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [int(pid) for pid in children]


@contextlib.contextmanager
def serve_node(dsn: str, *args: str, env: dict[str, str] | None = None) -> Iterator[ServedNode]:
    """``idnode serve ARGS`` on a free port over ``dsn``, once it is ready, its output kept in a temporary file;
    terminated afterwards."""
    with tempfile.TemporaryFile() as output, spawn_node(dsn, *args, env=env, output=output) as (url, process):
        yield ServedNode(url, process.pid, output)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Terminate ``process``; kill it if it has not exited after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float = 60.0, *, output: IO[bytes] | None = None
) -> None:
    """Poll ``url``/readyz until it answers 200; fail with the node's output (``output`` or its stdout pipe) if
    the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node exited with {process.returncode}:\n{_output_of(process, output)}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"node at {url} not ready after {timeout}s")


def _output_of(process: subprocess.Popen[bytes], output: IO[bytes] | None) -> str:
    if output is not None:
        output.seek(0)
        return output.read().decode()
    return process.stdout.read().decode() if process.stdout else ""


async def eventually(check: Any, timeout: float = 1.0, interval: float = 0.02) -> Any:
    """Poll the async ``check`` until it returns a truthy value or ``timeout`` passes; returns the last result."""
    deadline = time.monotonic() + timeout
    result = await check()
    while not result and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        result = await check()
    return result


# --- registry helpers: credentials, secure channels, enterprises ------------------------------------------

SECURE = {"X-Forwarded-Proto": "https"}
"""What a trusted TLS-terminating proxy adds; start the node with ``trusted_proxies=("127.0.0.1",)``."""


def basic(identity: str, secret: str) -> dict[str, str]:
    """``Authorization: Basic`` for ``index:handle``, the username percent-encoded as Handle.Net wants (§4.1)."""
    token = base64.b64encode(f"{quote(identity, safe='')}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def secure_basic(identity: str, secret: str) -> dict[str, str]:
    """Basic credentials sent through the trusted proxy (a secure channel)."""
    return {**SECURE, **basic(identity, secret)}


async def onboard_enterprise(dsn: str, prefix: str, *, name: str | None = None) -> Credentials:
    """Home ``prefix`` and onboard its enterprise; returns its ``Credentials`` (``300:<prefix>/ADMIN``)."""
    await home(dsn, prefix)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await onboard(
            RegistryStore(pool),
            prefix,
            name=name or f"Enterprise {prefix}",
            credit_code=None,
            contact=None,
            actor=Actor("test"),
        )
    finally:
        await pool.close()


async def load_demo_data(dsn: str) -> None:
    """What ``idnode serve --demo`` sets up (registry/demo.py), by its own code."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await load_demo(RegistryStore(pool))
    finally:
        await pool.close()


async def add_node_operator(dsn: str, handle: str) -> Credentials:
    """A node operator identity ``300:<handle>`` (its prefix is homed first); returns its ``Credentials``."""
    await home(dsn, handle.split("/", 1)[0])
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await add_operator(RegistryStore(pool), handle, actor=Actor("test"))
    finally:
        await pool.close()


def behind_trusted_proxy(**registry: Any) -> Settings:
    """Settings that trust 127.0.0.1 as a TLS-terminating proxy (so requests with ``SECURE`` headers count as
    secure), with any other registry settings given."""
    return Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",), **registry))


async def enterprises_and_operator(dsn: str) -> dict[str, Credentials]:
    """Onboard enterprises A (``88.A``) and B (``88.B``) and add the node operator ``300:99.OPS/OPERATOR``;
    returns their ``Credentials`` by role (``"A"``, ``"B"``, ``"operator"``)."""
    return {
        "A": await onboard_enterprise(dsn, "88.A"),
        "B": await onboard_enterprise(dsn, "88.B"),
        "operator": await add_node_operator(dsn, "99.OPS/OPERATOR"),
    }


_T = TypeVar("_T", bound="Tenants")


@dataclass
class Tenants:
    """A node behind a trusted proxy with two enterprises: the ``owner`` of the prefix under test and a
    ``stranger`` (``88.OTHER``), each as its admin's secure Basic headers."""

    node: Node
    owner: dict[str, str]
    stranger: dict[str, str]
    owner_secret: str = ""
    """The owner's admin secret, for logins other than Basic (SNMS's ``/identity/token``)."""


@contextlib.asynccontextmanager
async def tenants(database: str, owner_prefix: str, kind: type[_T]) -> AsyncIterator[_T]:
    """Onboard ``owner_prefix`` and ``88.OTHER`` and run a node over ``database``; yields ``kind`` (a ``Tenants``)."""
    owner = await onboard_enterprise(database, owner_prefix)
    stranger = await onboard_enterprise(database, "88.OTHER")
    async with running_node(database, behind_trusted_proxy()) as node:
        owner_headers = secure_basic(owner.identity, owner.secret)
        yield kind(node, owner_headers, secure_basic(stranger.identity, stranger.secret), owner.secret)


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 generated into ``directory``."""
    cert, key = ensure_self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextlib.asynccontextmanager
async def running_node(
    dsn: str,
    settings: Settings | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    extensions: Iterable[Extension] | None = None,
) -> AsyncIterator[Node]:
    """A node on 127.0.0.1 (as ``start_node`` builds it) with a client session (that does not verify
    certificates) for it."""
    runner, url, app = await start_node(dsn, settings, ssl_context=ssl_context, extensions=extensions)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
            yield Node(url, app, dsn, http)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str, template: str) -> AsyncIterator[str]:
    """Like the ``database`` fixture, for a module-scoped fixture whose tests share one database."""
    name = f"idnode_m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
