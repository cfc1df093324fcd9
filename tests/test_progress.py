"""registry/progress.py: progress lines in a log (with a test clock), and bars on a terminal of 0 columns."""

from __future__ import annotations

import io

from registry.progress import stage


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_interval_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), _Clock()
    with stage("import: check", 1000, "lines", stream=out, interval=5.0, clock=clock) as update:
        update(100)
        clock.now += 1.0
        update(100)  # within the interval: no line
        clock.now += 4.0
        update(300)  # 500 lines in 5 s
        clock.now += 5.0
        update(500)
    assert out.getvalue().splitlines() == [
        "import: check 500/1,000 lines (50.0%), 100 lines/s, about 5 s left",
        "import: check 1,000/1,000 lines (100.0%), 100 lines/s",
    ]


def test_a_stage_of_unknown_size_shows_count_and_rate() -> None:
    out, clock = io.StringIO(), _Clock()
    with stage("import: check", None, "lines", stream=out, clock=clock) as update:
        clock.now += 2.0
        update(50)
    assert out.getvalue() == "import: check 50 lines, 25 lines/s\n"
