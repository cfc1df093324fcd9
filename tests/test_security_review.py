"""Regressions from the security review of issue 8's change, over real HTTP against a real database.

Each test reproduces one finding and failed before its fix: an imported secret key stored in the clear and shown
to anonymous readers; the owner locked out by failures from many addresses; search listing a tenant's handles to
an identity without LIST_HANDLES; a batch refusing the secret placeholder a PUT accepts; the import's index
statement bound by the pool's short timeout.
"""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from registry.auth import MAX_ITERATIONS, hash_secret
from registry.secret_keys import MAX_SECRETS
from resolver.identifiers import ascii_upper
from tests.support import (
    Node,
    behind_trusted_proxy,
    home,
    import_records,
    onboard_enterprise,
    put_record,
    running_node,
    secure_basic,
)

ADMIN_OF_ITSELF = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {"format": "admin", "value": {"handle": "88.TEST/ADMIN", "index": 300, "permissions": "111111111111"}},
}


async def _stored_values(dsn: str, handle: str) -> list[dict]:
    con = await asyncpg.connect(dsn)
    try:
        text = await con.fetchval('SELECT "values"::text FROM handles WHERE handle_key = $1', ascii_upper(handle))
    finally:
        await con.close()
    return orjson.loads(text) if text is not None else []


# --- 1. imported secret keys ----------------------------------------------------------------------------------


async def test_an_imported_plain_secret_key_is_stored_hashed_and_private_and_still_proves_the_identity(
    database: str,
) -> None:
    await home(database, "88.TEST")
    secret = {"index": 300, "type": "HS_SECKEY", "data": "s3cret"}
    report = await import_records(database, {"handle": "88.TEST/ADMIN", "values": [ADMIN_OF_ITSELF, secret]})
    assert (report.error_count, report.written) == (0, 1), report.errors
    stored = {v["index"]: v for v in await _stored_values(database, "88.TEST/ADMIN")}
    assert stored[300]["data"]["value"].startswith("pbkdf2-sha1$")
    assert stored[300]["permissions"] == "1100"
    async with running_node(database, behind_trusted_proxy()) as node:
        status, body, _ = await node.get("/api/handles/88.TEST/ADMIN")
        assert status == 200
        assert [v["index"] for v in body["values"]] == [100]
        owner = secure_basic("300:88.TEST/ADMIN", "s3cret")
        status, body, _ = await node.get("/api/handles/88.TEST/ADMIN?publicOnly=false", headers=owner)
        assert status == 200, body
        assert [v["data"]["value"] for v in body["values"] if v["index"] == 300] == ["(secret key, not shown)"]
        wrong = secure_basic("300:88.TEST/ADMIN", "guess")
        assert (await node.get("/api/handles/88.TEST/ADMIN?publicOnly=false", headers=wrong))[0] == 401


async def test_an_import_line_with_a_pre_hashed_secret_outside_the_iteration_range_is_a_line_error(
    database: str,
) -> None:
    await home(database, "88.TEST")
    costly = f"pbkdf2-sha1${MAX_ITERATIONS + 1}$c2FsdHNhbHQ=${'QUFB' * 8}"
    report = await import_records(
        database,
        {"handle": "88.TEST/fine", "values": [{"index": 1, "type": "URL", "data": "https://example.org/"}]},
        {"handle": "88.TEST/costly", "values": [{"index": 300, "type": "HS_SECKEY", "data": costly}]},
    )
    assert [(e.line, "iterations" in e.message) for e in report.errors] == [(2, True)]
    assert report.written == 0
    assert await _stored_values(database, "88.TEST/fine") == []


async def test_a_secret_key_stored_readable_by_all_never_appears_in_a_public_answer(database: str) -> None:
    """The second guard: whatever wrote it (SQL, an old import), a public HS_SECKEY stays out of every anonymous
    answer: the cached body, a filtered answer, the proxy's value page."""
    await home(database, "88.TEST")
    url = {"index": 1, "type": "URL", "data": "https://example.org/"}
    await put_record(database, "88.TEST/leaky", [url, {"index": 300, "type": "HS_SECKEY", "data": "s3cret"}])
    async with running_node(database) as node:
        for path in ("/api/handles/88.TEST/leaky", "/api/handles/88.test/LEAKY?type=HS_SECKEY&index=300"):
            status, body, _ = await node.get(path)
            assert status == 200, path
            assert "s3cret" not in orjson.dumps(body).decode(), path
            assert 300 not in [v["index"] for v in body["values"]], path
        status, page, _ = await node.get("/88.TEST/leaky?noredirect")
        assert status == 200
        assert "s3cret" not in page


