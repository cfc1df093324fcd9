"""registry/escrow.py and registry/escrow_format.py: deposits through the real ``idnode escrow`` command.

A source database is changed, exported (FULL, then DIFFs), and the deposits are imported into another database;
the two are compared row by row and through a node's answers. Faulty deposits are refused with one line and
leave the target as it was.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import (
    REPO,
    add_node_operator,
    delete_record,
    eventually,
    fresh_database,
    home,
    onboard_enterprise,
    put_record,
    running_node,
)
from tests.test_cli import idnode

_ROWS = {
    "prefixes": "SELECT to_jsonb(t) FROM prefixes t ORDER BY prefix_key",
    "enterprises": "SELECT to_jsonb(t) FROM enterprises t ORDER BY prefix_key",
    "templates": "SELECT to_jsonb(t) FROM templates t ORDER BY prefix_key, version",
    "operators": "SELECT to_jsonb(t) FROM operators t ORDER BY identity_key",
    "nodes": "SELECT to_jsonb(t) - 'last_seen' - 'report' FROM nodes t ORDER BY prefix_key",
    "handles": "SELECT to_jsonb(t) FROM handles t ORDER BY handle_key",
}


@pytest.fixture
async def target(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A second fresh database, the deposits' destination."""
    async with fresh_database(server_dsn, template_database) as dsn:
        yield dsn


async def _sql(dsn: str, *statements: str) -> None:
    con = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await con.execute(statement)
    finally:
        await con.close()


async def _state(dsn: str) -> dict[str, list[Any]]:
    """Every escrowed row of ``dsn``, table by table, in key order."""
    con = await asyncpg.connect(dsn)
    try:
        return {table: [row[0] for row in await con.fetch(query)] for table, query in _ROWS.items()}
    finally:
        await con.close()


async def _applied(dsn: str) -> list[str]:
    con = await asyncpg.connect(dsn)
    try:
        return [row["id"] for row in await con.fetch("SELECT id FROM escrow_imports ORDER BY n")]
    finally:
        await con.close()


def _export(dsn: str, tmp_path: Path, name: str, *scope: str) -> tuple[Path, int]:
    """Export a deposit to ``tmp_path/name``; the file and its watermark."""
    path = tmp_path / name
    result = idnode(dsn, tmp_path, "escrow", "export", *scope, str(path))
    assert result.returncode == 0, result.stderr
    assert not path.with_name(name + ".part").exists()
    watermark = re.search(r"\(watermark (\d+)\)", result.stdout)
    assert watermark is not None, result.stdout
    return path, int(watermark.group(1))


