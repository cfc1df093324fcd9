"""registry/mirror.py, replication.py and schema 0008: a mirror follows a primary, and takes over from it.

Real nodes over HTTPS on 127.0.0.1 and real PostgreSQL databases, one per node. The primary is onboarded with an
enterprise (``88.A``, whose admin writes) and an operator identity (which the mirror follows the feed as). A mirror
must end with exactly its primary's state: the same rows (handles with spelling and values, prefixes, enterprises,
operators) and byte-identical answers to the same reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest

from registry.enterprises import Credentials
from registry.tls import ensure_self_signed
from resolver.config import RegistrySettings, Settings
from resolver.mirror_settings import MirrorSettings
from tests.support import (
    REPO,
    SECURE,
    basic,
    enterprises_and_operator,
    eventually,
    free_port,
    fresh_database,
    put_record,
    running_node,
    self_signed_context,
    spawn_node,
    start_node,
    stop_process,
)

_TABLES = {
    "handles": 'SELECT handle_key, handle, "values"::text FROM handles ORDER BY handle_key',
    "prefixes": "SELECT to_jsonb(p)::text FROM prefixes p ORDER BY prefix_key",
    "enterprises": "SELECT to_jsonb(e)::text FROM enterprises e ORDER BY prefix_key",
    "operators": "SELECT to_jsonb(o)::text FROM operators o ORDER BY identity_key",
}


def _values(n: int) -> list[dict[str, Any]]:
    return [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": f"https://example.org/p/{n}"}},
        {"index": 2, "type": "DESC", "data": {"format": "string", "value": f"product {n}: 1.10 µm"}},
    ]


@dataclass
class Primary:
    url: str
    dsn: str
    cert: Path
    roles: dict[str, Credentials]

    def mirror_settings(self) -> MirrorSettings:
        operator = self.roles["operator"]
        return MirrorSettings(
            mirror_of=self.url, mirror_identity=operator.identity, mirror_secret=operator.secret, mirror_ca=self.cert
        )

    def mirror_env(self) -> dict[str, str]:
        operator = self.roles["operator"]
        return {
            "IDNODE_MIRROR_OF": self.url,
            "IDNODE_MIRROR_IDENTITY": operator.identity,
            "IDNODE_MIRROR_SECRET": operator.secret,
            "IDNODE_MIRROR_CA": str(self.cert),
        }


async def _rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    con = await asyncpg.connect(dsn)
    try:
        return {name: [tuple(row) for row in await con.fetch(query)] for name, query in _TABLES.items()}
    finally:
        await con.close()


async def _scalar(dsn: str, query: str) -> Any:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(query)
    finally:
        await con.close()


async def _newest(dsn: str) -> int:
    """The primary's feed, numbered up to now (as a feed request would), and its last number."""
    con = await asyncpg.connect(dsn)
    try:
        await con.fetchval("SELECT idnode_sequence_changes(1000000)")
        return await con.fetchval("SELECT last_seq FROM change_feed_state")
    finally:
        await con.close()


async def _watermark(dsn: str) -> int:
    return await _scalar(dsn, "SELECT coalesce((SELECT watermark FROM mirror_state), -1)")


async def _caught_up(primary_dsn: str, mirror_dsn: str, timeout: float = 10.0) -> bool:
    async def check() -> bool:
        return await _watermark(mirror_dsn) == await _newest(primary_dsn)

    return bool(await eventually(check, timeout=timeout, interval=0.05))


async def _same_state(http: aiohttp.ClientSession, primary: str, mirror: str, primary_dsn: str, mirror_dsn: str) -> int:
    """Assert the mirror holds the primary's rows and answers its bytes; how many handles were compared."""
    source, copy = await _rows(primary_dsn), await _rows(mirror_dsn)
    for table in _TABLES:
        assert copy[table] == source[table], table
    for key, _handle, _values in source["handles"]:
        bodies = []
        for base in (primary, mirror):
            async with http.get(f"{base}/api/handles/{key}") as response:
                bodies.append((response.status, await response.read()))
        assert bodies[0] == bodies[1], key
    return len(source["handles"])