# --- 5. the import's index statement ---------------------------------------------------------------------------


@pytest.mark.parametrize("replace", [False, True])
async def test_an_import_large_enough_to_index_its_rows_is_not_bound_by_the_pools_short_timeout(
    database: str, replace: bool
) -> None:
    """The index over the imported rows (built beyond 50,000 rows, by an import with ``replace``, which stages its
    rows) may take longer than the pool's per-query timeout, like every other bulk statement; an event trigger makes
    it take 1.5 s against a 1 s timeout. Without ``replace`` the rows are copied straight into ``handles``, under
    the same timeout."""
    await home(database, "88.TEST")
    con = await asyncpg.connect(database)
    try:
        await con.execute(
            "CREATE FUNCTION slow_index() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_sleep(1.5); END $$"
        )
        await con.execute(
            "CREATE EVENT TRIGGER slow_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
            "EXECUTE FUNCTION slow_index()"
        )
    finally:
        await con.close()
    lines = [f'{{"handle":"88.TEST/n{i}","values":[{{"index":1,"type":"NUM","data":"{i}"}}]}}' for i in range(50_001)]
    report = await import_records(database, *lines, command_timeout=1.0, replace=replace)
    assert (report.error_count, report.written) == (0, 50_001)


# --- 4. batch and PUT agree on the secret placeholder -----------------------------------------------------------


def _keyed(n: int) -> list[dict]:
    return [
        {"index": 1, "type": "URL", "data": f"https://example.org/{n}"},
        {"index": 300, "type": "HS_SECKEY", "data": hash_secret(f"k3y-{n}".encode()), "permissions": "1100"},
    ]


async def test_a_batch_replace_that_sends_back_the_secret_placeholder_keeps_the_key_as_a_put_does(
    database: str,
) -> None:
    """What an authenticated read shows, sent back with one change, is accepted by PUT and by the batch alike; the
    placeholders do not count against the secret cap (MAX_SECRETS + 1 of them in one batch)."""
    a = await onboard_enterprise(database, "88.A")
    count = MAX_SECRETS + 1
    for n in range(count):
        await put_record(database, f"88.A/id{n}", _keyed(n))
    hashes = [(await _stored_values(database, f"88.A/id{n}"))[1]["data"]["value"] for n in range(count)]
    async with running_node(database, behind_trusted_proxy()) as node:
        admin = secure_basic(a.identity, a.secret)
        _, shown, _ = await node.get("/api/handles/88.A/id0?publicOnly=false", headers=admin)
        assert shown["values"][1]["data"]["value"] == "(secret key, not shown)"
        shown["values"][0]["data"]["value"] = "https://example.org/put"
        status, body, _ = await node.call("PUT", "/api/handles/88.A/id0", json=shown, headers=admin)
        assert status == 200, body
        items = []
        for n in range(count):
            _, shown, _ = await node.get(f"/api/handles/88.A/id{n}?publicOnly=false", headers=admin)
            shown["values"][0]["data"]["value"] = f"https://example.org/batch/{n}"
            items.append({"op": "replace", "handle": f"88.A/id{n}", "values": shown["values"]})
        status, body, _ = await node.call("POST", "/api/handles:batch", json={"items": items}, headers=admin)
        assert status == 200, body
        assert [(r["status"], r.get("message")) for r in body["results"]] == [(200, None)] * count
    for n in range(count):
        url, key = await _stored_values(database, f"88.A/id{n}")
        assert (url["data"]["value"], key["data"]["value"]) == (f"https://example.org/batch/{n}", hashes[n])


# --- 3. search applies listing's permission ----------------------------------------------------------------------

SHARED_URL = [{"index": 1, "type": "URL", "data": "https://wall.example/item"}]


async def _add_admin(dsn: str, prefix_handle: str, admin: str, index: int, mask: str) -> None:
    """Add an HS_ADMIN value granting ``mask`` to ``300:<admin>`` to the record ``prefix_handle``."""
    values = await _stored_values(dsn, prefix_handle)
    grant = {"format": "admin", "value": {"handle": admin, "index": 300, "permissions": mask}}
    await put_record(dsn, prefix_handle, [*values, {"index": index, "type": "HS_ADMIN", "data": grant}])