def _import(dsn: str, tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return idnode(dsn, tmp_path, "escrow", "import", str(path))


def _refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("idnode: escrow: ") and reason in lines[0], lines[0]


def _url(text: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": text}]


async def _make_source(dsn: str, tmp_path: Path) -> None:
    """Prefixes, an enterprise, an operator, a template, a child node and handles in several spellings."""
    await home(dsn, "88.TEST")
    await onboard_enterprise(dsn, "88.ENT")
    await add_node_operator(dsn, "88.TEST/OPS")
    added = idnode(dsn, tmp_path, "node", "add", "--prefix", "88.TEST.CHILD", "--name", "Child node")
    assert added.returncode == 0, added.stderr
    await _sql(
        dsn,
        "INSERT INTO templates (prefix_key, prefix, version, items) "
        """VALUES ('88.ENT', '88.ent', '1.0', '[{"name": "型号", "type": "string"}]')""",
    )
    await put_record(dsn, "88.TEST/Pump-1", _url("https://example.org/pump-1"))
    await put_record(
        dsn, "88.TEST/valve-1", [*_url("https://example.org/v"), {"index": 2, "type": "名称", "data": "阀"}]
    )
    await put_record(dsn, "88.ENT/gone", _url("https://example.org/gone"))
    await put_record(dsn, "88.ENT/back", _url("https://example.org/back-1"))


async def _first_changes(dsn: str) -> None:
    """Updates, deletes, a delete then re-create, new rows of every other kind."""
    await put_record(dsn, "88.TEST/Pump-1", _url("https://example.org/pump-1-v2"))
    await delete_record(dsn, "88.ENT/gone")
    await delete_record(dsn, "88.ENT/back")
    await put_record(dsn, "88.ENT/back", _url("https://example.org/back-2"))
    await put_record(dsn, "88.TEST/new-1", _url("https://example.org/new-1"))
    await _sql(
        dsn,
        "INSERT INTO templates (prefix_key, prefix, version, items) VALUES ('88.ENT', '88.ent', '2.0', '[]')",
        "UPDATE enterprises SET contact = 'ops@example.org' WHERE prefix_key = '88.ENT'",
        "DELETE FROM operators",
    )


async def _second_changes(dsn: str) -> None:
    await put_record(dsn, "88.ENT/gone", _url("https://example.org/gone-again"))
    await delete_record(dsn, "88.TEST/valve-1")
    await put_record(dsn, "88.TEST/new-1", _url("https://example.org/new-1-v2"))
    await _sql(dsn, "DELETE FROM templates WHERE version = '1.0'", "DELETE FROM nodes")
    await home(dsn, "88.LATE")


async def _three_deposits(database: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A FULL of the source, then a DIFF after each of two rounds of changes."""
    await _make_source(database, tmp_path)
    full, first = _export(database, tmp_path, "full.jsonl", "--full")
    await _first_changes(database)
    diff1, second = _export(database, tmp_path, "diff1.jsonl", "--since", str(first))
    await _second_changes(database)
    diff2, _ = _export(database, tmp_path, "diff2.jsonl", "--since", str(second))
    return full, diff1, diff2


async def test_full_then_two_diffs_reproduce_the_source_exactly(database: str, target: str, tmp_path: Path) -> None:
    full, diff1, diff2 = await _three_deposits(database, tmp_path)

    for deposit in (full, diff1, diff2):  # in slices of two lines: deletes and contents cross slice boundaries
        result = idnode(target, tmp_path, "escrow", "import", "--slice", "2", str(deposit))
        assert result.returncode == 0, result.stderr
    source_state = await _state(database)
    assert source_state["handles"] and source_state["templates"] and source_state["enterprises"]
    assert await _state(target) == source_state
    assert len(await _applied(target)) == 3

    handles = ["88.TEST/Pump-1", "88.TEST/new-1", "88.ENT/back", "88.ENT/gone", "88.TEST/valve-1", "88.TEST/none"]
    async with running_node(database) as source_node, running_node(target) as target_node:
        for handle in handles:
            source_status, source_body, _ = await source_node.get(f"/api/handles/{handle}")
            target_status, target_body, _ = await target_node.get(f"/api/handles/{handle}")
            assert (target_status, target_body) == (source_status, source_body), handle


async def test_a_diff_only_applies_on_its_predecessor(database: str, target: str, tmp_path: Path) -> None:
    full, diff1, diff2 = await _three_deposits(database, tmp_path)

    _refused(_import(target, tmp_path, diff1), "the last applied here is none")
    assert await _applied(target) == []
    assert _import(target, tmp_path, full).returncode == 0
    after_full = await _state(target)
    _refused(_import(target, tmp_path, diff2), "applies on deposit")
    _refused(_import(target, tmp_path, full), "already applied")
    assert _import(target, tmp_path, diff1).returncode == 0
    after_diff1 = await _state(target)
    assert after_diff1 != after_full
    _refused(_import(target, tmp_path, diff1), "already applied")
    assert await _state(target) == after_diff1
    assert len(await _applied(target)) == 2


async def test_a_diff_needs_a_deposit_that_ended_where_it_starts(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    _refused(idnode(database, tmp_path, "escrow", "export", "--since", "0", str(tmp_path / "d")), "export --full")
    _refused(idnode(database, tmp_path, "escrow", "export", "--since", "99", str(tmp_path / "d")), "feed ends")
    assert list(tmp_path.iterdir()) == []


def _flip_one_byte(path: Path, marker: bytes) -> Path:
    """A copy of the deposit with the byte just after ``marker`` changed (its lowest bit flipped)."""
    data = bytearray(path.read_bytes())
    at = data.index(marker) + len(marker)
    data[at] ^= 0x01
    tampered = path.with_name("tampered-" + path.name)
    tampered.write_bytes(bytes(data))
    return tampered


async def test_truncated_and_tampered_deposits_are_refused_and_nothing_is_applied(
    database: str, target: str, tmp_path: Path
) -> None:
    await _make_source(database, tmp_path)
    full, _ = _export(database, tmp_path, "full.jsonl", "--full")
    data = full.read_bytes()
    cut_mid_line = tmp_path / "cut.jsonl"
    cut_mid_line.write_bytes(data[: len(data) // 2])
    last_line = data.rstrip(b"\n").rfind(b"\n") + 1
    cut_at_line = tmp_path / "cut-at-line.jsonl"
    cut_at_line.write_bytes(data[:last_line])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")

    _refused(_import(target, tmp_path, cut_mid_line), "truncated")
    _refused(_import(target, tmp_path, cut_at_line), "truncated")
    _refused(_import(target, tmp_path, empty), "not an escrow deposit")
    _refused(_import(target, tmp_path, tmp_path / "missing.jsonl"), "cannot read")
    unwritable = idnode(database, tmp_path, "escrow", "export", "--full", str(tmp_path / "no-such-dir" / "d"))
    _refused(unwritable, "cannot write")
    _refused(_import(target, tmp_path, _flip_one_byte(full, b"pump-")), "altered")
    _refused(_import(target, tmp_path, _flip_one_byte(full, b'"created":"')), "altered")
    _refused(_import(target, tmp_path, _flip_one_byte(full, b'"sha256":"')), "altered")
    assert await _applied(target) == []
    assert (await _state(target))["handles"] == []
    assert _import(target, tmp_path, full).returncode == 0


async def test_a_killed_import_continues_after_its_last_slice_and_applies_nothing_twice(
    database: str, target: str, tmp_path: Path
) -> None:
    await home(database, "88.TEST")
    await _sql(
        database,
        """INSERT INTO handles (handle_key, handle, prefix_key, "values") """
        "SELECT '88.TEST/H' || i, '88.test/h' || i, '88.TEST', "
        """jsonb_build_array(jsonb_build_object('index', 1, 'type', 'URL', 'data', """
        """jsonb_build_object('format', 'string', 'value', 'https://example.org/' || i))) """
        "FROM generate_series(1, 40000) i",
    )
    full, _ = _export(database, tmp_path, "full.jsonl", "--full")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.update(IDNODE_DATABASE_URL=target, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "registry.cli", "escrow", "import", "--slice", "4000", str(full)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = await asyncpg.connect(target)
    try:

        async def two_slices_applied() -> bool:
            done = await watcher.fetchval("SELECT lines_done FROM escrow_progress")
            return done is not None and done >= 8000

        assert await eventually(two_slices_applied, timeout=60, interval=0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        async def backend_gone() -> bool:
            count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idnode-escrow'"
            return await watcher.fetchval(count) == 0

        assert await eventually(backend_gone, timeout=60, interval=0.05)
        done = await watcher.fetchval("SELECT lines_done FROM escrow_progress")
        assert 8000 <= done < 40001
        assert await watcher.fetchval("SELECT count(*) FROM handles") == done - 1  # the prefix came first
    finally:
        await watcher.close()
    assert await _applied(target) == []
    other, _ = _export(database, tmp_path, "other.jsonl", "--full")
    _refused(_import(target, tmp_path, other), "partly applied")

    result = await asyncio.to_thread(idnode, target, tmp_path, "escrow", "import", "--slice", "4000", str(full))
    assert result.returncode == 0, result.stderr
    assert "continuing" in result.stderr
    assert await _state(target) == await _state(database)
    con = await asyncpg.connect(target)
    try:
        writes = await con.fetch("SELECT op, count(*) FROM handle_history GROUP BY op")
    finally:
        await con.close()
    assert {row["op"]: row["count"] for row in writes} == {"create": 40000}
    _refused(_import(target, tmp_path, full), "already applied")