@contextlib.asynccontextmanager
async def _primary(dsn: str, directory: Path, **mirror: Any) -> AsyncIterator[tuple[Primary, aiohttp.ClientSession]]:
    roles = await enterprises_and_operator(dsn)
    cert, _key = ensure_self_signed(directory)
    settings = Settings(mirror=MirrorSettings(**mirror))
    async with running_node(dsn, settings, ssl_context=self_signed_context(directory)) as node:
        yield Primary(node.url, dsn, cert, roles), node.http


async def _put(http: aiohttp.ClientSession, base: str, who: Credentials, handle: str, n: int) -> int:
    body = orjson.dumps({"values": _values(n)})
    headers = {**basic(who.identity, who.secret), "Content-Type": "application/json", **SECURE}
    async with http.put(f"{base}/api/handles/{handle}", data=body, headers=headers) as response:
        await response.read()
        return response.status


async def _delete(http: aiohttp.ClientSession, base: str, who: Credentials, handle: str) -> int:
    async with http.delete(f"{base}/api/handles/{handle}", headers={**basic(who.identity, who.secret)}) as response:
        await response.read()
        return response.status


async def _load(http: aiohttp.ClientSession, primary: Primary, count: int, *, tag: str = "w") -> None:
    """Creates, updates, deletes and re-creates (in a new spelling) under 88.A, one request at a time."""
    admin = primary.roles["A"]
    for n in range(count):
        assert await _put(http, primary.url, admin, f"88.A/{tag}-{n % 40}", n) in (200, 201)
        if n % 7 == 3:
            assert await _delete(http, primary.url, admin, f"88.A/{tag}-{(n - 3) % 40}") == 200
        if n % 11 == 5:
            assert await _put(http, primary.url, admin, f"88.a/{tag.upper()}-{(n - 3) % 40}", n) in (200, 201)


# --- following ---------------------------------------------------------------------------------------------


async def test_a_mirror_follows_under_load_within_a_second_and_ends_with_the_primary_state(
    database: str, server_dsn: str, template_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        _primary(database, tmp_path) as (primary, http),
        fresh_database(server_dsn, template_database) as mirror_dsn,
    ):
        async with running_node(mirror_dsn, Settings(mirror=primary.mirror_settings())) as mirror:
            load = asyncio.create_task(_load(http, primary, 400))
            lags = []
            admin = primary.roles["A"]
            for n in range(15):  # while the load runs: a write's time from its acknowledgement to the mirror
                handle = f"88.A/probe-{n}"
                assert await _put(http, primary.url, admin, handle, n) == 201
                acknowledged = time.monotonic()

                async def arrived(handle: str = handle) -> bool:
                    async with mirror.http.get(f"{mirror.url}/api/handles/{handle}") as response:
                        return response.status == 200

                assert await eventually(arrived, timeout=5.0, interval=0.01)
                lags.append(time.monotonic() - acknowledged)
            await load
            assert await _caught_up(database, mirror_dsn)
            compared = await _same_state(http, primary.url, mirror.url, database, mirror_dsn)
            status, ready, _ = await mirror.get("/readyz")
            assert status == 200
            assert ready["mirror"]["of"] == primary.url and ready["mirror"]["following"] is True
            assert ready["mirror"]["watermark"] == await _newest(database)
            async with mirror.http.get(f"{mirror.url}/metrics") as response:
                assert "idnode_mirror_lag_seconds 0.0" in await response.text()
        with capsys.disabled():
            print(
                f"\nmirror lag under load (acknowledged on the primary → readable on the mirror, {len(lags)} probes): "
                f"max {max(lags) * 1000:.0f} ms, mean {sum(lags) / len(lags) * 1000:.0f} ms; {compared} handles equal"
            )
        assert max(lags) <= 1.0


