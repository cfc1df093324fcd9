"""registry/cli.py: the real ``idnode`` command as a subprocess against the test database.

Exit statuses: 0 done, 1 not found, 2 an error the user can fix (printed as one line, never a traceback).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from registry.demo import DEMO_HANDLES, DEMO_PREFIX, DEMO_TEMPLATE
from registry.templates import template_reference, validate_record
from resolver import links
from resolver.links import Link
from resolver.records import decode_values
from tests.support import REPO, free_port, home, put_record, stop_process


def idnode(dsn: str, cwd: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m registry.cli ARGS`` in ``cwd`` with ``IDNODE_DATABASE_URL`` pointing at ``dsn``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.update(IDNODE_DATABASE_URL=dsn, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "registry.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _jsonl(path: Path, *records: Any) -> Path:
    lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record(handle: str, url: str | None = None, **extra: str) -> dict[str, Any]:
    values: list[dict[str, Any]] = []
    if url is not None:
        values.append({"index": 1, "type": "URL", "data": url})
    values += [{"index": 10 + n, "type": kind, "data": text} for n, (kind, text) in enumerate(extra.items())]
    return {"handle": handle, "values": values}


async def _count(dsn: str, table: str = "handles") -> int:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await con.close()


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("idnode: ")
    return lines[0]


GOOD = (
    _record("88.TEST/pump-1", "https://example.org/pump-1", productName="离心泵 Centrifugal pump"),
    _record("88.TEST/valve-1", "https://example.org/valve-1"),
    _record("88.TEST/no-url", None, model="CP-40/160"),
)


# --- prefixes --------------------------------------------------------------------------------------------------


async def test_prefix_add_then_list_shows_the_homed_prefix(database: str, tmp_path: Path) -> None:
    added = idnode(database, tmp_path, "prefix", "add", "88.TEST")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "prefix 88.TEST homed"
    again = idnode(database, tmp_path, "prefix", "add", "88.TEST")
    assert (again.returncode, again.stdout.strip()) == (0, "prefix 88.TEST was already homed")
    listed = idnode(database, tmp_path, "prefix", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["88.TEST\thomed"]
    assert list(tmp_path.iterdir()) == []  # with a database URL, no embedded server or data dir appears


async def test_prefix_add_of_a_handle_is_refused(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "prefix", "add", "88.TEST/x")
    assert result.returncode == 2
    assert "'/'" in _one_line_error(result)


# --- import and resolve ---------------------------------------------------------------------------------------


async def test_imported_records_resolve(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    path = _jsonl(tmp_path / "good.jsonl", *GOOD)
    result = idnode(database, tmp_path, "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 record(s) written" in result.stdout
    assert await _count(database) == 3

    shown = idnode(database, tmp_path, "resolve", "88.TEST/pump-1")
    assert shown.returncode == 0, shown.stderr
    body = orjson.loads(shown.stdout)
    assert (body["responseCode"], body["handle"]) == (1, "88.TEST/pump-1")
    assert [(v["index"], v["data"]["value"]) for v in body["values"]] == [
        (1, "https://example.org/pump-1"),
        (10, "离心泵 Centrifugal pump"),
    ]

    url = idnode(database, tmp_path, "resolve", "88.TEST/pump-1", "--url")
    assert (url.returncode, url.stdout) == (0, "https://example.org/pump-1\n")


async def test_resolve_echoes_another_spelling(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    assert idnode(database, tmp_path, "import", str(_jsonl(tmp_path / "good.jsonl", *GOOD))).returncode == 0
    shown = idnode(database, tmp_path, "resolve", "88.test/VALVE-1")
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["handle"] == "88.test/VALVE-1"


async def test_rerunning_an_import_skips_existing_records(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    path = _jsonl(tmp_path / "good.jsonl", *GOOD)
    assert idnode(database, tmp_path, "import", str(path)).returncode == 0
    again = idnode(database, tmp_path, "import", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "import: 0 record(s) written, 3 already present and skipped"
    assert await _count(database) == 3


async def test_import_with_replace_overwrites_existing_records(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    assert idnode(database, tmp_path, "import", str(_jsonl(tmp_path / "a.jsonl", *GOOD))).returncode == 0
    changed = _jsonl(tmp_path / "b.jsonl", _record("88.TEST/pump-1", "https://example.org/pump-1/v2"))
    result = idnode(database, tmp_path, "import", str(changed), "--replace")
    assert result.returncode == 0, result.stderr
    assert "1 record(s) written" in result.stdout
    url = idnode(database, tmp_path, "resolve", "88.TEST/pump-1", "--url")
    assert url.stdout == "https://example.org/pump-1/v2\n"


async def test_replace_import_leaves_unchanged_records_and_their_history_alone(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    path = _jsonl(tmp_path / "good.jsonl", *GOOD)
    assert idnode(database, tmp_path, "import", str(path)).returncode == 0
    assert await _count(database, "handle_history") == 3
    again = idnode(database, tmp_path, "import", str(path), "--replace")  # same content, new timestamps
    assert again.returncode == 0, again.stderr
    assert "0 record(s) written" in again.stdout
    assert await _count(database, "handle_history") == 3
    changed = _jsonl(tmp_path / "changed.jsonl", _record("88.TEST/valve-1", "https://example.org/valve-1/v2"), GOOD[0])
    result = idnode(database, tmp_path, "import", str(changed), "--replace")
    assert "1 record(s) written" in result.stdout
    assert await _count(database, "handle_history") == 4


async def test_bad_import_names_every_bad_line_and_imports_nothing(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    path = _jsonl(
        tmp_path / "bad.jsonl",
        _record("88.TEST/a", "https://example.org/a"),  # 1: good
        '{"handle": "88.TEST/b", "values": [',  # 2: not JSON
        _record("99.NOPE/c", "https://example.org/c"),  # 3: prefix not homed here
        {"handle": "88.TEST/d", "values": [{"index": 0, "type": "URL", "data": "x"}]},  # 4: bad value
        _record("88.test/A", "https://example.org/a-again"),  # 5: line 1's handle again
        _record("88.TEST/e", "https://example.org/e"),  # 6: good
    )
    result = idnode(database, tmp_path, "import", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for line in (2, 3, 4, 5):
        assert f"bad.jsonl:line {line}: " in result.stderr
    for line in (1, 6):
        assert f"line {line}:" not in result.stderr
    assert "99.NOPE" in result.stderr
    assert "nothing was imported" in result.stderr
    assert await _count(database) == 0


PIP = Link("gs1:pip", "https://factory.example/p/7", "Product page", "en", default=True)
SDS = Link("gs1:safetyInfo", "https://factory.example/sds/7.pdf", type="application/pdf")


async def test_an_import_line_with_links_stores_them_as_a_put_would(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    line = {**_record("88.TEST/linked", "https://example.org/linked"), "links": [PIP.to_json(), SDS.to_json()]}
    result = idnode(database, tmp_path, "import", str(_jsonl(tmp_path / "links.jsonl", line)))
    assert result.returncode == 0, result.stderr
    shown = orjson.loads(idnode(database, tmp_path, "resolve", "88.TEST/linked").stdout)
    assert [(v["index"], v["type"]) for v in shown["values"]] == [(1, "URL"), (1000, "10320/loc")]
    assert shown["values"][1]["data"]["value"] == links.render([PIP, SDS])


async def test_bad_links_and_status_values_are_line_errors_and_nothing_is_imported(
    database: str, tmp_path: Path
) -> None:
    await home(database, "88.TEST")
    status = {"index": 5, "type": "IDNODE_STATUS", "data": '{"state": "recalled"}'}
    loc = {"index": 6, "type": "10320/loc", "data": "<locations><location href='ftp://x'/></locations>"}
    clash = {"index": 1000, "type": "URL", "data": "https://example.org/clash"}
    path = _jsonl(
        tmp_path / "bad.jsonl",
        _record("88.TEST/a", "https://example.org/a"),  # 1: good
        {"handle": "88.TEST/b", "links": [{"rel": "gs1:pip", "href": "javascript:alert(1)"}]},  # 2: bad link
        {"handle": "88.TEST/c", "values": [status]},  # 3: a recall without its link
        {"handle": "88.TEST/d", "values": [loc]},  # 4: a 10320/loc the proxy cannot serve
        {"handle": "88.TEST/e", "values": [clash], "links": [PIP.to_json()]},  # 5: links and index 1000
        {"handle": "88.TEST/f", "links": [PIP.to_json()]},  # 6: good
    )
    result = idnode(database, tmp_path, "import", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.jsonl:line 2: links: link href" in result.stderr
    assert "bad.jsonl:line 3: Value 5: IDNODE_STATUS: a recalled record needs a link" in result.stderr
    assert "bad.jsonl:line 4: Value 6: 10320/loc location 1: link href 'ftp://x' must be" in result.stderr
    assert "bad.jsonl:line 5: Index conflict for 1000" in result.stderr
    for line in (1, 6):
        assert f"line {line}:" not in result.stderr
    assert "nothing was imported" in result.stderr
    assert await _count(database) == 0


async def test_import_of_a_missing_file_is_a_one_line_error(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "import", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2
    assert "absent.jsonl" in _one_line_error(result)


async def test_resolve_of_a_missing_handle_exits_1(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    result = idnode(database, tmp_path, "resolve", "88.TEST/absent")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "88.TEST/absent: not found" in result.stderr


async def test_resolve_url_of_a_record_without_url_exits_1(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    assert idnode(database, tmp_path, "import", str(_jsonl(tmp_path / "good.jsonl", *GOOD))).returncode == 0
    result = idnode(database, tmp_path, "resolve", "88.TEST/no-url", "--url")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no URL" in result.stderr


async def test_resolve_url_follows_the_proxys_redirect_schemes(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/ftp", [{"index": 1, "type": "URL", "data": "ftp://files.example.org/m.pdf"}])
    assert idnode(database, tmp_path, "resolve", "88.TEST/ftp", "--url").returncode == 1
    result = idnode(database, tmp_path, "--redirect-schemes", "ftp", "resolve", "88.TEST/ftp", "--url")
    assert (result.returncode, result.stdout) == (0, "ftp://files.example.org/m.pdf\n")


async def test_resolve_of_an_invalid_handle_is_a_one_line_error(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "resolve", "88.TEST/" + "x" * 300)
    assert result.returncode == 2
    _one_line_error(result)


# --- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("prefix", "list"), ("resolve", "88.TEST/x"), ("migrate",)])
async def test_unreachable_database_is_a_one_line_error(
    database: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = idnode(database, tmp_path, *command, "--database-url", "postgresql://nobody@127.0.0.1:1/x")
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "127.0.0.1:1" in line
    assert result.stdout == ""


async def test_serve_on_a_port_in_use_is_a_one_line_error(database: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = idnode(database, tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "already in use" in line
    assert str(port) in line


async def test_bad_setting_is_a_one_line_error(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "serve", "--port", "99999")
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "--port" in line and "99999" in line
    assert line.count("65535") == 1  # the expectation is said once


@pytest.mark.parametrize("where", ["before", "after"])
async def test_settings_flags_are_accepted_before_or_after_the_command(
    database: str, tmp_path: Path, where: str
) -> None:
    flag = ("--database-url", "postgresql://nobody@127.0.0.1:1/x")
    command = ("prefix", "list")
    result = idnode(database, tmp_path, *((*flag, *command) if where == "before" else (*command, *flag)))
    assert result.returncode == 2
    assert "127.0.0.1:1" in _one_line_error(result)  # the flag, not IDNODE_DATABASE_URL, was used


async def test_every_setting_is_a_flag_of_every_command(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "--cache-max-entries", "-1", "migrate")
    assert result.returncode == 2
    assert "--cache-max-entries='-1'" in _one_line_error(result)
    shown = idnode(database, tmp_path, "serve", "--help")
    for flag in ("--cache-negative-ttl", "--trusted-proxies", "--auth-failure-limit", "--no-tls", "--log-format"):
        assert flag in shown.stdout


def test_the_command_line_works_when_python_strips_docstrings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")} | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-OO", "-m", "registry.cli", "serve", "--help"]
    shown = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "seconds a database call may take" in shown.stdout


async def test_migrate_reports_the_schema_version(database: str, tmp_path: Path) -> None:
    result = idnode(database, tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("schema at version ")
    assert "applied now: nothing" in result.stdout


UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


@pytest.mark.parametrize("setting", ["port", "admin_port"])
async def test_a_port_in_use_is_refused_before_the_database_starts(database: str, tmp_path: Path, setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        flag = "--" + setting.replace("_", "-")
        ports = ("--port", "0", flag, str(port)) if setting == "admin_port" else ("--port", str(port))
        # an unreachable database: had the database been tried first, the error would name it instead
        result = idnode(database, tmp_path, "serve", "--host", "127.0.0.1", *ports, "--database-url", UNREACHABLE)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert f"127.0.0.1:{port} is already in use; choose another {flag}" in line


def test_the_banner_of_an_ipv6_listener_prints_a_url_that_can_be_pasted(database: str, tmp_path: Path) -> None:
    port = free_port_v6()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.update(IDNODE_DATABASE_URL=database, PYTHONPATH=str(REPO), IDNODE_LOG_LEVEL="WARNING")
    command = [sys.executable, "-m", "registry.cli", "serve", "--host", "::1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().decode()
    finally:
        stop_process(process)
    assert banner.startswith(f"idnode serving on http://[::1]:{port} "), banner


def free_port_v6() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _demo_node(dsn: str, cwd: Path) -> Iterator[tuple[str, list[str]]]:
    """``idnode serve --demo --tls`` on a free port; yields its HTTPS base URL and what it printed up to its banner."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.update(IDNODE_DATABASE_URL=dsn, PYTHONPATH=str(REPO), IDNODE_LOG_LEVEL="WARNING")
    command = [sys.executable, "-m", "registry.cli", "serve", "--demo", "--tls", "--port", str(port)]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while not (lines and lines[-1].startswith("idnode serving on")):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line.rstrip("\n"))
        yield f"https://127.0.0.1:{port}", lines
    finally:
        stop_process(process)


