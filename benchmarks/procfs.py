"""What the kernel says about processes: CPU time, resident memory, process trees, and who else is busy.

Why /proc and not timers: this machine is shared (research/performance-anchors.md, caveat), so req/s moves by
±30 % between identical runs, while a server's own CPU time per request (utime + stime from
``/proc/<pid>/stat``) barely moves. Every throughput figure of the harness is paired with that CPU figure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BusyProcess", "CpuSample", "busy_others", "cpu_seconds", "descendants", "rss_kib", "sample_cpu"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may contain spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (its threads included), or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # after the name: state(0) ppid(1) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (workers forked by ``idnode serve``, nginx's worker, ...)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if cpu_seconds(pid) is None:
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_kib(pid: int) -> int:
    """``VmRSS`` of ``pid`` in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds per pid at one moment; two samples give the CPU a set of processes spent between them."""

    seconds: dict[int, float]

    def spent_since(self, before: CpuSample) -> float:
        """CPU seconds used between ``before`` and this sample by the processes alive now.

        A process that appeared in between counts from zero (its whole life fell in the window); one that died
        in between is lost, which is why callers sample the process set at both ends.
        """
        return sum(now - before.seconds.get(pid, 0.0) for pid, now in self.seconds.items())


def sample_cpu(pids: Iterable[int]) -> CpuSample:
    """CPU seconds of each live pid among ``pids``."""
    seconds = {}
    for pid in pids:
        value = cpu_seconds(pid)
        if value is not None:
            seconds[pid] = value
    return CpuSample(seconds)


@dataclass(frozen=True, slots=True)
class BusyProcess:
    pid: int
    name: str
    percent: float

    def __str__(self) -> str:
        return f"{self.name}[{self.pid}] {self.percent:.0f}%"


def busy_others(exclude: Iterable[int], *, window: float = 0.25, threshold: float = 5.0) -> list[BusyProcess]:
    """Processes other than ``exclude`` that used more than ``threshold`` % of a core over the last ``window`` s.

    Measured now over a short window, not ``ps``'s lifetime average, so that a sibling's burst at the start of
    a run is what gets recorded (the performance-anchors method asks for this note on every run).
    """
    skip = set(exclude) | {os.getpid()}
    before = sample_cpu(p for p in _all_pids() if p not in skip)
    time.sleep(window)
    after = sample_cpu(before.seconds)
    busy = []
    for pid, now in after.seconds.items():
        percent = 100.0 * (now - before.seconds[pid]) / window
        if percent > threshold:
            busy.append(BusyProcess(pid, _comm(pid), percent))
    return sorted(busy, key=lambda b: -b.percent)