async def test_writes_to_a_mirror_are_refused_naming_the_primary(
    database: str, server_dsn: str, template_database: str, tmp_path: Path
) -> None:
    async with (
        _primary(database, tmp_path) as (primary, http),
        fresh_database(server_dsn, template_database) as mirror_dsn,
    ):
        settings = Settings(mirror=primary.mirror_settings(), registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
        async with running_node(mirror_dsn, settings) as mirror:
            assert await _put(http, primary.url, primary.roles["A"], "88.A/one", 1) == 201
            assert await _caught_up(database, mirror_dsn)
            admin = primary.roles["A"]
            headers = {**basic(admin.identity, admin.secret), **SECURE, "Content-Type": "application/json"}
            status, body, _ = await mirror.call(
                "PUT", "/api/handles/88.A/two", data=orjson.dumps({"values": _values(2)}), headers=headers
            )
            assert (status, body["responseCode"]) == (403, 401)
            assert primary.url in body["message"]
            status, body, _ = await mirror.call("DELETE", "/api/handles/88.A/one", headers=headers)
            assert status == 403 and primary.url in body["message"]
            items = {"items": [{"op": "delete", "handle": "88.A/one"}]}
            status, body, _ = await mirror.call("POST", "/api/handles:batch", data=orjson.dumps(items), headers=headers)
            assert status == 403 and primary.url in body["message"]
            status, _, _ = await mirror.get("/api/handles/88.A/one")
            assert status == 200
            operator = primary.roles["operator"]
            as_operator = {**basic(operator.identity, operator.secret), **SECURE}
            for method, path, body in (  # the rest of what a mirror copies: prefixes, enterprises, templates
                ("POST", "/api/prefixes/88.C", {"name": "C"}),
                ("PATCH", "/api/enterprises/88.A", {"name": "renamed"}),
                ("POST", "/api/enterprises/88.A/suspend", None),
                ("PUT", "/api/templates/88.A/V1", {"items": []}),
            ):
                status, answer, _ = await mirror.call(method, path, json=body, headers=as_operator)
                assert (status, answer["responseCode"]) == (403, 401), (method, path, answer)
                assert primary.url in answer["message"]
            snms_template = {"prefix": "88.A", "version": "V1", "items": []}  # SNMS's API: refused in its envelope
            status, answer, _ = await mirror.call(
                "POST", "/snms/api/v5/template", json=snms_template, headers=as_operator
            )
            assert (status, answer["status"], answer["data"]) == (200, -3, None), answer
            assert primary.url in answer["message"]
            status, _, _ = await mirror.get("/api/enterprises", headers=as_operator)
            assert status == 200  # reads still answer


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


async def test_a_killed_mirror_resumes_without_gap_or_duplicate(
    database: str, server_dsn: str, template_database: str, tmp_path: Path
) -> None:
    async with (
        _primary(database, tmp_path) as (primary, http),
        fresh_database(server_dsn, template_database) as mirror_dsn,
    ):
        env = primary.mirror_env()
        load = asyncio.create_task(_load(http, primary, 300))
        for _ in range(3):  # killed while it applies, at whatever point the load has reached
            with spawn_node(mirror_dsn, env=env) as (_url, process):
                start = await _watermark(mirror_dsn)
                assert await eventually(lambda start=start: _moved(mirror_dsn, start, database), timeout=10.0)
                _kill(process)
        await load
        with spawn_node(mirror_dsn, env=env) as (url, _process):
            assert await _caught_up(database, mirror_dsn)
            await _same_state(http, primary.url, url, database, mirror_dsn)
        # every handle change applied exactly once: the mirror wrote one history row per change of the primary
        history = "SELECT count(*) FROM handle_history"
        assert await _scalar(mirror_dsn, history) == await _scalar(database, history)


async def _moved(dsn: str, start: int, primary_dsn: str) -> bool:
    """The mirror applied something since ``start``, or has nothing left to apply."""
    watermark = await _watermark(dsn)
    return watermark > max(start, 0) or watermark == await _newest(primary_dsn)


async def test_an_unreachable_primary_leaves_the_mirror_serving_and_it_catches_up(
    database: str, server_dsn: str, template_database: str, tmp_path: Path
) -> None:
    roles = await enterprises_and_operator(database)
    cert, _ = ensure_self_signed(tmp_path)
    context = self_signed_context(tmp_path)
    port = free_port()
    runner, url, _app = await start_node(database, ssl_context=context, port=port)
    primary = Primary(url, database, cert, roles)
    async with (
        fresh_database(server_dsn, template_database) as mirror_dsn,
        running_node(mirror_dsn, Settings(mirror=primary.mirror_settings())) as mirror,
    ):
        await put_record(database, "88.A/before", _values(1))
        assert await _caught_up(database, mirror_dsn)
        await runner.cleanup()  # the primary is away; its database takes writes from elsewhere
        await put_record(database, "88.A/during", _values(2))
        status, _, _ = await mirror.get("/api/handles/88.A/before")
        assert status == 200  # serves what it has
        status, _, _ = await mirror.get("/api/handles/88.A/during")
        assert status == 404

        async def lagging() -> bool:
            _, ready, _ = await mirror.get("/readyz")
            return ready["mirror"]["lag_seconds"] > 0.5

        assert await eventually(lagging, timeout=5.0)
        runner, _url, _app = await start_node(database, ssl_context=context, port=port)
        try:
            assert await _caught_up(database, mirror_dsn, timeout=20.0)
            status, _, _ = await mirror.get("/api/handles/88.A/during")
            assert status == 200
            _, ready, _ = await mirror.get("/readyz")
            assert ready["mirror"]["lag_seconds"] == 0
        finally:
            await runner.cleanup()


# --- synchronous mode --------------------------------------------------------------------------------------


async def _timed_puts(http: aiohttp.ClientSession, primary: Primary, count: int, tag: str) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        assert await _put(http, primary.url, primary.roles["A"], f"88.A/{tag}-{n}", n) == 201
        times.append(time.perf_counter() - started)
    return sorted(times)


async def test_sync_mirrors_holds_the_answer_until_a_mirror_has_the_write_and_what_it_costs(
    database: str, server_dsn: str, template_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        _primary(database, tmp_path / "sync", sync_mirrors=1, sync_mirror_timeout=0.5) as (sync, http),
        fresh_database(server_dsn, template_database) as plain_dsn,
        _primary(plain_dsn, tmp_path / "plain") as (plain, _),
        fresh_database(server_dsn, template_database) as sync_mirror_dsn,
        fresh_database(server_dsn, template_database) as plain_mirror_dsn,
    ):
        # no mirror: committed here, but not acknowledged
        started = time.monotonic()
        headers = {**basic(sync.roles["A"].identity, sync.roles["A"].secret), "Content-Type": "application/json"}
        body = orjson.dumps({"values": _values(0)})
        async with http.put(f"{sync.url}/api/handles/88.A/unconfirmed", data=body, headers=headers) as response:
            answer = orjson.loads(await response.read())
            assert (response.status, answer["responseCode"]) == (503, 3)
            assert "not acknowledged" in answer["message"]
        assert 0.5 <= time.monotonic() - started < 2.0
        async with http.get(f"{sync.url}/api/handles/88.A/unconfirmed") as response:
            assert response.status == 200  # as with synchronous_commit: committed on the primary all the same
        async with (
            running_node(sync_mirror_dsn, Settings(mirror=sync.mirror_settings())),
            running_node(plain_mirror_dsn, Settings(mirror=plain.mirror_settings())),
        ):
            assert await _caught_up(database, sync_mirror_dsn)
            assert await _caught_up(plain_dsn, plain_mirror_dsn)
            for tag in ("warm", "a", "b"):  # alternated, so both see the same moments of this shared machine
                with_sync = await _timed_puts(http, sync, 40, f"{tag}-sync")
                without = await _timed_puts(http, plain, 40, f"{tag}-plain")
            items = {"items": [{"op": "create", "handle": "88.A/batch-1", "values": _values(1)}]}
            async with http.post(
                f"{sync.url}/api/handles:batch", data=orjson.dumps(items), headers=headers
            ) as response:
                assert response.status == 200
                assert (await response.json())["results"][0]["status"] == 201
            # each acknowledged write was already on the mirror when its answer came
            source, copy = await _rows(database), await _rows(sync_mirror_dsn)
            assert copy["handles"] == source["handles"]
    with capsys.disabled():
        print(
            f"\nsingle PUT over HTTPS, median (p90) of 40: sync_mirrors=1 {with_sync[20] * 1000:.1f} "
            f"({with_sync[36] * 1000:.1f}) ms, sync_mirrors=0 {without[20] * 1000:.1f} ({without[36] * 1000:.1f}) ms"
        )


# --- takeover ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _spawn_tls(dsn: str, directory: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``idnode serve --tls ARGS`` as its own process over ``dsn``; its URL and process once it is ready."""
    cert, key = ensure_self_signed(directory)
    port = free_port()
    command = [sys.executable, "-m", "registry.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--tls"]
    command += ["--tls-cert", str(cert), "--tls-key", str(key), *args]
    env = {**os.environ, "IDNODE_DATABASE_URL": dsn, "IDNODE_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the primary exited"
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1, context=context) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the primary did not get ready"
                time.sleep(0.1)
        yield url, process
    finally:
        stop_process(process)


async def _stop_database(server_dsn: str, dsn: str) -> None:
    """Nobody can use the primary's database any more: connections refused, the open ones ended."""
    name = urlsplit(dsn).path.lstrip("/")  # unix-socket DSNs (the embedded server's) end in ?host=/dir
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await admin.close()


async def _drill(
    server_dsn: str, template_database: str, directory: Path, sync_mirrors: int
) -> tuple[int, int, float, float | None]:
    """Writes under way, the primary SIGKILLed and its database stopped, takeover: (acknowledged, missing on the
    mirror, seconds between the last acknowledged write the mirror holds and the kill, seconds between the
    first acknowledged write it lacks and the kill). An answer read just after the kill was sent before it: times
    are when the client read the answer, so the figures are at least 0."""
    async with (
        fresh_database(server_dsn, template_database) as primary_dsn,
        fresh_database(server_dsn, template_database) as mirror_dsn,
    ):
        roles = await enterprises_and_operator(primary_dsn)
        args = ("--sync-mirrors", str(sync_mirrors))
        with _spawn_tls(primary_dsn, directory, *args) as (url, process):
            primary = Primary(url, primary_dsn, ensure_self_signed(directory)[0], roles)
            settings = Settings(
                mirror=primary.mirror_settings(), registry=RegistrySettings(trusted_proxies=("127.0.0.1",))
            )
            async with running_node(mirror_dsn, settings) as mirror:
                assert await _caught_up(primary_dsn, mirror_dsn)
                acknowledged: dict[str, float] = {}
                stop = asyncio.Event()

                async def write() -> None:
                    n = 0
                    timeout = aiohttp.ClientTimeout(
                        total=10
                    )  # a write, even one waiting for the mirror, answers in 5 s
                    connector = aiohttp.TCPConnector(ssl=False)
                    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                        while not stop.is_set():
                            handle = f"88.A/drill-{n}"
                            n += 1
                            try:
                                status = await _put(http, url, roles["A"], handle, n)
                            except (aiohttp.ClientError, TimeoutError):
                                await asyncio.sleep(0.01)
                                continue
                            if 200 <= status < 300:
                                acknowledged[handle.upper()] = time.monotonic()

                writer = asyncio.create_task(write())
                await asyncio.sleep(2.0)
                process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                process.wait()
                await _stop_database(server_dsn, primary_dsn)
                await asyncio.sleep(0.3)
                stop.set()
                await writer
                env = {**os.environ, "IDNODE_DATABASE_URL": mirror_dsn, "IDNODE_LOG_LEVEL": "WARNING"}
                done = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "registry.cli", "takeover"],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                held = {key for (key,) in await _fetch(mirror_dsn, "SELECT handle_key FROM handles")}
                missing = [key for key in acknowledged if key not in held]
                survived = max(at for key, at in acknowledged.items() if key in held)
                first_lost = min((acknowledged[key] for key in missing), default=None)
                # the new primary takes writes, and its own feed moves on past everything it applied
                newest = await _newest(mirror_dsn)
                admin = roles["A"]
                assert await _put(mirror.http, mirror.url, admin, "88.A/after-takeover", 0) == 201
                assert await _newest(mirror_dsn) > newest

                async def stopped() -> bool:  # the follower notices at its next retry
                    _, ready, _ = await mirror.get("/readyz")
                    return ready["mirror"]["following"] is False

                assert await eventually(stopped, timeout=12.0, interval=0.1)
        lost_window = None if first_lost is None else max(0.0, killed - first_lost)
        return len(acknowledged), len(missing), max(0.0, killed - survived), lost_window


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetch(query)
    finally:
        await con.close()


