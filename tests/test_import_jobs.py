"""Imports uploaded over HTTP (``registry/import_api.py``, ``registry/import_store.py``): a JSON Lines upload becomes
a job an enterprise system polls, imported all or nothing under the enterprise's own prefix.

A node homing ``88.118`` (operator ``300:88.118/OPERATOR``) with the enterprises ``88.118.7`` (Acme) and
``88.118.8`` (Beta), over a real PostgreSQL and real HTTP; requests go through the trusted proxy (a secure channel).
Uploads are generated line by line and streamed (chunked), so 100,000 lines never sit in one buffer.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from resolver import links
from resolver.config import Settings
from resolver.links import Link
from resolver.mirror_settings import MirrorSettings
from tests.support import SECURE, behind_trusted_proxy
from tests.test_apps import Site as AppsSite
from tests.test_apps import serve_site

NDJSON = {"Content-Type": "application/x-ndjson"}
IMPORTS = "/api/enterprises/88.118.7/imports"
FINAL = ("done", "failed")


def record(handle: str, url: str = "https://example.org/p") -> bytes:
    return orjson.dumps({"handle": handle, "values": [{"index": 1, "type": "URL", "data": url}]}) + b"\n"


def products(count: int, *, prefix: str = "88.118.7", bad: dict[int, bytes] | None = None) -> Iterator[bytes]:
    """``count`` product records, line ``n`` replaced by ``bad[n]`` when given."""
    bad = bad or {}
    for n in range(1, count + 1):
        yield bad.get(n) or record(f"{prefix}/P-{n:07d}", f"https://example.org/p/{n}")


async def chunks(lines: Iterable[bytes], size: int = 1 << 16) -> AsyncIterator[bytes]:
    """``lines`` as a streamed (chunked) body of about ``size`` bytes per chunk."""
    buffer = bytearray()
    for line in lines:
        buffer += line
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


class Site(AppsSite):
    """``tests/test_apps.py``'s node and identities (``app`` makes an app of 88.118.7), with uploads and polls."""

    async def send(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.node.call(method, path, headers=headers, **kwargs)

    async def upload(
        self, lines: Iterable[bytes], headers: dict[str, str], *, query: str = "", media: dict[str, str] = NDJSON
    ) -> tuple[int, Any, Any]:
        return await self.send("POST", IMPORTS + query, {**headers, **media}, data=chunks(lines))

    async def job(self, location: str, headers: dict[str, str]) -> dict[str, Any]:
        status, body, _ = await self.send("GET", location, headers)
        assert status == 200, body
        return body["job"]

    async def finished(self, location: str, headers: dict[str, str], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(location, headers)
            if job["state"] in FINAL:
                return job
            assert time.monotonic() < deadline, job
            await _pause()

    async def imported(self, lines: Iterable[bytes], headers: dict[str, str], query: str = "") -> dict[str, Any]:
        status, body, response = await self.upload(lines, headers, query=query)
        assert status == 202, body
        return await self.finished(response.headers["Location"], headers)

    async def count(self, prefix: str = "88.118.7") -> int:
        con = await asyncpg.connect(self.node.dsn)
        try:
            return await con.fetchval(
                "SELECT count(*) FROM handles WHERE prefix_key = $1 AND handle NOT LIKE '%/ADMIN' "
                "AND handle NOT LIKE '%/APP-%'",
                prefix,
            )
        finally:
            await con.close()


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def _site(database: str, settings: Settings) -> AsyncIterator[Site]:
    async for site in serve_site(database, settings, Site):
        yield site


@pytest.fixture
async def site(database: str, tmp_path: Path) -> AsyncIterator[Site]:
    async for site in _site(database, replace(behind_trusted_proxy(), data_dir=tmp_path)):
        yield site


# --- the import -----------------------------------------------------------------------------------------------


async def test_a_good_upload_of_100000_lines_completes_with_progress_visible_while_it_runs(site: Site) -> None:
    status, body, response = await site.upload(products(100_000), site.acme)
    assert status == 202, body
    job = body["job"]
    location = response.headers["Location"]
    assert location == f"{IMPORTS}/{job['id']}"
    assert (job["state"], job["total"], job["prefix"], job["actor"]) == (
        "queued",
        100_000,
        "88.118.7",
        "300:88.118.7/ADMIN",
    )

    seen = []
    while job["state"] not in FINAL:
        job = await site.job(location, site.acme)
        seen.append((job["state"], job["checked"], job["moved"]))
        await _pause()
    assert job["state"] == "done", job
    assert (job["written"], job["skipped"], job["rows"], job["errorCount"]) == (100_000, 0, 100_000, 0)
    assert job["finished"] is not None
    intermediate = [s for s in seen if s[0] == "checking" and 0 < s[1] < 100_000]
    assert intermediate, f"no poll saw the check under way: {seen[:5]} ... {seen[-5:]}"
    assert await site.count() == 100_000

    status, body, _ = await site.send("GET", "/api/handles/88.118.7/P-0054321", {})
    assert status == 200
    assert body["values"][0]["data"]["value"] == "https://example.org/p/54321"
    _, history, _ = await site.send("GET", "/api/handles/88.118.7/P-0054321/history", site.acme)
    assert history["history"][0]["actor"] == "300:88.118.7/ADMIN"


async def test_one_bad_line_in_100000_is_reported_by_number_and_nothing_is_imported(site: Site) -> None:
    job = await site.imported(products(100_000, bad={76_543: b'{"handle": "88.118.7/X", "values": [}\n'}), site.acme)
    assert job["state"] == "failed"
    assert job["errorCount"] == 1
    [error] = job["errors"]
    assert error["line"] == 76_543
    assert "not valid JSON" in error["message"]
    assert job["written"] is None
    assert "nothing was imported" in job["message"]
    assert await site.count() == 0


PIP = Link("gs1:pip", "https://factory.example/p/5", "产品页", "zh", "text/html", True)
MANUAL = Link("gs1:instructions", "https://factory.example/manual/5.pdf", type="application/pdf")


def linked(handle: str, *given: Link, values: list[dict[str, Any]] | None = None) -> bytes:
    line = {"handle": handle, "values": values or [], "links": [link.to_json() for link in given]}
    return orjson.dumps(line) + b"\n"


async def test_uploaded_lines_with_links_resolve_by_link_type_and_list_them_in_their_linkset(site: Site) -> None:
    job = await site.imported([linked("88.118.7/LINKED", PIP, MANUAL), *products(2)], site.acme)
    assert (job["state"], job["written"]) == ("done", 3), job
    status, _, response = await site.node.get("/88.118.7/LINKED?linkType=gs1:instructions")
    assert (status, response.headers["Location"]) == (302, MANUAL.href)
    hrefs = await site.node.linkset_hrefs("88.118.7/LINKED")
    assert (hrefs[links.expand(PIP.rel)], hrefs[links.expand(MANUAL.rel)]) == ([PIP.href], [MANUAL.href])
    _, record, _ = await site.node.get("/api/handles/88.118.7/LINKED?index=1000")
    assert record["values"][0]["data"]["value"] == links.render([PIP, MANUAL])


async def test_an_uploaded_bad_link_or_status_is_reported_by_line_and_nothing_is_imported(site: Site) -> None:
    lost = {"index": 5, "type": "IDNODE_STATUS", "data": '{"state": "lost"}'}
    bad = {
        3: orjson.dumps({"handle": "88.118.7/BAD", "links": [{"href": "https://factory.example/no-rel"}]}) + b"\n",
        5: orjson.dumps({"handle": "88.118.7/GONE", "values": [lost]}) + b"\n",
    }
    job = await site.imported([linked("88.118.7/LINKED", PIP), *products(6, bad=bad)], site.acme)
    assert job["state"] == "failed"
    assert [e["line"] for e in job["errors"]] == [4, 6]
    assert job["errors"][0]["message"].startswith("links: ")
    assert job["errors"][1]["message"].startswith("Value 5: IDNODE_STATUS: state must be one of")
    assert "nothing was imported" in job["message"]
    assert await site.count() == 0


async def test_a_line_under_another_tenants_prefix_is_refused_naming_it(site: Site) -> None:
    job = await site.imported(products(10, bad={4: record("88.118.8/STOLEN")}), site.acme)
    assert job["state"] == "failed"
    assert job["errors"] == [{"line": 4, "message": "handle 88.118.8/STOLEN is under prefix 88.118.8, not 88.118.7"}]
    assert await site.count() == 0 and await site.count("88.118.8") == 0


async def test_an_enterprise_may_not_import_its_prefix_handle(site: Site) -> None:
    job = await site.imported([record("88.118.7/OK"), record("0.NA/88.118.7")], site.acme)
    assert job["state"] == "failed"
    assert [e["line"] for e in job["errors"]] == [2]
    assert "PUT" in job["errors"][0]["message"]


async def test_replace_skips_present_records_unless_asked_and_then_writes_only_changes(site: Site) -> None:
    first = await site.imported(products(3), site.acme)
    assert (first["written"], first["skipped"]) == (3, 0)
    changed = [record("88.118.7/P-0000001", "https://example.org/new"), *list(products(3))[1:]]
    again = await site.imported(changed, site.acme)
    assert (again["state"], again["written"], again["skipped"]) == ("done", 0, 3)
    _, body, _ = await site.send("GET", "/api/handles/88.118.7/P-0000001", {})
    assert body["values"][0]["data"]["value"] == "https://example.org/p/1"

    replaced = await site.imported(changed, site.acme, query="?replace=true")
    assert (replaced["state"], replaced["replace"], replaced["written"], replaced["skipped"]) == ("done", True, 1, 2)
    _, body, _ = await site.send("GET", "/api/handles/88.118.7/P-0000001", {})
    assert body["values"][0]["data"]["value"] == "https://example.org/new"


# --- who may --------------------------------------------------------------------------------------------------


async def test_an_app_needs_register_to_upload_and_update_to_replace(site: Site) -> None:
    reader = await site.app("scanner", "read")
    status, body, _ = await site.upload(products(2), reader)
    assert (status, body["responseCode"]) == (403, 401)
    assert "ADD_HANDLE" in body["message"]

    writer = await site.app("mes", "register")
    job = await site.imported(products(2), writer)
    assert (job["state"], job["written"], job["actor"]) == ("done", 2, "300:88.118.7/APP-mes")
    status, body, _ = await site.upload(products(2), writer, query="?replace=true")
    assert (status, body["responseCode"]) == (403, 401)

    updater = await site.app("erp", "register", "update")
    job = await site.imported([record("88.118.7/P-0000001", "https://example.org/v2")], updater, query="?replace=true")
    assert (job["state"], job["written"]) == ("done", 1)


async def test_replace_by_an_app_cannot_rewrite_a_record_whose_own_admins_it_is_not(site: Site) -> None:
    updater = await site.app("erp", "register", "update")
    takeover = orjson.dumps(
        {"handle": "88.118.7/ADMIN", "values": [{"index": 300, "type": "HS_SECKEY", "data": "mine-now"}]}
    )
    job = await site.imported([record("88.118.7/P-1"), takeover + b"\n"], updater, query="?replace=true")
    assert job["state"] == "failed"
    assert [e["line"] for e in job["errors"]] == [2]
    assert job["errors"][0]["message"].startswith("88.118.7/ADMIN: ")
    assert await site.count() == 0
    status, _, _ = await site.send("GET", "/api/enterprises/88.118.7/apps", site.acme)
    assert status == 200  # the admin's secret still works


async def test_the_enterprise_admin_replaces_records_under_the_prefix_admins_group(site: Site) -> None:
    group_admin = {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": "0.NA/88.118.7", "index": 200, "permissions": "011111110011"}},
    }
    line = {"handle": "88.118.7/PY-1", "values": [group_admin, {"index": 1, "type": "URL", "data": "https://a"}]}
    assert (await site.imported([orjson.dumps(line)], site.acme))["written"] == 1
    line["values"][1]["data"] = "https://b"
    job = await site.imported([orjson.dumps(line)], site.acme, query="?replace=true")
    assert (job["state"], job["written"]) == ("done", 1), job


async def test_without_credentials_the_upload_is_401(site: Site) -> None:
    status, body, _ = await site.upload(products(1), SECURE)
    assert (status, body["responseCode"]) == (401, 402)


async def test_another_enterprise_can_neither_upload_nor_read_the_jobs(site: Site) -> None:
    status, body, _ = await site.upload(products(1), site.beta)
    assert (status, body["responseCode"]) == (403, 400)
    job = await site.imported(products(1), site.acme)
    location = f"{IMPORTS}/{job['id']}"
    status, body, _ = await site.send("GET", location, site.beta)
    assert (status, body["responseCode"]) == (403, 400)
    status, body, _ = await site.send("GET", IMPORTS, site.beta)
    assert (status, body["responseCode"]) == (403, 400)
    status, body, _ = await site.send("GET", f"/api/enterprises/88.118.8/imports/{job['id']}", site.beta)
    assert (status, body["responseCode"]) == (404, 100)
    assert (await site.job(location, site.operator))["state"] == "done"


async def test_an_unknown_job_or_enterprise_is_404(site: Site) -> None:
    for path in (f"{IMPORTS}/{uuid.uuid4()}", f"{IMPORTS}/not-a-job", "/api/enterprises/88.118.9/imports"):
        status, body, _ = await site.send("GET", path, site.operator)
        assert (status, body["responseCode"]) == (404, 100), path


async def test_a_suspended_enterprise_cannot_upload(site: Site) -> None:
    status, _, _ = await site.send("POST", "/api/enterprises/88.118.7/suspend", site.operator)
    assert status == 200
    status, body, _ = await site.upload(products(1), site.acme)
    assert (status, body["responseCode"]) == (403, 401)
    assert "suspended" in body["message"]
    status, body, _ = await site.send("GET", IMPORTS, site.acme)
    assert status == 200  # reading its jobs is not a change


# --- the upload -----------------------------------------------------------------------------------------------


async def test_other_media_types_are_415(site: Site) -> None:
    for media in ({"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {}):
        status, body, _ = await site.upload(products(1), site.acme, media=media)
        assert (status, body["responseCode"]) == (415, 4), media
        assert "application/x-ndjson" in body["message"]
    for media in ("application/jsonl", "application/json-lines; charset=utf-8"):
        status, body, _ = await site.upload(products(1), site.acme, media={"Content-Type": media})
        assert status == 202, body


async def test_a_gzip_upload_is_read_uncompressed(site: Site) -> None:
    body = gzip.compress(b"".join(products(1000)))
    headers = {**site.acme, **NDJSON, "Content-Encoding": "gzip"}
    status, answer, response = await site.send("POST", IMPORTS, headers, data=body)
    assert status == 202, answer
    job = await site.finished(response.headers["Location"], site.acme)
    assert (job["state"], job["written"], job["total"]) == ("done", 1000, 1000)
    assert job["bytes"] > len(body)


async def test_an_empty_upload_is_400(site: Site) -> None:
    status, body, _ = await site.send("POST", IMPORTS, {**site.acme, **NDJSON}, data=b"")
    assert (status, body["responseCode"]) == (400, 4)


async def test_jobs_are_listed_newest_first_and_paged(site: Site) -> None:
    ids = [(await site.imported(products(n), site.acme))["id"] for n in (1, 2, 3)]
    status, body, _ = await site.send("GET", IMPORTS, site.acme)
    assert status == 200
    assert body["totalCount"] == "3"
    assert [job["id"] for job in body["imports"]] == ids[::-1]
    _, body, _ = await site.send("GET", f"{IMPORTS}?page=1&pageSize=2", site.acme)
    assert (body["page"], body["pageSize"], [job["id"] for job in body["imports"]]) == (1, 2, [ids[0]])


async def test_a_job_whose_node_died_is_failed_once_its_heartbeat_is_stale(site: Site) -> None:
    orphan = uuid.uuid4()
    con = await asyncpg.connect(site.node.dsn)
    try:
        await con.execute(
            "INSERT INTO import_jobs (id, prefix, prefix_key, actor, replace, state, bytes, lines, heartbeat_at) "
            "VALUES ($1, '88.118.7', '88.118.7', 'x', false, 'checking', 10, 1, now() - interval '1 hour')",
            orphan,
        )
    finally:
        await con.close()
    job = await site.job(f"{IMPORTS}/{orphan}", site.acme)
    assert job["state"] == "failed"
    assert "stopped" in job["message"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_upload_over_max_import_bytes_is_413(database: str, tmp_path: Path, chunked: bool) -> None:
    settings = replace(behind_trusted_proxy(), data_dir=tmp_path, max_import_bytes=4096)
    async for site in _site(database, settings):
        lines = list(products(100))
        data: Any = chunks(lines, 1024) if chunked else b"".join(lines)
        status, body, _ = await site.send("POST", IMPORTS, {**site.acme, **NDJSON}, data=data)
        assert (status, body["responseCode"]) == (413, 4)
        assert "max_import_bytes" in body["message"]
        job = await site.imported(products(10), site.acme)
        assert job["state"] == "done"
        assert not list((tmp_path / "imports").iterdir())  # spool files are unlinked at once


async def test_a_mirror_refuses_uploads(database: str, tmp_path: Path) -> None:
    mirror = MirrorSettings(mirror_of="http://127.0.0.1:9", mirror_identity="300:88.118/OPERATOR", mirror_secret="x")
    settings = replace(behind_trusted_proxy(), data_dir=tmp_path, mirror=mirror)
    async for site in _site(database, settings):
        status, body, _ = await site.upload(products(1), site.acme)
        assert (status, body["responseCode"]) == (403, 401)
        assert "mirror" in body["message"]
