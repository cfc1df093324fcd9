"""``idnode enterprise add|list|show|update|suspend|resume|rotate-secret`` (registry/cli.py) as a subprocess against
the test database, and what a running node makes of the changes the command writes.

Exit statuses as the CLI's docstring says: 0 done, 1 no such enterprise, 2 an error the user can fix (one line).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from resolver.config import RegistrySettings, Settings
from tests.support import add_node_operator, eventually, running_node, secure_basic
from tests.test_cli import idnode

VALID_CODE = "91350100M000100Y43"
URL = [{"index": 1, "type": "URL", "data": "https://example.org/x"}]


async def run(dsn: str, cwd: Path, *args: str) -> Any:
    """``idnode enterprise ARGS`` off the event loop (a node may be serving from it)."""
    return await asyncio.to_thread(idnode, dsn, cwd, "enterprise", *args)


@pytest.fixture
async def dsn(database: str) -> str:
    """A database homing 88.118 (the node prefix, through its operator ``300:88.118/OPERATOR``)."""
    await add_node_operator(database, "88.118/OPERATOR")
    return database


async def test_add_without_a_prefix_allocates_the_next_one_and_list_show_it(dsn: str, tmp_path: Path) -> None:
    first = await run(dsn, tmp_path, "add", "--name", "Acme", "--credit-code", VALID_CODE, "--json")
    assert first.returncode == 0, first.stderr
    assert orjson.loads(first.stdout)["prefix"] == "88.118.1"
    second = await run(dsn, tmp_path, "add", "--name", "Beta", "--under", "88.118")
    assert second.returncode == 0, second.stderr
    assert "enterprise 88.118.2 identity: 300:88.118.2/ADMIN" in second.stdout

    listed = await run(dsn, tmp_path, "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [f"88.118.1\tactive\tAcme\t{VALID_CODE}", "88.118.2\tactive\tBeta\t"]
    assert "2 enterprise(s)" in listed.stderr
    filtered = await run(dsn, tmp_path, "list", "--name", "BET", "--json")
    assert [orjson.loads(line)["prefix"] for line in filtered.stdout.splitlines()] == ["88.118.2"]
    paged = await run(dsn, tmp_path, "list", "--page", "1", "--page-size", "1")
    assert paged.stdout.splitlines() == ["88.118.2\tactive\tBeta\t"]

    shown = await run(dsn, tmp_path, "show", "88.118.1", "--json")
    assert shown.returncode == 0
    assert orjson.loads(shown.stdout) | {"createdAt": None} == {
        "prefix": "88.118.1",
        "name": "Acme",
        "creditCode": VALID_CODE,
        "contact": None,
        "address": None,
        "state": "active",
        "admin": "300:88.118.1/ADMIN",
        "createdAt": None,
        "createdBy": orjson.loads(shown.stdout)["createdBy"],
    }
    assert orjson.loads(shown.stdout)["createdBy"].startswith("cli:")


async def test_update_changes_fields_and_an_empty_value_removes_one(dsn: str, tmp_path: Path) -> None:
    await run(dsn, tmp_path, "add", "--prefix", "88.118.5", "--name", "Acme", "--contact", "a@acme.example")
    done = await run(dsn, tmp_path, "update", "88.118.5", "--address", "Xiamen", "--contact", "", "--json")
    assert done.returncode == 0, done.stderr
    shown = orjson.loads(done.stdout)
    assert (shown["address"], shown["contact"], shown["name"]) == ("Xiamen", None, "Acme")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("show", "88.118.9"), 1, "No enterprise has prefix 88.118.9"),
        (("suspend", "88.118.9"), 1, "No enterprise has prefix 88.118.9"),
        (("rotate-secret", "88.118.9"), 1, "No enterprise has prefix 88.118.9"),
        (("update", "88.118.5", "--credit-code", "91350100M000100Y44"), 2, "wrong check character"),
        (("update", "88.118.5", "--name", ""), 2, "name cannot be removed"),
        (("add", "--prefix", "66.1", "--name", "Far"), 2, "not under any prefix homed here"),
        (("add", "--prefix", "88.118.5.1", "--name", "Inside"), 2, "lies under 88.118.5"),
        (("add", "--prefix", "88.118.6", "--under", "88.118", "--name", "Both"), 2, "not both"),
        (("add", "--name", "Bad", "--credit-code", "123"), 2, "3 characters, 18 expected"),
    ],
    ids=[
        "show-missing",
        "suspend-missing",
        "rotate-missing",
        "bad-code",
        "blank-name",
        "not-homed",
        "nested",
        "prefix-and-under",
        "short-code",
    ],
)
async def test_refusals_are_one_line_with_their_exit_status(
    dsn: str, tmp_path: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    await run(dsn, tmp_path, "add", "--prefix", "88.118.5", "--name", "Acme")
    done = await run(dsn, tmp_path, *args)
    assert done.returncode == status, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


async def test_suspend_and_rotate_secret_by_cli_reach_a_running_node(dsn: str, tmp_path: Path) -> None:
    added = await run(dsn, tmp_path, "add", "--prefix", "88.118.5", "--name", "Acme", "--json")
    old = orjson.loads(added.stdout)
    headers = secure_basic(old["identity"], old["secret"])
    settings = Settings(registry=RegistrySettings(trusted_proxies=("127.0.0.1",)))
    async with running_node(dsn, settings) as node:

        async def write(suffix: str, auth: dict[str, str]) -> int:
            status, _, _ = await node.call("PUT", f"/api/handles/88.118.5/{suffix}", json={"values": URL}, headers=auth)
            return status

        assert await write("first", headers) == 201
        suspended = await run(dsn, tmp_path, "suspend", "88.118.5")
        assert (suspended.returncode, "state\tsuspended" in suspended.stdout) == (0, True)
        assert await eventually(lambda: _refused(write, headers), timeout=3.0)
        assert (await node.get("/api/handles/88.118.5/first"))[0] == 200
        assert (await run(dsn, tmp_path, "resume", "88.118.5")).returncode == 0
        assert await eventually(lambda: _written(write, headers), timeout=3.0)

        rotated = await run(dsn, tmp_path, "rotate-secret", "88.118.5", "--json")
        assert rotated.returncode == 0
        new = orjson.loads(rotated.stdout)
        assert new["identity"] == old["identity"] and new["secret"] != old["secret"]
        assert await eventually(lambda: _status_is(write, "old", headers, 401), timeout=3.0)
        assert await write("new", secure_basic(new["identity"], new["secret"])) == 201


async def _refused(write: Any, headers: dict[str, str]) -> bool:
    return await write("while-suspended", headers) == 403


async def _written(write: Any, headers: dict[str, str]) -> bool:
    return await write("after-resume", headers) == 201


async def _status_is(write: Any, suffix: str, headers: dict[str, str], status: int) -> bool:
    return await write(suffix, headers) == status
