"""Headless Chromium driven over the DevTools protocol, for tests that look at a page as a browser lays it out.

No browser-automation package: Chromium (Debian's ``chromium``, installed by .ci/run) is started with
``--remote-debugging-port=0``; the port it chose is read from the ``DevToolsActivePort`` file it writes into its
``--user-data-dir``; a page target is opened over its HTTP endpoint (``PUT /json/new``) and spoken to over that
target's websocket with aiohttp's client: ``Emulation.setDeviceMetricsOverride`` (a phone's or a desktop's
width), ``Page.navigate``, ``Runtime.evaluate`` (measurements, returned by value), ``Page.captureScreenshot``.
The pages under test run no script of their own; evaluation through DevTools is not subject to their CSP.

Used by tests/test_product_page_browser.py and docs/screenshots.py. Without Chromium, :func:`chromium_path`
fails the test with how to install it (as tests/test_qr.py does for ``zbarimg``): a layout never looked at must
not pass.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import aiohttp

__all__ = ["Browser", "Tab", "chromium_path", "launch"]

_START_TIMEOUT = 30.0
_CALL_TIMEOUT = 30.0


def chromium_path() -> str:
    """The Chromium executable; fails the calling test when there is none."""
    import pytest  # only the tests need pytest; docs/screenshots.py reaches here with Chromium installed

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium not found on PATH: install it (apt-get install chromium); .ci/run installs it")


class Tab:
    """One page target: DevTools commands over its websocket, one at a time."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result, skipping the events that arrive meanwhile."""
        number = next(self._ids)
        await self._socket.send_json({"id": number, "method": method, "params": params})
        async with asyncio.timeout(_CALL_TIMEOUT):
            while True:
                message = await self._socket.receive_json()
                if message.get("id") == number:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

    async def open(self, url: str, width: int, height: int = 900, *, language: str | None = None) -> None:
        """Load ``url`` in a ``width`` × ``height`` CSS-pixel viewport (a phone's, with touch and a mobile
        viewport, below 600 px), sending ``Accept-Language: language`` when given, and wait until it has loaded."""
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=width < 600
        )
        await self.call("Network.enable")
        await self.call("Network.setExtraHTTPHeaders", headers={"Accept-Language": language} if language else {})
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + _CALL_TIMEOUT
        while await self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            await asyncio.sleep(0.05)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path, width: int) -> None:
        """A PNG of the whole page (its full height) at ``width`` CSS pixels."""
        height = int(await self.evaluate("document.documentElement.scrollHeight"))
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=width < 600
        )
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


class Browser:
    """A running headless Chromium and an HTTP session to its DevTools endpoint."""

    def __init__(self, port: int, http: aiohttp.ClientSession) -> None:
        self.port = port
        self.http = http

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[Tab]:
        """A new blank page, closed afterwards."""
        base = f"http://127.0.0.1:{self.port}"
        async with self.http.put(f"{base}/json/new?about:blank") as response:
            target = await response.json()
        try:
            async with self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20) as socket:
                yield Tab(socket)
        finally:
            async with self.http.get(f"{base}/json/close/{target['id']}") as response:
                await response.read()


@contextlib.asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    """Headless Chromium in a temporary profile, stopped (and the profile removed) afterwards."""
    executable = chromium_path()
    with (
        tempfile.TemporaryDirectory(prefix="idnode-chromium-", ignore_cleanup_errors=True) as profile,
        tempfile.TemporaryFile() as log,
    ):
        command = [
            executable,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--font-render-hinting=none",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        # a session of its own: its helper processes (renderer, GPU, zygote) are stopped with it, by group
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            port = await _devtools_port(Path(profile), process, log)
            async with aiohttp.ClientSession() as http:
                yield Browser(port, http)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium's process group: SIGTERM, then SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _devtools_port(profile: Path, process: subprocess.Popen[bytes], log: IO[bytes]) -> int:
    """The port Chromium chose, from the ``DevToolsActivePort`` file it writes when it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            error = log.read().decode(errors="replace")
            raise RuntimeError(f"chromium exited with {process.returncode}: {error[-2000:]}")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        await asyncio.sleep(0.05)
    raise TimeoutError(f"chromium did not open its DevTools port within {_START_TIMEOUT}s")