async def test_search_refuses_an_identity_of_the_tenant_that_may_not_list_its_handles(database: str) -> None:
    """A sub-identity that may add handles under 88.A but not list them learned every handle name by ``?URL=*``."""
    a = await onboard_enterprise(database, "88.A")
    await put_record(database, "88.A/writer", _keyed(1))
    await _add_admin(database, "0.NA/88.A", "88.A/writer", 101, "000000000001")  # ADD_HANDLE only
    await put_record(database, "88.A/unlisted", SHARED_URL)
    async with running_node(database, behind_trusted_proxy()) as node:
        writer = secure_basic("300:88.A/writer", "k3y-1")
        status, body, _ = await node.get("/api/handles?prefix=88.A", headers=writer)
        assert (status, body["responseCode"]) == (403, 401)
        status, body, _ = await node.get("/hrls/handles?URL=*", headers=writer)
        assert status == 403, body
        assert body["responseCode"] == 401
        assert "LIST_HANDLES" in body["message"]
        status, body, _ = await node.get("/hrls/handles?URL=https://wall.*", headers=secure_basic(a.identity, a.secret))
        assert (status, body) == (200, ["88.A/unlisted"])


async def test_search_leaves_out_a_derived_prefix_whose_admins_do_not_let_one_list_it(database: str) -> None:
    a = await onboard_enterprise(database, "88.A")
    await put_record(database, "0.NA/88.A.SUB", [])
    await _add_admin(database, "0.NA/88.A.SUB", "88.A/other", 100, "111111111111")
    await put_record(database, "88.A.SUB/hidden", SHARED_URL)
    await put_record(database, "88.A/shown", SHARED_URL)
    async with running_node(database, behind_trusted_proxy()) as node:
        admin = secure_basic(a.identity, a.secret)
        assert (await node.get("/api/handles?prefix=88.A.SUB", headers=admin))[0] == 403
        status, body, _ = await node.get("/hrls/handles?URL=https://wall.example/*", headers=admin)
        assert (status, body) == (200, ["88.A/shown"])
        # 88.A.SUB/hidden sorts first: the refused prefix must not use up the limit
        status, body, _ = await node.get("/hrls/handles?URL=https://wall.example/*&limit=1", headers=admin)
        assert (status, body) == (200, ["88.A/shown"])


# --- 2. failures from many addresses do not lock the owner out ---------------------------------------------------


async def _guess(node: Node, identity: str, address: str) -> int:
    headers = {**secure_basic(identity, "wrong"), "X-Forwarded-For": address}
    return (await node.call("PUT", "/api/handles/88.A/x", json={"values": SHARED_URL}, headers=headers))[0]


async def test_the_owner_gets_in_with_the_right_secret_after_failures_from_ten_addresses(database: str) -> None:
    """Ten addresses failing ``auth_failure_limit`` times each reach the identity's ceiling; the owner, from an
    eleventh, still gets in (it got 429 before verifying), and the attackers stay blocked at their own addresses."""
    a = await onboard_enterprise(database, "88.A")
    async with running_node(database, behind_trusted_proxy(auth_failure_limit=3)) as node:
        for i in range(10):
            assert [await _guess(node, a.identity, f"203.0.113.{i}") for _ in range(3)] == [401, 401, 401]
        assert await _guess(node, a.identity, "203.0.113.0") == 429
        owner = {**secure_basic(a.identity, a.secret), "X-Forwarded-For": "198.51.100.7"}
        status, body, _ = await node.call("PUT", "/api/handles/88.A/x", json={"values": SHARED_URL}, headers=owner)
        assert status == 201, body


async def test_an_ipv6_client_counts_by_its_64_for_the_failure_limits(database: str) -> None:
    """Rotating addresses inside one /64 does not buy more guesses; a neighbouring /64 is not blocked by it."""
    a = await onboard_enterprise(database, "88.A")
    async with running_node(database, behind_trusted_proxy(auth_failure_limit=3)) as node:
        answers = [await _guess(node, a.identity, f"2001:db8:0:1::{i:x}") for i in range(1, 5)]
        assert answers == [401, 401, 401, 429]
        assert await _guess(node, a.identity, "2001:db8:0:1:ffff:ffff:ffff:ffff") == 429
        assert await _guess(node, a.identity, "2001:db8:0:2::1") == 401
