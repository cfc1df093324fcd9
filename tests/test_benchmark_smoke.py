"""The benchmark harness still runs, and cached look-ups still issue no database query (issue 5's guard).

This runs ``python -m benchmarks --smoke`` against the test run's PostgreSQL: a node on a tiny data set, a
positive control that cold look-ups are seen querying, then cached look-ups and redirects that must not. It
asserts what the harness checked, never a timing.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_smoke_benchmark_passes_every_check(server_dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--database-url", server_dsn],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "smoke: ok   cached look-ups issue zero database queries" in output, output
    assert ", 0 failed" in output, output