@pytest.mark.parametrize("sync_mirrors", [1, 0])
async def test_takeover_drill(
    server_dsn: str, template_database: str, tmp_path: Path, sync_mirrors: int, capsys: pytest.CaptureFixture[str]
) -> None:
    async with asyncio.timeout(90):  # a stuck step fails here, with its traceback, instead of stalling the run
        acknowledged, missing, recovery_point, lost_window = await _drill(
            server_dsn, template_database, tmp_path, sync_mirrors
        )
    with capsys.disabled():
        lost = (
            "" if lost_window is None else f"; the lost ones were acknowledged in the last {lost_window * 1000:.0f} ms"
        )
        print(
            f"\ntakeover drill, sync_mirrors={sync_mirrors}: {acknowledged} writes acknowledged, {missing} missing on "
            f"the mirror after takeover; recovery point {recovery_point * 1000:.0f} ms before the kill{lost}"
        )
    assert acknowledged > 20
    if sync_mirrors:
        assert missing == 0


async def test_takeover_over_http_is_for_operators_persists_and_is_refused_on_a_node_that_is_no_mirror(
    database: str, server_dsn: str, template_database: str, tmp_path: Path
) -> None:
    async with (
        _primary(database, tmp_path) as (primary, http),
        fresh_database(server_dsn, template_database) as mirror_dsn,
    ):
        operator, admin = primary.roles["operator"], primary.roles["A"]
        status, body = await _post_takeover(http, primary.url, operator)
        assert (status, body["responseCode"]) == (409, 4)  # the primary itself is no mirror
        assert await _put(http, primary.url, admin, "88.A/before", 1) == 201
        settings = Settings(mirror=primary.mirror_settings(), registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
        async with running_node(mirror_dsn, settings) as mirror:
            assert await _caught_up(database, mirror_dsn)
            status, body = await _post_takeover(mirror.http, mirror.url, admin, secure=True)
            assert (status, body["responseCode"]) == (403, 401)  # an enterprise admin may not
            status, body = await _post_takeover(mirror.http, mirror.url, operator, secure=True)
            assert status == 200
            assert (body["source"], body["watermark"]) == (primary.url, await _newest(database))
            assert await _put(mirror.http, mirror.url, admin, "88.A/on-the-mirror", 2) == 201
        assert await _put(http, primary.url, admin, "88.A/after", 3) == 201
        async with running_node(mirror_dsn, settings) as restarted:  # mirror_of still set: it does not follow again
            _, ready, _ = await restarted.get("/readyz")
            assert ready["mirror"]["following"] is False
            assert await _put(restarted.http, restarted.url, admin, "88.A/again", 4) == 201
            status, _, _ = await restarted.get("/api/handles/88.A/after")
            assert status == 404


async def _post_takeover(
    http: aiohttp.ClientSession, base: str, who: Credentials, *, secure: bool = False
) -> tuple[int, Any]:
    headers = {**basic(who.identity, who.secret), **(SECURE if secure else {})}
    async with http.post(f"{base}/api/takeover", headers=headers) as response:
        return response.status, orjson.loads(await response.read())