def _printed_registration(lines: list[str]) -> str:
    start = next(n for n, line in enumerate(lines) if line.lstrip().startswith("curl -k -u "))
    return lines[start].rstrip("\\") + lines[start + 1]


def _run(command: str) -> str:
    return subprocess.run(
        ["sh", "-c", command + " -s -o /dev/null -w '%{http_code}'"], capture_output=True, text=True, check=False
    ).stdout


async def test_the_demo_is_coherent_and_prints_a_registration_that_works(database: str, tmp_path: Path) -> None:
    with _demo_node(database, tmp_path) as (base, lines):
        register = _printed_registration(lines)
        assert _run(register) == "201", "\n".join(lines)
        assert _run(register) == "200"  # again: the same record, replaced
        for path in (
            "/api/handles/0.NA/88.888.1",
            "/api/handles/88.888.1/ADMIN",
            "/api/templates/88.888.1/TPL-PRODUCT-1",
        ):
            assert _run(f"curl -k {base}{path}") == "200", path
    con = await asyncpg.connect(database)
    try:
        items = orjson.loads(await con.fetchval("SELECT items::text FROM templates"))
        for handle, values in DEMO_HANDLES:  # every product names the template and matches it
            assert template_reference(DEMO_PREFIX, decode_values(values)) == (DEMO_PREFIX, DEMO_TEMPLATE)
            assert validate_record(items, decode_values(values)) == [], handle
        assert await con.fetchval("SELECT count(*) FROM enterprises WHERE prefix_key = '88.888.1'") == 1
    finally:
        await con.close()
    with _demo_node(database, tmp_path) as (again, lines):  # a restart: the old secret gives way to a new one
        assert _run(_printed_registration(lines)) == "200"
        assert _run(register.replace(base, again)) == "401"


