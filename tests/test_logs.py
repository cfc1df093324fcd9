"""resolver/logs.py: JSON lines, and the per-request log (sampled access lines, slow requests) over real HTTP.

The request log is tried on a node over a real database, served by an ``AppRunner`` given exactly the options
``idnode serve`` gives ``web.run_app``. Sampling draws from a scripted sequence instead of ``random.random``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from registry.app import extensions as registry_extensions
from resolver.app import create_app
from resolver.config import Settings
from resolver.logs import ACCESS_LOGGER, SLOW_LOGGER, configure_logging, request_log_options
from tests.support import free_port, home, put_record, serve_node

RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/l"}}]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and the request loggers back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (ACCESS_LOGGER, SLOW_LOGGER)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


class Records(logging.Handler):
    """Keeps the records of the loggers it is attached to."""

    def __init__(self, *names: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in names]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_pid(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("idnode.test").info("cache flushed: %d entries", 12)
    logging.getLogger("idnode.test").debug("below the level")
    [line] = _json_lines(stream)
    assert line["level"] == "INFO"
    assert line["logger"] == "idnode.test"
    assert line["message"] == "cache flushed: 12 entries"
    assert line["time"].endswith("Z") and line["time"][10] == "T" and len(line["time"]) == 24
    assert isinstance(line["pid"], int)
    assert "request_id" not in line


def test_request_id_and_other_extras_become_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("idnode.http").warning("internal error", extra={"request_id": "abc123", "status": 500})
    [line] = _json_lines(stream)
    assert line["request_id"] == "abc123"
    assert line["status"] == 500


def test_an_exception_stays_inside_one_json_line(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise RuntimeError("multi\nline")
    except RuntimeError:
        logging.getLogger("idnode.test").exception("failed")
    [line] = _json_lines(stream)
    assert "RuntimeError: multi\nline" in line["exception"]
    assert "Traceback" in line["exception"]


def test_configuring_twice_replaces_the_handler_instead_of_doubling_lines(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("INFO", "text", stream=second)
    logging.getLogger("idnode.test").warning("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert " WARNING idnode.test: once" in second.getvalue()


def test_an_unknown_log_format_is_refused(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="log_format"):
        configure_logging("INFO", "xml")


def test_request_logging_is_not_handed_to_aiohttp_when_both_logs_are_off() -> None:
    assert request_log_options(sample=0, slow_ms=0) == {"access_log": None}
    assert request_log_options(sample=0.01, slow_ms=0)["access_log"].name == ACCESS_LOGGER
    assert "access_log_class" in request_log_options(sample=0, slow_ms=250)


def test_out_of_range_request_log_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="access_log_sample"):
        request_log_options(sample=1.5, slow_ms=0)
    with pytest.raises(ValueError, match="slow_request_ms"):
        request_log_options(sample=0, slow_ms=-1)


Serve = Callable[..., Any]


@pytest.fixture
async def serve_with(database: str, restore_logging: None) -> AsyncIterator[Serve]:
    """Serve a node over ``database`` with the request-log options given; yields a starter returning its URL."""
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/l1", RECORD)
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> str:
        app = await create_app(Settings(), database, extensions=registry_extensions())
        runner = web.AppRunner(app, **request_log_options(**options))
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _get_all(url: str, paths: list[str], headers: dict[str, str] | None = None) -> None:
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(url + path, headers=headers, allow_redirects=False) as response:
                await response.read()


async def _settle(seen: Records, count: int) -> None:
    """Wait until ``count`` records arrived (aiohttp logs a request after its answer), then a little longer."""
    deadline = time.monotonic() + 5
    while len(seen.records) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # a record too many would show up now


async def test_no_request_is_logged_when_both_logs_are_off(serve_with: Serve) -> None:
    url = await serve_with(sample=0, slow_ms=0)
    with Records(ACCESS_LOGGER, SLOW_LOGGER, "aiohttp.access") as seen:
        await _get_all(url, ["/api/handles/88.TEST/l1"] * 5)
        await asyncio.sleep(0.2)  # time for a request log, which aiohttp writes after the answer, to show up
    assert seen.records == []


async def test_the_access_log_writes_exactly_the_sampled_requests(serve_with: Serve) -> None:
    draws = iter([0.3, 0.7, 0.1, 0.9, 0.49, 0.51])
    url = await serve_with(sample=0.5, slow_ms=0, random=lambda: next(draws))
    paths = [f"/api/handles/88.TEST/l1?n={n}" for n in range(6)]
    with Records(ACCESS_LOGGER, SLOW_LOGGER) as seen:
        await _get_all(url, paths, headers={"X-Request-Id": "req-7"})
        await _settle(seen, 3)
    assert [record.path for record in seen.records] == [paths[0], paths[2], paths[4]]  # type: ignore[attr-defined]
    for record in seen.records:
        assert record.name == ACCESS_LOGGER and record.levelno == logging.INFO
        fields = record.__dict__
        assert fields["method"] == "GET" and fields["status"] == 200
        assert fields["request_id"] == "req-7"
        assert fields["duration_ms"] >= 0 and fields["bytes"] > 0
        assert fields["remote"] == "127.0.0.1"


async def test_slow_requests_are_logged_above_the_threshold_only(serve_with: Serve) -> None:
    everything_slow = await serve_with(sample=0, slow_ms=0.000001)
    nothing_slow = await serve_with(sample=0, slow_ms=60_000)
    with Records(ACCESS_LOGGER, SLOW_LOGGER) as seen:
        await _get_all(everything_slow, ["/api/handles/88.TEST/l1", "/88.TEST/l1"])
        await _get_all(nothing_slow, ["/api/handles/88.TEST/l1", "/88.TEST/l1"])
        await _settle(seen, 2)
    assert [(r.name, r.levelno, r.status) for r in seen.records] == [  # type: ignore[attr-defined]
        (SLOW_LOGGER, logging.WARNING, 200),
        (SLOW_LOGGER, logging.WARNING, 302),
    ]
    assert all(record.getMessage().startswith("slow request GET /") for record in seen.records)


async def test_serve_writes_json_lines_when_asked_for(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/l2", RECORD)
    env = {"IDNODE_LOG_FORMAT": "json", "IDNODE_SLOW_REQUEST_MS": "0.000001"}
    with serve_node(database, env=env) as node:
        await _get_all(node.url, ["/api/handles/88.TEST/l2"], headers={"X-Request-Id": "from-client"})
        deadline = time.monotonic() + 10  # aiohttp logs a request after its answer has been sent
        while "/api/handles/88.TEST/l2" not in node.text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        output = node.text()
    lines = [line for line in output.splitlines() if line.startswith("{")]
    others = [line for line in output.splitlines() if not line.startswith("{")]
    assert all(line.startswith("idnode serving on ") for line in others), others
    records = [orjson.loads(line) for line in lines]
    slow = [r for r in records if r["logger"] == SLOW_LOGGER and r["path"] == "/api/handles/88.TEST/l2"]
    assert len(slow) == 1, output
    assert slow[0]["request_id"] == "from-client"
    assert slow[0]["level"] == "WARNING" and slow[0]["status"] == 200
