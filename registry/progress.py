"""Progress of a long command (``idnode import``): total, percentage, rate and time left, on a terminal or a log.

On a terminal, a tqdm bar redrawn up to ten times a second. A terminal that reports 0 columns (some container
consoles and CI pseudo-terminals do) would get tqdm's zero-width bar, that is nothing at all, so it gets a fixed
width instead. Anywhere else (a pipe, a file, journald) a bar would be unreadable, so one plain line is written
every ``interval`` seconds, and a last one when the stage ends::

    import: check 120,000/1,000,000 lines (12.0%), 19,512 lines/s, about 45 s left
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from tqdm import tqdm

__all__ = ["DEFAULT_INTERVAL", "FALLBACK_COLUMNS", "stage"]

DEFAULT_INTERVAL = 5.0
"""Seconds between two progress lines when the output is not a terminal."""
FALLBACK_COLUMNS = 80
"""Width of the bar on a terminal that reports 0 columns."""


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 0


class _Lines:
    """Plain progress lines, at most one per ``interval`` seconds, and one at the end."""

    __slots__ = ("_clock", "_interval", "_last", "_shown", "_started", "_stream", "_title", "_total", "_unit", "done")

    def __init__(
        self, title: str, total: int | None, unit: str, stream: TextIO, interval: float, clock: Callable[[], float]
    ) -> None:
        self._title, self._total, self._unit, self._stream = title, total, unit, stream
        self._interval, self._clock = interval, clock
        self._started = self._last = clock()
        self.done = 0
        # ``done`` when the last line was written, so that the closing line is not written twice
        self._shown = -1

    def update(self, count: int) -> None:
        self.done += count
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._write(now)

    def close(self) -> None:
        if self._shown != self.done:
            self._write(self._clock())

    def _write(self, now: float) -> None:
        self._shown = self.done
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self._total:
            share = f"{self.done:,}/{self._total:,} {self._unit} ({100 * self.done / self._total:.1f}%)"
        else:
            share = f"{self.done:,} {self._unit}"
        parts = [f"{self._title} {share}"]
        parts.append(f"{rate:,.0f} {self._unit}/s")
        if self._total and rate > 0 and self.done < self._total:
            parts.append(f"about {(self._total - self.done) / rate:,.0f} s left")
        print(", ".join(parts), file=self._stream, flush=True)


@contextlib.contextmanager
def stage(
    title: str,
    total: int | None,
    unit: str,
    *,
    stream: TextIO,
    interval: float = DEFAULT_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Callable[[int], None]]:
    """Show the progress of one stage of work; yields ``update(count)``, to call as units get done."""
    if not stream.isatty():
        lines = _Lines(title, total, unit, stream, interval, clock)
        try:
            yield lines.update
        finally:
            lines.close()
        return
    ncols = None if _columns(stream) > 0 else FALLBACK_COLUMNS
    bar = tqdm(total=total, desc=title, unit=f" {unit}", unit_scale=True, file=stream, ncols=ncols, mininterval=0.1)
    with bar:
        yield bar.update
