"""Regenerate the product page screenshots under docs/ (the README shows them): the demo pump's page
(``/88.888.1/PUMP-2026-000123?noredirect``, registry/demo.py) in Chinese and English, on a 390-px phone and a
1366-px desktop, taken by headless Chromium (tests/chromium.py).

Run from the repository root: ``.venv/bin/python docs/screenshots.py``. It needs ``chromium`` (and a Chinese
font, e.g. Debian's ``fonts-wqy-microhei``) and a PostgreSQL server: ``IDNODE_TEST_DATABASE_URL`` when set (a
database is created there and dropped afterwards), else an embedded one in a temporary directory, as the tests do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.demo import DEMO_PREFIX  # noqa: E402
from resolver.embedded import EmbeddedPostgres  # noqa: E402
from resolver.store import apply_migrations  # noqa: E402
from tests.chromium import launch  # noqa: E402
from tests.support import load_demo_data, start_node, with_database  # noqa: E402

PAGE = f"/{DEMO_PREFIX}/PUMP-2026-000123?noredirect&lang="
SHOTS = {"phone": 390, "desktop": 1366}


async def _take(server: str, out: Path) -> list[Path]:
    name = f"idnode_shots_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = with_database(server, name)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        await apply_migrations(pool)
        await pool.close()
        await load_demo_data(dsn)
        runner, url, _ = await start_node(dsn)
        try:
            written = []
            async with launch() as browser, browser.tab() as tab:
                for device, width in SHOTS.items():
                    for language in ("zh", "en"):
                        await tab.open(url + PAGE + language, width)
                        path = out / f"product-page-{device}-{language}.png"
                        await tab.screenshot(path, width)
                        written.append(path)
            return written
        finally:
            await runner.cleanup()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    out = ROOT / "docs"
    server = os.environ.get("IDNODE_TEST_DATABASE_URL")
    root = None
    embedded = None
    try:
        if server is None:
            root = Path(tempfile.mkdtemp(prefix="idnode-shots-pg-"))
            embedded = EmbeddedPostgres(root)
            server = embedded.start()
        for path in asyncio.run(_take(server, out)):
            print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")
    finally:
        if embedded is not None:
            embedded.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