async def test_import_reports_progress_of_both_stages_in_a_log(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    result = idnode(database, tmp_path, "import", str(_jsonl(tmp_path / "good.jsonl", *GOOD)))
    assert result.returncode == 0, result.stderr
    assert "import: check 3/3 lines (100.0%)" in result.stderr
    assert "import: write 3/3 rows (100.0%)" in result.stderr


def _in_terminal(dsn: str, cwd: Path, *args: str, columns: int) -> str:
    """Run ``idnode ARGS`` on a pseudo-terminal that reports ``columns`` columns; everything it printed."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.update(IDNODE_DATABASE_URL=dsn, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "registry.cli", *args]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    output = b""
    with contextlib.suppress(OSError):  # EIO once the child has exited
        while chunk := os.read(main, 65536):
            output += chunk
    os.close(main)
    process.wait(timeout=60)
    return output.decode()


@pytest.mark.parametrize("columns", [0, 100])
async def test_import_draws_a_progress_bar_on_any_terminal(database: str, tmp_path: Path, columns: int) -> None:
    await home(database, "88.TEST")
    path = _jsonl(tmp_path / "good.jsonl", *GOOD)
    shown = _in_terminal(database, tmp_path, "import", str(path), columns=columns)
    assert "3 record(s) written" in shown
    for title in ("import: check", "import: write"):
        assert title in shown and "100%" in shown.split(title)[-1], shown
